//! Sessions and agents as the views show them: the read models `GET /api/sessions`,
//! `/api/agents` and their details answer with. The store fills them from its rows (with the
//! transcript estimate); [`super::attribution`] adds what Claude Code's telemetry measured.

use std::collections::BTreeMap;

use super::lifecycle::{AgentStatus, ToolCall};
pub(crate) use super::usage::TokenCounts;

/// How many agents are active, and when the one that will go idle first was last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveAgents {
    pub count: i64,
    pub least_recently_seen_ms: Option<i64>,
}

/// Which agents to list. `Active` means running and seen within the idle time-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentStatusFilter {
    All,
    Active,
    Is(AgentStatus),
}

/// An agent: a subagent, or a session's main agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    pub id: String,
    pub kind: &'static str,
    pub agent_type: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub session_id: String,
    pub source_app: String,
    pub status: AgentStatus,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub last_seen: i64,
    pub duration_ms: Option<i64>,
    pub tokens: TokenCounts,
    pub estimated_cost: f64,
    pub model: Option<String>,
    pub error: Option<String>,
    pub tool_use_id: Option<String>,
    /// For a running agent, the tool of its newest tool call still running.
    pub current_tool: Option<String>,
    /// Its share of its session's API use, where the session has telemetry
    /// (`domain::attribution`); `None`: its cost is the estimate.
    pub telemetry: Option<TelemetryUsage>,
    /// Its session's coding agent where it is not Claude Code (`SessionRecord::coding_agent`).
    pub coding_agent: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AgentDetail {
    pub agent: AgentRecord,
    pub tool_calls: Vec<ToolCall>,
}

/// A session's row as the lifecycle's rules leave it (`lifecycle::apply`): what every
/// ledger stores, and what its read model is made of.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionRow {
    pub source_app: String,
    pub started_at: i64,
    pub last_seen: i64,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
    pub cwd: Option<String>,
    pub model: Option<String>,
    pub events: i64,
    pub prompts: i64,
    pub tool_calls: i64,
}

/// A session as the views show it: its row, and what is derived from it when read.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub session_id: String,
    pub row: SessionRow,
    /// As shown: a session not seen within the idle time-out is timed out.
    pub status: AgentStatus,
    pub subagent_count: i64,
    /// The main agent's tokens, from its transcript (subagents' are on their own records).
    pub tokens: TokenCounts,
    pub estimated_cost: f64,
    /// Its subagents' transcript estimates, summed.
    pub subagents_estimated_cost: f64,
    /// Its subagents' transcript tokens, summed.
    pub subagents_estimated_tokens: i64,
    /// What Claude Code's telemetry measured for it (`None`: nothing that measures its cost,
    /// and the estimate stands).
    pub telemetry: Option<TelemetryUsage>,
    /// The coding agent where it is not Claude Code (`codex`, `gemini-cli`), as its hooks or
    /// its telemetry named it: such an agent reports no cost, so its measured cost is its
    /// tokens priced.
    pub coding_agent: Option<String>,
    /// Where the session is known from.
    pub seen_by: SeenBy,
}

/// Which sources have seen a session: the hooks, Claude Code's telemetry, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeenBy {
    Hooks,
    Telemetry,
    Both,
}

impl SeenBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hooks => "hooks",
            Self::Telemetry => "telemetry",
            Self::Both => "both",
        }
    }
}

/// What a session seen only through telemetry is listed under: the service that sent it.
pub const TELEMETRY_SOURCE_APP: &str = "claude-code";
/// What a session seen only through Codex CLI's telemetry is listed under.
pub const CODEX_APP: &str = "codex";
/// What a session seen only through Gemini CLI's telemetry is listed under.
pub const GEMINI_APP: &str = "gemini-cli";

/// Whether sessions seen only through telemetry may be listed under `app`.
pub fn is_telemetry_app(app: &str) -> bool {
    [TELEMETRY_SOURCE_APP, CODEX_APP, GEMINI_APP].contains(&app)
}

impl SessionRecord {
    /// The session's cost, one truth: what telemetry measured where it measured any, else
    /// every transcript's estimate (the main agent's and its subagents'), never the two added.
    pub fn cost(&self) -> (f64, CostSource) {
        match &self.telemetry {
            Some(measured) => (measured.cost_usd, measured.source),
            None => (
                self.estimated_cost + self.subagents_estimated_cost,
                CostSource::Estimate,
            ),
        }
    }

    /// The session's tokens by the same rule as [`Self::cost`], from the same source.
    pub fn total_tokens(&self) -> i64 {
        match &self.telemetry {
            Some(measured) => measured.tokens.total,
            None => self
                .tokens
                .total
                .saturating_add(self.subagents_estimated_tokens),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SessionDetail {
    pub session: SessionRecord,
    pub agents: Vec<AgentRecord>,
    /// What Claude Code's own telemetry measured for the session, if it sent any.
    pub telemetry: Option<TelemetryUsage>,
    /// The telemetry per prompt (`prompt.id`), in the order the prompts were first seen.
    pub prompts: Vec<PromptUsage>,
    /// Claude Code's other counters for the session, summed over their delta points: lines of
    /// code added and removed, commits, pull requests, active time (seconds), by stored name
    /// (`lines_of_code.added`, `commits`, `active_time.user`, …).
    pub counters: BTreeMap<String, f64>,
}

/// One prompt's API use.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptUsage {
    pub prompt_id: String,
    pub first_at_ms: i64,
    pub usage: TelemetryUsage,
}

/// Where a cost comes from, best first: Claude Code's `api_request` events, else its
/// `cost.usage` and `token.usage` counters, else hookwatch's estimate from the transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CostSource {
    /// Claude Code's `api_request` events: one per request, summed.
    TelemetryEvents,
    /// Claude Code's counters (delta points), summed.
    TelemetryMetrics,
    Estimate,
}

/// A session's API use as Claude Code's telemetry measured it.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryUsage {
    pub source: CostSource,
    pub cost_usd: f64,
    pub tokens: TokenCounts,
    /// API requests (events only; the counters do not count requests).
    pub requests: i64,
    /// `api_error` events.
    pub errors: i64,
}
