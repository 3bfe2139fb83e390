//! Where "now" comes from.
//!
//! Idle time-outs, default ranges and server-filled timestamps all depend on the current time.
//! Taking it from a [`Clock`] instead of calling `SystemTime::now()` everywhere lets tests pin
//! time and assert exact values. Rate limits measure elapsed time, which must never run
//! backwards when the wall clock is set back, so a clock gives a monotonic reading too.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in milliseconds since the Unix epoch (UTC), and of elapsed time.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;

    /// Time since a fixed start, never going backwards; for measuring intervals.
    fn monotonic(&self) -> Duration;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }

    fn monotonic(&self) -> Duration {
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed()
    }
}

/// A clock that only moves when told to; for tests and benchmarks.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        Self(Arc::new(AtomicI64::new(now_ms)))
    }

    pub fn set(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }

    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    /// The set time itself: a test that moves the clock moves elapsed time with it.
    fn monotonic(&self) -> Duration {
        Duration::from_millis(self.now_ms().max(0) as u64)
    }
}

/// The real wall-clock time, for operational timestamps (health, logs) that tests never pin.
pub(crate) fn wall_clock_ms() -> i64 {
    SystemClock.now_ms()
}
