//! Which coding agent sent a record: Claude Code, OpenAI's Codex CLI or Google's Gemini CLI.
//!
//! All three export OTLP to the same endpoints, and each names itself in the resource's
//! `service.name` (`other-agents-telemetry.md` §2.2, §3.2): `claude-code`; Codex's
//! "originator", `codex_cli_rs` by default and `codex_exec`, `codex-tui`, `codex_vscode` from
//! its other surfaces; `gemini-cli`. An exporter whose resource was overridden
//! (`OTEL_SERVICE_NAME`) still names its events by the agent's prefix (`codex.`,
//! `gemini_cli.`), so that decides where the service name does not. Anything else is read as
//! Claude Code's, as every record was before the other agents were read.

use opentelemetry_proto::tonic::common::v1::KeyValue;

use super::attributes::string;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Agent {
    ClaudeCode,
    Codex,
    Gemini,
}

impl Agent {
    /// The agent's name where it is not Claude Code, as its sessions are listed (the app of a
    /// session seen only through telemetry) and as `telemetry_sessions.agent` keeps it.
    pub(crate) fn other_than_claude(self) -> Option<&'static str> {
        match self {
            Self::ClaudeCode => None,
            Self::Codex => Some(crate::domain::sessions::CODEX_APP),
            Self::Gemini => Some(crate::domain::sessions::GEMINI_APP),
        }
    }

    /// The agent a record is from: its resource's `service.name`, else its event's prefix.
    pub(crate) fn of(event_name: Option<&str>, resource: &[KeyValue]) -> Self {
        let service = string(resource, "service.name");
        match service.as_deref() {
            Some(name) if name.starts_with("codex") => Self::Codex,
            Some(name) if name.starts_with("gemini") => Self::Gemini,
            Some("claude-code") => Self::ClaudeCode,
            _ => match event_name {
                Some(name) if name.starts_with("codex.") => Self::Codex,
                Some(name) if name.starts_with("gemini_cli.") => Self::Gemini,
                _ => Self::ClaudeCode,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;

    fn service(name: &str) -> Vec<KeyValue> {
        vec![KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(name.into())),
            }),
            ..KeyValue::default()
        }]
    }

    #[test]
    fn each_agent_is_known_by_its_service_name_or_else_its_events_prefix() {
        for name in ["codex_cli_rs", "codex_exec", "codex-tui", "codex_vscode"] {
            assert_eq!(Agent::of(None, &service(name)), Agent::Codex, "{name}");
        }
        assert_eq!(Agent::of(None, &service("gemini-cli")), Agent::Gemini);
        assert_eq!(Agent::of(None, &service("claude-code")), Agent::ClaudeCode);
        assert_eq!(
            Agent::of(Some("codex.sse_event"), &service("my-service")),
            Agent::Codex
        );
        assert_eq!(
            Agent::of(Some("gemini_cli.api_response"), &[]),
            Agent::Gemini
        );
        assert_eq!(Agent::of(Some("api_request"), &[]), Agent::ClaudeCode);
        // The service name decides over an event name.
        assert_eq!(
            Agent::of(Some("codex.sse_event"), &service("claude-code")),
            Agent::ClaudeCode
        );
    }
}
