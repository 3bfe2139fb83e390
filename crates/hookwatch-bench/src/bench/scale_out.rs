//! `hookwatch-bench --scale-out`: the same load on SQLite with one instance, PostgreSQL with
//! one, and PostgreSQL with two instances sharing the database (each client connection talks
//! to one instance, alternating, as behind a round-robin load balancer).
//!
//! For each configuration: fresh storage (a new PostgreSQL database from
//! `--postgres-admin-url`, dropped afterwards), a short warm-up, closed-loop single-event
//! ingest (`--events` over `--connections`), batch ingest up to `--store-events`, then
//! `--reads` sequential reads of each view, alternating over the instances. Without
//! `--redis-url` the reads measure the store itself.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;

use super::{
    BenchArgs, Connection, Latencies, Server, closed_loop_spread, prefill_spread, read_latencies,
};

/// A database made for one configuration, dropped when done.
struct BenchDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl BenchDatabase {
    async fn create(admin_url: &str, purpose: &str) -> anyhow::Result<Self> {
        let name = format!("hookwatch_bench_{purpose}_{}", std::process::id());
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url, |(base, _)| base);
        let database = Self {
            admin_url: admin_url.to_owned(),
            url: format!("{base}/{name}"),
            name,
        };
        database
            .admin(format!(
                "DROP DATABASE IF EXISTS {0} WITH (FORCE); CREATE DATABASE {0}",
                database.name
            ))
            .await?;
        Ok(database)
    }

    async fn drop_database(self) -> anyhow::Result<()> {
        self.admin(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .await
    }

    async fn admin(&self, statements: String) -> anyhow::Result<()> {
        let url = self.admin_url.clone();
        tokio::task::spawn_blocking(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls)
                .with_context(|| format!("connecting to {url} (--postgres-admin-url)"))?;
            for statement in statements.split("; ") {
                client.batch_execute(statement)?;
            }
            anyhow::Ok(())
        })
        .await?
    }
}

struct Row {
    name: &'static str,
    ingest_per_s: f64,
    cpu_per_event_us: f64,
    ack: String,
    batch_per_s: f64,
    stored: usize,
    reads: Vec<(&'static str, String)>,
}

pub(super) async fn compare(args: &BenchArgs, data_dir: &Path) -> anyhow::Result<()> {
    println!("# hookwatch-bench --scale-out");
    println!(
        "{} events over {} connections, then a store of {} events, {} reads per view; durability {}, cache {}",
        args.events,
        args.connections,
        args.store_events,
        args.reads,
        args.durability,
        args.redis_url.as_deref().map_or("off", |_| "redis")
    );
    let configurations: [(&'static str, &str, bool, usize); 3] = [
        ("SQLite, 1 instance", "sqlite1", false, 1),
        ("PostgreSQL, 1 instance", "pg1", true, 1),
        ("PostgreSQL, 2 instances", "pg2", true, 2),
    ];
    let mut rows = Vec::new();
    for (name, slug, postgres, instances) in configurations {
        let database = if postgres {
            Some(BenchDatabase::create(&args.postgres_admin_url, slug).await?)
        } else {
            None
        };
        let mut servers = Vec::new();
        for n in 0..instances {
            let dir = data_dir.join(format!("{slug}-{n}"));
            std::fs::create_dir_all(&dir)?;
            let instance = format!("{slug}-{n}");
            let mut flags = vec!["--instance-id", instance.as_str()];
            if let Some(database) = &database {
                flags.extend(["--database-url", database.url.as_str()]);
            }
            servers.push(
                Server::start_with(&dir, &args.durability, args.redis_url.as_deref(), &flags)
                    .await?,
            );
        }
        let addrs: Vec<String> = servers.iter().map(|s| s.addr.clone()).collect();
        println!("\n## {name}: {}", addrs.join(", "));
        closed_loop_spread(&addrs, 2_000, args.connections, 1, 100_000).await?;
        let cpu_before: f64 = servers.iter().map(Server::cpu_seconds).sum();
        let (mut acks, elapsed) = closed_loop_spread(
            &addrs,
            args.events,
            args.connections,
            args.sessions_per_connection.into(),
            0,
        )
        .await?;
        let cpu_per_event_us = (servers.iter().map(Server::cpu_seconds).sum::<f64>() - cpu_before)
            / acks.0.len().max(1) as f64
            * 1e6;
        let ingested = acks.0.len() + 2_000;
        let ingest_per_s = acks.0.len() as f64 / elapsed.as_secs_f64();
        let ack = acks.summary();
        println!(
            "closed loop: {ingest_per_s:.0} events/s, ack {ack}; hookwatch CPU {cpu_per_event_us:.0} µs/event"
        );
        let started = Instant::now();
        let batched = prefill_spread(
            &addrs,
            args.store_events.saturating_sub(ingested),
            hookwatch::clock::Clock::now_ms(&hookwatch::clock::SystemClock),
        )
        .await?;
        let batch_per_s = batched as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let now = hookwatch::clock::Clock::now_ms(&hookwatch::clock::SystemClock);
        let week = format!(
            "/api/agents/metrics/current?start={}&end={now}",
            now - 7 * 86_400_000
        );
        let views = [
            ("metrics (today)", "/api/agents/metrics/current".to_owned()),
            ("metrics (7 d)", week),
            ("recent events (100)", "/events/recent?limit=100".to_owned()),
            ("active agents", "/api/agents?status=active".to_owned()),
        ];
        let mut connections = Vec::new();
        for addr in &addrs {
            connections.push(Connection::open(addr).await?);
        }
        let mut reads = Vec::new();
        for (view, path) in views {
            let mut all = Latencies(Vec::new());
            for conn in &mut connections {
                let share = args.reads / addrs.len();
                all.0.extend(read_latencies(conn, &path, share).await?.0);
            }
            let summary = all.summary();
            println!("{view:<20} {summary}");
            reads.push((view, summary));
        }
        rows.push(Row {
            name,
            ingest_per_s,
            cpu_per_event_us,
            ack,
            batch_per_s,
            stored: ingested + batched,
            reads,
        });
        for server in servers {
            server.stop().await?;
        }
        if let Some(database) = database {
            database.drop_database().await?;
        }
    }
    println!("\n## summary\n");
    println!(
        "| configuration | single-event ingest | ack latency | hookwatch CPU | batch ingest | store | {} |",
        rows[0]
            .reads
            .iter()
            .map(|(view, _)| *view)
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!(
        "|---|---|---|---|---|---|{}",
        "---|".repeat(rows[0].reads.len())
    );
    for row in &rows {
        println!(
            "| {} | {:.0} events/s | {} | {:.0} µs/event | {:.0} events/s | {} events | {} |",
            row.name,
            row.ingest_per_s,
            row.ack,
            row.cpu_per_event_us,
            row.batch_per_s,
            row.stored,
            row.reads
                .iter()
                .map(|(_, summary)| summary.as_str())
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    Ok(())
}
