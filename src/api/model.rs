//! Wire shapes: how the domain's and the store's values look on the wire, for the API, the
//! live stream, exports and the cache alike. Types outside `api` are plain data; their JSON
//! is written here, so a change to what clients read is a change to this file.
//!
//! Outside `api`, only these derive serde traits: the notices instances send each other
//! (`notices`, one encoding that module owns; the WebSocket `agent` message carries its
//! `AgentChange` as encoded there), inputs (the price file, WebSocket filters, hook payload
//! fields read in passing) and the live stream's `{type, data}` envelope (`live::Typed`,
//! generic over what it carries).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::alerts::engine::Budget;
use crate::cache::sync::{SyncReport, SyncTrigger};
use crate::cache::{CacheStats, ViewStats};
use crate::domain::attribution::Activity;
use crate::domain::coding_agent::CodingAgent;
use crate::domain::lifecycle::{AgentStatus, ToolCall};
use crate::domain::sessions::{
    AgentDetail, AgentRecord, CostSource, PromptUsage, SessionDetail, SessionRecord,
    TelemetryUsage, TokenCounts,
};
use crate::domain::team::{TeamSums, TeamView};
use crate::domain::trace::Span;
use crate::domain::usage::{UsagePoint, UsageRow};
use crate::domain::views::{
    AgentMetrics, CostView, Distribution, DistributionEntry, RangeView, Timeline, TimelinePoint,
    ToolInsights, ToolUsage, ToolUsageEntry, TypeBreakdown,
};
use crate::service::{LiveHealth, UsageTimeline};
use crate::store::{EventPage, FilterOptions, PruneReport, StoredEvent};

/// The origin's saved-event shape plus `event_id`: the envelope's unknown fields first, then
/// the known ones, so a known field always wins over an unknown one of the same name.
impl Serialize for StoredEvent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let extra: Vec<(String, Box<RawValue>)> = self
            .extra
            .as_ref()
            .and_then(|raw| {
                serde_json::from_str::<std::collections::BTreeMap<String, Box<RawValue>>>(raw.get())
                    .ok()
            })
            .map(|fields| fields.into_iter().collect())
            .unwrap_or_default();
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in &extra {
            map.serialize_entry(key, value)?;
        }
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("event_id", &self.event_id)?;
        map.serialize_entry("source_app", &self.source_app)?;
        // The envelope's value as sent; Claude Code's own beside it when that differs, so a
        // client that rewrote the id can still find the session.
        match &self.sent_session_id {
            Some(sent) => {
                map.serialize_entry("session_id", sent)?;
                map.serialize_entry("claude_session_id", &self.session_id)?;
            }
            None => map.serialize_entry("session_id", &self.session_id)?,
        }
        map.serialize_entry("hook_event_type", &self.hook_event_type)?;
        map.serialize_entry("payload", &self.payload)?;
        if let Some(chat) = &self.chat {
            map.serialize_entry("chat", chat)?;
        }
        // The whole chat is read from `GET /events/{id}/chat`; `chat` is its last messages,
        // and the chat as sent when `chat_truncated` is false.
        if let Some(bytes) = self.chat_bytes {
            map.serialize_entry("chat_bytes", &bytes)?;
            let carried = self.chat.as_ref().map_or(0, |chat| chat.get().len());
            map.serialize_entry("chat_truncated", &(i64::try_from(carried) != Ok(bytes)))?;
        }
        if let Some(status) = &self.hitl_status {
            map.serialize_entry("humanInTheLoopStatus", status)?;
        }
        if let Some(summary) = &self.summary {
            map.serialize_entry("summary", summary)?;
        }
        map.serialize_entry("timestamp", &self.timestamp)?;
        if let Some(model_name) = &self.model_name {
            map.serialize_entry("model_name", model_name)?;
        }
        map.end()
    }
}

/// Gives each domain type the JSON of its wire mirror: a `#[serde(remote = …)]` struct below,
/// which lists the type's fields as the wire names them. A field renamed in the domain fails
/// to compile here instead of changing what clients read.
macro_rules! serialize_as {
    ($($domain:ty => $wire:ident),* $(,)?) => {$(
        impl Serialize for $domain {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                $wire::serialize(self, serializer)
            }
        }
    )*};
}

/// Both ways, for the views the cache keeps in Redis and reads back.
macro_rules! json_as {
    ($($domain:ty => $wire:ident),* $(,)?) => {$(
        serialize_as!($domain => $wire);
        impl<'de> Deserialize<'de> for $domain {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                $wire::deserialize(deserializer)
            }
        }
    )*};
}

json_as!(
    CostView => CostViewJson,
    RangeView => RangeJson,
    TypeBreakdown => TypeBreakdownJson,
    AgentMetrics => AgentMetricsJson,
    TimelinePoint => TimelinePointJson,
    Timeline => TimelineJson,
    DistributionEntry => DistributionEntryJson,
    Distribution => DistributionJson,
    ToolUsageEntry => ToolUsageEntryJson,
    ToolInsights => ToolInsightsJson,
    ToolUsage => ToolUsageJson,
    FilterOptions => FilterOptionsJson,
);

serialize_as!(
    EventPage => EventPageJson,
    TokenCounts => TokenCountsJson,
    AgentStatus => AgentStatusJson,
    AgentRecord => AgentJson,
    AgentDetail => AgentDetailJson,
    SessionDetail => SessionDetailJson,
    TelemetryUsage => TelemetryUsageJson,
    PromptUsage => PromptUsageJson,
    UsageAnswer => UsageAnswerJson,
    Budget => BudgetJson,
    UsageRow => UsageRowJson,
    UsageTimeline => UsageTimelineJson,
    UsagePoint => UsagePointJson,
    PruneReport => PruneReportJson,
    SyncTrigger => SyncTriggerJson,
    SyncReport => SyncReportJson,
    ViewStats => ViewStatsJson,
    CacheStats => CacheStatsJson,
    LiveHealth => LiveHealthJson,
);

// The views (`GET /api/agents/metrics`, `/timeline`, `/distribution`, `/tools`), as the
// origin's dashboard reads them.

#[derive(Serialize, Deserialize)]
#[serde(remote = "RangeView")]
struct RangeJson {
    start: i64,
    end: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "TypeBreakdown")]
struct TypeBreakdownJson {
    #[serde(rename = "type")]
    agent_type: String,
    executions: i64,
    success_rate: f64,
    avg_duration_ms: i64,
    unique_agents: i64,
    total_tokens: i64,
    estimated_cost: f64,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "AgentMetrics")]
struct AgentMetricsJson {
    active_agents: i64,
    executions_today: i64,
    success_rate: f64,
    avg_duration_ms: i64,
    tokens_used_today: i64,
    estimated_cost_today: f64,
    agent_type_breakdown: Vec<TypeBreakdown>,
    range: RangeView,
    /// The cost the cards show: measured where Claude Code sent telemetry, else estimated.
    cost: CostView,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "CostView")]
struct CostViewJson {
    cost_usd: f64,
    #[serde(rename = "cost_source")]
    source: String,
    #[serde(rename = "estimated_cost_usd")]
    estimated_usd: f64,
    // Absent from views cached by an older build: read as 0 until the cache refreshes.
    #[serde(default)]
    measured_share: f64,
    tokens: i64,
    api_requests: i64,
    api_errors: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "TimelinePoint")]
struct TimelinePointJson {
    timestamp: String,
    timestamp_ms: i64,
    executions: i64,
    tokens: i64,
    cost: f64,
    avg_duration_ms: i64,
    // Absent from views cached by an older build: read as 0 until the cache refreshes.
    #[serde(default)]
    success_rate: f64,
    agent_types_count: i64,
    dominant_agent_type: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "Timeline")]
struct TimelineJson {
    timeline: Vec<TimelinePoint>,
    bucket_ms: i64,
    range: RangeView,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "DistributionEntry")]
struct DistributionEntryJson {
    #[serde(rename = "type")]
    agent_type: String,
    count: i64,
    percentage: f64,
    avg_duration_ms: i64,
    success_rate: f64,
    common_tools: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "Distribution")]
struct DistributionJson {
    distribution: Vec<DistributionEntry>,
    range: RangeView,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "ToolUsageEntry")]
struct ToolUsageEntryJson {
    name: String,
    usage_count: i64,
    percentage: f64,
    agent_types_using: Vec<String>,
    #[serde(default)]
    agents_using: Vec<String>,
    avg_per_execution: f64,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "ToolInsights")]
struct ToolInsightsJson {
    most_used_tool: Option<String>,
    least_used_tool: Option<String>,
    total_unique_tools: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "ToolUsage")]
struct ToolUsageJson {
    period: String,
    tools: Vec<ToolUsageEntry>,
    insights: ToolInsights,
    total_calls: i64,
    executions: i64,
    range: RangeView,
}

// Events, agents and sessions (`GET /events/…`, `/api/agents…`, `/api/sessions…`).

#[derive(Serialize, Deserialize)]
#[serde(remote = "FilterOptions")]
struct FilterOptionsJson {
    source_apps: Vec<String>,
    session_ids: Vec<String>,
    hook_event_types: Vec<String>,
}

#[derive(Serialize)]
#[serde(remote = "EventPage")]
struct EventPageJson {
    events: Vec<StoredEvent>,
    next_cursor: Option<String>,
}

#[derive(Serialize)]
#[serde(remote = "TokenCounts")]
struct TokenCountsJson {
    input: i64,
    output: i64,
    cache_creation: i64,
    cache_read: i64,
    total: i64,
}

#[derive(Serialize)]
#[serde(remote = "AgentStatus", rename_all = "snake_case")]
enum AgentStatusJson {
    Running,
    Completed,
    Failed,
    TimedOut,
}

#[derive(Serialize)]
#[serde(remote = "AgentRecord")]
struct AgentJson {
    id: String,
    kind: &'static str,
    #[serde(rename = "type")]
    agent_type: String,
    name: Option<String>,
    description: Option<String>,
    session_id: String,
    source_app: String,
    status: AgentStatus,
    started_at: Option<i64>,
    ended_at: Option<i64>,
    last_seen: i64,
    duration_ms: Option<i64>,
    tokens: TokenCounts,
    estimated_cost: f64,
    model: Option<String>,
    error: Option<String>,
    tool_use_id: Option<String>,
    current_tool: Option<String>,
    /// Its cost, one truth: its share of the session's telemetry where the session has any,
    /// else the estimate.
    #[serde(getter = "agent_cost_usd")]
    cost_usd: f64,
    #[serde(getter = "agent_cost_source")]
    cost_source: &'static str,
    telemetry: Option<TelemetryUsage>,
    /// Which coding agent's session it runs in: `claude-code`, `codex` or `gemini-cli`.
    #[serde(getter = "agent_coding_agent")]
    coding_agent: &'static str,
}

fn agent_coding_agent(agent: &AgentRecord) -> &'static str {
    agent
        .coding_agent
        .as_deref()
        .and_then(CodingAgent::parse)
        .unwrap_or(CodingAgent::ClaudeCode)
        .name()
}

fn agent_cost_usd(agent: &AgentRecord) -> f64 {
    match &agent.telemetry {
        Some(telemetry) => telemetry.cost_usd,
        None => agent.estimated_cost,
    }
}

fn agent_cost_source(agent: &AgentRecord) -> &'static str {
    match agent.telemetry {
        Some(_) if agent.coding_agent.is_some() => "tokens",
        Some(_) => "telemetry",
        None => "estimate",
    }
}

/// A tool call as an agent's detail lists it (`GET /api/agents/{id}`).
#[derive(Serialize)]
struct ToolCallJson<'a> {
    tool_use_id: &'a Option<String>,
    tool_name: &'a str,
    agent_id: &'a str,
    agent_type: &'a str,
    status: &'static str,
    started_at: Option<i64>,
    ended_at: Option<i64>,
    duration_ms: Option<i64>,
    error: &'a Option<String>,
    spawned_agent_id: &'a Option<String>,
}

impl Serialize for ToolCall {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ToolCallJson {
            tool_use_id: &self.tool_use_id,
            tool_name: &self.tool_name,
            agent_id: &self.agent_key,
            agent_type: &self.agent_type,
            status: self.status.as_str(),
            started_at: self.started_at,
            ended_at: self.ended_at,
            duration_ms: self.duration_ms,
            error: &self.error,
            spawned_agent_id: &self.spawned_agent,
        }
        .serialize(serializer)
    }
}

#[derive(Serialize)]
#[serde(remote = "AgentDetail")]
struct AgentDetailJson {
    #[serde(flatten)]
    agent: AgentRecord,
    tool_calls: Vec<ToolCall>,
}

/// A session as `GET /api/sessions` lists it.
#[derive(Serialize)]
struct SessionJson<'a> {
    session_id: &'a str,
    source_app: &'a str,
    status: AgentStatus,
    started_at: i64,
    last_seen: i64,
    ended_at: Option<i64>,
    end_reason: &'a Option<String>,
    cwd: &'a Option<String>,
    model: &'a Option<String>,
    event_count: i64,
    prompt_count: i64,
    tool_call_count: i64,
    subagent_count: i64,
    tokens: &'a TokenCounts,
    estimated_cost: f64,
    /// The session's cost, one truth: Claude Code's telemetry where it measured any, else the
    /// estimate from the transcripts (the main agent's and every subagent's).
    cost_usd: f64,
    /// `telemetry`, `tokens` (telemetry's tokens priced: Codex and Gemini report no cost) or
    /// `estimate`: where `cost_usd` and `total_tokens` come from.
    cost_source: &'static str,
    /// The session's tokens by the same rule as `cost_usd`: measured where telemetry measured
    /// its cost, else every transcript's (`tokens` stays the main agent's transcript, as the
    /// dashboard's agent list reads it).
    total_tokens: i64,
    /// `hooks`, `telemetry` or `both`: which sources have seen the session.
    seen_by: &'static str,
    /// Which coding agent it is: `claude-code`, or the agent its telemetry came from
    /// (`codex`, `gemini-cli`).
    coding_agent: &'a str,
}

impl Serialize for SessionRecord {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let row = &self.row;
        let (cost, source) = self.cost();
        SessionJson {
            session_id: &self.session_id,
            source_app: &row.source_app,
            status: self.status,
            started_at: row.started_at,
            last_seen: row.last_seen,
            ended_at: row.ended_at,
            end_reason: &row.end_reason,
            cwd: &row.cwd,
            model: &row.model,
            event_count: row.events,
            prompt_count: row.prompts,
            tool_call_count: row.tool_calls,
            subagent_count: self.subagent_count,
            tokens: &self.tokens,
            estimated_cost: self.estimated_cost,
            cost_usd: cost,
            cost_source: match (&self.coding_agent, source) {
                (Some(_), CostSource::TelemetryEvents | CostSource::TelemetryMetrics) => "tokens",
                _ => cost_source_name(source),
            },
            total_tokens: self.total_tokens(),
            seen_by: self.seen_by.as_str(),
            coding_agent: self
                .coding_agent
                .as_deref()
                .unwrap_or(crate::domain::sessions::TELEMETRY_SOURCE_APP),
        }
        .serialize(serializer)
    }
}

#[derive(Serialize)]
#[serde(remote = "SessionDetail")]
struct SessionDetailJson {
    #[serde(flatten)]
    session: SessionRecord,
    agents: Vec<AgentRecord>,
    // `cost_usd` and `cost_source` are the session's own (flattened above).
    telemetry: Option<TelemetryUsage>,
    /// Claude Code's API use per prompt (`prompt.id`, the hooks' `prompt_id`).
    prompts: Vec<PromptUsage>,
    /// Claude Code's other counters: lines of code, commits, pull requests, active time.
    counters: std::collections::BTreeMap<String, f64>,
}

#[derive(Serialize)]
#[serde(remote = "PromptUsage")]
struct PromptUsageJson {
    prompt_id: String,
    first_at_ms: i64,
    #[serde(flatten)]
    usage: TelemetryUsage,
}

/// How the wire names where a cost comes from.
fn cost_source_name(source: CostSource) -> &'static str {
    match source {
        CostSource::Estimate => "estimate",
        CostSource::TelemetryEvents | CostSource::TelemetryMetrics => "telemetry",
    }
}

#[derive(Serialize)]
#[serde(remote = "TelemetryUsage")]
struct TelemetryUsageJson {
    /// `events` (Claude Code's `api_request` events) or `metrics` (its counters).
    #[serde(rename = "from", serialize_with = "telemetry_from")]
    source: CostSource,
    cost_usd: f64,
    tokens: TokenCounts,
    requests: i64,
    errors: i64,
}

fn telemetry_from<S: serde::Serializer>(
    source: &CostSource,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(match source {
        CostSource::TelemetryEvents => "events",
        CostSource::TelemetryMetrics => "metrics",
        CostSource::Estimate => "estimate",
    })
}

// `/api/usage`.

/// `/api/usage`'s answer.
pub(crate) struct UsageAnswer {
    pub group_by: &'static str,
    pub range: RangeView,
    pub rows: Vec<UsageRow>,
    /// Where the next page starts (`cursor=`), when this one was full.
    pub next_cursor: Option<String>,
    /// Each spend rule's budget (`--alerts`), per scope key, now.
    pub budgets: Vec<Budget>,
}

#[derive(Serialize)]
#[serde(remote = "UsageAnswer")]
struct UsageAnswerJson {
    group_by: &'static str,
    range: RangeView,
    rows: Vec<UsageRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
    budgets: Vec<Budget>,
}

#[derive(Serialize)]
#[serde(remote = "Budget")]
struct BudgetJson {
    rule: String,
    per: &'static str,
    #[serde(serialize_with = "known_key")]
    key: String,
    #[serde(rename = "budget_usd")]
    budget: f64,
    window: Option<String>,
    #[serde(rename = "used_usd")]
    used: f64,
    #[serde(rename = "left_usd")]
    left: f64,
    #[serde(rename = "projected_usd")]
    projected: f64,
}

#[derive(Serialize)]
#[serde(remote = "UsageRow")]
struct UsageRowJson {
    /// `unknown` where the records did not say.
    #[serde(serialize_with = "known_key")]
    key: String,
    #[serde(getter = "row_cost_usd")]
    cost_usd: f64,
    /// `telemetry` when all the cost was measured, `tokens` when it is all Codex's or Gemini's
    /// measured tokens priced, `estimate` when none of it was, `mixed` when part was, with
    /// `measured_share` the measured part (0 to 1).
    #[serde(getter = "row_cost_source")]
    cost_source: &'static str,
    #[serde(getter = "row_measured_share")]
    measured_share: f64,
    #[serde(getter = "row_estimated_cost_usd")]
    estimated_cost_usd: f64,
    #[serde(getter = "row_input_tokens")]
    input_tokens: i64,
    #[serde(getter = "row_output_tokens")]
    output_tokens: i64,
    #[serde(getter = "row_cache_read_tokens")]
    cache_read_tokens: i64,
    #[serde(getter = "row_cache_creation_tokens")]
    cache_creation_tokens: i64,
    #[serde(getter = "row_total_tokens")]
    total_tokens: i64,
    requests: i64,
    errors: i64,
    latency_p50_ms: Option<i64>,
    latency_p95_ms: Option<i64>,
}

fn known_key<S: serde::Serializer>(key: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(if key.is_empty() { "unknown" } else { key })
}

fn row_cost_usd(row: &UsageRow) -> f64 {
    row.cost_nanos as f64 / 1e9
}
fn row_cost_source(row: &UsageRow) -> &'static str {
    row.source().as_str()
}
fn row_measured_share(row: &UsageRow) -> f64 {
    row.source().measured()
}
fn row_estimated_cost_usd(row: &UsageRow) -> f64 {
    row.estimated_cost_nanos as f64 / 1e9
}
fn row_input_tokens(row: &UsageRow) -> i64 {
    row.tokens.input
}
fn row_output_tokens(row: &UsageRow) -> i64 {
    row.tokens.output
}
fn row_cache_read_tokens(row: &UsageRow) -> i64 {
    row.tokens.cache_read
}
fn row_cache_creation_tokens(row: &UsageRow) -> i64 {
    row.tokens.cache_creation
}
fn row_total_tokens(row: &UsageRow) -> i64 {
    row.tokens.total
}

#[derive(Serialize)]
#[serde(remote = "UsageTimeline")]
struct UsageTimelineJson {
    #[serde(getter = "usage_timeline_range")]
    range: RangeView,
    bucket_ms: i64,
    #[serde(rename = "timeline")]
    points: Vec<UsagePoint>,
}

fn usage_timeline_range(timeline: &UsageTimeline) -> RangeView {
    timeline.range.into()
}

#[derive(Serialize)]
#[serde(remote = "UsagePoint")]
struct UsagePointJson {
    #[serde(rename = "timestamp_ms")]
    bucket_ms: i64,
    #[serde(getter = "point_cost_usd")]
    cost_usd: f64,
    tokens: TokenCounts,
    requests: i64,
    errors: i64,
    latency_p50_ms: Option<i64>,
    latency_p95_ms: Option<i64>,
}

fn point_cost_usd(point: &UsagePoint) -> f64 {
    point.cost_nanos as f64 / 1e9
}

// `/api/sessions/{id}/activity`.

impl Serialize for Activity {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        match self {
            Activity::Api { usage, agent_id } => {
                let detail = usage.detail.clone().unwrap_or_default();
                let [input, output, cache_read, cache_creation] = usage.tokens;
                let kind = if usage.requests > 0 {
                    "api_request"
                } else {
                    "api_error"
                };
                map.serialize_entry("kind", kind)?;
                map.serialize_entry("at_ms", &usage.at_ms)?;
                map.serialize_entry("agent_id", agent_id)?;
                map.serialize_entry("agent_type", &usage.agent_type)?;
                map.serialize_entry("prompt_id", &usage.prompt_id)?;
                map.serialize_entry("model", &detail.model)?;
                map.serialize_entry("cost_usd", &(usage.cost_nanos as f64 / 1e9))?;
                map.serialize_entry(
                    "tokens",
                    &TokenCounts {
                        input,
                        output,
                        cache_read,
                        cache_creation,
                        total: input + output + cache_read + cache_creation,
                    },
                )?;
                map.serialize_entry("duration_ms", &detail.duration_ms)?;
                if usage.errors > 0 {
                    map.serialize_entry("status_code", &detail.status_code)?;
                    map.serialize_entry("attempt", &detail.attempt)?;
                    map.serialize_entry("error", &detail.error)?;
                }
            }
            Activity::Tool(step) => {
                map.serialize_entry("kind", "tool")?;
                map.serialize_entry("at_ms", &step.at_ms)?;
                map.serialize_entry("ended_at", &step.ended_at)?;
                map.serialize_entry("agent_id", &step.agent_id)?;
                map.serialize_entry("tool_name", &step.tool_name)?;
                map.serialize_entry("tool_use_id", &step.tool_use_id)?;
                map.serialize_entry("status", &step.status)?;
                map.serialize_entry("duration_ms", &step.duration_ms)?;
                map.serialize_entry("decision", &step.decision)?;
                map.serialize_entry("decision_source", &step.decision_source)?;
            }
        }
        map.end()
    }
}

// `/api/sessions/{id}/trace`.

impl Serialize for Span {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("span_id", &self.span_id)?;
        map.serialize_entry("parent_id", &self.parent_id)?;
        map.serialize_entry("kind", self.kind.as_str())?;
        map.serialize_entry("name", &self.name)?;
        map.serialize_entry("start_ms", &self.start_ms)?;
        map.serialize_entry("end_ms", &self.end_ms)?;
        map.serialize_entry("status", self.status.as_str())?;
        map.serialize_entry("error", &self.error)?;
        map.serialize_entry("agent_id", &self.agent_id)?;
        map.serialize_entry("tool_use_id", &self.tool_use_id)?;
        let tokens = self.usage.map(|u| {
            let [input, output, cache_read, cache_creation] = u.tokens;
            TokenCounts {
                input,
                output,
                cache_read,
                cache_creation,
                total: u.total_tokens(),
            }
        });
        map.serialize_entry("tokens", &tokens)?;
        map.serialize_entry("cost_usd", &self.usage.map(|u| u.cost_nanos as f64 / 1e9))?;
        map.serialize_entry(
            "cost_source",
            &self
                .usage
                .map(|u| if u.estimated { "estimate" } else { "telemetry" }),
        )?;
        let attributes: serde_json::Map<String, serde_json::Value> =
            self.attributes.iter().cloned().collect();
        map.serialize_entry("attributes", &attributes)?;
        map.end()
    }
}

// Health, `/api/cache/…` and maintenance answers.

#[derive(Serialize)]
#[serde(remote = "PruneReport")]
struct PruneReportJson {
    events: u64,
    tool_calls: u64,
    agents: u64,
    sessions: u64,
    rollups: u64,
    session_usage: u64,
    telemetry: u64,
    pages_released: u64,
}

#[derive(Serialize)]
#[serde(remote = "SyncTrigger", rename_all = "snake_case")]
enum SyncTriggerJson {
    Routine,
    Recovery,
    Forced,
}

#[derive(Serialize)]
#[serde(remote = "SyncReport")]
struct SyncReportJson {
    trigger: SyncTrigger,
    started_at_ms: i64,
    duration_ms: f64,
    keys_written: u64,
    error: Option<String>,
}

#[derive(Serialize)]
#[serde(remote = "ViewStats")]
struct ViewStatsJson {
    view: &'static str,
    /// Answered by the in-process tier (SQLite), before Redis was asked.
    local_hits: u64,
    hits: u64,
    misses: u64,
    bypassed: u64,
    ttl_s: u64,
}

#[derive(Serialize)]
#[serde(remote = "CacheStats")]
struct CacheStatsJson {
    enabled: bool,
    epoch: i64,
    dirty: bool,
    hits: u64,
    misses: u64,
    views: Vec<ViewStats>,
    invalidations: u64,
    write_failures: u64,
}

#[derive(Serialize)]
#[serde(remote = "LiveHealth")]
struct LiveHealthJson {
    sqlite: &'static str,
    database: &'static str,
    redis: &'static str,
    breaker: Option<&'static str>,
}

// The team view (`GET /api/team`).

/// One person's sums in a bucket or a range, as the wire names them.
#[derive(Serialize)]
struct TeamSumsJson {
    cost_usd: f64,
    input_tokens: i64,
    output_tokens: i64,
    cache_read_tokens: i64,
    cache_creation_tokens: i64,
    total_tokens: i64,
    sessions: i64,
    prompts: i64,
    api_requests: i64,
    api_errors: i64,
    active_time_user_s: f64,
    active_time_cli_s: f64,
    lines_added: i64,
    lines_removed: i64,
    commits: i64,
    pull_requests: i64,
    edits_accepted: i64,
    edits_rejected: i64,
}

impl From<&TeamSums> for TeamSumsJson {
    fn from(s: &TeamSums) -> Self {
        Self {
            cost_usd: s.cost_usd(),
            input_tokens: s.input_tokens,
            output_tokens: s.output_tokens,
            cache_read_tokens: s.cache_read_tokens,
            cache_creation_tokens: s.cache_creation_tokens,
            total_tokens: s.total_tokens,
            sessions: s.sessions,
            prompts: s.prompts,
            api_requests: s.api_requests,
            api_errors: s.api_errors,
            active_time_user_s: s.active_time_user_s,
            active_time_cli_s: s.active_time_cli_s,
            lines_added: s.lines_added,
            lines_removed: s.lines_removed,
            commits: s.commits,
            pull_requests: s.pull_requests,
            edits_accepted: s.edits_accepted,
            edits_rejected: s.edits_rejected,
        }
    }
}

#[derive(Serialize)]
struct TeamBucketJson {
    start: i64,
    #[serde(flatten)]
    sums: TeamSumsJson,
}

#[derive(Serialize)]
struct PersonUseJson<'a> {
    person: &'a str,
    totals: TeamSumsJson,
    buckets: Vec<TeamBucketJson>,
}

#[derive(Serialize)]
struct TeamViewJson<'a> {
    bucket: &'static str,
    bucket_ms: i64,
    range: RangeView,
    /// Everything here is measured by Claude Code's telemetry: the hooks name no one.
    cost_source: &'static str,
    people: Vec<PersonUseJson<'a>>,
    truncated: bool,
}

impl Serialize for TeamView {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        TeamViewJson {
            bucket: self.bucket.as_str(),
            bucket_ms: self.bucket.millis(),
            range: self.range.into(),
            cost_source: "telemetry",
            people: self
                .people
                .iter()
                .map(|p| PersonUseJson {
                    person: &p.person,
                    totals: (&p.totals).into(),
                    buckets: p
                        .buckets
                        .iter()
                        .map(|(start, sums)| TeamBucketJson {
                            start: *start,
                            sums: sums.into(),
                        })
                        .collect(),
                })
                .collect(),
            truncated: self.truncated,
        }
        .serialize(serializer)
    }
}
