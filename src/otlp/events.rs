//! The typed events every agent's log records are read into: what hookwatch stores and joins
//! whichever agent sent it (`claude.rs` reads Claude Code's, `codex.rs` Codex CLI's,
//! `gemini.rs` Gemini CLI's), before `claude.rs` turns them into rows.

use super::agent::Agent;

/// Who and where a record is from; the identity keys are filterable dimensions of cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Identity {
    pub session_id: Option<String>,
    /// The anonymous install id (always present).
    pub user_id: Option<String>,
    pub user_email: Option<String>,
    pub account_uuid: Option<String>,
    pub organization_id: Option<String>,
}

/// One coding agent's event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AgentEvent {
    pub agent: Agent,
    pub identity: Identity,
    /// The prompt being processed (hooks' `prompt_id`); absent before the first prompt.
    pub prompt_id: Option<String>,
    /// When it was emitted, ms since the epoch.
    pub at_ms: i64,
    /// Orders events within one process.
    pub sequence: Option<i64>,
    pub kind: EventKind,
    /// What tells this record from another of its kind, session and moment where its agent
    /// sends no sequence number (Codex, Gemini): a digest of its attributes as sent.
    pub digest: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum EventKind {
    ApiRequest(ApiRequest),
    ApiError(ApiError),
    ToolResult(ToolResult),
    ToolDecision(ToolDecision),
    UserPrompt(UserPrompt),
    /// An event hookwatch does not read (yet): its bare name (Claude Code's), or its name as
    /// sent (the other agents', prefix and all, so it is never taken for one of Claude Code's).
    Other(String),
    /// A record whose numbers contradict each other, and why: it is rejected, naming them.
    Rejected(String),
}

/// The four kinds of tokens an API request uses (the hooks' transcript usage has the same):
/// the input apart from the cache, the output, and the cache's reads and writes.
pub(crate) use crate::domain::event::TokenUsage as Tokens;

/// An input count that includes its cached part, split into the input apart from the cache
/// and the cached part; a cached part larger than the input that includes it is refused,
/// naming both fields (the record is [`EventKind::Rejected`]).
pub(super) fn split_cached(
    (input_field, input): (&str, i64),
    (cached_field, cached): (&str, i64),
) -> Result<(i64, i64), String> {
    if cached > input {
        return Err(format!(
            "{cached_field} ({cached}) is more than {input_field} ({input}), which includes it"
        ));
    }
    Ok((input.saturating_sub(cached), cached))
}

/// Which agent made a request, as far as the event says (`agent.name` is `custom` for
/// user-defined agents; `query_source` is the raw subsystem, e.g. `agent:builtin:Explore`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Attribution {
    pub agent_name: Option<String>,
    pub query_source: Option<String>,
}

impl Attribution {
    /// The agent type the hooks would name: `main` for the main thread (and its auxiliary
    /// requests: titles, compaction, made for the session rather than by a subagent), else the
    /// subagent's type, read from `query_source` (`agent:builtin:Explore` on events) or, where
    /// that is only a category (`subagent` on metrics) or redacted, from `agent.name`.
    pub(crate) fn agent_type(&self) -> String {
        const MAIN: &str = crate::domain::lifecycle::MAIN_AGENT_TYPE;
        let name = || self.agent_name.clone();
        match self.query_source.as_deref() {
            Some(source) if source.starts_with("agent:builtin:") => {
                source["agent:builtin:".len()..].to_owned()
            }
            Some(source) if source.starts_with("agent:custom") => {
                name().unwrap_or_else(|| "custom".to_owned())
            }
            Some(source) if source.starts_with("agent:") && source.len() > "agent:".len() => {
                source["agent:".len()..].to_owned()
            }
            Some("subagent") => name().unwrap_or_else(|| "subagent".to_owned()),
            Some(_) => MAIN.to_owned(),
            None => name().unwrap_or_else(|| MAIN.to_owned()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiRequest {
    pub model: Option<String>,
    /// As reported (Claude Code), or `None` where the agent reports none (Codex, Gemini): then
    /// its tokens are priced (`RecordRules::prices`).
    pub cost_usd: Option<f64>,
    pub tokens: Tokens,
    pub duration_ms: Option<i64>,
    pub request_id: Option<String>,
    pub attribution: Attribution,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub model: Option<String>,
    pub error: Option<String>,
    pub status_code: Option<i64>,
    pub duration_ms: Option<i64>,
    /// Attempts made in all (1: no retry).
    pub attempt: Option<i64>,
    pub request_id: Option<String>,
    pub attribution: Attribution,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolResult {
    pub tool_name: Option<String>,
    pub tool_use_id: Option<String>,
    pub success: Option<bool>,
    pub duration_ms: Option<i64>,
    pub error_type: Option<String>,
    pub decision_source: Option<String>,
    /// `accept` or `reject`, where the result carries its decision (Gemini's `tool_call`).
    pub decision: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolDecision {
    pub tool_name: Option<String>,
    pub tool_use_id: Option<String>,
    /// `accept` or `reject`.
    pub decision: Option<String>,
    pub source: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UserPrompt {
    pub prompt_length: Option<i64>,
    /// The text, when `OTEL_LOG_USER_PROMPTS=1` (otherwise Claude Code sends `<REDACTED>`).
    pub prompt: Option<String>,
}

/// What [`super::codex`] and [`super::gemini`] read from one record.
pub(super) struct ReadRecord {
    pub kind: EventKind,
    pub identity: Identity,
    pub prompt_id: Option<String>,
}
