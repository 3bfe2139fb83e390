//! A global budget for request body bytes in flight.
//!
//! Each body is capped (`--max-event-bytes`, `--max-batch-bytes`), but many at once are not:
//! 40 concurrent 15 MB batches took the server to 879 MB. A write's body is charged against one
//! budget for as long as it is being read and handled, at its `Content-Length` (or, for a
//! chunked body, at its route's cap); when the budget cannot cover it, the request is answered
//! 503 with `Retry-After` at once, before a byte of it is read. Hook clients treat that as any
//! 503: `hookwatch send` spools the event and replays it later. A gzipped OTLP body is charged
//! its length here, and what it inflates to as it inflates (`api::otlp::export`, a step at a
//! time, each charged before it is made), so inflating is inside the budget too: charging it
//! up front at what it may inflate to (`--max-batch-bytes`) let four small exports take it all.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{Method, header};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::AppState;
use super::error::ApiError;

/// Body bytes that may be in flight at once.
#[derive(Debug)]
pub(crate) struct BodyBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

impl BodyBudget {
    pub(crate) fn new(total: usize) -> Self {
        Self {
            bytes: Arc::new(Semaphore::new(total.min(Semaphore::MAX_PERMITS))),
            total,
        }
    }

    /// Bytes charged now.
    pub(crate) fn in_flight(&self) -> usize {
        self.total - self.bytes.available_permits()
    }

    /// The budget.
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// Charges `bytes` (at least one) until the permit is dropped; `None` when the budget
    /// cannot cover them now.
    pub(crate) fn try_charge(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let permits = u32::try_from(bytes.max(1)).unwrap_or(u32::MAX);
        Arc::clone(&self.bytes).try_acquire_many_owned(permits).ok()
    }
}

/// Charges a write's body to the budget: the permit is held while the request is handled
/// (`None` for reads, which send no body); 503 when the budget cannot cover it.
pub(crate) fn charge_body(
    state: &AppState,
    request: &Request,
) -> Result<Option<OwnedSemaphorePermit>, ApiError> {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return Ok(None);
    }
    let otlp = matches!(
        request.uri().path(),
        "/v1/logs" | "/v1/metrics" | "/v1/traces"
    );
    let route_cap = match request.uri().path() {
        "/events/batch" => state.limits.max_batch_bytes,
        "/events" => state.limits.max_envelope_bytes(),
        _ if otlp => state.limits.max_batch_bytes,
        _ => state.limits.max_event_bytes,
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    // A body past its route's cap is refused (413) without being read: nothing to charge. A
    // compressed OTLP body is charged what it inflates to as it inflates.
    let charge = declared.unwrap_or(route_cap).min(route_cap);
    let Some(held) = state.body_budget.try_charge(charge) else {
        return Err(budget_full(state));
    };
    Ok(Some(held))
}

/// The budget cannot cover a body now: 503 with `Retry-After`.
pub(crate) fn budget_full(state: &AppState) -> ApiError {
    ApiError::Unavailable {
        message: format!(
            "{} bytes of request bodies are being handled already (the limit is {}): retry \
             after the Retry-After delay",
            state.body_budget.in_flight(),
            state.body_budget.total
        ),
        reason: "bodies_in_flight",
    }
}
