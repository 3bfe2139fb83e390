//! `/api/team`: each person's Claude Code use per day or week (`domain::team`), as JSON or
//! CSV. It names people, so, as usage by person does, it is shown only behind a read token:
//! a server whose reads are open answers 403.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::domain::team::TeamBucket;

use super::AppState;
use super::error::ApiError;
use super::params::Params;

/// `GET /api/team?bucket=day|week&hours=N` (or `start=&end=`; by default the last 7 days),
/// widened to whole buckets; `format=csv` for one line per person and bucket.
pub(crate) async fn team(
    State(state): State<AppState>,
    params: Params,
) -> Result<Response, ApiError> {
    super::usage::identities_allowed(&state)?;
    let bucket = match params.text("bucket")? {
        None => TeamBucket::Day,
        Some(text) => TeamBucket::parse(&text)
            .ok_or_else(|| ApiError::field("bucket", "bucket must be day or week"))?,
    };
    let csv = match params.text("format")?.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::field("format", "format must be json or csv")),
    };
    let window = params.window(state.service.now_ms())?;
    let view = state.service.team(window, bucket).await?;
    if csv {
        let name = format!(
            "attachment; filename=\"hookwatch-team-{}.csv\"",
            bucket.as_str()
        );
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (header::CONTENT_DISPOSITION, name),
            ],
            view.to_csv(),
        )
            .into_response());
    }
    Ok(Json(view).into_response())
}
