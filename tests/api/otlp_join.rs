//! The join of Claude Code's telemetry with its hook events, on both stores: a hand-built
//! session (two prompts, a subagent, a failed tool, an API error with a retry) whose OTLP
//! records arrive before, between and after its hooks, a retried export, the same requests as
//! counters, and a transcript estimate. Cost and tokens per session, prompt, agent and model
//! must equal the hand count below, never doubled.

use serde_json::{Value, json};

use crate::fixtures::{envelope, in_subagent, post_tool, pre_tool};
use crate::helpers::{Backend, T0, TestApp, approx};

const SESSION: &str = "J-session";
const APP: &str = "proj-join";
const OPUS: &str = "claude-opus-4-1";
const HAIKU: &str = "claude-haiku-4-5";
const SONNET: &str = "claude-sonnet-4-6";

/// One `api_request` as the test sends it, and as the hand count reads it.
struct Request {
    at_ms: i64,
    prompt: &'static str,
    model: &'static str,
    /// `query_source` as Claude Code sends it.
    source: &'static str,
    cost_usd: f64,
    /// input, output, cache read, cache creation.
    tokens: [i64; 4],
    duration_ms: i64,
}

const REQUESTS: [Request; 7] = [
    // Prompt 1, the main agent, around the failing Bash call.
    Request {
        at_ms: 1_800,
        prompt: "P1",
        model: OPUS,
        source: "repl_main_thread",
        cost_usd: 0.10,
        tokens: [100, 50, 1_000, 200],
        duration_ms: 1_500,
    },
    Request {
        at_ms: 3_500,
        prompt: "P1",
        model: OPUS,
        source: "repl_main_thread",
        cost_usd: 0.05,
        tokens: [10, 20, 1_500, 0],
        duration_ms: 900,
    },
    // The Explore subagent's two requests.
    Request {
        at_ms: 5_500,
        prompt: "P1",
        model: HAIKU,
        source: "agent:builtin:Explore",
        cost_usd: 0.01,
        tokens: [300, 40, 0, 0],
        duration_ms: 400,
    },
    Request {
        at_ms: 8_000,
        prompt: "P1",
        model: HAIKU,
        source: "agent:builtin:Explore",
        cost_usd: 0.02,
        tokens: [200, 60, 100, 0],
        duration_ms: 600,
    },
    // After an api_error (three attempts), the request that went through.
    Request {
        at_ms: 9_900,
        prompt: "P1",
        model: OPUS,
        source: "repl_main_thread",
        cost_usd: 0.03,
        tokens: [5, 30, 1_600, 0],
        duration_ms: 2_000,
    },
    // Prompt 2, on another model.
    Request {
        at_ms: 21_500,
        prompt: "P2",
        model: SONNET,
        source: "repl_main_thread",
        cost_usd: 0.04,
        tokens: [50, 70, 0, 300],
        duration_ms: 1_200,
    },
    Request {
        at_ms: 25_000,
        prompt: "P2",
        model: SONNET,
        source: "repl_main_thread",
        cost_usd: 0.06,
        tokens: [80, 90, 400, 0],
        duration_ms: 1_300,
    },
];

fn attribute(key: &str, value: Value) -> Value {
    json!({"key": key, "value": value})
}

fn text(s: &str) -> Value {
    json!({ "stringValue": s })
}

fn record(name: &str, at_ms: i64, prompt: &str, extra: Vec<Value>) -> Value {
    let mut attributes = vec![
        attribute("session.id", text(SESSION)),
        attribute("user.email", text("dev@example.com")),
        attribute("organization.id", text("org-1")),
        attribute("event.name", text(name)),
        attribute("prompt.id", text(prompt)),
    ];
    attributes.extend(extra);
    json!({
        "timeUnixNano": format!("{}", (T0 + at_ms) * 1_000_000),
        "body": text(&format!("claude_code.{name}")),
        "attributes": attributes,
    })
}

fn api_request(r: &Request) -> Value {
    let [input, output, cache_read, cache_creation] = r.tokens;
    let mut extra = vec![
        attribute("model", text(r.model)),
        attribute("cost_usd", json!({"doubleValue": r.cost_usd})),
        attribute("input_tokens", json!({"intValue": input})),
        // The value-type quirks: a numeric string and a double for counts.
        attribute("output_tokens", text(&output.to_string())),
        attribute(
            "cache_read_tokens",
            json!({"doubleValue": cache_read as f64}),
        ),
        attribute("cache_creation_tokens", json!({"intValue": cache_creation})),
        attribute("duration_ms", json!({"intValue": r.duration_ms})),
        attribute("query_source", text(r.source)),
    ];
    if let Some(agent) = r.source.strip_prefix("agent:builtin:") {
        extra.push(attribute("agent.name", text(agent)));
    }
    record("api_request", r.at_ms, r.prompt, extra)
}

fn api_error() -> Value {
    record(
        "api_error",
        9_800,
        "P1",
        vec![
            attribute("model", text(OPUS)),
            attribute("error", text("Overloaded")),
            attribute("status_code", json!({"intValue": 529})),
            attribute("attempt", json!({"intValue": 3})),
            attribute("duration_ms", json!({"intValue": 5_000})),
            attribute("query_source", text("repl_main_thread")),
        ],
    )
}

fn tool_result(at_ms: i64, prompt: &str, tool: &str, id: &str, success: bool) -> Value {
    record(
        "tool_result",
        at_ms,
        prompt,
        vec![
            attribute("tool_name", text(tool)),
            attribute("tool_use_id", text(id)),
            attribute("success", text(if success { "true" } else { "false" })),
            attribute("duration_ms", text("40")),
        ],
    )
}

fn tool_decision(at_ms: i64, prompt: &str, tool: &str, id: &str) -> Value {
    record(
        "tool_decision",
        at_ms,
        prompt,
        vec![
            attribute("tool_name", text(tool)),
            attribute("tool_use_id", text(id)),
            attribute("decision", text("accept")),
            attribute("source", text("config")),
        ],
    )
}

fn logs(records: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({"resourceLogs": [{
        "resource": {"attributes": [attribute("service.name", text("claude-code"))]},
        "scopeLogs": [{
            "scope": {"name": "com.anthropic.claude_code.events"},
            "logRecords": records,
        }],
    }]}))
    .unwrap()
}

/// The same requests again, as Claude Code's cost and token counters (one delta per model).
fn counters() -> Vec<u8> {
    let mut cost_points = Vec::new();
    let mut token_points = Vec::new();
    for model in [OPUS, HAIKU, SONNET] {
        let of_model: Vec<&Request> = REQUESTS.iter().filter(|r| r.model == model).collect();
        let attributes = |kind: Option<&str>| {
            let mut list = vec![
                attribute("session.id", text(SESSION)),
                attribute("user.email", text("dev@example.com")),
                attribute("model", text(model)),
            ];
            if model == HAIKU {
                list.push(attribute("query_source", text("subagent")));
                list.push(attribute("agent.name", text("Explore")));
            }
            if let Some(kind) = kind {
                list.push(attribute("type", text(kind)));
            }
            list
        };
        let point = |kind: Option<&str>, value: f64| {
            json!({
                "attributes": attributes(kind),
                "startTimeUnixNano": format!("{}", T0 * 1_000_000),
                "timeUnixNano": format!("{}", (T0 + 59_000) * 1_000_000),
                "asDouble": value,
            })
        };
        cost_points.push(point(None, of_model.iter().map(|r| r.cost_usd).sum()));
        for (i, kind) in ["input", "output", "cacheRead", "cacheCreation"]
            .iter()
            .enumerate()
        {
            let sum: i64 = of_model.iter().map(|r| r.tokens[i]).sum();
            token_points.push(point(Some(kind), sum as f64));
        }
    }
    serde_json::to_vec(&json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "claude_code.cost.usage", "sum": {"aggregationTemporality": 1,
            "isMonotonic": true, "dataPoints": cost_points}},
        {"name": "claude_code.token.usage", "sum": {"aggregationTemporality": 1,
            "isMonotonic": true, "dataPoints": token_points}},
    ]}]}]}))
    .unwrap()
}

/// The session's hooks, in two parts, with a transcript estimate on each Stop.
fn hooks() -> (Vec<Value>, Vec<Value>) {
    let e = |event: &str, at: i64, extra: Value| envelope(APP, SESSION, event, at, extra);
    let with_prompt = |mut fields: Value, prompt: &str| {
        fields["prompt_id"] = json!(prompt);
        fields
    };
    let stop = |at: i64, prompt: &str| {
        let mut stop = e(
            "Stop",
            at,
            with_prompt(json!({"stop_hook_active": false}), prompt),
        );
        stop["transcript_usage"] = json!({OPUS: {"input_tokens": 900, "output_tokens": 400}});
        stop
    };
    let first = vec![
        e(
            "SessionStart",
            0,
            json!({"source": "startup", "model": OPUS}),
        ),
        e(
            "UserPromptSubmit",
            1_000,
            with_prompt(json!({"prompt": "fix the build"}), "P1"),
        ),
        e(
            "PreToolUse",
            2_000,
            with_prompt(
                pre_tool("Bash", "b1", json!({"command": "cargo test"})),
                "P1",
            ),
        ),
        e(
            "PostToolUseFailure",
            3_000,
            json!({"tool_name": "Bash", "tool_use_id": "b1", "tool_input": {},
                   "error": "exit 1", "prompt_id": "P1"}),
        ),
        e(
            "PreToolUse",
            4_000,
            pre_tool(
                "Task",
                "k1",
                json!({"subagent_type": "Explore", "prompt": "find it"}),
            ),
        ),
        e(
            "SubagentStart",
            4_500,
            json!({"agent_id": "ag-explore", "agent_type": "Explore"}),
        ),
        e(
            "PreToolUse",
            5_000,
            in_subagent("ag-explore", "Explore", pre_tool("Grep", "g1", json!({}))),
        ),
    ];
    let second = vec![
        e(
            "PostToolUse",
            6_000,
            in_subagent("ag-explore", "Explore", post_tool("Grep", "g1", json!({}))),
        ),
        e(
            "SubagentStop",
            9_000,
            json!({"agent_id": "ag-explore", "agent_type": "Explore", "stop_hook_active": false}),
        ),
        e(
            "PostToolUse",
            9_500,
            post_tool(
                "Task",
                "k1",
                json!({"totalTokens": 800, "usage": {"input_tokens": 500, "output_tokens": 300}}),
            ),
        ),
        stop(10_000, "P1"),
        e(
            "UserPromptSubmit",
            20_000,
            with_prompt(json!({"prompt": "now the docs"}), "P2"),
        ),
        e("PreToolUse", 21_000, pre_tool("Read", "r1", json!({}))),
        e("PostToolUse", 22_000, post_tool("Read", "r1", json!({}))),
        stop(30_000, "P2"),
    ];
    (first, second)
}

async fn send_all(app: &TestApp, events: &[Value]) {
    for event in events {
        app.send_event(event).await;
    }
}

async fn post_logs(app: &TestApp, body: Vec<u8>) {
    let response = app.post_raw("/v1/logs", body).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

fn cost_of(requests: &[&Request]) -> f64 {
    requests.iter().map(|r| r.cost_usd).sum()
}

fn tokens_of(requests: &[&Request]) -> [i64; 4] {
    let mut sum = [0; 4];
    for r in requests {
        for (s, n) in sum.iter_mut().zip(r.tokens) {
            *s += n;
        }
    }
    sum
}

fn assert_tokens(answer: &Value, expected: [i64; 4], what: &str) {
    let [input, output, cache_read, cache_creation] = expected;
    assert_eq!(answer["input"], input, "{what}: {answer}");
    assert_eq!(answer["output"], output, "{what}: {answer}");
    assert_eq!(answer["cache_read"], cache_read, "{what}: {answer}");
    assert_eq!(answer["cache_creation"], cache_creation, "{what}: {answer}");
    assert_eq!(
        answer["total"],
        input + output + cache_read + cache_creation,
        "{what}: {answer}"
    );
}

fn usage_row<'a>(answer: &'a Value, key: &str) -> &'a Value {
    answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["key"] == key)
        .unwrap_or_else(|| panic!("no usage row {key}: {answer}"))
}

async fn telemetry_joins_hooks_per_session_prompt_agent_and_model(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let (first_hooks, second_hooks) = hooks();
    let requests: Vec<&Request> = REQUESTS.iter().collect();

    // Before any hook: prompt 1's main-agent requests and the failed tool's result.
    post_logs(
        &app,
        logs(vec![
            api_request(&REQUESTS[0]),
            api_request(&REQUESTS[1]),
            tool_decision(1_950, "P1", "Bash", "b1"),
            tool_result(3_000, "P1", "Bash", "b1", false),
        ]),
    )
    .await;
    send_all(&app, &first_hooks).await;
    // Between the hooks: the subagent's requests, the error and its retry, sent twice (an
    // exporter retrying a batch it got no answer for).
    let between = logs(vec![
        api_request(&REQUESTS[2]),
        api_request(&REQUESTS[3]),
        tool_result(6_000, "P1", "Grep", "g1", true),
        api_error(),
        api_request(&REQUESTS[4]),
    ]);
    post_logs(&app, between.clone()).await;
    post_logs(&app, between).await;
    send_all(&app, &second_hooks).await;
    // After every hook: prompt 2, and the same requests once more as counters.
    post_logs(
        &app,
        logs(vec![
            api_request(&REQUESTS[5]),
            tool_result(22_000, "P2", "Read", "r1", true),
            api_request(&REQUESTS[6]),
        ]),
    )
    .await;
    let response = app.post_raw("/v1/metrics", counters()).await;
    assert_eq!(response.status(), 200);

    // The session: every request once, not the counters, not the transcript estimate.
    let session = app.get_ok(&format!("/api/sessions/{SESSION}")).await;
    assert_eq!(session["cost_source"], "telemetry", "{session}");
    approx(&session["cost_usd"], 0.31);
    assert_eq!(session["telemetry"]["from"], "events");
    assert_eq!(session["telemetry"]["requests"], 7);
    assert_eq!(session["telemetry"]["errors"], 1);
    assert_tokens(
        &session["telemetry"]["tokens"],
        tokens_of(&requests),
        "session",
    );

    // Per prompt, joined on prompt.id.
    let prompts = session["prompts"].as_array().unwrap();
    assert_eq!(prompts.len(), 2, "{session}");
    for (answer, prompt) in prompts.iter().zip(["P1", "P2"]) {
        let of_prompt: Vec<&Request> = REQUESTS.iter().filter(|r| r.prompt == prompt).collect();
        assert_eq!(answer["prompt_id"], prompt);
        approx(&answer["cost_usd"], cost_of(&of_prompt));
        assert_eq!(answer["requests"], of_prompt.len());
        assert_tokens(&answer["tokens"], tokens_of(&of_prompt), prompt);
    }
    assert_eq!(prompts[0]["errors"], 1, "the error is prompt 1's");
    approx(&prompts[0]["cost_usd"], 0.21);
    approx(&prompts[1]["cost_usd"], 0.10);

    // Per agent: the subagent's requests are its own, the rest the main agent's.
    let agents = session["agents"].as_array().unwrap();
    let agent = |kind: &str| {
        agents
            .iter()
            .find(|a| a["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} agent: {session}"))
    };
    let explore: Vec<&Request> = REQUESTS.iter().filter(|r| r.model == HAIKU).collect();
    let main: Vec<&Request> = REQUESTS.iter().filter(|r| r.model != HAIKU).collect();
    for (answer, expected, name) in [
        (agent("Explore"), &explore, "Explore"),
        (agent("main"), &main, "main"),
    ] {
        assert_eq!(answer["cost_source"], "telemetry", "{name}: {answer}");
        approx(&answer["cost_usd"], cost_of(expected));
        assert_eq!(answer["telemetry"]["requests"], expected.len(), "{name}");
        assert_tokens(&answer["telemetry"]["tokens"], tokens_of(expected), name);
    }
    approx(&agent("Explore")["cost_usd"], 0.03);
    approx(&agent("main")["cost_usd"], 0.28);
    // The agents list says the same.
    let listed = app.get_ok("/api/agents?status=all&limit=100").await;
    let listed_explore = listed
        .as_array()
        .or_else(|| listed["agents"].as_array())
        .unwrap()
        .iter()
        .find(|a| a["type"] == "Explore")
        .unwrap_or_else(|| panic!("no Explore agent listed: {listed}"))
        .clone();
    approx(&listed_explore["cost_usd"], 0.03);
    assert_eq!(listed_explore["cost_source"], "telemetry");

    // Per model and per agent type, from the rollups.
    let range = format!("start={}&end={}", T0 - 3_600_000, T0 + 3_600_000);
    let by_model = app
        .get_ok(&format!("/api/usage?group_by=model&{range}"))
        .await;
    assert_eq!(by_model["group_by"], "model");
    assert_eq!(by_model["rows"].as_array().unwrap().len(), 3, "{by_model}");
    for model in [OPUS, HAIKU, SONNET] {
        let of_model: Vec<&Request> = REQUESTS.iter().filter(|r| r.model == model).collect();
        let row = usage_row(&by_model, model);
        approx(&row["cost_usd"], cost_of(&of_model));
        assert_eq!(row["cost_source"], "telemetry", "{row}");
        assert_eq!(row["requests"], of_model.len(), "{row}");
        let [input, output, cache_read, cache_creation] = tokens_of(&of_model);
        assert_eq!(row["input_tokens"], input, "{row}");
        assert_eq!(row["output_tokens"], output, "{row}");
        assert_eq!(row["cache_read_tokens"], cache_read, "{row}");
        assert_eq!(row["cache_creation_tokens"], cache_creation, "{row}");
        assert!(row["latency_p50_ms"].as_i64().unwrap() > 0, "{row}");
    }
    assert_eq!(
        usage_row(&by_model, OPUS)["errors"],
        1,
        "errors count under their model"
    );
    assert_eq!(usage_row(&by_model, SONNET)["errors"], 0);
    // Sonnet's two latencies, 1200 and 1300 ms: the median within the histogram's 9 %.
    let p50 = usage_row(&by_model, SONNET)["latency_p50_ms"]
        .as_i64()
        .unwrap();
    assert!((1_092..=1_308).contains(&p50), "p50 {p50}");

    let by_type = app
        .get_ok(&format!("/api/usage?group_by=agent_type&{range}"))
        .await;
    approx(&usage_row(&by_type, "Explore")["cost_usd"], 0.03);
    approx(&usage_row(&by_type, "main")["cost_usd"], 0.28);
    let by_session = app
        .get_ok(&format!("/api/usage?group_by=session&{range}"))
        .await;
    approx(&usage_row(&by_session, SESSION)["cost_usd"], 0.31);
    let by_app = app
        .get_ok(&format!("/api/usage?group_by=app&{range}"))
        .await;
    approx(&usage_row(&by_app, APP)["cost_usd"], 0.31);
    assert_eq!(usage_row(&by_app, APP)["cost_source"], "telemetry");

    // The cards: the same cost, measured.
    let cards = app
        .get_ok(&format!("/api/agents/metrics/current?{range}"))
        .await;
    approx(&cards["cost"]["cost_usd"], 0.31);
    assert_eq!(cards["cost"]["cost_source"], "telemetry", "{cards}");
    assert_eq!(cards["cost"]["api_requests"], 7);

    // The session's steps in time order: the API requests between its tool calls, each
    // request with its run, each tool call with what telemetry said of it.
    let activity = app
        .get_ok(&format!("/api/sessions/{SESSION}/activity"))
        .await;
    let steps: Vec<String> = activity["activity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| match step["kind"].as_str().unwrap() {
            "tool" => format!(
                "tool {} {}",
                step["tool_name"].as_str().unwrap(),
                step["agent_id"].as_str().unwrap()
            ),
            kind => format!("{kind} {}", step["agent_id"].as_str().unwrap()),
        })
        .collect();
    let explore_run = agent("Explore")["id"].as_str().unwrap().to_owned();
    let expected = [
        "api_request J-session".to_owned(),
        "tool Bash J-session".to_owned(),
        "api_request J-session".to_owned(),
        "tool Task J-session".to_owned(),
        format!("tool Grep {explore_run}"),
        format!("api_request {explore_run}"),
        format!("api_request {explore_run}"),
        "api_error J-session".to_owned(),
        "api_request J-session".to_owned(),
        "tool Read J-session".to_owned(),
        "api_request J-session".to_owned(),
        "api_request J-session".to_owned(),
    ];
    assert_eq!(steps, expected, "{activity}");
    let bash = &activity["activity"][1];
    assert_eq!(bash["status"], "failed");
    assert_eq!(bash["decision"], "accept");
    assert_eq!(bash["decision_source"], "config");
    assert_eq!(activity["activity"][7]["attempt"], 3);
    assert_eq!(activity["activity"][7]["status_code"], 529);

    // The telemetry is stored once however often it arrived.
    assert_eq!(
        app.count("SELECT count(*) FROM telemetry_events WHERE kind = 'api_request'"),
        7
    );
}

/// A session with hooks only keeps its estimate, and beside a measured one the total says
/// part of it is estimated.
async fn a_session_without_telemetry_is_estimated_beside_a_measured_one(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let mut stop = envelope("proj-est", "E-session", "Stop", 2_000, json!({}));
    stop["transcript_usage"] = json!({OPUS: {"input_tokens": 10_000, "output_tokens": 1_000}});
    send_all(
        &app,
        &[
            envelope("proj-est", "E-session", "SessionStart", 0, json!({})),
            stop,
        ],
    )
    .await;
    // An API error measures no cost: the estimate still counts, beside the error.
    let mut error = api_error();
    error["attributes"][0] = attribute("session.id", text("E-session"));
    post_logs(&app, logs(vec![api_request(&REQUESTS[0]), error])).await;

    let estimated = app.get_ok("/api/sessions/E-session").await;
    assert_eq!(estimated["cost_source"], "estimate");
    let estimate = estimated["cost_usd"].as_f64().unwrap();
    assert!(estimate > 0.0, "{estimated}");

    let range = format!("start={}&end={}", T0 - 3_600_000, T0 + 3_600_000);
    let by_session = app
        .get_ok(&format!("/api/usage?group_by=session&{range}"))
        .await;
    let row = usage_row(&by_session, "E-session");
    assert_eq!(row["cost_source"], "estimate", "{row}");
    approx(&row["cost_usd"], estimate);
    assert_eq!(row["requests"], 0);
    assert_eq!(row["errors"], 1, "{row}");
    assert_eq!(row["input_tokens"], 10_000);
    let measured = usage_row(&by_session, SESSION);
    assert_eq!(measured["cost_source"], "telemetry");
    approx(&measured["cost_usd"], 0.10);

    let cards = app
        .get_ok(&format!("/api/agents/metrics/current?{range}"))
        .await;
    approx(&cards["cost"]["cost_usd"], estimate + 0.10);
    assert_eq!(cards["cost"]["cost_source"], "estimate", "{cards}");
    approx(&cards["cost"]["estimated_cost_usd"], estimate);
}

crate::on_each_store!(
    telemetry_joins_hooks_per_session_prompt_agent_and_model,
    a_session_without_telemetry_is_estimated_beside_a_measured_one,
);

#[tokio::test]
async fn people_are_shown_only_behind_a_read_token() {
    let range = format!("start={}&end={}", T0 - 3_600_000, T0 + 3_600_000);
    let open = TestApp::spawn().await;
    post_logs(&open, logs(vec![api_request(&REQUESTS[0])])).await;
    for path in [
        format!("/api/usage?group_by=user&{range}"),
        format!("/api/usage?group_by=model&user=dev@example.com&{range}"),
        format!("/api/usage/timeline?organization_id=org-1&{range}"),
    ] {
        let response = open.client.get(open.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), 403, "{path}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .contains("--read-token")
                || body.to_string().contains("--read-token"),
            "{body}"
        );
    }
    let by_model = open
        .get_ok(&format!("/api/usage?group_by=model&{range}"))
        .await;
    assert!(
        !by_model.to_string().contains("dev@example.com"),
        "{by_model}"
    );

    let guarded = TestApp::spawn_with(|c| c.tokens.read = vec!["reader".to_owned()]).await;
    post_logs(&guarded, logs(vec![api_request(&REQUESTS[0])])).await;
    let by_user: Value = guarded
        .client
        .get(guarded.url(&format!("/api/usage?group_by=user&{range}")))
        .bearer_auth("reader")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    approx(&usage_row(&by_user, "dev@example.com")["cost_usd"], 0.10);
    let unknown = guarded
        .client
        .get(guarded.url("/api/usage?group_by=email"))
        .bearer_auth("reader")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
}

#[tokio::test]
async fn the_usage_timeline_has_latency_and_errors_per_bucket() {
    let app = TestApp::spawn().await;
    post_logs(
        &app,
        logs(vec![
            api_request(&REQUESTS[0]),
            api_request(&REQUESTS[5]),
            api_error(),
        ]),
    )
    .await;
    let answer = app
        .get_ok(&format!(
            "/api/usage/timeline?start={}&end={}&bucket=1m",
            T0,
            T0 + 5 * 60_000
        ))
        .await;
    let points = answer["timeline"].as_array().unwrap();
    assert_eq!(points.len(), 5, "{answer}");
    let first = &points[0];
    assert_eq!(first["timestamp_ms"], T0);
    assert_eq!(first["requests"], 2, "{answer}");
    assert_eq!(first["errors"], 1);
    approx(&first["cost_usd"], 0.14);
    assert!(
        first["latency_p95_ms"].as_i64().unwrap() >= 1_092,
        "{first}"
    );
    assert_eq!(points[1]["requests"], 0);
    assert_eq!(points[1]["latency_p50_ms"], Value::Null);
}
