//! Read queries on PostgreSQL: the SQLite store's reads ([`crate::store::sqlite`]) in
//! PostgreSQL's dialect, with the same plan: rollups for whole hours and minutes, detail rows
//! only for the partial minutes at a range's edges, and every list bounded by a limit.

use crate::store::StoredChat;
use crate::store::rows::{CHAT_QUERY, PENDING_SQL, placeholders, stored_chat};
use crate::store::rows::{event_from_row, execution_totals_from_row, subagent_record};
use postgres::Row;
use postgres::types::ToSql;

use super::ReadSession;

use crate::domain::lifecycle::{AgentStatus, MAIN_AGENT_TYPE, ToolCallStatus};
use crate::domain::time::{HOUR_MS, MINUTE_MS, TimeRange, floor_to};
use crate::domain::views::{ExecutionTotals, ToolTotals};
use crate::store::rows::{
    EVENT_COLUMNS, MAX_DETAIL_TOOL_CALLS, SUBAGENT_RECORD_COLUMNS, main_agent_record, page,
    range_params,
};
use crate::store::{
    ActiveAgents, AgentDetail, AgentRecord, AgentStatusFilter, EventPage, EventQuery,
    FilterOptions, SessionDetail, SessionRecord, SortOrder, StoredEvent, TokenCounts,
    ToolCallRecord,
};

type Result<T> = std::result::Result<T, postgres::Error>;

/// See the SQLite store's `EXECUTION_SOURCE`; parameters are [`range_params`].
const EXECUTION_SOURCE: &str = "
    SELECT agent_type, executions, successes, failures, duration_sum_ms, duration_count,
           tokens, cost_nanos
    FROM execution_rollup_hour WHERE bucket >= $3 AND bucket < $4
    UNION ALL
    SELECT agent_type, executions, successes, failures, duration_sum_ms, duration_count,
           tokens, cost_nanos
    FROM execution_rollup
    WHERE (bucket >= $5 AND bucket < $6) OR (bucket >= $7 AND bucket < $8)
    UNION ALL
    SELECT agent_type, 1, (status = 'completed')::int::int8, (status = 'failed')::int::int8,
           coalesce(duration_ms, 0), (duration_ms IS NOT NULL)::int::int8, total_tokens, cost_nanos
    FROM agents
    WHERE status IN ('completed', 'failed')
      AND ((ended_at >= $1 AND ended_at < $9) OR (ended_at >= $10 AND ended_at < $2))";

fn as_params(values: &[i64]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

pub fn execution_totals(
    client: &mut ReadSession,
    range: TimeRange,
) -> Result<Vec<ExecutionTotals>> {
    let sql = format!(
        "SELECT agent_type, least(sum(executions), 9223372036854775807)::int8, least(sum(successes), 9223372036854775807)::int8, least(sum(failures), 9223372036854775807)::int8,
                least(sum(duration_sum_ms), 9223372036854775807)::int8, least(sum(duration_count), 9223372036854775807)::int8, least(sum(tokens), 9223372036854775807)::int8,
                least(sum(cost_nanos), 9223372036854775807)::int8
         FROM ({EXECUTION_SOURCE}) source GROUP BY agent_type"
    );
    let params = range_params(range);
    client
        .query(&sql, &as_params(&params))?
        .iter()
        .map(|row| execution_totals_from_row(row, 0))
        .collect()
}

pub fn session_usage(
    client: &mut ReadSession,
    range: TimeRange,
    bucket_ms: Option<i64>,
) -> Result<Vec<(i64, ExecutionTotals)>> {
    let bucket_ms = bucket_ms.unwrap_or(range.duration_ms().max(1));
    client
        .query(
            "SELECT ($1 + (ts - $1) / $3 * $3)::int8 AS slot, least(sum(total_tokens), 9223372036854775807)::int8,
                    least(sum(cost_nanos), 9223372036854775807)::int8
             FROM session_usage WHERE ts >= $1 AND ts < $2 GROUP BY slot",
            &[&range.start_ms, &range.end_ms, &bucket_ms],
        )?
        .iter()
        .map(|row| {
            Ok((
                row.try_get(0)?,
                ExecutionTotals {
                    agent_type: MAIN_AGENT_TYPE.to_owned(),
                    tokens: row.try_get(1)?,
                    cost_nanos: row.try_get(2)?,
                    ..ExecutionTotals::default()
                },
            ))
        })
        .collect()
}

pub fn execution_timeline(
    client: &mut ReadSession,
    range: TimeRange,
    bucket_ms: i64,
) -> Result<Vec<(i64, ExecutionTotals)>> {
    let table = if bucket_ms % HOUR_MS == 0 {
        "execution_rollup_hour"
    } else {
        "execution_rollup"
    };
    client
        .query(
            &format!(
                "SELECT ($1 + (bucket - $1) / $3 * $3)::int8 AS slot, agent_type,
                        least(sum(executions), 9223372036854775807)::int8, least(sum(successes), 9223372036854775807)::int8, least(sum(failures), 9223372036854775807)::int8,
                        least(sum(duration_sum_ms), 9223372036854775807)::int8, least(sum(duration_count), 9223372036854775807)::int8,
                        least(sum(tokens), 9223372036854775807)::int8, least(sum(cost_nanos), 9223372036854775807)::int8
                 FROM {table} WHERE bucket >= $1 AND bucket < $2
                 GROUP BY slot, agent_type"
            ),
            &[&range.start_ms, &range.end_ms, &bucket_ms],
        )?
        .iter()
        .map(|row| Ok((row.try_get(0)?, execution_totals_from_row(row, 1)?)))
        .collect()
}

pub fn tool_totals(client: &mut ReadSession, range: TimeRange) -> Result<Vec<ToolTotals>> {
    let params = range_params(range);
    client
        .query(
            "SELECT tool_name, agent_type, least(sum(calls), 9223372036854775807)::int8 FROM (
                 SELECT tool_name, agent_type, calls FROM tool_rollup_hour
                 WHERE bucket >= $3 AND bucket < $4
                 UNION ALL
                 SELECT tool_name, agent_type, calls FROM tool_rollup
                 WHERE (bucket >= $5 AND bucket < $6) OR (bucket >= $7 AND bucket < $8)
                 UNION ALL
                 SELECT tool_name, agent_type, 1 FROM tool_calls
                 WHERE (counted_at >= $1 AND counted_at < $9)
                    OR (counted_at >= $10 AND counted_at < $2)
             ) source GROUP BY tool_name, agent_type",
            &as_params(&params),
        )?
        .iter()
        .map(|row| {
            Ok(ToolTotals {
                tool_name: row.try_get(0)?,
                agent_type: row.try_get(1)?,
                calls: row.try_get(2)?,
            })
        })
        .collect()
}

pub fn active_agents(client: &mut ReadSession, idle_cutoff_ms: i64) -> Result<ActiveAgents> {
    let row = client.query_one(
        "SELECT count(*), min(last_seen) FROM (
             SELECT last_seen FROM agents
              WHERE status = 'running' AND seen_minute >= $2 AND last_seen >= $1
             UNION ALL
             SELECT last_seen FROM sessions
              WHERE ended_at IS NULL AND seen_minute >= $2 AND last_seen >= $1) active",
        &[&idle_cutoff_ms, &floor_to(idle_cutoff_ms, MINUTE_MS)],
    )?;
    Ok(ActiveAgents {
        count: row.try_get(0)?,
        least_recently_seen_ms: row.try_get(1)?,
    })
}

/// One argument of a dynamically built query.
enum Arg {
    Text(String),
    Number(i64),
}

pub fn events(client: &mut ReadSession, q: &EventQuery) -> Result<EventPage> {
    let mut clauses: Vec<String> = Vec::new();
    let mut args: Vec<Arg> = Vec::new();
    let mut push = |clause: &str, value: Arg| {
        args.push(value);
        clauses.push(clause.replace('?', &format!("${}", args.len())));
    };
    if let Some(app) = &q.source_app {
        push("source_app = ?", Arg::Text(app.clone()));
    }
    if let Some(session) = &q.session_id {
        push(
            "(session_id = ? OR sent_session_id = ?)",
            Arg::Text(session.clone()),
        );
    }
    if let Some(kind) = &q.hook_event_type {
        push("hook_event_type = ?", Arg::Text(kind.clone()));
    }
    if let Some(tool) = &q.tool_name {
        push("tool_name = ?", Arg::Text(tool.clone()));
    }
    if let Some(since) = q.since {
        push("ts >= ?", Arg::Number(since));
    }
    if let Some(until) = q.until {
        push("ts < ?", Arg::Number(until));
    }
    if let Some(text) = &q.text {
        push("strpos(payload, ?) > 0", Arg::Text(text.clone()));
    }
    let (comparison, direction) = match q.order {
        SortOrder::Ascending => (">", "ASC"),
        SortOrder::Descending => ("<", "DESC"),
    };
    if let Some(after) = q.after {
        args.push(Arg::Number(after.timestamp));
        let ts_param = args.len();
        args.push(Arg::Number(after.id));
        let id_param = args.len();
        clauses.push(format!(
            "(ts {comparison} ${ts_param} OR (ts = ${ts_param} AND id {comparison} ${id_param}))"
        ));
    }
    let where_sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    args.push(Arg::Number((q.limit + 1) as i64));
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events {where_sql}
         ORDER BY ts {direction}, id {direction} LIMIT ${}",
        args.len()
    );
    let params: Vec<&(dyn ToSql + Sync)> = args
        .iter()
        .map(|arg| match arg {
            Arg::Text(text) => text as &(dyn ToSql + Sync),
            Arg::Number(n) => n as &(dyn ToSql + Sync),
        })
        .collect();
    let events: Vec<StoredEvent> = client
        .query(&sql, &params)?
        .iter()
        .map(event_from_row)
        .collect::<Result<_>>()?;
    Ok(page(events, q.limit))
}

pub fn events_by_id(client: &mut ReadSession, ids: &[i64]) -> Result<Vec<StoredEvent>> {
    let ids = &ids[..ids.len().min(crate::store::MAX_EVENTS_BY_ID)];
    client
        .query(
            &format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ANY($1) ORDER BY id"),
            &[&ids],
        )?
        .iter()
        .map(event_from_row)
        .collect()
}

pub fn pending_requests(client: &mut ReadSession, limit: usize) -> Result<Vec<StoredEvent>> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events {}",
        placeholders(PENDING_SQL, '$')
    );
    client
        .query(&sql, &[&(limit as i64)])?
        .iter()
        .map(event_from_row)
        .collect()
}

pub fn event_chat(client: &mut ReadSession, id: i64) -> Result<Option<StoredChat>> {
    Ok(client
        .query_opt(&format!("{CHAT_QUERY}$1"), &[&id])?
        .map(|row| -> Result<Option<StoredChat>> {
            Ok(stored_chat(
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
            ))
        })
        .transpose()?
        .flatten())
}

pub fn filter_options(client: &mut ReadSession, limit: usize) -> Result<FilterOptions> {
    let limit = limit as i64;
    let mut strings = |sql: &str| -> Result<Vec<String>> {
        client
            .query(sql, &[&limit])?
            .iter()
            .map(|row| row.try_get(0))
            .collect()
    };
    Ok(FilterOptions {
        source_apps: strings(
            "SELECT source_app FROM sessions GROUP BY source_app
             ORDER BY max(seen_minute) DESC LIMIT $1",
        )?,
        session_ids: strings(
            "SELECT session_id FROM sessions ORDER BY seen_minute DESC, last_seen DESC LIMIT $1",
        )?,
        hook_event_types: strings(
            "SELECT hook_event_type FROM event_types ORDER BY hook_event_type LIMIT $1",
        )?,
    })
}

/// A session's columns, its subagent count and its main agent's transcript usage.
const SESSION_SELECT: &str = "SELECT s.session_id, s.source_app, s.started_at, s.last_seen, \
    s.ended_at, s.end_reason, s.cwd, s.model, s.event_count, s.prompt_count, s.tool_call_count, \
    (SELECT count(*) FROM agents a WHERE a.session_id = s.session_id), \
    u.input, u.output, u.cache_creation, u.cache_read, u.total, u.cost \
    FROM sessions s CROSS JOIN LATERAL (SELECT \
        least(coalesce(sum(input_tokens), 0), 9223372036854775807)::int8 AS input, \
        least(coalesce(sum(output_tokens), 0), 9223372036854775807)::int8 AS output, \
        least(coalesce(sum(cache_creation_tokens), 0), 9223372036854775807)::int8 AS cache_creation, \
        least(coalesce(sum(cache_read_tokens), 0), 9223372036854775807)::int8 AS cache_read, \
        least(coalesce(sum(total_tokens), 0), 9223372036854775807)::int8 AS total, \
        least(coalesce(sum(cost_nanos), 0), 9223372036854775807)::int8 AS cost \
        FROM session_usage WHERE session_usage.session_id = s.session_id) u";

fn session_record(row: &Row, idle_cutoff_ms: i64) -> Result<SessionRecord> {
    let tokens = TokenCounts {
        input: row.try_get(12)?,
        output: row.try_get(13)?,
        cache_creation: row.try_get(14)?,
        cache_read: row.try_get(15)?,
        total: row.try_get(16)?,
    };
    crate::store::rows::session_record(row, idle_cutoff_ms, tokens, row.try_get(17)?)
}

/// Fills in the tool each running agent is in (its newest tool call still running), for all of
/// them in one query.
fn fill_current_tools(client: &mut ReadSession, agents: &mut [AgentRecord]) -> Result<()> {
    let running: Vec<&str> = agents
        .iter()
        .filter(|agent| agent.status == AgentStatus::Running)
        .map(|agent| agent.id.as_str())
        .collect();
    if running.is_empty() {
        return Ok(());
    }
    let rows = client.query(
        "SELECT a.key, t.tool_name FROM unnest($1::text[]) AS a(key)
         CROSS JOIN LATERAL (
             SELECT tool_name FROM tool_calls WHERE agent_key = a.key AND status = 'running'
             ORDER BY started_at DESC, id DESC LIMIT 1) t",
        &[&running],
    )?;
    let mut current = std::collections::HashMap::new();
    for row in &rows {
        current.insert(row.try_get::<_, String>(0)?, row.try_get::<_, String>(1)?);
    }
    for agent in agents
        .iter_mut()
        .filter(|agent| agent.status == AgentStatus::Running)
    {
        agent.current_tool = current.get(&agent.id).cloned();
    }
    Ok(())
}

pub fn agents(
    client: &mut ReadSession,
    filter: AgentStatusFilter,
    idle_cutoff_ms: i64,
    limit: usize,
) -> Result<Vec<AgentRecord>> {
    let (subagent_where, session_where) = match filter {
        AgentStatusFilter::All => ("true", "true"),
        AgentStatusFilter::Active | AgentStatusFilter::Is(AgentStatus::Running) => (
            "status = 'running' AND seen_minute >= $3 AND last_seen >= $1",
            "ended_at IS NULL AND seen_minute >= $3 AND last_seen >= $1",
        ),
        AgentStatusFilter::Is(AgentStatus::TimedOut) => (
            "(status = 'timed_out' OR (status = 'running' AND last_seen < $1))",
            "ended_at IS NULL AND last_seen < $1",
        ),
        AgentStatusFilter::Is(AgentStatus::Completed) => {
            ("status = 'completed'", "ended_at IS NOT NULL")
        }
        AgentStatusFilter::Is(AgentStatus::Failed) => ("status = 'failed'", "false"),
    };
    let minute_cutoff = floor_to(idle_cutoff_ms, MINUTE_MS);
    let limit_param = limit as i64;
    // `$1` and `$3` are named in every variant (PostgreSQL wants each parameter used).
    let params: [&(dyn ToSql + Sync); 3] = [&idle_cutoff_ms, &limit_param, &minute_cutoff];
    let mut records: Vec<AgentRecord> = client
        .query(
            &format!(
                "SELECT {SUBAGENT_RECORD_COLUMNS} FROM agents
                 WHERE {subagent_where} AND $1::int8 = $1::int8 AND $3::int8 = $3::int8
                 ORDER BY seen_minute DESC, last_seen DESC LIMIT $2"
            ),
            &params,
        )?
        .iter()
        .map(|row| subagent_record(row, idle_cutoff_ms))
        .collect::<Result<_>>()?;
    let sessions: Vec<SessionRecord> = client
        .query(
            &format!(
                "{SESSION_SELECT}
                 WHERE {session_where} AND $1::int8 = $1::int8 AND $3::int8 = $3::int8
                 ORDER BY s.seen_minute DESC, s.last_seen DESC LIMIT $2"
            ),
            &params,
        )?
        .iter()
        .map(|row| session_record(row, idle_cutoff_ms))
        .collect::<Result<_>>()?;
    records.extend(sessions.iter().map(main_agent_record));
    records.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then_with(|| a.id.cmp(&b.id)));
    records.truncate(limit);
    fill_current_tools(client, &mut records)?;
    Ok(records)
}

pub fn agent(
    client: &mut ReadSession,
    id: &str,
    idle_cutoff_ms: i64,
) -> Result<Option<AgentDetail>> {
    let subagent = client
        .query_opt(
            &format!("SELECT {SUBAGENT_RECORD_COLUMNS} FROM agents WHERE agent_key = $1"),
            &[&id],
        )?
        .map(|row| subagent_record(&row, idle_cutoff_ms))
        .transpose()?;
    let mut agent = match subagent {
        Some(agent) => agent,
        None => match session_by_id(client, id, idle_cutoff_ms)? {
            Some(session) => main_agent_record(&session),
            None => return Ok(None),
        },
    };
    let tool_calls = client
        .query(
            "SELECT tool_use_id, tool_name, agent_key, agent_type, status, started_at, ended_at,
                    duration_ms, error, spawned_agent
             FROM tool_calls WHERE agent_key = $1 ORDER BY counted_at, id LIMIT $2",
            &[&id, &MAX_DETAIL_TOOL_CALLS],
        )?
        .iter()
        .map(|row| {
            let status: String = row.try_get(4)?;
            Ok(ToolCallRecord {
                tool_use_id: row.try_get(0)?,
                tool_name: row.try_get(1)?,
                agent_id: row.try_get(2)?,
                agent_type: row.try_get(3)?,
                status: ToolCallStatus::parse(&status).as_str(),
                started_at: row.try_get(5)?,
                ended_at: row.try_get(6)?,
                duration_ms: row.try_get(7)?,
                error: row.try_get(8)?,
                spawned_agent_id: row.try_get(9)?,
            })
        })
        .collect::<Result<_>>()?;
    fill_current_tools(client, std::slice::from_mut(&mut agent))?;
    Ok(Some(AgentDetail { agent, tool_calls }))
}

fn session_by_id(
    client: &mut ReadSession,
    id: &str,
    idle_cutoff_ms: i64,
) -> Result<Option<SessionRecord>> {
    client
        .query_opt(&format!("{SESSION_SELECT} WHERE s.session_id = $1"), &[&id])?
        .map(|row| session_record(&row, idle_cutoff_ms))
        .transpose()
}

pub fn sessions(
    client: &mut ReadSession,
    source_app: Option<&str>,
    idle_cutoff_ms: i64,
    limit: usize,
) -> Result<Vec<SessionRecord>> {
    client
        .query(
            &format!(
                "{SESSION_SELECT} WHERE ($1::text IS NULL OR s.source_app = $1::text)
                 ORDER BY s.seen_minute DESC, s.last_seen DESC LIMIT $2"
            ),
            &[&source_app, &(limit as i64)],
        )?
        .iter()
        .map(|row| session_record(row, idle_cutoff_ms))
        .collect()
}

pub fn session(
    client: &mut ReadSession,
    id: &str,
    idle_cutoff_ms: i64,
) -> Result<Option<SessionDetail>> {
    let Some(session) = session_by_id(client, id, idle_cutoff_ms)? else {
        return Ok(None);
    };
    let mut agents = vec![main_agent_record(&session)];
    let subagents: Vec<AgentRecord> = client
        .query(
            &format!(
                "SELECT {SUBAGENT_RECORD_COLUMNS} FROM agents WHERE session_id = $1
                 ORDER BY started_at, agent_key LIMIT 1000"
            ),
            &[&id],
        )?
        .iter()
        .map(|row| subagent_record(row, idle_cutoff_ms))
        .collect::<Result<_>>()?;
    agents.extend(subagents);
    fill_current_tools(client, &mut agents)?;
    Ok(Some(SessionDetail { session, agents }))
}
