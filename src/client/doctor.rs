//! `hookwatch doctor`: one pass or fail line per check, so a user can see at a glance why
//! events are not arriving.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::ClientConfig;
use super::http::{Method, ServerUrl};
use super::install::{Scope, installed, read_settings};

/// One check's verdict.
pub struct Check {
    pub pass: bool,
    pub line: String,
}

fn check(pass: bool, line: String) -> Check {
    Check { pass, line }
}

/// Runs every check; the caller prints them and exits non-zero if any failed.
pub fn run(config: &ClientConfig, home: &Path, project: &Path) -> Vec<Check> {
    let mut checks = vec![server_check(config)];
    // Where each settings file sends Claude Code's own telemetry, read with its hooks.
    let mut telemetry = Vec::new();
    for scope in Scope::ALL {
        let path = scope.settings_path(home, project);
        let settings = read_settings(&path);
        if let Ok(Some(settings)) = &settings
            && let Some(endpoint) = crate::client::otel_settings::configured_endpoint(settings)
        {
            telemetry.push(format!("{} → {endpoint}", scope.name()));
        }
        checks.push(match settings {
            Ok(Some(settings)) => match installed(&settings) {
                (0, _) => check(
                    scope != Scope::User,
                    format!(
                        "hooks ({}): not installed in {}",
                        scope.name(),
                        path.display()
                    ),
                ),
                (events, mode) => check(
                    true,
                    format!(
                        "hooks ({}): installed for {events} events ({} mode) in {}",
                        scope.name(),
                        mode.unwrap_or("command"),
                        path.display()
                    ),
                ),
            },
            Ok(None) => check(
                scope != Scope::User,
                format!(
                    "hooks ({}): no settings file at {}",
                    scope.name(),
                    path.display()
                ),
            ),
            Err(e) => check(false, format!("hooks ({}): {e}", scope.name())),
        });
    }
    checks.push(telemetry_check(&telemetry));
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

fn server_check(config: &ClientConfig) -> Check {
    let server = match ServerUrl::parse(&config.server) {
        Ok(server) => server,
        Err(e) => return check(false, format!("server: {e}")),
    };
    let client = match config.http() {
        Ok(client) => client,
        Err(e) => return check(false, format!("server: {e}")),
    };
    let answer = client.request(
        &server,
        Method::Get,
        "/api/agents/health",
        None,
        b"",
        config.token.as_deref(),
        Duration::from_secs(2),
    );
    match answer {
        Ok(answer) if answer.status == 401 || answer.status == 403 => check(
            false,
            format!(
                "server: {} requires a token: {} (set HOOKWATCH_TOKEN)",
                server.display(),
                if config.token.is_some() {
                    "the one set was refused"
                } else {
                    "none is set"
                }
            ),
        ),
        Ok(answer) => {
            let health: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
            let status = health["status"].as_str().unwrap_or("unknown");
            let telemetry = match health["otlp"]["last_record_at"].as_str() {
                Some(at) => format!("Claude Code telemetry last arrived {at}"),
                None => "no Claude Code telemetry received yet".to_owned(),
            };
            check(
                answer.status == 200,
                format!(
                    "server: {} is reachable, version {}, status {status}, redis {}; {telemetry}",
                    server.display(),
                    health["version"].as_str().unwrap_or("?"),
                    health["redis"]["status"].as_str().unwrap_or("?"),
                ),
            )
        }
        Err(e) => check(
            false,
            format!("server: {e} (is `hookwatch serve` running?)"),
        ),
    }
}
