//! The rule book's storage primitives ([`Ledger`]), written once for both databases: any
//! [`LedgerSql`] (a write transaction of either database that folds additive writes in
//! [`PendingWrites`]) is a `Ledger`. This runs for every event on the ingest path, so every
//! statement is prepared once per connection and binds borrowed [`Value`]s, with no copies.
//!
//! The SQL is written with `?N` placeholders, as everywhere in the store ([`super::sql`]). What only adds up (rollups, session touches,
//! event types) is folded and written by each store's own `flush`, which differs: PostgreSQL
//! shards rollup rows per writer and writes sessions in arrays.

use super::fold::PendingWrites;
use super::rows::{
    AGENT_COLUMNS, STAND_IN_SPAWN, StoredRow, TOOL_CALL_COLUMNS, UNLINKED_SPAWN, agent_from_row,
    oldest_spawn_sql, tool_call_from_row,
};
pub(crate) use super::sql::Value;
use crate::domain::lifecycle::{Agent, Execution, Ledger, SessionTouch, SessionUsage, ToolCall};
use crate::domain::time::{MINUTE_MS, floor_to};

/// A database's open write transaction, as the shared primitives use it.
pub(crate) trait LedgerSql {
    type Error;
    type Row<'r>: StoredRow<Error = Self::Error>;

    /// Runs `sql` (with `?N` placeholders, prepared once): the rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> Result<u64, Self::Error>;

    /// Runs `sql` and maps its first row, if any.
    fn query_first<T>(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
        map: impl FnOnce(&Self::Row<'_>) -> Result<T, Self::Error>,
    ) -> Result<Option<T>, Self::Error>;

    /// Runs `sql` and maps each of its rows.
    fn query_rows<T>(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
        map: impl FnMut(&Self::Row<'_>) -> Result<T, Self::Error>,
    ) -> Result<Vec<T>, Self::Error>;

    /// This writer's row of each session-free rollup key: PostgreSQL's writers each add to
    /// their own (no row is hot across writers); SQLite has one writer, and one row (0).
    fn rollup_shard(&self) -> i64 {
        0
    }

    /// Runs the INSERT `sql` (no RETURNING clause): the new row's id, or `None` when it
    /// inserted nothing (`ON CONFLICT DO NOTHING`). SQLite reads the last rowid: a RETURNING
    /// clause would make it buffer the result on every PreToolUse.
    fn insert_returning_id(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
    ) -> Result<Option<i64>, Self::Error>;

    /// Additive writes folded for the commit group, written by the store's `flush`.
    fn pending(&mut self) -> &mut PendingWrites;
}

// An upsert, not a delete and insert: an update touches only the indexes whose columns changed.
const SAVE_AGENT: &str = "INSERT INTO agents (agent_key, session_id, source_app, agent_type, \
    name, description, status, started_at, ended_at, last_seen, subagent_start_at, \
    subagent_stop_at, reported_duration_ms, tool_duration_ms, input_tokens, output_tokens, \
    cache_creation_tokens, cache_read_tokens, reported_total_tokens, model, cost_nanos, error, \
    tool_use_id, duration_ms, total_tokens, seen_minute)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
            ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26)
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
        seen_minute = excluded.seen_minute";

const INSERT_TOOL_CALL: &str = "INSERT INTO tool_calls (tool_use_id, session_id, source_app, \
    agent_key, agent_type, tool_name, counted_at, started_at, ended_at, duration_ms, status, \
    error, spawn_type, spawn_description, spawned_agent)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";

// The unique index on (agent_key, tool_use_id) is the check: no lookup first.
const INSERT_TOOL_CALL_IF_NEW: &str = "INSERT INTO tool_calls (tool_use_id, session_id, \
    source_app, agent_key, agent_type, tool_name, counted_at, started_at, ended_at, duration_ms, \
    status, error, spawn_type, spawn_description, spawned_agent)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
    ON CONFLICT (agent_key, tool_use_id) DO NOTHING";

// An update touches only the indexes whose columns changed (none, for a PostToolUse).
const UPDATE_TOOL_CALL: &str = "UPDATE tool_calls SET tool_use_id = ?1, session_id = ?2, \
    source_app = ?3, agent_key = ?4, agent_type = ?5, tool_name = ?6, counted_at = ?7, \
    started_at = ?8, ended_at = ?9, duration_ms = ?10, status = ?11, error = ?12, \
    spawn_type = ?13, spawn_description = ?14, spawned_agent = ?15
    WHERE id = ?16";

/// A call's values in `INSERT_TOOL_CALL`'s order, then its row id.
fn tool_call_values(c: &ToolCall) -> [Value<'_>; 16] {
    [
        (&c.tool_use_id).into(),
        (&c.session_id).into(),
        (&c.source_app).into(),
        (&c.agent_key).into(),
        (&c.agent_type).into(),
        (&c.tool_name).into(),
        c.counted_at.into(),
        c.started_at.into(),
        c.ended_at.into(),
        c.duration_ms.into(),
        c.status.as_str().into(),
        (&c.error).into(),
        (&c.spawn_type).into(),
        (&c.spawn_description).into(),
        (&c.spawned_agent).into(),
        c.row_id.into(),
    ]
}

fn oldest_spawn<X: LedgerSql>(
    sql: &mut X,
    session_id: &str,
    subagent_type: &str,
    not_after_ms: i64,
    linked: &str,
) -> Result<Option<ToolCall>, X::Error> {
    sql.query_first(
        &oldest_spawn_sql(linked),
        &[session_id.into(), subagent_type.into(), not_after_ms.into()],
        |row| tool_call_from_row(row),
    )
}

impl<X: LedgerSql> Ledger for X {
    type Error = X::Error;

    fn touch_session(&mut self, touch: &SessionTouch<'_>) -> Result<(), X::Error> {
        self.pending().touch_session(touch);
        Ok(())
    }

    fn agent(&mut self, key: &str) -> Result<Option<Agent>, X::Error> {
        self.query_first(
            &format!("SELECT {AGENT_COLUMNS} FROM agents WHERE agent_key = ?1"),
            &[key.into()],
            |row| agent_from_row(row),
        )
    }

    fn save_agent(&mut self, a: &Agent) -> Result<(), X::Error> {
        self.execute(
            SAVE_AGENT,
            &[
                (&a.key).into(),
                (&a.session_id).into(),
                (&a.source_app).into(),
                (&a.agent_type).into(),
                (&a.name).into(),
                (&a.description).into(),
                a.status.as_str().into(),
                a.started_at.into(),
                a.ended_at.into(),
                a.last_seen.into(),
                a.subagent_start_at.into(),
                a.subagent_stop_at.into(),
                a.reported_duration_ms.into(),
                a.tool_duration_ms.into(),
                a.usage.input.into(),
                a.usage.output.into(),
                a.usage.cache_creation.into(),
                a.usage.cache_read.into(),
                a.reported_total_tokens.into(),
                (&a.model).into(),
                a.cost_nanos.into(),
                (&a.error).into(),
                (&a.tool_use_id).into(),
                a.duration_ms().into(),
                a.total_tokens().into(),
                floor_to(a.last_seen, MINUTE_MS).into(),
            ],
        )
        .map(drop)
    }

    fn tool_call(
        &mut self,
        agent_key: &str,
        tool_use_id: &str,
    ) -> Result<Option<ToolCall>, X::Error> {
        self.query_first(
            &format!(
                "SELECT {TOOL_CALL_COLUMNS} FROM tool_calls
                 WHERE agent_key = ?1 AND tool_use_id = ?2"
            ),
            &[agent_key.into(), tool_use_id.into()],
            |row| tool_call_from_row(row),
        )
    }

    fn oldest_open_unnamed_call(
        &mut self,
        agent_key: &str,
        tool_name: &str,
        not_after_ms: i64,
    ) -> Result<Option<ToolCall>, X::Error> {
        // The unique index on (agent_key, tool_use_id) finds the agent's calls without an id.
        self.query_first(
            &format!(
                "SELECT {TOOL_CALL_COLUMNS} FROM tool_calls
                 WHERE agent_key = ?1 AND tool_use_id IS NULL AND tool_name = ?2
                   AND ended_at IS NULL AND started_at <= ?3
                 ORDER BY started_at, id LIMIT 1"
            ),
            &[agent_key.into(), tool_name.into(), not_after_ms.into()],
            |row| tool_call_from_row(row),
        )
    }

    fn save_tool_call(&mut self, c: &ToolCall) -> Result<i64, X::Error> {
        let values = tool_call_values(c);
        match c.row_id {
            None => {
                let inserted =
                    self.query_first(INSERT_TOOL_CALL, &values[..15], |row| row.int(0))?;
                Ok(inserted.unwrap_or_default())
            }
            Some(row_id) => {
                self.execute(UPDATE_TOOL_CALL, &values)?;
                Ok(row_id)
            }
        }
    }

    fn insert_tool_call_if_new(&mut self, c: &ToolCall) -> Result<Option<i64>, X::Error> {
        self.insert_returning_id(INSERT_TOOL_CALL_IF_NEW, &tool_call_values(c)[..15])
    }

    fn oldest_unlinked_spawn(
        &mut self,
        session_id: &str,
        subagent_type: &str,
        not_after_ms: i64,
    ) -> Result<Option<ToolCall>, X::Error> {
        oldest_spawn(
            self,
            session_id,
            subagent_type,
            not_after_ms,
            UNLINKED_SPAWN,
        )
    }

    fn oldest_stand_in_spawn(
        &mut self,
        session_id: &str,
        subagent_type: &str,
        not_after_ms: i64,
    ) -> Result<Option<ToolCall>, X::Error> {
        oldest_spawn(
            self,
            session_id,
            subagent_type,
            not_after_ms,
            STAND_IN_SPAWN,
        )
    }

    fn delete_agent(&mut self, key: &str) -> Result<(), X::Error> {
        self.execute("DELETE FROM agents WHERE agent_key = ?1", &[key.into()])
            .map(drop)
    }

    fn oldest_unlinked_agent(
        &mut self,
        session_id: &str,
        agent_type: &str,
        not_before_ms: i64,
        not_after_ms: i64,
    ) -> Result<Option<Agent>, X::Error> {
        self.query_first(
            &format!(
                "SELECT {AGENT_COLUMNS} FROM agents
                 WHERE session_id = ?1 AND agent_type = ?2 AND tool_use_id IS NULL
                   AND subagent_start_at IS NOT NULL
                   AND (started_at IS NULL OR (started_at >= ?3 AND started_at <= ?4))
                 ORDER BY started_at NULLS FIRST, agent_key LIMIT 1"
            ),
            &[
                session_id.into(),
                agent_type.into(),
                not_before_ms.into(),
                not_after_ms.into(),
            ],
            |row| agent_from_row(row),
        )
    }

    fn add_execution(&mut self, execution: &Execution, sign: i64) -> Result<(), X::Error> {
        self.pending().add_execution(execution, sign);
        Ok(())
    }

    fn add_tool_use(
        &mut self,
        bucket_ms: i64,
        tool_name: &str,
        agent_type: &str,
    ) -> Result<(), X::Error> {
        self.pending()
            .add_tool_use(bucket_ms, tool_name, agent_type);
        Ok(())
    }

    fn add_event_count(
        &mut self,
        bucket_ms: i64,
        source_app: &str,
        hook_event_type: &str,
    ) -> Result<(), X::Error> {
        self.pending()
            .add_event_count(bucket_ms, source_app, hook_event_type);
        Ok(())
    }

    fn add_session_usage(&mut self, u: &SessionUsage<'_>) -> Result<(), X::Error> {
        self.execute(
            "INSERT INTO session_usage (session_id, ts, model, input_tokens, output_tokens,
                 cache_creation_tokens, cache_read_tokens, total_tokens, cost_nanos)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            &[
                u.session_id.into(),
                u.at.into(),
                u.model.into(),
                u.usage.input.into(),
                u.usage.output.into(),
                u.usage.cache_creation.into(),
                u.usage.cache_read.into(),
                u.usage.total().into(),
                u.cost_nanos.into(),
            ],
        )
        .map(drop)
    }
}

/// One pruning step's deletes, the same in both databases: raw events, tool calls, agents and
/// sessions older than `raw_before_ms`, and minute rollups and main-agent usage older than
/// `plan.rollups_before_ms`, at most `plan.batch` rows per table, oldest first, so the write
/// transaction stays short. Each store adds what only it does (SQLite: the size limit and
/// giving pages back to the disk).
pub(crate) fn delete_oldest<X: LedgerSql>(
    sql: &mut X,
    raw_before_ms: Option<i64>,
    plan: &super::PrunePlan,
) -> Result<super::PruneReport, X::Error> {
    let batch = i64::try_from(plan.batch.max(1)).unwrap_or(i64::MAX);
    let mut report = super::PruneReport::default();
    let delete = |sql: &mut X, table: &str, key: &str, column: &str, before: i64| {
        delete_before(sql, table, key, column, before, batch)
    };
    if let Some(before) = raw_before_ms {
        report.events = delete(sql, "events", "id", "ts", before)?;
        delete(sql, "event_prompts", "event_row", "ts", before)?;
        report.tool_calls = delete(sql, "tool_calls", "id", "counted_at", before)?;
        // `seen_minute` is `last_seen` to the minute: whole minutes before the cutoff.
        let minute = floor_to(before, MINUTE_MS);
        report.agents = delete(sql, "agents", "agent_key", "seen_minute", minute)?;
        report.sessions = delete(sql, "sessions", "session_id", "seen_minute", minute)?;
        report.telemetry = delete(sql, "telemetry_events", "id", "at_ms", before)?
            + delete(sql, "telemetry_points", "id", "time_ms", before)?;
        // Apps not seen since: the filter options list apps that have events.
        sql.execute(
            "DELETE FROM source_apps WHERE last_seen < ?1",
            &[minute.into()],
        )?;
    }
    if let Some(before) = plan.rollups_before_ms {
        // Whole buckets, up to the batch's newest: a bucket holds one row per type or tool.
        for table in [
            "execution_rollup",
            "tool_rollup",
            "event_rollup",
            "usage_rollup",
            "latency_rollup",
            "usage_totals",
            "latency_totals",
        ] {
            report.rollups += sql.execute(
                &format!(
                    "DELETE FROM {table} WHERE bucket < ?1 AND bucket <=
                         (SELECT max(bucket) FROM
                             (SELECT bucket FROM {table} WHERE bucket < ?1
                              ORDER BY bucket LIMIT ?2) oldest)"
                ),
                &[before.into(), batch.into()],
            )?;
        }
        report.session_usage = delete(sql, "session_usage", "id", "ts", before)?;
    }
    if report.events > 0 {
        // The chats of the events just deleted (few rows: only events sent with a chat).
        sql.execute(
            "DELETE FROM event_chats
             WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = event_chats.event_id)",
            &[],
        )?;
    }
    Ok(report)
}

/// Deletes the oldest `batch` rows of `table` (keyed by `key`) whose `column` is below `before`.
fn delete_before<X: LedgerSql>(
    sql: &mut X,
    table: &str,
    key: &str,
    column: &str,
    before: i64,
    batch: i64,
) -> Result<u64, X::Error> {
    sql.execute(
        &format!(
            "DELETE FROM {table} WHERE {key} IN
                 (SELECT {key} FROM {table} WHERE {column} < ?1 ORDER BY {column} LIMIT ?2)"
        ),
        &[before.into(), batch.into()],
    )
}
