//! `GET /stream`: the live WebSocket.
//!
//! It speaks the origin protocol unchanged (`{"type":"initial","data":[…]}` with the recent
//! events oldest first, then `{"type":"event","data":…}` per new event), so existing dashboards
//! keep working, and adds versioned messages: `agent` (a lifecycle change), `metrics` (today's
//! metrics, pushed at most once a second when events arrived), `health` (on connect and when
//! the store, Redis or the breaker changes) and `lagged` (this client fell behind and missed
//! `dropped` messages). A client narrows the stream with query
//! parameters at connect (`app`, `session_id`, `event_type`, `agent_id`) or by sending
//! `{"type":"subscribe","filters":{…}}` at any time. The server pings every 20 s and closes a
//! connection that has not answered for 60 s.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use crate::live::{Filters, Typed, global_message, lagged_message};
use crate::store::{EventQuery, SortOrder};

use super::AppState;

/// The largest message a client may send (subscriptions are small).
const MAX_CLIENT_MESSAGE_BYTES: usize = 16 * 1024;
const PING_EVERY: Duration = Duration::from_secs(20);
const SILENCE_LIMIT: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
struct ClientMessage {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    filters: Filters,
}

pub async fn stream(
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    State(state): State<AppState>,
    Query(filters): Query<Filters>,
) -> Response {
    // A plain GET gets the API's JSON error, as every 4xx does, instead of axum's text.
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(e) => {
            return super::error::ApiError::bad_request(format!(
                "/stream is a WebSocket: connect with a WebSocket client ({e})"
            ))
            .into_response();
        }
    };
    upgrade
        .max_message_size(MAX_CLIENT_MESSAGE_BYTES)
        .on_upgrade(move |socket| serve(socket, state, filters))
}

async fn serve(mut socket: WebSocket, state: AppState, mut filters: Filters) {
    // Subscribe before reading the initial events, so nothing committed in between is missed;
    // events already in `initial` are skipped when they arrive live.
    let mut live = state.service.live().subscribe();
    let initial = match state
        .service
        .store()
        .events(EventQuery {
            source_app: filters.source_app.clone(),
            session_id: filters.session_id.clone(),
            hook_event_type: filters.hook_event_type.clone(),
            limit: state.stream_initial,
            order: SortOrder::Descending,
            ..EventQuery::default()
        })
        .await
    {
        Ok(page) => page.events,
        Err(e) => {
            tracing::debug!(error = %e, "could not read the initial events");
            Vec::new()
        }
    };
    let newest_initial = initial.first().map_or(i64::MIN, |e| e.id);
    let mut initial = initial;
    initial.reverse();
    let message = serde_json::to_string(&Typed {
        kind: "initial",
        data: &initial,
    })
    .unwrap_or_default();
    if socket.send(Message::Text(message.into())).await.is_err() {
        return;
    }
    let health = global_message("health", &state.service.live_health().await);
    if socket.send(Message::Text(health.into())).await.is_err() {
        return;
    }
    let mut heartbeat = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    let mut last_heard = Instant::now();
    let stopped = state.service.live().stopped();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => {
                let goodbye = CloseFrame { code: close_code::AWAY, reason: "the server is stopping".into() };
                let _ = socket.send(Message::Close(Some(goodbye))).await;
                break;
            }
            published = live.recv() => {
                let text = match published {
                    Ok(message) => {
                        let already_sent = message.event_row.is_some_and(|row| row <= newest_initial);
                        if already_sent || !filters.matches(&message.subject) {
                            continue;
                        }
                        Utf8Bytes::from(message.json.clone())
                    }
                    Err(RecvError::Lagged(dropped)) => {
                        state.service.live().count_lagged();
                        Utf8Bytes::from(lagged_message(dropped))
                    }
                    Err(RecvError::Closed) => break,
                };
                if socket.send(Message::Text(text)).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => {
                last_heard = Instant::now();
                match incoming {
                    Some(Ok(Message::Text(text))) => {
                        if let Ok(request) = serde_json::from_str::<ClientMessage>(&text)
                            && request.kind == "subscribe"
                        {
                            filters = request.filters;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {} // pongs, pings (answered by the library), binary
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > SILENCE_LIMIT {
                    break;
                }
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
        }
    }
}
