//! Reads what a session's trace is built from (`domain::trace`): its prompts and marks from
//! a partial index of the few event types that make spans (a prompt's text from
//! `event_prompts`, never its payload), and its agents, tool calls and API requests from their
//! own rows; and what Claude Code's telemetry saw of it (`store::telemetry_sessions`: its
//! prompts and tool results, joined to the hooks' by `domain::trace::join_telemetry`, and
//! what its beta tracing's spans add: interactions, tool spans, waits for the user, hooks and
//! model requests whose event never came), so a session telemetry alone has seen has its
//! trace too. Never a scan of the session's events.

use super::attribution;
use super::rows::{SUBAGENT_RECORD_COLUMNS, StoredRow, subagent_record};
use super::sql::Sql;
use super::telemetry_sessions::{
    short_hash, telemetry_only_session, telemetry_prompts, telemetry_tool_calls, traced_extras,
};
use crate::domain::attribution::{AgentSpan, agent_of};
use crate::domain::sessions::CostSource;
use crate::domain::trace::{
    ApiCall, EventMark, PromptMark, Span, SpanUsage, TraceInputs, build, join_telemetry,
    join_traced_requests,
};

/// The most spans of one kind a trace reads; past it the newest are left out.
pub(crate) const MAX_SPANS_PER_KIND: i64 = 20_000;

/// The event types that make spans (or end them): the partial index `events_session_marks`
/// holds exactly these.
pub(crate) const MARK_TYPES: &str =
    "('UserPromptSubmit', 'Stop', 'Notification', 'PreCompact', 'PermissionRequest')";

/// A session's trace, or `None` for a session neither the hooks nor telemetry have seen.
pub(crate) fn session_trace<S: Sql>(
    sql: &mut S,
    id: &str,
    idle_cutoff_ms: i64,
) -> Result<Option<Vec<Span>>, S::Error> {
    let seen_by_hooks = sql.query_first(
        "SELECT s.started_at, s.ended_at, coalesce(s.coding_agent, t.agent) FROM sessions s
         LEFT JOIN telemetry_sessions t ON t.session_id = s.session_id
         WHERE s.session_id = ?1",
        &[id.into()],
        |row| Ok((row.int(0)?, row.opt_int(1)?, row.opt_text(2)?)),
    )?;
    let Some((started_at, ended_at, coding_agent)) = (match seen_by_hooks {
        Some(seen) => Some(seen),
        None => telemetry_only_session(sql, id, idle_cutoff_ms)?
            .map(|session| (session.row.started_at, None, session.coding_agent)),
    }) else {
        return Ok(None);
    };
    let mut input = TraceInputs {
        session_id: id.to_owned(),
        started_at,
        ended_at,
        main_agent_id: id.to_owned(),
        prompts: Vec::new(),
        stops: Vec::new(),
        marks: Vec::new(),
        agents: Vec::new(),
        tools: Vec::new(),
        api_calls: Vec::new(),
        has_telemetry: false,
        coding_agent,
    };
    read_marks(sql, id, &mut input)?;
    input.agents = sql.query(
        &format!(
            "SELECT {SUBAGENT_RECORD_COLUMNS} FROM agents WHERE session_id = ?1
                 ORDER BY started_at LIMIT ?2"
        ),
        &[id.into(), MAX_SPANS_PER_KIND.into()],
        |row| subagent_record(row, idle_cutoff_ms),
    )?;
    let mut runs: Vec<&str> = vec![id];
    runs.extend(input.agents.iter().map(|a| a.id.as_str()));
    input.tools = attribution::session_tool_calls(sql, &runs, MAX_SPANS_PER_KIND)?;
    let told_prompts = telemetry_prompts(sql, id, MAX_SPANS_PER_KIND)?;
    let told_tools = telemetry_tool_calls(sql, id, MAX_SPANS_PER_KIND)?;
    join_telemetry(&mut input, told_prompts, told_tools);
    if let Some((source, uses)) = attribution::session_api_use(sql, id)? {
        input.has_telemetry = true;
        if source == CostSource::TelemetryEvents {
            // The runs already read, as the attribution sees them.
            let mut spans = vec![AgentSpan::main(id)];
            spans.extend(input.agents.iter().map(|a| AgentSpan {
                id: a.id.clone(),
                agent_type: a.agent_type.clone(),
                is_main: false,
                started_at: a.started_at,
                ended_at: a.ended_at,
            }));
            input.api_calls = uses
                .into_iter()
                .map(|usage| {
                    let agent = agent_of(&usage, &spans)
                        .filter(|&i| !spans[i].is_main)
                        .map(|i| spans[i].id.clone());
                    let detail = usage.detail.clone().unwrap_or_default();
                    ApiCall {
                        key: short_hash(&usage.key),
                        at_ms: usage.at_ms,
                        duration_ms: detail.duration_ms,
                        prompt_id: usage.prompt_id.clone(),
                        agent_id: agent,
                        model: detail.model,
                        usage: SpanUsage {
                            tokens: usage.tokens,
                            cost_nanos: usage.cost_nanos,
                            estimated: false,
                        },
                        error: (usage.errors > 0)
                            .then(|| detail.error.unwrap_or_else(|| "API error".into())),
                        status_code: detail.status_code.filter(|_| usage.errors > 0),
                        attempt: detail.attempt,
                        traced_only: false,
                    }
                })
                .collect();
        }
    }
    let traced = traced_extras(sql, id, MAX_SPANS_PER_KIND)?;
    input.marks.extend(traced.marks);
    join_traced_requests(&mut input, traced.requests, &traced.logged_request_ids);
    Ok(Some(build(input)))
}

/// A session's prompts, stops and marks. A prompt's id, head and length come from
/// `event_prompts`, written with the prompt: a payload is never read here (3,000 prompts of
/// 900 KB once took one trace read to 1.94 GB); the whole prompt is its event's.
fn read_marks<S: Sql>(sql: &mut S, id: &str, input: &mut TraceInputs) -> Result<(), S::Error> {
    let rows = sql.query(
        &format!(
            "SELECT e.event_id, e.ts, e.hook_event_type, e.agent_id, e.summary,
                    p.prompt_id, p.head, p.chars
             FROM events e LEFT JOIN event_prompts p ON p.event_row = e.id
             WHERE e.session_id = ?1 AND e.hook_event_type IN {MARK_TYPES}
             ORDER BY e.ts DESC LIMIT ?2"
        ),
        &[id.into(), MAX_SPANS_PER_KIND.into()],
        |row| {
            Ok((
                (row.text(0)?, row.int(1)?, row.text(2)?),
                (row.opt_text(3)?, row.opt_text(4)?),
                (row.opt_text(5)?, row.opt_text(6)?, row.opt_int(7)?),
            ))
        },
    )?;
    for ((event_id, at_ms, kind), (agent_id, summary), (prompt_id, text, chars)) in rows {
        match kind.as_str() {
            "UserPromptSubmit" => {
                input.prompts.push(PromptMark {
                    event_id,
                    at_ms,
                    prompt_id: prompt_id.filter(|id| !id.is_empty()),
                    text,
                    chars: chars.and_then(|c| usize::try_from(c).ok()),
                    traced_until: None,
                });
            }
            "Stop" => input.stops.push(at_ms),
            _ => input.marks.push(EventMark {
                event_id,
                at_ms,
                hook_event_type: kind,
                agent_id,
                summary,
                ends_at: None,
            }),
        }
    }
    Ok(())
}
