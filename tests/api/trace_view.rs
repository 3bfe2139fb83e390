//! The session trace page (`/sessions/{id}`) in a real headless Chromium: the waterfall's rows
//! and nesting are the API's tree, a span added while the page is open appears, payload text
//! renders as text, and a 10,000-span session keeps only the rows in view in the page.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::browser::Browser;
use crate::fixtures::{envelope, in_subagent, post_tool, pre_tool};
use crate::helpers::TestApp;

const PATIENCE: Duration = Duration::from_secs(10);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// An event of session `session` at `t0 + at`.
fn at(session: &str, t0: i64, event: &str, at: i64, extra: Value) -> Value {
    let mut e = envelope("proj-trace-view", session, event, 0, extra);
    e["timestamp"] = json!(t0 + at);
    e
}

/// The API's tree in display order: a depth-first walk, children in start order, as
/// `(span_id, depth)`.
fn api_rows(trace: &Value) -> Vec<(String, usize)> {
    let spans = trace["spans"].as_array().unwrap();
    let children = |parent: &str| -> Vec<&Value> {
        spans.iter().filter(|s| s["parent_id"] == parent).collect()
    };
    let mut rows = Vec::new();
    let mut stack: Vec<(&Value, usize)> = spans
        .iter()
        .filter(|s| s["parent_id"].is_null())
        .map(|s| (s, 0))
        .collect();
    while let Some((span, depth)) = stack.pop() {
        let id = span["span_id"].as_str().unwrap();
        rows.push((id.to_owned(), depth));
        for child in children(id).into_iter().rev() {
            stack.push((child, depth + 1));
        }
    }
    rows
}

const READ_ROWS: &str = "return [...document.querySelectorAll('#waterfall-rows .span-row')]
    .sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top))
    .map(r => [r.dataset.spanId, Number(r.dataset.depth)])";

#[tokio::test]
async fn the_waterfall_is_the_apis_tree_grows_live_and_shows_payloads_as_text() {
    let app = TestApp::spawn_live().await;
    let t0 = now_ms() - 60_000;
    let s = "S-view";
    let hostile = "<img src=x onerror=\"document.title='pwned'\"> and <b>bold</b>";
    for event in [
        at(s, t0, "SessionStart", 0, json!({"source": "startup"})),
        at(
            s,
            t0,
            "UserPromptSubmit",
            1_000,
            json!({"prompt": hostile, "prompt_id": "P1"}),
        ),
        at(
            s,
            t0,
            "PreToolUse",
            2_000,
            pre_tool(
                "Task",
                "k1",
                json!({"subagent_type": "Explore", "description": "look"}),
            ),
        ),
        at(
            s,
            t0,
            "SubagentStart",
            2_500,
            json!({"agent_id": "a1", "agent_type": "Explore"}),
        ),
        at(
            s,
            t0,
            "PreToolUse",
            3_000,
            in_subagent(
                "a1",
                "Explore",
                pre_tool(
                    "Bash",
                    "b1",
                    json!({"command": "echo '<script>alert(1)</script>'"}),
                ),
            ),
        ),
        at(
            s,
            t0,
            "PostToolUseFailure",
            4_000,
            in_subagent(
                "a1",
                "Explore",
                json!({"tool_name": "Bash", "tool_use_id": "b1", "tool_input": {}, "error": "exit 1"}),
            ),
        ),
        at(
            s,
            t0,
            "SubagentStop",
            5_000,
            json!({"agent_id": "a1", "agent_type": "Explore"}),
        ),
        at(
            s,
            t0,
            "PostToolUse",
            5_500,
            post_tool("Task", "k1", json!({"totalTokens": 5})),
        ),
        at(s, t0, "Stop", 6_000, json!({"stop_hook_active": false})),
    ] {
        app.send_event(&event).await;
    }
    // Two API requests from Claude Code's telemetry: the main agent's and the subagent's.
    let request = |at_ms: i64, source: &str, cost: f64| {
        json!({
            "timeUnixNano": format!("{}", (t0 + at_ms) * 1_000_000),
            "body": {"stringValue": "claude_code.api_request"},
            "attributes": [
                {"key": "session.id", "value": {"stringValue": s}},
                {"key": "event.name", "value": {"stringValue": "api_request"}},
                {"key": "prompt.id", "value": {"stringValue": "P1"}},
                {"key": "query_source", "value": {"stringValue": source}},
                {"key": "model", "value": {"stringValue": "claude-sonnet-4-6"}},
                {"key": "cost_usd", "value": {"doubleValue": cost}},
                {"key": "input_tokens", "value": {"intValue": 1200}},
                {"key": "cache_read_tokens", "value": {"intValue": 30000}},
                {"key": "duration_ms", "value": {"intValue": 700}},
            ],
        })
    };
    let logs = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
        request(1_900, "repl_main_thread", 0.04),
        request(3_800, "agent:builtin:Explore", 0.01),
    ]}]}]});
    let response = app
        .post_raw("/v1/logs", serde_json::to_vec(&logs).unwrap())
        .await;
    assert_eq!(response.status(), 200);
    let trace = app.get_ok(&format!("/api/sessions/{s}/trace")).await;
    let expected = api_rows(&trace);
    assert_eq!(expected.len(), 7, "{trace}");

    let browser = Browser::start().await;
    browser.goto(&app.url(&format!("/sessions/{s}"))).await;
    let shown = browser
        .wait_for(
            "the waterfall's rows",
            &format!(
                "const rows = (() => {{ {READ_ROWS} }})(); return rows.length === 7 ? rows : null"
            ),
            json!([]),
            PATIENCE,
        )
        .await;
    let expected_json: Vec<Value> = expected.iter().map(|(id, d)| json!([id, d])).collect();
    assert_eq!(
        shown,
        json!(expected_json),
        "rows, order and nesting as the API's tree"
    );
    // Each row's kind stays clear of its name, however deep the row (issue 30: API_REQUEST ran
    // over the model name from depth 3 down).
    let overlapping = browser
        .run(
            "// A narrow name column, as a deep row on a small screen has.
             document.querySelectorAll('.span-name').forEach(n => n.style.width = '150px');
             return [...document.querySelectorAll('.span-row')].filter(row => {
                 // The kind's text spilling out of its box is drawn over the name.
                 const kind = row.querySelector('.span-name .kind');
                 const label = row.querySelector('.span-name .label').getBoundingClientRect();
                 return kind.scrollWidth > kind.clientWidth + 1
                     || kind.getBoundingClientRect().right > label.left + 0.5;
             }).map(row => [row.dataset.spanId, row.dataset.depth])",
            json!([]),
        )
        .await;
    assert_eq!(
        overlapping,
        json!([]),
        "rows whose kind runs over their name"
    );
    browser
        .run(
            "document.querySelectorAll('.span-name').forEach(n => n.style.width = '')",
            json!([]),
        )
        .await;
    let failed = browser
        .run(
            "const row = document.querySelector('.span-row[data-span-id=\"tool:b1\"]');
             return [row.dataset.status, getComputedStyle(row.querySelector('.span-bar')).backgroundColor]",
            json!([]),
        )
        .await;
    assert_eq!(failed[0], "error");
    assert_eq!(failed[1], "rgb(197, 48, 48)", "a failed call is marked");

    // Collapsing the agent hides its tool call; expanding shows it again.
    let toggle = "document.querySelector('.span-row[data-span-id=\"agent:a1\"] .toggle').click()";
    browser.run(toggle, json!([])).await;
    browser
        .wait_for(
            "the agent collapsed",
            "return !document.querySelector('.span-row[data-span-id=\"tool:b1\"]')",
            json!([]),
            PATIENCE,
        )
        .await;
    browser.run(toggle, json!([])).await;
    browser
        .wait_for(
            "the agent expanded",
            "return !!document.querySelector('.span-row[data-span-id=\"tool:b1\"]')",
            json!([]),
            PATIENCE,
        )
        .await;

    // The prompt's text and the call's input are shown as text.
    let prompt_id = &expected[1].0;
    browser
        .run(
            "document.querySelector(`.span-row[data-span-id=\"${arguments[0]}\"]`).click()",
            json!([prompt_id]),
        )
        .await;
    let prompt = browser
        .wait_for(
            "the prompt's details",
            "const pre = document.getElementById('span-prompt'); return pre ? pre.textContent : null",
            json!([]),
            PATIENCE,
        )
        .await;
    assert_eq!(prompt, hostile);
    browser
        .run(
            "document.querySelector('.span-row[data-span-id=\"tool:b1\"]').click()",
            json!([]),
        )
        .await;
    let input = browser
        .wait_for(
            "the call's input",
            "const pre = document.getElementById('span-input'); return pre ? pre.textContent : null",
            json!([]),
            PATIENCE,
        )
        .await;
    assert!(
        input
            .as_str()
            .unwrap()
            .contains("<script>alert(1)</script>"),
        "{input}"
    );
    let injected = browser
        .run(
            "return [document.querySelectorAll('#span-detail img, #span-detail b, #span-detail script').length,
                     document.title]",
            json!([]),
        )
        .await;
    assert_eq!(injected, json!([0, format!("hookwatch · {s}")]));

    // A call made while the page is open appears, open (no end yet).
    app.send_event(&at(
        s,
        t0,
        "PreToolUse",
        7_000,
        pre_tool("Read", "r-live", json!({"file_path": "/tmp/x"})),
    ))
    .await;
    let live = browser
        .wait_for(
            "the new span",
            "const row = document.querySelector('.span-row[data-span-id=\"tool:r-live\"]');
             return row ? [row.dataset.status, row.querySelector('.span-bar').classList.contains('open')] : null",
            json!([]),
            PATIENCE,
        )
        .await;
    assert_eq!(live, json!(["running", true]));
    // For the README (docs/trace.png): the tree with the failed call's details open.
    browser
        .run(
            "document.querySelector('.span-row[data-span-id=\"tool:b1\"]').click()",
            json!([]),
        )
        .await;
    browser
        .wait_for(
            "the details again",
            "return !!document.getElementById('span-input')",
            json!([]),
            PATIENCE,
        )
        .await;
    browser
        .screenshot(
            &std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join("screenshots")
                .join("trace.png"),
        )
        .await;
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    browser.quit().await;
}

/// 10,000 spans: 9,998 tool calls under one prompt. Only the rows in view are in the page, and
/// scrolling through it is measured with the page's performance timeline (long animation
/// frames) and frame-to-frame times: the figures are printed for BENCHMARKS.md, not asserted.
#[tokio::test]
async fn a_ten_thousand_span_session_keeps_only_the_rows_in_view_in_the_page() {
    let app = TestApp::spawn_live().await;
    let s = "S-big";
    let t0 = now_ms() - 3_600_000;
    let mut events = vec![
        at(s, t0, "SessionStart", 0, json!({})),
        at(
            s,
            t0,
            "UserPromptSubmit",
            100,
            json!({"prompt": "many calls"}),
        ),
    ];
    for n in 0..9_998 {
        let id = format!("c{n}");
        events.push(at(
            s,
            t0,
            "PreToolUse",
            200 + n * 300,
            pre_tool("Read", &id, json!({})),
        ));
        events.push(at(
            s,
            t0,
            "PostToolUse",
            300 + n * 300,
            post_tool("Read", &id, json!({})),
        ));
    }
    for chunk in events.chunks(1_000) {
        let response = app.post_json("/events/batch", &json!(chunk)).await;
        assert_eq!(response.status(), 200);
    }
    let started = Instant::now();
    let trace = app.get_ok(&format!("/api/sessions/{s}/trace")).await;
    let api_ms = started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(trace["spans"].as_array().unwrap().len(), 10_000);

    let browser = Browser::start().await;
    browser.goto(&app.url(&format!("/sessions/{s}"))).await;
    browser
        .wait_for(
            "the waterfall",
            "return document.querySelectorAll('.span-row').length > 0",
            json!([]),
            Duration::from_secs(30),
        )
        .await;
    browser
        .run(
            "window.__frames = null;
             const box = document.getElementById('waterfall');
             const long = [];
             new PerformanceObserver((list) => long.push(...list.getEntries().map(e => e.duration)))
               .observe({ type: 'long-animation-frame', buffered: false });
             const deltas = [];
             let last = performance.now(), n = 0, inView = 0;
             const step = (now) => {
               deltas.push(now - last); last = now;
               box.scrollTop += 1800;
               inView = Math.max(inView, document.querySelectorAll('.span-row').length);
               if (++n < 150) requestAnimationFrame(step);
               else setTimeout(() => { window.__frames = { deltas: deltas.slice(1), long, inView,
                                                         height: box.scrollHeight, top: box.scrollTop }; }, 200);
             };
             requestAnimationFrame(step);",
            json!([]),
        )
        .await;
    let frames = browser
        .wait_for(
            "the scroll to be measured",
            "return window.__frames",
            json!([]),
            Duration::from_secs(30),
        )
        .await;
    let in_view = frames["inView"].as_u64().unwrap();
    assert!(
        in_view <= 80,
        "only the rows in view (and a few either side) are in the page: {in_view}"
    );
    assert_eq!(frames["height"], 10_000 * 22, "the spacer holds every row");
    assert!(
        frames["top"].as_f64().unwrap() > 200_000.0,
        "it scrolled: {frames}"
    );
    let mut deltas: Vec<f64> = frames["deltas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_f64().unwrap())
        .collect();
    deltas.sort_by(f64::total_cmp);
    let long: Vec<f64> = frames["long"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_f64().unwrap())
        .collect();
    println!(
        "10,000-span trace: API {api_ms:.1} ms; scrolling {} frames: median {:.1} ms, p95 {:.1} ms, \
         max {:.1} ms; long animation frames (> 50 ms): {} {:?}",
        deltas.len(),
        deltas[deltas.len() / 2],
        deltas[deltas.len() * 95 / 100],
        deltas[deltas.len() - 1],
        long.len(),
        long
    );
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    browser.quit().await;
}
