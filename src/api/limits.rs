//! Request limits: a time limit on every request, and request-rate limits per client (by peer
//! address) and for the whole server.
//!
//! A request that takes longer than `--request-timeout` to arrive and be answered (a slow
//! upload, a stuck handler) gets 408; slow request heads are cut at the connection
//! (`http_server.rs`). Over a rate limit a request gets 429 with `Retry-After` at once, before
//! authentication, so a flood costs almost nothing. Rates are token buckets that allow a burst
//! of one second's worth. `/healthz` is exempt, so a load balancer never sees a limit.
//!
//! The limiter is `governor`'s (GCRA, equivalent to a token bucket), timed by the server's
//! [`Clock`] so tests move time instead of sleeping. Per-client state lives in a map capped at
//! [`MAX_TRACKED_CLIENTS`]: when it is full, clients idle long enough to be back at a full burst
//! are dropped first, and while it is still full of active clients every client shares one
//! overflow limit.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;
use governor::clock::Clock as _;
use governor::nanos::Nanos;
use governor::state::keyed::HashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{NotUntil, Quota};

use super::AppState;
use super::error::ApiError;
use crate::clock::Clock;

/// Clients whose limits are kept at once.
pub(crate) const MAX_TRACKED_CLIENTS: usize = 10_000;

#[derive(Debug, Clone)]
pub struct RequestLimits {
    /// The longest a request may take, from its head arriving to its answer starting.
    pub request_timeout: Duration,
    /// Requests per second one client (IP address) may make; unlimited when `None`.
    pub per_client_per_s: Option<f64>,
    /// Requests per second the server takes from everyone; unlimited when `None`.
    pub global_per_s: Option<f64>,
    /// Load balancers in front of hookwatch: for a request from one of them, the client is the
    /// rightmost `X-Forwarded-For` address that is not one of them.
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            per_client_per_s: None,
            global_per_s: None,
            trusted_proxies: Vec::new(),
        }
    }
}

/// The server's clock as `governor` reads it: its monotonic time.
#[derive(Clone)]
struct LimiterClock(Arc<dyn Clock>);

impl governor::clock::Clock for LimiterClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.0.monotonic())
    }
}

type KeyedLimiter = governor::RateLimiter<
    IpAddr,
    HashMapStateStore<IpAddr>,
    LimiterClock,
    governor::middleware::NoOpMiddleware<Nanos>,
>;
type DirectLimiter = governor::RateLimiter<
    NotKeyed,
    InMemoryState,
    LimiterClock,
    governor::middleware::NoOpMiddleware<Nanos>,
>;

/// `rate` requests a second with a burst of one second's worth (at least one request).
fn quota(rate: f64) -> Option<Quota> {
    let burst = NonZeroU32::new(rate.max(1.0).min(f64::from(u32::MAX)) as u32)?;
    Quota::with_period(Duration::from_secs_f64(1.0 / rate)).map(|quota| quota.allow_burst(burst))
}

/// The rate limiters.
pub(crate) struct RateLimiter {
    clock: LimiterClock,
    per_client: Option<ClientLimits>,
    global: Option<(f64, DirectLimiter)>,
}

struct ClientLimits {
    rate: f64,
    clients: KeyedLimiter,
    /// Shared by every client while the map is full of active ones.
    overflow: DirectLimiter,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field(
                "per_client_per_s",
                &self.per_client.as_ref().map(|c| c.rate),
            )
            .field("global_per_s", &self.global.as_ref().map(|g| g.0))
            .finish()
    }
}

impl RateLimiter {
    pub(crate) fn new(limits: &RequestLimits, clock: Arc<dyn Clock>) -> Self {
        let clock = LimiterClock(clock);
        let limit = |rate: Option<f64>| {
            let rate = rate.filter(|r| *r > 0.0 && r.is_finite())?;
            Some((rate, quota(rate)?))
        };
        Self {
            per_client: limit(limits.per_client_per_s).map(|(rate, quota)| ClientLimits {
                rate,
                clients: governor::RateLimiter::hashmap_with_clock(quota, clock.clone()),
                overflow: governor::RateLimiter::direct_with_clock(quota, clock.clone()),
            }),
            global: limit(limits.global_per_s).map(|(rate, quota)| {
                (
                    rate,
                    governor::RateLimiter::direct_with_clock(quota, clock.clone()),
                )
            }),
            clock,
        }
    }

    fn check(&self, client: Option<IpAddr>) -> Result<(), ApiError> {
        if let (Some(limits), Some(ip)) = (&self.per_client, client) {
            if limits.clients.len() >= MAX_TRACKED_CLIENTS {
                limits.clients.retain_recent();
            }
            let checked = if limits.clients.len() < MAX_TRACKED_CLIENTS {
                limits.clients.check_key(&ip)
            } else {
                limits.overflow.check()
            };
            checked.map_err(|not_until| {
                self.too_many(
                    format!(
                        "too many requests from {ip}: the limit is {} per second \
                         (--rate-limit-per-client)",
                        limits.rate
                    ),
                    &not_until,
                )
            })?;
        }
        if let Some((rate, limiter)) = &self.global {
            limiter.check().map_err(|not_until| {
                self.too_many(
                    format!(
                        "the server is taking at most {rate} requests per second \
                         (--rate-limit-global)"
                    ),
                    &not_until,
                )
            })?;
        }
        Ok(())
    }

    fn too_many(&self, message: String, not_until: &NotUntil<Nanos>) -> ApiError {
        let wait = not_until.wait_time_from(self.clock.now());
        ApiError::TooManyRequests {
            message,
            retry_after_s: wait.as_secs_f64().ceil().max(1.0) as u64,
        }
    }
}

/// Who a request is from: the peer, or, when the peer is a trusted proxy, the rightmost
/// `X-Forwarded-For` address that is not a trusted proxy (addresses further left were written
/// by the client itself and prove nothing).
fn client_address(
    peer: IpAddr,
    forwarded_for: axum::http::header::GetAll<'_, axum::http::HeaderValue>,
    trusted_proxies: &[IpAddr],
) -> IpAddr {
    if !trusted_proxies.contains(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = forwarded_for
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|hop| hop.trim().parse().ok())
        .collect();
    hops.into_iter()
        .rev()
        .find(|hop| !trusted_proxies.contains(hop))
        .unwrap_or(peer)
}

/// Rate limits first, then the request under its time limit (run by `api::front_door`).
pub(crate) async fn limit_requests(
    state: &AppState,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if request.uri().path() == "/healthz" {
        return Ok(next.run(request).await);
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let client = peer.map(|peer| {
        client_address(
            peer,
            request.headers().get_all("x-forwarded-for"),
            &state.request_limits.trusted_proxies,
        )
    });
    state.rate_limiter.check(client)?;
    let timeout = state.request_limits.request_timeout;
    tokio::time::timeout(timeout, next.run(request))
        .await
        .map_err(|_| {
            ApiError::Timeout(format!(
                "the request took longer than {} s to arrive and be answered (--request-timeout)",
                timeout.as_secs_f64()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn limiter(
        per_client_per_s: Option<f64>,
        global_per_s: Option<f64>,
    ) -> (RateLimiter, ManualClock) {
        let clock = ManualClock::new(1_000_000);
        let limits = RequestLimits {
            per_client_per_s,
            global_per_s,
            ..RequestLimits::default()
        };
        (RateLimiter::new(&limits, Arc::new(clock.clone())), clock)
    }

    fn retry_after(checked: Result<(), ApiError>) -> u64 {
        match checked {
            Err(ApiError::TooManyRequests { retry_after_s, .. }) => retry_after_s,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_client_gets_a_burst_then_its_rate() {
        let (limiter, clock) = limiter(Some(2.0), None);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(limiter.check(Some(a)).is_ok());
        assert!(limiter.check(Some(a)).is_ok());
        assert_eq!(retry_after(limiter.check(Some(a))), 1);
        clock.advance(Duration::from_millis(499));
        assert!(limiter.check(Some(a)).is_err(), "not yet half a second");
        clock.advance(Duration::from_millis(1));
        assert!(limiter.check(Some(a)).is_ok(), "one more each half second");
        clock.advance(Duration::from_secs(10));
        assert!(limiter.check(Some(a)).is_ok());
        assert!(limiter.check(Some(a)).is_ok());
        assert!(
            limiter.check(Some(a)).is_err(),
            "the burst never grows past a second's worth"
        );
    }

    #[test]
    fn a_slow_rate_says_how_long_to_wait() {
        let (limiter, clock) = limiter(Some(0.25), None);
        assert!(
            limiter.check(None).is_ok(),
            "no address, no per-client limit"
        );
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(limiter.check(Some(a)).is_ok());
        assert_eq!(retry_after(limiter.check(Some(a))), 4);
        clock.advance(Duration::from_millis(2_500));
        assert_eq!(retry_after(limiter.check(Some(a))), 2, "rounded up");
    }

    #[test]
    fn a_full_table_of_clients_drops_the_idle_then_shares_one_limit() {
        let (limiter, clock) = limiter(Some(1.0), None);
        let address = |n: usize| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n as u32));
        for n in 0..MAX_TRACKED_CLIENTS {
            assert!(limiter.check(Some(address(n))).is_ok());
        }
        let clients = &limiter.per_client.as_ref().unwrap().clients;
        assert_eq!(clients.len(), MAX_TRACKED_CLIENTS);
        // Full of active clients: newcomers share the overflow limit.
        let late = address(MAX_TRACKED_CLIENTS);
        assert!(limiter.check(Some(late)).is_ok());
        assert!(
            limiter
                .check(Some(address(MAX_TRACKED_CLIENTS + 1)))
                .is_err()
        );
        assert_eq!(
            clients.len(),
            MAX_TRACKED_CLIENTS,
            "the table never grows past its cap"
        );
        // Once they are idle, their entries go and a newcomer gets its own again.
        clock.advance(Duration::from_secs(2));
        assert!(limiter.check(Some(late)).is_ok());
        assert_eq!(clients.len(), 1);
    }

    #[test]
    fn a_trusted_proxy_names_the_client_and_no_one_else_can() {
        let proxy: IpAddr = "10.0.0.9".parse().unwrap();
        let mut headers = axum::http::HeaderMap::new();
        headers.append("x-forwarded-for", "6.6.6.6, 203.0.113.7".parse().unwrap());
        headers.append("x-forwarded-for", "10.0.0.9".parse().unwrap());
        let from =
            |peer: IpAddr| client_address(peer, headers.get_all("x-forwarded-for"), &[proxy]);
        assert_eq!(from(proxy), "203.0.113.7".parse::<IpAddr>().unwrap());
        let direct: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(
            from(direct),
            direct,
            "an untrusted peer's header is ignored"
        );
        let empty = axum::http::HeaderMap::new();
        assert_eq!(
            client_address(proxy, empty.get_all("x-forwarded-for"), &[proxy]),
            proxy
        );
    }

    #[test]
    fn clients_are_limited_separately_and_overall() {
        let (limiter, _clock) = limiter(Some(1.0), Some(3.0));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(limiter.check(Some(a)).is_ok());
        assert!(matches!(
            limiter.check(Some(a)),
            Err(ApiError::TooManyRequests {
                retry_after_s: 1,
                ..
            })
        ));
        assert!(
            limiter.check(Some(b)).is_ok(),
            "another client is not held back"
        );
        assert!(limiter.check(None).is_ok());
        let over = limiter.check(None).unwrap_err();
        assert!(over.to_string().contains("--rate-limit-global"), "{over}");
    }
}
