//! Alerts, durably: one row per episode (a rule firing for one scope key, until it resolves),
//! written once for both databases through the ledger's SQL. A partial unique index on the
//! firing episodes of a rule and key makes "fire" an insert that at most one writer wins:
//! with several instances, or after a restart, an episode is never opened twice, so it is
//! never notified twice.

use super::ledger::LedgerSql;
use super::rows::{StoredRow, tool_call_columns_of, tool_call_from_row};
use super::sql::{Sql, Value};
use crate::domain::lifecycle::ToolCall;

/// One change to the alerts.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertOp {
    /// Opens an episode of `rule` for `scope_key`, unless one is open.
    Fire {
        rule: String,
        scope: String,
        scope_key: String,
        /// In millionths (USD, a rate, a count or seconds, as the rule's condition has it).
        value_micros: i64,
        threshold_micros: i64,
        window: Option<String>,
        at_ms: i64,
    },
    /// Closes the open episode `id`.
    Resolve { id: i64, at_ms: i64 },
    /// Notes that episode `id`'s firing (or resolution) reached its targets, or why not.
    Delivered {
        id: i64,
        resolution: bool,
        error: Option<String>,
    },
}

/// An episode as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRecord {
    pub id: i64,
    pub rule: String,
    pub scope: String,
    pub scope_key: String,
    /// `firing` or `resolved`.
    pub state: String,
    pub value_micros: i64,
    pub threshold_micros: i64,
    pub window: Option<String>,
    pub started_at: i64,
    pub resolved_at: Option<i64>,
    pub firing_delivered: bool,
    pub resolved_delivered: bool,
    pub delivery_error: Option<String>,
}

const FIRE: &str = "INSERT INTO alerts (rule, scope, scope_key, state, value_micros, \
    threshold_micros, time_window, started_at, firing_delivered, resolved_delivered) \
    VALUES (?1, ?2, ?3, 'firing', ?4, ?5, ?6, ?7, 0, 0) \
    ON CONFLICT (rule, scope_key) WHERE state = 'firing' DO NOTHING";

/// Applies `ops` in the writer's open transaction: per op, the episode's id when it changed
/// something (`None`: an episode already open, or one already resolved).
pub(crate) fn apply<L: LedgerSql>(
    ledger: &mut L,
    ops: &[AlertOp],
) -> Result<Vec<Option<i64>>, L::Error> {
    let mut applied = Vec::with_capacity(ops.len());
    for op in ops {
        applied.push(match op {
            AlertOp::Fire {
                rule,
                scope,
                scope_key,
                value_micros,
                threshold_micros,
                window,
                at_ms,
            } => ledger.insert_returning_id(
                FIRE,
                &[
                    rule.as_str().into(),
                    scope.as_str().into(),
                    scope_key.as_str().into(),
                    (*value_micros).into(),
                    (*threshold_micros).into(),
                    window.into(),
                    (*at_ms).into(),
                ],
            )?,
            AlertOp::Resolve { id, at_ms } => (ledger.execute(
                "UPDATE alerts SET state = 'resolved', resolved_at = ?2
                 WHERE id = ?1 AND state = 'firing'",
                &[(*id).into(), (*at_ms).into()],
            )? == 1)
                .then_some(*id),
            AlertOp::Delivered {
                id,
                resolution,
                error,
            } => {
                let column = if *resolution {
                    "resolved_delivered"
                } else {
                    "firing_delivered"
                };
                let delivered = i64::from(error.is_none());
                (ledger.execute(
                    &format!("UPDATE alerts SET {column} = ?2, delivery_error = ?3 WHERE id = ?1"),
                    &[(*id).into(), delivered.into(), error.into()],
                )? == 1)
                    .then_some(*id)
            }
        });
    }
    Ok(applied)
}

const COLUMNS: &str = "id, rule, scope, scope_key, state, value_micros, threshold_micros, \
    time_window, started_at, resolved_at, firing_delivered, resolved_delivered, delivery_error";

fn record<R: StoredRow>(row: &R) -> Result<AlertRecord, R::Error> {
    Ok(AlertRecord {
        id: row.int(0)?,
        rule: row.text(1)?,
        scope: row.text(2)?,
        scope_key: row.text(3)?,
        state: row.text(4)?,
        value_micros: row.int(5)?,
        threshold_micros: row.int(6)?,
        window: row.opt_text(7)?,
        started_at: row.int(8)?,
        resolved_at: row.opt_int(9)?,
        firing_delivered: row.int(10)? == 1,
        resolved_delivered: row.int(11)? == 1,
        delivery_error: row.opt_text(12)?,
    })
}

/// Every open episode.
pub(crate) fn firing<S: Sql>(sql: &mut S) -> Result<Vec<AlertRecord>, S::Error> {
    sql.query(
        &format!("SELECT {COLUMNS} FROM alerts WHERE state = 'firing' ORDER BY started_at, id"),
        &[],
        |row| record(row),
    )
}

/// The newest `limit` episodes, open or closed.
pub(crate) fn history<S: Sql>(sql: &mut S, limit: usize) -> Result<Vec<AlertRecord>, S::Error> {
    sql.query(
        &format!("SELECT {COLUMNS} FROM alerts ORDER BY started_at DESC, id DESC LIMIT ?1"),
        &[Value::from(limit)],
        |row| record(row),
    )
}

/// Events of `hook_event_type` per app in `range` (whole minutes), from the minute event
/// rollup.
pub(crate) fn events_per_app<S: Sql>(
    sql: &mut S,
    range: crate::domain::time::TimeRange,
    hook_event_type: &str,
) -> Result<Vec<(String, i64)>, S::Error> {
    use crate::domain::time::{MINUTE_MS, ceil_to, floor_to};
    let query = format!(
        "SELECT source_app, {} FROM event_rollup
         WHERE bucket >= ?1 AND bucket < ?2 AND hook_event_type = ?3
         GROUP BY source_app",
        sql.dialect().sum("events")
    );
    let args = [
        Value::Int(floor_to(range.start_ms, MINUTE_MS)),
        Value::Int(ceil_to(range.end_ms, MINUTE_MS)),
        Value::Text(hook_event_type),
    ];
    sql.query(&query, &args, |row| Ok((row.text(0)?, row.int(1)?)))
}

/// Per app seen since `since_ms`: when it was last heard from, and on how many distinct UTC
/// days its sessions started. From the sessions' rows (one per session), never the events.
pub(crate) fn app_activity<S: Sql>(
    sql: &mut S,
    since_ms: i64,
) -> Result<Vec<(String, i64, i64)>, S::Error> {
    sql.query(
        "SELECT source_app, max(last_seen), count(DISTINCT started_at / 86400000)
         FROM sessions WHERE seen_minute >= ?1 GROUP BY source_app",
        &[Value::Int(since_ms)],
        |row| Ok((row.text(0)?, row.int(1)?, row.int(2)?)),
    )
}

/// Tool calls running since `started_before` or earlier in sessions that have not ended and
/// were seen since `idle_cutoff`, oldest first, at most `limit`. Calls that launched a
/// subagent are left out: the subagent is what works meanwhile, and is judged itself.
pub(crate) fn running_calls<S: Sql>(
    sql: &mut S,
    started_before: i64,
    idle_cutoff: i64,
    limit: usize,
) -> Result<Vec<ToolCall>, S::Error> {
    sql.query(
        &format!(
            "SELECT {} FROM tool_calls t JOIN sessions s ON s.session_id = t.session_id
             WHERE t.status = 'running' AND t.spawn_type IS NULL AND t.started_at <= ?1
               AND s.ended_at IS NULL AND s.last_seen >= ?2
             ORDER BY t.started_at LIMIT ?3",
            tool_call_columns_of("t")
        ),
        &[
            Value::Int(started_before),
            Value::Int(idle_cutoff),
            Value::from(limit),
        ],
        |row| tool_call_from_row(row),
    )
}
