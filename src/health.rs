//! The health snapshot: everything `GET /api/agents/health` and `GET /metrics` show, gathered
//! by the service in one call ([`crate::service::MetricsService::health_snapshot`]).
//!
//! Why a snapshot: the handlers read plain values and never reach into the store, the cache or
//! the live hub (which would let a health check run operations on them), and what health
//! shows is listed in one type instead of spread over the components. The latency histograms
//! are lent, not copied: they are lock-free counters that `/metrics` writes bucket by bucket.

use crate::cache::breaker::{BreakerCounts, BreakerState};
use crate::cache::link::LastError;
use crate::cache::sync::SyncReport;
use crate::cache::{CacheStats, hit_rate};
use crate::retention::Retention;
use crate::store::PruneReport;
use crate::telemetry::Histogram;

/// What this instance knows about itself now.
pub struct HealthSnapshot<'a> {
    pub instance_id: &'a str,
    pub now_ms: i64,
    pub store: StoreHealth,
    pub ingest: IngestCounts,
    /// `None` without `--redis-url`.
    pub redis: Option<RedisHealth>,
    /// `None` without `--redis-url`.
    pub cache: Option<CacheHealth<'a>>,
    pub retention: RetentionHealth<'a>,
    pub live: LiveCounts,
}

/// Writes failing because the store cannot be written: health says `degraded` meanwhile.
#[derive(Debug, Clone)]
pub struct WritesFailing {
    pub since_ms: i64,
    pub reason: String,
}

pub struct StoreHealth {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    pub size_bytes: u64,
    pub write_queue_depth: usize,
    /// Since when, and why, writes fail (a full disk); `None` while they succeed.
    pub writes_failing: Option<WritesFailing>,
}

pub struct IngestCounts {
    pub ingested: u64,
    pub duplicates: u64,
    /// Events whose timestamp was too far ahead, stored at their arrival.
    pub clamped_timestamps: u64,
}

pub struct RedisHealth {
    /// `up` or `down`.
    pub status: &'static str,
    /// The URL without its password.
    pub url: String,
    pub timeout_ms: f64,
    pub last_error: Option<LastError>,
    pub errors: u64,
    pub timeouts: u64,
    /// The breaker's state as its last call left it (an open breaker past its cool-down
    /// turns half open at the next call).
    pub breaker: BreakerState,
    /// The last transition: the state entered, and when (ms).
    pub breaker_entered: (BreakerState, i64),
    pub breaker_counts: BreakerCounts,
    /// While open: how long until a call may probe Redis again (zero once it may).
    pub breaker_probe_in: Option<std::time::Duration>,
}

pub struct CacheHealth<'a> {
    /// The key prefix of this store's values.
    pub namespace: String,
    pub stats: CacheStats,
    pub hit_latency: &'a Histogram,
    pub miss_latency: &'a Histogram,
    pub warmup_in_progress: bool,
    pub warmup_runs: u64,
    pub last_warmup: Option<SyncReport>,
}

impl CacheHealth<'_> {
    pub(crate) fn hit_rate(&self) -> Option<f64> {
        hit_rate(self.stats.hits, self.stats.misses)
    }
}

pub struct RetentionHealth<'a> {
    pub settings: &'a Retention,
    pub runs: u64,
    pub failures: u64,
    pub last_run_at_ms: Option<i64>,
    pub pruned: PruneReport,
}

pub struct LiveCounts {
    /// Connected `/stream` clients.
    pub clients: usize,
    /// Times a client fell behind and was told what it missed.
    pub lagged: u64,
}
