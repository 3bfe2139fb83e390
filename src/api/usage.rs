//! `/api/usage`: what the coding agents' API use cost, by model, session, person, agent type,
//! app or coding agent, and `/api/usage/timeline`: its requests, errors, latency and cost over
//! time.
//!
//! People (`user.email`, `user.account_uuid`, `user.id`) and organizations are shown, grouped
//! by or filtered on only behind a read token: a server whose reads are open (no
//! `--read-token`) answers 403 for them, so an address in a team's telemetry never reaches
//! someone who was not given a token.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::domain::time::MINUTE_MS;
use crate::domain::usage::{
    MAX_USAGE_ROWS, UsageCursor, UsageFilter, UsageGroup, UsagePage, UsageRow,
};
use crate::service::TimelineRequest;

use super::AppState;
use super::error::ApiError;
use super::model::UsageAnswer;
use super::params::Params;
use crate::domain::coding_agent::CodingAgent;

type Answer = Result<Response, ApiError>;

/// `GET /api/usage?hours=N|start=&end=&group_by=model|session|user|agent_type|app|agent`,
/// with optional filters `model`, `session_id`, `app`, `agent_type`, `agent` (`claude-code`,
/// `codex`, `gemini-cli`, or `claude`, `gemini`), `user`, `organization_id`,
/// and a page: `limit` rows (1000 at most, the default), most expensive first, from `cursor`
/// (the `next_cursor` of the page before).
pub(crate) async fn usage(State(state): State<AppState>, params: Params) -> Answer {
    let group = match params.text("group_by")? {
        None => UsageGroup::Model,
        Some(text) => UsageGroup::parse(&text).ok_or_else(|| {
            ApiError::field(
                "group_by",
                "group_by must be one of model, session, user, agent_type, app, agent",
            )
        })?,
    };
    let filter = filter(&params)?;
    if group.is_identity() || filter.names_identity() {
        identities_allowed(&state)?;
    }
    let window = params.window(state.service.now_ms())?;
    let page = UsagePage {
        limit: params.limit("limit", MAX_USAGE_ROWS, MAX_USAGE_ROWS)?,
        after: params
            .text("cursor")?
            .map(|text| {
                UsageCursor::decode(&text).ok_or_else(|| {
                    ApiError::field("cursor", "cursor is not a next_cursor this server issued")
                })
            })
            .transpose()?,
    };
    let limit = page.limit;
    let (range, mut rows) = state
        .service
        .usage(window, group, filter.clone(), page)
        .await?;
    UsageRow::mark_priced_agents(&mut rows, group, &filter);
    let next_cursor = (rows.len() == limit)
        .then(|| rows.last().map(|row| UsageCursor::after(row).encode()))
        .flatten();
    let mut budgets = state
        .alerts
        .budgets()
        .await
        .map_err(crate::service::ServiceError::from)?;
    // A budget per person names the person: only behind a read token.
    if state.tokens.read.is_empty() {
        budgets.retain(|b| b.per != "user");
    }
    Ok(Json(UsageAnswer {
        group_by: group.as_str(),
        range: range.into(),
        rows,
        next_cursor,
        budgets,
    })
    .into_response())
}

/// `GET /api/usage/timeline?hours=N|start=&end=&bucket=5m`, with the same filters.
pub(crate) async fn timeline(State(state): State<AppState>, params: Params) -> Answer {
    let filter = filter(&params)?;
    if filter.names_identity() {
        identities_allowed(&state)?;
    }
    let request = TimelineRequest {
        window: params.window(state.service.now_ms())?,
        bucket_ms: params.duration("bucket")?,
    };
    if let Some(bucket) = request.bucket_ms
        && bucket % MINUTE_MS != 0
    {
        return Err(ApiError::field(
            "bucket",
            "bucket must be a whole number of minutes",
        ));
    }
    Ok(Json(state.service.usage_timeline(request, filter).await?).into_response())
}

fn filter(params: &Params) -> Result<UsageFilter, ApiError> {
    Ok(UsageFilter {
        model: params.text("model")?,
        session_id: params.text("session_id")?,
        app: params.text("app")?,
        agent_type: params.text("agent_type")?,
        agent: params
            .text("agent")?
            .map(|name| {
                CodingAgent::parse(&name)
                    .map(|agent| agent.name().to_owned())
                    .ok_or_else(|| {
                        ApiError::field(
                            "agent",
                            "agent must be one of claude-code, codex, gemini-cli",
                        )
                    })
            })
            .transpose()?,
        user: params.text("user")?,
        organization_id: params.text("organization_id")?,
    })
}

/// People are shown only to requests that passed a read token (the auth middleware checked
/// it): a server with open reads has none to check.
pub(crate) fn identities_allowed(state: &AppState) -> Result<(), ApiError> {
    if state.tokens.read.is_empty() {
        return Err(ApiError::Forbidden(
            "use by person or organization (user.email, user.account_uuid, organization.id) \
             is shown only behind a read token: start the server with --read-token"
                .into(),
        ));
    }
    Ok(())
}
