//! The one door to Redis: every command goes through [`RedisLink::query`], which
//! - asks the circuit breaker first (an open breaker answers at once, with no I/O);
//! - connects lazily, so hookwatch starts whether or not Redis is up;
//! - bounds the whole call, connecting included, by one timeout, and never retries;
//! - drops the connection after a failure, so a Redis that restarted or froze is reached
//!   through a fresh connection once it is back;
//! - counts errors and timeouts and keeps the last error with no URL or password in it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{FromRedisValue, Pipeline};
use tokio::time::Instant;

use super::breaker::{BreakerSettings, BreakerState, CircuitBreaker, Permit, Transition};

/// Why a call did not reach Redis or got no answer. Callers fall back to the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Unavailable {
    #[error("the circuit breaker is open")]
    Rejected,
    #[error("redis did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("redis error: {0}")]
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct LastError {
    pub message: String,
    pub at_ms: i64,
}

pub(crate) struct RedisLink {
    client: redis::Client,
    /// The URL as it may be shown: no user or password.
    shown_url: String,
    /// The password, scrubbed from any error text we keep or log.
    secret: Option<String>,
    timeout: Duration,
    breaker: CircuitBreaker,
    /// The shared multiplexed connection and the number it was given when made, so a failed
    /// call drops only the connection it used, never a newer one.
    connection: Mutex<Option<(u64, MultiplexedConnection)>>,
    connect_lock: tokio::sync::Mutex<()>,
    connections_made: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    last_error: Mutex<Option<LastError>>,
    /// Breaker transitions, so the cache can react to a recovery (`closed` after `half_open`).
    transitions: tokio::sync::watch::Sender<(BreakerState, i64)>,
}

impl RedisLink {
    pub(crate) fn new(
        url: &str,
        timeout: Duration,
        breaker: BreakerSettings,
    ) -> Result<Self, String> {
        let client = redis::Client::open(url)
            .map_err(|e| format!("invalid redis url {}: {e}", redact_url(url)))?;
        let secret = client
            .get_connection_info()
            .redis_settings()
            .password()
            .map(str::to_owned);
        let (transitions, _) =
            tokio::sync::watch::channel((BreakerState::Closed, crate::clock::wall_clock_ms()));
        Ok(Self {
            client,
            shown_url: redact_url(url),
            secret,
            timeout,
            breaker: CircuitBreaker::new(breaker, Instant::now()),
            connection: Mutex::new(None),
            connect_lock: tokio::sync::Mutex::new(()),
            connections_made: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            last_error: Mutex::new(None),
            transitions,
        })
    }

    pub(crate) fn shown_url(&self) -> &str {
        &self.shown_url
    }

    pub(crate) fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Breaker state and the wall-clock time (ms) of its last transition.
    pub(crate) fn watch_transitions(&self) -> tokio::sync::watch::Receiver<(BreakerState, i64)> {
        self.transitions.subscribe()
    }

    pub(crate) fn last_transition(&self) -> (BreakerState, i64) {
        *self.transitions.borrow()
    }

    pub(crate) fn is_connected(&self) -> bool {
        lock(&self.connection).is_some()
    }

    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub(crate) fn timeouts(&self) -> u64 {
        self.timeouts.load(Ordering::Relaxed)
    }

    pub(crate) fn last_error(&self) -> Option<LastError> {
        lock(&self.last_error).clone()
    }

    /// Runs `pipeline` against Redis, or says why it could not.
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        pipeline: &Pipeline,
    ) -> Result<T, Unavailable> {
        let (permit, transition) = self.breaker.try_acquire(Instant::now());
        self.announce(transition);
        let Ok(permit) = permit else {
            return Err(Unavailable::Rejected);
        };
        // If this future is dropped mid-call, the guard reports a failure, so a cancelled probe
        // can never leave the breaker half-open forever.
        let mut guard = PermitGuard {
            link: self,
            permit: Some(permit),
        };
        let outcome = tokio::time::timeout(self.timeout, self.run(pipeline)).await;
        let permit = guard.permit.take().expect("the permit is taken once");
        match outcome {
            Ok(Ok(value)) => {
                self.announce(self.breaker.succeeded(permit, Instant::now()));
                Ok(value)
            }
            Ok(Err((connection_id, error))) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                let message = self.scrub(&error.to_string());
                self.record_failure(permit, connection_id, message.clone());
                Err(Unavailable::Failed(message))
            }
            Err(_elapsed) => {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
                let connection_id = lock(&self.connection).as_ref().map(|(id, _)| *id);
                self.record_failure(
                    permit,
                    connection_id,
                    format!("no answer within {:?}", self.timeout),
                );
                Err(Unavailable::TimedOut(self.timeout))
            }
        }
    }

    async fn run<T: FromRedisValue>(
        &self,
        pipeline: &Pipeline,
    ) -> Result<T, (Option<u64>, redis::RedisError)> {
        let (id, mut connection) = self.connection().await.map_err(|e| (None, e))?;
        pipeline
            .query_async(&mut connection)
            .await
            .map_err(|e| (Some(id), e))
    }

    /// A connection of its own, for a reader that blocks (`XREAD BLOCK`): it would hold up
    /// every other call on the shared one. Connecting is bounded by the call timeout; answers
    /// may take `block` longer. Bypasses the breaker: the caller runs in the background and
    /// only ever waits itself.
    pub(crate) async fn dedicated_connection(
        &self,
        block: Duration,
    ) -> Result<MultiplexedConnection, Unavailable> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout + block));
        match tokio::time::timeout(
            self.timeout,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(e)) => Err(Unavailable::Failed(self.scrub(&e.to_string()))),
            Err(_) => Err(Unavailable::TimedOut(self.timeout)),
        }
    }

    async fn connection(&self) -> Result<(u64, MultiplexedConnection), redis::RedisError> {
        if let Some(existing) = lock(&self.connection).clone() {
            return Ok(existing);
        }
        let _connecting = self.connect_lock.lock().await;
        if let Some(existing) = lock(&self.connection).clone() {
            return Ok(existing);
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let id = self.connections_made.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(redis = %self.shown_url, "connected to redis");
        *lock(&self.connection) = Some((id, connection.clone()));
        Ok((id, connection))
    }

    fn record_failure(&self, permit: Permit, connection_id: Option<u64>, message: String) {
        {
            let mut connection = lock(&self.connection);
            if connection.as_ref().map(|(id, _)| *id) == connection_id && connection_id.is_some() {
                *connection = None;
            }
        }
        tracing::debug!(redis = %self.shown_url, error = %message, "redis call failed");
        *lock(&self.last_error) = Some(LastError {
            message,
            at_ms: crate::clock::wall_clock_ms(),
        });
        self.announce(self.breaker.failed(permit, Instant::now()));
    }

    fn announce(&self, transition: Option<Transition>) {
        let Some(Transition { from, to }) = transition else {
            return;
        };
        match to {
            BreakerState::Open => tracing::warn!(
                redis = %self.shown_url,
                from = from.as_str(),
                "redis circuit breaker opened: serving from the database only"
            ),
            BreakerState::HalfOpen => {
                tracing::info!(redis = %self.shown_url, "redis circuit breaker half-open: probing")
            }
            BreakerState::Closed => {
                tracing::info!(redis = %self.shown_url, "redis circuit breaker closed: redis is back")
            }
        }
        self.transitions
            .send_replace((to, crate::clock::wall_clock_ms()));
    }

    fn scrub(&self, text: &str) -> String {
        match &self.secret {
            Some(secret) if !secret.is_empty() => text.replace(secret.as_str(), "***"),
            _ => text.to_owned(),
        }
    }
}

struct PermitGuard<'a> {
    link: &'a RedisLink,
    permit: Option<Permit>,
}

impl Drop for PermitGuard<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.link
                .announce(self.link.breaker.failed(permit, Instant::now()));
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// `redis://user:secret@host:6379/0` → `redis://***@host:6379/0`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing listens on port 1: every call that reaches the network fails.
    fn unreachable_link(cooldown: Duration) -> RedisLink {
        RedisLink::new(
            "redis://127.0.0.1:1",
            Duration::from_millis(50),
            BreakerSettings {
                failure_threshold: 5,
                cooldown,
            },
        )
        .unwrap()
    }

    fn ping() -> Pipeline {
        let mut pipeline = redis::pipe();
        pipeline.cmd("PING").ignore();
        pipeline
    }

    fn failures(link: &RedisLink) -> u64 {
        link.errors() + link.timeouts()
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_breaker_skips_redis_until_the_cooldown_then_sends_one_probe() {
        let cooldown = Duration::from_secs(30);
        let link = unreachable_link(cooldown);
        for _ in 0..5 {
            assert!(link.query::<()>(&ping()).await.is_err());
        }
        assert_eq!(failures(&link), 5);
        assert_eq!(link.breaker().state(), BreakerState::Open);
        assert_eq!(link.last_transition().0, BreakerState::Open);

        // Steady traffic while open: rejected at once, no I/O, and the cooldown is not
        // extended by it.
        for _ in 0..20 {
            tokio::time::advance(Duration::from_secs(1)).await;
            assert_eq!(link.query::<()>(&ping()).await, Err(Unavailable::Rejected));
        }
        assert_eq!(failures(&link), 5, "rejected calls did no I/O");
        tokio::time::advance(Duration::from_millis(9_990)).await;
        assert_eq!(link.query::<()>(&ping()).await, Err(Unavailable::Rejected));
        tokio::time::advance(Duration::from_millis(10)).await;
        // 30 s after opening: the next call is the probe; it fails and reopens the breaker.
        assert_ne!(link.query::<()>(&ping()).await, Err(Unavailable::Rejected));
        assert_eq!(failures(&link), 6);
        assert_eq!(link.breaker().counts().half_opened, 1);
        assert_eq!(link.breaker().state(), BreakerState::Open);
        assert_eq!(link.query::<()>(&ping()).await, Err(Unavailable::Rejected));
    }

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(
            redact_url("redis://user:hunter2@cache.internal:6379/1"),
            "redis://***@cache.internal:6379/1"
        );
        assert_eq!(
            redact_url("redis://:hunter2@localhost"),
            "redis://***@localhost"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            redact_url("unix:///run/redis.sock"),
            "unix:///run/redis.sock"
        );
    }
}
