//! Claude Code's own telemetry over OTLP/HTTP, on the main port: `POST /v1/logs`,
//! `/v1/metrics` and `/v1/traces`, so `OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4000`
//! works as it is.
//!
//! The same rules as hook events: the ingest token, the body limits, and a 2xx only once the
//! records are committed. Answers follow the OTLP specification: 200 with an
//! `Export*ServiceResponse` in the request's encoding (`partial_success` naming what was not
//! kept), 400 for a body that is not OTLP, 413 past the size limit, 415 for another encoding,
//! 503 with `Retry-After` only when hookwatch cannot take more now. Decoding and typing are
//! `crate::otlp`'s.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};

use super::AppState;
use super::error::ApiError;
use crate::otlp::claude;
use crate::otlp::wire::{self, Encoding, WireError};
use crate::store::telemetry::TelemetryBatch;

pub async fn logs(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (request, encoding) = decode::<ExportLogsServiceRequest>(&state, &headers, body?)?;
    let batch = TelemetryBatch {
        events: claude::event_rows(&request),
        points: Vec::new(),
    };
    state.service.record_telemetry(batch).await?;
    Ok(answer(&ExportLogsServiceResponse::default(), encoding))
}

pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (request, encoding) = decode::<ExportMetricsServiceRequest>(&state, &headers, body?)?;
    let points = claude::point_rows(&request);
    let left_out = claude::data_point_count(&request) - points.len();
    let batch = TelemetryBatch {
        events: Vec::new(),
        points,
    };
    state.service.record_telemetry(batch).await?;
    let response = ExportMetricsServiceResponse {
        partial_success: (left_out > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: left_out as i64,
            error_message: format!(
                "{left_out} data points are not Claude Code's counters (claude_code.*, sums): \
                 hookwatch keeps only those"
            ),
        }),
    };
    Ok(answer(&response, encoding))
}

/// Spans are read and checked but not kept yet: every span is reported refused, so the
/// exporter knows (and, as the specification says of partial success, does not retry).
pub async fn traces(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (request, encoding) = decode::<ExportTraceServiceRequest>(&state, &headers, body?)?;
    let spans: usize = request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    let response = ExportTraceServiceResponse {
        partial_success: (spans > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: spans as i64,
            error_message: "hookwatch does not keep spans yet; send logs and metrics".into(),
        }),
    };
    Ok(answer(&response, encoding))
}

fn decode<T>(state: &AppState, headers: &HeaderMap, body: Bytes) -> Result<(T, Encoding), ApiError>
where
    T: prost::Message + Default + serde::de::DeserializeOwned,
{
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let content_type = text(header::CONTENT_TYPE).unwrap_or("");
    let max_bytes = state.limits.max_batch_bytes;
    wire::decode_request(
        content_type,
        text(header::CONTENT_ENCODING),
        &body,
        max_bytes,
    )
    .map_err(|e| match e {
        WireError::UnsupportedMediaType(_) | WireError::UnsupportedEncoding(_) => {
            ApiError::UnsupportedMediaType(e.to_string())
        }
        WireError::TooLarge { .. } => ApiError::too_large(format!(
            "{e} (--max-batch-bytes; the OTLP exporter must not retry it)"
        )),
        WireError::CorruptGzip(_) | WireError::Malformed { .. } => {
            ApiError::bad_request(e.to_string())
        }
    })
}

fn answer<T>(response: &T, encoding: Encoding) -> Response
where
    T: prost::Message + serde::Serialize + Default + PartialEq,
{
    (
        [(header::CONTENT_TYPE, encoding.content_type())],
        wire::encode_response(response, encoding),
    )
        .into_response()
}
