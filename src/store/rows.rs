//! What both stores' rows mean, apart from how each database hands them over: the column
//! lists their queries select (the same in SQLite and PostgreSQL), and the conversions that do
//! not depend on the database.

use serde_json::value::RawValue;

use crate::domain::lifecycle::{AgentStatus, MAIN_AGENT_TYPE};
use crate::domain::time::TimeRange;
use crate::store::{AgentRecord, EventCursor, EventPage, SessionRecord, StoredChat, StoredEvent};

pub const EVENT_COLUMNS: &str = "id, event_id, ts, source_app, session_id, hook_event_type, \
    payload, chat, summary, model_name, extra, tool_name, sent_session_id, chat_bytes, hitl_status";

/// A human-in-the-loop request's status while it waits for its answer, as stored.
pub const HITL_PENDING: &str = r#"{"status":"pending"}"#;

/// Replaces a pending request's status (`?1`/`$1` the row, `?2`/`$2` the answer's status):
/// one row changed means it was answered now, none that it was not pending.
pub const ANSWER_SQL: &str = "UPDATE events SET hitl_status = {2} \
    WHERE id = {1} AND hitl_status = '{\"status\":\"pending\"}'";

/// Pending requests, newest first (`{1}` the limit): the partial index `events_hitl_pending`.
pub const PENDING_SQL: &str =
    "WHERE hitl_status = '{\"status\":\"pending\"}' ORDER BY id DESC LIMIT {1}";

/// `sql` with `{n}` as the dialect's placeholder `n` (`?n` or `$n`).
pub fn placeholders(sql: &str, mark: char) -> String {
    sql.replace("{1}", &format!("{mark}1"))
        .replace("{2}", &format!("{mark}2"))
}

pub const SUBAGENT_RECORD_COLUMNS: &str = "agent_key, agent_type, name, description, session_id, \
    source_app, status, started_at, ended_at, last_seen, duration_ms, input_tokens, \
    output_tokens, cache_creation_tokens, cache_read_tokens, total_tokens, cost_nanos, model, \
    error, tool_use_id";

pub const AGENT_COLUMNS: &str = "agent_key, session_id, source_app, agent_type, name, description, \
    status, started_at, ended_at, last_seen, subagent_start_at, subagent_stop_at, \
    reported_duration_ms, tool_duration_ms, input_tokens, output_tokens, cache_creation_tokens, \
    cache_read_tokens, reported_total_tokens, model, cost_nanos, error, tool_use_id";

pub const TOOL_CALL_COLUMNS: &str = "id, tool_use_id, session_id, source_app, agent_key, agent_type, \
    tool_name, counted_at, started_at, ended_at, duration_ms, status, error, spawn_type, \
    spawn_description, spawned_agent";

/// Sums of tokens, cost and durations saturate at `i64::MAX` instead of wrapping or failing
/// (SQLite's `sum()` raises "integer overflow", PostgreSQL's `bigint` "out of range"), so no
/// stored row can ever make a view fail. Counts per event are bounded at the edge
/// ([`crate::domain::event::MAX_TOKENS_PER_EVENT`]); this is the second line.
pub const SATURATED: i64 = i64::MAX;

/// An event's chat: its compressed chat and size, and its inline chat (older rows), in that
/// order; both stores select the same columns.
pub const CHAT_QUERY: &str = "SELECT c.compressed, e.chat_bytes, e.chat FROM events e \
    LEFT JOIN event_chats c ON c.event_id = e.id WHERE e.id = ";

/// The chat [`CHAT_QUERY`] found, if any.
pub fn stored_chat(
    compressed: Option<Vec<u8>>,
    json_bytes: Option<i64>,
    inline: Option<String>,
) -> Option<StoredChat> {
    match (compressed, inline) {
        (Some(compressed), _) => Some(StoredChat::Compressed {
            compressed,
            json_bytes: json_bytes.unwrap_or(0),
        }),
        (None, Some(inline)) => Some(StoredChat::Inline(inline)),
        (None, None) => None,
    }
}

/// The most tool calls an agent's detail lists.
pub const MAX_DETAIL_TOOL_CALLS: i64 = 1000;

/// Stored JSON text as a raw value (`null` if the text is somehow not JSON).
pub fn raw_json(text: String) -> Box<RawValue> {
    RawValue::from_string(text).unwrap_or_else(|_| RawValue::from_string("null".into()).unwrap())
}

/// `$1..$2` (SQLite: `?1..?2`) the range; `?3..?4` whole hours; `?5..?6` and `?7..?8` whole minutes before and
/// after them; `?9..?10` all whole minutes (so `?1..?9` and `?10..?2` are the partial edges).
/// Each part is its own index range: a read never scans the range's detail rows.
pub fn range_params(range: TimeRange) -> [i64; 10] {
    let s = range.spans();
    [
        range.start_ms,
        range.end_ms,
        s.hours.0,
        s.hours.1,
        s.minutes_before.0,
        s.minutes_before.1,
        s.minutes_after.0,
        s.minutes_after.1,
        s.whole_minutes.0,
        s.whole_minutes.1,
    ]
}

/// A status as shown: a running agent not seen since the cut-off has timed out.
pub fn shown_status(stored: AgentStatus, last_seen: i64, idle_cutoff_ms: i64) -> AgentStatus {
    if stored == AgentStatus::Running && last_seen < idle_cutoff_ms {
        AgentStatus::TimedOut
    } else {
        stored
    }
}

/// A session's main agent, as an agent record.
pub fn main_agent_record(session: &SessionRecord) -> AgentRecord {
    AgentRecord {
        id: session.session_id.clone(),
        kind: "main",
        agent_type: MAIN_AGENT_TYPE.to_owned(),
        name: None,
        description: None,
        session_id: session.session_id.clone(),
        source_app: session.source_app.clone(),
        status: session.status,
        started_at: Some(session.started_at),
        ended_at: session.ended_at,
        last_seen: session.last_seen,
        duration_ms: session.ended_at.map(|end| end - session.started_at),
        tokens: session.tokens.clone(),
        estimated_cost: session.estimated_cost,
        model: session.model.clone(),
        error: None,
        tool_use_id: None,
        current_tool: None,
    }
}

/// A page from up to `limit + 1` events read: the extra one only says there is a next page.
pub fn page(mut events: Vec<StoredEvent>, limit: usize) -> EventPage {
    let next_cursor = if events.len() > limit {
        events.truncate(limit);
        events.last().map(|e| {
            EventCursor {
                timestamp: e.timestamp,
                id: e.id,
            }
            .encode()
        })
    } else {
        None
    };
    EventPage {
        events,
        next_cursor,
    }
}
