//! `hookwatch serve`: its options, each with its environment variable, and how they become a
//! [`Config`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use hookwatch::api::CorsPolicy;
use hookwatch::api::auth::Tokens;
use hookwatch::api::otlp_grpc::GrpcLimits;
use hookwatch::cache::breaker::BreakerSettings;
use hookwatch::cache::{CacheSettings, ViewTtls};
use hookwatch::config::{self, Config};
use hookwatch::domain::pricing::{ModelPrice, PriceTable};
use hookwatch::domain::time::parse_duration_ms;
use hookwatch::otlp::bounds::ExportLimits;
use hookwatch::startup::{Application, shutdown_signal};
use hookwatch::store::sqlite::Durability;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on. Port 0 picks a free port.
    #[arg(long, env = "HOOKWATCH_ADDR", default_value = config::DEFAULT_ADDR)]
    addr: SocketAddr,
    /// Where to serve OTLP/gRPC (Claude Code's telemetry with OTEL_EXPORTER_OTLP_PROTOCOL=grpc),
    /// or `off`. OTLP over HTTP is always served on --addr. When the default address is taken,
    /// hookwatch starts without gRPC and says so.
    #[arg(long, env = "HOOKWATCH_OTLP_GRPC_ADDR", value_parser = grpc_addr)]
    otlp_grpc_addr: Option<GrpcAddr>,
    /// Open OTLP/gRPC connections at most; more are closed as they are accepted.
    #[arg(
        long,
        env = "HOOKWATCH_OTLP_GRPC_MAX_CONNECTIONS",
        default_value_t = 512
    )]
    otlp_grpc_max_connections: usize,
    /// OTLP/gRPC exports in flight at once on one connection.
    #[arg(long, env = "HOOKWATCH_OTLP_GRPC_MAX_STREAMS", default_value_t = 16)]
    otlp_grpc_max_streams: u32,
    /// The longest an OTLP/gRPC export's message may take to arrive (DEADLINE_EXCEEDED past it).
    #[arg(long, env = "HOOKWATCH_OTLP_GRPC_REQUEST_TIMEOUT", default_value = "30s", value_parser = duration)]
    otlp_grpc_request_timeout: i64,
    /// An OTLP/gRPC connection with no export for this long is closed (the exporter reconnects).
    #[arg(long, env = "HOOKWATCH_OTLP_GRPC_IDLE_TIMEOUT", default_value = "2m", value_parser = duration)]
    otlp_grpc_idle_timeout: i64,
    /// An alert rule file (TOML: [[target]] webhooks or commands, [[rule]] conditions); read
    /// again on SIGHUP or POST /api/alerts/reload.
    #[arg(long, env = "HOOKWATCH_ALERTS")]
    alerts: Option<PathBuf>,
    /// Where people reach this hookwatch (http://host:port): alerts then link to the session's
    /// trace or the alerts page.
    #[arg(long, env = "HOOKWATCH_PUBLIC_URL")]
    public_url: Option<String>,
    /// How often the alert rules are evaluated, such as 15s or 1m.
    #[arg(long, env = "HOOKWATCH_ALERT_INTERVAL", default_value = "15s", value_parser = duration)]
    alert_interval: i64,
    /// Where the database lives [default: $XDG_DATA_HOME/hookwatch or ~/.local/share/hookwatch]
    #[arg(long, env = "HOOKWATCH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// full: each acknowledged event survives power loss; normal: survives a process crash.
    #[arg(long, env = "HOOKWATCH_DURABILITY", default_value = "full")]
    durability: Durability,
    /// Store events in PostgreSQL instead of SQLite (postgres://user:pass@host/db). Several
    /// instances may share one database (and one Redis).
    #[arg(long, env = "HOOKWATCH_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// PostgreSQL writer connections (each commits groups of events).
    #[arg(long, env = "HOOKWATCH_DATABASE_WRITERS", default_value_t = 2)]
    database_writers: usize,
    /// Names this instance in logs, health and its notices to other instances [default: random]
    #[arg(long, env = "HOOKWATCH_INSTANCE_ID")]
    instance_id: Option<String>,
    /// An agent with no event for this long is timed out, not active (e.g. 30m, 2h).
    #[arg(long, env = "HOOKWATCH_AGENT_IDLE_TIMEOUT", default_value = "30m", value_parser = duration)]
    agent_idle_timeout: i64,
    /// The longest one read may run before it is stopped with a 400 (e.g. 2s, 500ms).
    #[arg(long, env = "HOOKWATCH_READ_TIMEOUT", default_value = "2s", value_parser = duration)]
    read_timeout: i64,
    /// Largest accepted event, in bytes.
    #[arg(long, env = "HOOKWATCH_MAX_EVENT_BYTES", default_value_t = 1024 * 1024)]
    max_event_bytes: usize,
    /// Largest accepted batch body, in bytes.
    #[arg(long, env = "HOOKWATCH_MAX_BATCH_BYTES", default_value_t = 16 * 1024 * 1024)]
    max_batch_bytes: usize,
    /// Request body bytes handled at once, across all requests (at least --max-batch-bytes);
    /// past it, writes get 503 with Retry-After.
    #[arg(long, env = "HOOKWATCH_MAX_BODY_BYTES_IN_FLIGHT", default_value_t = 64 * 1024 * 1024)]
    max_body_bytes_in_flight: usize,
    /// Largest `chat` (the whole conversation, the upstream's --add-chat) one event may carry,
    /// in bytes, besides --max-event-bytes. Stored compressed, read from /events/{id}/chat.
    #[arg(long, env = "HOOKWATCH_MAX_CHAT_BYTES", default_value_t = 32 * 1024 * 1024)]
    max_chat_bytes: usize,
    /// The most of a chat's last messages, in bytes, that its event carries as `chat` on the
    /// stream and in event lists (the upstream's dashboard shows a chat only from there), with
    /// `chat_bytes` and `chat_truncated`; 0 for none. At most 4 MiB. The whole chat stays at
    /// /events/{id}/chat.
    #[arg(long, env = "HOOKWATCH_STREAM_CHAT_BYTES", default_value_t = 256 * 1024,
          value_parser = clap::value_parser!(u32).range(0..=4 * 1024 * 1024))]
    stream_chat_bytes: u32,
    /// Most events in one batch.
    #[arg(long, env = "HOOKWATCH_MAX_BATCH_ITEMS", default_value_t = 1000)]
    max_batch_items: usize,
    /// Most records in one OTLP export (log records, data points, spans, and their span
    /// events, links, exemplars and quantiles), counted before it is decoded; past it the
    /// export is refused whole (413, RESOURCE_EXHAUSTED over gRPC). Claude Code sends 512.
    #[arg(long, env = "HOOKWATCH_OTLP_MAX_RECORDS", default_value_t = 32_768)]
    otlp_max_records: usize,
    /// Most resource, scope and metric entries in one OTLP export.
    #[arg(long, env = "HOOKWATCH_OTLP_MAX_ENTRIES", default_value_t = 8_192)]
    otlp_max_entries: usize,
    /// Most attributes in one OTLP export: key-value pairs anywhere, the values nested in
    /// them, and histogram buckets.
    #[arg(long, env = "HOOKWATCH_OTLP_MAX_ATTRIBUTES", default_value_t = 524_288)]
    otlp_max_attributes: usize,
    /// Longest source_app, session_id, event_id or model_name, in bytes.
    #[arg(long, env = "HOOKWATCH_MAX_ID_LEN", default_value_t = 256)]
    max_id_len: usize,
    /// A timestamp further in the future than this is stored as the arrival time (the time
    /// as sent is kept in the event).
    #[arg(long, env = "HOOKWATCH_MAX_CLOCK_SKEW", default_value = "10m", value_parser = duration)]
    max_clock_skew: i64,
    /// Longest summary, in bytes.
    #[arg(long, env = "HOOKWATCH_MAX_SUMMARY_LEN", default_value_t = 64 * 1024)]
    max_summary_len: usize,
    /// Open WebSocket (/stream) clients at most; each also counts against --max-connections.
    #[arg(long, env = "HOOKWATCH_MAX_STREAM_CLIENTS", default_value_t = 1000)]
    max_stream_clients: usize,
    /// Events in the WebSocket's `initial` message (at most 1000).
    #[arg(long, env = "HOOKWATCH_STREAM_INITIAL", default_value_t = 300,
        value_parser = clap::value_parser!(u16).range(0..=1000))]
    stream_initial: u16,
    /// Host names this server answers for besides localhost and its listen address
    /// (comma-separated; * for any). Requests naming another host get 421 (DNS rebinding).
    #[arg(long, env = "HOOKWATCH_ALLOWED_HOSTS", value_delimiter = ',')]
    allowed_hosts: Vec<String>,
    /// Hosts besides localhost and loopback addresses that human-in-the-loop answers may be
    /// relayed to (the hook's responseWebSocketUrl; comma-separated).
    #[arg(long, env = "HOOKWATCH_HITL_ALLOW_HOSTS", value_delimiter = ',')]
    hitl_allow_hosts: Vec<String>,
    /// Browser origins allowed by CORS besides localhost/127.0.0.1 (comma-separated; * for any).
    #[arg(long, env = "HOOKWATCH_CORS_ORIGINS", value_delimiter = ',')]
    cors_origins: Vec<String>,
    /// A JSON file of model prices (USD per million tokens) that overrides the defaults:
    /// {"claude-sonnet-4-5": {"input": 3, "output": 15, "cache_write": 3.75, "cache_read": 0.3}}
    #[arg(long, env = "HOOKWATCH_PRICES")]
    prices: Option<PathBuf>,
    /// Tokens that may write (POST /events, /events/batch, /hooks/claude-code, agent reports,
    /// Claude Code's OTLP export over HTTP and gRPC); comma-separated, so one can be rotated.
    /// Without any, writes are open.
    #[arg(
        long,
        env = "HOOKWATCH_INGEST_TOKEN",
        value_delimiter = ',',
        hide_env_values = true
    )]
    ingest_token: Vec<String>,
    /// Tokens that may read (the API, /stream, /metrics); comma-separated. Without any, reads
    /// are open.
    #[arg(
        long,
        env = "HOOKWATCH_READ_TOKEN",
        value_delimiter = ',',
        hide_env_values = true
    )]
    read_token: Vec<String>,
    /// Allow listening beyond 127.0.0.1 with writes or reads open.
    #[arg(long, env = "HOOKWATCH_INSECURE_NO_AUTH")]
    insecure_no_auth: bool,
    /// Break Claude Code's usage in /metrics down by person too (a `user` label: one series
    /// per person, named by their email). Only with --read-token: people are never shown to
    /// open reads.
    #[arg(long, env = "HOOKWATCH_METRICS_PERSON_LABEL")]
    metrics_person_label: bool,
    /// Turn off the in-process view tier (SQLite only: a view read again with no commit since
    /// is answered from memory), to measure Redis and the store alone.
    #[arg(long, env = "HOOKWATCH_NO_LOCAL_VIEWS")]
    no_local_views: bool,
    /// Redis to use as a cache (redis://host:port/db or unix:///path/redis.sock). Without it,
    /// hookwatch runs with no cache.
    #[arg(long, env = "HOOKWATCH_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// The longest any one Redis call may take, connecting included; no retries.
    #[arg(long, env = "HOOKWATCH_REDIS_TIMEOUT", default_value = "50ms", value_parser = duration)]
    redis_timeout: i64,
    /// Consecutive Redis failures that open the circuit breaker.
    #[arg(long, env = "HOOKWATCH_BREAKER_FAILURES", default_value_t = 5)]
    breaker_failures: u32,
    /// How long the breaker stays open before one probe may go through.
    #[arg(long, env = "HOOKWATCH_BREAKER_COOLDOWN", default_value = "30s", value_parser = duration)]
    breaker_cooldown: i64,
    /// How long cached metrics live in Redis.
    #[arg(long, env = "HOOKWATCH_CACHE_TTL_METRICS", default_value = "60s", value_parser = duration)]
    cache_ttl_metrics: i64,
    /// How long a cached timeline lives in Redis.
    #[arg(long, env = "HOOKWATCH_CACHE_TTL_TIMELINE", default_value = "120s", value_parser = duration)]
    cache_ttl_timeline: i64,
    /// How long a cached agent-type distribution lives in Redis.
    #[arg(long, env = "HOOKWATCH_CACHE_TTL_DISTRIBUTION", default_value = "180s", value_parser = duration)]
    cache_ttl_distribution: i64,
    /// How long cached tool usage lives in Redis.
    #[arg(long, env = "HOOKWATCH_CACHE_TTL_TOOLS", default_value = "300s", value_parser = duration)]
    cache_ttl_tools: i64,
    /// How long cached recent events and filter options live in Redis.
    #[arg(long, env = "HOOKWATCH_CACHE_TTL_EVENTS", default_value = "30s", value_parser = duration)]
    cache_ttl_events: i64,
    /// The least time between two routine cache syncs (recoveries and forced syncs always run).
    #[arg(long, env = "HOOKWATCH_CACHE_SYNC_INTERVAL", default_value = "5m", value_parser = duration)]
    cache_sync_interval: i64,
    /// Keep raw events (and the agents, sessions and tool calls derived from them) this long,
    /// e.g. 30d. Kept for ever without it.
    #[arg(long, env = "HOOKWATCH_RETENTION", value_parser = duration)]
    retention: Option<i64>,
    /// Keep the minute rollups and token usage that charts read this long (at least
    /// --retention); hourly rollups are kept for ever. Kept for ever without it.
    #[arg(long, env = "HOOKWATCH_ROLLUP_RETENTION", value_parser = duration)]
    rollup_retention: Option<i64>,
    /// Also prune the oldest raw events while the database uses more than this (e.g. 2GiB, 500MB).
    #[arg(long, env = "HOOKWATCH_MAX_DB_SIZE", value_parser = byte_size)]
    max_db_size: Option<u64>,
    /// The longest a request may take to arrive and be answered (slow uploads get 408).
    #[arg(long, env = "HOOKWATCH_REQUEST_TIMEOUT", default_value = "30s", value_parser = duration)]
    request_timeout: i64,
    /// The longest a client may take to send a request's line and headers (slowloris).
    #[arg(long, env = "HOOKWATCH_HEADER_TIMEOUT", default_value = "10s", value_parser = duration)]
    header_timeout: i64,
    /// Open connections at most; more are closed at once.
    #[arg(long, env = "HOOKWATCH_MAX_CONNECTIONS", default_value_t = 4096)]
    max_connections: usize,
    /// Requests per second one client (IP address) may make; over it, 429 with Retry-After.
    /// Unlimited without it.
    #[arg(long, env = "HOOKWATCH_RATE_LIMIT_PER_CLIENT")]
    rate_limit_per_client: Option<f64>,
    /// Requests per second the whole server takes; over it, 429 with Retry-After. Unlimited
    /// without it.
    #[arg(long, env = "HOOKWATCH_RATE_LIMIT_GLOBAL")]
    rate_limit_global: Option<f64>,
    /// Load balancers in front of hookwatch (comma-separated IPs): for their requests, the
    /// per-client rate limit uses the client named in X-Forwarded-For.
    #[arg(long, env = "HOOKWATCH_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<std::net::IpAddr>,
    /// How often pruning runs.
    #[arg(long, env = "HOOKWATCH_PRUNE_INTERVAL", default_value = "1m", value_parser = duration)]
    prune_interval: i64,
}

fn byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 500MB or 2GiB"))?;
    let unit_bytes: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        _ => return Err(format!("{text:?} is not a size such as 500MB or 2GiB")),
    };
    number
        .checked_mul(unit_bytes)
        .filter(|bytes| *bytes > 0)
        .ok_or_else(|| format!("{text:?} is not a size such as 500MB or 2GiB"))
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}

/// A comma-separated option's values, trimmed, the empty ones dropped.
fn trimmed(list: Vec<String>) -> Vec<String> {
    list.into_iter()
        .map(|item| item.trim().to_owned())
        .filter(|item| !item.is_empty())
        .collect()
}

/// `--otlp-grpc-addr`: an address, or `off`.
#[derive(Debug, Clone, Copy)]
struct GrpcAddr(Option<SocketAddr>);

fn grpc_addr(text: &str) -> Result<GrpcAddr, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(GrpcAddr(None));
    }
    text.parse()
        .map(|addr| GrpcAddr(Some(addr)))
        .map_err(|_| format!("{text:?} is not an address such as 127.0.0.1:4317, or off"))
}

pub fn duration(text: &str) -> Result<i64, String> {
    parse_duration_ms(text)
        .filter(|ms| *ms > 0)
        .ok_or_else(|| format!("{text:?} is not a duration such as 30m or 2h"))
}

impl ServeArgs {
    pub fn into_config(self) -> anyhow::Result<Config> {
        let mut config = Config::new(self.data_dir.unwrap_or_else(config::default_data_dir));
        config.addr = self.addr;
        match self.otlp_grpc_addr {
            Some(GrpcAddr(addr)) => config.otlp_grpc_addr = addr,
            None => {
                config.otlp_grpc_addr = config::DEFAULT_OTLP_GRPC_ADDR.parse().ok();
                config.otlp_grpc_optional = true;
            }
        }
        config.otlp_grpc_limits = GrpcLimits {
            max_connections: self.otlp_grpc_max_connections,
            max_streams_per_connection: self.otlp_grpc_max_streams,
            request_timeout: millis(self.otlp_grpc_request_timeout),
            idle_timeout: millis(self.otlp_grpc_idle_timeout),
            ..GrpcLimits::default()
        };
        config.alerts_file = self.alerts;
        config.public_url = self.public_url;
        config.alert_interval = std::time::Duration::from_millis(self.alert_interval as u64);
        config.durability = self.durability;
        config.database_url = self.database_url.filter(|url| !url.is_empty());
        config.database_writers = self.database_writers.max(1);
        if let Some(id) = self.instance_id.filter(|id| !id.is_empty()) {
            config.instance_id = id;
        }
        config.agent_idle_timeout_ms = self.agent_idle_timeout;
        config.read_timeout_ms = self.read_timeout as u64;
        config.limits.max_event_bytes = self.max_event_bytes;
        config.limits.max_batch_bytes = self.max_batch_bytes;
        config.limits.max_batch_items = self.max_batch_items;
        config.limits.otlp = ExportLimits {
            max_records: self.otlp_max_records,
            max_entries: self.otlp_max_entries,
            max_attributes: self.otlp_max_attributes,
        };
        config.limits.max_body_bytes_in_flight = self.max_body_bytes_in_flight;
        config.limits.max_chat_bytes = self.max_chat_bytes;
        config.limits.stream_chat_bytes = self.stream_chat_bytes as usize;
        config.limits.max_id_len = self.max_id_len;
        config.limits.max_summary_len = self.max_summary_len;
        config.limits.max_clock_skew_ms = self.max_clock_skew;
        config.stream_initial = usize::from(self.stream_initial);
        config.max_stream_clients = self.max_stream_clients;
        config.allowed_hosts = trimmed(self.allowed_hosts);
        config.hitl_allow_hosts = trimmed(self.hitl_allow_hosts);
        config.cors = CorsPolicy {
            allowed_origins: self.cors_origins,
        };
        config.tokens = Tokens {
            ingest: trimmed(self.ingest_token),
            read: trimmed(self.read_token),
        };
        config.insecure_no_auth = self.insecure_no_auth;
        config.metrics_person_label = self.metrics_person_label;
        config.cache = CacheSettings {
            redis_url: self.redis_url,
            command_timeout: millis(self.redis_timeout),
            breaker: BreakerSettings {
                failure_threshold: self.breaker_failures,
                cooldown: millis(self.breaker_cooldown),
            },
            ttls: ViewTtls {
                metrics: millis(self.cache_ttl_metrics),
                timeline: millis(self.cache_ttl_timeline),
                distribution: millis(self.cache_ttl_distribution),
                tool_usage: millis(self.cache_ttl_tools),
                events: millis(self.cache_ttl_events),
            },
            sync_min_interval: millis(self.cache_sync_interval),
            local_views: !self.no_local_views,
            ..CacheSettings::default()
        };
        config.request_limits = hookwatch::api::limits::RequestLimits {
            request_timeout: millis(self.request_timeout),
            per_client_per_s: self.rate_limit_per_client,
            global_per_s: self.rate_limit_global,
            trusted_proxies: self.trusted_proxies,
        };
        config.connection_limits = hookwatch::http_server::ConnectionLimits {
            header_read_timeout: millis(self.header_timeout),
            max_connections: self.max_connections.max(1),
            ..Default::default()
        };
        config.retention = hookwatch::retention::Retention {
            raw_ms: self.retention,
            rollups_ms: self.rollup_retention,
            max_db_bytes: self.max_db_size,
            interval: millis(self.prune_interval),
            ..Default::default()
        };
        if let Some(path) = self.prices {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("could not read {}", path.display()))?;
            let overrides: BTreeMap<String, ModelPrice> = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a price table", path.display()))?;
            config.prices = PriceTable::with_overrides(overrides);
        }
        Ok(config)
    }
}

/// A line on stdout for whoever started the server (tests and benchmarks read its address
/// there). A launcher that stopped reading (a closed pipe) must not stop the server, as
/// `println!` would by panicking.
fn announce(line: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
}

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let database = config.shown_database();
    let instance = config.instance_id.clone();
    let app = Application::build(config).await?;
    announce(&format!("hookwatch listening on http://{}", app.address()));
    if let Some(grpc) = app.otlp_grpc_address() {
        announce(&format!("hookwatch serving OTLP/gRPC on {grpc}"));
        tracing::info!(%grpc, "serving OTLP/gRPC");
    }
    tracing::info!(%database, %instance, "serving");
    app.run_until_stopped(shutdown_signal()).await
}
