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
//!
//! Each client is bounded: it holds its connection's slot under `--max-connections` and one of
//! `--max-stream-clients` for as long as it is open (503 past either), its buffers are small
//! (4 KiB to read, messages written as they come) and its unsent bytes capped (8 MiB), a send
//! that stalls for 10 s or more than 5 pings a second drop it, and `initial` holds at most
//! 4 MiB of events (the newest).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use crate::http_server::ConnectionSlot;
use crate::live::{Filters, Typed, global_message, lagged_message};
use crate::store::{EventQuery, SortOrder, StoredEvent};

use super::AppState;

/// The largest message a client may send (subscriptions are small).
const MAX_CLIENT_MESSAGE_BYTES: usize = 16 * 1024;
const PING_EVERY: Duration = Duration::from_secs(20);
const SILENCE_LIMIT: Duration = Duration::from_secs(60);
/// A client whose messages cannot be handed to its socket for this long is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// A client answered more pings than this in a second is dropped (each ping queues a pong it
/// may never read: a ping flood grew the server by 100 MB per client).
const MAX_PINGS_PER_SECOND: u32 = 5;
/// The `initial` message's events, in bytes at most (the newest are kept).
const MAX_INITIAL_BYTES: usize = 4 * 1024 * 1024;
/// Bytes a client's socket may hold unsent: one `initial` and a few events. Past it the
/// client is dropped (tungstenite's buffer is unlimited by default).
const MAX_UNSENT_BYTES: usize = 2 * MAX_INITIAL_BYTES;

/// Pings a client sent in the current second.
struct PingCount {
    second: Instant,
    count: u32,
}

#[derive(Deserialize)]
struct ClientMessage {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    filters: Filters,
}

pub(crate) async fn stream(
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    State(state): State<AppState>,
    connection: Option<axum::Extension<ConnectionSlot>>,
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
    let Ok(stream_slot) = Arc::clone(&state.stream_slots).try_acquire_owned() else {
        return super::error::ApiError::Unavailable {
            message: "the server has as many /stream clients as it takes (--max-stream-clients): \
                      retry after the Retry-After delay"
                .into(),
            reason: "stream_clients",
        }
        .into_response();
    };
    upgrade
        .max_message_size(MAX_CLIENT_MESSAGE_BYTES)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_UNSENT_BYTES)
        .on_upgrade(move |socket| async move {
            // Both slots are held until the client is gone.
            let _slots = (stream_slot, connection);
            serve(socket, state, filters).await;
        })
}

/// Sends within [`SEND_TIMEOUT`]; `false` when the client is gone, failing or stalled.
async fn send(socket: &mut WebSocket, message: Message) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await,
        Ok(Ok(()))
    )
}

/// The newest events whose JSON fits in `budget` bytes, oldest first.
fn newest_within(mut newest_first: Vec<StoredEvent>, budget: usize) -> Vec<StoredEvent> {
    let mut used = 0;
    let keep = newest_first
        .iter()
        .take_while(|event| {
            used += serde_json::to_vec(event).map_or(0, |json| json.len() + 1);
            used <= budget
        })
        .count();
    newest_first.truncate(keep);
    newest_first.reverse();
    newest_first
}

async fn serve(mut socket: WebSocket, state: AppState, mut filters: Filters) {
    // Subscribe before reading the initial events, so nothing committed in between is missed;
    // events already in `initial` are skipped when they arrive live.
    let mut live = state.live.subscribe();
    let initial = match state
        .service
        .events_page(EventQuery {
            source_app: filters.source_app.clone(),
            session_id: filters.session_id.clone(),
            hook_event_type: filters.hook_event_type.clone(),
            limit: state.stream_initial,
            order: SortOrder::Descending,
            chat_tails: true,
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
    let initial = newest_within(initial, MAX_INITIAL_BYTES);
    let message = serde_json::to_string(&Typed {
        kind: "initial",
        data: &initial,
    })
    .unwrap_or_default();
    if !send(&mut socket, Message::Text(message.into())).await {
        return;
    }
    let health = global_message("health", &state.service.live_health().await);
    if !send(&mut socket, Message::Text(health.into())).await {
        return;
    }
    let mut heartbeat = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    let mut last_heard = Instant::now();
    let mut pings = PingCount {
        second: Instant::now(),
        count: 0,
    };
    let stopped = state.live.stopped();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => {
                let goodbye = CloseFrame { code: close_code::AWAY, reason: "the server is stopping".into() };
                send(&mut socket, Message::Close(Some(goodbye))).await;
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
                        state.live.count_lagged();
                        Utf8Bytes::from(lagged_message(dropped))
                    }
                    Err(RecvError::Closed) => break,
                };
                if !send(&mut socket, Message::Text(text)).await {
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
                    Some(Ok(Message::Ping(_))) => {
                        // Answered by the library; too many are a flood.
                        if pings.second.elapsed() >= Duration::from_secs(1) {
                            pings = PingCount { second: Instant::now(), count: 0 };
                        }
                        pings.count += 1;
                        if pings.count > MAX_PINGS_PER_SECOND {
                            let flood = CloseFrame {
                                code: close_code::POLICY,
                                reason: "too many pings".into(),
                            };
                            send(&mut socket, Message::Close(Some(flood))).await;
                            break;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {} // pongs, binary
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > SILENCE_LIMIT {
                    break;
                }
                if !send(&mut socket, Message::Ping(Default::default())).await {
                    break;
                }
            }
        }
    }
}
