//! The reads both stores share, written once over [`Sql`]: each runs on a reader's connection
//! of either database (`sqlite/mod.rs` and `postgres/mod.rs` implement [`Sql`]), with the
//! dialects' differences taken from [`Dialect`](super::sql::Dialect).
//!
//! Aggregates come from the rollups: hour rows for whole hours, minute rows for the whole
//! minutes around them, and the detail rows only for the partial minutes at the range's edges
//! (see [`range_params`]). No read scans a range's raw events.

use super::rows::{
    CHAT_QUERY, EVENT_COLUMNS, PENDING_SQL, event_from_row, execution_totals_from_row,
    range_params, stored_chat,
};
use super::sql::{Param, Sql};
use super::{ActiveAgents, FilterOptions, StoredChat, StoredEvent};
use crate::domain::lifecycle::MAIN_AGENT_TYPE;
use crate::domain::time::{HOUR_MS, MINUTE_MS, TimeRange, floor_to};
use crate::domain::views::{ExecutionTotals, ToolTotals};
use crate::store::rows::StoredRow;

/// Finished executions in a range: hour rollups for whole hours, minute rollups for the whole
/// minutes around them, and finished agents in the partial minutes at the edges. Parameters
/// are [`range_params`].
const EXECUTION_SOURCE: &str = "
    SELECT agent_type, executions, successes, failures, duration_sum_ms, duration_count,
           tokens, cost_nanos
    FROM execution_rollup_hour WHERE bucket >= {3} AND bucket < {4}
    UNION ALL
    SELECT agent_type, executions, successes, failures, duration_sum_ms, duration_count,
           tokens, cost_nanos
    FROM execution_rollup
    WHERE (bucket >= {5} AND bucket < {6}) OR (bucket >= {7} AND bucket < {8})
    UNION ALL
    SELECT agent_type, 1, CASE WHEN status = 'completed' THEN 1 ELSE 0 END,
           CASE WHEN status = 'failed' THEN 1 ELSE 0 END, coalesce(duration_ms, 0),
           CASE WHEN duration_ms IS NULL THEN 0 ELSE 1 END, total_tokens, cost_nanos
    FROM agents
    WHERE status IN ('completed', 'failed') AND ended_at >= {1} AND ended_at < {9}
    UNION ALL
    SELECT agent_type, 1, CASE WHEN status = 'completed' THEN 1 ELSE 0 END,
           CASE WHEN status = 'failed' THEN 1 ELSE 0 END, coalesce(duration_ms, 0),
           CASE WHEN duration_ms IS NULL THEN 0 ELSE 1 END, total_tokens, cost_nanos
    FROM agents
    WHERE status IN ('completed', 'failed') AND ended_at >= {10} AND ended_at < {2}";

/// The seven sums of an execution rollup, each saturating.
fn execution_sums<S: Sql>(sql: &S) -> String {
    [
        "executions",
        "successes",
        "failures",
        "duration_sum_ms",
        "duration_count",
        "tokens",
        "cost_nanos",
    ]
    .map(|column| sql.dialect().sum(column))
    .join(", ")
}

fn range_args(range: TimeRange) -> Vec<Param> {
    range_params(range).into_iter().map(Param::Int).collect()
}

/// Execution sums per agent type, for executions that ended in `range`.
pub fn execution_totals<S: Sql>(
    sql: &mut S,
    range: TimeRange,
) -> Result<Vec<ExecutionTotals>, S::Error> {
    let query = format!(
        "SELECT agent_type, {} FROM ({EXECUTION_SOURCE}) source GROUP BY agent_type",
        execution_sums(sql)
    );
    sql.query(&query, &range_args(range), |row| {
        execution_totals_from_row(row, 0)
    })
}

/// The main agents' transcript usage per bucket of `bucket_ms` from `range.start_ms` (one
/// bucket for the whole range when `bucket_ms` is `None`), as totals of type `main` with no
/// executions: tokens and cost only.
pub fn session_usage<S: Sql>(
    sql: &mut S,
    range: TimeRange,
    bucket_ms: Option<i64>,
) -> Result<Vec<(i64, ExecutionTotals)>, S::Error> {
    let bucket_ms = bucket_ms.unwrap_or(range.duration_ms().max(1));
    let dialect = sql.dialect();
    let query = format!(
        "SELECT ({{1}} + (ts - {{1}}) / {{3}} * {{3}}) AS slot, {}, {}
         FROM session_usage WHERE ts >= {{1}} AND ts < {{2}} GROUP BY slot",
        dialect.sum("total_tokens"),
        dialect.sum("cost_nanos")
    );
    let args = [range.start_ms, range.end_ms, bucket_ms].map(Param::Int);
    sql.query(&query, &args, |row| {
        Ok((
            row.int(0)?,
            ExecutionTotals {
                agent_type: MAIN_AGENT_TYPE.to_owned(),
                tokens: row.int(1)?,
                cost_nanos: row.int(2)?,
                ..ExecutionTotals::default()
            },
        ))
    })
}

/// Execution sums per (bucket, agent type); `range` ends are multiples of `bucket_ms`, itself a
/// whole number of minutes.
pub fn execution_timeline<S: Sql>(
    sql: &mut S,
    range: TimeRange,
    bucket_ms: i64,
) -> Result<Vec<(i64, ExecutionTotals)>, S::Error> {
    let table = if bucket_ms % HOUR_MS == 0 {
        "execution_rollup_hour"
    } else {
        "execution_rollup"
    };
    let query = format!(
        "SELECT ({{1}} + (bucket - {{1}}) / {{3}} * {{3}}) AS slot, agent_type, {}
         FROM {table} WHERE bucket >= {{1}} AND bucket < {{2}}
         GROUP BY slot, agent_type",
        execution_sums(sql)
    );
    let args = [range.start_ms, range.end_ms, bucket_ms].map(Param::Int);
    sql.query(&query, &args, |row| {
        Ok((row.int(0)?, execution_totals_from_row(row, 1)?))
    })
}

/// Tool calls per (tool, agent type) counted in `range`.
pub fn tool_totals<S: Sql>(sql: &mut S, range: TimeRange) -> Result<Vec<ToolTotals>, S::Error> {
    let query = format!(
        "SELECT tool_name, agent_type, {} FROM (
             SELECT tool_name, agent_type, calls FROM tool_rollup_hour
             WHERE bucket >= {{3}} AND bucket < {{4}}
             UNION ALL
             SELECT tool_name, agent_type, calls FROM tool_rollup
             WHERE (bucket >= {{5}} AND bucket < {{6}}) OR (bucket >= {{7}} AND bucket < {{8}})
             UNION ALL
             SELECT tool_name, agent_type, 1 FROM tool_calls
             WHERE (counted_at >= {{1}} AND counted_at < {{9}})
                OR (counted_at >= {{10}} AND counted_at < {{2}})
         ) source GROUP BY tool_name, agent_type",
        sql.dialect().sum("calls")
    );
    sql.query(&query, &range_args(range), |row| {
        Ok(ToolTotals {
            tool_name: row.text(0)?,
            agent_type: row.text(1)?,
            calls: row.int(2)?,
        })
    })
}

/// Running subagents plus open sessions, seen at or after `idle_cutoff_ms`.
pub fn active_agents<S: Sql>(sql: &mut S, idle_cutoff_ms: i64) -> Result<ActiveAgents, S::Error> {
    let args = [idle_cutoff_ms, floor_to(idle_cutoff_ms, MINUTE_MS)].map(Param::Int);
    let found = sql.query_first(
        "SELECT count(*), min(last_seen) FROM (
             SELECT last_seen FROM agents
              WHERE status = 'running' AND seen_minute >= {2} AND last_seen >= {1}
             UNION ALL
             SELECT last_seen FROM sessions
              WHERE ended_at IS NULL AND seen_minute >= {2} AND last_seen >= {1}) active",
        &args,
        |row| {
            Ok(ActiveAgents {
                count: row.int(0)?,
                least_recently_seen_ms: row.opt_int(1)?,
            })
        },
    )?;
    Ok(found.unwrap_or(ActiveAgents {
        count: 0,
        least_recently_seen_ms: None,
    }))
}

/// The events with these row ids (at most [`super::MAX_EVENTS_BY_ID`]), by id.
pub fn events_by_id<S: Sql>(sql: &mut S, ids: &[i64]) -> Result<Vec<StoredEvent>, S::Error> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    ids.truncate(super::MAX_EVENTS_BY_ID);
    let (listed, arg) = sql.dialect().in_id_list("id", "{1}", &ids);
    let query = format!("SELECT {EVENT_COLUMNS} FROM events WHERE {listed} ORDER BY id");
    sql.query(&query, &[arg], |row| event_from_row(row))
}

/// Human-in-the-loop requests still pending, newest first.
pub fn pending_requests<S: Sql>(sql: &mut S, limit: usize) -> Result<Vec<StoredEvent>, S::Error> {
    let query = format!("SELECT {EVENT_COLUMNS} FROM events {PENDING_SQL}");
    sql.query(&query, &[Param::from(limit)], |row| event_from_row(row))
}

/// The chat of event `id`, if it has one.
pub fn event_chat<S: Sql>(sql: &mut S, id: i64) -> Result<Option<StoredChat>, S::Error> {
    let query = format!("{CHAT_QUERY}{{1}}");
    let found = sql.query_first(&query, &[Param::Int(id)], |row| {
        Ok(stored_chat(
            row.opt_bytes(0)?,
            row.opt_int(1)?,
            row.opt_text(2)?,
        ))
    })?;
    Ok(found.flatten())
}

/// The most recently seen apps and sessions, and the event types, `limit` of each.
pub fn filter_options<S: Sql>(sql: &mut S, limit: usize) -> Result<FilterOptions, S::Error> {
    let mut strings = |query: &str| sql.query(query, &[Param::from(limit)], |row| row.text(0));
    Ok(FilterOptions {
        source_apps: strings(
            "SELECT source_app FROM sessions GROUP BY source_app
             ORDER BY max(seen_minute) DESC LIMIT {1}",
        )?,
        session_ids: strings(
            "SELECT session_id FROM sessions ORDER BY seen_minute DESC, last_seen DESC LIMIT {1}",
        )?,
        hook_event_types: strings(
            "SELECT hook_event_type FROM event_types ORDER BY hook_event_type LIMIT {1}",
        )?,
    })
}
