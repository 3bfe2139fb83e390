//! The rule book's scenarios through both databases' ledgers: each must leave the same derived
//! state as the in-memory ledger ([`crate::domain::lifecycle::memory`]), read back through the
//! shared row mapping. A dialect difference that changes a result (PostgreSQL sorts NULLs
//! last, SQLite first) fails here, without a server.
//!
//! Each scenario is one commit group, as the writer commits them, so folded writes are
//! covered too. PostgreSQL is the machine's (`HOOKWATCH_TEST_POSTGRES_URL`, else
//! `postgres://postgres@127.0.0.1:5432/test`); each run makes a database of its own and drops
//! it. When PostgreSQL cannot be reached the test fails and says how to provide it.

use std::collections::BTreeMap;

use crate::domain::lifecycle::memory::{Derived, SessionRow, UsageRow};
use crate::domain::lifecycle::tests::{Script, scenarios};
use crate::store::rows::{
    AGENT_COLUMNS, StoredRow, TOOL_CALL_COLUMNS, agent_from_row, execution_totals_from_row,
    tool_call_from_row,
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
fn read_derived(mut query: impl FnMut(&str) -> Vec<Vec<Cell>>) -> Derived {
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
        let session = SessionRow {
            source_app: row.text(1).unwrap(),
            started_at: row.int(2).unwrap(),
            last_seen: row.int(3).unwrap(),
            ended_at: row.opt_int(4).unwrap(),
            end_reason: row.opt_text(5).unwrap(),
            cwd: row.opt_text(6).unwrap(),
            model: row.opt_text(7).unwrap(),
            events: row.int(8).unwrap(),
            prompts: row.int(9).unwrap(),
            tool_calls: row.int(10).unwrap(),
        };
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
    use super::sqlite::ledger::SqliteLedger;
    use super::sqlite::schema::{Durability, open_writer};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let wal_bytes = crate::retention::DEFAULT_WAL_BYTES;
    let conn = open_writer(&path, Durability::Normal, wal_bytes).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut ledger = SqliteLedger::new(&conn);
    script.apply_to(&mut ledger).unwrap();
    ledger.flush().unwrap();
    conn.execute_batch("COMMIT").unwrap();
    read_derived(|sql| {
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
    use super::postgres::ledger::{PostgresLedger, Statements};
    let database = PostgresDatabase::create();
    let mut client = super::postgres::schema::connect(&database.url).unwrap();
    super::postgres::schema::migrate(&mut client).unwrap();
    let mut statements = Statements::default();
    let mut transaction = client.transaction().unwrap();
    let mut ledger = PostgresLedger::new(&mut transaction, &mut statements, 0);
    script.apply_to(&mut ledger).unwrap();
    ledger.flush().unwrap();
    transaction.commit().unwrap();
    read_derived(|sql| {
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
