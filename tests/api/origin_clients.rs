//! The origin's own hook clients, pointed at hookwatch, lose nothing and count right.
//!
//! The request bodies are built as the clients build them:
//! - the upstream (disler/claude-code-hooks-multi-agent-observability,
//!   `.claude/hooks/send_event.py`): `{source_app, session_id, hook_event_type, payload,
//!   timestamp, model_name}` where `model_name` is `""` until the transcript holds an assistant
//!   message, plus the payload's `tool_name`, `tool_use_id`, `error`, `is_interrupt`,
//!   `agent_id`, `agent_type`, `stop_hook_active`, `source`, `reason`, … copied to the top level;
//! - the TTS fork (triepod-ai/multi-agent-observability-with-TTS, `utils/http_client.py`
//!   `create_hook_event`): `session_id` rewritten to `<id>_<pid>_<unixtime>` on every event,
//!   `payload.metadata = {original_session_id, process_id, hostname, user, timestamp}`, no
//!   `model_name`; and its `subagent_start.py` / `subagent_stop.py`, which report agents to
//!   `/api/agents/start|complete` with ids that are often `null` or unknown.

use serde_json::{Value, json};

use crate::fixtures;
use crate::helpers::{Backend, T0, TestApp};

/// Claude Code's own session id in every test here.
const SESSION: &str = "6f1d2c4e-0b7a-4c1e-9a57-3f2e8d9b1a20";
const MODEL: &str = "claude-sonnet-4-5";

/// Fields `send_event.py` copies from the hook input to the envelope's top level.
const UPSTREAM_TOP_LEVEL: [&str; 13] = [
    "tool_name",
    "tool_use_id",
    "error",
    "is_interrupt",
    "permission_suggestions",
    "agent_id",
    "agent_type",
    "agent_transcript_path",
    "stop_hook_active",
    "notification_type",
    "custom_instructions",
    "source",
    "reason",
];

/// The upstream's envelope around Claude Code's hook input `input`, at `T0 + at_ms`.
fn upstream(event: &str, at_ms: i64, model_name: &str, fields: Value) -> Value {
    let input = fixtures::hook(SESSION, event, fields);
    let mut envelope = json!({
        "source_app": "my-app",
        "session_id": input["session_id"],
        "hook_event_type": event,
        "payload": input,
        "timestamp": T0 + at_ms,
        "model_name": model_name,
    });
    for field in UPSTREAM_TOP_LEVEL {
        if let Some(value) = envelope["payload"].get(field).cloned() {
            envelope[field] = value;
        }
    }
    envelope
}

/// The TTS fork's envelope around Claude Code's hook input, sent by process `pid`.
fn fork(event: &str, at_ms: i64, pid: u32, fields: Value) -> Value {
    let mut payload = fixtures::hook(SESSION, event, fields);
    let unixtime = (T0 + at_ms) / 1000;
    payload["metadata"] = json!({
        "original_session_id": SESSION,
        "process_id": pid,
        "hostname": "devbox",
        "user": "dev",
        "timestamp": unixtime,
    });
    json!({
        "source_app": "claude-code",
        "session_id": format!("{SESSION}_{pid}_{unixtime}"),
        "hook_event_type": event,
        "payload": payload,
        "timestamp": T0 + at_ms,
    })
}

/// One Claude Code session as the hooks see it: a fresh start (no transcript yet, so the
/// upstream sends `model_name: ""`), two prompts, a Read, a failing Bash, a Task whose subagent
/// runs a Grep and is interrupted, and the session's end. `client` builds each envelope.
fn whole_session(client: impl Fn(&str, i64, &str, Value) -> Value) -> Vec<Value> {
    let no_model = "";
    vec![
        client(
            "SessionStart",
            0,
            no_model,
            json!({"source": "startup", "model": MODEL}),
        ),
        client(
            "UserPromptSubmit",
            1_000,
            no_model,
            json!({"prompt": "Find the flaky test"}),
        ),
        client(
            "PreToolUse",
            2_000,
            MODEL,
            fixtures::pre_tool("Read", "r1", json!({"file_path": "/src/lib.rs"})),
        ),
        client(
            "PostToolUse",
            2_500,
            MODEL,
            fixtures::post_tool("Read", "r1", json!({"content": "..."})),
        ),
        client(
            "PreToolUse",
            3_000,
            MODEL,
            fixtures::pre_tool("Bash", "b1", json!({"command": "cargo test"})),
        ),
        client(
            "PostToolUseFailure",
            4_000,
            MODEL,
            json!({"tool_name": "Bash", "tool_use_id": "b1", "tool_input": {"command": "cargo test"},
                   "error": "exit status 101", "is_interrupt": false}),
        ),
        client(
            "PreToolUse",
            5_000,
            MODEL,
            fixtures::pre_tool(
                "Task",
                "t1",
                json!({"subagent_type": "Explore", "description": "look for flaky tests", "prompt": "..."}),
            ),
        ),
        client(
            "SubagentStart",
            5_100,
            MODEL,
            json!({"agent_id": "ag-1", "agent_type": "Explore"}),
        ),
        client(
            "PreToolUse",
            6_000,
            MODEL,
            fixtures::in_subagent(
                "ag-1",
                "Explore",
                fixtures::pre_tool("Grep", "g1", json!({"pattern": "flaky"})),
            ),
        ),
        client(
            "PostToolUse",
            6_500,
            MODEL,
            fixtures::in_subagent(
                "ag-1",
                "Explore",
                fixtures::post_tool("Grep", "g1", json!({"matches": 3})),
            ),
        ),
        // The user interrupts the Task: its PostToolUseFailure says so, and no SubagentStop
        // comes.
        client(
            "PostToolUseFailure",
            8_000,
            MODEL,
            json!({"tool_name": "Task", "tool_use_id": "t1", "tool_input": {"subagent_type": "Explore"},
                   "error": "The user doesn't want to proceed with this tool use.", "is_interrupt": true}),
        ),
        client(
            "UserPromptSubmit",
            9_000,
            MODEL,
            json!({"prompt": "Never mind, stop here"}),
        ),
        client("Stop", 10_000, MODEL, json!({"stop_hook_active": false})),
        client(
            "SessionEnd",
            11_000,
            MODEL,
            json!({"reason": "prompt_input_exit"}),
        ),
    ]
}

/// What [`whole_session`] must come to, counted by hand: one session, ended, with 14 events,
/// 2 prompts and 4 tool calls (Read, Bash failed, Task failed, Grep in the subagent); one
/// subagent (Explore), failed by the interrupt, 5100 → 8000 ms = 2900 ms; no agent active.
async fn assert_one_session_counted_right(app: &TestApp) {
    let sessions = app.get_ok("/api/sessions").await;
    let sessions = sessions["sessions"].as_array().unwrap();
    assert_eq!(
        sessions.len(),
        1,
        "one Claude Code session is one session: {sessions:?}"
    );
    let session = &sessions[0];
    assert_eq!(session["session_id"], SESSION);
    assert_eq!(session["event_count"], 14);
    assert_eq!(session["prompt_count"], 2);
    assert_eq!(session["tool_call_count"], 4);
    assert_eq!(session["subagent_count"], 1);
    assert_eq!(session["started_at"], T0);
    assert_eq!(session["ended_at"], T0 + 11_000);
    assert_eq!(session["end_reason"], "prompt_input_exit");
    assert_eq!(session["model"], MODEL);

    let agents = app.get_ok("/api/agents").await;
    let agents = agents["agents"].as_array().unwrap();
    assert_eq!(
        agents.len(),
        2,
        "the main agent and one subagent: {agents:?}"
    );
    let subagent = agents.iter().find(|a| a["kind"] == "subagent").unwrap();
    assert_eq!(subagent["id"], "ag-1");
    assert_eq!(subagent["type"], "Explore");
    assert_eq!(subagent["status"], "failed");
    assert_eq!(subagent["duration_ms"], 2_900);

    let metrics = app.get_ok("/api/agents/metrics/current").await;
    assert_eq!(metrics["active_agents"], 0);
    assert_eq!(metrics["executions_today"], 1);
    assert_eq!(metrics["success_rate"], 0.0);
    assert_eq!(metrics["avg_duration_ms"], 2_900);

    let tools = app.get_ok("/api/agents/tools/usage").await;
    assert_eq!(tools["total_calls"], 4, "{tools}");
}

async fn the_upstreams_fresh_session_is_stored_whole(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    app.clock.set(T0 + 60_000);
    let session = whole_session(upstream);
    assert_eq!(
        session[0]["model_name"], "",
        "as the upstream sends a fresh session"
    );
    for envelope in &session {
        let saved = app.send_event(envelope).await;
        assert_eq!(saved["model_name"], envelope["model_name"], "kept as sent");
        assert_eq!(saved["session_id"], SESSION);
        assert!(saved.get("claude_session_id").is_none(), "{saved}");
    }
    let stored = app.get_ok("/events?limit=100").await;
    assert_eq!(stored["events"].as_array().unwrap().len(), 14);
    assert_eq!(stored["events"][0]["hook_event_type"], "SessionStart");
    assert_eq!(stored["events"][0]["model_name"], "");
    assert_one_session_counted_right(&app).await;
}

async fn the_forks_rewritten_session_ids_make_one_session(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    app.clock.set(T0 + 60_000);
    // Each hook runs as its own process.
    let session = whole_session(|event, at, _model, fields| {
        fork(event, at, 40_000 + at as u32 / 100, fields)
    });
    let mut sent_ids = Vec::new();
    for envelope in &session {
        let saved = app.send_event(envelope).await;
        assert_eq!(saved["session_id"], envelope["session_id"], "kept as sent");
        assert_eq!(saved["claude_session_id"], SESSION);
        assert_eq!(saved["payload"], envelope["payload"]);
        sent_ids.push(envelope["session_id"].as_str().unwrap().to_owned());
    }
    assert_one_session_counted_right(&app).await;

    // Filters match either id.
    let by_claude_id = app.get_ok(&format!("/events?session_id={SESSION}")).await;
    assert_eq!(by_claude_id["events"].as_array().unwrap().len(), 14);
    let by_sent_id = app
        .get_ok(&format!("/events?session_id={}", sent_ids[3]))
        .await;
    let by_sent_id = by_sent_id["events"].as_array().unwrap();
    assert_eq!(by_sent_id.len(), 1);
    assert_eq!(by_sent_id[0]["hook_event_type"], "PostToolUse");
    assert_eq!(by_sent_id[0]["session_id"], sent_ids[3]);
    let options = app.get_ok("/events/filter-options").await;
    assert_eq!(options["session_ids"], json!([SESSION]));
    assert_eq!(options["source_apps"], json!(["claude-code"]));
}

async fn the_forks_agent_reports_are_answered_200(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    // subagent_start.py: its own id, a name, no session, app or type.
    let start = app
        .post_json(
            "/api/agents/start",
            &json!({"agent_id": "ag_1795168800000_x1y2z3", "agent_name": "code-reviewer",
                    "task_description": "review the diff", "tools_granted": ["Read"],
                    "context_size": 512, "source": "user_command",
                    "display_name": "Reviewer Rex"}),
        )
        .await;
    assert_eq!(start.status(), 200);
    let started: Value = start.json().await.unwrap();
    assert_eq!(
        started["agent_id"], "ag_1795168800000_x1y2z3",
        "the caller's id is kept"
    );

    // subagent_stop.py, when it found no id from its start hook: agent_id null.
    let report = |agent_id: Value, status: &str| {
        json!({"agent_id": agent_id, "agent_name": "code-reviewer", "agent_type": "reviewer",
               "task_description": "", "duration": null, "duration_ms": 0,
               "result_summary": "", "error_occurred": status == "failure", "status": status,
               "files_affected": 0, "tests_run": 0, "tools_used": ["Read", "Grep"],
               "tool_calls": {"Read": 1, "Grep": 1},
               "token_usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0,
                               "estimated_cost": 0.0},
               "success_indicators": [], "performance_metrics": {}, "code_reviewed": false,
               "display_name": "Reviewer Rex"})
    };
    for unknown in [json!(null), json!("ag_nobody")] {
        let response = app
            .post_json("/api/agents/complete", &report(unknown.clone(), "success"))
            .await;
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["recorded"], false, "{answer}");
        assert_eq!(answer["agent_id"], unknown);
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("nothing was recorded")
        );
    }
    // With the id from its start: recorded, and its "failure" status fails the agent.
    let response = app
        .post_json(
            "/api/agents/complete",
            &report(json!("ag_1795168800000_x1y2z3"), "failure"),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["recorded"], true);
    let agent = app.get_ok("/api/agents/ag_1795168800000_x1y2z3").await;
    assert_eq!(agent["status"], "failed", "{agent}");
    assert_eq!(agent["name"], "code-reviewer");
    let metrics = app.get_ok("/api/agents/metrics/current").await;
    assert_eq!(metrics["executions_today"], 1);
}

async fn the_stream_starts_with_300_events_oldest_first(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let batch: Vec<Value> = (0..350)
        .map(|i| fixtures::envelope("a", "s", "Notification", i, json!({"n": i})))
        .collect();
    let response = app.post_json("/events/batch", &json!(batch)).await;
    assert_eq!(response.status(), 200);
    let url = format!("{}/stream", app.base_url.replace("http://", "ws://"));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let initial = crate::stream::next(&mut socket).await;
    assert_eq!(initial["type"], "initial");
    let events = initial["data"].as_array().unwrap();
    assert_eq!(events.len(), 300, "as the upstream sends");
    assert_eq!(events[0]["payload"]["n"], 50);
    assert_eq!(events[299]["payload"]["n"], 349);
}

/// The upstream's `send_event.py --add-chat` on Stop: the transcript's lines as a JSON array in
/// `chat`, here 3 MB, more than the event limit of 1 MiB.
fn upstream_stop_with_chat(at_ms: i64, megabytes: usize) -> Value {
    let mut stop = upstream("Stop", at_ms, MODEL, json!({"stop_hook_active": false}));
    let line = |n: usize| {
        json!({"type": if n.is_multiple_of(2) { "user" } else { "assistant" }, "uuid": format!("u{n}"),
               "message": {"role": if n.is_multiple_of(2) { "user" } else { "assistant" },
                           "content": [{"type": "text", "text": format!("<b>message {n}</b> {}", "lorem ipsum ".repeat(80))}]}})
    };
    let per_line = line(0).to_string().len();
    stop["chat"] = json!(
        (0..megabytes * 1_000_000 / per_line)
            .map(line)
            .collect::<Vec<_>>()
    );
    stop
}

async fn a_stop_with_a_3_mb_chat_is_stored_and_read_apart(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    app.clock.set(T0 + 60_000);
    let stop = upstream_stop_with_chat(10_000, 3);
    let chat_bytes = stop["chat"].to_string().len();
    assert!(chat_bytes > 2_900_000, "{chat_bytes}");
    let url = format!("{}/stream", app.base_url.replace("http://", "ws://"));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(crate::stream::next(&mut socket).await["type"], "initial");

    let saved = app.send_event(&stop).await;
    assert!(saved.get("chat").is_none(), "the answer carries no chat");
    assert_eq!(saved["chat_bytes"], chat_bytes);
    // The stream and the lists carry the chat's last messages, up to --stream-chat-bytes
    // (256 KiB), so the upstream's dashboard shows it; the whole chat is read apart.
    let is_its_tail = |event: &Value, what: &str| {
        assert_eq!(event["chat_bytes"], chat_bytes, "{what}");
        assert_eq!(event["chat_truncated"], true, "{what}");
        let tail = event["chat"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: no chat"));
        let sent = stop["chat"].as_array().unwrap();
        assert!(!tail.is_empty() && tail.len() < sent.len(), "{what}");
        assert_eq!(
            tail[..],
            sent[sent.len() - tail.len()..],
            "{what}: the newest messages"
        );
        let size = event["chat"].to_string().len();
        assert!(size <= 256 * 1024, "{what}: {size} bytes");
        // One more message would not have fitted.
        let next = sent[sent.len() - tail.len() - 1].to_string().len();
        assert!(size + next + 1 > 256 * 1024, "{what}: {size} bytes");
    };
    let live = crate::stream::next(&mut socket).await;
    assert_eq!(live["type"], "event");
    is_its_tail(&live["data"], "the stream");
    let listed = app.get_ok("/events").await;
    is_its_tail(&listed["events"][0], "/events");
    let recent = app.get_ok("/events/recent").await;
    is_its_tail(recent.as_array().unwrap().last().unwrap(), "/events/recent");
    let exported = app.get_text("/api/export").await;
    assert!(exported.len() < 100_000, "exports carry no chat");

    let id = saved["id"].as_i64().unwrap();
    let chat: Value =
        serde_json::from_str(&app.get_text(&format!("/events/{id}/chat")).await).unwrap();
    assert_eq!(chat, stop["chat"], "the chat reads back as sent");
    crate::helpers::expect_error(
        app.client
            .get(app.url("/events/999999/chat"))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;

    // Past --max-chat-bytes the chat is refused, naming it; past the event limit the rest is.
    let small = TestApp::spawn_on_with(backend, |c| c.limits.max_chat_bytes = 2_500_000).await;
    let error = crate::helpers::expect_error(small.post_json("/events", &stop).await, 413).await;
    assert_eq!(error["field"], "chat", "{error}");
    let mut huge_payload = upstream("Stop", 0, MODEL, json!({"blob": "x".repeat(1_100_000)}));
    huge_payload["chat"] = json!([]);
    let error =
        crate::helpers::expect_error(app.post_json("/events", &huge_payload).await, 413).await;
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("without its chat"),
        "{error}"
    );
}

/// The upstream's human-in-the-loop hook: its PreToolUse carries `humanInTheLoop`, and its
/// dashboard reads `humanInTheLoopStatus` (end to end in `tests/api/hitl.rs`).
async fn the_upstreams_permission_request_is_stored_pending(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    app.clock.set(T0 + 60_000);
    let mut request = upstream(
        "PreToolUse",
        1_000,
        MODEL,
        fixtures::pre_tool("Bash", "b1", json!({"command": "rm -rf dist"})),
    );
    request["humanInTheLoop"] = json!({
        "question": "Claude wants to run rm -rf dist. Allow?",
        "responseWebSocketUrl": "ws://localhost:8765/hitl/abc",
        "type": "permission",
        "timeout": 300,
        "requiresResponse": true,
    });
    let saved = app.send_event(&request).await;
    assert_eq!(
        saved["humanInTheLoop"], request["humanInTheLoop"],
        "kept as sent"
    );
    assert_eq!(saved["humanInTheLoopStatus"], json!({"status": "pending"}));
    let recent = app.get_ok("/events/recent").await;
    assert_eq!(
        recent[0]["humanInTheLoopStatus"],
        json!({"status": "pending"})
    );
}

/// The fields the fork's dashboard reads (issue 30): each tool usage item's `agents_using` (it
/// reads its length, and failed on an item without it), each timeline bucket's
/// `success_rate`; and `/events/recent` without a limit answers 300 events, as the upstream.
async fn the_forks_dashboard_finds_the_fields_it_reads(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let mut events = crate::fixtures::main_session();
    for n in 0..320 {
        let tool = crate::fixtures::pre_tool("Read", &format!("extra-{n}"), json!({}));
        events.push(crate::fixtures::envelope(
            "proj",
            "S-many",
            "PreToolUse",
            100 + n,
            tool,
        ));
    }
    for event in &events {
        app.send_event(event).await;
    }
    let range = format!(
        "start={}&end={}",
        crate::helpers::T0 - 3_600_000,
        crate::helpers::T0 + 3_600_000
    );
    let tools = app
        .get_ok(&format!("/api/agents/tools/usage?{range}"))
        .await;
    let items = tools["tools"].as_array().unwrap();
    assert!(!items.is_empty(), "{tools}");
    for item in items {
        let using = item["agents_using"]
            .as_array()
            .expect("agents_using on every item");
        assert!(!using.is_empty() && using.len() <= 5, "{item}");
    }
    let timeline = app
        .get_ok(&format!("/api/agents/metrics/timeline?{range}&bucket=60m"))
        .await;
    let buckets = timeline["timeline"].as_array().unwrap();
    assert!(
        buckets.iter().all(|b| b["success_rate"].is_number()),
        "{timeline}"
    );
    assert!(
        buckets
            .iter()
            .any(|b| b["success_rate"].as_f64().unwrap() > 0.0),
        "a bucket with executions has its rate: {timeline}"
    );
    let recent = app.get_ok("/events/recent").await;
    assert_eq!(recent.as_array().unwrap().len(), 300);
}

crate::on_each_store!(
    the_forks_dashboard_finds_the_fields_it_reads,
    the_upstreams_permission_request_is_stored_pending,
    a_stop_with_a_3_mb_chat_is_stored_and_read_apart,
    the_upstreams_fresh_session_is_stored_whole,
    the_forks_rewritten_session_ids_make_one_session,
    the_forks_agent_reports_are_answered_200,
    the_stream_starts_with_300_events_oldest_first,
);
