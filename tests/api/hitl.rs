//! Human in the loop, end to end, as the upstream's hooks and dashboard speak it: a hook posts
//! a request and listens on its own WebSocket; an answer through `/events/{id}/respond` is
//! recorded once, shown live, and relayed to that socket, only where relaying is allowed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::fixtures;
use crate::helpers::{Backend, TestApp, expect_error};

/// A hook's response socket: records every connection and every text message it gets.
struct HookSocket {
    port: u16,
    connections: Arc<AtomicUsize>,
    messages: mpsc::UnboundedReceiver<String>,
}

impl HookSocket {
    async fn listen(address: &str) -> Self {
        let listener = TcpListener::bind(format!("{address}:0")).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let (sender, messages) = mpsc::unbounded_channel();
        let counted = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let sender = sender.clone();
                tokio::spawn(async move {
                    let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    while let Some(Ok(message)) = socket.next().await {
                        if let Ok(text) = message.to_text()
                            && !text.is_empty()
                        {
                            let _ = sender.send(text.to_owned());
                        }
                    }
                });
            }
        });
        Self {
            port,
            connections,
            messages,
        }
    }

    async fn next_message(&mut self) -> Value {
        let text = tokio::time::timeout(Duration::from_secs(10), self.messages.recv())
            .await
            .expect("the answer reaches the hook within 10 s")
            .unwrap();
        serde_json::from_str(&text).unwrap()
    }
}

/// The upstream's PreToolUse asking for permission, answered on `url`.
fn permission_request(url: &str) -> Value {
    let mut event = fixtures::envelope(
        "my-app",
        "S-hitl",
        "PreToolUse",
        0,
        fixtures::pre_tool("Bash", "b1", json!({"command": "rm -rf build"})),
    );
    event["humanInTheLoop"] = json!({
        "question": "May I run rm -rf build?",
        "responseWebSocketUrl": url,
        "type": "permission",
        "timeout": 300,
    });
    event
}

async fn an_answer_is_recorded_once_shown_live_and_relayed_to_the_hook(backend: Backend) {
    let app = TestApp::spawn_on(backend).await;
    let mut hook = HookSocket::listen("127.0.0.1").await;
    let url = format!("ws://127.0.0.1:{}/", hook.port);
    let stream_url = format!("{}/stream", app.base_url.replace("http://", "ws://"));
    let (mut live, _) = tokio_tungstenite::connect_async(stream_url).await.unwrap();
    assert_eq!(crate::stream::next(&mut live).await["type"], "initial");

    let saved = app.send_event(&permission_request(&url)).await;
    assert_eq!(saved["humanInTheLoopStatus"], json!({"status": "pending"}));
    assert_eq!(
        saved["humanInTheLoop"]["question"],
        "May I run rm -rf build?"
    );
    let shown = crate::stream::next(&mut live).await;
    assert_eq!(shown["data"]["humanInTheLoopStatus"]["status"], "pending");
    let listed = app.get_ok("/events").await;
    assert_eq!(
        listed["events"][0]["humanInTheLoopStatus"]["status"],
        "pending"
    );
    let pending = app.get_ok("/api/hitl/pending").await;
    assert_eq!(pending["requests"][0]["id"], saved["id"]);

    // The upstream's dashboard answers with the event attached.
    let id = saved["id"].as_i64().unwrap();
    let answer = json!({"permission": true, "respondedBy": "dev", "hookEvent": saved});
    let response = app
        .post_json(&format!("/events/{id}/respond"), &answer)
        .await;
    assert_eq!(response.status(), 200);
    let updated: Value = response.json().await.unwrap();
    let status = &updated["humanInTheLoopStatus"];
    assert_eq!(status["status"], "responded");
    assert_eq!(status["response"]["permission"], true);
    assert_eq!(status["response"]["respondedBy"], "dev");
    assert!(
        status["response"].get("hookEvent").is_none(),
        "not kept twice"
    );
    assert!(status["respondedAt"].as_i64().is_some());

    let relayed = hook.next_message().await;
    assert_eq!(relayed["permission"], true);
    assert_eq!(relayed["respondedAt"], status["respondedAt"]);
    let shown = crate::stream::next(&mut live).await;
    assert_eq!(shown["type"], "event");
    assert_eq!(shown["data"]["id"], id);
    assert_eq!(shown["data"]["humanInTheLoopStatus"]["status"], "responded");
    assert_eq!(
        app.get_ok("/events").await["events"][0]["humanInTheLoopStatus"]["status"],
        "responded"
    );
    assert_eq!(app.get_ok("/api/hitl/pending").await["requests"], json!([]));

    // A second answer changes nothing.
    let again = app
        .post_json(
            &format!("/events/{id}/respond"),
            &json!({"permission": false}),
        )
        .await;
    expect_error(again, 409).await;
    let after = app.get_ok("/events").await;
    assert_eq!(
        after["events"][0]["humanInTheLoopStatus"]["response"]["permission"],
        true
    );
    // An event that asked nothing, and one that does not exist.
    let plain = app
        .send_event(&fixtures::envelope("a", "s", "Stop", 0, json!({})))
        .await;
    let not_a_request = app
        .post_json(
            &format!("/events/{}/respond", plain["id"]),
            &json!({"permission": true}),
        )
        .await;
    expect_error(not_a_request, 409).await;
    expect_error(
        app.post_json("/events/999999/respond", &json!({"permission": true}))
            .await,
        404,
    )
    .await;
}

/// This machine's first address that is not loopback (`hostname -I`).
fn non_loopback_address() -> String {
    let output = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .expect("`hostname -I` lists this machine's addresses (Debian's hostname package)");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .find(|a| {
            a.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
        .expect("this machine has a non-loopback IPv4 address")
        .to_owned()
}

#[tokio::test]
async fn an_answer_is_never_relayed_to_a_host_that_is_not_allowed() {
    let address = non_loopback_address();
    let hook = HookSocket::listen(&address).await;
    let url = format!("ws://{address}:{}/", hook.port);
    let app = TestApp::spawn().await;
    let saved = app.send_event(&permission_request(&url)).await;
    let id = saved["id"].as_i64().unwrap();
    let response = app
        .post_json(
            &format!("/events/{id}/respond"),
            &json!({"permission": true}),
        )
        .await;
    assert_eq!(response.status(), 200, "the answer is recorded");
    crate::helpers::wait_until(
        "the refused relay to be counted",
        Duration::from_secs(5),
        || async { Value::String(app.get_text("/metrics").await) },
        |m| {
            m.as_str()
                .unwrap()
                .contains(r#"hookwatch_hitl_relays_total{outcome="refused"} 1"#)
        },
    )
    .await;
    assert_eq!(
        hook.connections.load(Ordering::SeqCst),
        0,
        "never connected to"
    );

    // The same listener, allowed with --hitl-allow-hosts, is reached: the refusal above was
    // the rule, not an unreachable address.
    let mut hook = hook;
    let allowed = TestApp::spawn_with(|c| c.hitl_allow_hosts = vec![address.clone()]).await;
    let saved = allowed.send_event(&permission_request(&url)).await;
    let id = saved["id"].as_i64().unwrap();
    let response = allowed
        .post_json(
            &format!("/events/{id}/respond"),
            &json!({"permission": false}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(hook.next_message().await["permission"], false);
    assert_eq!(hook.connections.load(Ordering::SeqCst), 1);
}

crate::on_each_store!(an_answer_is_recorded_once_shown_live_and_relayed_to_the_hook);
