//! Opening the database file and migrating it.
//!
//! Migrations are numbered by `PRAGMA user_version` and each runs in its own transaction, so a
//! crash mid-migration leaves the previous version intact. `PRAGMA application_id` marks the file
//! as hookwatch's: a file that has tables but not our id is refused, never written to.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::store::StoreError;
use crate::store::sql::Dialect;

/// Bytes per database page for new files.
const PAGE_SIZE: usize = 2048;

/// "HkWt" in ASCII.
const APPLICATION_ID: i64 = 0x486b_5774;

/// The migrations in order: version N is the N-th.
fn migrations() -> Vec<String> {
    use crate::store::migrations::{
        SENT_SESSION_ID, SESSION_USAGE, event_tables, shared_migrations,
    };
    let ddl = |template: &str| Dialect::Sqlite.ddl(template);
    let mut migrations = vec![
        // 1: events, what is derived from them, and rollups.
        event_tables(Dialect::Sqlite) + ROLLUPS,
        // 2: hourly rollups, so long ranges read hours instead of minutes.
        HOUR_ROLLUPS.to_owned(),
        // 3: tokens the main agent of a session used, read from its transcript.
        ddl(SESSION_USAGE),
        // 4: an agent's current tool (its newest tool call still running) without reading all
        // of its calls: agents that ran for hours have thousands.
        "CREATE INDEX tool_calls_running ON tool_calls (agent_key, started_at)
            WHERE status = 'running';"
            .to_owned(),
        // 5
        SENT_SESSION_ID.to_owned(),
        // 6: the store's identity, made once: the Redis cache's keys carry it, so two stores
        // on one Redis never see each other's values.
        "CREATE TABLE hookwatch_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
         INSERT INTO hookwatch_meta (key, value) VALUES ('store_id', lower(hex(randomblob(8))));"
            .to_owned(),
    ];
    // 7 on: the same DDL as PostgreSQL's from its 4 on.
    migrations.extend(shared_migrations(Dialect::Sqlite));
    migrations
}

/// Minute rollups (migration 1): SQLite has one writer, so one row per key.
const ROLLUPS: &str = r#"
    CREATE TABLE execution_rollup (
        bucket          INTEGER NOT NULL,
        agent_type      TEXT NOT NULL,
        executions      INTEGER NOT NULL,
        successes       INTEGER NOT NULL,
        failures        INTEGER NOT NULL,
        duration_sum_ms INTEGER NOT NULL,
        duration_count  INTEGER NOT NULL,
        tokens          INTEGER NOT NULL,
        cost_nanos      INTEGER NOT NULL,
        PRIMARY KEY (bucket, agent_type)
    ) WITHOUT ROWID;

    CREATE TABLE tool_rollup (
        bucket     INTEGER NOT NULL,
        tool_name  TEXT NOT NULL,
        agent_type TEXT NOT NULL,
        calls      INTEGER NOT NULL,
        PRIMARY KEY (bucket, tool_name, agent_type)
    ) WITHOUT ROWID;

    CREATE TABLE event_rollup (
        bucket          INTEGER NOT NULL,
        source_app      TEXT NOT NULL,
        hook_event_type TEXT NOT NULL,
        events          INTEGER NOT NULL,
        PRIMARY KEY (bucket, source_app, hook_event_type)
    ) WITHOUT ROWID;
"#;

/// Hour rollups (migration 2), filled from the minute rollups already there.
const HOUR_ROLLUPS: &str = r#"
    CREATE TABLE execution_rollup_hour (
        bucket          INTEGER NOT NULL,
        agent_type      TEXT NOT NULL,
        executions      INTEGER NOT NULL,
        successes       INTEGER NOT NULL,
        failures        INTEGER NOT NULL,
        duration_sum_ms INTEGER NOT NULL,
        duration_count  INTEGER NOT NULL,
        tokens          INTEGER NOT NULL,
        cost_nanos      INTEGER NOT NULL,
        PRIMARY KEY (bucket, agent_type)
    ) WITHOUT ROWID;
    INSERT INTO execution_rollup_hour
        SELECT bucket / 3600000 * 3600000 AS hour, agent_type, sum(executions), sum(successes),
               sum(failures), sum(duration_sum_ms), sum(duration_count), sum(tokens),
               sum(cost_nanos)
        FROM execution_rollup GROUP BY hour, agent_type;

    CREATE TABLE tool_rollup_hour (
        bucket     INTEGER NOT NULL,
        tool_name  TEXT NOT NULL,
        agent_type TEXT NOT NULL,
        calls      INTEGER NOT NULL,
        PRIMARY KEY (bucket, tool_name, agent_type)
    ) WITHOUT ROWID;
    INSERT INTO tool_rollup_hour
        SELECT bucket / 3600000 * 3600000 AS hour, tool_name, agent_type, sum(calls)
        FROM tool_rollup GROUP BY hour, tool_name, agent_type;
    "#;

/// The store's identity (made by migration 6).
pub(crate) fn store_id(conn: &Connection) -> Result<String, StoreError> {
    conn.query_row(
        "SELECT value FROM hookwatch_meta WHERE key = 'store_id'",
        [],
        |row| row.get(0),
    )
    .map_err(db_error)
}

/// How the writer syncs commits: `Full` survives power loss, `Normal` survives a process crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    #[default]
    Full,
    Normal,
}

impl std::str::FromStr for Durability {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.to_ascii_lowercase().as_str() {
            "full" => Ok(Self::Full),
            "normal" => Ok(Self::Normal),
            other => Err(format!("unknown durability {other:?}: use full or normal")),
        }
    }
}

/// A full disk or an I/O error says so (starting on a full disk must never read as a foreign
/// or broken file); anything else is the database's own error.
fn db_error(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull | ErrorCode::SystemIoFailure | ErrorCode::ReadOnly) => {
            StoreError::Unwritable(e.to_string())
        }
        _ => StoreError::Internal(e.to_string()),
    }
}

/// Reading the file's identity failed: only a file that is not a database at all is foreign.
fn ownership_error(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => StoreError::Foreign(e.to_string()),
        _ => db_error(e),
    }
}

/// The writer's connection, through the VFS that writes each commit's WAL frames in a few
/// calls instead of two per page (`crates/sqlite-wal-buffer`, the `wal-buffer` feature, on by
/// default): a third of the writer's time went to those calls (BENCHMARKS.md).
#[cfg(feature = "wal-buffer")]
fn open_writer_connection(path: &Path) -> Result<Connection, StoreError> {
    sqlite_wal_buffer::register().map_err(StoreError::Internal)?;
    Connection::open_with_flags_and_vfs(path, OpenFlags::default(), sqlite_wal_buffer::VFS_NAME)
        .map_err(db_error)
}

/// The writer's connection, through SQLite's own VFS (built without `wal-buffer`).
#[cfg(not(feature = "wal-buffer"))]
fn open_writer_connection(path: &Path) -> Result<Connection, StoreError> {
    Connection::open_with_flags(path, OpenFlags::default()).map_err(db_error)
}

/// Opens (creating if needed) and migrates the database; returns the writer's connection.
pub(crate) fn open_writer(
    path: &Path,
    durability: Durability,
    wal_bytes: u64,
) -> Result<Connection, StoreError> {
    let conn = open_writer_connection(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(db_error)?;
    check_ownership(&conn)?;
    // Takes effect only when the file is new (before WAL mode and the first table). Each event
    // dirties a page in indexes ordered by session, and every dirty page is written to the WAL
    // at commit; smaller pages halve those bytes. Measured +25 % ingest (BENCHMARKS.md).
    // Also only for new files: pages freed by pruning can be handed back to the file system
    // (`PRAGMA incremental_vacuum`, run by the pruner) instead of only being reused.
    conn.execute_batch(&format!(
        "PRAGMA page_size = {PAGE_SIZE}; PRAGMA auto_vacuum = INCREMENTAL;"
    ))
    .map_err(db_error)?;
    let journal: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(db_error)?;
    if !journal.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Internal(format!(
            "could not enable WAL mode (got {journal})"
        )));
    }
    let frames = (wal_bytes / PAGE_SIZE as u64).max(1);
    let synchronous = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    // The writer's own checkpoint is the WAL's bound (64 MiB of 2 KiB frames, less under
    // --max-db-size: `Retention::wal_bytes`), and `journal_size_limit` truncates the WAL to it
    // when it starts over; the checkpointer thread copies nearly all of it first, so that one
    // is short (`checkpointer.rs`).
    // 8 MB of page cache holds the indexes' interior pages and the leaves active sessions
    // write to, on a store of a million events; pages it drops are re-read from the OS's cache.
    // Twice that bought no throughput and was a quarter of the server's peak RSS (BENCHMARKS.md).
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous};
         PRAGMA wal_autocheckpoint = {frames};
         PRAGMA journal_size_limit = {wal_bytes};
         PRAGMA cache_size = -8000;
         PRAGMA temp_store = MEMORY;
         PRAGMA foreign_keys = OFF;"
    ))
    .map_err(db_error)?;
    migrate(&conn)?;
    Ok(conn)
}

/// Opens the connection that runs checkpoints.
pub(crate) fn open_checkpointer(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(db_error)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(db_error)?;
    conn.execute_batch("PRAGMA cache_size = -1000;")
        .map_err(db_error)?;
    Ok(conn)
}

/// Opens a connection for reads only.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db_error)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(db_error)?;
    // 2 MB each: aggregate reads touch rollup pages only, and the read latencies on a store of
    // a million events were the same as with 4 MB (BENCHMARKS.md).
    conn.execute_batch("PRAGMA query_only = ON; PRAGMA cache_size = -2000;")
        .map_err(db_error)?;
    Ok(conn)
}

fn check_ownership(conn: &Connection) -> Result<(), StoreError> {
    let application_id: i64 = conn
        .query_row("PRAGMA application_id", [], |row| row.get(0))
        .map_err(ownership_error)?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
        .map_err(ownership_error)?;
    if application_id == APPLICATION_ID || (application_id == 0 && tables == 0) {
        Ok(())
    } else {
        Err(StoreError::Foreign(format!(
            "application_id is {application_id:#x} with {tables} schema objects; refusing to touch it"
        )))
    }
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let current: usize = conn
        .query_row("PRAGMA user_version", [], |row| row.get::<_, i64>(0))
        .map_err(db_error)? as usize;
    let migrations = migrations();
    for (version, sql) in crate::store::migrations::pending(current, &migrations)? {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE;
             {sql}
             PRAGMA application_id = {APPLICATION_ID};
             PRAGMA user_version = {version};
             COMMIT;"
        ))
        .map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            StoreError::Internal(format!("migration {version} failed: {e}"))
        })?;
    }
    Ok(())
}
