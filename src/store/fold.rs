//! Writes that only add up, folded in memory for one commit group.
//!
//! Rollup increments, session touches and the set of event types do not need a statement per
//! event: a group of 500 PreToolUse events updates the event rollup once, not 500 times. Both
//! stores fold them here while a group's transaction is open and write each key once before
//! committing. Nothing in the lifecycle rules reads those rows back while a group is open, so
//! folding them changes no result.
//!
//! [`PendingWrites::drain`] hands the rows out sorted by key. SQLite does not care; PostgreSQL
//! does: two instances upserting the same rollup rows in different orders would deadlock, and
//! in one order they only queue.

use std::collections::{BTreeMap, BTreeSet};

use crate::domain::lifecycle::{Execution, SessionTouch};
use crate::domain::time::{HOUR_MS, floor_to};
use crate::domain::views::ExecutionTotals;

/// A session's touches within one group, folded.
#[derive(Debug, Default)]
pub(crate) struct SessionFold {
    pub source_app: String,
    pub started_at: i64,
    pub last_seen: i64,
    pub cwd: Option<String>,
    pub model: Option<String>,
    /// The coding agent, where it is not Claude Code.
    pub coding_agent: Option<&'static str>,
    pub events: i64,
    pub prompts: i64,
    pub tool_calls: i64,
    /// The latest SessionEnd in the group: when, and why.
    pub ended: Option<(i64, Option<String>)>,
    /// The latest SessionStart in the group: it reopens a session that ended before it.
    pub reopened_at: Option<i64>,
}

impl SessionFold {
    /// `ended_at` and `end_reason` as columns.
    pub(crate) fn end(&self) -> (Option<i64>, Option<&str>) {
        match &self.ended {
            Some((at, reason)) => (Some(*at), reason.as_deref()),
            None => (None, None),
        }
    }
}

/// `(bucket, agent_type)`.
pub(crate) type ExecutionKey = (i64, String);
/// `(bucket, tool_name, agent_type)`.
pub(crate) type ToolKey = (i64, String, String);
/// `(bucket, source_app, hook_event_type)`.
pub(crate) type EventCountKey = (i64, String, String);

#[derive(Debug, Default)]
pub(crate) struct PendingWrites {
    sessions: BTreeMap<String, SessionFold>,
    executions: BTreeMap<ExecutionKey, ExecutionTotals>,
    tool_uses: BTreeMap<ToolKey, i64>,
    event_counts: BTreeMap<EventCountKey, i64>,
    event_types: BTreeSet<String>,
    source_apps: BTreeMap<String, i64>,
}

/// Everything one group folded, each table's rows in key order. Each rollup is kept per minute
/// and per hour; the hour rows are the minute rows summed.
#[derive(Debug, Default)]
pub(crate) struct FoldedWrites {
    pub sessions: BTreeMap<String, SessionFold>,
    pub executions: BTreeMap<ExecutionKey, ExecutionTotals>,
    pub execution_hours: BTreeMap<ExecutionKey, ExecutionTotals>,
    pub tool_uses: BTreeMap<ToolKey, i64>,
    pub tool_hours: BTreeMap<ToolKey, i64>,
    pub event_counts: BTreeMap<EventCountKey, i64>,
    pub event_types: BTreeSet<String>,
    /// Each app the group saw, with the newest minute it was seen in.
    pub source_apps: BTreeMap<String, i64>,
}

impl PendingWrites {
    pub(crate) fn touch_session(&mut self, t: &SessionTouch<'_>) {
        let fold = self
            .sessions
            .entry(t.session_id.to_owned())
            .or_insert_with(|| SessionFold {
                source_app: t.source_app.to_owned(),
                started_at: t.at,
                last_seen: t.at,
                ..SessionFold::default()
            });
        fold.started_at = fold.started_at.min(t.at);
        fold.last_seen = fold.last_seen.max(t.at);
        if fold.cwd.is_none() {
            fold.cwd = t.cwd.map(str::to_owned);
        }
        if let Some(model) = t.model {
            fold.model = Some(model.to_owned());
        }
        fold.coding_agent = fold.coding_agent.or(t.coding_agent);
        fold.events += 1;
        fold.prompts += t.prompts;
        fold.tool_calls += t.tool_calls;
        if let Some(reason) = t.ended
            && fold.ended.as_ref().is_none_or(|(at, _)| *at <= t.at)
        {
            fold.ended = Some((t.at, reason.map(str::to_owned)));
        }
        if t.started {
            fold.reopened_at = Some(fold.reopened_at.map_or(t.at, |r| r.max(t.at)));
        }
    }

    pub(crate) fn add_execution(&mut self, e: &Execution, sign: i64) {
        self.executions
            .entry((e.bucket_ms, e.agent_type.clone()))
            .or_default()
            .add(&e.totals(sign));
    }

    pub(crate) fn add_tool_use(&mut self, bucket_ms: i64, tool_name: &str, agent_type: &str) {
        *self
            .tool_uses
            .entry((bucket_ms, tool_name.to_owned(), agent_type.to_owned()))
            .or_default() += 1;
    }

    pub(crate) fn add_event_count(
        &mut self,
        bucket_ms: i64,
        source_app: &str,
        hook_event_type: &str,
    ) {
        *self
            .event_counts
            .entry((bucket_ms, source_app.to_owned(), hook_event_type.to_owned()))
            .or_default() += 1;
        if !self.event_types.contains(hook_event_type) {
            self.event_types.insert(hook_event_type.to_owned());
        }
        match self.source_apps.get_mut(source_app) {
            Some(seen) => *seen = (*seen).max(bucket_ms),
            None => drop(self.source_apps.insert(source_app.to_owned(), bucket_ms)),
        }
    }

    /// Everything folded so far, with the hour rollups derived; leaves this empty.
    pub(crate) fn drain(&mut self) -> FoldedWrites {
        let pending = std::mem::take(self);
        let mut execution_hours: BTreeMap<ExecutionKey, ExecutionTotals> = BTreeMap::new();
        for ((bucket, agent_type), sums) in &pending.executions {
            execution_hours
                .entry((floor_to(*bucket, HOUR_MS), agent_type.clone()))
                .or_default()
                .add(sums);
        }
        let mut tool_hours: BTreeMap<ToolKey, i64> = BTreeMap::new();
        for ((bucket, tool_name, agent_type), calls) in &pending.tool_uses {
            *tool_hours
                .entry((
                    floor_to(*bucket, HOUR_MS),
                    tool_name.clone(),
                    agent_type.clone(),
                ))
                .or_default() += calls;
        }
        FoldedWrites {
            sessions: pending.sessions,
            executions: pending.executions,
            execution_hours,
            tool_uses: pending.tool_uses,
            tool_hours,
            event_counts: pending.event_counts,
            event_types: pending.event_types,
            source_apps: pending.source_apps,
        }
    }

    /// Forgets folded writes (after a rollback).
    pub(crate) fn discard(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(session_id: &str, at: i64) -> SessionTouch<'_> {
        SessionTouch {
            session_id,
            source_app: "app",
            at,
            cwd: None,
            model: None,
            prompts: 0,
            tool_calls: 0,
            started: false,
            ended: None,
            coding_agent: None,
        }
    }

    #[test]
    fn a_group_folds_each_key_once_and_hands_rows_out_in_key_order() {
        let mut pending = PendingWrites::default();
        for (session, at) in [("s2", 5), ("s1", 7), ("s2", 3)] {
            pending.touch_session(&touch(session, at));
        }
        pending.add_tool_use(2 * HOUR_MS + 60_000, "Read", "main");
        pending.add_tool_use(2 * HOUR_MS, "Read", "main");
        pending.add_tool_use(0, "Bash", "main");
        let folded = pending.drain();
        let sessions: Vec<_> = folded
            .sessions
            .iter()
            .map(|(id, f)| (id.as_str(), f.started_at, f.last_seen, f.events))
            .collect();
        assert_eq!(sessions, [("s1", 7, 7, 1), ("s2", 3, 5, 2)]);
        let hours: Vec<_> = folded.tool_hours.into_iter().collect();
        assert_eq!(
            hours,
            [
                ((0, "Bash".to_owned(), "main".to_owned()), 1),
                ((2 * HOUR_MS, "Read".to_owned(), "main".to_owned()), 2)
            ]
        );
        assert!(pending.drain().sessions.is_empty(), "drain leaves nothing");
    }
}
