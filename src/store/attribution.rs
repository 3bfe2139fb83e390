//! Reads the rows the join of Claude Code's telemetry with the hook events needs
//! ([`crate::domain::attribution`] holds its rules): a session's API use and where its cost
//! comes from, its runs, its tool calls and what telemetry said of them.

use std::collections::HashMap;

use super::rows::{StoredRow, tool_call_columns_of, tool_call_from_row};
use super::sql::{Sql, Value};
use crate::domain::attribution::{
    Activity, AgentSpan, ApiUse, MAX_ACTIVITY, RequestDetail, ToolTelemetry, activity,
    shares_of_every_run,
};
use crate::domain::lifecycle::ToolCall;
use crate::domain::sessions::{AgentRecord, CostSource, TelemetryUsage};

/// The most telemetry rows one session's join reads; beyond it the oldest are left out.
pub(crate) const MAX_JOINED_ROWS: i64 = 50_000;

/// A session's API use, rows in time order, and where its cost comes from; `None` when
/// Claude Code sent neither `api_request` events nor counters for it.
pub(crate) fn session_api_use<S: Sql>(
    sql: &mut S,
    session_id: &str,
) -> Result<Option<(CostSource, Vec<ApiUse>)>, S::Error> {
    let events = sql.query(
        "SELECT at_ms, coalesce(agent_type, ''), prompt_id, coalesce(cost_nanos, 0),
                coalesce(input_tokens, 0), coalesce(output_tokens, 0),
                coalesce(cache_read_tokens, 0), coalesce(cache_creation_tokens, 0),
                CAST(CASE WHEN kind = 'api_request' THEN 1 ELSE 0 END AS BIGINT),
                model, duration_ms, status_code, attempt, error, dedup_key
         FROM telemetry_events
         WHERE session_id = ?1 AND kind IN ('api_request', 'api_error')
         ORDER BY at_ms, id LIMIT ?2",
        &[session_id.into(), MAX_JOINED_ROWS.into()],
        |row| {
            let request = row.int(8)?;
            Ok(ApiUse {
                key: row.text(14)?,
                at_ms: row.int(0)?,
                agent_type: row.text(1)?,
                prompt_id: row.opt_text(2)?,
                cost_nanos: row.int(3)?,
                tokens: [row.int(4)?, row.int(5)?, row.int(6)?, row.int(7)?],
                requests: request,
                errors: 1 - request,
                detail: Some(RequestDetail {
                    model: row.opt_text(9)?,
                    duration_ms: row.opt_int(10)?,
                    status_code: row.opt_int(11)?,
                    attempt: row.opt_int(12)?,
                    error: row.opt_text(13)?,
                }),
            })
        },
    )?;
    if events.iter().any(|u| u.requests > 0) {
        return Ok(Some((CostSource::TelemetryEvents, events)));
    }
    let mut points = sql.query(
        "SELECT time_ms, coalesce(agent_type, ''), metric, value_nanos, dedup_key FROM telemetry_points
         WHERE session_id = ?1 AND delta = 1
           AND metric IN ('cost', 'tokens.input', 'tokens.output', 'tokens.cacheRead',
                          'tokens.cacheCreation')
         ORDER BY time_ms, id LIMIT ?2",
        &[session_id.into(), MAX_JOINED_ROWS.into()],
        |row| {
            let nanos = row.int(3)?;
            let whole = (nanos + 500_000_000) / 1_000_000_000;
            let mut usage = ApiUse {
                key: row.text(4)?,
                at_ms: row.int(0)?,
                agent_type: row.text(1)?,
                ..ApiUse::default()
            };
            match row.text(2)?.as_str() {
                "cost" => usage.cost_nanos = nanos,
                "tokens.input" => usage.tokens[0] = whole,
                "tokens.output" => usage.tokens[1] = whole,
                "tokens.cacheRead" => usage.tokens[2] = whole,
                _ => usage.tokens[3] = whole,
            }
            Ok(usage)
        },
    )?;
    if points.is_empty() {
        return Ok(None);
    }
    // Errors are events; a session measured by its counters still has them.
    points.extend(events);
    Ok(Some((CostSource::TelemetryMetrics, points)))
}

/// A session's runs: its main agent, then its subagents.
fn agent_spans<S: Sql>(sql: &mut S, session_id: &str) -> Result<Vec<AgentSpan>, S::Error> {
    let mut spans = vec![AgentSpan::main(session_id)];
    spans.extend(sql.query(
        "SELECT agent_key, agent_type, started_at, ended_at FROM agents
         WHERE session_id = ?1 ORDER BY started_at LIMIT 10000",
        &[session_id.into()],
        |row| {
            Ok(AgentSpan {
                id: row.text(0)?,
                agent_type: row.text(1)?,
                is_main: false,
                started_at: row.opt_int(2)?,
                ended_at: row.opt_int(3)?,
            })
        },
    )?);
    Ok(spans)
}

/// The newest `limit` tool calls of the runs `runs` (a session's main agent and subagents),
/// read by run: the index tool calls have (none is by session).
pub(crate) fn session_tool_calls<S: Sql>(
    sql: &mut S,
    runs: &[&str],
    limit: i64,
) -> Result<Vec<ToolCall>, S::Error> {
    let (list, runs) = sql.dialect().text_list_rows("?1", runs);
    sql.query(
        &format!(
            "SELECT {} FROM {list} JOIN tool_calls t ON t.agent_key = l.value
             ORDER BY t.counted_at DESC, t.id DESC LIMIT ?2",
            tool_call_columns_of("t")
        ),
        &[Value::Text(&runs), limit.into()],
        |row| tool_call_from_row(row),
    )
}

/// A session's API requests and tool calls in time order, the newest [`MAX_ACTIVITY`].
pub(crate) fn session_activity<S: Sql>(
    sql: &mut S,
    session_id: &str,
) -> Result<Vec<Activity>, S::Error> {
    let limit = MAX_ACTIVITY as i64;
    let spans = agent_spans(sql, session_id)?;
    // By run (the index tool calls have), not by session (which none has).
    let runs: Vec<&str> = spans.iter().map(|s| s.id.as_str()).collect();
    let calls = session_tool_calls(sql, &runs, limit)?;
    let told = sql.query(
        "SELECT kind, at_ms, tool_use_id, coalesce(tool_name, ''), success, decision,
                decision_source, duration_ms
         FROM telemetry_events
         WHERE session_id = ?1 AND kind IN ('tool_result', 'tool_decision')
           AND tool_use_id IS NOT NULL
         ORDER BY at_ms DESC, id DESC LIMIT ?2",
        &[session_id.into(), limit.into()],
        |row| {
            Ok(ToolTelemetry {
                is_decision: row.text(0)? == "tool_decision",
                at_ms: row.int(1)?,
                tool_use_id: row.text(2)?,
                tool_name: row.text(3)?,
                success: row.opt_int(4)?,
                decision: row.opt_text(5)?,
                decision_source: row.opt_text(6)?,
                duration_ms: row.opt_int(7)?,
            })
        },
    )?;
    let api_use = session_api_use(sql, session_id)?;
    Ok(activity(calls, told, api_use, &spans))
}

/// Fills each record's `telemetry` with its share of its session's API use, for the sessions
/// that have telemetry (the others keep `None`: their cost is the estimate).
pub(crate) fn fill_agent_telemetry<S: Sql>(
    sql: &mut S,
    records: &mut [AgentRecord],
) -> Result<(), S::Error> {
    let mut sessions: Vec<String> = records.iter().map(|r| r.session_id.clone()).collect();
    sessions.sort();
    sessions.dedup();
    let mut shares: HashMap<String, TelemetryUsage> = HashMap::new();
    for session_id in sessions {
        let Some((source, uses)) = session_api_use(sql, &session_id)? else {
            continue;
        };
        let spans = agent_spans(sql, &session_id)?;
        shares.extend(shares_of_every_run(source, &uses, &spans));
    }
    for record in records {
        record.telemetry = shares.remove(&record.id);
    }
    Ok(())
}
