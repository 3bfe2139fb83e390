//! The write queue both stores share: jobs, commit groups, and answering after the commit.
//!
//! Every write is a [`WriteJob`] sent over a bounded channel to writer threads. A writer takes
//! whatever jobs are waiting (up to [`MAX_GROUP_EVENTS`] events, and those that arrive while
//! it yields its core a few times when others were waiting), applies them in one
//! transaction, commits once, and only then answers each job: under load one commit (one
//! fsync) covers many events, and no job is answered before the commit that contains it. If a
//! group fails, it rolls back and each job is retried alone, so one bad job never fails the
//! others. SQLite runs one writer thread (it allows one writer at a time); PostgreSQL runs a
//! few, each on its own connection.

use std::sync::Mutex;

use tokio::sync::{mpsc, oneshot};

use crate::domain::event::HookEvent;
use crate::domain::telemetry::{TelemetryBatch, TelemetryOutcome};
use crate::store::read_pool::ReaderConnection;
use crate::store::{Answered, DatabaseStore, PrunePlan, PruneReport, RecordOutcome, StoreError};

/// The most events one transaction takes; bounds commit latency under a flood.
pub(crate) const MAX_GROUP_EVENTS: usize = 2048;

/// The most times a writer yields its core to let requests in flight join the group it is
/// gathering ([`GroupReader::next_group`]): the latency gathering may add is bounded.
const MAX_GATHER_PAUSES: u32 = 4;

pub(crate) enum WriteJob {
    Record {
        events: Vec<HookEvent>,
        reply: oneshot::Sender<Result<Vec<RecordOutcome>, StoreError>>,
    },
    TimeOutIdleAgents {
        cutoff_ms: i64,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    Prune {
        plan: PrunePlan,
        reply: oneshot::Sender<Result<PruneReport, StoreError>>,
    },
    /// Stores Claude Code's telemetry records (OTLP).
    Telemetry {
        batch: TelemetryBatch,
        reply: oneshot::Sender<Result<TelemetryOutcome, StoreError>>,
    },
    /// Opens, closes and marks delivered alert episodes.
    Alerts {
        ops: Vec<crate::store::alerts::AlertOp>,
        reply: oneshot::Sender<Result<Vec<Option<i64>>, StoreError>>,
    },
    /// Records the answer to a human-in-the-loop request, once.
    Answer {
        event_row: i64,
        status: String,
        reply: oneshot::Sender<Result<Answered, StoreError>>,
    },
}

impl WriteJob {
    /// Pruning runs in a transaction of its own, so no acknowledgement waits for its deletes
    /// (only, at most, behind one short step).
    fn runs_alone(&self) -> bool {
        matches!(self, Self::Prune { .. })
    }

    fn weight(&self) -> usize {
        match self {
            Self::Record { events, .. } => events.len().max(1),
            Self::Telemetry { batch, .. } => batch.len().max(1),
            Self::Alerts { ops, .. } => ops.len().max(1),
            Self::TimeOutIdleAgents { .. } => 1,
            Self::Prune { .. } | Self::Answer { .. } => 1,
        }
    }
}

pub(crate) enum JobResult {
    Recorded(Vec<RecordOutcome>),
    TimedOut(u64),
    Pruned(PruneReport),
    Answered(Box<Answered>),
    Telemetry(TelemetryOutcome),
    Alerts(Vec<Option<i64>>),
}

/// What one writer thread keeps between groups.
#[derive(Default)]
pub(crate) struct GroupReader {
    /// A job that must run alone, taken while a group was being gathered: it starts the next.
    carried: Option<WriteJob>,
}

impl GroupReader {
    /// Waits for the next job, then takes whatever else is waiting, up to a full group.
    /// `None` once every sender is dropped and the queue is empty.
    ///
    /// When more than one job was waiting, other requests are in flight, and more are likely
    /// to arrive within microseconds: the reader yields its core (to a runtime thread handing
    /// one over, on a machine with few cores) and takes those too, for as long as each yield
    /// brings more (at most [`MAX_GATHER_PAUSES`] times), so one commit and its fsync cover
    /// more events. Sleeping instead (50 µs a pause) saved as much CPU but cost a tenth of the
    /// ingest rate (BENCHMARKS.md, issue 33). A lone job is committed at once.
    pub(crate) fn next_group(
        &mut self,
        jobs: &mut mpsc::Receiver<WriteJob>,
    ) -> Option<Vec<WriteJob>> {
        let first = self.carried.take().or_else(|| jobs.blocking_recv())?;
        if first.runs_alone() {
            return Some(vec![first]);
        }
        let mut weight = first.weight();
        let mut group = vec![first];
        self.take_waiting(jobs, &mut group, &mut weight);
        let mut pauses = 0;
        while group.len() > 1
            && pauses < MAX_GATHER_PAUSES
            && self.carried.is_none()
            && weight < MAX_GROUP_EVENTS
        {
            pauses += 1;
            std::thread::yield_now();
            let before = group.len();
            self.take_waiting(jobs, &mut group, &mut weight);
            if group.len() == before {
                break;
            }
        }
        Some(group)
    }

    /// Moves the jobs already waiting into `group`, up to a full group; a job that must run
    /// alone is kept for the next group and ends this one.
    fn take_waiting(
        &mut self,
        jobs: &mut mpsc::Receiver<WriteJob>,
        group: &mut Vec<WriteJob>,
        weight: &mut usize,
    ) {
        while self.carried.is_none() && *weight < MAX_GROUP_EVENTS {
            match jobs.try_recv() {
                Ok(job) if job.runs_alone() => self.carried = Some(job),
                Ok(job) => {
                    *weight += job.weight();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
    }

    /// [`GroupReader::next_group`] on a queue several writer threads share: only the thread
    /// holding the lock gathers; it commits after releasing it.
    pub(crate) fn next_shared_group(
        &mut self,
        jobs: &Mutex<mpsc::Receiver<WriteJob>>,
    ) -> Option<Vec<WriteJob>> {
        if let Some(carried) = self.carried.take() {
            return Some(vec![carried]);
        }
        let mut jobs = jobs.lock().unwrap_or_else(|e| e.into_inner());
        self.next_group(&mut jobs)
    }
}

/// Runs `group` with `run_jobs` (one transaction for all of it) and answers every job. When the
/// group fails, each job is retried in a transaction of its own.
pub(crate) fn commit_group(
    group: Vec<WriteJob>,
    mut run_jobs: impl FnMut(&[WriteJob]) -> Result<Vec<JobResult>, StoreError>,
) {
    match run_jobs(&group) {
        Ok(results) => {
            for (job, result) in group.into_iter().zip(results) {
                answer(job, Ok(result));
            }
        }
        // One job's failure must not fail the others: retry each in its own transaction.
        Err(e) if group.len() > 1 => {
            static RETRIES: crate::telemetry::LogLimiter = crate::telemetry::LogLimiter::new();
            if let Some(held_back) = RETRIES.allow() {
                tracing::warn!(error = %e, jobs = group.len(), held_back, "group failed; retrying its jobs one by one");
            }
            for job in group {
                let result =
                    run_jobs(std::slice::from_ref(&job)).map(|mut results| results.remove(0));
                answer(job, result);
            }
        }
        Err(e) => {
            // At most one job here: it gets the error itself (a full disk stays a full disk).
            let mut error = Some(e);
            for job in group {
                let e = error
                    .take()
                    .unwrap_or_else(|| StoreError::Internal("the group failed".into()));
                answer(job, Err(e));
            }
        }
    }
}

fn answer(job: WriteJob, result: Result<JobResult, StoreError>) {
    match (job, result) {
        (WriteJob::Record { reply, .. }, Ok(JobResult::Recorded(outcomes))) => {
            let _ = reply.send(Ok(outcomes));
        }
        (WriteJob::TimeOutIdleAgents { reply, .. }, Ok(JobResult::TimedOut(n))) => {
            let _ = reply.send(Ok(n));
        }
        (WriteJob::Prune { reply, .. }, Ok(JobResult::Pruned(report))) => {
            let _ = reply.send(Ok(report));
        }
        (WriteJob::Answer { reply, .. }, Ok(JobResult::Answered(answered))) => {
            let _ = reply.send(Ok(*answered));
        }
        (WriteJob::Telemetry { reply, .. }, Ok(JobResult::Telemetry(outcome))) => {
            let _ = reply.send(Ok(outcome));
        }
        (WriteJob::Telemetry { reply, .. }, Err(e)) => {
            let _ = reply.send(Err(e));
        }
        (WriteJob::Alerts { reply, .. }, Ok(JobResult::Alerts(applied))) => {
            let _ = reply.send(Ok(applied));
        }
        (WriteJob::Alerts { reply, .. }, Err(e)) => {
            let _ = reply.send(Err(e));
        }
        (WriteJob::Answer { reply, .. }, Err(e)) => {
            let _ = reply.send(Err(e));
        }
        (WriteJob::Record { reply, .. }, Err(e)) => {
            let _ = reply.send(Err(e));
        }
        (WriteJob::TimeOutIdleAgents { reply, .. }, Err(e)) => {
            let _ = reply.send(Err(e));
        }
        (WriteJob::Prune { reply, .. }, Err(e)) => {
            let _ = reply.send(Err(e));
        }
        (job, Ok(_)) => answer(
            job,
            Err(StoreError::Internal("mismatched job result".into())),
        ),
    }
}

/// A store's write queue and the writer threads that drain it.
pub(crate) struct WriteQueue {
    /// `None` once closed: dropping the last sender lets the writers drain and stop.
    jobs: Mutex<Option<mpsc::Sender<WriteJob>>>,
    writers: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl WriteQueue {
    /// A queue of at most `capacity` jobs, and its receiving end for the writers.
    pub(crate) fn new(capacity: usize) -> (Self, mpsc::Receiver<WriteJob>) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let queue = Self {
            jobs: Mutex::new(Some(sender)),
            writers: Mutex::new(Vec::new()),
        };
        (queue, receiver)
    }

    /// Starts a writer thread named `name`, which [`Self::close`] waits for.
    pub(crate) fn spawn_writer(
        &self,
        name: String,
        run: impl FnOnce() + Send + 'static,
    ) -> Result<(), StoreError> {
        let writer = std::thread::Builder::new()
            .name(name)
            .spawn(run)
            .map_err(|e| StoreError::Internal(format!("could not start a writer: {e}")))?;
        self.writers.lock().expect("writers lock").push(writer);
        Ok(())
    }

    /// Takes no more jobs and waits until the writers have committed what was queued.
    pub(crate) async fn close(&self) {
        self.jobs.lock().expect("writer sender lock").take();
        let writers = std::mem::take(&mut *self.writers.lock().expect("writers lock"));
        let _ = tokio::task::spawn_blocking(move || {
            for writer in writers {
                let _ = writer.join();
            }
        })
        .await;
    }

    /// Sends a job to the writers; a full queue is answered at once.
    async fn submit<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> WriteJob,
    ) -> Result<T, StoreError> {
        let sender = self
            .jobs
            .lock()
            .expect("writer sender lock")
            .clone()
            .ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        // A full queue is answered at once (503 with Retry-After upstream) rather than holding
        // the request: the hook client spools and retries, and memory stays bounded.
        sender.try_send(job(reply)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StoreError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
        })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Jobs waiting for a writer.
    fn depth(&self) -> usize {
        self.jobs
            .lock()
            .expect("writer sender lock")
            .as_ref()
            .map_or(0, |jobs| jobs.max_capacity() - jobs.capacity())
    }
}

/// The store's writes, the same for every database: any [`DatabaseStore`] has them. Each answers
/// only after its transaction committed.
#[async_trait::async_trait]
pub trait WriteStore: Send + Sync {
    /// Commits the events and their derived state; answers after the commit. Events are
    /// applied in order; a repeated `event_id` is reported as a duplicate and changes nothing.
    async fn record(&self, events: Vec<HookEvent>) -> Result<Vec<RecordOutcome>, StoreError>;

    /// Marks running subagents not seen since `cutoff_ms` as timed out. Returns how many.
    async fn time_out_idle_agents(&self, cutoff_ms: i64) -> Result<u64, StoreError>;

    /// One pruning step (see [`PrunePlan`]); a report with no rows means nothing is left to do.
    async fn prune(&self, plan: PrunePlan) -> Result<PruneReport, StoreError>;

    /// Records `status` as the answer to the human-in-the-loop request of event `event_row`,
    /// if it is one and still pending.
    async fn answer(&self, event_row: i64, status: String) -> Result<Answered, StoreError>;

    /// Commits Claude Code's telemetry records; answers after the commit. A record already
    /// stored (an exporter's retry) is counted as a duplicate.
    async fn record_telemetry(&self, batch: TelemetryBatch)
    -> Result<TelemetryOutcome, StoreError>;

    /// Applies alert changes (see [`crate::store::alerts::apply`]); answers after the commit.
    async fn apply_alerts(
        &self,
        ops: Vec<crate::store::alerts::AlertOp>,
    ) -> Result<Vec<Option<i64>>, StoreError>;

    /// Write jobs waiting for the writer.
    fn write_queue_depth(&self) -> usize;
}

#[async_trait::async_trait]
impl<R: ReaderConnection, D: Send + Sync + 'static> WriteStore for DatabaseStore<R, D> {
    async fn record(&self, events: Vec<HookEvent>) -> Result<Vec<RecordOutcome>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.writes
            .submit(|reply| WriteJob::Record { events, reply })
            .await
    }

    async fn time_out_idle_agents(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        self.writes
            .submit(|reply| WriteJob::TimeOutIdleAgents { cutoff_ms, reply })
            .await
    }

    async fn prune(&self, plan: PrunePlan) -> Result<PruneReport, StoreError> {
        self.writes
            .submit(|reply| WriteJob::Prune { plan, reply })
            .await
    }

    async fn answer(&self, event_row: i64, status: String) -> Result<Answered, StoreError> {
        self.writes
            .submit(|reply| WriteJob::Answer {
                event_row,
                status,
                reply,
            })
            .await
    }

    async fn record_telemetry(
        &self,
        batch: TelemetryBatch,
    ) -> Result<TelemetryOutcome, StoreError> {
        if batch.is_empty() {
            return Ok(TelemetryOutcome::default());
        }
        self.writes
            .submit(|reply| WriteJob::Telemetry { batch, reply })
            .await
    }

    async fn apply_alerts(
        &self,
        ops: Vec<crate::store::alerts::AlertOp>,
    ) -> Result<Vec<Option<i64>>, StoreError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        self.writes
            .submit(|reply| WriteJob::Alerts { ops, reply })
            .await
    }

    fn write_queue_depth(&self) -> usize {
        self.writes.depth()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time_out() -> WriteJob {
        WriteJob::TimeOutIdleAgents {
            cutoff_ms: 0,
            reply: oneshot::channel().0,
        }
    }

    fn prune() -> WriteJob {
        WriteJob::Prune {
            plan: PrunePlan::default(),
            reply: oneshot::channel().0,
        }
    }

    fn is_prune(job: &WriteJob) -> bool {
        matches!(job, WriteJob::Prune { .. })
    }

    #[test]
    fn waiting_jobs_are_one_group_and_pruning_runs_alone_between_groups() {
        let (send, mut jobs) = mpsc::channel(16);
        for job in [time_out(), time_out(), time_out(), prune(), time_out()] {
            assert!(send.try_send(job).is_ok(), "the queue has room");
        }
        let mut reader = GroupReader::default();
        let first = reader.next_group(&mut jobs).expect("a group");
        assert_eq!(first.len(), 3);
        assert!(!first.iter().any(is_prune));
        let second = reader.next_group(&mut jobs).expect("a group");
        assert_eq!(second.len(), 1);
        assert!(is_prune(&second[0]));
        let third = reader.next_group(&mut jobs).expect("a group");
        assert_eq!(third.len(), 1);
        assert!(!is_prune(&third[0]));
        drop(send);
        assert!(reader.next_group(&mut jobs).is_none());
    }

    #[test]
    fn a_group_stops_at_its_event_limit() {
        let (send, mut jobs) = mpsc::channel(MAX_GROUP_EVENTS + 8);
        for _ in 0..MAX_GROUP_EVENTS + 5 {
            assert!(send.try_send(time_out()).is_ok(), "the queue has room");
        }
        let mut reader = GroupReader::default();
        let first = reader.next_group(&mut jobs).expect("a group");
        assert_eq!(first.len(), MAX_GROUP_EVENTS);
        let second = reader.next_group(&mut jobs).expect("a group");
        assert_eq!(second.len(), 5);
    }
}
