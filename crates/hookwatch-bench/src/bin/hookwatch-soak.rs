//! `hookwatch-soak`: a long run of a `hookwatch` binary under mixed load and faults (see
//! `soak.rs`).

use clap::Parser;
use hookwatch_bench::soak::{SoakArgs, run};

/// Runs hookwatch under ingest, reads, WebSocket clients, Redis kills and a server kill, then
/// checks that every acknowledged event is stored.
#[derive(Parser)]
#[command(name = "hookwatch-soak", version)]
struct Cli {
    #[command(flatten)]
    args: SoakArgs,
}

fn main() -> anyhow::Result<()> {
    hookwatch_bench::run_to_end(run(Cli::parse().args))
}
