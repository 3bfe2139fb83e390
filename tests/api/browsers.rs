//! Any web page can send requests to a tokenless hookwatch on 127.0.0.1; only the pages allowed
//! may write or open the stream, and only requests naming this server are answered (issue 17,
//! item 2).

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::fixtures;
use crate::helpers::{TestApp, all_events, expect_error};

const EVIL: &str = "https://evil.example";

async fn open_stream(app: &TestApp, origin: Option<&str>) -> Result<(), String> {
    let url = format!("{}/stream", app.base_url.replace("http://", "ws://"));
    let mut request = url.into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => Ok(()),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(format!("refused with {}", response.status()))
        }
        Err(e) => panic!("the handshake failed otherwise: {e}"),
    }
}

#[tokio::test]
async fn a_websocket_from_a_foreign_origin_is_refused() {
    let app = TestApp::spawn().await;
    app.send_event(&fixtures::envelope(
        "a",
        "s",
        "Stop",
        0,
        json!({"secret": "sk-123"}),
    ))
    .await;
    assert_eq!(
        open_stream(&app, Some(EVIL)).await,
        Err("refused with 403 Forbidden".to_owned()),
        "a foreign page never gets the stored payloads"
    );
    // CLIs send no Origin; the dashboard its own; the upstream's Vue dashboard a localhost one.
    open_stream(&app, None).await.unwrap();
    open_stream(&app, Some(&app.base_url)).await.unwrap();
    open_stream(&app, Some("http://localhost:5173"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_foreign_page_cannot_write_whatever_its_content_type() {
    let app = TestApp::spawn().await;
    let event = fixtures::envelope("a", "s", "Stop", 0, json!({})).to_string();
    // A "simple" request, which browsers send without a CORS preflight.
    let response = app
        .client
        .post(app.url("/events"))
        .header("origin", EVIL)
        .header("content-type", "text/plain")
        .body(event.clone())
        .send()
        .await
        .unwrap();
    let error = expect_error(response, 403).await;
    assert!(
        error["error"].as_str().unwrap().contains("--cors-origins"),
        "{error}"
    );
    let hook = fixtures::hook("s", "Stop", json!({})).to_string();
    let response = app
        .client
        .post(app.url("/hooks/claude-code"))
        .header("origin", EVIL)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(hook)
        .send()
        .await
        .unwrap();
    expect_error(response, 403).await;
    assert!(all_events(&app.client, &app.base_url).await.is_empty());

    // Without an Origin it is a CLI or a hook (curl -d sends a form type): accepted.
    let response = app
        .client
        .post(app.url("/events"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(event.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // A page on localhost, or one named with --cors-origins, may write.
    let response = app
        .client
        .post(app.url("/events"))
        .header("origin", "http://127.0.0.1:5173")
        .header("content-type", "application/json")
        .body(event)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let allowed = TestApp::spawn_with(|c| c.cors.allowed_origins = vec![EVIL.to_owned()]).await;
    let response = allowed
        .client
        .post(allowed.url("/events"))
        .header("origin", EVIL)
        .json(&fixtures::envelope("a", "s", "Stop", 0, json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_foreign_host_gets_421() {
    let app = TestApp::spawn().await;
    let port = app.base_url.rsplit(':').next().unwrap().to_owned();
    let get = |host: String, path: &'static str| {
        app.client.get(app.url(path)).header("host", host).send()
    };
    // DNS rebinding: the attacker's name, resolved to 127.0.0.1.
    let response = get(format!("attacker.example:{port}"), "/events")
        .await
        .unwrap();
    let error = expect_error(response, 421).await;
    assert!(
        error["error"].as_str().unwrap().contains("--allowed-hosts"),
        "{error}"
    );
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        assert_eq!(get(host, "/events").await.unwrap().status(), 200);
    }
    // Load balancers probe health by any name.
    let health = get("lb.internal".to_owned(), "/healthz").await.unwrap();
    assert_eq!(health.status(), 200);
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains(r#"reason="foreign_host""#),
        "refusals are counted"
    );

    let named = TestApp::spawn_with(|c| c.allowed_hosts = vec!["hookwatch.internal".into()]).await;
    let response = named
        .client
        .get(named.url("/events"))
        .header("host", "hookwatch.internal")
        .send()
        .await
        .unwrap();
    let page: Value = response.json().await.unwrap();
    assert_eq!(page["events"], json!([]));
}

/// Sends `head` (a request line and headers) on a fresh connection and returns the status.
async fn raw_status(app: &TestApp, head: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.base_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(n > 0, "answered: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buffer[..n]);
    }
    let line = String::from_utf8_lossy(&answer);
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Two `Host` or two `Origin` headers get 400, whichever comes first; a Host that only looks
/// like loopback (`[::1]x`) gets 400 too, and never passes as loopback.
#[tokio::test]
async fn a_repeated_host_or_origin_or_a_malformed_host_gets_400() {
    let app = TestApp::spawn().await;
    let request = |headers: &str| {
        format!(
            "POST /events HTTP/1.1\r\n{headers}Content-Type: application/json\r\n\
             Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        )
    };
    let cases = [
        "Host: localhost\r\nHost: attacker.example\r\n",
        "Host: attacker.example\r\nHost: localhost\r\n",
        "Host: localhost\r\nOrigin: http://localhost\r\nOrigin: https://evil.example\r\n",
        "Host: [::1]x\r\n",
        "Host: 127.0.0.1:4000:1\r\n",
    ];
    for headers in cases {
        assert_eq!(raw_status(&app, &request(headers)).await, 400, "{headers}");
    }
    // One of each is judged as before: an empty event body is a 400 of its own, so a GET.
    let get = "GET /events HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_status(&app, get).await, 200);
    assert_eq!(
        all_events(&app.client, &app.base_url).await.len(),
        0,
        "nothing stored"
    );
}
