//! The `hookwatch` binary: parses arguments and calls into the library.
//!
//! Each command's arguments live with it: `serve_command.rs` (the server's options and how they
//! become a `Config`) and `client_commands.rs` (the hook client). These are the binary's modules,
//! not the library's.

use clap::{Parser, Subcommand};

use client_commands::{DoctorArgs, InstallArgs, ReplayArgs, SendArgs};
use serve_command::ServeArgs;

mod client_commands;
mod serve_command;

/// mimalloc instead of glibc's allocator: request threads allocate what the writer thread
/// frees, which glibc serves slowly (its arenas consolidate and lock); see BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "hookwatch",
    version,
    about = "Observability server for fleets of AI coding agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Download stored events (GET /api/export) as JSON lines or CSV, with progress on stderr.
    /// Uses HOOKWATCH_TOKEN as the read token.
    Export(hookwatch::export::ExportArgs),
    #[command(about = SEND_ABOUT)]
    Send(SendArgs),
    /// Deliver the spooled events now.
    Replay(ReplayArgs),
    /// Add hookwatch's hooks to Claude Code's settings, or with --agent to Codex CLI's or
    /// Gemini CLI's (or remove them with --uninstall).
    Install(InstallArgs),
    /// Check the server, an agent's installed hooks and telemetry, and the spool.
    Doctor(DoctorArgs),
    /// Print the Authorization header (from HOOKWATCH_TOKEN) as JSON; Claude Code's
    /// otelHeadersHelper runs it (`install --otel`).
    OtelHeaders,
}

const SEND_ABOUT: &str = "Send one hook event (JSON on stdin) to the server; run by Claude Code, \
     Codex CLI (--agent codex) or Gemini CLI (--agent gemini) as a command hook. Prints nothing \
     on stdout (Gemini gets {}, which decides nothing), always exits 0, and spools the event if \
     the server cannot take it.";

// `hookwatch send` alone: the same arguments, without building every other command's.
#[derive(Parser)]
#[command(name = "hookwatch send", version, about = SEND_ABOUT)]
struct SendCli {
    #[command(flatten)]
    args: SendArgs,
}

fn main() -> anyhow::Result<()> {
    // `send` runs on every hook and its time is the agent's: clap builds only its arguments
    // (building all of serve's was a sixth of what a send executed; BENCHMARKS.md).
    if std::env::args_os()
        .nth(1)
        .is_some_and(|command| command == "send")
    {
        let arguments = std::env::args_os().skip(2);
        match SendCli::try_parse_from(std::iter::once("hookwatch send".into()).chain(arguments)) {
            Ok(cli) => client_commands::send(cli.args),
            Err(e) if is_help(&e) => e.exit(),
            // A hook must never fail the agent, even when its command line is wrong. Help asked
            // for is still printed: a hook never asks for it, a person reading it does.
            Err(e) => {
                if std::env::var_os("HOOKWATCH_DEBUG").is_some() {
                    eprintln!("hookwatch send: {e}");
                }
            }
        }
        // At once: a hook's time is the agent's.
        std::process::exit(0);
    }
    let cli = Cli::parse();
    let cli = match cli.command {
        Command::Send(_) => unreachable!("send is parsed on its own, above"),
        Command::Replay(args) => return client_commands::replay(args),
        Command::Install(args) => return client_commands::install(args),
        Command::Doctor(args) => return client_commands::doctor(args),
        Command::OtelHeaders => {
            client_commands::otel_headers();
            return Ok(());
        }
        command => Cli { command },
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOOKWATCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: a log file or journal gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve_command::serve((*args).into_config()?)),
        Command::Export(args) => hookwatch::export::run(args),
        Command::Send(_)
        | Command::Replay(_)
        | Command::Install(_)
        | Command::Doctor(_)
        | Command::OtelHeaders => {
            unreachable!("client commands run without the runtime")
        }
    }
}

fn is_help(e: &clap::Error) -> bool {
    matches!(
        e.kind(),
        clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
    )
}
