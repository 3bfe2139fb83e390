//! The single writer: one thread owns the only writing connection and commits in groups.
//!
//! SQLite allows one writer at a time, so instead of many tasks contending for the write lock,
//! every write is a [`WriteJob`] sent over a bounded channel to this thread. It takes whatever
//! jobs are waiting (up to [`MAX_GROUP_EVENTS`] events), applies them in one transaction, commits
//! once, and only then answers each job. Under load one fsync covers many events (group commit);
//! no job is answered before the commit that contains it. Each job runs inside a savepoint, so a
//! job that fails rolls back alone and the others still commit.

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use crate::domain::event::HookEvent;
use crate::domain::lifecycle;
use crate::domain::pricing::PriceTable;
use crate::store::{RecordOutcome, StoreError, StoredEvent};

use super::ledger::SqliteLedger;
use super::reads::{EVENT_COLUMNS, event_from_row};

/// The most events one transaction takes; bounds commit latency under a flood.
pub const MAX_GROUP_EVENTS: usize = 2048;

pub enum WriteJob {
    Record {
        events: Vec<HookEvent>,
        reply: oneshot::Sender<Result<Vec<RecordOutcome>, StoreError>>,
    },
    TimeOutIdleAgents {
        cutoff_ms: i64,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
}

impl WriteJob {
    fn weight(&self) -> usize {
        match self {
            Self::Record { events, .. } => events.len().max(1),
            Self::TimeOutIdleAgents { .. } => 1,
        }
    }
}

enum JobResult {
    Recorded(Vec<RecordOutcome>),
    TimedOut(u64),
}

/// Runs until every sender is dropped and the queue is empty.
pub fn run(conn: Connection, mut jobs: mpsc::Receiver<WriteJob>, prices: Arc<PriceTable>) {
    let mut group = Vec::new();
    while let Some(first) = jobs.blocking_recv() {
        let mut weight = first.weight();
        group.push(first);
        while weight < MAX_GROUP_EVENTS {
            match jobs.try_recv() {
                Ok(job) => {
                    weight += job.weight();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        commit_group(&conn, &prices, std::mem::take(&mut group));
    }
    tracing::debug!("writer stopped: queue closed and drained");
}

fn commit_group(conn: &Connection, prices: &PriceTable, group: Vec<WriteJob>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        return answer_all(group, StoreError::Database(e.to_string()));
    }
    let results: Vec<Result<JobResult, StoreError>> = group
        .iter()
        .map(|job| run_in_savepoint(conn, prices, job))
        .collect();
    if let Err(e) = conn.execute_batch("COMMIT") {
        tracing::error!(error = %e, "commit failed; rolling back the group");
        let _ = conn.execute_batch("ROLLBACK");
        return answer_all(group, StoreError::Database(e.to_string()));
    }
    for (job, result) in group.into_iter().zip(results) {
        match (job, result) {
            (WriteJob::Record { reply, .. }, Ok(JobResult::Recorded(outcomes))) => {
                let _ = reply.send(Ok(outcomes));
            }
            (WriteJob::TimeOutIdleAgents { reply, .. }, Ok(JobResult::TimedOut(n))) => {
                let _ = reply.send(Ok(n));
            }
            (job, Err(e)) => answer(job, e),
            (job, Ok(_)) => answer(job, StoreError::Database("mismatched job result".into())),
        }
    }
}

fn answer(job: WriteJob, error: StoreError) {
    match job {
        WriteJob::Record { reply, .. } => {
            let _ = reply.send(Err(error));
        }
        WriteJob::TimeOutIdleAgents { reply, .. } => {
            let _ = reply.send(Err(error));
        }
    }
}

fn answer_all(group: Vec<WriteJob>, error: StoreError) {
    for job in group {
        answer(job, StoreError::Database(error.to_string()));
    }
}

fn run_in_savepoint(
    conn: &Connection,
    prices: &PriceTable,
    job: &WriteJob,
) -> Result<JobResult, StoreError> {
    let db = |e: rusqlite::Error| StoreError::Database(e.to_string());
    conn.execute_batch("SAVEPOINT job").map_err(db)?;
    let result = match job {
        WriteJob::Record { events, .. } => events
            .iter()
            .map(|event| record_one(conn, prices, event))
            .collect::<Result<Vec<_>, _>>()
            .map(JobResult::Recorded),
        WriteJob::TimeOutIdleAgents { cutoff_ms, .. } => conn
            .prepare_cached(
                "UPDATE agents SET status = 'timed_out'
                 WHERE status = 'running' AND last_seen < ?1",
            )
            .and_then(|mut s| s.execute([cutoff_ms]))
            .map(|n| JobResult::TimedOut(n as u64)),
    };
    match result {
        Ok(result) => {
            conn.execute_batch("RELEASE job").map_err(db)?;
            Ok(result)
        }
        Err(e) => {
            tracing::error!(error = %e, "write job failed; rolled back alone");
            let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
            Err(db(e))
        }
    }
}

fn record_one(
    conn: &Connection,
    prices: &PriceTable,
    event: &HookEvent,
) -> rusqlite::Result<RecordOutcome> {
    let facts = &event.facts;
    let inserted = conn
        .prepare_cached(
            "INSERT INTO events (event_id, ts, source_app, session_id, hook_event_type,
                 tool_name, tool_use_id, agent_id, model_name, summary, payload, chat, extra)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
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
            event.chat.as_ref().map(|c| c.get()),
            event.extra.as_ref().map(|e| e.get()),
        ])?;
    if inserted == 0 {
        let stored = conn
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ?1"
            ))?
            .query_row([&event.event_id], event_from_row)
            .optional()?
            .ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        return Ok(RecordOutcome {
            event: stored,
            duplicate: true,
            transitions: Vec::new(),
        });
    }
    let id = conn.last_insert_rowid();
    let transitions = lifecycle::apply(&mut SqliteLedger { conn }, event, prices)?;
    Ok(RecordOutcome {
        event: StoredEvent {
            id,
            event_id: event.event_id.clone(),
            timestamp: event.timestamp_ms,
            source_app: event.source_app.clone(),
            session_id: event.session_id.clone(),
            hook_event_type: event.hook_event_type.clone(),
            payload: event.payload.clone(),
            chat: event.chat.clone(),
            summary: event.summary.clone(),
            model_name: event.model_name.clone(),
            extra: event.extra.clone(),
        },
        duplicate: false,
        transitions,
    })
}
