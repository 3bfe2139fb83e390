//! The coding agents' API use as the views read it: what usage is grouped by and filtered on,
//! a row and a timeline point of it, and a page of rows with its cursor. `store::usage` reads
//! them from the rollups; the API and the alerts show them.

use super::coding_agent::CodingAgent;

/// Tokens by kind, and all of them (an agent may report only the total).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenCounts {
    pub input: i64,
    pub output: i64,
    pub cache_creation: i64,
    pub cache_read: i64,
    pub total: i64,
}

/// What usage rows are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsageGroup {
    Model,
    Session,
    /// The person: `user.email`, else `user.account_uuid`, else `user.id`.
    User,
    AgentType,
    App,
    /// The coding agent: `claude-code`, `codex` or `gemini-cli`.
    Agent,
    /// One row for everything: the metrics cards' total.
    All,
}

impl UsageGroup {
    pub(crate) fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "model" => Self::Model,
            "session" => Self::Session,
            "user" => Self::User,
            "agent_type" => Self::AgentType,
            "app" => Self::App,
            "agent" => Self::Agent,
            _ => return None,
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Model => "model",
            Self::Session => "session",
            Self::User => "user",
            Self::AgentType => "agent_type",
            Self::App => "app",
            Self::Agent => "agent",
            Self::All => "all",
        }
    }

    /// Whether the rows' keys are people.
    pub(crate) fn is_identity(self) -> bool {
        self == Self::User
    }
}

/// Narrows usage to one value of any key; `None` leaves a key open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageFilter {
    pub model: Option<String>,
    pub session_id: Option<String>,
    pub app: Option<String>,
    pub agent_type: Option<String>,
    /// The coding agent, by the name the views use (`CodingAgent::name`).
    pub agent: Option<String>,
    /// A person, as `user.email`, `user.account_uuid` or `user.id` (whichever the records
    /// carry first, in that order).
    pub user: Option<String>,
    pub organization_id: Option<String>,
}

impl UsageFilter {
    /// Whether it needs each row's session: to filter by a session, its app or its agent.
    pub(crate) fn needs_session(&self) -> bool {
        self.session_id.is_some() || self.app.is_some() || self.agent.is_some()
    }

    /// Whether it names a person or an organization.
    pub(crate) fn names_identity(&self) -> bool {
        self.user.is_some() || self.organization_id.is_some()
    }
}

/// One row of usage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageRow {
    /// The group's value; `""` where the records did not say (no model, no person…).
    pub key: String,
    /// The whole cost, in nano-dollars: measured where there is telemetry, estimated where not.
    pub cost_nanos: i64,
    /// The part of `cost_nanos` that is the transcript estimate.
    pub estimated_cost_nanos: i64,
    pub tokens: TokenCounts,
    /// API requests (`api_request` events).
    pub requests: i64,
    /// `api_error` events.
    pub errors: i64,
    pub latency_p50_ms: Option<i64>,
    pub latency_p95_ms: Option<i64>,
    /// Its measured cost is an agent's tokens priced (Codex's or Gemini's: neither reports a
    /// cost), as known where the row is one such agent's ([`UsageRow::mark_priced_agents`]).
    pub priced_from_tokens: bool,
}

impl UsageRow {
    /// Where the row's cost comes from: all of it measured (by the agent, or from its tokens),
    /// all of it estimated, or both (a group of sessions some of which sent telemetry), with
    /// the share measured.
    pub fn source(&self) -> MeasuredShare {
        match MeasuredShare::of(self.cost_nanos, self.estimated_cost_nanos, self.requests) {
            MeasuredShare::Telemetry if self.priced_from_tokens => MeasuredShare::Tokens,
            share => share,
        }
    }

    /// Marks the rows whose cost is all one agent's that reports none: the rows of Codex and
    /// Gemini by agent, or every row of a read narrowed to one of them.
    pub fn mark_priced_agents(rows: &mut [UsageRow], group: UsageGroup, filter: &UsageFilter) {
        let reports_no_cost = |name: &str| {
            CodingAgent::parse(name).is_some_and(|agent| agent != CodingAgent::ClaudeCode)
        };
        let narrowed = filter.agent.as_deref().is_some_and(reports_no_cost);
        for row in rows {
            row.priced_from_tokens =
                narrowed || (group == UsageGroup::Agent && reports_no_cost(&row.key));
        }
    }
}

/// Where a sum of costs comes from, and how much of it was measured by Claude Code's
/// telemetry rather than estimated from transcripts: the same rule for every group, the cards
/// and the sessions, so a figure says its source wherever it is shown.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MeasuredShare {
    Telemetry,
    /// Measured tokens priced at the price table: Codex's and Gemini's, which report no cost.
    Tokens,
    Estimate,
    /// Part measured, part estimated: the measured part's share of the cost, 0 to 1.
    Mixed(f64),
}

impl MeasuredShare {
    /// From a cost, the part of it that is the estimate, and the API requests measured.
    pub fn of(cost_nanos: i64, estimated_nanos: i64, requests: i64) -> Self {
        if estimated_nanos == 0 && (cost_nanos != 0 || requests > 0) {
            Self::Telemetry
        } else if estimated_nanos >= cost_nanos || cost_nanos <= 0 {
            Self::Estimate
        } else {
            Self::Mixed((cost_nanos - estimated_nanos) as f64 / cost_nanos as f64)
        }
    }

    /// As the wire names it: `telemetry`, `tokens`, `estimate` or `mixed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Telemetry => "telemetry",
            Self::Tokens => "tokens",
            Self::Estimate => "estimate",
            Self::Mixed(_) => "mixed",
        }
    }

    /// The measured part's share of the cost.
    pub fn measured(self) -> f64 {
        match self {
            Self::Telemetry | Self::Tokens => 1.0,
            Self::Estimate => 0.0,
            Self::Mixed(share) => share,
        }
    }
}

/// Usage in one bucket of a timeline: telemetry only (estimates say nothing of API calls).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsagePoint {
    pub bucket_ms: i64,
    pub cost_nanos: i64,
    pub tokens: TokenCounts,
    pub requests: i64,
    pub errors: i64,
    pub latency_p50_ms: Option<i64>,
    pub latency_p95_ms: Option<i64>,
}

/// The most rows one usage read answers (sessions are the many-valued key).
pub(crate) const MAX_USAGE_ROWS: usize = 1000;

/// Which rows of a usage read: at most `limit`, most expensive first, after `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsagePage {
    pub limit: usize,
    pub after: Option<UsageCursor>,
}

impl Default for UsagePage {
    fn default() -> Self {
        Self {
            limit: MAX_USAGE_ROWS,
            after: None,
        }
    }
}

/// Where a page of usage rows ended: rows are ordered by cost and requests (most first), then
/// key, so the next page is the rows after the last one's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageCursor {
    pub cost_nanos: i64,
    pub requests: i64,
    pub key: String,
}

impl UsageCursor {
    pub(crate) fn after(row: &UsageRow) -> Self {
        Self {
            cost_nanos: row.cost_nanos,
            requests: row.requests,
            key: row.key.clone(),
        }
    }

    /// `cost:requests:key`, the key as it is.
    pub(crate) fn encode(&self) -> String {
        format!("{}:{}:{}", self.cost_nanos, self.requests, self.key)
    }

    pub(crate) fn decode(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, ':');
        Some(Self {
            cost_nanos: parts.next()?.parse().ok()?,
            requests: parts.next()?.parse().ok()?,
            key: parts.next()?.to_owned(),
        })
    }
}
