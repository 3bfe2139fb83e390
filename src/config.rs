//! Everything `hookwatch serve` can be told, with the defaults a new user gets.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::api::CorsPolicy;
use crate::api::wire::Limits;
use crate::cache::CacheSettings;
use crate::clock::{Clock, SystemClock};
use crate::domain::pricing::PriceTable;
use crate::domain::time::MINUTE_MS;
use crate::store::sqlite::Durability;

pub const DEFAULT_ADDR: &str = "127.0.0.1:4000";
pub const DATABASE_FILE: &str = "hookwatch.db";

#[derive(Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub durability: Durability,
    /// PostgreSQL instead of SQLite, when set.
    pub database_url: Option<String>,
    /// PostgreSQL writer connections.
    pub database_writers: usize,
    /// This instance's name among the instances sharing a database.
    pub instance_id: String,
    pub limits: Limits,
    pub cors: CorsPolicy,
    /// Host names a request may name besides localhost and the listen address (`*`: any).
    pub allowed_hosts: Vec<String>,
    /// Hosts besides loopback that human-in-the-loop answers may be relayed to.
    pub hitl_allow_hosts: Vec<String>,
    pub prices: PriceTable,
    /// An agent with no event for this long is timed out, not active.
    pub agent_idle_timeout_ms: i64,
    /// How often the idle sweep persists `timed_out`.
    pub idle_sweep_interval_ms: i64,
    /// Write jobs that may wait for the writer.
    pub write_queue_capacity: usize,
    pub read_connections: usize,
    /// The longest one read may run before it is interrupted with a 400.
    pub read_timeout_ms: u64,
    /// Redis; off unless `cache.redis_url` is set.
    pub cache: CacheSettings,
    /// Ingest and read tokens; empty lists leave a scope open.
    pub tokens: crate::api::auth::Tokens,
    /// Listen beyond loopback with an open scope anyway.
    pub insecure_no_auth: bool,
    /// Live messages held for WebSocket clients; a client further behind gets `lagged`.
    pub live_capacity: usize,
    /// Events in the WebSocket's `initial` message (the upstream sends 300, its fork 500).
    pub stream_initial: usize,
    /// Open `/stream` clients at most (each also holds a connection under the connection cap).
    pub max_stream_clients: usize,
    /// Time limits on requests and rate limits per client and overall.
    pub request_limits: crate::api::limits::RequestLimits,
    /// Slow request heads, the connection cap, the shutdown drain.
    pub connection_limits: crate::http_server::ConnectionLimits,
    /// What the background pruner keeps (everything, by default).
    pub retention: crate::retention::Retention,
    pub clock: Arc<dyn Clock>,
    /// Where OTLP/gRPC is served; `None`: not at all.
    pub otlp_grpc_addr: Option<SocketAddr>,
    /// The gRPC address is the default, not asked for: when it is taken (a collector on the
    /// machine, another hookwatch), serve without gRPC and say so, rather than not start.
    pub otlp_grpc_optional: bool,
    /// The gRPC door's connection cap, stream cap, timeouts and keepalive.
    pub otlp_grpc_limits: crate::api::otlp_grpc::GrpcLimits,
    /// Where people reach this hookwatch (`--public-url`), for links in alerts; `None`: alerts
    /// carry no link.
    pub public_url: Option<String>,
    /// `/metrics` breaks Claude Code's usage down by person (`user` label) too, when reads
    /// need a token.
    pub metrics_person_label: bool,
    /// The alert rule file (`--alerts`); `None`: no alerts.
    pub alerts_file: Option<PathBuf>,
    /// How often the alert rules are evaluated.
    pub alert_interval: std::time::Duration,
    /// How soon after events are committed the rules are evaluated (commits within it share
    /// one evaluation); `None`: only on the interval (tests that evaluate by hand).
    pub alerts_after_commit: Option<std::time::Duration>,
}

/// OTLP/gRPC's usual address.
pub const DEFAULT_OTLP_GRPC_ADDR: &str = "127.0.0.1:4317";

impl Config {
    /// Defaults, storing data in `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            addr: DEFAULT_ADDR.parse().expect("valid default address"),
            otlp_grpc_addr: None,
            otlp_grpc_optional: false,
            otlp_grpc_limits: Default::default(),
            alerts_file: None,
            public_url: None,
            metrics_person_label: false,
            alert_interval: std::time::Duration::from_secs(15),
            alerts_after_commit: Some(std::time::Duration::from_secs(1)),
            data_dir,
            durability: Durability::Full,
            database_url: None,
            database_writers: 2,
            instance_id: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
            limits: Limits::default(),
            cors: CorsPolicy::default(),
            allowed_hosts: Vec::new(),
            hitl_allow_hosts: Vec::new(),
            prices: PriceTable::default(),
            agent_idle_timeout_ms: 30 * MINUTE_MS,
            idle_sweep_interval_ms: MINUTE_MS,
            write_queue_capacity: 16 * 1024,
            read_connections: 4,
            read_timeout_ms: 2_000,
            cache: CacheSettings::default(),
            live_capacity: 1024,
            stream_initial: 300,
            max_stream_clients: 1000,
            retention: crate::retention::Retention::default(),
            request_limits: Default::default(),
            connection_limits: Default::default(),
            tokens: crate::api::auth::Tokens::default(),
            insecure_no_auth: false,
            clock: Arc::new(SystemClock),
        }
    }

    pub(crate) fn database_path(&self) -> PathBuf {
        self.data_dir.join(DATABASE_FILE)
    }

    /// The database, as logs may show it (no password).
    pub fn shown_database(&self) -> String {
        match &self.database_url {
            Some(url) => crate::store::postgres::schema::shown_url(url),
            None => self.database_path().display().to_string(),
        }
    }
}

/// The per-user data directory: `$XDG_DATA_HOME/hookwatch`, else
/// `~/.local/share/hookwatch`, else `./hookwatch-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("hookwatch");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/share/hookwatch");
    }
    PathBuf::from("hookwatch-data")
}
