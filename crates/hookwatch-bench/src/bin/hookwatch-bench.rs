//! `hookwatch-bench`: reproducible measurements of a `hookwatch` binary (see `bench.rs`).

use clap::Parser;
use hookwatch_bench::bench::{BenchArgs, run};

/// Measures a hookwatch server started as a child process; BENCHMARKS.md has the figures.
#[derive(Parser)]
#[command(name = "hookwatch-bench", version)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

fn main() -> anyhow::Result<()> {
    hookwatch_bench::run_to_end(run(Cli::parse().args))
}
