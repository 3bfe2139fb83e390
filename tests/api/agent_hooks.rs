//! Codex CLI's and Gemini CLI's hooks (issue 34), through the real client: `hookwatch send
//! --agent codex|gemini` with each agent's documented hook stdin
//! (`other-agents-telemetry.md` §2.6, §3.6), then the same sessions' telemetry from the SDKs
//! the agents use. Each session is known as its agent's, Gemini's events count as Claude
//! Code's twins do (tool calls without ids paired by tool), and telemetry joins the hooks.

use std::path::Path;
use std::time::Duration;

use std::os::unix::fs::PermissionsExt;

use hookwatch::clock::Clock;
use serde_json::{Value, json};

use crate::client::run;
use crate::helpers::{Backend, TestApp, approx};

fn wall_ms() -> i64 {
    hookwatch::clock::SystemClock.now_ms()
}

/// Sleeps until `at_ms` on the wall clock (not before).
async fn until(at_ms: i64) {
    let left = at_ms - wall_ms();
    if left > 0 {
        tokio::time::sleep(Duration::from_millis(left as u64)).await;
    }
}

/// Runs `hookwatch send --agent <agent>` with one hook's stdin; every send exits 0, and prints
/// what the agent's contract wants: nothing for Codex, the empty object for Gemini.
async fn send(app: &TestApp, agent: &str, stdin: &Value, spool: &Path) {
    let home = tempfile::tempdir().unwrap();
    let ran = run(
        &["send", "--agent", agent],
        stdin.to_string().as_bytes(),
        &app.base_url,
        spool,
        home.path(),
    )
    .await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let expected = if agent == "gemini" { "{}\n" } else { "" };
    assert_eq!(ran.stdout, expected, "{agent}: {stdin}");
}

fn codex_hook(event: &str, extra: Value) -> Value {
    let mut hook = json!({
        "session_id": "codex-session",
        "transcript_path": null,
        "cwd": "/home/dev/fleet-codex",
        "hook_event_name": event,
        "model": "gpt-5-codex",
        "permission_mode": "default",
    });
    if event != "SessionStart" {
        hook["turn_id"] = json!("turn-1");
    }
    hook.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    hook
}

fn gemini_hook(event: &str, extra: Value) -> Value {
    let mut hook = json!({
        "session_id": "gemini-session",
        "transcript_path": "/home/dev/.gemini/tmp/chats/session.json",
        "cwd": "/home/dev/fleet-gemini",
        "hook_event_name": event,
        "timestamp": "2026-12-07T10:00:00.000Z",
    });
    hook.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    hook
}

fn spans<'a>(trace: &'a Value, kind: &str) -> Vec<&'a Value> {
    trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == kind)
        .collect()
}

fn names(spans: &[&Value]) -> Vec<String> {
    spans
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn codex_and_gemini_hooks_make_their_agents_sessions_joined_with_their_telemetry(
    backend: Backend,
) {
    let app = TestApp::spawn_on_with(backend, |c| {
        c.clock = std::sync::Arc::new(hookwatch::clock::SystemClock);
    })
    .await;
    let spool = tempfile::tempdir().unwrap();

    // Codex: Claude Code's hooks with a turn_id; its tool id is the telemetry's call_id.
    let codex_start = wall_ms();
    send(
        &app,
        "codex",
        &codex_hook("SessionStart", json!({"source": "startup"})),
        spool.path(),
    )
    .await;
    send(
        &app,
        "codex",
        &codex_hook("UserPromptSubmit", json!({"prompt": "fix the build"})),
        spool.path(),
    )
    .await;
    let bash = json!({"tool_name": "Bash", "tool_input": {"command": "cargo build"}, "tool_use_id": "call_codex"});
    send(
        &app,
        "codex",
        &codex_hook("PreToolUse", bash.clone()),
        spool.path(),
    )
    .await;
    // The telemetry, 200 ms apart from 2.2 s after the start: the completed response (1.84 s
    // long) at +3.2 s, the tool result at +3.6 s.
    let codex_now = codex_start + 60_000 + 2_200;
    crate::otlp_agents::export_codex_with_the_rust_sdk(
        &app.base_url,
        "codex-session",
        codex_now,
        200,
    )
    .await;
    until(codex_start + 3_800).await;
    let mut post = bash.clone();
    post["tool_response"] = json!({"stdout": "Finished", "exit_code": 0});
    send(
        &app,
        "codex",
        &codex_hook("PostToolUse", post),
        spool.path(),
    )
    .await;
    until(codex_start + 4_000).await;
    send(
        &app,
        "codex",
        &codex_hook(
            "Stop",
            json!({"stop_hook_active": false, "last_assistant_message": "fixed"}),
        ),
        spool.path(),
    )
    .await;

    // Gemini: its own event names, no tool or prompt ids, timeouts in milliseconds.
    let gemini_start = wall_ms();
    send(
        &app,
        "gemini",
        &gemini_hook("SessionStart", json!({"source": "startup"})),
        spool.path(),
    )
    .await;
    send(
        &app,
        "gemini",
        &gemini_hook("BeforeAgent", json!({"prompt": "list the files please"})),
        spool.path(),
    )
    .await;
    let shell = json!({"tool_name": "run_shell_command", "tool_input": {"command": "ls"}});
    send(
        &app,
        "gemini",
        &gemini_hook("BeforeTool", shell.clone()),
        spool.path(),
    )
    .await;
    // The telemetry, 200 ms apart from 2.4 s after the start: the response (2.1 s long) at
    // +3.2 s, the tool call at +3.4 s.
    let gemini_now = (gemini_start + 60_000 + 2_400).to_string();
    let dir = crate::otlp::js_exporters();
    crate::otlp::run_node(
        &dir.join("gemini.mjs"),
        &[
            app.base_url.as_str(),
            "http/json",
            "gemini-session",
            &gemini_now,
            "200",
        ],
    )
    .await;
    until(gemini_start + 3_700).await;
    let mut after = shell.clone();
    after["tool_response"] =
        json!({"llmContent": "Cargo.toml\nsrc", "returnDisplay": "Cargo.toml\nsrc"});
    send(
        &app,
        "gemini",
        &gemini_hook("AfterTool", after),
        spool.path(),
    )
    .await;
    let read = json!({"tool_name": "read_file", "tool_input": {"absolute_path": "/nope"}});
    send(
        &app,
        "gemini",
        &gemini_hook("BeforeTool", read.clone()),
        spool.path(),
    )
    .await;
    let mut failed = read.clone();
    failed["tool_response"] = json!({"llmContent": "", "returnDisplay": "",
                                     "error": {"message": "File not found", "type": "file_not_found"}});
    send(
        &app,
        "gemini",
        &gemini_hook("AfterTool", failed),
        spool.path(),
    )
    .await;
    until(gemini_start + 4_000).await;
    send(
        &app,
        "gemini",
        &gemini_hook(
            "AfterAgent",
            json!({"prompt": "list the files please",
        "prompt_response": "Cargo.toml and src", "stop_hook_active": false}),
        ),
        spool.path(),
    )
    .await;
    send(
        &app,
        "gemini",
        &gemini_hook("SessionEnd", json!({"reason": "exit"})),
        spool.path(),
    )
    .await;

    assert_eq!(
        std::fs::read_dir(spool.path()).map_or(0, |d| d.count()),
        0,
        "every event was delivered, none spooled"
    );

    // Codex's session: its agent, its project, one prompt, one call joined by its id.
    let codex = app.get_ok("/api/sessions/codex-session").await;
    assert_eq!(codex["coding_agent"], "codex", "{codex}");
    assert_eq!(codex["source_app"], "fleet-codex", "{codex}");
    assert_eq!(codex["seen_by"], "both", "{codex}");
    assert_eq!(codex["model"], "gpt-5-codex", "{codex}");
    assert_eq!(codex["prompt_count"], 1, "{codex}");
    assert_eq!(codex["tool_call_count"], 1, "{codex}");
    assert_eq!(codex["cost_source"], "tokens", "{codex}");
    approx(
        &codex["cost_usd"],
        (4_000 * 1_250 + 700 * 10_000 + 8_000 * 125) as f64 / 1e9,
    );
    let trace = app.get_ok("/api/sessions/codex-session/trace").await;
    let root = &spans(&trace, "session")[0];
    assert_eq!(root["attributes"]["coding_agent"], "codex", "{root}");
    assert_eq!(
        names(&spans(&trace, "prompt")),
        ["fix the build"],
        "{trace}"
    );
    let tools = spans(&trace, "tool");
    assert_eq!(
        names(&tools),
        ["Bash"],
        "the hooks' call and telemetry's are one: {trace}"
    );
    assert_eq!(tools[0]["tool_use_id"], "call_codex", "{trace}");
    let requests = spans(&trace, "api_request");
    assert_eq!(
        requests.len(),
        2,
        "the failed attempt and the request: {trace}"
    );
    let prompt_id = &spans(&trace, "prompt")[0]["span_id"];
    for span in requests.iter().chain(&tools) {
        assert_eq!(
            &span["parent_id"], prompt_id,
            "under the hooks' prompt: {span}"
        );
    }

    // The agents list says whose session each main agent runs in.
    let agents = app.get_ok("/api/agents?status=all").await;
    let coding_agents: std::collections::BTreeMap<String, String> = agents
        .as_array()
        .or_else(|| agents["agents"].as_array())
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["session_id"].as_str().unwrap().to_owned(),
                a["coding_agent"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(coding_agents["codex-session"], "codex", "{agents}");
    assert_eq!(coding_agents["gemini-session"], "gemini-cli", "{agents}");

    // Gemini's session: stored under Claude Code's names, calls paired by tool, the failure kept.
    let gemini = app.get_ok("/api/sessions/gemini-session").await;
    assert_eq!(gemini["coding_agent"], "gemini-cli", "{gemini}");
    assert_eq!(gemini["source_app"], "fleet-gemini", "{gemini}");
    assert_eq!(gemini["seen_by"], "both", "{gemini}");
    assert_eq!(gemini["prompt_count"], 1, "{gemini}");
    assert_eq!(gemini["tool_call_count"], 2, "{gemini}");
    assert_eq!(gemini["end_reason"], "exit", "{gemini}");
    assert_eq!(gemini["cost_source"], "tokens", "{gemini}");
    approx(
        &gemini["cost_usd"],
        (4_050 * 1_250 + 500 * 10_000 + 6_000 * 125) as f64 / 1e9,
    );
    let trace = app.get_ok("/api/sessions/gemini-session/trace").await;
    let root = &spans(&trace, "session")[0];
    assert_eq!(root["attributes"]["coding_agent"], "gemini-cli", "{root}");
    assert_eq!(
        names(&spans(&trace, "prompt")),
        ["list the files please"],
        "{trace}"
    );
    let tools = spans(&trace, "tool");
    assert_eq!(
        names(&tools),
        ["run_shell_command", "read_file"],
        "telemetry's call joined the hooks' by tool and time: {trace}"
    );
    assert_eq!(tools[1]["error"], "File not found", "{trace}");
    assert_ne!(tools[1]["status"], tools[0]["status"], "{trace}");
    let requests = spans(&trace, "api_request");
    assert_eq!(
        names(&requests),
        ["gemini-2.5-pro", "gemini-2.5-flash"],
        "{trace}"
    );
    let prompt_id = &spans(&trace, "prompt")[0]["span_id"];
    for span in requests.iter().chain(&tools) {
        assert_eq!(
            &span["parent_id"], prompt_id,
            "under the hooks' prompt: {span}"
        );
    }
    // The events keep what Gemini sent, and are listed under Claude Code's names.
    let events = crate::helpers::all_events(&app.client, &app.base_url).await;
    let before_tool = events
        .iter()
        .find(|e| e["payload"]["hook_event_name"] == "BeforeTool")
        .expect("the BeforeTool event");
    assert_eq!(
        before_tool["hook_event_type"], "PreToolUse",
        "{before_tool}"
    );
    assert_eq!(before_tool["coding_agent"], "gemini-cli", "{before_tool}");

    // Usage by agent, and narrowed to one, on the sessions the hooks named.
    let now = wall_ms();
    let range = format!("start={}&end={}", now - 3_600_000, now + 60_000);
    let by_agent = app
        .get_ok(&format!("/api/usage?group_by=agent&{range}"))
        .await;
    let rows: Vec<(&str, i64)> = by_agent["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["key"].as_str().unwrap(),
                row["requests"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, [("codex", 1), ("gemini-cli", 1)], "{by_agent}");
    for row in by_agent["rows"].as_array().unwrap() {
        assert_eq!(
            row["cost_source"], "tokens",
            "neither reports a cost: {row}"
        );
    }
    let gemini_models = app
        .get_ok(&format!("/api/usage?group_by=model&agent=gemini&{range}"))
        .await;
    assert_eq!(
        gemini_models["rows"][0]["key"], "gemini-2.5-pro",
        "{gemini_models}"
    );
    assert_eq!(
        gemini_models["rows"].as_array().unwrap().len(),
        2,
        "pro, and flash's error: {gemini_models}"
    );
    let response = app
        .client
        .get(app.url("/api/usage?agent=cursor"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["field"], "agent", "{error}");
}

crate::on_each_store!(
    codex_and_gemini_hooks_make_their_agents_sessions_joined_with_their_telemetry,
);

/// Runs `hookwatch args…` as a user whose home is `home`, with none of hookwatch's, Codex's or
/// the state directory's settings inherited: exit code, stdout, stderr.
async fn hookwatch_as(home: &Path, server: &str, args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(crate::helpers::binary())
        .args(args)
        .current_dir(home)
        .env("HOME", home)
        .env("HOOKWATCH_SERVER", server)
        .env("HOOKWATCH_SPOOL_DIR", home.join("spool"))
        .env_remove("XDG_STATE_HOME")
        .env_remove("CODEX_HOME")
        .env_remove("HOOKWATCH_TOKEN")
        .output()
        .await
        .expect("hookwatch runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn json_file(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Every hookwatch handler in an agent's hooks file, by event: its command and timeout.
fn our_handlers(hooks: &Value) -> Vec<(String, String, i64)> {
    let mut found = Vec::new();
    for (event, groups) in hooks["hooks"].as_object().unwrap() {
        for group in groups.as_array().unwrap() {
            for handler in group["hooks"].as_array().unwrap() {
                let command = handler["command"].as_str().unwrap_or_default();
                if command.contains("hookwatch") {
                    assert_eq!(handler["type"], "command", "{handler}");
                    found.push((
                        event.clone(),
                        command.to_owned(),
                        handler["timeout"].as_i64().unwrap(),
                    ));
                }
            }
        }
    }
    found
}

const CODEX_CONFIG: &str = "# my Codex settings\nmodel = \"gpt-5-codex\"\n\n[features]\nhooks = true # on\n\n[otel]\nlog_user_prompt = true\n";

#[tokio::test]
async fn install_writes_codexs_and_geminis_hooks_and_telemetry_and_uninstall_takes_out_exactly_that()
 {
    let app = TestApp::spawn_live().await;
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let server = app.base_url.as_str();
    std::fs::create_dir_all(home.join(".codex")).unwrap();
    std::fs::create_dir_all(home.join(".gemini")).unwrap();
    std::fs::write(home.join(".codex/config.toml"), CODEX_CONFIG).unwrap();
    // A private file stays private.
    let private = std::fs::Permissions::from_mode(0o600);
    std::fs::set_permissions(home.join(".codex/config.toml"), private).unwrap();
    let codex_hooks = json!({"hooks": {"PreToolUse": [
        {"matcher": "Bash", "hooks": [{"type": "command", "command": "my-guard.sh", "timeout": 30}]}]}});
    std::fs::write(home.join(".codex/hooks.json"), codex_hooks.to_string()).unwrap();
    let gemini_settings = json!({
        "theme": "Dracula",
        "hooks": {"BeforeTool": [{"matcher": "write_file",
            "hooks": [{"type": "command", "command": "guard.sh", "timeout": 1000}]}]},
        "telemetry": {"logPrompts": false},
    });
    std::fs::write(
        home.join(".gemini/settings.json"),
        gemini_settings.to_string(),
    )
    .unwrap();

    // Hooks, each agent's events in its own file, after the user's own.
    for agent in ["codex", "gemini"] {
        let (code, stdout, stderr) =
            hookwatch_as(home, server, &["install", "--agent", agent]).await;
        assert_eq!(code, 0, "{stdout}{stderr}");
    }
    let codex = json_file(&home.join(".codex/hooks.json"));
    let handlers = our_handlers(&codex);
    let mut events: Vec<&str> = handlers.iter().map(|(e, _, _)| e.as_str()).collect();
    events.sort_unstable();
    let mut documented = hookwatch::domain::coding_agent::CODEX_HOOKS.to_vec();
    documented.sort_unstable();
    assert_eq!(events, documented, "every Codex hook event, once");
    for (_, command, timeout) in &handlers {
        assert!(command.contains(" send --agent codex"), "{command}");
        assert_eq!(*timeout, 5, "seconds");
    }
    assert_eq!(
        codex["hooks"]["PreToolUse"][0]["hooks"][0]["command"],
        "my-guard.sh"
    );
    assert_eq!(codex["hooks"]["PreToolUse"][1]["matcher"], "*");

    let gemini = json_file(&home.join(".gemini/settings.json"));
    let handlers = our_handlers(&gemini);
    let mut events: Vec<&str> = handlers.iter().map(|(e, _, _)| e.as_str()).collect();
    events.sort_unstable();
    let mut documented = hookwatch::domain::coding_agent::GEMINI_OBSERVED_HOOKS.to_vec();
    documented.sort_unstable();
    assert_eq!(events, documented);
    for (_, command, timeout) in &handlers {
        assert!(command.contains(" send --agent gemini"), "{command}");
        assert_eq!(*timeout, 5_000, "milliseconds");
    }
    assert_eq!(gemini["theme"], "Dracula");
    assert_eq!(
        gemini["hooks"]["BeforeTool"][0]["hooks"][0]["command"],
        "guard.sh"
    );
    assert_eq!(gemini["hooks"]["BeforeTool"][1]["matcher"], "*");

    // A second install changes nothing.
    let codex_bytes = std::fs::read(home.join(".codex/hooks.json")).unwrap();
    let (code, stdout, _) = hookwatch_as(home, server, &["install", "--agent", "codex"]).await;
    assert_eq!(code, 0);
    assert!(stdout.contains("nothing changed"), "{stdout}");
    assert_eq!(
        std::fs::read(home.join(".codex/hooks.json")).unwrap(),
        codex_bytes
    );

    // Telemetry: Codex's [otel] exporters, the user's comments and keys kept.
    let (code, stdout, stderr) =
        hookwatch_as(home, server, &["install", "--otel", "--agent", "codex"]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let text = std::fs::read_to_string(home.join(".codex/config.toml")).unwrap();
    assert!(text.starts_with("# my Codex settings\n"), "{text}");
    assert!(text.contains("hooks = true # on"), "{text}");
    let config: toml::Table = toml::from_str(&text).unwrap();
    let otel = config["otel"].as_table().unwrap();
    assert_eq!(otel["log_user_prompt"].as_bool(), Some(true));
    for (key, signal) in [
        ("exporter", "logs"),
        ("trace_exporter", "traces"),
        ("metrics_exporter", "metrics"),
    ] {
        let http = &otel[key]["otlp-http"];
        assert_eq!(
            http["endpoint"].as_str(),
            Some(format!("{server}/v1/{signal}").as_str()),
            "{text}"
        );
        assert_eq!(http["protocol"].as_str(), Some("binary"), "{text}");
    }
    // Gemini's telemetry object, its logPrompts kept.
    let (code, stdout, stderr) =
        hookwatch_as(home, server, &["install", "--otel", "--agent", "gemini"]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let gemini = json_file(&home.join(".gemini/settings.json"));
    assert_eq!(
        gemini["telemetry"],
        json!({"logPrompts": false, "enabled": true, "target": "local",
               "otlpEndpoint": server, "otlpProtocol": "http"})
    );

    // doctor, per agent.
    let (code, stdout, _) = hookwatch_as(home, server, &["doctor", "--agent", "codex"]).await;
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("PASS hooks (user): installed for 11 events"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "PASS telemetry: codex exports to {server}/v1/logs"
        )),
        "{stdout}"
    );
    let (code, stdout, _) = hookwatch_as(home, server, &["doctor", "--agent", "gemini"]).await;
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("PASS hooks (user): installed for 8 events"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("PASS telemetry: gemini-cli exports to {server}")),
        "{stdout}"
    );
    let (code, stdout, _) = hookwatch_as(home, server, &["doctor"]).await;
    assert_eq!(code, 1, "Claude Code's hooks are not installed: {stdout}");

    // Uninstall takes out exactly what was added.
    for agent in ["codex", "gemini"] {
        let (code, stdout, stderr) = hookwatch_as(
            home,
            server,
            &["install", "--agent", agent, "--otel", "--uninstall"],
        )
        .await;
        assert_eq!(code, 0, "{stdout}{stderr}");
    }
    assert_eq!(
        std::fs::read_to_string(home.join(".codex/config.toml")).unwrap(),
        CODEX_CONFIG
    );
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&home.join(".codex/config.toml")), 0o600);
    assert_eq!(json_file(&home.join(".codex/hooks.json")), codex_hooks);
    assert_eq!(
        json_file(&home.join(".gemini/settings.json")),
        gemini_settings
    );
    let (code, stdout, _) = hookwatch_as(home, server, &["doctor", "--agent", "gemini"]).await;
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("FAIL hooks: gemini-cli's are not installed"),
        "{stdout}"
    );
}

#[tokio::test]
async fn install_otel_refuses_an_agents_telemetry_that_goes_elsewhere_and_changes_nothing() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let server = "http://127.0.0.1:4000";
    std::fs::create_dir_all(home.join(".codex")).unwrap();
    std::fs::create_dir_all(home.join(".gemini")).unwrap();
    let codex = "[otel]\nmetrics_exporter = \"statsig\"\n";
    std::fs::write(home.join(".codex/config.toml"), codex).unwrap();
    let gemini = r#"{"telemetry":{"enabled":true,"otlpEndpoint":"http://collector:4317"},"hooksConfig":{"enabled":false}}"#;
    std::fs::write(home.join(".gemini/settings.json"), gemini).unwrap();
    let (code, _, stderr) =
        hookwatch_as(home, server, &["install", "--otel", "--agent", "codex"]).await;
    assert_ne!(code, 0);
    assert!(
        stderr.contains("otel.metrics_exporter is already set to \"statsig\""),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    let (code, _, stderr) =
        hookwatch_as(home, server, &["install", "--otel", "--agent", "gemini"]).await;
    assert_ne!(code, 0);
    assert!(stderr.contains("telemetry.otlpEndpoint"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(home.join(".codex/config.toml")).unwrap(),
        codex
    );
    assert_eq!(
        std::fs::read_to_string(home.join(".gemini/settings.json")).unwrap(),
        gemini
    );
    assert!(!home.join(".codex/hooks.json").exists(), "no hooks either");
    // Gemini's hooks switched off, found by doctor; a local scope is Claude Code's alone.
    let (code, stdout, _) = hookwatch_as(home, server, &["doctor", "--agent", "gemini"]).await;
    assert_eq!(code, 1);
    assert!(
        stdout.contains("FAIL hooks (user): Gemini's hooks are turned off"),
        "{stdout}"
    );
    let (code, _, stderr) = hookwatch_as(
        home,
        server,
        &["install", "--agent", "codex", "--scope", "local"],
    )
    .await;
    assert_ne!(code, 0);
    assert!(
        stderr.contains("codex has no local settings scope"),
        "{stderr}"
    );
}

#[tokio::test]
async fn codexs_token_is_written_into_a_file_only_its_owner_reads() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let output = tokio::process::Command::new(crate::helpers::binary())
        .args(["install", "--otel", "--agent", "codex"])
        .current_dir(home)
        .env("HOME", home)
        .env("HOOKWATCH_TOKEN", "ingest-s3cret")
        .env_remove("XDG_STATE_HOME")
        .env_remove("CODEX_HOME")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("the token (HOOKWATCH_TOKEN) is written in"),
        "{stdout}"
    );
    let path = home.join(".codex/config.toml");
    let config: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        config["otel"]["exporter"]["otlp-http"]["headers"]["Authorization"].as_str(),
        Some("Bearer ingest-s3cret")
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}
