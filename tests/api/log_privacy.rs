//! Invariant 6: hook payloads hold prompts, code and secrets, so the server's log never holds
//! a payload, at the default level or at `info`, whether the event was stored or refused.

use serde_json::json;

use crate::helpers::{ServerProcess, binary};

/// Stands in for a secret a prompt or a tool input carries.
const SECRET: &str = "sk-live-0c7e1d9f-never-in-a-log";

#[tokio::test]
async fn no_payload_reaches_the_log_whether_stored_or_refused() {
    let data_dir = tempfile::tempdir().unwrap();
    let log_dir = tempfile::tempdir().unwrap();
    let log_path = log_dir.path().join("server.log");
    let mut command = tokio::process::Command::new(binary());
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir.path())
        .env("HOOKWATCH_LOG", "info");
    let server =
        ServerProcess::spawn_logging_to(command, std::fs::File::create(&log_path).unwrap()).await;
    let client = reqwest::Client::new();
    let post = |path: &str, body: String| {
        client
            .post(format!("{}{path}", server.base_url))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    // Stored: an envelope, a raw hook body, a batch and agent reports.
    let stored = [
        (
            "/events",
            json!({"source_app": "app", "session_id": "s1", "hook_event_type": "UserPromptSubmit",
                   "payload": {"prompt": format!("deploy with {SECRET}")}}),
        ),
        (
            "/hooks/claude-code",
            json!({"session_id": "s1", "hook_event_name": "PreToolUse", "tool_name": "Bash",
                   "tool_use_id": "t1", "tool_input": {"command": format!("export KEY={SECRET}")}}),
        ),
        (
            "/api/agents/start",
            json!({"session_id": "s1", "agent_type": "worker", "task_description": SECRET}),
        ),
    ];
    for (path, body) in stored {
        let response = post(path, body.to_string()).await.unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
    }
    // Refused: malformed JSON, a missing event type, an identifier past its limit and a NUL
    // in an identifier; each carries the secret.
    let refused = [
        ("/events", format!("{{\"payload\": \"{SECRET}\"")),
        (
            "/events",
            json!({"source_app": "app", "session_id": "s1", "payload": {"k": SECRET}}).to_string(),
        ),
        (
            "/events",
            json!({"source_app": format!("{SECRET}{}", "x".repeat(10_000)), "session_id": "s1",
                   "hook_event_type": "Stop", "payload": {"k": SECRET}})
            .to_string(),
        ),
        (
            "/events",
            json!({"source_app": format!("a\u{0}{SECRET}"), "session_id": "s1",
                   "hook_event_type": "Stop", "payload": {}})
            .to_string(),
        ),
    ];
    for (path, body) in refused {
        let response = post(path, body).await.unwrap();
        assert!(
            response.status().is_client_error(),
            "{path} is refused: {}",
            response.status()
        );
    }
    // A batch answers for each item: this one's item is refused.
    let batch = post(
        "/events/batch",
        json!([{"source_app": "app", "session_id": "s1", "payload": {"k": SECRET}}]).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(batch.status(), 200);
    let answer: serde_json::Value = batch.json().await.unwrap();
    assert_eq!(answer["accepted"], 0, "{answer}");
    let events = server.get_ok("/events/recent?limit=10").await;
    assert!(
        events.to_string().contains(SECRET),
        "the stored events hold the secret (so the log was given the chance to show it)"
    );
    drop(server);

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("serving"),
        "the log was written at info level:\n{log}"
    );
    assert!(!log.contains(SECRET), "the log shows a payload:\n{log}");
    assert!(
        !log.contains('\u{1b}'),
        "a log written to a file holds no ANSI colour codes (issue 30):\n{log}"
    );
}
