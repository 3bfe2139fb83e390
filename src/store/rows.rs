//! What both stores' rows mean, apart from how each database hands them over: the column
//! lists their queries select (the same in SQLite and PostgreSQL), and the mapping from a row
//! to a domain value, written once over [`StoredRow`], which each store implements for its
//! database's row type.

use serde_json::value::RawValue;

use crate::domain::event::TokenUsage;
use crate::domain::lifecycle::{Agent, AgentStatus, MAIN_AGENT_TYPE, ToolCall, ToolCallStatus};
use crate::domain::pricing::nanos_to_usd;
use crate::domain::sessions::{AgentRecord, SeenBy, SessionRecord, SessionRow, TokenCounts};
use crate::domain::time::TimeRange;
use crate::domain::views::ExecutionTotals;
use crate::store::{EventCursor, EventPage, StoredChat, StoredEvent};

/// One row of a query's result, as either database hands it over. Integers are 64-bit and
/// text is UTF-8 in both stores' schemas.
pub trait StoredRow {
    type Error;
    fn int(&self, column: usize) -> Result<i64, Self::Error>;
    fn opt_int(&self, column: usize) -> Result<Option<i64>, Self::Error>;
    fn text(&self, column: usize) -> Result<String, Self::Error>;
    fn opt_text(&self, column: usize) -> Result<Option<String>, Self::Error>;
    fn opt_bytes(&self, column: usize) -> Result<Option<Vec<u8>>, Self::Error>;
}

/// Implements [`StoredRow`] for a database's row type whose method `$get` reads any column as
/// any type the database can convert to (rusqlite's `get`, postgres' `try_get`).
macro_rules! impl_stored_row {
    ($row:ty, $error:ty, $get:ident) => {
        impl $crate::store::rows::StoredRow for $row {
            type Error = $error;

            fn int(&self, column: usize) -> Result<i64, $error> {
                self.$get(column)
            }

            fn opt_int(&self, column: usize) -> Result<Option<i64>, $error> {
                self.$get(column)
            }

            fn text(&self, column: usize) -> Result<String, $error> {
                self.$get(column)
            }

            fn opt_text(&self, column: usize) -> Result<Option<String>, $error> {
                self.$get(column)
            }

            fn opt_bytes(&self, column: usize) -> Result<Option<Vec<u8>>, $error> {
                self.$get(column)
            }
        }
    };
}
pub(crate) use impl_stored_row;

/// An event from the columns of [`EVENT_COLUMNS`].
pub(crate) fn event_from_row<R: StoredRow>(row: &R) -> Result<StoredEvent, R::Error> {
    Ok(StoredEvent {
        id: row.int(0)?,
        event_id: row.text(1)?,
        timestamp: row.int(2)?,
        source_app: row.text(3)?,
        session_id: row.text(4)?,
        hook_event_type: row.text(5)?,
        payload: raw_json(row.text(6)?),
        chat: row.opt_text(7)?.map(raw_json),
        summary: row.opt_text(8)?,
        model_name: row.opt_text(9)?,
        extra: row.opt_text(10)?.map(raw_json),
        tool_name: row.opt_text(11)?,
        sent_session_id: row.opt_text(12)?,
        chat_bytes: row.opt_int(13)?,
        hitl_status: row.opt_text(14)?.map(raw_json),
    })
}

/// `agent_type` and the seven sums of an execution rollup, from columns `first..first + 8`.
pub(crate) fn execution_totals_from_row<R: StoredRow>(
    row: &R,
    first: usize,
) -> Result<ExecutionTotals, R::Error> {
    Ok(ExecutionTotals {
        agent_type: row.text(first)?,
        executions: row.int(first + 1)?,
        successes: row.int(first + 2)?,
        failures: row.int(first + 3)?,
        duration_sum_ms: row.int(first + 4)?,
        duration_count: row.int(first + 5)?,
        tokens: row.int(first + 6)?,
        cost_nanos: row.int(first + 7)?,
    })
}

/// A subagent as the rules see it, from the columns of [`AGENT_COLUMNS`].
pub(crate) fn agent_from_row<R: StoredRow>(row: &R) -> Result<Agent, R::Error> {
    Ok(Agent {
        key: row.text(0)?,
        session_id: row.text(1)?,
        source_app: row.text(2)?,
        agent_type: row.text(3)?,
        name: row.opt_text(4)?,
        description: row.opt_text(5)?,
        status: AgentStatus::parse(&row.text(6)?).unwrap_or(AgentStatus::Running),
        started_at: row.opt_int(7)?,
        ended_at: row.opt_int(8)?,
        last_seen: row.int(9)?,
        subagent_start_at: row.opt_int(10)?,
        subagent_stop_at: row.opt_int(11)?,
        reported_duration_ms: row.opt_int(12)?,
        tool_duration_ms: row.opt_int(13)?,
        usage: TokenUsage {
            input: row.int(14)?,
            output: row.int(15)?,
            cache_creation: row.int(16)?,
            cache_read: row.int(17)?,
        },
        reported_total_tokens: row.opt_int(18)?,
        model: row.opt_text(19)?,
        cost_nanos: row.int(20)?,
        error: row.opt_text(21)?,
        tool_use_id: row.opt_text(22)?,
    })
}

/// A tool call as the rules see it, from the columns of [`TOOL_CALL_COLUMNS`].
pub(crate) fn tool_call_from_row<R: StoredRow>(row: &R) -> Result<ToolCall, R::Error> {
    Ok(ToolCall {
        row_id: row.opt_int(0)?,
        tool_use_id: row.opt_text(1)?,
        session_id: row.text(2)?,
        source_app: row.text(3)?,
        agent_key: row.text(4)?,
        agent_type: row.text(5)?,
        tool_name: row.text(6)?,
        counted_at: row.int(7)?,
        started_at: row.opt_int(8)?,
        ended_at: row.opt_int(9)?,
        duration_ms: row.opt_int(10)?,
        status: ToolCallStatus::parse(&row.text(11)?),
        error: row.opt_text(12)?,
        spawn_type: row.opt_text(13)?,
        spawn_description: row.opt_text(14)?,
        spawned_agent: row.opt_text(15)?,
    })
}

/// A subagent as the API lists it, from the columns of [`SUBAGENT_RECORD_COLUMNS`].
pub(crate) fn subagent_record<R: StoredRow>(
    row: &R,
    idle_cutoff_ms: i64,
) -> Result<AgentRecord, R::Error> {
    let last_seen = row.int(9)?;
    Ok(AgentRecord {
        id: row.text(0)?,
        kind: "subagent",
        agent_type: row.text(1)?,
        name: row.opt_text(2)?,
        description: row.opt_text(3)?,
        session_id: row.text(4)?,
        source_app: row.text(5)?,
        status: shown_status(
            AgentStatus::parse(&row.text(6)?).unwrap_or(AgentStatus::Running),
            last_seen,
            idle_cutoff_ms,
        ),
        started_at: row.opt_int(7)?,
        ended_at: row.opt_int(8)?,
        last_seen,
        duration_ms: row.opt_int(10)?,
        tokens: TokenCounts {
            input: row.int(11)?,
            output: row.int(12)?,
            cache_creation: row.int(13)?,
            cache_read: row.int(14)?,
            total: row.int(15)?,
        },
        estimated_cost: nanos_to_usd(row.int(16)?),
        model: row.opt_text(17)?,
        error: row.opt_text(18)?,
        tool_use_id: row.opt_text(19)?,
        current_tool: None,
        telemetry: None,
        coding_agent: row.opt_text(20)?,
    })
}

/// A session from its first twelve columns (`session_id` … the subagent count, as both stores
/// select them), with its main agent's usage sums read by the store.
pub(crate) fn session_record<R: StoredRow>(
    row: &R,
    idle_cutoff_ms: i64,
    tokens: TokenCounts,
    cost_nanos: i64,
) -> Result<SessionRecord, R::Error> {
    let last_seen = row.int(3)?;
    let ended_at = row.opt_int(4)?;
    let stored = if ended_at.is_some() {
        AgentStatus::Completed
    } else {
        AgentStatus::Running
    };
    Ok(SessionRecord {
        session_id: row.text(0)?,
        row: session_row(row)?,
        status: shown_status(stored, last_seen, idle_cutoff_ms),
        subagent_count: row.int(11)?,
        tokens,
        estimated_cost: nanos_to_usd(cost_nanos),
        subagents_estimated_cost: 0.0,
        subagents_estimated_tokens: 0,
        telemetry: None,
        coding_agent: None,
        seen_by: SeenBy::Hooks,
    })
}

/// A session's stored row from its columns 1 to 10 (after `session_id`, as both stores select
/// them: `source_app` … the tool call count).
pub(crate) fn session_row<R: StoredRow>(row: &R) -> Result<SessionRow, R::Error> {
    Ok(SessionRow {
        source_app: row.text(1)?,
        started_at: row.int(2)?,
        last_seen: row.int(3)?,
        ended_at: row.opt_int(4)?,
        end_reason: row.opt_text(5)?,
        cwd: row.opt_text(6)?,
        model: row.opt_text(7)?,
        events: row.int(8)?,
        prompts: row.int(9)?,
        tool_calls: row.int(10)?,
    })
}

pub(crate) const EVENT_COLUMNS: &str = "id, event_id, ts, source_app, session_id, hook_event_type, \
    payload, chat, summary, model_name, extra, tool_name, sent_session_id, chat_bytes, hitl_status";

/// A human-in-the-loop request's status while it waits for its answer, as stored.
pub(crate) const HITL_PENDING: &str = r#"{"status":"pending"}"#;

/// Replaces a pending request's status (`?1` the row, `?2` the answer's status):
/// one row changed means it was answered now, none that it was not pending.
pub(crate) const ANSWER_SQL: &str = "UPDATE events SET hitl_status = ?2 \
    WHERE id = ?1 AND hitl_status = '{\"status\":\"pending\"}'";

/// Pending requests, newest first (`?1` the limit): the partial index `events_hitl_pending`.
pub(crate) const PENDING_SQL: &str =
    "WHERE hitl_status = '{\"status\":\"pending\"}' ORDER BY id DESC LIMIT ?1";

pub(crate) const SUBAGENT_RECORD_COLUMNS: &str = "agent_key, agent_type, name, description, session_id, \
    source_app, status, started_at, ended_at, last_seen, duration_ms, input_tokens, \
    output_tokens, cache_creation_tokens, cache_read_tokens, total_tokens, cost_nanos, model, \
    error, tool_use_id, \
    (SELECT s.coding_agent FROM sessions s WHERE s.session_id = agents.session_id)";

pub(crate) const AGENT_COLUMNS: &str = "agent_key, session_id, source_app, agent_type, name, description, \
    status, started_at, ended_at, last_seen, subagent_start_at, subagent_stop_at, \
    reported_duration_ms, tool_duration_ms, input_tokens, output_tokens, cache_creation_tokens, \
    cache_read_tokens, reported_total_tokens, model, cost_nanos, error, tool_use_id";

pub(crate) const TOOL_CALL_COLUMNS: &str = "id, tool_use_id, session_id, source_app, agent_key, agent_type, \
    tool_name, counted_at, started_at, ended_at, duration_ms, status, error, spawn_type, \
    spawn_description, spawned_agent";

/// [`TOOL_CALL_COLUMNS`] of the table named `alias` in a join.
pub(crate) fn tool_call_columns_of(alias: &str) -> String {
    TOOL_CALL_COLUMNS
        .split(", ")
        .map(|column| format!("{alias}.{column}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A subagent tool call not linked to any run yet.
pub(crate) const UNLINKED_SPAWN: &str = "spawned_agent IS NULL";

/// A subagent tool call linked to a stand-in run (`lifecycle::STAND_IN_PREFIXES`).
pub(crate) const STAND_IN_SPAWN: &str =
    "(spawned_agent LIKE 'tool:%' OR spawned_agent LIKE 'event:%')";

/// The oldest subagent tool call of a session (`?1`) and type (`?2`) whose link is `linked`
/// ([`UNLINKED_SPAWN`] or [`STAND_IN_SPAWN`]) that may have launched a run started at `?3`
/// (made no later, ended no earlier), by the index `tool_calls_spawns`. A call whose
/// PostToolUse came first has no start yet and counts as the oldest in both databases.
pub(crate) fn oldest_spawn_sql(linked: &str) -> String {
    format!(
        "SELECT {TOOL_CALL_COLUMNS} FROM tool_calls
         WHERE session_id = ?1 AND spawn_type = ?2 AND spawn_type IS NOT NULL AND {linked}
           AND (started_at IS NULL OR started_at <= ?3)
           AND (ended_at IS NULL OR ended_at >= ?3)
         ORDER BY started_at NULLS FIRST, id LIMIT 1"
    )
}

/// Sums of tokens, cost and durations saturate at `i64::MAX` instead of wrapping or failing
/// (SQLite's `sum()` raises "integer overflow", PostgreSQL's `bigint` "out of range"), so no
/// stored row can ever make a view fail. Counts per event are bounded at the edge
/// ([`crate::domain::event::MAX_TOKENS_PER_EVENT`]); this is the second line.
pub(crate) const SATURATED: i64 = i64::MAX;

/// An event's chat: its compressed chat and size, and its inline chat (older rows), in that
/// order; both stores select the same columns.
pub(crate) const CHAT_QUERY: &str = "SELECT c.compressed, e.chat_bytes, e.chat FROM events e \
    LEFT JOIN event_chats c ON c.event_id = e.id WHERE e.id = ";

/// The chat [`CHAT_QUERY`] found, if any.
pub(crate) fn stored_chat(
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
pub(crate) const MAX_DETAIL_TOOL_CALLS: i64 = 1000;

/// Stored JSON text as a raw value (`null` if the text is somehow not JSON).
pub(crate) fn raw_json(text: String) -> Box<RawValue> {
    RawValue::from_string(text).unwrap_or_else(|_| RawValue::from_string("null".into()).unwrap())
}

/// `$1..$2` (SQLite: `?1..?2`) the range; `?3..?4` whole hours; `?5..?6` and `?7..?8` whole minutes before and
/// after them; `?9..?10` all whole minutes (so `?1..?9` and `?10..?2` are the partial edges).
/// Each part is its own index range: a read never scans the range's detail rows.
pub(crate) fn range_params(range: TimeRange) -> [i64; 10] {
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
pub(crate) fn shown_status(
    stored: AgentStatus,
    last_seen: i64,
    idle_cutoff_ms: i64,
) -> AgentStatus {
    if stored == AgentStatus::Running && last_seen < idle_cutoff_ms {
        AgentStatus::TimedOut
    } else {
        stored
    }
}

/// A session's main agent, as an agent record.
pub(crate) fn main_agent_record(session: &SessionRecord) -> AgentRecord {
    AgentRecord {
        id: session.session_id.clone(),
        kind: "main",
        agent_type: MAIN_AGENT_TYPE.to_owned(),
        name: None,
        description: None,
        session_id: session.session_id.clone(),
        source_app: session.row.source_app.clone(),
        status: session.status,
        started_at: Some(session.row.started_at),
        ended_at: session.row.ended_at,
        last_seen: session.row.last_seen,
        duration_ms: session.row.ended_at.map(|end| end - session.row.started_at),
        tokens: session.tokens.clone(),
        estimated_cost: session.estimated_cost,
        model: session.row.model.clone(),
        error: None,
        tool_use_id: None,
        current_tool: None,
        telemetry: None,
        coding_agent: session.coding_agent.clone(),
    }
}

/// A page from up to `limit + 1` events read: the extra one only says there is a next page.
pub(crate) fn page(mut events: Vec<StoredEvent>, limit: usize) -> EventPage {
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
