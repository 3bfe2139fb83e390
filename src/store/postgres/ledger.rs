//! The lifecycle rules' storage primitives, as SQL on a writer's open PostgreSQL transaction.
//!
//! The same rules and the same folding as the SQLite ledger ([`crate::store::fold`]); the
//! differences are PostgreSQL's: statements are prepared once per connection and kept
//! ([`Statements`]), so each runs in one round trip, and folded rows are written in key order
//! so that concurrent writers (other threads, other instances) queue on a row instead of
//! deadlocking.

use crate::store::ledger::{LedgerSql, Value};
use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{GenericClient, Row, Statement, Transaction};

use crate::domain::time::{MINUTE_MS, floor_to};
use crate::store::fold::{PendingWrites, SessionFold};
use crate::store::rows::SATURATED;

/// Prepared statements of one connection, by SQL text: each statement then runs in one round
/// trip instead of two (prepare, execute). Bounded: the event list builds its SQL from the
/// filters given, a few hundred texts at most; past [`MAX_STATEMENTS`] the cache starts over.
#[derive(Default)]
pub(crate) struct Statements {
    prepared: HashMap<String, Statement>,
}

const MAX_STATEMENTS: usize = 512;

impl Statements {
    pub(crate) fn get(
        &mut self,
        client: &mut impl GenericClient,
        sql: &str,
    ) -> Result<Statement, postgres::Error> {
        self.get_or_prepare(client, sql, |sql| sql.to_owned())
    }

    /// As [`Self::get`] for SQL written with SQLite's `?N` placeholders (the shared ledger's):
    /// rewritten to `$N` once, when first prepared; cached under the text as written.
    pub(crate) fn get_with_marks(
        &mut self,
        client: &mut impl GenericClient,
        sql: &str,
    ) -> Result<Statement, postgres::Error> {
        self.get_or_prepare(client, sql, |sql| {
            crate::store::sql::Dialect::Postgres.with_own_marks(sql)
        })
    }

    /// The statement cached under `sql`, or `as_postgres(sql)` prepared and cached.
    fn get_or_prepare(
        &mut self,
        client: &mut impl GenericClient,
        sql: &str,
        as_postgres: impl FnOnce(&str) -> String,
    ) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = client.prepare(&as_postgres(sql))?;
        if self.prepared.len() >= MAX_STATEMENTS {
            self.prepared.clear();
        }
        self.prepared.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// Runs `sql` (prepared once) on `client`: its rows.
    pub(crate) fn query(
        &mut self,
        client: &mut impl GenericClient,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.get(client, sql)?;
        client.query(&statement, params)
    }

    pub(crate) fn query_one(
        &mut self,
        client: &mut impl GenericClient,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Row, postgres::Error> {
        let statement = self.get(client, sql)?;
        client.query_one(&statement, params)
    }

    pub(crate) fn execute(
        &mut self,
        client: &mut impl GenericClient,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<u64, postgres::Error> {
        let statement = self.get(client, sql)?;
        client.execute(&statement, params)
    }

    /// Forgets every statement: after the connection was replaced.
    pub(crate) fn clear(&mut self) {
        self.prepared.clear();
    }
}

pub(crate) struct PostgresLedger<'t, 'c> {
    transaction: &'t mut Transaction<'c>,
    statements: &'t mut Statements,
    /// This writer's row of each rollup key (see the schema).
    shard: i16,
    pending: PendingWrites,
}

pub(crate) type Params<'p> = [&'p (dyn ToSql + Sync)];

/// A group's folded sessions as rows `v`, from the arrays `$1..$13` of `write_sessions`.
const SESSION_ROWS: &str = "unnest($1::text[], $2::text[], $3::int8[], $4::int8[], \
    $5::int8[], $6::text[], $7::text[], $8::text[], $9::int8[], $10::int8[], $11::int8[], \
    $12::int8[], $13::int8[], $14::text[]) AS v(session_id, source_app, started_at, last_seen, \
    ended_at, end_reason, cwd, model, events, reopened_at, prompts, tool_calls, seen_minute, \
    coding_agent)";

impl<'t, 'c> PostgresLedger<'t, 'c> {
    pub(crate) fn new(
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

    pub(crate) fn execute(
        &mut self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<u64, postgres::Error> {
        self.statements.execute(self.transaction, sql, params)
    }

    fn query(&mut self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>, postgres::Error> {
        self.statements.query(self.transaction, sql, params)
    }

    pub(crate) fn query_one(
        &mut self,
        sql: &str,
        params: &Params<'_>,
    ) -> Result<Row, postgres::Error> {
        self.statements.query_one(self.transaction, sql, params)
    }

    /// Writes everything folded so far, in key order. Call before committing.
    pub(crate) fn flush(&mut self) -> Result<(), postgres::Error> {
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
        // New apps, and the minute an app was last seen: an update takes the row's lock at
        // most once a minute per app, so the writers rarely wait on each other here.
        for (source_app, seen) in &folded.source_apps {
            self.execute(
                "INSERT INTO source_apps (source_app, last_seen) VALUES ($1, $2)
                 ON CONFLICT (source_app) DO NOTHING",
                &[source_app, seen],
            )?;
            self.execute(
                "UPDATE source_apps SET last_seen = $2 WHERE source_app = $1 AND last_seen < $2",
                &[source_app, seen],
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
        let coding_agent: Vec<Option<&str>> = folds.iter().map(|f| f.coding_agent).collect();
        let params: [&(dyn ToSql + Sync); 14] = [
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
            &coding_agent,
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
                     coding_agent = coalesce(s.coding_agent, v.coding_agent),
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
                     seen_minute, coding_agent)
                 SELECT v.session_id, v.source_app, v.started_at, v.last_seen,
                     CASE WHEN v.reopened_at IS NOT NULL AND v.ended_at < v.reopened_at
                          THEN NULL ELSE v.ended_at END,
                     CASE WHEN v.reopened_at IS NOT NULL AND v.ended_at < v.reopened_at
                          THEN NULL ELSE v.end_reason END,
                     v.cwd, v.model, v.events, v.prompts, v.tool_calls, v.seen_minute,
                     v.coding_agent
                 FROM {SESSION_ROWS}
                 WHERE v.session_id = ANY($15::text[])"
            ),
            &[
                params[0], params[1], params[2], params[3], params[4], params[5], params[6],
                params[7], params[8], params[9], params[10], params[11], params[12], params[13],
                &new_ids,
            ],
        )?;
        Ok(())
    }
}

impl LedgerSql for PostgresLedger<'_, '_> {
    type Error = postgres::Error;
    type Row<'r> = Row;

    fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> Result<u64, postgres::Error> {
        let statement = self.statements.get_with_marks(self.transaction, sql)?;
        self.transaction.execute(&statement, &bind(params))
    }

    fn query_first<T>(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
        map: impl FnOnce(&Row) -> Result<T, postgres::Error>,
    ) -> Result<Option<T>, postgres::Error> {
        let statement = self.statements.get_with_marks(self.transaction, sql)?;
        self.transaction
            .query_opt(&statement, &bind(params))?
            .as_ref()
            .map(map)
            .transpose()
    }

    fn query_rows<T>(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
        map: impl FnMut(&Row) -> Result<T, postgres::Error>,
    ) -> Result<Vec<T>, postgres::Error> {
        let statement = self.statements.get_with_marks(self.transaction, sql)?;
        self.transaction
            .query(&statement, &bind(params))?
            .iter()
            .map(map)
            .collect()
    }

    fn rollup_shard(&self) -> i64 {
        i64::from(self.shard)
    }

    fn insert_returning_id(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
    ) -> Result<Option<i64>, postgres::Error> {
        self.query_first(&format!("{sql} RETURNING id"), params, |row| row.try_get(0))
    }

    fn pending(&mut self) -> &mut PendingWrites {
        &mut self.pending
    }
}

/// Borrowed values as PostgreSQL parameters.
pub(super) fn bind<'v>(params: &'v [Value<'_>]) -> Vec<&'v (dyn ToSql + Sync)> {
    params
        .iter()
        .map(|value| match value {
            Value::Int(n) => n as &(dyn ToSql + Sync),
            Value::OptInt(n) => n as &(dyn ToSql + Sync),
            Value::Text(text) => text as &(dyn ToSql + Sync),
            Value::OptText(text) => text as &(dyn ToSql + Sync),
        })
        .collect()
}

/// `r.column + excluded.column`, saturating at [`SATURATED`] (PostgreSQL would fail the
/// transaction with "bigint out of range"): added as `numeric`, which cannot overflow.
fn saturating_add(column: &str) -> String {
    format!("least(r.{column}::numeric + excluded.{column}, {SATURATED})::int8")
}
