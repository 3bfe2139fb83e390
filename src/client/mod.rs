//! The hook client: `hookwatch send`, `replay`, `install` and `doctor`, for Claude Code, Codex
//! CLI and Gemini CLI.
//!
//! `send` runs inside the agent's hook path, so its rules are strict: it writes nothing to
//! stdout that could decide anything (Claude Code and Codex read stdout as a decision and get
//! nothing; Gemini CLI reads any stdout that is not JSON as a message to show, so it gets the
//! empty object, which decides nothing), it always exits 0, it never waits longer
//! than its deadline (500 ms by default), and it never loses an event: whatever the server
//! does not acknowledge goes to the [`spool::Spool`] and is replayed later with the same
//! `event_id`, so the server stores it exactly once. Diagnostics go to stderr only when
//! `HOOKWATCH_DEBUG` is set.

pub mod agent_otel;
pub mod approvals;
pub mod doctor;
pub(crate) mod http;
pub mod install;
pub mod otel_settings;
pub(crate) mod spool;
pub(crate) mod tls;
pub(crate) mod transcript;

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::domain::coding_agent::CodingAgent;
use http::{HttpClient, HttpError, Method, ServerUrl};
use spool::Spool;

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:4000";
/// The most stdin `send` reads; a larger hook payload is spooled as a truncated marker.
pub(crate) const MAX_STDIN_BYTES: usize = 16 * 1024 * 1024;
/// Events per replay request, and bytes.
const REPLAY_BATCH_EVENTS: usize = 500;
const REPLAY_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Where and how the client talks to the server.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub server: String,
    pub token: Option<String>,
    /// A PEM file of the CA that signed an `https://` server's certificate; trusted instead
    /// of the public roots.
    pub ca_cert: Option<PathBuf>,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    pub debug: bool,
}

impl ClientConfig {
    /// The HTTP client, trusting what `ca_cert` says.
    pub(crate) fn http(&self) -> Result<HttpClient, HttpError> {
        HttpClient::new(self.ca_cert.as_deref())
    }

    pub fn spool(&self) -> Spool {
        Spool::new(self.spool_dir.clone(), self.spool_max_bytes)
    }

    /// Where the read position of each transcript is kept: beside the spool.
    pub(crate) fn transcript_state_dir(&self) -> PathBuf {
        self.spool_dir.with_file_name("transcripts")
    }

    pub(crate) fn debug(&self, message: impl FnOnce() -> String) {
        if self.debug {
            eprintln!("hookwatch: {}", message());
        }
    }
}

/// The per-user spool directory: `$XDG_STATE_HOME/hookwatch/spool`, else
/// `~/.local/state/hookwatch/spool`.
pub fn default_spool_dir() -> PathBuf {
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(state).join("hookwatch/spool");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/state/hookwatch/spool");
    }
    std::env::temp_dir().join("hookwatch-spool")
}

/// What `send` did, for tests and debugging; the process exits 0 whatever it is.
#[derive(Debug, PartialEq, Eq)]
pub enum SendOutcome {
    Delivered { drain_started: bool },
    Spooled(String),
    Ignored(String),
}

/// `hookwatch send`: wraps the hook JSON on stdin in the envelope and posts it; on any
/// failure, spools it.
pub fn send(
    config: &ClientConfig,
    app: Option<&str>,
    agent: CodingAgent,
    deadline: Duration,
    stdin: impl Read,
) -> SendOutcome {
    let started = Instant::now();
    let mut input = Vec::new();
    if let Err(e) = stdin
        .take(MAX_STDIN_BYTES as u64 + 1)
        .read_to_end(&mut input)
    {
        return SendOutcome::Ignored(format!("could not read stdin: {e}"));
    }
    if input.len() > MAX_STDIN_BYTES {
        return SendOutcome::Ignored(format!(
            "hook payload is larger than {MAX_STDIN_BYTES} bytes"
        ));
    }
    let transcripts = config.transcript_state_dir();
    let envelope = match envelope(
        &input,
        app,
        agent,
        crate::clock::wall_clock_ms(),
        Some(&transcripts),
    ) {
        Ok(envelope) => envelope,
        Err(reason) => {
            config.debug(|| format!("not sent: {reason}"));
            return SendOutcome::Ignored(reason);
        }
    };
    let outcome = match post(config, "/events", &envelope.json, deadline) {
        Ok(()) => {
            let drain_started = config.spool().has_events() && start_background_drain(config);
            SendOutcome::Delivered { drain_started }
        }
        Err(reason) => match config.spool().push(&envelope.event_id, &envelope.json) {
            Ok(()) => SendOutcome::Spooled(reason),
            Err(e) => SendOutcome::Ignored(format!("{reason}; and could not spool: {e}")),
        },
    };
    config.debug(|| format!("{outcome:?} in {:?}", started.elapsed()));
    outcome
}

/// An envelope ready to send.
pub(crate) struct Envelope {
    pub event_id: String,
    pub json: Vec<u8>,
}

/// Events after which the transcript holds new token usage.
const USAGE_EVENTS: [&str; 3] = ["Stop", "SubagentStop", "SessionEnd"];

/// Wraps a hook payload in the origin envelope. The payload is kept byte for byte; its
/// `session_id` is never rewritten. The envelope names an agent other than Claude Code
/// (`coding_agent`), and `hook_event_type` is the agent's own event name (the server maps
/// Gemini's onto Claude Code's). With `transcripts` (the read positions' directory), Claude
/// Code's Stop, SubagentStop and SessionEnd carry the transcript's new token usage as
/// `transcript_usage` (the other agents' transcripts are in other formats, and their
/// telemetry measures their tokens).
pub(crate) fn envelope(
    payload: &[u8],
    app: Option<&str>,
    agent: CodingAgent,
    now_ms: i64,
    transcripts: Option<&std::path::Path>,
) -> Result<Envelope, String> {
    let text = std::str::from_utf8(payload).map_err(|_| "stdin is not UTF-8".to_owned())?;
    let raw: &RawValue =
        serde_json::from_str(text.trim()).map_err(|e| format!("stdin is not JSON: {e}"))?;
    #[derive(serde::Deserialize)]
    struct Fields {
        session_id: Option<String>,
        hook_event_name: Option<String>,
        cwd: Option<String>,
        transcript_path: Option<String>,
        agent_transcript_path: Option<String>,
    }
    let fields: Fields = serde_json::from_str(raw.get())
        .map_err(|_| "the hook payload is not a JSON object".to_owned())?;
    let session_id = fields
        .session_id
        .filter(|s| !s.is_empty())
        .ok_or("the hook payload has no session_id")?;
    let hook_event_type = fields
        .hook_event_name
        .filter(|s| !s.is_empty())
        .ok_or("the hook payload has no hook_event_name")?;
    let source_app = app
        .map(str::to_owned)
        .or_else(|| fields.cwd.as_deref().and_then(last_path_part))
        .unwrap_or_else(|| "unknown".to_owned());
    let transcript = if hook_event_type == "SubagentStop" {
        fields.agent_transcript_path
    } else {
        fields.transcript_path
    };
    let transcript_usage = transcripts
        .filter(|_| agent == CodingAgent::ClaudeCode)
        .filter(|_| USAGE_EVENTS.contains(&hook_event_type.as_str()))
        .zip(transcript.filter(|t| !t.is_empty()))
        .and_then(|(state, path)| {
            transcript::usage_since_last_read(state, std::path::Path::new(&path))
        });
    let event_id = uuid::Uuid::now_v7().to_string();
    let mut envelope = json!({
        "event_id": event_id,
        "source_app": source_app,
        "session_id": session_id,
        "hook_event_type": hook_event_type,
        "timestamp": now_ms,
        "payload": raw,
    });
    if let Some(usage) = transcript_usage {
        envelope["transcript_usage"] = usage;
    }
    if let Some(name) = agent.stored_name() {
        envelope["coding_agent"] = json!(name);
    }
    let json = serde_json::to_vec(&envelope).map_err(|e| e.to_string())?;
    Ok(Envelope { event_id, json })
}

fn last_path_part(path: &str) -> Option<String> {
    path.trim_end_matches(['/', '\\'])
        .rsplit(['/', '\\'])
        .next()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// POSTs JSON; `Err` carries why it should be spooled (refused, timeout, 5xx, 503, 4xx).
fn post(config: &ClientConfig, path: &str, body: &[u8], deadline: Duration) -> Result<(), String> {
    let server = ServerUrl::parse(&config.server).map_err(|e| e.to_string())?;
    let client = config.http().map_err(|e| e.to_string())?;
    match client.request(
        &server,
        Method::Post,
        path,
        Some("application/json"),
        body,
        config.token.as_deref(),
        deadline,
    ) {
        Ok(answer) if (200..300).contains(&answer.status) => Ok(()),
        Ok(answer) => Err(format!(
            "the server answered {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Starts `hookwatch replay` detached, with no stdio, so the agent does not wait for it.
fn start_background_drain(config: &ClientConfig) -> bool {
    let Ok(exe) = std::env::current_exe() else {
        return false;
    };
    let mut command = std::process::Command::new(exe);
    command
        .arg("replay")
        .arg("--quiet")
        .env("HOOKWATCH_SERVER", &config.server)
        .env("HOOKWATCH_SPOOL_DIR", &config.spool_dir)
        .env(
            "HOOKWATCH_SPOOL_MAX_BYTES",
            config.spool_max_bytes.to_string(),
        )
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(token) = &config.token {
        command.env("HOOKWATCH_TOKEN", token);
    }
    if let Some(ca_cert) = &config.ca_cert {
        command.env("HOOKWATCH_CA_CERT", ca_cert);
    }
    command.spawn().is_ok()
}

/// What one replay did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplayReport {
    pub delivered: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// Events still spooled (the server stopped answering).
    pub left: u64,
    /// Another replay held the spool.
    pub busy: bool,
}

/// `hookwatch replay`: drains the spool through `POST /events/batch`, oldest first.
pub fn replay(
    config: &ClientConfig,
    mut progress: impl FnMut(&ReplayReport),
) -> Result<ReplayReport, String> {
    let spool = config.spool();
    let server = ServerUrl::parse(&config.server).map_err(|e| e.to_string())?;
    let client = config.http().map_err(|e| e.to_string())?;
    let drained = spool
        .with_drain_lock(|| -> Result<ReplayReport, String> {
            let mut report = ReplayReport::default();
            loop {
                let batch = spool
                    .oldest(REPLAY_BATCH_EVENTS, REPLAY_BATCH_BYTES)
                    .map_err(|e| e.to_string())?;
                if batch.is_empty() {
                    return Ok(report);
                }
                let mut body = Vec::with_capacity(batch.iter().map(|e| e.bytes.len()).sum());
                for event in &batch {
                    body.extend_from_slice(&event.bytes);
                    if !event.bytes.ends_with(b"\n") {
                        body.push(b'\n');
                    }
                }
                let answer = client.request(
                    &server,
                    Method::Post,
                    "/events/batch",
                    Some("application/x-ndjson"),
                    &body,
                    config.token.as_deref(),
                    Duration::from_secs(30),
                );
                let answer = match answer {
                    Ok(answer) if answer.status == 200 => answer,
                    Ok(answer) if answer.status == 413 && batch.len() == 1 => {
                        // One event the server will never take: drop it, counted.
                        spool.remove(&batch, 1).map_err(|e| e.to_string())?;
                        report.rejected += 1;
                        continue;
                    }
                    Ok(answer) => {
                        report.left = spool.state().events;
                        config.debug(|| format!("replay stopped: answer {}", answer.status));
                        return Ok(report);
                    }
                    Err(HttpError::BadUrl(url)) => return Err(format!("bad server URL {url}")),
                    Err(e) => {
                        report.left = spool.state().events;
                        config.debug(|| format!("replay stopped: {e}"));
                        return Ok(report);
                    }
                };
                let summary: Value = serde_json::from_slice(&answer.body)
                    .map_err(|e| format!("malformed batch answer: {e}"))?;
                let count = |key: &str| summary[key].as_u64().unwrap_or(0);
                let rejected = summary["rejected"].as_array().map_or(0, |r| r.len() as u64);
                report.delivered += count("accepted");
                report.duplicates += count("duplicates");
                report.rejected += rejected;
                spool.remove(&batch, rejected).map_err(|e| e.to_string())?;
                progress(&report);
            }
        })
        .map_err(|e| e.to_string())?;
    match drained {
        Some(report) => report,
        None => Ok(ReplayReport {
            busy: true,
            left: spool.state().events,
            ..ReplayReport::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_keeps_the_payload_whole_and_the_session_id_as_sent() {
        let payload = br#"{"session_id":"S-1","hook_event_name":"PreToolUse","cwd":"/home/dev/proj-alpha/","tool_input":{"b":1,"a":2}}"#;
        let envelope = envelope(payload, None, CodingAgent::ClaudeCode, 1_000, None).unwrap();
        let value: Value = serde_json::from_slice(&envelope.json).unwrap();
        assert_eq!(value["session_id"], "S-1");
        assert_eq!(value["source_app"], "proj-alpha");
        assert_eq!(value["hook_event_type"], "PreToolUse");
        assert_eq!(value["timestamp"], 1_000);
        assert_eq!(value["event_id"], envelope.event_id.as_str());
        let text = String::from_utf8(envelope.json).unwrap();
        assert!(
            text.contains(std::str::from_utf8(payload).unwrap()),
            "{text}"
        );
        let named =
            super::envelope(payload, Some("mine"), CodingAgent::ClaudeCode, 0, None).unwrap();
        let value: Value = serde_json::from_slice(&named.json).unwrap();
        assert_eq!(value["source_app"], "mine");
    }

    #[test]
    fn payloads_that_are_not_hook_events_are_refused() {
        assert!(envelope(b"not json", None, CodingAgent::ClaudeCode, 0, None).is_err());
        assert!(envelope(b"[1,2]", None, CodingAgent::ClaudeCode, 0, None).is_err());
        assert!(
            envelope(
                br#"{"hook_event_name":"Stop"}"#,
                None,
                CodingAgent::ClaudeCode,
                0,
                None
            )
            .is_err()
        );
    }
}
