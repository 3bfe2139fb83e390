//! Human in the loop, as the upstream's hooks and dashboard speak it.
//!
//! A hook sends an event with `humanInTheLoop: {question, responseWebSocketUrl, type, choices,
//! timeout}` and waits on its own WebSocket. The event is stored with
//! `humanInTheLoopStatus: {"status": "pending"}`; `POST /events/{id}/respond` takes the
//! upstream's response body (`{response | permission | choice, respondedBy, hookEvent}`),
//! records it once (a second answer gets 409), sends the updated event to live clients, and
//! relays the response to the hook's `responseWebSocketUrl`.
//!
//! Relaying means hookwatch opens a connection that an event chose, so it connects only to
//! `localhost` and loopback addresses unless `--hitl-allow-hosts` names others, over `ws://`,
//! within [`RELAY_TIMEOUT`], and never follows a redirect (a WebSocket handshake answered
//! with anything but 101 fails). Answering controls an agent: the route takes the ingest
//! token (`auth.rs`), and browsers only from allowed origins (`browsers.rs`).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use futures_util::SinkExt;
use serde_json::{Map, Value, json};

use crate::service::AwaitedAnswer;
use crate::store::{Answered, StoredEvent};

use super::AppState;
use super::error::ApiError;
use super::params::Params;

/// The longest a relay to a hook's WebSocket may take, connecting included.
pub(crate) const RELAY_TIMEOUT: Duration = Duration::from_secs(3);

/// Where relays went, for `/metrics` and health.
#[derive(Debug, Default)]
pub(crate) struct RelayStats {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    /// Relays not attempted: the URL's host is not allowed, or its scheme is not `ws`.
    pub refused: AtomicU64,
}

/// `POST /events/{id}/respond`: the answer to a pending request.
pub(crate) async fn respond(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let event_row: i64 = id
        .parse()
        .map_err(|_| ApiError::field("id", "id must be an event's numeric id"))?;
    let body = body?;
    let mut response = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(ApiError::bad_request("the response must be a JSON object")),
        Err(e) => return Err(ApiError::bad_request(format!("malformed JSON: {e}"))),
    };
    let now_ms = state.service.now_ms();
    response.insert("respondedAt".into(), json!(now_ms));
    // As the upstream records it, without the copy of the event its dashboard sends along.
    let mut recorded = response.clone();
    recorded.remove("hookEvent");
    let status = json!({"status": "responded", "respondedAt": now_ms, "response": recorded});
    match state
        .service
        .answer_request(event_row, status.to_string())
        .await?
    {
        Answered::Now(event) => {
            if let Some(url) = response_url(&event) {
                let allowed = state.hitl_allow_hosts.clone();
                let stats = std::sync::Arc::clone(&state.relay_stats);
                let message = Value::Object(response).to_string();
                tokio::spawn(async move { relay(&url, message, &allowed, &stats).await });
            }
            Ok(Json(event).into_response())
        }
        Answered::Before(_) => Err(ApiError::Conflict(format!(
            "the request of event {event_row} was answered already"
        ))),
        Answered::NotARequest => Err(ApiError::Conflict(format!(
            "event {event_row} is not a human-in-the-loop request"
        ))),
        Answered::NoSuchEvent => Err(ApiError::NotFound(format!("no event {event_row}"))),
    }
}

/// The longest one `GET /events/{id}/answer` waits: under the request time-out, so a client
/// that wants longer asks again.
const MAX_ANSWER_WAIT: Duration = Duration::from_secs(20);

/// `GET /events/{id}/answer?wait=N` (seconds): the request's status once it is answered, or
/// 202 `{"status": "pending"}` when `N` seconds (at most 20) pass first. The hook client's
/// `send --wait-for-decision` waits here: it works wherever the hook runs, with no socket of
/// its own. Same scope as the request it answers (ingest).
pub(crate) async fn answer(
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let event_row: i64 = id
        .parse()
        .map_err(|_| ApiError::field("id", "id must be an event's numeric id"))?;
    let wait = params
        .int("wait")?
        .map_or(Duration::ZERO, |s| {
            Duration::from_secs(s.clamp(0, 3600) as u64)
        })
        .min(MAX_ANSWER_WAIT)
        .min(state.request_limits.request_timeout / 2);
    match state.service.wait_for_answer(event_row, wait).await? {
        AwaitedAnswer::Answered(status) => Ok((
            [(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            )],
            String::from(status.get()),
        )
            .into_response()),
        AwaitedAnswer::Pending => Ok((
            axum::http::StatusCode::ACCEPTED,
            Json(json!({"status": "pending"})),
        )
            .into_response()),
        AwaitedAnswer::NotARequest => Err(ApiError::Conflict(format!(
            "event {event_row} is not a human-in-the-loop request"
        ))),
        AwaitedAnswer::NoSuchEvent => Err(ApiError::NotFound(format!("no event {event_row}"))),
    }
}

/// The most pending requests one read lists.
const MAX_PENDING: usize = 200;

/// `GET /api/hitl/pending`: requests still waiting for an answer, newest first.
pub(crate) async fn pending(
    State(state): State<AppState>,
    params: Params,
) -> Result<Response, ApiError> {
    let limit = params.limit("limit", 100, MAX_PENDING)?;
    let requests = state.service.pending_requests(limit).await?;
    Ok(Json(json!({ "requests": requests })).into_response())
}

/// The hook's `humanInTheLoop.responseWebSocketUrl`, kept as sent in the event's extra fields.
fn response_url(event: &StoredEvent) -> Option<String> {
    let extra: Map<String, Value> = serde_json::from_str(event.extra.as_ref()?.get()).ok()?;
    extra
        .get("humanInTheLoop")?
        .get("responseWebSocketUrl")?
        .as_str()
        .map(str::to_owned)
}

/// Why a URL may not be relayed to, if it may not.
pub(crate) fn refusal(url: &str, allowed_hosts: &[String]) -> Option<String> {
    let Some(rest) = url.strip_prefix("ws://") else {
        return Some("only ws:// URLs are relayed to".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Some("URLs with credentials are not relayed to".into());
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    let allowed = allowed_hosts
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(host));
    (!loopback && !allowed)
        .then(|| format!("{host:?} is not a loopback address; allow it with --hitl-allow-hosts"))
}

/// Sends `message` to the hook waiting at `url`, if it may be reached, within the timeout.
async fn relay(url: &str, message: String, allowed_hosts: &[String], stats: &RelayStats) {
    if let Some(reason) = refusal(url, allowed_hosts) {
        stats.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%reason, "human-in-the-loop answer not relayed");
        return;
    }
    let attempt = async {
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
        socket
            .send(tokio_tungstenite::tungstenite::Message::Text(
                message.into(),
            ))
            .await?;
        socket.close(None).await
    };
    match tokio::time::timeout(RELAY_TIMEOUT, attempt).await {
        Ok(Ok(())) => {
            stats.delivered.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Err(e)) => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "could not relay a human-in-the-loop answer");
        }
        Err(_) => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(timeout = ?RELAY_TIMEOUT, "relaying a human-in-the-loop answer timed out");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_and_allowed_hosts_are_relayed_to() {
        let none: &[String] = &[];
        for url in [
            "ws://localhost:8765/ws",
            "ws://127.0.0.1:9000",
            "ws://[::1]:9000/x",
            "ws://LOCALHOST",
        ] {
            assert_eq!(refusal(url, none), None, "{url}");
        }
        for url in [
            "ws://10.0.0.5:9000",
            "ws://evil.example/ws",
            "wss://localhost:9000",
            "http://localhost:9000",
            "ws://user@localhost:9000",
            "ws://localhost.evil.example:9000",
        ] {
            assert!(refusal(url, none).is_some(), "{url}");
        }
        let allowed = vec!["agents.internal".to_owned()];
        assert_eq!(refusal("ws://agents.internal:9000/x", &allowed), None);
    }
}
