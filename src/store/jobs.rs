//! A group's jobs, run in the writer's open transaction: dispatched once for both databases
//! (`run_job`), each writer supplying only what it does its own way (`OwnWrites`). Above the
//! write queue, the ledger and the write rules in the house: only the two writers name it.

use super::ledger::LedgerSql;
use super::write_queue::{JobResult, WriteJob};
use crate::domain::time::{MINUTE_MS, floor_to};

/// The two write jobs each store does its own way: hook events (SQLite inserts each event as
/// it comes; PostgreSQL inserts the group's at once, under its sessions' locks, before the
/// jobs run) and pruning (SQLite also holds the database to its size limit).
pub(crate) trait OwnWrites<L: LedgerSql> {
    fn record(
        &mut self,
        ledger: &mut L,
        events: &[crate::domain::event::HookEvent],
    ) -> Result<Vec<super::RecordOutcome>, L::Error>;

    fn prune(
        &mut self,
        ledger: &mut L,
        plan: &super::PrunePlan,
    ) -> Result<super::PruneReport, L::Error>;
}

/// Runs one job of a group in the writer's open transaction: written once for both stores,
/// the store's own ways (`own`) aside. A new kind of write is a `WriteJob` variant, its arm
/// here, and the service's call.
pub(crate) fn run_job<L: LedgerSql>(
    ledger: &mut L,
    own: &mut impl OwnWrites<L>,
    job: &WriteJob,
) -> Result<JobResult, L::Error> {
    Ok(match job {
        WriteJob::Record { events, .. } => JobResult::Recorded(own.record(ledger, events)?),
        WriteJob::TimeOutIdleAgents { cutoff_ms, .. } => JobResult::TimedOut(ledger.execute(
            "UPDATE agents SET status = 'timed_out'
             WHERE status = 'running' AND seen_minute <= ?2 AND last_seen < ?1",
            &[(*cutoff_ms).into(), floor_to(*cutoff_ms, MINUTE_MS).into()],
        )?),
        WriteJob::Prune { plan, .. } => JobResult::Pruned(own.prune(ledger, plan)?),
        WriteJob::Telemetry { batch, .. } => {
            JobResult::Telemetry(super::telemetry::record(ledger, batch)?)
        }
        WriteJob::Alerts { ops, .. } => JobResult::Alerts(super::alerts::apply(ledger, ops)?),
        WriteJob::Answer {
            event_row, status, ..
        } => {
            let replaced = ledger.execute(
                super::rows::ANSWER_SQL,
                &[(*event_row).into(), status.as_str().into()],
            )? == 1;
            let event = ledger.query_first(&SELECT_EVENT, &[(*event_row).into()], |row| {
                super::rows::event_from_row(row)
            })?;
            JobResult::Answered(Box::new(super::Answered::from_update(replaced, event)))
        }
    })
}

static SELECT_EVENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {} FROM events WHERE id = ?1",
        super::rows::EVENT_COLUMNS
    )
});
