//! Opening the database file and migrating it.
//!
//! Migrations are numbered by `PRAGMA user_version` and each runs in its own transaction, so a
//! crash mid-migration leaves the previous version intact. `PRAGMA application_id` marks the file
//! as hookwatch's: a file that has tables but not our id is refused, never written to.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::store::StoreError;

/// Bytes per database page for new files.
const PAGE_SIZE: usize = 2048;

/// "HkWt" in ASCII.
const APPLICATION_ID: i64 = 0x486b_5774;

const MIGRATIONS: &[&str] = &[
    // 1: events, what is derived from them, and rollups.
    r#"
    CREATE TABLE events (
        id              INTEGER PRIMARY KEY,
        event_id        TEXT NOT NULL UNIQUE,
        ts              INTEGER NOT NULL,
        source_app      TEXT NOT NULL,
        session_id      TEXT NOT NULL,
        hook_event_type TEXT NOT NULL,
        tool_name       TEXT,
        tool_use_id     TEXT,
        agent_id        TEXT,
        model_name      TEXT,
        summary         TEXT,
        payload         TEXT NOT NULL,
        chat            TEXT,
        extra           TEXT
    );
    CREATE INDEX events_ts ON events(ts);
    CREATE INDEX events_session_ts ON events(session_id, ts);
    CREATE INDEX events_app_ts ON events(source_app, ts);
    CREATE INDEX events_type_ts ON events(hook_event_type, ts);
    CREATE INDEX events_tool_ts ON events(tool_name, ts) WHERE tool_name IS NOT NULL;

    CREATE TABLE event_types (
        hook_event_type TEXT PRIMARY KEY
    ) WITHOUT ROWID;

    CREATE TABLE sessions (
        session_id      TEXT PRIMARY KEY,
        source_app      TEXT NOT NULL,
        started_at      INTEGER NOT NULL,
        last_seen       INTEGER NOT NULL,
        ended_at        INTEGER,
        end_reason      TEXT,
        cwd             TEXT,
        model           TEXT,
        event_count     INTEGER NOT NULL DEFAULT 0,
        prompt_count    INTEGER NOT NULL DEFAULT 0,
        tool_call_count INTEGER NOT NULL DEFAULT 0,
        -- last_seen to the minute: what the indexes hold, so that an event moves a session's
        -- index entries at most once a minute instead of on every event.
        seen_minute     INTEGER NOT NULL
    );
    CREATE INDEX sessions_open ON sessions(seen_minute) WHERE ended_at IS NULL;
    CREATE INDEX sessions_seen ON sessions(seen_minute);

    CREATE TABLE agents (
        agent_key             TEXT PRIMARY KEY,
        session_id            TEXT NOT NULL,
        source_app            TEXT NOT NULL,
        agent_type            TEXT NOT NULL,
        name                  TEXT,
        description           TEXT,
        status                TEXT NOT NULL,
        started_at            INTEGER,
        ended_at              INTEGER,
        last_seen             INTEGER NOT NULL,
        subagent_start_at     INTEGER,
        subagent_stop_at      INTEGER,
        reported_duration_ms  INTEGER,
        tool_duration_ms      INTEGER,
        input_tokens          INTEGER NOT NULL,
        output_tokens         INTEGER NOT NULL,
        cache_creation_tokens INTEGER NOT NULL,
        cache_read_tokens     INTEGER NOT NULL,
        reported_total_tokens INTEGER,
        model                 TEXT,
        cost_nanos            INTEGER NOT NULL,
        error                 TEXT,
        tool_use_id           TEXT,
        -- Derived by the lifecycle rules, stored so edge-of-range reads match the rollups.
        duration_ms           INTEGER,
        total_tokens          INTEGER NOT NULL,
        seen_minute           INTEGER NOT NULL
    );
    CREATE INDEX agents_running ON agents(seen_minute) WHERE status = 'running';
    CREATE INDEX agents_seen ON agents(seen_minute);
    CREATE INDEX agents_ended ON agents(ended_at) WHERE status IN ('completed', 'failed');
    CREATE INDEX agents_session ON agents(session_id, started_at);
    CREATE INDEX agents_unlinked ON agents(session_id, agent_type, started_at)
        WHERE tool_use_id IS NULL;

    CREATE TABLE tool_calls (
        id                INTEGER PRIMARY KEY,
        tool_use_id       TEXT,
        session_id        TEXT NOT NULL,
        source_app        TEXT NOT NULL,
        agent_key         TEXT NOT NULL,
        agent_type        TEXT NOT NULL,
        tool_name         TEXT NOT NULL,
        counted_at        INTEGER NOT NULL,
        started_at        INTEGER,
        ended_at          INTEGER,
        duration_ms       INTEGER,
        status            TEXT NOT NULL,
        error             TEXT,
        spawn_type        TEXT,
        spawn_description TEXT,
        spawned_agent     TEXT
    );
    CREATE INDEX tool_calls_counted ON tool_calls(counted_at);
    -- One index serves both the Pre/Post join and an agent's list of calls: a call's Pre and
    -- Post always come from the same agent, and one index instead of two (one of them keyed by
    -- a random id) is one page fewer written per event.
    CREATE UNIQUE INDEX tool_calls_by_agent ON tool_calls(agent_key, tool_use_id);
    CREATE INDEX tool_calls_unlinked_spawns ON tool_calls(session_id, spawn_type, started_at)
        WHERE spawn_type IS NOT NULL AND spawned_agent IS NULL;

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
    "#,
    // 2: hourly rollups, so long ranges read hours instead of minutes.
    r#"
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
    "#,
    // 3: tokens the main agent of a session used, read from its transcript by the hook client.
    // One row per report (a delta); aggregate reads sum the rows in the range (by `ts`), so
    // range edges are exact without a rollup.
    r#"
    CREATE TABLE session_usage (
        id                    INTEGER PRIMARY KEY,
        session_id            TEXT NOT NULL,
        ts                    INTEGER NOT NULL,
        model                 TEXT NOT NULL,
        input_tokens          INTEGER NOT NULL,
        output_tokens         INTEGER NOT NULL,
        cache_creation_tokens INTEGER NOT NULL,
        cache_read_tokens     INTEGER NOT NULL,
        total_tokens          INTEGER NOT NULL,
        cost_nanos            INTEGER NOT NULL
    );
    CREATE INDEX session_usage_by_ts ON session_usage (ts);
    CREATE INDEX session_usage_by_session ON session_usage (session_id);
    "#,
    // 4: an agent's current tool (its newest tool call still running) without reading all of
    // its calls: agents that ran for hours have thousands.
    r#"
    CREATE INDEX tool_calls_running ON tool_calls (agent_key, started_at)
        WHERE status = 'running';
    "#,
    // 5: the envelope's session id as sent, when it is not Claude Code's own (the session the
    // event is keyed by, in `session_id`): filters match either.
    r#"
    ALTER TABLE events ADD COLUMN sent_session_id TEXT;
    CREATE INDEX events_sent_session_ts ON events(sent_session_id, ts)
        WHERE sent_session_id IS NOT NULL;
    "#,
    // 6: the store's identity, made once: the Redis cache's keys carry it, so two stores on
    // one Redis never see each other's values.
    r#"
    CREATE TABLE hookwatch_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    INSERT INTO hookwatch_meta (key, value) VALUES ('store_id', lower(hex(randomblob(8))));
    "#,
    // 7: chats (the upstream's --add-chat) compressed, apart from the event row: lists read
    // the row and its size only.
    r#"
    ALTER TABLE events ADD COLUMN chat_bytes INTEGER;
    CREATE TABLE event_chats (
        event_id   INTEGER PRIMARY KEY,
        compressed BLOB NOT NULL
    );
    "#,
    // 8: human-in-the-loop requests: the status of an event sent with `humanInTheLoop`
    // (the upstream's `humanInTheLoopStatus`), pending until answered once.
    crate::store::migrations::HITL_STATUS,
    // 9: every subagent tool call by session and type, linked or not: a SubagentStart that
    // finds no unlinked call looks for one whose result went to a stand-in run
    // (`lifecycle::STAND_IN_PREFIXES`).
    crate::store::migrations::SPAWN_CALLS_INDEX,
];

/// The store's identity (made by migration 6).
pub fn store_id(conn: &Connection) -> Result<String, StoreError> {
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

/// Opens (creating if needed) and migrates the database; returns the writer's connection.
pub fn open_writer(path: &Path, durability: Durability) -> Result<Connection, StoreError> {
    // Through the VFS that writes each commit's WAL frames in a few calls instead of two per
    // page (`crates/sqlite-wal-buffer`): a third of the writer's time went to those calls.
    sqlite_wal_buffer::register().map_err(StoreError::Internal)?;
    let conn = Connection::open_with_flags_and_vfs(
        path,
        OpenFlags::default(),
        sqlite_wal_buffer::VFS_NAME,
    )
    .map_err(db_error)?;
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
    let synchronous = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    // The writer's own checkpoint is the WAL's bound (64 MiB of 2 KiB frames); the
    // checkpointer thread copies nearly all of it first, so that one is short (`checkpointer.rs`).
    // 8 MB of page cache holds the indexes' interior pages and the leaves active sessions
    // write to, on a store of a million events; pages it drops are re-read from the OS's cache.
    // Twice that bought no throughput and was a quarter of the server's peak RSS (BENCHMARKS.md).
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous};
         PRAGMA wal_autocheckpoint = 32768;
         PRAGMA journal_size_limit = 67108864;
         PRAGMA cache_size = -8000;
         PRAGMA temp_store = MEMORY;
         PRAGMA foreign_keys = OFF;"
    ))
    .map_err(db_error)?;
    migrate(&conn)?;
    Ok(conn)
}

/// Opens the connection that runs checkpoints.
pub fn open_checkpointer(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(db_error)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(db_error)?;
    conn.execute_batch("PRAGMA cache_size = -1000;")
        .map_err(db_error)?;
    Ok(conn)
}

/// Opens a connection for reads only.
pub fn open_reader(path: &Path) -> Result<Connection, StoreError> {
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
    if current > MIGRATIONS.len() {
        return Err(StoreError::Internal(format!(
            "the database is at schema version {current}, newer than this hookwatch ({}); upgrade hookwatch",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = index + 1;
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
