//! A session as a tree of timed spans: what an agent did, in what order, and where the time
//! and the money went (`GET /api/sessions/{id}/trace`).
//!
//! Built when read from the session's derived rows (its prompts' and marks' events, its
//! agents, tool calls and API requests, and what telemetry saw: [`join_telemetry`]), so a late
//! event moves into place when it arrives and the tree is the same whatever order the events
//! came in. The nesting rules:
//! - `session` is the root;
//! - a `prompt` runs from its UserPromptSubmit to the Stop that ends its turn, or to the next
//!   prompt; the session's end, else open;
//! - a main-agent `tool` call nests under the prompt open when it started;
//! - an `agent` (a subagent run) nests under the `Task`/`Agent` call that launched it, else the
//!   prompt open when it started; a `tool` call made inside it nests under it;
//! - an `api_request` nests under the subagent it is attributed to, else the prompt with its
//!   `prompt.id`, else the prompt open when it was made;
//! - an `event` (a notification, compaction or permission request) has no duration and nests
//!   under its agent, else the prompt open at its time.
//!
//! Anything with no parent of its kind nests under the session. Tokens and cost are rolled up:
//! a span's are its own (an API request's, or a subagent's estimate when its session has no
//! telemetry) plus its children's.

use std::collections::HashMap;

use super::lifecycle::{AgentStatus, ToolCall, ToolCallStatus};
use super::sessions::AgentRecord;

/// What a span is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpanKind {
    Session,
    Prompt,
    Agent,
    Tool,
    ApiRequest,
    Event,
}

impl SpanKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Prompt => "prompt",
            Self::Agent => "agent",
            Self::Tool => "tool",
            Self::ApiRequest => "api_request",
            Self::Event => "event",
        }
    }
}

/// How a span ended, or that it has not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanStatus {
    Running,
    Ok,
    Error,
    TimedOut,
}

impl SpanStatus {
    pub(crate) fn of_tool_call(status: ToolCallStatus) -> Self {
        match status {
            ToolCallStatus::Running => Self::Running,
            ToolCallStatus::Succeeded => Self::Ok,
            ToolCallStatus::Failed => Self::Error,
        }
    }

    pub(crate) fn of_agent(status: AgentStatus) -> Self {
        match status {
            AgentStatus::Running => Self::Running,
            AgentStatus::Completed => Self::Ok,
            AgentStatus::Failed => Self::Error,
            AgentStatus::TimedOut => Self::TimedOut,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Ok => "ok",
            Self::Error => "error",
            Self::TimedOut => "timed_out",
        }
    }
}

/// Tokens and cost, with where the cost came from.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SpanUsage {
    /// input, output, cache read, cache creation.
    pub tokens: [i64; 4],
    pub cost_nanos: i64,
    /// Some of it is the transcript estimate rather than Claude Code's telemetry.
    pub estimated: bool,
}

impl SpanUsage {
    /// An agent's transcript estimate.
    pub(crate) fn estimate_of(agent: &AgentRecord) -> Self {
        let t = &agent.tokens;
        Self {
            tokens: [t.input, t.output, t.cache_read, t.cache_creation],
            cost_nanos: (agent.estimated_cost * 1e9).round() as i64,
            estimated: true,
        }
    }

    fn add(&mut self, other: &Self) {
        for (sum, n) in self.tokens.iter_mut().zip(other.tokens) {
            *sum = sum.saturating_add(n);
        }
        self.cost_nanos = self.cost_nanos.saturating_add(other.cost_nanos);
        self.estimated |= other.estimated;
    }

    pub(crate) fn total_tokens(&self) -> i64 {
        self.tokens
            .iter()
            .fold(0i64, |sum, &n| sum.saturating_add(n))
    }
}

/// One span of the tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// Stable: made from what the span is (an event's id, a tool call's `tool_use_id`, an
    /// agent's id), so a refreshed trace keeps its ids.
    pub span_id: String,
    pub parent_id: Option<String>,
    pub kind: SpanKind,
    pub name: String,
    pub start_ms: i64,
    /// `None` while it runs.
    pub end_ms: Option<i64>,
    pub status: SpanStatus,
    pub error: Option<String>,
    pub agent_id: Option<String>,
    pub tool_use_id: Option<String>,
    /// Own plus children's; `None` where nothing below it has any.
    pub usage: Option<SpanUsage>,
    /// What the details pane shows: the prompt's text, the request's model and cache use, …
    pub attributes: Vec<(String, serde_json::Value)>,
}

/// A prompt, from its UserPromptSubmit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PromptMark {
    pub event_id: String,
    pub at_ms: i64,
    /// The hooks' `prompt_id` (Claude Code ≥ 2.1.196), the telemetry's `prompt.id`.
    pub prompt_id: Option<String>,
    /// The prompt's text, cut to its first few thousand characters.
    pub text: Option<String>,
    /// The whole prompt's length in characters, when known: more than `text` holds when it
    /// was cut (the span then says so, and the whole text is its event's).
    pub chars: Option<usize>,
    /// Where Claude Code's tracing saw the prompt (a `claude_code.interaction` span, which has
    /// no `prompt.id`): the span's end. It stands only where no other source saw a prompt in
    /// its time ([`join_telemetry`]).
    pub traced_until: Option<i64>,
}

/// An event with no duration (or a Stop, which ends a prompt).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EventMark {
    pub event_id: String,
    pub at_ms: i64,
    pub hook_event_type: String,
    pub agent_id: Option<String>,
    pub summary: Option<String>,
    /// A mark that lasts (a tool waiting for the user, a hook running, from Claude Code's
    /// tracing): its end. A hook event's mark is a moment.
    pub ends_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiCall {
    /// Stable and short: made from what identifies the record (the store hashes its key).
    pub key: String,
    /// When the request finished (Claude Code sends the event then).
    pub at_ms: i64,
    pub duration_ms: Option<i64>,
    pub prompt_id: Option<String>,
    /// The subagent run it is attributed to; `None`: the main agent.
    pub agent_id: Option<String>,
    pub model: Option<String>,
    pub usage: SpanUsage,
    /// An `api_error`: its error text and status.
    pub error: Option<String>,
    pub status_code: Option<i64>,
    pub attempt: Option<i64>,
    /// Seen only by Claude Code's tracing (an `llm_request` span whose `api_request` event
    /// never came): its tokens as the span says, and no cost, which spans do not carry.
    pub traced_only: bool,
}

/// Everything a session's trace is built from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TraceInputs {
    pub session_id: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    /// The session's main agent, for its tool calls (`ToolCall::agent_key`).
    pub main_agent_id: String,
    pub prompts: Vec<PromptMark>,
    /// Stops of the main agent, which end prompts.
    pub stops: Vec<i64>,
    pub marks: Vec<EventMark>,
    /// The session's subagents.
    pub agents: Vec<AgentRecord>,
    pub tools: Vec<ToolCall>,
    pub api_calls: Vec<ApiCall>,
    /// Whether the session's cost is Claude Code's telemetry (then estimates are not added).
    pub has_telemetry: bool,
    /// The coding agent where it is not Claude Code (`SessionRecord::coding_agent`).
    pub coding_agent: Option<String>,
}

/// How much later than the hooks' end of a call its `tool_result` may be timed and still be
/// the same call, when the two are joined by time (each source stamps its own clock reading).
const JOIN_SLACK_MS: i64 = 1_000;

/// Adds what Claude Code's telemetry saw of a session to what the hooks saw, one span per
/// thing whichever saw it:
/// - a prompt (`user_prompt`) joins the hooks' prompt with its `prompt.id`; when the hooks saw
///   prompts without ids (an older Claude Code), none can be told apart, so telemetry adds
///   none of them; with no hook prompts at all, telemetry's are the prompts;
/// - a tool call (`tool_result`) joins the hooks' call with its `tool_use_id`; where either
///   side has none, the hooks' call of the same tool whose time holds the result's, each
///   hook call joined at most once. The hooks' call stands (it knows its agent and status).
pub(crate) fn join_telemetry(
    input: &mut TraceInputs,
    prompts: Vec<PromptMark>,
    tools: Vec<ToolCall>,
) {
    let (traced, prompts): (Vec<PromptMark>, Vec<PromptMark>) =
        prompts.into_iter().partition(|p| p.traced_until.is_some());
    let hook_prompts_have_ids = input.prompts.iter().all(|p| p.prompt_id.is_some());
    if hook_prompts_have_ids {
        let known: std::collections::HashSet<String> = input
            .prompts
            .iter()
            .filter_map(|p| p.prompt_id.clone())
            .collect();
        let no_hook_prompts = input.prompts.is_empty();
        input.prompts.extend(prompts.into_iter().filter(|p| {
            no_hook_prompts || p.prompt_id.as_ref().is_some_and(|id| !known.contains(id))
        }));
    }
    // A traced interaction is a prompt no other source saw in its time.
    for interaction in traced {
        let until = interaction.traced_until.unwrap_or(interaction.at_ms);
        let seen = input.prompts.iter().any(|p| {
            p.at_ms >= interaction.at_ms.saturating_sub(JOIN_SLACK_MS) && p.at_ms <= until
        });
        if !seen {
            input.prompts.push(interaction);
        }
    }
    let tools = merge_told_calls(tools);
    let by_use_id: std::collections::HashSet<String> = input
        .tools
        .iter()
        .filter_map(|t| t.tool_use_id.clone())
        .collect();
    let mut joined_by_time = vec![false; input.tools.len()];
    let mut added = Vec::new();
    for told in tools {
        if told
            .tool_use_id
            .as_ref()
            .is_some_and(|id| by_use_id.contains(id))
        {
            continue;
        }
        let at = told.ended_at.unwrap_or(told.counted_at);
        let same_call = input.tools.iter().enumerate().position(|(i, hook)| {
            !joined_by_time[i]
                && (hook.tool_use_id.is_none() || told.tool_use_id.is_none())
                && hook.tool_name == told.tool_name
                && hook.began_at() <= at
                && hook
                    .ended_at
                    .is_none_or(|end| at <= end.saturating_add(JOIN_SLACK_MS))
        });
        match same_call {
            Some(i) => joined_by_time[i] = true,
            None => added.push(told),
        }
    }
    input.tools.extend(added);
}

/// Adds the model requests Claude Code's tracing saw (`llm_request` spans, each with its
/// `request_id` where it has one) whose `api_request` or `api_error` event never came
/// (`logged`: the request ids of the session's events): the event stands where both came. A
/// traced request without an id is taken as logged when a logged call of its model ends
/// within [`JOIN_SLACK_MS`] of its end.
pub(crate) fn join_traced_requests(
    input: &mut TraceInputs,
    traced: Vec<(Option<String>, ApiCall)>,
    logged: &std::collections::HashSet<String>,
) {
    let mut added = Vec::new();
    for (request_id, call) in traced {
        let was_logged = match &request_id {
            Some(id) => logged.contains(id),
            None => input
                .api_calls
                .iter()
                .any(|c| c.model == call.model && (c.at_ms - call.at_ms).abs() <= JOIN_SLACK_MS),
        };
        if !was_logged {
            added.push(ApiCall {
                traced_only: true,
                ..call
            });
        }
    }
    input.api_calls.extend(added);
}

/// What telemetry said of one call, from its `tool_result` event and its `claude_code.tool`
/// and `tool.execution` spans, made one call per `tool_use_id`: the earliest start, the
/// latest end, failed if any said so (with the first error), its name from whichever has one.
/// Calls without an id stand as they are.
pub(crate) fn merge_told_calls(calls: Vec<ToolCall>) -> Vec<ToolCall> {
    let mut merged: Vec<ToolCall> = Vec::with_capacity(calls.len());
    let mut by_id: HashMap<String, usize> = HashMap::new();
    for call in calls {
        let Some(id) = call.tool_use_id.clone() else {
            merged.push(call);
            continue;
        };
        let Some(&i) = by_id.get(&id) else {
            by_id.insert(id, merged.len());
            merged.push(call);
            continue;
        };
        let into = &mut merged[i];
        if into.tool_name.is_empty() {
            into.tool_name = call.tool_name;
        }
        into.started_at = match (into.started_at, call.started_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        into.counted_at = into.counted_at.min(call.counted_at);
        into.ended_at = into.ended_at.max(call.ended_at);
        into.duration_ms = match (into.started_at, into.ended_at) {
            (Some(start), Some(end)) => Some(end - start),
            _ => into.duration_ms.or(call.duration_ms),
        };
        if call.status == crate::domain::lifecycle::ToolCallStatus::Failed {
            into.status = call.status;
        }
        into.error = into.error.take().or(call.error);
    }
    for call in &mut merged {
        if call.tool_name.is_empty() {
            call.tool_name = "tool".into();
        }
    }
    merged
}

/// Builds the tree: spans in start order (the root first), each with its parent's id.
pub(crate) fn build(mut input: TraceInputs) -> Vec<Span> {
    input
        .prompts
        .sort_by(|a, b| (a.at_ms, &a.event_id).cmp(&(b.at_ms, &b.event_id)));
    input.stops.sort_unstable();
    let root = "session".to_owned();
    let mut spans = vec![Span {
        span_id: root.clone(),
        parent_id: None,
        kind: SpanKind::Session,
        name: input.session_id.clone(),
        start_ms: input.started_at,
        end_ms: input.ended_at,
        status: if input.ended_at.is_some() {
            SpanStatus::Ok
        } else {
            SpanStatus::Running
        },
        error: None,
        agent_id: Some(input.main_agent_id.clone()),
        tool_use_id: None,
        usage: None,
        // Which coding agent the session is, as its page says.
        attributes: vec![(
            "coding_agent".to_owned(),
            serde_json::Value::from(
                input
                    .coding_agent
                    .as_deref()
                    .unwrap_or(super::coding_agent::CodingAgent::ClaudeCode.name()),
            ),
        )],
    }];

    // Prompts: [start, the first Stop before the next prompt, else the next prompt).
    let mut prompt_spans: Vec<(i64, Option<i64>, String)> = Vec::new();
    let mut by_prompt_id: HashMap<String, String> = HashMap::new();
    for (i, prompt) in input.prompts.iter().enumerate() {
        let next = input.prompts.get(i + 1).map(|p| p.at_ms);
        let stop = input
            .stops
            .iter()
            .copied()
            .find(|&t| t >= prompt.at_ms && next.is_none_or(|n| t < n));
        let end = stop.or(next).or(input.ended_at);
        let span_id = format!("prompt:{}", prompt.event_id);
        if let Some(id) = &prompt.prompt_id {
            by_prompt_id
                .entry(id.clone())
                .or_insert_with(|| span_id.clone());
        }
        let mut attributes = Vec::new();
        if let Some(id) = &prompt.prompt_id {
            attributes.push(("prompt_id".to_owned(), id.clone().into()));
        }
        if let Some(text) = &prompt.text {
            attributes.push(("prompt".to_owned(), text.clone().into()));
            if let Some(chars) = prompt.chars.filter(|c| *c > text.chars().count()) {
                attributes.push(("prompt_chars".to_owned(), chars.into()));
                attributes.push(("prompt_event_id".to_owned(), prompt.event_id.clone().into()));
            }
        }
        prompt_spans.push((prompt.at_ms, end, span_id.clone()));
        spans.push(Span {
            span_id,
            parent_id: Some(root.clone()),
            kind: SpanKind::Prompt,
            name: prompt
                .text
                .as_deref()
                .map_or_else(|| "prompt".to_owned(), |t| first_line(t, 80)),
            start_ms: prompt.at_ms,
            end_ms: end,
            status: if end.is_some() {
                SpanStatus::Ok
            } else {
                SpanStatus::Running
            },
            error: None,
            agent_id: Some(input.main_agent_id.clone()),
            tool_use_id: None,
            usage: None,
            attributes,
        });
    }
    // The prompt open at `t`: the latest that started at or before it.
    let prompt_at = |t: i64| -> Option<String> {
        let i = prompt_spans.partition_point(|(start, _, _)| *start <= t);
        i.checked_sub(1).map(|i| prompt_spans[i].2.clone())
    };

    let agent_span = |id: &str| format!("agent:{id}");
    let tool_span = |tool: &ToolCall| match &tool.tool_use_id {
        Some(id) => format!("tool:{id}"),
        None => match tool.row_id {
            Some(row) => format!("tool#{row}"),
            // Seen by telemetry alone, without an id: its tool and time are what it is.
            None => format!("tool@{}:{}", tool.tool_name, tool.counted_at),
        },
    };
    let agents: HashMap<&str, &AgentRecord> =
        input.agents.iter().map(|a| (a.id.as_str(), a)).collect();
    let tools_by_use_id: HashMap<&str, &ToolCall> = input
        .tools
        .iter()
        .filter_map(|t| Some((t.tool_use_id.as_deref()?, t)))
        .collect();

    for agent in &input.agents {
        let start = agent.started_at.unwrap_or(input.started_at);
        let parent = agent
            .tool_use_id
            .as_deref()
            .and_then(|id| tools_by_use_id.get(id))
            .map(|tool| tool_span(tool))
            .or_else(|| prompt_at(start))
            .unwrap_or_else(|| root.clone());
        let mut attributes = vec![("agent_type".to_owned(), agent.agent_type.clone().into())];
        if let Some(description) = &agent.description {
            attributes.push(("description".to_owned(), description.clone().into()));
        }
        spans.push(Span {
            span_id: agent_span(&agent.id),
            parent_id: Some(parent),
            kind: SpanKind::Agent,
            name: agent.agent_type.clone(),
            start_ms: start,
            end_ms: agent.ended_at,
            status: SpanStatus::of_agent(agent.status),
            error: agent.error.clone(),
            agent_id: Some(agent.id.clone()),
            tool_use_id: agent.tool_use_id.clone(),
            // Its transcript estimate, counted only when the session has no telemetry.
            usage: (!input.has_telemetry).then(|| SpanUsage::estimate_of(agent)),
            attributes,
        });
    }

    for tool in &input.tools {
        let parent = if tool.agent_key != input.main_agent_id
            && agents.contains_key(tool.agent_key.as_str())
        {
            agent_span(&tool.agent_key)
        } else {
            prompt_at(tool.began_at()).unwrap_or_else(|| root.clone())
        };
        spans.push(Span {
            span_id: tool_span(tool),
            parent_id: Some(parent),
            kind: SpanKind::Tool,
            name: tool.tool_name.clone(),
            start_ms: tool.began_at(),
            end_ms: tool.ended_at,
            status: SpanStatus::of_tool_call(tool.status),
            error: tool.error.clone(),
            agent_id: Some(tool.agent_key.clone()),
            tool_use_id: tool.tool_use_id.clone(),
            usage: None,
            attributes: vec![("tool_name".to_owned(), tool.tool_name.clone().into())],
        });
    }

    for call in &input.api_calls {
        let start = call.at_ms - call.duration_ms.unwrap_or(0).max(0);
        let parent = call
            .agent_id
            .as_deref()
            .filter(|id| agents.contains_key(id))
            .map(agent_span)
            .or_else(|| {
                call.prompt_id
                    .as_deref()
                    .and_then(|id| by_prompt_id.get(id).cloned())
            })
            .or_else(|| prompt_at(start))
            .unwrap_or_else(|| root.clone());
        let [input_tokens, output, cache_read, cache_creation] = call.usage.tokens;
        let mut attributes: Vec<(String, serde_json::Value)> = vec![
            ("input_tokens".into(), input_tokens.into()),
            ("output_tokens".into(), output.into()),
            ("cache_read_tokens".into(), cache_read.into()),
            ("cache_creation_tokens".into(), cache_creation.into()),
        ];
        for (key, value) in [
            ("model", call.model.clone().map(Into::into)),
            ("prompt_id", call.prompt_id.clone().map(Into::into)),
            ("status_code", call.status_code.map(Into::into)),
            ("attempt", call.attempt.map(Into::into)),
            ("seen_by", call.traced_only.then(|| "tracing".into())),
        ] {
            if let Some(value) = value {
                attributes.push((key.into(), value));
            }
        }
        spans.push(Span {
            span_id: format!("api:{}", call.key),
            parent_id: Some(parent),
            kind: SpanKind::ApiRequest,
            name: call.model.clone().unwrap_or_else(|| "API request".into()),
            start_ms: start,
            end_ms: Some(call.at_ms),
            status: if call.error.is_some() || call.status_code.is_some() {
                SpanStatus::Error
            } else {
                SpanStatus::Ok
            },
            error: call.error.clone(),
            agent_id: call.agent_id.clone().or(Some(input.main_agent_id.clone())),
            tool_use_id: None,
            usage: Some(call.usage),
            attributes,
        });
    }

    for mark in &input.marks {
        let parent = mark
            .agent_id
            .as_deref()
            .filter(|id| agents.contains_key(id))
            .map(agent_span)
            .or_else(|| prompt_at(mark.at_ms))
            .unwrap_or_else(|| root.clone());
        let mut attributes = vec![(
            "hook_event_type".to_owned(),
            mark.hook_event_type.clone().into(),
        )];
        if let Some(summary) = &mark.summary {
            attributes.push(("summary".to_owned(), summary.clone().into()));
        }
        spans.push(Span {
            span_id: format!("event:{}", mark.event_id),
            parent_id: Some(parent),
            kind: SpanKind::Event,
            name: mark.hook_event_type.clone(),
            start_ms: mark.at_ms,
            end_ms: Some(mark.ends_at.unwrap_or(mark.at_ms).max(mark.at_ms)),
            status: SpanStatus::Ok,
            error: None,
            agent_id: mark.agent_id.clone(),
            tool_use_id: None,
            usage: None,
            attributes,
        });
    }

    roll_up(&mut spans);
    spans[1..]
        .sort_by(|a, b| (a.start_ms, a.kind, &a.span_id).cmp(&(b.start_ms, b.kind, &b.span_id)));
    spans
}

/// Adds each span's usage to its ancestors'. A parent's usage is read only after all its
/// children's were added: spans are visited deepest first.
fn roll_up(spans: &mut [Span]) {
    let index: HashMap<String, usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id.clone(), i))
        .collect();
    let parent_of: Vec<Option<usize>> = spans
        .iter()
        .map(|s| s.parent_id.as_ref().and_then(|p| index.get(p).copied()))
        .collect();
    let depth = |mut i: usize| {
        let mut d = 0;
        while let Some(p) = parent_of[i] {
            i = p;
            d += 1;
            if d > spans.len() {
                break; // a cycle cannot be built, but never loop on one
            }
        }
        d
    };
    let mut order: Vec<(usize, usize)> = (0..spans.len()).map(|i| (depth(i), i)).collect();
    order.sort_unstable_by(|a, b| b.cmp(a));
    for (_, i) in order {
        if let (Some(p), Some(usage)) = (parent_of[i], spans[i].usage) {
            spans[p]
                .usage
                .get_or_insert_with(SpanUsage::default)
                .add(&usage);
        }
    }
}

/// The first line of `text`, at most `max` characters.
fn first_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sessions::TokenCounts;

    fn usage(cost_nanos: i64) -> SpanUsage {
        SpanUsage {
            tokens: [1, 2, 3, 4],
            cost_nanos,
            estimated: false,
        }
    }

    #[test]
    fn a_cut_prompt_says_how_long_it_is_and_where_it_is_whole() {
        let mut input = inputs();
        input.prompts[0].chars = Some(900_000);
        let spans = build(input);
        let attributes = |event: &str| {
            let span = spans
                .iter()
                .find(|s| s.span_id == format!("prompt:{event}"))
                .unwrap();
            span.attributes
                .iter()
                .map(|(k, v)| (k.as_str(), v.to_string()))
                .collect::<Vec<_>>()
        };
        let cut = attributes("e2");
        assert!(cut.contains(&("prompt_chars", "900000".into())), "{cut:?}");
        assert!(
            cut.contains(&("prompt_event_id", "\"e2\"".into())),
            "{cut:?}"
        );
        let whole = attributes("e1");
        assert!(
            !whole.iter().any(|(k, _)| *k == "prompt_chars"),
            "{whole:?}"
        );
    }

    fn tool(
        row_id: i64,
        tool_use_id: &str,
        agent: &str,
        name: &str,
        started_at: i64,
        ended_at: Option<i64>,
    ) -> ToolCall {
        ToolCall {
            row_id: Some(row_id),
            tool_use_id: Some(tool_use_id.into()),
            session_id: "S".into(),
            source_app: "app".into(),
            agent_key: agent.into(),
            agent_type: "main".into(),
            tool_name: name.into(),
            counted_at: started_at,
            started_at: Some(started_at),
            ended_at,
            duration_ms: ended_at.map(|end| end - started_at),
            status: match ended_at {
                Some(_) => ToolCallStatus::Succeeded,
                None => ToolCallStatus::Running,
            },
            error: None,
            spawn_type: None,
            spawn_description: None,
            spawned_agent: None,
        }
    }

    fn inputs() -> TraceInputs {
        TraceInputs {
            session_id: "S".into(),
            started_at: 0,
            ended_at: None,
            main_agent_id: "S".into(),
            prompts: vec![
                PromptMark {
                    event_id: "e2".into(),
                    at_ms: 100,
                    prompt_id: Some("P2".into()),
                    text: Some("second".into()),
                    chars: Some(6),
                    traced_until: None,
                },
                PromptMark {
                    event_id: "e1".into(),
                    at_ms: 10,
                    prompt_id: Some("P1".into()),
                    text: Some("first\nmore".into()),
                    chars: Some(10),
                    traced_until: None,
                },
            ],
            stops: vec![90],
            marks: vec![EventMark {
                event_id: "n1".into(),
                at_ms: 50,
                hook_event_type: "Notification".into(),
                agent_id: None,
                summary: Some("needs input".into()),
                ends_at: None,
            }],
            agents: vec![AgentRecord {
                id: "a1".into(),
                kind: "subagent",
                agent_type: "Explore".into(),
                name: None,
                description: None,
                session_id: "S".into(),
                source_app: "app".into(),
                status: AgentStatus::Completed,
                started_at: Some(30),
                ended_at: Some(60),
                last_seen: 60,
                duration_ms: Some(30),
                tokens: TokenCounts {
                    input: 1,
                    output: 2,
                    cache_read: 3,
                    cache_creation: 4,
                    total: 10,
                },
                estimated_cost: 999e-9,
                model: None,
                error: None,
                tool_use_id: Some("task1".into()),
                current_tool: None,
                telemetry: None,
                coding_agent: None,
            }],
            tools: vec![
                tool(1, "task1", "S", "Task", 20, Some(70)),
                tool(2, "g1", "a1", "Grep", 40, None),
            ],
            api_calls: vec![
                ApiCall {
                    key: "7".into(),
                    at_ms: 55,
                    duration_ms: Some(5),
                    prompt_id: Some("P1".into()),
                    agent_id: Some("a1".into()),
                    model: Some("haiku".into()),
                    usage: usage(10),
                    error: None,
                    status_code: None,
                    attempt: None,
                    traced_only: false,
                },
                ApiCall {
                    key: "8".into(),
                    at_ms: 120,
                    duration_ms: Some(10),
                    prompt_id: Some("P1".into()),
                    agent_id: None,
                    model: Some("opus".into()),
                    usage: usage(100),
                    error: None,
                    status_code: None,
                    attempt: None,
                    traced_only: false,
                },
            ],
            has_telemetry: true,
            coding_agent: None,
        }
    }

    fn parent<'a>(spans: &'a [Span], id: &str) -> &'a str {
        spans
            .iter()
            .find(|s| s.span_id == id)
            .unwrap_or_else(|| panic!("no span {id}"))
            .parent_id
            .as_deref()
            .unwrap_or("-")
    }

    #[test]
    fn spans_nest_by_the_rules() {
        let spans = build(inputs());
        assert_eq!(spans[0].span_id, "session");
        assert_eq!(parent(&spans, "prompt:e1"), "session");
        assert_eq!(parent(&spans, "tool:task1"), "prompt:e1");
        assert_eq!(parent(&spans, "agent:a1"), "tool:task1");
        assert_eq!(parent(&spans, "tool:g1"), "agent:a1");
        assert_eq!(parent(&spans, "api:7"), "agent:a1");
        // Made after the second prompt began, but its prompt.id is the first's.
        assert_eq!(parent(&spans, "api:8"), "prompt:e1");
        assert_eq!(parent(&spans, "event:n1"), "prompt:e1");
    }

    #[test]
    fn prompts_end_at_their_stop_else_the_next_prompt_else_stay_open() {
        let spans = build(inputs());
        let span = |id: &str| spans.iter().find(|s| s.span_id == id).unwrap();
        assert_eq!(span("prompt:e1").end_ms, Some(90));
        assert_eq!(span("prompt:e1").name, "first");
        assert_eq!(span("prompt:e2").end_ms, None);
        assert_eq!(span("prompt:e2").status, SpanStatus::Running);
        assert_eq!(span("tool:g1").status, SpanStatus::Running);
    }

    #[test]
    fn usage_rolls_up_and_estimates_stay_out_beside_telemetry() {
        let spans = build(inputs());
        let span = |id: &str| spans.iter().find(|s| s.span_id == id).unwrap();
        assert_eq!(span("agent:a1").usage.unwrap().cost_nanos, 10);
        assert_eq!(span("tool:task1").usage.unwrap().cost_nanos, 10);
        assert_eq!(span("prompt:e1").usage.unwrap().cost_nanos, 110);
        assert_eq!(span("session").usage.unwrap().cost_nanos, 110);
        assert_eq!(span("prompt:e2").usage, None);

        let mut estimated = inputs();
        estimated.has_telemetry = false;
        estimated.api_calls.clear();
        let spans = build(estimated);
        let session = spans.iter().find(|s| s.span_id == "session").unwrap();
        assert_eq!(session.usage.unwrap().cost_nanos, 999);
    }

    fn told_prompt(key: &str, at_ms: i64, prompt_id: Option<&str>) -> PromptMark {
        PromptMark {
            event_id: format!("otel-{key}"),
            at_ms,
            prompt_id: prompt_id.map(str::to_owned),
            text: None,
            chars: None,
            traced_until: None,
        }
    }

    #[test]
    fn telemetry_adds_only_what_the_hooks_did_not_see() {
        let mut input = inputs();
        for prompt in &mut input.prompts {
            prompt.prompt_id = Some(format!("id-{}", prompt.event_id));
        }
        let hook_prompts = input.prompts.len();
        let mut told_bash = tool(0, "task1", "S", "Task", 25, Some(69));
        told_bash.row_id = None;
        // The hooks' Grep has no id here: joined by name and time, within the slack.
        input.tools[1].tool_use_id = None;
        input.tools[1].ended_at = Some(45);
        let mut grep_by_time = tool(0, "g-told", "S", "Grep", 41, Some(45 + JOIN_SLACK_MS));
        grep_by_time.row_id = None;
        let mut unseen = tool(0, "u1", "S", "Read", 80, Some(90));
        unseen.row_id = None;
        join_telemetry(
            &mut input,
            vec![
                told_prompt("a", 0, Some("id-e1")),
                told_prompt("b", 95, Some("id-new")),
                told_prompt("c", 96, None),
            ],
            vec![told_bash, grep_by_time, unseen],
        );
        // The prompt the hooks saw is theirs; a new id is one more; no id cannot be joined.
        assert_eq!(input.prompts.len(), hook_prompts + 1);
        assert!(input.prompts.iter().any(|p| p.event_id == "otel-b"));
        let names: Vec<&str> = input.tools.iter().map(|t| t.tool_name.as_str()).collect();
        assert_eq!(names, ["Task", "Grep", "Read"]);
        let spans = build(input.clone());
        assert!(spans.iter().any(|s| s.span_id == "tool:u1"), "{spans:?}");

        // Hook prompts without ids cannot be told apart from telemetry's: none is added.
        let mut old = inputs();
        for prompt in &mut old.prompts {
            prompt.prompt_id = None;
        }
        let before = old.prompts.len();
        join_telemetry(&mut old, vec![told_prompt("d", 5, Some("x"))], Vec::new());
        assert_eq!(old.prompts.len(), before);
        // With no hook prompts at all, telemetry's are the prompts.
        let mut none = inputs();
        none.prompts.clear();
        join_telemetry(&mut none, vec![told_prompt("e", 5, None)], Vec::new());
        assert_eq!(none.prompts.len(), 1);
    }

    #[test]
    fn the_order_of_the_inputs_does_not_change_the_tree() {
        let expected = build(inputs());
        let mut shuffled = inputs();
        shuffled.tools.reverse();
        shuffled.api_calls.reverse();
        shuffled.prompts.reverse();
        assert_eq!(build(shuffled), expected);
    }

    #[test]
    fn traced_spans_add_only_what_no_event_or_hook_saw() {
        let mut input = inputs();
        let hook_prompts = input.prompts.len();
        // An interaction over a hook prompt is that prompt; one over nothing is a prompt.
        let interaction = |at_ms: i64, until: i64| PromptMark {
            traced_until: Some(until),
            ..told_prompt(&format!("i{at_ms}"), at_ms, None)
        };
        // Two sightings of one call (its span and its result) are one call: the span's start,
        // the result's failure.
        let mut span = tool(0, "t9", "S", "Read", 200, Some(230));
        span.row_id = None;
        let mut result = tool(0, "t9", "S", "", 210, Some(240));
        result.row_id = None;
        result.status = crate::domain::lifecycle::ToolCallStatus::Failed;
        join_telemetry(
            &mut input,
            vec![interaction(10, 80), interaction(5_000, 9_000)],
            vec![span, result],
        );
        assert_eq!(input.prompts.len(), hook_prompts + 1);
        let merged: Vec<_> = input
            .tools
            .iter()
            .filter(|t| t.tool_use_id.as_deref() == Some("t9"))
            .collect();
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].tool_name, "Read");
        assert_eq!((merged[0].began_at(), merged[0].ended_at), (200, Some(240)));
        assert_eq!(
            merged[0].status,
            crate::domain::lifecycle::ToolCallStatus::Failed
        );

        // A traced request its event logged stands once; one never logged is added.
        let logged_calls = input.api_calls.len();
        let call = |key: &str, at_ms: i64| ApiCall {
            key: key.into(),
            at_ms,
            traced_only: true,
            ..input.api_calls[1].clone()
        };
        let logged: std::collections::HashSet<String> = ["req-1".to_owned()].into();
        let traced = vec![
            (Some("req-1".to_owned()), call("a", 120)),
            (Some("req-2".to_owned()), call("b", 500)),
            // No id: the logged opus call ending at 120 is it.
            (None, call("c", 121)),
        ];
        join_traced_requests(&mut input, traced, &logged);
        assert_eq!(input.api_calls.len(), logged_calls + 1);
        assert_eq!(input.api_calls.last().unwrap().key, "b");
    }
}
