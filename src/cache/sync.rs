//! One cache sync at a time, and not too often.
//!
//! `sync_cache_from_database` is expensive (it recomputes every default view), and a recovery,
//! the start-up warm-up and an operator's `POST /api/cache/sync` can all ask for it at once.
//! [`SyncGate`] makes a call that arrives while a sync runs join that run and get its report,
//! and skips routine triggers that come sooner than the minimum interval after the last run.
//! Forced syncs and recoveries are never rate-limited: a recovery changes what is cached, so
//! it must be followed by a warm-up. The sync itself runs in its own task, so a caller that
//! gives up waiting never cancels it for the others.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncTrigger {
    /// Start-up or the periodic check: subject to the rate limit.
    Routine,
    /// The breaker closed after an outage, or a new epoch was taken.
    Recovery,
    /// `POST /api/cache/sync`.
    Forced,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SyncReport {
    pub trigger: SyncTrigger,
    /// Wall-clock time the sync started, ms.
    pub started_at_ms: i64,
    pub duration_ms: f64,
    /// Keys written to Redis.
    pub keys_written: u64,
    /// `None` when every write landed.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SyncOutcome {
    /// This call started the sync.
    Ran(SyncReport),
    /// A sync was already running; this call waited for it.
    Joined(SyncReport),
    /// The last sync finished too recently.
    RateLimited { retry_in: Duration },
}

#[derive(Default)]
struct GateState {
    running: Option<watch::Receiver<Option<SyncReport>>>,
    last_finished: Option<Instant>,
    last_report: Option<SyncReport>,
    runs: u64,
}

pub(crate) struct SyncGate {
    min_interval: Duration,
    state: std::sync::Mutex<GateState>,
}

impl SyncGate {
    pub(crate) fn new(min_interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            min_interval,
            state: std::sync::Mutex::new(GateState::default()),
        })
    }

    pub(crate) fn in_progress(&self) -> bool {
        self.lock().running.is_some()
    }

    pub(crate) fn last_report(&self) -> Option<SyncReport> {
        self.lock().last_report.clone()
    }

    /// How many syncs have run since start.
    pub(crate) fn runs(&self) -> u64 {
        self.lock().runs
    }

    /// Runs `job` unless a run is in progress (then waits for it) or, for routine triggers,
    /// one finished less than the minimum interval ago.
    pub(crate) async fn run<F, Fut>(self: &Arc<Self>, trigger: SyncTrigger, job: F) -> SyncOutcome
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = SyncReport> + Send + 'static,
    {
        let (mut receiver, started_here) = {
            let mut state = self.lock();
            if let Some(running) = &state.running {
                (running.clone(), false)
            } else {
                if trigger == SyncTrigger::Routine
                    && let Some(last) = state.last_finished
                {
                    let since = last.elapsed();
                    if since < self.min_interval {
                        return SyncOutcome::RateLimited {
                            retry_in: self.min_interval - since,
                        };
                    }
                }
                let (sender, receiver) = watch::channel(None);
                state.running = Some(receiver.clone());
                state.runs += 1;
                let gate = Arc::clone(self);
                let work = job();
                tokio::spawn(async move {
                    let report = work.await;
                    {
                        let mut state = gate.lock();
                        state.running = None;
                        state.last_finished = Some(Instant::now());
                        state.last_report = Some(report.clone());
                    }
                    sender.send_replace(Some(report));
                });
                (receiver, true)
            }
        };
        let report = match receiver.wait_for(Option::is_some).await {
            Ok(report) => report.clone().expect("waited for a report"),
            // The sync task panicked; report that rather than hanging.
            Err(_) => SyncReport {
                trigger,
                started_at_ms: crate::clock::wall_clock_ms(),
                duration_ms: 0.0,
                keys_written: 0,
                error: Some("the sync task stopped unexpectedly".into()),
            },
        };
        if started_here {
            SyncOutcome::Ran(report)
        } else {
            SyncOutcome::Joined(report)
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    async fn slow_job(counter: Arc<AtomicU64>) -> SyncReport {
        counter.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(2)).await;
        SyncReport {
            trigger: SyncTrigger::Forced,
            started_at_ms: 0,
            duration_ms: 2000.0,
            keys_written: 6,
            error: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ten_concurrent_triggers_run_one_sync() {
        let gate = SyncGate::new(Duration::from_secs(300));
        let counter = Arc::new(AtomicU64::new(0));
        let callers: Vec<_> = (0..10)
            .map(|_| {
                let gate = Arc::clone(&gate);
                let counter = Arc::clone(&counter);
                tokio::spawn(
                    async move { gate.run(SyncTrigger::Forced, || slow_job(counter)).await },
                )
            })
            .collect();
        let mut ran = 0;
        let mut joined = 0;
        for caller in callers {
            match caller.await.unwrap() {
                SyncOutcome::Ran(report) => {
                    ran += 1;
                    assert_eq!(report.keys_written, 6);
                }
                SyncOutcome::Joined(report) => {
                    joined += 1;
                    assert_eq!(report.keys_written, 6);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(counter.load(Ordering::SeqCst), 1, "exactly one sync ran");
        assert_eq!((ran, joined), (1, 9));
        assert_eq!(gate.runs(), 1);
        assert!(!gate.in_progress());
    }

    #[tokio::test(start_paused = true)]
    async fn routine_syncs_are_rate_limited_but_forced_and_recovery_syncs_are_not() {
        let gate = SyncGate::new(Duration::from_secs(300));
        let counter = Arc::new(AtomicU64::new(0));
        let first = gate
            .run(SyncTrigger::Routine, || slow_job(Arc::clone(&counter)))
            .await;
        assert!(matches!(first, SyncOutcome::Ran(_)));
        tokio::time::advance(Duration::from_secs(60)).await;
        match gate
            .run(SyncTrigger::Routine, || slow_job(Arc::clone(&counter)))
            .await
        {
            SyncOutcome::RateLimited { retry_in } => {
                assert_eq!(retry_in, Duration::from_secs(240))
            }
            other => panic!("expected a rate limit, got {other:?}"),
        }
        for trigger in [SyncTrigger::Forced, SyncTrigger::Recovery] {
            let outcome = gate.run(trigger, || slow_job(Arc::clone(&counter))).await;
            assert!(matches!(outcome, SyncOutcome::Ran(_)), "{trigger:?}");
        }
        tokio::time::advance(Duration::from_secs(300)).await;
        let later = gate
            .run(SyncTrigger::Routine, || slow_job(Arc::clone(&counter)))
            .await;
        assert!(matches!(later, SyncOutcome::Ran(_)));
        assert_eq!(counter.load(Ordering::SeqCst), 4);
    }
}
