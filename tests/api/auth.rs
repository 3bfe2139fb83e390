//! Token authentication on every route, the refusal to listen publicly without it, and the
//! hook client and WebSocket presenting tokens.

use std::process::Stdio;

use reqwest::Method;
use serde_json::{Value, json};

use hookwatch::api::auth::Scope;

use crate::fixtures::envelope;
use crate::helpers::{TestApp, binary, expect_error};

const INGEST: [&str; 2] = ["ingest-old", "ingest-new"];
const READ: &str = "read-1";

async fn spawn_guarded() -> TestApp {
    TestApp::spawn_with(|c| {
        c.tokens.ingest = INGEST.iter().map(|t| t.to_string()).collect();
        c.tokens.read = vec![READ.to_owned()];
    })
    .await
}

/// Every write route with a valid body.
fn writes() -> Vec<(&'static str, Value)> {
    let event = envelope("p", "S1", "SessionStart", 0, json!({}));
    vec![
        ("/events", event.clone()),
        ("/events/batch", json!([event])),
        (
            "/hooks/claude-code",
            json!({"session_id": "S2", "hook_event_name": "Stop", "cwd": "/x/app"}),
        ),
        (
            "/api/agents/start",
            json!({"source_app": "p", "session_id": "S1", "agent_name": "n", "agent_type": "t"}),
        ),
    ]
}

async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut request = app.client.request(
        Method::from_bytes(method.as_bytes()).unwrap(),
        app.url(path),
    );
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn every_route_refuses_a_missing_wrong_or_other_scope_token() {
    let app = spawn_guarded().await;
    for (path, body) in writes() {
        for (token, status) in [(None, 401), (Some("nope"), 401), (Some(READ), 403)] {
            let response = call(&app, "POST", path, token, Some(&body)).await;
            let error = expect_error(response, status).await;
            assert!(
                error["error"].as_str().unwrap().contains("token"),
                "{error}"
            );
        }
        for token in INGEST {
            let response = call(&app, "POST", path, Some(token), Some(&body)).await;
            assert!(
                response.status().is_success(),
                "POST {path} with an ingest token: {}",
                response.status()
            );
        }
    }
    // Every route the router serves, as its own table lists them (a route added later is
    // checked here without anyone listing it): the scope it is declared in is the token it
    // takes.
    let table = hookwatch::api::route_table();
    assert!(table.len() > 40, "{} routes", table.len());
    for (scope, method, path) in table {
        // Ids in paths: a numeric one serves every route.
        let path = path.replace("{id}", "1");
        let method = method.as_str();
        let body = (method == "POST").then(|| json!({}));
        let body = body.as_ref();
        let (right, other) = match scope {
            Scope::Open => {
                let response = call(&app, method, &path, None, body).await;
                assert!(
                    ![401, 403].contains(&response.status().as_u16()),
                    "{method} {path} is open: {}",
                    response.status()
                );
                continue;
            }
            Scope::Ingest => (INGEST[1], READ),
            Scope::Read => (READ, INGEST[1]),
        };
        for (token, status) in [(None, 401), (Some("nope"), 401), (Some(other), 403)] {
            let response = call(&app, method, &path, token, body).await;
            let error = expect_error(response, status).await;
            assert!(
                error["error"].as_str().unwrap().contains("token"),
                "{method} {path}: {error}"
            );
        }
        let response = call(&app, method, &path, Some(right), body).await;
        assert!(
            ![401, 403].contains(&response.status().as_u16()),
            "{method} {path} with its {scope:?} token: {}",
            response.status()
        );
        if method == "GET" {
            let url = format!("{path}?token={right}");
            let response = call(&app, "GET", &url, None, None).await;
            assert!(
                ![401, 403].contains(&response.status().as_u16()),
                "GET {url}: {}",
                response.status()
            );
        }
    }
    let health = call(&app, "GET", "/healthz", None, None).await;
    assert_eq!(health.status(), 200, "load balancers need no token");
    let unauthorized = call(&app, "GET", "/events", None, None).await;
    assert_eq!(unauthorized.headers()["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn the_auth_scheme_is_case_insensitive() {
    let app = spawn_guarded().await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let response = app
            .client
            .get(app.url("/events"))
            .header("authorization", format!("{scheme} {READ}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{scheme}");
    }
    for wrong in [
        format!("Basic {READ}"),
        format!("Bearer{READ}"),
        READ.to_owned(),
    ] {
        let response = app
            .client
            .get(app.url("/events"))
            .header("authorization", wrong.clone())
            .send()
            .await
            .unwrap();
        expect_error(response, 401).await;
    }
}

#[tokio::test]
async fn the_websocket_takes_its_token_in_the_query() {
    let app = spawn_guarded().await;
    let base = app.base_url.replace("http://", "ws://");
    let refused = tokio_tungstenite::connect_async(format!("{base}/stream")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!("expected a 401, got {other:?}"),
    }
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("{base}/stream?token={READ}"))
        .await
        .expect("the read token opens the stream");
    use futures_util::StreamExt;
    let first = socket.next().await.unwrap().unwrap();
    assert!(first.to_text().unwrap().contains("\"initial\""));
}

#[tokio::test]
async fn the_hook_client_presents_its_token() {
    let app = spawn_guarded().await;
    let dir = tempfile::tempdir().unwrap();
    let hook = br#"{"session_id":"K1","hook_event_name":"Stop","cwd":"/x/app"}"#;
    for token in [Some(INGEST[1]), None] {
        // tokio's process API: the server under test runs on this runtime.
        let mut command = tokio::process::Command::new(binary());
        command
            .arg("send")
            .env("HOOKWATCH_SERVER", &app.base_url)
            .env("HOOKWATCH_SPOOL_DIR", dir.path().join("spool"))
            .env_remove("HOOKWATCH_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some(token) = token {
            command.env("HOOKWATCH_TOKEN", token);
        }
        let mut child = command.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stdin, hook)
            .await
            .unwrap();
        drop(stdin);
        let output = child.wait_with_output().await.unwrap();
        assert!(output.status.success() && output.stdout.is_empty());
    }
    let events: Value = call(&app, "GET", "/events", Some(READ), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(events["events"].as_array().unwrap().len(), 1, "{events}");
    let spooled = std::fs::read_dir(dir.path().join("spool"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .count();
    assert_eq!(
        spooled, 1,
        "the send without a token was refused and spooled"
    );
}

#[tokio::test]
async fn a_public_address_without_tokens_is_refused_unless_insecure_is_explicit() {
    let dir = tempfile::tempdir().unwrap();
    let refused = std::process::Command::new(binary())
        .args(["serve", "--addr", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("HOOKWATCH_INGEST_TOKEN")
        .env_remove("HOOKWATCH_READ_TOKEN")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("--ingest-token") && stderr.contains("--insecure-no-auth"),
        "{stderr}"
    );

    for extra in [
        vec!["--insecure-no-auth"],
        vec!["--ingest-token", "a", "--read-token", "b"],
    ] {
        let mut command = tokio::process::Command::new(binary());
        command
            .args(["serve", "--addr", "0.0.0.0:0", "--data-dir"])
            .arg(dir.path())
            .args(&extra);
        let server = crate::helpers::ServerProcess::spawn(command).await;
        server.kill_hard().await;
    }
}
