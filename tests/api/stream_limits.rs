//! WebSockets inside the limits (issue 17, items 3 and 4): they count against
//! `--max-connections` and `--max-stream-clients`, a ping flood drops the client, and thousands
//! of clients leave the server's memory under a bound.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{ServerProcess, TestApp};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn stream_url(base_url: &str) -> String {
    format!("{}/stream", base_url.replace("http://", "ws://"))
}

async fn open(base_url: &str) -> Result<Socket, String> {
    match tokio_tungstenite::connect_async(stream_url(base_url)).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16().to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test]
async fn websockets_count_against_both_caps() {
    let app = TestApp::spawn_with(|c| {
        c.connection_limits.max_connections = 6;
        c.max_stream_clients = 4;
    })
    .await;
    let mut sockets = Vec::new();
    for _ in 0..4 {
        sockets.push(open(&app.base_url).await.expect("under both caps"));
    }
    assert_eq!(
        open(&app.base_url).await.err().as_deref(),
        Some("503"),
        "past --max-stream-clients"
    );
    // The four WebSockets still hold four of the six connections: two plain ones fit, a third
    // is closed at once.
    let first = TcpStream::connect(&app.base_url["http://".len()..])
        .await
        .unwrap();
    let second = TcpStream::connect(&app.base_url["http://".len()..])
        .await
        .unwrap();
    crate::helpers::wait_until(
        "the cap to refuse a seventh connection",
        Duration::from_secs(5),
        || async {
            let refused = app
                .client
                .get(app.url("/healthz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_err();
            serde_json::json!(refused)
        },
        |refused| refused == true,
    )
    .await;
    drop((first, second));
    // A closed WebSocket gives its places back.
    sockets.pop().unwrap().close(None).await.unwrap();
    crate::helpers::wait_until(
        "a stream place to come back",
        Duration::from_secs(5),
        || async { serde_json::json!(open(&app.base_url).await.is_ok()) },
        |opened| opened == true,
    )
    .await;
}

/// Sends up to 20 MB of pings and never reads: the server drops the client instead of
/// queueing 20 MB of pongs it cannot send.
async fn ping_flood(mut socket: Socket) -> Socket {
    let flood = async {
        for _ in 0..20_000 {
            let ping = Message::Ping(vec![0u8; 1024].into());
            if socket.send(ping).await.is_err() {
                break;
            }
        }
    };
    // A server that stops reading without closing would hold the sender: bounded either way.
    let _ = tokio::time::timeout(Duration::from_secs(20), flood).await;
    socket
}

#[tokio::test]
async fn a_ping_flood_drops_the_client() {
    let app = TestApp::spawn().await;
    let mut socket = ping_flood(open(&app.base_url).await.unwrap()).await;
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => return None,
            }
        }
    })
    .await
    .expect("the server drops the flooding client");
    assert!(matches!(closed, Some(1008) | None), "{closed:?}");
    // Everyone else is served.
    assert_eq!(app.get_ok("/healthz").await["status"], "ok");
}

fn rss_kib(pid: u32) -> u64 {
    crate::helpers::proc_status_kib(pid, "VmRSS")
}

/// The bound README.md documents for the whole server with 5,000 WebSocket attempts (1,000
/// held open, the default --max-stream-clients) and a ping flood from 20 more.
const RSS_BOUND_KIB: u64 = 64 * 1024;

#[tokio::test]
async fn five_thousand_websockets_and_a_ping_flood_stay_under_the_memory_bound() {
    // The test holds over 5,000 sockets: raise its own soft limit to the hard one.
    let _ = std::process::Command::new("prlimit")
        .args(["--pid", &std::process::id().to_string(), "--nofile=20000:"])
        .status();
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path()).await;
    let pid = server.child.id().unwrap();
    let before = rss_kib(pid);
    let mut open_sockets = Vec::new();
    let mut refused = 0;
    for _ in 0..5_000 {
        match open(&server.base_url).await {
            Ok(socket) => open_sockets.push(socket),
            Err(status) if status == "503" => refused += 1,
            Err(e) => panic!("a WebSocket failed otherwise: {e}"),
        }
    }
    assert_eq!(open_sockets.len(), 1_000, "--max-stream-clients");
    assert_eq!(refused, 4_000);
    drop(open_sockets.drain(..20));
    let mut floods = Vec::new();
    for _ in 0..20 {
        // The closed clients give their places back as the server notices: wait for one.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let socket = loop {
            match open(&server.base_url).await {
                Ok(socket) => break socket,
                Err(e) => assert!(
                    std::time::Instant::now() < deadline,
                    "no place came back: {e}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        floods.push(ping_flood(socket).await);
    }
    // Part of the scenario: give the server a moment with the floods' bytes in its buffers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = rss_kib(pid);
    assert!(
        during < RSS_BOUND_KIB,
        "RSS {during} KiB with 1,000 clients and 20 floods (it started at {before} KiB)"
    );
    println!("RSS: {before} KiB at start, {during} KiB with 1,000 clients and 20 ping floods");
    drop(open_sockets);
    drop(floods);
}
