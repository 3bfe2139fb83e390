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
use crate::domain::team::ActivityFold;
use crate::domain::telemetry::{
    Rollup, SessionFold, TelemetryBatch, TelemetryOutcome, UsageFold, UsageKey, UsageSource,
    UsageSums,
};
use crate::domain::time::{DAY_MS, floor_to};

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
    time_ms, delta, agent_type, series) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
    ON CONFLICT (dedup_key) DO NOTHING";

/// Adds to a person's activity in an hour (`domain::team`), saturating.
static UPSERT_ACTIVITY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO activity_rollup_hour (bucket, user_key, session_id, metric, value) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (bucket, user_key, session_id, metric) \
         DO UPDATE SET {}",
        add_each("activity_rollup_hour", &["value"])
    )
});

/// What a series of running totals has counted so far: the sum of its stored increases
/// (bounded by its largest total, so it cannot overflow), read by `telemetry_points_series`.
const COUNTED_IN_SERIES: &str =
    "SELECT CAST(coalesce(sum(value_nanos), 0) AS BIGINT) FROM telemetry_points WHERE series = ?1";

/// Writes a batch in the writer's open transaction.
pub(crate) fn record<L: LedgerSql>(
    ledger: &mut L,
    batch: &TelemetryBatch,
) -> Result<TelemetryOutcome, L::Error> {
    let mut outcome = TelemetryOutcome::default();
    let mut fold = UsageFold::default();
    let mut activity = ActivityFold::default();
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
            activity.add_event(e);
        }
    }
    for p in &batch.points {
        // A running total is stored as its increase over what its series has counted.
        let increase;
        let p = match &p.series {
            Some(series) if p.delta != 1 => {
                let counted = ledger
                    .query_first(COUNTED_IN_SERIES, &[series.as_str().into()], |row| {
                        row.int(0)
                    })?
                    .unwrap_or(0);
                increase = p.clone().into_increase(counted);
                &increase
            }
            _ => p,
        };
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
                (&p.series).into(),
            ],
        )?);
        if stored {
            fold.add_point(p);
            activity.add_point(p);
        }
    }
    write_fold(fold, ledger)?;
    for (key, value) in &activity.rows {
        ledger.execute(
            &UPSERT_ACTIVITY,
            &[
                key.bucket.into(),
                key.user_key.as_str().into(),
                key.session_id.as_str().into(),
                key.metric.as_str().into(),
                (*value).into(),
            ],
        )?;
    }
    Ok(outcome)
}

fn key_params(key: &UsageKey) -> Vec<Value<'_>> {
    vec![
        key.bucket.into(),
        key.session_id.as_str().into(),
        key.model.as_str().into(),
        key.agent_type.as_str().into(),
        key.user_key.as_str().into(),
        key.organization_id.as_str().into(),
    ]
}

/// A totals row's key parameters: this key without its session, and the writer's shard.
fn total_params(key: &UsageKey, shard: i64) -> Vec<Value<'_>> {
    vec![
        key.bucket.into(),
        key.model.as_str().into(),
        key.agent_type.as_str().into(),
        key.user_key.as_str().into(),
        key.organization_id.as_str().into(),
        shard.into(),
    ]
}

/// The sums as the upserts' last seven parameters.
fn sums_params(sums: &UsageSums) -> [Value<'static>; 7] {
    let [input, output, cache_read, cache_creation] = sums.tokens;
    [
        sums.cost_nanos.into(),
        input.into(),
        output.into(),
        cache_read.into(),
        cache_creation.into(),
        sums.requests.into(),
        sums.errors.into(),
    ]
}

/// The upsert's parameters: a new row counts the batch's points only when the batch
/// brings no `api_request` event; a row already there adds them only while it has none
/// (`?14`..`?20`, the events' sums alone, are what it adds otherwise).
fn session_params<'a>(session: &SessionFold, session_id: &'a str) -> Vec<Value<'a>> {
    let counted = session.counted_when_new();
    let mut params: Vec<Value<'a>> = vec![
        session_id.into(),
        session.api_requests.into(),
        session.usage_points.into(),
        floor_to(session.first_bucket, DAY_MS).into(),
        session.first_bucket.into(),
        session.last_bucket.into(),
    ];
    params.extend(sums_params(&counted));
    params.extend(sums_params(&session.events));
    params.push(Value::OptText(session.agent));
    params
}

/// A session's point rows in a rollup, by session-free key: what it counted in the totals
/// before its first `api_request` event.
fn points_of(rollup: Rollup) -> &'static str {
    match rollup {
        Rollup::Hour => &SELECT_POINTS_HOUR,
        Rollup::Minute => &SELECT_POINTS,
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
fn write_fold<L: LedgerSql>(fold: UsageFold, ledger: &mut L) -> Result<(), L::Error> {
    let mut has_requests: BTreeMap<&str, bool> = BTreeMap::new();
    let mut first_requests: Vec<&str> = Vec::new();
    for (session_id, session) in &fold.sessions {
        let (requests_after, points_after) = ledger
            .query_first(
                &UPSERT_SESSION,
                &session_params(session, session_id),
                |row| Ok((row.int(0)?, row.int(1)?)),
            )?
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
            let counted = ledger.query_rows(points_of(rollup), &[session_id.into()], |row| {
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
                params.extend(sums_params(&session_points.negated()));
                ledger.execute(&SUBTRACT_SESSION_POINTS, &params)?;
            }
        }
    }
    let shard = ledger.rollup_shard();
    for ((rollup, key, source), sums) in &fold.usage {
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
        let mut params = key_params(key);
        params.push(source.as_str().into());
        params.extend(sums_params(sums));
        ledger.execute(upsert, &params)?;
    }
    let mut latency_totals: BTreeMap<(Rollup, UsageKey, i64), i64> = BTreeMap::new();
    for ((rollup, key, slot), requests) in &fold.latency {
        *latency_totals
            .entry((*rollup, key.without_session(), *slot))
            .or_default() += requests;
        let upsert = match rollup {
            Rollup::Hour => &UPSERT_LATENCY_HOUR,
            Rollup::Minute => &UPSERT_LATENCY,
        };
        let mut params = key_params(key);
        params.extend::<[Value<'_>; 2]>([(*slot).into(), (*requests).into()]);
        ledger.execute(upsert, &params)?;
    }
    for ((rollup, key), sums) in &totals {
        let upsert = match rollup {
            Rollup::Hour => &UPSERT_TOTALS_HOUR,
            Rollup::Minute => &UPSERT_TOTALS,
        };
        let mut params = total_params(key, shard);
        params.extend(sums_params(sums));
        ledger.execute(upsert, &params)?;
    }
    for ((rollup, key, slot), requests) in &latency_totals {
        let upsert = match rollup {
            Rollup::Hour => &UPSERT_LATENCY_TOTALS_HOUR,
            Rollup::Minute => &UPSERT_LATENCY_TOTALS,
        };
        let mut params = total_params(key, shard);
        params.extend::<[Value<'_>; 2]>([(*slot).into(), (*requests).into()]);
        ledger.execute(upsert, &params)?;
    }
    Ok(())
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
/// [`session_params`]), answering its counts after.
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
         last_bucket, {}, agent) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, \
         ?13, ?21) ON CONFLICT (session_id) DO UPDATE SET agent = coalesce({t}.agent, \
         excluded.agent), {}, {}, {}, last_bucket = CASE WHEN \
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
