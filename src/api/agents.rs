//! The unified metrics service's HTTP face (`/api/agents/...`) and agent reads.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::domain::event::AgentReport;
use crate::domain::lifecycle::AgentStatus;
use crate::domain::sessions::AgentStatusFilter;
use crate::service::TimelineRequest;

use super::AppState;
use super::error::ApiError;
use super::params::Params;

type Answer = Result<Response, ApiError>;
pub(crate) async fn current_metrics(State(state): State<AppState>, params: Params) -> Answer {
    let window = params.window(state.service.now_ms())?;
    Ok(Json(state.service.metrics(window).await?).into_response())
}

pub(crate) async fn timeline(State(state): State<AppState>, params: Params) -> Answer {
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

pub(crate) async fn distribution(State(state): State<AppState>, params: Params) -> Answer {
    let window = params.window(state.service.now_ms())?;
    Ok(Json(state.service.distribution(window).await?).into_response())
}

pub(crate) async fn tool_usage(State(state): State<AppState>, params: Params) -> Answer {
    let window = params.window(state.service.now_ms())?;
    Ok(Json(state.service.tool_usage(window).await?).into_response())
}

/// The most bytes a lifecycle report may have.
pub(crate) const MAX_REPORT_BYTES: usize = 64 * 1024;

fn report_body(body: Result<Bytes, BytesRejection>) -> Result<Map<String, Value>, ApiError> {
    let body = body?;
    if body.len() > MAX_REPORT_BYTES {
        return Err(ApiError::too_large(format!(
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

/// A string field usable as an identifier (not blank, at most `max_len` bytes, no NUL), or
/// `None`: reports come from scripts that send `null`, `""` or nothing for what they do not know.
fn usable_text(report: &Map<String, Value>, field: &str, max_len: usize) -> Option<String> {
    match report.get(field) {
        Some(Value::String(s)) if super::wire::usable_identifier(s, max_len) => Some(s.clone()),
        _ => None,
    }
}

/// What an agent report names no session or app under, as the upstream's scripts default it.
const UNKNOWN: &str = "unknown";

/// Records a caller's agent start. Every field is optional (the TTS fork's `subagent_start.py`
/// sends neither session nor app nor type): the caller's own `agent_id` is kept when it gives
/// one, so its completion finds the agent, and a new id is made otherwise.
pub(crate) async fn start_agent(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let report = report_body(body)?;
    let max = state.limits.max_id_len;
    let session_id = usable_text(&report, "session_id", max).unwrap_or_else(|| UNKNOWN.into());
    let source_app = usable_text(&report, "source_app", max).unwrap_or_else(|| UNKNOWN.into());
    let agent_id =
        usable_text(&report, "agent_id", max).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let report = AgentReport::new(agent_id, report);
    let agent_id = report.agent_id.clone();
    state
        .service
        .mark_agent_started(source_app, session_id, report, max)
        .await?;
    Ok(Json(json!({ "agent_id": agent_id })).into_response())
}

/// Records a caller's agent completion. An id that is missing, `null` or unknown is answered
/// 200 with `recorded: false` and the reason: the TTS fork's `subagent_stop.py` sends such
/// reports routinely, and its origin server answered them 200.
pub(crate) async fn complete_agent(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Answer {
    let report = report_body(body)?;
    let sent_id = report.get("agent_id").cloned().unwrap_or(Value::Null);
    let Some(agent_id) = usable_text(&report, "agent_id", state.limits.max_id_len) else {
        return Ok(Json(json!({
            "success": false,
            "recorded": false,
            "agent_id": sent_id,
            "error": "the report names no agent_id; nothing was recorded",
        }))
        .into_response());
    };
    if state
        .service
        .mark_agent_completed(
            AgentReport::new(agent_id.clone(), report),
            state.limits.max_id_len,
        )
        .await?
    {
        Ok(
            Json(json!({ "success": true, "recorded": true, "agent_id": agent_id }))
                .into_response(),
        )
    } else {
        Ok(Json(json!({
            "success": false,
            "recorded": false,
            "agent_id": agent_id,
            "error": format!("no agent with id {agent_id:?}; nothing was recorded"),
        }))
        .into_response())
    }
}

/// The most agents one listing returns.
const MAX_AGENTS_PER_READ: usize = 1000;

pub(crate) async fn list_agents(State(state): State<AppState>, params: Params) -> Answer {
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
    let agents = state.service.agents(filter, limit).await?;
    Ok(Json(json!({ "agents": agents })).into_response())
}

pub(crate) async fn get_agent(State(state): State<AppState>, Path(id): Path<String>) -> Answer {
    let agent = state
        .service
        .agent(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no agent with id {id:?}")))?;
    Ok(Json(agent).into_response())
}
