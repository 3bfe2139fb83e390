//! The unified metrics service: the one place that owns hookwatch's operations.
//!
//! Recording an event, the views (metrics, timeline, distribution, tool usage, recent events,
//! filter options) and the reported agent lifecycle (`mark_agent_started` /
//! `mark_agent_completed`) all go through [`MetricsService`]. It coordinates the store (which
//! must work) and the cache (best-effort): a write commits to the store and is acknowledged;
//! its write-through to Redis is queued and never waited for; a view is read through Redis,
//! falling back to the store. It also owns `sync_cache_from_database` and the cache's maintenance step. The
//! service never talks SQL or Redis commands and never sees wire formats.

use std::sync::Arc;
use std::time::Instant;

use serde_json::value::RawValue;

use crate::cache::sync::{SyncOutcome, SyncReport, SyncTrigger};
use crate::cache::{Cache, Computed, Maintenance, View};
use crate::clock::Clock;
use crate::domain::event::{API_AGENT_COMPLETED, API_AGENT_STARTED, AgentReport, HookEvent};
use crate::domain::sessions::{
    AgentDetail, AgentRecord, AgentStatusFilter, SessionDetail, SessionRecord,
};
use crate::domain::team::{MAX_TEAM_BUCKETS, TeamBucket, TeamView};
use crate::domain::time::{DAY_MS, MINUTE_MS, TimeRange, ceil_to, default_bucket_ms, floor_to};
use crate::domain::usage::{UsageFilter, UsageGroup, UsagePage, UsagePoint, UsageRow};
use crate::domain::views::{
    self, AgentMetrics, Distribution, ExecutionTotals, Timeline, ToolTotals, ToolUsage,
};
use crate::health::{
    CacheHealth, HealthSnapshot, IngestCounts, LiveCounts, RedisHealth, RetentionHealth,
    StoreHealth, WritesFailing,
};
use crate::live::LiveHub;
use crate::retention::{Retention, RetentionStats};
use crate::store::{
    EventPage, EventQuery, FilterOptions, PruneReport, RecordOutcome, SortOrder, Store, StoreError,
    StoredChat, StoredEvent,
};

/// The most points a timeline answers with.
pub(crate) const MAX_TIMELINE_POINTS: i64 = 2000;

/// API use over time: the aligned range, its bucket and one point per bucket.
#[derive(Debug, Clone)]
pub(crate) struct UsageTimeline {
    pub range: TimeRange,
    pub bucket_ms: i64,
    pub points: Vec<UsagePoint>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The event the request describes breaks a bound every event is held to.
    #[error(transparent)]
    Refused(#[from] crate::domain::event::EventRefusal),
    #[error("{0}")]
    InvalidRange(String),
}

/// The most filter values of each kind a filter-options read answers with.
pub(crate) const FILTER_OPTIONS_LIMIT: usize = 500;
/// How many recent events `GET /events/recent` answers without a `limit` (the upstream's 300),
/// and the cache sync warms.
pub(crate) const DEFAULT_RECENT_EVENTS: usize = 300;

/// The default range of the distribution and tool usage: the last 24 hours as a rolling
/// window (ending at the next whole minute), so repeated default reads share a cache key and
/// read whole minutes from the rollups.
fn last_day(now_ms: i64) -> TimeRange {
    TimeRange::last(DAY_MS, ceil_to(now_ms, MINUTE_MS))
}

/// How often live clients get fresh metrics even when no event arrived (agents going idle).
pub(crate) const METRICS_REFRESH: std::time::Duration = std::time::Duration::from_secs(30);

/// Health as live clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LiveHealth {
    /// The primary store's status, `up` or `down` (named `sqlite` by the origin protocol,
    /// whichever store is in use).
    pub sqlite: &'static str,
    /// `sqlite` or `postgres`.
    pub database: &'static str,
    /// `up`, `down` or `disabled`.
    pub redis: &'static str,
    /// `closed`, `open` or `half_open`; absent without Redis.
    pub breaker: Option<&'static str>,
}

/// What the live snapshot loop last pushed.
#[derive(Debug, Default)]
pub(crate) struct LiveSnapshots {
    published: u64,
    metrics_at: Option<Instant>,
    health: Option<LiveHealth>,
}

/// The time range a view is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Window {
    /// The view's default: the current UTC day for metrics, the last 24 hours otherwise.
    Default,
    /// The last `duration_ms`, ending now. Rolling windows end at the next whole minute, so
    /// every read within a minute asks for the same range and shares one cache entry.
    Last(i64),
    /// Exactly this range.
    Exact(TimeRange),
}

/// What a timeline read asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimelineRequest {
    /// `Default`: the last 24 hours.
    pub window: Window,
    /// `None`: chosen from the range.
    pub bucket_ms: Option<i64>,
}

/// What waiting for a human-in-the-loop answer found.
#[derive(Debug)]
pub(crate) enum AwaitedAnswer {
    /// The request's status (`{"status": "responded", "response": …}`).
    Answered(Box<serde_json::value::RawValue>),
    Pending,
    NotARequest,
    NoSuchEvent,
}

/// Telemetry rows one write job commits: a hook event queued behind a chunk waits for at most
/// this many rows (BENCHMARKS.md has what that costs in time).
pub(crate) const TELEMETRY_CHUNK_ROWS: usize = 1024;

pub struct MetricsService {
    store: Arc<dyn Store>,
    cache: Arc<Cache>,
    live: Arc<LiveHub>,
    /// Events committed and repeats reported as duplicates, for `/metrics`.
    ingested: std::sync::atomic::AtomicU64,
    /// Events whose timestamp was too far ahead and clamped to their arrival.
    clamped_timestamps: std::sync::atomic::AtomicU64,
    /// Woken whenever a human-in-the-loop request is answered here.
    answered: tokio::sync::Notify,
    /// Woken after each commit of events or telemetry (the alert rules are evaluated soon
    /// after one); one stored permit when no one waits.
    committed: tokio::sync::Notify,
    /// Woken when ingest finds the database past `--max-db-size`: pruning runs at once.
    retention_wanted: tokio::sync::Notify,
    /// Since when, and why, writes fail because the store cannot be written (a full disk);
    /// `None` once a write succeeds again.
    writes_failing: std::sync::Mutex<Option<WritesFailing>>,
    duplicates: std::sync::atomic::AtomicU64,
    clock: Arc<dyn Clock>,
    agent_idle_timeout_ms: i64,
    retention: Retention,
    retention_stats: RetentionStats,
    /// This instance's name among the instances sharing a store (empty in tests).
    instance_id: String,
    /// The cache epoch the last rebuild was made for.
    synced_epoch: std::sync::atomic::AtomicI64,
}

impl MetricsService {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        cache: Arc<Cache>,
        live: Arc<LiveHub>,
        clock: Arc<dyn Clock>,
        agent_idle_timeout_ms: i64,
    ) -> Self {
        Self {
            store,
            cache,
            live,
            ingested: Default::default(),
            clamped_timestamps: Default::default(),
            answered: tokio::sync::Notify::new(),
            committed: tokio::sync::Notify::new(),
            retention_wanted: tokio::sync::Notify::new(),
            writes_failing: std::sync::Mutex::new(None),
            duplicates: Default::default(),
            clock,
            agent_idle_timeout_ms,
            retention: Retention::default(),
            retention_stats: RetentionStats::default(),
            instance_id: String::new(),
            synced_epoch: std::sync::atomic::AtomicI64::new(-1),
        }
    }

    /// Names this instance among those sharing a store.
    pub(crate) fn with_instance_id(mut self, instance_id: String) -> Self {
        self.instance_id = instance_id;
        self
    }

    /// Keeps what `retention` says, pruning the rest in [`MetricsService::prune_once`].
    pub(crate) fn with_retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    pub(crate) fn retention(&self) -> &Retention {
        &self.retention
    }

    /// One pruning run (see [`crate::retention`]). Cached views may describe pruned rows, so a
    /// run that deleted anything sends the cache to a new epoch.
    pub async fn prune_once(&self) -> Result<PruneReport, ServiceError> {
        let report = crate::retention::prune_once(
            self.store.as_ref(),
            &self.retention,
            &self.retention_stats,
            self.now_ms(),
        )
        .await?;
        if report.rows() > 0 {
            self.cache.invalidate_all();
            tracing::info!(
                events = report.events,
                rows = report.rows(),
                pages_released = report.pages_released,
                "pruned"
            );
        }
        Ok(report)
    }

    /// Everything health and `/metrics` show, read now.
    pub fn health_snapshot(&self) -> HealthSnapshot<'_> {
        let cache = &self.cache;
        let redis = cache.link().map(|link| RedisHealth {
            status: cache.redis_status(),
            url: link.shown_url().to_owned(),
            timeout_ms: link.timeout().as_secs_f64() * 1000.0,
            last_error: link.last_error(),
            errors: link.errors(),
            timeouts: link.timeouts(),
            breaker: link.breaker().state(),
            breaker_entered: link.last_transition(),
            breaker_counts: link.breaker().counts(),
            breaker_probe_in: link.breaker().probe_in(tokio::time::Instant::now()),
        });
        let cache_health = cache.is_enabled().then(|| {
            let warmup = cache.sync_gate();
            CacheHealth {
                namespace: cache.keys().namespace().to_owned(),
                stats: cache.stats(),
                hit_latency: cache.hit_latency(),
                miss_latency: cache.miss_latency(),
                warmup_in_progress: warmup.in_progress(),
                warmup_runs: warmup.runs(),
                last_warmup: warmup.last_report(),
            }
        });
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        HealthSnapshot {
            instance_id: &self.instance_id,
            now_ms: self.now_ms(),
            store: StoreHealth {
                backend: self.store.backend(),
                size_bytes: self.store.size_bytes(),
                write_queue_depth: self.store.write_queue_depth(),
                writes_failing: self
                    .writes_failing
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone(),
            },
            ingest: IngestCounts {
                ingested: self.ingested.load(relaxed),
                duplicates: self.duplicates.load(relaxed),
                clamped_timestamps: self.clamped_timestamps.load(relaxed),
            },
            redis,
            cache: cache_health,
            retention: RetentionHealth {
                settings: &self.retention,
                runs: self.retention_stats.runs(),
                failures: self.retention_stats.failures(),
                last_run_at_ms: self.retention_stats.last_run_at_ms(),
                pruned: self.retention_stats.totals(),
            },
            live: LiveCounts {
                clients: self.live.clients(),
                lagged: self.live.lagged(),
            },
        }
    }

    /// Whether the primary store answers.
    pub(crate) async fn ping_store(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }

    /// Whether a Redis cache is configured.
    pub(crate) fn cache_enabled(&self) -> bool {
        self.cache.is_enabled()
    }

    /// The in-process view tier's answers per view, or `None` without the tier.
    pub(crate) fn local_view_hits(&self) -> Option<Vec<(&'static str, u64)>> {
        self.cache.local_view_hits()
    }

    /// Whether this instance should run the background jobs now (on a shared store, one
    /// instance at a time: [`Store::lead_background_jobs`]).
    pub(crate) async fn lead_background_jobs(&self) -> bool {
        self.store.lead_background_jobs().await
    }

    // Plain reads, straight from the store: lists and details are not cached.

    pub(crate) async fn events_page(&self, query: EventQuery) -> Result<EventPage, ServiceError> {
        Ok(self.store.events(query).await?)
    }

    /// The chat sent with an event (`None`: the event has none, or there is no such event).
    pub(crate) async fn event_chat(&self, id: i64) -> Result<Option<StoredChat>, ServiceError> {
        Ok(self.store.event_chat(id).await?)
    }

    /// Agents, newest first; `Active` means running and seen within the idle time-out.
    pub(crate) async fn agents(
        &self,
        filter: AgentStatusFilter,
        limit: usize,
    ) -> Result<Vec<AgentRecord>, ServiceError> {
        Ok(self
            .store
            .agents(filter, self.idle_cutoff_ms(), limit)
            .await?)
    }

    pub(crate) async fn agent(&self, id: &str) -> Result<Option<AgentDetail>, ServiceError> {
        Ok(self.store.agent(id, self.idle_cutoff_ms()).await?)
    }

    /// Sessions, newest first, of one app or all.
    pub(crate) async fn sessions(
        &self,
        source_app: Option<String>,
        limit: usize,
    ) -> Result<Vec<SessionRecord>, ServiceError> {
        Ok(self
            .store
            .sessions(source_app, self.idle_cutoff_ms(), limit)
            .await?)
    }

    pub(crate) async fn session(&self, id: &str) -> Result<Option<SessionDetail>, ServiceError> {
        Ok(self.store.session(id, self.idle_cutoff_ms()).await?)
    }

    /// A session's API requests and tool calls in time order; empty for a session neither
    /// the hooks nor the telemetry know.
    pub(crate) async fn session_activity(
        &self,
        id: &str,
    ) -> Result<Vec<crate::domain::attribution::Activity>, ServiceError> {
        Ok(self.store.session_activity(id).await?)
    }

    /// A session as a tree of timed spans; `None` for a session neither source has seen.
    pub(crate) async fn session_trace(
        &self,
        id: &str,
    ) -> Result<Option<Vec<crate::domain::trace::Span>>, ServiceError> {
        Ok(self.store.session_trace(id, self.idle_cutoff_ms()).await?)
    }

    /// Resolves when ingest found the database past `--max-db-size` (pruning should not wait
    /// for its interval).
    pub(crate) async fn retention_wanted(&self) {
        self.retention_wanted.notified().await;
    }

    /// Whether the database file is past its part of `--max-db-size`, counting what its WAL
    /// holds beyond twice the WAL's share: the checkpointer cuts such a WAL back with no write
    /// (`store/sqlite/checkpointer.rs`), so counting it cannot hold ingest for good.
    pub(crate) fn over_size_limit(&self) -> bool {
        let wal_excess = self
            .store
            .wal_file_bytes()
            .saturating_sub(2 * self.retention.wal_bytes());
        self.retention
            .database_bytes()
            .is_some_and(|limit| self.store.file_bytes() + wal_excess > limit)
    }

    /// Remembers whether writes fail because the store cannot be written, for health.
    fn note_write<T>(&self, result: &Result<T, StoreError>) {
        let mut failing = self
            .writes_failing
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(_) => *failing = None,
            Err(StoreError::Unwritable(reason)) => {
                let since_ms = failing.as_ref().map_or(self.now_ms(), |f| f.since_ms);
                *failing = Some(WritesFailing {
                    since_ms,
                    reason: reason.clone(),
                });
            }
            Err(_) => {}
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Agents not seen since this time are timed out, not active.
    pub(crate) fn idle_cutoff_ms(&self) -> i64 {
        self.now_ms() - self.agent_idle_timeout_ms
    }

    /// Commits events, then queues the write-through to the cache; answers once they are
    /// durable. The write-through never fails or delays the call.
    /// Commits Claude Code's telemetry records (OTLP); answers after the commit. Held to the
    /// same size limit as hook events.
    ///
    /// An export is committed in chunks of [`TELEMETRY_CHUNK_ROWS`], each its own write job:
    /// hook events queued meanwhile are committed between two chunks, so a hook's ack waits for
    /// one chunk at most, never for a whole export (a 16 MiB export held one for 5.1 s). A
    /// failure part-way answers the export as refused after some chunks are committed; the
    /// exporter's retry stores only the rest (every row has its identity, `dedup_key`).
    pub async fn record_telemetry(
        &self,
        batch: crate::domain::telemetry::TelemetryBatch,
    ) -> Result<crate::domain::telemetry::TelemetryOutcome, ServiceError> {
        let mut outcome = crate::domain::telemetry::TelemetryOutcome::default();
        let mut failure = None;
        for chunk in batch.into_chunks(TELEMETRY_CHUNK_ROWS) {
            if let Some(limit) = self.retention.max_db_bytes
                && self.over_size_limit()
            {
                self.retention_wanted.notify_one();
                failure = Some(StoreError::AtSizeLimit(limit));
                break;
            }
            let recorded = self.store.record_telemetry(chunk).await;
            self.note_write(&recorded);
            match recorded {
                Ok(chunk) => outcome += chunk,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if outcome.stored > 0 {
            self.cache.after_telemetry_commit(self.idle_cutoff_ms());
            self.committed.notify_one();
        }
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(outcome),
        }
    }

    pub(crate) async fn record_events(
        &self,
        events: Vec<HookEvent>,
    ) -> Result<Vec<RecordOutcome>, ServiceError> {
        // At --max-db-size, ingest waits for pruning rather than outgrowing the disk: 503 with
        // Retry-After, and the hook client spools meanwhile. The file then passes the limit by
        // at most the writes already in flight.
        if let Some(limit) = self.retention.max_db_bytes
            && self.over_size_limit()
        {
            self.retention_wanted.notify_one();
            return Err(StoreError::AtSizeLimit(limit).into());
        }
        let clamped = events.iter().filter(|e| e.timestamp_clamped).count() as u64;
        let recorded = self.store.record(events).await;
        self.note_write(&recorded);
        let outcomes = recorded?;
        self.clamped_timestamps
            .fetch_add(clamped, std::sync::atomic::Ordering::Relaxed);
        let duplicates = outcomes.iter().filter(|o| o.duplicate).count() as u64;
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        self.duplicates.fetch_add(duplicates, relaxed);
        self.ingested
            .fetch_add(outcomes.len() as u64 - duplicates, relaxed);
        self.cache.after_commit(&outcomes, self.idle_cutoff_ms());
        self.live.publish(&outcomes);
        if duplicates < outcomes.len() as u64 {
            self.committed.notify_one();
        }
        Ok(outcomes)
    }

    /// Resolves after the next commit of new events or telemetry (at once if one came since
    /// the last call).
    pub(crate) async fn committed(&self) {
        self.committed.notified().await;
    }

    pub(crate) async fn record_event(
        &self,
        event: HookEvent,
    ) -> Result<RecordOutcome, ServiceError> {
        let mut outcomes = self.record_events(vec![event]).await?;
        outcomes
            .pop()
            .ok_or_else(|| ServiceError::Store(StoreError::Internal("no outcome for event".into())))
    }

    /// The range a window means now; `default` resolves [`Window::Default`] (given now).
    fn resolve(&self, window: Window, default: impl FnOnce(i64) -> TimeRange) -> TimeRange {
        let now = self.now_ms();
        let range = match window {
            Window::Default => default(now),
            Window::Last(duration_ms) => TimeRange::last(duration_ms, ceil_to(now, MINUTE_MS)),
            Window::Exact(range) => range,
        };
        self.within_kept_data(range, now)
    }

    /// A range's partial edge minutes are read from detail rows, which `--retention` prunes
    /// while the minute rollups stay: an edge older than the raw cut-off is widened to its
    /// whole minute, read from the rollups, so the answer never counts half-pruned detail.
    /// The answer's `range` says so.
    fn within_kept_data(&self, mut range: TimeRange, now_ms: i64) -> TimeRange {
        let Some(keep_ms) = self.retention.raw_ms else {
            return range;
        };
        let cutoff = now_ms - keep_ms;
        if range.start_ms < cutoff {
            range.start_ms = floor_to(range.start_ms, MINUTE_MS);
        }
        if range.end_ms < cutoff {
            range.end_ms = ceil_to(range.end_ms, MINUTE_MS);
        }
        range
    }

    /// Metrics for a window; by default the current UTC day.
    pub(crate) async fn metrics(&self, window: Window) -> Result<AgentMetrics, ServiceError> {
        self.metrics_view(window, false).await
    }

    async fn metrics_view(
        &self,
        window: Window,
        refresh: bool,
    ) -> Result<AgentMetrics, ServiceError> {
        let range = self.resolve(window, TimeRange::today);
        let key = format!("{}-{}", range.start_ms, range.end_ms);
        self.cache
            .read_through(View::Metrics, &key, self.now_ms(), refresh, || async {
                let (active, mut per_type, main_usage, usage) = tokio::try_join!(
                    self.store.active_agents(self.idle_cutoff_ms()),
                    self.store.execution_totals(range),
                    self.store.session_usage(range, None),
                    self.store.usage(
                        range,
                        UsageGroup::All,
                        UsageFilter::default(),
                        UsagePage::default(),
                    ),
                )?;
                // Main agents' tokens and cost count in the totals, never as executions.
                per_type.extend(main_usage.into_iter().map(|(_, totals)| totals));
                let mut value = views::agent_metrics(active.count, &per_type, range);
                value.cost = views::CostView::of(usage.first());
                Ok::<_, ServiceError>(Computed {
                    value,
                    // The active count drops when the least recently seen agent goes idle.
                    valid_until_ms: active
                        .least_recently_seen_ms
                        .map(|seen| seen + self.agent_idle_timeout_ms),
                })
            })
            .await
    }

    /// Claude Code's API use by `group` since the first record kept, for `/metrics`'
    /// counters: the same one truth as every usage view (by model or person, session-free
    /// totals settled as written; by app, every session's rows).
    pub(crate) async fn usage_all_time(
        &self,
        group: UsageGroup,
    ) -> Result<Vec<UsageRow>, ServiceError> {
        let range = TimeRange::all_until(self.now_ms());
        Ok(self
            .store
            .usage(range, group, UsageFilter::default(), UsagePage::default())
            .await?)
    }

    /// Each person's use per day or week in a window (by default the last 7 days), widened to
    /// whole buckets: the first holds the window's start, the last its end.
    pub(crate) async fn team(
        &self,
        window: Window,
        bucket: TeamBucket,
    ) -> Result<TeamView, ServiceError> {
        let requested = self.resolve(window, |now| {
            TimeRange::last(7 * DAY_MS, ceil_to(now, MINUTE_MS))
        });
        let size = bucket.millis();
        let start = bucket.floor(requested.start_ms);
        let end = bucket.floor(requested.end_ms.saturating_sub(1).max(start)) + size;
        let buckets = (end - start) / size;
        if buckets > MAX_TEAM_BUCKETS {
            return Err(ServiceError::InvalidRange(format!(
                "{buckets} {}s requested; the limit is {MAX_TEAM_BUCKETS}: use a shorter range \
                 or bucket=week",
                bucket.as_str()
            )));
        }
        let range =
            TimeRange::new(start, end).map_err(|e| ServiceError::InvalidRange(e.to_string()))?;
        Ok(self.store.team(range, bucket).await?)
    }

    /// API use by `group` in a window (by default the last 24 hours), from the usage rollups.
    pub(crate) async fn usage(
        &self,
        window: Window,
        group: UsageGroup,
        filter: UsageFilter,
        page: UsagePage,
    ) -> Result<(TimeRange, Vec<UsageRow>), ServiceError> {
        let range = self.resolve(window, last_day);
        Ok((range, self.store.usage(range, group, filter, page).await?))
    }

    /// API use over time (by default the last 24 hours), in whole buckets as the timeline.
    pub(crate) async fn usage_timeline(
        &self,
        request: TimelineRequest,
        filter: UsageFilter,
    ) -> Result<UsageTimeline, ServiceError> {
        let (range, bucket_ms) = self.timeline_range(request)?;
        let points = self.store.usage_timeline(range, bucket_ms, filter).await?;
        Ok(UsageTimeline {
            range,
            bucket_ms,
            points,
        })
    }

    /// A timeline's range in whole buckets, ending with the one that holds the requested end
    /// (`hours=24` with hourly buckets is 24 points, the last one the current hour; by default
    /// the last 24 hours), and its bucket.
    fn timeline_range(&self, request: TimelineRequest) -> Result<(TimeRange, i64), ServiceError> {
        let requested = self.resolve(request.window, last_day);
        let bucket_ms = request
            .bucket_ms
            .unwrap_or_else(|| default_bucket_ms(&requested));
        let end = ceil_to(requested.end_ms, bucket_ms);
        let aligned = TimeRange::new(end - ceil_to(requested.duration_ms(), bucket_ms), end)
            .map_err(|e| ServiceError::InvalidRange(e.to_string()))?;
        let points = aligned.duration_ms() / bucket_ms;
        if points > MAX_TIMELINE_POINTS {
            return Err(ServiceError::InvalidRange(format!(
                "{points} buckets requested; the limit is {MAX_TIMELINE_POINTS}: use a larger bucket"
            )));
        }
        Ok((aligned, bucket_ms))
    }

    pub(crate) async fn timeline(
        &self,
        request: TimelineRequest,
    ) -> Result<Timeline, ServiceError> {
        self.timeline_view(request, false).await
    }

    async fn timeline_view(
        &self,
        request: TimelineRequest,
        refresh: bool,
    ) -> Result<Timeline, ServiceError> {
        let (aligned, bucket_ms) = self.timeline_range(request)?;
        let key = format!("{}-{}-{bucket_ms}", aligned.start_ms, aligned.end_ms);
        self.cache
            .read_through(View::Timeline, &key, self.now_ms(), refresh, || async {
                let (mut rows, main_usage) = tokio::try_join!(
                    self.store.execution_timeline(aligned, bucket_ms),
                    self.store.session_usage(aligned, Some(bucket_ms)),
                )?;
                rows.extend(main_usage);
                Ok::<_, ServiceError>(Computed::timeless(views::timeline(
                    aligned, bucket_ms, &rows,
                )))
            })
            .await
    }

    /// The agent-type distribution; by default over the last 24 hours.
    pub(crate) async fn distribution(&self, window: Window) -> Result<Distribution, ServiceError> {
        self.distribution_view(window, false).await
    }

    async fn distribution_view(
        &self,
        window: Window,
        refresh: bool,
    ) -> Result<Distribution, ServiceError> {
        let range = self.resolve(window, last_day);
        let key = format!("{}-{}", range.start_ms, range.end_ms);
        self.cache
            .read_through(View::Distribution, &key, self.now_ms(), refresh, || async {
                let (per_type, tools) = self.execution_and_tool_totals(range).await?;
                Ok::<_, ServiceError>(Computed::timeless(views::distribution(
                    &per_type, &tools, range,
                )))
            })
            .await
    }

    /// What the distribution and tool usage are both made of.
    async fn execution_and_tool_totals(
        &self,
        range: TimeRange,
    ) -> Result<(Vec<ExecutionTotals>, Vec<ToolTotals>), ServiceError> {
        Ok(tokio::try_join!(
            self.store.execution_totals(range),
            self.store.tool_totals(range),
        )?)
    }

    /// Tool usage; by default over the last 24 hours.
    pub(crate) async fn tool_usage(&self, window: Window) -> Result<ToolUsage, ServiceError> {
        self.tool_usage_view(window, false).await
    }

    async fn tool_usage_view(
        &self,
        window: Window,
        refresh: bool,
    ) -> Result<ToolUsage, ServiceError> {
        let range = self.resolve(window, last_day);
        let key = format!("{}-{}", range.start_ms, range.end_ms);
        self.cache
            .read_through(View::ToolUsage, &key, self.now_ms(), refresh, || async {
                let (per_type, tools) = self.execution_and_tool_totals(range).await?;
                let executions = per_type.iter().map(|t| t.executions).sum();
                Ok::<_, ServiceError>(Computed::timeless(views::tool_usage(
                    &tools, executions, range,
                )))
            })
            .await
    }

    /// The newest `limit` events, oldest first, as JSON (the origin's `/events/recent`).
    pub(crate) async fn recent_events(&self, limit: usize) -> Result<Box<RawValue>, ServiceError> {
        self.recent_events_view(limit, false).await
    }

    async fn recent_events_view(
        &self,
        limit: usize,
        refresh: bool,
    ) -> Result<Box<RawValue>, ServiceError> {
        self.cache
            .read_through(
                View::RecentEvents,
                &limit.to_string(),
                self.now_ms(),
                refresh,
                || async {
                    let mut events = self
                        .store
                        .events(EventQuery {
                            limit,
                            order: SortOrder::Descending,
                            chat_tails: true,
                            ..EventQuery::default()
                        })
                        .await?
                        .events;
                    events.reverse();
                    let json = serde_json::value::to_raw_value(&events)
                        .map_err(|e| StoreError::Internal(e.to_string()))?;
                    Ok::<_, ServiceError>(Computed::timeless(json))
                },
            )
            .await
    }

    /// The apps, sessions and event types seen, for the dashboard's filters.
    pub(crate) async fn filter_options(&self) -> Result<FilterOptions, ServiceError> {
        self.filter_options_view(false).await
    }

    async fn filter_options_view(&self, refresh: bool) -> Result<FilterOptions, ServiceError> {
        self.cache
            .read_through(
                View::FilterOptions,
                &FILTER_OPTIONS_LIMIT.to_string(),
                self.now_ms(),
                refresh,
                || async {
                    let mut options = self.store.filter_options(FILTER_OPTIONS_LIMIT).await?;
                    options.sort();
                    Ok::<_, ServiceError>(Computed::timeless(options))
                },
            )
            .await
    }

    /// Recomputes the default views and the live state from the store and writes them to
    /// Redis. One runs at a time (concurrent calls join it); routine calls are rate-limited.
    pub(crate) async fn sync_cache_from_database(
        self: &Arc<Self>,
        trigger: SyncTrigger,
    ) -> SyncOutcome {
        let service = Arc::clone(self);
        let gate = Arc::clone(self.cache.sync_gate());
        gate.run(trigger, move || async move {
            service.rebuild_cache(trigger).await
        })
        .await
    }

    async fn rebuild_cache(&self, trigger: SyncTrigger) -> SyncReport {
        let started_at_ms = crate::clock::wall_clock_ms();
        let started = Instant::now();
        let mut errors: Vec<String> = Vec::new();
        let mut note = |result: Result<(), ServiceError>| {
            if let Err(e) = result {
                errors.push(e.to_string());
            }
        };
        note(self.metrics_view(Window::Default, true).await.map(drop));
        let day = TimelineRequest {
            window: Window::Default,
            bucket_ms: None,
        };
        note(self.timeline_view(day, true).await.map(drop));
        note(
            self.distribution_view(Window::Default, true)
                .await
                .map(drop),
        );
        note(self.tool_usage_view(Window::Default, true).await.map(drop));
        note(
            self.recent_events_view(DEFAULT_RECENT_EVENTS, true)
                .await
                .map(drop),
        );
        note(self.filter_options_view(true).await.map(drop));
        note(self.rebuild_live_state().await);
        let keys_written = if errors.is_empty() { 8 } else { 0 };
        let report = SyncReport {
            trigger,
            started_at_ms,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            keys_written,
            error: errors.first().cloned(),
        };
        match &report.error {
            None => tracing::info!(
                ?trigger,
                ms = report.duration_ms,
                "cache rebuilt from the database"
            ),
            Some(e) => tracing::warn!(?trigger, error = %e, "cache rebuild incomplete"),
        }
        report
    }

    async fn rebuild_live_state(&self) -> Result<(), ServiceError> {
        let cutoff = self.idle_cutoff_ms();
        let active: Vec<(String, i64)> = self
            .store
            .agents(AgentStatusFilter::Active, cutoff, 10_000)
            .await?
            .into_iter()
            .map(|agent| (format!("{}:{}", agent.kind, agent.id), agent.last_seen))
            .collect();
        let mut recent = self
            .store
            .events(EventQuery {
                limit: DEFAULT_RECENT_EVENTS,
                order: SortOrder::Descending,
                ..EventQuery::default()
            })
            .await?
            .events;
        recent.reverse();
        let streamed: Vec<String> = recent
            .iter()
            .map(crate::cache::streamed_event_json)
            .collect();
        self.cache
            .replace_live_state(&active, &streamed)
            .await
            .map_err(|e| ServiceError::Store(StoreError::Internal(e.to_string())))
    }

    /// The health a live client sees: the store, Redis and the breaker.
    pub(crate) async fn live_health(&self) -> LiveHealth {
        LiveHealth {
            sqlite: if self.store.ping().await.is_ok() {
                "up"
            } else {
                "down"
            },
            database: self.store.backend(),
            redis: self.cache.redis_status(),
            breaker: self
                .cache
                .link()
                .map(|link| link.breaker().state().as_str()),
        }
    }

    /// One step of the live snapshots: when clients are connected, pushes a `metrics` message
    /// if events arrived since the last one (at most once per call, and at least every
    /// [`METRICS_REFRESH`] for time-driven changes), and a `health` message when health changed.
    pub(crate) async fn push_live_snapshots_once(&self, last: &mut LiveSnapshots) {
        if self.live.clients() == 0 {
            *last = LiveSnapshots::default();
            return;
        }
        let published = self.live.published();
        let stale = last
            .metrics_at
            .is_none_or(|at| at.elapsed() >= METRICS_REFRESH);
        if published != last.published || stale {
            match self.metrics(Window::Default).await {
                Ok(metrics) => {
                    self.live.publish_global("metrics", &metrics);
                    last.published = published;
                    last.metrics_at = Some(Instant::now());
                }
                Err(e) => tracing::debug!(error = %e, "live metrics snapshot failed"),
            }
        }
        let health = self.live_health().await;
        if last.health.as_ref() != Some(&health) {
            self.live.publish_global("health", &health);
            last.health = Some(health);
        }
    }

    /// One step of cache maintenance: a dirty cache takes a new epoch and is rebuilt (a
    /// recovery, never rate-limited); a clean one is pinged.
    pub(crate) async fn maintain_cache_once(self: &Arc<Self>) -> Maintenance {
        let outcome = self.cache.maintain_once().await;
        // A new epoch (taken here, or by another instance sharing Redis) orphans every cached
        // value and may follow lost write-throughs: the leader rebuilds the cache for it, once.
        // (A restarted Redis can hand out an epoch number again, so one taken here always
        // counts as new.)
        let epoch = match outcome {
            Maintenance::NewEpoch(epoch) => Some(epoch),
            Maintenance::Healthy => Some(self.cache.current_epoch())
                .filter(|e| *e != self.synced_epoch.load(std::sync::atomic::Ordering::SeqCst)),
            Maintenance::Disabled | Maintenance::Unreachable(_) => None,
        };
        if let Some(epoch) = epoch
            && self.store.lead_background_jobs().await
        {
            self.synced_epoch
                .store(epoch, std::sync::atomic::Ordering::SeqCst);
            self.sync_cache_from_database(SyncTrigger::Recovery).await;
        }
        outcome
    }

    /// Records that a caller started an agent, under the caller's id or a new one; returns it.
    /// Identifiers longer than `max_id_len` are refused, naming the field.
    pub(crate) async fn mark_agent_started(
        &self,
        source_app: String,
        session_id: String,
        report: AgentReport,
        max_id_len: usize,
    ) -> Result<(), ServiceError> {
        let event = self.reported_event(
            source_app,
            session_id,
            API_AGENT_STARTED,
            report,
            max_id_len,
        )?;
        self.record_event(event).await?;
        Ok(())
    }

    /// Records that a caller's agent completed (or failed, when `error` is set, or `status`
    /// says it failed). `false` when no agent has that id: nothing is recorded then.
    pub(crate) async fn mark_agent_completed(
        &self,
        report: AgentReport,
        max_id_len: usize,
    ) -> Result<bool, ServiceError> {
        // A report past the bounds is refused whether or not the agent is known.
        report.facts.check_bounds(max_id_len)?;
        let Some(agent) = self
            .store
            .agent(&report.agent_id, self.idle_cutoff_ms())
            .await?
        else {
            return Ok(false);
        };
        let agent = agent.agent;
        let event = self.reported_event(
            agent.source_app,
            agent.session_id,
            API_AGENT_COMPLETED,
            report,
            max_id_len,
        )?;
        self.record_event(event).await?;
        Ok(true)
    }

    fn reported_event(
        &self,
        source_app: String,
        session_id: String,
        hook_event_type: &str,
        report: AgentReport,
        max_id_len: usize,
    ) -> Result<HookEvent, crate::domain::event::EventRefusal> {
        HookEvent::new(
            crate::domain::event::EventParts::plain(
                uuid::Uuid::now_v7().to_string(),
                self.now_ms(),
                source_app,
                session_id,
                hook_event_type,
                report.payload,
                report.facts,
            ),
            max_id_len,
        )
    }

    /// Records the answer to a human-in-the-loop request. Answered now, the event goes to the
    /// live clients and the cached views that list events are invalidated.
    pub(crate) async fn answer_request(
        &self,
        event_row: i64,
        status: String,
    ) -> Result<crate::store::Answered, ServiceError> {
        let answered = self.store.answer(event_row, status).await?;
        if let crate::store::Answered::Now(event) = &answered {
            let outcome = RecordOutcome {
                event: event.clone(),
                duplicate: false,
                transitions: Vec::new(),
            };
            self.cache
                .after_commit(std::slice::from_ref(&outcome), self.idle_cutoff_ms());
            self.live.publish_update(event);
            self.answered.notify_waiters();
        }
        Ok(answered)
    }

    /// The request of event `event_row`, once it is answered or `wait` has passed. Answers
    /// made here wake the wait at once; answers made on another instance sharing the store are
    /// seen within a second.
    pub(crate) async fn wait_for_answer(
        &self,
        event_row: i64,
        wait: std::time::Duration,
    ) -> Result<AwaitedAnswer, ServiceError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.answered.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let event = self.store.events_by_id(vec![event_row]).await?.pop();
            let status = match event {
                None => return Ok(AwaitedAnswer::NoSuchEvent),
                Some(StoredEvent {
                    hitl_status: None, ..
                }) => return Ok(AwaitedAnswer::NotARequest),
                Some(StoredEvent {
                    hitl_status: Some(status),
                    ..
                }) => status,
            };
            if status.get() != crate::store::rows::HITL_PENDING {
                return Ok(AwaitedAnswer::Answered(status));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(AwaitedAnswer::Pending);
            }
            let step = (deadline - now).min(std::time::Duration::from_secs(1));
            let _ = tokio::time::timeout(step, notified).await;
        }
    }

    /// Human-in-the-loop requests still waiting for an answer, newest first.
    pub(crate) async fn pending_requests(
        &self,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, ServiceError> {
        Ok(self.store.pending_requests(limit).await?)
    }

    /// One pass of the idle sweep: persists `timed_out` for agents past the idle time.
    /// (Reads apply the same cut-off themselves, so this only makes the stored status match.)
    pub async fn time_out_idle_agents_once(&self) -> Result<u64, ServiceError> {
        Ok(self
            .store
            .time_out_idle_agents(self.idle_cutoff_ms())
            .await?)
    }
}
