//! Connecting to PostgreSQL and migrating its schema.
//!
//! Migrations are numbered in `hookwatch_schema` and each runs in its own transaction. Several
//! instances may start at once against one database: every migration run holds a session
//! advisory lock, so one instance migrates and the others wait, then find nothing left to do.
//! A database that holds an `events` table but no `hookwatch_schema` is someone else's and is
//! refused, never written to.

use postgres::{Client, NoTls};

use crate::store::StoreError;
use crate::store::sql::Dialect;

/// The advisory lock key that serialises migrations ("hkwt-mig").
const MIGRATION_LOCK: i64 = 0x0068_6b77_746d_6967;

/// The migrations in order: version N is the N-th.
fn migrations() -> Vec<String> {
    use crate::store::migrations::{
        SENT_SESSION_ID, SESSION_USAGE, event_tables, shared_migrations,
    };
    let ddl = |template: &str| Dialect::Postgres.ddl(template);
    let mut migrations = vec![
        // 1: events, what is derived from them, rollups and transcript usage: the SQLite
        // schema at its version 4, in PostgreSQL's types. Every event updates its session (and
        // often its agent): no index holds a column that changes on every event (only
        // `seen_minute`, once a minute), and pages keep room, so those updates are HOT.
        [
            &event_tables(Dialect::Postgres),
            // An agent's current tool: its newest running call, read in index order (ties by
            // id).
            "CREATE INDEX tool_calls_running ON tool_calls (agent_key, started_at, id)
                WHERE status = 'running';",
            ROLLUPS,
            &ddl(SESSION_USAGE),
        ]
        .concat(),
        // 2
        SENT_SESSION_ID.to_owned(),
        // 3: the store's identity, made once and shared by every instance on this database:
        // the Redis cache's keys carry it, so two stores on one Redis never see each other's
        // values.
        "CREATE TABLE hookwatch_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         INSERT INTO hookwatch_meta (key, value)
             VALUES ('store_id', substr(md5(random()::text || clock_timestamp()::text), 1, 16));"
            .to_owned(),
    ];
    // 4 on: the same DDL as SQLite's from its 7 on.
    migrations.extend(shared_migrations(Dialect::Postgres));
    migrations
}

/// Minute and hour rollups (migration 1).
const ROLLUPS: &str = r#"
    -- Rollups are sharded: each writer connection adds to its own row of a key (`shard`), so
    -- concurrent writers never queue on the current minute's rows. Reads sum over shards.
    CREATE TABLE execution_rollup (
        bucket          BIGINT NOT NULL,
        agent_type      TEXT NOT NULL,
        shard           SMALLINT NOT NULL,
        executions      BIGINT NOT NULL,
        successes       BIGINT NOT NULL,
        failures        BIGINT NOT NULL,
        duration_sum_ms BIGINT NOT NULL,
        duration_count  BIGINT NOT NULL,
        tokens          BIGINT NOT NULL,
        cost_nanos      BIGINT NOT NULL,
        PRIMARY KEY (bucket, agent_type, shard)
    );
    CREATE TABLE execution_rollup_hour (LIKE execution_rollup INCLUDING ALL);

    CREATE TABLE tool_rollup (
        bucket     BIGINT NOT NULL,
        tool_name  TEXT NOT NULL,
        agent_type TEXT NOT NULL,
        shard      SMALLINT NOT NULL,
        calls      BIGINT NOT NULL,
        PRIMARY KEY (bucket, tool_name, agent_type, shard)
    );
    CREATE TABLE tool_rollup_hour (LIKE tool_rollup INCLUDING ALL);

    CREATE TABLE event_rollup (
        bucket          BIGINT NOT NULL,
        source_app      TEXT NOT NULL,
        hook_event_type TEXT NOT NULL,
        shard           SMALLINT NOT NULL,
        events          BIGINT NOT NULL,
        PRIMARY KEY (bucket, source_app, hook_event_type, shard)
    );

"#;

/// The store's identity (made by migration 3).
pub(crate) fn store_id(client: &mut Client) -> Result<String, StoreError> {
    client
        .query_one(
            "SELECT value FROM hookwatch_meta WHERE key = 'store_id'",
            &[],
        )
        .and_then(|row| row.try_get(0))
        .map_err(|e| StoreError::Internal(format!("could not read the store id: {}", describe(&e))))
}

/// The connection broke (the server restarted, the network failed): nothing the statement
/// did can have committed unless it was the COMMIT itself, and a new connection may succeed.
pub(crate) fn is_connection_error(e: &postgres::Error) -> bool {
    e.is_closed() || e.as_db_error().is_none() && e.code().is_none()
}

pub(crate) fn db_error(e: postgres::Error) -> StoreError {
    if is_connection_error(&e) {
        return StoreError::Unreachable(e.to_string());
    }
    match e.code() {
        // disk_full, insufficient_resources, out_of_memory, read_only_sql_transaction
        Some(code) if matches!(code.code(), "53100" | "53000" | "53200" | "25006") => {
            StoreError::Unwritable(describe(&e))
        }
        Some(code) if code.code() == "57014" => StoreError::ReadTimeout,
        // serialization_failure, deadlock_detected, lock_not_available, and the server
        // shutting down or restarting (admin_shutdown, crash_shutdown, cannot_connect_now)
        Some(code)
            if matches!(
                code.code(),
                "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03"
            ) =>
        {
            StoreError::Busy(describe(&e))
        }
        _ => StoreError::Internal(describe(&e)),
    }
}

/// The server's own message and code where there is one (`Display` says only "db error").
pub(crate) fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// Connects with `url`, naming the connection after this process in `pg_stat_activity`.
pub(crate) fn connect(url: &str) -> Result<Client, StoreError> {
    let mut config: postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Internal(format!("invalid --database-url: {e}")))?;
    if config.get_application_name().is_none() {
        config.application_name("hookwatch");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(5));
    }
    config.connect(NoTls).map_err(|e| {
        StoreError::Unreachable(format!(
            "could not connect to PostgreSQL at {}: {e}",
            shown_url(url)
        ))
    })
}

/// `url` without its password, for messages and logs.
pub(crate) fn shown_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Brings the schema to the newest version, one instance at a time.
pub(crate) fn migrate(client: &mut Client) -> Result<(), StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .map_err(db_error)?;
    let result = migrate_locked(client);
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    result
}

fn migrate_locked(client: &mut Client) -> Result<(), StoreError> {
    let owned: bool = client
        .query_one("SELECT to_regclass('hookwatch_schema') IS NOT NULL", &[])
        .map_err(db_error)?
        .get(0);
    if !owned {
        let foreign: bool = client
            .query_one("SELECT to_regclass('events') IS NOT NULL", &[])
            .map_err(db_error)?
            .get(0);
        if foreign {
            return Err(StoreError::Foreign(
                "the database has an `events` table but no hookwatch_schema; refusing to touch it"
                    .into(),
            ));
        }
        client
            .batch_execute(
                "CREATE TABLE hookwatch_schema (version BIGINT NOT NULL);
                 INSERT INTO hookwatch_schema VALUES (0);",
            )
            .map_err(db_error)?;
    }
    let current: i64 = client
        .query_one("SELECT version FROM hookwatch_schema", &[])
        .map_err(db_error)?
        .get(0);
    let current = current as usize;
    let migrations = migrations();
    for (version, sql) in crate::store::migrations::pending(current, &migrations)? {
        let version = version as i64;
        let mut transaction = client.transaction().map_err(db_error)?;
        transaction
            .batch_execute(sql)
            .and_then(|()| {
                transaction.execute("UPDATE hookwatch_schema SET version = $1", &[&version])
            })
            .map_err(|e| StoreError::Internal(format!("migration {version} failed: {e}")))?;
        transaction.commit().map_err(db_error)?;
        tracing::info!(version, "postgres schema migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(
            shown_url("postgres://hw:secret@db:5432/hookwatch"),
            "postgres://hw:***@db:5432/hookwatch"
        );
        assert_eq!(
            shown_url("postgres://hw@db/hookwatch"),
            "postgres://hw@db/hookwatch"
        );
        assert_eq!(shown_url("host=db user=hw"), "host=db user=hw");
    }
}
