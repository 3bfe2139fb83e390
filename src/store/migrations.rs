//! Schema changes both databases make in the same words. Each store keeps its own list of
//! migrations (their column types differ: `INTEGER` and `BIGINT`, `BLOB` and `BYTEA`) and
//! names these where they fall in it.

/// Human-in-the-loop requests: the status of an event sent with `humanInTheLoop` (the
/// upstream's `humanInTheLoopStatus`), pending until answered once. SQLite 8, PostgreSQL 5.
pub const HITL_STATUS: &str = r#"
    ALTER TABLE events ADD COLUMN hitl_status TEXT;
    CREATE INDEX events_hitl_pending ON events(id) WHERE hitl_status = '{"status":"pending"}';
"#;

/// Every subagent tool call by session and type, linked or not: a SubagentStart that finds no
/// unlinked call looks for one whose result went to a stand-in run
/// (`lifecycle::STAND_IN_PREFIXES`). SQLite 9, PostgreSQL 6.
pub const SPAWN_CALLS_INDEX: &str = r#"
    DROP INDEX tool_calls_unlinked_spawns;
    CREATE INDEX tool_calls_spawns ON tool_calls(session_id, spawn_type, started_at)
        WHERE spawn_type IS NOT NULL;
"#;
