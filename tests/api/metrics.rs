//! Every number in every view, against values computed by hand from the fixtures.
//!
//! Hand computation (times are after T0 = 2026-11-20T10:00Z; "now" is T0 + 10 min):
//! - executions: ag-1 Explore completed, 9.5 s − 6.5 s = 3000 ms, tokens 1000+2000+500+10000
//!   = 13500, cost (1000×3 + 2000×15 + 500×3.75 + 10000×0.30) / 1e6 = $0.037875 (sonnet 4.5
//!   prices, the default model); ag-2 Explore completed, 123 s − 120.5 s = 2500 ms, tokens 3000,
//!   cost (2000×3 + 1000×15) / 1e6 = $0.021; ag-3 general-purpose failed at 185 s,
//!   185 s − 180.5 s = 4500 ms, no tokens. The repeated SubagentStop of ag-1 adds nothing.
//! - success rate 2/3; average duration (3000+2500+4500)/3 = 3333.3 → 3333 ms;
//!   tokens 16500; cost $0.058875.
//! - active agents: S2's main agent only (S1 ended, S3 idle for 50 min > 30 min, all subagents
//!   finished) = 1.
//! - tool calls: Task×3, Read×2 (main, Explore), Bash×2 (S1 failed, S2), Grep×1 (Explore),
//!   Edit×1 (general-purpose) = 9; per execution = calls / 3.

use serde_json::{Value, json};

use crate::fixtures;
use crate::helpers::{Backend, T0, TestApp, approx};

const MINUTE: i64 = 60_000;

async fn replay_fixtures(app: &TestApp) {
    for event in fixtures::idle_session() {
        app.send_event(&event).await;
    }
    for event in fixtures::main_session() {
        app.send_event(&event).await;
    }
    app.clock.set(T0 + 5 * MINUTE);
    for body in fixtures::raw_session() {
        let response = app
            .post_json("/hooks/claude-code?app=proj-beta", &body)
            .await;
        assert_eq!(response.status(), 204);
    }
    app.clock.set(T0 + 10 * MINUTE);
}

async fn metrics_match_hand_computed_values(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    replay_fixtures(&app).await;

    let m = app.get_ok("/api/agents/metrics/current").await;
    assert_eq!(m["active_agents"], 1);
    assert_eq!(m["executions_today"], 3);
    approx(&m["success_rate"], 2.0 / 3.0);
    assert_eq!(m["avg_duration_ms"], 3333);
    assert_eq!(m["tokens_used_today"], 16_500);
    approx(&m["estimated_cost_today"], 0.058875);
    let breakdown = m["agent_type_breakdown"].as_array().unwrap();
    assert_eq!(breakdown.len(), 2);
    assert_eq!(breakdown[0]["type"], "Explore");
    assert_eq!(breakdown[0]["executions"], 2);
    approx(&breakdown[0]["success_rate"], 1.0);
    assert_eq!(breakdown[0]["avg_duration_ms"], 2750);
    assert_eq!(breakdown[0]["unique_agents"], 2);
    assert_eq!(breakdown[0]["total_tokens"], 16_500);
    approx(&breakdown[0]["estimated_cost"], 0.058875);
    assert_eq!(breakdown[1]["type"], "general-purpose");
    assert_eq!(breakdown[1]["executions"], 1);
    approx(&breakdown[1]["success_rate"], 0.0);
    assert_eq!(breakdown[1]["avg_duration_ms"], 4500);
    assert_eq!(breakdown[1]["total_tokens"], 0);

    // A range holding only minute 2 sees only ag-2.
    let only_ag2 = app
        .get_ok(&format!(
            "/api/agents/metrics/current?start={}&end={}",
            T0 + 2 * MINUTE,
            T0 + 3 * MINUTE
        ))
        .await;
    assert_eq!(only_ag2["executions_today"], 1);
    assert_eq!(only_ag2["avg_duration_ms"], 2500);
    assert_eq!(only_ag2["tokens_used_today"], 3_000);
    // Ranges that cut minutes are exact: [9 s, 9.6 s) holds ag-1's stop at 9.5 s.
    let cut = app
        .get_ok(&format!(
            "/api/agents/metrics/current?start={}&end={}",
            T0 + 9_000,
            T0 + 9_600
        ))
        .await;
    assert_eq!(cut["executions_today"], 1);
    assert_eq!(cut["tokens_used_today"], 13_500);
    // Long ranges read hourly rollups; a range from 59.5 min before T0 to 2 h after holds all.
    let long = app
        .get_ok(&format!(
            "/api/agents/metrics/current?start={}&end={}",
            T0 - 60 * MINUTE + 30_000,
            T0 + 120 * MINUTE
        ))
        .await;
    assert_eq!(long["executions_today"], 3);
    assert_eq!(long["avg_duration_ms"], 3333);
    assert_eq!(long["tokens_used_today"], 16_500);
    let long_tools = app
        .get_ok(&format!(
            "/api/agents/tools/usage?start={}&end={}",
            T0 - 60 * MINUTE + 30_000,
            T0 + 120 * MINUTE
        ))
        .await;
    assert_eq!(long_tools["total_calls"], 9);
    let just_after = app
        .get_ok(&format!(
            "/api/agents/metrics/current?start={}&end={}",
            T0 + 9_501,
            T0 + 60_000 + 30_000
        ))
        .await;
    assert_eq!(just_after["executions_today"], 0);
}

async fn timeline_buckets_are_utc_and_zero_filled(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    replay_fixtures(&app).await;

    let t = app
        .get_ok(&format!(
            "/api/agents/metrics/timeline?start={T0}&end={}&bucket=1m",
            T0 + 5 * MINUTE
        ))
        .await;
    let points = t["timeline"].as_array().unwrap();
    assert_eq!(points.len(), 5);
    assert_eq!(points[0]["timestamp"], "2026-11-20T10:00:00.000Z");
    assert_eq!(points[4]["timestamp"], "2026-11-20T10:04:00.000Z");
    let expected = [
        (1, 13_500, 0.037875, 3000, 1, json!("Explore")),
        (0, 0, 0.0, 0, 0, Value::Null),
        (1, 3_000, 0.021, 2500, 1, json!("Explore")),
        (1, 0, 0.0, 4500, 1, json!("general-purpose")),
        (0, 0, 0.0, 0, 0, Value::Null),
    ];
    for (point, (executions, tokens, cost, avg, types, dominant)) in points.iter().zip(expected) {
        assert_eq!(point["executions"], executions, "{point}");
        assert_eq!(point["tokens"], tokens, "{point}");
        approx(&point["cost"], cost);
        assert_eq!(point["avg_duration_ms"], avg, "{point}");
        assert_eq!(point["agent_types_count"], types, "{point}");
        assert_eq!(point["dominant_agent_type"], dominant, "{point}");
    }

    // Five-minute buckets sum the minutes; the dominant type is the most frequent.
    let coarse = app
        .get_ok(&format!(
            "/api/agents/metrics/timeline?start={T0}&end={}&bucket=5m",
            T0 + 10 * MINUTE
        ))
        .await;
    let points = coarse["timeline"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    assert_eq!(points[0]["executions"], 3);
    assert_eq!(points[0]["agent_types_count"], 2);
    assert_eq!(points[0]["dominant_agent_type"], "Explore");
    assert_eq!(points[0]["avg_duration_ms"], 3333);
    assert_eq!(points[1]["executions"], 0);

    // ?hours=24 gives 24 hourly points ending with the current hour.
    let day = app.get_ok("/api/agents/metrics/timeline?hours=24").await;
    let points = day["timeline"].as_array().unwrap();
    assert_eq!(points.len(), 24);
    assert_eq!(points[23]["timestamp"], "2026-11-20T10:00:00.000Z");
    assert_eq!(points[23]["executions"], 3);
}

async fn distribution_and_tool_usage_match_hand_computed_values(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    replay_fixtures(&app).await;

    let d = app.get_ok("/api/agents/types/distribution").await;
    let entries = d["distribution"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["type"], "Explore");
    assert_eq!(entries[0]["count"], 2);
    approx(&entries[0]["percentage"], 2.0 / 3.0);
    assert_eq!(entries[0]["avg_duration_ms"], 2750);
    approx(&entries[0]["success_rate"], 1.0);
    assert_eq!(entries[0]["common_tools"], json!(["Grep", "Read"]));
    assert_eq!(entries[1]["type"], "general-purpose");
    assert_eq!(entries[1]["count"], 1);
    approx(&entries[1]["percentage"], 1.0 / 3.0);
    approx(&entries[1]["success_rate"], 0.0);
    assert_eq!(entries[1]["common_tools"], json!(["Edit"]));

    let u = app.get_ok("/api/agents/tools/usage").await;
    let tools = u["tools"].as_array().unwrap();
    let expected = [
        ("Task", 3, vec!["main"]),
        ("Bash", 2, vec!["main"]),
        ("Read", 2, vec!["Explore", "main"]),
        ("Edit", 1, vec!["general-purpose"]),
        ("Grep", 1, vec!["Explore"]),
    ];
    assert_eq!(tools.len(), expected.len(), "{u}");
    for (tool, (name, count, types)) in tools.iter().zip(expected) {
        assert_eq!(tool["name"], name);
        assert_eq!(tool["usage_count"], count, "{tool}");
        approx(&tool["percentage"], count as f64 / 9.0);
        approx(&tool["avg_per_execution"], count as f64 / 3.0);
        assert_eq!(tool["agent_types_using"], json!(types), "{tool}");
    }
    assert_eq!(u["insights"]["most_used_tool"], "Task");
    assert_eq!(u["insights"]["least_used_tool"], "Grep");
    assert_eq!(u["insights"]["total_unique_tools"], 5);

    // Ranges are respected: nothing happened in the hour before the idle session.
    let empty = app
        .get_ok(&format!(
            "/api/agents/tools/usage?start={}&end={}",
            T0 - 120 * MINUTE,
            T0 - 60 * MINUTE
        ))
        .await;
    assert_eq!(empty["tools"], json!([]));
    assert_eq!(empty["insights"]["total_unique_tools"], 0);
}

async fn agents_and_sessions_show_each_lifecycle(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    replay_fixtures(&app).await;

    let all = app.get_ok("/api/agents").await;
    let agents = all["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 6, "{all}");
    let status_of = |id: &str| {
        agents
            .iter()
            .find(|a| a["id"] == id)
            .unwrap_or_else(|| panic!("no agent {id}"))["status"]
            .clone()
    };
    assert_eq!(status_of("S1"), "completed");
    assert_eq!(status_of("S2"), "running");
    assert_eq!(status_of("S3"), "timed_out");
    assert_eq!(status_of("ag-1"), "completed");
    assert_eq!(status_of("ag-2"), "completed");
    assert_eq!(status_of("ag-3"), "failed");

    let active = app.get_ok("/api/agents?status=active").await;
    let ids: Vec<&str> = active["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["S2"]);
    let failed = app.get_ok("/api/agents?status=failed").await;
    assert_eq!(failed["agents"][0]["id"], "ag-3");
    assert_eq!(failed["agents"][0]["error"], "Agent crashed");
    assert_eq!(failed["agents"].as_array().unwrap().len(), 1);
    let timed_out = app.get_ok("/api/agents?status=timed_out").await;
    assert_eq!(timed_out["agents"][0]["id"], "S3");

    let ag1 = app.get_ok("/api/agents/ag-1").await;
    assert_eq!(ag1["type"], "Explore");
    assert_eq!(ag1["kind"], "subagent");
    assert_eq!(ag1["description"], "Find config");
    assert_eq!(ag1["session_id"], "S1");
    assert_eq!(ag1["tool_use_id"], "k1");
    assert_eq!(ag1["started_at"], T0 + 6_500);
    assert_eq!(ag1["ended_at"], T0 + 9_500);
    assert_eq!(ag1["duration_ms"], 3_000);
    assert_eq!(
        ag1["tokens"],
        json!({"input": 1000, "output": 2000, "cache_creation": 500, "cache_read": 10000, "total": 13500})
    );
    approx(&ag1["estimated_cost"], 0.037875);
    let calls = ag1["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["tool_name"], "Grep");
    assert_eq!(calls[0]["status"], "succeeded");

    let ag3 = app.get_ok("/api/agents/ag-3").await;
    assert_eq!(ag3["description"], "Refactor");
    assert_eq!(ag3["tool_use_id"], "k3");
    assert_eq!(ag3["duration_ms"], 4_500);

    let main = app.get_ok("/api/agents/S1").await;
    assert_eq!(main["kind"], "main");
    assert_eq!(main["type"], "main");
    let calls: Vec<(String, String)> = main["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["tool_name"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("Read", "succeeded"),
        ("Bash", "failed"),
        ("Task", "succeeded"),
        ("Task", "succeeded"),
        ("Task", "failed"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(calls, expected);
    let bash = &main["tool_calls"][1];
    assert_eq!(bash["error"], "exit 1");
    assert_eq!(bash["duration_ms"], 900);
    assert_eq!(main["tool_calls"][2]["spawned_agent_id"], "ag-1");

    let sessions = app.get_ok("/api/sessions").await;
    let sessions = sessions["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 3);
    let s1 = app.get_ok("/api/sessions/S1").await;
    assert_eq!(s1["source_app"], "proj-alpha");
    assert_eq!(s1["status"], "completed");
    assert_eq!(s1["event_count"], 26);
    assert_eq!(s1["prompt_count"], 1);
    assert_eq!(s1["tool_call_count"], 8);
    assert_eq!(s1["subagent_count"], 3);
    assert_eq!(s1["end_reason"], "prompt_input_exit");
    assert_eq!(s1["started_at"], T0);
    assert_eq!(s1["ended_at"], T0 + 200_000);
    assert_eq!(s1["model"], "claude-sonnet-4-5");
    assert_eq!(s1["agents"].as_array().unwrap().len(), 4);
    let s2 = app.get_ok("/api/sessions/S2").await;
    assert_eq!(s2["source_app"], "proj-beta");
    assert_eq!(s2["status"], "running");
    assert_eq!(s2["event_count"], 4);
    assert_eq!(s2["tool_call_count"], 1);
    let s3 = app.get_ok("/api/sessions/S3").await;
    assert_eq!(s3["status"], "timed_out");
}

async fn idle_subagents_time_out_and_revive_when_seen_again(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let e = |event: &str, at: i64, extra: Value| fixtures::envelope("proj", "S9", event, at, extra);
    app.send_event(&e(
        "SubagentStart",
        0,
        json!({"agent_id": "ag-9", "agent_type": "Explore"}),
    ))
    .await;
    app.clock.set(T0 + 31 * MINUTE);
    let m = app.get_ok("/api/agents/metrics/current").await;
    assert_eq!(m["active_agents"], 0, "idle for 31 min: {m}");
    assert_eq!(app.service.time_out_idle_agents_once().await.unwrap(), 1);
    assert_eq!(app.get_ok("/api/agents/ag-9").await["status"], "timed_out");
    assert_eq!(app.service.time_out_idle_agents_once().await.unwrap(), 0);

    app.send_event(&e(
        "PreToolUse",
        31 * MINUTE,
        fixtures::in_subagent(
            "ag-9",
            "Explore",
            fixtures::pre_tool("Read", "r9", json!({})),
        ),
    ))
    .await;
    assert_eq!(app.get_ok("/api/agents/ag-9").await["status"], "running");
    assert_eq!(
        app.get_ok("/api/agents/metrics/current").await["active_agents"],
        2
    );
    app.send_event(&e(
        "SubagentStop",
        32 * MINUTE,
        json!({"agent_id": "ag-9", "agent_type": "Explore"}),
    ))
    .await;
    let ag9 = app.get_ok("/api/agents/ag-9").await;
    assert_eq!(ag9["status"], "completed");
    assert_eq!(ag9["duration_ms"], 32 * MINUTE);
}

async fn events_arriving_out_of_order_give_the_same_lifecycle(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    // Hooks run in parallel, so a subagent's events can overtake the tool call that spawned it.
    let mut events = fixtures::main_session();
    let order = [
        0, 1, 7, 6, 8, 9, 11, 10, 12, 2, 3, 4, 5, 14, 13, 15, 16, 18, 17, 20, 19, 21, 22, 23, 24,
        25,
    ];
    assert_eq!(order.len(), events.len());
    let shuffled: Vec<_> = order
        .iter()
        .map(|&i| std::mem::take(&mut events[i]))
        .collect();
    for event in &shuffled {
        app.send_event(event).await;
    }
    app.clock.set(T0 + 10 * MINUTE);
    let m = app.get_ok("/api/agents/metrics/current").await;
    assert_eq!(m["executions_today"], 3);
    approx(&m["success_rate"], 2.0 / 3.0);
    assert_eq!(m["avg_duration_ms"], 3333);
    assert_eq!(m["tokens_used_today"], 16_500);
    let ag1 = app.get_ok("/api/agents/ag-1").await;
    assert_eq!(ag1["description"], "Find config");
    assert_eq!(ag1["tool_use_id"], "k1");
    let ag2 = app.get_ok("/api/agents/ag-2").await;
    assert_eq!(ag2["tool_use_id"], "k2");
    let u = app.get_ok("/api/agents/tools/usage").await;
    assert_eq!(u["total_calls"], 8);
}

async fn a_post_before_its_pre_and_a_repeated_pre_make_one_tool_call(backend: Backend) {
    // A PreToolUse inserts its call outright unless its agent already has one with that id:
    // here the PostToolUse overtook it, then the PreToolUse came twice (a retry with a new
    // event id). Still one call, started at the Pre, ended at the Post, counted once.
    let app = TestApp::spawn_on(backend).await;
    let e = |event: &str, at: i64, extra: Value| fixtures::envelope("p", "P1", event, at, extra);
    for event in [
        e(
            "PostToolUse",
            900,
            fixtures::post_tool("Grep", "g1", json!({"ok": true})),
        ),
        e(
            "PreToolUse",
            100,
            fixtures::pre_tool("Grep", "g1", json!({"pattern": "x"})),
        ),
        e(
            "PreToolUse",
            100,
            fixtures::pre_tool("Grep", "g1", json!({"pattern": "x"})),
        ),
        e(
            "PreToolUse",
            1_000,
            fixtures::pre_tool("Read", "r1", json!({})),
        ),
    ] {
        app.send_event(&event).await;
    }
    app.clock.set(T0 + MINUTE);
    let main = app.get_ok("/api/agents/P1").await;
    let calls = main["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2, "{main}");
    assert_eq!(calls[0]["tool_use_id"], "g1");
    assert_eq!(calls[0]["status"], "succeeded");
    assert_eq!(calls[0]["started_at"], T0 + 100);
    assert_eq!(calls[0]["ended_at"], T0 + 900);
    assert_eq!(
        calls[0]["duration_ms"], 40,
        "the hook's own duration_ms wins"
    );
    assert_eq!(calls[1]["tool_use_id"], "r1");
    assert_eq!(calls[1]["status"], "running");
    assert_eq!(main["current_tool"], "Read");
    let usage = app.get_ok("/api/agents/tools/usage").await;
    assert_eq!(usage["total_calls"], 2, "{usage}");
}

async fn old_clients_without_subagent_events_still_get_executions(backend: Backend) {
    // Before 2026-01 Claude Code sent no SubagentStart and no agent_id: the Task tool's
    // Pre/Post pair is all there is. Its totalDurationMs is the duration.
    let app = TestApp::spawn_on(backend).await;
    let e =
        |event: &str, at: i64, extra: Value| fixtures::envelope("legacy", "L1", event, at, extra);
    for event in [
        e(
            "PreToolUse",
            0,
            fixtures::pre_tool("Task", "k9", json!({"subagent_type": "Plan"})),
        ),
        e(
            "PostToolUse",
            8_000,
            fixtures::post_tool(
                "Task",
                "k9",
                json!({"totalDurationMs": 7_000,
            "usage": {"input_tokens": 100, "output_tokens": 100}}),
            ),
        ),
        e("SubagentStop", 8_100, json!({"stop_hook_active": false})),
    ] {
        app.send_event(&event).await;
    }
    app.clock.set(T0 + MINUTE);
    let m = app.get_ok("/api/agents/metrics/current").await;
    assert_eq!(m["executions_today"], 1);
    assert_eq!(m["avg_duration_ms"], 7_000);
    assert_eq!(m["tokens_used_today"], 200);
    assert_eq!(m["agent_type_breakdown"][0]["type"], "Plan");
}

async fn reported_lifecycles_use_the_origin_routes(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let started = app
        .post_json(
            "/api/agents/start",
            &json!({"agent_name": "indexer", "agent_type": "batch", "session_id": "R1",
                "source_app": "ops", "task_description": "Index the repo", "tools": ["Read"]}),
        )
        .await;
    assert_eq!(started.status(), 200);
    let agent_id = started.json::<Value>().await.unwrap()["agent_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let m = app.get_ok("/api/agents/metrics/current").await;
    assert_eq!(m["active_agents"], 2, "the agent and its session: {m}");
    assert_eq!(m["executions_today"], 0);

    let completion = json!({"agent_id": agent_id, "agent_name": "indexer", "agent_type": "batch",
        "duration_ms": 1234, "token_usage": {"input_tokens": 1_000_000}, "tools_used": ["Read", "Grep"]});
    let done = app.post_json("/api/agents/complete", &completion).await;
    assert_eq!(done.status(), 200);
    assert_eq!(
        done.json::<Value>().await.unwrap(),
        json!({"success": true, "recorded": true, "agent_id": agent_id})
    );
    // Completing twice never makes a second execution.
    let again = app.post_json("/api/agents/complete", &completion).await;
    assert_eq!(again.status(), 200);

    let m = app.get_ok("/api/agents/metrics/current").await;
    assert_eq!(m["executions_today"], 1);
    assert_eq!(m["avg_duration_ms"], 1234);
    assert_eq!(m["tokens_used_today"], 1_000_000);
    approx(&m["estimated_cost_today"], 3.0);
    let u = app.get_ok("/api/agents/tools/usage").await;
    assert_eq!(u["total_calls"], 2);
    let unknown = app
        .post_json("/api/agents/complete", &json!({"agent_id": "nope"}))
        .await;
    // An unknown agent is answered 200 and recorded nowhere (issue 16: the TTS fork's
    // subagent_stop.py sends such reports routinely).
    assert_eq!(unknown.status(), 200);
    assert_eq!(unknown.json::<Value>().await.unwrap()["recorded"], false);
    let after = app.get_ok("/api/agents/metrics/current").await;
    assert_eq!(after["executions_today"], 1);
}

crate::on_each_store!(
    metrics_match_hand_computed_values,
    timeline_buckets_are_utc_and_zero_filled,
    distribution_and_tool_usage_match_hand_computed_values,
    agents_and_sessions_show_each_lifecycle,
    idle_subagents_time_out_and_revive_when_seen_again,
    events_arriving_out_of_order_give_the_same_lifecycle,
    a_post_before_its_pre_and_a_repeated_pre_make_one_tool_call,
    old_clients_without_subagent_events_still_get_executions,
    reported_lifecycles_use_the_origin_routes,
);
