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

#[tokio::test]
async fn the_benchmark_runs_end_to_end_against_the_hookwatch_binary() {
    let data_dir = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookwatch-bench"))
        .env("HOOKWATCH_BIN", hookwatch())
        .args([
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
        ])
        .arg(data_dir.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for section in [
        "## ingest, closed loop: 200 events",
        "## ingest, open loop",
        "## reads on a store of",
        "peak (VmHWM)",
    ] {
        assert!(stdout.contains(section), "no {section:?} in:\n{stdout}");
    }
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
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookwatch-bench"))
        .env("HOOKWATCH_BIN", hookwatch())
        .args(["--otlp", "4", "--events", "100", "--connections", "2"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the OTLP benchmark failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for section in [
        "## hook events, closed loop: 100",
        "## OTLP logs (HTTP/protobuf), closed loop: 2048 records in 4 exports of 512",
        "records/s",
    ] {
        assert!(stdout.contains(section), "no {section:?} in:\n{stdout}");
    }
}
