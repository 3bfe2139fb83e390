//! The single writer: one thread owns the only writing connection and commits in groups.
//!
//! SQLite allows one writer at a time, so instead of many tasks contending for the write lock,
//! every write goes through the shared write queue ([`crate::store::write_queue`]) to this
//! thread, which commits it in groups. A failed group is retried job by job rather than with
//! savepoints per job: savepoints make every statement keep a statement journal, which cost more
//! than the rest of the write.

use crate::store::rows::event_from_row;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::mpsc;

use crate::domain::event::HookEvent;
use crate::domain::lifecycle;
use crate::domain::pricing::PriceTable;
use crate::store::jobs::{OwnWrites, run_job};
use crate::store::write_queue::{GroupReader, JobResult, WriteJob, commit_group};
use crate::store::{PrunePlan, PruneReport, RecordOutcome, StoreError, StoredEvent};

use super::checkpointer::DiskFull;
use super::ledger::SqliteLedger;
use crate::store::rows::{EVENT_COLUMNS, HITL_PENDING};

/// Runs until every sender is dropped and the queue is empty. After each group, `logical_bytes`
/// is the database's size as committed (its pages, WAL included): what the file will be once
/// checkpointed, which `--max-db-size` holds ingest to.
pub(super) fn run(
    conn: Connection,
    mut jobs: mpsc::Receiver<WriteJob>,
    prices: Arc<PriceTable>,
    logical_bytes: Arc<std::sync::atomic::AtomicU64>,
    commits: Arc<std::sync::atomic::AtomicU64>,
    disk_full: DiskFull,
) {
    let mut reader = GroupReader::default();
    let page_size: u64 = conn
        .query_row("PRAGMA page_size", [], |row| row.get(0))
        .unwrap_or(4096);
    while let Some(group) = reader.next_group(&mut jobs) {
        let started = std::time::Instant::now();
        let job_count = group.len();
        commit_group(group, |group| {
            let result = run_jobs(&conn, &prices, group);
            // Counted before any job is answered: a read after an acknowledgement sees the
            // count move, so the cache's in-process tier recomputes (`cache::local`).
            commits.fetch_add(1, std::sync::atomic::Ordering::Release);
            disk_full.set(matches!(result, Err(StoreError::Unwritable(_))));
            result
        });
        if let Ok(pages) = conn
            .prepare_cached("PRAGMA page_count")
            .and_then(|mut s| s.query_row([], |row| row.get::<_, u64>(0)))
        {
            logical_bytes.store(pages * page_size, std::sync::atomic::Ordering::Relaxed);
        }
        tracing::trace!(
            jobs = job_count,
            elapsed_us = started.elapsed().as_micros() as u64,
            "group committed"
        );
    }
    tracing::debug!("writer stopped: queue closed and drained");
}

/// Runs `jobs` in one transaction and commits it; on any error rolls everything back.
fn run_jobs(
    conn: &Connection,
    prices: &PriceTable,
    jobs: &[WriteJob],
) -> Result<Vec<JobResult>, StoreError> {
    let db = classify;
    conn.execute_batch("BEGIN IMMEDIATE").map_err(db)?;
    let mut ledger = SqliteLedger::new(conn);
    let mut own = SqliteWrites { conn, prices };
    let outcome = jobs
        .iter()
        .map(|job| run_job(&mut ledger, &mut own, job))
        .collect::<rusqlite::Result<Vec<_>>>()
        .and_then(|results| ledger.flush().map(|()| results))
        .and_then(|results| conn.execute_batch("COMMIT").map(|()| results));
    outcome.map_err(|e| {
        ledger.discard();
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        static ROLLBACKS: crate::telemetry::LogLimiter = crate::telemetry::LogLimiter::new();
        if let Some(held_back) = ROLLBACKS.allow() {
            tracing::error!(error = %e, held_back, "write transaction rolled back");
        }
        db(e)
    })
}

/// What a SQLite error means for the caller (see [`StoreError`]): the machine's problem (a
/// full disk, a read-only file, an I/O error: 503 with Retry-After, gone once space returns),
/// a lock another process holds, or a bug.
pub(super) fn classify(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull | ErrorCode::ReadOnly | ErrorCode::SystemIoFailure) => {
            StoreError::Unwritable(e.to_string())
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Busy(e.to_string())
        }
        _ => StoreError::Internal(e.to_string()),
    }
}

/// SQLite's own writes: each event inserted as it comes, and pruning that holds the size
/// limit too.
struct SqliteWrites<'c> {
    conn: &'c Connection,
    prices: &'c PriceTable,
}

impl<'c> OwnWrites<SqliteLedger<'c>> for SqliteWrites<'c> {
    fn record(
        &mut self,
        ledger: &mut SqliteLedger<'c>,
        events: &[HookEvent],
    ) -> rusqlite::Result<Vec<RecordOutcome>> {
        events
            .iter()
            .map(|event| record_one(self.conn, ledger, self.prices, event))
            .collect()
    }

    fn prune(
        &mut self,
        ledger: &mut SqliteLedger<'c>,
        plan: &PrunePlan,
    ) -> rusqlite::Result<PruneReport> {
        prune_step(self.conn, ledger, plan)
    }
}

/// Bytes of the database's pages in use (the file minus its free pages).
fn used_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let pragma =
        |name: &str| conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get::<_, i64>(0));
    let pages = pragma("page_count")? - pragma("freelist_count")?;
    Ok((pages.max(0) * pragma("page_size")?) as u64)
}

/// The raw tables the size limit prunes, oldest first across all of them: hook events and
/// Claude Code's telemetry, each with its row id and its time column.
const SIZED_TABLES: [(&str, &str); 3] = [
    ("events", "ts"),
    ("telemetry_events", "at_ms"),
    ("telemetry_points", "time_ms"),
];

/// Over the size limit by `excess` of `used` bytes: the time before which raw rows go in this
/// step, whichever tables hold the space. Rows are estimated at the database's average size,
/// as many as the excess holds and at most `batch`; the cutoff is just past the newest of the
/// oldest such rows of the table whose oldest rows are oldest, so a step deletes at most a
/// batch from any table and always the oldest data first.
fn size_cutoff(
    conn: &Connection,
    excess: u64,
    used: u64,
    batch: i64,
) -> rusqlite::Result<Option<i64>> {
    let mut rows = 0u64;
    for (table, _) in SIZED_TABLES {
        let (oldest, newest): (Option<i64>, Option<i64>) = conn.query_row(
            &format!("SELECT min(id), max(id) FROM {table}"),
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        if let (Some(oldest), Some(newest)) = (oldest, newest) {
            rows += (newest - oldest + 1).max(0) as u64;
        }
    }
    if rows == 0 {
        return Ok(None);
    }
    let per_row = (used / rows).max(1);
    let excess_rows = i64::try_from(excess / per_row + 1)
        .unwrap_or(i64::MAX)
        .min(batch);
    let mut cutoff: Option<i64> = None;
    for (table, time) in SIZED_TABLES {
        let newest_of_oldest: Option<i64> = conn.query_row(
            &format!(
                "SELECT max({time}) FROM (SELECT {time} FROM {table} ORDER BY {time} LIMIT ?1)"
            ),
            [excess_rows],
            |row| row.get(0),
        )?;
        if let Some(at) = newest_of_oldest {
            cutoff = Some(cutoff.map_or(at + 1, |c| c.min(at + 1)));
        }
    }
    Ok(cutoff)
}

/// Pages one pruning step hands back to the file system (256 KiB at 2 KiB pages).
const MAX_VACUUM_PAGES_PER_STEP: i64 = 128;

/// One step of [`WriteJob::Prune`]: at most `plan.batch` rows per table, oldest first, then
/// free pages handed back to the file system (incremental vacuum).
fn prune_step(
    conn: &Connection,
    ledger: &mut SqliteLedger<'_>,
    plan: &PrunePlan,
) -> rusqlite::Result<PruneReport> {
    let batch = plan.batch.max(1) as i64;
    let mut raw_before = plan.raw_before_ms;
    if let Some(limit) = plan.max_used_bytes {
        let used = used_bytes(conn)?;
        if used > limit
            && let Some(cutoff) = size_cutoff(conn, used - limit, used, batch)?
        {
            raw_before = Some(raw_before.map_or(cutoff, |before| before.max(cutoff)));
        }
    }
    let mut report = crate::store::ledger::delete_oldest(ledger, raw_before, plan)?;
    let free_pages =
        |conn: &Connection| conn.query_row("PRAGMA freelist_count", [], |row| row.get::<_, i64>(0));
    let free_before = free_pages(conn)?;
    if free_before > 0 {
        // A no-op on files made before incremental auto-vacuum (they reuse free pages instead).
        // Each step of the statement frees one page: run it to the end. Capped, so one step
        // stays short; the run goes on while pages are still being released.
        // More pages per step as pruning falls behind (bigger steps), so the file shrinks as
        // fast as rows are deleted.
        let pages = free_before.min(MAX_VACUUM_PAGES_PER_STEP.max(batch * 2));
        let mut vacuum = conn.prepare(&format!("PRAGMA incremental_vacuum({pages})"))?;
        let mut steps = vacuum.query([])?;
        while steps.next()?.is_some() {}
        report.pages_released = (free_before - free_pages(conn)?).max(0) as u64;
    }
    Ok(report)
}

fn record_one(
    conn: &Connection,
    ledger: &mut SqliteLedger<'_>,
    prices: &PriceTable,
    event: &HookEvent,
) -> rusqlite::Result<RecordOutcome> {
    let facts = &event.facts;
    let inserted = conn
        .prepare_cached(
            "INSERT INTO events (event_id, ts, source_app, session_id, hook_event_type,
                 tool_name, tool_use_id, agent_id, model_name, summary, payload, chat_bytes,
                 extra, sent_session_id, hitl_status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
             ON CONFLICT (event_id) DO NOTHING",
        )?
        .execute(params![
            event.event_id,
            event.timestamp_ms,
            event.source_app,
            event.session_id,
            event.hook_event_type,
            facts.tool_name,
            facts.tool_use_id,
            facts.agent_id,
            event.model_name,
            event.summary,
            event.payload.get(),
            event.chat.as_ref().map(|c| c.json_bytes),
            event.extra.as_ref().map(|e| e.get()),
            event.sent_session_id,
            event.hitl_pending.then_some(HITL_PENDING),
        ])?;
    if inserted == 0 {
        let stored = conn
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ?1"
            ))?
            .query_row([&event.event_id], |row| event_from_row(row))
            .optional()?
            .ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        return Ok(RecordOutcome {
            event: stored,
            duplicate: true,
            transitions: Vec::new(),
        });
    }
    let id = conn.last_insert_rowid();
    if let Some(chat) = &event.chat {
        conn.prepare_cached(
            "INSERT INTO event_chats (event_id, compressed, tail) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![id, chat.compressed, chat.tail])?;
    }
    if let Some(prompt) = event.submitted_prompt() {
        conn.prepare_cached(
            "INSERT INTO event_prompts (event_row, ts, prompt_id, head, chars)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            id,
            event.timestamp_ms,
            prompt.prompt_id,
            prompt.head,
            prompt.chars
        ])?;
    }
    let transitions = lifecycle::apply(ledger, event, prices)?;
    Ok(RecordOutcome {
        event: StoredEvent::stored_as(id, event),
        duplicate: false,
        transitions,
    })
}
