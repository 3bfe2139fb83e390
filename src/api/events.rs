//! Ingestion (`POST /events`, `/events/batch`, `/hooks/claude-code`) and event reads.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::{EventCursor, EventQuery, SortOrder, StoredChat, StoredEvent};

use super::AppState;
use super::error::ApiError;
use super::params::Params;
use super::wire::{self, HookSource, RejectedItem};

/// The most events one read returns.
pub(crate) const MAX_EVENTS_PER_READ: usize = 1000;

#[derive(Serialize)]
struct SavedEvent {
    #[serde(flatten)]
    event: StoredEvent,
    duplicate: bool,
}

pub(crate) async fn ingest_envelope(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let now_ms = state.service.now_ms();
    let event = if body.len() > state.limits.max_event_bytes {
        // An envelope with a large chat: checking and compressing it takes milliseconds, off
        // the runtime's threads.
        let (body, limits) = (body.clone(), std::sync::Arc::clone(&state.limits));
        tokio::task::spawn_blocking(move || wire::parse_envelope(&body, &limits, now_ms))
            .await
            .map_err(|e| ApiError::Internal(format!("parsing the event failed: {e}")))??
    } else {
        wire::parse_envelope(&body, &state.limits, now_ms)?
    };
    let outcome = state.service.record_event(event).await?;
    let saved = SavedEvent {
        // The answer echoes the event without its chat (the client sent it).
        event: StoredEvent {
            chat: None,
            ..outcome.event
        },
        duplicate: outcome.duplicate,
    };
    // Sized for the echo up front instead of grown by doubling.
    Ok(json_sized(
        &saved,
        body.len().min(state.limits.max_event_bytes) + 256,
    ))
}

/// `value` as a JSON response, written into a buffer of `capacity` bytes to start with.
fn json_sized(value: &impl Serialize, capacity: usize) -> Response {
    let mut buffer = Vec::with_capacity(capacity);
    match serde_json::to_writer(&mut buffer, value) {
        Ok(()) => (
            [(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            )],
            buffer,
        )
            .into_response(),
        Err(e) => ApiError::Internal(format!("could not write the answer: {e}")).into_response(),
    }
}

/// Claude Code's HTTP hook: answer 2xx with an empty body, which Claude Code reads as "no
/// decision". A JSON body here could block the agent.
pub(crate) async fn ingest_hook(
    State(state): State<AppState>,
    params: Params,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let body = body?;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let source = HookSource {
        app_param: params.text("app")?,
        app_header: header("x-hookwatch-app"),
        event_id_header: header("x-hookwatch-event-id"),
    };
    let event = wire::parse_hook_body(&body, source, &state.limits, state.service.now_ms())?;
    state.service.record_event(event).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct BatchAnswer {
    accepted: usize,
    duplicates: usize,
    rejected: Vec<RejectedItem>,
}

pub(crate) async fn ingest_batch(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let (events, rejected) = wire::parse_batch(&body, &state.limits, state.service.now_ms())?;
    let outcomes = state.service.record_events(events).await?;
    let duplicates = outcomes.iter().filter(|o| o.duplicate).count();
    let answer = BatchAnswer {
        accepted: outcomes.len() - duplicates,
        duplicates,
        rejected,
    };
    Ok(Json(answer).into_response())
}

pub(crate) async fn list_events(
    State(state): State<AppState>,
    params: Params,
) -> Result<Response, ApiError> {
    let order = match params.text("order")?.as_deref() {
        None | Some("asc") => SortOrder::Ascending,
        Some("desc") => SortOrder::Descending,
        Some(_) => return Err(ApiError::field("order", "order must be asc or desc")),
    };
    let after = params
        .text("cursor")?
        .map(|text| {
            EventCursor::decode(&text)
                .ok_or_else(|| ApiError::field("cursor", "cursor is not one this server issued"))
        })
        .transpose()?;
    let query = EventQuery {
        source_app: params.text("app")?,
        session_id: params.text("session_id")?,
        hook_event_type: params.text("event_type")?,
        tool_name: params.text("tool")?,
        since: params.int("since")?,
        until: params.int("until")?,
        text: params.text("q")?,
        limit: params.limit("limit", 100, MAX_EVENTS_PER_READ)?,
        after,
        order,
        chat_tails: true,
    };
    let page = state.service.events_page(query).await?;
    Ok(Json(page).into_response())
}

/// The newest N events, oldest first (the origin dashboard's initial load).
pub(crate) async fn recent_events(
    State(state): State<AppState>,
    params: Params,
) -> Result<Response, ApiError> {
    let limit = params.limit(
        "limit",
        crate::service::DEFAULT_RECENT_EVENTS,
        MAX_EVENTS_PER_READ,
    )?;
    Ok(Json(state.service.recent_events(limit).await?).into_response())
}

pub(crate) async fn filter_options(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(state.service.filter_options().await?).into_response())
}

/// `GET /events/{id}/chat`: the conversation sent with an event, as sent (JSON).
///
/// A chat is stored compressed and sent inflated, a piece at a time ([`CHAT_PIECE_BYTES`]), as
/// the client reads it: a reader holds the compressed chat and one piece, never the whole
/// conversation (200 slow readers of one 32 MiB chat once took 6.5 GB). What readers hold is
/// charged to one budget (`AppContext::chat_budget`): a read is charged the largest a chat may
/// be while it is fetched, then what its compressed form holds, until its last byte is sent;
/// past the budget a read is answered 503 with `Retry-After`.
pub(crate) async fn event_chat(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::field("id", "id must be an event's numeric id"))?;
    let budget = &state.chat_budget;
    let largest = state.limits.max_chat_bytes.max(CHAT_PIECE_BYTES);
    let mut held = budget
        .try_charge(largest)
        .ok_or_else(|| ApiError::Unavailable {
            message: format!(
                "{} bytes of chats are being sent already (the budget is {}): retry after the \
             Retry-After delay",
                budget.in_flight(),
                budget.total()
            ),
            reason: "chats_in_flight",
        })?;
    let chat = state
        .service
        .event_chat(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("event {id} has no chat")))?;
    // Keep what this read holds; give the rest back.
    let holds = match &chat {
        StoredChat::Inline(json) => json.len(),
        StoredChat::Compressed { compressed, .. } => compressed.len(),
    } + CHAT_PIECE_BYTES;
    let keep = u32::try_from(holds.max(1)).unwrap_or(u32::MAX) as usize;
    if keep < held.num_permits() {
        drop(held.split(held.num_permits() - keep));
    }
    let body = match chat {
        StoredChat::Inline(json) => axum::body::Body::from(json),
        StoredChat::Compressed {
            compressed,
            json_bytes,
        } => {
            let json_bytes = u64::try_from(json_bytes).unwrap_or(0);
            let decoder = std::io::Read::take(
                flate2::read::ZlibDecoder::new(std::io::Cursor::new(compressed)),
                json_bytes,
            );
            let pieces =
                futures_util::stream::unfold(Some((decoder, held)), move |state| async move {
                    let (mut decoder, held) = state?;
                    let mut piece = vec![0u8; CHAT_PIECE_BYTES];
                    match std::io::Read::read(&mut decoder, &mut piece) {
                        Ok(0) => None,
                        Ok(n) => {
                            piece.truncate(n);
                            Some((Ok(axum::body::Bytes::from(piece)), Some((decoder, held))))
                        }
                        Err(e) => {
                            tracing::warn!(event = id, error = %e, "a stored chat is damaged");
                            Some((Err(e), None))
                        }
                    }
                });
            axum::body::Body::from_stream(pieces)
        }
    };
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// How much of a chat is inflated at a time.
pub(crate) const CHAT_PIECE_BYTES: usize = 64 * 1024;
