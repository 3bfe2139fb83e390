//! The lifecycle rules' storage primitives, as SQL on a writer's open PostgreSQL transaction.
//!
//! The same rules and the same folding as the SQLite ledger ([`crate::store::fold`]); the
//! differences are PostgreSQL's: statements are prepared once per connection and kept
//! ([`Statements`]), so each runs in one round trip, and folded rows are written in key order
//! so that concurrent writers (other threads, other instances) queue on a row instead of
//! deadlocking.

use crate::store::rows::{agent_from_row, tool_call_from_row};
use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{GenericClient, Row, Statement, Transaction};

use crate::domain::lifecycle::{Agent, Execution, Ledger, SessionTouch, SessionUsage, ToolCall};
use crate::domain::time::{MINUTE_MS, floor_to};
use crate::store::fold::{PendingWrites, SessionFold};
use crate::store::rows::{
    AGENT_COLUMNS, SATURATED, STAND_IN_SPAWN, TOOL_CALL_COLUMNS, UNLINKED_SPAWN, oldest_spawn_sql,
    placeholders,
};

/// Prepared statements of one connection, by SQL text: each statement then runs in one round
/// trip instead of two (prepare, execute). Bounded: the event list builds its SQL from the
/// filters given, a few hundred texts at most; past [`MAX_STATEMENTS`] the cache starts over.
#[derive(Default)]
pub struct Statements {
    prepared: HashMap<String, Statement>,
}

const MAX_STATEMENTS: usize = 512;

impl Statements {
    pub fn get(
        &mut self,
        client: &mut impl GenericClient,
        sql: &str,
    ) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = client.prepare(sql)?;
        if self.prepared.len() >= MAX_STATEMENTS {
            self.prepared.clear();
        }
        self.prepared.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Runs `sql` (prepared once) on `client`: its rows.
    pub fn query(
        &mut self,
        client: &mut impl GenericClient,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.get(client, sql)?;
        client.query(&statement, params)
    }

    pub fn query_one(
        &mut self,
        client: &mut impl GenericClient,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Row, postgres::Error> {
        let statement = self.get(client, sql)?;
        client.query_one(&statement, params)
    }

    pub fn query_opt(
        &mut self,
        client: &mut impl GenericClient,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Option<Row>, postgres::Error> {
        let statement = self.get(client, sql)?;
        client.query_opt(&statement, params)
    }

    pub fn execute(
        &mut self,
        client: &mut impl GenericClient,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<u64, postgres::Error> {
        let statement = self.get(client, sql)?;
        client.execute(&statement, params)
    }

    /// Forgets every statement: after the connection was replaced.
    pub fn clear(&mut self) {
        self.prepared.clear();
    }
}

pub struct PostgresLedger<'t, 'c> {
    transaction: &'t mut Transaction<'c>,
    statements: &'t mut Statements,
    /// This writer's row of each rollup key (see the schema).
    shard: i16,
    pending: PendingWrites,
}

pub type Params<'p> = [&'p (dyn ToSql + Sync)];

/// A group's folded sessions as rows `v`, from the arrays `$1..$13` of `write_sessions`.
const SESSION_ROWS: &str = "unnest($1::text[], $2::text[], $3::int8[], $4::int8[], \
    $5::int8[], $6::text[], $7::text[], $8::text[], $9::int8[], $10::int8[], $11::int8[], \
    $12::int8[], $13::int8[]) AS v(session_id, source_app, started_at, last_seen, ended_at, \
    end_reason, cwd, model, events, reopened_at, prompts, tool_calls, seen_minute)";

impl<'t, 'c> PostgresLedger<'t, 'c> {
    pub fn new(
        transaction: &'t mut Transaction<'c>,
        statements: &'t mut Statements,
        shard: i16,
    ) -> Self {
        Self {
            transaction,
            statements,
            shard,
            pending: PendingWrites::default(),
        }
    }

    /// The open transaction, for statements that are not the rules' (the sweep, pruning).
    pub fn transaction(&mut self) -> &mut Transaction<'c> {
        self.transaction
    }

    pub fn execute(&mut self, sql: &str, params: &Params<'_>) -> Result<u64, postgres::Error> {
        self.statements.execute(self.transaction, sql, params)
    }

    fn query(&mut self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>, postgres::Error> {
        self.statements.query(self.transaction, sql, params)
    }

    pub fn query_one(&mut self, sql: &str, params: &Params<'_>) -> Result<Row, postgres::Error> {
        self.statements.query_one(self.transaction, sql, params)
    }

    fn query_opt(
        &mut self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Option<Row>, postgres::Error> {
        self.statements.query_opt(self.transaction, sql, params)
    }

    /// See [`oldest_spawn_sql`].
    fn oldest_spawn(
        &mut self,
        session_id: &str,
        subagent_type: &str,
        linked: &str,
    ) -> Result<Option<ToolCall>, postgres::Error> {
        self.query_opt(
            &placeholders(&oldest_spawn_sql(linked), '$'),
            &[&session_id, &subagent_type],
        )?
        .map(|row| tool_call_from_row(&row))
        .transpose()
    }

    /// Writes everything folded so far, in key order. Call before committing.
    pub fn flush(&mut self) -> Result<(), postgres::Error> {
        let folded = self.pending.drain();
        let shard = self.shard;
        self.write_sessions(&folded.sessions)?;
        for (table, rows) in [
            ("execution_rollup", &folded.executions),
            ("execution_rollup_hour", &folded.execution_hours),
        ] {
            let sql = format!(
                "INSERT INTO {table} AS r (bucket, agent_type, executions, successes, failures,
                     duration_sum_ms, duration_count, tokens, cost_nanos, shard)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (bucket, agent_type, shard) DO UPDATE SET
                     executions = r.executions + excluded.executions,
                     successes = r.successes + excluded.successes,
                     failures = r.failures + excluded.failures,
                     duration_sum_ms = {duration_sum_ms},
                     duration_count = r.duration_count + excluded.duration_count,
                     tokens = {tokens},
                     cost_nanos = {cost_nanos}",
                duration_sum_ms = saturating_add("duration_sum_ms"),
                tokens = saturating_add("tokens"),
                cost_nanos = saturating_add("cost_nanos"),
            );
            for ((bucket, agent_type), sums) in rows {
                self.execute(
                    &sql,
                    &[
                        bucket,
                        agent_type,
                        &sums.executions,
                        &sums.successes,
                        &sums.failures,
                        &sums.duration_sum_ms,
                        &sums.duration_count,
                        &sums.tokens,
                        &sums.cost_nanos,
                        &shard,
                    ],
                )?;
            }
        }
        for (table, rows) in [
            ("tool_rollup", &folded.tool_uses),
            ("tool_rollup_hour", &folded.tool_hours),
        ] {
            let sql = format!(
                "INSERT INTO {table} AS r (bucket, tool_name, agent_type, calls, shard)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (bucket, tool_name, agent_type, shard)
                 DO UPDATE SET calls = r.calls + excluded.calls"
            );
            for ((bucket, tool_name, agent_type), calls) in rows {
                self.execute(&sql, &[bucket, tool_name, agent_type, calls, &shard])?;
            }
        }
        for ((bucket, source_app, hook_event_type), events) in &folded.event_counts {
            self.execute(
                "INSERT INTO event_rollup AS r (bucket, source_app, hook_event_type, events, shard)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (bucket, source_app, hook_event_type, shard)
                 DO UPDATE SET events = r.events + excluded.events",
                &[bucket, source_app, hook_event_type, events, &shard],
            )?;
        }
        for hook_event_type in &folded.event_types {
            self.execute(
                "INSERT INTO event_types (hook_event_type) VALUES ($1) ON CONFLICT DO NOTHING",
                &[hook_event_type],
            )?;
        }
        Ok(())
    }

    /// Every session the group touched, in two statements: an update of those that exist and
    /// an insert of the rest. Safe without an upsert because the group holds each session's
    /// advisory lock (`writer::lock_sessions`): no other writer can insert one meanwhile.
    fn write_sessions(
        &mut self,
        sessions: &std::collections::BTreeMap<String, SessionFold>,
    ) -> Result<(), postgres::Error> {
        if sessions.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = sessions.keys().map(String::as_str).collect();
        let folds: Vec<&SessionFold> = sessions.values().collect();
        let column = |field: fn(&SessionFold) -> i64| -> Vec<i64> {
            folds.iter().map(|f| field(f)).collect()
        };
        let started_at = column(|f| f.started_at);
        let last_seen = column(|f| f.last_seen);
        let seen_minute = column(|f| floor_to(f.last_seen, MINUTE_MS));
        let events = column(|f| f.events);
        let prompts = column(|f| f.prompts);
        let tool_calls = column(|f| f.tool_calls);
        let ended_at: Vec<Option<i64>> = folds.iter().map(|f| f.end().0).collect();
        let end_reason: Vec<Option<&str>> = folds.iter().map(|f| f.end().1).collect();
        let reopened_at: Vec<Option<i64>> = folds.iter().map(|f| f.reopened_at).collect();
        let cwd: Vec<Option<&str>> = folds.iter().map(|f| f.cwd.as_deref()).collect();
        let model: Vec<Option<&str>> = folds.iter().map(|f| f.model.as_deref()).collect();
        let source_app: Vec<&str> = folds.iter().map(|f| f.source_app.as_str()).collect();
        let params: [&(dyn ToSql + Sync); 13] = [
            &ids,
            &source_app,
            &started_at,
            &last_seen,
            &ended_at,
            &end_reason,
            &cwd,
            &model,
            &events,
            &reopened_at,
            &prompts,
            &tool_calls,
            &seen_minute,
        ];
        // A SessionStart after the end (a resume) reopens the session. GREATEST ignores NULLs,
        // so `GREATEST(s.ended_at, v.ended_at)` is the later of the stored end and this group's.
        let updated = self.query(
            &format!(
                "UPDATE sessions AS s SET
                     started_at = LEAST(s.started_at, v.started_at),
                     last_seen = GREATEST(s.last_seen, v.last_seen),
                     seen_minute = GREATEST(s.seen_minute, v.seen_minute),
                     ended_at = CASE
                         WHEN v.reopened_at IS NOT NULL
                              AND GREATEST(s.ended_at, v.ended_at) < v.reopened_at THEN NULL
                         WHEN v.ended_at IS NOT NULL THEN GREATEST(s.ended_at, v.ended_at)
                         ELSE s.ended_at END,
                     end_reason = CASE
                         WHEN v.reopened_at IS NOT NULL
                              AND GREATEST(s.ended_at, v.ended_at) < v.reopened_at THEN NULL
                         WHEN v.ended_at IS NOT NULL THEN v.end_reason
                         ELSE s.end_reason END,
                     cwd = coalesce(s.cwd, v.cwd),
                     model = coalesce(v.model, s.model),
                     event_count = s.event_count + v.events,
                     prompt_count = s.prompt_count + v.prompts,
                     tool_call_count = s.tool_call_count + v.tool_calls
                 FROM {SESSION_ROWS}
                 WHERE s.session_id = v.session_id
                 RETURNING s.session_id"
            ),
            &params,
        )?;
        if updated.len() == ids.len() {
            return Ok(());
        }
        let existing: std::collections::HashSet<String> = updated
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
        let new_ids: Vec<&str> = ids
            .iter()
            .copied()
            .filter(|id| !existing.contains(*id))
            .collect();
        self.execute(
            &format!(
                "INSERT INTO sessions (session_id, source_app, started_at, last_seen, ended_at,
                     end_reason, cwd, model, event_count, prompt_count, tool_call_count,
                     seen_minute)
                 SELECT v.session_id, v.source_app, v.started_at, v.last_seen,
                     CASE WHEN v.reopened_at IS NOT NULL AND v.ended_at < v.reopened_at
                          THEN NULL ELSE v.ended_at END,
                     CASE WHEN v.reopened_at IS NOT NULL AND v.ended_at < v.reopened_at
                          THEN NULL ELSE v.end_reason END,
                     v.cwd, v.model, v.events, v.prompts, v.tool_calls, v.seen_minute
                 FROM {SESSION_ROWS}
                 WHERE v.session_id = ANY($14::text[])"
            ),
            &[
                params[0], params[1], params[2], params[3], params[4], params[5], params[6],
                params[7], params[8], params[9], params[10], params[11], params[12], &new_ids,
            ],
        )?;
        Ok(())
    }
}

impl Ledger for PostgresLedger<'_, '_> {
    type Error = postgres::Error;

    fn touch_session(&mut self, t: &SessionTouch<'_>) -> Result<(), Self::Error> {
        self.pending.touch_session(t);
        Ok(())
    }

    fn agent(&mut self, key: &str) -> Result<Option<Agent>, Self::Error> {
        self.query_opt(
            &format!("SELECT {AGENT_COLUMNS} FROM agents WHERE agent_key = $1"),
            &[&key],
        )?
        .map(|row| agent_from_row(&row))
        .transpose()
    }

    fn save_agent(&mut self, a: &Agent) -> Result<(), Self::Error> {
        let status = a.status.as_str();
        let duration_ms = a.duration_ms();
        let total_tokens = a.total_tokens();
        let seen_minute = floor_to(a.last_seen, MINUTE_MS);
        self.execute(
            &format!(
                "INSERT INTO agents ({AGENT_COLUMNS}, duration_ms, total_tokens, seen_minute)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                         $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)
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
            ),
            &[
                &a.key,
                &a.session_id,
                &a.source_app,
                &a.agent_type,
                &a.name,
                &a.description,
                &status,
                &a.started_at,
                &a.ended_at,
                &a.last_seen,
                &a.subagent_start_at,
                &a.subagent_stop_at,
                &a.reported_duration_ms,
                &a.tool_duration_ms,
                &a.usage.input,
                &a.usage.output,
                &a.usage.cache_creation,
                &a.usage.cache_read,
                &a.reported_total_tokens,
                &a.model,
                &a.cost_nanos,
                &a.error,
                &a.tool_use_id,
                &duration_ms,
                &total_tokens,
                &seen_minute,
            ],
        )?;
        Ok(())
    }

    fn tool_call(
        &mut self,
        agent_key: &str,
        tool_use_id: &str,
    ) -> Result<Option<ToolCall>, Self::Error> {
        self.query_opt(
            &format!(
                "SELECT {TOOL_CALL_COLUMNS} FROM tool_calls
                 WHERE agent_key = $1 AND tool_use_id = $2"
            ),
            &[&agent_key, &tool_use_id],
        )?
        .map(|row| tool_call_from_row(&row))
        .transpose()
    }

    fn save_tool_call(&mut self, c: &ToolCall) -> Result<i64, Self::Error> {
        let status = c.status.as_str();
        let values: [&(dyn ToSql + Sync); 15] = [
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
            &status,
            &c.error,
            &c.spawn_type,
            &c.spawn_description,
            &c.spawned_agent,
        ];
        match c.row_id {
            None => {
                let row = self
                    .query_opt(
                        "INSERT INTO tool_calls (tool_use_id, session_id, source_app, agent_key,
                             agent_type, tool_name, counted_at, started_at, ended_at, duration_ms,
                             status, error, spawn_type, spawn_description, spawned_agent)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                         RETURNING id",
                        &values,
                    )?
                    .expect("INSERT … RETURNING returns a row");
                row.try_get(0)
            }
            Some(row_id) => {
                let mut params = values.to_vec();
                params.push(&row_id);
                self.execute(
                    "UPDATE tool_calls SET tool_use_id = $1, session_id = $2, source_app = $3,
                         agent_key = $4, agent_type = $5, tool_name = $6, counted_at = $7,
                         started_at = $8, ended_at = $9, duration_ms = $10, status = $11,
                         error = $12, spawn_type = $13, spawn_description = $14,
                         spawned_agent = $15
                     WHERE id = $16",
                    &params,
                )?;
                Ok(row_id)
            }
        }
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
        self.execute("DELETE FROM agents WHERE agent_key = $1", &[&key])
            .map(drop)
    }

    fn oldest_unlinked_agent(
        &mut self,
        session_id: &str,
        agent_type: &str,
    ) -> Result<Option<Agent>, Self::Error> {
        self.query_opt(
            &format!(
                "SELECT {AGENT_COLUMNS} FROM agents
                 WHERE session_id = $1 AND agent_type = $2 AND tool_use_id IS NULL
                   AND subagent_start_at IS NOT NULL AND status = 'running'
                 ORDER BY started_at NULLS FIRST, agent_key LIMIT 1"
            ),
            &[&session_id, &agent_type],
        )?
        .map(|row| agent_from_row(&row))
        .transpose()
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
        let total = u.usage.total();
        self.execute(
            "INSERT INTO session_usage (session_id, ts, model, input_tokens, output_tokens,
                 cache_creation_tokens, cache_read_tokens, total_tokens, cost_nanos)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &u.session_id,
                &u.at,
                &u.model,
                &u.usage.input,
                &u.usage.output,
                &u.usage.cache_creation,
                &u.usage.cache_read,
                &total,
                &u.cost_nanos,
            ],
        )?;
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

/// `r.column + excluded.column`, saturating at [`SATURATED`] (PostgreSQL would fail the
/// transaction with "bigint out of range"): added as `numeric`, which cannot overflow.
fn saturating_add(column: &str) -> String {
    format!("least(r.{column}::numeric + excluded.{column}, {SATURATED})::int8")
}
