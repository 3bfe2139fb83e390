//! The views people watch, computed from rollup totals.
//!
//! Stores return plain sums per agent type, per bucket or per tool; this module turns them into
//! the views the origin's dashboard shows (rates, averages, percentages, rankings); their
//! JSON is `api::model`'s. Keeping the arithmetic
//! here means every store gives the same numbers, and tests can check the maths without a
//! database.

use std::collections::{BTreeMap, BTreeSet};

use super::pricing::nanos_to_usd;
use super::time::{TimeRange, iso8601};

/// Sums over the executions of one agent type (in a range or a bucket).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionTotals {
    pub agent_type: String,
    pub executions: i64,
    pub successes: i64,
    pub failures: i64,
    pub duration_sum_ms: i64,
    pub duration_count: i64,
    pub tokens: i64,
    pub cost_nanos: i64,
}

impl ExecutionTotals {
    /// Adds `other`'s sums (its `agent_type` is not looked at).
    pub(crate) fn add(&mut self, other: &ExecutionTotals) {
        // Saturating: the store's sums saturate too, so a view never wraps or fails.
        self.executions = self.executions.saturating_add(other.executions);
        self.successes = self.successes.saturating_add(other.successes);
        self.failures = self.failures.saturating_add(other.failures);
        self.duration_sum_ms = self.duration_sum_ms.saturating_add(other.duration_sum_ms);
        self.duration_count = self.duration_count.saturating_add(other.duration_count);
        self.tokens = self.tokens.saturating_add(other.tokens);
        self.cost_nanos = self.cost_nanos.saturating_add(other.cost_nanos);
    }

    fn success_rate(&self) -> f64 {
        ratio(self.successes, self.executions)
    }

    /// Failed executions per execution, 0..1 (0 with none): what the failure-rate alert
    /// judges, from the same sums as the success rate the views show.
    pub(crate) fn failure_rate(&self) -> f64 {
        ratio(self.failures, self.executions)
    }

    fn avg_duration_ms(&self) -> i64 {
        if self.duration_count == 0 {
            0
        } else {
            (self.duration_sum_ms as f64 / self.duration_count as f64).round() as i64
        }
    }
}

/// Tool calls of one tool by one agent type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolTotals {
    pub tool_name: String,
    pub agent_type: String,
    pub calls: i64,
}

fn ratio(part: i64, whole: i64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RangeView {
    pub start: i64,
    pub end: i64,
}

impl From<TimeRange> for RangeView {
    fn from(range: TimeRange) -> Self {
        Self {
            start: range.start_ms,
            end: range.end_ms,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TypeBreakdown {
    pub agent_type: String,
    pub executions: i64,
    pub success_rate: f64,
    pub avg_duration_ms: i64,
    /// Distinct agents; every subagent run has its own id, so this equals `executions`.
    pub unique_agents: i64,
    pub total_tokens: i64,
    pub estimated_cost: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AgentMetrics {
    pub active_agents: i64,
    pub executions_today: i64,
    pub success_rate: f64,
    pub avg_duration_ms: i64,
    pub tokens_used_today: i64,
    pub estimated_cost_today: f64,
    pub agent_type_breakdown: Vec<TypeBreakdown>,
    pub range: RangeView,
    /// The range's cost with one truth per session (`store::usage`); `estimated_cost_today`,
    /// `tokens_used_today` and the per-type breakdown stay the transcripts', as the origin's
    /// clients read them (and kept in the rollups, so pruning raw rows does not change them);
    /// `cost.tokens` is the one truth.
    pub cost: CostView,
}

/// A cost and where it came from.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct CostView {
    pub cost_usd: f64,
    /// `telemetry` when all of it was measured by Claude Code, `estimate` when none of it
    /// was, `mixed` when part was (`super::usage::MeasuredShare`).
    pub source: String,
    /// The part that is the transcript estimate.
    pub estimated_usd: f64,
    /// The measured part's share of the cost, 0 to 1.
    pub measured_share: f64,
    pub tokens: i64,
    pub api_requests: i64,
    pub api_errors: i64,
}

impl CostView {
    pub(crate) fn of(usage: Option<&super::usage::UsageRow>) -> Self {
        let Some(row) = usage else {
            return Self {
                source: "estimate".into(),
                ..Self::default()
            };
        };
        Self {
            cost_usd: nanos_to_usd(row.cost_nanos),
            source: row.source().as_str().into(),
            measured_share: row.source().measured(),
            estimated_usd: nanos_to_usd(row.estimated_cost_nanos),
            tokens: row.tokens.total,
            api_requests: row.requests,
            api_errors: row.errors,
        }
    }
}

/// Every agent type's sums together (saturating, as every view's).
pub(crate) fn sum_all(per_type: &[ExecutionTotals]) -> ExecutionTotals {
    let mut all = ExecutionTotals::default();
    for totals in per_type {
        all.add(totals);
    }
    all
}

/// Orders types by executions (most first), then by name, so answers are stable.
fn sorted_by_executions(per_type: &[ExecutionTotals]) -> Vec<&ExecutionTotals> {
    let mut sorted: Vec<_> = per_type.iter().filter(|t| t.executions > 0).collect();
    sorted.sort_by(|a, b| {
        b.executions
            .cmp(&a.executions)
            .then_with(|| a.agent_type.cmp(&b.agent_type))
    });
    sorted
}

pub(crate) fn agent_metrics(
    active_agents: i64,
    per_type: &[ExecutionTotals],
    range: TimeRange,
) -> AgentMetrics {
    let all = sum_all(per_type);
    AgentMetrics {
        active_agents,
        executions_today: all.executions,
        success_rate: all.success_rate(),
        avg_duration_ms: all.avg_duration_ms(),
        tokens_used_today: all.tokens,
        estimated_cost_today: nanos_to_usd(all.cost_nanos),
        agent_type_breakdown: sorted_by_executions(per_type)
            .into_iter()
            .map(|t| TypeBreakdown {
                agent_type: t.agent_type.clone(),
                executions: t.executions,
                success_rate: t.success_rate(),
                avg_duration_ms: t.avg_duration_ms(),
                unique_agents: t.executions,
                total_tokens: t.tokens,
                estimated_cost: nanos_to_usd(t.cost_nanos),
            })
            .collect(),
        range: range.into(),
        cost: CostView::of(None),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TimelinePoint {
    pub timestamp: String,
    pub timestamp_ms: i64,
    pub executions: i64,
    pub tokens: i64,
    pub cost: f64,
    pub avg_duration_ms: i64,
    /// Successful executions over finished ones in the bucket, 0..1 (0 when none finished).
    pub success_rate: f64,
    pub agent_types_count: i64,
    pub dominant_agent_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Timeline {
    pub timeline: Vec<TimelinePoint>,
    pub bucket_ms: i64,
    pub range: RangeView,
}

/// A zero-filled timeline: one point per bucket in `range` (whose ends are bucket-aligned).
pub(crate) fn timeline(
    range: TimeRange,
    bucket_ms: i64,
    rows: &[(i64, ExecutionTotals)],
) -> Timeline {
    let mut by_bucket: BTreeMap<i64, Vec<ExecutionTotals>> = BTreeMap::new();
    for (bucket, totals) in rows {
        by_bucket.entry(*bucket).or_default().push(totals.clone());
    }
    let mut points = Vec::new();
    let mut bucket = range.start_ms;
    while bucket < range.end_ms {
        let per_type = by_bucket.remove(&bucket).unwrap_or_default();
        let all = sum_all(&per_type);
        let ranked = sorted_by_executions(&per_type);
        points.push(TimelinePoint {
            timestamp: iso8601(bucket),
            timestamp_ms: bucket,
            executions: all.executions,
            tokens: all.tokens,
            cost: nanos_to_usd(all.cost_nanos),
            avg_duration_ms: all.avg_duration_ms(),
            success_rate: all.success_rate(),
            agent_types_count: ranked.len() as i64,
            dominant_agent_type: ranked.first().map(|t| t.agent_type.clone()),
        });
        bucket += bucket_ms;
    }
    Timeline {
        timeline: points,
        bucket_ms,
        range: range.into(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DistributionEntry {
    pub agent_type: String,
    pub count: i64,
    pub percentage: f64,
    pub avg_duration_ms: i64,
    pub success_rate: f64,
    pub common_tools: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Distribution {
    pub distribution: Vec<DistributionEntry>,
    pub range: RangeView,
}

/// How many tools `common_tools` lists per type.
const COMMON_TOOLS: usize = 3;

pub(crate) fn distribution(
    per_type: &[ExecutionTotals],
    tools: &[ToolTotals],
    range: TimeRange,
) -> Distribution {
    let all = sum_all(per_type);
    let entries = sorted_by_executions(per_type)
        .into_iter()
        .map(|t| {
            let mut used: Vec<&ToolTotals> = tools
                .iter()
                .filter(|tool| tool.agent_type == t.agent_type)
                .collect();
            used.sort_by(|a, b| {
                b.calls
                    .cmp(&a.calls)
                    .then_with(|| a.tool_name.cmp(&b.tool_name))
            });
            DistributionEntry {
                agent_type: t.agent_type.clone(),
                count: t.executions,
                percentage: ratio(t.executions, all.executions),
                avg_duration_ms: t.avg_duration_ms(),
                success_rate: t.success_rate(),
                common_tools: used
                    .into_iter()
                    .take(COMMON_TOOLS)
                    .map(|tool| tool.tool_name.clone())
                    .collect(),
            }
        })
        .collect();
    Distribution {
        distribution: entries,
        range: range.into(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolUsageEntry {
    pub name: String,
    pub usage_count: i64,
    /// Share of all tool calls in the range, 0..1.
    pub percentage: f64,
    pub agent_types_using: Vec<String>,
    /// The first five of `agent_types_using`: the TTS fork's dashboard reads this list (its
    /// length) and fails on a tool item without it.
    pub agents_using: Vec<String>,
    pub avg_per_execution: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolInsights {
    pub most_used_tool: Option<String>,
    pub least_used_tool: Option<String>,
    pub total_unique_tools: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolUsage {
    pub period: String,
    pub tools: Vec<ToolUsageEntry>,
    pub insights: ToolInsights,
    pub total_calls: i64,
    pub executions: i64,
    pub range: RangeView,
}

pub(crate) fn tool_usage(tools: &[ToolTotals], executions: i64, range: TimeRange) -> ToolUsage {
    let mut by_tool: BTreeMap<&str, (i64, BTreeSet<&str>)> = BTreeMap::new();
    for t in tools.iter().filter(|t| t.calls > 0) {
        let entry = by_tool.entry(&t.tool_name).or_default();
        entry.0 += t.calls;
        entry.1.insert(&t.agent_type);
    }
    let total_calls: i64 = by_tool.values().map(|(calls, _)| calls).sum();
    let mut entries: Vec<ToolUsageEntry> = by_tool
        .into_iter()
        .map(|(name, (calls, types))| ToolUsageEntry {
            name: name.to_owned(),
            usage_count: calls,
            percentage: ratio(calls, total_calls),
            agents_using: types.iter().take(5).map(|t| (*t).to_owned()).collect(),
            agent_types_using: types.into_iter().map(str::to_owned).collect(),
            avg_per_execution: ratio(calls, executions),
        })
        .collect();
    entries.sort_by(|a, b| {
        b.usage_count
            .cmp(&a.usage_count)
            .then_with(|| a.name.cmp(&b.name))
    });
    ToolUsage {
        period: format!("{}/{}", iso8601(range.start_ms), iso8601(range.end_ms)),
        insights: ToolInsights {
            most_used_tool: entries.first().map(|e| e.name.clone()),
            least_used_tool: entries.last().map(|e| e.name.clone()),
            total_unique_tools: entries.len() as i64,
        },
        tools: entries,
        total_calls,
        executions,
        range: range.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(
        agent_type: &str,
        executions: i64,
        successes: i64,
        durations: &[i64],
    ) -> ExecutionTotals {
        ExecutionTotals {
            agent_type: agent_type.to_owned(),
            executions,
            successes,
            failures: executions - successes,
            duration_sum_ms: durations.iter().sum(),
            duration_count: durations.len() as i64,
            tokens: 0,
            cost_nanos: 0,
        }
    }

    #[test]
    fn averages_count_only_known_durations() {
        let range = TimeRange::new(0, 60_000).unwrap();
        let m = agent_metrics(0, &[totals("a", 3, 2, &[100, 300])], range);
        assert_eq!(m.avg_duration_ms, 200);
        assert!((m.success_rate - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn the_failure_rate_is_read_from_the_sums_the_success_rate_is() {
        let mut failed = totals("a", 4, 1, &[]);
        failed.failures = 2;
        let mut other = totals("b", 6, 6, &[]);
        other.failures = 0;
        let all = sum_all(&[failed, other]);
        assert_eq!((all.executions, all.failures), (10, 2));
        assert!((all.failure_rate() - 0.2).abs() < 1e-12);
        // One execution still running: neither a success nor a failure.
        assert!((all.success_rate() - 0.7).abs() < 1e-12);
        assert_eq!(ExecutionTotals::default().failure_rate(), 0.0);
        let huge = ExecutionTotals {
            executions: i64::MAX,
            failures: i64::MAX,
            ..ExecutionTotals::default()
        };
        assert_eq!(
            sum_all(&[huge.clone(), huge]).executions,
            i64::MAX,
            "saturates"
        );
    }

    #[test]
    fn timeline_is_zero_filled_and_names_the_dominant_type() {
        let range = TimeRange::new(0, 180_000).unwrap();
        let rows = vec![
            (60_000, totals("b", 1, 1, &[])),
            (60_000, totals("a", 2, 2, &[])),
        ];
        let t = timeline(range, 60_000, &rows);
        assert_eq!(t.timeline.len(), 3);
        assert_eq!(t.timeline[0].executions, 0);
        assert_eq!(t.timeline[0].dominant_agent_type, None);
        assert_eq!(t.timeline[1].executions, 3);
        assert_eq!(t.timeline[1].agent_types_count, 2);
        assert_eq!(t.timeline[1].dominant_agent_type.as_deref(), Some("a"));
    }

    #[test]
    fn tool_usage_merges_agent_types() {
        let range = TimeRange::new(0, 60_000).unwrap();
        let tools = vec![
            ToolTotals {
                tool_name: "Read".into(),
                agent_type: "main".into(),
                calls: 2,
            },
            ToolTotals {
                tool_name: "Read".into(),
                agent_type: "Explore".into(),
                calls: 1,
            },
            ToolTotals {
                tool_name: "Bash".into(),
                agent_type: "main".into(),
                calls: 1,
            },
        ];
        let usage = tool_usage(&tools, 2, range);
        assert_eq!(usage.tools[0].name, "Read");
        assert_eq!(usage.tools[0].usage_count, 3);
        assert_eq!(usage.tools[0].agent_types_using, vec!["Explore", "main"]);
        assert_eq!(usage.tools[0].avg_per_execution, 1.5);
        assert_eq!(usage.insights.least_used_tool.as_deref(), Some("Bash"));
    }
}
