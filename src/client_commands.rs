//! The hook client's commands: `send`, `replay`, `install` and `doctor`. None of them starts
//! an async runtime: `send` runs on every hook, and each millisecond it takes is the agent's.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use hookwatch::client::install::{self, Handler, Mode, Scope};
use hookwatch::client::otel_settings;
use hookwatch::client::{self, ClientConfig};

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
    /// The longest the send may take, connecting included (then it spools).
    #[arg(long, env = "HOOKWATCH_SEND_TIMEOUT", default_value = "500ms", value_parser = duration)]
    timeout: i64,
    /// For a PermissionRequest hook: wait this long (e.g. 60s) for a person to answer on the
    /// dashboard, and print Claude Code's decision; with no answer, print nothing (Claude Code
    /// then asks in the terminal). The only mode in which send writes to stdout.
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
    /// Whose settings: user (~/.claude/settings.json), project (.claude/settings.json) or
    /// local (.claude/settings.local.json).
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
    if let Some(wait) = args.wait_for_decision {
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
        deadline,
        std::io::stdin().lock(),
    );
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
    let path = args.scope.settings_path(&home, &project);
    let executable = std::env::current_exe()?
        .canonicalize()
        .context("finding the hookwatch binary")?;
    let handler = Handler {
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
            "--otel goes in the user's settings (~/.claude/settings.json): Claude Code ignores \
             the OpenTelemetry exporter variables in a repository's .claude/settings.json and \
             .claude/settings.local.json; run `hookwatch install --otel` without --scope (for \
             a whole organization, Claude Code's managed settings carry them); nothing was changed"
        );
    }
    let otel = args.otel.then(|| otel_settings::OtelTarget {
        endpoint: handler.server.clone(),
        headers_helper: handler
            .token_header
            .then(|| format!("{} otel-headers", install::shell_quote(&handler.executable))),
    });
    if let Some(target) = &otel
        && !args.uninstall
    {
        // A conflict with the user's own telemetry settings changes nothing at all.
        let mut trial = install::read_settings(&path)?.unwrap_or_default();
        otel_settings::add_otel(&mut trial, target)?;
    }
    let mut change = install::Change::default();
    let mut otel_changed = 0;
    let (changed, backup) = install::edit_settings(&path, |settings| {
        if args.uninstall {
            change = install::Change {
                added: 0,
                removed: install::remove_ours(settings),
            };
            otel_changed = otel_settings::remove_otel(settings);
        } else {
            change = install::add_ours(settings, &handler);
            if let Some(target) = &otel {
                otel_changed = otel_settings::add_otel(settings, target).unwrap_or(0);
            }
        }
    })?;
    let backup = backup
        .map(|b| format!(" (backup: {})", b.display()))
        .unwrap_or_default();
    match (changed, args.uninstall) {
        (false, true) => println!("no hookwatch hooks in {}; nothing changed", path.display()),
        (false, false) => println!(
            "hookwatch hooks already installed in {} for {} events; nothing changed",
            path.display(),
            change.added
        ),
        (true, true) => println!(
            "removed hookwatch hooks from {} events in {}{backup}",
            change.removed,
            path.display()
        ),
        (true, false) => println!(
            "installed hookwatch hooks ({} mode, server {}) for {} events in {}{backup}",
            match args.mode {
                Mode::Command => "command",
                Mode::Http => "http",
            },
            handler.server,
            change.added,
            path.display()
        ),
    }
    match (&otel, args.uninstall) {
        (_, true) if otel_changed > 0 => {
            println!("removed hookwatch's {otel_changed} telemetry settings");
        }
        (Some(target), false) if otel_changed > 0 => println!(
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

/// `hookwatch otel-headers`: the header Claude Code's `otelHeadersHelper` asks for.
pub fn otel_headers() {
    let token = std::env::var("HOOKWATCH_TOKEN").ok();
    println!("{}", otel_settings::headers_json(token.as_deref()));
}

pub fn doctor(config: ClientConfig) -> anyhow::Result<()> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let project = std::env::current_dir()?;
    let checks = client::doctor::run(&config, &home, &project);
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
