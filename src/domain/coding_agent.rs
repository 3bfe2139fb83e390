//! Which coding agent a session is: Claude Code, OpenAI's Codex CLI or Google's Gemini CLI,
//! and how the other two's hook events map onto Claude Code's.
//!
//! A fleet runs all three, and every view has to tell one story about them, so the agent is a
//! property of the session, kept once (`sessions.coding_agent` for the hooks,
//! `telemetry_sessions.agent` for telemetry) and named the same way wherever it shows.
//!
//! Codex's hooks are Claude Code's own (same names, same fields) with a `turn_id` on every
//! turn-scoped event; Gemini's have their own names (`other-agents-telemetry.md` §3.6), which
//! Gemini's `hooks migrate --from-claude` pairs with Claude Code's. hookwatch stores a Gemini
//! event under its Claude Code name, so tool calls, prompts and turns are counted by one set
//! of rules; the payload keeps the name Gemini sent.

/// A coding agent hookwatch knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodingAgent {
    ClaudeCode,
    Codex,
    Gemini,
}

impl CodingAgent {
    pub const ALL: [CodingAgent; 3] = [Self::ClaudeCode, Self::Codex, Self::Gemini];

    /// How every view names it (and `?agent=` takes it).
    pub fn name(self) -> &'static str {
        match self {
            Self::ClaudeCode => "claude-code",
            Self::Codex => "codex",
            Self::Gemini => "gemini-cli",
        }
    }

    /// The agent a name means: a view's name, or the short one a command line takes
    /// (`claude`, `gemini`).
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "claude-code" | "claude" | "claude_code" => Some(Self::ClaudeCode),
            "codex" | "codex-cli" => Some(Self::Codex),
            "gemini-cli" | "gemini" | "gemini_cli" => Some(Self::Gemini),
            _ => None,
        }
    }

    /// The name stored for a session where it is not Claude Code (NULL means Claude Code, as
    /// every session was before the other agents were read).
    pub fn stored_name(self) -> Option<&'static str> {
        match self {
            Self::ClaudeCode => None,
            other => Some(other.name()),
        }
    }

    /// The agent of a hook event that does not name one: a Gemini event name is Gemini's, an
    /// event carrying Codex's `turn_id` is Codex's; anything else is taken for Claude Code's.
    pub fn of_hook_event(hook_event_type: &str, has_turn_id: bool) -> Option<Self> {
        if gemini_hook_as_claudes(hook_event_type).is_some() {
            Some(Self::Gemini)
        } else if has_turn_id {
            Some(Self::Codex)
        } else {
            None
        }
    }
}

/// Gemini CLI's hook events that have a Claude Code twin, and the twin: the pairs of Gemini's
/// own `hooks migrate --from-claude`. `AfterTool` whose `tool_response` holds an `error` is a
/// failed call ([`GEMINI_FAILED_TOOL`]). `SessionStart`, `SessionEnd` and `Notification` share
/// Claude Code's names; the model hooks (`BeforeModel`, `AfterModel`, `BeforeToolSelection`)
/// have no twin and are stored as sent.
const GEMINI_HOOKS: [(&str, &str); 5] = [
    ("BeforeTool", "PreToolUse"),
    ("AfterTool", "PostToolUse"),
    ("BeforeAgent", "UserPromptSubmit"),
    ("AfterAgent", "Stop"),
    ("PreCompress", "PreCompact"),
];

/// What a Gemini `AfterTool` whose tool reported an error is stored as.
pub const GEMINI_FAILED_TOOL: &str = "PostToolUseFailure";

/// The Claude Code name of a Gemini-only hook event.
pub fn gemini_hook_as_claudes(hook_event_type: &str) -> Option<&'static str> {
    GEMINI_HOOKS
        .iter()
        .find(|(gemini, _)| *gemini == hook_event_type)
        .map(|(_, claude)| *claude)
}

/// Gemini's hook events `hookwatch install --agent gemini` hooks: every one with a twin, and
/// the three that share Claude Code's names. The model hooks are left out: `AfterModel` fires
/// once per streamed chunk, and none of the three is something the views count.
pub const GEMINI_OBSERVED_HOOKS: [&str; 8] = [
    "SessionStart",
    "BeforeAgent",
    "BeforeTool",
    "AfterTool",
    "AfterAgent",
    "PreCompress",
    "Notification",
    "SessionEnd",
];

/// Codex CLI's hook events (its generated schemas, `other-agents-telemetry.md` §2.6): all of
/// them, since a hook that prints nothing and exits 0 changes nothing in any of them.
pub const CODEX_HOOKS: [&str; 11] = [
    "SessionStart",
    "UserPromptSubmit",
    "PreToolUse",
    "PermissionRequest",
    "PostToolUse",
    "PreCompact",
    "PostCompact",
    "SubagentStart",
    "SubagentStop",
    "Stop",
    "StopFailure",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_agent_round_trips_its_name_and_takes_the_short_one() {
        for agent in CodingAgent::ALL {
            assert_eq!(CodingAgent::parse(agent.name()), Some(agent));
        }
        assert_eq!(CodingAgent::parse("gemini"), Some(CodingAgent::Gemini));
        assert_eq!(
            CodingAgent::parse(" Claude "),
            Some(CodingAgent::ClaudeCode)
        );
        assert_eq!(CodingAgent::parse("cursor"), None);
        assert_eq!(CodingAgent::ClaudeCode.stored_name(), None);
        assert_eq!(CodingAgent::Codex.stored_name(), Some("codex"));
    }

    #[test]
    fn a_hook_events_agent_is_known_by_geminis_names_or_codexs_turn_id() {
        assert_eq!(
            CodingAgent::of_hook_event("BeforeTool", false),
            Some(CodingAgent::Gemini)
        );
        assert_eq!(
            CodingAgent::of_hook_event("PreToolUse", true),
            Some(CodingAgent::Codex)
        );
        assert_eq!(CodingAgent::of_hook_event("PreToolUse", false), None);
        assert_eq!(CodingAgent::of_hook_event("SessionStart", false), None);
    }

    #[test]
    fn geminis_events_map_to_claude_codes_and_the_shared_names_stay() {
        assert_eq!(gemini_hook_as_claudes("BeforeTool"), Some("PreToolUse"));
        assert_eq!(gemini_hook_as_claudes("AfterAgent"), Some("Stop"));
        assert_eq!(gemini_hook_as_claudes("SessionStart"), None);
        assert_eq!(gemini_hook_as_claudes("BeforeModel"), None);
        for name in GEMINI_OBSERVED_HOOKS {
            assert!(
                gemini_hook_as_claudes(name).is_some()
                    || ["SessionStart", "SessionEnd", "Notification"].contains(&name),
                "{name}"
            );
        }
    }
}
