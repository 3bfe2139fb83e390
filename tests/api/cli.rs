//! The binary's other faces: `--prices` overrides. (`hookwatch-bench` has its own end-to-end
//! test in `crates/hookwatch-bench`.)

use serde_json::json;

use crate::fixtures;
use crate::helpers::{ServerProcess, T0, approx, binary};

#[tokio::test]
async fn a_prices_file_overrides_the_default_table() {
    let data_dir = tempfile::tempdir().unwrap();
    let prices = data_dir.path().join("prices.json");
    std::fs::write(
        &prices,
        r#"{"claude-haiku-4-5": {"input": 2.0, "output": 10.0, "cache_write": 0, "cache_read": 0}}"#,
    )
    .unwrap();
    let mut command = tokio::process::Command::new(binary());
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir.path())
        .arg("--prices")
        .arg(&prices);
    let server = ServerProcess::spawn(command).await;
    let e = |event: &str, at: i64, extra: serde_json::Value| {
        fixtures::envelope("p", "S", event, at, extra)
    };
    for event in [
        e(
            "PreToolUse",
            0,
            fixtures::pre_tool("Task", "k", json!({"subagent_type": "Explore"})),
        ),
        e(
            "PostToolUse",
            1_000,
            fixtures::post_tool(
                "Task",
                "k",
                json!({"agentId": "a",
            "model": "claude-haiku-4-5-20251001", "usage": {"input_tokens": 1_000_000, "output_tokens": 100_000}}),
            ),
        ),
    ] {
        server.send_event(&event).await;
    }
    let range = format!("start={}&end={}", T0 - 60_000, T0 + 60_000);
    let metrics = server
        .get_ok(&format!("/api/agents/metrics/current?{range}"))
        .await;
    // 1M input × $2 + 100k output × $10, per million.
    approx(&metrics["estimated_cost_today"], 3.0);
    server.kill_hard().await;
}

#[tokio::test]
async fn an_otlp_grpc_address_asked_for_and_taken_stops_the_start_with_the_reason() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let data_dir = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(binary())
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--otlp-grpc-addr",
            &address,
            "--data-dir",
        ])
        .arg(data_dir.path())
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--otlp-grpc-addr") && stderr.contains(&address),
        "{stderr}"
    );
    let bad = tokio::process::Command::new(binary())
        .args(["serve", "--otlp-grpc-addr", "everywhere"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("or off"), "{stderr}");
}
