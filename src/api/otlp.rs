//! Claude Code's own telemetry over OTLP/HTTP, on the main port: `POST /v1/logs`,
//! `/v1/metrics` and `/v1/traces`, so `OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4000`
//! works as it is.
//!
//! The same rules as hook events: the ingest token, the body limits, and a 2xx only once the
//! records are committed. Answers follow the OTLP specification: 200 with an
//! `Export*ServiceResponse` in the request's encoding (`partial_success` naming what was not
//! kept, and each record rejected by the record rules), 400 for a body that is not OTLP, 413
//! past the size limit or a count bound (found before decoding), 415 for another encoding,
//! 503 with `Retry-After` only when hookwatch cannot take more now. [`take`] is the one path
//! both doors (this one and `otlp_grpc`) hand an export to. Decoding and typing are
//! `crate::otlp`'s.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use super::AppState;
use super::error::ApiError;
use crate::domain::telemetry::{TelemetryBatch, TelemetryOutcome};
use crate::otlp::claude;
use crate::otlp::wire::{self, Encoding, WireError};

/// Why a metrics export's other points were refused.
const LEFT_OUT_POINTS: &str =
    "data points that are not Claude Code's counters (claude_code.*, sums) are not kept";

/// Why spans are refused (for now).
const LEFT_OUT_SPANS: &str =
    "spans left out: hookwatch keeps Claude Code's own (named claude_code.*)";

pub(crate) use crate::otlp::Signal;

/// OTLP records taken and refused, by signal, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct OtlpStats {
    counts: [SignalCounts; 3],
    /// When a record last arrived (ms; 0: never), for health and `doctor`.
    last_record_ms: AtomicI64,
}

#[derive(Debug, Default)]
pub(crate) struct SignalCounts {
    /// Records committed.
    pub stored: AtomicU64,
    /// Records already stored (an exporter's retry).
    pub duplicates: AtomicU64,
    /// Records in accepted requests that hookwatch does not keep (`partial_success`).
    pub refused: AtomicU64,
    /// Requests refused whole, by [`Refusal`].
    refused_requests: [AtomicU64; Refusal::ALL.len()],
}

impl SignalCounts {
    /// Requests refused whole for `why`.
    pub(crate) fn refused_requests(&self, why: Refusal) -> u64 {
        self.refused_requests[why as usize].load(Relaxed)
    }
}

/// Why an export was refused whole, as `/metrics` labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Past a count bound (`--otlp-max-*`), found before decoding.
    OverLimit,
    /// Past a byte limit.
    TooLarge,
    /// Not OTLP, or in an encoding hookwatch does not take.
    Malformed,
    /// No ingest token, or a wrong one.
    Unauthenticated,
    /// hookwatch could not take it now (the exporter retries).
    Unavailable,
    /// Its message did not arrive within the request timeout.
    Timeout,
}

impl Refusal {
    pub(crate) const ALL: [Self; 6] = [
        Self::OverLimit,
        Self::TooLarge,
        Self::Malformed,
        Self::Unauthenticated,
        Self::Unavailable,
        Self::Timeout,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::OverLimit => "over_limit",
            Self::TooLarge => "too_large",
            Self::Malformed => "malformed",
            Self::Unauthenticated => "unauthenticated",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
        }
    }

    /// The reason an HTTP refusal stands for.
    fn of(error: &ApiError) -> Self {
        match error {
            ApiError::TooLarge { field, .. } if field.as_deref() == Some(OVER_LIMIT_FIELD) => {
                Self::OverLimit
            }
            ApiError::TooLarge { .. } => Self::TooLarge,
            ApiError::Unauthorized(_) | ApiError::Forbidden(_) => Self::Unauthenticated,
            ApiError::Unavailable { .. } | ApiError::Internal(_) => Self::Unavailable,
            ApiError::Timeout(_) => Self::Timeout,
            _ => Self::Malformed,
        }
    }
}

/// The `field` of a 413 for an export past a count bound: which bound is in the message.
const OVER_LIMIT_FIELD: &str = "export";

impl OtlpStats {
    pub(crate) fn of(&self, signal: Signal) -> &SignalCounts {
        &self.counts[signal as usize]
    }

    /// Counts what a committed export came to at `now_ms`; `left_out` records were refused in
    /// it.
    pub(crate) fn taken(
        &self,
        signal: Signal,
        outcome: TelemetryOutcome,
        left_out: usize,
        now_ms: i64,
    ) {
        if outcome.stored + outcome.duplicates > 0 {
            self.last_record_ms.fetch_max(now_ms, Relaxed);
        }
        let counts = self.of(signal);
        counts.stored.fetch_add(outcome.stored, Relaxed);
        counts.duplicates.fetch_add(outcome.duplicates, Relaxed);
        counts.refused.fetch_add(left_out as u64, Relaxed);
    }

    /// When a record last arrived, if one has.
    pub(crate) fn last_record_ms(&self) -> Option<i64> {
        Some(self.last_record_ms.load(Relaxed)).filter(|ms| *ms > 0)
    }

    /// Records stored, all signals.
    pub(crate) fn stored(&self) -> u64 {
        self.counts.iter().map(|c| c.stored.load(Relaxed)).sum()
    }

    /// Counts an export refused whole for `why`.
    pub(crate) fn refused_request(&self, signal: Signal, why: Refusal) {
        self.of(signal).refused_requests[why as usize].fetch_add(1, Relaxed);
    }
}

/// Counts a request refused whole, then passes the error on.
fn refused(state: &AppState, signal: Signal) -> impl FnOnce(ApiError) -> ApiError + '_ {
    move |e| {
        state.otlp_stats.refused_request(signal, Refusal::of(&e));
        e
    }
}

/// Commits `batch` and counts what it came to (`left_out` records were refused in the
/// export); a store that cannot take it now refuses the export whole.
async fn commit(
    state: &AppState,
    signal: Signal,
    batch: TelemetryBatch,
    left_out: usize,
) -> Result<(), ApiError> {
    let outcome = state.service.record_telemetry(batch).await;
    let outcome = outcome.map_err(|e| refused(state, signal)(e.into()))?;
    let now_ms = state.service.now_ms();
    state.otlp_stats.taken(signal, outcome, left_out, now_ms);
    Ok(())
}

/// What `partial_success` says of an export with `left_out` items not Claude Code's (`why`
/// they were left out) and the items `taken` rejected (`noun`: "spans"); `None` when every
/// item was kept.
fn partial_message<R>(
    left_out: usize,
    why: &str,
    taken: &claude::Taken<R>,
    noun: &str,
) -> Option<(i64, String)> {
    let rejected = taken.message(noun);
    let left_out_message = (left_out > 0).then(|| format!("{left_out} {why}"));
    let message = match (rejected, left_out_message) {
        (None, None) => return None,
        (Some(one), None) | (None, Some(one)) => one,
        (Some(rejected), Some(left_out)) => format!("{rejected}; {left_out}"),
    };
    Some(((left_out + taken.rejected) as i64, message))
}

/// The answer to a metrics export with `left_out` points not Claude Code's and the points
/// `taken` rejected.
fn metrics_response<R>(left_out: usize, taken: &claude::Taken<R>) -> ExportMetricsServiceResponse {
    ExportMetricsServiceResponse {
        partial_success: partial_message(left_out, LEFT_OUT_POINTS, taken, "data points").map(
            |(rejected_data_points, error_message)| ExportMetricsPartialSuccess {
                rejected_data_points,
                error_message,
            },
        ),
    }
}

/// The answer to a trace export with `left_out` spans not Claude Code's and the spans `taken`
/// rejected.
fn traces_response<R>(left_out: usize, taken: &claude::Taken<R>) -> ExportTraceServiceResponse {
    ExportTraceServiceResponse {
        partial_success: partial_message(left_out, LEFT_OUT_SPANS, taken, "spans").map(
            |(rejected_spans, error_message)| ExportTracePartialSuccess {
                rejected_spans,
                error_message,
            },
        ),
    }
}

/// One export, whichever door it came through (`bytes` already decompressed, no larger than
/// the byte limit): counted, decoded, committed, counted again; the answer is encoded as the
/// request was. Every refusal is counted here.
pub(crate) async fn take(
    state: &AppState,
    signal: Signal,
    encoding: Encoding,
    bytes: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let limits = state.limits.otlp;
    let decoded = |e| refused(state, signal)(api_error(e));
    let rules = claude::RecordRules {
        max_id_len: state.limits.max_id_len,
        max_clock_skew_ms: state.limits.max_clock_skew_ms,
        now_ms: state.service.now_ms(),
        prices: &state.prices,
    };
    match signal {
        Signal::Logs => {
            let request: ExportLogsServiceRequest =
                wire::decode_counted(signal, encoding, bytes, limits).map_err(decoded)?;
            let taken = claude::event_rows(&request, &rules);
            drop(request);
            let response = ExportLogsServiceResponse {
                partial_success: taken.message("log records").map(|error_message| {
                    ExportLogsPartialSuccess {
                        rejected_log_records: taken.rejected as i64,
                        error_message,
                    }
                }),
            };
            let batch = TelemetryBatch {
                events: taken.rows,
                points: Vec::new(),
            };
            commit(state, signal, batch, taken.rejected).await?;
            Ok(wire::encode_response(&response, encoding))
        }
        Signal::Metrics => {
            let request: ExportMetricsServiceRequest =
                wire::decode_counted(signal, encoding, bytes, limits).map_err(decoded)?;
            let (taken, read) = claude::point_rows(&request, &rules);
            // Gemini's token points are read in groups into other rows (and their cost), so
            // what is left out is counted in data points, not rows.
            let left_out = claude::data_point_count(&request).saturating_sub(read);
            drop(request);
            let response = metrics_response(left_out, &taken);
            let batch = TelemetryBatch {
                events: Vec::new(),
                points: taken.rows,
            };
            commit(state, signal, batch, left_out + taken.rejected).await?;
            Ok(wire::encode_response(&response, encoding))
        }
        // Claude Code's own spans are kept as events of kind `span.<type>`; anyone else's
        // are reported left out (as the specification says of partial success, the exporter
        // does not retry them).
        Signal::Traces => {
            let request: ExportTraceServiceRequest =
                wire::decode_counted(signal, encoding, bytes, limits).map_err(decoded)?;
            let (taken, left_out) = claude::span_rows(&request, &rules);
            drop(request);
            let response = traces_response(left_out, &taken);
            let batch = TelemetryBatch {
                events: taken.rows,
                points: Vec::new(),
            };
            commit(state, signal, batch, left_out + taken.rejected).await?;
            Ok(wire::encode_response(&response, encoding))
        }
    }
}

pub(crate) async fn logs(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    export(&state, Signal::Logs, &headers, body).await
}

pub(crate) async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    export(&state, Signal::Metrics, &headers, body).await
}

pub(crate) async fn traces(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    export(&state, Signal::Traces, &headers, body).await
}

/// An OTLP/HTTP export: its body unwrapped (refusals counted), then [`take`]n.
async fn export(
    state: &AppState,
    signal: Signal,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| refused(state, signal)(e.into()))?;
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let content_type = text(header::CONTENT_TYPE).unwrap_or("");
    // A gzip body was charged its length (`body_budget::charge_body`); what it inflates to is
    // charged as it grows, and held until the export is answered.
    let mut inflating: Option<tokio::sync::OwnedSemaphorePermit> = None;
    let unwrapped = wire::unwrap_body_within(
        content_type,
        text(header::CONTENT_ENCODING),
        &body,
        state.limits.max_batch_bytes,
        |more| match state.body_budget.try_charge(more) {
            Some(permit) => {
                match inflating.as_mut() {
                    Some(held) => held.merge(permit),
                    None => inflating = Some(permit),
                }
                true
            }
            None => false,
        },
    );
    let (bytes, encoding) = unwrapped.map_err(|e| {
        refused(state, signal)(match e {
            wire::Inflate::Refused(e) => api_error(e),
            wire::Inflate::NoRoom => super::body_budget::budget_full(state),
        })
    })?;
    let answer = take(state, signal, encoding, &bytes).await?;
    drop(inflating);
    Ok(([(header::CONTENT_TYPE, encoding.content_type())], answer).into_response())
}

/// What an unreadable export is answered over HTTP.
fn api_error(e: WireError) -> ApiError {
    match e {
        WireError::UnsupportedMediaType(_) | WireError::UnsupportedEncoding(_) => {
            ApiError::UnsupportedMediaType(e.to_string())
        }
        WireError::TooLarge { .. } => ApiError::too_large(format!(
            "{e} (--max-batch-bytes; the OTLP exporter must not retry it)"
        )),
        WireError::OverLimit(_) => ApiError::TooLarge {
            message: format!("{e}; the OTLP exporter must not retry it"),
            field: Some(OVER_LIMIT_FIELD.into()),
        },
        WireError::CorruptGzip(_) | WireError::Malformed { .. } => {
            ApiError::bad_request(e.to_string())
        }
    }
}
