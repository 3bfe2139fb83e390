//! Google Gemini CLI's log events read as the typed events Claude Code's are
//! (`other-agents-telemetry.md` §3.3, §3.7, §3.8).
//!
//! What differs from Claude Code, and how it is read:
//! - Event names are prefixed (`gemini_cli.api_response`); the session is `session.id` (on the
//!   resource and every record), the prompt `prompt_id`, the person `user.email` and the
//!   install `installation.id` (as Claude Code's anonymous `user.id`).
//! - An API request's tokens come on `gemini_cli.api_response`, as the Gemini API counts them:
//!   `input_token_count` includes the cached part (`cached_content_token_count`);
//!   `thoughts_token_count` is apart from `output_token_count` and billed as output;
//!   `tool_token_count` is prompt tokens of tool use, billed as input. So the request is
//!   stored as `input = input − cached + tool`, `cache_read = cached`, `output = output +
//!   thoughts`, and priced so. A record whose cached count is larger than its input is rejected,
//!   naming both. `gemini_cli.api_request` (no tokens) and the GenAI twin of each API event
//!   (`gen_ai.client.inference.operation.details`) are kept under their names and count as
//!   nothing, so no request is counted twice.
//! - `role` says which caller made a request: `subagent` is the subagent's, the rest (`main`
//!   and the `utility_*` helpers) the main agent's, as Claude Code's auxiliary requests are.
//! - A tool call (`gemini_cli.tool_call`) is its result and its decision in one record, with no
//!   id: `accept`, `auto_accept` and `modify` are accepted, `reject` rejected.
//! - Gemini reports no cost: every request is priced from its tokens.
//! - Its metrics: `gemini_cli.token.usage` ([`token_points`]) is read as Claude Code's token
//!   counter is, with the same normalisation, and priced; the rest are left out. Gemini sets
//!   no temporality, so they come as running totals (cumulative), which the store turns into
//!   increases per series as it does Claude Code's.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{NumberDataPoint, number_data_point};

use super::attributes::{boolean, integer, record_or_resource, string, text};
use super::events::{
    ApiError, ApiRequest, Attribution, EventKind, Identity, ReadRecord, Tokens, ToolResult,
    UserPrompt, split_cached,
};

/// One Gemini record, by its event name as sent (`gemini_cli.…`).
pub(super) fn read(
    name: Option<&str>,
    attributes: &[KeyValue],
    resource: &[KeyValue],
) -> ReadRecord {
    let text = |key: &str| string(attributes, key);
    let attribution = || Attribution {
        agent_name: None,
        query_source: text("role"),
    };
    let kind = match name {
        Some("gemini_cli.api_response") => api_response(attributes, attribution()),
        Some("gemini_cli.api_error") => EventKind::ApiError(ApiError {
            model: text("model").or_else(|| text("model_name")),
            error: text("error.message").or_else(|| text("error")),
            status_code: integer(attributes, "status_code")
                .or_else(|| integer(attributes, "http.status_code")),
            duration_ms: integer(attributes, "duration_ms"),
            attempt: None,
            request_id: None,
            attribution: attribution(),
        }),
        Some("gemini_cli.user_prompt") => EventKind::UserPrompt(UserPrompt {
            prompt_length: integer(attributes, "prompt_length"),
            prompt: text("prompt"),
        }),
        Some("gemini_cli.tool_call") => EventKind::ToolResult(ToolResult {
            tool_name: text("function_name"),
            tool_use_id: None,
            success: boolean(attributes, "success"),
            duration_ms: integer(attributes, "duration_ms"),
            error_type: text("error_type").or_else(|| text("error.type")),
            decision_source: None,
            decision: text("decision").map(|d| decision(&d)),
        }),
        Some(other) => EventKind::Other(other.to_owned()),
        None => EventKind::Other(String::new()),
    };
    let identity = |key: &str| record_or_resource(attributes, resource, key);
    ReadRecord {
        kind,
        identity: Identity {
            session_id: identity("session.id"),
            user_id: identity("installation.id"),
            user_email: identity("user.email"),
            account_uuid: None,
            organization_id: None,
        },
        prompt_id: text("prompt_id"),
    }
}

fn api_response(attributes: &[KeyValue], attribution: Attribution) -> EventKind {
    let count = |key: &str| integer(attributes, key).unwrap_or(0);
    let split = split_cached(
        ("input_token_count", count("input_token_count")),
        (
            "cached_content_token_count",
            count("cached_content_token_count"),
        ),
    );
    let (input, cached) = match split {
        Ok(split) => split,
        Err(why) => return EventKind::Rejected(why),
    };
    EventKind::ApiRequest(ApiRequest {
        model: string(attributes, "model"),
        cost_usd: None,
        tokens: Tokens {
            input: input.saturating_add(count("tool_token_count")),
            output: count("output_token_count").saturating_add(count("thoughts_token_count")),
            cache_read: cached,
            cache_creation: 0,
        },
        duration_ms: integer(attributes, "duration_ms"),
        request_id: None,
        attribution,
    })
}

/// Gemini's decision in Claude Code's words.
fn decision(gemini: &str) -> String {
    match gemini {
        "accept" | "auto_accept" | "modify" => "accept".into(),
        "reject" => "reject".into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A point of Gemini's token counter; each type's series starts at its own time (the
    /// type's length, in ns), as the SDK's do.
    fn token_point(model: &str, kind: &str, value: i64, time_ns: u64) -> NumberDataPoint {
        let attribute = |key: &str, value: &str| KeyValue {
            key: key.into(),
            value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                value: Some(
                    opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                        value.into(),
                    ),
                ),
            }),
            ..KeyValue::default()
        };
        NumberDataPoint {
            attributes: vec![
                attribute("session.id", "g1"),
                attribute("model", model),
                attribute("type", kind),
            ],
            start_time_unix_nano: kind.len() as u64,
            time_unix_nano: time_ns,
            value: Some(number_data_point::Value::AsInt(value)),
            ..NumberDataPoint::default()
        }
    }

    #[test]
    fn token_points_are_normalised_as_the_logs_are_one_series_per_kind() {
        let points = vec![
            token_point("gemini-2.5-pro", "input", 10_000, 5),
            token_point("gemini-2.5-pro", "output", 300, 5),
            token_point("gemini-2.5-pro", "thought", 200, 5),
            token_point("gemini-2.5-pro", "cache", 6_000, 5),
            token_point("gemini-2.5-pro", "tool", 50, 5),
            token_point("gemini-2.5-flash", "input", 70, 5),
            token_point("gemini-2.5-pro", "total", 10_550, 5),
        ];
        let (derived, read) = token_points(&points);
        assert_eq!(read, 6, "all but the total");
        let derived: Vec<String> = derived
            .iter()
            .map(|p| {
                let model = string(&p.point.attributes, "model").unwrap();
                format!("{model} {} {}", p.kind, p.value)
            })
            .collect();
        assert_eq!(
            derived,
            [
                "gemini-2.5-flash input 70",
                "gemini-2.5-pro input 4050",
                "gemini-2.5-pro output 500",
                "gemini-2.5-pro cacheRead 6000",
            ]
        );
        // The same request history in the next export is the same series.
        let later = [
            token_point("gemini-2.5-pro", "cache", 9_000, 9),
            token_point("gemini-2.5-pro", "input", 15_000, 9),
            token_point("gemini-2.5-pro", "tool", 50, 9),
        ];
        let first = &token_points(&points).0[1];
        let next = &token_points(&later).0[0];
        assert_eq!((next.kind, next.value), ("input", 6_050.0));
        assert_eq!(first.series, next.series);
        assert_eq!(first.start_ns, 4, "tool's, the earliest: {first:?}");
        assert_eq!(next.start_ns, first.start_ns, "one running total");
    }
    use crate::domain::pricing::PriceTable;
    use crate::otlp::agent::Agent;
    use crate::otlp::claude::{RecordRules, events};

    /// Gemini's records as its JavaScript SDK sends them: real numbers and booleans, the
    /// session on the resource.
    const LOGS: &str = r#"{"resourceLogs":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"gemini-cli"}},
        {"key":"session.id","value":{"stringValue":"g-1"}}]},
      "scopeLogs":[{"scope":{"name":"gemini-cli"},"logRecords":[
        {"timeUnixNano":"1784916872000000000","body":{"stringValue":"API response."},
         "attributes":[
          {"key":"event.name","value":{"stringValue":"gemini_cli.api_response"}},
          {"key":"installation.id","value":{"stringValue":"inst-1"}},
          {"key":"prompt_id","value":{"stringValue":"g-1########1"}},
          {"key":"model","value":{"stringValue":"gemini-2.5-pro"}},
          {"key":"role","value":{"stringValue":"main"}},
          {"key":"duration_ms","value":{"intValue":"2100"}},
          {"key":"status_code","value":{"intValue":"200"}},
          {"key":"input_token_count","value":{"intValue":"10000"}},
          {"key":"cached_content_token_count","value":{"intValue":"6000"}},
          {"key":"output_token_count","value":{"intValue":"300"}},
          {"key":"thoughts_token_count","value":{"intValue":"200"}},
          {"key":"tool_token_count","value":{"intValue":"50"}},
          {"key":"total_token_count","value":{"intValue":"10550"}}]},
        {"timeUnixNano":"1784916872000000000","attributes":[
          {"key":"event.name","value":{"stringValue":"gen_ai.client.inference.operation.details"}},
          {"key":"gen_ai.usage.input_tokens","value":{"intValue":"10000"}}]},
        {"timeUnixNano":"1784916873000000000","attributes":[
          {"key":"event.name","value":{"stringValue":"gemini_cli.tool_call"}},
          {"key":"prompt_id","value":{"stringValue":"g-1########1"}},
          {"key":"function_name","value":{"stringValue":"run_shell_command"}},
          {"key":"success","value":{"boolValue":true}},
          {"key":"decision","value":{"stringValue":"auto_accept"}},
          {"key":"duration_ms","value":{"intValue":"40"}}]},
        {"timeUnixNano":"1784916874000000000","attributes":[
          {"key":"event.name","value":{"stringValue":"gemini_cli.api_error"}},
          {"key":"model","value":{"stringValue":"gemini-2.5-pro"}},
          {"key":"error.message","value":{"stringValue":"quota"}},
          {"key":"status_code","value":{"intValue":"429"}},
          {"key":"role","value":{"stringValue":"subagent"}}]}
      ]}]}]}"#;

    #[test]
    fn geminis_records_become_requests_errors_and_tool_calls_priced_from_their_tokens() {
        let events = events(&serde_json::from_str(LOGS).unwrap());
        assert!(events.iter().all(|e| e.agent == Agent::Gemini));
        assert!(
            events
                .iter()
                .all(|e| e.identity.session_id.as_deref() == Some("g-1")),
            "the resource's session"
        );
        assert_eq!(events[0].prompt_id.as_deref(), Some("g-1########1"));
        assert_eq!(events[0].identity.user_id.as_deref(), Some("inst-1"));
        let EventKind::ApiRequest(request) = &events[0].kind else {
            panic!("{:?}", events[0].kind)
        };
        assert_eq!(
            request.tokens,
            Tokens {
                input: 4_050,
                output: 500,
                cache_read: 6_000,
                cache_creation: 0
            },
            "cached apart from input, tool tokens as input, thoughts as output"
        );
        assert_eq!(request.attribution.agent_type(), "main");
        let prices = PriceTable::default();
        let rules = RecordRules::lenient(&prices);
        // gemini-2.5-pro: $1.25 in, $10 out, $0.125 cached, per million.
        assert_eq!(
            events[0].to_row(&rules).unwrap().cost_nanos,
            Some(4_050 * 1_250 + 500 * 10_000 + 6_000 * 125)
        );
        assert_eq!(
            events[1].kind,
            EventKind::Other("gen_ai.client.inference.operation.details".into()),
            "the GenAI twin is not a second request"
        );
        let EventKind::ToolResult(call) = &events[2].kind else {
            panic!()
        };
        assert_eq!(
            (
                call.tool_name.as_deref(),
                call.success,
                call.decision.as_deref()
            ),
            (Some("run_shell_command"), Some(true), Some("accept"))
        );
        let EventKind::ApiError(error) = &events[3].kind else {
            panic!()
        };
        assert_eq!(error.status_code, Some(429));
        assert_eq!(error.attribution.agent_type(), "subagent");
    }
}

/// The one Gemini metric hookwatch reads: tokens by model and `type` (`input`, `output`,
/// `thought`, `cache`, `tool`), a counter in the SDK's default temporality (cumulative).
pub(super) const TOKEN_USAGE_METRIC: &str = "gemini_cli.token.usage";

/// One of hookwatch's token kinds, made from a group of Gemini's token points.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct TokenPoint<'a> {
    /// `input`, `output` or `cacheRead`, as Claude Code's `claude_code.token.usage` types.
    pub kind: &'static str,
    pub value: f64,
    /// A point of the group: its attributes (but `type`) and time are the group's.
    pub point: &'a NumberDataPoint,
    /// The group's earliest start: each type is a series of its own that starts when it is
    /// first counted, so the earliest is the same in every export (a type first counted later
    /// starts later), and the derived running total keeps one series.
    pub start_ns: u64,
    /// The group's attributes but `type`, as `key=value` text, sorted: with `kind`, its series.
    pub series: String,
}

/// Gemini's token points turned into hookwatch's kinds, as its log records are
/// (`input = input − cache + tool`, `cacheRead = cache`, `output = output + thought`): the
/// points of one export with the same attributes but `type`, and the same time, are one
/// request history (not the same start: each type's series starts when it is first counted),
/// and each derived kind is a counter of its own (a running total stays one: each of its terms
/// only grows). A type not sent counts as nothing. With them, how many of `points`
/// were read (those of a known type with a value).
pub(super) fn token_points(points: &[NumberDataPoint]) -> (Vec<TokenPoint<'_>>, usize) {
    const TYPES: [&str; 5] = ["input", "output", "thought", "cache", "tool"];
    type Group<'a> = ([Option<f64>; 5], &'a NumberDataPoint, u64);
    let mut groups: BTreeMap<(String, u64), Group<'_>> = BTreeMap::new();
    let mut read = 0;
    for point in points {
        let Some(at) = string(&point.attributes, "type")
            .and_then(|t| TYPES.iter().position(|known| *known == t))
        else {
            continue;
        };
        let value = match point.value {
            Some(number_data_point::Value::AsInt(v)) => v as f64,
            Some(number_data_point::Value::AsDouble(v)) => v,
            None => continue,
        };
        let mut pairs: Vec<String> = point
            .attributes
            .iter()
            .filter(|kv| kv.key != "type")
            .map(|kv| {
                let value = kv.value.as_ref().and_then(|v| v.value.as_ref());
                format!("{}={}", kv.key, value.and_then(text).unwrap_or_default())
            })
            .collect();
        pairs.sort();
        let key = (pairs.join("\u{1f}"), point.time_unix_nano);
        let group = groups
            .entry(key)
            .or_insert(([None; 5], point, point.start_time_unix_nano));
        group.0[at] = Some(group.0[at].unwrap_or(0.0) + value);
        group.2 = group.2.min(point.start_time_unix_nano);
        read += 1;
    }
    let mut derived = Vec::new();
    for ((series, _), ([input, output, thought, cache, tool], point, start_ns)) in groups {
        let mut add = |kind: &'static str, value: f64| {
            derived.push(TokenPoint {
                kind,
                value,
                point,
                start_ns,
                series: series.clone(),
            });
        };
        if input.is_some() || tool.is_some() {
            let uncached = (input.unwrap_or(0.0) - cache.unwrap_or(0.0)).max(0.0);
            add("input", uncached + tool.unwrap_or(0.0));
        }
        if output.is_some() || thought.is_some() {
            add("output", output.unwrap_or(0.0) + thought.unwrap_or(0.0));
        }
        if let Some(cache) = cache {
            add("cacheRead", cache);
        }
    }
    (derived, read)
}
