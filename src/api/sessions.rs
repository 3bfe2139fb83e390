//! Session reads.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::params::Params;

const MAX_SESSIONS_PER_READ: usize = 1000;

pub async fn list_sessions(
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

pub async fn get_session(
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
