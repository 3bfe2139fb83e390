//! The lifecycle rules' storage primitives, as SQL on the writer's open transaction.
//!
//! Every statement is prepared once and cached by the connection; this runs for every event on
//! the ingest path. Writes that only add up (rollup increments, session touches, the set of
//! event types) are folded in memory for the whole commit group and written once per key by
//! [`SqliteLedger::flush`], inside the same transaction: a group of 500 PreToolUse events
//! updates the event rollup once, not 500 times. Nothing in the rules reads those rows back
//! while a group is open, so folding them changes no result.

use crate::store::ledger::{LedgerSql, Value};
use rusqlite::{Connection, params};

use crate::domain::time::{MINUTE_MS, floor_to};
use crate::store::fold::{PendingWrites, SessionFold};
use crate::store::rows::SATURATED;

pub(crate) struct SqliteLedger<'c> {
    conn: &'c Connection,
    pending: PendingWrites,
}

impl<'c> SqliteLedger<'c> {
    pub(crate) fn new(conn: &'c Connection) -> Self {
        Self {
            conn,
            pending: PendingWrites::default(),
        }
    }

    /// Writes everything folded so far. Call before committing.
    pub(crate) fn flush(&mut self) -> rusqlite::Result<()> {
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
        // New apps, and the minute an app was last seen (an update at most once a minute).
        let mut insert = self.conn.prepare_cached(
            "INSERT INTO source_apps (source_app, last_seen) VALUES (?1, ?2)
             ON CONFLICT (source_app) DO NOTHING",
        )?;
        for (source_app, seen) in &folded.source_apps {
            insert.execute(params![source_app, seen])?;
        }
        let mut update = self.conn.prepare_cached(
            "UPDATE source_apps SET last_seen = ?2 WHERE source_app = ?1 AND last_seen < ?2",
        )?;
        for (source_app, seen) in &folded.source_apps {
            update.execute(params![source_app, seen])?;
        }
        Ok(())
    }

    /// Forgets folded writes (after a rollback).
    pub(crate) fn discard(&mut self) {
        self.pending.discard();
    }

    fn write_session(&self, session_id: &str, f: &SessionFold) -> rusqlite::Result<()> {
        let (ended_at, end_reason) = f.end();
        // A SessionStart after the end (a resume) reopens the session.
        self.conn
            .prepare_cached(
                "INSERT INTO sessions (session_id, source_app, started_at, last_seen, ended_at,
                     end_reason, cwd, model, event_count, prompt_count, tool_call_count,
                     seen_minute, coding_agent)
                 VALUES (?1, ?2, ?3, ?4,
                     CASE WHEN ?10 IS NOT NULL AND ?5 < ?10 THEN NULL ELSE ?5 END,
                     CASE WHEN ?10 IS NOT NULL AND ?5 < ?10 THEN NULL ELSE ?6 END,
                     ?7, ?8, ?9, ?11, ?12, ?13, ?14)
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
                     coding_agent = coalesce(coding_agent, excluded.coding_agent),
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
                f.coding_agent,
            ])?;
        Ok(())
    }
}

impl LedgerSql for SqliteLedger<'_> {
    type Error = rusqlite::Error;
    type Row<'r> = rusqlite::Row<'r>;

    fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> rusqlite::Result<u64> {
        let changed = self
            .conn
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(params))?;
        Ok(changed as u64)
    }

    fn query_first<T>(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
        map: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Option<T>> {
        let mut statement = self.conn.prepare_cached(sql)?;
        let mut rows = statement.query(rusqlite::params_from_iter(params))?;
        match rows.next()? {
            Some(row) => map(row).map(Some),
            None => Ok(None),
        }
    }

    fn query_rows<T>(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
        mut map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Vec<T>> {
        let mut statement = self.conn.prepare_cached(sql)?;
        let mut rows = statement.query(rusqlite::params_from_iter(params))?;
        let mut mapped = Vec::new();
        while let Some(row) = rows.next()? {
            mapped.push(map(row)?);
        }
        Ok(mapped)
    }

    fn insert_returning_id(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
    ) -> rusqlite::Result<Option<i64>> {
        let inserted = self
            .conn
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(params))?;
        Ok((inserted == 1).then(|| self.conn.last_insert_rowid()))
    }

    fn pending(&mut self) -> &mut PendingWrites {
        &mut self.pending
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
