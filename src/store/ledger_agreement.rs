//! The rule book's scenarios through both databases' ledgers: each must leave the same derived
//! state as the in-memory ledger ([`crate::domain::lifecycle::memory`]), read back through the
//! shared row mapping. Telemetry too: batches committed one by one must leave the rollups,
//! the session-free totals and the sessions' sums that the domain's fold
//! ([`crate::domain::telemetry::UsageFold`]) and the one-truth rule give in memory. A dialect difference that changes a result (PostgreSQL sorts NULLs
//! last, SQLite first) fails here, without a server.
//!
//! Each scenario is one commit group, as the writer commits them, so folded writes are
//! covered too. PostgreSQL is the machine's (`HOOKWATCH_TEST_POSTGRES_URL`, else
//! `postgres://postgres@127.0.0.1:5432/test`); each run makes a database of its own and drops
//! it. When PostgreSQL cannot be reached the test fails and says how to provide it.

use std::collections::BTreeMap;

use crate::domain::lifecycle::memory::{Derived, UsageRow};
use crate::domain::lifecycle::tests::{Script, scenarios};
use crate::store::rows::{
    AGENT_COLUMNS, StoredRow, TOOL_CALL_COLUMNS, agent_from_row, execution_totals_from_row,
    session_row, tool_call_from_row,
};

/// A row read into plain values, so both databases' rows go through one reader.
#[derive(Debug, Clone)]
enum Cell {
    Null,
    Int(i64),
    Text(String),
}

#[derive(Debug)]
struct WrongType(#[expect(dead_code, reason = "shown by Debug when a test fails")] usize);

impl StoredRow for Vec<Cell> {
    type Error = WrongType;

    fn int(&self, column: usize) -> Result<i64, WrongType> {
        self.opt_int(column)?.ok_or(WrongType(column))
    }

    fn opt_int(&self, column: usize) -> Result<Option<i64>, WrongType> {
        match &self[column] {
            Cell::Null => Ok(None),
            Cell::Int(n) => Ok(Some(*n)),
            Cell::Text(_) => Err(WrongType(column)),
        }
    }

    fn text(&self, column: usize) -> Result<String, WrongType> {
        self.opt_text(column)?.ok_or(WrongType(column))
    }

    fn opt_bytes(&self, column: usize) -> Result<Option<Vec<u8>>, WrongType> {
        match &self[column] {
            Cell::Null => Ok(None),
            _ => Err(WrongType(column)),
        }
    }

    fn opt_text(&self, column: usize) -> Result<Option<String>, WrongType> {
        match &self[column] {
            Cell::Null => Ok(None),
            Cell::Text(t) => Ok(Some(t.clone())),
            Cell::Int(_) => Err(WrongType(column)),
        }
    }
}

/// The queries that read derived state back, the same text for both databases (rollups summed
/// over PostgreSQL's shards).
fn read_derived(query: &mut dyn FnMut(&str) -> Vec<Vec<Cell>>) -> Derived {
    let sum = |c: &str| format!("CAST(sum({c}) AS BIGINT)");
    let agents = query(&format!("SELECT {AGENT_COLUMNS} FROM agents"))
        .iter()
        .map(|row| agent_from_row(row).unwrap())
        .map(|agent| (agent.key.clone(), agent))
        .collect();
    let tool_calls = query(&format!("SELECT {TOOL_CALL_COLUMNS} FROM tool_calls"))
        .iter()
        .map(|row| tool_call_from_row(row).unwrap())
        .collect();
    let executions = query(&format!(
        "SELECT bucket, agent_type, {}, {}, {}, {}, {}, {}, {} FROM execution_rollup
         GROUP BY bucket, agent_type",
        sum("executions"),
        sum("successes"),
        sum("failures"),
        sum("duration_sum_ms"),
        sum("duration_count"),
        sum("tokens"),
        sum("cost_nanos")
    ))
    .iter()
    .map(|row| {
        let totals = execution_totals_from_row(row, 1).unwrap();
        ((row.int(0).unwrap(), totals.agent_type.clone()), totals)
    })
    .collect();
    let keyed = |rows: Vec<Vec<Cell>>| -> BTreeMap<(i64, String, String), i64> {
        rows.iter()
            .map(|row| {
                let key = (
                    row.int(0).unwrap(),
                    row.text(1).unwrap(),
                    row.text(2).unwrap(),
                );
                (key, row.int(3).unwrap())
            })
            .collect()
    };
    let tool_uses = keyed(query(&format!(
        "SELECT bucket, tool_name, agent_type, {} FROM tool_rollup
         GROUP BY bucket, tool_name, agent_type",
        sum("calls")
    )));
    let event_counts = keyed(query(&format!(
        "SELECT bucket, source_app, hook_event_type, {} FROM event_rollup
         GROUP BY bucket, source_app, hook_event_type",
        sum("events")
    )));
    let sessions = query(
        "SELECT session_id, source_app, started_at, last_seen, ended_at, end_reason, cwd, model,
                event_count, prompt_count, tool_call_count FROM sessions",
    )
    .iter()
    .map(|row| {
        let session = session_row(row).unwrap();
        (row.text(0).unwrap(), session)
    })
    .collect();
    let session_usage = query(
        "SELECT session_id, ts, model, input_tokens, output_tokens, cache_creation_tokens,
                cache_read_tokens, cost_nanos FROM session_usage",
    )
    .iter()
    .map(|row| UsageRow {
        session_id: row.text(0).unwrap(),
        at: row.int(1).unwrap(),
        model: row.text(2).unwrap(),
        usage: (
            row.int(3).unwrap(),
            row.int(4).unwrap(),
            row.int(5).unwrap(),
            row.int(6).unwrap(),
        ),
        cost_nanos: row.int(7).unwrap(),
    })
    .collect();
    Derived {
        agents,
        tool_calls,
        executions,
        tool_uses,
        event_counts,
        sessions,
        session_usage,
    }
    .normalized()
}

fn sqlite_derived(script: &Script) -> Derived {
    on_sqlite(
        &[|ledger: &mut super::sqlite::ledger::SqliteLedger<'_>| script.apply_to(ledger).unwrap()],
        read_derived,
    )
}

/// Runs each of `transactions` in a commit of its own on a new SQLite file's writer, then
/// `read`s the file.
fn on_sqlite<T>(
    transactions: &[impl Fn(&mut super::sqlite::ledger::SqliteLedger<'_>)],
    read: impl FnOnce(&mut dyn FnMut(&str) -> Vec<Vec<Cell>>) -> T,
) -> T {
    use super::sqlite::ledger::SqliteLedger;
    use super::sqlite::schema::{Durability, open_writer};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let wal_bytes = crate::retention::DEFAULT_WAL_BYTES;
    let conn = open_writer(&path, Durability::Normal, wal_bytes).unwrap();
    for transaction in transactions {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        let mut ledger = SqliteLedger::new(&conn);
        transaction(&mut ledger);
        ledger.flush().unwrap();
        conn.execute_batch("COMMIT").unwrap();
    }
    read(&mut |sql| {
        let mut statement = conn.prepare(sql).unwrap();
        let columns = statement.column_count();
        statement
            .query_map([], |row| {
                (0..columns)
                    .map(|i| {
                        Ok(match row.get_ref(i)? {
                            rusqlite::types::ValueRef::Null => Cell::Null,
                            rusqlite::types::ValueRef::Integer(n) => Cell::Int(n),
                            rusqlite::types::ValueRef::Text(t) => {
                                Cell::Text(String::from_utf8_lossy(t).into_owned())
                            }
                            other => panic!("unexpected value {other:?} in {sql}"),
                        })
                    })
                    .collect()
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    })
}

/// A database of the machine's PostgreSQL for this test alone, dropped afterwards.
struct PostgresDatabase {
    admin: postgres::Client,
    name: String,
    url: String,
}

impl PostgresDatabase {
    fn create() -> Self {
        let admin_url = std::env::var("HOOKWATCH_TEST_POSTGRES_URL")
            .ok()
            .filter(|url| !url.is_empty())
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let mut admin =
            postgres::Client::connect(&admin_url, postgres::NoTls).unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL is not reachable at {admin_url}: {e}. This test needs a server: \
                 `apt-get install postgresql` and start it with trust auth for 127.0.0.1, or set \
                 HOOKWATCH_TEST_POSTGRES_URL to a role that may CREATE DATABASE."
                )
            });
        let name = format!(
            "hookwatch_ledger_{}_{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(b, _)| b);
        Self {
            url: format!("{base}/{name}"),
            admin,
            name,
        }
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let _ = self.admin.batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

fn postgres_derived(script: &Script) -> Derived {
    on_postgres(
        &[
            |ledger: &mut super::postgres::ledger::PostgresLedger<'_, '_>| {
                script.apply_to(ledger).unwrap()
            },
        ],
        read_derived,
    )
}

/// Runs each of `transactions` in a commit of its own in a new PostgreSQL database, then
/// `read`s it.
fn on_postgres<T>(
    transactions: &[impl Fn(&mut super::postgres::ledger::PostgresLedger<'_, '_>)],
    read: impl FnOnce(&mut dyn FnMut(&str) -> Vec<Vec<Cell>>) -> T,
) -> T {
    use super::postgres::ledger::{PostgresLedger, Statements};
    let database = PostgresDatabase::create();
    let mut client = super::postgres::schema::connect(&database.url).unwrap();
    super::postgres::schema::migrate(&mut client).unwrap();
    let mut statements = Statements::default();
    for apply in transactions {
        let mut transaction = client.transaction().unwrap();
        let mut ledger = PostgresLedger::new(&mut transaction, &mut statements, 0);
        apply(&mut ledger);
        ledger.flush().unwrap();
        transaction.commit().unwrap();
    }
    read(&mut |sql| {
        client
            .query(sql, &[])
            .unwrap()
            .iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| match *row.columns()[i].type_() {
                        postgres::types::Type::INT8 => {
                            row.get::<_, Option<i64>>(i).map_or(Cell::Null, Cell::Int)
                        }
                        postgres::types::Type::INT4 => row
                            .get::<_, Option<i32>>(i)
                            .map_or(Cell::Null, |n| Cell::Int(n.into())),
                        _ => row
                            .get::<_, Option<String>>(i)
                            .map_or(Cell::Null, Cell::Text),
                    })
                    .collect()
            })
            .collect()
    })
}

#[test]
fn sqlite_and_postgres_ledgers_agree_with_the_rule_book() {
    for (name, script) in scenarios() {
        let expected = script.derived();
        assert_eq!(sqlite_derived(&script), expected, "SQLite: {name}");
        assert_eq!(postgres_derived(&script), expected, "PostgreSQL: {name}");
    }
}

/// What telemetry leaves in a database: the minute rollup rows (key and source → sums), the
/// session-free minute totals (key → sums; rows that settled to nothing left out), and each
/// session's row (first and last minute, then its sums).
#[derive(Debug, PartialEq, Eq)]
struct TelemetryState {
    rollups: BTreeMap<Vec<String>, Vec<i64>>,
    totals: BTreeMap<Vec<String>, Vec<i64>>,
    sessions: BTreeMap<String, Vec<i64>>,
}

/// Batches of Claude Code's telemetry, each one commit: a session whose counters came before
/// its first request (their count is taken back out), one with counters only, one with errors
/// only, one with requests only, over two models, minutes and hours, and a running total.
fn telemetry_batches() -> Vec<crate::domain::telemetry::TelemetryBatch> {
    use crate::domain::telemetry::{TelemetryBatch, TelemetryEventRow, TelemetryPointRow};
    let minute = 60_000;
    let event = |n: usize, kind: &str, session: &str, model: &str, at_ms: i64, cost: i64| {
        TelemetryEventRow {
            kind: kind.into(),
            dedup_key: format!("e{n}"),
            session_id: Some(session.into()),
            model: Some(model.into()),
            at_ms,
            cost_nanos: (kind == "api_request").then_some(cost),
            input_tokens: (kind == "api_request").then_some(cost / 10),
            duration_ms: Some(400 + cost % 1_000),
            user_email: Some("dev@example.com".into()),
            agent_type: Some("main".into()),
            ..TelemetryEventRow::default()
        }
    };
    let point = |n: usize, session: &str, metric: &str, time_ms: i64, value: i64, delta: i64| {
        TelemetryPointRow {
            metric: metric.into(),
            dedup_key: format!("p{n}"),
            session_id: Some(session.into()),
            model: Some("opus".into()),
            value_nanos: value,
            time_ms,
            delta,
            agent_type: Some("main".into()),
            ..TelemetryPointRow::default()
        }
    };
    vec![
        TelemetryBatch {
            events: vec![
                event(1, "api_request", "d", "sonnet", minute, 7_000),
                event(2, "api_error", "c", "opus", 2 * minute, 0),
            ],
            points: vec![
                point(1, "a", "cost", 3 * minute, 5_000, 1),
                point(2, "a", "tokens.input", 3 * minute, 2_000_000_000, 1),
                point(3, "b", "cost", 61 * minute, 9_000, 1),
                point(4, "b", "cost", 62 * minute, 99_000, 0),
            ],
        },
        TelemetryBatch {
            events: vec![
                event(3, "api_request", "a", "opus", 65 * minute, 3_000),
                event(4, "api_request", "d", "opus", 66 * minute, 1_000),
                event(5, "api_error", "c", "opus", 120 * minute, 0),
            ],
            points: vec![point(5, "a", "cost", 65 * minute, 3_000, 1)],
        },
        TelemetryBatch {
            events: vec![event(6, "api_request", "a", "sonnet", 4 * minute, 2_000)],
            points: vec![point(6, "b", "cost", 121 * minute, 1_000, 1)],
        },
    ]
}

/// The state the batches leave, worked out in memory from the domain's fold and the one-truth
/// rule: events always count; a session's points only when it has no `api_request` at all.
fn telemetry_expected(batches: &[crate::domain::telemetry::TelemetryBatch]) -> TelemetryState {
    use crate::domain::telemetry::{Rollup, UsageFold, UsageSource, UsageSums};
    let sums = |s: &UsageSums| {
        vec![
            s.cost_nanos,
            s.tokens[0],
            s.tokens[1],
            s.tokens[2],
            s.tokens[3],
            s.requests,
            s.errors,
        ]
    };
    let mut rollups: BTreeMap<(i64, Vec<String>, UsageSource), UsageSums> = BTreeMap::new();
    let mut with_requests = std::collections::BTreeSet::new();
    for batch in batches {
        let mut fold = UsageFold::default();
        batch.events.iter().for_each(|e| fold.add_event(e));
        batch.points.iter().for_each(|p| fold.add_point(p));
        for ((rollup, key, source), add) in fold.usage {
            if rollup == Rollup::Minute {
                let names = vec![
                    key.session_id,
                    key.model,
                    key.agent_type,
                    key.user_key,
                    key.organization_id,
                ];
                rollups
                    .entry((key.bucket, names, source))
                    .or_default()
                    .add(&add);
            }
        }
        for (session, fold) in fold.sessions {
            if fold.api_requests > 0 {
                with_requests.insert(session);
            }
        }
    }
    let mut state = TelemetryState {
        rollups: BTreeMap::new(),
        totals: BTreeMap::new(),
        sessions: BTreeMap::new(),
    };
    let mut totals: BTreeMap<Vec<String>, UsageSums> = BTreeMap::new();
    let mut sessions: BTreeMap<String, (i64, i64, UsageSums)> = BTreeMap::new();
    for ((bucket, names, source), add) in &rollups {
        let mut key = vec![bucket.to_string()];
        key.extend(names.iter().cloned());
        key.push(source.as_str().to_owned());
        state.rollups.insert(key, sums(add));
        let session = &names[0];
        let counts = *source == UsageSource::Event || !with_requests.contains(session);
        let entry =
            sessions
                .entry(session.clone())
                .or_insert((*bucket, *bucket, UsageSums::default()));
        (entry.0, entry.1) = (entry.0.min(*bucket), entry.1.max(*bucket));
        if counts {
            entry.2.add(add);
            let mut key = vec![bucket.to_string()];
            key.extend(names[1..].iter().cloned());
            totals.entry(key).or_default().add(add);
        }
    }
    state.totals = totals
        .iter()
        .map(|(key, add)| (key.clone(), sums(add)))
        .filter(|(_, sums)| sums.iter().any(|&n| n != 0))
        .collect();
    state.sessions = sessions
        .into_iter()
        .map(|(session, (first, last, add))| {
            let mut row = vec![first, last];
            row.extend(sums(&add));
            (session, row)
        })
        .collect();
    state
}

/// The state a database holds, read through the shared row reader.
fn read_telemetry(query: &mut dyn FnMut(&str) -> Vec<Vec<Cell>>) -> TelemetryState {
    let columns = super::telemetry::SUM_COLUMNS
        .map(|c| format!("CAST({c} AS BIGINT)"))
        .join(", ");
    let summed = super::telemetry::SUM_COLUMNS
        .map(|c| format!("CAST(sum({c}) AS BIGINT)"))
        .join(", ");
    let split = |row: &Vec<Cell>, texts: usize| -> (Vec<String>, Vec<i64>) {
        let mut key = Vec::new();
        let mut values = Vec::new();
        for (i, cell) in row.iter().enumerate() {
            match cell {
                Cell::Int(n) if i == 0 || i >= texts => {
                    if i == 0 {
                        key.push(n.to_string())
                    } else {
                        values.push(*n)
                    }
                }
                Cell::Text(t) => key.push(t.clone()),
                other => panic!("column {i}: {other:?}"),
            }
        }
        (key, values)
    };
    let rollups = query(&format!(
        "SELECT bucket, session_id, model, agent_type, user_key, organization_id, source, \
         {columns} FROM usage_rollup"
    ))
    .iter()
    .map(|row| split(row, 7))
    .collect();
    let totals = query(&format!(
        "SELECT bucket, model, agent_type, user_key, organization_id, {summed} \
         FROM usage_totals GROUP BY bucket, model, agent_type, user_key, organization_id"
    ))
    .iter()
    .map(|row| split(row, 5))
    .filter(|(_, sums)| sums.iter().any(|&n| n != 0))
    .collect();
    let sessions = query(&format!(
        "SELECT session_id, first_bucket, last_bucket, {columns} FROM telemetry_sessions"
    ))
    .iter()
    .map(|row| {
        let Cell::Text(session) = &row[0] else {
            panic!("a session id: {row:?}")
        };
        let values = row[1..]
            .iter()
            .map(|cell| match cell {
                Cell::Int(n) => *n,
                other => panic!("{other:?}"),
            })
            .collect();
        (session.clone(), values)
    })
    .collect();
    TelemetryState {
        rollups,
        totals,
        sessions,
    }
}

#[test]
fn sqlite_and_postgres_telemetry_agree_with_the_domains_fold() {
    let batches = telemetry_batches();
    let expected = telemetry_expected(&batches);
    assert_eq!(expected.sessions.len(), 4, "{expected:?}");
    // Session a's counters were taken back out once its first request came.
    assert_eq!(
        expected.sessions["a"][2], 5_000,
        "{:?}",
        expected.sessions["a"]
    );
    let sqlite = on_sqlite(
        &batches
            .iter()
            .map(|batch| {
                move |ledger: &mut super::sqlite::ledger::SqliteLedger<'_>| {
                    super::telemetry::record(ledger, batch).unwrap();
                }
            })
            .collect::<Vec<_>>(),
        read_telemetry,
    );
    assert_eq!(sqlite, expected, "SQLite");
    let postgres = on_postgres(
        &batches
            .iter()
            .map(|batch| {
                move |ledger: &mut super::postgres::ledger::PostgresLedger<'_, '_>| {
                    super::telemetry::record(ledger, batch).unwrap();
                }
            })
            .collect::<Vec<_>>(),
        read_telemetry,
    );
    assert_eq!(postgres, expected, "PostgreSQL");
}
