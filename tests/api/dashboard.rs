//! The dashboard at `/`, in a real headless Chromium: what a person watching it sees.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::browser::Browser;
use crate::fixtures::{envelope, in_subagent, main_session, pre_tool};
use crate::helpers::TestApp;

const PATIENCE: Duration = Duration::from_secs(10);

/// Page script: `cards`, each metric's raw value (`data-value`) and shown text.
const READ_CARDS: &str = "const cards = {};
    for (const v of document.querySelectorAll('.card .value')) {
      cards[v.dataset.metric] = [v.dataset.value, v.textContent];
    }";

/// An envelope with no timestamp: the server stamps it now (the browser compares with its clock).
fn now(app: &str, session: &str, event: &str, extra: Value) -> Value {
    let mut envelope = envelope(app, session, event, 0, extra);
    envelope.as_object_mut().unwrap().remove("timestamp");
    envelope
}

/// The live fixture session: `main_session`, stamped now.
async fn post_main_session(app: &TestApp) {
    for mut event in main_session() {
        event.as_object_mut().unwrap().remove("timestamp");
        app.send_event(&event).await;
    }
}

/// Opens the dashboard and waits until it is connected and its cards are filled.
async fn open(app: &TestApp, path: &str) -> Browser {
    let browser = Browser::start().await;
    browser.goto(&app.url(path)).await;
    wait_until_live(&browser).await;
    browser
        .wait_for(
            "the metric cards to be filled",
            "return [...document.querySelectorAll('.card .value')]
                .every(v => v.dataset.value !== undefined)",
            json!([]),
            PATIENCE,
        )
        .await;
    browser
}

async fn wait_until_live(browser: &Browser) {
    browser
        .wait_for(
            "the WebSocket to connect",
            "return document.getElementById('connection').dataset.state === 'live'",
            json!([]),
            PATIENCE,
        )
        .await;
}

/// Waits for the stream row of `event_id` and returns its cells' text.
async fn wait_for_row(browser: &Browser, event_id: &str, within: Duration) -> Vec<String> {
    let cells = browser
        .wait_for(
            "the event's row",
            "const row = [...document.querySelectorAll('#events tr')]
                .find(r => r.dataset.eventId === arguments[0]);
             return row ? [...row.cells].map(c => c.textContent) : null",
            json!([event_id]),
            within,
        )
        .await;
    serde_json::from_value(cells).unwrap()
}

/// Clicks the stream row of `saved` and returns the detail view's JSON text.
async fn open_event_detail(browser: &Browser, saved: &Value) -> String {
    browser
        .run(
            "[...document.querySelectorAll('#events tr')]
                .find(r => r.dataset.eventId === arguments[0]).click()",
            json!([saved["event_id"]]),
        )
        .await;
    let shown = browser
        .wait_for(
            "the event detail",
            "const pre = document.getElementById('detail-json');
             return document.getElementById('detail').open && pre ? pre.textContent : null",
            json!([]),
            PATIENCE,
        )
        .await;
    shown.as_str().unwrap().to_owned()
}

fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("screenshots")
        .join(name)
}

async fn assert_no_console_errors(browser: &Browser) {
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

#[tokio::test]
async fn the_page_loads_without_errors_and_every_card_matches_the_api() {
    let app = TestApp::spawn_live().await;
    post_main_session(&app).await;
    let browser = open(&app, "/").await;

    for (button, hours) in [("1", 1), ("168", 168), ("24", 24)] {
        browser
            .run(
                "document.querySelector(`.ranges button[data-hours=\"${arguments[0]}\"]`).click()",
                json!([button]),
            )
            .await;
        let api = app
            .get_ok(&format!("/api/agents/metrics/current?hours={hours}"))
            .await;
        let shown = browser
            .wait_for(
                "the cards to show the selected range",
                &format!(
                    "{READ_CARDS}
                     const pressed = document.querySelector('.ranges button[aria-pressed=\"true\"]');
                     return pressed && pressed.dataset.hours === arguments[0] ? cards : null"
                ),
                json!([button]),
                PATIENCE,
            )
            .await;
        // The page refreshes after the click; give it the time one refresh takes.
        let shown = settle_cards(&browser, &api, shown).await;
        for metric in [
            "active_agents",
            "executions_today",
            "success_rate",
            "avg_duration_ms",
            "tokens",
            "cost_usd",
        ] {
            let (raw, text) = (&shown[metric][0], &shown[metric][1]);
            let raw: f64 = raw.as_str().unwrap().parse().unwrap();
            // The cost and token cards show the one truth, not the transcript estimate alone.
            let expected = match metric {
                "cost_usd" => api["cost"]["cost_usd"].as_f64().unwrap(),
                "tokens" => api["cost"]["tokens"].as_f64().unwrap(),
                _ => api[metric].as_f64().unwrap(),
            };
            assert!(
                (raw - expected).abs() < 1e-9,
                "{hours} h: card {metric} shows {raw}, the API says {expected}"
            );
            assert!(
                !text.as_str().unwrap().is_empty() && text != "–",
                "{metric} is displayed"
            );
        }
    }
    let source = browser
        .run(
            "return document.getElementById('cost-source').textContent",
            json!([]),
        )
        .await;
    assert_eq!(
        source, "estimate",
        "hooks alone: the cost card says it is an estimate"
    );
    let executions = app.get_ok("/api/agents/metrics/current?hours=24").await;
    assert!(
        executions["executions_today"].as_i64().unwrap() >= 3
            && executions["tokens_used_today"].as_i64().unwrap() > 0,
        "the fixture gives the cards something to show: {executions}"
    );
    assert_no_console_errors(&browser).await;
    browser.quit().await;
}

/// Polls the cards until they equal the API's answer (or returns the last reading, which the
/// caller's assertions then report).
async fn settle_cards(browser: &Browser, api: &Value, mut shown: Value) -> Value {
    let deadline = Instant::now() + PATIENCE;
    let equal = |shown: &Value| {
        api.as_object().unwrap().iter().all(|(key, value)| {
            let Some(card) = shown.get(key) else {
                return true;
            };
            card[0]
                .as_str()
                .and_then(|raw| raw.parse::<f64>().ok())
                .is_some_and(|raw| (raw - value.as_f64().unwrap_or(f64::NAN)).abs() < 1e-9)
        })
    };
    while !equal(&shown) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        shown = browser
            .run(&format!("{READ_CARDS} return cards"), json!([]))
            .await;
    }
    shown
}

#[tokio::test]
async fn an_event_posted_over_http_appears_in_the_stream_within_two_seconds() {
    let app = TestApp::spawn_live().await;
    let browser = open(&app, "/").await;

    let saved = app
        .send_event(&now(
            "proj-live",
            "S-live",
            "PreToolUse",
            pre_tool(
                "Bash",
                "t-live",
                json!({"command": "cargo build --release"}),
            ),
        ))
        .await;
    let acknowledged = Instant::now();
    let cells = wait_for_row(
        &browser,
        saved["event_id"].as_str().unwrap(),
        Duration::from_secs(2),
    )
    .await;
    assert!(acknowledged.elapsed() <= Duration::from_secs(2));
    assert_eq!(cells[1], "proj-live");
    assert_eq!(cells[3], "PreToolUse");
    assert_eq!(cells[4], "Bash");
    assert_eq!(cells[5], "cargo build --release");

    // Clicking it shows the full payload as formatted JSON.
    let text = open_event_detail(&browser, &saved).await;
    let text = text.as_str();
    assert!(
        text.contains("\n  \"payload\": {"),
        "formatted JSON: {text}"
    );
    let shown: Value = serde_json::from_str(text).unwrap();
    let mut stored = saved.clone();
    stored.as_object_mut().unwrap().remove("duplicate"); // the ingest answer's, not the event's
    assert_eq!(shown, stored, "the detail is the stored event, whole");
    // The event's session, in its row and in its detail, links to the session's trace.
    let links = browser
        .run(
            "const row = document.querySelector(`#events tr[data-event-id=\"${arguments[0]}\"]`);
             return [row.cells[2].querySelector('a').getAttribute('href'),
                     document.querySelector('#detail-body a.trace-link').getAttribute('href')]",
            json!([saved["event_id"]]),
        )
        .await;
    assert_eq!(links, json!(["/sessions/S-live", "/sessions/S-live"]));
    assert_no_console_errors(&browser).await;
    browser.quit().await;
}

#[tokio::test]
async fn a_subagent_moves_from_the_active_list_to_completed() {
    let app = TestApp::spawn_live().await;
    let browser = open(&app, "/").await;
    let subagent = |event: &str, extra: Value| {
        now(
            "proj-agents",
            "S-agents",
            event,
            in_subagent("agent-7", "code-reviewer", extra),
        )
    };
    app.send_event(&now(
        "proj-agents",
        "S-agents",
        "SessionStart",
        json!({"source": "startup"}),
    ))
    .await;
    app.send_event(&subagent("SubagentStart", json!({}))).await;
    app.send_event(&subagent(
        "PreToolUse",
        pre_tool("Grep", "g1", json!({"pattern": "unsafe"})),
    ))
    .await;

    let active = browser
        .wait_for(
            "the subagent in the active list, in its current tool",
            "const row = document.querySelector('#active-agents tr[data-agent-id=\"agent-7\"]');
             return row && row.cells[5].textContent === 'Grep'
                 ? [...row.cells].map(c => c.textContent) : null",
            json!([]),
            PATIENCE,
        )
        .await;
    assert_eq!(active[0], "code-reviewer");
    assert_eq!(active[6], "running");

    app.send_event(&subagent("SubagentStop", json!({}))).await;
    let finished = browser
        .wait_for(
            "the subagent among the finished, and out of the active list",
            "const gone = !document.querySelector('#active-agents tr[data-agent-id=\"agent-7\"]');
             const row = document.querySelector('#finished-agents tr[data-agent-id=\"agent-7\"]');
             return gone && row ? row.dataset.status : null",
            json!([]),
            PATIENCE,
        )
        .await;
    assert_eq!(finished, "completed");

    // Clicking the agent shows its lifecycle and its tool calls.
    browser
        .run(
            "document.querySelector('#finished-agents tr[data-agent-id=\"agent-7\"]').click()",
            json!([]),
        )
        .await;
    let detail = browser
        .wait_for(
            "the agent detail",
            "const body = document.getElementById('detail-body');
             return document.getElementById('detail').open && body.querySelector('table')
                 ? [document.getElementById('detail-title').textContent,
                    [...body.querySelectorAll('dd')].map(d => d.textContent),
                    [...body.querySelectorAll('table.calls tbody tr')].map(r => r.cells[0].textContent)]
                 : null",
            json!([]),
            PATIENCE,
        )
        .await;
    assert_eq!(detail[0], "code-reviewer agent agent-7");
    assert_eq!(detail[1][0], "completed");
    assert_eq!(detail[2], json!(["Grep"]));
    assert_no_console_errors(&browser).await;
    browser.quit().await;
}

#[tokio::test]
async fn untrusted_text_renders_as_text_and_runs_nothing() {
    let app = TestApp::spawn_live().await;
    let browser = open(&app, "/").await;
    let prompt = "<img src=x onerror=alert(1)> <script>window.pwned = 1</script>";
    let saved = app
        .send_event(&now(
            "<b>app</b>",
            "S-xss",
            "UserPromptSubmit",
            json!({"prompt": prompt}),
        ))
        .await;
    app.send_event(&now(
        "<b>app</b>",
        "S-xss",
        "SubagentStart",
        in_subagent("<img src=y onerror=alert(2)>", "<i>type</i>", json!({})),
    ))
    .await;

    let cells = wait_for_row(&browser, saved["event_id"].as_str().unwrap(), PATIENCE).await;
    assert_eq!(cells[5], prompt, "the prompt is shown as the text it is");
    assert_eq!(cells[1], "<b>app</b>");
    browser
        .wait_for(
            "the hostile agent in the active list",
            "return [...document.querySelectorAll('#active-agents td')]
                .some(td => td.textContent === '<i>type</i>')",
            json!([]),
            PATIENCE,
        )
        .await;
    let detail = open_event_detail(&browser, &saved).await;
    assert!(detail.contains("<img src=x onerror=alert(1)>"));
    // The scenario's time: a stray handler's chance to fire (nothing should), then look for
    // any sign that markup was parsed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let parsed = browser
        .run(
            "return {
               images: document.querySelectorAll('img').length,
               scripts: [...document.scripts].filter(s => !s.src).length,
               bold: document.querySelectorAll('b, i').length,
               pwned: window.pwned === 1,
             }",
            json!([]),
        )
        .await;
    assert_eq!(
        parsed,
        json!({"images": 0, "scripts": 0, "bold": 0, "pwned": false}),
        "no markup from an event reached the DOM"
    );
    assert_eq!(browser.open_alert().await, None, "no alert ran");
    assert_no_console_errors(&browser).await;
    browser.quit().await;
}

#[tokio::test]
async fn the_page_reconnects_after_the_server_restarts() {
    let app = TestApp::spawn_live().await;
    let browser = open(&app, "/").await;
    let app = app.restart_live_on_same_address().await;
    // The page notices the drop (it may already be back by now).
    wait_until_live(&browser).await;
    let deadline = Instant::now() + PATIENCE;
    let mut seen = None;
    while seen.is_none() && Instant::now() < deadline {
        // The page may still be reconnecting: post until one event shows, each a new one.
        let saved = app
            .send_event(&now(
                "proj-restart",
                "S-restart",
                "Notification",
                json!({"message": "after the restart"}),
            ))
            .await;
        let id = saved["event_id"].as_str().unwrap().to_owned();
        let found = browser
            .run(
                "return !![...document.querySelectorAll('#events tr')]
                    .find(r => r.dataset.eventId === arguments[0])",
                json!([id]),
            )
            .await;
        if found == true {
            seen = Some(id);
        } else {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let id = seen.expect("an event posted after the restart appears");
    let cells = wait_for_row(&browser, &id, PATIENCE).await;
    assert_eq!(cells[5], "after the restart");
    browser.quit().await;
}

#[tokio::test]
async fn filters_search_and_pause_shape_the_stream() {
    let app = TestApp::spawn_live().await;
    for (app_name, tool, command) in [
        ("alpha", "Bash", "make test"),
        ("beta", "Read", "/etc/hosts"),
        ("alpha", "Read", "/src/main.rs"),
    ] {
        app.send_event(&now(
            app_name,
            &format!("S-{app_name}"),
            "PreToolUse",
            pre_tool(tool, command, json!({"command": command})),
        ))
        .await;
    }
    let browser = open(&app, "/").await;
    let rows = "return [...document.querySelectorAll('#events tr')]
        .map(r => r.cells[1].textContent + ' ' + r.cells[5].textContent)";
    let set = |name: &'static str, value: &'static str| {
        let browser = &browser;
        async move {
            browser
                .run(
                    "const field = document.getElementById('filters').elements[arguments[0]];
                     field.value = arguments[1];
                     field.dispatchEvent(new Event('input', { bubbles: true }));",
                    json!([name, value]),
                )
                .await;
        }
    };
    let wait_rows = |expected: Value| {
        let browser = &browser;
        async move {
            browser
                .wait_for(
                    &format!("the stream to show {expected}"),
                    &format!(
                        "const rows = (() => {{ {rows} }})();
                      return JSON.stringify(rows) === JSON.stringify(arguments[0]) ? rows : null"
                    ),
                    json!([expected]),
                    PATIENCE,
                )
                .await
        }
    };
    wait_rows(json!([
        "alpha /src/main.rs",
        "beta /etc/hosts",
        "alpha make test"
    ]))
    .await;
    set("app", "alpha").await;
    wait_rows(json!(["alpha /src/main.rs", "alpha make test"])).await;
    set("tool", "Read").await;
    wait_rows(json!(["alpha /src/main.rs"])).await;
    set("tool", "").await;
    set("q", "make").await;
    wait_rows(json!(["alpha make test"])).await;
    set("q", "").await;
    wait_rows(json!(["alpha /src/main.rs", "alpha make test"])).await;

    // Paused, new events wait; on resume they appear.
    browser
        .run("document.getElementById('pause').click()", json!([]))
        .await;
    app.send_event(&now(
        "alpha",
        "S-alpha",
        "PreToolUse",
        pre_tool("Bash", "later", json!({"command": "cargo fmt"})),
    ))
    .await;
    browser
        .wait_for(
            "the paused stream to count the new event",
            "return document.getElementById('stream-count').textContent.includes('1 new')",
            json!([]),
            PATIENCE,
        )
        .await;
    let still = browser.run(rows, json!([])).await;
    assert_eq!(still, json!(["alpha /src/main.rs", "alpha make test"]));
    browser
        .run("document.getElementById('pause').click()", json!([]))
        .await;
    wait_rows(json!([
        "alpha cargo fmt",
        "alpha /src/main.rs",
        "alpha make test"
    ]))
    .await;
    assert_no_console_errors(&browser).await;
    browser.quit().await;
}

#[tokio::test]
async fn screenshots_in_light_use_and_under_a_burst_with_a_bounded_stream() {
    let app = TestApp::spawn_live().await;
    post_main_session(&app).await;
    let browser = open(&app, "/?rows=50").await;
    browser
        .screenshot(&screenshot_path("dashboard-light.png"))
        .await;

    // A burst of 50 events/s for 4 s: the stream keeps at most the 50 rows asked for.
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut last = Value::Null;
    for n in 0..200 {
        tick.tick().await;
        let tool = ["Read", "Edit", "Bash", "Grep"][n % 4];
        last = app
            .send_event(&now(
                ["proj-alpha", "proj-beta"][n % 2],
                &format!("S-burst-{}", n % 5),
                ["PreToolUse", "PostToolUse"][n % 2],
                pre_tool(
                    tool,
                    &format!("b{n}"),
                    json!({"command": format!("step {n}")}),
                ),
            ))
            .await;
        if n == 150 {
            browser
                .screenshot(&screenshot_path("dashboard-burst.png"))
                .await;
        }
    }
    wait_for_row(&browser, last["event_id"].as_str().unwrap(), PATIENCE).await;
    let rows = browser
        .run(
            "return document.querySelectorAll('#events tr').length",
            json!([]),
        )
        .await;
    assert_eq!(rows, 50, "the stream holds exactly the rows asked for");
    let pulse = browser
        .wait_for(
            "the pulse to count the burst",
            "const n = Number(document.getElementById('pulse-1').textContent.replace(/,/g, ''));
             return n >= 200 ? n : null",
            json!([]),
            PATIENCE,
        )
        .await;
    assert!(pulse.as_u64().unwrap() >= 200);
    for name in ["dashboard-light.png", "dashboard-burst.png"] {
        let size = std::fs::metadata(screenshot_path(name)).unwrap().len();
        assert!(size > 10_000, "{name} holds a real picture ({size} bytes)");
    }
    assert_no_console_errors(&browser).await;
    browser.quit().await;
}

#[tokio::test]
async fn the_dashboard_works_with_a_read_token_in_the_address() {
    let app = TestApp::spawn_with(|c| {
        c.clock = std::sync::Arc::new(hookwatch::clock::SystemClock);
        c.tokens.ingest = vec!["ingest-secret".into()];
        c.tokens.read = vec!["read-secret".into()];
    })
    .await;
    let page = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 401, "the page itself needs the read token");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let telemetry = otel_logs(
        "S-token",
        &[(
            "api_request",
            now_ms - 1_000,
            json!({"model": {"stringValue": "claude-opus-4-1"}, "cost_usd": {"doubleValue": 0.5}}),
        )],
    );
    let response = app
        .client
        .post(app.url("/v1/logs"))
        .bearer_auth("ingest-secret")
        .header("content-type", "application/json")
        .body(telemetry)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let browser = open(&app, "/?token=read-secret").await;
    let address = browser.run("return location.href", json!([])).await;
    assert!(
        !address.as_str().unwrap().contains("secret"),
        "the token is taken out of the address bar: {address}"
    );
    let saved: Value = app
        .client
        .post(app.url("/events"))
        .bearer_auth("ingest-secret")
        .json(&now(
            "proj-token",
            "S-token",
            "Stop",
            json!({"stop_hook_active": false}),
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cells = wait_for_row(&browser, saved["event_id"].as_str().unwrap(), PATIENCE).await;
    assert_eq!(cells[3], "Stop");
    // With the read token, cost by person names the person.
    let people = browser
        .wait_for(
            "cost by person",
            "const rows = [...document.querySelectorAll('#cost-by-person .row')];
             return rows.length ? rows.map(r => r.querySelector('.label').textContent) : null",
            json!([]),
            PATIENCE,
        )
        .await;
    assert_eq!(people, json!(["dev@example.com"]));
    assert_no_console_errors(&browser).await;
    browser.quit().await;
}

#[tokio::test]
async fn on_postgres_the_page_names_its_store_and_shows_its_events() {
    let app = TestApp::spawn_on_with(crate::helpers::Backend::Postgres, |c| {
        c.clock = std::sync::Arc::new(hookwatch::clock::SystemClock);
    })
    .await;
    post_main_session(&app).await;
    let browser = open(&app, "/").await;
    browser
        .wait_for(
            "the store pill to name PostgreSQL",
            "return document.getElementById('health-sqlite').textContent === 'PostgreSQL up'",
            json!([]),
            PATIENCE,
        )
        .await;
    let saved = app
        .send_event(&now(
            "proj-pg",
            "S-pg",
            "Stop",
            json!({"stop_hook_active": false}),
        ))
        .await;
    let cells = wait_for_row(&browser, saved["event_id"].as_str().unwrap(), PATIENCE).await;
    assert!(cells.iter().any(|cell| cell == "proj-pg"), "{cells:?}");
    assert_no_console_errors(&browser).await;
    browser.quit().await;
}

/// A Stop sent with its conversation (the upstream's --add-chat): the event's detail offers
/// it, and it renders as messages, every text as text.
#[tokio::test]
async fn a_chat_shows_as_a_conversation_rendered_as_text() {
    let app = TestApp::spawn_live().await;
    let browser = open(&app, "/").await;
    let hostile = "<img src=x onerror=alert(3)> <script>window.pwned = 1</script>";
    let mut stop = now("proj", "S-chat", "Stop", json!({}));
    stop["chat"] = json!([
        {"type": "user", "message": {"role": "user", "content": hostile}},
        {"type": "assistant", "message": {"role": "assistant", "content": [
            {"type": "text", "text": "<b>Looking</b> at it"},
            {"type": "tool_use", "name": "Read", "input": {"file_path": "/src/<i>.rs"}}
        ]}},
        {"type": "user", "message": {"role": "user", "content": [
            {"type": "tool_result", "content": "fn main() {}"}
        ]}}
    ]);
    let saved = app.send_event(&stop).await;
    wait_for_row(&browser, saved["event_id"].as_str().unwrap(), PATIENCE).await;
    let detail = open_event_detail(&browser, &saved).await;
    assert!(detail.contains("\"chat_bytes\""), "{detail}");
    browser
        .run(
            "document.getElementById('detail-chat-open').click()",
            json!([]),
        )
        .await;
    let messages = browser
        .wait_for(
            "the conversation",
            "const ms = [...document.querySelectorAll('#detail-chat .chat-message')];
             return ms.length ? ms.map(m => [m.dataset.role, m.querySelector('.chat-text').textContent]) : null",
            json!([]),
            PATIENCE,
        )
        .await;
    assert_eq!(
        messages,
        json!([
            ["user", hostile],
            [
                "assistant",
                "<b>Looking</b> at it\n[Read] {\"file_path\":\"/src/<i>.rs\"}"
            ],
            ["user", "[result] fn main() {}"]
        ])
    );
    // The scenario's time: a stray handler's chance to fire (nothing should).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let parsed = browser
        .run(
            "return {
               images: document.querySelectorAll('img').length,
               bold: document.querySelectorAll('#detail b, #detail i').length,
               pwned: window.pwned === 1,
             }",
            json!([]),
        )
        .await;
    assert_eq!(parsed, json!({"images": 0, "bold": 0, "pwned": false}));
    assert_eq!(browser.open_alert().await, None);
    browser.screenshot(&screenshot_path("chat-view.png")).await;
    assert_no_console_errors(&browser).await;
    browser.quit().await;
}

/// Waits for the pending request of event `id` on the page and returns its texts.
async fn wait_for_request(browser: &Browser, id: i64) -> Value {
    browser
        .wait_for(
            "the pending request",
            "const item = document.querySelector(`#pending-list .request[data-event-id='${arguments[0]}']`);
             return item && !document.getElementById('pending').hidden ? {
               question: item.querySelector('.request-question').textContent,
               tool: item.querySelector('.request-tool').textContent,
               buttons: [...item.querySelectorAll('button')].map(b => b.textContent),
             } : null",
            json!([id]),
            PATIENCE,
        )
        .await
}

async fn click_answer(browser: &Browser, id: i64, answer: &str) {
    browser
        .run(
            "document.querySelector(`#pending-list .request[data-event-id='${arguments[0]}'] button[data-answer='${arguments[1]}']`).click()",
            json!([id, answer]),
        )
        .await;
}

/// The upstream's human-in-the-loop requests are listed with their question and tool call,
/// every text as text, and answered from the page.
#[tokio::test]
async fn pending_requests_are_listed_as_text_and_answered_from_the_page() {
    let app = TestApp::spawn_live().await;
    let browser = open(&app, "/").await;
    let question = "<img src=x onerror=alert(4)> may I?";
    let mut request = now(
        "proj",
        "S-ask",
        "PreToolUse",
        pre_tool(
            "Bash",
            "b9",
            json!({"command": "<script>window.pwned = 1</script>"}),
        ),
    );
    request["humanInTheLoop"] = json!({"question": question, "type": "permission", "responseWebSocketUrl": "ws://127.0.0.1:9/"});
    let saved = app.send_event(&request).await;
    let id = saved["id"].as_i64().unwrap();
    let shown = wait_for_request(&browser, id).await;
    assert_eq!(
        shown,
        json!({"question": question, "tool": "Bash: <script>window.pwned = 1</script>",
               "buttons": ["Allow", "Deny"]})
    );
    click_answer(&browser, id, "allow").await;
    browser
        .wait_for(
            "the list to empty",
            "return document.getElementById('pending').hidden",
            json!([]),
            PATIENCE,
        )
        .await;
    let events = app.get_ok("/events").await;
    let status = &events["events"][0]["humanInTheLoopStatus"];
    assert_eq!(status["status"], "responded");
    assert_eq!(status["response"]["permission"], true);
    let parsed = browser
        .run(
            "return {images: document.querySelectorAll('img').length, pwned: window.pwned === 1}",
            json!([]),
        )
        .await;
    assert_eq!(parsed, json!({"images": 0, "pwned": false}));
    assert_eq!(browser.open_alert().await, None);
    assert_no_console_errors(&browser).await;
    browser.quit().await;
}

/// `hookwatch install --approvals`' hook: `send --wait-for-decision` waits for a person, who
/// allows it on the dashboard in Chromium; the hook prints Claude Code's decision.
#[tokio::test]
async fn an_approval_given_on_the_dashboard_is_printed_as_claude_codes_decision() {
    let app = TestApp::spawn_live().await;
    let browser = open(&app, "/").await;
    let dir = tempfile::tempdir().unwrap();
    let payload = serde_json::to_vec(&crate::fixtures::hook(
        "S-approve",
        "PermissionRequest",
        json!({"tool_name": "Bash", "tool_input": {"command": "cargo publish"}}),
    ))
    .unwrap();
    let mut hook = tokio::process::Command::new(crate::helpers::binary())
        .args([
            "send",
            "--wait-for-decision",
            "30s",
            "--server",
            &app.base_url,
        ])
        .env("HOOKWATCH_SPOOL_DIR", dir.path().join("spool"))
        .env("HOME", dir.path())
        .env_remove("HOOKWATCH_TOKEN")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = hook.stdin.take().unwrap();
        stdin.write_all(&payload).await.unwrap();
    }
    let id = browser
        .wait_for(
            "the hook's request on the page",
            "const item = document.querySelector('#pending-list .request');
             return item ? Number(item.dataset.eventId) : null",
            json!([]),
            PATIENCE,
        )
        .await
        .as_i64()
        .unwrap();
    let shown = wait_for_request(&browser, id).await;
    assert_eq!(shown["question"], "Allow Bash: cargo publish?");
    browser
        .screenshot(&screenshot_path("pending-request.png"))
        .await;
    click_answer(&browser, id, "allow").await;
    let output = tokio::time::timeout(Duration::from_secs(20), hook.wait_with_output())
        .await
        .expect("the hook ends once answered")
        .unwrap();
    assert!(output.status.success());
    let decision: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        decision,
        json!({"hookSpecificOutput": {"hookEventName": "PermissionRequest",
               "decision": {"behavior": "allow"}}})
    );
    assert_no_console_errors(&browser).await;
    browser.quit().await;
}

/// Claude Code-shaped OTLP log records for session `session`: `(name, at_ms, attributes)`.
fn otel_logs(session: &str, records: &[(&str, i64, Value)]) -> Vec<u8> {
    let records: Vec<Value> = records
        .iter()
        .map(|(name, at_ms, extra)| {
            let mut attributes = vec![
                json!({"key": "session.id", "value": {"stringValue": session}}),
                json!({"key": "event.name", "value": {"stringValue": name}}),
                json!({"key": "user.email", "value": {"stringValue": "dev@example.com"}}),
            ];
            for (key, value) in extra.as_object().unwrap() {
                attributes.push(json!({"key": key, "value": value}));
            }
            json!({
                "timeUnixNano": format!("{}", at_ms * 1_000_000),
                "body": {"stringValue": format!("claude_code.{name}")},
                "attributes": attributes,
            })
        })
        .collect();
    serde_json::to_vec(&json!({"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]}))
        .unwrap()
}

#[tokio::test]
async fn telemetry_panels_show_cost_cache_use_and_the_requests_between_tool_calls() {
    let app = TestApp::spawn_live().await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t0 = now_ms - 20_000;
    let hook = |event: &str, at: i64, extra: Value| {
        let mut e = envelope("proj-otel", "S-otel", event, 0, extra);
        e["timestamp"] = json!(t0 + at);
        e
    };
    for event in [
        hook("SessionStart", 0, json!({"source": "startup"})),
        hook(
            "PreToolUse",
            5_000,
            pre_tool("Bash", "b1", json!({"command": "ls"})),
        ),
        hook(
            "PostToolUse",
            6_000,
            json!({"tool_name": "Bash", "tool_use_id": "b1", "tool_input": {}, "tool_response": {}}),
        ),
    ] {
        app.send_event(&event).await;
    }
    // A model name with markup in it: text on the page, never an element.
    let hostile = "<img src=x onerror=\"document.title='pwned'\">";
    let request = |model: &str, cost: f64, tokens: [i64; 4], duration: i64| {
        json!({
            "model": {"stringValue": model},
            "cost_usd": {"doubleValue": cost},
            "input_tokens": {"intValue": tokens[0]},
            "output_tokens": {"intValue": tokens[1]},
            "cache_read_tokens": {"intValue": tokens[2]},
            "cache_creation_tokens": {"intValue": tokens[3]},
            "duration_ms": {"intValue": duration},
            "query_source": {"stringValue": "repl_main_thread"},
        })
    };
    let body = otel_logs(
        "S-otel",
        &[
            (
                "api_request",
                t0 + 2_000,
                request("claude-opus-4-1", 0.50, [100, 50, 900, 0], 1_000),
            ),
            (
                "api_request",
                t0 + 8_000,
                request(hostile, 0.25, [100, 50, 0, 100], 2_000),
            ),
            (
                "api_request",
                t0 + 9_000,
                request("claude-opus-4-1", 0.25, [100, 50, 900, 0], 3_000),
            ),
            (
                "api_error",
                t0 + 10_000,
                json!({"model": {"stringValue": "claude-opus-4-1"},
                       "status_code": {"intValue": 529}, "attempt": {"intValue": 4},
                       "error": {"stringValue": "Overloaded"}}),
            ),
        ],
    );
    let response = app.post_raw("/v1/logs", body).await;
    assert_eq!(response.status(), 200);

    let browser = open(&app, "/").await;
    let by_model = browser
        .wait_for(
            "cost by model from the telemetry",
            "const rows = [...document.querySelectorAll('#cost-by-model .row')];
             return rows.length === 2 ? rows.map(r => [r.querySelector('.label').textContent,
                 r.querySelector('.figure').textContent]) : null",
            json!([]),
            PATIENCE,
        )
        .await;
    assert_eq!(
        by_model,
        json!([["claude-opus-4-1", "$0.75"], [hostile, "$0.25"]])
    );
    let panels = browser
        .run(
            "return {
               card: document.querySelector('.card .value[data-metric=\"cost_usd\"]').dataset.value,
               tokens: document.querySelector('.card .value[data-metric=\"tokens\"]').dataset.value,
               source: document.getElementById('cost-source').textContent,
               tokens_source: document.getElementById('tokens-source').textContent,
               summary: document.getElementById('api-summary').textContent,
               cache: [...document.querySelectorAll('#cache-efficiency .row')]
                   .map(r => [r.querySelector('.label').textContent, r.querySelector('.figure').textContent]),
               person: document.getElementById('cost-by-person').textContent,
               images: document.querySelectorAll('img').length,
               title: document.title,
             }",
            json!([]),
        )
        .await;
    assert_eq!(panels["card"], "1", "{panels}");
    // The three requests' tokens, measured, as the cost is.
    assert_eq!(panels["tokens"], "2350", "{panels}");
    assert_eq!(panels["source"], "measured");
    assert_eq!(panels["tokens_source"], "measured");
    assert_eq!(panels["summary"], "3 requests · 1 errors");
    // Opus: 1800 cache reads of 2000 prompt tokens; the other: none.
    assert_eq!(
        panels["cache"],
        json!([["claude-opus-4-1", "90.0%"], [hostile, "0.0%"]])
    );
    assert!(
        panels["person"].as_str().unwrap().contains("read token"),
        "{panels}"
    );
    assert_eq!(panels["images"], 0);
    assert_eq!(panels["title"], "hookwatch");

    // The main agent's detail: the API requests before and after its one tool call.
    browser
        .wait_for(
            "the session's main agent in a list",
            "return document.querySelector('tr[data-agent-id=\"S-otel\"]') ? true : null",
            json!([]),
            PATIENCE,
        )
        .await;
    browser
        .run(
            "document.querySelector('tr[data-agent-id=\"S-otel\"]').click()",
            json!([]),
        )
        .await;
    let steps = browser
        .wait_for(
            "the agent's activity",
            "const rows = [...document.querySelectorAll('#detail-activity tbody tr')];
             return rows.length ? rows.map(r => [r.className, r.cells[1].textContent]) : null",
            json!([]),
            PATIENCE,
        )
        .await;
    assert_eq!(
        steps,
        json!([
            ["api-run", "1 API request"],
            ["tool-step", "Bash"],
            ["api-run", "2 API requests · 1 error"],
        ])
    );
    let facts = browser
        .run(
            "return [...document.querySelectorAll('#detail-body dd')].map(d => d.textContent)",
            json!([]),
        )
        .await;
    assert!(
        facts
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "$1.00 (measured)"),
        "{facts}"
    );
    assert_no_console_errors(&browser).await;
    browser.quit().await;
}

/// Text the page cuts off (an ellipsis in a narrow column or bar) can still be read: the cell,
/// or the row it is in, carries the whole text as its title (issue 30: long model names,
/// emails, apps and agent types were cut with no way to read them).
#[tokio::test]
async fn text_cut_off_by_the_layout_can_be_read_on_hover() {
    let app = TestApp::spawn_live().await;
    let app_name = "proj-with-a-name-far-too-long-for-its-column-in-the-tables-of-the-dashboard";
    let agent_type = "a-custom-agent-type-whose-name-runs-on-and-on-past-its-column";
    let subagent = |event: &str, extra: Value| {
        now(
            app_name,
            "S-long",
            event,
            in_subagent("sub-long", agent_type, extra),
        )
    };
    app.send_event(&now(app_name, "S-long", "SessionStart", json!({})))
        .await;
    app.send_event(&subagent("SubagentStart", json!({}))).await;
    app.send_event(&subagent(
        "PreToolUse",
        pre_tool("Read", "r-long", json!({})),
    ))
    .await;
    let browser = open(&app, "/").await;
    browser
        .wait_for(
            "the long-named agent in the active agents",
            "return document.querySelector('tr[data-agent-id=\"sub-long\"]') !== null",
            json!([]),
            PATIENCE,
        )
        .await;
    let unreadable = browser
        .run(
            "const cut = [...document.querySelectorAll('td, .bars .label')]
                 .filter(e => e.scrollWidth > e.clientWidth + 1 && e.textContent.trim() !== '');
             const readable = e => {
                 for (let n = e; n; n = n.parentElement) {
                     if ((n.getAttribute && n.getAttribute('title') || '').includes(e.textContent.trim()))
                         return true;
                 }
                 return false;
             };
             return { cut: cut.length, unreadable: cut.filter(e => !readable(e)).map(e => e.textContent) };",
            json!([]),
        )
        .await;
    assert!(
        unreadable["cut"].as_u64().unwrap() > 0,
        "the long names are cut off at this width: {unreadable}"
    );
    assert_eq!(unreadable["unreadable"], json!([]), "{unreadable}");
}

/// Issue 34: the fleet's three agents' API use, each from its own telemetry (Claude Code's
/// measured cost; Codex's and Gemini's tokens priced), split by agent, and the usage panels
/// narrowed to one agent by the picker.
#[tokio::test]
async fn the_dashboard_shows_cost_by_agent_and_narrows_the_usage_panels_to_one() {
    let app = TestApp::spawn_live().await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let claude = otel_logs(
        "S-claude",
        &[(
            "api_request",
            now_ms - 30_000,
            json!({
                "model": {"stringValue": "claude-opus-4-1"},
                "cost_usd": {"doubleValue": 0.5},
                "input_tokens": {"intValue": 100},
                "output_tokens": {"intValue": 50},
                "duration_ms": {"intValue": 900},
            }),
        )],
    );
    assert_eq!(app.post_raw("/v1/logs", claude).await.status(), 200);
    crate::otlp_agents::export_codex_with_the_rust_sdk(&app.base_url, "S-codex", now_ms, 1_000)
        .await;
    let dir = crate::otlp::js_exporters();
    let now = now_ms.to_string();
    crate::otlp::run_node(
        &dir.join("gemini.mjs"),
        &[app.base_url.as_str(), "http/json", "S-gemini", &now],
    )
    .await;

    let browser = open(&app, "/").await;
    let rows_of = |panel: &str| {
        format!(
            "const rows = [...document.querySelectorAll('#{panel} .row')];
             return rows.map(r => [r.querySelector('.label').textContent,
                                   r.querySelector('.figure').textContent]);"
        )
    };
    let wait_for_rows = |panel: &'static str, expected: Value| {
        let browser = &browser;
        let script = format!(
            "{} return JSON.stringify(shown) === JSON.stringify(arguments[0]) ? shown : null",
            rows_of(panel).replace("return rows.map", "const shown = rows.map")
        );
        async move {
            browser
                .wait_for(panel, &script, json!([expected]), PATIENCE)
                .await
        }
    };
    // Codex: $0.013 (gpt-5-codex's tokens priced); Gemini: $0.0108 (gemini-2.5-pro's).
    let every_agent = json!([
        ["claude-code", "$0.50"],
        ["codex", "$0.01"],
        ["gemini-cli", "$0.01"]
    ]);
    let every_model = json!([
        ["claude-opus-4-1", "$0.50"],
        ["gpt-5-codex", "$0.01"],
        ["gemini-2.5-pro", "$0.01"]
    ]);
    wait_for_rows("cost-by-agent", every_agent.clone()).await;
    wait_for_rows("cost-by-model", every_model.clone()).await;

    let pick = |agent: &'static str| {
        let browser = &browser;
        async move {
            browser
                .run(
                    "const picker = document.getElementById('agent-filter');
                     picker.value = arguments[0];
                     picker.dispatchEvent(new Event('change'));",
                    json!([agent]),
                )
                .await
        }
    };
    pick("codex").await;
    wait_for_rows("cost-by-model", json!([["gpt-5-codex", "$0.01"]])).await;
    let summary = browser
        .run(
            "return document.getElementById('api-summary').textContent",
            json!([]),
        )
        .await;
    assert_eq!(summary, "1 requests · 1 errors", "Codex's failed attempt");
    // The split by agent stays whole while one is picked.
    assert_eq!(
        browser.run(&rows_of("cost-by-agent"), json!([])).await,
        every_agent.clone()
    );
    pick("gemini-cli").await;
    wait_for_rows("cost-by-model", json!([["gemini-2.5-pro", "$0.01"]])).await;
    pick("claude-code").await;
    wait_for_rows("cost-by-model", json!([["claude-opus-4-1", "$0.50"]])).await;
    pick("").await;
    wait_for_rows("cost-by-model", every_model.clone()).await;
    assert!(browser.console_errors().await.is_empty());
    browser.quit().await;
}
