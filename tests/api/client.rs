//! The hook client, run as the real binary in separate processes, as Claude Code runs it:
//! `send` with the server down and up, concurrent spooling, replay, install and doctor.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::fixtures::main_session;
use crate::helpers::{TestApp, all_events, binary};

/// A server URL where nothing listens.
fn dead_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

pub(crate) struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs `hookwatch args…` with `stdin`, the given server and spool, and no inherited
/// HOOKWATCH_* settings.
pub(crate) async fn run(
    args: &[&str],
    stdin: &[u8],
    server: &str,
    spool: &Path,
    home: &Path,
) -> Ran {
    let started = Instant::now();
    let mut child = Command::new(binary())
        .args(args)
        .env("HOOKWATCH_SERVER", server)
        .env("HOOKWATCH_SPOOL_DIR", spool)
        .env("HOME", home)
        .env_remove("HOOKWATCH_TOKEN")
        .env_remove("HOOKWATCH_APP")
        .env_remove("HOOKWATCH_DEBUG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hookwatch runs");
    let mut input = child.stdin.take().unwrap();
    // A process that exits without reading (a bad command line) closes the pipe early.
    let _ = input.write_all(stdin).await;
    drop(input);
    let output = child.wait_with_output().await.unwrap();
    Ran {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// The hook payloads of the fixture session, as Claude Code would pipe them.
fn hook_payloads() -> Vec<Vec<u8>> {
    main_session()
        .iter()
        .map(|envelope| serde_json::to_vec(&envelope["payload"]).unwrap())
        .collect()
}

/// Whether a drainer (the detached `hookwatch replay` a send starts) holds the spool's lock.
fn drain_is_running(spool: &Path) -> bool {
    let Ok(lock) = std::fs::File::open(spool.join(".drain.lock")) else {
        return false;
    };
    matches!(lock.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

fn spooled_files(spool: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(spool)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

async fn wait_for_events(app: &TestApp, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = all_events(&app.client, &app.base_url).await;
        if events.len() >= count {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {count} events arrived",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn send_spools_while_the_server_is_down_and_every_event_arrives_once_it_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let down = dead_server();
    let payloads = hook_payloads();
    for payload in &payloads[..5] {
        let ran = run(&["send"], payload, &down, &spool, dir.path()).await;
        assert_eq!(ran.code, 0, "send always exits 0: {}", ran.stderr);
        assert_eq!(ran.stdout, "", "send never writes to stdout");
        assert!(
            ran.elapsed < Duration::from_secs(3),
            "took {:?}",
            ran.elapsed
        );
    }
    let spooled = spooled_files(&spool);
    assert_eq!(spooled.len(), 5, "{spooled:?}");

    let app = TestApp::spawn().await;
    let replayed = run(&["replay"], b"", &app.base_url, &spool, dir.path()).await;
    assert_eq!(replayed.code, 0, "{}", replayed.stderr);
    assert!(
        replayed.stdout.contains("delivered 5"),
        "{}",
        replayed.stdout
    );
    assert!(spooled_files(&spool).is_empty());
    let stored = all_events(&app.client, &app.base_url).await;
    let stored_ids: Vec<String> = stored
        .iter()
        .map(|e| format!("{}.json", e["event_id"].as_str().unwrap()))
        .collect();
    assert_eq!(
        stored_ids, spooled,
        "the spooled events, with their event ids, in order"
    );
    for (event, payload) in stored.iter().zip(&payloads) {
        let sent: Value = serde_json::from_slice(payload).unwrap();
        assert_eq!(event["payload"], sent, "the payload is kept whole");
        assert_eq!(
            event["session_id"], "S1",
            "the session id is never rewritten"
        );
        assert_eq!(event["source_app"], "proj-alpha", "from the payload's cwd");
    }

    // One more event spools while the server is down; the next successful send drains it in
    // the background, without waiting for it.
    run(&["send"], &payloads[5], &down, &spool, dir.path()).await;
    assert_eq!(spooled_files(&spool).len(), 1);
    let ran = run(&["send"], &payloads[6], &app.base_url, &spool, dir.path()).await;
    assert_eq!((ran.code, ran.stdout.as_str()), (0, ""));
    let stored = wait_for_events(&app, 7).await;
    assert_eq!(stored.len(), 7);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !spooled_files(&spool).is_empty() || drain_is_running(&spool) {
        assert!(
            Instant::now() < deadline,
            "the background drain did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A drain interrupted after delivery but before deleting replays the same event_id: the
    // server stores it once.
    let first = &stored[0];
    let again = json!({
        "event_id": first["event_id"], "source_app": first["source_app"],
        "session_id": first["session_id"], "hook_event_type": first["hook_event_type"],
        "timestamp": first["timestamp"], "payload": first["payload"],
    });
    std::fs::write(
        spool.join(format!("{}.json", first["event_id"].as_str().unwrap())),
        serde_json::to_vec(&again).unwrap(),
    )
    .unwrap();
    let replayed = run(&["replay"], b"", &app.base_url, &spool, dir.path()).await;
    assert!(
        replayed.stdout.contains("already stored 1"),
        "{}",
        replayed.stdout
    );
    assert_eq!(all_events(&app.client, &app.base_url).await.len(), 7);
}

#[tokio::test]
async fn fifty_concurrent_sends_spool_whole_events_that_replay_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let down = dead_server();
    let sends: Vec<_> = (0..50)
        .map(|n| {
            let payload = serde_json::to_vec(&json!({
                "session_id": format!("C{}", n % 5),
                "hook_event_name": "PreToolUse",
                "cwd": "/home/dev/concurrent",
                "tool_name": "Bash",
                "tool_use_id": format!("t{n}"),
                "tool_input": { "command": "x".repeat(2000 + n) },
            }))
            .unwrap();
            let (down, spool, home) = (down.clone(), spool.clone(), dir.path().to_path_buf());
            tokio::spawn(async move { run(&["send"], &payload, &down, &spool, &home).await })
        })
        .collect();
    for send in sends {
        let ran = send.await.unwrap();
        assert_eq!((ran.code, ran.stdout.as_str()), (0, ""));
    }
    let spooled = spooled_files(&spool);
    assert_eq!(spooled.len(), 50);
    for name in &spooled {
        let text = std::fs::read_to_string(spool.join(name)).unwrap();
        let event: Value = serde_json::from_str(&text).expect("no torn or interleaved event");
        assert_eq!(
            format!("{}.json", event["event_id"].as_str().unwrap()),
            *name
        );
    }

    let app = TestApp::spawn().await;
    let replayed = run(&["replay"], b"", &app.base_url, &spool, dir.path()).await;
    assert_eq!(replayed.code, 0, "{}", replayed.stderr);
    let stored = all_events(&app.client, &app.base_url).await;
    assert_eq!(stored.len(), 50);
    let mut tool_ids: Vec<&str> = stored
        .iter()
        .map(|e| e["payload"]["tool_use_id"].as_str().unwrap())
        .collect();
    tool_ids.sort();
    tool_ids.dedup();
    assert_eq!(tool_ids.len(), 50, "each event once");
    assert!(spooled_files(&spool).is_empty());
}

#[tokio::test]
async fn a_server_that_never_answers_costs_send_its_deadline_and_the_event_is_spooled() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    // The kernel accepts the connection; nothing ever reads or answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let ran = run(
        &["send", "--timeout", "300ms"],
        &hook_payloads()[0],
        &url,
        &spool,
        dir.path(),
    )
    .await;
    assert_eq!((ran.code, ran.stdout.as_str()), (0, ""));
    // Generous: process start plus the 300 ms deadline; without a deadline this never ends.
    assert!(
        ran.elapsed < Duration::from_secs(2),
        "took {:?}",
        ran.elapsed
    );
    assert_eq!(spooled_files(&spool).len(), 1);
    drop(silent);
}

#[tokio::test]
async fn send_ignores_what_is_not_a_hook_event_and_still_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    for input in [&b"not json"[..], b"", b"{\"no\": \"session\"}"] {
        let ran = run(&["send"], input, &dead_server(), &spool, dir.path()).await;
        assert_eq!((ran.code, ran.stdout.as_str()), (0, ""));
    }
    let ran = run(
        &["send", "--no-such-flag"],
        b"{}",
        &dead_server(),
        &spool,
        dir.path(),
    )
    .await;
    assert_eq!(
        (ran.code, ran.stdout.as_str()),
        (0, ""),
        "even a wrong command line"
    );
    assert!(spooled_files(&spool).is_empty());
}

#[tokio::test]
async fn install_keeps_the_users_settings_is_idempotent_and_uninstalls_cleanly() {
    let home = tempfile::tempdir().unwrap();
    let settings_path = home.path().join(".claude/settings.json");
    std::fs::create_dir_all(settings_path.parent().unwrap()).unwrap();
    let original = json!({
        "model": "opus",
        "hooks": {
            "PreToolUse": [
                { "matcher": "Bash", "hooks": [{ "type": "command", "command": "my-guard.sh" }] }
            ],
            "Stop": [{ "hooks": [{ "type": "command", "command": "notify-send done" }] }]
        },
        "permissions": { "allow": ["Bash(ls)"] }
    });
    std::fs::write(
        &settings_path,
        serde_json::to_vec_pretty(&original).unwrap(),
    )
    .unwrap();
    let server = "http://127.0.0.1:4999";
    let spool = home.path().join("spool");
    let hookwatch = |args: &'static [&'static str]| run(args, b"", server, &spool, home.path());

    let first = hookwatch(&["install", "--server", "http://127.0.0.1:4999"]).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(first.stdout.contains("29 events"), "{}", first.stdout);
    let installed_text = std::fs::read_to_string(&settings_path).unwrap();
    let installed: Value = serde_json::from_str(&installed_text).unwrap();
    assert_eq!(installed["model"], "opus");
    assert_eq!(installed["permissions"], original["permissions"]);
    let pre = installed["hooks"]["PreToolUse"].as_array().unwrap();
    assert_eq!(
        pre[0], original["hooks"]["PreToolUse"][0],
        "theirs first, unchanged"
    );
    let ours = pre[1]["hooks"][0]["command"].as_str().unwrap();
    assert!(
        ours.ends_with(&format!("hookwatch send --server {server}")),
        "{ours}"
    );
    assert_eq!(installed["hooks"].as_object().unwrap().len(), 29);
    let keys: Vec<&String> = installed.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["model", "hooks", "permissions"],
        "the user's key order is kept"
    );
    assert!(
        home.path()
            .join(".claude/settings.json.hookwatch-backup")
            .exists()
    );

    let second = hookwatch(&["install", "--server", "http://127.0.0.1:4999"]).await;
    assert_eq!(second.code, 0);
    assert!(
        second.stdout.contains("nothing changed"),
        "{}",
        second.stdout
    );
    assert_eq!(
        std::fs::read_to_string(&settings_path).unwrap(),
        installed_text
    );

    let doctor = hookwatch(&["doctor"]).await;
    assert!(
        doctor
            .stdout
            .contains("PASS hooks (user): installed for 29 events (command mode)"),
        "{}",
        doctor.stdout
    );
    assert!(
        doctor.stdout.contains("FAIL server"),
        "nothing listens on {server}"
    );
    assert_eq!(doctor.code, 1);

    let removed = hookwatch(&["install", "--uninstall"]).await;
    assert_eq!(removed.code, 0, "{}", removed.stderr);
    let restored: Value =
        serde_json::from_str(&std::fs::read_to_string(&settings_path).unwrap()).unwrap();
    assert_eq!(restored, original);

    let http = hookwatch(&[
        "install",
        "--mode",
        "http",
        "--server",
        "http://127.0.0.1:4999",
    ])
    .await;
    assert_eq!(http.code, 0);
    let with_http: Value =
        serde_json::from_str(&std::fs::read_to_string(&settings_path).unwrap()).unwrap();
    assert_eq!(
        with_http["hooks"]["SessionEnd"][0]["hooks"][0],
        json!({ "type": "http", "url": format!("{server}/hooks/claude-code"), "timeout": 5 })
    );
}

#[tokio::test]
async fn hooks_sent_by_command_and_by_http_give_the_same_events_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let by_command = TestApp::spawn().await;
    let by_http = TestApp::spawn().await;
    for payload in hook_payloads() {
        let ran = run(
            &["send"],
            &payload,
            &by_command.base_url,
            &spool,
            dir.path(),
        )
        .await;
        assert_eq!((ran.code, ran.stdout.as_str()), (0, ""), "{}", ran.stderr);
        let response = by_http
            .post_raw("/hooks/claude-code", payload.clone())
            .await;
        assert_eq!(response.status(), 204);
    }
    assert!(
        spooled_files(&spool).is_empty(),
        "the server took every event"
    );
    let command_events = all_events(&by_command.client, &by_command.base_url).await;
    let http_events = all_events(&by_http.client, &by_http.base_url).await;
    assert_eq!(command_events.len(), hook_payloads().len());
    let shape = |events: &[Value]| -> Vec<(Value, Value, Value, Value)> {
        events
            .iter()
            .map(|e| {
                (
                    e["source_app"].clone(),
                    e["session_id"].clone(),
                    e["hook_event_type"].clone(),
                    e["payload"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(shape(&command_events), shape(&http_events));

    // `send` stamps events with the real time, the http path with the test server's clock:
    // compare over a range around each.
    let around = |events: &[Value]| {
        let ts = events[0]["timestamp"].as_i64().unwrap();
        format!("start={}&end={}", ts - 3_600_000, ts + 3_600_000)
    };
    let command_range = around(&command_events);
    let http_range = around(&http_events);
    let a = by_command
        .get_ok(&format!("/api/agents/metrics/current?{command_range}"))
        .await;
    let b = by_http
        .get_ok(&format!("/api/agents/metrics/current?{http_range}"))
        .await;
    for field in ["executions_today", "success_rate"] {
        assert_eq!(a[field], b[field], "{field}: {a} vs {b}");
    }
    assert!(a["executions_today"].as_i64().unwrap() > 0);
    let types = |m: &Value| -> Vec<(Value, Value)> {
        m["agent_type_breakdown"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["type"].clone(), t["executions"].clone()))
            .collect()
    };
    assert_eq!(types(&a), types(&b));
    let command_tools = by_command
        .get_ok(&format!("/api/agents/tools/usage?{command_range}"))
        .await;
    let http_tools = by_http
        .get_ok(&format!("/api/agents/tools/usage?{http_range}"))
        .await;
    assert_eq!(command_tools["total_calls"], http_tools["total_calls"]);
    assert!(command_tools["total_calls"].as_i64().unwrap() > 0);
}

fn assistant_line(id: &str, model: &str, usage: Value) -> String {
    format!(
        "{}\n",
        json!({"type": "assistant", "message": {"id": id, "model": model, "role": "assistant",
            "content": [{"type": "text", "text": "done"}], "usage": usage}})
    )
}

#[tokio::test]
async fn transcript_tokens_reach_the_api_and_repeated_stops_count_each_token_once() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let app = TestApp::spawn().await;
    let transcript = dir.path().join("T1.jsonl");
    let hook = |event: &str, extra: Value| {
        let mut payload = json!({
            "session_id": "T1", "hook_event_name": event, "cwd": "/home/dev/tokens",
            "transcript_path": transcript.to_str().unwrap(),
        });
        for (key, value) in extra.as_object().unwrap() {
            payload[key] = value.clone();
        }
        serde_json::to_vec(&payload).unwrap()
    };
    let sonnet = assistant_line(
        "msg_1",
        "claude-sonnet-4-5",
        json!({"input_tokens": 1000, "output_tokens": 2000}),
    );
    // One response written as two lines (two content blocks) repeats its usage: counted once.
    let mut text = format!("{{\"type\":\"user\"}}\n{sonnet}{sonnet}");
    std::fs::write(&transcript, &text).unwrap();
    let send = |payload: Vec<u8>| {
        let (url, spool, home) = (
            app.base_url.clone(),
            spool.clone(),
            dir.path().to_path_buf(),
        );
        async move {
            let ran = run(&["send"], &payload, &url, &spool, &home).await;
            assert_eq!((ran.code, ran.stdout.as_str()), (0, ""), "{}", ran.stderr);
        }
    };
    send(hook("SessionStart", json!({"source": "startup"}))).await;
    send(hook("Stop", json!({"stop_hook_active": false}))).await;
    text += &assistant_line(
        "msg_2",
        "claude-haiku-4-5",
        json!({"input_tokens": 100, "output_tokens": 50,
               "cache_creation_input_tokens": 40, "cache_read_input_tokens": 10}),
    );
    std::fs::write(&transcript, &text).unwrap();
    send(hook("Stop", json!({"stop_hook_active": false}))).await;
    send(hook("Stop", json!({"stop_hook_active": false}))).await; // nothing new
    send(hook("SessionEnd", json!({"reason": "other"}))).await;

    // Hand-computed: sonnet 1000 in × $3/M + 2000 out × $15/M = $0.033; haiku 100 × $1/M +
    // 50 × $5/M + 40 × $1.25/M + 10 × $0.10/M = $0.000401.
    let session = app.get_ok("/api/sessions/T1").await;
    assert_eq!(
        session["tokens"],
        json!({"input": 1100, "output": 2050, "cache_creation": 40, "cache_read": 10, "total": 3200})
    );
    crate::helpers::approx(&session["estimated_cost"], 0.033401);
    let main_agent = app.get_ok("/api/agents/T1").await;
    assert_eq!(main_agent["tokens"]["total"], 3200);

    let stored = all_events(&app.client, &app.base_url).await;
    let now = stored[0]["timestamp"].as_i64().unwrap();
    let range = format!("start={}&end={}", now - 3_600_000, now + 3_600_000);
    let metrics = app
        .get_ok(&format!("/api/agents/metrics/current?{range}"))
        .await;
    assert_eq!(metrics["tokens_used_today"], 3200);
    crate::helpers::approx(&metrics["estimated_cost_today"], 0.033401);
    assert_eq!(metrics["executions_today"], 0, "tokens are not executions");

    // A subagent's own transcript, on SubagentStop.
    let agent_transcript = dir.path().join("agent-a1.jsonl");
    std::fs::write(
        &agent_transcript,
        assistant_line(
            "msg_9",
            "claude-sonnet-4-5",
            json!({"input_tokens": 500, "output_tokens": 100}),
        ),
    )
    .unwrap();
    let subagent = json!({"agent_id": "a1", "agent_type": "Explore",
        "agent_transcript_path": agent_transcript.to_str().unwrap()});
    send(hook("SubagentStart", subagent.clone())).await;
    send(hook("SubagentStop", subagent.clone())).await;
    send(hook("SubagentStop", subagent)).await; // repeated: counted once
    let agent = app.get_ok("/api/agents/a1").await;
    assert_eq!(agent["tokens"]["total"], 600);
    crate::helpers::approx(&agent["estimated_cost"], 0.003); // 500 × $3/M + 100 × $15/M
    let metrics = app
        .get_ok(&format!("/api/agents/metrics/current?{range}"))
        .await;
    assert_eq!(metrics["tokens_used_today"], 3800);
    assert_eq!(metrics["executions_today"], 1);
}

/// A PermissionRequest as Claude Code pipes it to a hook.
fn permission_request_payload() -> Vec<u8> {
    serde_json::to_vec(&crate::fixtures::hook(
        "S-approve",
        "PermissionRequest",
        json!({"tool_name": "Bash", "tool_input": {"command": "git push --force"},
               "permission_suggestions": []}),
    ))
    .unwrap()
}

#[tokio::test]
async fn a_decision_nobody_gives_prints_nothing_and_the_server_down_prints_nothing_at_once() {
    let app = TestApp::spawn_live().await;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    // Nobody answers: after its wait, nothing on stdout (the terminal asks as usual).
    let waited = run(
        &["send", "--wait-for-decision", "2s"],
        &permission_request_payload(),
        &app.base_url,
        &spool,
        dir.path(),
    )
    .await;
    assert_eq!(waited.code, 0);
    assert_eq!(waited.stdout, "", "{}", waited.stderr);
    assert!(waited.elapsed >= Duration::from_secs(2), "it waited");
    let pending = app.get_ok("/api/hitl/pending").await;
    assert_eq!(
        pending["requests"][0]["humanInTheLoop"]["type"],
        "permission"
    );
    assert_eq!(
        pending["requests"][0]["humanInTheLoop"]["question"],
        "Allow Bash: git push --force?"
    );
    // The server down: nothing, at once (long before its 30 s), and the event is spooled.
    let down = run(
        &["send", "--wait-for-decision", "30s"],
        &permission_request_payload(),
        &dead_server(),
        &spool,
        dir.path(),
    )
    .await;
    assert_eq!(down.code, 0);
    assert_eq!(down.stdout, "");
    assert!(down.elapsed < Duration::from_secs(10), "{:?}", down.elapsed);
    assert_eq!(spooled_files(&spool).len(), 1, "the request is kept");
}

#[tokio::test]
async fn an_answer_through_the_api_is_printed_as_claude_codes_decision() {
    let app = TestApp::spawn_live().await;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let server = app.base_url.clone();
    let (spool_path, home) = (spool.clone(), dir.path().to_path_buf());
    let waiting = tokio::spawn(async move {
        run(
            &["send", "--wait-for-decision", "30s"],
            &permission_request_payload(),
            &server,
            &spool_path,
            &home,
        )
        .await
    });
    let pending = crate::helpers::wait_until(
        "the request to be pending",
        Duration::from_secs(10),
        || app.get_ok("/api/hitl/pending"),
        |p| !p["requests"].as_array().unwrap().is_empty(),
    )
    .await;
    let id = pending["requests"][0]["id"].as_i64().unwrap();
    let answer = app
        .post_json(
            &format!("/events/{id}/respond"),
            &json!({"permission": false, "respondedBy": "ana"}),
        )
        .await;
    assert_eq!(answer.status(), 200);
    let ran = waiting.await.unwrap();
    assert_eq!(ran.code, 0);
    let decision: Value = serde_json::from_str(ran.stdout.trim()).unwrap();
    assert_eq!(
        decision,
        json!({"hookSpecificOutput": {"hookEventName": "PermissionRequest",
               "decision": {"behavior": "deny", "message": "Denied in hookwatch by ana."}}})
    );
    assert!(
        ran.elapsed < Duration::from_secs(25),
        "answered, not timed out"
    );
}

#[tokio::test]
async fn send_help_prints_its_help() {
    let dir = tempfile::tempdir().unwrap();
    let ran = run(
        &["send", "--help"],
        b"",
        &dead_server(),
        &dir.path().join("spool"),
        dir.path(),
    )
    .await;
    assert_eq!(ran.code, 0);
    assert!(
        ran.stdout.contains("Usage: hookwatch send"),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("--wait-for-decision"), "{}", ran.stdout);
    assert!(ran.stdout.contains("always exits 0"), "{}", ran.stdout);
    // Parsed on its own, and still listed among the commands.
    let all = run(
        &["--help"],
        b"",
        &dead_server(),
        &dir.path().join("spool"),
        dir.path(),
    )
    .await;
    assert!(
        all.stdout.lines().any(|line| {
            line.trim_start().starts_with("send ") && line.contains("Send one hook event")
        }),
        "{}",
        all.stdout
    );
}

/// Runs `hookwatch args…` with `HOME` in `home`, in a project under it, with the given token.
async fn hookwatch_with_token(
    home: &Path,
    token: Option<&str>,
    args: &[&str],
) -> (i32, String, String) {
    // A project of its own, so the project's settings are not the user's.
    let project = home.join("project");
    std::fs::create_dir_all(&project).unwrap();
    let mut command = Command::new(binary());
    command
        .args(args)
        .current_dir(&project)
        .env("HOME", home)
        .env_remove("HOOKWATCH_SERVER")
        .env_remove("HOOKWATCH_TOKEN");
    if let Some(token) = token {
        command.env("HOOKWATCH_TOKEN", token);
    }
    let output = command.output().await.expect("hookwatch runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn install_otel_adds_claude_codes_telemetry_settings_keeps_the_users_and_uninstalls_cleanly()
{
    let home = tempfile::tempdir().unwrap();
    let settings_path = home.path().join(".claude/settings.json");
    std::fs::create_dir_all(settings_path.parent().unwrap()).unwrap();
    let original = json!({"model": "opus", "env": {"MY_FLAG": "1"}});
    let original_text = serde_json::to_vec_pretty(&original).unwrap();
    std::fs::write(&settings_path, &original_text).unwrap();
    let server = "http://127.0.0.1:4999";

    let (code, stdout, stderr) = hookwatch_with_token(
        home.path(),
        Some("s3cret"),
        &["install", "--otel", "--server", server],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("telemetry"), "{stdout}");
    let text = std::fs::read_to_string(&settings_path).unwrap();
    assert!(
        !text.contains("s3cret"),
        "the token is never written: {text}"
    );
    let installed: Value = serde_json::from_str(&text).unwrap();
    let env = &installed["env"];
    assert_eq!(env["MY_FLAG"], "1");
    assert_eq!(env["CLAUDE_CODE_ENABLE_TELEMETRY"], "1");
    assert_eq!(env["OTEL_LOGS_EXPORTER"], "otlp");
    assert_eq!(env["OTEL_METRICS_EXPORTER"], "otlp");
    assert_eq!(env["OTEL_EXPORTER_OTLP_PROTOCOL"], "http/protobuf");
    assert_eq!(env["OTEL_EXPORTER_OTLP_ENDPOINT"], server);
    let helper = installed["otelHeadersHelper"].as_str().unwrap();
    assert!(helper.ends_with("hookwatch otel-headers"), "{helper}");
    assert_eq!(
        installed["hooks"].as_object().unwrap().len(),
        29,
        "and the hooks"
    );

    // The helper prints the header from the environment Claude Code gives it.
    let (code, stdout, _) =
        hookwatch_with_token(home.path(), Some("s3cret"), &["otel-headers"]).await;
    assert_eq!(code, 0);
    let headers: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(headers, json!({"Authorization": "Bearer s3cret"}));

    // Doctor says where the telemetry goes.
    let (_, stdout, _) =
        hookwatch_with_token(home.path(), Some("s3cret"), &["doctor", "--server", server]).await;
    assert!(
        stdout.contains(&format!(
            "telemetry: Claude Code exports to hookwatch (user → {server})"
        )),
        "{stdout}"
    );

    // Again: nothing changes, not even the file's bytes.
    let (code, stdout, _) = hookwatch_with_token(
        home.path(),
        Some("s3cret"),
        &["install", "--otel", "--server", server],
    )
    .await;
    assert_eq!(code, 0);
    assert!(stdout.contains("already"), "{stdout}");
    assert_eq!(std::fs::read_to_string(&settings_path).unwrap(), text);

    // Uninstall leaves exactly the user's settings.
    let (code, _, stderr) =
        hookwatch_with_token(home.path(), None, &["install", "--uninstall"]).await;
    assert_eq!(code, 0, "{stderr}");
    let after: Value =
        serde_json::from_str(&std::fs::read_to_string(&settings_path).unwrap()).unwrap();
    assert_eq!(after, original);
}

#[tokio::test]
async fn install_otel_refuses_to_take_over_another_telemetry_backend() {
    let home = tempfile::tempdir().unwrap();
    let settings_path = home.path().join(".claude/settings.json");
    std::fs::create_dir_all(settings_path.parent().unwrap()).unwrap();
    let theirs = serde_json::to_vec_pretty(&json!({
        "env": {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector.team.internal:4318"}
    }))
    .unwrap();
    std::fs::write(&settings_path, &theirs).unwrap();
    let (code, _, stderr) = hookwatch_with_token(home.path(), None, &["install", "--otel"]).await;
    assert_ne!(code, 0);
    assert!(stderr.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{stderr}");
    assert!(stderr.contains("collector.team.internal"), "{stderr}");
    assert_eq!(
        std::fs::read(&settings_path).unwrap(),
        theirs,
        "nothing changed, hooks included"
    );
}

/// `doctor` checks each piece with the credentials it will use (issue 30): with the ingest
/// token the hooks need it passes (it once said "FAIL server … refused"), with a read token it
/// fails the hooks' token (the hooks would get 403), telemetry set up without a token against
/// a protected server fails (its export would get 401), and hooks installed only for the
/// project pass (no "FAIL hooks (user)").
#[tokio::test]
async fn doctor_checks_each_piece_with_the_credentials_it_will_use() {
    let app = crate::helpers::TestApp::spawn_with(|c| {
        c.tokens.ingest = vec!["in-secret".into()];
        c.tokens.read = vec!["read-secret".into()];
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    let server = app.base_url.as_str();
    let install = |args: &'static [&'static str]| {
        let home = home.path().to_owned();
        async move {
            let mut all = args.to_vec();
            all.extend(["--server", server]);
            hookwatch_with_token(&home, None, &all).await
        }
    };
    // Telemetry settings in a repository's files would be ignored by Claude Code: refused.
    let (code, _, stderr) = install(&["install", "--scope", "project", "--otel"]).await;
    assert_ne!(code, 0);
    assert!(stderr.contains("ignores"), "{stderr}");
    let (code, _, stderr) = install(&["install", "--scope", "project"]).await;
    assert_eq!(code, 0, "{stderr}");
    let doctor = |token: Option<&'static str>| {
        let home = home.path().to_owned();
        async move { hookwatch_with_token(&home, token, &["doctor", "--server", server]).await }
    };

    let (code, stdout, _) = doctor(Some("in-secret")).await;
    assert!(stdout.contains("PASS hooks' token:"), "{stdout}");
    assert!(stdout.contains("PASS server:"), "{stdout}");
    assert!(
        !stdout.contains("FAIL"),
        "hooks only for the project pass: {stdout}"
    );
    assert_eq!(code, 0, "{stdout}");

    let (code, _, stderr) = install(&["install", "--otel"]).await;
    assert_eq!(code, 0, "{stderr}");
    let (_, stdout, _) = doctor(Some("in-secret")).await;
    assert!(
        stdout.contains("PASS telemetry: the server takes"),
        "{stdout}"
    );

    let (code, stdout, _) = doctor(Some("read-secret")).await;
    assert!(stdout.contains("FAIL hooks' token:"), "{stdout}");
    assert_eq!(code, 1);

    let (code, stdout, _) = doctor(None).await;
    assert!(stdout.contains("FAIL hooks' token:"), "{stdout}");
    assert!(
        stdout.contains("FAIL telemetry:") && stdout.contains("401"),
        "{stdout}"
    );
    assert_eq!(code, 1);
    assert_eq!(
        app.count("SELECT count(*) FROM events"),
        0,
        "the checks store nothing"
    );
}
