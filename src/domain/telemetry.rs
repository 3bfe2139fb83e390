//! Claude Code's own telemetry as hookwatch keeps it: one flat row per event and per counter
//! point, what one OTLP request brings, and the histogram slots of API latency. `otlp` makes
//! them from the wire; `store::telemetry` stores them and folds them into usage.

use std::collections::BTreeMap;

use super::time::{HOUR_MS, MINUTE_MS, floor_to};

/// One Claude Code event, flat. Absent attributes are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryEventRow {
    /// The bare event name: `api_request`, `api_error`, `tool_result`, `tool_decision`,
    /// `user_prompt`, or any other Claude Code sends.
    pub kind: String,
    /// The agent that sent it where it is not Claude Code (`codex`, `gemini-cli`), kept on its
    /// session (`telemetry_sessions.agent`), not on the row.
    pub agent: Option<&'static str>,
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
    /// (`otlp::events::Attribution::agent_type`).
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
    /// For a running total (cumulative temporality): its series, the metric, its whole
    /// attribute set and its start time. A new start time (a counter reset) is a new series.
    /// The store turns the point into the increase over what its series has counted
    /// ([`Self::into_increase`]), so a session's counters add up the same whichever
    /// temporality Claude Code was told to use.
    pub series: Option<String>,
    /// The agent that sent it where it is not Claude Code (`gemini-cli`), kept on its
    /// session's `telemetry_sessions` row as an event's is.
    pub agent: Option<&'static str>,
}

impl TelemetryPointRow {
    /// A running total as the increase over what its series has already counted
    /// (`counted_nanos`, the sum of the increases stored before it): the whole total for the
    /// first point of a series (it counts from the series' start), and nothing for a point
    /// older than one already counted (that one's total held this one's). The row is then a
    /// delta like any other.
    pub(crate) fn into_increase(self, counted_nanos: i64) -> Self {
        if self.delta == 1 {
            return self;
        }
        Self {
            value_nanos: self.value_nanos.saturating_sub(counted_nanos).max(0),
            delta: 1,
            ..self
        }
    }
}

/// What one OTLP request brings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryBatch {
    pub events: Vec<TelemetryEventRow>,
    pub points: Vec<TelemetryPointRow>,
}

impl TelemetryBatch {
    pub(crate) fn len(&self) -> usize {
        self.events.len() + self.points.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The batch in pieces of at most `rows` rows (events first, then points), in order.
    pub(crate) fn into_chunks(self, rows: usize) -> Vec<TelemetryBatch> {
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
pub(crate) fn latency_slot(duration_ms: i64) -> i64 {
    if duration_ms < 1 {
        return 0;
    }
    ((duration_ms as f64).log2() * 4.0).floor() as i64 + 1
}

/// The value a slot stands for: the geometric middle of its bounds.
pub(crate) fn latency_of_slot(slot: i64) -> f64 {
    if slot <= 0 {
        return 0.0;
    }
    2f64.powf((slot as f64 - 0.5) / 4.0)
}

/// What one usage rollup row is keyed by. Absent keys are `""`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct UsageKey {
    pub bucket: i64,
    pub session_id: String,
    pub model: String,
    pub agent_type: String,
    pub user_key: String,
    pub organization_id: String,
}

impl UsageKey {
    pub(crate) fn new(
        bucket: i64,
        session_id: &Option<String>,
        model: &Option<String>,
        agent_type: &Option<String>,
        identity: [&Option<String>; 4],
    ) -> Self {
        let [email, account, user_id, organization] = identity;
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        Self {
            bucket,
            session_id: text(session_id),
            model: text(model),
            agent_type: text(agent_type),
            user_key: text(
                &email
                    .clone()
                    .or_else(|| account.clone())
                    .or_else(|| user_id.clone()),
            ),
            organization_id: text(organization),
        }
    }

    /// The key of the session-free totals this row adds to.
    pub(crate) fn without_session(&self) -> Self {
        Self {
            session_id: String::new(),
            ..self.clone()
        }
    }

    pub(crate) fn in_hour(&self) -> Self {
        Self {
            bucket: floor_to(self.bucket, HOUR_MS),
            ..self.clone()
        }
    }
}

/// The sums of a usage rollup row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct UsageSums {
    pub cost_nanos: i64,
    pub tokens: [i64; 4],
    pub requests: i64,
    pub errors: i64,
}

impl UsageSums {
    pub(crate) fn add(&mut self, other: &Self) {
        self.cost_nanos = self.cost_nanos.saturating_add(other.cost_nanos);
        for (sum, n) in self.tokens.iter_mut().zip(other.tokens) {
            *sum = sum.saturating_add(n);
        }
        self.requests += other.requests;
        self.errors += other.errors;
    }

    pub(crate) fn negated(&self) -> Self {
        Self {
            cost_nanos: self.cost_nanos.saturating_neg(),
            tokens: self.tokens.map(i64::saturating_neg),
            requests: -self.requests,
            errors: -self.errors,
        }
    }

    pub(crate) fn subtract(&mut self, other: &Self) {
        self.cost_nanos = self.cost_nanos.saturating_sub(other.cost_nanos);
        for (sum, n) in self.tokens.iter_mut().zip(other.tokens) {
            *sum = sum.saturating_sub(n);
        }
        self.requests -= other.requests;
        self.errors -= other.errors;
    }
}

/// Where a usage row's cost came from: `api_request`/`api_error` events, or counter points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum UsageSource {
    Event,
    Point,
}

impl UsageSource {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Event => "event",
            Self::Point => "point",
        }
    }
}

/// Which rollup a row goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Rollup {
    Hour,
    Minute,
}

/// A batch's additions to the usage rollups (minute and hour), the latency histograms and
/// the per-session sources, folded so that a batch of 512 requests of one session writes a
/// handful of rows; written in key order, so two writers never wait on each other in a cycle.
#[derive(Debug, Default)]
pub(crate) struct UsageFold {
    pub usage: BTreeMap<(Rollup, UsageKey, UsageSource), UsageSums>,
    pub latency: BTreeMap<(Rollup, UsageKey, i64), i64>,
    pub sessions: BTreeMap<String, SessionFold>,
}

/// A batch's additions to one session's row of `telemetry_sessions`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionFold {
    /// `api_request` events.
    pub api_requests: i64,
    /// Cost and token points (deltas).
    pub usage_points: i64,
    /// The sums of its `api_request` and `api_error` events.
    pub events: UsageSums,
    /// The sums of its points, which count only while it has no `api_request` event.
    pub points: UsageSums,
    /// Its first and last minute in the batch.
    pub first_bucket: i64,
    pub last_bucket: i64,
    /// The agent its events came from, where it is not Claude Code.
    pub agent: Option<&'static str>,
}

impl SessionFold {
    /// What a session's row counts of this batch when the batch makes the row: its points
    /// only when the batch brings no `api_request` event (a row already there adds them only
    /// while it has none; `store::telemetry` settles that).
    pub(crate) fn counted_when_new(&self) -> UsageSums {
        let mut counted = self.events;
        if self.api_requests == 0 {
            counted.add(&self.points);
        }
        counted
    }

    pub(crate) fn at(bucket: i64) -> Self {
        Self {
            api_requests: 0,
            usage_points: 0,
            events: UsageSums::default(),
            points: UsageSums::default(),
            first_bucket: bucket,
            last_bucket: bucket,
            agent: None,
        }
    }
}

/// What a batch adds to usage: each `api_request` and `api_error` event and each cost or token
/// delta point, folded per minute and hour key, source and session. Running totals
/// (cumulative temporality) and other events add nothing.
impl UsageFold {
    pub(crate) fn add_event(&mut self, e: &TelemetryEventRow) {
        let (requests, errors) = match e.kind.as_str() {
            "api_request" => (1, 0),
            "api_error" => (0, 1),
            _ => return,
        };
        let minute = UsageKey::new(
            floor_to(e.at_ms, MINUTE_MS),
            &e.session_id,
            &e.model,
            &e.agent_type,
            [
                &e.user_email,
                &e.account_uuid,
                &e.user_id,
                &e.organization_id,
            ],
        );
        let sums = UsageSums {
            cost_nanos: e.cost_nanos.unwrap_or(0),
            tokens: [
                e.input_tokens,
                e.output_tokens,
                e.cache_read_tokens,
                e.cache_creation_tokens,
            ]
            .map(|n| n.unwrap_or(0)),
            requests,
            errors,
        };
        let session = self.session(&minute);
        session.api_requests += requests;
        session.events.add(&sums);
        session.agent = session.agent.or(e.agent);
        if requests == 1
            && let Some(duration) = e.duration_ms
        {
            let slot = latency_slot(duration);
            for (rollup, key) in [
                (Rollup::Hour, minute.in_hour()),
                (Rollup::Minute, minute.clone()),
            ] {
                *self.latency.entry((rollup, key, slot)).or_default() += 1;
            }
        }
        self.add(minute, UsageSource::Event, &sums);
    }

    pub(crate) fn add_point(&mut self, p: &TelemetryPointRow) {
        // Running totals (cumulative temporality) are not increases: only deltas add up.
        if p.delta != 1 {
            return;
        }
        let mut sums = UsageSums::default();
        let whole = (p.value_nanos + 500_000_000) / 1_000_000_000;
        match p.metric.as_str() {
            "cost" => sums.cost_nanos = p.value_nanos,
            "tokens.input" => sums.tokens[0] = whole,
            "tokens.output" => sums.tokens[1] = whole,
            "tokens.cacheRead" => sums.tokens[2] = whole,
            "tokens.cacheCreation" => sums.tokens[3] = whole,
            _ => return,
        }
        let minute = UsageKey::new(
            floor_to(p.time_ms, MINUTE_MS),
            &p.session_id,
            &p.model,
            &p.agent_type,
            [
                &p.user_email,
                &p.account_uuid,
                &p.user_id,
                &p.organization_id,
            ],
        );
        let session = self.session(&minute);
        session.agent = session.agent.or(p.agent);
        session.usage_points += 1;
        session.points.add(&sums);
        self.add(minute, UsageSource::Point, &sums);
    }

    /// The session's fold, its minutes widened to `minute`'s.
    pub(crate) fn session(&mut self, minute: &UsageKey) -> &mut SessionFold {
        let session = self
            .sessions
            .entry(minute.session_id.clone())
            .or_insert_with(|| SessionFold::at(minute.bucket));
        session.first_bucket = session.first_bucket.min(minute.bucket);
        session.last_bucket = session.last_bucket.max(minute.bucket);
        session
    }

    pub(crate) fn add(&mut self, minute: UsageKey, source: UsageSource, sums: &UsageSums) {
        for (rollup, key) in [(Rollup::Hour, minute.in_hour()), (Rollup::Minute, minute)] {
            self.usage
                .entry((rollup, key, source))
                .or_default()
                .add(sums);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(session: &str, at_ms: i64, cost_nanos: i64, duration_ms: i64) -> TelemetryEventRow {
        TelemetryEventRow {
            kind: "api_request".into(),
            session_id: Some(session.into()),
            model: Some("m".into()),
            at_ms,
            cost_nanos: Some(cost_nanos),
            input_tokens: Some(100),
            duration_ms: Some(duration_ms),
            ..TelemetryEventRow::default()
        }
    }

    fn point(
        session: &str,
        metric: &str,
        time_ms: i64,
        value_nanos: i64,
        delta: i64,
    ) -> TelemetryPointRow {
        TelemetryPointRow {
            metric: metric.into(),
            session_id: Some(session.into()),
            model: Some("m".into()),
            value_nanos,
            time_ms,
            delta,
            ..TelemetryPointRow::default()
        }
    }

    #[test]
    fn a_batch_folds_per_minute_hour_source_and_session() {
        let minute = 60_000;
        let mut fold = UsageFold::default();
        fold.add_event(&request("s", 5 * minute + 10, 3_000, 900));
        fold.add_event(&request("s", 5 * minute + 20, 2_000, 1_100));
        fold.add_event(&TelemetryEventRow {
            kind: "api_error".into(),
            at_ms: 2 * minute,
            duration_ms: Some(5_000),
            ..request("s", 0, 0, 0)
        });
        // Neither a request nor an error: no usage.
        fold.add_event(&TelemetryEventRow {
            kind: "tool_result".into(),
            ..request("s", minute, 0, 0)
        });
        fold.add_point(&point("s", "cost", 7 * minute, 4_000, 1));
        fold.add_point(&point("s", "tokens.input", 7 * minute, 1_500_000_000, 1));
        // A running total is not an increase; an unknown counter is not usage.
        fold.add_point(&point("s", "cost", 7 * minute, 9_999, 0));
        fold.add_point(&point("s", "commit.count", 7 * minute, 1_000_000_000, 1));

        let key = |bucket: i64| UsageKey {
            bucket,
            session_id: "s".into(),
            model: "m".into(),
            agent_type: String::new(),
            user_key: String::new(),
            organization_id: String::new(),
        };
        let requests = fold.usage[&(Rollup::Minute, key(5 * minute), UsageSource::Event)];
        assert_eq!(
            (
                requests.cost_nanos,
                requests.tokens[0],
                requests.requests,
                requests.errors
            ),
            (5_000, 200, 2, 0)
        );
        let error = fold.usage[&(Rollup::Minute, key(2 * minute), UsageSource::Event)];
        assert_eq!((error.requests, error.errors, error.cost_nanos), (0, 1, 0));
        let hour = fold.usage[&(Rollup::Hour, key(0), UsageSource::Event)];
        assert_eq!((hour.requests, hour.errors, hour.cost_nanos), (2, 1, 5_000));
        let points = fold.usage[&(Rollup::Minute, key(7 * minute), UsageSource::Point)];
        // Tokens are whole: 1.5 rounds to 2.
        assert_eq!((points.cost_nanos, points.tokens[0]), (4_000, 2));
        assert_eq!(fold.usage.len(), 5, "{:?}", fold.usage.keys());
        // Latency: requests only, each in its slot.
        let slots: Vec<i64> = fold
            .latency
            .keys()
            .filter(|(rollup, ..)| *rollup == Rollup::Minute)
            .map(|(_, _, slot)| *slot)
            .collect();
        assert_eq!(slots, [latency_slot(900), latency_slot(1_100)]);

        let session = fold.sessions["s"];
        assert_eq!((session.api_requests, session.usage_points), (2, 2));
        assert_eq!(
            (session.first_bucket, session.last_bucket),
            (2 * minute, 7 * minute)
        );
        // With requests, a new row counts the events alone; without, the points too.
        assert_eq!(session.counted_when_new(), session.events);
        let mut points_only = UsageFold::default();
        points_only.add_point(&point("p", "cost", minute, 4_000, 1));
        let session = points_only.sessions["p"];
        assert_eq!(session.counted_when_new().cost_nanos, 4_000);
    }

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
