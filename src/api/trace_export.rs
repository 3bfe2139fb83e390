//! A session's trace as OTLP/JSON (`GET /api/sessions/{id}/trace?format=otlp`), for Jaeger,
//! Tempo or Phoenix: one `ExportTraceServiceRequest` built with `opentelemetry-proto`'s types.
//!
//! Ids are derived from the session, so exporting a session twice gives the same ids: the
//! trace id is the first 16 bytes of SHA-256 of the session id, a span's id the first 8 of
//! SHA-256 of the session id and the span's own id. An open span ends at `now_ms` and says so
//! (`hookwatch.open`).
//!
//! Spans carry the OpenTelemetry GenAI semantic conventions as well ([`gen_ai_attributes`]),
//! so Phoenix, Langfuse or SigNoz show each API request's model, tokens and cost, each tool
//! call's tool and each subagent's type.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span as OtlpSpan, Status, span::SpanKind, status::StatusCode,
};
use sha2::{Digest, Sha256};

use crate::domain::trace::{Span, SpanKind as HookwatchSpanKind, SpanStatus};

fn digest(parts: &[&str]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hasher.finalize().into()
}

fn attribute(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn json_value(value: &serde_json::Value) -> any_value::Value {
    match value {
        serde_json::Value::Bool(b) => any_value::Value::BoolValue(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64().unwrap_or_default()),
        },
        serde_json::Value::String(s) => any_value::Value::StringValue(s.clone()),
        other => any_value::Value::StringValue(other.to_string()),
    }
}

const MS: u64 = 1_000_000;

/// The GenAI semantic conventions' attributes of a span: `gen_ai.conversation.id` on every
/// span; on an API request its operation (`chat`), provider (`anthropic`, and the older
/// `gen_ai.system`), model, tokens (`input_tokens` counts every input token, cached ones
/// included, as the conventions ask, with the cached ones also apart) and cost
/// (`gen_ai.usage.cost`, in USD: no convention names cost yet, and this is the name
/// instrumentations that report it use); on a tool call `execute_tool` and the tool's name
/// and call id; on a subagent `invoke_agent` and its type.
fn gen_ai_attributes(span: &Span, session_id: &str) -> Vec<KeyValue> {
    let text = |s: &str| any_value::Value::StringValue(s.to_owned());
    let mut attributes = vec![attribute("gen_ai.conversation.id", text(session_id))];
    match span.kind {
        HookwatchSpanKind::ApiRequest => {
            attributes.push(attribute("gen_ai.operation.name", text("chat")));
            attributes.push(attribute("gen_ai.provider.name", text("anthropic")));
            attributes.push(attribute("gen_ai.system", text("anthropic")));
            let model = span
                .attributes
                .iter()
                .find(|(key, _)| key == "model")
                .and_then(|(_, value)| value.as_str());
            if let Some(model) = model {
                attributes.push(attribute("gen_ai.request.model", text(model)));
                attributes.push(attribute("gen_ai.response.model", text(model)));
            }
            if let Some(usage) = &span.usage {
                let [input, output, cache_read, cache_creation] = usage.tokens;
                let all_input = input
                    .saturating_add(cache_read)
                    .saturating_add(cache_creation);
                for (key, value) in [
                    ("gen_ai.usage.input_tokens", all_input),
                    ("gen_ai.usage.output_tokens", output),
                    ("gen_ai.usage.cache_read.input_tokens", cache_read),
                    ("gen_ai.usage.cache_creation.input_tokens", cache_creation),
                ] {
                    attributes.push(attribute(key, any_value::Value::IntValue(value)));
                }
                attributes.push(attribute(
                    "gen_ai.usage.cost",
                    any_value::Value::DoubleValue(usage.cost_nanos as f64 / 1e9),
                ));
            }
        }
        HookwatchSpanKind::Tool => {
            attributes.push(attribute("gen_ai.operation.name", text("execute_tool")));
            attributes.push(attribute("gen_ai.tool.name", text(&span.name)));
            if let Some(id) = &span.tool_use_id {
                attributes.push(attribute("gen_ai.tool.call.id", text(id)));
            }
        }
        HookwatchSpanKind::Agent => {
            attributes.push(attribute("gen_ai.operation.name", text("invoke_agent")));
            attributes.push(attribute("gen_ai.agent.name", text(&span.name)));
            if let Some(id) = &span.agent_id {
                attributes.push(attribute("gen_ai.agent.id", text(id)));
            }
        }
        HookwatchSpanKind::Session | HookwatchSpanKind::Prompt | HookwatchSpanKind::Event => {}
    }
    attributes
}

/// The OTLP request holding `spans`, the trace of session `session_id`.
pub(crate) fn export(session_id: &str, spans: &[Span], now_ms: i64) -> ExportTraceServiceRequest {
    let trace_id = digest(&[session_id])[..16].to_vec();
    let span_id = |id: &str| digest(&[session_id, id])[..8].to_vec();
    let otlp_spans = spans
        .iter()
        .map(|span| {
            let mut attributes = vec![
                attribute(
                    "hookwatch.kind",
                    any_value::Value::StringValue(span.kind.as_str().into()),
                ),
                attribute(
                    "hookwatch.span_id",
                    any_value::Value::StringValue(span.span_id.clone()),
                ),
                attribute(
                    "session.id",
                    any_value::Value::StringValue(session_id.to_owned()),
                ),
            ];
            if let Some(agent) = &span.agent_id {
                attributes.push(attribute(
                    "agent_id",
                    any_value::Value::StringValue(agent.clone()),
                ));
            }
            if let Some(id) = &span.tool_use_id {
                attributes.push(attribute(
                    "tool_use_id",
                    any_value::Value::StringValue(id.clone()),
                ));
            }
            if let Some(usage) = &span.usage {
                attributes.push(attribute(
                    "cost_usd",
                    any_value::Value::DoubleValue(usage.cost_nanos as f64 / 1e9),
                ));
                attributes.push(attribute(
                    "tokens",
                    any_value::Value::IntValue(usage.total_tokens()),
                ));
            }
            if span.end_ms.is_none() {
                attributes.push(attribute(
                    "hookwatch.open",
                    any_value::Value::BoolValue(true),
                ));
            }
            attributes.extend(
                span.attributes
                    .iter()
                    .map(|(key, value)| attribute(key, json_value(value))),
            );
            attributes.extend(gen_ai_attributes(span, session_id));
            let start = span.start_ms.max(0) as u64 * MS;
            let end = span.end_ms.unwrap_or(now_ms).max(span.start_ms).max(0) as u64 * MS;
            let status = match span.status {
                SpanStatus::Error | SpanStatus::TimedOut => Status {
                    code: StatusCode::Error as i32,
                    message: span.error.clone().unwrap_or_default(),
                },
                SpanStatus::Ok => Status {
                    code: StatusCode::Ok as i32,
                    message: String::new(),
                },
                SpanStatus::Running => Status::default(),
            };
            OtlpSpan {
                trace_id: trace_id.clone(),
                span_id: span_id(&span.span_id),
                parent_span_id: span.parent_id.as_deref().map(span_id).unwrap_or_default(),
                name: format!("{} {}", span.kind.as_str(), span.name),
                kind: SpanKind::Internal as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes,
                status: Some(status),
                ..OtlpSpan::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![attribute(
                    "service.name",
                    any_value::Value::StringValue("hookwatch".into()),
                )],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "hookwatch.session_trace".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..InstrumentationScope::default()
                }),
                spans: otlp_spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}
