//! Alerts (`--alerts FILE`): rules evaluated on the test's clock (`evaluate_once`, no sleeping
//! for time to pass), episodes kept in the store, and deliveries to a real HTTP server that
//! records what it is sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::helpers::{Backend, T0, TestApp, wait_until};

/// A webhook receiver: records every body it accepts; answers 500 to the first `fail_first`.
#[derive(Clone, Default)]
struct Receiver {
    accepted: Arc<Mutex<Vec<Value>>>,
    tries: Arc<AtomicUsize>,
    fail_first: usize,
}

impl Receiver {
    async fn start(fail_first: usize) -> (Self, String) {
        let receiver = Self {
            fail_first,
            ..Self::default()
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, url)
    }

    async fn accepted(&self) -> Vec<Value> {
        self.accepted.lock().await.clone()
    }

    /// Waits until `n` bodies were accepted; returns them.
    async fn wait_for(&self, n: usize) -> Vec<Value> {
        let this = self.clone();
        let bodies = wait_until(
            &format!("{n} deliveries"),
            Duration::from_secs(20),
            || {
                let this = this.clone();
                async move { json!(this.accepted().await) }
            },
            |bodies| bodies.as_array().unwrap().len() >= n,
        )
        .await;
        bodies.as_array().unwrap().clone()
    }
}

async fn receive(State(receiver): State<Receiver>, body: axum::Json<Value>) -> StatusCode {
    let try_number = receiver.tries.fetch_add(1, Ordering::SeqCst);
    if try_number < receiver.fail_first {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    receiver.accepted.lock().await.push(body.0);
    StatusCode::OK
}

fn rules_file(app_dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = app_dir.join("alerts.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// One `api_request` of `cost` USD for `session`, at `at_ms` after T0.
async fn spend(app: &TestApp, session: &str, at_ms: i64, cost: f64, sequence: i64) {
    let body = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{
        "timeUnixNano": format!("{}", (T0 + at_ms) * 1_000_000),
        "body": {"stringValue": "claude_code.api_request"},
        "attributes": [
            {"key": "session.id", "value": {"stringValue": session}},
            {"key": "event.name", "value": {"stringValue": "api_request"}},
            {"key": "event.sequence", "value": {"intValue": sequence}},
            {"key": "model", "value": {"stringValue": "claude-sonnet-4-6"}},
            {"key": "cost_usd", "value": {"doubleValue": cost}},
        ],
    }]}]}]});
    let response = app
        .post_raw("/v1/logs", serde_json::to_vec(&body).unwrap())
        .await;
    assert_eq!(response.status(), 200);
}

async fn spawn_with_rules(backend: Backend, rules: &str) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let path = rules_file(dir.path(), rules);
    let app = TestApp::spawn_on_with(backend, move |c| {
        c.alerts_file = Some(path);
        // The test evaluates by hand, on its clock; the server's own tick stays out of it.
        c.alert_interval = Duration::from_secs(3600);
        c.alerts_after_commit = None;
    })
    .await;
    // The rule file's directory lives as long as the test.
    std::mem::forget(dir);
    app.clock.set(T0 + 10 * 60_000);
    app
}

async fn spend_fires_at_the_threshold_resolves_and_never_fires_twice(backend: Backend) {
    let (receiver, url) = Receiver::start(0).await;
    let app = spawn_with_rules(
        backend,
        &format!(
            r#"
[[target]]
name = "team"
webhook = "{url}"

[[rule]]
name = "session over 30 cents"
condition = "spend"
threshold = 0.30
window = "1h"
per = "session"
notify = ["team"]
"#
        ),
    )
    .await;

    spend(&app, "S-spend", 60_000, 0.20, 1).await;
    let below = app.alerts.evaluate_once().await.unwrap();
    assert!(below.fired.is_empty(), "below the threshold: nothing");

    spend(&app, "S-spend", 120_000, 0.10, 2).await;
    let at = app.alerts.evaluate_once().await.unwrap();
    assert_eq!(at.fired.len(), 1, "at the threshold it fires");
    let again = app.alerts.evaluate_once().await.unwrap();
    assert!(again.fired.is_empty(), "one episode fires once");

    let firing = receiver.wait_for(1).await;
    assert_eq!(firing[0]["rule"], "session over 30 cents");
    assert_eq!(firing[0]["state"], "firing");
    assert_eq!(firing[0]["scope"], "session");
    assert_eq!(firing[0]["key"], "S-spend");
    assert!((firing[0]["value"].as_f64().unwrap() - 0.30).abs() < 1e-9);
    assert_eq!(firing[0]["threshold"], 0.3);
    assert_eq!(firing[0]["window"], "1h");
    assert!(
        firing[0]["text"]
            .as_str()
            .unwrap()
            .contains("session over 30 cents"),
        "a Slack-compatible text: {}",
        firing[0]
    );

    let listed = app.get_ok("/api/alerts").await;
    assert_eq!(listed["firing"].as_array().unwrap().len(), 1, "{listed}");

    // The spend leaves the window: the episode resolves, once.
    app.clock.set(T0 + 2 * 3_600_000);
    let cleared = app.alerts.evaluate_once().await.unwrap();
    assert_eq!(cleared.resolved.len(), 1);
    assert!(
        app.alerts
            .evaluate_once()
            .await
            .unwrap()
            .resolved
            .is_empty()
    );
    let both = receiver.wait_for(2).await;
    assert_eq!(both[1]["state"], "resolved");
    assert_eq!(both[1]["key"], "S-spend");
    let listed = app.get_ok("/api/alerts").await;
    assert!(listed["firing"].as_array().unwrap().is_empty());
    assert_eq!(listed["history"][0]["state"], "resolved");
    // Nothing more arrives.
    tokio::time::sleep(Duration::from_millis(300)).await; // the scenario's quiet time
    assert_eq!(receiver.accepted().await.len(), 2);
}

/// Two instances on one PostgreSQL database evaluate the same rule at once: one episode, one
/// notification.
#[tokio::test]
async fn two_instances_on_postgres_fire_an_alert_once() {
    let backend = Backend::Postgres;
    let (receiver, url) = Receiver::start(0).await;
    let rules = format!(
        "[[target]]\nname = \"t\"\nwebhook = \"{url}\"\n\n[[rule]]\nname = \"all spend\"\n\
         condition = \"spend\"\nthreshold = 0.1\nwindow = \"1h\"\nnotify = [\"t\"]\n"
    );
    let first = spawn_with_rules(backend, &rules).await;
    spend(&first, "S-two", 60_000, 0.5, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let path = rules_file(dir.path(), &rules);
    std::mem::forget(dir);
    let second = TestApp::spawn_sharing(first.database.clone(), first.clock.clone(), move |c| {
        c.alerts_file = Some(path);
        c.alert_interval = Duration::from_secs(3600);
        c.alerts_after_commit = None;
    })
    .await;
    let (a, b) = tokio::join!(first.alerts.evaluate_once(), second.alerts.evaluate_once());
    let fired = a.unwrap().fired.len() + b.unwrap().fired.len();
    assert_eq!(fired, 1, "one of the two opens the episode");
    receiver.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // the scenario's quiet time
    assert_eq!(receiver.accepted().await.len(), 1);
}

crate::on_each_store!(spend_fires_at_the_threshold_resolves_and_never_fires_twice);

#[tokio::test]
async fn a_webhook_that_fails_twice_gets_the_alert_once_after_the_backoff() {
    let (receiver, url) = Receiver::start(2).await;
    let app = spawn_with_rules(
        Backend::Sqlite,
        &format!(
            "[[target]]\nname = \"t\"\nwebhook = \"{url}\"\n\n[[rule]]\nname = \"errors\"\n\
             condition = \"api_errors\"\nthreshold = 1\nwindow = \"1h\"\nper = \"model\"\nnotify = [\"t\"]\n"
        ),
    )
    .await;
    let body = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{
        "timeUnixNano": format!("{}", (T0 + 60_000) * 1_000_000),
        "body": {"stringValue": "claude_code.api_error"},
        "attributes": [
            {"key": "session.id", "value": {"stringValue": "S-err"}},
            {"key": "event.name", "value": {"stringValue": "api_error"}},
            {"key": "model", "value": {"stringValue": "claude-opus-4-1"}},
            {"key": "status_code", "value": {"intValue": 529}},
        ],
    }]}]}]});
    assert_eq!(
        app.post_raw("/v1/logs", serde_json::to_vec(&body).unwrap())
            .await
            .status(),
        200
    );
    let done = app.alerts.evaluate_once().await.unwrap();
    assert_eq!(done.fired.len(), 1);
    let delivered = receiver.wait_for(1).await;
    assert_eq!(delivered[0]["key"], "claude-opus-4-1");
    assert_eq!(
        receiver.tries.load(Ordering::SeqCst),
        3,
        "two failures, then once"
    );
    let listed = wait_until(
        "the delivery recorded",
        Duration::from_secs(10),
        || app.get_ok("/api/alerts"),
        |listed| listed["firing"][0]["delivered"] == true,
    )
    .await;
    assert_eq!(listed["firing"][0]["delivery_error"], Value::Null);
}

#[tokio::test]
async fn a_restart_while_firing_does_not_notify_again_and_resolving_after_notifies_once() {
    let (receiver, url) = Receiver::start(0).await;
    let rules = format!(
        "[[target]]\nname = \"t\"\nwebhook = \"{url}\"\n\n[[rule]]\nname = \"spend\"\n\
         condition = \"spend\"\nthreshold = 0.1\nwindow = \"1h\"\nnotify = [\"t\"]\n"
    );
    let app = spawn_with_rules(Backend::Sqlite, &rules).await;
    spend(&app, "S-restart", 60_000, 0.5, 1).await;
    assert_eq!(app.alerts.evaluate_once().await.unwrap().fired.len(), 1);
    receiver.wait_for(1).await;

    let dir = tempfile::tempdir().unwrap();
    let path = rules_file(dir.path(), &rules);
    let app = app
        .restart_with(move |c| {
            c.alerts_file = Some(path);
            c.alert_interval = Duration::from_secs(3600);
            c.alerts_after_commit = None;
        })
        .await;
    assert!(
        app.alerts.evaluate_once().await.unwrap().fired.is_empty(),
        "the episode survived the restart: not fired again"
    );
    app.clock.set(T0 + 3 * 3_600_000);
    assert_eq!(app.alerts.evaluate_once().await.unwrap().resolved.len(), 1);
    let bodies = receiver.wait_for(2).await;
    assert_eq!(bodies[1]["state"], "resolved");
    tokio::time::sleep(Duration::from_millis(300)).await; // the scenario's quiet time
    assert_eq!(
        receiver.accepted().await.len(),
        2,
        "one firing, one resolution"
    );
}

#[tokio::test]
async fn a_bad_rule_file_is_refused_with_its_line_and_the_rules_in_force_stay() {
    let dir = tempfile::tempdir().unwrap();
    let good = "[[rule]]\nname = \"stuck\"\ncondition = \"stuck\"\nthreshold = 60\n";
    let path = rules_file(dir.path(), good);
    let app = TestApp::spawn_with({
        let path = path.clone();
        move |c| c.alerts_file = Some(path)
    })
    .await;
    std::fs::write(
        &path,
        format!("{good}\n[[rule]]\nname = \"x\"\ncondition = \"slow\"\nthreshold = 1\n"),
    )
    .unwrap();
    let response = app
        .client
        .post(app.url("/api/alerts/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    let message = error["error"].as_str().unwrap();
    assert!(message.contains("line 8"), "{message}");
    assert!(message.contains("the rules in force stay"), "{message}");
    let listed = app.get_ok("/api/alerts").await;
    assert_eq!(listed["rules"].as_array().unwrap().len(), 1);
    assert_eq!(listed["rules"][0]["name"], "stuck");

    std::fs::write(&path, format!("{good}\n[[rule]]\nname = \"waiting\"\ncondition = \"pending_approval\"\nthreshold = 30\n")).unwrap();
    let reloaded: Value = app
        .client
        .post(app.url("/api/alerts/reload"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reloaded["rules"], 2);

    // A server asked to start with a bad file does not start, and says where.
    std::fs::write(&path, "[[rule]]\nname = 1\n").unwrap();
    let mut config = hookwatch::config::Config::new(dir.path().join("other"));
    config.addr = "127.0.0.1:0".parse().unwrap();
    config.alerts_file = Some(path);
    let refused = hookwatch::startup::Application::build(config).await;
    let message = refused.err().expect("refused").to_string();
    assert!(message.contains("line 2"), "{message}");
}

/// Stuck is a tool call running for the threshold, or a subagent silent for it with no call
/// running; each fires once, at the threshold and not below, and resolves when it moves on
/// (issue 30: a main agent idle after Stop fired, and a stuck subagent fired for itself and
/// its parent).
#[tokio::test]
async fn stuck_fires_once_per_stuck_call_or_silent_subagent_and_never_for_a_person_thinking() {
    use crate::fixtures::{envelope, in_subagent, post_tool, pre_tool};
    let app = spawn_with_rules(
        Backend::Sqlite,
        "[[rule]]\nname = \"stuck\"\ncondition = \"stuck\"\nthreshold = 120\n",
    )
    .await;
    let at = |s: i64| 10 * 60_000 + s * 1_000;
    let evaluate = |s: i64| {
        app.clock.set(T0 + at(s));
        app.alerts.evaluate_once()
    };
    let send = |event: Value| {
        let app = &app;
        async move { app.send_event(&event).await }
    };
    // A main agent that stopped and waits for its person: never stuck.
    send(envelope("p", "S-idle", "SessionStart", at(0), json!({}))).await;
    send(envelope("p", "S-idle", "Stop", at(1), json!({}))).await;
    // A Bash call that hangs, in another session.
    send(envelope("p", "S-bash", "SessionStart", at(0), json!({}))).await;
    let hang = pre_tool("Bash", "bash-1", json!({"command": "sleep 1000"}));
    send(envelope("p", "S-bash", "PreToolUse", at(10), hang)).await;
    // A subagent that goes silent (its Task call runs meanwhile), in a third session.
    send(envelope("p", "S-sub", "SessionStart", at(0), json!({}))).await;
    let spawn = pre_tool(
        "Task",
        "task-1",
        json!({"subagent_type": "Explore", "prompt": "look"}),
    );
    send(envelope("p", "S-sub", "PreToolUse", at(20), spawn)).await;
    let start = in_subagent("sub-1", "Explore", json!({}));
    send(envelope("p", "S-sub", "SubagentStart", at(21), start)).await;
    // A subagent whose own call hangs, in a fourth: judged by the call, once.
    send(envelope(
        "p",
        "S-sub-call",
        "SessionStart",
        at(0),
        json!({}),
    ))
    .await;
    let start = in_subagent("sub-2", "Explore", json!({}));
    send(envelope("p", "S-sub-call", "SubagentStart", at(30), start)).await;
    let grep = in_subagent(
        "sub-2",
        "Explore",
        pre_tool("Grep", "grep-1", json!({"pattern": "x"})),
    );
    send(envelope("p", "S-sub-call", "PreToolUse", at(31), grep)).await;

    let firing = || async {
        let listed = app.get_ok("/api/alerts").await;
        let mut keys: Vec<String> = listed["firing"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["key"].as_str().unwrap().to_owned())
            .collect();
        keys.sort();
        keys
    };
    assert!(
        evaluate(129).await.unwrap().fired.is_empty(),
        "below: 119 s of the call"
    );
    assert_eq!(evaluate(130).await.unwrap().fired.len(), 1, "at 120 s");
    assert_eq!(firing().await, ["call:S-bash:bash-1"]);
    assert_eq!(
        evaluate(141).await.unwrap().fired.len(),
        1,
        "silent for 120 s"
    );
    assert_eq!(firing().await, ["agent:sub-1", "call:S-bash:bash-1"]);
    assert_eq!(
        evaluate(151).await.unwrap().fired.len(),
        1,
        "the subagent's call, not the subagent too"
    );
    assert_eq!(
        firing().await,
        ["agent:sub-1", "call:S-bash:bash-1", "call:sub-2:grep-1"]
    );
    let later = evaluate(400).await.unwrap();
    assert!(later.fired.is_empty(), "each fired once, S-idle never");
    // The call ends: its episode resolves, the others stay.
    let done = post_tool("Bash", "bash-1", json!({"stdout": ""}));
    send(envelope("p", "S-bash", "PostToolUse", at(401), done)).await;
    assert_eq!(evaluate(401).await.unwrap().resolved.len(), 1);
    assert_eq!(firing().await, ["agent:sub-1", "call:sub-2:grep-1"]);
}

#[tokio::test]
async fn failed_tools_fire_at_the_threshold_per_app_and_resolve_out_of_the_window() {
    let app = spawn_with_rules(
        Backend::Sqlite,
        "[[rule]]\nname = \"failing\"\ncondition = \"failed_tools\"\nthreshold = 2\n\
         window = \"15m\"\nper = \"app\"\n",
    )
    .await;
    let failure = |n: i64| {
        crate::fixtures::envelope(
            "proj-fail",
            "S-fail",
            "PostToolUseFailure",
            5 * 60_000 + n * 1_000,
            json!({"tool_name": "Bash", "tool_use_id": format!("f{n}"), "error": "exit 1"}),
        )
    };
    app.send_event(&failure(1)).await;
    assert!(
        app.alerts.evaluate_once().await.unwrap().fired.is_empty(),
        "one is below two"
    );
    app.send_event(&failure(2)).await;
    assert_eq!(
        app.alerts.evaluate_once().await.unwrap().fired.len(),
        1,
        "two is at it"
    );
    assert!(app.alerts.evaluate_once().await.unwrap().fired.is_empty());
    let listed = app.get_ok("/api/alerts").await;
    assert_eq!(listed["firing"][0]["key"], "proj-fail");
    assert_eq!(listed["firing"][0]["value"], 2.0);
    app.clock.set(T0 + 40 * 60_000);
    assert_eq!(app.alerts.evaluate_once().await.unwrap().resolved.len(), 1);
}

#[tokio::test]
async fn a_regular_app_gone_silent_fires_and_resolves_when_it_is_heard_from() {
    let app = spawn_with_rules(
        Backend::Sqlite,
        "[[rule]]\nname = \"quiet\"\ncondition = \"silence\"\nthreshold = 21600\n",
    )
    .await;
    // Sessions on three days, the last one ending at T0.
    for (day, session) in [(2, "S-d2"), (1, "S-d1"), (0, "S-d0")] {
        let at = -day * 86_400_000;
        app.send_event(&crate::fixtures::envelope(
            "proj-regular",
            session,
            "SessionStart",
            at,
            json!({}),
        ))
        .await;
    }
    // An app seen on one day only is not a regular sender.
    app.send_event(&crate::fixtures::envelope(
        "proj-once",
        "S-once",
        "SessionStart",
        0,
        json!({}),
    ))
    .await;
    app.clock.set(T0 + 21_599_000);
    assert!(
        app.alerts.evaluate_once().await.unwrap().fired.is_empty(),
        "5 h 59 min 59 s"
    );
    app.clock.set(T0 + 21_600_000);
    let fired = app.alerts.evaluate_once().await.unwrap();
    assert_eq!(fired.fired.len(), 1, "six hours of silence");
    assert!(
        app.alerts.evaluate_once().await.unwrap().fired.is_empty(),
        "once"
    );
    assert_eq!(
        app.get_ok("/api/alerts").await["firing"][0]["key"],
        "proj-regular"
    );
    app.send_event(&crate::fixtures::envelope(
        "proj-regular",
        "S-back",
        "SessionStart",
        21_600_000,
        json!({}),
    ))
    .await;
    assert_eq!(app.alerts.evaluate_once().await.unwrap().resolved.len(), 1);
}

#[tokio::test]
async fn the_dashboard_header_and_history_page_show_alerts_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let name = "<b>spend</b> over a cent";
    let path = rules_file(
        dir.path(),
        &format!(
            "[[rule]]\nname = \"{}\"\ncondition = \"spend\"\nthreshold = 0.01\nwindow = \"1h\"\n\
             per = \"session\"\n",
            name.replace('"', "\\\"")
        ),
    );
    let app = TestApp::spawn_with(move |c| {
        c.clock = Arc::new(hookwatch::clock::SystemClock);
        c.alerts_file = Some(path);
        c.alert_interval = Duration::from_secs(3600);
        c.alerts_after_commit = None;
    })
    .await;
    let browser = crate::browser::Browser::start().await;
    browser.goto(&app.url("/")).await;
    browser
        .wait_for(
            "the page live, no alert firing",
            "return document.getElementById('connection').dataset.state === 'live'
                 && document.getElementById('alerts-pill').textContent === 'no alerts'",
            json!([]),
            Duration::from_secs(10),
        )
        .await;

    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    spend(&app, "S-browser", now_ms - T0 - 60_000, 0.05, 1).await;
    assert_eq!(app.alerts.evaluate_once().await.unwrap().fired.len(), 1);
    // The WebSocket's `alert` message updates the header.
    let pill = browser
        .wait_for(
            "the header to show the alert",
            "const pill = document.getElementById('alerts-pill');
             return pill.dataset.firing === '1' ? [pill.textContent, pill.title] : null",
            json!([]),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(pill[0], "1 alert firing");
    assert!(pill[1].as_str().unwrap().contains(name), "{pill}");
    // The spend rule's budget, per session, in the usage panels.
    let budget = browser
        .wait_for(
            "the budget",
            "const row = document.querySelector('#budgets .row');
             return row ? [row.querySelector('.label').textContent,
                           row.querySelector('.figure').textContent] : null",
            json!([]),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(
        budget,
        json!([format!("{name} · S-browser"), "$0.05 of $0.01"])
    );

    browser.goto(&app.url("/alerts")).await;
    let rows = browser
        .wait_for(
            "the alerts page",
            "const firing = [...document.querySelectorAll('#firing tr')];
             const history = [...document.querySelectorAll('#history tr')];
             return firing.length ? [firing.map(r => [...r.cells].map(c => c.textContent)),
                 history.length, document.querySelectorAll('main b').length] : null",
            json!([]),
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(rows[0][0][0], name, "the rule's name, as text");
    assert_eq!(rows[0][0][1], "firing");
    assert_eq!(rows[0][0][2], "session S-browser");
    assert_eq!(rows[1], 1);
    assert_eq!(rows[2], 0, "no markup from the rule file became an element");
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    browser.quit().await;

    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains(
            "hookwatch_alerts_total{rule=\"<b>spend</b> over a cent\",state=\"firing\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("hookwatch_alerts_firing 1"), "{metrics}");
}

#[tokio::test]
async fn usage_shows_each_spend_rules_budget_used_left_and_projected() {
    let app = spawn_with_rules(
        Backend::Sqlite,
        "[[rule]]\nname = \"a dollar a session\"\ncondition = \"spend\"\nthreshold = 1.0\n\
         window = \"1h\"\nper = \"session\"\n",
    )
    .await;
    // The clock is at +10 min: one request early in the hour, one in its last quarter.
    spend(&app, "S-budget", -30 * 60_000, 0.10, 1).await;
    spend(&app, "S-budget", 9 * 60_000, 0.25, 2).await;
    let usage = app.get_ok("/api/usage?hours=1").await;
    let budgets = usage["budgets"].as_array().unwrap();
    assert_eq!(budgets.len(), 1, "{usage}");
    let budget = &budgets[0];
    assert_eq!(budget["rule"], "a dollar a session");
    assert_eq!(budget["key"], "S-budget");
    assert_eq!(budget["budget_usd"], 1.0);
    assert!(
        (budget["used_usd"].as_f64().unwrap() - 0.35).abs() < 1e-9,
        "{budget}"
    );
    assert!(
        (budget["left_usd"].as_f64().unwrap() - 0.65).abs() < 1e-9,
        "{budget}"
    );
    // The last quarter's 0.25, held for four quarters.
    assert!(
        (budget["projected_usd"].as_f64().unwrap() - 1.0).abs() < 1e-9,
        "{budget}"
    );
}

/// Without a tick in sight (an hour's interval), a commit gets the rules evaluated within a
/// second: a failure is alerted on while it is news.
#[tokio::test]
async fn a_commit_gets_the_rules_evaluated_without_waiting_for_the_tick() {
    let dir = tempfile::tempdir().unwrap();
    let path = rules_file(
        dir.path(),
        "[[rule]]\nname = \"any failure\"\ncondition = \"failed_tools\"\nthreshold = 1\nwindow = \"1h\"\n",
    );
    let app = TestApp::spawn_with(move |c| {
        c.alerts_file = Some(path);
        c.alert_interval = Duration::from_secs(3600);
    })
    .await;
    app.send_event(&crate::fixtures::envelope(
        "proj-news",
        "S-news",
        "PostToolUseFailure",
        -1_000,
        json!({"tool_name": "Bash", "tool_use_id": "n1", "error": "exit 1"}),
    ))
    .await;
    let listed = wait_until(
        "the alert, from the commit",
        Duration::from_secs(10),
        || app.get_ok("/api/alerts"),
        |listed| listed["firing"].as_array().is_some_and(|f| f.len() == 1),
    )
    .await;
    assert_eq!(listed["firing"][0]["rule"], "any failure");
}

/// A webhook that never answers holds up neither evaluation nor ingest: both finish while it
/// still hangs (the receiver answers only when the test lets it).
#[tokio::test]
async fn a_hanging_webhook_holds_up_neither_evaluation_nor_ingest() {
    let release = Arc::new(tokio::sync::Notify::new());
    let reached = Arc::new(tokio::sync::Notify::new());
    let app_router = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let (release, reached) = (Arc::clone(&release), Arc::clone(&reached));
            move || async move {
                reached.notify_one();
                release.notified().await;
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app_router).await.unwrap() });
    let app = spawn_with_rules(
        Backend::Sqlite,
        &format!(
            "[[target]]\nname = \"slow\"\nwebhook = \"{url}\"\n\n[[rule]]\nname = \"spend\"\n\
             condition = \"spend\"\nthreshold = 0.1\nwindow = \"1h\"\nnotify = [\"slow\"]\n"
        ),
    )
    .await;
    spend(&app, "S-hang", 60_000, 0.5, 1).await;
    let bound = Duration::from_secs(30); // a hang fails the test here instead of stalling it
    let done = tokio::time::timeout(bound, app.alerts.evaluate_once())
        .await
        .expect("evaluation finished while the webhook hangs")
        .unwrap();
    assert_eq!(done.fired.len(), 1);
    tokio::time::timeout(bound, reached.notified())
        .await
        .expect("the webhook was called");
    // The webhook is hanging now: ingest and the next evaluation go on.
    let saved = tokio::time::timeout(
        bound,
        app.send_event(&crate::fixtures::envelope(
            "p",
            "S-hang",
            "Notification",
            70_000,
            json!({}),
        )),
    )
    .await
    .expect("ingest is not held up");
    assert_eq!(saved["hook_event_type"], "Notification");
    tokio::time::timeout(bound, app.alerts.evaluate_once())
        .await
        .expect("nor is the next evaluation")
        .unwrap();
    let listed = app.get_ok("/api/alerts").await;
    assert_eq!(listed["firing"][0]["delivered"], false, "still on its way");
    release.notify_waiters();
    wait_until(
        "the delivery recorded once the webhook answers",
        Duration::from_secs(20),
        || app.get_ok("/api/alerts"),
        |listed| listed["firing"][0]["delivered"] == true,
    )
    .await;
}

/// A command target runs a local program with the alert as JSON on its standard input (the
/// origin's spoken notifications, a desktop notifier).
#[tokio::test]
async fn a_command_target_gets_the_alert_on_its_standard_input() {
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("alert.json");
    let app = spawn_with_rules(
        Backend::Sqlite,
        &format!(
            "[[target]]\nname = \"local\"\ncommand = [\"sh\", \"-c\", \"cat > '{}'\"]\n\n\
             [[rule]]\nname = \"spend\"\ncondition = \"spend\"\nthreshold = 0.1\nwindow = \"1h\"\n\
             notify = [\"local\"]\n",
            file.display()
        ),
    )
    .await;
    spend(&app, "S-cmd", 60_000, 0.5, 1).await;
    assert_eq!(app.alerts.evaluate_once().await.unwrap().fired.len(), 1);
    let listed = wait_until(
        "the command to have run",
        Duration::from_secs(20),
        || app.get_ok("/api/alerts"),
        |listed| listed["firing"][0]["delivered"] == true,
    )
    .await;
    assert_eq!(listed["firing"][0]["delivery_error"], Value::Null);
    let alert: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(alert["rule"], "spend");
    assert_eq!(alert["state"], "firing");
    assert_eq!(alert["scope"], "all");
}

/// api_errors: below, at, once, and resolved when the errors leave the window.
#[tokio::test]
async fn api_errors_fire_at_the_threshold_and_resolve() {
    let app = spawn_with_rules(
        Backend::Sqlite,
        "[[rule]]\nname = \"errors\"\ncondition = \"api_errors\"\nthreshold = 2\nwindow = \"15m\"\n",
    )
    .await;
    let error = |n: i64| {
        json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{
            "timeUnixNano": format!("{}", (T0 + 5 * 60_000 + n) * 1_000_000),
            "body": {"stringValue": "claude_code.api_error"},
            "attributes": [
                {"key": "session.id", "value": {"stringValue": "S-e"}},
                {"key": "event.name", "value": {"stringValue": "api_error"}},
                {"key": "event.sequence", "value": {"intValue": n}},
                {"key": "model", "value": {"stringValue": "claude-opus-4-1"}},
            ],
        }]}]}]})
    };
    for (n, expected) in [(1, 0), (2, 1), (3, 0)] {
        let body = serde_json::to_vec(&error(n)).unwrap();
        assert_eq!(app.post_raw("/v1/logs", body).await.status(), 200);
        let done = app.alerts.evaluate_once().await.unwrap();
        assert_eq!(done.fired.len(), expected, "after {n} errors");
    }
    app.clock.set(T0 + 40 * 60_000);
    assert_eq!(app.alerts.evaluate_once().await.unwrap().resolved.len(), 1);
}

/// failure_rate: judged only from `min_count` finished runs; at the rate, once; resolved when
/// the runs leave the window.
#[tokio::test]
async fn the_failure_rate_fires_at_the_threshold_from_the_minimum_count() {
    use crate::fixtures::{envelope, pre_tool};
    let app = spawn_with_rules(
        Backend::Sqlite,
        "[[rule]]\nname = \"failing runs\"\ncondition = \"failure_rate\"\nthreshold = 0.5\n\
         window = \"15m\"\nmin_count = 2\n",
    )
    .await;
    let e = |event: &str, at: i64, extra: Value| envelope("p", "S-rate", event, at, extra);
    let task = |id: &str| pre_tool("Task", id, json!({"subagent_type": "Explore"}));
    // One run fails: 1 of 1 is a rate of 1, but below the minimum count.
    for event in [
        e("PreToolUse", 60_000, task("k1")),
        e(
            "SubagentStart",
            61_000,
            json!({"agent_id": "a1", "agent_type": "Explore"}),
        ),
        e(
            "PostToolUseFailure",
            62_000,
            json!({"tool_name": "Task", "tool_use_id": "k1", "tool_input": {"subagent_type": "Explore"},
                   "error": "crashed"}),
        ),
    ] {
        app.send_event(&event).await;
    }
    assert!(
        app.alerts.evaluate_once().await.unwrap().fired.is_empty(),
        "one run is too few"
    );
    // A second run completes: 1 failed of 2, at the threshold.
    for event in [
        e("PreToolUse", 63_000, task("k2")),
        e(
            "SubagentStart",
            64_000,
            json!({"agent_id": "a2", "agent_type": "Explore"}),
        ),
        e(
            "SubagentStop",
            65_000,
            json!({"agent_id": "a2", "agent_type": "Explore"}),
        ),
    ] {
        app.send_event(&event).await;
    }
    assert_eq!(app.alerts.evaluate_once().await.unwrap().fired.len(), 1);
    assert!(app.alerts.evaluate_once().await.unwrap().fired.is_empty());
    app.clock.set(T0 + 40 * 60_000);
    assert_eq!(app.alerts.evaluate_once().await.unwrap().resolved.len(), 1);
}

/// pending_approval: a request waiting longer than the threshold fires; answering it resolves.
#[tokio::test]
async fn a_pending_approval_fires_after_the_threshold_and_resolves_when_answered() {
    let app = spawn_with_rules(
        Backend::Sqlite,
        "[[rule]]\nname = \"waiting\"\ncondition = \"pending_approval\"\nthreshold = 300\n",
    )
    .await;
    let mut request = crate::fixtures::envelope(
        "p",
        "S-wait",
        "PreToolUse",
        10 * 60_000,
        crate::fixtures::pre_tool("Bash", "b1", json!({"command": "rm -rf build"})),
    );
    request["humanInTheLoop"] = json!({"question": "May I?", "type": "permission",
        "responseWebSocketUrl": "ws://127.0.0.1:9/", "timeout": 3600});
    let saved = app.send_event(&request).await;
    app.clock.set(T0 + 10 * 60_000 + 299_000);
    assert!(
        app.alerts.evaluate_once().await.unwrap().fired.is_empty(),
        "299 s"
    );
    app.clock.set(T0 + 10 * 60_000 + 300_000);
    assert_eq!(
        app.alerts.evaluate_once().await.unwrap().fired.len(),
        1,
        "300 s"
    );
    assert!(app.alerts.evaluate_once().await.unwrap().fired.is_empty());
    let answered = app
        .post_json(
            &format!("/events/{}/respond", saved["id"]),
            &json!({"permission": true}),
        )
        .await;
    assert!(answered.status().is_success(), "{}", answered.status());
    assert_eq!(app.alerts.evaluate_once().await.unwrap().resolved.len(), 1);
}

/// A rule per person alerts its target with the person, but readers without a token see no
/// person in `/api/alerts`.
#[tokio::test]
async fn a_person_is_shown_in_alerts_only_behind_a_read_token() {
    let (receiver, url) = Receiver::start(0).await;
    let app = spawn_with_rules(
        Backend::Sqlite,
        &format!(
            "[[target]]\nname = \"t\"\nwebhook = \"{url}\"\n\n[[rule]]\nname = \"per person\"\n\
             condition = \"spend\"\nthreshold = 0.1\nwindow = \"1h\"\nper = \"user\"\nnotify = [\"t\"]\n"
        ),
    )
    .await;
    let body = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{
        "timeUnixNano": format!("{}", (T0 + 60_000) * 1_000_000),
        "body": {"stringValue": "claude_code.api_request"},
        "attributes": [
            {"key": "session.id", "value": {"stringValue": "S-who"}},
            {"key": "event.name", "value": {"stringValue": "api_request"}},
            {"key": "user.email", "value": {"stringValue": "dev@example.com"}},
            {"key": "cost_usd", "value": {"doubleValue": 0.5}},
        ],
    }]}]}]});
    assert_eq!(
        app.post_raw("/v1/logs", serde_json::to_vec(&body).unwrap())
            .await
            .status(),
        200
    );
    assert_eq!(app.alerts.evaluate_once().await.unwrap().fired.len(), 1);
    assert_eq!(receiver.wait_for(1).await[0]["key"], "dev@example.com");
    let listed = app.get_ok("/api/alerts").await;
    assert!(!listed.to_string().contains("dev@example.com"), "{listed}");
    assert_eq!(
        listed["firing"][0]["key"],
        "(a person: shown only behind a read token)"
    );
}

/// A session id that is Slack markup goes to the webhook as text: `&`, `<` and `>` escaped in
/// the Slack `text`, the JSON fields as sent, and the API's own `text` unescaped (the
/// dashboard renders it as text).
#[tokio::test]
async fn slack_markup_in_a_session_id_is_escaped_in_the_webhook_text() {
    let (receiver, url) = Receiver::start(0).await;
    let app = spawn_with_rules(
        Backend::Sqlite,
        &format!(
            "[[target]]\nname = \"t\"\nwebhook = \"{url}\"\n\n[[rule]]\nname = \"spend & <!here>\"\n\
             condition = \"spend\"\nthreshold = 0.1\nwindow = \"1h\"\nper = \"session\"\n\
             notify = [\"t\"]\n"
        ),
    )
    .await;
    let session = "<!channel> <http://evil.example|click here>";
    spend(&app, session, 60_000, 0.5, 1).await;
    assert_eq!(app.alerts.evaluate_once().await.unwrap().fired.len(), 1);
    let firing = receiver.wait_for(1).await;
    let text = firing[0]["text"].as_str().unwrap();
    assert!(
        text.contains("&lt;!channel&gt; &lt;http://evil.example|click here&gt;")
            && text.contains("spend &amp; &lt;!here&gt;"),
        "{text}"
    );
    assert!(!text.contains('<') && !text.contains('>'), "{text}");
    assert_eq!(firing[0]["key"], session, "the JSON fields as sent");
    assert_eq!(firing[0]["rule"], "spend & <!here>");
    let listed = app.get_ok("/api/alerts").await;
    let shown = listed["firing"][0]["text"].as_str().unwrap();
    assert!(shown.contains(session), "{shown}");
}

/// A notification names a place to go (issue 30): its unit, the session, app and agent type
/// it is about where it has them, and a link built from `--public-url` (the session's trace,
/// else the alerts page).
#[tokio::test]
async fn a_notification_names_its_session_app_agent_type_units_and_link() {
    use crate::fixtures::{envelope, in_subagent, pre_tool};
    let (receiver, url) = Receiver::start(0).await;
    let dir = tempfile::tempdir().unwrap();
    let rules = format!(
        "[[target]]\nname = \"t\"\nwebhook = \"{url}\"\n\n\
         [[rule]]\nname = \"spend\"\ncondition = \"spend\"\nthreshold = 0.25\nwindow = \"1h\"\n\
         per = \"session\"\nnotify = [\"t\"]\n\n\
         [[rule]]\nname = \"stuck\"\ncondition = \"stuck\"\nthreshold = 60\nnotify = [\"t\"]\n"
    );
    let path = rules_file(dir.path(), &rules);
    let app = TestApp::spawn_with(move |c| {
        c.alerts_file = Some(path);
        c.alert_interval = Duration::from_secs(3600);
        c.alerts_after_commit = None;
        c.public_url = Some("http://hookwatch.example:4000/".into());
    })
    .await;
    app.clock.set(T0 + 10 * 60_000);
    app.send_event(&envelope(
        "proj-ctx",
        "S-ctx",
        "SessionStart",
        60_000,
        json!({}),
    ))
    .await;
    spend(&app, "S-ctx", 61_000, 0.5, 1).await;
    let start = in_subagent("sub-ctx", "Explore", json!({}));
    app.send_event(&envelope(
        "proj-ctx",
        "S-ctx",
        "SubagentStart",
        62_000,
        start,
    ))
    .await;
    let grep = in_subagent("sub-ctx", "Explore", pre_tool("Grep", "g-1", json!({})));
    app.send_event(&envelope("proj-ctx", "S-ctx", "PreToolUse", 63_000, grep))
        .await;
    app.clock.set(T0 + 63_000 + 60_000);
    assert_eq!(app.alerts.evaluate_once().await.unwrap().fired.len(), 2);
    let mut bodies = receiver.wait_for(2).await;
    bodies.sort_by_key(|b| b["rule"].as_str().unwrap().to_owned());
    let (spend, stuck) = (&bodies[0], &bodies[1]);
    assert_eq!(spend["unit"], "USD");
    assert_eq!(spend["session_id"], "S-ctx");
    assert_eq!(spend["app"], "proj-ctx");
    assert_eq!(
        spend["link"],
        "http://hookwatch.example:4000/sessions/S-ctx"
    );
    let text = spend["text"].as_str().unwrap();
    assert!(
        text.contains("value $0.50, threshold $0.25") && text.contains("app proj-ctx"),
        "{text}"
    );
    assert_eq!(stuck["unit"], "seconds");
    assert_eq!(stuck["key"], "call:sub-ctx:g-1");
    assert_eq!(stuck["session_id"], "S-ctx");
    assert_eq!(stuck["agent_type"], "Explore");
    assert_eq!(stuck["app"], "proj-ctx");
    assert!(
        stuck["text"].as_str().unwrap().contains("60 seconds"),
        "{stuck}"
    );
    std::mem::forget(dir);
}
