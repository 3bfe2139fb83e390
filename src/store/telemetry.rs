//! Claude Code's own telemetry, stored beside the hook events it joins: one row per event
//! (`telemetry_events`) and per counter point (`telemetry_points`), written once for both
//! databases through the ledger's SQL. An exporter retries a batch it got no answer for, so
//! every row has a key made from what identifies it, and a row already there is counted as a
//! duplicate and left alone.

use super::ledger::LedgerSql;

/// One Claude Code event, flat. Absent attributes are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryEventRow {
    /// The bare event name: `api_request`, `api_error`, `tool_result`, `tool_decision`,
    /// `user_prompt`, or any other Claude Code sends.
    pub kind: String,
    pub dedup_key: String,
    pub session_id: Option<String>,
    pub prompt_id: Option<String>,
    pub at_ms: i64,
    pub sequence: Option<i64>,
    pub user_id: Option<String>,
    pub user_email: Option<String>,
    pub account_uuid: Option<String>,
    pub organization_id: Option<String>,
    pub model: Option<String>,
    /// USD, in billionths.
    pub cost_nanos: Option<i64>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cache_read_tokens: Option<i64>,
    pub cache_creation_tokens: Option<i64>,
    pub duration_ms: Option<i64>,
    pub status_code: Option<i64>,
    pub attempt: Option<i64>,
    pub request_id: Option<String>,
    pub agent_name: Option<String>,
    pub query_source: Option<String>,
    pub tool_name: Option<String>,
    pub tool_use_id: Option<String>,
    /// 1 or 0.
    pub success: Option<i64>,
    pub decision: Option<String>,
    pub decision_source: Option<String>,
    pub error: Option<String>,
    pub prompt_length: Option<i64>,
    /// A prompt's text, when Claude Code sends it (`OTEL_LOG_USER_PROMPTS=1`).
    pub prompt: Option<String>,
}

/// One point of a Claude Code counter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryPointRow {
    /// `cost`, `tokens.input`, `lines_of_code.added`, `commits`, … (see `otlp::claude`).
    pub metric: String,
    pub dedup_key: String,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    pub user_email: Option<String>,
    pub account_uuid: Option<String>,
    pub organization_id: Option<String>,
    pub model: Option<String>,
    /// The value in billionths (USD, tokens, seconds, counts).
    pub value_nanos: i64,
    pub start_ms: Option<i64>,
    pub time_ms: i64,
    /// 1: the increase over `[start, time]`; 0: a running total.
    pub delta: i64,
}

/// What one OTLP request brings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryBatch {
    pub events: Vec<TelemetryEventRow>,
    pub points: Vec<TelemetryPointRow>,
}

impl TelemetryBatch {
    pub fn len(&self) -> usize {
        self.events.len() + self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a batch came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TelemetryOutcome {
    pub stored: u64,
    pub duplicates: u64,
}

const INSERT_EVENT: &str = "INSERT INTO telemetry_events (kind, dedup_key, session_id, \
    prompt_id, at_ms, sequence, user_id, user_email, account_uuid, organization_id, model, \
    cost_nanos, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, \
    duration_ms, status_code, attempt, request_id, agent_name, query_source, tool_name, \
    tool_use_id, success, decision, decision_source, error, prompt_length, prompt) VALUES (?1, \
    ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, \
    ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30) ON CONFLICT (dedup_key) DO NOTHING";

const INSERT_POINT: &str = "INSERT INTO telemetry_points (metric, dedup_key, session_id, \
    user_id, user_email, account_uuid, organization_id, model, value_nanos, start_ms, \
    time_ms, delta) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
    ON CONFLICT (dedup_key) DO NOTHING";

/// Writes a batch in the writer's open transaction.
pub fn record<L: LedgerSql>(
    ledger: &mut L,
    batch: &TelemetryBatch,
) -> Result<TelemetryOutcome, L::Error> {
    let mut outcome = TelemetryOutcome::default();
    let mut count = |inserted: u64| {
        if inserted == 0 {
            outcome.duplicates += 1;
        } else {
            outcome.stored += 1;
        }
    };
    for e in &batch.events {
        count(ledger.execute(
            INSERT_EVENT,
            &[
                e.kind.as_str().into(),
                e.dedup_key.as_str().into(),
                (&e.session_id).into(),
                (&e.prompt_id).into(),
                e.at_ms.into(),
                e.sequence.into(),
                (&e.user_id).into(),
                (&e.user_email).into(),
                (&e.account_uuid).into(),
                (&e.organization_id).into(),
                (&e.model).into(),
                e.cost_nanos.into(),
                e.input_tokens.into(),
                e.output_tokens.into(),
                e.cache_read_tokens.into(),
                e.cache_creation_tokens.into(),
                e.duration_ms.into(),
                e.status_code.into(),
                e.attempt.into(),
                (&e.request_id).into(),
                (&e.agent_name).into(),
                (&e.query_source).into(),
                (&e.tool_name).into(),
                (&e.tool_use_id).into(),
                e.success.into(),
                (&e.decision).into(),
                (&e.decision_source).into(),
                (&e.error).into(),
                e.prompt_length.into(),
                (&e.prompt).into(),
            ],
        )?);
    }
    for p in &batch.points {
        count(ledger.execute(
            INSERT_POINT,
            &[
                p.metric.as_str().into(),
                p.dedup_key.as_str().into(),
                (&p.session_id).into(),
                (&p.user_id).into(),
                (&p.user_email).into(),
                (&p.account_uuid).into(),
                (&p.organization_id).into(),
                (&p.model).into(),
                p.value_nanos.into(),
                p.start_ms.into(),
                p.time_ms.into(),
                p.delta.into(),
            ],
        )?);
    }
    Ok(outcome)
}
