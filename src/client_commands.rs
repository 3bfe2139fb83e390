//! The hook client's commands: `send`, `replay`, `install` and `doctor`. None of them starts
//! an async runtime: `send` runs on every hook, and each millisecond it takes is the agent's.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use hookwatch::client::install::{self, Handler, Mode, Scope};
use hookwatch::client::otel_settings;
use hookwatch::client::{self, ClientConfig};
use hookwatch::domain::coding_agent::CodingAgent;

use crate::serve_command::duration;

/// What every client command needs.
#[derive(clap::Args)]
pub struct ClientArgs {
    /// The hookwatch server: http://host:port, or https://host behind TLS.
    #[arg(long, env = "HOOKWATCH_SERVER", default_value = client::DEFAULT_SERVER)]
    server: String,
    /// A PEM file of an https server's own certificate (pinned: a self-signed one, checked
    /// for its dates and host) or of the CA that signed it (a team's own); trusted instead of
    /// the public roots.
    #[arg(long, env = "HOOKWATCH_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Where undelivered events wait [default: $XDG_STATE_HOME/hookwatch/spool or
    /// ~/.local/state/hookwatch/spool]
    #[arg(long, env = "HOOKWATCH_SPOOL_DIR")]
    spool_dir: Option<PathBuf>,
    /// The spool's size limit in bytes; when full, the oldest events are dropped and counted.
    #[arg(long, env = "HOOKWATCH_SPOOL_MAX_BYTES", default_value_t = 64 * 1024 * 1024)]
    spool_max_bytes: u64,
}

impl ClientArgs {
    pub fn into_config(self) -> ClientConfig {
        ClientConfig {
            server: self.server,
            ca_cert: self.ca_cert,
            token: std::env::var("HOOKWATCH_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
            spool_dir: self.spool_dir.unwrap_or_else(client::default_spool_dir),
            spool_max_bytes: self.spool_max_bytes,
            debug: std::env::var_os("HOOKWATCH_DEBUG").is_some_and(|v| !v.is_empty()),
        }
    }
}

#[derive(clap::Args)]
pub struct SendArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The source app [default: the last part of the payload's cwd]
    #[arg(long, env = "HOOKWATCH_APP")]
    app: Option<String>,
    /// Whose hook this is: claude (Claude Code), codex (Codex CLI) or gemini (Gemini CLI).
    /// Each gets what its hook contract wants on stdout: nothing, or for Gemini `{}`.
    #[arg(long, env = "HOOKWATCH_AGENT", default_value = "claude", value_parser = coding_agent)]
    agent: CodingAgent,
    /// The longest the send may take, connecting included (then it spools).
    #[arg(long, env = "HOOKWATCH_SEND_TIMEOUT", default_value = "500ms", value_parser = duration)]
    timeout: i64,
    /// For a PermissionRequest hook: wait this long (e.g. 60s) for a person to answer on the
    /// dashboard, and print Claude Code's decision; with no answer, print nothing (Claude Code
    /// then asks in the terminal). The only mode in which send writes a decision to stdout;
    /// Claude Code's only.
    #[arg(long, value_parser = duration)]
    wait_for_decision: Option<i64>,
}

#[derive(clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
pub struct InstallArgs {
    /// Which agent's hooks: claude (Claude Code), codex (Codex CLI: hooks.json) or gemini
    /// (Gemini CLI: settings.json).
    #[arg(long, default_value = "claude", value_parser = coding_agent)]
    agent: CodingAgent,
    /// Whose settings: user (~/.claude/settings.json, ~/.codex/hooks.json,
    /// ~/.gemini/settings.json), project (.claude/settings.json, .codex/hooks.json,
    /// .gemini/settings.json) or local (.claude/settings.local.json; Claude Code only).
    #[arg(long, value_enum, default_value = "user")]
    scope: Scope,
    /// command: a `hookwatch send` per event (spools while the server is down); http: Claude
    /// Code posts to the server itself (no process per event; events are lost while it is down).
    #[arg(long, value_enum, default_value = "command")]
    mode: Mode,
    /// The hookwatch server the hooks send to.
    #[arg(long, env = "HOOKWATCH_SERVER", default_value = client::DEFAULT_SERVER)]
    server: String,
    /// Command mode: the hooks trust this CA (a PEM file) for an https server. Http mode
    /// goes through Claude Code, which trusts NODE_EXTRA_CA_CERTS.
    #[arg(long, env = "HOOKWATCH_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Remove hookwatch's hooks instead.
    #[arg(long)]
    uninstall: bool,
    /// Let a person answer permission requests on the dashboard: the PermissionRequest hook
    /// runs `hookwatch send --wait-for-decision 60s` (command mode only). With no answer in
    /// 60 s, or with the server down, Claude Code asks in the terminal as usual.
    #[arg(long)]
    approvals: bool,
    /// Also send Claude Code's own telemetry (OTLP logs and metrics: API requests, cost,
    /// tokens) to the server: the `env` block of the settings file. The token, if any, is read
    /// from HOOKWATCH_TOKEN when Claude Code starts (`hookwatch otel-headers`), never written.
    #[arg(long)]
    otel: bool,
}

/// Sends one event from stdin; spools it when the server cannot take it. Never fails.
pub fn send(args: SendArgs) {
    let config = args.client.into_config();
    let deadline = Duration::from_millis(args.timeout.max(1) as u64);
    if let Some(wait) = args
        .wait_for_decision
        .filter(|_| args.agent == CodingAgent::ClaudeCode)
    {
        let decision = client::approvals::send_and_wait_for_decision(
            &config,
            args.app.as_deref(),
            deadline,
            Duration::from_millis(wait.max(1) as u64),
            std::io::stdin().lock(),
        );
        if let Some(decision) = decision {
            println!("{decision}");
        }
        return;
    }
    client::send(
        &config,
        args.app.as_deref(),
        args.agent,
        deadline,
        std::io::stdin().lock(),
    );
    if args.agent == CodingAgent::Gemini {
        // Gemini shows stdout that is not JSON to the user; the empty object decides nothing.
        println!("{{}}");
    }
}

/// A coding agent's name on the command line: `claude`, `codex` or `gemini` (or the names the
/// views use: `claude-code`, `gemini-cli`).
pub fn coding_agent(name: &str) -> Result<CodingAgent, String> {
    CodingAgent::parse(name)
        .ok_or_else(|| format!("unknown agent {name:?}: expected claude, codex or gemini"))
}

pub fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let config = args.client.into_config();
    let quiet = args.quiet;
    let waiting = config.spool().state().events;
    let report = client::replay(&config, |progress| {
        if !quiet {
            eprintln!(
                "replayed {}/{waiting} (duplicates {}, rejected {})",
                progress.delivered + progress.duplicates + progress.rejected,
                progress.duplicates,
                progress.rejected
            );
        }
    })
    .map_err(anyhow::Error::msg)?;
    if !quiet {
        if report.busy {
            println!(
                "another replay is draining the spool; {} events waiting",
                report.left
            );
        } else {
            println!(
                "delivered {}, already stored {}, rejected {}, still spooled {}",
                report.delivered, report.duplicates, report.rejected, report.left
            );
        }
    }
    if report.left > 0 && !report.busy {
        anyhow::bail!("the server did not take every event; they stay spooled");
    }
    Ok(())
}

pub fn install(args: InstallArgs) -> anyhow::Result<()> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .context("HOME is not set")?;
    let project = std::env::current_dir()?;
    let agent = args.agent;
    let path = args
        .scope
        .hooks_path(agent, &home, &project)
        .map_err(anyhow::Error::msg)?;
    let executable = std::env::current_exe()?
        .canonicalize()
        .context("finding the hookwatch binary")?;
    if agent != CodingAgent::ClaudeCode {
        if args.mode != Mode::Command {
            anyhow::bail!(
                "--mode http is Claude Code's: {} runs command hooks only; nothing was changed",
                agent.name()
            );
        }
        if args.approvals {
            anyhow::bail!(
                "--approvals answers Claude Code's permission requests; nothing was changed"
            );
        }
    }
    let handler = Handler {
        agent,
        mode: args.mode,
        executable,
        explicit_server: args.server != client::DEFAULT_SERVER,
        ca_cert: args
            .ca_cert
            .map(|path| path.canonicalize().context("finding --ca-cert"))
            .transpose()?,
        server: args.server,
        token_header: std::env::var_os("HOOKWATCH_TOKEN").is_some(),
        approvals_s: args.approvals.then_some(60),
    };
    if args.approvals && args.mode != Mode::Command {
        anyhow::bail!("--approvals needs --mode command: an http hook cannot wait for a decision");
    }
    if args.otel && !args.uninstall && args.scope != Scope::User {
        anyhow::bail!(
            "--otel goes in the user's settings: Claude Code ignores the OpenTelemetry exporter \
             variables in a repository's .claude/settings.json and .claude/settings.local.json, \
             and hookwatch writes Codex's and Gemini's telemetry settings for the user only; run \
             `hookwatch install --otel` without --scope (for a whole organization, Claude \
             Code's managed settings carry them); nothing was changed"
        );
    }
    let otel = match (args.otel, agent) {
        (false, _) => None,
        (true, CodingAgent::ClaudeCode) => {
            Some(AgentTelemetry::Claude(otel_settings::OtelTarget {
                endpoint: handler.server.clone(),
                headers_helper: handler
                    .token_header
                    .then(|| format!("{} otel-headers", install::shell_quote(&handler.executable))),
            }))
        }
        (true, other) => Some(AgentTelemetry::Other(other)),
    };
    if let Some(AgentTelemetry::Claude(target)) = &otel
        && !args.uninstall
    {
        // A conflict with the user's own telemetry settings changes nothing at all.
        let mut trial = install::read_settings(&path)?.unwrap_or_default();
        otel_settings::add_otel(&mut trial, target)?;
    }
    if let Some(AgentTelemetry::Other(other)) = &otel
        && !args.uninstall
    {
        // First: a setting that sends elsewhere changes nothing at all.
        agent_telemetry(*other, &home, &handler, false)?;
    }
    let mut change = install::Change::default();
    let mut otel_changed = 0;
    let (changed, backup) = install::edit_settings(&path, |settings| {
        if args.uninstall {
            change = install::Change {
                added: 0,
                removed: install::remove_ours(settings),
            };
            // Telemetry settings hookwatch added go with its hooks, --otel or not.
            if agent == CodingAgent::ClaudeCode {
                otel_changed = otel_settings::remove_otel(settings);
            }
        } else {
            change = install::add_ours(settings, &handler);
            if let Some(AgentTelemetry::Claude(target)) = &otel {
                otel_changed = otel_settings::add_otel(settings, target).unwrap_or(0);
            }
        }
    })?;
    let backup = backup
        .map(|b| format!(" (backup: {})", b.display()))
        .unwrap_or_default();
    let whose = match agent {
        CodingAgent::ClaudeCode => String::new(),
        other => format!(" for {}", other.name()),
    };
    match (changed, args.uninstall) {
        (false, true) => println!(
            "no hookwatch hooks{whose} in {}; nothing changed",
            path.display()
        ),
        (false, false) => println!(
            "hookwatch hooks{whose} already installed in {} for {} events; nothing changed",
            path.display(),
            change.added
        ),
        (true, true) => println!(
            "removed hookwatch hooks{whose} from {} events in {}{backup}",
            change.removed,
            path.display()
        ),
        (true, false) => println!(
            "installed hookwatch hooks{whose} ({} mode, server {}) for {} events in {}{backup}",
            match args.mode {
                Mode::Command => "command",
                Mode::Http => "http",
            },
            handler.server,
            change.added,
            path.display()
        ),
    }
    if args.uninstall && agent != CodingAgent::ClaudeCode {
        agent_telemetry(agent, &home, &handler, true)?;
    }
    match (&otel, args.uninstall) {
        (Some(AgentTelemetry::Other(_)), _) => {}
        (_, true) if otel_changed > 0 => {
            println!("removed hookwatch's {otel_changed} telemetry settings");
        }
        (Some(AgentTelemetry::Claude(target)), false) if otel_changed > 0 => println!(
            "Claude Code's telemetry (OTLP logs and metrics) goes to {} from its next start{}",
            target.endpoint,
            if target.headers_helper.is_some() {
                ", with HOOKWATCH_TOKEN read by `hookwatch otel-headers`"
            } else {
                ""
            }
        ),
        (Some(_), false) => println!("Claude Code's telemetry already goes to hookwatch"),
        _ => {}
    }
    Ok(())
}

/// Whose telemetry `install --otel` sets up: Claude Code's lives in the same settings file as
/// its hooks; Codex's and Gemini's in their own configuration.
enum AgentTelemetry {
    Claude(otel_settings::OtelTarget),
    Other(CodingAgent),
}

/// `install --otel --agent codex|gemini` (and its `--uninstall`).
fn agent_telemetry(
    agent: CodingAgent,
    home: &std::path::Path,
    handler: &Handler,
    uninstall: bool,
) -> anyhow::Result<()> {
    let record = client::agent_otel::InstallRecord::default_path();
    let name = agent.name();
    if uninstall {
        let change = client::agent_otel::uninstall(agent, home, &record)?;
        match change.keys {
            0 => println!(
                "no telemetry settings of hookwatch's for {name} in {}",
                change.file.display()
            ),
            n => println!(
                "put back {n} of {name}'s telemetry settings in {}",
                change.file.display()
            ),
        }
        return Ok(());
    }
    let token = std::env::var("HOOKWATCH_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    let written_token = token.as_deref().filter(|_| agent == CodingAgent::Codex);
    let change = client::agent_otel::install(agent, home, &handler.server, written_token, &record)?;
    match change.keys {
        0 => println!(
            "{name}'s telemetry already goes to hookwatch ({})",
            change.file.display()
        ),
        n => println!(
            "{name}'s telemetry (OTLP logs, traces and metrics) goes to {} from its next start \
             ({n} settings in {})",
            handler.server,
            change.file.display()
        ),
    }
    match (agent, token.is_some()) {
        (CodingAgent::Codex, true) => println!(
            "the token (HOOKWATCH_TOKEN) is written in {}: Codex has no header helper",
            change.file.display()
        ),
        (CodingAgent::Gemini, true) => println!(
            "Gemini sends the token when started with \
             OTEL_EXPORTER_OTLP_HEADERS=\"Authorization=Bearer $HOOKWATCH_TOKEN\""
        ),
        _ => {}
    }
    Ok(())
}

/// `hookwatch otel-headers`: the header Claude Code's `otelHeadersHelper` asks for.
pub fn otel_headers() {
    let token = std::env::var("HOOKWATCH_TOKEN").ok();
    println!("{}", otel_settings::headers_json(token.as_deref()));
}

#[derive(clap::Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Which agent's hooks and telemetry to check: claude, codex or gemini.
    #[arg(long, default_value = "claude", value_parser = coding_agent)]
    agent: CodingAgent,
}

pub fn doctor(args: DoctorArgs) -> anyhow::Result<()> {
    let config = args.client.into_config();
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let project = std::env::current_dir()?;
    let checks = client::doctor::run(&config, &home, &project, args.agent);
    for check in &checks {
        println!(
            "{} {}",
            if check.pass { "PASS" } else { "FAIL" },
            check.line
        );
    }
    if checks.iter().any(|c| !c.pass) {
        std::process::exit(1);
    }
    Ok(())
}
