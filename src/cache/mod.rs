//! Redis as a best-effort cache in front of the store: read-through views, write-through
//! invalidation and live state, a circuit breaker, and epochs for recovery.
//!
//! The store is the truth; this module may only make reads faster. Its rules:
//! - **Nothing waits on Redis for long.** Every call goes through [`link::RedisLink`]: one
//!   timeout per call, no retries, and a breaker that skips Redis with no I/O while it is open.
//!   Any failure means "use the store".
//! - **Values are tagged, not trusted.** A cached view is stored with the cache epoch and the
//!   data generation it was computed at (`{epoch}:{generation}:{valid_until}:{json}`), and a
//!   read fetches the current epoch, generation and value in one `MGET`. The value is served
//!   only if its tags match. Every committed event increments the generation through the
//!   write-through queue, which the acknowledgement does not wait for; a read first waits for
//!   the write-throughs queued before it (`WriteThroughQueue`), so no view computed before an
//!   acknowledged event is served after it. A read that raced with a write stores its value
//!   under the old generation, where no one looks.
//! - **Failures make the cache dirty.** Any failed call (a missed invalidation, a restart, a
//!   freeze) may have left values that no longer match the store. A dirty cache is bypassed
//!   until a new epoch is taken (`INCR` of the epoch key), which orphans every value tagged
//!   with an older one; then the default views are rebuilt. A cache starts dirty, because a
//!   crash between a commit and its invalidation leaves the same doubt.
//! - **Time-driven changes expire values.** A view that depends on the clock (active agents go
//!   idle) carries `valid_until`; rolling ranges are aligned to whole minutes by the service,
//!   so "the last 24 hours" is one key per minute, not one per millisecond.

pub mod breaker;
pub(crate) mod link;
pub(crate) mod local;
pub(crate) mod sync;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::{Pipeline, pipe};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::notices::AgentNotice;
use crate::store::{RecordOutcome, StoredEvent};
use crate::telemetry::Histogram;
use breaker::{BreakerSettings, BreakerState};
use link::{RedisLink, Unavailable};
use local::LocalViews;
use sync::SyncGate;

/// The Redis keys of one store's cache, all under `hookwatch:{store id}:` (the store's
/// identity, kept in its database): two stores on one Redis never see each other's values,
/// while instances sharing one PostgreSQL share one namespace.
#[derive(Debug, Clone)]
pub struct CacheKeys {
    namespace: String,
    epoch: String,
    generation: String,
    /// Recent events, newest last, capped (`XADD MAXLEN ~` entries). Each entry is one batch of
    /// commits: `events` is a JSON array of events, `agents` one of agent changes
    /// ([`AgentNotice`]), and `origin` the id of the instance that committed them
    /// ([`REBUILT_ORIGIN`] for entries a rebuild wrote). Every instance reads it to show the
    /// others' commits to its live clients ([`crate::fanout`]).
    pub event_stream: String,
    /// Active agents (`main:{session_id}`, `subagent:{agent_key}`) scored by last-seen ms.
    pub active_agents: String,
}

impl CacheKeys {
    pub(crate) fn new(store_id: &str) -> Self {
        let namespace = format!("hookwatch:{store_id}");
        Self {
            epoch: format!("{namespace}:epoch"),
            generation: format!("{namespace}:generation"),
            event_stream: format!("{namespace}:live:events"),
            active_agents: format!("{namespace}:live:active"),
            namespace,
        }
    }

    /// `hookwatch:{store id}`, for health.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn view(&self, view: View, params: &str) -> String {
        format!("{}:view:{}:{params}", self.namespace, view.name())
    }
}

/// The `origin` of stream entries written by a rebuild: old news, not shown to live clients.
pub(crate) const REBUILT_ORIGIN: &str = "rebuild";
/// Events larger than this go into the stream as a reference (`id`, `event_id`) only, so the
/// write-through queue's memory stays bounded by its length times this.
const MAX_STREAMED_EVENT_BYTES: usize = 16 * 1024;
/// The longest stream entry: the stream's memory is bounded by its length times this.
const MAX_STREAM_ENTRY_BYTES: usize = 256 * 1024;
/// Write-throughs waiting for Redis; when full, commits skip Redis (and mark it dirty).
const WRITE_THROUGH_QUEUE: usize = 1024;
/// Write-throughs sent in one pipeline.
const MAX_WRITES_PER_PIPELINE: usize = 256;
/// How long the write-through task waits for more commits before sending a batch, when no
/// reader is waiting for it. Acknowledgements never wait for this.
const WRITE_THROUGH_LINGER: Duration = Duration::from_millis(5);

/// The cached views.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum View {
    Metrics,
    Timeline,
    Distribution,
    ToolUsage,
    RecentEvents,
    FilterOptions,
}

impl View {
    pub(crate) const ALL: [View; 6] = [
        View::Metrics,
        View::Timeline,
        View::Distribution,
        View::ToolUsage,
        View::RecentEvents,
        View::FilterOptions,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            View::Metrics => "metrics",
            View::Timeline => "timeline",
            View::Distribution => "distribution",
            View::ToolUsage => "tool_usage",
            View::RecentEvents => "recent_events",
            View::FilterOptions => "filter_options",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How long each view may live in Redis (the seed's defaults).
#[derive(Debug, Clone, Copy)]
pub struct ViewTtls {
    pub metrics: Duration,
    pub timeline: Duration,
    pub distribution: Duration,
    pub tool_usage: Duration,
    /// Recent events and filter options.
    pub events: Duration,
}

impl Default for ViewTtls {
    fn default() -> Self {
        Self {
            metrics: Duration::from_secs(60),
            timeline: Duration::from_secs(120),
            distribution: Duration::from_secs(180),
            tool_usage: Duration::from_secs(300),
            events: Duration::from_secs(30),
        }
    }
}

impl ViewTtls {
    pub(crate) fn of(&self, view: View) -> Duration {
        match view {
            View::Metrics => self.metrics,
            View::Timeline => self.timeline,
            View::Distribution => self.distribution,
            View::ToolUsage => self.tool_usage,
            View::RecentEvents | View::FilterOptions => self.events,
        }
    }
}

#[derive(Clone)]
pub struct CacheSettings {
    /// `None`: no cache; health says `disabled`.
    pub redis_url: Option<String>,
    /// The longest any one Redis call may take, connecting included.
    pub command_timeout: Duration,
    pub breaker: BreakerSettings,
    pub ttls: ViewTtls,
    /// The least time between two routine syncs.
    pub sync_min_interval: Duration,
    /// How often maintenance runs (takes a new epoch when dirty, probes when idle).
    pub maintenance_interval: Duration,
    /// Length of the recent-events stream, in entries (each a batch of events, ≤ 256 KiB).
    pub event_stream_len: usize,
    /// This instance's id: stream entries carry it, so that instances sharing Redis can tell
    /// their own commits from the others'.
    pub origin: String,
    /// The store's identity ([`crate::store::Store::store_id`]): the keys' namespace.
    pub store_id: String,
    /// The in-process tier in front of Redis (`local.rs`), where the store counts its
    /// commits; off only to measure or test the Redis tier alone (`--no-local-views`).
    pub local_views: bool,
}

/// By hand, so the Redis password never reaches a log through `{:?}`.
impl std::fmt::Debug for CacheSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheSettings")
            .field(
                "redis_url",
                &self.redis_url.as_deref().map(link::redact_url),
            )
            .field("command_timeout", &self.command_timeout)
            .field("breaker", &self.breaker)
            .field("ttls", &self.ttls)
            .field("sync_min_interval", &self.sync_min_interval)
            .field("maintenance_interval", &self.maintenance_interval)
            .field("event_stream_len", &self.event_stream_len)
            .field("origin", &self.origin)
            .field("local_views", &self.local_views)
            .finish()
    }
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            redis_url: None,
            command_timeout: Duration::from_millis(50),
            breaker: BreakerSettings::default(),
            ttls: ViewTtls::default(),
            sync_min_interval: Duration::from_secs(300),
            maintenance_interval: Duration::from_secs(1),
            event_stream_len: 200,
            origin: String::new(),
            store_id: "default".to_owned(),
            local_views: true,
        }
    }
}

/// A computed view and, if it depends on the clock, the time (ms) it stops being true.
pub(crate) struct Computed<T> {
    pub value: T,
    pub valid_until_ms: Option<i64>,
}

impl<T> Computed<T> {
    pub(crate) fn timeless(value: T) -> Self {
        Self {
            value,
            valid_until_ms: None,
        }
    }
}

#[derive(Default)]
struct ViewCounts {
    /// Reads the in-process tier answered (`local.rs`), before Redis was asked.
    local_hits: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    /// Reads that skipped Redis because it was failing or dirty (counted as misses too).
    bypassed: AtomicU64,
}

#[derive(Default)]
struct Stats {
    views: [ViewCounts; 6],
    hit_latency: Histogram,
    miss_latency: Histogram,
    invalidations: AtomicU64,
    write_failures: AtomicU64,
}

/// The cache, possibly disabled. Cheap to share behind an `Arc`.
pub(crate) struct Cache {
    link: Option<RedisLink>,
    keys: CacheKeys,
    ttls: ViewTtls,
    event_stream_len: usize,
    origin: String,
    maintenance_interval: Duration,
    stats: Stats,
    /// Incremented by every failed call; the cache is clean when `clean_through` caught up.
    failures_seen: AtomicU64,
    clean_through: AtomicU64,
    /// The epoch this instance last took or saw, for health.
    epoch: AtomicI64,
    sync_gate: Arc<SyncGate>,
    write_through: WriteThroughQueue,
    /// The in-process tier, where the store counts its commits (`local.rs`).
    local: Option<LocalViews>,
}

/// What one commit changes in Redis's live state, computed by the committing request.
struct LiveUpdate {
    /// New events, as the stream carries them.
    stream: Vec<String>,
    /// Agent status changes, as other instances' live clients need them ([`AgentNotice`]).
    notices: Vec<String>,
    /// Active-agent changes, in event order.
    agents: Vec<AgentChange>,
    idle_cutoff_ms: i64,
}

enum AgentChange {
    Seen { member: String, at_ms: i64 },
    Gone { member: String },
}

impl LiveUpdate {
    /// `None` when nothing new was committed (all duplicates).
    fn from_outcomes(outcomes: &[RecordOutcome], idle_cutoff_ms: i64) -> Option<Self> {
        let mut update = Self {
            stream: Vec::new(),
            notices: Vec::new(),
            agents: Vec::new(),
            idle_cutoff_ms,
        };
        for outcome in outcomes.iter().filter(|o| !o.duplicate) {
            let event = &outcome.event;
            update.stream.push(streamed_event_json(event));
            let member = format!("main:{}", event.session_id);
            update
                .agents
                .push(if event.hook_event_type == "SessionEnd" {
                    AgentChange::Gone { member }
                } else {
                    AgentChange::Seen {
                        member,
                        at_ms: event.timestamp,
                    }
                });
            for transition in &outcome.transitions {
                update.notices.push(
                    AgentNotice::new(&event.source_app, event.timestamp, transition).encode(),
                );
                let member = format!("subagent:{}", transition.agent_key);
                update.agents.push(
                    if transition.to == crate::domain::lifecycle::AgentStatus::Running {
                        AgentChange::Seen {
                            member,
                            at_ms: event.timestamp,
                        }
                    } else {
                        AgentChange::Gone { member }
                    },
                );
            }
        }
        (!update.stream.is_empty()).then_some(update)
    }
}

struct PendingWrite {
    update: LiveUpdate,
}

/// One stream entry being filled: its two JSON arrays, still open.
#[derive(Default)]
struct StreamEntry {
    events: String,
    agents: String,
}

impl StreamEntry {
    fn len(&self) -> usize {
        self.events.len() + self.agents.len()
    }
}

/// The write-throughs on their way to Redis, in commit order, and how far Redis has got.
///
/// A write-through is queued with no waiting, so an acknowledgement never waits on Redis.
/// Exactness moves to the read side: a read first waits until every write-through queued
/// before it started has been processed ([`WriteThroughQueue::caught_up`]). `queued` is
/// incremented under `order`, in the same order items enter the channel, so "the first N
/// items processed" always covers "the N queued before".
struct WriteThroughQueue {
    order: std::sync::Mutex<()>,
    sender: tokio::sync::mpsc::Sender<PendingWrite>,
    receiver: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<PendingWrite>>>,
    queued: AtomicU64,
    /// Items processed (landed, failed or skipped), published by the write-through task.
    processed: tokio::sync::watch::Sender<u64>,
    /// Cuts the write-through task's linger short: a read is waiting.
    reader_waiting: tokio::sync::Notify,
}

impl WriteThroughQueue {
    fn new() -> Self {
        let (sender, receiver) = tokio::sync::mpsc::channel(WRITE_THROUGH_QUEUE);
        Self {
            order: std::sync::Mutex::new(()),
            sender,
            receiver: std::sync::Mutex::new(Some(receiver)),
            queued: AtomicU64::new(0),
            processed: tokio::sync::watch::Sender::new(0),
            reader_waiting: tokio::sync::Notify::new(),
        }
    }

    /// Queues without waiting; `false` when the queue is full.
    fn push(&self, pending: PendingWrite) -> bool {
        let _order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        let queued = self.sender.try_send(pending).is_ok();
        if queued {
            self.queued.fetch_add(1, Ordering::SeqCst);
        }
        queued
    }

    /// Waits (at most `limit`) until everything queued before this call has been processed.
    async fn caught_up(&self, limit: Duration) -> bool {
        let target = self.queued.load(Ordering::SeqCst);
        if *self.processed.borrow() >= target {
            return true;
        }
        let mut processed = self.processed.subscribe();
        self.reader_waiting.notify_one();
        matches!(
            tokio::time::timeout(limit, processed.wait_for(|done| *done >= target)).await,
            Ok(Ok(_))
        )
    }

    fn take_receiver(&self) -> Option<tokio::sync::mpsc::Receiver<PendingWrite>> {
        self.receiver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// What one maintenance step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Maintenance {
    Disabled,
    /// Clean, and Redis answered a ping (or the breaker skipped it).
    Healthy,
    /// Was dirty; took this new epoch. The caller rebuilds the views.
    NewEpoch(i64),
    /// Redis could not be reached (or the breaker is open).
    Unreachable(String),
}

impl Cache {
    pub(crate) fn new(settings: &CacheSettings) -> Result<Self, String> {
        let link = settings
            .redis_url
            .as_deref()
            .map(|url| RedisLink::new(url, settings.command_timeout, settings.breaker))
            .transpose()?;
        Ok(Self {
            link,
            keys: CacheKeys::new(&settings.store_id),
            ttls: settings.ttls,
            event_stream_len: settings.event_stream_len.max(1),
            origin: settings.origin.clone(),
            maintenance_interval: settings.maintenance_interval,
            stats: Stats::default(),
            // Start dirty: take a new epoch before trusting anything already in Redis.
            failures_seen: AtomicU64::new(1),
            clean_through: AtomicU64::new(0),
            epoch: AtomicI64::new(0),
            sync_gate: SyncGate::new(settings.sync_min_interval),
            write_through: WriteThroughQueue::new(),
            local: None,
        })
    }

    /// With the in-process tier in front of Redis and the store, trusting `commits`, the
    /// store's count of its commits (`Store::local_commits`); without one, no tier.
    pub(crate) fn with_local_views(mut self, commits: Option<Arc<AtomicU64>>) -> Self {
        self.local = commits.map(LocalViews::new);
        self
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.link.is_some()
    }

    /// This store's keys.
    pub(crate) fn keys(&self) -> &CacheKeys {
        &self.keys
    }

    pub(crate) fn link(&self) -> Option<&RedisLink> {
        self.link.as_ref()
    }

    pub(crate) fn sync_gate(&self) -> &Arc<SyncGate> {
        &self.sync_gate
    }

    pub(crate) fn maintenance_interval(&self) -> Duration {
        self.maintenance_interval
    }

    /// The cache epoch last seen in Redis.
    pub(crate) fn current_epoch(&self) -> i64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// Values in Redis may disagree with the store until a new epoch is taken.
    pub(crate) fn is_dirty(&self) -> bool {
        self.clean_through.load(Ordering::SeqCst) < self.failures_seen.load(Ordering::SeqCst)
    }

    /// Declares every cached value suspect (the store changed in a way write-throughs do not
    /// describe, such as pruning): reads bypass Redis until maintenance takes a new epoch.
    pub(crate) fn invalidate_all(&self) {
        if self.link.is_some() {
            self.failures_seen.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Runs a pipeline; any failure marks the cache dirty.
    async fn query<T: redis::FromRedisValue>(
        &self,
        link: &RedisLink,
        pipeline: &Pipeline,
    ) -> Result<T, Unavailable> {
        let result = link.query(pipeline).await;
        if result.is_err() {
            self.failures_seen.fetch_add(1, Ordering::SeqCst);
        }
        result
    }

    /// Redis first; on a miss, `compute` from the store and cache the result.
    /// With `refresh`, skips the lookup and recomputes (the sync uses this).
    pub(crate) async fn read_through<T, E, F, Fut>(
        &self,
        view: View,
        params: &str,
        now_ms: i64,
        refresh: bool,
        compute: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Computed<T>, E>>,
    {
        let started = Instant::now();
        let counts = &self.stats.views[view.index()];
        // The in-process tier first: unchanged since the last read, it is the answer.
        let local_commits = self.local.as_ref().map(LocalViews::commits);
        if !refresh
            && let Some(value) = self
                .local
                .as_ref()
                .and_then(|local| local.get::<T>(view, params, now_ms))
        {
            counts.local_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(value);
        }
        // `json_bytes`: the value's size as JSON where it was already written out (for Redis).
        let keep = |value: &T, valid_until_ms: Option<i64>, json_bytes: Option<usize>| {
            if let (Some(local), Some(commits)) = (&self.local, local_commits) {
                let bytes = json_bytes.or_else(|| local::json_len(value));
                if let Some(bytes) = bytes {
                    local.put(view, params, commits, valid_until_ms, value, bytes);
                }
            }
        };
        let Some(link) = &self.link else {
            let computed = compute().await?;
            keep(&computed.value, computed.valid_until_ms, None);
            return Ok(computed.value);
        };
        // Every write committed before this read must have invalidated Redis first; if that
        // takes longer than a command may, read the store instead.
        let tags = if !self.write_through.caught_up(link.timeout()).await || self.is_dirty() {
            None
        } else {
            let key = self.keys.view(view, params);
            let lookup: Result<(i64, i64, Option<String>), Unavailable> = self
                .query(
                    link,
                    pipe()
                        .cmd("MGET")
                        .arg(&self.keys.epoch)
                        .arg(&self.keys.generation)
                        .arg(&key),
                )
                .await
                .map(|(values,): (Vec<Option<String>>,)| parse_lookup(values));
            match lookup {
                Ok((epoch, generation, cached)) => {
                    self.epoch.store(epoch, Ordering::Relaxed);
                    if !refresh
                        && let Some((value, valid_until)) = cached
                            .as_deref()
                            .and_then(|text| fresh_value::<T>(text, epoch, generation, now_ms))
                    {
                        counts.hits.fetch_add(1, Ordering::Relaxed);
                        self.stats.hit_latency.record(started.elapsed());
                        keep(&value, Some(valid_until), cached.as_deref().map(str::len));
                        return Ok(value);
                    }
                    Some((key, epoch, generation))
                }
                Err(_) => None,
            }
        };
        counts.misses.fetch_add(1, Ordering::Relaxed);
        if tags.is_none() {
            counts.bypassed.fetch_add(1, Ordering::Relaxed);
        }
        let computed = compute().await?;
        let mut json_bytes = None;
        if let Some((key, epoch, generation)) = tags
            && let Ok(json) = serde_json::to_string(&computed.value)
        {
            json_bytes = Some(json.len());
            let ttl = ttl_secs(self.ttls.of(view), computed.valid_until_ms, now_ms);
            let valid_until = computed.valid_until_ms.unwrap_or(i64::MAX);
            let entry = format!("{epoch}:{generation}:{valid_until}:{json}");
            let _: Result<(), _> = self
                .query(link, pipe().set_ex(&key, entry, ttl).ignore())
                .await;
        }
        self.stats.miss_latency.record(started.elapsed());
        keep(&computed.value, computed.valid_until_ms, json_bytes);
        Ok(computed.value)
    }

    /// Write-through after a commit: bump the generation (which invalidates every cached
    /// view), append the events to the live stream and update the active-agent set.
    ///
    /// Queued for [`Cache::run_write_through`], which sends whatever has queued as one
    /// pipeline; the caller does not wait, so no acknowledgement waits on Redis. Reads wait
    /// instead (see `WriteThroughQueue`). A write-through that cannot be queued marks the
    /// cache dirty, so it is bypassed rather than trusted.
    pub(crate) fn after_commit(&self, outcomes: &[RecordOutcome], idle_cutoff_ms: i64) {
        if self.link.is_none() {
            return;
        }
        let Some(update) = LiveUpdate::from_outcomes(outcomes, idle_cutoff_ms) else {
            return;
        };
        if !self.write_through.push(PendingWrite { update }) {
            tracing::debug!("cache write-through queue full; skipping Redis");
            self.write_through_missed();
        }
    }

    /// Write-through after telemetry was committed: only the generation bump, since the
    /// views that read telemetry (usage, the metrics cards' cost) are cached like the rest.
    pub(crate) fn after_telemetry_commit(&self, idle_cutoff_ms: i64) {
        if self.link.is_none() {
            return;
        }
        let update = LiveUpdate {
            stream: Vec::new(),
            notices: Vec::new(),
            agents: Vec::new(),
            idle_cutoff_ms,
        };
        if !self.write_through.push(PendingWrite { update }) {
            tracing::debug!("cache write-through queue full; skipping Redis");
            self.write_through_missed();
        }
    }

    fn write_through_missed(&self) {
        self.failures_seen.fetch_add(1, Ordering::SeqCst);
        self.stats.write_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Sends queued write-throughs to Redis, one pipeline per batch, until the cache is
    /// dropped. Spawned once by the application; does nothing without Redis.
    pub(crate) async fn run_write_through(self: Arc<Self>) {
        let Some(mut receiver) = self.write_through.take_receiver() else {
            return;
        };
        let Some(link) = &self.link else {
            return;
        };
        // One batch on the wire at a time; what queues meanwhile goes in the next one. After
        // the first write of a batch arrives, linger briefly so that a batch carries many
        // commits (each Redis wake-up costs far more than one more command in it), unless a
        // reader is waiting for this batch.
        let mut batch: Vec<PendingWrite> = Vec::with_capacity(MAX_WRITES_PER_PIPELINE);
        while receiver
            .recv_many(&mut batch, MAX_WRITES_PER_PIPELINE)
            .await
            > 0
        {
            if batch.len() < MAX_WRITES_PER_PIPELINE {
                tokio::select! {
                    () = tokio::time::sleep(WRITE_THROUGH_LINGER) => {}
                    () = self.write_through.reader_waiting.notified() => {}
                }
                while batch.len() < MAX_WRITES_PER_PIPELINE
                    && let Ok(pending) = receiver.try_recv()
                {
                    batch.push(pending);
                }
            }
            let pipeline = self.write_through_pipeline(&batch);
            let writes = batch.len() as u64;
            match self.query::<()>(link, &pipeline).await {
                Ok(()) => self
                    .stats
                    .invalidations
                    .fetch_add(writes, Ordering::Relaxed),
                Err(e) => {
                    tracing::debug!(error = %e, writes, "cache write-through failed");
                    self.stats
                        .write_failures
                        .fetch_add(writes, Ordering::Relaxed)
                }
            };
            // After a failure the query has already marked the cache dirty, so readers
            // released here bypass Redis.
            batch.clear();
            self.write_through
                .processed
                .send_modify(|processed| *processed += writes);
        }
    }

    /// One pipeline for a batch of write-throughs: the stream entries, each agent's last
    /// change folded into one `ZADD` and one `ZREM`, the idle trim, and one generation bump.
    fn write_through_pipeline(&self, batch: &[PendingWrite]) -> Pipeline {
        let mut pipeline = pipe();
        let mut idle_cutoff_ms = i64::MIN;
        // member → last seen (Some) or gone (None), in the order the changes happened.
        let mut agents: std::collections::HashMap<&str, Option<i64>> =
            std::collections::HashMap::new();
        self.append_to_stream(
            &mut pipeline,
            &self.origin,
            batch
                .iter()
                .flat_map(|pending| pending.update.stream.iter().map(String::as_str)),
            batch
                .iter()
                .flat_map(|pending| pending.update.notices.iter().map(String::as_str)),
        );
        for pending in batch {
            let update = &pending.update;
            for change in &update.agents {
                match change {
                    AgentChange::Seen { member, at_ms } => {
                        let last = agents.entry(member).or_insert(Some(*at_ms));
                        *last = Some(last.unwrap_or(*at_ms).max(*at_ms));
                    }
                    AgentChange::Gone { member } => {
                        agents.insert(member, None);
                    }
                }
            }
            idle_cutoff_ms = idle_cutoff_ms.max(update.idle_cutoff_ms);
        }
        let mut seen = redis::cmd("ZADD");
        seen.arg(&self.keys.active_agents).arg("GT");
        let mut gone = redis::cmd("ZREM");
        gone.arg(&self.keys.active_agents);
        let (mut any_seen, mut any_gone) = (false, false);
        for (member, last_seen) in &agents {
            match last_seen {
                Some(at_ms) => {
                    seen.arg(*at_ms).arg(*member);
                    any_seen = true;
                }
                None => {
                    gone.arg(*member);
                    any_gone = true;
                }
            }
        }
        if any_seen {
            pipeline.add_command(seen).ignore();
        }
        if any_gone {
            pipeline.add_command(gone).ignore();
        }
        pipeline
            .cmd("ZREMRANGEBYSCORE")
            .arg(&self.keys.active_agents)
            .arg("-inf")
            .arg(format!("({idle_cutoff_ms}"))
            .ignore();
        pipeline.incr(&self.keys.generation, 1).ignore();
        pipeline
    }

    /// One maintenance step: when dirty, take a new epoch; when clean, ping (which is also the
    /// breaker's probe when no traffic would otherwise make one).
    pub(crate) async fn maintain_once(&self) -> Maintenance {
        let Some(link) = &self.link else {
            return Maintenance::Disabled;
        };
        if self.is_dirty() {
            let observed = self.failures_seen.load(Ordering::SeqCst);
            return match self
                .query::<(i64,)>(link, pipe().incr(&self.keys.epoch, 1))
                .await
            {
                Ok((epoch,)) => {
                    self.epoch.store(epoch, Ordering::Relaxed);
                    self.clean_through.fetch_max(observed, Ordering::SeqCst);
                    tracing::info!(
                        epoch,
                        "new cache epoch: values cached before it are ignored"
                    );
                    Maintenance::NewEpoch(epoch)
                }
                Err(e) => Maintenance::Unreachable(e.to_string()),
            };
        }
        // Reading the epoch doubles as the ping, and shows an epoch another instance took.
        match self
            .query::<(Option<i64>,)>(link, pipe().get(&self.keys.epoch))
            .await
        {
            Ok((epoch,)) => {
                self.epoch.store(epoch.unwrap_or(0), Ordering::Relaxed);
                Maintenance::Healthy
            }
            Err(e) => Maintenance::Unreachable(e.to_string()),
        }
    }

    /// Replaces the live state: the active-agent set and the recent-event stream.
    pub(crate) async fn replace_live_state(
        &self,
        active: &[(String, i64)],
        recent_events_json: &[String],
    ) -> Result<(), Unavailable> {
        let Some(link) = &self.link else {
            return Ok(());
        };
        let mut pipeline = pipe();
        pipeline.atomic();
        pipeline.del(&self.keys.active_agents).ignore();
        for (member, last_seen) in active {
            pipeline
                .zadd(&self.keys.active_agents, member, last_seen)
                .ignore();
        }
        pipeline.del(&self.keys.event_stream).ignore();
        self.append_to_stream(
            &mut pipeline,
            REBUILT_ORIGIN,
            recent_events_json.iter().map(String::as_str),
            std::iter::empty(),
        );
        self.query::<()>(link, &pipeline).await
    }

    /// Appends events and agent changes to the stream in as few entries as possible: each
    /// entry's `events` and `agents` fields are JSON arrays in commit order, together at most
    /// [`MAX_STREAM_ENTRY_BYTES`] long. One `XADD` per batch rather than per event cut the
    /// cache's ingest cost from ~10 % to ~1 %.
    fn append_to_stream<'a>(
        &self,
        pipeline: &mut Pipeline,
        origin: &str,
        events_json: impl IntoIterator<Item = &'a str>,
        notices_json: impl IntoIterator<Item = &'a str>,
    ) {
        let mut entry = StreamEntry::default();
        let items = (events_json.into_iter().map(|event| (false, event)))
            .chain(notices_json.into_iter().map(|notice| (true, notice)));
        for (is_notice, item) in items {
            if entry.len() + item.len() + 2 > MAX_STREAM_ENTRY_BYTES {
                self.push_stream_entry(pipeline, origin, &mut entry);
            }
            let array = if is_notice {
                &mut entry.agents
            } else {
                &mut entry.events
            };
            array.push(if array.is_empty() { '[' } else { ',' });
            array.push_str(item);
        }
        self.push_stream_entry(pipeline, origin, &mut entry);
    }

    fn push_stream_entry(&self, pipeline: &mut Pipeline, origin: &str, entry: &mut StreamEntry) {
        if entry.len() == 0 {
            return;
        }
        let close = |array: &mut String| {
            if array.is_empty() {
                array.push('[');
            }
            array.push(']');
        };
        close(&mut entry.events);
        close(&mut entry.agents);
        pipeline
            .cmd("XADD")
            .arg(&self.keys.event_stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.event_stream_len)
            .arg("*")
            .arg("origin")
            .arg(origin)
            .arg("events")
            .arg(entry.events.as_str())
            .arg("agents")
            .arg(entry.agents.as_str())
            .ignore();
        *entry = StreamEntry::default();
    }

    /// The reads the in-process tier answered, per view; `None` without the tier.
    pub(crate) fn local_view_hits(&self) -> Option<Vec<(&'static str, u64)>> {
        self.local.as_ref()?;
        Some(
            View::ALL
                .iter()
                .map(|view| {
                    let counts = &self.stats.views[view.index()];
                    (view.name(), counts.local_hits.load(Ordering::Relaxed))
                })
                .collect(),
        )
    }

    pub(crate) fn stats(&self) -> CacheStats {
        let views = View::ALL
            .iter()
            .map(|view| {
                let counts = &self.stats.views[view.index()];
                ViewStats {
                    view: view.name(),
                    local_hits: counts.local_hits.load(Ordering::Relaxed),
                    hits: counts.hits.load(Ordering::Relaxed),
                    misses: counts.misses.load(Ordering::Relaxed),
                    bypassed: counts.bypassed.load(Ordering::Relaxed),
                    ttl_s: self.ttls.of(*view).as_secs(),
                }
            })
            .collect::<Vec<_>>();
        let hits = views.iter().map(|v| v.hits).sum();
        let misses = views.iter().map(|v| v.misses).sum();
        CacheStats {
            enabled: self.is_enabled(),
            epoch: self.epoch.load(Ordering::Relaxed),
            dirty: self.is_enabled() && self.is_dirty(),
            hits,
            misses,
            views,
            invalidations: self.stats.invalidations.load(Ordering::Relaxed),
            write_failures: self.stats.write_failures.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn hit_latency(&self) -> &Histogram {
        &self.stats.hit_latency
    }

    pub(crate) fn miss_latency(&self) -> &Histogram {
        &self.stats.miss_latency
    }

    /// `up` (breaker closed and connected), `down`, or `disabled`.
    pub(crate) fn redis_status(&self) -> &'static str {
        match &self.link {
            None => "disabled",
            Some(link) if link.breaker().state() == BreakerState::Closed && link.is_connected() => {
                "up"
            }
            Some(_) => "down",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ViewStats {
    pub view: &'static str,
    /// Answered by the in-process tier, before Redis.
    pub local_hits: u64,
    pub hits: u64,
    pub misses: u64,
    pub bypassed: u64,
    pub ttl_s: u64,
}

#[derive(Debug, Clone)]
pub struct CacheStats {
    pub enabled: bool,
    pub epoch: i64,
    pub dirty: bool,
    pub hits: u64,
    pub misses: u64,
    pub views: Vec<ViewStats>,
    pub invalidations: u64,
    pub write_failures: u64,
}

pub(crate) fn hit_rate(hits: u64, misses: u64) -> Option<f64> {
    let total = hits + misses;
    (total > 0).then(|| hits as f64 / total as f64)
}

fn parse_lookup(values: Vec<Option<String>>) -> (i64, i64, Option<String>) {
    let mut values = values.into_iter();
    let number = |v: Option<Option<String>>| {
        v.flatten()
            .and_then(|text| text.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let epoch = number(values.next());
    let generation = number(values.next());
    (epoch, generation, values.next().flatten())
}

/// The cached value, if its tags match the current epoch and generation and it has not
/// outlived its `valid_until`.
/// A cached entry's value and its `valid_until`, if its tags match and it is still valid.
fn fresh_value<T: DeserializeOwned>(
    entry: &str,
    epoch: i64,
    generation: i64,
    now_ms: i64,
) -> Option<(T, i64)> {
    let mut parts = entry.splitn(4, ':');
    let tagged_epoch: i64 = parts.next()?.parse().ok()?;
    let tagged_generation: i64 = parts.next()?.parse().ok()?;
    let valid_until: i64 = parts.next()?.parse().ok()?;
    let json = parts.next()?;
    if tagged_epoch != epoch || tagged_generation != generation || now_ms >= valid_until {
        return None;
    }
    Some((serde_json::from_str(json).ok()?, valid_until))
}

fn ttl_secs(ttl: Duration, valid_until_ms: Option<i64>, now_ms: i64) -> u64 {
    let ttl = ttl.as_secs().max(1);
    match valid_until_ms {
        Some(until) => {
            let left_s = ((until - now_ms).max(0) as u64).div_ceil(1000);
            ttl.min(left_s.max(1))
        }
        None => ttl,
    }
}

/// An event as the live stream carries it: whole, or a reference when it is large.
pub(crate) fn streamed_event_json(event: &StoredEvent) -> String {
    let json = serde_json::to_string(event).unwrap_or_default();
    if json.len() <= MAX_STREAMED_EVENT_BYTES {
        json
    } else {
        serde_json::json!({
            "id": event.id,
            "event_id": event.event_id,
            "truncated": true,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_never_show_the_redis_password() {
        let settings = CacheSettings {
            redis_url: Some("redis://:hunter2@cache.internal:6379/0".into()),
            ..CacheSettings::default()
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("cache.internal"), "{shown}");
    }

    #[test]
    fn a_value_is_served_only_under_its_own_epoch_and_generation() {
        let entry = "3:41:9223372036854775807:[1,2]";
        assert_eq!(
            fresh_value::<Vec<i32>>(entry, 3, 41, 0),
            Some((vec![1, 2], i64::MAX))
        );
        assert_eq!(fresh_value::<Vec<i32>>(entry, 4, 41, 0), None, "new epoch");
        assert_eq!(fresh_value::<Vec<i32>>(entry, 3, 42, 0), None, "newer data");
        assert_eq!(fresh_value::<Vec<i32>>("garbage", 3, 41, 0), None);
    }

    #[test]
    fn a_value_that_depends_on_the_clock_expires_on_time() {
        let entry = "1:1:5000:{\"active\":2}";
        assert!(fresh_value::<serde_json::Value>(entry, 1, 1, 4999).is_some());
        assert!(fresh_value::<serde_json::Value>(entry, 1, 1, 5000).is_none());
        assert_eq!(ttl_secs(Duration::from_secs(60), Some(5000), 4999), 1);
        assert_eq!(ttl_secs(Duration::from_secs(60), Some(30_500), 0), 31);
        assert_eq!(ttl_secs(Duration::from_secs(60), None, 0), 60);
    }

    fn pending(agents: Vec<AgentChange>) -> PendingWrite {
        PendingWrite {
            update: LiveUpdate {
                stream: vec!["{}".into()],
                notices: Vec::new(),
                agents,
                idle_cutoff_ms: 1_000,
            },
        }
    }

    #[test]
    fn a_batch_folds_each_agents_changes_into_its_last_state() {
        let cache = Cache::new(&CacheSettings {
            redis_url: Some("redis://127.0.0.1:1".into()),
            ..CacheSettings::default()
        })
        .unwrap();
        let seen = |member: &str, at_ms| AgentChange::Seen {
            member: member.into(),
            at_ms,
        };
        let gone = |member: &str| AgentChange::Gone {
            member: member.into(),
        };
        let batch = [
            pending(vec![seen("main:S1", 10), seen("subagent:a", 10)]),
            pending(vec![seen("main:S1", 30), gone("subagent:a")]),
            pending(vec![
                seen("main:S1", 20),
                gone("main:S2"),
                seen("main:S2", 40),
            ]),
        ];
        let packed = cache.write_through_pipeline(&batch).get_packed_pipeline();
        let text = String::from_utf8_lossy(&packed);
        let commands: Vec<&str> = text.split("*").filter(|c| !c.is_empty()).collect();
        let find = |name: &str| {
            commands
                .iter()
                .filter(|c| c.contains(&format!("\r\n{name}\r\n")))
                .collect::<Vec<_>>()
        };
        let xadd = find("XADD");
        assert_eq!(xadd.len(), 1, "one stream entry per batch");
        assert!(
            text.contains("\r\n[{},{},{}]\r\n"),
            "the batch's events: {text}"
        );
        let zadd = find("ZADD");
        assert_eq!(zadd.len(), 1, "one ZADD for the batch");
        assert!(
            zadd[0].contains("\r\n30\r\n$7\r\nmain:S1"),
            "latest time: {}",
            zadd[0]
        );
        assert!(
            zadd[0].contains("\r\n40\r\n$7\r\nmain:S2"),
            "seen after gone: {}",
            zadd[0]
        );
        let zrem = find("ZREM");
        assert_eq!(zrem.len(), 1);
        assert!(zrem[0].contains("subagent:a") && !zrem[0].contains("main:"));
        assert_eq!(
            find("INCR").len() + find("INCRBY").len(),
            1,
            "one generation bump"
        );
    }

    #[test]
    fn missing_counters_read_as_zero() {
        assert_eq!(
            parse_lookup(vec![None, Some("7".into()), Some("v".into())]),
            (0, 7, Some("v".into()))
        );
    }
}
