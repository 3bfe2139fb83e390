//! Claude Code's OTLP records as typed values: its events (OTLP log records) and its metric
//! points, with the attributes hookwatch joins on (`session.id`, `prompt.id`, `tool_use_id`)
//! and the identity a team filters cost by; and every agent's events as rows. A log record
//! from Codex CLI or Gemini CLI (`super::agent`) is read by `super::codex` or `super::gemini`
//! into the same events (`super::events`), then kept under the same rules here.
//!
//! The exporter is loose about types (`claude-code-otel.md` §5.3): every read goes through
//! `super::attributes`, which takes a number or boolean in any type it came in. A record's
//! event name is its `event.name` attribute, else its body, else the OTLP `event_name` field,
//! without the `claude_code.` prefix (§5.1).
//!
//! A record becomes a row only within the hook intake's rules ([`RecordRules`]): tokens at
//! most [`MAX_TOKENS_PER_EVENT`], a cost finite, not negative and at most [`MAX_COST_USD`],
//! identifiers within `--max-id-len` and free of NUL, a duration within [`MAX_DURATION_MS`];
//! a record that breaks one is rejected alone (the export's `partial_success` names the first
//! such field) and the rest are kept. A timestamp further ahead than `--max-clock-skew` is
//! stored as the arrival time (the record's identity keeps the time as sent).

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, metric, number_data_point};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

use super::agent::Agent;
use super::attributes::{boolean, integer, raw_number, record_or_resource, string, text};
use super::events::{
    AgentEvent, ApiError, ApiRequest, Attribution, EventKind, Identity, Tokens, ToolDecision,
    ToolResult, UserPrompt,
};
use super::gemini;
use crate::domain::event::{MAX_TOKENS_PER_EVENT, TokenUsage};
use crate::domain::pricing::PriceTable;
use crate::domain::telemetry::{TelemetryEventRow, TelemetryPointRow};

/// The most one record may say it cost, in USD: a single API request costs cents to a few
/// dollars, so this bound only ever stops a broken or hostile exporter from moving the totals.
pub(crate) const MAX_COST_USD: f64 = 10_000.0;

/// The largest value one counter point may carry (tokens, lines, seconds, counts, in one
/// export interval). Values are kept in billionths, and 10^9 of them fit in 64 bits with
/// room to sum.
pub(crate) const MAX_POINT_VALUE: f64 = 1e9;

/// The longest duration a record may report (a week).
pub(crate) const MAX_DURATION_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// What a record is checked against, and when it arrived.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordRules<'p> {
    /// `--max-id-len`, for every identifier a record is keyed or grouped by.
    pub max_id_len: usize,
    /// `--max-clock-skew`: a time further ahead than this is stored as `now_ms`.
    pub max_clock_skew_ms: i64,
    pub now_ms: i64,
    /// What an API request costs where its agent reports no cost (Codex, Gemini): its tokens
    /// at these prices (`--prices`).
    pub prices: &'p PriceTable,
}

impl RecordRules<'_> {
    /// Rules that bound nothing but identifiers' length (128), for tests of reading records.
    #[cfg(test)]
    pub(crate) fn lenient(prices: &PriceTable) -> RecordRules<'_> {
        RecordRules {
            max_id_len: 128,
            max_clock_skew_ms: i64::MAX / 2,
            now_ms: 0,
            prices,
        }
    }

    /// The time to store for one sent as `at_ms`.
    fn clamp(&self, at_ms: i64) -> i64 {
        if at_ms > self.now_ms.saturating_add(self.max_clock_skew_ms) {
            self.now_ms
        } else {
            at_ms
        }
    }

    fn identifier(&self, field: &str, value: Option<&str>) -> Result<(), String> {
        match value {
            Some(v) if v.len() > self.max_id_len => Err(format!(
                "{field} is {} bytes; the limit is {} (--max-id-len)",
                v.len(),
                self.max_id_len
            )),
            Some(v) if v.contains('\0') => Err(format!("{field} holds a NUL character")),
            _ => Ok(()),
        }
    }
}

/// The rows an export's records became, and the records rejected.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Taken<R> {
    pub rows: Vec<R>,
    pub rejected: usize,
    /// Why the first rejected record was, naming its field.
    pub first_rejection: Option<String>,
}

impl<R> Taken<R> {
    fn from_outcomes(outcomes: impl Iterator<Item = Result<R, String>>) -> Self {
        let mut taken = Self {
            rows: Vec::new(),
            rejected: 0,
            first_rejection: None,
        };
        for outcome in outcomes {
            match outcome {
                Ok(row) => taken.rows.push(row),
                Err(why) => {
                    taken.rejected += 1;
                    taken.first_rejection.get_or_insert(why);
                }
            }
        }
        taken
    }

    /// What `partial_success` says of the rejected records (`noun`: "log records").
    pub(crate) fn message(&self, noun: &str) -> Option<String> {
        let why = self.first_rejection.as_deref()?;
        Some(format!(
            "{} {noun} rejected (the rest were kept); the first: {why}",
            self.rejected
        ))
    }
}

/// Every log record of a request, typed. Identity keys missing on a record are taken from its
/// resource.
pub(crate) fn events(request: &ExportLogsServiceRequest) -> Vec<AgentEvent> {
    let mut events = Vec::new();
    for resource_logs in &request.resource_logs {
        let resource = resource_logs
            .resource
            .as_ref()
            .map_or(&[][..], |r| &r.attributes[..]);
        for scope_logs in &resource_logs.scope_logs {
            for record in &scope_logs.log_records {
                events.push(event(record, resource));
            }
        }
    }
    events
}

fn event(record: &LogRecord, resource: &[KeyValue]) -> AgentEvent {
    let name = raw_event_name(record);
    let nanos = if record.time_unix_nano != 0 {
        record.time_unix_nano
    } else {
        record.observed_time_unix_nano
    };
    let at_ms = (nanos / 1_000_000) as i64;
    let attributes = &record.attributes[..];
    let agent = Agent::of(name.as_deref(), resource);
    let read = match agent {
        Agent::ClaudeCode => return claude_event(record, resource, name, at_ms),
        Agent::Codex => super::codex::read(name.as_deref(), attributes, resource),
        Agent::Gemini => gemini::read(name.as_deref(), attributes, resource),
    };
    AgentEvent {
        agent,
        identity: read.identity,
        prompt_id: read.prompt_id,
        at_ms,
        sequence: None,
        kind: read.kind,
        digest: Some(digest(attributes)),
    }
}

/// A digest of a record's attributes as sent (FNV-1a over each key and value as text): the
/// same record sent again has the same one, whichever build receives it.
fn digest(attributes: &[KeyValue]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut add = |bytes: &[u8]| {
        for &byte in bytes.iter().chain(&[0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for kv in attributes {
        add(kv.key.as_bytes());
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Value::StringValue(s)) => add(s.as_bytes()),
            value => add(value.and_then(text).unwrap_or_default().as_bytes()),
        }
    }
    hash
}

/// A Claude Code record; `name` is its event name as sent.
fn claude_event(
    record: &LogRecord,
    resource: &[KeyValue],
    name: Option<String>,
    at_ms: i64,
) -> AgentEvent {
    let attributes = &record.attributes[..];
    let text = |key: &str| string(attributes, key);
    let name = name.map(|raw| raw.strip_prefix("claude_code.").unwrap_or(&raw).to_owned());
    let attribution = || Attribution {
        agent_name: text("agent.name"),
        query_source: text("query_source"),
    };
    let kind = match name.as_deref() {
        Some("api_request") => EventKind::ApiRequest(ApiRequest {
            model: text("model"),
            // As sent, NaN and infinities too: they are rejected, not read as nothing.
            cost_usd: Some(raw_number(attributes, "cost_usd").unwrap_or(0.0)),
            tokens: Tokens {
                input: integer(attributes, "input_tokens").unwrap_or(0),
                output: integer(attributes, "output_tokens").unwrap_or(0),
                cache_read: integer(attributes, "cache_read_tokens").unwrap_or(0),
                cache_creation: integer(attributes, "cache_creation_tokens").unwrap_or(0),
            },
            duration_ms: integer(attributes, "duration_ms"),
            request_id: text("request_id"),
            attribution: attribution(),
        }),
        Some("api_error") => EventKind::ApiError(ApiError {
            model: text("model"),
            error: text("error"),
            status_code: integer(attributes, "status_code"),
            duration_ms: integer(attributes, "duration_ms"),
            attempt: integer(attributes, "attempt"),
            request_id: text("request_id"),
            attribution: attribution(),
        }),
        Some("tool_result") => EventKind::ToolResult(ToolResult {
            tool_name: text("tool_name"),
            tool_use_id: text("tool_use_id"),
            success: boolean(attributes, "success"),
            duration_ms: integer(attributes, "duration_ms"),
            error_type: text("error_type"),
            decision_source: text("decision_source"),
            decision: None,
        }),
        Some("tool_decision") => EventKind::ToolDecision(ToolDecision {
            tool_name: text("tool_name"),
            tool_use_id: text("tool_use_id"),
            decision: text("decision"),
            source: text("source"),
        }),
        Some("user_prompt") => EventKind::UserPrompt(UserPrompt {
            prompt_length: integer(attributes, "prompt_length"),
            prompt: text("prompt").filter(|p| p != "<REDACTED>"),
        }),
        Some(other) => EventKind::Other(other.to_owned()),
        None => EventKind::Other(String::new()),
    };
    AgentEvent {
        agent: Agent::ClaudeCode,
        identity: identity(attributes, resource),
        prompt_id: text("prompt.id"),
        at_ms,
        sequence: integer(attributes, "event.sequence"),
        kind,
        digest: None,
    }
}

/// `event.name`, else the body, else the OTLP field, as sent.
fn raw_event_name(record: &LogRecord) -> Option<String> {
    let body = record.body.as_ref().and_then(|b| match &b.value {
        Some(Value::StringValue(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    });
    string(&record.attributes, "event.name")
        .or(body)
        .or_else(|| (!record.event_name.is_empty()).then(|| record.event_name.clone()))
}

fn identity(attributes: &[KeyValue], resource: &[KeyValue]) -> Identity {
    let text = |key: &str| record_or_resource(attributes, resource, key);
    Identity {
        session_id: text("session.id"),
        user_id: text("user.id"),
        user_email: text("user.email"),
        account_uuid: text("user.account_uuid"),
        organization_id: text("organization.id"),
    }
}

/// What a Claude Code metric counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MetricKind {
    /// `claude_code.cost.usage`, USD.
    Cost,
    /// `claude_code.token.usage`, by `type`: `input`, `output`, `cacheRead`, `cacheCreation`.
    Tokens(String),
    /// `claude_code.lines_of_code.count`, by `type`: `added` or `removed`.
    LinesOfCode(String),
    Commits,
    PullRequests,
    Sessions,
    /// `claude_code.active_time.total`, seconds, by `type`: `user` or `cli`.
    ActiveTime(String),
    /// `claude_code.code_edit_tool.decision`, by `decision`: `accept` or `reject`.
    CodeEditDecisions(String),
}

/// One data point of a Claude Code counter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MetricPoint {
    pub kind: MetricKind,
    pub identity: Identity,
    pub model: Option<String>,
    pub value: f64,
    pub start_ns: u64,
    pub time_ns: u64,
    /// The increase over `[start, time]` (Claude Code's default) rather than a running total.
    pub delta: bool,
    /// The point's whole attribute set, sorted: what tells one series from another.
    pub series: String,
    pub attribution: Attribution,
    /// The agent that sent it where it is not Claude Code (`Agent::other_than_claude`).
    pub agent: Option<&'static str>,
    /// Tokens of an agent that reports no cost (Gemini): stored with their cost, priced at
    /// the price table as a `cost` point of its own series.
    pub priced: bool,
}

/// Every data point in a request, of any metric and type.
pub(crate) fn data_point_count(request: &ExportMetricsServiceRequest) -> usize {
    request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.len(),
            Some(metric::Data::Sum(s)) => s.data_points.len(),
            Some(metric::Data::Histogram(h)) => h.data_points.len(),
            Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(metric::Data::Summary(s)) => s.data_points.len(),
            None => 0,
        })
        .sum()
}

/// The data points of Claude Code's counters in a request, and Gemini's token counter's
/// (normalised: [`gemini::token_points`]); other metrics are left out. With them, how many of
/// the request's data points were read into them.
pub(crate) fn metric_points(request: &ExportMetricsServiceRequest) -> (Vec<MetricPoint>, usize) {
    let mut points = Vec::new();
    let mut read = 0;
    for resource_metrics in &request.resource_metrics {
        let resource = resource_metrics
            .resource
            .as_ref()
            .map_or(&[][..], |r| &r.attributes[..]);
        for scope_metrics in &resource_metrics.scope_metrics {
            for metric in &scope_metrics.metrics {
                let Some(metric::Data::Sum(sum)) = &metric.data else {
                    continue;
                };
                let delta =
                    sum.aggregation_temporality != AggregationTemporality::Cumulative as i32;
                if metric.name == gemini::TOKEN_USAGE_METRIC {
                    let (derived, gemini_read) = gemini::token_points(&sum.data_points);
                    read += gemini_read;
                    points.extend(derived.into_iter().map(|derived| {
                        let attributes = &derived.point.attributes[..];
                        MetricPoint {
                            kind: MetricKind::Tokens(derived.kind.to_owned()),
                            identity: identity(attributes, resource),
                            model: string(attributes, "model"),
                            value: derived.value,
                            start_ns: derived.start_ns,
                            time_ns: derived.point.time_unix_nano,
                            delta,
                            series: series_key_of(format!(
                                "{}\u{1f}type={}",
                                derived.series, derived.kind
                            )),
                            attribution: Attribution::default(),
                            agent: Agent::Gemini.other_than_claude(),
                            priced: true,
                        }
                    }));
                    continue;
                }
                for point in &sum.data_points {
                    let attributes = &point.attributes[..];
                    let of_type = || string(attributes, "type").unwrap_or_default();
                    let kind = match metric.name.as_str() {
                        "claude_code.cost.usage" => MetricKind::Cost,
                        "claude_code.token.usage" => MetricKind::Tokens(of_type()),
                        "claude_code.lines_of_code.count" => MetricKind::LinesOfCode(of_type()),
                        "claude_code.commit.count" => MetricKind::Commits,
                        "claude_code.pull_request.count" => MetricKind::PullRequests,
                        "claude_code.session.count" => MetricKind::Sessions,
                        "claude_code.active_time.total" => MetricKind::ActiveTime(of_type()),
                        "claude_code.code_edit_tool.decision" => MetricKind::CodeEditDecisions(
                            string(attributes, "decision").unwrap_or_default(),
                        ),
                        _ => continue,
                    };
                    let value = match point.value {
                        Some(number_data_point::Value::AsDouble(v)) => v,
                        Some(number_data_point::Value::AsInt(v)) => v as f64,
                        None => continue,
                    };
                    points.push(MetricPoint {
                        kind,
                        identity: identity(attributes, resource),
                        model: string(attributes, "model"),
                        value,
                        start_ns: point.start_time_unix_nano,
                        time_ns: point.time_unix_nano,
                        delta,
                        series: series_key(attributes),
                        attribution: Attribution {
                            agent_name: string(attributes, "agent.name"),
                            query_source: string(attributes, "query_source"),
                        },
                        agent: None,
                        priced: false,
                    });
                    read += 1;
                }
            }
        }
    }
    (points, read)
}

/// `key=value` pairs of the attributes, sorted, joined by a separator no value holds; past
/// [`MAX_SERIES_KEY`] bytes (or holding a NUL, which no text column takes), its SHA-256 in
/// hex instead, so the row's key stays small enough for a unique index on either store.
fn series_key(attributes: &[KeyValue]) -> String {
    series_key_of(series_text(attributes))
}

/// [`series_key`] of a series' text.
fn series_key_of(key: String) -> String {
    if key.len() <= MAX_SERIES_KEY && !key.contains('\0') {
        return key;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The longest series key kept as text.
const MAX_SERIES_KEY: usize = 512;

fn series_text(attributes: &[KeyValue]) -> String {
    let mut pairs: Vec<String> = attributes
        .iter()
        .map(|kv| {
            let value = kv.value.as_ref().and_then(|v| v.value.as_ref());
            format!("{}={}", kv.key, value.and_then(text).unwrap_or_default())
        })
        .collect();
    pairs.sort();
    pairs.join("\u{1f}")
}

impl MetricKind {
    /// The name the store keeps it under.
    pub(crate) fn stored_name(&self) -> String {
        match self {
            Self::Cost => "cost".into(),
            Self::Tokens(kind) => format!("tokens.{kind}"),
            Self::LinesOfCode(kind) => format!("lines_of_code.{kind}"),
            Self::Commits => "commits".into(),
            Self::PullRequests => "pull_requests".into(),
            Self::Sessions => "sessions".into(),
            Self::ActiveTime(kind) => format!("active_time.{kind}"),
            Self::CodeEditDecisions(decision) => format!("code_edit_decisions.{decision}"),
        }
    }
}

/// Billionths, as the store keeps amounts (a request can cost less than a millionth of a
/// dollar's precision: `0.0005830000000000001`).
fn nanos(value: f64) -> i64 {
    (value * 1e9).round() as i64
}

fn ns_to_ms(nanos: u64) -> i64 {
    (nanos / 1_000_000) as i64
}

/// The rows a logs request stores: every record within the rules, typed where hookwatch
/// reads it.
pub(crate) fn event_rows(
    request: &ExportLogsServiceRequest,
    rules: &RecordRules,
) -> Taken<TelemetryEventRow> {
    Taken::from_outcomes(events(request).iter().map(|e| e.to_row(rules)))
}

/// The rows a metrics request stores (the points of Claude Code's counters and Gemini's
/// token counter within the rules, a priced point with its cost), and how many of the
/// request's data points were read into them: the rest are left out.
pub(crate) fn point_rows(
    request: &ExportMetricsServiceRequest,
    rules: &RecordRules,
) -> (Taken<TelemetryPointRow>, usize) {
    let (points, read) = metric_points(request);
    let taken = Taken::from_outcomes(points.iter().flat_map(|p| {
        let cost = p.priced.then(|| p.priced_cost(rules.prices));
        std::iter::once(p.to_row(rules)).chain(cost.map(|cost| cost.to_row(rules)))
    }));
    (taken, read)
}

/// A count within `0..=max`, or why not.
fn bounded(field: &str, value: Option<i64>, max: i64) -> Result<(), String> {
    match value {
        Some(v) if !(0..=max).contains(&v) => {
            Err(format!("{field} is {v}; it must be from 0 to {max}"))
        }
        _ => Ok(()),
    }
}

/// The prefix a span of Claude Code's own tracing has (`claude_code.interaction`, …), and the
/// kind its row is stored under (`span.interaction`, …), apart from every event's.
const CLAUDE_SPAN_PREFIX: &str = "claude_code.";
pub(crate) const SPAN_KIND_PREFIX: &str = "span.";

/// What a traces request stores: each of Claude Code's own spans (beta tracing,
/// `CLAUDE_CODE_ENHANCED_TELEMETRY_BETA=1`; `claude-code-otel.md` §6) as an event row of kind
/// `span.<type>` within the same rules as a log record's, keyed by its trace and span ids
/// (a retried export stores nothing twice), and how many spans were someone else's (left
/// out: hookwatch reads Claude Code's). A span's row holds what the trace joins on and shows:
/// its start and duration, `tool_use_id`, `request_id`, model and tokens, success (its
/// `success` attribute, else its status), a decision and its source, a hook span's
/// `hook_event` (as its `tool_name`), the prompt's sequence and text where Claude Code logs it. Its usage is never counted: `api_request` events and
/// the counters measure cost, and an `llm_request` span repeats one of them.
pub(crate) fn span_rows(
    request: &ExportTraceServiceRequest,
    rules: &RecordRules,
) -> (Taken<TelemetryEventRow>, usize) {
    let mut foreign = 0;
    let mut rows = Vec::new();
    for resource_spans in &request.resource_spans {
        let resource = resource_spans
            .resource
            .as_ref()
            .map_or(&[][..], |r| &r.attributes[..]);
        for scope_spans in &resource_spans.scope_spans {
            for span in &scope_spans.spans {
                match span.name.strip_prefix(CLAUDE_SPAN_PREFIX) {
                    Some(kind) if !kind.is_empty() => {
                        rows.push(checked(span_row(span, kind, resource), rules));
                    }
                    _ => foreign += 1,
                }
            }
        }
    }
    (Taken::from_outcomes(rows.into_iter()), foreign)
}

fn span_row(
    span: &opentelemetry_proto::tonic::trace::v1::Span,
    kind: &str,
    resource: &[KeyValue],
) -> TelemetryEventRow {
    let attributes = &span.attributes[..];
    let text = |key: &str| string(attributes, key);
    let identity = identity(attributes, resource);
    let start_ms = ns_to_ms(span.start_time_unix_nano);
    let end_ms = ns_to_ms(span.end_time_unix_nano.max(span.start_time_unix_nano));
    let status_error = span
        .status
        .as_ref()
        .is_some_and(|s| s.code == StatusCode::Error as i32);
    let success = boolean(attributes, "success").or(status_error.then_some(false));
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let attribution = Attribution {
        agent_name: None,
        query_source: text("query_source"),
    };
    TelemetryEventRow {
        kind: format!("{SPAN_KIND_PREFIX}{kind}"),
        // Claude Code's own spans only.
        agent: None,
        dedup_key: format!("span|{}|{}", hex(&span.trace_id), hex(&span.span_id)),
        session_id: identity.session_id,
        prompt_id: text("prompt.id"),
        at_ms: start_ms,
        sequence: integer(attributes, "interaction.sequence"),
        user_id: identity.user_id,
        user_email: identity.user_email,
        account_uuid: identity.account_uuid,
        organization_id: identity.organization_id,
        model: text("model").or_else(|| text("gen_ai.request.model")),
        cost_nanos: None,
        input_tokens: integer(attributes, "input_tokens"),
        output_tokens: integer(attributes, "output_tokens"),
        cache_read_tokens: integer(attributes, "cache_read_tokens"),
        cache_creation_tokens: integer(attributes, "cache_creation_tokens"),
        duration_ms: Some(end_ms - start_ms),
        status_code: integer(attributes, "status_code"),
        attempt: integer(attributes, "attempt"),
        request_id: text("request_id"),
        agent_name: None,
        agent_type: text("query_source").map(|_| attribution.agent_type()),
        query_source: attribution.query_source,
        tool_name: text("tool_name").or_else(|| text("hook_event")),
        tool_use_id: text("tool_use_id").or_else(|| text("gen_ai.tool.call.id")),
        success: success.map(i64::from),
        decision: text("decision"),
        decision_source: text("source"),
        error: text("error").or_else(|| {
            status_error
                .then(|| span.status.as_ref().map(|s| s.message.clone()))
                .flatten()
                .filter(|m| !m.is_empty())
        }),
        prompt_length: integer(attributes, "user_prompt_length"),
        prompt: text("user_prompt").filter(|p| p != "<REDACTED>"),
    }
}

/// An event row (a log record's or a span's) within the rules: its counts bounded, its
/// identifiers no longer than `--max-id-len`, no NUL in its text, its time clamped.
fn checked(row: TelemetryEventRow, rules: &RecordRules) -> Result<TelemetryEventRow, String> {
    for (field, tokens) in [
        ("input_tokens", row.input_tokens),
        ("output_tokens", row.output_tokens),
        ("cache_read_tokens", row.cache_read_tokens),
        ("cache_creation_tokens", row.cache_creation_tokens),
    ] {
        bounded(field, tokens, MAX_TOKENS_PER_EVENT)?;
    }
    bounded("duration_ms", row.duration_ms, MAX_DURATION_MS)?;
    for (field, value) in [
        ("event.name", Some(row.kind.as_str())),
        ("session.id", row.session_id.as_deref()),
        ("prompt.id", row.prompt_id.as_deref()),
        ("user.id", row.user_id.as_deref()),
        ("user.email", row.user_email.as_deref()),
        ("user.account_uuid", row.account_uuid.as_deref()),
        ("organization.id", row.organization_id.as_deref()),
        ("model", row.model.as_deref()),
        ("request_id", row.request_id.as_deref()),
        ("agent.name", row.agent_name.as_deref()),
        ("query_source", row.query_source.as_deref()),
        ("tool_name", row.tool_name.as_deref()),
        ("tool_use_id", row.tool_use_id.as_deref()),
        ("decision", row.decision.as_deref()),
        ("decision_source", row.decision_source.as_deref()),
        ("agent type", row.agent_type.as_deref()),
    ] {
        rules.identifier(field, value)?;
    }
    for (field, text) in [("error", &row.error), ("prompt", &row.prompt)] {
        if text.as_deref().is_some_and(|t| t.contains('\0')) {
            return Err(format!("{field} holds a NUL character"));
        }
    }
    Ok(TelemetryEventRow {
        at_ms: rules.clamp(row.at_ms),
        ..row
    })
}

impl AgentEvent {
    /// The row this event is stored as, or why it is rejected.
    pub(crate) fn to_row(&self, rules: &RecordRules) -> Result<TelemetryEventRow, String> {
        match &self.kind {
            EventKind::ApiRequest(ApiRequest {
                cost_usd: Some(cost),
                ..
            }) if !(cost.is_finite() && (0.0..=MAX_COST_USD).contains(cost)) => {
                return Err(format!(
                    "cost_usd is {cost}; it must be a number from 0 to {MAX_COST_USD}"
                ));
            }
            EventKind::Rejected(why) => return Err(why.clone()),
            _ => {}
        }
        let mut row = checked(self.unchecked_row(), rules)?;
        if let EventKind::ApiRequest(request) = &self.kind
            && request.cost_usd.is_none()
        {
            // Bounded: the tokens were checked, and the cost saturates.
            row.cost_nanos = Some(
                rules
                    .prices
                    .cost_nanos(request.model.as_deref(), &request.tokens),
            );
        }
        Ok(row)
    }

    /// The row, unchecked, with the time as sent (which its `dedup_key` keeps, so a retried
    /// export is known whenever it comes).
    fn unchecked_row(&self) -> TelemetryEventRow {
        let identity = &self.identity;
        let mut row = TelemetryEventRow {
            agent: self.agent.other_than_claude(),
            session_id: identity.session_id.clone(),
            prompt_id: self.prompt_id.clone(),
            at_ms: self.at_ms,
            sequence: self.sequence,
            user_id: identity.user_id.clone(),
            user_email: identity.user_email.clone(),
            account_uuid: identity.account_uuid.clone(),
            organization_id: identity.organization_id.clone(),
            ..TelemetryEventRow::default()
        };
        let mut attribute = |attribution: &Attribution| {
            row.agent_name = attribution.agent_name.clone();
            row.query_source = attribution.query_source.clone();
            row.agent_type = Some(attribution.agent_type());
        };
        match &self.kind {
            EventKind::ApiRequest(request) => {
                attribute(&request.attribution);
                row.kind = "api_request".into();
                row.model = request.model.clone();
                row.cost_nanos = request.cost_usd.map(nanos);
                row.input_tokens = Some(request.tokens.input);
                row.output_tokens = Some(request.tokens.output);
                row.cache_read_tokens = Some(request.tokens.cache_read);
                row.cache_creation_tokens = Some(request.tokens.cache_creation);
                row.duration_ms = request.duration_ms;
                row.request_id = request.request_id.clone();
            }
            EventKind::ApiError(error) => {
                attribute(&error.attribution);
                row.kind = "api_error".into();
                row.model = error.model.clone();
                row.error = error.error.clone();
                row.status_code = error.status_code;
                row.duration_ms = error.duration_ms;
                row.attempt = error.attempt;
                row.request_id = error.request_id.clone();
            }
            EventKind::ToolResult(result) => {
                row.kind = "tool_result".into();
                row.tool_name = result.tool_name.clone();
                row.tool_use_id = result.tool_use_id.clone();
                row.success = result.success.map(i64::from);
                row.duration_ms = result.duration_ms;
                row.error = result.error_type.clone();
                row.decision_source = result.decision_source.clone();
                row.decision = result.decision.clone();
            }
            EventKind::ToolDecision(decision) => {
                row.kind = "tool_decision".into();
                row.tool_name = decision.tool_name.clone();
                row.tool_use_id = decision.tool_use_id.clone();
                row.decision = decision.decision.clone();
                row.decision_source = decision.source.clone();
            }
            EventKind::UserPrompt(prompt) => {
                row.kind = "user_prompt".into();
                row.prompt_length = prompt.prompt_length;
                row.prompt = prompt.prompt.clone();
            }
            EventKind::Other(name) => row.kind = name.clone(),
            // Never a row: `to_row` refuses it first.
            EventKind::Rejected(_) => {}
        }
        // What one record is, however often it is sent: the same event of the same process
        // at the same moment, with its own id where it has one.
        let digest = self.digest.map(|d| format!("{d:016x}"));
        let id = row
            .request_id
            .as_deref()
            .or(row.tool_use_id.as_deref())
            .or(digest.as_deref())
            .unwrap_or_default();
        row.dedup_key = format!(
            "{}|{}|{}|{}|{}|{id}",
            row.kind,
            row.session_id.as_deref().unwrap_or_default(),
            row.at_ms,
            row.sequence.map_or(String::new(), |s| s.to_string()),
            row.prompt_id.as_deref().unwrap_or_default(),
        );
        row
    }
}

impl MetricPoint {
    /// The cost of a priced token point ([`MetricPoint::priced`]), as a point of its own: its
    /// kind's tokens at the model's price, in the token point's series (a running total of
    /// tokens makes a running total of cost).
    fn priced_cost(&self, prices: &PriceTable) -> MetricPoint {
        let tokens = self.value.round() as i64;
        let usage = match &self.kind {
            MetricKind::Tokens(kind) if kind == "output" => TokenUsage {
                output: tokens,
                ..TokenUsage::default()
            },
            MetricKind::Tokens(kind) if kind == "cacheRead" => TokenUsage {
                cache_read: tokens,
                ..TokenUsage::default()
            },
            _ => TokenUsage {
                input: tokens,
                ..TokenUsage::default()
            },
        };
        MetricPoint {
            kind: MetricKind::Cost,
            value: prices.cost_nanos(self.model.as_deref(), &usage) as f64 / 1e9,
            series: format!("{}\u{1f}priced", self.series),
            priced: false,
            ..self.clone()
        }
    }

    /// The row this point is stored as, or why it is rejected.
    pub(crate) fn to_row(&self, rules: &RecordRules) -> Result<TelemetryPointRow, String> {
        let max = match self.kind {
            MetricKind::Cost => MAX_COST_USD,
            _ => MAX_POINT_VALUE,
        };
        let value = self.value;
        if !(value.is_finite() && (0.0..=max).contains(&value)) {
            return Err(format!(
                "the {} point's value is {value}; it must be a number from 0 to {max}",
                self.kind.stored_name()
            ));
        }
        for (field, value) in [
            ("session.id", self.identity.session_id.as_deref()),
            ("user.id", self.identity.user_id.as_deref()),
            ("user.email", self.identity.user_email.as_deref()),
            ("user.account_uuid", self.identity.account_uuid.as_deref()),
            ("organization.id", self.identity.organization_id.as_deref()),
            ("model", self.model.as_deref()),
            ("type", Some(self.kind.stored_name().as_str())),
            ("agent.name", self.attribution.agent_name.as_deref()),
        ] {
            rules.identifier(field, value)?;
        }
        let row = self.unchecked_row();
        rules.identifier("agent type", row.agent_type.as_deref())?;
        Ok(TelemetryPointRow {
            start_ms: row.start_ms.map(|ms| rules.clamp(ms)),
            time_ms: rules.clamp(row.time_ms),
            ..row
        })
    }

    fn unchecked_row(&self) -> TelemetryPointRow {
        let metric = self.kind.stored_name();
        let series = (!self.delta).then(|| format!("{metric}|{}|{}", self.series, self.start_ns));
        TelemetryPointRow {
            dedup_key: format!(
                "{metric}|{}|{}|{}",
                self.series, self.start_ns, self.time_ns
            ),
            metric,
            session_id: self.identity.session_id.clone(),
            user_id: self.identity.user_id.clone(),
            user_email: self.identity.user_email.clone(),
            account_uuid: self.identity.account_uuid.clone(),
            organization_id: self.identity.organization_id.clone(),
            model: self.model.clone(),
            value_nanos: nanos(self.value),
            start_ms: (self.start_ns != 0).then(|| ns_to_ms(self.start_ns)),
            time_ms: ns_to_ms(self.time_ns),
            delta: i64::from(self.delta),
            agent_type: Some(self.attribution.agent_type()),
            series,
            agent: self.agent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::attributes::number;

    /// The reference's `/v1/logs` sample (claude-code-otel.md §9.1), trimmed: an API request
    /// and a tool result, with the value types Claude Code 2.1.219 sends.
    const LOGS: &str = r#"{"resourceLogs":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"claude-code"}},
        {"key":"user.email","value":{"stringValue":"resource@example.com"}}]},
      "scopeLogs":[{"scope":{"name":"com.anthropic.claude_code.events","version":"2.1.219"},
      "logRecords":[
        {"timeUnixNano":"1784916872544000000","body":{"stringValue":"claude_code.api_request"},
         "attributes":[
          {"key":"session.id","value":{"stringValue":"0b6f5a52"}},
          {"key":"user.id","value":{"stringValue":"3f9c"}},
          {"key":"user.email","value":{"stringValue":"dev@example.com"}},
          {"key":"organization.id","value":{"stringValue":"5a1c"}},
          {"key":"user.account_uuid","value":{"stringValue":"9e8d"}},
          {"key":"event.name","value":{"stringValue":"api_request"}},
          {"key":"event.sequence","value":{"intValue":6}},
          {"key":"prompt.id","value":{"stringValue":"d2a4"}},
          {"key":"model","value":{"stringValue":"claude-sonnet-4-6"}},
          {"key":"input_tokens","value":{"intValue":12}},
          {"key":"output_tokens","value":{"intValue":"412"}},
          {"key":"cache_read_tokens","value":{"doubleValue":48213}},
          {"key":"cache_creation_tokens","value":{"stringValue":"1530"}},
          {"key":"cost_usd","value":{"doubleValue":0.0264174}},
          {"key":"duration_ms","value":{"intValue":8421}},
          {"key":"request_id","value":{"stringValue":"req_011"}},
          {"key":"query_source","value":{"stringValue":"agent:builtin:Explore"}},
          {"key":"agent.name","value":{"stringValue":"Explore"}}]},
        {"timeUnixNano":"1784916880163000000","body":{"stringValue":"claude_code.tool_result"},
         "attributes":[
          {"key":"session.id","value":{"stringValue":"0b6f5a52"}},
          {"key":"prompt.id","value":{"stringValue":"d2a4"}},
          {"key":"tool_name","value":{"stringValue":"Bash"}},
          {"key":"tool_use_id","value":{"stringValue":"toolu_01"}},
          {"key":"success","value":{"stringValue":"false"}},
          {"key":"duration_ms","value":{"stringValue":"62"}},
          {"key":"error_type","value":{"stringValue":"ShellError"}},
          {"key":"decision_source","value":{"stringValue":"config"}}]},
        {"timeUnixNano":"1784916881000000000","body":{"stringValue":"claude_code.user_prompt"},
         "attributes":[{"key":"prompt_length","value":{"stringValue":"42"}},
          {"key":"prompt","value":{"stringValue":"<REDACTED>"}}]},
        {"observedTimeUnixNano":"1784916882000000000","eventName":"claude_code.compaction"}
      ]}]}]}"#;

    #[test]
    fn claude_codes_events_read_whatever_types_their_values_came_in() {
        let request: ExportLogsServiceRequest = serde_json::from_str(LOGS).unwrap();
        let events = events(&request);
        assert_eq!(events.len(), 4);
        let request_event = &events[0];
        assert_eq!(
            request_event.identity,
            Identity {
                session_id: Some("0b6f5a52".into()),
                user_id: Some("3f9c".into()),
                user_email: Some("dev@example.com".into()),
                account_uuid: Some("9e8d".into()),
                organization_id: Some("5a1c".into()),
            }
        );
        assert_eq!(request_event.prompt_id.as_deref(), Some("d2a4"));
        assert_eq!(request_event.at_ms, 1_784_916_872_544);
        assert_eq!(request_event.sequence, Some(6));
        assert_eq!(
            request_event.kind,
            EventKind::ApiRequest(ApiRequest {
                model: Some("claude-sonnet-4-6".into()),
                cost_usd: Some(0.0264174),
                tokens: Tokens {
                    input: 12,
                    output: 412,
                    cache_read: 48_213,
                    cache_creation: 1_530,
                },
                duration_ms: Some(8_421),
                request_id: Some("req_011".into()),
                attribution: Attribution {
                    agent_name: Some("Explore".into()),
                    query_source: Some("agent:builtin:Explore".into()),
                },
            })
        );
        assert_eq!(
            events[1].kind,
            EventKind::ToolResult(ToolResult {
                tool_name: Some("Bash".into()),
                tool_use_id: Some("toolu_01".into()),
                success: Some(false),
                duration_ms: Some(62),
                error_type: Some("ShellError".into()),
                decision_source: Some("config".into()),
                decision: None,
            })
        );
        assert_eq!(
            events[1].identity.user_email.as_deref(),
            Some("resource@example.com"),
            "missing on the record: the resource's"
        );
        assert_eq!(
            events[2].kind,
            EventKind::UserPrompt(UserPrompt {
                prompt_length: Some(42),
                prompt: None
            }),
            "a redacted prompt is no prompt"
        );
        assert_eq!(events[3].kind, EventKind::Other("compaction".into()));
        assert_eq!(
            events[3].at_ms, 1_784_916_882_000,
            "observed time when no time"
        );
    }

    #[test]
    fn claude_codes_counters_become_points_and_other_metrics_are_left_out() {
        let json = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
          {"name":"claude_code.token.usage","unit":"tokens","sum":{"aggregationTemporality":1,
           "isMonotonic":true,"dataPoints":[
            {"attributes":[{"key":"session.id","value":{"stringValue":"s1"}},
              {"key":"model","value":{"stringValue":"claude-sonnet-4-6"}},
              {"key":"type","value":{"stringValue":"cacheRead"}}],
             "startTimeUnixNano":"1784916871000000000","timeUnixNano":"1784916931000000000",
             "asDouble":48213}]}},
          {"name":"claude_code.cost.usage","unit":"USD","sum":{"aggregationTemporality":2,
           "dataPoints":[{"attributes":[{"key":"session.id","value":{"stringValue":"s1"}}],
             "timeUnixNano":"1784916931000000000","asInt":"1"}]}},
          {"name":"some.other.metric","sum":{"dataPoints":[{"asDouble":1}]}},
          {"name":"claude_code.session.count","gauge":{"dataPoints":[{"asDouble":1}]}}
        ]}]}]}"#;
        let request: ExportMetricsServiceRequest = serde_json::from_str(json).unwrap();
        let (points, _) = metric_points(&request);
        assert_eq!(points.len(), 2, "{points:?}");
        assert_eq!(points[0].kind, MetricKind::Tokens("cacheRead".into()));
        assert_eq!(points[0].value, 48_213.0);
        assert_eq!(points[0].identity.session_id.as_deref(), Some("s1"));
        assert_eq!(points[0].model.as_deref(), Some("claude-sonnet-4-6"));
        assert!(points[0].delta, "aggregationTemporality 1 is delta");
        assert_eq!(
            (points[0].start_ns, points[0].time_ns),
            (1_784_916_871_000_000_000, 1_784_916_931_000_000_000)
        );
        assert_eq!(points[1].kind, MetricKind::Cost);
        assert_eq!(points[1].value, 1.0, "asInt as a string");
        assert!(!points[1].delta, "2 is cumulative");
    }

    #[test]
    fn a_record_past_a_bound_is_rejected_naming_its_field_and_a_future_time_is_clamped() {
        let prices = PriceTable::default();
        let rules = RecordRules {
            max_id_len: 32,
            max_clock_skew_ms: 1_000,
            now_ms: 1_000_000,
            prices: &prices,
        };
        let request = |attribute: (&str, Value), at_ms: i64| {
            let mut event = events(&serde_json::from_str(LOGS).unwrap()).remove(0);
            event.at_ms = at_ms;
            let EventKind::ApiRequest(r) = &mut event.kind else {
                unreachable!()
            };
            match attribute {
                ("cost_usd", Value::DoubleValue(v)) => r.cost_usd = Some(v),
                ("input_tokens", Value::IntValue(v)) => r.tokens.input = v,
                ("duration_ms", Value::IntValue(v)) => r.duration_ms = Some(v),
                ("model", Value::StringValue(v)) => r.model = Some(v),
                ("session.id", Value::StringValue(v)) => event.identity.session_id = Some(v),
                _ => {}
            }
            event.to_row(&rules)
        };
        let refused = |attribute, field: &str| {
            let why = request(attribute, 0).expect_err(field);
            assert!(why.starts_with(field), "{why}");
        };
        refused(("cost_usd", Value::DoubleValue(-0.01)), "cost_usd");
        refused(("cost_usd", Value::DoubleValue(f64::NAN)), "cost_usd");
        refused(("cost_usd", Value::DoubleValue(f64::INFINITY)), "cost_usd");
        refused(("cost_usd", Value::DoubleValue(10_000.01)), "cost_usd");
        refused(("input_tokens", Value::IntValue(i64::MAX)), "input_tokens");
        refused(("input_tokens", Value::IntValue(-1)), "input_tokens");
        refused(("duration_ms", Value::IntValue(-1)), "duration_ms");
        refused(("model", Value::StringValue("m".repeat(33))), "model");
        refused(
            ("session.id", Value::StringValue("a\0b".into())),
            "session.id",
        );
        // At the bounds: kept.
        assert!(request(("cost_usd", Value::DoubleValue(10_000.0)), 0).is_ok());
        let at_bound = Value::IntValue(MAX_TOKENS_PER_EVENT);
        assert!(request(("input_tokens", at_bound), 0).is_ok());
        assert!(request(("model", Value::StringValue("m".repeat(32))), 0).is_ok());
        // Within the skew a time is kept; past it, it is the arrival time, and the row's
        // identity keeps the time as sent.
        let kept = request(("", Value::BoolValue(true)), 1_001_000).unwrap();
        assert_eq!(kept.at_ms, 1_001_000);
        let clamped = request(("", Value::BoolValue(true)), 1_001_001).unwrap();
        assert_eq!(clamped.at_ms, 1_000_000);
        assert!(
            clamped.dedup_key.contains("1001001"),
            "{}",
            clamped.dedup_key
        );
    }

    #[test]
    fn numbers_and_booleans_are_read_from_every_encoding() {
        use opentelemetry_proto::tonic::common::v1::AnyValue;
        let attribute = |value: Value| {
            vec![KeyValue {
                key: "k".into(),
                value: Some(AnyValue { value: Some(value) }),
                ..KeyValue::default()
            }]
        };
        let of = |v: Value| {
            let a = attribute(v);
            (integer(&a, "k"), number(&a, "k"), boolean(&a, "k"))
        };
        assert_eq!(of(Value::IntValue(7)), (Some(7), Some(7.0), None));
        assert_eq!(of(Value::DoubleValue(7.6)), (Some(8), Some(7.6), None));
        assert_eq!(
            of(Value::StringValue(" 62 ".into())),
            (Some(62), Some(62.0), None)
        );
        assert_eq!(
            of(Value::StringValue("2.5".into())),
            (Some(3), Some(2.5), None)
        );
        assert_eq!(of(Value::StringValue("NaN".into())), (None, None, None));
        assert_eq!(
            of(Value::StringValue("true".into())),
            (None, None, Some(true))
        );
        assert_eq!(of(Value::BoolValue(false)), (None, None, Some(false)));
        assert_eq!(of(Value::StringValue("many".into())), (None, None, None));
        assert_eq!(integer(&[], "k"), None, "absent");
    }
}
