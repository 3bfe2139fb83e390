//! Read queries on PostgreSQL: the SQLite store's reads ([`crate::store::sqlite`]) in
//! PostgreSQL's dialect, with the same plan: rollups for whole hours and minutes, detail rows
//! only for the partial minutes at a range's edges, and every list bounded by a limit.

use crate::store::rows::{event_from_row, subagent_record};
use postgres::Row;
use postgres::types::ToSql;

use super::ReadSession;

use crate::domain::lifecycle::{AgentStatus, ToolCallStatus};
use crate::domain::time::{MINUTE_MS, floor_to};
use crate::store::rows::{
    EVENT_COLUMNS, MAX_DETAIL_TOOL_CALLS, SUBAGENT_RECORD_COLUMNS, main_agent_record, page,
};
use crate::store::{
    AgentDetail, AgentRecord, AgentStatusFilter, EventPage, EventQuery, SessionDetail,
    SessionRecord, SortOrder, StoredEvent, TokenCounts, ToolCallRecord,
};

type Result<T> = std::result::Result<T, postgres::Error>;

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
