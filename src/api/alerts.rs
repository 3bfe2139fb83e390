//! `/api/alerts`: the alert episodes firing now and the history, and
//! `POST /api/alerts/reload`, which reads the rule file again (a bad file gets a 400 naming
//! its line, and the rules in force stay).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::params::Params;
use crate::alerts::delivery::Notice;
use crate::store::MAX_ALERT_READ;

/// `GET /api/alerts?limit=N`: `{firing, history, rules}`.
pub(crate) async fn list(
    State(state): State<AppState>,
    params: Params,
) -> Result<Response, ApiError> {
    let limit = params.limit("limit", 100, MAX_ALERT_READ)?;
    let (firing, history) = state
        .alerts
        .episodes(limit)
        .await
        .map_err(crate::service::ServiceError::from)?;
    let shown = |records: &[crate::store::alerts::AlertRecord]| -> Vec<serde_json::Value> {
        records
            .iter()
            .map(|record| {
                let mut value = state.alerts.shown(Notice::of(record)).to_json();
                value["id"] = json!(record.id);
                value["delivered"] = json!(if record.state == "resolved" {
                    record.resolved_delivered
                } else {
                    record.firing_delivered
                });
                value["delivery_error"] = json!(record.delivery_error);
                value
            })
            .collect()
    };
    let rules = state.alerts.rules();
    Ok(Json(json!({
        "firing": shown(&firing),
        "history": shown(&history),
        "rules": rules.rules.iter().map(|r| json!({
            "name": r.name,
            "condition": r.condition.as_str(),
            "threshold": r.threshold,
            "window": r.window_text,
            "per": r.per.as_str(),
            "notify": r.notify,
        })).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// `POST /api/alerts/reload`.
pub(crate) async fn reload(State(state): State<AppState>) -> Result<Response, ApiError> {
    match state.alerts.reload() {
        Ok(rules) => Ok(Json(json!({ "reloaded": true, "rules": rules })).into_response()),
        Err(e) => Err(ApiError::bad_request(format!(
            "{e}; the rules in force stay"
        ))),
    }
}
