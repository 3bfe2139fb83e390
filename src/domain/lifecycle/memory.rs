//! The rule book's storage primitives in plain maps: a [`Ledger`] with no database, so
//! [`super::apply`] can be tested on its own, and a [`Derived`] snapshot that every ledger's
//! state can be read into and compared by.
//!
//! It follows the SQL stores' semantics exactly (the tests in `store::ledger_agreement` hold
//! the three to the same results), but writes each touch at once instead of folding a commit
//! group: nothing in the rules reads folded rows back, so the two give the same state.

use std::collections::BTreeMap;
use std::convert::Infallible;

use super::{
    Agent, AgentStatus, Execution, Ledger, STAND_IN_PREFIXES, SessionTouch, SessionUsage, ToolCall,
};
use crate::domain::event::TokenUsage;
use crate::domain::sessions::SessionRow;
use crate::domain::views::ExecutionTotals;

/// Whether `key` is a stand-in run's ([`STAND_IN_PREFIXES`]).
fn is_stand_in(key: &str) -> bool {
    STAND_IN_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// One main-agent usage row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UsageRow {
    pub session_id: String,
    pub at: i64,
    pub model: String,
    pub usage: (i64, i64, i64, i64),
    pub cost_nanos: i64,
}

/// Everything the rules derive, in a form any ledger's state can be read into: tool calls
/// without their row ids (in a stable order), rollups without their empty rows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Derived {
    pub agents: BTreeMap<String, Agent>,
    pub tool_calls: Vec<ToolCall>,
    /// Per (minute, agent type).
    pub executions: BTreeMap<(i64, String), ExecutionTotals>,
    /// Per (minute, tool, agent type).
    pub tool_uses: BTreeMap<(i64, String, String), i64>,
    /// Per (minute, source app, event type).
    pub event_counts: BTreeMap<(i64, String, String), i64>,
    pub sessions: BTreeMap<String, SessionRow>,
    pub session_usage: Vec<UsageRow>,
}

impl Derived {
    /// Puts rows that have no order of their own into one, and drops rollup rows that sum to
    /// nothing (an execution added and removed again), so equal states compare equal.
    pub fn normalized(mut self) -> Self {
        for call in &mut self.tool_calls {
            call.row_id = None;
        }
        self.tool_calls.sort_by(|a, b| {
            (&a.agent_key, &a.tool_use_id, &a.tool_name, a.counted_at).cmp(&(
                &b.agent_key,
                &b.tool_use_id,
                &b.tool_name,
                b.counted_at,
            ))
        });
        self.executions.retain(|_, totals| !sums_to_nothing(totals));
        self.tool_uses.retain(|_, calls| *calls != 0);
        self.session_usage.sort();
        self
    }

    /// Executions in all, and how many of them failed.
    pub fn execution_counts(&self) -> (i64, i64) {
        self.executions.values().fold((0, 0), |(all, failed), t| {
            (all + t.executions, failed + t.failures)
        })
    }
}

/// A [`Ledger`] in memory.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    state: Derived,
    next_row_id: i64,
}

impl MemoryLedger {
    pub fn derived(&self) -> Derived {
        self.state.clone().normalized()
    }

    /// The idle sweep, as the stores run it: running subagents last seen before `cutoff_ms`
    /// are timed out. Returns how many.
    pub fn time_out_idle_agents(&mut self, cutoff_ms: i64) -> u64 {
        let mut timed_out = 0;
        for agent in self.state.agents.values_mut() {
            if agent.status == AgentStatus::Running && agent.last_seen < cutoff_ms {
                agent.status = AgentStatus::TimedOut;
                timed_out += 1;
            }
        }
        timed_out
    }

    /// The oldest subagent call of the session and type whose link passes `linked` (one with
    /// no start yet first, as the SQL stores order it).
    fn oldest_spawn(
        &self,
        session_id: &str,
        subagent_type: &str,
        not_after_ms: i64,
        linked: impl Fn(Option<&str>) -> bool,
    ) -> Option<ToolCall> {
        self.state
            .tool_calls
            .iter()
            .filter(|c| {
                c.session_id == session_id
                    && c.spawn_type.as_deref() == Some(subagent_type)
                    && c.started_at.is_none_or(|t| t <= not_after_ms)
                    && c.ended_at.is_none_or(|t| t >= not_after_ms)
                    && linked(c.spawned_agent.as_deref())
            })
            .min_by_key(|c| (c.started_at.is_some(), c.started_at, c.row_id))
            .cloned()
    }

    fn call_index(&self, row_id: i64) -> Option<usize> {
        self.state
            .tool_calls
            .iter()
            .position(|c| c.row_id == Some(row_id))
    }
}

impl Ledger for MemoryLedger {
    type Error = Infallible;

    fn touch_session(&mut self, t: &SessionTouch<'_>) -> Result<(), Infallible> {
        let row = self
            .state
            .sessions
            .entry(t.session_id.to_owned())
            .or_insert_with(|| SessionRow {
                source_app: t.source_app.to_owned(),
                started_at: t.at,
                last_seen: t.at,
                ..SessionRow::default()
            });
        row.started_at = row.started_at.min(t.at);
        row.last_seen = row.last_seen.max(t.at);
        if row.cwd.is_none() {
            row.cwd = t.cwd.map(str::to_owned);
        }
        if let Some(model) = t.model {
            row.model = Some(model.to_owned());
        }
        row.events += 1;
        row.prompts += t.prompts;
        row.tool_calls += t.tool_calls;
        if let Some(reason) = t.ended {
            row.ended_at = Some(row.ended_at.map_or(t.at, |end| end.max(t.at)));
            row.end_reason = reason.map(str::to_owned);
        }
        // A SessionStart after the end (a resume) reopens the session.
        if t.started && row.ended_at.is_some_and(|end| end < t.at) {
            row.ended_at = None;
            row.end_reason = None;
        }
        Ok(())
    }

    fn agent(&mut self, key: &str) -> Result<Option<Agent>, Infallible> {
        Ok(self.state.agents.get(key).cloned())
    }

    fn save_agent(&mut self, agent: &Agent) -> Result<(), Infallible> {
        self.state.agents.insert(agent.key.clone(), agent.clone());
        Ok(())
    }

    fn tool_call(
        &mut self,
        agent_key: &str,
        tool_use_id: &str,
    ) -> Result<Option<ToolCall>, Infallible> {
        Ok(self
            .state
            .tool_calls
            .iter()
            .find(|c| c.agent_key == agent_key && c.tool_use_id.as_deref() == Some(tool_use_id))
            .cloned())
    }

    fn oldest_open_unnamed_call(
        &mut self,
        agent_key: &str,
        tool_name: &str,
        not_after_ms: i64,
    ) -> Result<Option<ToolCall>, Infallible> {
        Ok(self
            .state
            .tool_calls
            .iter()
            .filter(|c| {
                c.agent_key == agent_key
                    && c.tool_use_id.is_none()
                    && c.tool_name == tool_name
                    && c.ended_at.is_none()
                    && c.started_at.is_some_and(|at| at <= not_after_ms)
            })
            .min_by_key(|c| (c.started_at, c.row_id))
            .cloned())
    }

    fn save_tool_call(&mut self, call: &ToolCall) -> Result<i64, Infallible> {
        match call.row_id.and_then(|id| self.call_index(id)) {
            Some(index) => {
                self.state.tool_calls[index] = call.clone();
                Ok(call.row_id.unwrap_or_default())
            }
            None => {
                self.next_row_id += 1;
                let mut saved = call.clone();
                saved.row_id = Some(self.next_row_id);
                self.state.tool_calls.push(saved);
                Ok(self.next_row_id)
            }
        }
    }

    fn oldest_unlinked_spawn(
        &mut self,
        session_id: &str,
        subagent_type: &str,
        not_after_ms: i64,
    ) -> Result<Option<ToolCall>, Infallible> {
        Ok(
            self.oldest_spawn(session_id, subagent_type, not_after_ms, |linked| {
                linked.is_none()
            }),
        )
    }

    fn oldest_stand_in_spawn(
        &mut self,
        session_id: &str,
        subagent_type: &str,
        not_after_ms: i64,
    ) -> Result<Option<ToolCall>, Infallible> {
        Ok(
            self.oldest_spawn(session_id, subagent_type, not_after_ms, |linked| {
                linked.is_some_and(is_stand_in)
            }),
        )
    }

    fn delete_agent(&mut self, key: &str) -> Result<(), Infallible> {
        self.state.agents.remove(key);
        Ok(())
    }

    fn oldest_unlinked_agent(
        &mut self,
        session_id: &str,
        agent_type: &str,
        not_before_ms: i64,
        not_after_ms: i64,
    ) -> Result<Option<Agent>, Infallible> {
        Ok(self
            .state
            .agents
            .values()
            .filter(|a| {
                a.session_id == session_id
                    && a.agent_type == agent_type
                    && a.tool_use_id.is_none()
                    && a.subagent_start_at.is_some()
                    && a.started_at
                        .is_none_or(|t| t >= not_before_ms && t <= not_after_ms)
            })
            .min_by_key(|a| (a.started_at.is_some(), a.started_at, a.key.clone()))
            .cloned())
    }

    fn add_execution(&mut self, execution: &Execution, sign: i64) -> Result<(), Infallible> {
        self.state
            .executions
            .entry((execution.bucket_ms, execution.agent_type.clone()))
            .or_insert_with(|| ExecutionTotals {
                agent_type: execution.agent_type.clone(),
                ..ExecutionTotals::default()
            })
            .add(&execution.totals(sign));
        Ok(())
    }

    fn add_tool_use(
        &mut self,
        bucket_ms: i64,
        tool_name: &str,
        agent_type: &str,
    ) -> Result<(), Infallible> {
        *self
            .state
            .tool_uses
            .entry((bucket_ms, tool_name.to_owned(), agent_type.to_owned()))
            .or_default() += 1;
        Ok(())
    }

    fn add_event_count(
        &mut self,
        bucket_ms: i64,
        source_app: &str,
        hook_event_type: &str,
    ) -> Result<(), Infallible> {
        *self
            .state
            .event_counts
            .entry((bucket_ms, source_app.to_owned(), hook_event_type.to_owned()))
            .or_default() += 1;
        Ok(())
    }

    fn add_session_usage(&mut self, usage: &SessionUsage<'_>) -> Result<(), Infallible> {
        let TokenUsage {
            input,
            output,
            cache_creation,
            cache_read,
        } = usage.usage;
        self.state.session_usage.push(UsageRow {
            session_id: usage.session_id.to_owned(),
            at: usage.at,
            model: usage.model.to_owned(),
            usage: (input, output, cache_creation, cache_read),
            cost_nanos: usage.cost_nanos,
        });
        Ok(())
    }
}

fn sums_to_nothing(t: &ExecutionTotals) -> bool {
    [
        t.executions,
        t.successes,
        t.failures,
        t.duration_sum_ms,
        t.duration_count,
        t.tokens,
        t.cost_nanos,
    ]
    .iter()
    .all(|sum| *sum == 0)
}
