//! Both payload styles work: the origin envelope and the raw Claude Code HTTP-hook body.

use serde_json::{Value, json};

use crate::fixtures;
use crate::helpers::{Backend, T0, TestApp};

async fn the_origin_envelope_is_answered_with_the_saved_event(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let mut envelope = fixtures::envelope(
        "proj-alpha",
        "S1",
        "PreToolUse",
        0,
        fixtures::pre_tool("Bash", "b1", json!({"command": "ls"})),
    );
    // The old hook script copies payload fields to the top level, and sends chat and summary.
    envelope["tool_name"] = json!("Bash");
    envelope["tool_use_id"] = json!("b1");
    envelope["chat"] = json!([{"role": "user", "content": "hi"}]);
    envelope["summary"] = json!("Listing files");
    envelope["model_name"] = json!("claude-opus-4-5");
    let saved = app.send_event(&envelope).await;
    assert!(saved["id"].as_i64().unwrap() >= 1);
    assert!(!saved["event_id"].as_str().unwrap().is_empty());
    assert_eq!(saved["timestamp"], T0);
    assert_eq!(saved["duplicate"], false);
    for key in [
        "source_app",
        "session_id",
        "hook_event_type",
        "payload",
        "summary",
        "model_name",
        "tool_name",
        "tool_use_id",
    ] {
        assert_eq!(saved[key], envelope[key], "{key}");
    }
    // The chat is stored apart (issue 16): the answer carries its size, and it reads back whole.
    assert!(saved.get("chat").is_none(), "{saved}");
    assert_eq!(
        saved["chat_truncated"], true,
        "the answer carries none of it"
    );
    assert_eq!(saved["chat_bytes"], envelope["chat"].to_string().len());
    let chat = app.get_text(&format!("/events/{}/chat", saved["id"])).await;
    assert_eq!(
        serde_json::from_str::<Value>(&chat).unwrap(),
        envelope["chat"]
    );
    // And it reads back the same, with the chat as sent (small enough to come whole).
    let page = app.get_ok("/events").await;
    let stored = &page["events"][0];
    assert_eq!(stored["chat"], envelope["chat"], "{stored}");
    assert_eq!(stored["chat_truncated"], false);
    let without_chat = |event: &Value| {
        let mut o = event.as_object().unwrap().clone();
        for key in ["duplicate", "chat", "chat_truncated"] {
            o.remove(key);
        }
        Value::Object(o)
    };
    assert_eq!(without_chat(stored), without_chat(&saved));
}

async fn payloads_are_stored_byte_for_byte_with_unknown_fields(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let body = r#"{"source_app":"a","session_id":"s","hook_event_type":"BrandNewEvent","timestamp":1795168800000,"payload":{"z":1,"a":{"deep":[1,2.50,"x"]},"big":123456789012345678901234567890,"new_field":"kept"},"future_top_level":{"x":1}}"#;
    let response = app.post_raw("/events", body).await;
    assert_eq!(response.status(), 200);
    let text = app
        .client
        .get(app.url("/events"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#""payload":{"z":1,"a":{"deep":[1,2.50,"x"]},"big":123456789012345678901234567890,"new_field":"kept"}"#),
        "payload not kept whole: {text}"
    );
    assert!(text.contains(r#""future_top_level":{"x":1}"#), "{text}");
    assert!(text.contains(r#""hook_event_type":"BrandNewEvent""#));
}

async fn iso_timestamps_from_older_scripts_are_accepted(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let mut envelope = fixtures::envelope("a", "s", "Stop", 0, json!({}));
    envelope["timestamp"] = json!("2026-11-20T10:00:01.500Z");
    assert_eq!(app.send_event(&envelope).await["timestamp"], T0 + 1_500);
    envelope["timestamp"] = json!("2026-11-20T10:00:02");
    assert_eq!(app.send_event(&envelope).await["timestamp"], T0 + 2_000);
    envelope.as_object_mut().unwrap().remove("timestamp");
    assert_eq!(
        app.send_event(&envelope).await["timestamp"],
        T0,
        "server fills it in"
    );
}

async fn raw_claude_code_hooks_are_answered_with_an_empty_2xx(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let body = fixtures::hook(
        "S2",
        "PreToolUse",
        fixtures::pre_tool("Read", "r1", json!({})),
    );
    let response = app.post_json("/hooks/claude-code", &body).await;
    assert!(response.status().is_success());
    assert_eq!(
        response.text().await.unwrap(),
        "",
        "a body could be read as a decision"
    );

    let response = app
        .client
        .post(app.url("/hooks/claude-code"))
        .header("x-hookwatch-app", "from-header")
        .json(&fixtures::hook("S2", "Stop", json!({})))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let response = app
        .post_json(
            "/hooks/claude-code?app=from-query",
            &fixtures::hook("S2", "Notification", json!({"message": "hi"})),
        )
        .await;
    assert!(response.status().is_success());

    let events = app.get_ok("/events?session_id=S2").await;
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["source_app"], "proj-alpha", "last part of cwd");
    assert_eq!(events[0]["hook_event_type"], "PreToolUse");
    assert_eq!(events[0]["payload"], body, "the raw body is the payload");
    assert_eq!(events[0]["timestamp"], T0);
    assert_eq!(events[1]["source_app"], "from-header");
    assert_eq!(events[2]["source_app"], "from-query");
    let usage = app.get_ok("/api/agents/tools/usage").await;
    assert_eq!(usage["tools"][0]["name"], "Read");
}

async fn both_styles_give_the_same_metrics(backend: Backend) {
    let envelope_app = TestApp::spawn_on(backend).await;
    let raw_app = TestApp::spawn_on(backend).await;
    for event in fixtures::main_session() {
        envelope_app.send_event(&event).await;
        raw_app.clock.set(event["timestamp"].as_i64().unwrap());
        let response = raw_app
            .post_json("/hooks/claude-code?app=proj-alpha", &event["payload"])
            .await;
        assert!(response.status().is_success());
    }
    envelope_app.clock.set(T0 + 600_000);
    raw_app.clock.set(T0 + 600_000);
    for path in [
        "/api/agents/metrics/current",
        "/api/agents/types/distribution",
        "/api/agents/tools/usage",
        "/api/sessions/S1",
    ] {
        let a = envelope_app.get_ok(path).await;
        let b = raw_app.get_ok(path).await;
        let strip = |mut v: Value| {
            v.as_object_mut().unwrap().remove("range");
            v.as_object_mut().unwrap().remove("period");
            v.as_object_mut().unwrap().remove("last_seen");
            v
        };
        assert_eq!(strip(a), strip(b), "{path}");
    }
}

crate::on_each_store!(
    the_origin_envelope_is_answered_with_the_saved_event,
    payloads_are_stored_byte_for_byte_with_unknown_fields,
    iso_timestamps_from_older_scripts_are_accepted,
    raw_claude_code_hooks_are_answered_with_an_empty_2xx,
    both_styles_give_the_same_metrics,
);
