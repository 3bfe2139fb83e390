//! `hookwatch-soak`: a long run under mixed load and faults, outside CI.
//!
//! It starts a private `redis-server` (on a unix socket in the data dir) and `hookwatch serve`
//! with that cache, then for `--minutes` runs, all at once:
//! - open-loop ingest at `--rate` events/s on 16 connections (each event has its own
//!   `event_id`; every acknowledged one is remembered);
//! - reads of the dashboard's views, about 20 a second;
//! - `--clients` WebSocket clients on `/stream`, reconnecting whenever they are dropped;
//! - Redis killed (SIGKILL) and restarted every `--redis-every`;
//! - one `kill -9` of the server at 40 % of the run, restarted at once on the same address.
//!
//! At the end it stops the server gracefully, opens the database itself and checks that every
//! acknowledged event is stored, then prints the counts, the errors by kind and the server's
//! RSS over time.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures_util::StreamExt;

use crate::bench::{Connection, Server, identified_pre_tool_use};

#[derive(clap::Args, Debug, Clone)]
pub struct SoakArgs {
    /// How long the run lasts.
    #[arg(long, default_value_t = 30)]
    pub minutes: u64,
    /// Events per second ingested, open loop.
    #[arg(long, default_value_t = 2_000)]
    pub rate: usize,
    /// WebSocket clients on /stream.
    #[arg(long, default_value_t = 20)]
    pub clients: usize,
    /// Seconds between Redis kills.
    #[arg(long, default_value_t = 120)]
    pub redis_every: u64,
    /// Keep the data dir here instead of a temporary one.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Errors by kind, for the report.
#[derive(Default)]
struct Tally(Mutex<BTreeMap<String, u64>>);

impl Tally {
    fn add(&self, kind: impl Into<String>) {
        *self
            .0
            .lock()
            .expect("tally lock")
            .entry(kind.into())
            .or_default() += 1;
    }
}

struct Redis {
    child: Option<std::process::Child>,
    dir: PathBuf,
}

impl Redis {
    fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    fn start(&mut self) -> anyhow::Result<()> {
        let _ = std::fs::remove_file(self.socket());
        let child = std::process::Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("starting redis-server (apt-get install redis-server)")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.socket().exists() {
            anyhow::ensure!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The load's shared state: where to send, whether to go on, and what happened.
struct Load {
    addr: String,
    running: AtomicBool,
    errors: Tally,
    acknowledged: Mutex<Vec<String>>,
    messages: AtomicU64,
    reconnects: AtomicU64,
}

impl Load {
    fn running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    /// One request on a connection kept across calls (re-opened after the server went away);
    /// failures are tallied under `kind`. The status, when there was an answer.
    async fn send(
        &self,
        conn: &mut Option<Connection>,
        kind: &str,
        method: &str,
        path: &str,
        body: Bytes,
    ) -> Option<u16> {
        if conn.is_none() {
            *conn = Connection::open(&self.addr).await.ok();
        }
        let Some(open) = conn.as_mut() else {
            self.errors
                .add(format!("{kind}: connection refused (server down)"));
            return None;
        };
        match open.request(method, path, body).await {
            Ok((200, _)) => Some(200),
            Ok((status, _)) => {
                self.errors.add(format!("{kind}: {status}"));
                Some(status)
            }
            Err(_) => {
                self.errors
                    .add(format!("{kind}: connection lost (server killed)"));
                *conn = None;
                None
            }
        }
    }

    /// Open-loop ingest on one connection: one event every `period`, starting at `offset`;
    /// every acknowledged `event_id` is remembered.
    async fn ingest(self: Arc<Self>, worker: usize, offset: Duration, period: Duration) {
        let start = tokio::time::Instant::now() + offset;
        let mut conn = None;
        let mut n = 0usize;
        while self.running() {
            tokio::time::sleep_until(start + period.mul_f64(n as f64)).await;
            let (id, body) = identified_pre_tool_use(5000 + worker, n);
            n += 1;
            if self
                .send(&mut conn, "ingest", "POST", "/events", body)
                .await
                == Some(200)
            {
                self.acknowledged.lock().expect("acks lock").push(id);
            }
        }
    }

    /// The dashboard's views, round robin, about 20 a second.
    async fn read_views(self: Arc<Self>) {
        const VIEWS: [&str; 7] = [
            "/api/agents/metrics/current?hours=24",
            "/api/agents/metrics/timeline?hours=24",
            "/api/agents/types/distribution",
            "/api/agents/tools/usage",
            "/events/recent?limit=100",
            "/api/agents?status=active",
            "/events/filter-options",
        ];
        let mut conn = None;
        let mut ticks = tokio::time::interval(Duration::from_millis(50));
        for view in VIEWS.iter().cycle() {
            if !self.running() {
                break;
            }
            ticks.tick().await;
            self.send(&mut conn, "read", "GET", view, Bytes::new())
                .await;
        }
    }

    /// One `/stream` client, counting messages and reconnecting whenever it is dropped.
    async fn follow_stream(self: Arc<Self>) {
        let addr = &self.addr;
        while self.running() {
            let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let Ok((mut socket, _)) =
                tokio_tungstenite::client_async(format!("ws://{addr}/stream"), stream).await
            else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            while self.running() {
                match tokio::time::timeout(Duration::from_secs(1), socket.next()).await {
                    Ok(Some(Ok(_))) => {
                        self.messages.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => break, // closed or failed: reconnect
                    Err(_) => {}    // a quiet second
                }
            }
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn start_server(data_dir: &Path, addr: &str, redis_url: &str) -> anyhow::Result<Server> {
    Server::start_with(data_dir, "full", Some(redis_url), &["--addr", addr]).await
}

pub async fn run(args: SoakArgs) -> anyhow::Result<()> {
    let data_dir = crate::bench::data_dir_or_temp(args.data_dir.as_deref(), "soak")?;
    let mut redis = Redis {
        child: None,
        dir: data_dir.clone(),
    };
    redis.start()?;
    let redis_url = format!("unix://{}", redis.socket().display());
    let addr = format!("127.0.0.1:{}", free_port()?);
    let server = Arc::new(Mutex::new(Some(
        start_server(&data_dir, &addr, &redis_url).await?,
    )));
    let pid = |server: &Arc<Mutex<Option<Server>>>| {
        server
            .lock()
            .expect("server lock")
            .as_ref()
            .map_or(0, |s| s.pid)
    };
    println!(
        "# hookwatch soak: {} min, {} events/s, {} WebSocket clients, Redis killed every {} s, \
         one kill -9 at 40 %",
        args.minutes, args.rate, args.clients, args.redis_every
    );
    let run_for = Duration::from_secs(args.minutes * 60);
    let started = Instant::now();
    let load = Arc::new(Load {
        addr: addr.clone(),
        running: AtomicBool::new(true),
        errors: Tally::default(),
        acknowledged: Mutex::new(Vec::new()),
        messages: AtomicU64::new(0),
        reconnects: AtomicU64::new(0),
    });
    let mut tasks = Vec::new();
    // Ingest: 16 connections, each sending at its share of the rate.
    let connections = 16usize;
    let period = Duration::from_secs_f64(connections as f64 / args.rate.max(1) as f64);
    for worker in 0..connections {
        let offset = period.mul_f64(worker as f64 / connections as f64);
        tasks.push(tokio::spawn(
            Arc::clone(&load).ingest(worker, offset, period),
        ));
    }
    tasks.push(tokio::spawn(Arc::clone(&load).read_views()));
    for _ in 0..args.clients {
        tasks.push(tokio::spawn(Arc::clone(&load).follow_stream()));
    }

    // The faults, and RSS samples every 30 s.
    let mut rss = Vec::new();
    let mut next_redis_kill = Duration::from_secs(args.redis_every);
    let kill_at = run_for.mul_f64(0.4);
    let mut killed = false;
    let mut redis_kills = 0;
    let mut next_sample = Duration::ZERO;
    while started.elapsed() < run_for {
        let elapsed = started.elapsed();
        if elapsed >= next_sample {
            let sample = server
                .lock()
                .expect("server lock")
                .as_ref()
                .map(|s| s.memory_kib().1 / 1024);
            rss.push((elapsed.as_secs(), sample.unwrap_or(0)));
            next_sample += Duration::from_secs(30);
        }
        if elapsed >= next_redis_kill {
            redis.kill();
            redis_kills += 1;
            tokio::time::sleep(Duration::from_secs(2)).await;
            redis.start()?;
            next_redis_kill += Duration::from_secs(args.redis_every);
        }
        if !killed && elapsed >= kill_at {
            killed = true;
            let old = pid(&server);
            std::process::Command::new("kill")
                .args(["-9", &old.to_string()])
                .status()?;
            let gone = server.lock().expect("server lock").take();
            drop(gone);
            tokio::time::sleep(Duration::from_millis(200)).await;
            let restarted = start_server(&data_dir, &addr, &redis_url).await?;
            println!(
                "{:>5} s: kill -9 of the server (pid {old}); restarted as pid {}",
                elapsed.as_secs(),
                restarted.pid
            );
            *server.lock().expect("server lock") = Some(restarted);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    load.running.store(false, Ordering::Relaxed);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    let final_server = server.lock().expect("server lock").take();
    let (peak_kib, _) = final_server.as_ref().map_or((0, 0), |s| s.memory_kib());
    if let Some(server) = final_server {
        server.stop().await?;
    }

    // Every acknowledged event must be in the database.
    let acknowledged = std::mem::take(&mut *load.acknowledged.lock().expect("acks lock"));
    let conn = rusqlite::Connection::open(data_dir.join(hookwatch::config::DATABASE_FILE))?;
    let stored: HashSet<String> = conn
        .prepare("SELECT event_id FROM events")?
        .query_map([], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let missing = acknowledged
        .iter()
        .filter(|id| !stored.contains(*id))
        .count();
    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
    println!(
        "\n## result after {:.1} min\nacknowledged {} · stored {} · acknowledged but missing {missing} · integrity {integrity}",
        started.elapsed().as_secs_f64() / 60.0,
        acknowledged.len(),
        stored.len(),
    );
    println!(
        "Redis killed {redis_kills} times; WebSocket messages received {}; WebSocket reconnects {}",
        load.messages.load(Ordering::Relaxed),
        load.reconnects.load(Ordering::Relaxed)
    );
    println!("\n## errors by kind");
    for (kind, count) in load.errors.0.lock().expect("tally lock").iter() {
        println!("{kind}: {count}");
    }
    println!("\n## server RSS (MiB) every 30 s (the restart at 40 % starts a new process)");
    let line: Vec<String> = rss.iter().map(|(s, m)| format!("{s}s:{m}")).collect();
    println!("{}", line.join(" "));
    println!("final server's peak RSS {} MiB", peak_kib / 1024);
    if args.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    anyhow::ensure!(missing == 0, "{missing} acknowledged events are not stored");
    Ok(())
}
