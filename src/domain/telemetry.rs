//! Claude Code's own telemetry as hookwatch keeps it: one flat row per event and per counter
//! point, what one OTLP request brings, and the histogram slots of API latency. `otlp` makes
//! them from the wire; `store::telemetry` stores them and folds them into usage.

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
    /// On API requests and errors: the agent type that made it, as the hooks name types
    /// (`otlp::claude::Attribution::agent_type`).
    pub agent_type: Option<String>,
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
    /// The agent type the point is for, as the hooks name types.
    pub agent_type: Option<String>,
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

    /// The batch in pieces of at most `rows` rows (events first, then points), in order.
    pub fn into_chunks(self, rows: usize) -> Vec<TelemetryBatch> {
        let rows = rows.max(1);
        let mut chunks = Vec::with_capacity(self.len().div_ceil(rows));
        let mut events = self.events.into_iter().peekable();
        let mut points = self.points.into_iter().peekable();
        while events.peek().is_some() || points.peek().is_some() {
            let events: Vec<_> = events.by_ref().take(rows).collect();
            let points: Vec<_> = points.by_ref().take(rows - events.len()).collect();
            chunks.push(TelemetryBatch { events, points });
        }
        chunks
    }
}

/// What a batch came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TelemetryOutcome {
    pub stored: u64,
    pub duplicates: u64,
}

impl std::ops::AddAssign for TelemetryOutcome {
    fn add_assign(&mut self, other: Self) {
        self.stored += other.stored;
        self.duplicates += other.duplicates;
    }
}

/// The histogram slot of an API latency: slot `k > 0` holds `[2^((k-1)/4), 2^(k/4))` ms, so a
/// percentile read from the slots is within 9 % of the exact one; slot 0 holds under 1 ms.
pub fn latency_slot(duration_ms: i64) -> i64 {
    if duration_ms < 1 {
        return 0;
    }
    ((duration_ms as f64).log2() * 4.0).floor() as i64 + 1
}

/// The value a slot stands for: the geometric middle of its bounds.
pub fn latency_of_slot(slot: i64) -> f64 {
    if slot <= 0 {
        return 0.0;
    }
    2f64.powf((slot as f64 - 0.5) / 4.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_cut_into_chunks_in_order_events_first() {
        let event = |n: i64| TelemetryEventRow {
            at_ms: n,
            ..TelemetryEventRow::default()
        };
        let point = |n: i64| TelemetryPointRow {
            time_ms: n,
            ..TelemetryPointRow::default()
        };
        let batch = TelemetryBatch {
            events: (0..5).map(event).collect(),
            points: (5..8).map(point).collect(),
        };
        let chunks = batch.clone().into_chunks(3);
        let sizes: Vec<(usize, usize)> = chunks
            .iter()
            .map(|c| (c.events.len(), c.points.len()))
            .collect();
        assert_eq!(sizes, [(3, 0), (2, 1), (0, 2)]);
        let events: Vec<_> = chunks.iter().flat_map(|c| c.events.clone()).collect();
        let points: Vec<_> = chunks.iter().flat_map(|c| c.points.clone()).collect();
        assert_eq!((events, points), (batch.events, batch.points));
        assert!(TelemetryBatch::default().into_chunks(3).is_empty());
    }
}
