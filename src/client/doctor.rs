//! `hookwatch doctor`: one pass or fail line per check, so a user can see at a glance why
//! events are not arriving.
//!
//! Each installed piece is checked with the credentials it will really use: the server is
//! reached without a token (`/healthz`), the hooks' token (`HOOKWATCH_TOKEN`) is tried where
//! the hooks write (an empty `POST /events`, which stores nothing: accepted means 400 for the
//! body, refused 401 or 403), and Claude Code's telemetry, when set up, where it exports (an
//! empty `POST /v1/logs`, with the token its headers helper gives). Hooks may be installed in
//! any settings scope; they fail only when no scope has them.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::ClientConfig;
use super::http::{Method, ServerUrl};
use super::install::{Scope, installed, read_settings};
use crate::domain::coding_agent::CodingAgent;

/// One check's verdict.
pub struct Check {
    pub pass: bool,
    pub line: String,
}

fn check(pass: bool, line: String) -> Check {
    Check { pass, line }
}

/// Runs every check for one agent's hooks and telemetry; the caller prints them and exits
/// non-zero if any failed.
pub fn run(config: &ClientConfig, home: &Path, project: &Path, agent: CodingAgent) -> Vec<Check> {
    let mut checks = server_checks(config);
    let mut installed_anywhere = false;
    let name = agent.name();
    // Where each settings file sends Claude Code's own telemetry, read with its hooks.
    let mut telemetry = Vec::new();
    for &scope in Scope::of(agent) {
        let Ok(path) = scope.hooks_path(agent, home, project) else {
            continue;
        };
        let settings = read_settings(&path);
        if agent == CodingAgent::ClaudeCode
            && let Ok(Some(settings)) = &settings
            && let Some(endpoint) = crate::client::otel_settings::configured_endpoint(settings)
        {
            telemetry.push(format!("{} → {endpoint}", scope.name()));
        }
        if let Ok(Some(settings)) = &settings
            && let Some(off) = hooks_turned_off(agent, settings)
        {
            checks.push(check(
                false,
                format!("hooks ({}): {off} in {}", scope.name(), path.display()),
            ));
        }
        checks.push(match settings {
            Ok(Some(settings)) => match installed(&settings) {
                (0, _) => check(
                    true,
                    format!(
                        "hooks ({}): not installed in {}",
                        scope.name(),
                        path.display()
                    ),
                ),
                (events, mode) => check(
                    {
                        installed_anywhere = true;
                        true
                    },
                    format!(
                        "hooks ({}): installed for {events} events ({} mode) in {}",
                        scope.name(),
                        mode.unwrap_or("command"),
                        path.display()
                    ),
                ),
            },
            Ok(None) => check(
                true,
                format!(
                    "hooks ({}): no settings file at {}",
                    scope.name(),
                    path.display()
                ),
            ),
            Err(e) => check(false, format!("hooks ({}): {e}", scope.name())),
        });
    }
    if !installed_anywhere {
        let command = match agent {
            CodingAgent::ClaudeCode => "hookwatch install".to_owned(),
            CodingAgent::Codex => "hookwatch install --agent codex".to_owned(),
            CodingAgent::Gemini => "hookwatch install --agent gemini".to_owned(),
        };
        checks.push(check(
            false,
            format!("hooks: {name}'s are not installed in any settings file ({command})"),
        ));
    }
    match agent {
        CodingAgent::ClaudeCode => {
            checks.push(telemetry_check(&telemetry));
            if !telemetry.is_empty() {
                checks.push(telemetry_token_check(config));
            }
        }
        other => checks.push(agent_telemetry_check(other, home)),
    }
    if agent == CodingAgent::Codex
        && let Some(off) = codex_hooks_feature_off(home)
    {
        checks.push(check(false, off));
    }
    let state = config.spool().state();
    checks.push(check(
        state.dropped == 0,
        format!(
            "spool: {} events waiting ({} bytes, limit {}), {} dropped, in {}",
            state.events,
            state.bytes,
            config.spool_max_bytes,
            state.dropped,
            config.spool_dir.display()
        ),
    ));
    checks
}

/// Gemini turns every hook off with `hooksConfig.enabled = false`.
fn hooks_turned_off(
    agent: CodingAgent,
    settings: &serde_json::Map<String, Value>,
) -> Option<String> {
    (agent == CodingAgent::Gemini
        && settings.get("hooksConfig").and_then(|c| c.get("enabled")) == Some(&Value::Bool(false)))
    .then(|| "Gemini's hooks are turned off (hooksConfig.enabled is false)".to_owned())
}

/// Codex runs no hook with `[features] hooks = false` (or its older name, `codex_hooks`).
fn codex_hooks_feature_off(home: &Path) -> Option<String> {
    let path = super::install::codex_home(home).join("config.toml");
    let text = std::fs::read_to_string(&path).ok()?;
    let doc: toml_edit::DocumentMut = text.parse().ok()?;
    let features = doc.get("features")?;
    ["hooks", "codex_hooks"]
        .into_iter()
        .find(|key| features.get(key).and_then(|v| v.as_bool()) == Some(false))
        .map(|key| {
            format!(
                "hooks: Codex's are turned off ([features] {key} = false in {})",
                path.display()
            )
        })
}

/// Where Codex's or Gemini's own telemetry goes, if `install --otel --agent` set it up.
fn agent_telemetry_check(agent: CodingAgent, home: &Path) -> Check {
    let name = agent.name();
    let short = if agent == CodingAgent::Codex {
        "codex"
    } else {
        "gemini"
    };
    match super::agent_otel::configured_endpoint(agent, home) {
        Some(endpoint) => check(true, format!("telemetry: {name} exports to {endpoint}")),
        None => check(
            true,
            format!(
                "telemetry: {name}'s own OTLP export is not set up (hookwatch install --otel \
                 --agent {short})"
            ),
        ),
    }
}

/// Where Claude Code's own telemetry goes, if `install --otel` set it up (optional: hooks work
/// without it); `set_up` lists `scope → endpoint`.
fn telemetry_check(set_up: &[String]) -> Check {
    if set_up.is_empty() {
        check(
            true,
            "telemetry: Claude Code's own OTLP export is not set up (hookwatch install --otel)"
                .into(),
        )
    } else {
        check(
            true,
            format!(
                "telemetry: Claude Code exports to hookwatch ({})",
                set_up.join(", ")
            ),
        )
    }
}

/// Asks the server `path` with the hooks' token.
fn ask(
    config: &ClientConfig,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
    token: Option<&str>,
) -> Result<(ServerUrl, super::http::Answer), String> {
    let server = ServerUrl::parse(&config.server).map_err(|e| e.to_string())?;
    let client = config.http().map_err(|e| e.to_string())?;
    let answer = client
        .request(
            &server,
            method,
            path,
            content_type,
            body,
            token,
            Duration::from_secs(2),
        )
        .map_err(|e| e.to_string())?;
    Ok((server, answer))
}

/// Whether the server answers, what its health says, and whether it takes the hooks' token.
fn server_checks(config: &ClientConfig) -> Vec<Check> {
    let (server, _) = match ask(config, Method::Get, "/healthz", None, b"", None) {
        Ok(reached) => reached,
        Err(e) => {
            return vec![check(
                false,
                format!("server: {e} (is `hookwatch serve` running?)"),
            )];
        }
    };
    let token = config.token.as_deref();
    let health = ask(config, Method::Get, "/api/agents/health", None, b"", token)
        .ok()
        .filter(|(_, answer)| answer.status == 200)
        .map(|(_, answer)| serde_json::from_slice::<Value>(&answer.body).unwrap_or_default());
    let reachable = match &health {
        Some(health) => {
            let telemetry = match health["otlp"]["last_record_at"].as_str() {
                Some(at) => format!("Claude Code telemetry last arrived {at}"),
                None => "no Claude Code telemetry received yet".to_owned(),
            };
            format!(
                "server: {} is reachable, version {}, status {}, redis {}; {telemetry}",
                server.display(),
                health["version"].as_str().unwrap_or("?"),
                health["status"].as_str().unwrap_or("unknown"),
                health["redis"]["status"].as_str().unwrap_or("?"),
            )
        }
        None => format!(
            "server: {} is reachable (its health needs a read token, which the hooks do not \
             need)",
            server.display()
        ),
    };
    let ingest = match ask(
        config,
        Method::Post,
        "/events",
        Some("application/json"),
        b"{}",
        token,
    ) {
        Ok((_, answer)) if answer.status == 401 || answer.status == 403 => check(
            false,
            format!(
                "hooks' token: {} refuses it for writing events: {} (set HOOKWATCH_TOKEN to an \
                 ingest token)",
                server.display(),
                if token.is_some() {
                    "the one set is not an ingest token"
                } else {
                    "none is set"
                }
            ),
        ),
        Ok(_) => check(
            true,
            format!(
                "hooks' token: {} takes events from the hooks ({})",
                server.display(),
                if token.is_some() {
                    "HOOKWATCH_TOKEN is an ingest token"
                } else {
                    "no token is needed"
                }
            ),
        ),
        Err(e) => check(false, format!("hooks' token: could not be tried: {e}")),
    };
    vec![check(true, reachable), ingest]
}

/// Whether the server takes Claude Code's telemetry with the token its headers helper gives
/// (`hookwatch otel-headers` reads the same HOOKWATCH_TOKEN).
fn telemetry_token_check(config: &ClientConfig) -> Check {
    let token = config.token.as_deref();
    match ask(
        config,
        Method::Post,
        "/v1/logs",
        Some("application/json"),
        b"{}",
        token,
    ) {
        Ok((_, answer)) if answer.status == 200 => check(
            true,
            "telemetry: the server takes Claude Code's export with the helper's token".into(),
        ),
        Ok((server, answer)) => check(
            false,
            format!(
                "telemetry: {} answers {} to Claude Code's export: {}",
                server.display(),
                answer.status,
                if answer.status == 401 || answer.status == 403 {
                    "set HOOKWATCH_TOKEN to an ingest token where Claude Code runs"
                } else {
                    "see the server's log"
                }
            ),
        ),
        Err(e) => check(false, format!("telemetry: could not be tried: {e}")),
    }
}
