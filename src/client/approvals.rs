//! `hookwatch send --wait-for-decision`: a PermissionRequest hook that lets a person answer
//! from the dashboard (or through `POST /events/{id}/respond`) instead of the terminal.
//!
//! The hook posts the request as a human-in-the-loop event, then waits for its answer with
//! `GET /events/{id}/answer` (long polls, so it works wherever the hook runs). An answer is
//! printed as Claude Code's decision for a PermissionRequest hook:
//! `{"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": {"behavior":
//! "allow"}}}` (or `"deny"` with a `message`). With no answer before the deadline, or with the
//! server down, it prints nothing and Claude Code asks in the terminal as usual. This is the
//! only mode in which `send` writes to stdout; it still always exits 0, and an event the server
//! did not take is spooled as any other.

use std::io::Read;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::http::{Method, ServerUrl};
use super::{ClientConfig, MAX_STDIN_BYTES, envelope};
use crate::domain::coding_agent::CodingAgent;

/// The longest one wait for the answer asks the server for (it answers sooner when it can).
const POLL_WAIT: Duration = Duration::from_secs(15);

/// Posts the permission request on `stdin` and waits up to `wait` for a person's answer;
/// `Some(decision JSON)` to print when one came.
pub fn send_and_wait_for_decision(
    config: &ClientConfig,
    app: Option<&str>,
    post_deadline: Duration,
    wait: Duration,
    stdin: impl Read,
) -> Option<String> {
    let started = Instant::now();
    let mut input = Vec::new();
    stdin
        .take(MAX_STDIN_BYTES as u64 + 1)
        .read_to_end(&mut input)
        .ok()?;
    if input.len() > MAX_STDIN_BYTES {
        return None;
    }
    let transcripts = config.transcript_state_dir();
    let envelope = envelope(
        &input,
        app,
        CodingAgent::ClaudeCode,
        crate::clock::wall_clock_ms(),
        Some(&transcripts),
    )
    .ok()?;
    let payload: Value = serde_json::from_slice(&input).unwrap_or(Value::Null);
    let request = json!({
        "question": question(&payload),
        "type": "permission",
        "timeout": wait.as_secs(),
    });
    let json = with_member(&envelope.json, "humanInTheLoop", &request);
    let server = ServerUrl::parse(&config.server).ok()?;
    let token = config.token.as_deref();
    let client = match config.http() {
        Ok(client) => client,
        Err(e) => {
            // Cannot talk to the server (its CA file is unreadable): spooled like any event.
            config.debug(|| format!("the request was not sent: {e}"));
            let _ = config.spool().push(&envelope.event_id, &json);
            return None;
        }
    };
    let posted = client.request(
        &server,
        Method::Post,
        "/events",
        Some("application/json"),
        &json,
        token,
        post_deadline,
    );
    let id = match posted {
        Ok(answer) if (200..300).contains(&answer.status) => {
            serde_json::from_slice::<Value>(&answer.body).ok()?["id"].as_i64()?
        }
        refused => {
            // Not taken: spooled like any event, and the terminal asks as usual.
            config.debug(|| format!("the request was not taken: {refused:?}"));
            let _ = config.spool().push(&envelope.event_id, &json);
            return None;
        }
    };
    while let Some(left) = wait.checked_sub(started.elapsed()).filter(|d| !d.is_zero()) {
        let poll = left.min(POLL_WAIT);
        let path = format!("/events/{id}/answer?wait={}", poll.as_secs());
        match client.request(
            &server,
            Method::Get,
            &path,
            None,
            b"",
            token,
            poll + Duration::from_secs(3),
        ) {
            Ok(answer) if answer.status == 200 => {
                let status: Value = serde_json::from_slice(&answer.body).ok()?;
                return decision(&status["response"]);
            }
            Ok(answer) if answer.status == 202 => continue,
            other => {
                config.debug(|| format!("waiting for the answer failed: {other:?}"));
                // A server that went away: retry until the deadline, a second apart.
                std::thread::sleep(Duration::from_secs(1).min(left));
            }
        }
    }
    None
}

/// What the dashboard shows a person: the tool and what it would do.
fn question(payload: &Value) -> String {
    let tool = payload["tool_name"].as_str().unwrap_or("a tool");
    let input = &payload["tool_input"];
    let detail = ["command", "file_path", "url", "pattern", "description"]
        .iter()
        .find_map(|key| input[*key].as_str())
        .map(|d| d.chars().take(300).collect::<String>());
    match detail {
        Some(detail) => format!("Allow {tool}: {detail}?"),
        None => format!("Allow {tool}?"),
    }
}

/// Claude Code's PermissionRequest decision for a person's answer (`permission: true|false`,
/// or a `choice`/`response` of allow or deny); `None` for an answer that decides nothing.
pub(crate) fn decision(response: &Value) -> Option<String> {
    let allow = response["permission"].as_bool().or_else(|| {
        ["choice", "response"].iter().find_map(|key| {
            match response[*key]
                .as_str()?
                .trim()
                .to_ascii_lowercase()
                .as_str()
            {
                "allow" | "yes" | "approve" => Some(true),
                "deny" | "no" | "reject" => Some(false),
                _ => None,
            }
        })
    })?;
    let by = response["respondedBy"]
        .as_str()
        .map(|who| format!(" by {who}"))
        .unwrap_or_default();
    let decision = if allow {
        json!({"behavior": "allow"})
    } else {
        json!({"behavior": "deny", "message": format!("Denied in hookwatch{by}.")})
    };
    Some(
        json!({"hookSpecificOutput": {"hookEventName": "PermissionRequest", "decision": decision}})
            .to_string(),
    )
}

/// `object` (a serialized JSON object) with one more member.
fn with_member(object: &[u8], key: &str, value: &Value) -> Vec<u8> {
    let end = object
        .iter()
        .rposition(|b| *b == b'}')
        .unwrap_or(object.len());
    let mut out = object[..end].to_vec();
    out.extend_from_slice(format!(",{}:{value}}}", json!(key)).as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_claude_codes_permission_decisions() {
        let allow: Value =
            serde_json::from_str(&decision(&json!({"permission": true})).unwrap()).unwrap();
        assert_eq!(
            allow,
            json!({"hookSpecificOutput": {"hookEventName": "PermissionRequest",
                   "decision": {"behavior": "allow"}}})
        );
        let deny: Value = serde_json::from_str(
            &decision(&json!({"permission": false, "respondedBy": "ana"})).unwrap(),
        )
        .unwrap();
        assert_eq!(deny["hookSpecificOutput"]["decision"]["behavior"], "deny");
        assert_eq!(
            deny["hookSpecificOutput"]["decision"]["message"],
            "Denied in hookwatch by ana."
        );
        assert!(
            decision(&json!({"choice": "Allow"}))
                .unwrap()
                .contains("allow")
        );
        assert_eq!(decision(&json!({"response": "maybe later"})), None);
    }

    #[test]
    fn a_member_is_added_to_a_serialized_object() {
        let out = with_member(br#"{"a":1}"#, "humanInTheLoop", &json!({"q": "x"}));
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value, json!({"a": 1, "humanInTheLoop": {"q": "x"}}));
    }
}
