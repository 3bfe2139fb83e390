//! Session reads.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::params::Params;

const MAX_SESSIONS_PER_READ: usize = 1000;

pub(crate) async fn list_sessions(
    State(state): State<AppState>,
    params: Params,
) -> Result<Response, ApiError> {
    let sessions = state
        .service
        .sessions(
            params.text("app")?,
            params.limit("limit", 100, MAX_SESSIONS_PER_READ)?,
        )
        .await?;
    Ok(Json(json!({ "sessions": sessions })).into_response())
}

pub(crate) async fn get_session(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let session = state
        .service
        .session(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no session with id {id:?}")))?;
    Ok(Json(session).into_response())
}

/// `GET /api/sessions/{id}/activity`: the session's API requests (Claude Code's telemetry,
/// each with the run it is attributed to) and tool calls, in time order: what the model was
/// asked between one tool call and the next.
pub(crate) async fn session_activity(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let activity = state.service.session_activity(&id).await?;
    Ok(Json(json!({ "session_id": id, "activity": activity })).into_response())
}

/// `GET /api/sessions/{id}/trace`: the session as a tree of timed spans
/// (`{session_id, spans}`, see `domain::trace`), or with `format=otlp` the same tree as an
/// OTLP/JSON `ExportTraceServiceRequest`.
pub(crate) async fn session_trace(
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let otlp = match params.text("format")?.as_deref() {
        None | Some("json") => false,
        Some("otlp") => true,
        Some(_) => return Err(ApiError::field("format", "format must be json or otlp")),
    };
    let spans = state
        .service
        .session_trace(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no session with id {id:?}")))?;
    if otlp {
        let now_ms = state.service.now_ms();
        return Ok(Json(super::trace_export::export(&id, &spans, now_ms)).into_response());
    }
    Ok(Json(json!({ "session_id": id, "spans": spans })).into_response())
}
