//! OpenAI Codex CLI's log events read as the typed events Claude Code's are
//! (`other-agents-telemetry.md` §2.3, §2.8, §2.9).
//!
//! What differs from Claude Code, and how it is read:
//! - The session is `conversation.id`; the person is `user.account_id` and `user.email`
//!   (ChatGPT logins only). Log events carry no prompt id.
//! - An API request's tokens come only on `codex.sse_event` with `event.kind =
//!   response.completed`, as the Responses API counts them: `input_token_count` includes the
//!   cached part (`cached_token_count`) and `output_token_count` includes reasoning. So the
//!   request is stored as `input = input − cached`, `cache_read = cached`, `output` as sent,
//!   and priced so (cached input at the cached rate, reasoning as output). A record whose
//!   cached count is larger than its input is rejected, naming both.
//! - `codex.api_request` is one HTTP attempt, with no tokens: one that failed (an
//!   `error.message`, or a status of 400 or more) is an API error; the others are kept under
//!   their own name and counted as nothing, for the completed response counts the request.
//! - Numbers and booleans often arrive as strings (`"true"`): the shared readers take both.
//! - The tool call's id is `call_id`, the hooks' `tool_use_id`. A decision is `approved…`
//!   (accept) or `denied`/`abort` (reject).
//! - Codex reports no cost: every request is priced from its tokens.

use opentelemetry_proto::tonic::common::v1::KeyValue;

use super::attributes::{boolean, integer, record_or_resource, string};
use super::events::{
    ApiError, ApiRequest, Attribution, EventKind, Identity, ReadRecord, Tokens, ToolDecision,
    ToolResult, UserPrompt, split_cached,
};

/// One Codex record, by its event name as sent (`codex.…`).
pub(super) fn read(
    name: Option<&str>,
    attributes: &[KeyValue],
    resource: &[KeyValue],
) -> ReadRecord {
    let text = |key: &str| string(attributes, key);
    let kind = match name {
        Some("codex.sse_event") => sse_event(attributes),
        Some("codex.api_request") => {
            let status = integer(attributes, "http.response.status_code");
            let error = text("error.message");
            if error.is_some() || status.is_some_and(|s| s >= 400) {
                EventKind::ApiError(ApiError {
                    model: text("model"),
                    error,
                    status_code: status,
                    duration_ms: integer(attributes, "duration_ms"),
                    attempt: integer(attributes, "attempt"),
                    request_id: None,
                    attribution: Attribution::default(),
                })
            } else {
                EventKind::Other("codex.api_request".into())
            }
        }
        Some("codex.user_prompt") => EventKind::UserPrompt(UserPrompt {
            prompt_length: integer(attributes, "prompt_length"),
            prompt: text("prompt").filter(|p| p != "[REDACTED]"),
        }),
        Some("codex.tool_result") => EventKind::ToolResult(ToolResult {
            tool_name: text("tool_name"),
            tool_use_id: text("call_id"),
            success: boolean(attributes, "success"),
            duration_ms: integer(attributes, "duration_ms"),
            error_type: None,
            decision_source: None,
            decision: None,
        }),
        Some("codex.tool_decision") => EventKind::ToolDecision(ToolDecision {
            tool_name: text("tool_name"),
            tool_use_id: text("call_id"),
            decision: text("decision").map(|d| decision(&d)),
            source: text("source"),
        }),
        Some(other) => EventKind::Other(other.to_owned()),
        None => EventKind::Other(String::new()),
    };
    let identity = |key: &str| record_or_resource(attributes, resource, key);
    ReadRecord {
        kind,
        identity: Identity {
            session_id: identity("conversation.id"),
            user_id: identity("user.account_id"),
            user_email: identity("user.email"),
            account_uuid: None,
            organization_id: None,
        },
        prompt_id: None,
    }
}

/// A streamed response's event: the completed one is the request, with its tokens; a failed
/// one an error; the rest (deltas, items) nothing that counts.
fn sse_event(attributes: &[KeyValue]) -> EventKind {
    let text = |key: &str| string(attributes, key);
    let kind = text("event.kind");
    if kind.as_deref() == Some("response.completed") {
        let count = |key: &str| integer(attributes, key).unwrap_or(0);
        let split = split_cached(
            ("input_token_count", count("input_token_count")),
            ("cached_token_count", count("cached_token_count")),
        );
        let (input, cached) = match split {
            Ok(split) => split,
            Err(why) => return EventKind::Rejected(why),
        };
        return EventKind::ApiRequest(ApiRequest {
            model: text("model"),
            cost_usd: None,
            tokens: Tokens {
                input,
                output: count("output_token_count"),
                cache_read: cached,
                cache_creation: 0,
            },
            duration_ms: integer(attributes, "duration_ms"),
            request_id: None,
            attribution: Attribution::default(),
        });
    }
    match text("error.message") {
        Some(error) => EventKind::ApiError(ApiError {
            model: text("model"),
            error: Some(error),
            status_code: None,
            duration_ms: integer(attributes, "duration_ms"),
            attempt: None,
            request_id: None,
            attribution: Attribution::default(),
        }),
        None => EventKind::Other("codex.sse_event".into()),
    }
}

/// Codex's decision in Claude Code's words.
fn decision(codex: &str) -> String {
    if codex.starts_with("approved") {
        "accept".into()
    } else if matches!(codex, "denied" | "abort") {
        "reject".into()
    } else {
        codex.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::pricing::PriceTable;
    use crate::otlp::agent::Agent;
    use crate::otlp::claude::{RecordRules, events};

    /// Codex's records as its tracing bridge sends them: numbers and booleans as strings.
    const LOGS: &str = r#"{"resourceLogs":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"codex_cli_rs"}}]},
      "scopeLogs":[{"logRecords":[
        {"timeUnixNano":"1784916872000000000","attributes":[
          {"key":"event.name","value":{"stringValue":"codex.sse_event"}},
          {"key":"conversation.id","value":{"stringValue":"c-1"}},
          {"key":"user.email","value":{"stringValue":"dev@example.com"}},
          {"key":"model","value":{"stringValue":"gpt-5-codex"}},
          {"key":"event.kind","value":{"stringValue":"response.completed"}},
          {"key":"duration_ms","value":{"stringValue":"1840"}},
          {"key":"input_token_count","value":{"stringValue":"12000"}},
          {"key":"cached_token_count","value":{"stringValue":"8000"}},
          {"key":"output_token_count","value":{"stringValue":"700"}},
          {"key":"reasoning_token_count","value":{"stringValue":"500"}},
          {"key":"tool_token_count","value":{"stringValue":"0"}}]},
        {"timeUnixNano":"1784916873000000000","attributes":[
          {"key":"event.name","value":{"stringValue":"codex.tool_result"}},
          {"key":"conversation.id","value":{"stringValue":"c-1"}},
          {"key":"tool_name","value":{"stringValue":"shell"}},
          {"key":"call_id","value":{"stringValue":"call_9"}},
          {"key":"duration_ms","value":{"stringValue":"61"}},
          {"key":"success","value":{"stringValue":"false"}}]},
        {"timeUnixNano":"1784916874000000000","attributes":[
          {"key":"event.name","value":{"stringValue":"codex.api_request"}},
          {"key":"conversation.id","value":{"stringValue":"c-1"}},
          {"key":"http.response.status_code","value":{"stringValue":"429"}},
          {"key":"attempt","value":{"stringValue":"2"}}]},
        {"timeUnixNano":"1784916875000000000","attributes":[
          {"key":"event.name","value":{"stringValue":"codex.api_request"}},
          {"key":"conversation.id","value":{"stringValue":"c-1"}},
          {"key":"http.response.status_code","value":{"stringValue":"200"}}]},
        {"timeUnixNano":"1784916876000000000","attributes":[
          {"key":"event.name","value":{"stringValue":"codex.tool_decision"}},
          {"key":"conversation.id","value":{"stringValue":"c-1"}},
          {"key":"call_id","value":{"stringValue":"call_9"}},
          {"key":"decision","value":{"stringValue":"approved_for_session"}},
          {"key":"source","value":{"stringValue":"user"}}]}
      ]}]}]}"#;

    #[test]
    fn codexs_records_become_requests_errors_and_tool_calls_priced_from_their_tokens() {
        let events = events(&serde_json::from_str(LOGS).unwrap());
        assert!(events.iter().all(|e| e.agent == Agent::Codex));
        assert!(
            events
                .iter()
                .all(|e| e.identity.session_id.as_deref() == Some("c-1"))
        );
        let EventKind::ApiRequest(request) = &events[0].kind else {
            panic!("{:?}", events[0].kind)
        };
        assert_eq!(
            request.tokens,
            Tokens {
                input: 4_000,
                output: 700,
                cache_read: 8_000,
                cache_creation: 0
            },
            "cached input apart from input; reasoning within output"
        );
        let prices = PriceTable::default();
        let rules = RecordRules::lenient(&prices);
        let row = events[0].to_row(&rules).unwrap();
        // gpt-5-codex: $1.25 in, $10 out, $0.125 cached, per million.
        assert_eq!(
            row.cost_nanos,
            Some(4_000 * 1_250 + 700 * 10_000 + 8_000 * 125)
        );
        let EventKind::ToolResult(result) = &events[1].kind else {
            panic!()
        };
        assert_eq!(
            (
                result.tool_use_id.as_deref(),
                result.success,
                result.duration_ms
            ),
            (Some("call_9"), Some(false), Some(61))
        );
        let EventKind::ApiError(error) = &events[2].kind else {
            panic!()
        };
        assert_eq!((error.status_code, error.attempt), (Some(429), Some(2)));
        assert_eq!(
            events[3].kind,
            EventKind::Other("codex.api_request".into()),
            "a successful attempt counts as nothing: its completed response is the request"
        );
        let EventKind::ToolDecision(decision) = &events[4].kind else {
            panic!()
        };
        assert_eq!(decision.decision.as_deref(), Some("accept"));
        // Two records alike but for one attribute are two rows.
        let rows: Vec<_> = events.iter().map(|e| e.to_row(&rules).unwrap()).collect();
        assert_ne!(rows[2].dedup_key, rows[3].dedup_key);
    }

    #[test]
    fn a_cached_count_past_the_input_that_includes_it_is_rejected_naming_both() {
        let logs = LOGS.replace(r#""8000""#, r#""13000""#);
        let events = events(&serde_json::from_str(&logs).unwrap());
        let prices = PriceTable::default();
        let rules = RecordRules::lenient(&prices);
        let why = events[0].to_row(&rules).unwrap_err();
        assert!(
            why.contains("cached_token_count (13000)") && why.contains("input_token_count"),
            "{why}"
        );
    }
}
