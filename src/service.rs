//! The unified metrics service: the one place that owns hookwatch's operations.
//!
//! Recording an event, the views (metrics, timeline, distribution, tool usage) and the
//! reported agent lifecycle (`mark_agent_started` / `mark_agent_completed`) all go through
//! [`MetricsService`]. HTTP handlers call it and nothing else, so the cache layer that sits in
//! front of the store (read-through, write-through invalidation) has exactly one seam to wrap.
//! The service never talks SQL and never sees wire formats.

use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::clock::Clock;
use crate::domain::event::{API_AGENT_COMPLETED, API_AGENT_STARTED, HookEvent, HookFacts};
use crate::domain::time::{DAY_MS, TimeRange, ceil_to, default_bucket_ms};
use crate::domain::views::{self, AgentMetrics, Distribution, Timeline, ToolUsage};
use crate::store::{RecordOutcome, Store, StoreError};

/// The most points a timeline answers with.
pub const MAX_TIMELINE_POINTS: i64 = 2000;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("unknown agent_id {0:?}")]
    UnknownAgent(String),
    #[error("{0}")]
    InvalidRange(String),
}

/// What a timeline read asks for.
#[derive(Debug, Clone, Copy)]
pub struct TimelineRequest {
    /// `None`: the last 24 hours.
    pub range: Option<TimeRange>,
    /// `None`: chosen from the range.
    pub bucket_ms: Option<i64>,
}

pub struct MetricsService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    agent_idle_timeout_ms: i64,
}

impl MetricsService {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, agent_idle_timeout_ms: i64) -> Self {
        Self {
            store,
            clock,
            agent_idle_timeout_ms,
        }
    }

    /// For plain reads that are not views (event lists, agents, sessions).
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Agents not seen since this time are timed out, not active.
    pub fn idle_cutoff_ms(&self) -> i64 {
        self.now_ms() - self.agent_idle_timeout_ms
    }

    /// Commits events; answers after they are durable.
    pub async fn record_events(
        &self,
        events: Vec<HookEvent>,
    ) -> Result<Vec<RecordOutcome>, ServiceError> {
        Ok(self.store.record(events).await?)
    }

    pub async fn record_event(&self, event: HookEvent) -> Result<RecordOutcome, ServiceError> {
        let mut outcomes = self.record_events(vec![event]).await?;
        outcomes
            .pop()
            .ok_or_else(|| ServiceError::Store(StoreError::Database("no outcome for event".into())))
    }

    /// Metrics for `range`; by default the current UTC day.
    pub async fn metrics(&self, range: Option<TimeRange>) -> Result<AgentMetrics, ServiceError> {
        let range = range.unwrap_or_else(|| TimeRange::today(self.now_ms()));
        let (active, per_type) = tokio::try_join!(
            self.store.active_agent_count(self.idle_cutoff_ms()),
            self.store.execution_totals(range),
        )?;
        Ok(views::agent_metrics(active, &per_type, range))
    }

    pub async fn timeline(&self, request: TimelineRequest) -> Result<Timeline, ServiceError> {
        let now = self.now_ms();
        let requested = request
            .range
            .unwrap_or_else(|| TimeRange::last(DAY_MS, now));
        let bucket_ms = request
            .bucket_ms
            .unwrap_or_else(|| default_bucket_ms(&requested));
        // Whole buckets, ending with the one that holds the range's end: `hours=24` with
        // hourly buckets is 24 points, the last one the current hour.
        let end = ceil_to(requested.end_ms, bucket_ms);
        let aligned = TimeRange::new(end - ceil_to(requested.duration_ms(), bucket_ms), end)
            .map_err(|e| ServiceError::InvalidRange(e.to_string()))?;
        let points = aligned.duration_ms() / bucket_ms;
        if points > MAX_TIMELINE_POINTS {
            return Err(ServiceError::InvalidRange(format!(
                "{points} buckets requested; the limit is {MAX_TIMELINE_POINTS}: use a larger bucket"
            )));
        }
        let rows = self.store.execution_timeline(aligned, bucket_ms).await?;
        Ok(views::timeline(aligned, bucket_ms, &rows))
    }

    /// The agent-type distribution; by default over the last 24 hours.
    pub async fn distribution(
        &self,
        range: Option<TimeRange>,
    ) -> Result<Distribution, ServiceError> {
        let range = range.unwrap_or_else(|| TimeRange::last(DAY_MS, self.now_ms()));
        let (per_type, tools) = tokio::try_join!(
            self.store.execution_totals(range),
            self.store.tool_totals(range),
        )?;
        Ok(views::distribution(&per_type, &tools, range))
    }

    /// Tool usage; by default over the last 24 hours.
    pub async fn tool_usage(&self, range: Option<TimeRange>) -> Result<ToolUsage, ServiceError> {
        let range = range.unwrap_or_else(|| TimeRange::last(DAY_MS, self.now_ms()));
        let (per_type, tools) = tokio::try_join!(
            self.store.execution_totals(range),
            self.store.tool_totals(range),
        )?;
        let executions = per_type.iter().map(|t| t.executions).sum();
        Ok(views::tool_usage(&tools, executions, range))
    }

    /// Records that a caller started an agent; returns its new id.
    pub async fn mark_agent_started(
        &self,
        source_app: String,
        session_id: String,
        mut report: Map<String, Value>,
    ) -> Result<String, ServiceError> {
        let agent_id = uuid::Uuid::new_v4().to_string();
        report.insert("agent_id".into(), Value::String(agent_id.clone()));
        let event = self.reported_event(source_app, session_id, API_AGENT_STARTED, report);
        self.record_event(event).await?;
        Ok(agent_id)
    }

    /// Records that a caller's agent completed (or failed, when `error` is set).
    pub async fn mark_agent_completed(
        &self,
        report: Map<String, Value>,
    ) -> Result<(), ServiceError> {
        let agent_id = report
            .get("agent_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let agent = self
            .store
            .agent(&agent_id, self.idle_cutoff_ms())
            .await?
            .ok_or_else(|| ServiceError::UnknownAgent(agent_id.clone()))?
            .agent;
        let event = self.reported_event(
            agent.source_app,
            agent.session_id,
            API_AGENT_COMPLETED,
            report,
        );
        self.record_event(event).await?;
        Ok(())
    }

    fn reported_event(
        &self,
        source_app: String,
        session_id: String,
        hook_event_type: &str,
        report: Map<String, Value>,
    ) -> HookEvent {
        let facts = HookFacts::from_reported_agent(&report);
        let payload = RawValue::from_string(Value::Object(report).to_string())
            .expect("a serialized object is valid JSON");
        HookEvent {
            event_id: uuid::Uuid::now_v7().to_string(),
            timestamp_ms: self.now_ms(),
            source_app,
            session_id,
            hook_event_type: hook_event_type.to_owned(),
            payload,
            chat: None,
            summary: None,
            model_name: None,
            extra: None,
            facts,
        }
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
