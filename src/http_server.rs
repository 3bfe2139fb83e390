//! The accept loop: HTTP/1.1 connections with limits that `axum::serve` does not set.
//!
//! `axum::serve` gives hyper no timer, so hyper's header read timeout never fires: a client that
//! sends its request head one byte a minute (slowloris) holds a connection, and a task, for
//! ever. Here each connection gets hyper's HTTP/1 builder with a timer and a header read
//! timeout, connections are capped (over the cap, a new connection is closed at once), and
//! every request carries its peer address (`ConnectInfo`) for per-client rate limits. Slow
//! bodies and slow handlers are bounded by the router's timeout layers (`api/limits.rs`).
//!
//! Shutdown: stop accepting, ask every connection to finish its in-flight request and close
//! (hyper's graceful shutdown), and wait for them, at most `drain_timeout`. Upgraded WebSockets
//! have left hyper, but still hold their connection's slot: `shutdown` also closes them
//! (`LiveHub::stop`, in `startup.rs`), so the drain does not wait for them.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower_service::Service;

#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// The longest a client may take to send a request's head (line and headers).
    pub header_read_timeout: Duration,
    /// Open connections at most; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// A connection's place under `max_connections`, in every request's extensions: a WebSocket
/// keeps it for as long as it is open, since its connection leaves hyper when it upgrades
/// (before, 300 WebSockets upgraded under `--max-connections 100`).
#[derive(Debug, Clone)]
pub struct ConnectionSlot(pub Arc<tokio::sync::OwnedSemaphorePermit>);

/// Connections refused because the cap was reached, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct ConnectionStats {
    pub refused: AtomicU64,
}

/// The next connection that fits under the cap (`slots`), with its slot; `None` once
/// `shutdown` resolves. A connection over the cap is closed as soon as it is accepted (and
/// counted in `refused`), so a flood cannot hold file descriptors beyond the cap.
pub(crate) async fn next_connection(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    refused: &AtomicU64,
    mut shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Option<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(e) => {
                    // Out of file descriptors, usually: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.as_mut() => return None,
        };
        match Arc::clone(slots).try_acquire_owned() {
            Ok(slot) => return Some((stream, peer, slot)),
            Err(_) => {
                refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, "connection refused: at the connection cap");
                // dropping the stream closes it
            }
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains.
pub(crate) async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    while let Some((stream, peer, slot)) =
        next_connection(&listener, &slots, &stats.refused, shutdown.as_mut()).await
    {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let router = router.clone();
        let slot = ConnectionSlot(Arc::new(slot));
        let request_slot = slot.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(request_slot.clone());
            let mut router = router.clone();
            async move {
                let response = router.call(request.map(Body::new)).await;
                Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
            }
        });
        let connection = http
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let outcome = tokio::select! {
                outcome = connection.as_mut() => outcome,
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = outcome {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.drain_timeout, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            timeout = ?limits.drain_timeout,
            "shutdown: connections still open after the drain timeout; closing them"
        );
    }
}
