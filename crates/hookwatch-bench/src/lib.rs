//! hookwatch's measuring tools, kept out of the product: `hookwatch-bench` (ingest, reads,
//! live delivery, the cache, retention, scale-out and the hook client, measured against a real
//! `hookwatch serve`) and `hookwatch-soak` (a long run under mixed load and faults). Both start
//! the `hookwatch` binary as a child process, so the server's CPU and memory are its own; see
//! [`hookwatch_binary`] for which one. `hookwatch-floor` is the upstream's write path rebuilt,
//! the floor `hookwatch-bench --floor` measures hookwatch's ingest against.

pub mod bench;
pub mod floor;
pub mod soak;

use std::path::PathBuf;

use anyhow::bail;

/// Runs a tool to its end on a multi-threaded runtime (the tools drive many connections at once).
pub fn run_to_end(
    tool: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(tool)
}

/// The `hookwatch` binary the tools run: `$HOOKWATCH_BIN`, or the one built beside this tool
/// (`target/release/hookwatch` for `target/release/hookwatch-bench`).
pub fn hookwatch_binary() -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os("HOOKWATCH_BIN") {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()?.with_file_name("hookwatch"),
    };
    if !path.is_file() {
        bail!(
            "no hookwatch binary at {}: build it beside this tool with \
             `cargo build --release -p hookwatch`, or set HOOKWATCH_BIN",
            path.display()
        );
    }
    Ok(path)
}
