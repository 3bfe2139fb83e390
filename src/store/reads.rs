//! The reads both stores share, written once over [`Sql`]: each runs on a reader's connection
//! of either database (`sqlite/mod.rs` and `postgres/mod.rs` implement [`Sql`]), with the
//! dialects' differences taken from [`Dialect`](super::sql::Dialect).
//!
//! Aggregates come from the rollups: hour rows for whole hours, minute rows for the whole
//! minutes around them, and the detail rows only for the partial minutes at the range's edges
//! (see [`range_params`]). No read scans a range's raw events.

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::value::RawValue;

use super::alerts::AlertRecord;
use super::read_pool::ReaderConnection;
use super::rows::{
    CHAT_QUERY, EVENT_COLUMNS, MAX_DETAIL_TOOL_CALLS, PENDING_SQL, SUBAGENT_RECORD_COLUMNS,
    TOOL_CALL_COLUMNS, event_from_row, execution_totals_from_row, main_agent_record, page,
    range_params, session_record, stored_chat, subagent_record, tool_call_from_row,
};
use super::sql::{Sql, Value};
use super::telemetry_sessions::{
    MEASURED_COLUMNS, measured_from, merge_by_last_seen, telemetry_agent_from,
    telemetry_only_session, telemetry_only_sessions,
};
use super::{DatabaseStore, StoreError};
use super::{
    EventPage, EventQuery, FilterOptions, SortOrder, StoredChat, StoredEvent, attribution,
};
use crate::domain::attribution::Activity;
use crate::domain::lifecycle::{AgentStatus, MAIN_AGENT_TYPE, ToolCall};
use crate::domain::pricing::nanos_to_usd;
use crate::domain::sessions::{
    ActiveAgents, AgentDetail, AgentRecord, AgentStatusFilter, PromptUsage, SeenBy, SessionDetail,
    SessionRecord, TelemetryUsage, TokenCounts, is_telemetry_app,
};
use crate::domain::team::{TeamBucket, TeamView};
use crate::domain::time::{HOUR_MS, MINUTE_MS, TimeRange, floor_to};
use crate::domain::trace::Span;
use crate::domain::usage::{UsageFilter, UsageGroup, UsagePage, UsagePoint, UsageRow};
use crate::domain::views::{ExecutionTotals, ToolTotals};
use crate::store::rows::StoredRow;

/// Finished executions in a range: hour rollups for whole hours, minute rollups for the whole
/// minutes around them, and finished agents in the partial minutes at the edges. Parameters
/// are [`range_params`].
const EXECUTION_SOURCE: &str = "
    SELECT agent_type, executions, successes, failures, duration_sum_ms, duration_count,
           tokens, cost_nanos
    FROM execution_rollup_hour WHERE bucket >= ?3 AND bucket < ?4
    UNION ALL
    SELECT agent_type, executions, successes, failures, duration_sum_ms, duration_count,
           tokens, cost_nanos
    FROM execution_rollup
    WHERE (bucket >= ?5 AND bucket < ?6) OR (bucket >= ?7 AND bucket < ?8)
    UNION ALL
    SELECT agent_type, 1, CASE WHEN status = 'completed' THEN 1 ELSE 0 END,
           CASE WHEN status = 'failed' THEN 1 ELSE 0 END, coalesce(duration_ms, 0),
           CASE WHEN duration_ms IS NULL THEN 0 ELSE 1 END, total_tokens, cost_nanos
    FROM agents
    WHERE status IN ('completed', 'failed') AND ended_at >= ?1 AND ended_at < ?9
    UNION ALL
    SELECT agent_type, 1, CASE WHEN status = 'completed' THEN 1 ELSE 0 END,
           CASE WHEN status = 'failed' THEN 1 ELSE 0 END, coalesce(duration_ms, 0),
           CASE WHEN duration_ms IS NULL THEN 0 ELSE 1 END, total_tokens, cost_nanos
    FROM agents
    WHERE status IN ('completed', 'failed') AND ended_at >= ?10 AND ended_at < ?2";

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

fn range_args(range: TimeRange) -> [Value<'static>; 10] {
    range_params(range).map(Value::Int)
}

/// Execution sums per agent type, for executions that ended in `range`.
pub(crate) fn execution_totals<S: Sql>(
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
pub(crate) fn session_usage<S: Sql>(
    sql: &mut S,
    range: TimeRange,
    bucket_ms: Option<i64>,
) -> Result<Vec<(i64, ExecutionTotals)>, S::Error> {
    let bucket_ms = bucket_ms.unwrap_or(range.duration_ms().max(1));
    let dialect = sql.dialect();
    let query = format!(
        "SELECT (?1 + (ts - ?1) / ?3 * ?3) AS slot, {}, {}
         FROM session_usage WHERE ts >= ?1 AND ts < ?2 GROUP BY slot",
        dialect.sum("total_tokens"),
        dialect.sum("cost_nanos")
    );
    let args = [range.start_ms, range.end_ms, bucket_ms].map(Value::Int);
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
pub(crate) fn execution_timeline<S: Sql>(
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
        "SELECT (?1 + (bucket - ?1) / ?3 * ?3) AS slot, agent_type, {}
         FROM {table} WHERE bucket >= ?1 AND bucket < ?2
         GROUP BY slot, agent_type",
        execution_sums(sql)
    );
    let args = [range.start_ms, range.end_ms, bucket_ms].map(Value::Int);
    sql.query(&query, &args, |row| {
        Ok((row.int(0)?, execution_totals_from_row(row, 1)?))
    })
}

/// Tool calls per (tool, agent type) counted in `range`: each call once. Hook calls are
/// counted from the rollups (and the raw rows at the range's partial minutes); Claude Code's
/// `tool_result` events, by their time, where the hooks did not see the call
/// ([`TELEMETRY_ONLY_CALL`]), as the trace joins them (`domain::trace::join_telemetry`).
/// A telemetry-only call is counted as the main agent's: `tool_result` names no agent.
///
/// Telemetry-only calls are read from the raw `telemetry_events` (the `at_ms` index), so
/// they leave this view when retention prunes raw rows, while hook calls stay in the hour
/// rollups; a range wholly in the pruned past shows the hooks' calls only.
pub(crate) fn tool_totals<S: Sql>(
    sql: &mut S,
    range: TimeRange,
) -> Result<Vec<ToolTotals>, S::Error> {
    let query = format!(
        "SELECT tool_name, agent_type, {} FROM (
             SELECT tool_name, agent_type, calls FROM tool_rollup_hour
             WHERE bucket >= ?3 AND bucket < ?4
             UNION ALL
             SELECT tool_name, agent_type, calls FROM tool_rollup
             WHERE (bucket >= ?5 AND bucket < ?6) OR (bucket >= ?7 AND bucket < ?8)
             UNION ALL
             SELECT tool_name, agent_type, 1 FROM tool_calls
             WHERE (counted_at >= ?1 AND counted_at < ?9)
                OR (counted_at >= ?10 AND counted_at < ?2)
             UNION ALL
             SELECT coalesce(tool_name, ''), 'main', 1 FROM telemetry_events e
             WHERE at_ms >= ?1 AND at_ms < ?2 AND kind = 'tool_result'
               AND {TELEMETRY_ONLY_CALL}
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

/// A `tool_result` event `e` whose call the hooks did not see: its session has no hook
/// events, or it has a `tool_use_id` that no hook call of the session's agents has (the
/// main agent's calls are keyed by the session id; a subagent's by its own key, found
/// through the session's agents). In a session the hooks saw, a result without an id is
/// taken to be the hooks' call, as the trace joins it by tool name and time. Every probe is
/// an index lookup (`sessions`' key, `agents_session`, `tool_calls_by_agent`).
const TELEMETRY_ONLY_CALL: &str =
    "(NOT EXISTS (SELECT 1 FROM sessions s WHERE s.session_id = e.session_id)
      OR (e.tool_use_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM tool_calls c
                          WHERE c.agent_key = e.session_id AND c.tool_use_id = e.tool_use_id)
          AND NOT EXISTS (SELECT 1 FROM agents a JOIN tool_calls c
                              ON c.agent_key = a.agent_key AND c.tool_use_id = e.tool_use_id
                          WHERE a.session_id = e.session_id)))";

/// The main agents of sessions only telemetry has seen (no end: they are open) and last seen
/// in a minute at or after `?2`, each with when it was last seen (its newest event, or its
/// newest counter minute), through `telemetry_sessions_seen` and the events' session index.
const TELEMETRY_ONLY_LAST_SEEN: &str =
    "SELECT CASE WHEN newest > t_last THEN newest ELSE t_last END
         AS last_seen
     FROM (SELECT t.last_bucket AS t_last,
                  coalesce((SELECT max(e.at_ms) FROM telemetry_events e
                            WHERE e.session_id = t.session_id), t.last_bucket) AS newest
           FROM telemetry_sessions t
           WHERE t.last_bucket >= ?2
             AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.session_id = t.session_id)) seen";

/// Running subagents plus open sessions, seen at or after `idle_cutoff_ms`: a session only
/// telemetry has seen is open while it is seen, as the sessions list shows it.
pub(crate) fn active_agents<S: Sql>(
    sql: &mut S,
    idle_cutoff_ms: i64,
) -> Result<ActiveAgents, S::Error> {
    let args = [idle_cutoff_ms, floor_to(idle_cutoff_ms, MINUTE_MS)].map(Value::Int);
    let found = sql.query_first(
        &format!(
            "SELECT count(*), min(last_seen) FROM (
                 SELECT last_seen FROM agents
                  WHERE status = 'running' AND seen_minute >= ?2 AND last_seen >= ?1
                 UNION ALL
                 SELECT last_seen FROM sessions
                  WHERE ended_at IS NULL AND seen_minute >= ?2 AND last_seen >= ?1
                 UNION ALL
                 SELECT last_seen FROM ({TELEMETRY_ONLY_LAST_SEEN}) told WHERE last_seen >= ?1
             ) active"
        ),
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
pub(crate) fn events_by_id<S: Sql>(sql: &mut S, ids: &[i64]) -> Result<Vec<StoredEvent>, S::Error> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    ids.truncate(super::MAX_EVENTS_BY_ID);
    let (listed, arg) = sql.dialect().in_id_list("id", "?1", &ids);
    let query = format!("SELECT {EVENT_COLUMNS} FROM events WHERE {listed} ORDER BY id");
    sql.query(&query, &[Value::Text(&arg)], |row| event_from_row(row))
}

/// Human-in-the-loop requests still pending, newest first.
pub(crate) fn pending_requests<S: Sql>(
    sql: &mut S,
    limit: usize,
) -> Result<Vec<StoredEvent>, S::Error> {
    let query = format!("SELECT {EVENT_COLUMNS} FROM events {PENDING_SQL}");
    sql.query(&query, &[Value::from(limit)], |row| event_from_row(row))
}

/// The chat of event `id`, if it has one.
pub(crate) fn event_chat<S: Sql>(sql: &mut S, id: i64) -> Result<Option<StoredChat>, S::Error> {
    let query = format!("{CHAT_QUERY}?1");
    let found = sql.query_first(&query, &[Value::Int(id)], |row| {
        Ok(stored_chat(
            row.opt_bytes(0)?,
            row.opt_int(1)?,
            row.opt_text(2)?,
        ))
    })?;
    Ok(found.flatten())
}

/// The most recently seen apps and sessions, and the event types, `limit` of each.
pub(crate) fn filter_options<S: Sql>(sql: &mut S, limit: usize) -> Result<FilterOptions, S::Error> {
    let mut strings = |query: &str| sql.query(query, &[Value::from(limit)], |row| row.text(0));
    Ok(FilterOptions {
        source_apps: strings(
            "SELECT source_app FROM source_apps ORDER BY last_seen DESC, source_app LIMIT ?1",
        )?,
        session_ids: strings(
            "SELECT session_id FROM sessions ORDER BY seen_minute DESC, last_seen DESC LIMIT ?1",
        )?,
        hook_event_types: strings(
            "SELECT hook_event_type FROM event_types ORDER BY hook_event_type LIMIT ?1",
        )?,
    })
}

/// A filtered page of events, `limit` at most, in `(ts, id)` order from the cursor on.
pub(crate) fn events<'q, S: Sql>(sql: &mut S, q: &'q EventQuery) -> Result<EventPage, S::Error> {
    let dialect = sql.dialect();
    let mut clauses: Vec<String> = Vec::new();
    let mut args: Vec<Value<'q>> = Vec::new();
    // Each `?` in `clause` is the next parameter, `value`.
    let mut push = |clause: &str, value: Value<'q>| {
        args.push(value);
        clauses.push(clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(app) = &q.source_app {
        push("source_app = ?", app.as_str().into());
    }
    if let Some(session) = &q.session_id {
        push(
            "(session_id = ? OR sent_session_id = ?)",
            session.as_str().into(),
        );
    }
    if let Some(kind) = &q.hook_event_type {
        push("hook_event_type = ?", kind.as_str().into());
    }
    if let Some(tool) = &q.tool_name {
        push("tool_name = ?", tool.as_str().into());
    }
    if let Some(since) = q.since {
        push("ts >= ?", since.into());
    }
    if let Some(until) = q.until {
        push("ts < ?", until.into());
    }
    if let Some(text) = &q.text {
        push(&dialect.contains("payload", "?"), text.as_str().into());
    }
    let (comparison, direction) = match q.order {
        SortOrder::Ascending => (">", "ASC"),
        SortOrder::Descending => ("<", "DESC"),
    };
    if let Some(after) = q.after {
        args.push(after.timestamp.into());
        let ts = args.len();
        args.push(after.id.into());
        let id = args.len();
        clauses.push(format!(
            "(ts {comparison} ?{ts} OR (ts = ?{ts} AND id {comparison} ?{id}))"
        ));
    }
    let where_sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    args.push((q.limit + 1).into());
    let query = format!(
        "SELECT {EVENT_COLUMNS} FROM events {where_sql}
         ORDER BY ts {direction}, id {direction} LIMIT ?{}",
        args.len()
    );
    let events = sql.query(&query, &args, |row| event_from_row(row))?;
    let mut page = page(events, q.limit);
    if q.chat_tails {
        attach_chat_tails(sql, &mut page.events)?;
    }
    Ok(page)
}

/// The most events of one page that carry their chat's last messages (each at most
/// `--stream-chat-bytes`, at most 4 MiB): the newest ones with a chat. The others carry
/// `chat_bytes` and `chat_truncated`, so a page of 300 chat events stays a few MiB.
pub(crate) const MAX_CHAT_TAILS_PER_PAGE: usize = 8;

/// Gives the newest [`MAX_CHAT_TAILS_PER_PAGE`] events of `events` that have a chat kept
/// apart its last messages, read in one query.
fn attach_chat_tails<S: Sql>(sql: &mut S, events: &mut [StoredEvent]) -> Result<(), S::Error> {
    let mut with_chat: Vec<(i64, i64)> = events
        .iter()
        .filter(|e| e.chat_bytes.is_some() && e.chat.is_none())
        .map(|e| (e.timestamp, e.id))
        .collect();
    if with_chat.is_empty() {
        return Ok(());
    }
    with_chat.sort_unstable_by(|a, b| b.cmp(a));
    let ids: Vec<i64> = with_chat
        .iter()
        .take(MAX_CHAT_TAILS_PER_PAGE)
        .map(|&(_, id)| id)
        .collect();
    let (listed, param) = sql.dialect().in_id_list("event_id", "?1", &ids);
    let tails = sql.query(
        &format!("SELECT event_id, tail FROM event_chats WHERE {listed} AND tail IS NOT NULL"),
        &[param.as_str().into()],
        |row| Ok((row.int(0)?, row.text(1)?)),
    )?;
    for (id, tail) in tails {
        if let Some(event) = events.iter_mut().find(|e| e.id == id) {
            event.chat = RawValue::from_string(tail).ok();
        }
    }
    Ok(())
}

/// A session's columns, its subagent count and its main agent's transcript usage sums, and
/// whether telemetry has seen it too (its settled sums, or any of its records: a session
/// whose telemetry is only prompts or tool results is seen by both): what [`session_record`]
/// reads.
fn session_select<S: Sql>(sql: &S) -> String {
    let (usage, joined) = sql.dialect().per_session_sums(
        "session_usage",
        &[
            "input_tokens",
            "output_tokens",
            "cache_creation_tokens",
            "cache_read_tokens",
            "total_tokens",
            "cost_nanos",
        ],
    );
    let subagents_cost = sql.dialect().sum("a.cost_nanos");
    let subagents_tokens = sql.dialect().sum("a.total_tokens");
    format!(
        "SELECT s.session_id, s.source_app, s.started_at, s.last_seen, s.ended_at, s.end_reason,
                s.cwd, s.model, s.event_count, s.prompt_count, s.tool_call_count,
                (SELECT count(*) FROM agents a WHERE a.session_id = s.session_id), {usage},
                (SELECT {subagents_cost} FROM agents a WHERE a.session_id = s.session_id),
                coalesce(t.session_id, (SELECT e.session_id FROM telemetry_events e
                                        WHERE e.session_id = s.session_id LIMIT 1)),
                (SELECT {subagents_tokens} FROM agents a WHERE a.session_id = s.session_id),
                {MEASURED_COLUMNS}, s.coding_agent
         FROM sessions s {joined} LEFT JOIN telemetry_sessions t ON t.session_id = s.session_id"
    )
}

fn session_from_row<R: StoredRow>(row: &R, idle_cutoff_ms: i64) -> Result<SessionRecord, R::Error> {
    let tokens = TokenCounts {
        input: row.int(12)?,
        output: row.int(13)?,
        cache_creation: row.int(14)?,
        cache_read: row.int(15)?,
        total: row.int(16)?,
    };
    let mut session = session_record(row, idle_cutoff_ms, tokens, row.int(17)?)?;
    session.subagents_estimated_cost = nanos_to_usd(row.int(18)?);
    if row.opt_text(19)?.is_some() {
        session.seen_by = SeenBy::Both;
    }
    session.subagents_estimated_tokens = row.int(20)?;
    session.telemetry = measured_from(row, 21)?;
    // The hooks' agent, else the telemetry's: both name the same one where both are seen.
    session.coding_agent = match row.opt_text(31)? {
        Some(agent) => Some(agent),
        None => telemetry_agent_from(row, 21)?,
    };
    Ok(session)
}

/// Fills in the tool each running agent is in: its newest tool call still running, for all of
/// them in one query.
fn fill_current_tools<S: Sql>(sql: &mut S, agents: &mut [AgentRecord]) -> Result<(), S::Error> {
    let running: Vec<&str> = agents
        .iter()
        .filter(|agent| agent.status == AgentStatus::Running)
        .map(|agent| agent.id.as_str())
        .collect();
    if running.is_empty() {
        return Ok(());
    }
    // One lookup per agent, each by the index of running calls, rather than one scan of them
    // all: a windowed query over the list read every running call (200 ms at 100 agents). A
    // running call always has its start (only its PreToolUse makes it running), so the
    // dialects' different NULL order cannot matter, and an explicit NULLS LAST would keep
    // PostgreSQL from reading its index backwards (10 ms instead of 2).
    let (list, arg) = sql.dialect().text_list_rows("?1", &running);
    let query = format!(
        "SELECT l.value, (
             SELECT tool_name FROM tool_calls t
             WHERE t.agent_key = l.value AND t.status = 'running'
             ORDER BY t.started_at DESC, t.id DESC LIMIT 1)
         FROM {list}"
    );
    let current: HashMap<String, String> = sql
        .query(&query, &[Value::Text(&arg)], |row| {
            Ok((row.text(0)?, row.opt_text(1)?))
        })?
        .into_iter()
        .filter_map(|(agent, tool)| Some((agent, tool?)))
        .collect();
    for agent in agents.iter_mut() {
        if agent.status == AgentStatus::Running {
            agent.current_tool = current.get(&agent.id).cloned();
        }
    }
    Ok(())
}

/// Subagents and main agents by status, most recently seen first.
pub(crate) fn agents<S: Sql>(
    sql: &mut S,
    filter: AgentStatusFilter,
    idle_cutoff_ms: i64,
    limit: usize,
) -> Result<Vec<AgentRecord>, S::Error> {
    let (subagent_where, session_where) = match filter {
        AgentStatusFilter::All => ("1 = 1", "1 = 1"),
        AgentStatusFilter::Active | AgentStatusFilter::Is(AgentStatus::Running) => (
            "status = 'running' AND seen_minute >= ?3 AND last_seen >= ?1",
            "ended_at IS NULL AND seen_minute >= ?3 AND last_seen >= ?1",
        ),
        AgentStatusFilter::Is(AgentStatus::TimedOut) => (
            "(status = 'timed_out' OR (status = 'running' AND last_seen < ?1))",
            "ended_at IS NULL AND last_seen < ?1",
        ),
        AgentStatusFilter::Is(AgentStatus::Completed) => {
            ("status = 'completed'", "ended_at IS NOT NULL")
        }
        AgentStatusFilter::Is(AgentStatus::Failed) => ("status = 'failed'", "1 = 0"),
    };
    // `?1` and `?3` are named in every variant: PostgreSQL wants each parameter used.
    let named =
        "CAST(?1 AS BIGINT) = CAST(?1 AS BIGINT) AND CAST(?3 AS BIGINT) = CAST(?3 AS BIGINT)";
    let args = [
        Value::Int(idle_cutoff_ms),
        Value::from(limit),
        Value::Int(floor_to(idle_cutoff_ms, MINUTE_MS)),
    ];
    let mut records = sql.query(
        &format!(
            "SELECT {SUBAGENT_RECORD_COLUMNS} FROM agents WHERE {subagent_where} AND {named}
             ORDER BY seen_minute DESC, last_seen DESC LIMIT ?2"
        ),
        &args,
        |row| subagent_record(row, idle_cutoff_ms),
    )?;
    let sessions = sql.query(
        &format!(
            "{} WHERE {session_where} AND {named}
             ORDER BY s.seen_minute DESC, s.last_seen DESC LIMIT ?2",
            session_select(sql)
        ),
        &args,
        |row| session_from_row(row, idle_cutoff_ms),
    )?;
    records.extend(sessions.iter().map(main_agent_record));
    // The main agents of sessions only telemetry has seen: open (no end is sent), running
    // while seen within the idle time-out, as the sessions list and the active count show them.
    let told = match filter {
        AgentStatusFilter::All => Some((None, None)),
        AgentStatusFilter::Active | AgentStatusFilter::Is(AgentStatus::Running) => Some((
            Some(floor_to(idle_cutoff_ms, MINUTE_MS)),
            Some(AgentStatus::Running),
        )),
        AgentStatusFilter::Is(AgentStatus::TimedOut) => Some((None, Some(AgentStatus::TimedOut))),
        AgentStatusFilter::Is(_) => None,
    };
    if let Some((seen_since, status)) = told {
        let sessions = telemetry_only_sessions(sql, idle_cutoff_ms, limit, seen_since, None)?;
        records.extend(
            sessions
                .iter()
                .filter(|s| status.is_none_or(|wanted| s.status == wanted))
                .map(main_agent_record),
        );
    }
    records.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then_with(|| a.id.cmp(&b.id)));
    records.truncate(limit);
    fill_current_tools(sql, &mut records)?;
    attribution::fill_agent_telemetry(sql, &mut records)?;
    Ok(records)
}

/// A subagent or a main agent by id, with its tool calls.
pub(crate) fn agent<S: Sql>(
    sql: &mut S,
    id: &str,
    idle_cutoff_ms: i64,
) -> Result<Option<AgentDetail>, S::Error> {
    let subagent = sql.query_first(
        &format!("SELECT {SUBAGENT_RECORD_COLUMNS} FROM agents WHERE agent_key = ?1"),
        &[id.into()],
        |row| subagent_record(row, idle_cutoff_ms),
    )?;
    let mut agent = match subagent {
        Some(agent) => agent,
        None => match session_by_id(sql, id, idle_cutoff_ms)? {
            Some(session) => main_agent_record(&session),
            None => return Ok(None),
        },
    };
    let tool_calls = sql.query(
        &format!(
            "SELECT {TOOL_CALL_COLUMNS} FROM tool_calls WHERE agent_key = ?1
             ORDER BY counted_at, id LIMIT ?2"
        ),
        &[id.into(), MAX_DETAIL_TOOL_CALLS.into()],
        |row| tool_call_from_row(row),
    )?;

    fill_current_tools(sql, std::slice::from_mut(&mut agent))?;
    attribution::fill_agent_telemetry(sql, std::slice::from_mut(&mut agent))?;
    Ok(Some(AgentDetail { agent, tool_calls }))
}

fn session_by_id<S: Sql>(
    sql: &mut S,
    id: &str,
    idle_cutoff_ms: i64,
) -> Result<Option<SessionRecord>, S::Error> {
    let query = format!("{} WHERE s.session_id = ?1", session_select(sql));
    sql.query_first(&query, &[id.into()], |row| {
        session_from_row(row, idle_cutoff_ms)
    })
}

/// Sessions, of one app or all, most recently seen first.
pub(crate) fn sessions<S: Sql>(
    sql: &mut S,
    source_app: Option<&str>,
    idle_cutoff_ms: i64,
    limit: usize,
) -> Result<Vec<SessionRecord>, S::Error> {
    let select = session_select(sql);
    let order = "ORDER BY s.seen_minute DESC, s.last_seen DESC";
    let (query, args) = match source_app {
        Some(app) => (
            format!("{select} WHERE s.source_app = ?1 {order} LIMIT ?2"),
            vec![app.into(), limit.into()],
        ),
        None => (format!("{select} {order} LIMIT ?1"), vec![limit.into()]),
    };
    let seen_by_hooks = sql.query(&query, &args, |row| session_from_row(row, idle_cutoff_ms))?;
    // A session telemetry alone has seen is listed too, under the agent that sent it.
    if source_app.is_some_and(|app| !is_telemetry_app(app)) {
        return Ok(seen_by_hooks);
    }
    let seen_by_telemetry = telemetry_only_sessions(sql, idle_cutoff_ms, limit, None, source_app)?;
    Ok(merge_by_last_seen(seen_by_hooks, seen_by_telemetry, limit))
}

/// A session with its main agent and subagents.
pub(crate) fn session<S: Sql>(
    sql: &mut S,
    id: &str,
    idle_cutoff_ms: i64,
) -> Result<Option<SessionDetail>, S::Error> {
    let Some(mut session) = (match session_by_id(sql, id, idle_cutoff_ms)? {
        Some(session) => Some(session),
        None => telemetry_only_session(sql, id, idle_cutoff_ms)?,
    }) else {
        return Ok(None);
    };
    let mut agents = vec![main_agent_record(&session)];
    let subagents = sql.query(
        &format!(
            "SELECT {SUBAGENT_RECORD_COLUMNS} FROM agents WHERE session_id = ?1
             ORDER BY started_at NULLS FIRST, agent_key LIMIT 1000"
        ),
        &[id.into()],
        |row| subagent_record(row, idle_cutoff_ms),
    )?;
    agents.extend(subagents);
    fill_current_tools(sql, &mut agents)?;
    attribution::fill_agent_telemetry(sql, &mut agents)?;
    let (telemetry, prompts) = match session_telemetry(sql, id)? {
        Some((usage, prompts)) => (Some(usage), prompts),
        None => (None, Vec::new()),
    };
    let counters = sql
        .query(
            &format!(
                "SELECT metric, {} FROM telemetry_points
                 WHERE session_id = ?1 AND delta = 1
                   AND metric NOT IN ('cost', 'tokens.input', 'tokens.output', 'tokens.cacheRead',
                                      'tokens.cacheCreation', 'sessions')
                 GROUP BY metric",
                sql.dialect().sum("value_nanos")
            ),
            &[id.into()],
            |row| Ok((row.text(0)?, row.int(1)? as f64 / 1e9)),
        )?
        .into_iter()
        .collect();
    // The detail's cost is read from the telemetry rows themselves (the settled sums agree:
    // `usage_totals`' tests): one figure wherever the session's cost is shown.
    session.telemetry = telemetry.clone();
    Ok(Some(SessionDetail {
        session,
        agents,
        telemetry,
        prompts,
        counters,
    }))
}

/// A session's API use from Claude Code's telemetry, in all and per prompt: its
/// `api_request` events where it has any (each request once), else its counters' delta
/// points; `None` without either. Never both, so no request is counted twice.
pub(crate) fn session_telemetry<S: Sql>(
    sql: &mut S,
    id: &str,
) -> Result<Option<(TelemetryUsage, Vec<PromptUsage>)>, S::Error> {
    let Some((source, uses)) = attribution::session_api_use(sql, id)? else {
        return Ok(None);
    };
    let all: Vec<_> = uses.iter().collect();
    Ok(Some((
        crate::domain::attribution::total(source, &all),
        crate::domain::attribution::by_prompt(source, &uses),
    )))
}

/// The store's reads, the same for every database: any [`DatabaseStore`] has them.
#[async_trait]
pub trait ReadStore: Send + Sync {
    /// Execution sums per agent type, for executions that ended in `range`.
    async fn execution_totals(&self, range: TimeRange) -> Result<Vec<ExecutionTotals>, StoreError>;

    /// Execution sums per (bucket, agent type); `range` ends are multiples of `bucket_ms`.
    async fn execution_timeline(
        &self,
        range: TimeRange,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, ExecutionTotals)>, StoreError>;

    /// The main agents' transcript usage (type `main`, tokens and cost, no executions) per
    /// bucket of `bucket_ms` from `range.start_ms`; one bucket for the range when `None`.
    async fn session_usage(
        &self,
        range: TimeRange,
        bucket_ms: Option<i64>,
    ) -> Result<Vec<(i64, ExecutionTotals)>, StoreError>;

    /// Tool calls per (tool, agent type) counted in `range`.
    async fn tool_totals(&self, range: TimeRange) -> Result<Vec<ToolTotals>, StoreError>;

    /// Running subagents plus open sessions, seen at or after `idle_cutoff_ms`.
    async fn active_agents(&self, idle_cutoff_ms: i64) -> Result<ActiveAgents, StoreError>;

    async fn events(&self, query: EventQuery) -> Result<EventPage, StoreError>;

    async fn filter_options(&self, limit: usize) -> Result<FilterOptions, StoreError>;

    async fn agents(
        &self,
        status: AgentStatusFilter,
        idle_cutoff_ms: i64,
        limit: usize,
    ) -> Result<Vec<AgentRecord>, StoreError>;

    async fn agent(&self, id: &str, idle_cutoff_ms: i64)
    -> Result<Option<AgentDetail>, StoreError>;

    async fn sessions(
        &self,
        source_app: Option<String>,
        idle_cutoff_ms: i64,
        limit: usize,
    ) -> Result<Vec<SessionRecord>, StoreError>;

    async fn session(
        &self,
        id: &str,
        idle_cutoff_ms: i64,
    ) -> Result<Option<SessionDetail>, StoreError>;

    /// The events with these row ids (at most [`super::MAX_EVENTS_BY_ID`]), by id; missing ids
    /// are left out.
    async fn events_by_id(&self, ids: Vec<i64>) -> Result<Vec<StoredEvent>, StoreError>;

    /// Human-in-the-loop requests still pending, newest first.
    async fn pending_requests(&self, limit: usize) -> Result<Vec<StoredEvent>, StoreError>;

    /// The chat of event `id`, if it has one.
    async fn event_chat(&self, id: i64) -> Result<Option<StoredChat>, StoreError>;

    /// API use in `range`, grouped (see [`super::usage`]).
    async fn usage(
        &self,
        range: TimeRange,
        group: UsageGroup,
        filter: UsageFilter,
        page: UsagePage,
    ) -> Result<Vec<UsageRow>, StoreError>;

    /// Telemetry usage per bucket of `bucket_ms` (`range` aligned to it), zero-filled.
    async fn usage_timeline(
        &self,
        range: TimeRange,
        bucket_ms: i64,
        filter: UsageFilter,
    ) -> Result<Vec<UsagePoint>, StoreError>;

    /// Each person's use per bucket in `range` (aligned to `bucket`): `super::team`.
    async fn team(&self, range: TimeRange, bucket: TeamBucket) -> Result<TeamView, StoreError>;

    /// A session's API requests and tool calls in time order (`attribution::session_activity`).
    async fn session_activity(&self, id: &str) -> Result<Vec<Activity>, StoreError>;

    /// A session as a tree of spans (`domain::trace`); `None` for an unknown session.
    async fn session_trace(
        &self,
        id: &str,
        idle_cutoff_ms: i64,
    ) -> Result<Option<Vec<Span>>, StoreError>;

    /// Open alert episodes.
    async fn firing_alerts(&self) -> Result<Vec<AlertRecord>, StoreError>;

    /// The newest `limit` alert episodes.
    async fn alert_history(&self, limit: usize) -> Result<Vec<AlertRecord>, StoreError>;

    /// Failed tool calls (PostToolUseFailure events) per app in `range`, from the rollups.
    async fn failed_tools_per_app(
        &self,
        range: TimeRange,
    ) -> Result<Vec<(String, i64)>, StoreError>;

    /// Per app seen since `since_ms`: last heard from, and on how many days sessions started.
    async fn app_activity(&self, since_ms: i64) -> Result<Vec<(String, i64, i64)>, StoreError>;

    /// Tool calls (not subagent launches) running since `started_before`, in sessions still
    /// open and seen since `idle_cutoff` (`super::alerts::running_calls`).
    async fn running_calls(
        &self,
        started_before: i64,
        idle_cutoff: i64,
        limit: usize,
    ) -> Result<Vec<ToolCall>, StoreError>;

    /// A cheap round trip, for health checks.
    async fn ping(&self) -> Result<(), StoreError>;
}

#[async_trait]
impl<R: ReaderConnection, D: Send + Sync + 'static> ReadStore for DatabaseStore<R, D> {
    async fn execution_totals(&self, range: TimeRange) -> Result<Vec<ExecutionTotals>, StoreError> {
        self.readers.run(move |c| execution_totals(c, range)).await
    }

    async fn execution_timeline(
        &self,
        range: TimeRange,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, ExecutionTotals)>, StoreError> {
        self.readers
            .run(move |c| execution_timeline(c, range, bucket_ms))
            .await
    }

    async fn session_usage(
        &self,
        range: TimeRange,
        bucket_ms: Option<i64>,
    ) -> Result<Vec<(i64, ExecutionTotals)>, StoreError> {
        self.readers
            .run(move |c| session_usage(c, range, bucket_ms))
            .await
    }

    async fn tool_totals(&self, range: TimeRange) -> Result<Vec<ToolTotals>, StoreError> {
        self.readers.run(move |c| tool_totals(c, range)).await
    }

    async fn active_agents(&self, idle_cutoff_ms: i64) -> Result<ActiveAgents, StoreError> {
        self.readers
            .run(move |c| active_agents(c, idle_cutoff_ms))
            .await
    }

    async fn events(&self, query: EventQuery) -> Result<EventPage, StoreError> {
        self.readers.run(move |c| events(c, &query)).await
    }

    async fn filter_options(&self, limit: usize) -> Result<FilterOptions, StoreError> {
        self.readers.run(move |c| filter_options(c, limit)).await
    }

    async fn agents(
        &self,
        status: AgentStatusFilter,
        idle_cutoff_ms: i64,
        limit: usize,
    ) -> Result<Vec<AgentRecord>, StoreError> {
        self.readers
            .run(move |c| agents(c, status, idle_cutoff_ms, limit))
            .await
    }

    async fn agent(
        &self,
        id: &str,
        idle_cutoff_ms: i64,
    ) -> Result<Option<AgentDetail>, StoreError> {
        let id = id.to_owned();
        self.readers
            .run(move |c| agent(c, &id, idle_cutoff_ms))
            .await
    }

    async fn sessions(
        &self,
        source_app: Option<String>,
        idle_cutoff_ms: i64,
        limit: usize,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.readers
            .run(move |c| sessions(c, source_app.as_deref(), idle_cutoff_ms, limit))
            .await
    }

    async fn session(
        &self,
        id: &str,
        idle_cutoff_ms: i64,
    ) -> Result<Option<SessionDetail>, StoreError> {
        let id = id.to_owned();
        self.readers
            .run(move |c| session(c, &id, idle_cutoff_ms))
            .await
    }

    async fn events_by_id(&self, ids: Vec<i64>) -> Result<Vec<StoredEvent>, StoreError> {
        self.readers.run(move |c| events_by_id(c, &ids)).await
    }

    async fn pending_requests(&self, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        self.readers.run(move |c| pending_requests(c, limit)).await
    }

    async fn event_chat(&self, id: i64) -> Result<Option<StoredChat>, StoreError> {
        self.readers.run(move |c| event_chat(c, id)).await
    }

    async fn usage(
        &self,
        range: TimeRange,
        group: UsageGroup,
        filter: UsageFilter,
        page: UsagePage,
    ) -> Result<Vec<UsageRow>, StoreError> {
        self.readers
            .run(move |c| super::usage::usage(c, range, group, &filter, &page))
            .await
    }

    async fn usage_timeline(
        &self,
        range: TimeRange,
        bucket_ms: i64,
        filter: UsageFilter,
    ) -> Result<Vec<UsagePoint>, StoreError> {
        self.readers
            .run(move |c| super::usage::usage_timeline(c, range, bucket_ms, &filter))
            .await
    }

    async fn team(&self, range: TimeRange, bucket: TeamBucket) -> Result<TeamView, StoreError> {
        self.readers
            .run(move |c| super::team::team(c, range, bucket))
            .await
    }

    async fn session_activity(&self, id: &str) -> Result<Vec<Activity>, StoreError> {
        let id = id.to_owned();
        self.readers
            .run(move |c| attribution::session_activity(c, &id))
            .await
    }

    async fn session_trace(
        &self,
        id: &str,
        idle_cutoff_ms: i64,
    ) -> Result<Option<Vec<Span>>, StoreError> {
        let id = id.to_owned();
        self.readers
            .run(move |c| super::trace::session_trace(c, &id, idle_cutoff_ms))
            .await
    }

    async fn firing_alerts(&self) -> Result<Vec<AlertRecord>, StoreError> {
        self.readers.run(super::alerts::firing).await
    }

    async fn alert_history(&self, limit: usize) -> Result<Vec<AlertRecord>, StoreError> {
        self.readers
            .run(move |c| super::alerts::history(c, limit))
            .await
    }

    async fn failed_tools_per_app(
        &self,
        range: TimeRange,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        self.readers
            .run(move |c| super::alerts::events_per_app(c, range, "PostToolUseFailure"))
            .await
    }

    async fn app_activity(&self, since_ms: i64) -> Result<Vec<(String, i64, i64)>, StoreError> {
        self.readers
            .run(move |c| super::alerts::app_activity(c, since_ms))
            .await
    }

    async fn running_calls(
        &self,
        started_before: i64,
        idle_cutoff: i64,
        limit: usize,
    ) -> Result<Vec<ToolCall>, StoreError> {
        self.readers
            .run(move |c| super::alerts::running_calls(c, started_before, idle_cutoff, limit))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.readers
            .run(|c| c.query("SELECT 1", &[], |_| Ok(())).map(drop))
            .await
    }
}
