//! Wire formats in, domain events out: the only code that knows the envelope and hook-body
//! shapes. Everything is checked here, once, against [`Limits`]; what passes is a valid
//! [`HookEvent`].

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::domain::coding_agent::{CodingAgent, GEMINI_FAILED_TOOL, gemini_hook_as_claudes};
use crate::domain::event::{
    Chat, EventParts, EventRefusal, HookEvent, HookFacts, SUBAGENT_TOOLS, TokenUsage,
};
use crate::domain::time::parse_iso8601_ms;

/// Size and count limits on input. Every one is configurable.
#[derive(Debug, Clone)]
pub struct Limits {
    /// One event's JSON, in bytes (the body of `POST /events` and `/hooks/claude-code`).
    pub max_event_bytes: usize,
    /// The body of `POST /events/batch`, in bytes.
    pub max_batch_bytes: usize,
    pub max_batch_items: usize,
    /// `source_app`, `session_id`, `event_id`, `model_name`.
    pub max_id_len: usize,
    pub max_event_type_len: usize,
    pub max_summary_len: usize,
    /// Unknown top-level envelope fields kept per event.
    pub max_extra_fields: usize,
    /// A timestamp further in the future than this (ms) is clamped to the arrival time.
    pub max_clock_skew_ms: i64,
    /// Request body bytes in flight at once, across all requests (at least one batch's).
    pub max_body_bytes_in_flight: usize,
    /// An event's `chat` (the whole conversation), in bytes, besides `max_event_bytes`.
    pub max_chat_bytes: usize,
    /// The most of a chat's last messages, in bytes, that its event carries on the stream and
    /// in event lists (`Chat::tail`); 0 for none.
    pub stream_chat_bytes: usize,
    /// What one OTLP export may hold, counted before it is decoded.
    pub otlp: crate::otlp::bounds::ExportLimits,
}

impl Limits {
    /// The largest envelope: an event and its chat.
    pub(crate) fn max_envelope_bytes(&self) -> usize {
        self.max_event_bytes.saturating_add(self.max_chat_bytes)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_event_bytes: 1024 * 1024,
            max_batch_bytes: 16 * 1024 * 1024,
            max_batch_items: 1000,
            max_id_len: 256,
            max_event_type_len: 128,
            max_summary_len: 64 * 1024,
            max_extra_fields: 64,
            max_clock_skew_ms: 10 * 60 * 1000,
            max_body_bytes_in_flight: 64 * 1024 * 1024,
            max_chat_bytes: 32 * 1024 * 1024,
            stream_chat_bytes: 256 * 1024,
            otlp: crate::otlp::bounds::ExportLimits::default(),
        }
    }
}

/// Why an input was refused, and which field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InputError {
    pub field: Option<String>,
    pub message: String,
    /// A size or count limit was exceeded (413) rather than the input being malformed (400).
    pub too_large: bool,
}

impl InputError {
    fn field(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.to_owned()),
            message: message.into(),
            too_large: false,
        }
    }

    fn body(message: impl Into<String>) -> Self {
        Self {
            field: None,
            message: message.into(),
            too_large: false,
        }
    }

    fn too_large(message: impl Into<String>) -> Self {
        Self {
            field: None,
            message: message.into(),
            too_large: true,
        }
    }
}

/// The envelope fields hookwatch reads; anything else is kept as an extra field.
const ENVELOPE_FIELDS: [&str; 9] = [
    "source_app",
    "session_id",
    "hook_event_type",
    "payload",
    "chat",
    "summary",
    "timestamp",
    "model_name",
    "event_id",
];

/// Fields the server assigns; a client's values for them are ignored.
const SERVER_FIELDS: [&str; 5] = [
    "id",
    "duplicate",
    "claude_session_id",
    "chat_bytes",
    "humanInTheLoopStatus",
];

fn json_error(e: serde_json::Error) -> InputError {
    InputError::body(format!("malformed JSON: {e}"))
}

/// Refuses anything but a JSON object before parsing, so the error says what is wrong, and
/// anything a value tree could not be built from: raw values are skipped without a depth limit
/// or a range check on numbers, so one pass that builds nothing checks both first. Whatever is
/// stored can then be read back whole.
fn expect_object(json: &[u8]) -> Result<(), InputError> {
    match json.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => serde_json::from_slice::<Checked>(json)
            .map(drop)
            .map_err(json_error),
        _ => Err(InputError::body("the body must be a JSON object")),
    }
}

/// Any JSON value, checked as it would be for a value tree (nesting depth, numbers in range)
/// but never built. (`IgnoredAny` would skip it unchecked, as raw values are.)
struct Checked;

impl<'de> serde::Deserialize<'de> for Checked {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CheckedVisitor;
        impl<'de> serde::de::Visitor<'de> for CheckedVisitor {
            type Value = Checked;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }

            fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
                Ok(Checked)
            }

            fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
                Ok(Checked)
            }

            fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
                Ok(Checked)
            }

            fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
                Ok(Checked)
            }

            fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
                Ok(Checked)
            }

            fn visit_unit<E>(self) -> Result<Checked, E> {
                Ok(Checked)
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Checked, A::Error> {
                while seq.next_element::<Checked>()?.is_some() {}
                Ok(Checked)
            }

            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Checked, M::Error> {
                while map.next_entry::<Checked, Checked>()?.is_some() {}
                Ok(Checked)
            }
        }
        deserializer.deserialize_any(CheckedVisitor)
    }
}

/// A JSON object's members, in order, with their values left as raw JSON borrowed from the
/// input: reading the few fields hookwatch interprets costs no copy of the rest (a payload's
/// `tool_input` can be most of a megabyte). A key is borrowed too unless it holds escapes.
/// When a key repeats, the last one counts, as with any JSON map.
struct RawObject<'a> {
    members: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> RawObject<'a> {
    fn parse(json: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(json)
    }

    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.members
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| *value)
    }

    /// Present and not `null`.
    fn get_non_null(&self, name: &str) -> Option<&'a RawValue> {
        self.get(name).filter(|raw| !is_null(raw))
    }
}

impl<'de> serde::Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> serde::de::Visitor<'de> for MembersVisitor {
            type Value = RawObject<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((key, value)) = map.next_entry::<MemberName<'de>, &'de RawValue>()? {
                    members.push((key.0, value));
                }
                Ok(RawObject { members })
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// An object key, borrowed from the input when it can be.
struct MemberName<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for MemberName<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> serde::de::Visitor<'de> for NameVisitor {
            type Value = MemberName<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                name: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(MemberName(Cow::Borrowed(name)))
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Self::Value, E> {
                Ok(MemberName(Cow::Owned(name.to_owned())))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

fn top_level_object(json: &[u8]) -> Result<RawObject<'_>, InputError> {
    expect_object(json)?;
    RawObject::parse(json).map_err(json_error)
}

fn is_null(raw: &RawValue) -> bool {
    raw.get().trim() == "null"
}

fn required_string(
    fields: &RawObject<'_>,
    name: &str,
    max_len: usize,
) -> Result<String, InputError> {
    checked_string(fields.get(name), name, max_len)
}

/// A required, non-blank string of at most `max_len` bytes.
fn checked_string(
    raw: Option<&RawValue>,
    name: &str,
    max_len: usize,
) -> Result<String, InputError> {
    let Some(raw) = raw else {
        return Err(InputError::field(name, format!("{name} is required")));
    };
    // `raw` is valid JSON already, so a failure here means "not a string".
    let Ok(text) = serde_json::from_str::<String>(raw.get()) else {
        return Err(InputError::field(name, format!("{name} must be a string")));
    };
    if text.trim().is_empty() {
        return Err(InputError::field(name, format!("{name} must not be empty")));
    }
    check_text_limits(name, &text, max_len)?;
    Ok(text)
}

/// Earliest and latest accepted timestamps: years 2000 and 2200.
const MIN_TIMESTAMP_MS: i64 = 946_684_800_000;
const MAX_TIMESTAMP_MS: i64 = 7_258_118_400_000;

fn timestamp(raw: &RawValue) -> Result<i64, InputError> {
    let invalid = || {
        InputError::field(
            "timestamp",
            "timestamp must be an integer of milliseconds since the epoch or an ISO-8601 string",
        )
    };
    let ms = match serde_json::from_str::<Value>(raw.get()).map_err(|_| invalid())? {
        Value::Number(n) => n.as_i64().ok_or_else(invalid)?,
        Value::String(s) => parse_iso8601_ms(&s).ok_or_else(invalid)?,
        _ => return Err(invalid()),
    };
    if !(MIN_TIMESTAMP_MS..=MAX_TIMESTAMP_MS).contains(&ms) {
        return Err(InputError::field(
            "timestamp",
            "timestamp is outside the years 2000..2200 (is it in seconds instead of milliseconds?)",
        ));
    }
    Ok(ms)
}

/// The payload fields [`HookFacts`] reads, as values; the rest of the payload is never parsed
/// past its raw text. The subagent tool's input and response are read only for that tool.
const FACT_FIELDS: [&str; 11] = [
    "tool_name",
    "tool_use_id",
    "agent_id",
    "agent_type",
    "cwd",
    "model",
    "error",
    "duration_ms",
    "reason",
    "prompt",
    "prompt_id",
];
const SUBAGENT_TOOL_FIELDS: [&str; 2] = ["tool_input", "tool_response"];

/// The [`HookFacts`] of a payload object.
fn payload_facts(payload: &RawObject<'_>) -> HookFacts {
    let mut facts = Map::new();
    let value_of = |name: &str| {
        payload
            .get(name)
            .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
    };
    for name in FACT_FIELDS {
        if let Some(value) = value_of(name) {
            facts.insert(name.to_owned(), value);
        }
    }
    let is_subagent_tool = facts
        .get("tool_name")
        .and_then(Value::as_str)
        .is_some_and(|name| SUBAGENT_TOOLS.contains(&name));
    if is_subagent_tool {
        for name in SUBAGENT_TOOL_FIELDS {
            if let Some(value) = value_of(name) {
                facts.insert(name.to_owned(), value);
            }
        }
    }
    HookFacts::from_payload(&facts)
}

/// The coding agent of a hook event and the name it is stored under. The agent is the one the
/// envelope names (`coding_agent`: `claude-code`, `codex`, `gemini-cli`; kept among the extra
/// fields as sent, and ignored when it names no agent hookwatch knows), else the one the event
/// shows ([`CodingAgent::of_hook_event`]). A Gemini event is stored under its Claude Code twin
/// (the payload keeps Gemini's name), an `AfterTool` whose `tool_response` reports an `error`
/// as a failed call, with that error.
fn agent_and_event_type(
    hook_event_type: String,
    named: Option<&RawValue>,
    payload: Option<&RawObject<'_>>,
    facts: &mut HookFacts,
) -> String {
    let named = named
        .and_then(|raw| serde_json::from_str::<&str>(raw.get()).ok())
        .and_then(CodingAgent::parse);
    let has_turn_id = payload.is_some_and(|p| p.get_non_null("turn_id").is_some());
    let agent = named.or_else(|| CodingAgent::of_hook_event(&hook_event_type, has_turn_id));
    facts.coding_agent = agent.filter(|agent| *agent != CodingAgent::ClaudeCode);
    if agent != Some(CodingAgent::Gemini) {
        return hook_event_type;
    }
    let Some(twin) = gemini_hook_as_claudes(&hook_event_type) else {
        return hook_event_type;
    };
    if twin == "PostToolUse"
        && let Some(error) = payload.and_then(gemini_tool_error)
    {
        facts.error = Some(error);
        return GEMINI_FAILED_TOOL.to_owned();
    }
    twin.to_owned()
}

/// The `error` a Gemini `AfterTool` payload's `tool_response` reports: its message where it is
/// an object with one, else its text. `null`, `false` and an empty string are no error.
fn gemini_tool_error(payload: &RawObject<'_>) -> Option<String> {
    let response = payload.get_non_null("tool_response")?;
    let response = RawObject::parse(response.get().as_bytes()).ok()?;
    let error: Value = serde_json::from_str(response.get_non_null("error")?.get()).ok()?;
    let text = match &error {
        Value::Bool(false) => return None,
        Value::String(text) => text.clone(),
        Value::Object(map) => match map.get("message") {
            Some(Value::String(message)) => message.clone(),
            _ => error.to_string(),
        },
        other => other.to_string(),
    };
    (!text.trim().is_empty()).then(|| text.replace('\0', "\u{fffd}"))
}

/// Server-made ids are UUIDv7: time-ordered, so they append to the `event_id` index instead of
/// dirtying a random page of it on every insert. Their random bits come from a generator seeded
/// once per thread (`uuid`'s `fast-rng`), not from a `getrandom` system call per event.
fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The envelope key under which fields hookwatch could not use are kept, as sent.
pub(crate) const IGNORED_FIELDS_KEY: &str = "hookwatch_ignored";

/// Where one Claude Code session's id is, in order: the payload's own `session_id` (Claude
/// Code's), then `payload.metadata.original_session_id` (the TTS fork rewrites the envelope's
/// `session_id` to `<id>_<pid>_<unixtime>` on every event and keeps the real one there), then
/// the envelope's. Sessions and agents are keyed by this, so one Claude Code session is one
/// session whichever client sent it.
fn claude_session_id(payload: Option<&RawObject<'_>>, limits: &Limits) -> Option<String> {
    let payload = payload?;
    let usable = |raw: &RawValue| {
        serde_json::from_str::<String>(raw.get())
            .ok()
            .filter(|id| usable_identifier(id, limits.max_id_len))
    };
    payload.get("session_id").and_then(usable).or_else(|| {
        let metadata = payload.get("metadata")?;
        let metadata = RawObject::parse(metadata.get().as_bytes()).ok()?;
        metadata.get("original_session_id").and_then(usable)
    })
}

/// A string that can key a session or an app: not blank, not too long, no NUL.
pub(crate) fn usable_identifier(text: &str, max_len: usize) -> bool {
    !text.trim().is_empty() && text.len() <= max_len && !text.contains('\0')
}

/// Envelope fields that were sent but could not be used, kept as sent.
#[derive(Default)]
struct Ignored(BTreeMap<&'static str, Box<RawValue>>);

impl Ignored {
    fn keep(&mut self, name: &'static str, raw: &RawValue) {
        self.0.insert(name, raw.to_owned());
    }
}

/// At most `max_len` bytes (a limit), and no NUL: identifiers are stored as text columns, and
/// PostgreSQL's text cannot hold NUL at all.
fn check_text_limits(name: &str, text: &str, max_len: usize) -> Result<(), InputError> {
    if text.len() > max_len {
        return Err(InputError::field(
            name,
            format!("{name} is {} bytes; the limit is {max_len}", text.len()),
        ));
    }
    if text.contains('\0') {
        return Err(InputError::field(
            name,
            format!("{name} must not contain NUL characters"),
        ));
    }
    Ok(())
}

/// An optional string field: `None` when absent or `null`, and when it is not a string (the
/// value is then kept in `ignored`). A string past the limits is an error.
fn optional_text(
    fields: &RawObject<'_>,
    name: &'static str,
    max_len: usize,
    ignored: &mut Ignored,
) -> Result<Option<String>, InputError> {
    let Some(raw) = fields.get_non_null(name) else {
        return Ok(None);
    };
    let Ok(text) = serde_json::from_str::<String>(raw.get()) else {
        ignored.keep(name, raw);
        return Ok(None);
    };
    check_text_limits(name, &text, max_len)?;
    Ok(Some(text))
}

fn not_blank(text: &str) -> bool {
    !text.trim().is_empty()
}

/// The last part of a working directory, the app name a hook body gets when none is given.
fn app_from_cwd(cwd: Option<&str>) -> Option<String> {
    cwd?.trim_end_matches(['/', '\\'])
        .rsplit(['/', '\\'])
        .next()
        .filter(|last| !last.is_empty())
        .map(str::to_owned)
}

/// Parses one origin envelope (`POST /events`, and each item of a batch).
///
/// Only what makes an event unusable is refused: a body that is not a JSON object, no
/// `hook_event_type`, and sizes past [`Limits`]. Every other field is optional: one that is
/// absent, `null`, empty or of an unexpected type is treated as absent (a value that was sent
/// is kept, as sent, under [`IGNORED_FIELDS_KEY`]), so a real client's event is never lost over
/// a field hookwatch can do without.
pub fn parse_envelope(json: &[u8], limits: &Limits, now_ms: i64) -> Result<HookEvent, InputError> {
    if json.len() > limits.max_envelope_bytes() {
        return Err(InputError::too_large(format!(
            "event is {} bytes; the limit is {} ({} for the event and {} for its chat)",
            json.len(),
            limits.max_envelope_bytes(),
            limits.max_event_bytes,
            limits.max_chat_bytes
        )));
    }
    let fields = top_level_object(json)?;
    let raw_chat = fields.get_non_null("chat");
    let chat_len = raw_chat.map_or(0, |chat| chat.get().len());
    if chat_len > limits.max_chat_bytes {
        return Err(InputError {
            field: Some("chat".to_owned()),
            message: format!(
                "chat is {chat_len} bytes; the limit is {} (--max-chat-bytes)",
                limits.max_chat_bytes
            ),
            too_large: true,
        });
    }
    if json.len() - chat_len > limits.max_event_bytes {
        return Err(InputError::too_large(format!(
            "event is {} bytes without its chat; the limit is {}",
            json.len() - chat_len,
            limits.max_event_bytes
        )));
    }
    let hook_event_type = required_string(&fields, "hook_event_type", limits.max_event_type_len)?;
    let mut ignored = Ignored::default();
    let raw_payload = fields.get_non_null("payload");
    let payload_fields = match raw_payload {
        Some(raw) if raw.get().trim_start().starts_with('{') => Some(
            RawObject::parse(raw.get().as_bytes())
                .map_err(|e| InputError::field("payload", format!("payload is malformed: {e}")))?,
        ),
        _ => None,
    };
    let mut facts = payload_fields
        .as_ref()
        .map(payload_facts)
        .unwrap_or_default();
    let hook_event_type = agent_and_event_type(
        hook_event_type,
        fields.get_non_null("coding_agent"),
        payload_fields.as_ref(),
        &mut facts,
    );
    let payload = match (raw_payload, &payload_fields) {
        (Some(raw), Some(_)) => raw.to_owned(),
        (Some(raw), None) => {
            ignored.keep("payload", raw);
            empty_object()
        }
        (None, _) => empty_object(),
    };
    let max_id = limits.max_id_len;
    let sent_session_id =
        optional_text(&fields, "session_id", max_id, &mut ignored)?.filter(|text| not_blank(text));
    let source_app = optional_text(&fields, "source_app", max_id, &mut ignored)?
        .filter(|text| not_blank(text))
        .or_else(|| app_from_cwd(facts.cwd.as_deref()))
        .filter(|app| usable_identifier(app, max_id))
        .unwrap_or_else(|| UNKNOWN.to_owned());
    // A timestamp further ahead than the allowed clock skew would keep its session active
    // and its rows past retention for as long: it is clamped to the arrival time, and the
    // time as sent kept aside.
    let (timestamp_ms, timestamp_clamped) = match fields.get_non_null("timestamp") {
        Some(raw) => match timestamp(raw) {
            Ok(ms) if ms <= now_ms.saturating_add(limits.max_clock_skew_ms) => (ms, false),
            Ok(_) => {
                ignored.keep("timestamp", raw);
                (now_ms, true)
            }
            Err(_) => {
                ignored.keep("timestamp", raw);
                (now_ms, false)
            }
        },
        None => (now_ms, false),
    };
    let event_id = optional_text(&fields, "event_id", max_id, &mut ignored)?
        .filter(|text| not_blank(text))
        .unwrap_or_else(new_event_id);
    let summary = optional_text(&fields, "summary", limits.max_summary_len, &mut ignored)?;
    // The upstream's script sends `model_name: ""` until the transcript names a model: kept as
    // sent, and the rules treat an empty one as absent.
    let model_name = optional_text(&fields, "model_name", max_id, &mut ignored)?;
    let chat = raw_chat.map(|raw| compress_chat(raw, limits.stream_chat_bytes));
    // The upstream's human-in-the-loop request: kept as sent (an unknown field, in `extra`),
    // and stored pending until answered through `POST /events/{id}/respond`.
    let hitl_pending = fields
        .get_non_null("humanInTheLoop")
        .is_some_and(|raw| raw.get().trim_start().starts_with('{'));
    let session_id = claude_session_id(payload_fields.as_ref(), limits)
        .or_else(|| sent_session_id.clone())
        .unwrap_or_else(|| UNKNOWN.to_owned());
    let sent_session_id = sent_session_id.filter(|sent| *sent != session_id);
    // Kept in `extra` as sent; read here so the lifecycle can count it.
    let transcript_usage = fields
        .get("transcript_usage")
        .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
        .map(|value| TokenUsage::by_model(&value))
        .unwrap_or_default();
    // The last of a repeated key counts, as for the known fields.
    let mut extra: BTreeMap<&str, Box<RawValue>> = BTreeMap::new();
    for (key, value) in &fields.members {
        if !ENVELOPE_FIELDS.contains(&key.as_ref())
            && !SERVER_FIELDS.contains(&key.as_ref())
            && key != IGNORED_FIELDS_KEY
        {
            extra.insert(key, (*value).to_owned());
        }
    }
    if extra.len() > limits.max_extra_fields {
        return Err(InputError::body(format!(
            "the envelope has {} unknown fields; the limit is {}",
            extra.len(),
            limits.max_extra_fields
        )));
    }
    if !ignored.0.is_empty() {
        let text = serde_json::to_string(&ignored.0).map_err(json_error)?;
        extra.insert(
            IGNORED_FIELDS_KEY,
            RawValue::from_string(text).map_err(json_error)?,
        );
    }
    let extra = if extra.is_empty() {
        None
    } else {
        let text = serde_json::to_string(&extra).map_err(json_error)?;
        Some(RawValue::from_string(text).map_err(json_error)?)
    };
    let facts = HookFacts {
        transcript_usage,
        ..facts
    };
    Ok(HookEvent::new(
        EventParts {
            event_id,
            timestamp_ms,
            timestamp_clamped,
            source_app,
            session_id,
            sent_session_id,
            hook_event_type,
            facts,
            payload,
            chat,
            hitl_pending,
            summary,
            model_name,
            extra,
        },
        limits.max_id_len,
    )?)
}

/// A refusal of [`HookEvent::new`] is the client's: a 400 naming the field.
impl From<EventRefusal> for InputError {
    fn from(refusal: EventRefusal) -> Self {
        InputError::field(refusal.field, refusal.message)
    }
}

/// A chat's JSON, compressed for storage (fastest level: a 30 MB transcript compresses about
/// tenfold in a few tens of milliseconds, and is read rarely), with its tail of at most
/// `tail_bytes` ([`chat_tail`]).
fn compress_chat(raw: &RawValue, tail_bytes: usize) -> Chat {
    use std::io::Write as _;
    let json = raw.get().as_bytes();
    let mut encoder = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(json.len() / 8),
        flate2::Compression::fast(),
    );
    encoder
        .write_all(json)
        .expect("writing to a Vec cannot fail");
    Chat {
        json_bytes: json.len() as i64,
        compressed: encoder.finish().expect("writing to a Vec cannot fail"),
        tail: chat_tail(raw, tail_bytes),
    }
}

/// A chat's last messages, at most `budget` bytes of JSON: the chat as sent when it fits,
/// else a JSON array of its newest messages that fit (`None` when not even the last one does,
/// or the chat is not an array and does not fit). What the upstream's dashboard shows of a
/// chat comes with the event; the whole chat stays at `GET /events/{id}/chat`.
pub(crate) fn chat_tail(raw: &RawValue, budget: usize) -> Option<String> {
    let json = raw.get();
    if json.len() <= budget {
        return Some(json.to_owned());
    }
    let messages: Vec<&RawValue> = serde_json::from_str(json).ok()?;
    let mut used = 2; // the brackets
    let kept = messages
        .iter()
        .rev()
        .take_while(|message| {
            used += message.get().len() + 1;
            used - 1 <= budget
        })
        .count();
    if kept == 0 {
        return None;
    }
    let newest = &messages[messages.len() - kept..];
    let mut tail = String::with_capacity(used);
    tail.push('[');
    for (n, message) in newest.iter().enumerate() {
        if n > 0 {
            tail.push(',');
        }
        tail.push_str(message.get());
    }
    tail.push(']');
    Some(tail)
}

/// The session or app of an event that names none, as the upstream's own script defaults it.
const UNKNOWN: &str = "unknown";

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).expect("{} is JSON")
}

/// Where a raw hook body's source app comes from, in order of preference.
#[derive(Debug, Default)]
pub struct HookSource {
    pub app_param: Option<String>,
    pub app_header: Option<String>,
    pub event_id_header: Option<String>,
}

/// Parses the raw JSON body of a Claude Code HTTP hook (`POST /hooks/claude-code`).
pub fn parse_hook_body(
    json: &[u8],
    source: HookSource,
    limits: &Limits,
    now_ms: i64,
) -> Result<HookEvent, InputError> {
    if json.len() > limits.max_event_bytes {
        return Err(InputError::too_large(format!(
            "event is {} bytes; the limit is {}",
            json.len(),
            limits.max_event_bytes
        )));
    }
    expect_object(json)?;
    // The body is the payload, kept byte for byte; it is parsed once more for its fields.
    let fields = RawObject::parse(json).map_err(json_error)?;
    let hook_event_type = required_string(&fields, "hook_event_name", limits.max_event_type_len)?;
    // Kept whole as the payload, so nothing unusable needs keeping aside.
    let session_id = optional_text(
        &fields,
        "session_id",
        limits.max_id_len,
        &mut Ignored::default(),
    )?
    .filter(|text| not_blank(text))
    .unwrap_or_else(|| UNKNOWN.to_owned());
    let mut facts = payload_facts(&fields);
    let hook_event_type = agent_and_event_type(hook_event_type, None, Some(&fields), &mut facts);
    let payload: Box<RawValue> = serde_json::from_slice(json).map_err(json_error)?;
    let source_app = source
        .app_param
        .or(source.app_header)
        .filter(|app| !app.trim().is_empty())
        .or_else(|| app_from_cwd(facts.cwd.as_deref()))
        .unwrap_or_else(|| UNKNOWN.to_owned());
    if source_app.contains('\0') {
        return Err(InputError::field(
            "app",
            "app must not contain NUL characters",
        ));
    }
    if source_app.len() > limits.max_id_len {
        return Err(InputError::field(
            "app",
            format!(
                "app is {} bytes; the limit is {}",
                source_app.len(),
                limits.max_id_len
            ),
        ));
    }
    let event_id = match source.event_id_header {
        Some(id) if !id.is_empty() && id.len() <= limits.max_id_len => id,
        Some(_) => {
            return Err(InputError::field(
                "x-hookwatch-event-id",
                "the event id header is empty or too long",
            ));
        }
        None => new_event_id(),
    };
    let model_name = facts.model.clone();
    Ok(HookEvent::new(
        EventParts {
            event_id,
            timestamp_ms: now_ms,
            timestamp_clamped: false,
            source_app,
            session_id,
            sent_session_id: None,
            hook_event_type,
            facts,
            payload,
            chat: None,
            hitl_pending: false,
            summary: None,
            model_name,
            extra: None,
        },
        limits.max_id_len,
    )?)
}

/// One batch item that could not be accepted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RejectedItem {
    pub index: usize,
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Splits a batch body (a JSON array, or NDJSON) into parsed events and per-item rejections.
pub fn parse_batch(
    body: &[u8],
    limits: &Limits,
    now_ms: i64,
) -> Result<(Vec<HookEvent>, Vec<RejectedItem>), InputError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| InputError::body(format!("the batch is not valid UTF-8: {e}")))?;
    let items: Vec<&str> = if text.trim_start().starts_with('[') {
        let raw: Vec<&RawValue> = serde_json::from_str(text).map_err(json_error)?;
        raw.into_iter().map(RawValue::get).collect()
    } else {
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .collect()
    };
    if items.len() > limits.max_batch_items {
        return Err(InputError::too_large(format!(
            "the batch has {} items; the limit is {}",
            items.len(),
            limits.max_batch_items
        )));
    }
    let mut events = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match parse_envelope(item.as_bytes(), limits, now_ms) {
            Ok(event) => events.push(event),
            Err(e) => rejected.push(RejectedItem {
                index,
                error: e.message,
                field: e.field,
            }),
        }
    }
    Ok((events, rejected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chats_tail_is_its_newest_messages_that_fit() {
        let raw = |text: &str| RawValue::from_string(text.to_owned()).unwrap();
        let chat = raw(r#"[{"n":1},{"n":2},{"n":3}]"#);
        // The whole chat, as sent, when it fits.
        assert_eq!(chat_tail(&chat, 100).as_deref(), Some(chat.get()));
        // `[{"n":2},{"n":3}]` is 17 bytes.
        assert_eq!(
            chat_tail(&chat, 17).as_deref(),
            Some(r#"[{"n":2},{"n":3}]"#)
        );
        assert_eq!(chat_tail(&chat, 16).as_deref(), Some(r#"[{"n":3}]"#));
        assert_eq!(chat_tail(&chat, 8), None, "not even the last message fits");
        assert_eq!(chat_tail(&chat, 0), None);
        assert_eq!(chat_tail(&raw(r#"{"not":"an array"}"#), 5), None);
    }

    fn limits() -> Limits {
        Limits::default()
    }

    /// An arrival time after the timestamps the tests send (2025-11-24T16:00:00Z).
    const NOW: i64 = 1_764_000_000_000;

    #[test]
    fn a_timestamp_past_the_clock_skew_is_the_arrival_time() {
        let body = |at: i64| {
            format!(r#"{{"hook_event_type":"X","payload":{{}},"timestamp":{at}}}"#).into_bytes()
        };
        let skew = limits().max_clock_skew_ms;
        let within = parse_envelope(&body(NOW + skew), &limits(), NOW).unwrap();
        assert_eq!(
            (within.timestamp_ms, within.timestamp_clamped),
            (NOW + skew, false)
        );
        let beyond = parse_envelope(&body(NOW + skew + 1), &limits(), NOW).unwrap();
        assert_eq!((beyond.timestamp_ms, beyond.timestamp_clamped), (NOW, true));
    }

    #[test]
    fn envelope_keeps_unknown_fields_and_payload_bytes() {
        let json = br#"{"source_app":"a","session_id":"s","hook_event_type":"X",
            "payload":{"n":123456789012345678901234567890},"tool_name":"Bash","timestamp":1764000000000}"#;
        let event = parse_envelope(json, &limits(), NOW).unwrap();
        assert_eq!(
            event.payload.get(),
            r#"{"n":123456789012345678901234567890}"#
        );
        assert_eq!(
            event.extra.as_ref().unwrap().get(),
            r#"{"tool_name":"Bash"}"#
        );
        assert_eq!(event.timestamp_ms, 1_764_000_000_000);
    }

    #[test]
    fn only_the_event_type_is_required_and_odd_fields_are_kept_aside() {
        let missing = parse_envelope(
            br#"{"source_app":"a","session_id":"s","payload":{}}"#,
            &limits(),
            0,
        );
        assert_eq!(
            missing.unwrap_err().field.as_deref(),
            Some("hook_event_type")
        );
        let odd = parse_envelope(
            br#"{"hook_event_type":"X","payload":[],"timestamp":true,"model_name":""}"#,
            &limits(),
            7,
        )
        .unwrap();
        assert_eq!(odd.session_id, "unknown");
        assert_eq!(odd.source_app, "unknown");
        assert_eq!(odd.timestamp_ms, 7);
        assert_eq!(odd.payload.get(), "{}");
        assert_eq!(odd.model_name.as_deref(), Some(""));
        assert_eq!(
            odd.extra.as_ref().unwrap().get(),
            r#"{"hookwatch_ignored":{"payload":[],"timestamp":true}}"#
        );
    }

    #[test]
    fn geminis_and_codexs_hook_events_are_known_and_geminis_stored_under_claude_codes_names() {
        let envelope = |body: &str| parse_envelope(body.as_bytes(), &limits(), NOW).unwrap();
        let before = envelope(
            r#"{"session_id":"g","hook_event_type":"BeforeTool","coding_agent":"gemini-cli",
                "payload":{"session_id":"g","hook_event_name":"BeforeTool","tool_name":"read_file"}}"#,
        );
        assert_eq!(before.hook_event_type, "PreToolUse");
        assert_eq!(before.facts.coding_agent, Some(CodingAgent::Gemini));
        assert!(
            before
                .payload
                .get()
                .contains(r#""hook_event_name":"BeforeTool""#)
        );
        assert!(
            before.extra.as_ref().unwrap().get().contains("gemini-cli"),
            "the envelope's field is kept as sent"
        );
        let failed = envelope(
            r#"{"session_id":"g","hook_event_type":"AfterTool","payload":{"tool_name":"run_shell_command",
                "tool_response":{"llmContent":"","error":{"message":"exit status 1"}}}}"#,
        );
        assert_eq!(failed.hook_event_type, "PostToolUseFailure");
        assert_eq!(
            failed.facts.coding_agent,
            Some(CodingAgent::Gemini),
            "by its name"
        );
        assert_eq!(failed.facts.error.as_deref(), Some("exit status 1"));
        let succeeded = envelope(
            r#"{"session_id":"g","hook_event_type":"AfterTool","payload":{"tool_name":"ls",
                "tool_response":{"llmContent":"a b","error":null}}}"#,
        );
        assert_eq!(succeeded.hook_event_type, "PostToolUse");
        let start = envelope(
            r#"{"session_id":"g","hook_event_type":"SessionStart","coding_agent":"gemini",
                "payload":{"source":"startup"}}"#,
        );
        assert_eq!(start.hook_event_type, "SessionStart");
        assert_eq!(start.facts.coding_agent, Some(CodingAgent::Gemini));
        let codex = envelope(
            r#"{"session_id":"c","hook_event_type":"PreToolUse",
                "payload":{"turn_id":"t1","tool_name":"Bash","tool_use_id":"call_1"}}"#,
        );
        assert_eq!(codex.facts.coding_agent, Some(CodingAgent::Codex));
        let claude = envelope(
            r#"{"session_id":"s","hook_event_type":"BeforeTool","coding_agent":"claude-code","payload":{}}"#,
        );
        assert_eq!(
            claude.hook_event_type, "BeforeTool",
            "named Claude Code: as sent"
        );
        assert_eq!(claude.facts.coding_agent, None);
        let unknown = envelope(
            r#"{"session_id":"s","hook_event_type":"Stop","coding_agent":"cursor","payload":{}}"#,
        );
        assert_eq!(unknown.facts.coding_agent, None);
        let raw = parse_hook_body(
            br#"{"session_id":"g","hook_event_name":"BeforeAgent","prompt":"hi"}"#,
            HookSource::default(),
            &limits(),
            NOW,
        )
        .unwrap();
        assert_eq!(raw.hook_event_type, "UserPromptSubmit");
        assert_eq!(raw.submitted_prompt().map(|p| p.head.as_str()), Some("hi"));
    }

    #[test]
    fn the_session_is_claude_codes_own_id() {
        let fork = parse_envelope(
            br#"{"source_app":"a","session_id":"s1_42_1795168800","hook_event_type":"X",
                 "payload":{"metadata":{"original_session_id":"s1"}}}"#,
            &limits(),
            0,
        )
        .unwrap();
        assert_eq!(fork.session_id, "s1");
        assert_eq!(fork.sent_session_id.as_deref(), Some("s1_42_1795168800"));
        let payload_first = parse_envelope(
            br#"{"session_id":"envelope","hook_event_type":"X",
                 "payload":{"session_id":"claude","metadata":{"original_session_id":"meta"}}}"#,
            &limits(),
            0,
        )
        .unwrap();
        assert_eq!(payload_first.session_id, "claude");
        let same = parse_envelope(
            br#"{"session_id":"s","hook_event_type":"X","payload":{"session_id":"s"}}"#,
            &limits(),
            0,
        )
        .unwrap();
        assert_eq!(same.sent_session_id, None);
    }

    #[test]
    fn what_a_value_tree_could_not_hold_is_refused() {
        let nested = |depth: usize| {
            format!(
                r#"{{"source_app":"a","session_id":"s","hook_event_type":"X","payload":{{"d":{}1{},"s":"[[[[\"{{"}}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            )
        };
        assert!(parse_envelope(nested(120).as_bytes(), &limits(), 0).is_ok());
        let error = parse_envelope(nested(200).as_bytes(), &limits(), 0).unwrap_err();
        assert!(error.message.contains("recursion limit"), "{error:?}");
        let huge_number =
            r#"{"source_app":"a","session_id":"s","hook_event_type":"X","payload":{"n":1e999}}"#;
        let error = parse_envelope(huge_number.as_bytes(), &limits(), 0).unwrap_err();
        assert!(error.message.contains("out of range"), "{error:?}");
    }

    #[test]
    fn iso_timestamps_are_accepted() {
        let event = parse_envelope(
            br#"{"source_app":"a","session_id":"s","hook_event_type":"X","payload":{},"timestamp":"2025-11-24T16:00:00Z"}"#,
            &limits(),
            NOW,
        )
        .unwrap();
        assert_eq!(event.timestamp_ms, 1_764_000_000_000);
    }

    #[test]
    fn hook_body_app_falls_back_to_cwd() {
        let body = br#"{"session_id":"s","hook_event_name":"Stop","cwd":"/home/me/proj/"}"#;
        let event = parse_hook_body(body, HookSource::default(), &limits(), 5).unwrap();
        assert_eq!(event.source_app, "proj");
        assert_eq!(event.hook_event_type, "Stop");
        assert_eq!(event.payload.get(), std::str::from_utf8(body).unwrap());
    }

    #[test]
    fn batches_accept_ndjson_and_report_bad_lines() {
        let body = b"{\"source_app\":\"a\",\"session_id\":\"s\",\"hook_event_type\":\"X\",\"payload\":{}}\nnot json\n";
        let (events, rejected) = parse_batch(body, &limits(), 0).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].index, 1);
    }
}
