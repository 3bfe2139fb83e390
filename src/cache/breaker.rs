//! The circuit breaker in front of Redis.
//!
//! Closed → (N consecutive failures) → Open → (cooldown) → HalfOpen → one probe → Closed or Open.
//!
//! The origin's breaker counted its own rejections as failures, so under steady traffic the
//! open period kept being extended and it never closed again. Here a rejected call is not an
//! outcome at all: it does no I/O, changes no state, and the cooldown runs from the moment the
//! breaker opened. Exactly one probe is let through when the cooldown is over; every other call
//! is rejected until that probe reports.
//!
//! Time is passed in (`now`), so the state machine is tested without sleeping; the caller uses
//! `tokio::time::Instant`, so tests of the whole cache can also run on paused time.
//! The state sits behind a std `Mutex`: every critical section is a few comparisons and never
//! awaits (the same choice mini-redis makes for its `Db`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
    /// Consecutive failures (errors or timeouts) that open the breaker.
    pub failure_threshold: u32,
    /// How long the breaker stays open before one probe may go through.
    pub cooldown: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// Permission to make one call. Report its outcome with [`CircuitBreaker::succeeded`] or
/// [`CircuitBreaker::failed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Permit {
    /// The breaker's generation when the permit was issued: outcomes of calls issued before the
    /// last transition are stale and change nothing (a slow success from before the breaker
    /// opened must not close it).
    generation: u64,
    probe: bool,
}

impl Permit {
    #[cfg(test)]
    fn is_probe(&self) -> bool {
        self.probe
    }
}

/// A state change, for logging and counting by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transition {
    pub from: BreakerState,
    pub to: BreakerState,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    consecutive_failures: u32,
    opened_at: Instant,
    probe_in_flight: bool,
    generation: u64,
}

#[derive(Debug)]
pub(crate) struct CircuitBreaker {
    settings: BreakerSettings,
    inner: Mutex<Inner>,
    rejected: AtomicU64,
    opened: AtomicU64,
    half_opened: AtomicU64,
    closed: AtomicU64,
}

/// Counters for health and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerCounts {
    pub rejected: u64,
    pub opened: u64,
    pub half_opened: u64,
    pub closed: u64,
}

impl CircuitBreaker {
    pub(crate) fn new(settings: BreakerSettings, now: Instant) -> Self {
        Self {
            settings: BreakerSettings {
                failure_threshold: settings.failure_threshold.max(1),
                ..settings
            },
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive_failures: 0,
                opened_at: now,
                probe_in_flight: false,
                generation: 0,
            }),
            rejected: AtomicU64::new(0),
            opened: AtomicU64::new(0),
            half_opened: AtomicU64::new(0),
            closed: AtomicU64::new(0),
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        self.lock().state
    }

    /// While open: how long until the next call may probe (zero once the cool-down is over);
    /// `None` in any other state.
    pub(crate) fn probe_in(&self, now: Instant) -> Option<Duration> {
        let inner = self.lock();
        (inner.state == BreakerState::Open).then(|| {
            self.settings
                .cooldown
                .saturating_sub(now.duration_since(inner.opened_at))
        })
    }

    pub(crate) fn counts(&self) -> BreakerCounts {
        BreakerCounts {
            rejected: self.rejected.load(Ordering::Relaxed),
            opened: self.opened.load(Ordering::Relaxed),
            half_opened: self.half_opened.load(Ordering::Relaxed),
            closed: self.closed.load(Ordering::Relaxed),
        }
    }

    /// May a call go to Redis now? `Err(())` means skip Redis at once, with no I/O.
    /// The returned transition (open → half-open) is for the caller to log.
    pub(crate) fn try_acquire(&self, now: Instant) -> (Result<Permit, ()>, Option<Transition>) {
        let mut inner = self.lock();
        match inner.state {
            BreakerState::Closed => (
                Ok(Permit {
                    generation: inner.generation,
                    probe: false,
                }),
                None,
            ),
            BreakerState::Open if now.duration_since(inner.opened_at) >= self.settings.cooldown => {
                let transition = self.move_to(&mut inner, BreakerState::HalfOpen, now);
                inner.probe_in_flight = true;
                (
                    Ok(Permit {
                        generation: inner.generation,
                        probe: true,
                    }),
                    Some(transition),
                )
            }
            BreakerState::Open | BreakerState::HalfOpen => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                (Err(()), None)
            }
        }
    }

    pub(crate) fn succeeded(&self, permit: Permit, now: Instant) -> Option<Transition> {
        let mut inner = self.lock();
        if permit.generation != inner.generation {
            return None;
        }
        match inner.state {
            BreakerState::Closed => {
                inner.consecutive_failures = 0;
                None
            }
            BreakerState::HalfOpen if permit.probe => {
                inner.probe_in_flight = false;
                inner.consecutive_failures = 0;
                Some(self.move_to(&mut inner, BreakerState::Closed, now))
            }
            _ => None,
        }
    }

    pub(crate) fn failed(&self, permit: Permit, now: Instant) -> Option<Transition> {
        let mut inner = self.lock();
        if permit.generation != inner.generation {
            return None;
        }
        match inner.state {
            BreakerState::Closed => {
                inner.consecutive_failures += 1;
                (inner.consecutive_failures >= self.settings.failure_threshold)
                    .then(|| self.move_to(&mut inner, BreakerState::Open, now))
            }
            BreakerState::HalfOpen if permit.probe => {
                inner.probe_in_flight = false;
                Some(self.move_to(&mut inner, BreakerState::Open, now))
            }
            _ => None,
        }
    }

    fn move_to(&self, inner: &mut Inner, to: BreakerState, now: Instant) -> Transition {
        let from = inner.state;
        inner.state = to;
        inner.generation += 1;
        let counter = match to {
            BreakerState::Open => {
                inner.opened_at = now;
                &self.opened
            }
            BreakerState::HalfOpen => &self.half_opened,
            BreakerState::Closed => &self.closed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Transition { from, to }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the state half-updated in a way that
        // matters more than refusing every later call would.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: Duration = Duration::from_secs(30);

    fn breaker(now: Instant) -> CircuitBreaker {
        CircuitBreaker::new(
            BreakerSettings {
                failure_threshold: 5,
                cooldown: COOLDOWN,
            },
            now,
        )
    }

    fn fail_times(b: &CircuitBreaker, n: u32, now: Instant) {
        for _ in 0..n {
            let permit = b
                .try_acquire(now)
                .0
                .expect("closed breakers let calls through");
            b.failed(permit, now);
        }
    }

    #[test]
    fn opens_after_the_threshold_of_consecutive_failures() {
        let t0 = Instant::now();
        let b = breaker(t0);
        fail_times(&b, 4, t0);
        assert_eq!(b.state(), BreakerState::Closed);
        fail_times(&b, 1, t0);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.counts().opened, 1);
    }

    #[test]
    fn an_open_breaker_says_when_the_next_call_may_probe() {
        let t0 = Instant::now();
        let b = breaker(t0);
        assert_eq!(b.probe_in(t0), None, "closed");
        fail_times(&b, 5, t0);
        assert_eq!(b.probe_in(t0), Some(COOLDOWN));
        let later = t0 + COOLDOWN / 4;
        assert_eq!(b.probe_in(later), Some(COOLDOWN - COOLDOWN / 4));
        assert!(b.try_acquire(later).0.is_err(), "still cooling down");
        let due = t0 + COOLDOWN;
        assert_eq!(b.probe_in(due), Some(Duration::ZERO));
        assert!(
            b.try_acquire(due).0.is_ok(),
            "the probe goes through once it is due"
        );
        assert_eq!(b.probe_in(due), None, "half open");
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let t0 = Instant::now();
        let b = breaker(t0);
        fail_times(&b, 4, t0);
        let permit = b.try_acquire(t0).0.unwrap();
        b.succeeded(permit, t0);
        fail_times(&b, 4, t0);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn rejected_calls_do_not_extend_the_open_period() {
        let t0 = Instant::now();
        let b = breaker(t0);
        fail_times(&b, 5, t0);
        // Steady traffic while open: every call is rejected, none moves the cooldown.
        for second in 0..30 {
            let now = t0 + Duration::from_secs(second);
            assert!(b.try_acquire(now).0.is_err(), "rejected at {second}s");
        }
        assert_eq!(b.counts().rejected, 30);
        let (permit, transition) = b.try_acquire(t0 + COOLDOWN);
        assert!(permit.unwrap().is_probe());
        assert_eq!(
            transition,
            Some(Transition {
                from: BreakerState::Open,
                to: BreakerState::HalfOpen
            })
        );
    }

    #[test]
    fn half_open_lets_exactly_one_probe_through() {
        let t0 = Instant::now();
        let b = breaker(t0);
        fail_times(&b, 5, t0);
        let later = t0 + COOLDOWN;
        let probe = b.try_acquire(later).0.expect("the probe");
        for _ in 0..10 {
            assert!(b.try_acquire(later).0.is_err(), "only one probe at a time");
        }
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let transition = b.succeeded(probe, later);
        assert_eq!(transition.map(|t| t.to), Some(BreakerState::Closed));
        assert!(b.try_acquire(later).0.is_ok());
        assert_eq!(b.counts().closed, 1);
    }

    #[test]
    fn a_failed_probe_reopens_for_a_full_cooldown() {
        let t0 = Instant::now();
        let b = breaker(t0);
        fail_times(&b, 5, t0);
        let probe_at = t0 + COOLDOWN;
        let probe = b.try_acquire(probe_at).0.unwrap();
        assert_eq!(
            b.failed(probe, probe_at).map(|t| t.to),
            Some(BreakerState::Open)
        );
        assert!(b.try_acquire(probe_at + COOLDOWN / 2).0.is_err());
        assert!(b.try_acquire(probe_at + COOLDOWN).0.unwrap().is_probe());
    }

    #[test]
    fn outcomes_of_calls_issued_before_a_transition_change_nothing() {
        let t0 = Instant::now();
        let b = breaker(t0);
        let slow = b.try_acquire(t0).0.unwrap();
        fail_times(&b, 5, t0);
        // The slow call from before the breaker opened finally succeeds: still open.
        assert_eq!(b.succeeded(slow, t0), None);
        assert_eq!(b.state(), BreakerState::Open);
        // And a stale failure does not reopen a closed breaker's count either.
        let probe = b.try_acquire(t0 + COOLDOWN).0.unwrap();
        b.succeeded(probe, t0 + COOLDOWN);
        assert_eq!(b.failed(slow, t0 + COOLDOWN), None);
        fail_times(&b, 4, t0 + COOLDOWN);
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
