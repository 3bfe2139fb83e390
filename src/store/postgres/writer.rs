//! PostgreSQL writers: a few threads, each with its own connection, committing in groups.
//!
//! Unlike SQLite, PostgreSQL takes concurrent writers, and other hookwatch instances write to
//! the same tables. Two rules keep lifecycles and rollups consistent under that concurrency:
//! - **One writer per session at a time.** A group first takes a transaction-scoped advisory
//!   lock on every session it touches, in key order. A session's agents and tool calls are
//!   only written under its lock, so when the start and the stop of one agent arrive at two
//!   instances at once, one transaction waits for the other and then reads its result (READ
//!   COMMITTED reads what committed before each statement).
//! - **Shared rows in one order.** Rollup upserts are sorted by key (see
//!   [`crate::store::fold`]), so concurrent groups queue on a row instead of deadlocking. A
//!   deadlock or serialization failure PostgreSQL still reports is retried.
//!
//! Events go in with one `INSERT … SELECT FROM unnest(…)` per group (a batched insert), with
//! `ON CONFLICT (event_id) DO NOTHING`: a repeat, even one racing on another instance, is
//! stored once. Each commit also queues a `NOTIFY` (delivered only if it commits) that tells
//! other instances which events to show their live clients when Redis cannot.

use crate::store::rows::event_from_row;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use postgres::{Client, Transaction};
use tokio::sync::mpsc;

use crate::domain::event::HookEvent;
use crate::domain::lifecycle;
use crate::domain::pricing::PriceTable;
use crate::notices::{AgentNotice, CommitNotice};
use crate::store::jobs::{OwnWrites, run_job};
use crate::store::write_queue::{GroupReader, JobResult, WriteJob, commit_group};
use crate::store::{PrunePlan, PruneReport, RecordOutcome, StoreError, StoredEvent};

use super::ledger::{PostgresLedger, Statements};
use super::schema::{connect, db_error};
use crate::store::rows::{EVENT_COLUMNS, HITL_PENDING};

/// The channel commits are announced on.
pub(super) const NOTIFY_CHANNEL: &str = "hookwatch_commits";
/// PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
const MAX_NOTICE_BYTES: usize = 7_500;
/// Rollup rows per key: one per writer connection, chosen at random (see the schema).
const ROLLUP_SHARDS: u16 = 64;
/// Attempts at a group that PostgreSQL aborted for a deadlock or a serialization failure.
const MAX_ATTEMPTS: usize = 5;

pub(super) struct WriterSettings {
    pub url: String,
    pub prices: Arc<PriceTable>,
    /// This instance's id, carried by its commit notices.
    pub origin: String,
}

/// Runs until every sender is dropped and the shared queue is empty.
pub(super) fn run(settings: Arc<WriterSettings>, jobs: Arc<Mutex<mpsc::Receiver<WriteJob>>>) {
    let mut writer = Writer {
        settings,
        client: None,
        statements: Statements::default(),
        shard: (uuid::Uuid::new_v4().as_u128() % u128::from(ROLLUP_SHARDS)) as i16,
    };
    let mut reader = GroupReader::default();
    while let Some(group) = reader.next_shared_group(&jobs) {
        commit_group(group, |group| writer.run_jobs(group));
    }
    tracing::debug!("postgres writer stopped: queue closed and drained");
}

struct Writer {
    settings: Arc<WriterSettings>,
    /// `None` until connected, and again after the connection broke.
    client: Option<Client>,
    statements: Statements,
    /// This writer's rollup rows.
    shard: i16,
}

impl Writer {
    fn run_jobs(&mut self, jobs: &[WriteJob]) -> Result<Vec<JobResult>, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            if self.client.as_ref().is_none_or(Client::is_closed) {
                let mut client = connect(&self.settings.url)?;
                // A 2xx means durable: whatever the server's default, this session's commits
                // wait for the WAL flush.
                client
                    .batch_execute("SET synchronous_commit = on")
                    .map_err(db_error)?;
                self.client = Some(client);
                self.statements.clear();
            }
            let client = self.client.as_mut().expect("connected above");
            let result = run_in_transaction(
                client,
                &mut self.statements,
                &self.settings,
                self.shard,
                jobs,
            );
            match result {
                Ok(results) => return Ok(results),
                Err(e) if attempt < MAX_ATTEMPTS && is_retryable(&e) => {
                    tracing::debug!(error = %e, attempt, "write transaction aborted; retrying");
                }
                // A connection that broke since its last use (the server restarted): once more
                // on a new one. Safe even if the COMMIT itself landed: events are stored by
                // `event_id` once, so a repeat reports duplicates and changes nothing.
                Err(e) if attempt < 2 && super::schema::is_connection_error(&e) => {
                    tracing::info!(error = %e, "postgres connection lost; reconnecting");
                    self.client = None;
                }
                Err(e) => {
                    tracing::error!(error = %super::schema::describe(&e), "write transaction rolled back");
                    return Err(db_error(e));
                }
            }
        }
    }
}

/// Deadlock detected, serialization failure.
fn is_retryable(e: &postgres::Error) -> bool {
    e.code()
        .is_some_and(|code| matches!(code.code(), "40P01" | "40001"))
}

fn run_in_transaction(
    client: &mut Client,
    statements: &mut Statements,
    settings: &WriterSettings,
    shard: i16,
    jobs: &[WriteJob],
) -> Result<Vec<JobResult>, postgres::Error> {
    let mut transaction = client.transaction()?;
    lock_sessions(&mut transaction, statements, jobs)?;
    let mut new_rows = insert_events(&mut transaction, statements, jobs)?;
    let mut results = Vec::with_capacity(jobs.len());
    let mut ledger = PostgresLedger::new(&mut transaction, statements, shard);
    let mut own = PostgresWrites {
        prices: &settings.prices,
        new_rows: &mut new_rows,
    };
    for job in jobs {
        results.push(run_job(&mut ledger, &mut own, job)?);
    }
    ledger.flush()?;
    drop(ledger);
    let notices = commit_notices(&settings.origin, &results);
    if !notices.is_empty() {
        statements.execute(
            &mut transaction,
            "SELECT count(pg_notify($1, notice)) FROM unnest($2::text[]) AS notice",
            &[&NOTIFY_CHANNEL, &notices],
        )?;
    }
    transaction.commit()?;
    Ok(results)
}

/// PostgreSQL's own writes: the group's events were inserted at once before its jobs run
/// (`insert_events`), so recording an event finds its row; pruning deletes by time only (no
/// size limit: PostgreSQL keeps deleted rows' space for reuse, so the size never drops and a
/// limit would delete everything; start-up refuses it).
struct PostgresWrites<'a> {
    prices: &'a PriceTable,
    new_rows: &'a mut HashMap<String, i64>,
}

impl<'t, 'c> OwnWrites<PostgresLedger<'t, 'c>> for PostgresWrites<'_> {
    fn record(
        &mut self,
        ledger: &mut PostgresLedger<'t, 'c>,
        events: &[HookEvent],
    ) -> Result<Vec<RecordOutcome>, postgres::Error> {
        events
            .iter()
            .map(|event| record_one(ledger, self.prices, self.new_rows, event))
            .collect()
    }

    fn prune(
        &mut self,
        ledger: &mut PostgresLedger<'t, 'c>,
        plan: &PrunePlan,
    ) -> Result<PruneReport, postgres::Error> {
        crate::store::ledger::delete_oldest(ledger, plan.raw_before_ms, plan)
    }
}

/// A stable 64-bit key per session id (FNV-1a), for its advisory lock.
fn session_lock_key(session_id: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in session_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// Takes every session's advisory lock, in key order, for the rest of the transaction.
fn lock_sessions(
    transaction: &mut Transaction<'_>,
    statements: &mut Statements,
    jobs: &[WriteJob],
) -> Result<(), postgres::Error> {
    let keys: BTreeSet<i64> = jobs
        .iter()
        .filter_map(|job| match job {
            WriteJob::Record { events, .. } => Some(events),
            _ => None,
        })
        .flatten()
        .map(|event| session_lock_key(&event.session_id))
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    let keys: Vec<i64> = keys.into_iter().collect();
    statements.execute(
        transaction,
        "SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::int8[]) WITH ORDINALITY AS t(k, n)",
        &[&keys],
    )?;
    Ok(())
}

/// Inserts every event of the group in one statement; returns the new rows' ids by event id.
fn insert_events(
    transaction: &mut Transaction<'_>,
    statements: &mut Statements,
    jobs: &[WriteJob],
) -> Result<HashMap<String, i64>, postgres::Error> {
    let events: Vec<&HookEvent> = jobs
        .iter()
        .filter_map(|job| match job {
            WriteJob::Record { events, .. } => Some(events),
            _ => None,
        })
        .flatten()
        .collect();
    if events.is_empty() {
        return Ok(HashMap::new());
    }
    let column = |field: fn(&HookEvent) -> Option<&str>| -> Vec<Option<&str>> {
        events.iter().map(|event| field(event)).collect()
    };
    let event_ids = column(|e| Some(&e.event_id));
    let timestamps: Vec<i64> = events.iter().map(|e| e.timestamp_ms).collect();
    let source_apps = column(|e| Some(&e.source_app));
    let session_ids = column(|e| Some(&e.session_id));
    let types = column(|e| Some(&e.hook_event_type));
    let tool_names = column(|e| e.facts.tool_name.as_deref());
    let tool_use_ids = column(|e| e.facts.tool_use_id.as_deref());
    let agent_ids = column(|e| e.facts.agent_id.as_deref());
    let models = column(|e| e.model_name.as_deref());
    let summaries = column(|e| e.summary.as_deref());
    let payloads = column(|e| Some(e.payload.get()));
    let chat_sizes: Vec<Option<i64>> = events
        .iter()
        .map(|e| e.chat.as_ref().map(|c| c.json_bytes))
        .collect();
    let extras = column(|e| e.extra.as_ref().map(|c| c.get()));
    let sent_session_ids = column(|e| e.sent_session_id.as_deref());
    let hitl_statuses = column(|e| e.hitl_pending.then_some(HITL_PENDING));
    let rows = statements.query(
        transaction,
        "INSERT INTO events (event_id, ts, source_app, session_id, hook_event_type, tool_name,
             tool_use_id, agent_id, model_name, summary, payload, chat_bytes, extra,
             sent_session_id, hitl_status)
         SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[],
             $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],
             $12::int8[], $13::text[], $14::text[], $15::text[])
         ON CONFLICT (event_id) DO NOTHING
         RETURNING id, event_id",
        &[
            &event_ids,
            &timestamps,
            &source_apps,
            &session_ids,
            &types,
            &tool_names,
            &tool_use_ids,
            &agent_ids,
            &models,
            &summaries,
            &payloads,
            &chat_sizes,
            &extras,
            &sent_session_ids,
            &hitl_statuses,
        ],
    )?;
    rows.iter()
        .map(|row| Ok((row.try_get::<_, String>(1)?, row.try_get::<_, i64>(0)?)))
        .collect()
}

fn record_one(
    ledger: &mut PostgresLedger<'_, '_>,
    prices: &PriceTable,
    new_rows: &mut HashMap<String, i64>,
    event: &HookEvent,
) -> Result<RecordOutcome, postgres::Error> {
    // The first occurrence of an id in the group takes the new row; any later one (and any id
    // stored before) is a duplicate.
    let Some(id) = new_rows.remove(&event.event_id) else {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id = $1");
        let row = ledger.query_one(&sql, &[&event.event_id])?;
        return Ok(RecordOutcome {
            event: event_from_row(&row)?,
            duplicate: true,
            transitions: Vec::new(),
        });
    };
    if let Some(chat) = &event.chat {
        ledger.execute(
            "INSERT INTO event_chats (event_id, compressed, tail) VALUES ($1, $2, $3)",
            &[&id, &chat.compressed, &chat.tail],
        )?;
    }
    if let Some(prompt) = event.submitted_prompt() {
        ledger.execute(
            "INSERT INTO event_prompts (event_row, ts, prompt_id, head, chars)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &id,
                &event.timestamp_ms,
                &prompt.prompt_id,
                &prompt.head,
                &prompt.chars,
            ],
        )?;
    }
    let transitions = lifecycle::apply(ledger, event, prices)?;
    Ok(RecordOutcome {
        event: StoredEvent::stored_as(id, event),
        duplicate: false,
        transitions,
    })
}

/// The notices a commit sends: new event ids and agent changes, split to fit NOTIFY.
fn commit_notices(origin: &str, results: &[JobResult]) -> Vec<String> {
    let mut notices = Vec::new();
    let mut notice = CommitNotice::new(origin);
    let mut size = origin.len() + 64;
    let outcomes = results
        .iter()
        .filter_map(|result| match result {
            JobResult::Recorded(outcomes) => Some(outcomes),
            _ => None,
        })
        .flatten()
        .filter(|outcome| !outcome.duplicate);
    for outcome in outcomes {
        let agents: Vec<AgentNotice> = outcome
            .transitions
            .iter()
            .map(|transition| {
                AgentNotice::new(
                    &outcome.event.source_app,
                    outcome.event.timestamp,
                    transition,
                )
            })
            .collect();
        let added = 21 + agents.iter().map(|a| a.encode().len() + 1).sum::<usize>();
        if added + origin.len() + 64 > MAX_NOTICE_BYTES {
            // Cannot be told in one notice (huge ids): the event still goes out, its changes
            // do not (the next snapshot shows them).
            notice.events.push(outcome.event.id);
            continue;
        }
        if size + added > MAX_NOTICE_BYTES {
            notices.push(std::mem::replace(&mut notice, CommitNotice::new(origin)));
            size = origin.len() + 64;
        }
        size += added;
        notice.events.push(outcome.event.id);
        notice.agents.extend(agents);
    }
    if !notice.events.is_empty() {
        notices.push(notice);
    }
    notices.iter().map(CommitNotice::encode).collect()
}

/// Bytes the database takes (tables, indexes and TOAST).
pub(super) fn used_bytes(
    client: &mut impl postgres::GenericClient,
) -> Result<u64, postgres::Error> {
    let bytes: i64 = client
        .query_one("SELECT pg_database_size(current_database())", &[])?
        .try_get(0)?;
    Ok(bytes.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_lock_keys_are_stable_and_distinct() {
        assert_eq!(session_lock_key("s-1"), session_lock_key("s-1"));
        assert_ne!(session_lock_key("s-1"), session_lock_key("s-2"));
    }

    #[test]
    fn commit_notices_fit_in_a_notify_payload() {
        let event = |id: i64| StoredEvent {
            id,
            event_id: format!("e{id}"),
            timestamp: 1,
            source_app: "app".into(),
            session_id: "s".into(),
            hook_event_type: "PreToolUse".into(),
            payload: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
            chat: None,
            chat_bytes: None,
            hitl_status: None,
            summary: None,
            model_name: None,
            extra: None,
            tool_name: None,
            sent_session_id: None,
        };
        let outcomes: Vec<RecordOutcome> = (0..3000)
            .map(|id| RecordOutcome {
                event: event(id),
                duplicate: id % 7 == 0,
                transitions: vec![lifecycle::AgentTransition {
                    agent_key: format!("agent-{id}"),
                    agent_type: "Explore".into(),
                    session_id: "s".into(),
                    from: None,
                    to: lifecycle::AgentStatus::Running,
                }],
            })
            .collect();
        let notices = commit_notices("instance-a", &[JobResult::Recorded(outcomes)]);
        assert!(notices.len() > 1, "3000 events need several notices");
        let mut ids = Vec::new();
        for text in &notices {
            assert!(text.len() < 8000, "{} bytes", text.len());
            let notice = CommitNotice::decode(text).unwrap();
            assert_eq!(notice.origin, "instance-a");
            assert_eq!(notice.events.len(), notice.agents.len());
            ids.extend(notice.events);
        }
        let expected: Vec<i64> = (0..3000).filter(|id| id % 7 != 0).collect();
        assert_eq!(
            ids, expected,
            "every new event once, in order; no duplicates"
        );
    }
}
