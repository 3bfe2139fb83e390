//! The join of Claude Code's telemetry with its hook events, on both stores: a hand-built
//! session (two prompts, a subagent, a failed tool, an API error with a retry) whose OTLP
//! records arrive before, between and after its hooks, a retried export, the same requests as
//! counters, and a transcript estimate. Cost and tokens per session, prompt, agent and model
//! must equal the hand count below, never doubled.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
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

/// The join session's telemetry in the three exports the join test sends: before any hook,
/// between the hooks, after them.
fn the_sessions_telemetry() -> [Vec<u8>; 3] {
    [
        logs(vec![
            api_request(&REQUESTS[0]),
            api_request(&REQUESTS[1]),
            tool_decision(1_950, "P1", "Bash", "b1"),
            tool_result(3_000, "P1", "Bash", "b1", false),
        ]),
        logs(vec![
            api_request(&REQUESTS[2]),
            api_request(&REQUESTS[3]),
            tool_result(6_000, "P1", "Grep", "g1", true),
            api_error(),
            api_request(&REQUESTS[4]),
        ]),
        logs(vec![
            api_request(&REQUESTS[5]),
            tool_result(22_000, "P2", "Read", "r1", true),
            api_request(&REQUESTS[6]),
        ]),
    ]
}

/// A session's API request spans, each `(start, end, cost, tokens)`, in start order.
fn request_spans(trace: &Value) -> Vec<(Value, Value, Value, Value)> {
    let mut spans: Vec<_> = trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "api_request")
        .map(|s| {
            (
                s["start_ms"].clone(),
                s["end_ms"].clone(),
                s["cost_usd"].clone(),
                s["tokens"].clone(),
            )
        })
        .collect();
    spans.sort_by_key(|s| s.0.as_i64());
    spans
}

/// A trace's tool spans by `tool_use_id`, each with how many spans it has.
fn tool_spans(trace: &Value) -> std::collections::BTreeMap<String, usize> {
    let mut ids = std::collections::BTreeMap::new();
    for span in trace["spans"].as_array().unwrap() {
        if span["kind"] == "tool" {
            *ids.entry(span["tool_use_id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    ids
}

/// Seen by both sources, a session's every number is what telemetry alone gives, plus what
/// only the hooks know (the Task call and its subagent): one server is sent the session's
/// telemetry only, the other the same telemetry interleaved with its hooks (whose transcript
/// estimates must not add to the measured cost).
async fn both_sources_give_what_telemetry_alone_gives_plus_the_hooks(backend: Backend) {
    let alone = TestApp::spawn_on(backend).await;
    let both = TestApp::spawn_on(backend).await;
    let [before, between, after] = the_sessions_telemetry();
    let (first_hooks, second_hooks) = hooks();
    for body in [&before, &between, &after] {
        post_logs(&alone, body.clone()).await;
    }
    post_logs(&both, before).await;
    send_all(&both, &first_hooks).await;
    post_logs(&both, between).await;
    send_all(&both, &second_hooks).await;
    post_logs(&both, after).await;
    for app in [&alone, &both] {
        let response = app.post_raw("/v1/metrics", counters()).await;
        assert_eq!(response.status(), 200);
    }

    let page_alone = alone.get_ok(&format!("/api/sessions/{SESSION}")).await;
    let page_both = both.get_ok(&format!("/api/sessions/{SESSION}")).await;
    assert_eq!(page_alone["seen_by"], "telemetry");
    assert_eq!(page_both["seen_by"], "both");
    for field in [
        "cost_usd",
        "cost_source",
        "total_tokens",
        "telemetry",
        "prompts",
        "counters",
    ] {
        assert_eq!(
            page_both[field], page_alone[field],
            "{field}: {page_both} against {page_alone}"
        );
    }
    approx(&page_both["cost_usd"], 0.31);
    // Tool calls: the three telemetry saw, and the Task call only the hooks saw.
    assert_eq!(page_alone["tool_call_count"], 3, "{page_alone}");
    assert_eq!(page_both["tool_call_count"], 4, "{page_both}");

    let trace_alone = alone
        .get_ok(&format!("/api/sessions/{SESSION}/trace"))
        .await;
    let trace_both = both.get_ok(&format!("/api/sessions/{SESSION}/trace")).await;
    assert_eq!(request_spans(&trace_both), request_spans(&trace_alone));
    // Seven requests and the error.
    assert_eq!(request_spans(&trace_both).len(), 8);
    let one_each = |ids: &[&str]| -> std::collections::BTreeMap<String, usize> {
        ids.iter().map(|id| ((*id).to_owned(), 1)).collect()
    };
    assert_eq!(tool_spans(&trace_alone), one_each(&["b1", "g1", "r1"]));
    assert_eq!(tool_spans(&trace_both), one_each(&["b1", "g1", "k1", "r1"]));

    let range = format!("start={}&end={}", T0 - 3_600_000, T0 + 3_600_000);
    for group in ["session", "model", "agent_type"] {
        let path = format!("/api/usage?group_by={group}&{range}");
        let (a, b) = (alone.get_ok(&path).await, both.get_ok(&path).await);
        assert_eq!(b["rows"], a["rows"], "by {group}");
    }
    let cards = "/api/agents/metrics/current?".to_owned() + &range;
    assert_eq!(
        both.get_ok(&cards).await["cost"],
        alone.get_ok(&cards).await["cost"]
    );
    let named = |tools: Vec<(String, i64)>| {
        tools
            .into_iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        named(tools_used(&alone).await),
        ["Bash 1", "Grep 1", "Read 1"]
    );
    assert_eq!(
        named(tools_used(&both).await),
        ["Bash 1", "Grep 1", "Read 1", "Task 1"]
    );
}

/// One of Claude Code's spans (beta tracing) in OTLP/JSON: `claude_code.{kind}` from `start`
/// to `end` (ms after `T0`), of the join session, with `extra` attributes.
fn traced(kind: &str, span_id: u64, (start, end): (i64, i64), extra: Vec<Value>) -> Value {
    let mut attributes = vec![
        attribute("session.id", text(SESSION)),
        attribute("user.email", text("dev@example.com")),
        attribute("span.type", text(kind)),
    ];
    attributes.extend(extra);
    json!({
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": format!("{span_id:016x}"),
        "name": format!("claude_code.{kind}"),
        "kind": 1,
        "startTimeUnixNano": format!("{}", (T0 + start) * 1_000_000),
        "endTimeUnixNano": format!("{}", (T0 + end) * 1_000_000),
        "attributes": attributes,
    })
}

fn traces(spans: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({"resourceSpans": [{
        "resource": {"attributes": [attribute("service.name", text("claude-code"))]},
        "scopeSpans": [{"scope": {"name": "com.anthropic.claude_code.tracing"}, "spans": spans}],
    }]}))
    .unwrap()
}

/// Claude Code's own spans are kept and merged into the trace with what the hooks and logs
/// gave: a tool span is the hooks' call, an interaction the hooks' prompt, an `llm_request`
/// the logged request it repeats; what only tracing saw (a request whose event never came, a
/// call no hook saw, a wait for the user, a hook's run) is added once, and nothing traced is
/// counted as usage.
async fn claude_codes_own_spans_are_kept_and_merged_into_the_trace(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let e = |event: &str, at: i64, extra: Value| envelope(APP, SESSION, event, at, extra);
    let prompt = json!({"prompt": "fix the build", "prompt_id": "P1"});
    send_all(
        &app,
        &[
            e("SessionStart", 0, json!({"source": "startup"})),
            e("UserPromptSubmit", 1_000, prompt),
            e(
                "PreToolUse",
                2_000,
                pre_tool("Bash", "T-1", json!({"command": "ls"})),
            ),
            e("PostToolUse", 2_500, post_tool("Bash", "T-1", json!({}))),
        ],
    )
    .await;
    let mut logged = api_request(&REQUESTS[0]);
    logged["attributes"]
        .as_array_mut()
        .unwrap()
        .push(attribute("request_id", text("req-1")));
    post_logs(&app, logs(vec![logged])).await;
    let tokens = |t: [i64; 4]| {
        vec![
            attribute("model", text(OPUS)),
            attribute("input_tokens", json!({"intValue": t[0]})),
            attribute("output_tokens", json!({"intValue": t[1]})),
            attribute("cache_read_tokens", json!({"intValue": t[2]})),
            attribute("cache_creation_tokens", json!({"intValue": t[3]})),
        ]
    };
    let request = |id: &str, t: [i64; 4]| {
        let mut attributes = tokens(t);
        attributes.push(attribute("request_id", text(id)));
        attributes
    };
    let mut failed_execution = traced(
        "tool.execution",
        8,
        (6_120, 6_280),
        vec![
            attribute("tool_use_id", text("T-5")),
            attribute("success", json!({"boolValue": false})),
        ],
    );
    failed_execution["status"] = json!({"code": 2, "message": "exit 1"});
    let spans = vec![
        traced("interaction", 1, (1_000, 9_000), vec![]),
        traced(
            "llm_request",
            2,
            (300, 1_800),
            request("req-1", [100, 50, 1_000, 200]),
        ),
        traced(
            "llm_request",
            3,
            (5_000, 6_000),
            request("req-2", [10, 20, 0, 0]),
        ),
        traced(
            "tool",
            4,
            (2_000, 2_500),
            vec![
                attribute("tool_name", text("Bash")),
                attribute("tool_use_id", text("T-1")),
            ],
        ),
        traced(
            "tool.blocked_on_user",
            5,
            (2_050, 2_300),
            vec![
                attribute("decision", text("accept")),
                attribute("source", text("user_temporary")),
            ],
        ),
        traced(
            "hook",
            6,
            (1_990, 2_000),
            vec![attribute("hook_event", text("PreToolUse"))],
        ),
        traced(
            "tool",
            7,
            (6_100, 6_300),
            vec![
                attribute("tool_name", text("Read")),
                attribute("tool_use_id", text("T-5")),
            ],
        ),
        failed_execution,
        json!({"traceId": "0123456789abcdef0123456789abcdef", "spanId": "0000000000000009",
               "name": "GET /health", "kind": 3,
               "startTimeUnixNano": format!("{}", T0 * 1_000_000),
               "endTimeUnixNano": format!("{}", (T0 + 5) * 1_000_000)}),
    ];
    // Sent twice, as an exporter retries: kept once.
    for _ in 0..2 {
        let response = app.post_raw("/v1/traces", traces(spans.clone())).await;
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["partialSuccess"]["rejectedSpans"], "1", "{answer}");
    }
    assert_eq!(
        app.count("SELECT count(*) FROM telemetry_events WHERE kind LIKE 'span.%'"),
        8
    );

    let trace = app.get_ok(&format!("/api/sessions/{SESSION}/trace")).await;
    let all = trace["spans"].as_array().unwrap();
    let of_kind = |kind: &str| all.iter().filter(|s| s["kind"] == kind).collect::<Vec<_>>();
    assert_eq!(
        of_kind("prompt").len(),
        1,
        "the interaction is the hooks' prompt: {trace}"
    );
    assert_eq!(tool_spans(&trace), {
        let mut one_each = std::collections::BTreeMap::new();
        one_each.insert("T-1".to_owned(), 1);
        one_each.insert("T-5".to_owned(), 1);
        one_each
    });
    let read = all.iter().find(|s| s["tool_use_id"] == "T-5").unwrap();
    assert_eq!(
        (
            &read["name"],
            &read["status"],
            &read["start_ms"],
            &read["end_ms"]
        ),
        (
            &json!("Read"),
            &json!("error"),
            &json!(T0 + 6_100),
            &json!(T0 + 6_300)
        ),
        "{read}"
    );
    let requests = of_kind("api_request");
    assert_eq!(
        requests.len(),
        2,
        "the logged request once, the traced-only one: {trace}"
    );
    let traced_only = requests
        .iter()
        .find(|s| s["start_ms"] == T0 + 5_000)
        .unwrap_or_else(|| panic!("the request only tracing saw: {trace}"));
    assert_eq!(traced_only["end_ms"], T0 + 6_000);
    assert_eq!(traced_only["tokens"]["input"], 10, "{traced_only}");
    let attribute_of = |span: &Value, key: &str| -> Value { span["attributes"][key].clone() };
    assert_eq!(
        attribute_of(traced_only, "seen_by"),
        "tracing",
        "{traced_only}"
    );
    let events: Vec<(String, i64)> = of_kind("event")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["end_ms"].as_i64().unwrap() - s["start_ms"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(
        events.contains(&("waiting for you".to_owned(), 250))
            && events.contains(&("hooks for PreToolUse".to_owned(), 10)),
        "{events:?}"
    );
    let wait = of_kind("event")
        .into_iter()
        .find(|s| s["name"] == "waiting for you")
        .unwrap();
    assert_eq!(attribute_of(wait, "summary"), "accept (user_temporary)");

    // Nothing traced is usage: the session's cost is its one logged request's.
    let page = app.get_ok(&format!("/api/sessions/{SESSION}")).await;
    approx(&page["cost_usd"], 0.10);
    assert_eq!(page["telemetry"]["requests"], 1, "{page}");
    let range = format!("start={}&end={}", T0 - 3_600_000, T0 + 3_600_000);
    let by_session = app
        .get_ok(&format!("/api/usage?group_by=session&{range}"))
        .await;
    assert_eq!(usage_row(&by_session, SESSION)["requests"], 1);
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
    // Part measured, part estimated: the cards say so, with the measured share.
    assert_eq!(cards["cost"]["cost_source"], "mixed", "{cards}");
    approx(&cards["cost"]["measured_share"], 0.10 / (estimate + 0.10));
    approx(&cards["cost"]["estimated_cost_usd"], estimate);
    // The one truth's tokens: the estimated session's transcript tokens and the measured
    // one's request, the same in usage by model.
    let [input, output, cache_read, cache_creation] = REQUESTS[0].tokens;
    assert_eq!(
        cards["cost"]["tokens"],
        11_000 + input + output + cache_read + cache_creation,
        "{cards}"
    );
    let by_model = app
        .get_ok(&format!("/api/usage?group_by=model&{range}"))
        .await;
    let model_tokens: i64 = by_model["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["total_tokens"].as_i64().unwrap())
        .sum();
    assert_eq!(json!(model_tokens), cards["cost"]["tokens"], "{by_model}");
    let sessions = app.get_ok("/api/sessions").await["sessions"].clone();
    let listed: f64 = sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["cost_usd"].as_f64().unwrap())
        .sum();
    approx(&json!(listed), estimate + 0.10);
    // Tokens by the same rule, each with the cost's source: the list, the cards and usage
    // by session agree.
    let listed_tokens: Vec<(&str, &Value, &Value)> = sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["session_id"].as_str().unwrap(),
                &s["total_tokens"],
                &s["cost_source"],
            )
        })
        .collect();
    let measured_tokens = input + output + cache_read + cache_creation;
    assert_eq!(
        listed_tokens,
        [
            ("E-session", &json!(11_000), &json!("estimate")),
            (SESSION, &json!(measured_tokens), &json!("telemetry")),
        ],
        "{sessions}"
    );
    for (id, tokens, _) in &listed_tokens {
        assert_eq!(&usage_row(&by_session, id)["total_tokens"], *tokens, "{id}");
    }

    // The same one truth in /metrics, as Prometheus reads it: by model and source, never by
    // session.
    let text = app.get_text("/metrics").await;
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("/metrics parses as Prometheus text");
    let counter = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("{name} {labels:?} in {text}"));
        match sample.value {
            prometheus_parse::Value::Counter(n) => n,
            ref other => panic!("{name} is a counter, not {other:?}"),
        }
    };
    let cost = "hookwatch_claude_code_cost_usd_total";
    approx(
        &json!(counter(cost, &[("model", OPUS), ("source", "telemetry")])),
        0.10,
    );
    approx(
        &json!(counter(cost, &[("model", OPUS), ("source", "estimate")])),
        estimate,
    );
    assert_eq!(
        counter(
            "hookwatch_claude_code_tokens_total",
            &[("model", OPUS), ("type", "input")]
        ),
        (10_000 + input) as f64
    );
    assert_eq!(
        counter(
            "hookwatch_claude_code_api_requests_total",
            &[("model", OPUS)]
        ),
        1.0
    );
    assert_eq!(
        counter("hookwatch_claude_code_api_errors_total", &[("model", OPUS)]),
        1.0
    );
    // By app: the hooks' app, and the session only telemetry saw under the app the sessions
    // list shows it under, as usage by app does.
    let app_cost = "hookwatch_claude_code_app_cost_usd_total";
    approx(
        &json!(counter(
            app_cost,
            &[("app", "proj-est"), ("source", "estimate")]
        )),
        estimate,
    );
    approx(
        &json!(counter(
            app_cost,
            &[("app", "claude-code"), ("source", "telemetry")]
        )),
        0.10,
    );
    let by_app = app
        .get_ok(&format!("/api/usage?group_by=app&{range}"))
        .await;
    approx(&usage_row(&by_app, "claude-code")["cost_usd"], 0.10);
    approx(&usage_row(&by_app, "proj-est")["cost_usd"], estimate);
    assert!(
        scrape
            .samples
            .iter()
            .filter(|s| s.metric.starts_with("hookwatch_claude_code"))
            .all(|s| s.labels.get("session_id").is_none() && s.labels.get("user").is_none()),
        "{text}"
    );
}

/// `records` of the session `id` (the helpers name the join's session).
fn of_session(id: &str, mut records: Vec<Value>) -> Vec<Value> {
    for record in &mut records {
        record["attributes"][0] = attribute("session.id", text(id));
    }
    records
}

/// The spans of a trace by kind, as (name, start, end) in start order.
fn spans_of(trace: &Value, kind: &str) -> Vec<(String, i64, Option<i64>)> {
    trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == kind)
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["start_ms"].as_i64().unwrap(),
                s["end_ms"].as_i64(),
            )
        })
        .collect()
}

/// A session Claude Code's telemetry alone has seen (its hooks not installed) exists: its page
/// with its measured cost and its main agent, its trace (prompts over API requests and tool
/// results, at their times), and its place in the sessions list.
async fn a_session_seen_only_by_telemetry_has_its_page_trace_and_place_in_the_list(
    backend: Backend,
) {
    let app = TestApp::spawn_on(backend).await;
    // A hook session seen earlier, so the list's order is checked across sources.
    send_all(
        &app,
        &[envelope(
            "proj-hooks",
            "H-session",
            "SessionStart",
            0,
            json!({}),
        )],
    )
    .await;
    let prompt = record(
        "user_prompt",
        1_000,
        "P1",
        vec![attribute("prompt_length", json!({"intValue": 12}))],
    );
    post_logs(
        &app,
        logs(of_session(
            "O-session",
            vec![
                prompt,
                api_request(&REQUESTS[0]),
                tool_result(2_500, "P1", "Bash", "T-1", true),
                tool_result(3_000, "P1", "Read", "T-2", false),
                api_request(&REQUESTS[1]),
            ],
        )),
    )
    .await;

    let page = app.get_ok("/api/sessions/O-session").await;
    approx(&page["cost_usd"], 0.15);
    assert_eq!(page["cost_source"], "telemetry", "{page}");
    assert_eq!(page["seen_by"], "telemetry", "{page}");
    assert_eq!(page["source_app"], "claude-code", "{page}");
    assert_eq!(page["started_at"], T0 + 1_000, "{page}");
    assert_eq!(page["last_seen"], T0 + 3_500, "{page}");
    assert_eq!(page["model"], OPUS, "{page}");
    assert_eq!(
        (
            &page["event_count"],
            &page["prompt_count"],
            &page["tool_call_count"]
        ),
        (&json!(5), &json!(1), &json!(2)),
        "{page}"
    );
    assert_eq!(page["telemetry"]["requests"], 2, "{page}");
    let agents = page["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1, "{page}");
    assert_eq!(agents[0]["id"], "O-session");
    approx(&agents[0]["cost_usd"], 0.15);

    let trace = app.get_ok("/api/sessions/O-session/trace").await;
    let prompts = spans_of(&trace, "prompt");
    assert_eq!(prompts.len(), 1, "{trace}");
    assert_eq!(prompts[0].1, T0 + 1_000, "{trace}");
    assert_eq!(
        spans_of(&trace, "tool"),
        [
            ("Bash".to_owned(), T0 + 2_460, Some(T0 + 2_500)),
            ("Read".to_owned(), T0 + 2_960, Some(T0 + 3_000)),
        ],
        "{trace}"
    );
    let requests = spans_of(&trace, "api_request");
    assert_eq!(requests.len(), 2, "{trace}");
    let prompt_span = trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "prompt")
        .unwrap();
    for span in trace["spans"].as_array().unwrap() {
        if span["kind"] == "tool" || span["kind"] == "api_request" {
            assert_eq!(span["parent_id"], prompt_span["span_id"], "{span}");
        }
    }
    let failed = trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "Read")
        .unwrap();
    assert_eq!(failed["status"], "error", "{failed}");

    // Exported as OTLP, read back by the OpenTelemetry protocol's own types: each request
    // carries the GenAI conventions' model, tokens and cost, each tool call its tool.
    let body = app
        .get_text("/api/sessions/O-session/trace?format=otlp")
        .await;
    let export: ExportTraceServiceRequest =
        serde_json::from_str(&body).expect("an ExportTraceServiceRequest in OTLP/JSON");
    let spans = &export.resource_spans[0].scope_spans[0].spans;
    let attribute_of = |span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone()?.value)
    };
    let first_request = spans
        .iter()
        .filter(|s| s.name.starts_with("api_request"))
        .min_by_key(|s| s.start_time_unix_nano)
        .expect("the requests are exported");
    let [input, output, cache_read, cache_creation] = REQUESTS[0].tokens;
    for (key, want) in [
        ("gen_ai.request.model", AnyValue::StringValue(OPUS.into())),
        (
            "gen_ai.provider.name",
            AnyValue::StringValue("anthropic".into()),
        ),
        (
            "gen_ai.operation.name",
            AnyValue::StringValue("chat".into()),
        ),
        (
            "gen_ai.usage.input_tokens",
            AnyValue::IntValue(input + cache_read + cache_creation),
        ),
        ("gen_ai.usage.output_tokens", AnyValue::IntValue(output)),
        (
            "gen_ai.usage.cache_read.input_tokens",
            AnyValue::IntValue(cache_read),
        ),
        ("gen_ai.usage.cost", AnyValue::DoubleValue(0.10)),
        (
            "gen_ai.conversation.id",
            AnyValue::StringValue("O-session".into()),
        ),
    ] {
        assert_eq!(attribute_of(first_request, key), Some(want), "{key}");
    }
    let bash = spans
        .iter()
        .find(|s| s.name == "tool Bash")
        .expect("the tool call is exported");
    assert_eq!(
        attribute_of(bash, "gen_ai.tool.name"),
        Some(AnyValue::StringValue("Bash".into()))
    );
    assert_eq!(
        attribute_of(bash, "gen_ai.tool.call.id"),
        Some(AnyValue::StringValue("T-1".into()))
    );

    let list = app.get_ok("/api/sessions").await["sessions"].clone();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["O-session", "H-session"], "{list}");
    let listed = &list[0];
    approx(&listed["cost_usd"], 0.15);
    assert_eq!(listed["cost_source"], "telemetry", "{listed}");
    let hooks_only = &list[1];
    assert_eq!(hooks_only["cost_source"], "estimate", "{hooks_only}");
    assert_eq!(hooks_only["seen_by"], "hooks", "{hooks_only}");
    // Filtered by app: the telemetry's own, or another's.
    let by_app = app.get_ok("/api/sessions?app=claude-code").await["sessions"].clone();
    assert_eq!(by_app.as_array().unwrap().len(), 1, "{by_app}");
    let other = app.get_ok("/api/sessions?app=proj-hooks").await["sessions"].clone();
    assert_eq!(other[0]["session_id"], "H-session", "{other}");
    assert_eq!(other.as_array().unwrap().len(), 1, "{other}");

    // Its main agent is an active agent, in the agents list and in the cards' count, and
    // times out as a hook session's does.
    let agent_ids = |answer: &Value| -> Vec<String> {
        let mut ids: Vec<String> = answer
            .as_array()
            .or_else(|| answer["agents"].as_array())
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let active = app.get_ok("/api/agents?status=active").await;
    assert_eq!(agent_ids(&active), ["H-session", "O-session"], "{active}");
    let everyone = app.get_ok("/api/agents?status=all").await;
    assert_eq!(
        agent_ids(&everyone),
        ["H-session", "O-session"],
        "{everyone}"
    );
    assert_eq!(
        app.get_ok("/api/agents/metrics/current").await["active_agents"],
        2
    );
    app.clock.set(T0 + 3_500 + 30 * 60_000 + 1);
    assert_eq!(
        app.get_ok("/api/agents/metrics/current").await["active_agents"],
        0
    );
    let idle = app.get_ok("/api/agents?status=timed_out").await;
    assert!(agent_ids(&idle).contains(&"O-session".to_owned()), "{idle}");
    app.clock.set(T0);

    // Tool usage counts each telemetry-only call once, by its time.
    assert_eq!(
        tools_used(&app).await,
        [("Bash".to_owned(), 1), ("Read".to_owned(), 1)],
    );

    // A session nobody has seen is still not found.
    for path in ["/api/sessions/nobody", "/api/sessions/nobody/trace"] {
        let missing = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(missing.status(), 404, "{path}");
    }
}

/// The tool usage panel's calls per tool, over the test's hour, by name.
async fn tools_used(app: &TestApp) -> Vec<(String, i64)> {
    let range = format!("start={}&end={}", T0 - 3_600_000, T0 + 3_600_000);
    let usage = app
        .get_ok(&format!("/api/agents/tools/usage?{range}"))
        .await;
    let mut tools: Vec<(String, i64)> = usage["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["usage_count"].as_i64().unwrap(),
            )
        })
        .collect();
    tools.sort();
    let total: i64 = tools.iter().map(|(_, n)| n).sum();
    assert_eq!(usage["total_calls"], total, "{usage}");
    tools
}

/// Seen by both sources: a hook tool call and its `tool_result` are one span (on
/// `tool_use_id`), a result the hooks never saw is one more, and the page says both saw it.
async fn a_tool_call_seen_by_both_sources_is_one_span(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    send_all(
        &app,
        &[
            envelope("proj-both", "B-session", "SessionStart", 0, json!({})),
            envelope(
                "proj-both",
                "B-session",
                "PreToolUse",
                2_000,
                pre_tool("Bash", "T-1", json!({"command": "ls"})),
            ),
            envelope(
                "proj-both",
                "B-session",
                "PostToolUse",
                2_500,
                post_tool("Bash", "T-1", json!({"stdout": ""})),
            ),
        ],
    )
    .await;
    post_logs(
        &app,
        logs(of_session(
            "B-session",
            vec![
                tool_result(2_510, "P1", "Bash", "T-1", true),
                tool_result(4_000, "P1", "Grep", "T-9", true),
                api_request(&REQUESTS[0]),
            ],
        )),
    )
    .await;
    let trace = app.get_ok("/api/sessions/B-session/trace").await;
    let tools = spans_of(&trace, "tool");
    assert_eq!(
        tools,
        [
            ("Bash".to_owned(), T0 + 2_000, Some(T0 + 2_500)),
            ("Grep".to_owned(), T0 + 3_960, Some(T0 + 4_000)),
        ],
        "{trace}"
    );
    // The hooks' Bash call and its result are one call; the Grep only telemetry saw is one.
    assert_eq!(
        tools_used(&app).await,
        [("Bash".to_owned(), 1), ("Grep".to_owned(), 1)],
    );
    let page = app.get_ok("/api/sessions/B-session").await;
    assert_eq!(page["seen_by"], "both", "{page}");
    assert_eq!(page["cost_source"], "telemetry", "{page}");
    approx(&page["cost_usd"], 0.10);
    let list = app.get_ok("/api/sessions").await["sessions"].clone();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["seen_by"], "both", "{list}");
    approx(&list[0]["cost_usd"], 0.10);

    // Telemetry that measures nothing (a prompt alone) has seen the session all the same.
    send_all(
        &app,
        &[envelope(
            "proj-both",
            "Q-session",
            "SessionStart",
            0,
            json!({}),
        )],
    )
    .await;
    let prompt_only = of_session("Q-session", vec![record("user_prompt", 500, "P1", vec![])]);
    post_logs(&app, logs(prompt_only)).await;
    let quiet = app.get_ok("/api/sessions/Q-session").await;
    assert_eq!(quiet["seen_by"], "both", "{quiet}");
    assert_eq!(quiet["cost_source"], "estimate", "{quiet}");
}

/// One export of a session's cost and input tokens: one point of each at `[start, time]`
/// (ms after `T0`), as increases (temporality 1) or running totals (2).
fn export_of(
    session: &str,
    temporality: i64,
    start: i64,
    time: i64,
    cost: f64,
    input: i64,
) -> Vec<u8> {
    let point = |value: f64, kind: Option<&str>| {
        let mut attributes = vec![
            attribute("session.id", text(session)),
            attribute("user.email", text("dev@example.com")),
            attribute("model", text(OPUS)),
        ];
        if let Some(kind) = kind {
            attributes.push(attribute("type", text(kind)));
        }
        json!({
            "attributes": attributes,
            "startTimeUnixNano": format!("{}", (T0 + start) * 1_000_000),
            "timeUnixNano": format!("{}", (T0 + time) * 1_000_000),
            "asDouble": value,
        })
    };
    serde_json::to_vec(&json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "claude_code.cost.usage", "sum": {"aggregationTemporality": temporality,
            "isMonotonic": true, "dataPoints": [point(cost, None)]}},
        {"name": "claude_code.token.usage", "sum": {"aggregationTemporality": temporality,
            "isMonotonic": true, "dataPoints": [point(input as f64, Some("input"))]}},
    ]}]}]}))
    .unwrap()
}

/// The same session's counters sent as increases and as running totals give the same totals:
/// running totals become increases per series (attributes and start time), a repeated or
/// late export adds nothing, and a counter reset (a new start time) counts from zero again.
async fn running_totals_add_up_to_what_the_same_increases_do(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let post = |body: Vec<u8>| {
        let app = &app;
        async move {
            let response = app.post_raw("/v1/metrics", body).await;
            assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        }
    };
    // Increases: 0.10, 0.05, 0.03, then 0.02 and 0.05 after Claude Code restarted.
    for (start, time, cost, input) in [
        (0, 59_000, 0.10, 100),
        (59_000, 119_000, 0.05, 10),
        (119_000, 179_000, 0.03, 5),
        (200_000, 259_000, 0.02, 20),
        (259_000, 319_000, 0.05, 50),
    ] {
        post(export_of("C-delta", 1, start, time, cost, input)).await;
    }
    // The same as running totals: the third export before the second, the second sent twice,
    // then a reset (a new start).
    for (start, time, cost, input) in [
        (0, 59_000, 0.10, 100),
        (0, 179_000, 0.18, 115),
        (0, 119_000, 0.15, 110),
        (0, 119_000, 0.15, 110),
        (200_000, 259_000, 0.02, 20),
        (200_000, 319_000, 0.07, 70),
    ] {
        post(export_of("C-running", 2, start, time, cost, input)).await;
    }
    let range = format!("start={}&end={}", T0 - 3_600_000, T0 + 3_600_000);
    let by_session = app
        .get_ok(&format!("/api/usage?group_by=session&{range}"))
        .await;
    for session in ["C-delta", "C-running"] {
        let row = usage_row(&by_session, session);
        approx(&row["cost_usd"], 0.25);
        assert_eq!(row["input_tokens"], 185, "{session}: {row}");
        assert_eq!(row["cost_source"], "telemetry", "{session}: {row}");
        let page = app.get_ok(&format!("/api/sessions/{session}")).await;
        approx(&page["cost_usd"], 0.25);
        assert_eq!(page["telemetry"]["from"], "metrics", "{page}");
        assert_eq!(page["telemetry"]["tokens"]["input"], 185, "{page}");
    }
    let cards = app
        .get_ok(&format!("/api/agents/metrics/current?{range}"))
        .await;
    approx(&cards["cost"]["cost_usd"], 0.50);
}

crate::on_each_store!(
    running_totals_add_up_to_what_the_same_increases_do,
    telemetry_joins_hooks_per_session_prompt_agent_and_model,
    a_session_without_telemetry_is_estimated_beside_a_measured_one,
    a_session_seen_only_by_telemetry_has_its_page_trace_and_place_in_the_list,
    a_tool_call_seen_by_both_sources_is_one_span,
    both_sources_give_what_telemetry_alone_gives_plus_the_hooks,
    claude_codes_own_spans_are_kept_and_merged_into_the_trace,
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
    // People in /metrics: only when asked for, and only behind a read token.
    let scrape = |app: &TestApp, token: Option<&'static str>| {
        let mut request = app.client.get(app.url("/metrics"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    assert!(
        !scrape(&guarded, Some("reader"))
            .await
            .contains("claude_code_user_")
    );
    let labelled = TestApp::spawn_with(|c| {
        c.tokens.read = vec!["reader".to_owned()];
        c.metrics_person_label = true;
    })
    .await;
    post_logs(&labelled, logs(vec![api_request(&REQUESTS[0])])).await;
    let text = scrape(&labelled, Some("reader")).await;
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("/metrics parses as Prometheus text");
    let person_cost = parsed
        .samples
        .iter()
        .find(|s| {
            s.metric == "hookwatch_claude_code_user_cost_usd_total"
                && s.labels.get("user") == Some("dev@example.com")
                && s.labels.get("source") == Some("telemetry")
        })
        .unwrap_or_else(|| panic!("the person's cost in {text}"));
    assert_eq!(person_cost.value, prometheus_parse::Value::Counter(0.10));
    let open_reads = TestApp::spawn_with(|c| c.metrics_person_label = true).await;
    post_logs(&open_reads, logs(vec![api_request(&REQUESTS[0])])).await;
    assert!(!scrape(&open_reads, None).await.contains("dev@example.com"));
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
