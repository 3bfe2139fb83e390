//! `hookwatch-bench --otlp BATCHES`: Claude Code's OTLP intake beside hook-event ingest, in one
//! run against one server. First the usual closed-loop hook events (`--events` over
//! `--connections`), then `BATCHES` exports of 512 log records each (what an OpenTelemetry SDK
//! sends at once), HTTP/protobuf to `/v1/logs`, closed loop over the same connections: records
//! per second and the acknowledgement latency of each export. Every record is distinct (its
//! session and sequence), so each one is stored, none is a duplicate.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::{BenchArgs, Connection, Latencies, Server, closed_loop, drive};

/// Records in one export: the OpenTelemetry SDKs' default batch size.
const RECORDS_PER_EXPORT: usize = 512;

pub async fn compare_with_hook_ingest(
    args: &BenchArgs,
    data_dir: &std::path::Path,
    batches: usize,
) -> anyhow::Result<()> {
    let server = Server::start(data_dir, &args.durability, args.redis_url.as_deref()).await?;
    println!("# hookwatch-bench --otlp {batches}");
    let (mut hooks, elapsed) =
        closed_loop(&server.addr, args.events, args.connections, 1, 0).await?;
    let sent = hooks.0.len();
    println!(
        "\n## hook events, closed loop: {sent} over {} connections\n{:.0} events/s; ack latency {}",
        args.connections,
        sent as f64 / elapsed.as_secs_f64(),
        hooks.summary()
    );
    let cpu_before = server.cpu_seconds();
    let (mut exports, elapsed) = export_loop(&server.addr, batches, args.connections).await?;
    let records = exports.0.len() * RECORDS_PER_EXPORT;
    println!(
        "\n## OTLP logs (HTTP/protobuf), closed loop: {records} records in {} exports of {RECORDS_PER_EXPORT} over {} connections\n{:.0} records/s; ack latency per export {}\nserver CPU per record {:.1} µs",
        exports.0.len(),
        args.connections,
        records as f64 / elapsed.as_secs_f64(),
        exports.summary(),
        (server.cpu_seconds() - cpu_before) * 1e6 / records.max(1) as f64
    );
    let (peak, _) = server.memory_kib();
    println!("\nserver peak RSS (VmHWM) {} MiB", peak / 1024);
    server.stop().await
}

async fn export_loop(
    addr: &str,
    batches: usize,
    connections: usize,
) -> anyhow::Result<(Latencies, std::time::Duration)> {
    let per_worker = batches / connections.max(1);
    let mut prepared = Vec::new();
    for worker in 0..connections {
        let bodies: Vec<Bytes> = (0..per_worker)
            .map(|n| Bytes::from(export(worker, n).encode_to_vec()))
            .collect();
        let mut conn = Connection::open(addr).await?;
        conn.send_as("application/x-protobuf");
        prepared.push((conn, bodies));
    }
    drive(prepared, "/v1/logs", Bytes::clone).await
}

fn text(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..KeyValue::default()
    }
}

fn double(key: &str, value: f64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::DoubleValue(value)),
        }),
        ..KeyValue::default()
    }
}

/// One export of `RECORDS_PER_EXPORT` API-request events, as Claude Code sends them.
fn export(worker: usize, n: usize) -> ExportLogsServiceRequest {
    let session = format!("bench-otlp-{worker}-{n}");
    let records = (0..RECORDS_PER_EXPORT)
        .map(|i| LogRecord {
            time_unix_nano: 1_784_916_872_544_000_000 + (i as u64) * 1_000_000,
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(
                    "claude_code.api_request".into(),
                )),
            }),
            attributes: vec![
                text("session.id", session.clone()),
                text(
                    "user.id",
                    "3f9c2d7e8a1b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5",
                ),
                text("user.email", "dev@example.com"),
                text("organization.id", "5a1c2e3d-7b8f-4a90-b1c2-d3e4f5a6b7c8"),
                text("user.account_uuid", "9e8d7c6b-5a49-4837-a261-504f3e2d1c0b"),
                text("terminal.type", "tmux"),
                text("event.name", "api_request"),
                text("event.timestamp", "2026-07-24T18:14:32.544Z"),
                int("event.sequence", i as i64),
                text("prompt.id", format!("prompt-{worker}-{n}-{}", i / 16)),
                text("model", "claude-sonnet-4-6"),
                int("input_tokens", 12),
                int("output_tokens", 412),
                int("cache_read_tokens", 48_213),
                int("cache_creation_tokens", 1_530),
                double("cost_usd", 0.0264174),
                int("duration_ms", 8_421),
                text("request_id", format!("req_{worker}_{n}_{i}")),
                text("query_source", "repl_main_thread"),
                text("speed", "normal"),
            ],
            ..LogRecord::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    text("service.name", "claude-code"),
                    text("service.version", "2.1.219"),
                ],
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "com.anthropic.claude_code.events".into(),
                    version: "2.1.219".into(),
                    ..InstrumentationScope::default()
                }),
                log_records: records,
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}
