//! `hookwatch-floor`: the upstream's write path rebuilt, the floor `hookwatch-bench --floor`
//! measures hookwatch's ingest against (see `floor.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// Serves `POST /events` as the upstream's server writes it: one INSERT, WAL, synchronous =
/// NORMAL, one thread. A yardstick for benchmarks, not a server.
#[derive(Parser)]
#[command(name = "hookwatch-floor", version)]
struct Cli {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// Where its database (`floor.db`) goes.
    #[arg(long)]
    data_dir: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    hookwatch_bench::floor::serve(cli.addr, &cli.data_dir)
}
