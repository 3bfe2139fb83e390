//! Read queries. They run on the read pool, never on the writer's connection, so reads never
//! wait behind a commit (WAL lets readers see the last committed state).
//!
//! Aggregates read the minute rollups for the whole minutes inside a range and the detail rows
//! (agents by `ended_at`, tool calls by `counted_at`) only for the partial minutes at its edges:
//! exact answers for any range, at a cost bounded by the range, not by the number of events.

use crate::store::rows::{event_from_row, subagent_record};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use crate::domain::lifecycle::{AgentStatus, ToolCallStatus};
use crate::domain::time::{MINUTE_MS, floor_to};
use crate::store::rows::{
    EVENT_COLUMNS, MAX_DETAIL_TOOL_CALLS, SUBAGENT_RECORD_COLUMNS, main_agent_record, page,
};
use crate::store::{
    AgentDetail, AgentRecord, AgentStatusFilter, EventPage, EventQuery, SessionDetail,
    SessionRecord, SortOrder, StoredEvent, TokenCounts, ToolCallRecord,
};

pub fn events(conn: &Connection, q: &EventQuery) -> rusqlite::Result<EventPage> {
    let mut clauses: Vec<String> = Vec::new();
    let mut args: Vec<SqlValue> = Vec::new();
    let mut push = |clause: &str, value: SqlValue| {
        args.push(value);
        clauses.push(clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(app) = &q.source_app {
        push("source_app = ?", app.clone().into());
    }
    if let Some(session) = &q.session_id {
        push(
            "(session_id = ? OR sent_session_id = ?)",
            session.clone().into(),
        );
    }
    if let Some(kind) = &q.hook_event_type {
        push("hook_event_type = ?", kind.clone().into());
    }
    if let Some(tool) = &q.tool_name {
        push("tool_name = ?", tool.clone().into());
    }
    if let Some(since) = q.since {
        push("ts >= ?", since.into());
    }
    if let Some(until) = q.until {
        push("ts < ?", until.into());
    }
    if let Some(text) = &q.text {
        push("instr(payload, ?) > 0", text.clone().into());
    }
    let (comparison, direction) = match q.order {
        SortOrder::Ascending => (">", "ASC"),
        SortOrder::Descending => ("<", "DESC"),
    };
    if let Some(after) = q.after {
        args.push(after.timestamp.into());
        let ts_param = args.len();
        args.push(after.id.into());
        let id_param = args.len();
        clauses.push(format!(
            "(ts {comparison} ?{ts_param} OR (ts = ?{ts_param} AND id {comparison} ?{id_param}))"
        ));
    }
    let where_sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    args.push(((q.limit + 1) as i64).into());
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events {where_sql}
         ORDER BY ts {direction}, id {direction} LIMIT ?{}",
        args.len()
    );
    let events: Vec<StoredEvent> = conn
        .prepare_cached(&sql)?
        .query_map(params_from_iter(args), |row| event_from_row(row))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(page(events, q.limit))
}

const SESSION_COLUMNS: &str = "session_id, source_app, started_at, last_seen, ended_at, \
    end_reason, cwd, model, event_count, prompt_count, tool_call_count, \
    (SELECT count(*) FROM agents a WHERE a.session_id = sessions.session_id), \
    (SELECT json_array(CAST(total(input_tokens) AS INTEGER), CAST(total(output_tokens) AS INTEGER), \
        CAST(total(cache_creation_tokens) AS INTEGER), CAST(total(cache_read_tokens) AS INTEGER), \
        CAST(total(total_tokens) AS INTEGER), CAST(total(cost_nanos) AS INTEGER)) \
     FROM session_usage u WHERE u.session_id = sessions.session_id)";

fn session_record(row: &Row<'_>, idle_cutoff_ms: i64) -> rusqlite::Result<SessionRecord> {
    let (tokens, cost_nanos) = main_usage(&row.get::<_, String>(12)?);
    crate::store::rows::session_record(row, idle_cutoff_ms, tokens, cost_nanos)
}

/// The `[input, output, cache_creation, cache_read, total, cost_nanos]` sums of a session.
fn main_usage(sums: &str) -> (TokenCounts, i64) {
    let n: Vec<i64> = serde_json::from_str(sums).unwrap_or_default();
    let at = |i: usize| n.get(i).copied().unwrap_or(0);
    let tokens = TokenCounts {
        input: at(0),
        output: at(1),
        cache_creation: at(2),
        cache_read: at(3),
        total: at(4),
    };
    (tokens, at(5))
}

/// Fills in the tool each running agent is in: its newest tool call still running.
fn fill_current_tools(conn: &Connection, agents: &mut [AgentRecord]) -> rusqlite::Result<()> {
    let mut newest_running = conn.prepare_cached(
        "SELECT tool_name FROM tool_calls WHERE agent_key = ?1 AND status = 'running'
         ORDER BY started_at DESC, id DESC LIMIT 1",
    )?;
    for agent in agents
        .iter_mut()
        .filter(|agent| agent.status == AgentStatus::Running)
    {
        agent.current_tool = newest_running
            .query_row([&agent.id], |row| row.get(0))
            .optional()?;
    }
    Ok(())
}

pub fn agents(
    conn: &Connection,
    filter: AgentStatusFilter,
    idle_cutoff_ms: i64,
    limit: usize,
) -> rusqlite::Result<Vec<AgentRecord>> {
    let (subagent_where, session_where) = match filter {
        AgentStatusFilter::All => ("1", "1"),
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
        AgentStatusFilter::Is(AgentStatus::Failed) => ("status = 'failed'", "0"),
    };
    let minute_cutoff = floor_to(idle_cutoff_ms, MINUTE_MS);
    let mut records: Vec<AgentRecord> = conn
        .prepare_cached(&format!(
            "SELECT {SUBAGENT_RECORD_COLUMNS} FROM agents
             WHERE {subagent_where} AND ?1 = ?1 AND ?3 = ?3
             ORDER BY seen_minute DESC, last_seen DESC LIMIT ?2"
        ))?
        .query_map(
            params![idle_cutoff_ms, limit as i64, minute_cutoff],
            |row| subagent_record(row, idle_cutoff_ms),
        )?
        .collect::<rusqlite::Result<_>>()?;
    let sessions: Vec<SessionRecord> = conn
        .prepare_cached(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions
             WHERE {session_where} AND ?1 = ?1 AND ?3 = ?3
             ORDER BY seen_minute DESC, last_seen DESC LIMIT ?2"
        ))?
        .query_map(
            params![idle_cutoff_ms, limit as i64, minute_cutoff],
            |row| session_record(row, idle_cutoff_ms),
        )?
        .collect::<rusqlite::Result<_>>()?;
    records.extend(sessions.iter().map(main_agent_record));
    records.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then_with(|| a.id.cmp(&b.id)));
    records.truncate(limit);
    fill_current_tools(conn, &mut records)?;
    Ok(records)
}

pub fn agent(
    conn: &Connection,
    id: &str,
    idle_cutoff_ms: i64,
) -> rusqlite::Result<Option<AgentDetail>> {
    let subagent = conn
        .prepare_cached(&format!(
            "SELECT {SUBAGENT_RECORD_COLUMNS} FROM agents WHERE agent_key = ?1"
        ))?
        .query_row([id], |row| subagent_record(row, idle_cutoff_ms))
        .optional()?;
    let mut agent = match subagent {
        Some(agent) => agent,
        None => match session_by_id(conn, id, idle_cutoff_ms)? {
            Some(session) => main_agent_record(&session),
            None => return Ok(None),
        },
    };
    let tool_calls = conn
        .prepare_cached(
            "SELECT tool_use_id, tool_name, agent_key, agent_type, status, started_at, ended_at,
                    duration_ms, error, spawned_agent
             FROM tool_calls WHERE agent_key = ?1 ORDER BY counted_at, id LIMIT ?2",
        )?
        .query_map(params![id, MAX_DETAIL_TOOL_CALLS], |row| {
            let status: String = row.get(4)?;
            Ok(ToolCallRecord {
                tool_use_id: row.get(0)?,
                tool_name: row.get(1)?,
                agent_id: row.get(2)?,
                agent_type: row.get(3)?,
                status: ToolCallStatus::parse(&status).as_str(),
                started_at: row.get(5)?,
                ended_at: row.get(6)?,
                duration_ms: row.get(7)?,
                error: row.get(8)?,
                spawned_agent_id: row.get(9)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    fill_current_tools(conn, std::slice::from_mut(&mut agent))?;
    Ok(Some(AgentDetail { agent, tool_calls }))
}

fn session_by_id(
    conn: &Connection,
    id: &str,
    idle_cutoff_ms: i64,
) -> rusqlite::Result<Option<SessionRecord>> {
    conn.prepare_cached(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE session_id = ?1"
    ))?
    .query_row([id], |row| session_record(row, idle_cutoff_ms))
    .optional()
}

pub fn sessions(
    conn: &Connection,
    source_app: Option<&str>,
    idle_cutoff_ms: i64,
    limit: usize,
) -> rusqlite::Result<Vec<SessionRecord>> {
    conn.prepare_cached(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE (?1 IS NULL OR source_app = ?1)
         ORDER BY seen_minute DESC, last_seen DESC LIMIT ?2"
    ))?
    .query_map(params![source_app, limit as i64], |row| {
        session_record(row, idle_cutoff_ms)
    })?
    .collect()
}

pub fn session(
    conn: &Connection,
    id: &str,
    idle_cutoff_ms: i64,
) -> rusqlite::Result<Option<SessionDetail>> {
    let Some(session) = session_by_id(conn, id, idle_cutoff_ms)? else {
        return Ok(None);
    };
    let mut agents = vec![main_agent_record(&session)];
    let subagents: Vec<AgentRecord> = conn
        .prepare_cached(&format!(
            "SELECT {SUBAGENT_RECORD_COLUMNS} FROM agents WHERE session_id = ?1
             ORDER BY started_at, agent_key LIMIT 1000"
        ))?
        .query_map([id], |row| subagent_record(row, idle_cutoff_ms))?
        .collect::<rusqlite::Result<_>>()?;
    agents.extend(subagents);
    fill_current_tools(conn, &mut agents)?;
    Ok(Some(SessionDetail { session, agents }))
}
