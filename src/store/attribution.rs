//! The join of Claude Code's telemetry with the hook events, per session: its API use in all
//! (one truth: `api_request` events, else the cost and token counters), per prompt
//! (`prompt.id` ↔ the hooks' `prompt_id`) and per agent.
//!
//! An API request names the agent *type* that made it (`query_source`, `agent.name`: see
//! `otlp::claude::Attribution::agent_type`), not the run. It goes to the session's main
//! agent when the type is `main`; else to the run of that type whose span (SubagentStart to
//! SubagentStop, or to now while it runs) holds the request's time, the latest-started when
//! runs of one type overlap; else to the run of that type nearest in time. A request of a
//! type no run of the session has stays in the session's totals and in no agent's. Every
//! request goes to at most one agent, so the agents' costs add up to no more than the
//! session's. The join is made when read, from stored rows, so it holds whichever of the
//! hooks and the telemetry arrived first.

use std::collections::{BTreeMap, HashMap};

use super::rows::StoredRow;
use super::sql::{Sql, Value};
use super::{AgentRecord, CostSource, PromptUsage, TelemetryUsage, TokenCounts};
use crate::domain::lifecycle::{MAIN_AGENT_TYPE, ToolCallStatus};

/// The most telemetry rows one session's join reads; beyond it the oldest are left out.
pub const MAX_JOINED_ROWS: i64 = 50_000;

/// One API request or error, or one counter point, as the join reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiUse {
    /// What identifies the record however often it was sent (`dedup_key`).
    pub key: String,
    pub at_ms: i64,
    pub agent_type: String,
    pub prompt_id: Option<String>,
    pub cost_nanos: i64,
    pub tokens: [i64; 4],
    pub requests: i64,
    pub errors: i64,
    /// For the session's activity: what the event said of the request (none on points).
    pub detail: Option<RequestDetail>,
}

/// What an API request's or error's event says besides its cost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestDetail {
    pub model: Option<String>,
    pub duration_ms: Option<i64>,
    pub status_code: Option<i64>,
    pub attempt: Option<i64>,
    pub error: Option<String>,
}

/// A session's API use, rows in time order, and where its cost comes from; `None` when
/// Claude Code sent neither `api_request` events nor counters for it.
pub fn session_api_use<S: Sql>(
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

/// The sum of some API use.
pub fn total(source: CostSource, uses: &[&ApiUse]) -> TelemetryUsage {
    let mut usage = TelemetryUsage {
        source,
        cost_usd: 0.0,
        tokens: TokenCounts::default(),
        requests: 0,
        errors: 0,
    };
    let mut nanos = 0i64;
    for u in uses {
        nanos = nanos.saturating_add(u.cost_nanos);
        let t = &mut usage.tokens;
        t.input = t.input.saturating_add(u.tokens[0]);
        t.output = t.output.saturating_add(u.tokens[1]);
        t.cache_read = t.cache_read.saturating_add(u.tokens[2]);
        t.cache_creation = t.cache_creation.saturating_add(u.tokens[3]);
        usage.requests += u.requests;
        usage.errors += u.errors;
    }
    let t = &mut usage.tokens;
    t.total = t
        .input
        .saturating_add(t.output)
        .saturating_add(t.cache_read)
        .saturating_add(t.cache_creation);
    usage.cost_usd = nanos as f64 / 1e9;
    usage
}

/// Per prompt, in the order the prompts were first seen; use outside any prompt is left out.
pub fn by_prompt(source: CostSource, uses: &[ApiUse]) -> Vec<PromptUsage> {
    let mut order: Vec<&str> = Vec::new();
    let mut groups: HashMap<&str, (i64, Vec<&ApiUse>)> = HashMap::new();
    for u in uses {
        let Some(prompt) = u.prompt_id.as_deref() else {
            continue;
        };
        let group = groups.entry(prompt).or_insert_with(|| {
            order.push(prompt);
            (u.at_ms, Vec::new())
        });
        group.1.push(u);
    }
    order
        .into_iter()
        .map(|prompt| {
            let (first_at_ms, uses) = &groups[prompt];
            PromptUsage {
                prompt_id: prompt.to_owned(),
                first_at_ms: *first_at_ms,
                usage: total(source, uses),
            }
        })
        .collect()
}

/// A run as the join sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSpan {
    pub id: String,
    pub agent_type: String,
    pub is_main: bool,
    pub started_at: Option<i64>,
    /// `None` while it runs.
    pub ended_at: Option<i64>,
}

impl AgentSpan {
    /// A session's main agent (its id is the session's).
    pub fn main(session_id: &str) -> Self {
        Self {
            id: session_id.to_owned(),
            agent_type: MAIN_AGENT_TYPE.to_owned(),
            is_main: true,
            started_at: None,
            ended_at: None,
        }
    }
}

/// The index in `agents` of the run that made `usage`, if any (see the module's rules).
pub fn agent_of(usage: &ApiUse, agents: &[AgentSpan]) -> Option<usize> {
    if usage.agent_type.is_empty() || usage.agent_type == MAIN_AGENT_TYPE {
        return agents.iter().position(|a| a.is_main);
    }
    let at = usage.at_ms;
    let runs = agents
        .iter()
        .enumerate()
        .filter(|(_, a)| !a.is_main && a.agent_type == usage.agent_type);
    let distance = |a: &AgentSpan| {
        let start = a.started_at.unwrap_or(i64::MIN);
        let end = a.ended_at.unwrap_or(i64::MAX);
        if at < start {
            start - at
        } else if at > end {
            at - end
        } else {
            0
        }
    };
    // Nearest first; among runs that all hold it, the latest started.
    runs.min_by(|(_, a), (_, b)| {
        distance(a)
            .cmp(&distance(b))
            .then_with(|| b.started_at.cmp(&a.started_at))
    })
    .map(|(i, _)| i)
}

/// Each run's share of the session's API use, by run id; runs that made none are absent.
pub fn per_agent(
    source: CostSource,
    uses: &[ApiUse],
    agents: &[AgentSpan],
) -> BTreeMap<String, TelemetryUsage> {
    let mut shares: BTreeMap<usize, Vec<&ApiUse>> = BTreeMap::new();
    for u in uses {
        if let Some(i) = agent_of(u, agents) {
            shares.entry(i).or_default().push(u);
        }
    }
    shares
        .into_iter()
        .map(|(i, uses)| (agents[i].id.clone(), total(source, &uses)))
        .collect()
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

/// The most entries a session's activity lists (the newest).
pub const MAX_ACTIVITY: usize = 2000;

/// One step of a session, in time order: an API request or error (from telemetry, with the
/// run it is attributed to), or a tool call (from the hooks, with what Claude Code's
/// `tool_decision` and `tool_result` said of it, joined on `tool_use_id`; or from
/// `tool_result` alone when no hook saw it).
#[derive(Debug, Clone, PartialEq)]
pub enum Activity {
    Api {
        usage: ApiUse,
        agent_id: Option<String>,
    },
    Tool(ToolStep),
}

impl Activity {
    pub fn at_ms(&self) -> i64 {
        match self {
            Self::Api { usage, .. } => usage.at_ms,
            Self::Tool(step) => step.at_ms,
        }
    }
}

/// A tool call as the activity shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolStep {
    pub at_ms: i64,
    pub ended_at: Option<i64>,
    pub agent_id: Option<String>,
    pub tool_name: String,
    pub tool_use_id: Option<String>,
    /// The hooks' status (`running`, `succeeded`, `failed`), else from `tool_result`.
    pub status: String,
    pub duration_ms: Option<i64>,
    /// `tool_decision`: `accept` or `reject`, and who decided.
    pub decision: Option<String>,
    pub decision_source: Option<String>,
}

/// A tool call of one of a session's runs.
pub struct SessionToolCall {
    pub row_id: i64,
    pub tool_use_id: Option<String>,
    pub agent_id: String,
    pub tool_name: String,
    /// Its start, or when it was first seen (a call whose result came first).
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub status: ToolCallStatus,
    pub error: Option<String>,
    pub duration_ms: Option<i64>,
}

/// The newest `limit` tool calls of the runs `runs` (a session's main agent and subagents),
/// read by run: the index tool calls have (none is by session).
pub fn session_tool_calls<S: Sql>(
    sql: &mut S,
    runs: &[&str],
    limit: i64,
) -> Result<Vec<SessionToolCall>, S::Error> {
    let (list, runs) = sql.dialect().text_list_rows("?1", runs);
    sql.query(
        &format!(
            "SELECT t.id, t.tool_use_id, t.agent_key, t.tool_name,
                    coalesce(t.started_at, t.counted_at), t.ended_at, t.status, t.error,
                    t.duration_ms
             FROM {list} JOIN tool_calls t ON t.agent_key = l.value
             ORDER BY t.counted_at DESC, t.id DESC LIMIT ?2"
        ),
        &[Value::Text(&runs), limit.into()],
        |row| {
            Ok(SessionToolCall {
                row_id: row.int(0)?,
                tool_use_id: row.opt_text(1)?,
                agent_id: row.text(2)?,
                tool_name: row.text(3)?,
                started_at: row.int(4)?,
                ended_at: row.opt_int(5)?,
                status: ToolCallStatus::parse(&row.text(6)?),
                error: row.opt_text(7)?,
                duration_ms: row.opt_int(8)?,
            })
        },
    )
}

/// What a `tool_result` or `tool_decision` event says of a tool call.
struct ToolTelemetry {
    is_decision: bool,
    at_ms: i64,
    tool_use_id: String,
    tool_name: String,
    success: Option<i64>,
    decision: Option<String>,
    decision_source: Option<String>,
    duration_ms: Option<i64>,
}

/// A session's API requests and tool calls in time order, the newest [`MAX_ACTIVITY`].
pub fn session_activity<S: Sql>(sql: &mut S, session_id: &str) -> Result<Vec<Activity>, S::Error> {
    let limit = MAX_ACTIVITY as i64;
    let spans = agent_spans(sql, session_id)?;
    // By run (the index tool calls have), not by session (which none has).
    let runs: Vec<&str> = spans.iter().map(|s| s.id.as_str()).collect();
    let mut tools: Vec<ToolStep> = session_tool_calls(sql, &runs, limit)?
        .into_iter()
        .map(|call| ToolStep {
            at_ms: call.started_at,
            ended_at: call.ended_at,
            agent_id: Some(call.agent_id),
            tool_name: call.tool_name,
            tool_use_id: call.tool_use_id,
            status: call.status.as_str().to_owned(),
            duration_ms: call.duration_ms,
            ..ToolStep::default()
        })
        .collect();
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
    let mut by_id: HashMap<String, usize> = tools
        .iter()
        .enumerate()
        .filter_map(|(i, t)| Some((t.tool_use_id.clone()?, i)))
        .collect();
    for told in told {
        let i = *by_id.entry(told.tool_use_id.clone()).or_insert_with(|| {
            tools.push(ToolStep {
                at_ms: told.at_ms,
                tool_name: told.tool_name.clone(),
                tool_use_id: Some(told.tool_use_id.clone()),
                status: "running".into(),
                ..ToolStep::default()
            });
            tools.len() - 1
        });
        let step = &mut tools[i];
        if told.is_decision {
            step.decision = told.decision;
            step.decision_source = told.decision_source;
        } else if step.agent_id.is_none() {
            // Seen by telemetry alone: its result says how it went.
            step.status = if told.success == Some(0) {
                "failed"
            } else {
                "succeeded"
            }
            .into();
            step.duration_ms = told.duration_ms;
            step.ended_at = Some(told.at_ms);
            step.at_ms = told.duration_ms.map_or(told.at_ms, |d| told.at_ms - d);
        }
    }
    let mut activity: Vec<Activity> = tools.into_iter().map(Activity::Tool).collect();
    if let Some((CostSource::TelemetryEvents, uses)) = session_api_use(sql, session_id)? {
        activity.extend(uses.into_iter().map(|usage| {
            let agent_id = agent_of(&usage, &spans).map(|i| spans[i].id.clone());
            Activity::Api { usage, agent_id }
        }));
    }
    activity.sort_by_key(Activity::at_ms);
    let excess = activity.len().saturating_sub(MAX_ACTIVITY);
    activity.drain(..excess);
    Ok(activity)
}

/// Fills each record's `telemetry` with its share of its session's API use, for the sessions
/// that have telemetry (the others keep `None`: their cost is the estimate).
pub fn fill_agent_telemetry<S: Sql>(
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
        let mut per_agent = per_agent(source, &uses, &spans);
        // A run that made no request is measured at zero, not estimated.
        for span in &spans {
            per_agent
                .entry(span.id.clone())
                .or_insert_with(|| total(source, &[]));
        }
        shares.extend(per_agent);
    }
    for record in records {
        record.telemetry = shares.remove(&record.id);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, agent_type: &str, start: i64, end: Option<i64>) -> AgentSpan {
        AgentSpan {
            id: id.into(),
            agent_type: agent_type.into(),
            is_main: false,
            started_at: Some(start),
            ended_at: end,
        }
    }

    fn request(agent_type: &str, at_ms: i64) -> ApiUse {
        ApiUse {
            at_ms,
            agent_type: agent_type.into(),
            requests: 1,
            cost_nanos: 1,
            ..ApiUse::default()
        }
    }

    fn agents() -> Vec<AgentSpan> {
        vec![
            AgentSpan::main("S"),
            run("explore-1", "Explore", 100, Some(200)),
            run("explore-2", "Explore", 150, Some(400)),
            run("plan", "Plan", 500, None),
        ]
    }

    #[test]
    fn main_thread_requests_go_to_the_main_agent() {
        assert_eq!(agent_of(&request("main", 120), &agents()), Some(0));
        assert_eq!(agent_of(&request("", 120), &agents()), Some(0));
    }

    #[test]
    fn a_request_goes_to_the_run_of_its_type_that_holds_its_time() {
        assert_eq!(agent_of(&request("Explore", 120), &agents()), Some(1));
        assert_eq!(agent_of(&request("Explore", 300), &agents()), Some(2));
        // Both hold it: the latest started.
        assert_eq!(agent_of(&request("Explore", 180), &agents()), Some(2));
        // A running run holds everything after its start.
        assert_eq!(agent_of(&request("Plan", 9_999), &agents()), Some(3));
    }

    #[test]
    fn outside_every_run_the_nearest_of_its_type_takes_it() {
        assert_eq!(agent_of(&request("Explore", 90), &agents()), Some(1));
        assert_eq!(agent_of(&request("Explore", 450), &agents()), Some(2));
        assert_eq!(agent_of(&request("Plan", 450), &agents()), Some(3));
    }

    #[test]
    fn a_type_no_run_has_goes_to_no_agent_and_nothing_is_counted_twice() {
        assert_eq!(agent_of(&request("Review", 150), &agents()), None);
        let uses = [
            request("main", 10),
            request("Explore", 120),
            request("Explore", 180),
            request("Review", 150),
        ];
        let shares = per_agent(CostSource::TelemetryEvents, &uses, &agents());
        let attributed: i64 = shares.values().map(|u| u.requests).sum();
        assert_eq!(attributed, 3);
        assert_eq!(shares["explore-1"].requests, 1);
        assert_eq!(shares["explore-2"].requests, 1);
        assert_eq!(shares["S"].requests, 1);
    }

    #[test]
    fn prompts_keep_the_order_they_were_first_seen_in() {
        let mut uses = vec![request("main", 1), request("main", 2), request("main", 3)];
        uses[0].prompt_id = Some("P2".into());
        uses[1].prompt_id = Some("P1".into());
        uses[2].prompt_id = Some("P2".into());
        let prompts = by_prompt(CostSource::TelemetryEvents, &uses);
        let ids: Vec<_> = prompts.iter().map(|p| p.prompt_id.as_str()).collect();
        assert_eq!(ids, ["P2", "P1"]);
        assert_eq!(prompts[0].usage.requests, 2);
    }
}
