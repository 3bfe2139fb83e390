//! Sessions as Claude Code's telemetry shows them: a session exists when either source has
//! seen it. Its settled sums (`telemetry_sessions`, the one truth `store::telemetry` keeps as
//! it writes) give its measured cost beside the hooks' row; a session no hook has named is
//! made from its telemetry events (their first and last times, its prompts, tool results and
//! model) and those sums. Its prompts and tool results also make its trace's spans, joined to
//! the hooks' by `domain::trace::join_telemetry`.

use std::collections::HashSet;

use super::rows::{StoredRow, shown_status};
use super::sql::{Sql, Value};
use crate::domain::lifecycle::{AgentStatus, MAIN_AGENT_TYPE, ToolCall, ToolCallStatus};
use crate::domain::pricing::nanos_to_usd;
use crate::domain::sessions::{
    CostSource, SeenBy, SessionRecord, SessionRow, TELEMETRY_SOURCE_APP, TelemetryUsage,
    TokenCounts,
};
use crate::domain::time::MINUTE_MS;
use crate::domain::trace::{ApiCall, EventMark, PromptMark, SpanUsage};

/// A session's settled telemetry sums, as selected beside other columns (`t` is its
/// `telemetry_sessions` row, joined on the session's id; all NULL when it has none).
pub(crate) const MEASURED_COLUMNS: &str = "t.api_requests, t.usage_points, t.cost_nanos, \
    t.input_tokens, t.output_tokens, t.cache_read_tokens, t.cache_creation_tokens, t.requests, \
    t.errors, t.agent";

/// The agent whose telemetry a session is where it is not Claude Code, from the
/// [`MEASURED_COLUMNS`] starting at column `at`.
pub(crate) fn telemetry_agent_from<R: StoredRow>(
    row: &R,
    at: usize,
) -> Result<Option<String>, R::Error> {
    row.opt_text(at + 9)
}

/// What telemetry measured, from the [`MEASURED_COLUMNS`] starting at column `at`: `None`
/// when it measured no cost (no row, or API errors alone).
pub(crate) fn measured_from<R: StoredRow>(
    row: &R,
    at: usize,
) -> Result<Option<TelemetryUsage>, R::Error> {
    let requests_seen = row.opt_int(at)?.unwrap_or(0);
    let points = row.opt_int(at + 1)?.unwrap_or(0);
    let source = if requests_seen > 0 {
        CostSource::TelemetryEvents
    } else if points > 0 {
        CostSource::TelemetryMetrics
    } else {
        return Ok(None);
    };
    let int = |n: usize| -> Result<i64, R::Error> { Ok(row.opt_int(at + n)?.unwrap_or(0)) };
    let (input, output, cache_read, cache_creation) = (int(3)?, int(4)?, int(5)?, int(6)?);
    Ok(Some(TelemetryUsage {
        source,
        cost_usd: nanos_to_usd(int(2)?),
        tokens: TokenCounts {
            input,
            output,
            cache_read,
            cache_creation,
            total: input
                .saturating_add(output)
                .saturating_add(cache_read)
                .saturating_add(cache_creation),
        },
        requests: int(7)?,
        errors: int(8)?,
    }))
}

/// A session no hook has named, from its telemetry; `None` when telemetry has not seen it
/// either. It is running while seen within the idle time-out, else timed out (telemetry
/// sends no end of a session).
pub(crate) fn telemetry_only_session<S: Sql>(
    sql: &mut S,
    id: &str,
    idle_cutoff_ms: i64,
) -> Result<Option<SessionRecord>, S::Error> {
    Ok(sessions_from_telemetry(sql, &[id], idle_cutoff_ms)?
        .into_iter()
        .next())
}

/// Sessions no hook has named, from their telemetry, in the order of `ids` (those telemetry
/// has not seen either are left out): two queries however many there are, one summing each
/// session's events through their session index, one reading each one's settled sums and
/// newest model.
fn sessions_from_telemetry<S: Sql>(
    sql: &mut S,
    ids: &[&str],
    idle_cutoff_ms: i64,
) -> Result<Vec<SessionRecord>, S::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let dialect = sql.dialect();
    // The ids as rows (`text_list_rows`' own spelling), and as the JSON array `in_text_list`
    // takes on either database.
    let (list, listed_rows) = dialect.text_list_rows("?1", ids);
    let in_list = dialect.in_text_list("session_id", "?1");
    let listed = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
    let events: std::collections::HashMap<String, (i64, i64, i64, i64, i64)> = sql
        .query(
            &format!(
                "SELECT session_id, min(at_ms), max(at_ms), count(*),
                        count(CASE WHEN kind = 'user_prompt' THEN 1 END),
                        count(CASE WHEN kind = 'tool_result' THEN 1 END)
                 FROM telemetry_events WHERE {in_list} GROUP BY session_id"
            ),
            &[listed.as_str().into()],
            |row| {
                Ok((
                    row.text(0)?,
                    (
                        row.int(1)?,
                        row.int(2)?,
                        row.int(3)?,
                        row.int(4)?,
                        row.int(5)?,
                    ),
                ))
            },
        )?
        .into_iter()
        .collect();
    let sums = sql.query(
        &format!(
            "SELECT l.value, t.first_bucket, t.last_bucket,
                    (SELECT e.model FROM telemetry_events e
                     WHERE e.session_id = l.value AND e.kind = 'api_request'
                       AND e.model IS NOT NULL
                     ORDER BY e.at_ms DESC LIMIT 1),
                    {MEASURED_COLUMNS}
             FROM {list} LEFT JOIN telemetry_sessions t ON t.session_id = l.value"
        ),
        &[listed_rows.as_str().into()],
        |row| {
            Ok((
                row.text(0)?,
                row.opt_int(1)?,
                row.opt_int(2)?,
                row.opt_text(3)?,
                measured_from(row, 4)?,
                telemetry_agent_from(row, 4)?,
            ))
        },
    )?;
    let mut by_id: std::collections::HashMap<String, SessionRecord> =
        std::collections::HashMap::new();
    for (id, first_bucket, last_bucket, model, measured, agent) in sums {
        let seen = events.get(&id).copied();
        let (Some(started_at), Some(last_seen)) = (
            seen.map(|e| e.0).or(first_bucket),
            seen.map(|e| e.1).into_iter().chain(last_bucket).max(),
        ) else {
            continue;
        };
        let (_, _, count, prompts, tool_results) = seen.unwrap_or_default();
        by_id.insert(
            id.clone(),
            SessionRecord {
                session_id: id,
                row: SessionRow {
                    source_app: agent
                        .clone()
                        .unwrap_or_else(|| TELEMETRY_SOURCE_APP.to_owned()),
                    started_at,
                    last_seen,
                    ended_at: None,
                    end_reason: None,
                    cwd: None,
                    model,
                    events: count,
                    prompts,
                    tool_calls: tool_results,
                },
                status: shown_status(AgentStatus::Running, last_seen, idle_cutoff_ms),
                subagent_count: 0,
                tokens: TokenCounts::default(),
                estimated_cost: 0.0,
                subagents_estimated_cost: 0.0,
                subagents_estimated_tokens: 0,
                telemetry: measured,
                coding_agent: agent,
                seen_by: SeenBy::Telemetry,
            },
        );
    }
    Ok(ids.iter().filter_map(|id| by_id.remove(*id)).collect())
}

/// The sessions no hook has named that telemetry measured, most recently seen first, at most
/// `limit` (by the minute last seen, `telemetry_sessions_seen`), of those last seen in a
/// minute at or after `seen_since_minute` when given, and listed under `app` when given (the
/// agent's: [`TELEMETRY_SOURCE_APP`] for Claude Code's).
pub(crate) fn telemetry_only_sessions<S: Sql>(
    sql: &mut S,
    idle_cutoff_ms: i64,
    limit: usize,
    seen_since_minute: Option<i64>,
    app: Option<&str>,
) -> Result<Vec<SessionRecord>, S::Error> {
    let ids = sql.query(
        &format!(
            "SELECT t.session_id FROM telemetry_sessions t
             WHERE t.last_bucket IS NOT NULL AND t.last_bucket >= ?2
               AND (CAST(?3 AS TEXT) IS NULL
                    OR coalesce(t.agent, '{TELEMETRY_SOURCE_APP}') = CAST(?3 AS TEXT))
               AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.session_id = t.session_id)
             ORDER BY t.last_bucket DESC LIMIT ?1"
        ),
        &[
            limit.into(),
            seen_since_minute.unwrap_or(i64::MIN).into(),
            Value::OptText(app),
        ],
        |row| row.text(0),
    )?;
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    sessions_from_telemetry(sql, &ids, idle_cutoff_ms)
}

/// Sessions of both sources in the list's order: most recently seen minute first, then most
/// recently seen, at most `limit`.
pub(crate) fn merge_by_last_seen(
    mut sessions: Vec<SessionRecord>,
    more: Vec<SessionRecord>,
    limit: usize,
) -> Vec<SessionRecord> {
    sessions.extend(more);
    sessions.sort_by(|a, b| {
        let minute = |s: &SessionRecord| s.row.last_seen.div_euclid(MINUTE_MS);
        minute(b)
            .cmp(&minute(a))
            .then_with(|| b.row.last_seen.cmp(&a.row.last_seen))
            .then_with(|| a.session_id.cmp(&b.session_id))
    });
    sessions.truncate(limit);
    sessions
}

/// A session's prompts as telemetry saw them (`user_prompt`), newest first, at most `limit`:
/// span ids made from each record's key, the text only where Claude Code logs prompts.
pub(crate) fn telemetry_prompts<S: Sql>(
    sql: &mut S,
    id: &str,
    limit: i64,
) -> Result<Vec<PromptMark>, S::Error> {
    sql.query(
        "SELECT dedup_key, at_ms, prompt_id, prompt, prompt_length, kind, duration_ms
         FROM telemetry_events
         WHERE session_id = ?1 AND kind IN ('user_prompt', 'span.interaction')
         ORDER BY at_ms DESC, id DESC LIMIT ?2",
        &[id.into(), limit.into()],
        |row| {
            let at_ms = row.int(1)?;
            let traced = row.text(5)? != "user_prompt";
            Ok(PromptMark {
                event_id: format!("otel-{}", short_hash(&row.text(0)?)),
                at_ms,
                prompt_id: row.opt_text(2)?.filter(|id| !id.is_empty()),
                text: row.opt_text(3)?,
                chars: row.opt_int(4)?.and_then(|n| usize::try_from(n).ok()),
                traced_until: traced.then(|| at_ms + row.opt_int(6).ok().flatten().unwrap_or(0)),
            })
        },
    )
}

/// A session's tool calls as telemetry saw them, newest first, at most `limit`: its
/// `tool_result` events (sent when a call ends: from the result's time less its duration to
/// the result's time) and its traced `claude_code.tool` and `tool.execution` spans (from their
/// start, for their duration), each made by the main agent (telemetry names no run); one call
/// per `tool_use_id` once `domain::trace::merge_told_calls` has joined them.
pub(crate) fn telemetry_tool_calls<S: Sql>(
    sql: &mut S,
    id: &str,
    limit: i64,
) -> Result<Vec<ToolCall>, S::Error> {
    sql.query(
        "SELECT at_ms, tool_use_id, coalesce(tool_name, ''), success, duration_ms, error, kind
         FROM telemetry_events
         WHERE session_id = ?1 AND kind IN ('tool_result', 'span.tool', 'span.tool.execution')
         ORDER BY at_ms DESC, id DESC LIMIT ?2",
        &[id.into(), limit.into()],
        |row| {
            let duration_ms = row.opt_int(4)?.filter(|d| *d >= 0);
            let (started_at, ended_at) = if row.text(6)? == "tool_result" {
                let ended_at = row.int(0)?;
                (
                    duration_ms.map_or(ended_at, |d| ended_at.saturating_sub(d)),
                    ended_at,
                )
            } else {
                let started_at = row.int(0)?;
                (
                    started_at,
                    started_at.saturating_add(duration_ms.unwrap_or(0)),
                )
            };
            let failed = row.opt_int(3)? == Some(0);
            Ok(ToolCall {
                row_id: None,
                tool_use_id: row.opt_text(1)?,
                session_id: id.to_owned(),
                source_app: TELEMETRY_SOURCE_APP.to_owned(),
                agent_key: id.to_owned(),
                agent_type: MAIN_AGENT_TYPE.to_owned(),
                tool_name: row.text(2)?,
                counted_at: started_at,
                started_at: Some(started_at),
                ended_at: Some(ended_at),
                duration_ms,
                status: if failed {
                    ToolCallStatus::Failed
                } else {
                    ToolCallStatus::Succeeded
                },
                error: row.opt_text(5)?,
                spawn_type: None,
                spawn_description: None,
                spawned_agent: None,
            })
        },
    )
}

/// 16 hex digits of SHA-256: a span id part that stays the same for the same record.
pub(crate) fn short_hash(key: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(key.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a session's traced spans add to its trace besides prompts and tool calls (Claude
/// Code's beta tracing), newest first, at most `limit`: its waits for the user and its hooks
/// as marks that last, and its model requests (`llm_request`) with their request ids, for
/// `domain::trace::join_traced_requests`; and the request ids its `api_request` and
/// `api_error` events carry.
pub(crate) struct TracedExtras {
    pub marks: Vec<EventMark>,
    pub requests: Vec<(Option<String>, ApiCall)>,
    pub logged_request_ids: HashSet<String>,
}

/// One traced span as [`traced_extras`] reads it.
enum Traced {
    Mark(EventMark),
    Request(Option<String>, ApiCall),
}

pub(crate) fn traced_extras<S: Sql>(
    sql: &mut S,
    id: &str,
    limit: i64,
) -> Result<TracedExtras, S::Error> {
    let rows = sql.query(
        "SELECT dedup_key, kind, at_ms, duration_ms, tool_name, decision, decision_source,
                model, request_id, input_tokens, output_tokens, cache_read_tokens,
                cache_creation_tokens, success, error, status_code, attempt
         FROM telemetry_events
         WHERE session_id = ?1
           AND kind IN ('span.tool.blocked_on_user', 'span.hook', 'span.llm_request')
         ORDER BY at_ms DESC, id DESC LIMIT ?2",
        &[id.into(), limit.into()],
        |row| {
            let key = short_hash(&row.text(0)?);
            let kind = row.text(1)?;
            let at_ms = row.int(2)?;
            let duration = row.opt_int(3)?.unwrap_or(0).max(0);
            let ends_at = Some(at_ms.saturating_add(duration));
            Ok(match kind.as_str() {
                "span.llm_request" => {
                    let failed = row.opt_int(13)? == Some(0);
                    let error = row.opt_text(14)?;
                    let mut tokens = [0; 4];
                    for (n, column) in tokens.iter_mut().zip(9..) {
                        *n = row.opt_int(column)?.unwrap_or(0);
                    }
                    Traced::Request(
                        row.opt_text(8)?,
                        ApiCall {
                            key,
                            at_ms: at_ms.saturating_add(duration),
                            duration_ms: Some(duration),
                            prompt_id: None,
                            agent_id: None,
                            model: row.opt_text(7)?,
                            usage: SpanUsage {
                                tokens,
                                cost_nanos: 0,
                                estimated: false,
                            },
                            error: failed.then(|| error.unwrap_or_else(|| "API error".into())),
                            status_code: row.opt_int(15)?.filter(|_| failed),
                            attempt: row.opt_int(16)?,
                            traced_only: true,
                        },
                    )
                }
                "span.hook" => Traced::Mark(EventMark {
                    event_id: format!("otel-{key}"),
                    at_ms,
                    hook_event_type: format!(
                        "hooks for {}",
                        row.opt_text(4)?.unwrap_or_else(|| "an event".into())
                    ),
                    agent_id: None,
                    summary: None,
                    ends_at,
                }),
                _ => Traced::Mark(EventMark {
                    event_id: format!("otel-{key}"),
                    at_ms,
                    hook_event_type: "waiting for you".into(),
                    agent_id: None,
                    summary: row.opt_text(5)?.map(|decision| match row.opt_text(6) {
                        Ok(Some(source)) => format!("{decision} ({source})"),
                        _ => decision,
                    }),
                    ends_at,
                }),
            })
        },
    )?;
    let mut extras = TracedExtras {
        marks: Vec::new(),
        requests: Vec::new(),
        logged_request_ids: HashSet::new(),
    };
    for row in rows {
        match row {
            Traced::Mark(mark) => extras.marks.push(mark),
            Traced::Request(id, call) => extras.requests.push((id, call)),
        }
    }
    if !extras.requests.is_empty() {
        extras.logged_request_ids = sql
            .query(
                "SELECT request_id FROM telemetry_events
                 WHERE session_id = ?1 AND kind IN ('api_request', 'api_error')
                   AND request_id IS NOT NULL",
                &[id.into()],
                |row| row.text(0),
            )?
            .into_iter()
            .collect();
    }
    Ok(extras)
}
