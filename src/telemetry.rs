//! hookwatch's measurements of itself: lock-free counters and latency histograms, shown on
//! `GET /api/agents/health` (as p50/p99) and `GET /metrics` (`api/prometheus.rs` writes it).
//!
//! A histogram is a fixed array of atomic buckets, so recording never allocates or locks and
//! memory stays constant however many samples arrive. Buckets are log-linear (four per power of
//! two, in microseconds), so a quantile is within 19% of the true value from 1 µs to 2^40 µs.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const SUB_BUCKETS: usize = 4;
const POWERS: usize = 40;
const BUCKETS: usize = POWERS * SUB_BUCKETS;

/// The `le` bounds (seconds) shown on `/metrics`.
const PROMETHEUS_BOUNDS_S: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count())
            .finish_non_exhaustive()
    }
}

impl Histogram {
    pub(crate) fn record(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(us)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The `q` quantile (0..=1) in milliseconds: the upper bound of the bucket holding it.
    /// `None` before the first sample.
    pub(crate) fn quantile_ms(&self, q: f64) -> Option<f64> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(upper_bound_us(index) as f64 / 1000.0);
            }
        }
        Some(upper_bound_us(BUCKETS - 1) as f64 / 1000.0)
    }

    /// Counts per `/metrics` bucket (seconds; not cumulative, the `+Inf` bucket left to
    /// the encoder), the sum and the count.
    pub(crate) fn prometheus_counts(&self) -> HistogramCounts {
        let mut buckets = Vec::with_capacity(PROMETHEUS_BOUNDS_S.len());
        let mut index = 0;
        for bound in PROMETHEUS_BOUNDS_S {
            let bound_us = (bound * 1e6) as u64;
            let mut in_bucket = 0;
            while index < BUCKETS && upper_bound_us(index) <= bound_us {
                in_bucket += self.buckets[index].load(Ordering::Relaxed);
                index += 1;
            }
            buckets.push((bound, in_bucket));
        }
        HistogramCounts {
            sum_s: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            count: self.count(),
            buckets,
        }
    }
}

/// A histogram as `/metrics` shows it.
#[derive(Debug, Clone)]
pub(crate) struct HistogramCounts {
    pub sum_s: f64,
    pub count: u64,
    /// `(upper bound in seconds, samples in this bucket only)`.
    pub buckets: Vec<(f64, u64)>,
}

/// Refused requests by reason (`ApiError::reason`), whichever layer refused them.
#[derive(Default)]
pub(crate) struct Rejections(std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>);

impl Rejections {
    pub(crate) fn add(&self, reason: &'static str) {
        *self
            .0
            .lock()
            .expect("rejections lock")
            .entry(reason)
            .or_default() += 1;
    }

    /// `(reason, refusals)`, by reason.
    pub(crate) fn counts(&self) -> Vec<(&'static str, u64)> {
        self.0
            .lock()
            .expect("rejections lock")
            .iter()
            .map(|(reason, count)| (*reason, *count))
            .collect()
    }
}

/// Requests per route template (never the raw path, so the label set stays small and
/// bounded by the routes that exist), with their statuses and latency.
#[derive(Default)]
pub(crate) struct HttpMetrics {
    /// By method, then route: looked up by `&str`, so a request for a known route allocates
    /// nothing.
    routes: Mutex<BTreeMap<String, BTreeMap<String, RouteStats>>>,
}

#[derive(Default)]
struct RouteStats {
    statuses: BTreeMap<u16, u64>,
    latency: Histogram,
}

impl HttpMetrics {
    pub(crate) fn record(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        if !routes.contains_key(method) {
            routes.insert(method.to_owned(), BTreeMap::new());
        }
        let by_route = routes.get_mut(method).expect("inserted above");
        if !by_route.contains_key(route) {
            by_route.insert(route.to_owned(), RouteStats::default());
        }
        let stats = by_route.get_mut(route).expect("inserted above");
        *stats.statuses.entry(status).or_default() += 1;
        stats.latency.record(elapsed);
    }

    /// What each method and route template has seen, for `/metrics`.
    pub(crate) fn routes(&self) -> Vec<RouteCounts> {
        let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        routes
            .iter()
            .flat_map(|(method, by_route)| {
                by_route.iter().map(move |(route, stats)| RouteCounts {
                    method: method.clone(),
                    route: route.clone(),
                    statuses: stats.statuses.iter().map(|(s, n)| (*s, *n)).collect(),
                    latency: stats.latency.prometheus_counts(),
                })
            })
            .collect()
    }
}

/// One method and route template's requests.
#[derive(Debug)]
pub(crate) struct RouteCounts {
    pub method: String,
    pub route: String,
    /// `(status, requests)`.
    pub statuses: Vec<(u16, u64)>,
    pub latency: HistogramCounts,
}

fn bucket_of(us: u64) -> usize {
    if us < SUB_BUCKETS as u64 {
        return us as usize;
    }
    let power = 63 - us.leading_zeros() as usize; // floor(log2(us)), ≥ 2
    let mantissa = ((us >> (power - 2)) & 0b11) as usize;
    ((power - 1) * SUB_BUCKETS + mantissa).min(BUCKETS - 1)
}

/// The largest value (µs) that lands in bucket `index`.
fn upper_bound_us(index: usize) -> u64 {
    if index < SUB_BUCKETS {
        return index as u64;
    }
    let power = index / SUB_BUCKETS + 1;
    let mantissa = (index % SUB_BUCKETS) as u64;
    ((SUB_BUCKETS as u64 + mantissa + 1) << (power - 2)) - 1
}

/// At most one log line a second from one place: a full disk fails every write, and each
/// used to log its own warning (ten a second and more). The lines held back are counted and
/// reported with the next one let through.
#[derive(Debug, Default)]
pub(crate) struct LogLimiter {
    last_second: std::sync::atomic::AtomicI64,
    held_back: std::sync::atomic::AtomicU64,
}

impl LogLimiter {
    pub(crate) const fn new() -> Self {
        Self {
            last_second: std::sync::atomic::AtomicI64::new(i64::MIN),
            held_back: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one)` when a line may be logged now.
    pub(crate) fn allow(&self) -> Option<u64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.allow_at(now)
    }

    fn allow_at(&self, second: i64) -> Option<u64> {
        use std::sync::atomic::Ordering;
        let last = self.last_second.load(Ordering::Relaxed);
        if last < second
            && self
                .last_second
                .compare_exchange(last, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held_back.swap(0, Ordering::Relaxed));
        }
        self.held_back.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_whose_bound_covers_it_closely() {
        for us in [
            0u64, 1, 3, 4, 5, 7, 8, 100, 1_000, 12_345, 999_999, 10_000_000,
        ] {
            let index = bucket_of(us);
            let upper = upper_bound_us(index);
            assert!(upper >= us, "{us} µs above its bucket bound {upper}");
            assert!(
                upper as f64 <= us as f64 * 1.25 + 1.0,
                "{us} µs has a loose bound {upper}"
            );
            if index > 0 {
                assert!(upper_bound_us(index - 1) < us, "{us} µs belongs lower");
            }
        }
    }

    #[test]
    fn quantiles_come_from_the_recorded_samples() {
        let h = Histogram::default();
        assert_eq!(h.quantile_ms(0.5), None);
        for _ in 0..99 {
            h.record(Duration::from_micros(100));
        }
        h.record(Duration::from_millis(50));
        let p50 = h.quantile_ms(0.5).unwrap();
        let p99 = h.quantile_ms(0.99).unwrap();
        let p100 = h.quantile_ms(1.0).unwrap();
        assert!((0.1..0.125).contains(&p50), "p50 {p50}");
        assert!((0.1..0.125).contains(&p99), "p99 {p99}");
        assert!((50.0..62.5).contains(&p100), "max {p100}");
    }

    #[test]
    fn a_log_limiter_lets_one_line_a_second_through_and_counts_the_rest() {
        let limiter = super::LogLimiter::new();
        assert_eq!(limiter.allow_at(100), Some(0));
        assert_eq!(limiter.allow_at(100), None);
        assert_eq!(limiter.allow_at(100), None);
        assert_eq!(limiter.allow_at(101), Some(2), "two were held back");
        assert_eq!(limiter.allow_at(101), None);
        assert_eq!(limiter.allow_at(105), Some(1));
    }
}
