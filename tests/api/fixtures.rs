//! Fixture events shaped like Claude Code's hook payloads (../shared/reference/claude-code-hooks.md).

use serde_json::{Value, json};

use crate::helpers::T0;

/// A hook payload: the fields every event carries plus `extra`.
pub fn hook(session: &str, event: &str, extra: Value) -> Value {
    let mut payload = json!({
        "session_id": session,
        "transcript_path": format!("/home/dev/.claude/projects/{session}.jsonl"),
        "cwd": "/home/dev/proj-alpha",
        "hook_event_name": event,
        "permission_mode": "default",
    });
    for (key, value) in extra.as_object().unwrap() {
        payload[key] = value.clone();
    }
    payload
}

/// The origin envelope around a hook payload, at `T0 + at_ms`.
pub fn envelope(app: &str, session: &str, event: &str, at_ms: i64, extra: Value) -> Value {
    json!({
        "source_app": app,
        "session_id": session,
        "hook_event_type": event,
        "payload": hook(session, event, extra),
        "timestamp": T0 + at_ms,
    })
}

pub fn pre_tool(tool: &str, id: &str, input: Value) -> Value {
    json!({ "tool_name": tool, "tool_use_id": id, "tool_input": input })
}

pub fn post_tool(tool: &str, id: &str, response: Value) -> Value {
    json!({ "tool_name": tool, "tool_use_id": id, "tool_input": {}, "tool_response": response, "duration_ms": 40 })
}

pub fn in_subagent(agent_id: &str, agent_type: &str, mut fields: Value) -> Value {
    fields["agent_id"] = json!(agent_id);
    fields["agent_type"] = json!(agent_type);
    fields
}

/// Session S1 of app proj-alpha: prompts, tool calls (one failing), three subagents of two
/// types (one failing), and a repeated SubagentStop. Times are ms after T0.
pub fn main_session() -> Vec<Value> {
    let s = "S1";
    let e = |event: &str, at: i64, extra: Value| envelope("proj-alpha", s, event, at, extra);
    vec![
        e(
            "SessionStart",
            0,
            json!({"source": "startup", "model": "claude-sonnet-4-5"}),
        ),
        e(
            "UserPromptSubmit",
            1_000,
            json!({"prompt": "Tidy up the config loader"}),
        ),
        e(
            "PreToolUse",
            2_000,
            pre_tool("Read", "r1", json!({"file_path": "/src/config.rs"})),
        ),
        e(
            "PostToolUse",
            3_000,
            post_tool("Read", "r1", json!({"content": "..."})),
        ),
        e(
            "PreToolUse",
            4_000,
            pre_tool("Bash", "b1", json!({"command": "cargo test"})),
        ),
        e(
            "PostToolUseFailure",
            5_000,
            json!({"tool_name": "Bash", "tool_use_id": "b1",
            "tool_input": {"command": "cargo test"}, "error": "exit 1", "is_interrupt": false, "duration_ms": 900}),
        ),
        // Subagent 1: Explore, completes; its SubagentStop is sent twice.
        e(
            "PreToolUse",
            6_000,
            pre_tool(
                "Task",
                "k1",
                json!({"subagent_type": "Explore", "description": "Find config", "prompt": "..."}),
            ),
        ),
        e(
            "SubagentStart",
            6_500,
            json!({"agent_id": "ag-1", "agent_type": "Explore"}),
        ),
        e(
            "PreToolUse",
            7_000,
            in_subagent(
                "ag-1",
                "Explore",
                pre_tool("Grep", "g1", json!({"pattern": "config"})),
            ),
        ),
        e(
            "PostToolUse",
            7_500,
            in_subagent(
                "ag-1",
                "Explore",
                post_tool("Grep", "g1", json!({"matches": 3})),
            ),
        ),
        e(
            "SubagentStop",
            9_500,
            json!({"agent_id": "ag-1", "agent_type": "Explore", "stop_hook_active": false,
            "agent_transcript_path": "/t/ag-1.jsonl", "last_assistant_message": "Found it"}),
        ),
        e(
            "PostToolUse",
            10_000,
            post_tool(
                "Task",
                "k1",
                json!({"agentId": "ag-1", "totalDurationMs": 3_400,
            "totalTokens": 13_500, "totalToolUseCount": 1,
            "usage": {"input_tokens": 1_000, "output_tokens": 2_000, "cache_creation_input_tokens": 500, "cache_read_input_tokens": 10_000}}),
            ),
        ),
        e(
            "SubagentStop",
            11_000,
            json!({"agent_id": "ag-1", "agent_type": "Explore", "stop_hook_active": false}),
        ),
        // Subagent 2: Explore, completes in minute 2.
        e(
            "PreToolUse",
            120_000,
            pre_tool(
                "Task",
                "k2",
                json!({"subagent_type": "Explore", "description": "Search tests"}),
            ),
        ),
        e(
            "SubagentStart",
            120_500,
            json!({"agent_id": "ag-2", "agent_type": "Explore"}),
        ),
        e(
            "PreToolUse",
            121_000,
            in_subagent(
                "ag-2",
                "Explore",
                pre_tool("Read", "r2", json!({"file_path": "/tests/a.rs"})),
            ),
        ),
        e(
            "PostToolUse",
            121_200,
            in_subagent("ag-2", "Explore", post_tool("Read", "r2", json!({}))),
        ),
        e(
            "SubagentStop",
            123_000,
            json!({"agent_id": "ag-2", "agent_type": "Explore"}),
        ),
        e(
            "PostToolUse",
            123_500,
            post_tool(
                "Task",
                "k2",
                json!({"agentId": "ag-2", "totalDurationMs": 2_900,
            "usage": {"input_tokens": 2_000, "output_tokens": 1_000}}),
            ),
        ),
        // Subagent 3: general-purpose, fails in minute 3 (no agentId on failure).
        e(
            "PreToolUse",
            180_000,
            pre_tool(
                "Task",
                "k3",
                json!({"subagent_type": "general-purpose", "description": "Refactor"}),
            ),
        ),
        e(
            "SubagentStart",
            180_500,
            json!({"agent_id": "ag-3", "agent_type": "general-purpose"}),
        ),
        e(
            "PreToolUse",
            181_000,
            in_subagent(
                "ag-3",
                "general-purpose",
                pre_tool("Edit", "e1", json!({"file_path": "/src/x.rs"})),
            ),
        ),
        e(
            "PostToolUse",
            181_500,
            in_subagent(
                "ag-3",
                "general-purpose",
                post_tool("Edit", "e1", json!({})),
            ),
        ),
        e(
            "PostToolUseFailure",
            185_000,
            json!({"tool_name": "Task", "tool_use_id": "k3",
            "tool_input": {"subagent_type": "general-purpose"}, "error": "Agent crashed", "is_interrupt": false, "duration_ms": 4_600}),
        ),
        e(
            "Stop",
            190_000,
            json!({"stop_hook_active": false, "last_assistant_message": "Done"}),
        ),
        e(
            "SessionEnd",
            200_000,
            json!({"reason": "prompt_input_exit"}),
        ),
    ]
}

/// Raw Claude Code hook bodies for session S2 (posted to /hooks/claude-code?app=proj-beta).
pub fn raw_session() -> Vec<Value> {
    let h = |event: &str, extra: Value| hook("S2", event, extra);
    vec![
        h("SessionStart", json!({"source": "startup"})),
        h("UserPromptSubmit", json!({"prompt": "Run the linter"})),
        h(
            "PreToolUse",
            pre_tool("Bash", "b2", json!({"command": "cargo clippy"})),
        ),
        h(
            "PostToolUse",
            post_tool("Bash", "b2", json!({"stdout": "ok"})),
        ),
    ]
}

/// Session S3: went quiet 40 minutes before T0, so it is timed out by T0 + 10 min.
pub fn idle_session() -> Vec<Value> {
    vec![
        envelope(
            "proj-alpha",
            "S3",
            "SessionStart",
            -40 * 60_000,
            json!({"source": "startup"}),
        ),
        envelope(
            "proj-alpha",
            "S3",
            "UserPromptSubmit",
            -40 * 60_000 + 1_000,
            json!({"prompt": "hi"}),
        ),
    ]
}
