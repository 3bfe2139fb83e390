//! `hookwatch-bench`: reproducible measurements of ingest and reads, against the real server.
//!
//! It starts `hookwatch serve` as a child process on a temporary data dir (so the server's RSS
//! is its own), then drives it over real HTTP/1.1 keep-alive connections from this process:
//! 1. closed-loop ingest of ~1 KB PreToolUse events on many connections: events/s and
//!    acknowledgement latency;
//! 2. open-loop ingest at a fixed rate: acknowledgement latency measured from each request's
//!    scheduled time, so a stall is not hidden (no coordinated omission);
//! 3. a prefill to a store of N events (realistic sessions over 7 days, via `/events/batch`),
//!    then sequential reads of each view: p50/p99 latency;
//! 4. the server's peak RSS (`VmHWM`).
//!
//! With `--scale-out` it compares stores and instance counts instead (`scale_out.rs`); with
//! `--floor`, hookwatch's ingest against the upstream's write path rebuilt (`floor.rs`).
//!
//! With `--compare-cache --redis-url URL` it instead measures what the Redis cache costs and
//! buys: two servers, one without a cache and one with, take alternating closed-loop ingest
//! rounds (so machine noise hits both alike), then both are filled to N events and the same
//! metrics read is timed on each: served from SQLite, and served from Redis.

mod floor;
mod otlp;
mod scale_out;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Events sent in the closed-loop throughput phase.
    #[arg(long, default_value_t = 200_000)]
    pub events: usize,
    /// Concurrent connections in the throughput phase.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Sessions each closed-loop connection sends for, in turn: with more, each commit writes
    /// to more sessions' index pages, as a fleet of many agents does.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub sessions_per_connection: u16,
    /// Events per second in the fixed-rate latency phase.
    #[arg(long, default_value_t = 2_000)]
    pub rate: usize,
    /// Seconds the fixed-rate phase runs.
    #[arg(long, default_value_t = 10)]
    pub rate_seconds: u64,
    /// Total events in the store before the read phase.
    #[arg(long, default_value_t = 1_000_000)]
    pub store_events: usize,
    /// Requests per view in the read phase.
    #[arg(long, default_value_t = 1_000)]
    pub reads: usize,
    /// Passed to `serve --durability`.
    #[arg(long, default_value = "full")]
    pub durability: String,
    /// Keep the data dir here instead of a temporary one.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Passed to `serve --redis-url` (a cache for the server under test).
    #[arg(long)]
    pub redis_url: Option<String>,
    /// Compare a server without a cache and one with `--redis-url` instead of the full run.
    #[arg(long, requires = "redis_url")]
    pub compare_cache: bool,
    /// Alternating ingest rounds per server in `--compare-cache`.
    #[arg(long, default_value_t = 6)]
    pub rounds: usize,
    /// Measure ingest while retention prunes instead of the full run: a store of
    /// `--store-events` events 31 to 38 days old, then open-loop ingest at `--rate` for
    /// `--rate-seconds` on a server with nothing to prune and on one with `--retention 30d`.
    #[arg(long)]
    pub prune: bool,
    /// Measure live delivery instead of the full run: this many WebSocket clients on `/stream`
    /// while ingest runs at `--rate` for `--rate-seconds`.
    #[arg(long)]
    pub live: Option<usize>,
    /// Measure Claude Code's OTLP intake instead of the full run: closed-loop hook-event ingest
    /// (`--events`), then this many `POST /v1/logs` of 512 records each (HTTP/protobuf, as an
    /// SDK batches them) over `--connections`, in the same run.
    #[arg(long)]
    pub otlp: Option<usize>,
    /// Time `hookwatch send` (process start to exit) with the server up and down instead of
    /// the full run; this many sends each.
    #[arg(long)]
    pub client: Option<usize>,
    /// Compare SQLite with one instance, PostgreSQL with one and PostgreSQL with two (ingest
    /// spread over both) instead of the full run: closed-loop ingest, then reads on a store of
    /// `--store-events`.
    #[arg(long)]
    pub scale_out: bool,
    /// With `--scale-out`: a PostgreSQL role that may create databases; each configuration
    /// gets a fresh database, dropped afterwards.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub postgres_admin_url: String,
    /// Measure hookwatch's ingest against the floor (`hookwatch-floor`: the upstream's write
    /// path rebuilt) instead of the full run: `--rounds` rounds of closed-loop ingest
    /// (`--events` over `--connections`), each on fresh stores, alternating the floor,
    /// hookwatch at `--durability full` and at `normal`.
    #[arg(long)]
    pub floor: bool,
}

pub(crate) struct Server {
    /// Dropping the `Server` kills the process (`kill_on_drop`).
    child: tokio::process::Child,
    pub(crate) addr: String,
    pub(crate) pid: u32,
}

impl Server {
    async fn start(
        data_dir: &std::path::Path,
        durability: &str,
        redis_url: Option<&str>,
    ) -> anyhow::Result<Self> {
        Self::start_with(data_dir, durability, redis_url, &[]).await
    }

    /// Like [`Server::start`], with more `serve` flags (`--addr` among them replaces port 0).
    pub(crate) async fn start_with(
        data_dir: &std::path::Path,
        durability: &str,
        redis_url: Option<&str>,
        flags: &[&str],
    ) -> anyhow::Result<Self> {
        let exe = crate::hookwatch_binary()?;
        let mut command = tokio::process::Command::new(exe);
        command.arg("serve");
        if !flags.contains(&"--addr") {
            command.args(["--addr", "127.0.0.1:0"]);
        }
        command
            .args(["--durability", durability, "--data-dir"])
            .arg(data_dir);
        if let Some(url) = redis_url {
            command.args(["--redis-url", url]);
        }
        command.args(flags);
        Self::spawn(command).await
    }

    /// The floor (`hookwatch-floor`, built beside this tool) on a port of its own.
    pub(crate) async fn start_floor(data_dir: &std::path::Path) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?.with_file_name("hookwatch-floor");
        if !exe.is_file() {
            bail!(
                "no hookwatch-floor at {}: build it with `cargo build --release -p hookwatch-bench`",
                exe.display()
            );
        }
        let mut command = tokio::process::Command::new(exe);
        command.arg("--data-dir").arg(data_dir);
        Self::spawn(command).await
    }

    /// Starts `command` and reads its address from its first line (`… http://ADDR`).
    async fn spawn(mut command: tokio::process::Command) -> anyhow::Result<Self> {
        let mut child = command
            .env(
                "HOOKWATCH_LOG",
                std::env::var("HOOKWATCH_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting the server")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let line = tokio::io::BufReader::new(stdout)
            .lines()
            .next_line()
            .await?
            .context("the server printed nothing")?;
        let addr = line
            .rsplit("http://")
            .next()
            .context("no address in the start-up line")?
            .to_owned();
        let pid = child.id().context("server pid")?;
        Ok(Self { child, addr, pid })
    }

    /// Stops the server gracefully (SIGTERM) and waits for it to exit.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .context("running kill")?;
        self.child.wait().await?;
        Ok(())
    }

    /// CPU time (user + system) the server has used so far.
    pub(crate) fn cpu_seconds(&self) -> f64 {
        process_cpu_seconds(&self.pid.to_string())
    }

    /// (peak RSS, current RSS) in KiB.
    pub(crate) fn memory_kib(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmHWM:"), field("VmRSS:"))
    }
}

/// CPU time (user + system) a process (`self`, or a pid) has used so far, from `/proc`.
fn process_cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// The whole machine's CPU time so far, in seconds summed over all CPUs, from `/proc/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct MachineCpu {
    /// Every state, idle included: the capacity of all CPUs over the time measured.
    total: f64,
    /// Running anything: user, nice, system, interrupts.
    busy: f64,
    /// Idle with a disk write outstanding.
    iowait: f64,
    /// Taken by the hypervisor for other guests.
    steal: f64,
}

impl MachineCpu {
    fn now() -> Self {
        Self::parse(&std::fs::read_to_string("/proc/stat").unwrap_or_default())
    }

    /// The aggregate `cpu` line: user nice system idle iowait irq softirq steal, in ticks.
    fn parse(stat: &str) -> Self {
        let ticks: Vec<f64> = stat
            .lines()
            .find(|line| line.starts_with("cpu "))
            .map(|line| {
                line.split_whitespace()
                    .skip(1)
                    .take(8)
                    .map(|v| v.parse().unwrap_or(0.0) / 100.0)
                    .collect()
            })
            .unwrap_or_default();
        let at = |i: usize| ticks.get(i).copied().unwrap_or(0.0);
        Self {
            total: ticks.iter().sum(),
            busy: at(0) + at(1) + at(2) + at(5) + at(6),
            iowait: at(4),
            steal: at(7),
        }
    }

    /// What the machine did between `self` and `later`, as shares of its capacity, with the
    /// CPU seconds the server and this client used over the same time set apart.
    fn report_since(self, later: Self, server: f64, client: f64) -> String {
        let capacity = (later.total - self.total).max(f64::MIN_POSITIVE);
        let share = |seconds: f64| 100.0 * seconds / capacity;
        let busy = later.busy - self.busy;
        format!(
            "machine over that time: CPUs busy {:.0} % (server {:.0} %, this client {:.0} %, everything else {:.0} %), iowait {:.0} %, steal {:.0} %",
            share(busy),
            share(server),
            share(client),
            share((busy - server - client).max(0.0)),
            share(later.iowait - self.iowait),
            share(later.steal - self.steal),
        )
    }
}

/// One keep-alive HTTP/1.1 connection, spoken directly: the request goes out in one write and
/// the answer is read in place, with no connection task to hand off to. The client shares the
/// two cores with the server it measures, so every microsecond it spends is one the server
/// does not get (hyper's client cost ~16 µs of CPU per request here; this, about half).
pub(crate) struct Connection {
    stream: tokio::net::TcpStream,
    host: String,
    /// The request being written, reused.
    outgoing: Vec<u8>,
    /// Bytes read and not yet consumed.
    incoming: Vec<u8>,
    /// The `Content-Type` of every request body.
    content_type: &'static str,
}

impl Connection {
    pub(crate) async fn open(addr: &str) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            host: addr.to_owned(),
            outgoing: Vec::with_capacity(4096),
            incoming: Vec::with_capacity(8192),
            content_type: "application/json",
        })
    }

    /// Sends bodies of this type from now on.
    pub(crate) fn send_as(&mut self, content_type: &'static str) {
        self.content_type = content_type;
    }

    pub(crate) async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<(u16, Bytes)> {
        use std::io::Write as _;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.outgoing.clear();
        write!(
            self.outgoing,
            "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: {}\r\ncontent-length: {}\r\n\r\n",
            self.host,
            self.content_type,
            body.len()
        )?;
        self.outgoing.extend_from_slice(&body);
        self.stream.write_all(&self.outgoing).await?;
        // Head first, then as much body as its length says.
        let head_end = loop {
            if let Some(end) = find_head_end(&self.incoming) {
                break end;
            }
            if self.stream.read_buf(&mut self.incoming).await? == 0 {
                bail!("the server closed the connection before answering");
            }
        };
        let (status, body_len) = parse_answer_head(&self.incoming[..head_end])?;
        while self.incoming.len() < head_end + body_len {
            self.incoming
                .reserve(head_end + body_len - self.incoming.len());
            if self.stream.read_buf(&mut self.incoming).await? == 0 {
                bail!("the server closed the connection mid-answer");
            }
        }
        let answer = Bytes::copy_from_slice(&self.incoming[head_end..head_end + body_len]);
        self.incoming.drain(..head_end + body_len);
        Ok((status, answer))
    }
}

/// Where an HTTP head ends (just past its blank line), once it is all there.
fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// Status and body length of an answer's head. hookwatch sizes every answer, so a body
/// without `content-length` (chunked) is refused rather than read.
fn parse_answer_head(head: &[u8]) -> anyhow::Result<(u16, usize)> {
    let head = std::str::from_utf8(head).context("the answer's head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    let mut body_len = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                body_len = value.trim().parse().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                bail!("chunked answers are not read by the bench client: {head:?}");
            }
        }
    }
    // 204 and 304 carry no body, and say so by leaving the length out.
    Ok((status, body_len.unwrap_or(0)))
}

/// A realistic ~1 KB PreToolUse envelope.
pub(crate) fn pre_tool_use(worker: usize, n: usize) -> Bytes {
    identified_pre_tool_use(worker, n).1
}

/// The bytes before an envelope's `event_id` value: the builder puts it first.
const EVENT_ID_PREFIX: &[u8] = br#"{"event_id":""#;

/// `body` (built by [`pre_tool_use`] ahead of time, so building costs the client nothing while
/// it is measured) with a new UUIDv7 `event_id` minted now, as a hook client mints it when the
/// event happens. Bodies built ahead of time carry ids from the moment they were built: sent
/// later, from many connections at once, they land all over the `event_id` index instead of at
/// its end, which real traffic never does.
pub(crate) fn with_fresh_event_id(body: &Bytes) -> (String, Bytes) {
    let event_id = uuid::Uuid::now_v7().to_string();
    let mut stamped = body.to_vec();
    let start = EVENT_ID_PREFIX.len();
    debug_assert!(stamped.starts_with(EVENT_ID_PREFIX));
    stamped[start..start + event_id.len()].copy_from_slice(event_id.as_bytes());
    (event_id, Bytes::from(stamped))
}

/// [`pre_tool_use`] with its `event_id`, for runs that check what was acknowledged.
pub(crate) fn identified_pre_tool_use(worker: usize, n: usize) -> (String, Bytes) {
    identified_pre_tool_use_in_session(worker, n, 0)
}

/// [`identified_pre_tool_use`] from the `slot`th of the sessions its worker sends for.
fn identified_pre_tool_use_in_session(worker: usize, n: usize, slot: usize) -> (String, Bytes) {
    let event_id = uuid::Uuid::now_v7().to_string();
    let session = format!("bench-{worker:04}-{slot:04}-bbbb-cccc-dddddddddddd");
    let command = "cargo test --workspace --all-features -- --nocapture 2>&1 | tee /tmp/test-output.log; \
                   grep -E '(FAILED|panicked)' /tmp/test-output.log || echo 'all green'";
    let event = json!({
        "event_id": event_id,
        "source_app": "bench-project",
        "session_id": session,
        "hook_event_type": "PreToolUse",
        "payload": {
            "session_id": session,
            "transcript_path": format!("/home/developer/.claude/projects/-home-developer-src-bench-project/{session}.jsonl"),
            "cwd": "/home/developer/src/bench-project",
            "permission_mode": "default",
            "hook_event_name": "PreToolUse",
            "prompt_id": uuid::Uuid::new_v4().to_string(),
            "tool_name": "Bash",
            "tool_use_id": format!("toolu_{worker:04}_{n:012}"),
            "tool_input": {
                "command": command,
                "description": "Run the whole test suite and grep the log for failures so the agent can see them",
                "timeout": 600000,
                "run_in_background": false
            }
        },
        "tool_name": "Bash",
        "tool_use_id": format!("toolu_{worker:04}_{n:012}")
    });
    (
        event_id,
        Bytes::from(serde_json::to_vec(&event).expect("serializable")),
    )
}

pub(crate) struct Latencies(Vec<Duration>);

impl Latencies {
    fn percentile(&mut self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        self.0.sort_unstable();
        let index = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0[index]
    }

    pub(crate) fn summary(&mut self) -> String {
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(self.percentile(0.50)),
            ms(self.percentile(0.99)),
            ms(self.percentile(1.0))
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `chosen`, or a fresh directory under the system's temp dir named after `purpose`.
pub(crate) fn data_dir_or_temp(
    chosen: Option<&std::path::Path>,
    purpose: &str,
) -> anyhow::Result<PathBuf> {
    let dir = chosen.map_or_else(
        || std::env::temp_dir().join(format!("hookwatch-{purpose}-{}", std::process::id())),
        std::path::Path::to_path_buf,
    );
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let data_dir = data_dir_or_temp(args.data_dir.as_deref(), "bench")?;
    let outcome = if let Some(sends) = args.client {
        client_bench(&args, &data_dir, sends).await
    } else if args.prune {
        ingest_while_pruning(&args, &data_dir).await
    } else if let Some(batches) = args.otlp {
        otlp::compare_with_hook_ingest(&args, &data_dir, batches).await
    } else if let Some(clients) = args.live {
        live_delivery(&args, &data_dir, clients).await
    } else if args.scale_out {
        scale_out::compare(&args, &data_dir).await
    } else if args.floor {
        floor::compare(&args, &data_dir).await
    } else if args.compare_cache {
        compare_cache(&args, &data_dir).await
    } else {
        full_run(&args, &data_dir).await
    };
    if args.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    outcome
}

/// The default run: closed-loop and open-loop ingest, a prefill, reads, memory.
async fn full_run(args: &BenchArgs, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let server = Server::start(data_dir, &args.durability, args.redis_url.as_deref()).await?;
    println!("# hookwatch-bench");
    println!(
        "server pid {} on {}, durability {}, cache {}, data dir {}",
        server.pid,
        server.addr,
        args.durability,
        args.redis_url.as_deref().map_or("off", |_| "redis"),
        data_dir.display()
    );

    // 1. Closed-loop throughput.
    let cpu_before = (server.cpu_seconds(), process_cpu_seconds("self"));
    let machine_before = MachineCpu::now();
    let (mut latencies, elapsed) = closed_loop(
        &server.addr,
        args.events,
        args.connections,
        args.sessions_per_connection.into(),
        0,
    )
    .await?;
    let machine_after = MachineCpu::now();
    let cpu_used = (
        server.cpu_seconds() - cpu_before.0,
        process_cpu_seconds("self") - cpu_before.1,
    );
    let sent = latencies.0.len();
    // CPU per event varies far less from run to run than events/s on a shared 2-core machine:
    // the figure to compare two builds by.
    let per_event_us = |seconds: f64| seconds * 1e6 / sent.max(1) as f64;
    println!(
        "\n## ingest, closed loop: {} events over {} connections{}\n{:.0} events/s ({:.1} s); ack latency {}\nCPU per event: server {:.1} µs, this client {:.1} µs\n{}",
        sent,
        args.connections,
        match args.sessions_per_connection {
            1 => String::new(),
            k => format!(" ({k} sessions each)"),
        },
        sent as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        latencies.summary(),
        per_event_us(cpu_used.0),
        per_event_us(cpu_used.1),
        machine_before.report_since(machine_after, cpu_used.0, cpu_used.1),
    );
    let (peak, rss) = server.memory_kib();
    println!(
        "server RSS now {} MiB, peak {} MiB",
        rss / 1024,
        peak / 1024
    );

    // 2. Open loop at a fixed rate.
    let mut latencies = Latencies(
        open_loop(&server.addr, args.rate, args.rate_seconds, 1000)
            .await?
            .iter()
            .map(|sent| sent.acknowledged - sent.scheduled)
            .collect(),
    );
    println!(
        "\n## ingest, open loop at {} events/s for {} s ({} events)\nack latency from scheduled send: {}",
        args.rate,
        args.rate_seconds,
        latencies.0.len(),
        latencies.summary()
    );

    // 3. Prefill to the target size, then reads.
    let already = sent + latencies.0.len();
    let stored = already
        + prefill(
            &server.addr,
            args.store_events.saturating_sub(already),
            hookwatch::clock::Clock::now_ms(&hookwatch::clock::SystemClock),
        )
        .await?;
    println!(
        "\n## reads on a store of {stored} events ({} sequential requests per view)",
        args.reads
    );
    if args.redis_url.is_some() {
        println!("(served from the Redis cache after the first request of each view)");
    }
    let now = hookwatch::clock::Clock::now_ms(&hookwatch::clock::SystemClock);
    let day = 86_400_000;
    let views = [
        ("metrics (today)", "/api/agents/metrics/current".to_owned()),
        (
            "metrics (last 24 h)",
            format!("/api/agents/metrics/current?start={}&end={now}", now - day),
        ),
        (
            "metrics (last 7 d)",
            format!(
                "/api/agents/metrics/current?start={}&end={now}",
                now - 7 * day
            ),
        ),
        (
            "timeline (24 h)",
            "/api/agents/metrics/timeline?hours=24".to_owned(),
        ),
        (
            "distribution (24 h)",
            "/api/agents/types/distribution".to_owned(),
        ),
        ("tool usage (24 h)", "/api/agents/tools/usage".to_owned()),
        ("recent events (100)", "/events/recent?limit=100".to_owned()),
        ("sessions (100)", "/api/sessions?limit=100".to_owned()),
        ("agents (all, 100)", "/api/agents?limit=100".to_owned()),
        ("active agents", "/api/agents?status=active".to_owned()),
    ];
    let mut conn = Connection::open(&server.addr).await?;
    for (name, path) in views {
        println!(
            "{name:<22} {}",
            read_latencies(&mut conn, &path, args.reads)
                .await?
                .summary()
        );
    }
    let (peak, rss) = server.memory_kib();
    println!(
        "\n## memory\nserver RSS now {} MiB, peak (VmHWM) {} MiB",
        rss / 1024,
        peak / 1024
    );
    let size = std::fs::metadata(data_dir.join(hookwatch::config::DATABASE_FILE))
        .map(|m| m.len())
        .unwrap_or(0);
    println!("database file {} MiB", size / (1024 * 1024));
    drop(server);
    Ok(())
}

/// `events` PreToolUse events over `connections` keep-alive connections, each request waiting
/// for its `200`, each connection taking its `sessions_per_connection` sessions in turn.
/// Returns each acknowledgement's latency and the wall time.
pub(crate) async fn closed_loop(
    addr: &str,
    events: usize,
    connections: usize,
    sessions_per_connection: usize,
    first_worker: usize,
) -> anyhow::Result<(Latencies, Duration)> {
    let addrs = [addr.to_owned()];
    closed_loop_spread(
        &addrs,
        events,
        connections,
        sessions_per_connection,
        first_worker,
    )
    .await
}

/// [`closed_loop`] with the connections spread evenly over several servers.
async fn closed_loop_spread(
    addrs: &[String],
    events: usize,
    connections: usize,
    sessions_per_connection: usize,
    first_worker: usize,
) -> anyhow::Result<(Latencies, Duration)> {
    let per_worker = events / connections.max(1);
    let sessions = sessions_per_connection.max(1);
    let mut prepared = Vec::new();
    for worker in first_worker..first_worker + connections {
        let bodies: Vec<Bytes> = (0..per_worker)
            .map(|n| identified_pre_tool_use_in_session(worker, n, n % sessions).1)
            .collect();
        let addr = &addrs[worker % addrs.len()];
        prepared.push((Connection::open(addr).await?, bodies));
    }
    drive(prepared, "/events", |body| with_fresh_event_id(body).1).await
}

/// POSTs every connection's bodies to `path`, one after another on each connection and all
/// connections at once, each body made ready by `ready` (on the clock); every answer must be
/// 200. Returns each request's latency and the wall time.
pub(crate) async fn drive(
    prepared: Vec<(Connection, Vec<Bytes>)>,
    path: &'static str,
    ready: fn(&Bytes) -> Bytes,
) -> anyhow::Result<(Latencies, Duration)> {
    let started = Instant::now();
    let mut workers = Vec::new();
    for (mut conn, bodies) in prepared {
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(bodies.len());
            for body in bodies {
                let sent = Instant::now();
                let (status, answer) = conn.request("POST", path, ready(&body)).await?;
                if status != 200 {
                    bail!(
                        "{path} answered {status}: {}",
                        String::from_utf8_lossy(&answer)
                    );
                }
                latencies.push(sent.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Latencies(Vec::new());
    for worker in workers {
        latencies.0.extend(worker.await??);
    }
    Ok((latencies, started.elapsed()))
}

/// How an open-loop run spreads `rate` events/s over its connections.
struct OpenLoopPlan {
    connections: usize,
    per_connection: usize,
    period: Duration,
}

impl OpenLoopPlan {
    fn total(&self) -> usize {
        self.connections * self.per_connection
    }
}

fn open_loop_plan(rate: usize, seconds: u64) -> OpenLoopPlan {
    let connections = 16.min(rate.max(1));
    let per_connection_rate = rate as f64 / connections as f64;
    OpenLoopPlan {
        connections,
        per_connection: (per_connection_rate * seconds as f64) as usize,
        period: Duration::from_secs_f64(1.0 / per_connection_rate),
    }
}

/// One open-loop request: its event, when it was due, and when its `200` arrived.
struct OpenLoopSend {
    event_id: String,
    scheduled: Instant,
    acknowledged: Instant,
}

/// PreToolUse events at `rate` per second for `seconds`, on up to 16 connections, each sent
/// at its scheduled time whether or not earlier ones were answered (no coordinated omission).
async fn open_loop(
    addr: &str,
    rate: usize,
    seconds: u64,
    first_worker: usize,
) -> anyhow::Result<Vec<OpenLoopSend>> {
    let plan = open_loop_plan(rate, seconds);
    let (connections, count, period) = (plan.connections, plan.per_connection, plan.period);
    let mut workers = Vec::new();
    for worker in 0..connections {
        let addr = addr.to_owned();
        workers.push(tokio::spawn(async move {
            let bodies: Vec<Bytes> = (0..count)
                .map(|n| pre_tool_use(first_worker + worker, n))
                .collect();
            let mut conn = Connection::open(&addr).await?;
            let start = tokio::time::Instant::now() + Duration::from_millis(50);
            let mut sent = Vec::with_capacity(count);
            for (n, body) in bodies.into_iter().enumerate() {
                let scheduled =
                    start + period.mul_f64(n as f64 + worker as f64 / connections as f64);
                tokio::time::sleep_until(scheduled).await;
                let (event_id, body) = with_fresh_event_id(&body);
                let (status, _) = conn.request("POST", "/events", body).await?;
                if status != 200 {
                    bail!("ingest answered {status}");
                }
                sent.push(OpenLoopSend {
                    event_id,
                    scheduled: scheduled.into_std(),
                    acknowledged: Instant::now(),
                });
            }
            anyhow::Ok(sent)
        }));
    }
    let mut sent = Vec::new();
    for worker in workers {
        sent.extend(worker.await??);
    }
    Ok(sent)
}

/// `reads` sequential GETs of `path`, each checked for a `200`.
async fn read_latencies(
    conn: &mut Connection,
    path: &str,
    reads: usize,
) -> anyhow::Result<Latencies> {
    let mut latencies = Latencies(Vec::with_capacity(reads));
    for _ in 0..reads {
        let sent = Instant::now();
        let (status, body) = conn.request("GET", path, Bytes::new()).await?;
        if status != 200 {
            bail!(
                "{path} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        latencies.0.push(sent.elapsed());
    }
    Ok(latencies)
}

/// The cache's cost on ingest and its gain on reads: see the module docs.
async fn compare_cache(args: &BenchArgs, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let redis_url = args
        .redis_url
        .as_deref()
        .context("--redis-url is required")?;
    let plain_dir = data_dir.join("no-cache");
    let cached_dir = data_dir.join("cache");
    std::fs::create_dir_all(&plain_dir)?;
    std::fs::create_dir_all(&cached_dir)?;
    let plain = Server::start(&plain_dir, &args.durability, None).await?;
    let cached = Server::start(&cached_dir, &args.durability, Some(redis_url)).await?;
    println!("# hookwatch-bench --compare-cache");
    println!(
        "no cache: pid {} on {}; cache: pid {} on {} with redis; durability {}",
        plain.pid, plain.addr, cached.pid, cached.addr, args.durability
    );
    let per_round = args.events / args.rounds.max(1);
    println!(
        "\n## ingest, closed loop: {} rounds of {per_round} events over {} connections, alternating",
        args.rounds, args.connections
    );
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut cpu_per_event_us: [f64; 2] = [0.0, 0.0];
    for round in 0..args.rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let server = if which == 0 { &plain } else { &cached };
            let first_worker = (round * 2 + which) * args.connections;
            let cpu_before = server.cpu_seconds();
            let (mut latencies, elapsed) = closed_loop(
                &server.addr,
                per_round,
                args.connections,
                args.sessions_per_connection.into(),
                first_worker,
            )
            .await?;
            cpu_per_event_us[which] +=
                (server.cpu_seconds() - cpu_before) * 1e6 / latencies.0.len() as f64;
            let rate = latencies.0.len() as f64 / elapsed.as_secs_f64();
            println!(
                "round {round} {:<8} {rate:>7.0} events/s; ack {}",
                ["no cache", "cache"][which],
                latencies.summary()
            );
            rates[which].push(rate);
        }
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let (plain_rate, cached_rate) = (median(&mut rates[0]), median(&mut rates[1]));
    println!(
        "median: no cache {plain_rate:.0} events/s, cache {cached_rate:.0} events/s: \
         write-through costs {:.1}%",
        (1.0 - cached_rate / plain_rate) * 100.0
    );
    println!(
        "server CPU per event (mean of rounds): no cache {:.0} µs, cache {:.0} µs",
        cpu_per_event_us[0] / args.rounds as f64,
        cpu_per_event_us[1] / args.rounds as f64
    );

    let ingested = per_round * args.rounds;
    for server in [&plain, &cached] {
        prefill(
            &server.addr,
            args.store_events.saturating_sub(ingested),
            hookwatch::clock::Clock::now_ms(&hookwatch::clock::SystemClock),
        )
        .await?;
    }
    println!(
        "\n## metrics reads on a store of ~{} events ({} sequential requests each)",
        args.store_events, args.reads
    );
    for (name, server) in [("from SQLite", &plain), ("from Redis", &cached)] {
        let mut conn = Connection::open(&server.addr).await?;
        for (view, path) in [
            ("metrics (today)", "/api/agents/metrics/current"),
            ("metrics (7 d)", "/api/agents/metrics/current?hours=168"),
        ] {
            let mut latencies = read_latencies(&mut conn, path, args.reads).await?;
            println!("{view:<16} {name:<12} {}", latencies.summary());
        }
    }
    let mut conn = Connection::open(&cached.addr).await?;
    let (_, body) = conn
        .request("GET", "/api/agents/health", Bytes::new())
        .await?;
    let health: Value = serde_json::from_slice(&body)?;
    println!(
        "cache server: metrics hits {}, misses {}; breaker {}",
        health["cache"]["views"]["metrics"]["hits"],
        health["cache"]["views"]["metrics"]["misses"],
        health["redis"]["breaker"]["state"]
    );
    for (name, server) in [("no cache", &plain), ("cache", &cached)] {
        let (peak, _) = server.memory_kib();
        println!("{name} server peak RSS {} MiB", peak / 1024);
    }
    Ok(())
}

/// Wall time of `hookwatch send` processes, sequentially, as a hook runner starts them.
async fn client_bench(
    args: &BenchArgs,
    data_dir: &std::path::Path,
    sends: usize,
) -> anyhow::Result<()> {
    let server = Server::start(&data_dir.join("server"), &args.durability, None).await?;
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        format!("http://{}", listener.local_addr()?)
    };
    let exe = crate::hookwatch_binary()?;
    println!("# hookwatch-bench --client {sends}");
    for (name, url) in [
        ("server up", format!("http://{}", server.addr)),
        ("server down (spools)", dead),
    ] {
        let spool = data_dir.join(format!("spool-{}", name.len()));
        let mut latencies = Latencies(Vec::with_capacity(sends));
        for n in 0..sends {
            let payload = pre_tool_use(9_000, n);
            let hook: Value = serde_json::from_slice(&payload)?;
            let hook = serde_json::to_vec(&hook["payload"])?;
            let started = Instant::now();
            let mut child = tokio::process::Command::new(&exe)
                .arg("send")
                .env("HOOKWATCH_SERVER", &url)
                .env("HOOKWATCH_SPOOL_DIR", &spool)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            let mut stdin = child.stdin.take().context("stdin")?;
            tokio::io::AsyncWriteExt::write_all(&mut stdin, &hook).await?;
            drop(stdin);
            let status = child.wait().await?;
            latencies.0.push(started.elapsed());
            if !status.success() {
                bail!("send exited with {status}");
            }
        }
        println!("{name:<22} {}", latencies.summary());
    }
    Ok(())
}

/// Adds about `count` events: realistic sessions spread over the last 7 days, posted as NDJSON
/// batches. Returns how many the server accepted.
/// Realistic sessions, `count` events in all, spread over the 7 days before `end_ms`.
async fn prefill(addr: &str, count: usize, end_ms: i64) -> anyhow::Result<usize> {
    prefill_spread(&[addr.to_owned()], count, end_ms).await
}

/// [`prefill`] with its four workers spread evenly over several servers.
async fn prefill_spread(addrs: &[String], count: usize, end_ms: i64) -> anyhow::Result<usize> {
    if count == 0 {
        return Ok(0);
    }
    let started = Instant::now();
    let sessions_needed = count.div_ceil(EVENTS_PER_SESSION);
    let now = end_ms;
    let workers = 4;
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let addr = addrs[worker % addrs.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Connection::open(&addr).await?;
            let mut batch = Vec::with_capacity(1024 * 1024);
            let mut in_batch = 0;
            let mut accepted = 0;
            for session in (worker..sessions_needed).step_by(workers) {
                let start = now - 7 * 86_400_000
                    + (session as i64 * 7 * 86_400_000) / sessions_needed as i64;
                for event in synthetic_session(session, start) {
                    serde_json::to_writer(&mut batch, &event)?;
                    batch.push(b'\n');
                    in_batch += 1;
                }
                if in_batch >= 900 {
                    accepted += send_batch(&mut conn, std::mem::take(&mut batch)).await?;
                    in_batch = 0;
                }
            }
            if in_batch > 0 {
                accepted += send_batch(&mut conn, batch).await?;
            }
            anyhow::Ok(accepted)
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        accepted += task.await??;
    }
    println!(
        "\nprefilled {accepted} events in {:.1} s ({:.0} events/s through /events/batch)",
        started.elapsed().as_secs_f64(),
        accepted as f64 / started.elapsed().as_secs_f64()
    );
    Ok(accepted)
}

async fn send_batch(conn: &mut Connection, batch: Vec<u8>) -> anyhow::Result<usize> {
    let (status, body) = conn
        .request("POST", "/events/batch", Bytes::from(batch))
        .await?;
    if status != 200 {
        bail!(
            "batch answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let answer: Value = serde_json::from_slice(&body)?;
    Ok(answer["accepted"].as_u64().unwrap_or(0) as usize)
}

const EVENTS_PER_SESSION: usize = 52;

/// One session: a prompt, ten tool calls, two subagents with five tool calls each, the end.
fn synthetic_session(index: usize, start_ms: i64) -> Vec<Value> {
    let session = format!("prefill-{index:08}");
    let app = format!("project-{}", index % 7);
    let mut events = Vec::with_capacity(EVENTS_PER_SESSION);
    let mut at = start_ms;
    let mut push = |kind: &str, payload: Value, at: &mut i64| {
        *at += 1_500;
        let mut payload = payload;
        payload["session_id"] = json!(session);
        payload["hook_event_name"] = json!(kind);
        payload["cwd"] = json!(format!("/home/dev/{app}"));
        events.push(json!({
            "event_id": uuid::Uuid::now_v7().to_string(),
            "source_app": app,
            "session_id": session,
            "hook_event_type": kind,
            "timestamp": *at,
            "payload": payload,
        }));
    };
    let tools = ["Read", "Edit", "Bash", "Grep", "Glob", "Write"];
    let agent_types = ["Explore", "general-purpose", "Plan"];
    push("SessionStart", json!({"source": "startup"}), &mut at);
    push(
        "UserPromptSubmit",
        json!({"prompt": "Please fix the failing test in the parser module"}),
        &mut at,
    );
    for call in 0..10 {
        let tool = tools[(index + call) % tools.len()];
        let id = format!("{session}-t{call}");
        push(
            "PreToolUse",
            json!({"tool_name": tool, "tool_use_id": id, "tool_input": {"file_path": "/src/lib.rs"}}),
            &mut at,
        );
        push(
            "PostToolUse",
            json!({"tool_name": tool, "tool_use_id": id, "tool_response": {"ok": true}, "duration_ms": 120}),
            &mut at,
        );
    }
    for sub in 0..2 {
        let agent_type = agent_types[(index + sub) % agent_types.len()];
        let agent = format!("{session}-a{sub}");
        let task = format!("{session}-k{sub}");
        push(
            "PreToolUse",
            json!({"tool_name": "Task", "tool_use_id": task, "tool_input": {"subagent_type": agent_type, "description": "Investigate"}}),
            &mut at,
        );
        push(
            "SubagentStart",
            json!({"agent_id": agent, "agent_type": agent_type}),
            &mut at,
        );
        for call in 0..5 {
            let tool = tools[(index + sub + call) % tools.len()];
            let id = format!("{agent}-t{call}");
            push(
                "PreToolUse",
                json!({"tool_name": tool, "tool_use_id": id, "agent_id": agent, "agent_type": agent_type}),
                &mut at,
            );
            push(
                "PostToolUse",
                json!({"tool_name": tool, "tool_use_id": id, "agent_id": agent, "agent_type": agent_type, "duration_ms": 80}),
                &mut at,
            );
        }
        push(
            "SubagentStop",
            json!({"agent_id": agent, "agent_type": agent_type}),
            &mut at,
        );
        push(
            "PostToolUse",
            json!({"tool_name": "Task", "tool_use_id": task, "tool_response": {"agentId": agent,
            "totalDurationMs": 20_000, "usage": {"input_tokens": 5_000, "output_tokens": 1_500, "cache_read_input_tokens": 20_000}}}),
            &mut at,
        );
    }
    push("Stop", json!({"stop_hook_active": false}), &mut at);
    push(
        "SessionEnd",
        json!({"reason": "prompt_input_exit"}),
        &mut at,
    );
    debug_assert_eq!(events.len(), EVENTS_PER_SESSION);
    events
}

/// Delivery latency from the HTTP acknowledgement to the WebSocket message: `clients` clients
/// read `/stream` while events are ingested open-loop at `--rate` for `--rate-seconds`. Each
/// client notes when each event's message arrived; the ingest side notes when each request was
/// sent and acknowledged. A message can arrive before its acknowledgement does (both leave the
/// server at about the same time), so the ack-relative figure counts those as 0 and the share of
/// them is reported too.
async fn live_delivery(
    args: &BenchArgs,
    data_dir: &std::path::Path,
    clients: usize,
) -> anyhow::Result<()> {
    use futures_util::StreamExt;
    use std::collections::HashMap;

    let server = Server::start(data_dir, &args.durability, args.redis_url.as_deref()).await?;
    println!("# hookwatch-bench --live {clients}");
    println!(
        "server pid {} on {}, durability {}, {} events/s for {} s",
        server.pid, server.addr, args.durability, args.rate, args.rate_seconds
    );
    let total = open_loop_plan(args.rate, args.rate_seconds).total();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(clients.max(1));
    let mut readers = Vec::new();
    for _ in 0..clients {
        let addr = server.addr.clone();
        let ready = ready_tx.clone();
        readers.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(&addr).await?;
            stream.set_nodelay(true)?;
            let (mut socket, _) =
                tokio_tungstenite::client_async(format!("ws://{addr}/stream"), stream).await?;
            let mut arrivals: Vec<(String, Instant)> = Vec::with_capacity(total);
            let mut announced = false;
            while arrivals.len() < total {
                let Some(message) = socket.next().await else {
                    bail!(
                        "the server closed the stream after {} events",
                        arrivals.len()
                    );
                };
                let arrived = Instant::now();
                let tokio_tungstenite::tungstenite::Message::Text(text) = message? else {
                    continue;
                };
                if !announced {
                    announced = true; // `initial` arrived: this client is subscribed
                    let _ = ready.send(()).await;
                }
                if let Some(id) = event_id_of_event_message(&text) {
                    arrivals.push((id.to_owned(), arrived));
                }
            }
            anyhow::Ok(arrivals)
        }));
    }
    for _ in 0..clients {
        ready_rx
            .recv()
            .await
            .context("a client failed to connect")?;
    }

    let acknowledged: HashMap<String, (Instant, Instant)> =
        open_loop(&server.addr, args.rate, args.rate_seconds, 2000)
            .await?
            .into_iter()
            .map(|sent| (sent.event_id, (sent.scheduled, sent.acknowledged)))
            .collect();
    let expected = acknowledged.len();
    let mut from_ack = Latencies(Vec::with_capacity(expected * clients));
    let mut from_send = Latencies(Vec::with_capacity(expected * clients));
    let mut before_ack = 0usize;
    let deadline = Instant::now() + Duration::from_secs(30);
    for reader in readers {
        let arrivals = tokio::time::timeout_at(deadline.into(), reader).await;
        let arrivals = match arrivals {
            Ok(joined) => joined??,
            Err(_) => bail!("a client did not receive every event within 30 s"),
        };
        for (id, arrived) in arrivals {
            let Some((scheduled, acked)) = acknowledged.get(&id) else {
                continue;
            };
            from_send
                .0
                .push(arrived.saturating_duration_since(*scheduled));
            if arrived < *acked {
                before_ack += 1;
            }
            from_ack.0.push(arrived.saturating_duration_since(*acked));
        }
    }
    let deliveries = from_ack.0.len();
    println!(
        "\n## delivery to {clients} WebSocket clients of {expected} events ({deliveries} messages)\n\
         from the acknowledgement:  {} ({:.1}% arrived before their acknowledgement)\n\
         from the scheduled send:   {}",
        from_ack.summary(),
        100.0 * before_ack as f64 / deliveries.max(1) as f64,
        from_send.summary()
    );
    let (peak, rss) = server.memory_kib();
    println!(
        "server RSS now {} MiB, peak {} MiB; server CPU {:.1} s",
        rss / 1024,
        peak / 1024,
        server.cpu_seconds()
    );
    Ok(())
}

/// The `event_id` of an origin `event` message, found without parsing the whole payload.
fn event_id_of_event_message(text: &str) -> Option<&str> {
    let rest = text.strip_prefix(r#"{"type":"event","data":"#)?;
    let start = rest.find(r#""event_id":""#)? + r#""event_id":""#.len();
    let end = rest[start..].find('"')?;
    Some(&rest[start..start + end])
}

/// Ingest latency while retention prunes: see `BenchArgs::prune`.
async fn ingest_while_pruning(args: &BenchArgs, data_dir: &std::path::Path) -> anyhow::Result<()> {
    const DAY: i64 = 86_400_000;
    println!("# hookwatch-bench --prune");
    let now = hookwatch::clock::Clock::now_ms(&hookwatch::clock::SystemClock);
    let filler = Server::start(data_dir, &args.durability, None).await?;
    prefill(&filler.addr, args.store_events, now - 31 * DAY).await?;
    filler.stop().await?;
    let open_loop_p99 = |server: Server, label: &'static str| async move {
        let sent = open_loop(&server.addr, args.rate, args.rate_seconds, 3000).await?;
        let mut latencies = Latencies(
            sent.iter()
                .map(|sent| sent.acknowledged - sent.scheduled)
                .collect(),
        );
        let mut conn = Connection::open(&server.addr).await?;
        let (_, body) = conn
            .request("GET", "/api/agents/health", Bytes::new())
            .await?;
        let health: Value = serde_json::from_slice(&body)?;
        println!(
            "\n## {label}: open loop at {} events/s for {} s\nack latency from scheduled send: {}\n\
             rows pruned meanwhile: {} (events {}), pruning runs finished: {}; database {} MiB",
            args.rate,
            args.rate_seconds,
            latencies.summary(),
            health["retention"]["pruned"]["events"]
                .as_u64()
                .unwrap_or(0)
                + health["retention"]["pruned"]["tool_calls"]
                    .as_u64()
                    .unwrap_or(0)
                + health["retention"]["pruned"]["agents"]
                    .as_u64()
                    .unwrap_or(0)
                + health["retention"]["pruned"]["sessions"]
                    .as_u64()
                    .unwrap_or(0),
            health["retention"]["pruned"]["events"],
            health["retention"]["runs"],
            health["retention"]["database_bytes"].as_u64().unwrap_or(0) / (1024 * 1024),
        );
        server.stop().await?;
        anyhow::Ok(())
    };
    // The same store, first with nothing to prune (the events are within 60 days)...
    let baseline =
        Server::start_with(data_dir, &args.durability, None, &["--retention", "60d"]).await?;
    open_loop_p99(baseline, "nothing to prune (--retention 60d)").await?;
    // ...then with all of them past retention, pruned while ingest runs.
    let pruning = Server::start_with(
        data_dir,
        &args.durability,
        None,
        &["--retention", "30d", "--prune-interval", "1s"],
    )
    .await?;
    open_loop_p99(pruning, "pruning (--retention 30d)").await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_event_id_replaces_the_built_one_and_nothing_else() {
        let built = pre_tool_use(3, 7);
        let (event_id, stamped) = with_fresh_event_id(&built);
        let before: Value = serde_json::from_slice(&built).expect("built body is JSON");
        let mut after: Value = serde_json::from_slice(&stamped).expect("stamped body is JSON");
        assert_eq!(after["event_id"], event_id.as_str());
        assert_ne!(before["event_id"], after["event_id"]);
        after["event_id"] = before["event_id"].clone();
        assert_eq!(before, after);
    }

    #[test]
    fn sessions_of_one_connection_differ_by_slot_and_keep_one_length() {
        let session = |slot| {
            let body: Value =
                serde_json::from_slice(&identified_pre_tool_use_in_session(3, 7, slot).1)
                    .expect("built body is JSON");
            assert_eq!(body["session_id"], body["payload"]["session_id"]);
            body["session_id"]
                .as_str()
                .expect("a session id")
                .to_owned()
        };
        let (first, second) = (session(0), session(1));
        assert_ne!(first, second);
        assert_eq!(first.len(), second.len());
        assert_eq!(
            first,
            serde_json::from_slice::<Value>(&pre_tool_use(3, 7)).unwrap()["session_id"]
        );
    }

    #[test]
    fn answer_heads_give_status_and_body_length() {
        let head =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 42\r\n\r\n{";
        let end = find_head_end(head).expect("a whole head");
        assert_eq!(&head[end..], b"{");
        assert_eq!(parse_answer_head(&head[..end]).unwrap(), (200, 42));
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\ncontent-le"), None);
        let no_content = b"HTTP/1.1 204 No Content\r\ndate: x\r\n\r\n";
        assert_eq!(parse_answer_head(no_content).unwrap(), (204, 0));
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(parse_answer_head(chunked).is_err());
    }

    #[test]
    fn machine_cpu_sets_the_measured_processes_apart_from_everything_else() {
        let stat = |user: u64, idle: u64, iowait: u64, steal: u64| {
            format!(
                "cpu  {user} 0 100 {idle} {iowait} 0 0 {steal} 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
            )
        };
        let before = MachineCpu::parse(&stat(1000, 5000, 100, 0));
        assert_eq!(before.total, 62.0);
        assert_eq!(before.busy, 11.0);
        // 4 s on 2 CPUs (800 ticks): 600 ticks busy, 100 iowait, 40 steal, 60 idle.
        let after = MachineCpu::parse(&stat(1600, 5060, 200, 40));
        assert_eq!(
            before.report_since(after, 3.0, 1.0),
            "machine over that time: CPUs busy 75 % (server 38 %, this client 12 %, everything else 25 %), iowait 12 %, steal 5 %"
        );
        assert_eq!(MachineCpu::parse("no cpu line"), MachineCpu::default());
    }
}
