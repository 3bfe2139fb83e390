//! The tools run end to end against a real `hookwatch` binary: the one `cargo test` at the
//! workspace root builds beside them (`target/debug/hookwatch`).

use std::path::PathBuf;

/// The `hookwatch` binary built beside this crate's binaries.
fn hookwatch() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_hookwatch-bench")).with_file_name("hookwatch");
    assert!(
        path.is_file(),
        "no hookwatch binary at {}: run the tests from the workspace root (scripts/test), or \
         build it first with `cargo build -p hookwatch`",
        path.display()
    );
    path
}

/// Runs `hookwatch-bench args…` against the built `hookwatch`; asserts it succeeded and that
/// its output has every one of `sections`.
async fn bench_prints(args: &[&std::ffi::OsStr], sections: &[&str]) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookwatch-bench"))
        .env("HOOKWATCH_BIN", hookwatch())
        .args(args)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the benchmark failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for section in sections {
        assert!(stdout.contains(section), "no {section:?} in:\n{stdout}");
    }
}

#[tokio::test]
async fn the_benchmark_runs_end_to_end_against_the_hookwatch_binary() {
    let data_dir = tempfile::tempdir().unwrap();
    let flags = [
        "--events",
        "200",
        "--connections",
        "4",
        "--rate",
        "100",
        "--rate-seconds",
        "1",
        "--store-events",
        "500",
        "--reads",
        "3",
        "--data-dir",
    ];
    let mut args: Vec<&std::ffi::OsStr> = flags.iter().map(std::ffi::OsStr::new).collect();
    args.push(data_dir.path().as_os_str());
    bench_prints(
        &args,
        &[
            "## ingest, closed loop: 200 events",
            "## ingest, open loop",
            "## reads on a store of",
            "peak (VmHWM)",
        ],
    )
    .await;
}

/// `--floor` runs the floor and hookwatch at both durabilities, every answer a 200, and
/// reports each as a fraction of the floor.
#[tokio::test]
async fn the_floor_comparison_runs_end_to_end() {
    let data_dir = tempfile::tempdir().unwrap();
    let mut args: Vec<&std::ffi::OsStr> = [
        "--floor",
        "--events",
        "200",
        "--connections",
        "4",
        "--rounds",
        "1",
        "--data-dir",
    ]
    .iter()
    .map(std::ffi::OsStr::new)
    .collect();
    args.push(data_dir.path().as_os_str());
    bench_prints(
        &args,
        &[
            "round 0 floor",
            "round 0 full",
            "round 0 normal",
            "## medians",
            "× the floor's",
        ],
    )
    .await;
}

#[tokio::test]
async fn without_a_hookwatch_binary_the_benchmark_says_how_to_get_one() {
    let missing = tempfile::tempdir().unwrap().path().join("hookwatch");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookwatch-bench"))
        .env("HOOKWATCH_BIN", &missing)
        .args(["--events", "10"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no hookwatch binary at")
            && stderr.contains("cargo build --release -p hookwatch"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_otlp_benchmark_runs_beside_hook_ingest() {
    let flags = ["--otlp", "4", "--events", "100", "--connections", "2"];
    let args: Vec<&std::ffi::OsStr> = flags.iter().map(std::ffi::OsStr::new).collect();
    bench_prints(
        &args,
        &[
            "## hook events, closed loop: 100",
            "## OTLP logs (HTTP/protobuf), closed loop: 2048 records in 4 exports of 512",
            "records/s",
        ],
    )
    .await;
}
