//! Retention: keeping the disk bounded while a server runs for months.
//!
//! Raw events (and the tool calls, agents and sessions derived from them) are kept for
//! `--retention`; the minute rollups and main-agent usage that charts read are kept for
//! `--rollup-retention`, which may be longer, and the hourly rollups for ever (a few kilobytes a
//! day), so long-range charts survive the raw events. `--max-db-size` additionally prunes the
//! oldest raw rows, hook events and telemetry alike, while the database uses more than its
//! share of the limit: the files on disk are the database and its WAL, so the WAL is bounded
//! to [`Retention::wal_bytes`] (a twentieth of the limit; SQLite's checkpoint truncates it to
//! that, and the checkpointer cuts it back while it is past it) and the database is held to
//! what is left after three times that share ([`Retention::database_bytes`]): one share for
//! the WAL, one for the commit group that carries it past its share before a checkpoint starts
//! it over, one for the writes admitted before ingest saw the limit. The files on disk stay
//! within the limit (measured: within 10% under the fastest flood, `tests/api/retention.rs`).
//!
//! Pruning runs in the background in small steps, each one short write transaction through the
//! single writer, with a pause between steps: ingest waits behind at most one step, never behind
//! a whole run. Freed pages go back to the file system (incremental vacuum) on files made by
//! this version; older files reuse them, so either way the file stops growing.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::store::{PrunePlan, PruneReport, Store, StoreError};

/// The most rows of a table one pruning step deletes once pruning is behind.
pub(crate) const MAX_STEP_ROWS: usize = 4096;

/// What the pruner keeps. Nothing is pruned by default.
#[derive(Debug, Clone)]
pub struct Retention {
    /// How long raw events and what was derived from them are kept; for ever when `None`.
    pub raw_ms: Option<i64>,
    /// How long minute rollups and main-agent usage are kept; for ever when `None`.
    pub rollups_ms: Option<i64>,
    /// Prune the oldest raw rows while the database uses more bytes than this.
    pub max_db_bytes: Option<u64>,
    /// How often a pruning run starts.
    pub interval: Duration,
    /// Rows per table per step.
    pub batch: usize,
    /// Rest between steps, so ingest gets the writer in between.
    pub pause: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            raw_ms: None,
            rollups_ms: None,
            max_db_bytes: None,
            interval: Duration::from_secs(60),
            batch: 100,
            pause: Duration::from_millis(20),
        }
    }
}

/// The WAL's bound when there is no size limit: 64 MiB (`store/sqlite/schema.rs` on why it is
/// that large).
pub(crate) const DEFAULT_WAL_BYTES: u64 = 64 * 1024 * 1024;

/// The smallest WAL bound: below it SQLite would checkpoint after nearly every commit.
const MIN_WAL_BYTES: u64 = 256 * 1024;

impl Retention {
    /// How large the WAL may grow before a checkpoint starts it over and truncates it: a
    /// twentieth of `--max-db-size` (between 256 KiB and 64 MiB), else 64 MiB.
    pub(crate) fn wal_bytes(&self) -> u64 {
        self.max_db_bytes.map_or(DEFAULT_WAL_BYTES, |limit| {
            (limit / 20).clamp(MIN_WAL_BYTES, DEFAULT_WAL_BYTES)
        })
    }

    /// What the database file itself may use under `--max-db-size`: the limit less three times
    /// the WAL's share: one for the WAL, one for the commit group that carries it past its share
    /// before a checkpoint starts it over, and one for the writes admitted before ingest saw
    /// the database at this size (measured: `tests/api/retention.rs`).
    pub(crate) fn database_bytes(&self) -> Option<u64> {
        self.max_db_bytes
            .map(|limit| limit.saturating_sub(3 * self.wal_bytes()).max(limit / 2))
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.raw_ms.is_some() || self.rollups_ms.is_some() || self.max_db_bytes.is_some()
    }

    /// Rollups must outlive the raw events they summarise.
    pub(crate) fn validate(&self) -> Result<(), String> {
        match (self.raw_ms, self.rollups_ms) {
            (Some(raw), Some(rollups)) if rollups < raw => Err(format!(
                "--rollup-retention ({} d) must not be shorter than --retention ({} d): charts \
                 read the rollups",
                rollups / 86_400_000,
                raw / 86_400_000
            )),
            _ => Ok(()),
        }
    }

    fn plan(&self, now_ms: i64) -> PrunePlan {
        PrunePlan {
            raw_before_ms: self.raw_ms.map(|keep| now_ms - keep),
            rollups_before_ms: self.rollups_ms.map(|keep| now_ms - keep),
            max_used_bytes: self.database_bytes(),
            batch: self.batch,
        }
    }
}

/// What pruning has done since start, for `/metrics` and health.
#[derive(Debug, Default)]
pub(crate) struct RetentionStats {
    runs: AtomicU64,
    failures: AtomicU64,
    totals: Mutex<PruneReport>,
    last_run_at_ms: AtomicU64,
}

impl RetentionStats {
    pub(crate) fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    pub(crate) fn totals(&self) -> PruneReport {
        *self.totals.lock().expect("retention totals lock")
    }

    pub(crate) fn last_run_at_ms(&self) -> Option<i64> {
        match self.last_run_at_ms.load(Ordering::Relaxed) {
            0 => None,
            at => Some(at as i64),
        }
    }
}

/// One pruning run: steps until a step finds nothing left to delete or release. Returns what
/// it deleted.
pub(crate) async fn prune_once(
    store: &dyn Store,
    retention: &Retention,
    stats: &RetentionStats,
    now_ms: i64,
) -> Result<PruneReport, StoreError> {
    let mut plan = retention.plan(now_ms);
    let mut run = PruneReport::default();
    let outcome = loop {
        match store.prune(plan).await {
            Ok(step) => {
                // Behind (a step deleted a full batch): double the next step, up to
                // MAX_STEP_ROWS, so pruning keeps up with the fastest ingest; caught up, back to
                // small steps, so ingest never waits long behind one.
                plan.batch = if step.events as usize >= plan.batch {
                    (plan.batch * 2).min(MAX_STEP_ROWS.max(retention.batch))
                } else {
                    retention.batch
                };
                run.add(&step);
                stats
                    .totals
                    .lock()
                    .expect("retention totals lock")
                    .add(&step);
                if step.rows() == 0 && step.pages_released == 0 {
                    break Ok(run);
                }
            }
            Err(e) => break Err(e),
        }
        tokio::time::sleep(retention.pause).await;
    };
    stats.runs.fetch_add(1, Ordering::Relaxed);
    stats
        .last_run_at_ms
        .store(now_ms.max(1) as u64, Ordering::Relaxed);
    if outcome.is_err() {
        stats.failures.fetch_add(1, Ordering::Relaxed);
    }
    outcome
}
