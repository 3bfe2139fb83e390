//! Claude Code's own telemetry, stored beside the hook events it joins: one row per event
//! (`telemetry_events`) and per counter point (`telemetry_points`), written once for both
//! databases through the ledger's SQL. An exporter retries a batch it got no answer for, so
//! every row has a key made from what identifies it, and a row already there is counted as a
//! duplicate and left alone.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use super::ledger::LedgerSql;
use super::rows::StoredRow;
use super::sql::Value;
use crate::domain::telemetry::{
    TelemetryBatch, TelemetryEventRow, TelemetryOutcome, TelemetryPointRow, latency_slot,
};
use crate::domain::time::{DAY_MS, HOUR_MS, MINUTE_MS, floor_to};

const INSERT_EVENT: &str = "INSERT INTO telemetry_events (kind, dedup_key, session_id, \
    prompt_id, at_ms, sequence, user_id, user_email, account_uuid, organization_id, model, \
    cost_nanos, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, \
    duration_ms, status_code, attempt, request_id, agent_name, query_source, tool_name, \
    tool_use_id, success, decision, decision_source, error, prompt_length, prompt, agent_type) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
    ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31) \
    ON CONFLICT (dedup_key) DO NOTHING";

const INSERT_POINT: &str = "INSERT INTO telemetry_points (metric, dedup_key, session_id, \
    user_id, user_email, account_uuid, organization_id, model, value_nanos, start_ms, \
    time_ms, delta, agent_type) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
    ON CONFLICT (dedup_key) DO NOTHING";

/// Writes a batch in the writer's open transaction.
pub fn record<L: LedgerSql>(
    ledger: &mut L,
    batch: &TelemetryBatch,
) -> Result<TelemetryOutcome, L::Error> {
    let mut outcome = TelemetryOutcome::default();
    let mut fold = UsageFold::default();
    let mut count = |inserted: u64| {
        if inserted == 0 {
            outcome.duplicates += 1;
            false
        } else {
            outcome.stored += 1;
            true
        }
    };
    for e in &batch.events {
        let stored = count(ledger.execute(
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
                (&e.agent_type).into(),
            ],
        )?);
        if stored {
            fold.add_event(e);
        }
    }
    for p in &batch.points {
        let stored = count(ledger.execute(
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
                (&p.agent_type).into(),
            ],
        )?);
        if stored {
            fold.add_point(p);
        }
    }
    fold.write(ledger)?;
    Ok(outcome)
}

/// What one usage rollup row is keyed by. Absent keys are `""`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct UsageKey {
    bucket: i64,
    session_id: String,
    model: String,
    agent_type: String,
    user_key: String,
    organization_id: String,
}

impl UsageKey {
    fn new(
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

    fn params(&self) -> Vec<Value<'_>> {
        vec![
            self.bucket.into(),
            self.session_id.as_str().into(),
            self.model.as_str().into(),
            self.agent_type.as_str().into(),
            self.user_key.as_str().into(),
            self.organization_id.as_str().into(),
        ]
    }

    /// The key of the session-free totals this row adds to.
    fn without_session(&self) -> Self {
        Self {
            session_id: String::new(),
            ..self.clone()
        }
    }

    /// A totals row's key parameters: this key without its session, and the writer's shard.
    fn total_params(&self, shard: i64) -> Vec<Value<'_>> {
        vec![
            self.bucket.into(),
            self.model.as_str().into(),
            self.agent_type.as_str().into(),
            self.user_key.as_str().into(),
            self.organization_id.as_str().into(),
            shard.into(),
        ]
    }

    fn in_hour(&self) -> Self {
        Self {
            bucket: floor_to(self.bucket, HOUR_MS),
            ..self.clone()
        }
    }
}

/// The sums of a usage rollup row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct UsageSums {
    cost_nanos: i64,
    tokens: [i64; 4],
    requests: i64,
    errors: i64,
}

impl UsageSums {
    fn add(&mut self, other: &Self) {
        self.cost_nanos = self.cost_nanos.saturating_add(other.cost_nanos);
        for (sum, n) in self.tokens.iter_mut().zip(other.tokens) {
            *sum = sum.saturating_add(n);
        }
        self.requests += other.requests;
        self.errors += other.errors;
    }

    fn negated(&self) -> Self {
        Self {
            cost_nanos: self.cost_nanos.saturating_neg(),
            tokens: self.tokens.map(i64::saturating_neg),
            requests: -self.requests,
            errors: -self.errors,
        }
    }

    fn subtract(&mut self, other: &Self) {
        self.cost_nanos = self.cost_nanos.saturating_sub(other.cost_nanos);
        for (sum, n) in self.tokens.iter_mut().zip(other.tokens) {
            *sum = sum.saturating_sub(n);
        }
        self.requests -= other.requests;
        self.errors -= other.errors;
    }

    /// The sums as the upserts' last seven parameters.
    fn params(&self) -> [Value<'static>; 7] {
        let [input, output, cache_read, cache_creation] = self.tokens;
        [
            self.cost_nanos.into(),
            input.into(),
            output.into(),
            cache_read.into(),
            cache_creation.into(),
            self.requests.into(),
            self.errors.into(),
        ]
    }
}

/// Where a usage row's cost came from: `api_request`/`api_error` events, or counter points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum UsageSource {
    Event,
    Point,
}

impl UsageSource {
    fn as_str(self) -> &'static str {
        match self {
            Self::Event => "event",
            Self::Point => "point",
        }
    }
}

/// Which rollup a row goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rollup {
    Hour,
    Minute,
}

impl Rollup {
    /// A session's point rows in this rollup, by session-free key: what it counted in the
    /// totals before its first `api_request` event.
    fn select_points(self) -> &'static str {
        match self {
            Self::Hour => &SELECT_POINTS_HOUR,
            Self::Minute => &SELECT_POINTS,
        }
    }
}

/// A batch's additions to the usage rollups (minute and hour), the latency histograms and
/// the per-session sources, folded so that a batch of 512 requests of one session writes a
/// handful of rows; written in key order, so two writers never wait on each other in a cycle.
#[derive(Debug, Default)]
struct UsageFold {
    usage: BTreeMap<(Rollup, UsageKey, UsageSource), UsageSums>,
    latency: BTreeMap<(Rollup, UsageKey, i64), i64>,
    sessions: BTreeMap<String, SessionFold>,
}

/// A batch's additions to one session's row of `telemetry_sessions`.
#[derive(Debug, Clone, Copy)]
struct SessionFold {
    /// `api_request` events.
    api_requests: i64,
    /// Cost and token points (deltas).
    usage_points: i64,
    /// The sums of its `api_request` and `api_error` events.
    events: UsageSums,
    /// The sums of its points, which count only while it has no `api_request` event.
    points: UsageSums,
    /// Its first and last minute in the batch.
    first_bucket: i64,
    last_bucket: i64,
}

impl SessionFold {
    fn at(bucket: i64) -> Self {
        Self {
            api_requests: 0,
            usage_points: 0,
            events: UsageSums::default(),
            points: UsageSums::default(),
            first_bucket: bucket,
            last_bucket: bucket,
        }
    }

    /// The upsert's parameters: a new row counts the batch's points only when the batch
    /// brings no `api_request` event; a row already there adds them only while it has none
    /// (`?14`..`?20`, the events' sums alone, are what it adds otherwise).
    fn params<'a>(&self, session_id: &'a str) -> Vec<Value<'a>> {
        let mut counted = self.events;
        if self.api_requests == 0 {
            counted.add(&self.points);
        }
        let mut params: Vec<Value<'a>> = vec![
            session_id.into(),
            self.api_requests.into(),
            self.usage_points.into(),
            floor_to(self.first_bucket, DAY_MS).into(),
            self.first_bucket.into(),
            self.last_bucket.into(),
        ];
        params.extend(counted.params());
        params.extend(self.events.params());
        params
    }
}

impl UsageFold {
    fn add_event(&mut self, e: &TelemetryEventRow) {
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

    fn add_point(&mut self, p: &TelemetryPointRow) {
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
        session.usage_points += 1;
        session.points.add(&sums);
        self.add(minute, UsageSource::Point, &sums);
    }

    /// The session's fold, its minutes widened to `minute`'s.
    fn session(&mut self, minute: &UsageKey) -> &mut SessionFold {
        let session = self
            .sessions
            .entry(minute.session_id.clone())
            .or_insert_with(|| SessionFold::at(minute.bucket));
        session.first_bucket = session.first_bucket.min(minute.bucket);
        session.last_bucket = session.last_bucket.max(minute.bucket);
        session
    }

    fn add(&mut self, minute: UsageKey, source: UsageSource, sums: &UsageSums) {
        for (rollup, key) in [(Rollup::Hour, minute.in_hour()), (Rollup::Minute, minute)] {
            self.usage
                .entry((rollup, key, source))
                .or_default()
                .add(sums);
        }
    }

    /// Writes the fold: the sessions first (learning which now have `api_request` events),
    /// then the per-session rollups, then the session-free totals in key order.
    ///
    /// The totals hold each session's one truth, settled here: event rows always count, a
    /// session's point rows only while it has no `api_request` event, and when a session's
    /// first one arrives, its point rows already counted are taken back out. The sessions'
    /// upsert comes first and locks each session's row, so on PostgreSQL two writers settle
    /// one session in turn, and exactly one of them sees its first request.
    fn write<L: LedgerSql>(self, ledger: &mut L) -> Result<(), L::Error> {
        let mut has_requests: BTreeMap<&str, bool> = BTreeMap::new();
        let mut first_requests: Vec<&str> = Vec::new();
        for (session_id, session) in &self.sessions {
            let (requests_after, points_after) = ledger
                .query_first(&UPSERT_SESSION, &session.params(session_id), |row| {
                    Ok((row.int(0)?, row.int(1)?))
                })?
                .unwrap_or_default();
            let (api_requests, usage_points) = (session.api_requests, session.usage_points);
            // Its first request, after points that counted: those are taken back out.
            if api_requests > 0 && requests_after == api_requests && points_after > usage_points {
                first_requests.push(session_id);
            }
            has_requests.insert(session_id, requests_after > 0);
        }
        let mut totals: BTreeMap<(Rollup, UsageKey), UsageSums> = BTreeMap::new();
        // Before this batch's rows are added: its own points were never counted.
        for session_id in first_requests {
            for rollup in [Rollup::Hour, Rollup::Minute] {
                let counted =
                    ledger.query_rows(rollup.select_points(), &[session_id.into()], |row| {
                        Ok((
                            UsageKey {
                                bucket: row.int(0)?,
                                session_id: String::new(),
                                model: row.text(1)?,
                                agent_type: row.text(2)?,
                                user_key: row.text(3)?,
                                organization_id: row.text(4)?,
                            },
                            UsageSums {
                                cost_nanos: row.int(5)?,
                                tokens: [row.int(6)?, row.int(7)?, row.int(8)?, row.int(9)?],
                                requests: row.int(10)?,
                                errors: row.int(11)?,
                            },
                        ))
                    })?;
                let mut session_points = UsageSums::default();
                for (key, sums) in counted {
                    session_points.add(&sums);
                    totals.entry((rollup, key)).or_default().subtract(&sums);
                }
                // The hour rollup holds them all (the minute one may be pruned).
                if rollup == Rollup::Hour {
                    let mut params: Vec<Value<'_>> = vec![session_id.into()];
                    params.extend(session_points.negated().params());
                    ledger.execute(&SUBTRACT_SESSION_POINTS, &params)?;
                }
            }
        }
        let shard = ledger.rollup_shard();
        for ((rollup, key, source), sums) in &self.usage {
            let counts = *source == UsageSource::Event
                || !has_requests
                    .get(key.session_id.as_str())
                    .copied()
                    .unwrap_or(false);
            if counts {
                totals
                    .entry((*rollup, key.without_session()))
                    .or_default()
                    .add(sums);
            }
            let upsert = match rollup {
                Rollup::Hour => &UPSERT_USAGE_HOUR,
                Rollup::Minute => &UPSERT_USAGE,
            };
            let mut params = key.params();
            params.push(source.as_str().into());
            params.extend(sums.params());
            ledger.execute(upsert, &params)?;
        }
        let mut latency_totals: BTreeMap<(Rollup, UsageKey, i64), i64> = BTreeMap::new();
        for ((rollup, key, slot), requests) in &self.latency {
            *latency_totals
                .entry((*rollup, key.without_session(), *slot))
                .or_default() += requests;
            let upsert = match rollup {
                Rollup::Hour => &UPSERT_LATENCY_HOUR,
                Rollup::Minute => &UPSERT_LATENCY,
            };
            let mut params = key.params();
            params.extend::<[Value<'_>; 2]>([(*slot).into(), (*requests).into()]);
            ledger.execute(upsert, &params)?;
        }
        for ((rollup, key), sums) in &totals {
            let upsert = match rollup {
                Rollup::Hour => &UPSERT_TOTALS_HOUR,
                Rollup::Minute => &UPSERT_TOTALS,
            };
            let mut params = key.total_params(shard);
            params.extend(sums.params());
            ledger.execute(upsert, &params)?;
        }
        for ((rollup, key, slot), requests) in &latency_totals {
            let upsert = match rollup {
                Rollup::Hour => &UPSERT_LATENCY_TOTALS_HOUR,
                Rollup::Minute => &UPSERT_LATENCY_TOTALS,
            };
            let mut params = key.total_params(shard);
            params.extend::<[Value<'_>; 2]>([(*slot).into(), (*requests).into()]);
            ledger.execute(upsert, &params)?;
        }
        Ok(())
    }
}

/// `table.column = table.column + excluded.column`, saturating, for each of `columns`.
fn add_each(table: &str, columns: &[&str]) -> String {
    columns
        .iter()
        .map(|c| {
            let sum = super::sql::saturating_add(&format!("{table}.{c}"), &format!("excluded.{c}"));
            format!("{c} = {sum}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn upsert_usage(table: &str) -> String {
    format!(
        "INSERT INTO {table} (bucket, session_id, model, agent_type, user_key, organization_id, \
         source, cost_nanos, input_tokens, output_tokens, cache_read_tokens, \
         cache_creation_tokens, requests, errors) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
         ?10, ?11, ?12, ?13, ?14) ON CONFLICT (bucket, session_id, model, agent_type, user_key, \
         organization_id, source) DO UPDATE SET {}",
        add_each(table, &SUM_COLUMNS)
    )
}

fn upsert_latency(table: &str) -> String {
    format!(
        "INSERT INTO {table} (bucket, session_id, model, agent_type, user_key, organization_id, \
         slot, requests) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (bucket, \
         session_id, model, agent_type, user_key, organization_id, slot) DO UPDATE SET {}",
        add_each(table, &["requests"])
    )
}

static UPSERT_USAGE: LazyLock<String> = LazyLock::new(|| upsert_usage("usage_rollup"));
static UPSERT_USAGE_HOUR: LazyLock<String> = LazyLock::new(|| upsert_usage("usage_rollup_hour"));
static UPSERT_LATENCY: LazyLock<String> = LazyLock::new(|| upsert_latency("latency_rollup"));
static UPSERT_LATENCY_HOUR: LazyLock<String> =
    LazyLock::new(|| upsert_latency("latency_rollup_hour"));
/// A session's row: its counts, its minutes, and its one truth's sums (see
/// [`SessionFold::params`]), answering its counts after.
static UPSERT_SESSION: LazyLock<String> = LazyLock::new(|| {
    let t = "telemetry_sessions";
    let earlier = |c: &str| {
        format!(
            "{c} = CASE WHEN {t}.{c} IS NULL OR excluded.{c} < {t}.{c} THEN excluded.{c} ELSE {t}.{c} END"
        )
    };
    let sums = SUM_COLUMNS
        .iter()
        .enumerate()
        .map(|(n, c)| {
            let added = format!(
                "(CASE WHEN {t}.api_requests > 0 THEN CAST(?{} AS BIGINT) ELSE excluded.{c} END)",
                14 + n
            );
            format!(
                "{c} = {}",
                super::sql::saturating_add(&format!("{t}.{c}"), &added)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {t} (session_id, api_requests, usage_points, day, first_bucket, \
         last_bucket, {}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
         ON CONFLICT (session_id) DO UPDATE SET {}, {}, {}, last_bucket = CASE WHEN \
         {t}.last_bucket IS NULL OR excluded.last_bucket > {t}.last_bucket THEN \
         excluded.last_bucket ELSE {t}.last_bucket END, {sums} \
         RETURNING api_requests, usage_points",
        SUM_COLUMNS.join(", "),
        add_each(t, &["api_requests", "usage_points"]),
        earlier("day"),
        earlier("first_bucket"),
    )
});

/// Takes a session's points back out of its sums (`?2`..`?8`, negated) when its first
/// `api_request` event arrives.
static SUBTRACT_SESSION_POINTS: LazyLock<String> = LazyLock::new(|| {
    let sets = SUM_COLUMNS
        .iter()
        .enumerate()
        .map(|(n, c)| {
            let delta = format!("CAST(?{} AS BIGINT)", n + 2);
            format!("{c} = {}", super::sql::saturating_add(c, &delta))
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!("UPDATE telemetry_sessions SET {sets} WHERE session_id = ?1")
});

/// The sums' columns of a usage row (rollups and totals), in the upserts' order.
pub const SUM_COLUMNS: [&str; 7] = [
    "cost_nanos",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "requests",
    "errors",
];

/// The session-free key columns of the totals (`usage_totals`, `latency_totals`).
const TOTALS_KEY: &str = "bucket, model, agent_type, user_key, organization_id, shard";

fn upsert_totals(table: &str) -> String {
    format!(
        "INSERT INTO {table} ({TOTALS_KEY}, {}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
         ?10, ?11, ?12, ?13) ON CONFLICT ({TOTALS_KEY}) DO UPDATE SET {}",
        SUM_COLUMNS.join(", "),
        add_each(table, &SUM_COLUMNS)
    )
}

fn upsert_latency_totals(table: &str) -> String {
    format!(
        "INSERT INTO {table} ({TOTALS_KEY}, slot, requests) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, \
         ?8) ON CONFLICT ({TOTALS_KEY}, slot) DO UPDATE SET {}",
        add_each(table, &["requests"])
    )
}

fn select_points(table: &str) -> String {
    format!(
        "SELECT bucket, model, agent_type, user_key, organization_id, {} FROM {table} \
         WHERE session_id = ?1 AND source = 'point'",
        SUM_COLUMNS.join(", ")
    )
}

static UPSERT_TOTALS: LazyLock<String> = LazyLock::new(|| upsert_totals("usage_totals"));
static UPSERT_TOTALS_HOUR: LazyLock<String> = LazyLock::new(|| upsert_totals("usage_totals_hour"));
static UPSERT_LATENCY_TOTALS: LazyLock<String> =
    LazyLock::new(|| upsert_latency_totals("latency_totals"));
static UPSERT_LATENCY_TOTALS_HOUR: LazyLock<String> =
    LazyLock::new(|| upsert_latency_totals("latency_totals_hour"));
static SELECT_POINTS: LazyLock<String> = LazyLock::new(|| select_points("usage_rollup"));
static SELECT_POINTS_HOUR: LazyLock<String> = LazyLock::new(|| select_points("usage_rollup_hour"));
