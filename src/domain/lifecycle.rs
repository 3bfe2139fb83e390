//! Agent lifecycles, tool calls and rollups, derived from events.
//!
//! This is the rule book, written once for every store. [`apply`] reads and writes derived
//! state only through the [`Ledger`] trait, which each store implements inside the same
//! transaction that inserts the event, so the event and everything derived from it commit or
//! roll back together.
//!
//! The rules, in short:
//! - An agent is a session's main agent (kept in the session row, type `main`) or a subagent,
//!   keyed by Claude Code's `agent_id`. Only subagents have executions.
//! - A subagent run starts at SubagentStart and completes at SubagentStop. The subagent tool's
//!   PreToolUse/PostToolUse/PostToolUseFailure (joined on `tool_use_id`) add type, description,
//!   `totalDurationMs`, usage and the outcome. Because PostToolUseFailure carries no `agentId`,
//!   a SubagentStart is linked to the oldest unlinked subagent tool call of its session and type
//!   that could have launched it (made no later than the run started, and not ended before);
//!   PostToolUse's `agentId`, when present, overrides that guess. Asking when, not only in
//!   what order things arrived, links the same runs to the same calls in any arrival order.
//! - Events may arrive in any order. A subagent call's result that names no agent and comes
//!   before any run is linked goes to a stand-in run (`tool:<tool_use_id>`), which the run's
//!   SubagentStart adopts when it arrives; a PreToolUse after its PostToolUse fills in the
//!   call's start and duration. The property test in `lifecycle/tests.rs` holds this.
//! - An execution is a subagent that completed or failed, counted at the time it ended. Each
//!   agent contributes at most one execution: every change recomputes the agent's contribution
//!   and applies the difference to the rollup, so repeats and late enrichment never double
//!   count, and a crash can never leave rollups and agents disagreeing.
//! - A tool call is counted once, when its first event (Pre, or Post if no Pre was seen) arrives.

use super::coding_agent::CodingAgent;
use super::event::{
    API_AGENT_COMPLETED, API_AGENT_STARTED, HookEvent, HookFacts, SubagentRequest, TokenUsage,
};
use super::pricing::PriceTable;
use super::time::minute_bucket;
use super::views::ExecutionTotals;

/// How the key of a stand-in run begins: a subagent known only from its tool call's result,
/// which names no agent (an old client, or a PostToolUseFailure that came before the run's
/// SubagentStart). A SubagentStart that finds no unlinked call adopts the oldest stand-in.
pub(crate) const STAND_IN_PREFIXES: [&str; 2] = ["tool:", "event:"];

/// The agent type of a session's main agent.
pub(crate) const MAIN_AGENT_TYPE: &str = "main";
/// The agent type recorded until an event names the real one.
pub(crate) const UNKNOWN_AGENT_TYPE: &str = "unknown";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentStatus {
    Running,
    Completed,
    Failed,
    TimedOut,
}

impl AgentStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "running" => Self::Running,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "timed_out" => Self::TimedOut,
            _ => return None,
        })
    }

    pub(crate) fn is_ended(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

/// A subagent run, as derived so far.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Agent {
    pub key: String,
    pub session_id: String,
    pub source_app: String,
    pub agent_type: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub status: AgentStatus,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub last_seen: i64,
    pub subagent_start_at: Option<i64>,
    pub subagent_stop_at: Option<i64>,
    pub reported_duration_ms: Option<i64>,
    pub tool_duration_ms: Option<i64>,
    pub usage: TokenUsage,
    pub reported_total_tokens: Option<i64>,
    pub model: Option<String>,
    pub cost_nanos: i64,
    pub error: Option<String>,
    pub tool_use_id: Option<String>,
}

impl Agent {
    fn new(key: &str, event: &HookEvent, agent_type: Option<&str>) -> Self {
        Self {
            key: key.to_owned(),
            session_id: event.session_id.clone(),
            source_app: event.source_app.clone(),
            agent_type: agent_type.unwrap_or(UNKNOWN_AGENT_TYPE).to_owned(),
            name: None,
            description: None,
            status: AgentStatus::Running,
            started_at: None,
            ended_at: None,
            last_seen: event.timestamp_ms,
            subagent_start_at: None,
            subagent_stop_at: None,
            reported_duration_ms: None,
            tool_duration_ms: None,
            usage: TokenUsage::default(),
            reported_total_tokens: None,
            model: None,
            cost_nanos: 0,
            error: None,
            tool_use_id: None,
        }
    }

    /// Stop minus start when the run's start was seen (the stop being SubagentStop, or the
    /// failure that ended it); otherwise what the tool or the caller reported; otherwise the
    /// span between the first and the ending event.
    pub(crate) fn duration_ms(&self) -> Option<i64> {
        let span = |a: Option<i64>, b: Option<i64>| Some((b? - a?).max(0));
        span(
            self.subagent_start_at,
            self.subagent_stop_at.or(self.ended_at),
        )
        .or(self.reported_duration_ms)
        .or(self.tool_duration_ms)
        .or_else(|| span(self.started_at, self.ended_at))
    }

    pub(crate) fn total_tokens(&self) -> i64 {
        self.usage
            .total()
            .max(self.reported_total_tokens.unwrap_or(0))
    }

    /// This agent's contribution to the execution rollups, if it is an execution.
    pub(crate) fn execution(&self) -> Option<Execution> {
        if !self.status.is_ended() {
            return None;
        }
        Some(Execution {
            bucket_ms: minute_bucket(self.ended_at?),
            agent_type: self.agent_type.clone(),
            succeeded: self.status == AgentStatus::Completed,
            duration_ms: self.duration_ms(),
            tokens: self.total_tokens(),
            cost_nanos: self.cost_nanos,
        })
    }

    fn end_at(&mut self, ts: i64) {
        self.ended_at = Some(self.ended_at.map_or(ts, |e| e.min(ts)));
    }

    fn seen_at(&mut self, ts: i64) {
        self.last_seen = self.last_seen.max(ts);
        if self.status == AgentStatus::TimedOut {
            self.status = AgentStatus::Running;
        }
    }

    fn set_type_if_unknown(&mut self, agent_type: Option<&str>) {
        if let Some(t) = agent_type
            && self.agent_type == UNKNOWN_AGENT_TYPE
        {
            self.agent_type = t.to_owned();
        }
    }
}

/// One execution's weight in the rollups.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Execution {
    pub bucket_ms: i64,
    pub agent_type: String,
    pub succeeded: bool,
    pub duration_ms: Option<i64>,
    pub tokens: i64,
    pub cost_nanos: i64,
}

impl Execution {
    /// This execution as rollup sums; `sign` -1 gives the sums that remove it.
    pub(crate) fn totals(&self, sign: i64) -> ExecutionTotals {
        ExecutionTotals {
            agent_type: self.agent_type.clone(),
            executions: sign,
            successes: sign * i64::from(self.succeeded),
            failures: sign * i64::from(!self.succeeded),
            duration_sum_ms: sign.saturating_mul(self.duration_ms.unwrap_or(0)),
            duration_count: sign * i64::from(self.duration_ms.is_some()),
            tokens: sign * self.tokens,
            cost_nanos: sign * self.cost_nanos,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolCallStatus {
    Running,
    Succeeded,
    Failed,
}

impl ToolCallStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    pub(crate) fn parse(text: &str) -> Self {
        match text {
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            _ => Self::Running,
        }
    }
}

/// One tool call, its Pre and Post joined on `tool_use_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The store's row id; `None` until saved.
    pub row_id: Option<i64>,
    pub tool_use_id: Option<String>,
    pub session_id: String,
    pub source_app: String,
    /// The agent that made the call: a subagent's key, or the session id for the main agent.
    pub agent_key: String,
    pub agent_type: String,
    pub tool_name: String,
    /// When the call was counted in the rollups (its first event).
    pub counted_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub duration_ms: Option<i64>,
    pub status: ToolCallStatus,
    pub error: Option<String>,
    /// For the subagent tool: the requested type, and the agent it was linked to.
    pub spawn_type: Option<String>,
    pub spawn_description: Option<String>,
    pub spawned_agent: Option<String>,
}

impl ToolCall {
    /// When it started, else when it was first seen (a call whose result came first).
    pub(crate) fn began_at(&self) -> i64 {
        self.started_at.unwrap_or(self.counted_at)
    }
}

/// How one event changes its session row. Stores apply it as a single upsert.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SessionTouch<'a> {
    pub session_id: &'a str,
    pub source_app: &'a str,
    pub at: i64,
    pub cwd: Option<&'a str>,
    pub model: Option<&'a str>,
    pub prompts: i64,
    pub tool_calls: i64,
    /// SessionStart: reopens a session that had ended before this time.
    pub started: bool,
    /// SessionEnd, with its reason.
    pub ended: Option<Option<&'a str>>,
    /// The coding agent, where it is not Claude Code (`CodingAgent::stored_name`).
    pub coding_agent: Option<&'static str>,
}

/// A change of an agent's status, reported to the caller (for live views).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentTransition {
    pub agent_key: String,
    pub agent_type: String,
    pub session_id: String,
    pub from: Option<AgentStatus>,
    pub to: AgentStatus,
}

/// Storage primitives the rules need, implemented by each store inside its write transaction.
pub(crate) trait Ledger {
    type Error;

    fn touch_session(&mut self, touch: &SessionTouch<'_>) -> Result<(), Self::Error>;
    fn agent(&mut self, key: &str) -> Result<Option<Agent>, Self::Error>;
    fn save_agent(&mut self, agent: &Agent) -> Result<(), Self::Error>;
    /// The call with this id made by this agent (a subagent's key, or the session id).
    fn tool_call(
        &mut self,
        agent_key: &str,
        tool_use_id: &str,
    ) -> Result<Option<ToolCall>, Self::Error>;
    /// The oldest call this agent made of this tool with no `tool_use_id` that started no
    /// later than `not_after_ms` and has not ended: what an end that names no call closes
    /// (Gemini's hooks carry no tool-call id).
    fn oldest_open_unnamed_call(
        &mut self,
        agent_key: &str,
        tool_name: &str,
        not_after_ms: i64,
    ) -> Result<Option<ToolCall>, Self::Error>;
    /// Inserts (when `row_id` is `None`) or updates; returns the row id.
    fn save_tool_call(&mut self, call: &ToolCall) -> Result<i64, Self::Error>;
    /// Inserts a new call (`row_id` is `None`, `tool_use_id` is set) unless its agent already
    /// has a call with that `tool_use_id`: the row id, or `None` when one exists. A store can
    /// do this in one statement; the default looks first.
    fn insert_tool_call_if_new(&mut self, call: &ToolCall) -> Result<Option<i64>, Self::Error> {
        let id = call.tool_use_id.as_deref().unwrap_or_default();
        if self.tool_call(&call.agent_key, id)?.is_some() {
            return Ok(None);
        }
        self.save_tool_call(call).map(Some)
    }
    /// The oldest subagent tool call of the session and type not yet linked to an agent that
    /// may have launched a run started at `not_after_ms`: made no later and ended no earlier
    /// (an unknown start or end does not rule it out).
    fn oldest_unlinked_spawn(
        &mut self,
        session_id: &str,
        subagent_type: &str,
        not_after_ms: i64,
    ) -> Result<Option<ToolCall>, Self::Error>;
    /// The oldest subagent tool call of the session and type linked only to a stand-in run
    /// ([`STAND_IN_PREFIXES`]): its result arrived before its run's SubagentStart. Bounded as
    /// [`Ledger::oldest_unlinked_spawn`].
    fn oldest_stand_in_spawn(
        &mut self,
        session_id: &str,
        subagent_type: &str,
        not_after_ms: i64,
    ) -> Result<Option<ToolCall>, Self::Error>;
    /// Deletes an agent row (a stand-in whose run has been found).
    fn delete_agent(&mut self, key: &str) -> Result<(), Self::Error>;
    /// The oldest subagent of the session and type that has a SubagentStart but is not yet
    /// linked to a tool call, and started within `[not_before_ms, not_after_ms]`: while its
    /// call ran (a run that started before a call was made, or after it ended, was not
    /// launched by it). Running or ended: its SubagentStop may have come before its call's
    /// events (issue 30: a failed Task call then made a stand-in beside the real run).
    fn oldest_unlinked_agent(
        &mut self,
        session_id: &str,
        agent_type: &str,
        not_before_ms: i64,
        not_after_ms: i64,
    ) -> Result<Option<Agent>, Self::Error>;
    /// Adds (`sign` = 1) or removes (`sign` = -1) one execution from the rollups.
    fn add_execution(&mut self, execution: &Execution, sign: i64) -> Result<(), Self::Error>;
    fn add_tool_use(
        &mut self,
        bucket_ms: i64,
        tool_name: &str,
        agent_type: &str,
    ) -> Result<(), Self::Error>;
    fn add_event_count(
        &mut self,
        bucket_ms: i64,
        source_app: &str,
        hook_event_type: &str,
    ) -> Result<(), Self::Error>;
    /// Records tokens the session's main agent used (read from its transcript).
    fn add_session_usage(&mut self, usage: &SessionUsage<'_>) -> Result<(), Self::Error>;
}

/// Tokens a session's main agent used, as of one event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SessionUsage<'a> {
    pub session_id: &'a str,
    pub at: i64,
    pub model: &'a str,
    pub usage: TokenUsage,
    pub cost_nanos: i64,
}

/// Applies one newly stored event to the derived state. Returns the status transitions it
/// caused.
pub(crate) fn apply<L: Ledger>(
    ledger: &mut L,
    event: &HookEvent,
    prices: &PriceTable,
) -> Result<Vec<AgentTransition>, L::Error> {
    let mut rules = Rules {
        ledger,
        event,
        prices,
        transitions: Vec::new(),
        new_tool_calls: 0,
    };
    rules.run()?;
    Ok(rules.transitions)
}

struct Rules<'a, L: Ledger> {
    ledger: &'a mut L,
    event: &'a HookEvent,
    prices: &'a PriceTable,
    transitions: Vec<AgentTransition>,
    new_tool_calls: i64,
}

impl<L: Ledger> Rules<'_, L> {
    fn facts(&self) -> &HookFacts {
        &self.event.facts
    }

    fn ts(&self) -> i64 {
        self.event.timestamp_ms
    }

    fn run(&mut self) -> Result<(), L::Error> {
        let event = self.event;
        let facts = &event.facts;
        self.ledger.add_event_count(
            minute_bucket(event.timestamp_ms),
            &event.source_app,
            &event.hook_event_type,
        )?;
        let acting_agent = match event.hook_event_type.as_str() {
            "SubagentStart" | "SubagentStop" | API_AGENT_STARTED | API_AGENT_COMPLETED => None,
            _ => self.touch_subagent()?,
        };
        match event.hook_event_type.as_str() {
            "PreToolUse" => self.on_tool_start(acting_agent.as_ref())?,
            "PostToolUse" => self.on_tool_end(acting_agent.as_ref(), false)?,
            "PostToolUseFailure" => self.on_tool_end(acting_agent.as_ref(), true)?,
            "SubagentStart" => self.on_subagent_start()?,
            "SubagentStop" => self.on_subagent_stop()?,
            API_AGENT_STARTED => self.on_reported_start()?,
            API_AGENT_COMPLETED => self.on_reported_completion()?,
            _ => {}
        }
        if event.hook_event_type != "SubagentStop" {
            // The main agent's transcript usage (Stop, SessionEnd): additive deltas, since the
            // hook client reads each transcript incrementally.
            for (model, usage) in &facts.transcript_usage {
                self.ledger.add_session_usage(&SessionUsage {
                    session_id: &event.session_id,
                    at: event.timestamp_ms,
                    model,
                    usage: *usage,
                    cost_nanos: self.prices.cost_nanos(Some(model), usage),
                })?;
            }
        }
        let kind = event.hook_event_type.as_str();
        self.ledger.touch_session(&SessionTouch {
            session_id: &event.session_id,
            source_app: &event.source_app,
            at: event.timestamp_ms,
            cwd: facts.cwd.as_deref(),
            model: facts.model.as_deref().or(event
                .model_name
                .as_deref()
                .filter(|model| !model.trim().is_empty())),
            prompts: i64::from(kind == "UserPromptSubmit"),
            tool_calls: self.new_tool_calls,
            started: kind == "SessionStart",
            ended: (kind == "SessionEnd").then_some(facts.reason.as_deref()),
            coding_agent: facts.coding_agent.and_then(CodingAgent::stored_name),
        })
    }

    /// Saves `after`, moving its execution contribution in the rollups from what `before`
    /// contributed. This is the only place agents are written.
    fn commit_agent(&mut self, before: Option<&Agent>, mut after: Agent) -> Result<(), L::Error> {
        after.cost_nanos = if after.usage.is_empty() {
            let tokens = after.reported_total_tokens.unwrap_or(0);
            let as_input = TokenUsage {
                input: tokens,
                ..TokenUsage::default()
            };
            self.prices.cost_nanos(after.model.as_deref(), &as_input)
        } else {
            self.prices.cost_nanos(after.model.as_deref(), &after.usage)
        };
        if before == Some(&after) {
            return Ok(());
        }
        let old = before.and_then(Agent::execution);
        let new = after.execution();
        if old != new {
            if let Some(old) = &old {
                self.ledger.add_execution(old, -1)?;
            }
            if let Some(new) = &new {
                self.ledger.add_execution(new, 1)?;
            }
        }
        let from = before.map(|b| b.status);
        if from != Some(after.status) {
            self.transitions.push(AgentTransition {
                agent_key: after.key.clone(),
                agent_type: after.agent_type.clone(),
                session_id: after.session_id.clone(),
                from,
                to: after.status,
            });
        }
        self.ledger.save_agent(&after)
    }

    fn load_agent(
        &mut self,
        key: &str,
        agent_type: Option<&str>,
    ) -> Result<(Option<Agent>, Agent), L::Error> {
        let before = self.ledger.agent(key)?;
        let after = match &before {
            Some(agent) => agent.clone(),
            None => {
                let mut agent = Agent::new(key, self.event, agent_type);
                agent.started_at = Some(self.ts());
                agent
            }
        };
        Ok((before, after))
    }

    /// Any event from inside a subagent shows it is alive.
    fn touch_subagent(&mut self) -> Result<Option<Agent>, L::Error> {
        let Some((before, mut agent)) = self.named_subagent()? else {
            return Ok(None);
        };
        agent.seen_at(self.ts());
        self.commit_agent(before.as_ref(), agent.clone())?;
        Ok(Some(agent))
    }

    /// Who made a tool call: the subagent the event came from, or the main agent.
    fn caller(&self, acting_agent: Option<&Agent>) -> (String, String) {
        match acting_agent {
            Some(agent) => (agent.key.clone(), agent.agent_type.clone()),
            None => (self.event.session_id.clone(), MAIN_AGENT_TYPE.to_owned()),
        }
    }

    fn new_tool_call(&self, acting_agent: Option<&Agent>) -> ToolCall {
        let (agent_key, agent_type) = self.caller(acting_agent);
        let facts = self.facts();
        let spawn = facts.subagent_request.as_ref();
        ToolCall {
            row_id: None,
            tool_use_id: facts.tool_use_id.clone(),
            session_id: self.event.session_id.clone(),
            source_app: self.event.source_app.clone(),
            agent_key,
            agent_type,
            tool_name: facts
                .tool_name
                .clone()
                .unwrap_or_else(|| "unknown".to_owned()),
            counted_at: self.ts(),
            started_at: None,
            ended_at: None,
            duration_ms: None,
            status: ToolCallStatus::Running,
            error: None,
            spawn_type: spawn.map(|s| s.subagent_type.clone()),
            spawn_description: spawn.and_then(|s| s.description.clone()),
            spawned_agent: None,
        }
    }

    /// The call this event belongs to: the stored one with its `tool_use_id`, or a new one.
    fn find_tool_call(&mut self, acting_agent: Option<&Agent>) -> Result<ToolCall, L::Error> {
        let existing = match self.facts().tool_use_id.clone() {
            Some(id) => {
                let (agent_key, _) = self.caller(acting_agent);
                self.ledger.tool_call(&agent_key, &id)?
            }
            None => None,
        };
        Ok(existing.unwrap_or_else(|| self.new_tool_call(acting_agent)))
    }

    fn save_tool_call(&mut self, call: &mut ToolCall) -> Result<(), L::Error> {
        let is_new = call.row_id.is_none();
        call.row_id = Some(self.ledger.save_tool_call(call)?);
        if is_new {
            self.count_new_tool_call(call)?;
        }
        Ok(())
    }

    /// A call was just inserted: it counts once, in the minute it was first seen.
    fn count_new_tool_call(&mut self, call: &ToolCall) -> Result<(), L::Error> {
        self.new_tool_calls += 1;
        self.ledger.add_tool_use(
            minute_bucket(call.counted_at),
            &call.tool_name,
            &call.agent_type,
        )
    }

    fn on_tool_start(&mut self, acting_agent: Option<&Agent>) -> Result<(), L::Error> {
        // Most PreToolUse events start a call nothing has mentioned yet: insert it outright,
        // and only when its PostToolUse (or a repeat) came first, merge into the stored one.
        if self.facts().tool_use_id.is_some() && self.facts().subagent_request.is_none() {
            let mut call = self.new_tool_call(acting_agent);
            call.started_at = Some(self.ts());
            if let Some(row_id) = self.ledger.insert_tool_call_if_new(&call)? {
                call.row_id = Some(row_id);
                return self.count_new_tool_call(&call);
            }
        }
        let mut call = self.find_tool_call(acting_agent)?;
        call.started_at = Some(call.started_at.map_or(self.ts(), |s| s.min(self.ts())));
        if call.duration_ms.is_none()
            && let (Some(start), Some(end)) = (call.started_at, call.ended_at)
        {
            // The Post came first and reported no duration.
            call.duration_ms = Some(end - start);
        }
        if let Some(key) = call.spawned_agent.clone() {
            self.start_run_with_its_call(&key, &call)?;
        }
        if call.spawn_type.is_none()
            && let Some(SubagentRequest {
                subagent_type,
                description,
            }) = self.facts().subagent_request.clone()
        {
            call.spawn_type = Some(subagent_type);
            call.spawn_description = description;
        }
        if let (Some(spawn_type), None, Some(tool_use_id)) = (
            call.spawn_type.clone(),
            &call.spawned_agent,
            call.tool_use_id.clone(),
        ) {
            // The SubagentStart may have raced ahead of this PreToolUse.
            if let Some(agent) = self.ledger.oldest_unlinked_agent(
                &call.session_id,
                &spawn_type,
                call.started_at.unwrap_or(i64::MIN),
                call.ended_at.unwrap_or(i64::MAX),
            )? {
                let mut linked = agent.clone();
                linked.tool_use_id = Some(tool_use_id);
                if linked.description.is_none() {
                    linked.description = call.spawn_description.clone();
                }
                call.spawned_agent = Some(agent.key.clone());
                self.commit_agent(Some(&agent), linked)?;
            }
        }
        self.save_tool_call(&mut call)
    }

    fn on_tool_end(&mut self, acting_agent: Option<&Agent>, failed: bool) -> Result<(), L::Error> {
        let ts = self.ts();
        let facts = &self.event.facts;
        let mut call = match (&facts.tool_use_id, &facts.tool_name) {
            (None, Some(tool_name)) => {
                // No id to pair by: the end closes the oldest call of the same tool by the
                // same agent still open when it came (calls of one tool by one agent that
                // overlap may pair crosswise; their count and total time stay exact).
                let (agent_key, _) = self.caller(acting_agent);
                match self
                    .ledger
                    .oldest_open_unnamed_call(&agent_key, tool_name, ts)?
                {
                    Some(call) => call,
                    None => self.new_tool_call(acting_agent),
                }
            }
            _ => self.find_tool_call(acting_agent)?,
        };
        call.ended_at = Some(call.ended_at.map_or(ts, |e| e.min(ts)));
        call.status = if failed || call.status == ToolCallStatus::Failed {
            ToolCallStatus::Failed
        } else {
            ToolCallStatus::Succeeded
        };
        call.duration_ms = self
            .facts()
            .duration_ms
            .or_else(|| Some(call.ended_at? - call.started_at?));
        if failed {
            call.error = self.facts().error.clone();
        }
        if call.spawn_type.is_none()
            && let Some(request) = &self.facts().subagent_request
        {
            call.spawn_type = Some(request.subagent_type.clone());
        }
        if call.spawn_type.is_some() {
            self.on_subagent_tool_end(&mut call, failed)?;
        }
        self.save_tool_call(&mut call)
    }

    /// The subagent tool returned: enrich (or, for old clients, create) the run it spawned.
    fn on_subagent_tool_end(&mut self, call: &mut ToolCall, failed: bool) -> Result<(), L::Error> {
        let ts = self.ts();
        let result = self.facts().subagent_result.clone().unwrap_or_default();
        if let (Some(reported), Some(guessed)) = (&result.agent_id, &call.spawned_agent)
            && reported != guessed
        {
            // The start-order guess linked the wrong run: unlink it.
            if let Some(wrong) = self.ledger.agent(guessed)? {
                let mut unlinked = wrong.clone();
                unlinked.tool_use_id = None;
                self.commit_agent(Some(&wrong), unlinked)?;
            }
        }
        let started_unlinked = match (&result.agent_id, &call.spawned_agent, &call.spawn_type) {
            // The run's SubagentStart came before this call's PreToolUse: the same start-order
            // guess the PreToolUse would have made.
            (None, None, Some(spawn_type)) => self
                .ledger
                .oldest_unlinked_agent(
                    &call.session_id,
                    spawn_type,
                    call.started_at.unwrap_or(i64::MIN),
                    call.ended_at.unwrap_or(i64::MAX),
                )?
                .map(|agent| agent.key),
            _ => None,
        };
        let key = result
            .agent_id
            .clone()
            .or_else(|| call.spawned_agent.clone())
            .or(started_unlinked)
            .unwrap_or_else(|| match &call.tool_use_id {
                Some(id) => format!("{}{id}", STAND_IN_PREFIXES[0]),
                None => format!("{}{}", STAND_IN_PREFIXES[1], self.event.event_id),
            });
        call.spawned_agent = Some(key.clone());
        let (before, mut agent) = self.load_agent(&key, call.spawn_type.as_deref())?;
        agent.set_type_if_unknown(call.spawn_type.as_deref());
        agent.tool_use_id = call.tool_use_id.clone().or(agent.tool_use_id);
        if agent.description.is_none() {
            agent.description = call.spawn_description.clone();
        }
        if let (Some(started), None) = (call.started_at, agent.subagent_start_at) {
            // No SubagentStart (an old client): the run started with its tool call.
            agent.started_at = Some(agent.started_at.map_or(started, |s| s.min(started)));
        }
        agent.last_seen = agent.last_seen.max(ts);
        if failed {
            agent.status = AgentStatus::Failed;
            agent.error = self.facts().error.clone().or(agent.error);
            agent.tool_duration_ms = self.facts().duration_ms.or(call.duration_ms);
        } else {
            if agent.status != AgentStatus::Failed {
                agent.status = AgentStatus::Completed;
            }
            agent.reported_duration_ms = result.total_duration_ms.or(agent.reported_duration_ms);
            agent.tool_duration_ms = call.duration_ms.or(agent.tool_duration_ms);
            if let Some(usage) = result.usage {
                agent.usage = usage;
            }
            agent.reported_total_tokens = result.total_tokens.or(agent.reported_total_tokens);
            agent.model = result.model.or(agent.model);
        }
        agent.end_at(ts);
        self.commit_agent(before.as_ref(), agent)
    }

    /// The subagent the event's `agent_id` names: as stored, and a copy to change.
    fn named_subagent(&mut self) -> Result<Option<(Option<Agent>, Agent)>, L::Error> {
        let Some(key) = self.facts().agent_id.clone() else {
            return Ok(None);
        };
        let agent_type = self.facts().agent_type.clone();
        let (before, mut agent) = self.load_agent(&key, agent_type.as_deref())?;
        agent.set_type_if_unknown(agent_type.as_deref());
        Ok(Some((before, agent)))
    }

    fn on_subagent_start(&mut self) -> Result<(), L::Error> {
        let ts = self.ts();
        let Some((before, mut agent)) = self.named_subagent()? else {
            return Ok(());
        };
        agent.subagent_start_at = Some(agent.subagent_start_at.map_or(ts, |s| s.min(ts)));
        agent.started_at = Some(agent.started_at.map_or(ts, |s| s.min(ts)));
        agent.seen_at(ts);
        if agent.tool_use_id.is_none() {
            // The oldest call of its type made before it started, whether its result is still
            // to come (unlinked) or came first (a stand-in's): whatever order they arrived in.
            let started = agent.started_at.unwrap_or(ts);
            let unlinked =
                self.ledger
                    .oldest_unlinked_spawn(&agent.session_id, &agent.agent_type, started)?;
            let stand_in =
                self.ledger
                    .oldest_stand_in_spawn(&agent.session_id, &agent.agent_type, started)?;
            let order = |c: &ToolCall| (c.started_at.is_some(), c.started_at, c.row_id);
            let spawn = match (unlinked, stand_in) {
                (Some(unlinked), Some(stand_in)) if order(&stand_in) < order(&unlinked) => {
                    self.adopt_stand_in(&mut agent, started)?
                }
                (Some(unlinked), _) => Some(unlinked),
                (None, _) => self.adopt_stand_in(&mut agent, started)?,
            };
            if let Some(mut spawn) = spawn {
                spawn.spawned_agent = Some(agent.key.clone());
                agent.tool_use_id = spawn.tool_use_id.clone();
                if agent.description.is_none() {
                    agent.description = spawn.spawn_description.clone();
                }
                self.ledger.save_tool_call(&spawn)?;
            }
        }
        self.commit_agent(before.as_ref(), agent)
    }

    /// The run's tool call ended before its SubagentStart arrived, so the result went to a
    /// stand-in: `agent` takes over what the stand-in learned, and the stand-in goes (with its
    /// execution). Returns the call, to be linked to `agent`.
    fn adopt_stand_in(
        &mut self,
        agent: &mut Agent,
        started: i64,
    ) -> Result<Option<ToolCall>, L::Error> {
        let Some(spawn) =
            self.ledger
                .oldest_stand_in_spawn(&agent.session_id, &agent.agent_type, started)?
        else {
            return Ok(None);
        };
        let stand_in_key = spawn.spawned_agent.clone().unwrap_or_default();
        if let Some(stand_in) = self.ledger.agent(&stand_in_key)? {
            // What the call's result said of the run, as if it had come after the run's own
            // events: a failed call fails the run whatever its SubagentStop said
            // (`on_subagent_tool_end`); another result ends a run still running.
            if stand_in.status == AgentStatus::Failed
                || (stand_in.status.is_ended() && !agent.status.is_ended())
            {
                agent.status = stand_in.status;
            }
            if let Some(ended) = stand_in.ended_at {
                agent.end_at(ended);
            }
            agent.last_seen = agent.last_seen.max(stand_in.last_seen);
            agent.error = agent.error.take().or(stand_in.error.clone());
            agent.description = agent.description.take().or(stand_in.description.clone());
            agent.reported_duration_ms =
                agent.reported_duration_ms.or(stand_in.reported_duration_ms);
            agent.tool_duration_ms = agent.tool_duration_ms.or(stand_in.tool_duration_ms);
            if agent.usage.is_empty() {
                agent.usage = stand_in.usage;
            }
            agent.reported_total_tokens = agent
                .reported_total_tokens
                .or(stand_in.reported_total_tokens);
            agent.model = agent.model.take().or(stand_in.model.clone());
            if let Some(execution) = stand_in.execution() {
                self.ledger.add_execution(&execution, -1)?;
            }
            self.ledger.delete_agent(&stand_in.key)?;
        }
        Ok(Some(spawn))
    }

    /// A subagent call's PreToolUse came after its result: a run known only from the call
    /// (no SubagentStart) started when the call did.
    fn start_run_with_its_call(&mut self, key: &str, call: &ToolCall) -> Result<(), L::Error> {
        let Some(agent) = self.ledger.agent(key)? else {
            return Ok(());
        };
        let (Some(started), None) = (call.started_at, agent.subagent_start_at) else {
            return Ok(());
        };
        let mut updated = agent.clone();
        updated.started_at = Some(updated.started_at.map_or(started, |s| s.min(started)));
        if updated.tool_duration_ms.is_none() {
            updated.tool_duration_ms = call.duration_ms;
        }
        self.commit_agent(Some(&agent), updated)
    }

    fn on_subagent_stop(&mut self) -> Result<(), L::Error> {
        let ts = self.ts();
        let Some((before, mut agent)) = self.named_subagent()? else {
            return Ok(());
        };
        agent.subagent_stop_at = Some(agent.subagent_stop_at.map_or(ts, |s| s.min(ts)));
        agent.last_seen = agent.last_seen.max(ts);
        if !agent.status.is_ended() {
            agent.status = AgentStatus::Completed;
        }
        agent.end_at(ts);
        // The subagent's transcript usage counts only while nothing else reported its usage:
        // the subagent tool's PostToolUse (which comes after SubagentStop) carries the run's
        // totals and replaces it, so the two are never added together.
        if agent.usage.is_empty() {
            for (model, usage) in &self.facts().transcript_usage {
                agent.usage.add(usage);
                agent.model = agent.model.take().or_else(|| Some(model.clone()));
            }
        }
        self.commit_agent(before.as_ref(), agent)
    }

    fn on_reported_start(&mut self) -> Result<(), L::Error> {
        let Some(reported) = self.facts().reported_agent.clone() else {
            return Ok(());
        };
        let (before, mut agent) =
            self.load_agent(&reported.agent_id, reported.agent_type.as_deref())?;
        agent.name = reported.agent_name.or(agent.name);
        agent.description = reported.description.or(agent.description);
        agent.model = reported.model.or(agent.model);
        agent.seen_at(self.ts());
        self.commit_agent(before.as_ref(), agent)
    }

    fn on_reported_completion(&mut self) -> Result<(), L::Error> {
        let ts = self.ts();
        let Some(reported) = self.facts().reported_agent.clone() else {
            return Ok(());
        };
        let (before, mut agent) =
            self.load_agent(&reported.agent_id, reported.agent_type.as_deref())?;
        if agent.status.is_ended() {
            return Ok(()); // A repeated completion never makes a second execution.
        }
        agent.set_type_if_unknown(reported.agent_type.as_deref());
        agent.name = reported.agent_name.or(agent.name);
        agent.status = if reported.error.is_some() {
            AgentStatus::Failed
        } else {
            AgentStatus::Completed
        };
        agent.error = reported.error;
        agent.reported_duration_ms = reported.duration_ms.or(agent.reported_duration_ms);
        if let Some(usage) = reported.usage {
            agent.usage = usage;
        }
        agent.reported_total_tokens = reported.total_tokens.or(agent.reported_total_tokens);
        agent.model = reported.model.or(agent.model);
        agent.last_seen = agent.last_seen.max(ts);
        agent.end_at(ts);
        for tool in &reported.tools_used {
            let mut call = ToolCall {
                tool_use_id: None,
                agent_key: agent.key.clone(),
                agent_type: agent.agent_type.clone(),
                tool_name: tool.clone(),
                started_at: Some(ts),
                ended_at: Some(ts),
                status: ToolCallStatus::Succeeded,
                spawn_type: None,
                spawn_description: None,
                ..self.new_tool_call(None)
            };
            self.save_tool_call(&mut call)?;
        }
        self.commit_agent(before.as_ref(), agent)
    }
}

#[cfg(test)]
pub mod memory;
#[cfg(test)]
pub mod tests;
