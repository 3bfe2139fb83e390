//! The one validated event type that everything past the API edge works with.
//!
//! A [`HookEvent`] is built once, by `api::wire`'s parsers, from either wire shape (the origin
//! envelope or a raw Claude Code hook body). It keeps the client's JSON byte for byte
//! (`payload` and unknown envelope fields stay [`RawValue`]s, so nothing is dropped or
//! re-rounded; a `chat` is kept compressed, as a [`Chat`]) and carries [`HookFacts`]: the few
//! fields the lifecycle rules read, pulled out leniently so an odd payload is still stored whole.

use super::coding_agent::CodingAgent;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Claude Code's subagent tool, under its old and new names.
pub(crate) const SUBAGENT_TOOLS: [&str; 2] = ["Task", "Agent"];

/// Claude Code's default `subagent_type` when the tool input names none.
pub(crate) const DEFAULT_SUBAGENT_TYPE: &str = "general-purpose";

/// Event types hookwatch itself writes for callers that report lifecycles over the API
/// (`POST /api/agents/start|complete`), so that lifecycles are always derived from events.
pub(crate) const API_AGENT_STARTED: &str = "hookwatch.AgentStarted";
pub(crate) const API_AGENT_COMPLETED: &str = "hookwatch.AgentCompleted";

/// An accepted event, ready to be stored. Made only by [`HookEvent::new`], which holds every
/// event to the bounds the store and the rules rely on; its fields ([`EventParts`]) are read
/// through `Deref` and cannot be changed afterwards.
#[derive(Debug, Clone)]
pub struct HookEvent {
    parts: EventParts,
}

impl std::ops::Deref for HookEvent {
    type Target = EventParts;

    fn deref(&self) -> &EventParts {
        &self.parts
    }
}

/// What a [`HookEvent`] is made of, before [`HookEvent::new`] checks it.
#[derive(Debug, Clone)]
pub struct EventParts {
    pub event_id: String,
    pub timestamp_ms: i64,
    /// The client's timestamp was too far in the future and is the arrival time instead.
    pub timestamp_clamped: bool,
    pub source_app: String,
    /// Claude Code's own session id: sessions and agents are keyed by it.
    pub session_id: String,
    /// The envelope's `session_id` as sent, when it differs from `session_id` (the TTS fork
    /// sends `<id>_<pid>_<unixtime>`). Events show it; filters match either.
    pub sent_session_id: Option<String>,
    pub hook_event_type: String,
    pub payload: Box<RawValue>,
    pub chat: Option<Chat>,
    /// Sent with a human-in-the-loop request (`humanInTheLoop`): stored pending an answer.
    pub hitl_pending: bool,
    pub summary: Option<String>,
    pub model_name: Option<String>,
    /// Envelope fields hookwatch does not interpret, kept as a JSON object (or `None`).
    pub extra: Option<Box<RawValue>>,
    pub facts: HookFacts,
}

impl EventParts {
    /// An event hookwatch makes itself (an agent report) or a test does: no envelope extras, no
    /// chat, no human in the loop, its timestamp as given.
    pub(crate) fn plain(
        event_id: String,
        timestamp_ms: i64,
        source_app: String,
        session_id: String,
        hook_event_type: &str,
        payload: Box<RawValue>,
        facts: HookFacts,
    ) -> Self {
        Self {
            event_id,
            timestamp_ms,
            timestamp_clamped: false,
            source_app,
            session_id,
            sent_session_id: None,
            hook_event_type: hook_event_type.to_owned(),
            payload,
            chat: None,
            hitl_pending: false,
            summary: None,
            model_name: None,
            extra: None,
            facts,
        }
    }
}

/// Why [`HookEvent::new`] refused an event: the field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EventRefusal {
    pub field: &'static str,
    pub message: String,
}

impl HookEvent {
    /// The one way to make an event. Refuses, naming the field:
    /// - a token count past [`MAX_TOKENS_PER_EVENT`] (no real run comes near it, and bounded
    ///   counts keep every sum far from wrapping);
    /// - an identifier the rules store (tool name, agent id and type, model, …) longer than
    ///   `max_id_len` bytes: 300 tool names of 100 KB made a 221 MB database.
    ///
    /// Identifiers holding NUL never get here: [`HookFacts`] treats them as absent.
    pub(crate) fn new(parts: EventParts, max_id_len: usize) -> Result<Self, EventRefusal> {
        parts.facts.check_bounds(max_id_len)?;
        Ok(Self { parts })
    }

    /// The head of the prompt this event submits: only a `UserPromptSubmit` submits one.
    pub(crate) fn submitted_prompt(&self) -> Option<&PromptHead> {
        (self.hook_event_type == "UserPromptSubmit")
            .then_some(self.facts.prompt.as_ref())
            .flatten()
    }
}

/// The most tokens one count of one event may report (input, output, cache writes or reads;
/// a subagent's total). No real run comes near: a context holds about 10^6 tokens. Counts past
/// it are refused at the edge, so sums of many events stay far inside `i64`, and every sum
/// saturates besides, so no count, token or cost can wrap.
pub(crate) const MAX_TOKENS_PER_EVENT: i64 = 1_000_000_000_000;

/// The most tools one agent report may list (each is stored as a tool call).
pub(crate) const MAX_REPORTED_TOOLS: usize = 100;

/// The longest duration a payload may report, in ms (a year); a longer one is treated as
/// absent, like a field of an odd type.
pub(crate) const MAX_DURATION_MS: i64 = 366 * 24 * 60 * 60 * 1000;

/// A conversation sent with an event (the upstream's `send_event.py --add-chat` puts the whole
/// transcript in `chat`): its JSON compressed, stored apart from the event row, so lists, the
/// stream and exports carry its size and at most its last messages ([`Chat::tail`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chat {
    /// The chat's JSON as sent, in bytes.
    pub json_bytes: i64,
    /// That JSON, zlib-compressed.
    pub compressed: Vec<u8>,
    /// Its last messages (`api::wire::chat_tail`, at most `--stream-chat-bytes`): the chat
    /// as sent when it fits, which the stream and event lists carry as the event's `chat`.
    pub tail: Option<String>,
}

/// Token counts as Claude reports them in `usage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub input: i64,
    pub output: i64,
    pub cache_creation: i64,
    pub cache_read: i64,
}

impl TokenUsage {
    pub(crate) fn add(&mut self, other: &TokenUsage) {
        self.input = self.input.saturating_add(other.input);
        self.output = self.output.saturating_add(other.output);
        self.cache_creation = self.cache_creation.saturating_add(other.cache_creation);
        self.cache_read = self.cache_read.saturating_add(other.cache_read);
    }

    /// Every count within [`MAX_TOKENS_PER_EVENT`].
    pub(crate) fn within_bound(&self) -> bool {
        [
            self.input,
            self.output,
            self.cache_creation,
            self.cache_read,
        ]
        .iter()
        .all(|count| *count <= MAX_TOKENS_PER_EVENT)
    }

    /// `{"model": {"input_tokens": …}, …}` → usage per model; models with no tokens dropped.
    pub(crate) fn by_model(value: &Value) -> Vec<(String, TokenUsage)> {
        let Some(models) = value.as_object() else {
            return Vec::new();
        };
        models
            .iter()
            .filter_map(|(model, usage)| {
                let usage = TokenUsage::from_json(usage)?;
                (!usage.is_empty() && model.len() <= 200 && !model.contains('\0'))
                    .then(|| (model.clone(), usage))
            })
            .take(64)
            .collect()
    }

    pub(crate) fn total(&self) -> i64 {
        self.input
            .saturating_add(self.output)
            .saturating_add(self.cache_creation)
            .saturating_add(self.cache_read)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.total() == 0
    }

    pub(crate) fn from_json(usage: &Value) -> Option<Self> {
        let usage = usage.as_object()?;
        let count = |key: &str| usage.get(key).and_then(Value::as_i64).unwrap_or(0).max(0);
        Some(Self {
            input: count("input_tokens"),
            output: count("output_tokens"),
            cache_creation: count("cache_creation_input_tokens"),
            cache_read: count("cache_read_input_tokens"),
        })
    }
}

/// What the subagent tool's PostToolUse reports about the run it spawned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubagentResult {
    pub agent_id: Option<String>,
    pub total_duration_ms: Option<i64>,
    pub total_tokens: Option<i64>,
    pub usage: Option<TokenUsage>,
    pub model: Option<String>,
}

/// What the subagent tool's PreToolUse asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubagentRequest {
    pub subagent_type: String,
    pub description: Option<String>,
}

/// What a caller of `POST /api/agents/*` reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportedAgent {
    pub agent_id: String,
    pub agent_name: Option<String>,
    pub agent_type: Option<String>,
    pub description: Option<String>,
    pub duration_ms: Option<i64>,
    pub usage: Option<TokenUsage>,
    pub total_tokens: Option<i64>,
    pub model: Option<String>,
    pub tools_used: Vec<String>,
    pub error: Option<String>,
}

/// The fields of a payload that lifecycle derivation reads. All optional: older clients send
/// less, and a field of an unexpected type is treated as absent rather than rejected.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HookFacts {
    pub tool_name: Option<String>,
    pub tool_use_id: Option<String>,
    pub agent_id: Option<String>,
    pub agent_type: Option<String>,
    pub cwd: Option<String>,
    pub model: Option<String>,
    pub error: Option<String>,
    pub duration_ms: Option<i64>,
    pub reason: Option<String>,
    pub subagent_request: Option<SubagentRequest>,
    pub subagent_result: Option<SubagentResult>,
    pub reported_agent: Option<ReportedAgent>,
    /// Token usage per model read from the transcript by the hook client since its last read
    /// (the envelope's `transcript_usage`, on Stop, SubagentStop and SessionEnd).
    pub transcript_usage: Vec<(String, TokenUsage)>,
    /// The prompt a `UserPromptSubmit` carries, cut to its head: what a trace shows of it,
    /// stored beside the event so a trace never parses the payload (3,000 prompts of 900 KB
    /// once took one trace read to 1.94 GB and past its read budget).
    pub prompt: Option<PromptHead>,
    /// The coding agent that sent it, where it is not (or not known to be) Claude Code: named
    /// by the envelope's `coding_agent`, else known by the event ([`CodingAgent::of_hook_event`]).
    pub coding_agent: Option<CodingAgent>,
}

/// The most characters of a prompt a trace shows; the whole prompt is its event's.
pub(crate) const PROMPT_HEAD_CHARS: usize = 4_000;

/// The longest `prompt_id` kept as one (a UUID is 36 bytes); a longer one is treated as
/// absent, like a field of an odd type: it can only be a join key, and nothing sends such ids.
pub(crate) const MAX_PROMPT_ID_BYTES: usize = 256;

/// A prompt's first [`PROMPT_HEAD_CHARS`] characters, its whole length, and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptHead {
    /// The hooks' `prompt_id` (Claude Code ≥ 2.1.196), the telemetry's `prompt.id`.
    pub prompt_id: Option<String>,
    /// The first characters, NUL replaced (a text column cannot hold it on PostgreSQL).
    pub head: String,
    /// The whole prompt's length in characters.
    pub chars: i64,
}

impl PromptHead {
    /// The head of the `prompt` string in a payload, if it has one.
    fn from_payload(payload: &Map<String, Value>) -> Option<Self> {
        let Value::String(prompt) = payload.get("prompt")? else {
            return None;
        };
        let cut = prompt
            .char_indices()
            .nth(PROMPT_HEAD_CHARS)
            .map_or(prompt.len(), |(at, _)| at);
        let chars = if cut == prompt.len() {
            prompt[..cut].chars().count()
        } else {
            PROMPT_HEAD_CHARS + prompt[cut..].chars().count()
        };
        Some(Self {
            prompt_id: string_field(payload, "prompt_id")
                .filter(|id| id.len() <= MAX_PROMPT_ID_BYTES),
            head: prompt[..cut].replace('\0', "\u{fffd}"),
            chars: i64::try_from(chars).unwrap_or(i64::MAX),
        })
    }
}

/// The identifiers that are there.
fn present<'a>(found: Vec<(&'static str, Option<&'a str>)>) -> Vec<(&'static str, &'a str)> {
    found
        .into_iter()
        .filter_map(|(field, value)| Some((field, value?)))
        .collect()
}

/// A non-empty string field. One holding a NUL character counts as absent, like a field of an
/// odd type: derived columns are text, which PostgreSQL cannot store with NUL in it (the
/// payload itself is kept whole, as JSON text, where NUL is escaped).
fn string_field(map: &Map<String, Value>, key: &str) -> Option<String> {
    match map.get(key)? {
        Value::String(s) if !s.is_empty() && !s.contains('\0') => Some(s.clone()),
        _ => None,
    }
}

fn int_field(map: &Map<String, Value>, key: &str) -> Option<i64> {
    let value = map.get(key)?;
    value
        .as_i64()
        .or_else(|| value.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
}

/// A duration in ms from 0 to [`MAX_DURATION_MS`]; anything else is absent.
fn duration_field(map: &Map<String, Value>, key: &str) -> Option<i64> {
    int_field(map, key).filter(|ms| (0..=MAX_DURATION_MS).contains(ms))
}

impl HookFacts {
    /// The field of the first token count past [`MAX_TOKENS_PER_EVENT`], if any: such an
    /// event is refused, naming it.
    pub(crate) fn token_count_over_bound(&self) -> Option<&'static str> {
        let total_over = |total: Option<i64>| total.is_some_and(|t| t > MAX_TOKENS_PER_EVENT);
        if let Some(result) = &self.subagent_result {
            if result.usage.is_some_and(|usage| !usage.within_bound()) {
                return Some("payload.tool_response.usage");
            }
            if total_over(result.total_tokens) {
                return Some("payload.tool_response.totalTokens");
            }
        }
        if let Some(reported) = &self.reported_agent
            && (reported.usage.is_some_and(|usage| !usage.within_bound())
                || total_over(reported.total_tokens))
        {
            return Some("token_usage");
        }
        if self
            .transcript_usage
            .iter()
            .any(|(_, usage)| !usage.within_bound())
        {
            return Some("transcript_usage");
        }
        None
    }

    /// The bounds every event is held to ([`HookEvent::new`]): no token count past
    /// [`MAX_TOKENS_PER_EVENT`], no stored identifier longer than `max_id_len` bytes.
    pub(crate) fn check_bounds(&self, max_id_len: usize) -> Result<(), EventRefusal> {
        if let Some(field) = self.token_count_over_bound() {
            return Err(EventRefusal {
                field,
                message: format!(
                    "{field} holds a token count over {MAX_TOKENS_PER_EVENT}, the most one event may report"
                ),
            });
        }
        if let Some((field, value)) = self
            .identifiers()
            .into_iter()
            .find(|(_, value)| value.len() > max_id_len)
        {
            return Err(EventRefusal {
                field,
                message: format!(
                    "{field} is {} bytes; the limit is {max_id_len}",
                    value.len()
                ),
            });
        }
        Ok(())
    }

    /// The identifiers the rules store in columns, with the payload field each came from:
    /// each is held to the identifier length limit at the edge.
    pub(crate) fn identifiers(&self) -> Vec<(&'static str, &str)> {
        if let Some(reported) = &self.reported_agent {
            // A report's own fields (its facts repeat some of them).
            let mut found = vec![
                ("agent_id", Some(reported.agent_id.as_str())),
                ("agent_name", reported.agent_name.as_deref()),
                ("agent_type", reported.agent_type.as_deref()),
                ("model", reported.model.as_deref()),
            ];
            found.extend(
                reported
                    .tools_used
                    .iter()
                    .map(|t| ("tools_used", Some(t.as_str()))),
            );
            return present(found);
        }
        let mut found = vec![
            ("payload.tool_name", self.tool_name.as_deref()),
            ("payload.tool_use_id", self.tool_use_id.as_deref()),
            ("payload.agent_id", self.agent_id.as_deref()),
            ("payload.agent_type", self.agent_type.as_deref()),
            ("payload.model", self.model.as_deref()),
        ];
        if let Some(request) = &self.subagent_request {
            found.push((
                "payload.tool_input.subagent_type",
                Some(request.subagent_type.as_str()),
            ));
        }
        if let Some(result) = &self.subagent_result {
            found.push(("payload.tool_response.agentId", result.agent_id.as_deref()));
            found.push(("payload.tool_response.model", result.model.as_deref()));
        }
        found.extend(
            self.transcript_usage
                .iter()
                .map(|(model, _)| ("transcript_usage", Some(model.as_str()))),
        );
        present(found)
    }

    /// Pulls the facts out of a payload object.
    pub(crate) fn from_payload(payload: &Map<String, Value>) -> Self {
        let tool_name = string_field(payload, "tool_name");
        let is_subagent_tool = tool_name
            .as_deref()
            .is_some_and(|name| SUBAGENT_TOOLS.contains(&name));
        let subagent_request = is_subagent_tool.then(|| {
            let input = payload.get("tool_input").and_then(Value::as_object);
            SubagentRequest {
                subagent_type: input
                    .and_then(|i| string_field(i, "subagent_type"))
                    .unwrap_or_else(|| DEFAULT_SUBAGENT_TYPE.to_owned()),
                description: input.and_then(|i| string_field(i, "description")),
            }
        });
        let subagent_result = if is_subagent_tool {
            payload
                .get("tool_response")
                .and_then(Value::as_object)
                .map(|response| SubagentResult {
                    agent_id: string_field(response, "agentId"),
                    total_duration_ms: duration_field(response, "totalDurationMs"),
                    total_tokens: int_field(response, "totalTokens"),
                    usage: response.get("usage").and_then(TokenUsage::from_json),
                    model: string_field(response, "model"),
                })
        } else {
            None
        };
        let error = match payload.get("error") {
            Some(Value::String(s)) => Some(s.replace('\0', "\u{fffd}")),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        };
        Self {
            tool_use_id: string_field(payload, "tool_use_id"),
            agent_id: string_field(payload, "agent_id"),
            agent_type: string_field(payload, "agent_type"),
            cwd: string_field(payload, "cwd"),
            model: string_field(payload, "model"),
            duration_ms: duration_field(payload, "duration_ms"),
            reason: string_field(payload, "reason"),
            error,
            tool_name,
            subagent_request,
            subagent_result,
            reported_agent: None,
            transcript_usage: Vec::new(),
            prompt: PromptHead::from_payload(payload),
            coding_agent: None,
        }
    }

    /// The facts of a lifecycle reported through `POST /api/agents/start|complete`.
    pub(crate) fn from_reported_agent(payload: &Map<String, Value>) -> Self {
        let token_usage = payload.get("token_usage");
        let (usage, total_tokens) = match token_usage {
            Some(Value::Object(_)) => (token_usage.and_then(TokenUsage::from_json), None),
            Some(v) => (None, v.as_i64()),
            None => (None, None),
        };
        let tools_used = payload
            .get("tools_used")
            .and_then(Value::as_array)
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| t.as_str().filter(|t| !t.contains('\0')).map(str::to_owned))
                    // Each becomes a tool call: a report names a bounded number.
                    .take(MAX_REPORTED_TOOLS)
                    .collect()
            })
            .unwrap_or_default();
        let reported = ReportedAgent {
            agent_id: string_field(payload, "agent_id").unwrap_or_default(),
            agent_name: string_field(payload, "agent_name"),
            agent_type: string_field(payload, "agent_type"),
            description: string_field(payload, "task_description"),
            // The TTS fork sends 0 when it does not know the duration.
            duration_ms: duration_field(payload, "duration_ms").filter(|ms| *ms > 0),
            usage,
            total_tokens,
            model: string_field(payload, "model"),
            tools_used,
            // The TTS fork says `status: "failure"` (with `error_occurred`) and names no error.
            error: string_field(payload, "error").or_else(|| {
                matches!(
                    payload.get("status").and_then(Value::as_str),
                    Some("failure" | "failed" | "error")
                )
                .then(|| "the agent reported a failure".to_owned())
            }),
        };
        Self {
            agent_id: Some(reported.agent_id.clone()),
            agent_type: reported.agent_type.clone(),
            model: reported.model.clone(),
            reported_agent: Some(reported),
            ..Self::default()
        }
    }
}

/// An agent lifecycle report (`POST /api/agents/start|complete`), parsed once: the agent it
/// is about, what it says, and the report as sent, which is stored as the event's payload.
#[derive(Debug)]
pub(crate) struct AgentReport {
    pub agent_id: String,
    pub facts: HookFacts,
    pub payload: Box<RawValue>,
}

impl AgentReport {
    /// `report` about `agent_id`, which the report is made to carry (a caller that sent none
    /// learns the id it was given, and the stored payload names it).
    pub(crate) fn new(agent_id: String, mut report: Map<String, Value>) -> Self {
        report.insert("agent_id".into(), Value::String(agent_id.clone()));
        let facts = HookFacts::from_reported_agent(&report);
        let payload = RawValue::from_string(Value::Object(report).to_string())
            .expect("a serialized object is valid JSON");
        Self {
            agent_id,
            facts,
            payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts(v: Value) -> HookFacts {
        HookFacts::from_payload(v.as_object().unwrap())
    }

    #[test]
    fn subagent_tool_result_is_read_from_tool_response() {
        let f = facts(json!({
            "tool_name": "Agent", "tool_use_id": "tu1",
            "tool_input": {"subagent_type": "Explore", "description": "look"},
            "tool_response": {"agentId": "a1", "totalDurationMs": 1200, "totalTokens": 30,
                "usage": {"input_tokens": 10, "output_tokens": 20}}
        }));
        let request = f.subagent_request.unwrap();
        assert_eq!(request.subagent_type, "Explore");
        let result = f.subagent_result.unwrap();
        assert_eq!(result.agent_id.as_deref(), Some("a1"));
        assert_eq!(result.total_duration_ms, Some(1200));
        assert_eq!(result.usage.unwrap().total(), 30);
    }

    #[test]
    fn a_prompt_keeps_its_head_its_length_in_characters_and_its_id() {
        let long = "é".repeat(PROMPT_HEAD_CHARS + 5);
        let head = facts(json!({"prompt": long, "prompt_id": "P1"}))
            .prompt
            .unwrap();
        assert_eq!(head.head, "é".repeat(PROMPT_HEAD_CHARS));
        assert_eq!(head.chars, (PROMPT_HEAD_CHARS + 5) as i64);
        assert_eq!(head.prompt_id.as_deref(), Some("P1"));
        let short = facts(json!({"prompt": "a\u{0}b", "prompt_id": "x".repeat(257)}))
            .prompt
            .unwrap();
        assert_eq!((short.head.as_str(), short.chars), ("a\u{fffd}b", 3));
        assert_eq!(short.prompt_id, None, "an id past 256 bytes is no id");
        assert_eq!(facts(json!({"prompt": 7})).prompt, None);
    }

    #[test]
    fn odd_types_are_treated_as_absent() {
        let f = facts(json!({"tool_name": 7, "agent_id": "", "duration_ms": "x"}));
        assert_eq!(f.tool_name, None);
        assert_eq!(f.agent_id, None);
        assert_eq!(f.duration_ms, None);
    }

    #[test]
    fn task_without_subagent_type_defaults_to_general_purpose() {
        let f = facts(json!({"tool_name": "Task", "tool_input": {}}));
        assert_eq!(
            f.subagent_request.unwrap().subagent_type,
            DEFAULT_SUBAGENT_TYPE
        );
    }
}
