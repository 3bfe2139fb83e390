//! Request limits: a time limit on every request, and request-rate limits per client (by peer
//! address) and for the whole server.
//!
//! A request that takes longer than `--request-timeout` to arrive and be answered (a slow
//! upload, a stuck handler) gets 408; slow request heads are cut at the connection
//! (`http_server.rs`). Over a rate limit a request gets 429 with `Retry-After` at once, before
//! authentication, so a flood costs almost nothing. Rates are token buckets that allow a burst
//! of one second's worth. `/healthz` is exempt, so a load balancer never sees a limit.
//!
//! Per-client buckets live in a map capped at [`MAX_TRACKED_CLIENTS`]; when it is full, buckets
//! that have refilled are dropped first, and clients that still do not fit share one bucket.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use super::error::ApiError;

/// Clients whose buckets are kept at once.
pub const MAX_TRACKED_CLIENTS: usize = 10_000;

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

#[derive(Debug, Clone, Copy)]
struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    fn full(rate: f64, now: Instant) -> Self {
        Self {
            tokens: burst(rate),
            updated: now,
        }
    }

    /// Takes a token, or says how long until one is there.
    fn take(&mut self, rate: f64, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst(rate));
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }

    fn is_refilled(&self, rate: f64, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.updated).as_secs_f64() * rate
            >= burst(rate)
    }
}

fn burst(rate: f64) -> f64 {
    rate.max(1.0)
}

/// The rate limiters' state.
#[derive(Debug)]
pub struct RateLimiter {
    per_client: Option<(f64, Mutex<ClientBuckets>)>,
    global: Option<(f64, Mutex<TokenBucket>)>,
}

#[derive(Debug, Default)]
struct ClientBuckets {
    buckets: HashMap<IpAddr, TokenBucket>,
    /// Shared by clients that arrive while the map is full of active ones.
    overflow: Option<TokenBucket>,
}

impl RateLimiter {
    pub fn new(limits: &RequestLimits) -> Self {
        let now = Instant::now();
        let rate = |r: Option<f64>| r.filter(|r| *r > 0.0);
        Self {
            per_client: rate(limits.per_client_per_s)
                .map(|r| (r, Mutex::new(ClientBuckets::default()))),
            global: rate(limits.global_per_s).map(|r| (r, Mutex::new(TokenBucket::full(r, now)))),
        }
    }

    fn check(&self, client: Option<IpAddr>, now: Instant) -> Result<(), ApiError> {
        if let (Some((rate, clients)), Some(ip)) = (&self.per_client, client) {
            let mut clients = clients.lock().expect("rate limiter lock");
            let rate = *rate;
            if !clients.buckets.contains_key(&ip) && clients.buckets.len() >= MAX_TRACKED_CLIENTS {
                clients
                    .buckets
                    .retain(|_, bucket| !bucket.is_refilled(rate, now));
            }
            let bucket = if clients.buckets.len() < MAX_TRACKED_CLIENTS
                || clients.buckets.contains_key(&ip)
            {
                clients
                    .buckets
                    .entry(ip)
                    .or_insert_with(|| TokenBucket::full(rate, now))
            } else {
                clients
                    .overflow
                    .get_or_insert_with(|| TokenBucket::full(rate, now))
            };
            bucket.take(rate, now).map_err(|wait| {
                too_many(
                    format!(
                        "too many requests from {ip}: the limit is {rate} per second \
                         (--rate-limit-per-client)"
                    ),
                    wait,
                )
            })?;
        }
        if let Some((rate, bucket)) = &self.global {
            bucket
                .lock()
                .expect("rate limiter lock")
                .take(*rate, now)
                .map_err(|wait| {
                    too_many(
                        format!(
                            "the server is taking at most {rate} requests per second \
                             (--rate-limit-global)"
                        ),
                        wait,
                    )
                })?;
        }
        Ok(())
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

fn too_many(message: String, wait: Duration) -> ApiError {
    ApiError::TooManyRequests {
        message,
        retry_after_s: wait.as_secs_f64().ceil() as u64,
    }
}

/// The middleware: rate limits first, then the request under its time limit.
pub async fn limit_requests(
    State(state): State<AppState>,
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
    state.rate_limiter.check(client, Instant::now())?;
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

    #[test]
    fn a_bucket_allows_a_burst_then_its_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::full(2.0, start);
        assert!(bucket.take(2.0, start).is_ok());
        assert!(bucket.take(2.0, start).is_ok());
        let wait = bucket.take(2.0, start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(bucket.take(2.0, start + Duration::from_millis(500)).is_ok());
        assert!(bucket.is_refilled(2.0, start + Duration::from_secs(2)));
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
        let limiter = RateLimiter::new(&RequestLimits {
            per_client_per_s: Some(1.0),
            global_per_s: Some(3.0),
            ..RequestLimits::default()
        });
        let now = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(limiter.check(Some(a), now).is_ok());
        assert!(matches!(
            limiter.check(Some(a), now),
            Err(ApiError::TooManyRequests {
                retry_after_s: 1,
                ..
            })
        ));
        assert!(
            limiter.check(Some(b), now).is_ok(),
            "another client is not held back"
        );
        assert!(limiter.check(None, now).is_ok());
        let over = limiter.check(None, now).unwrap_err();
        assert!(over.to_string().contains("--rate-limit-global"), "{over}");
    }
}
