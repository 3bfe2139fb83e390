//! The join of Claude Code's telemetry with the hook events, per session: its API use in all
//! (one truth: `api_request` events, else the cost and token counters), per prompt
//! (`prompt.id` ↔ the hooks' `prompt_id`) and per agent.
//!
//! An API request names the agent *type* that made it (`query_source`, `agent.name`: see
//! `otlp::events::Attribution::agent_type`), not the run. It goes to the session's main
//! agent when the type is `main`; else to the run of that type whose span (SubagentStart to
//! SubagentStop, or to now while it runs) holds the request's time, the latest-started when
//! runs of one type overlap; else to the run of that type nearest in time. A request of a
//! type no run of the session has stays in the session's totals and in no agent's. Every
//! request goes to at most one agent, so the agents' costs add up to no more than the
//! session's. The join is made when read, from stored rows, so it holds whichever of the
//! hooks and the telemetry arrived first.

use std::collections::{BTreeMap, HashMap};

use super::lifecycle::{MAIN_AGENT_TYPE, ToolCall};
use super::sessions::{CostSource, PromptUsage, TelemetryUsage, TokenCounts};

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

/// The sum of some API use.
pub(crate) fn total(source: CostSource, uses: &[&ApiUse]) -> TelemetryUsage {
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
pub(crate) fn by_prompt(source: CostSource, uses: &[ApiUse]) -> Vec<PromptUsage> {
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
pub(crate) struct AgentSpan {
    pub id: String,
    pub agent_type: String,
    pub is_main: bool,
    pub started_at: Option<i64>,
    /// `None` while it runs.
    pub ended_at: Option<i64>,
}

impl AgentSpan {
    /// A session's main agent (its id is the session's).
    pub(crate) fn main(session_id: &str) -> Self {
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
pub(crate) fn agent_of(usage: &ApiUse, agents: &[AgentSpan]) -> Option<usize> {
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
pub(crate) fn per_agent(
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

/// The most entries a session's activity lists (the newest).
pub(crate) const MAX_ACTIVITY: usize = 2000;

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
    pub(crate) fn at_ms(&self) -> i64 {
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

/// What a `tool_result` or `tool_decision` event says of a tool call.
pub(crate) struct ToolTelemetry {
    pub is_decision: bool,
    pub at_ms: i64,
    pub tool_use_id: String,
    pub tool_name: String,
    pub success: Option<i64>,
    pub decision: Option<String>,
    pub decision_source: Option<String>,
    pub duration_ms: Option<i64>,
}

/// A session's activity from what was read: its hook tool calls (newest first), what
/// `tool_result` and `tool_decision` said of tool calls (newest first), its API use when its
/// source is the `api_request` events, and its runs. In time order, the newest
/// [`MAX_ACTIVITY`].
pub(crate) fn activity(
    calls: Vec<ToolCall>,
    told: Vec<ToolTelemetry>,
    api_use: Option<(CostSource, Vec<ApiUse>)>,
    spans: &[AgentSpan],
) -> Vec<Activity> {
    let mut tools: Vec<ToolStep> = calls
        .into_iter()
        .map(|call| ToolStep {
            at_ms: call.began_at(),
            ended_at: call.ended_at,
            agent_id: Some(call.agent_key),
            tool_name: call.tool_name,
            tool_use_id: call.tool_use_id,
            status: call.status.as_str().to_owned(),
            duration_ms: call.duration_ms,
            ..ToolStep::default()
        })
        .collect();
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
    if let Some((CostSource::TelemetryEvents, uses)) = api_use {
        activity.extend(uses.into_iter().map(|usage| {
            let agent_id = agent_of(&usage, spans).map(|i| spans[i].id.clone());
            Activity::Api { usage, agent_id }
        }));
    }
    activity.sort_by_key(Activity::at_ms);
    let excess = activity.len().saturating_sub(MAX_ACTIVITY);
    activity.drain(..excess);
    activity
}

/// Each run's share of its session's API use, by run id, every run of `spans` included: a run
/// that made no request is measured at zero, not estimated.
pub(crate) fn shares_of_every_run(
    source: CostSource,
    uses: &[ApiUse],
    spans: &[AgentSpan],
) -> BTreeMap<String, TelemetryUsage> {
    let mut shares = per_agent(source, uses, spans);
    for span in spans {
        shares
            .entry(span.id.clone())
            .or_insert_with(|| total(source, &[]));
    }
    shares
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

    fn told(kind: &str, tool_use_id: &str, at_ms: i64) -> ToolTelemetry {
        ToolTelemetry {
            is_decision: kind == "tool_decision",
            at_ms,
            tool_use_id: tool_use_id.into(),
            tool_name: "Bash".into(),
            success: (kind == "tool_result").then_some(1),
            decision: (kind == "tool_decision").then(|| "accept".into()),
            decision_source: (kind == "tool_decision").then(|| "config".into()),
            duration_ms: (kind == "tool_result").then_some(40),
        }
    }

    #[test]
    fn the_activity_joins_a_hook_call_with_what_telemetry_said_of_it_and_keeps_time_order() {
        let hook_call = ToolCall {
            row_id: Some(1),
            tool_use_id: Some("t1".into()),
            session_id: "S".into(),
            source_app: "app".into(),
            agent_key: "S".into(),
            agent_type: MAIN_AGENT_TYPE.into(),
            tool_name: "Bash".into(),
            counted_at: 100,
            started_at: Some(100),
            ended_at: Some(150),
            duration_ms: Some(50),
            status: crate::domain::lifecycle::ToolCallStatus::Succeeded,
            error: None,
            spawn_type: None,
            spawn_description: None,
            spawned_agent: None,
        };
        let mut failed = told("tool_result", "t2", 500);
        failed.success = Some(0);
        let telemetry = vec![
            failed,
            told("tool_decision", "t1", 99),
            // The hooks' own status stands over the telemetry's result.
            {
                let mut result = told("tool_result", "t1", 150);
                result.success = Some(0);
                result
            },
        ];
        let uses = vec![request("Explore", 120), request("main", 300)];
        let steps = activity(
            vec![hook_call],
            telemetry,
            Some((CostSource::TelemetryEvents, uses)),
            &agents(),
        );
        let at: Vec<i64> = steps.iter().map(Activity::at_ms).collect();
        assert_eq!(at, [100, 120, 300, 460]);
        let Activity::Tool(joined) = &steps[0] else {
            panic!("{steps:?}")
        };
        assert_eq!(joined.agent_id.as_deref(), Some("S"));
        assert_eq!(joined.status, "succeeded");
        assert_eq!(joined.decision.as_deref(), Some("accept"));
        assert_eq!(joined.decision_source.as_deref(), Some("config"));
        let Activity::Api { agent_id, .. } = &steps[1] else {
            panic!("{steps:?}")
        };
        assert_eq!(agent_id.as_deref(), Some("explore-1"));
        // Seen by telemetry alone: its start is its result's time less its duration.
        let Activity::Tool(alone) = &steps[3] else {
            panic!("{steps:?}")
        };
        assert_eq!(
            (
                alone.status.as_str(),
                alone.ended_at,
                alone.agent_id.as_deref()
            ),
            ("failed", Some(500), None)
        );
        // Counter points do not list requests: the activity then has tool calls only.
        let from_points = activity(
            Vec::new(),
            vec![told("tool_result", "t3", 10)],
            Some((CostSource::TelemetryMetrics, vec![request("main", 5)])),
            &agents(),
        );
        assert_eq!(from_points.len(), 1);
    }
}
