//! The lifecycle rules' storage primitives, as SQL on the writer's open transaction.
//!
//! Every statement is prepared once and cached by the connection; this runs for every event on
//! the ingest path. Writes that only add up (rollup increments, session touches, the set of
//! event types) are folded in memory for the whole commit group and written once per key by
//! [`SqliteLedger::flush`], inside the same transaction: a group of 500 PreToolUse events
//! updates the event rollup once, not 500 times. Nothing in the rules reads those rows back
//! while a group is open, so folding them changes no result.

use crate::store::rows::{agent_from_row, tool_call_from_row};
use rusqlite::{Connection, OptionalExtension, params};

use crate::domain::time::{MINUTE_MS, floor_to};
use crate::store::fold::{PendingWrites, SessionFold};
use crate::store::rows::{
    AGENT_COLUMNS, SATURATED, STAND_IN_SPAWN, TOOL_CALL_COLUMNS, UNLINKED_SPAWN, oldest_spawn_sql,
    placeholders,
};

use crate::domain::lifecycle::{
    Agent, Execution, Ledger, SessionTouch, SessionUsage, ToolCall, ToolCallStatus,
};

pub struct SqliteLedger<'c> {
    conn: &'c Connection,
    pending: PendingWrites,
}

impl<'c> SqliteLedger<'c> {
    pub fn new(conn: &'c Connection) -> Self {
        Self {
            conn,
            pending: PendingWrites::default(),
        }
    }

    /// Writes everything folded so far. Call before committing.
    pub fn flush(&mut self) -> rusqlite::Result<()> {
        let folded = self.pending.drain();
        for (session_id, fold) in &folded.sessions {
            self.write_session(session_id, fold)?;
        }
        for (table, rows) in [
            ("execution_rollup", &folded.executions),
            ("execution_rollup_hour", &folded.execution_hours),
        ] {
            let mut statement = self.conn.prepare_cached(&format!(
                "INSERT INTO {table} (bucket, agent_type, executions, successes, failures,
                     duration_sum_ms, duration_count, tokens, cost_nanos)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (bucket, agent_type) DO UPDATE SET
                     executions = executions + excluded.executions,
                     successes = successes + excluded.successes,
                     failures = failures + excluded.failures,
                     duration_sum_ms = {duration_sum_ms},
                     duration_count = duration_count + excluded.duration_count,
                     tokens = {tokens},
                     cost_nanos = {cost_nanos}",
                duration_sum_ms = saturating_add("duration_sum_ms"),
                tokens = saturating_add("tokens"),
                cost_nanos = saturating_add("cost_nanos"),
            ))?;
            for ((bucket, agent_type), sums) in rows {
                statement.execute(params![
                    bucket,
                    agent_type,
                    sums.executions,
                    sums.successes,
                    sums.failures,
                    sums.duration_sum_ms,
                    sums.duration_count,
                    sums.tokens,
                    sums.cost_nanos,
                ])?;
            }
        }
        for (table, rows) in [
            ("tool_rollup", &folded.tool_uses),
            ("tool_rollup_hour", &folded.tool_hours),
        ] {
            let mut statement = self.conn.prepare_cached(&format!(
                "INSERT INTO {table} (bucket, tool_name, agent_type, calls)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (bucket, tool_name, agent_type)
                 DO UPDATE SET calls = calls + excluded.calls"
            ))?;
            for ((bucket, tool_name, agent_type), calls) in rows {
                statement.execute(params![bucket, tool_name, agent_type, calls])?;
            }
        }
        let mut statement = self.conn.prepare_cached(
            "INSERT INTO event_rollup (bucket, source_app, hook_event_type, events)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (bucket, source_app, hook_event_type)
             DO UPDATE SET events = events + excluded.events",
        )?;
        for ((bucket, source_app, hook_event_type), events) in &folded.event_counts {
            statement.execute(params![bucket, source_app, hook_event_type, events])?;
        }
        let mut statement = self
            .conn
            .prepare_cached("INSERT OR IGNORE INTO event_types (hook_event_type) VALUES (?1)")?;
        for hook_event_type in &folded.event_types {
            statement.execute([hook_event_type])?;
        }
        Ok(())
    }

    /// See [`oldest_spawn_sql`].
    fn oldest_spawn(
        &self,
        session_id: &str,
        subagent_type: &str,
        linked: &str,
    ) -> rusqlite::Result<Option<ToolCall>> {
        self.conn
            .prepare_cached(&placeholders(&oldest_spawn_sql(linked), '?'))?
            .query_row([session_id, subagent_type], |row| tool_call_from_row(row))
            .optional()
    }

    /// Forgets folded writes (after a rollback).
    pub fn discard(&mut self) {
        self.pending.discard();
    }

    fn write_session(&self, session_id: &str, f: &SessionFold) -> rusqlite::Result<()> {
        let (ended_at, end_reason) = f.end();
        // A SessionStart after the end (a resume) reopens the session.
        self.conn
            .prepare_cached(
                "INSERT INTO sessions (session_id, source_app, started_at, last_seen, ended_at,
                     end_reason, cwd, model, event_count, prompt_count, tool_call_count,
                     seen_minute)
                 VALUES (?1, ?2, ?3, ?4,
                     CASE WHEN ?10 IS NOT NULL AND ?5 < ?10 THEN NULL ELSE ?5 END,
                     CASE WHEN ?10 IS NOT NULL AND ?5 < ?10 THEN NULL ELSE ?6 END,
                     ?7, ?8, ?9, ?11, ?12, ?13)
                 ON CONFLICT (session_id) DO UPDATE SET
                     started_at = min(started_at, excluded.started_at),
                     last_seen = max(last_seen, excluded.last_seen),
                     seen_minute = max(seen_minute, excluded.seen_minute),
                     ended_at = CASE
                         WHEN ?10 IS NOT NULL
                              AND coalesce(max(coalesce(ended_at, ?5), ?5), ended_at) < ?10 THEN NULL
                         WHEN ?5 IS NOT NULL THEN max(coalesce(ended_at, ?5), ?5)
                         ELSE ended_at END,
                     end_reason = CASE
                         WHEN ?10 IS NOT NULL
                              AND coalesce(max(coalesce(ended_at, ?5), ?5), ended_at) < ?10 THEN NULL
                         WHEN ?5 IS NOT NULL THEN ?6
                         ELSE end_reason END,
                     cwd = coalesce(cwd, excluded.cwd),
                     model = coalesce(excluded.model, model),
                     event_count = event_count + excluded.event_count,
                     prompt_count = prompt_count + excluded.prompt_count,
                     tool_call_count = tool_call_count + excluded.tool_call_count",
            )?
            .execute(params![
                session_id,
                f.source_app,
                f.started_at,
                f.last_seen,
                ended_at,
                end_reason,
                f.cwd,
                f.model,
                f.events,
                f.reopened_at,
                f.prompts,
                f.tool_calls,
                floor_to(f.last_seen, MINUTE_MS),
            ])?;
        Ok(())
    }
}

macro_rules! insert_tool_call {
    () => {
        "INSERT INTO tool_calls (tool_use_id, session_id, source_app, agent_key, agent_type,
             tool_name, counted_at, started_at, ended_at, duration_ms, status, error, spawn_type,
             spawn_description, spawned_agent)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
    };
}
const INSERT_TOOL_CALL: &str = insert_tool_call!();
const INSERT_TOOL_CALL_IF_NEW: &str = concat!(
    insert_tool_call!(),
    " ON CONFLICT (agent_key, tool_use_id) DO NOTHING"
);

/// A status binds as its stored text ([`ToolCallStatus::as_str`]).
impl rusqlite::ToSql for ToolCallStatus {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

/// A call's columns in [`INSERT_TOOL_CALL`]'s order, then its row id.
fn tool_call_values(c: &ToolCall) -> [&dyn rusqlite::ToSql; 16] {
    [
        &c.tool_use_id,
        &c.session_id,
        &c.source_app,
        &c.agent_key,
        &c.agent_type,
        &c.tool_name,
        &c.counted_at,
        &c.started_at,
        &c.ended_at,
        &c.duration_ms,
        &c.status,
        &c.error,
        &c.spawn_type,
        &c.spawn_description,
        &c.spawned_agent,
        &c.row_id,
    ]
}

impl Ledger for SqliteLedger<'_> {
    type Error = rusqlite::Error;

    fn touch_session(&mut self, t: &SessionTouch<'_>) -> Result<(), Self::Error> {
        self.pending.touch_session(t);
        Ok(())
    }

    fn agent(&mut self, key: &str) -> Result<Option<Agent>, Self::Error> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {AGENT_COLUMNS} FROM agents WHERE agent_key = ?1"
            ))?
            .query_row([key], |row| agent_from_row(row))
            .optional()
    }

    fn save_agent(&mut self, a: &Agent) -> Result<(), Self::Error> {
        // An upsert, not INSERT OR REPLACE: REPLACE deletes and re-inserts the row, rewriting
        // every index entry; an update touches only the indexes whose columns changed.
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO agents ({AGENT_COLUMNS}, duration_ms, total_tokens, seen_minute)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                         ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26)
                 ON CONFLICT (agent_key) DO UPDATE SET
                     session_id = excluded.session_id, source_app = excluded.source_app,
                     agent_type = excluded.agent_type, name = excluded.name,
                     description = excluded.description, status = excluded.status,
                     started_at = excluded.started_at, ended_at = excluded.ended_at,
                     last_seen = excluded.last_seen,
                     subagent_start_at = excluded.subagent_start_at,
                     subagent_stop_at = excluded.subagent_stop_at,
                     reported_duration_ms = excluded.reported_duration_ms,
                     tool_duration_ms = excluded.tool_duration_ms,
                     input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens,
                     cache_creation_tokens = excluded.cache_creation_tokens,
                     cache_read_tokens = excluded.cache_read_tokens,
                     reported_total_tokens = excluded.reported_total_tokens,
                     model = excluded.model, cost_nanos = excluded.cost_nanos,
                     error = excluded.error, tool_use_id = excluded.tool_use_id,
                     duration_ms = excluded.duration_ms, total_tokens = excluded.total_tokens,
                     seen_minute = excluded.seen_minute"
            ))?
            .execute(params![
                a.key,
                a.session_id,
                a.source_app,
                a.agent_type,
                a.name,
                a.description,
                a.status.as_str(),
                a.started_at,
                a.ended_at,
                a.last_seen,
                a.subagent_start_at,
                a.subagent_stop_at,
                a.reported_duration_ms,
                a.tool_duration_ms,
                a.usage.input,
                a.usage.output,
                a.usage.cache_creation,
                a.usage.cache_read,
                a.reported_total_tokens,
                a.model,
                a.cost_nanos,
                a.error,
                a.tool_use_id,
                a.duration_ms(),
                a.total_tokens(),
                floor_to(a.last_seen, MINUTE_MS),
            ])?;
        Ok(())
    }

    fn tool_call(
        &mut self,
        agent_key: &str,
        tool_use_id: &str,
    ) -> Result<Option<ToolCall>, Self::Error> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {TOOL_CALL_COLUMNS} FROM tool_calls
                 WHERE agent_key = ?1 AND tool_use_id = ?2"
            ))?
            .query_row([agent_key, tool_use_id], |row| tool_call_from_row(row))
            .optional()
    }

    fn save_tool_call(&mut self, c: &ToolCall) -> Result<i64, Self::Error> {
        let values = tool_call_values(c);
        match c.row_id {
            None => {
                self.conn
                    .prepare_cached(INSERT_TOOL_CALL)?
                    .execute(&values[..15])?;
                Ok(self.conn.last_insert_rowid())
            }
            // An update touches only the indexes whose columns changed (none, for a Post).
            Some(row_id) => {
                self.conn
                    .prepare_cached(
                        "UPDATE tool_calls SET tool_use_id = ?1, session_id = ?2, source_app = ?3,
                             agent_key = ?4, agent_type = ?5, tool_name = ?6, counted_at = ?7,
                             started_at = ?8, ended_at = ?9, duration_ms = ?10, status = ?11,
                             error = ?12, spawn_type = ?13, spawn_description = ?14,
                             spawned_agent = ?15
                         WHERE id = ?16",
                    )?
                    .execute(values)?;
                Ok(row_id)
            }
        }
    }

    fn insert_tool_call_if_new(&mut self, c: &ToolCall) -> Result<Option<i64>, Self::Error> {
        // The unique index on (agent_key, tool_use_id) is the check: no lookup first.
        let inserted = self
            .conn
            .prepare_cached(INSERT_TOOL_CALL_IF_NEW)?
            .execute(&tool_call_values(c)[..15])?;
        Ok((inserted == 1).then(|| self.conn.last_insert_rowid()))
    }

    fn oldest_unlinked_spawn(
        &mut self,
        session_id: &str,
        subagent_type: &str,
    ) -> Result<Option<ToolCall>, Self::Error> {
        self.oldest_spawn(session_id, subagent_type, UNLINKED_SPAWN)
    }

    fn oldest_stand_in_spawn(
        &mut self,
        session_id: &str,
        subagent_type: &str,
    ) -> Result<Option<ToolCall>, Self::Error> {
        self.oldest_spawn(session_id, subagent_type, STAND_IN_SPAWN)
    }

    fn delete_agent(&mut self, key: &str) -> Result<(), Self::Error> {
        self.conn
            .prepare_cached("DELETE FROM agents WHERE agent_key = ?1")?
            .execute([key])?;
        Ok(())
    }

    fn oldest_unlinked_agent(
        &mut self,
        session_id: &str,
        agent_type: &str,
    ) -> Result<Option<Agent>, Self::Error> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {AGENT_COLUMNS} FROM agents
                 WHERE session_id = ?1 AND agent_type = ?2 AND tool_use_id IS NULL
                   AND subagent_start_at IS NOT NULL AND status = 'running'
                 ORDER BY started_at NULLS FIRST, agent_key LIMIT 1"
            ))?
            .query_row([session_id, agent_type], |row| agent_from_row(row))
            .optional()
    }

    fn add_execution(&mut self, e: &Execution, sign: i64) -> Result<(), Self::Error> {
        self.pending.add_execution(e, sign);
        Ok(())
    }

    fn add_tool_use(
        &mut self,
        bucket_ms: i64,
        tool_name: &str,
        agent_type: &str,
    ) -> Result<(), Self::Error> {
        self.pending.add_tool_use(bucket_ms, tool_name, agent_type);
        Ok(())
    }

    fn add_session_usage(&mut self, u: &SessionUsage<'_>) -> Result<(), Self::Error> {
        self.conn
            .prepare_cached(
                "INSERT INTO session_usage (session_id, ts, model, input_tokens, output_tokens,
                     cache_creation_tokens, cache_read_tokens, total_tokens, cost_nanos)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                u.session_id,
                u.at,
                u.model,
                u.usage.input,
                u.usage.output,
                u.usage.cache_creation,
                u.usage.cache_read,
                u.usage.total(),
                u.cost_nanos,
            ])?;
        Ok(())
    }

    fn add_event_count(
        &mut self,
        bucket_ms: i64,
        source_app: &str,
        hook_event_type: &str,
    ) -> Result<(), Self::Error> {
        self.pending
            .add_event_count(bucket_ms, source_app, hook_event_type);
        Ok(())
    }
}

/// `column + excluded.column`, saturating at [`SATURATED`] (SQLite would turn an overflowing
/// sum into a REAL). Deltas are negative only when an execution's contribution moves, and a
/// negative delta cannot overflow a non-negative sum.
fn saturating_add(column: &str) -> String {
    format!(
        "CASE WHEN excluded.{column} > 0 AND {column} > {SATURATED} - excluded.{column} \
         THEN {SATURATED} ELSE {column} + excluded.{column} END"
    )
}
