//! The unified metrics service's HTTP face (`/api/agents/...`) and agent reads.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::domain::lifecycle::AgentStatus;
use crate::service::TimelineRequest;
use crate::store::AgentStatusFilter;

use super::AppState;
use super::error::ApiError;
use super::params::Params;

type Answer = Result<Response, ApiError>;
pub async fn current_metrics(State(state): State<AppState>, params: Params) -> Answer {
    let window = params.window(state.service.now_ms())?;
    Ok(Json(state.service.metrics(window).await?).into_response())
}

pub async fn timeline(State(state): State<AppState>, params: Params) -> Answer {
    let request = TimelineRequest {
        window: params.window(state.service.now_ms())?,
        bucket_ms: params.duration("bucket")?,
    };
    if let Some(bucket) = request.bucket_ms
        && bucket % crate::domain::time::MINUTE_MS != 0
    {
        return Err(ApiError::field(
            "bucket",
            "bucket must be a whole number of minutes",
        ));
    }
    Ok(Json(state.service.timeline(request).await?).into_response())
}

pub async fn distribution(State(state): State<AppState>, params: Params) -> Answer {
    let window = params.window(state.service.now_ms())?;
    Ok(Json(state.service.distribution(window).await?).into_response())
}

pub async fn tool_usage(State(state): State<AppState>, params: Params) -> Answer {
    let window = params.window(state.service.now_ms())?;
    Ok(Json(state.service.tool_usage(window).await?).into_response())
}

/// The most bytes a lifecycle report may have.
pub const MAX_REPORT_BYTES: usize = 64 * 1024;

fn report_body(body: Result<Bytes, BytesRejection>) -> Result<Map<String, Value>, ApiError> {
    let body = body?;
    if body.len() > MAX_REPORT_BYTES {
        return Err(ApiError::TooLarge(format!(
            "report is {} bytes; the limit is {MAX_REPORT_BYTES}",
            body.len()
        )));
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("malformed JSON: {e}"))),
    }
}

fn required_text(
    report: &Map<String, Value>,
    field: &str,
    max_len: usize,
) -> Result<String, ApiError> {
    match report.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= max_len => Ok(s.clone()),
        Some(Value::String(s)) if s.len() > max_len => Err(ApiError::field(
            field,
            format!("{field} is longer than {max_len} bytes"),
        )),
        Some(Value::String(_)) => Err(ApiError::field(field, format!("{field} must not be empty"))),
        Some(_) => Err(ApiError::field(field, format!("{field} must be a string"))),
        None => Err(ApiError::field(field, format!("{field} is required"))),
    }
}

fn optional_number(report: &Map<String, Value>, field: &str) -> Result<(), ApiError> {
    match report.get(field) {
        None | Some(Value::Null) | Some(Value::Number(_)) => Ok(()),
        Some(_) => Err(ApiError::field(field, format!("{field} must be a number"))),
    }
}

pub async fn start_agent(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let report = report_body(body)?;
    let max = state.limits.max_id_len;
    let session_id = required_text(&report, "session_id", max)?;
    let source_app = required_text(&report, "source_app", max)?;
    required_text(&report, "agent_type", max)?;
    let agent_id = state
        .service
        .mark_agent_started(source_app, session_id, report)
        .await?;
    Ok(Json(json!({ "agent_id": agent_id })).into_response())
}

pub async fn complete_agent(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let report = report_body(body)?;
    required_text(&report, "agent_id", state.limits.max_id_len)?;
    optional_number(&report, "duration_ms")?;
    match report.get("token_usage") {
        None | Some(Value::Null) | Some(Value::Number(_)) | Some(Value::Object(_)) => {}
        Some(_) => {
            return Err(ApiError::field(
                "token_usage",
                "token_usage must be a number or a usage object",
            ));
        }
    }
    state.service.mark_agent_completed(report).await?;
    Ok(Json(json!({ "success": true })).into_response())
}

/// The most agents one listing returns.
const MAX_AGENTS_PER_READ: usize = 1000;

pub async fn list_agents(State(state): State<AppState>, params: Params) -> Answer {
    let filter = match params.text("status")?.as_deref() {
        None | Some("all") => AgentStatusFilter::All,
        Some("active") => AgentStatusFilter::Active,
        Some(other) => AgentStatusFilter::Is(AgentStatus::parse(other).ok_or_else(|| {
            ApiError::field(
                "status",
                "status must be one of all, active, running, completed, failed, timed_out",
            )
        })?),
    };
    let limit = params.limit("limit", 200, MAX_AGENTS_PER_READ)?;
    let agents = state
        .service
        .store()
        .agents(filter, state.service.idle_cutoff_ms(), limit)
        .await?;
    Ok(Json(json!({ "agents": agents })).into_response())
}

pub async fn get_agent(State(state): State<AppState>, Path(id): Path<String>) -> Answer {
    let agent = state
        .service
        .store()
        .agent(&id, state.service.idle_cutoff_ms())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no agent with id {id:?}")))?;
    Ok(Json(agent).into_response())
}
