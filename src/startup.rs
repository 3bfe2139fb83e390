//! Building and running the server. The same path runs in production and in tests:
//! [`Application::build`] opens the store and binds the listener (port 0 works), and
//! [`Application::run_until_stopped`] serves until the shutdown future resolves, then lets the
//! writer commit everything queued before returning.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::api::{self, AppContext, AppState};
use crate::cache::Cache;
use crate::config::Config;
use crate::live::LiveHub;
use crate::service::MetricsService;
use crate::store::Store;
use crate::store::postgres::{PostgresOptions, PostgresStore};
use crate::store::sqlite::{SqliteOptions, SqliteStore};

/// What chat readers may hold at once (`api::events::event_chat`).
const CHAT_READ_BUDGET_BYTES: usize = 128 * 1024 * 1024;

pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    /// The OTLP/gRPC listener and its services, when served.
    otlp_grpc: Option<(TcpListener, api::otlp_grpc::OtlpGrpc)>,
    store: Arc<dyn Store>,
    cache: Arc<Cache>,
    service: Arc<MetricsService>,
    fanout: Arc<crate::fanout::Fanout>,
    live: Arc<LiveHub>,
    router: axum::Router,
    idle_sweep_interval: Duration,
    alerts: Arc<crate::alerts::engine::AlertEngine>,
    alert_interval: Duration,
    alerts_after_commit: Option<Duration>,
    connection_limits: crate::http_server::ConnectionLimits,
    connection_stats: Arc<crate::http_server::ConnectionStats>,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let open_scopes: Vec<&str> = [
            ("--ingest-token", config.tokens.ingest.is_empty()),
            ("--read-token", config.tokens.read.is_empty()),
        ]
        .into_iter()
        .filter_map(|(flag, open)| open.then_some(flag))
        .collect();
        if !config.addr.ip().is_loopback() && !open_scopes.is_empty() && !config.insecure_no_auth {
            anyhow::bail!(
                "refusing to listen on {} without {}: hook payloads hold prompts, code and \
                 secrets. Set the token(s), or pass --insecure-no-auth to accept the risk.",
                config.addr,
                open_scopes.join(" and ")
            );
        }
        if config.database_url.is_some() && config.retention.max_db_bytes.is_some() {
            anyhow::bail!(
                "--max-db-size works on SQLite only: PostgreSQL keeps the space of deleted rows \
                 for reuse instead of giving it back, so the size never drops. Use --retention \
                 (and --rollup-retention) to bound a PostgreSQL store."
            );
        }
        let prices = Arc::new(config.prices.clone());
        let store: Arc<dyn Store> = match &config.database_url {
            Some(url) => {
                let options = PostgresOptions {
                    url: url.clone(),
                    writers: config.database_writers,
                    queue_capacity: config.write_queue_capacity,
                    readers: config.read_connections,
                    read_timeout: Duration::from_millis(config.read_timeout_ms),
                    instance_id: config.instance_id.clone(),
                };
                // The connection threads block; keep them off the async workers while starting.
                let store =
                    tokio::task::spawn_blocking(move || PostgresStore::open(&options, prices))
                        .await
                        .context("the PostgreSQL store did not start")?
                        .with_context(|| {
                            format!("could not open the database {}", config.shown_database())
                        })?;
                Arc::new(store)
            }
            None => {
                std::fs::create_dir_all(&config.data_dir).with_context(|| {
                    format!(
                        "could not create the data directory {}",
                        config.data_dir.display()
                    )
                })?;
                let database = config.database_path();
                Arc::new(
                    SqliteStore::open(
                        &SqliteOptions {
                            path: database.clone(),
                            durability: config.durability,
                            queue_capacity: config.write_queue_capacity,
                            readers: config.read_connections,
                            read_timeout: Duration::from_millis(config.read_timeout_ms),
                            wal_bytes: config.retention.wal_bytes(),
                            size_limited: config.retention.max_db_bytes.is_some(),
                        },
                        prices,
                    )
                    .with_context(|| {
                        format!("could not open the database {}", database.display())
                    })?,
                )
            }
        };
        let cache_settings = crate::cache::CacheSettings {
            origin: config.instance_id.clone(),
            store_id: store.store_id().to_owned(),
            ..config.cache.clone()
        };
        let cache = Arc::new(
            Cache::new(&cache_settings)
                .map_err(anyhow::Error::msg)?
                .with_local_views(store.local_commits().filter(|_| cache_settings.local_views)),
        );
        if let Some(link) = cache.link() {
            tracing::info!(redis = %link.shown_url(), timeout = ?link.timeout(), "redis cache enabled");
        }
        config
            .retention
            .validate()
            .map_err(|e| anyhow::anyhow!(e))?;
        let live = Arc::new(LiveHub::new(config.live_capacity));
        // Other instances' commits, for this instance's live clients (on a shared store).
        let fanout = Arc::new(crate::fanout::Fanout::new(
            Arc::clone(&store),
            Arc::clone(&cache),
            Arc::clone(&live),
            config.instance_id.clone(),
        ));
        let service = Arc::new(
            MetricsService::new(
                Arc::clone(&store),
                Arc::clone(&cache),
                Arc::clone(&live),
                Arc::clone(&config.clock),
                config.agent_idle_timeout_ms,
            )
            .with_retention(config.retention.clone())
            .with_instance_id(config.instance_id.clone()),
        );
        // A bad rule file stops the start with the line it is on.
        let alerts = Arc::new(
            crate::alerts::engine::AlertEngine::new(
                config.alerts_file.clone(),
                Arc::clone(&store),
                Arc::clone(&config.clock),
                config.agent_idle_timeout_ms,
                config.public_url.clone(),
            )
            .map_err(|e| anyhow::anyhow!(e))?
            .with_live(Arc::clone(&live), !config.tokens.read.is_empty()),
        );
        let connection_stats = Arc::new(crate::http_server::ConnectionStats::default());
        let state = AppState::new(AppContext {
            service: Arc::clone(&service),
            alerts: Arc::clone(&alerts),
            fanout: Arc::clone(&fanout),
            live: Arc::clone(&live),
            limits: Arc::new(config.limits.clone()),
            prices: Arc::new(config.prices.clone()),
            tokens: Arc::new(config.tokens.clone()),
            http_metrics: Arc::default(),
            request_limits: Arc::new(config.request_limits.clone()),
            rate_limiter: Arc::new(crate::api::limits::RateLimiter::new(
                &config.request_limits,
                Arc::clone(&config.clock),
            )),
            connection_stats: Arc::clone(&connection_stats),
            rejections: Arc::default(),
            started_at: Instant::now(),
            stream_initial: config.stream_initial,
            stream_slots: Arc::new(tokio::sync::Semaphore::new(config.max_stream_clients)),
            hitl_allow_hosts: Arc::new(config.hitl_allow_hosts.clone()),
            relay_stats: Arc::default(),
            otlp_stats: Arc::default(),
            grpc_stats: Arc::default(),
            app_usage: Arc::default(),
            metrics_person_label: config.metrics_person_label,
            chat_budget: Arc::new(crate::api::body_budget::BodyBudget::new(
                CHAT_READ_BUDGET_BYTES.max(config.limits.max_chat_bytes * 2),
            )),
            // Never below one batch or one event with its chat, or one at the limit could
            // never be taken.
            body_budget: Arc::new(crate::api::body_budget::BodyBudget::new(
                config
                    .limits
                    .max_body_bytes_in_flight
                    .max(config.limits.max_batch_bytes)
                    .max(config.limits.max_envelope_bytes()),
            )),
        });
        let grpc_state = state.clone();
        let router = api::router(
            state,
            api::browsers::BrowserGuard {
                cors: config.cors.clone(),
                allowed_hosts: config.allowed_hosts.clone(),
                listen: config.addr,
            },
        );
        let listener = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("could not listen on {}", config.addr))?;
        let address = listener.local_addr()?;
        let otlp_grpc = match config.otlp_grpc_addr {
            None => None,
            Some(addr) => match TcpListener::bind(addr).await {
                Ok(listener) => Some((
                    listener,
                    api::otlp_grpc::OtlpGrpc::new(grpc_state, config.otlp_grpc_limits.clone()),
                )),
                Err(e) if config.otlp_grpc_optional => {
                    tracing::warn!(
                        %addr, error = %e,
                        "OTLP/gRPC is not served: its address is taken (OTLP over HTTP is, on the \
                         main port; choose another with --otlp-grpc-addr, or `off`)"
                    );
                    None
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("could not listen for OTLP/gRPC on {addr} (--otlp-grpc-addr)")
                    });
                }
            },
        };
        Ok(Self {
            listener,
            address,
            otlp_grpc,
            store,
            cache,
            service,
            fanout,
            live,
            router,
            idle_sweep_interval: Duration::from_millis(config.idle_sweep_interval_ms.max(1) as u64),
            alerts,
            alert_interval: config.alert_interval,
            alerts_after_commit: config.alerts_after_commit,
            connection_limits: config.connection_limits.clone(),
            connection_stats,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Where OTLP/gRPC is served, if it is.
    pub fn otlp_grpc_address(&self) -> Option<SocketAddr> {
        self.otlp_grpc
            .as_ref()
            .and_then(|(listener, _)| listener.local_addr().ok())
    }

    /// The alert rules and their evaluation (tests evaluate on their own clock).
    pub fn alerts(&self) -> Arc<crate::alerts::engine::AlertEngine> {
        Arc::clone(&self.alerts)
    }

    pub fn service(&self) -> Arc<MetricsService> {
        Arc::clone(&self.service)
    }

    /// The Redis keys this instance's cache uses (for tests and tools that inspect Redis).
    pub fn cache_keys(&self) -> crate::cache::CacheKeys {
        self.cache.keys().clone()
    }

    /// Serves until `shutdown` resolves; in-flight requests finish and every queued write is
    /// committed before this returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let sweeper = tokio::spawn(run_idle_sweep(
            Arc::clone(&self.service),
            self.idle_sweep_interval,
        ));
        let write_through = tokio::spawn(Arc::clone(&self.cache).run_write_through());
        let snapshots = tokio::spawn(run_live_snapshots(Arc::clone(&self.service)));
        let cache_keeper = tokio::spawn(run_cache_maintenance(
            Arc::clone(&self.service),
            Arc::clone(&self.cache),
        ));
        let pruner = tokio::spawn(run_retention(Arc::clone(&self.service)));
        let alerting = tokio::spawn(run_alerts(
            Arc::clone(&self.service),
            Arc::clone(&self.alerts),
            self.alert_interval,
            self.alerts_after_commit,
        ));
        // Other instances' commits, for this one's live clients (only on a shared store).
        let fanout = self.store.is_shared().then(|| {
            [
                tokio::spawn(crate::fanout::run_redis_reader(Arc::clone(&self.fanout))),
                tokio::spawn(crate::fanout::run_notice_reader(Arc::clone(&self.fanout))),
            ]
        });
        // WebSockets outlive the HTTP server's graceful shutdown (they are upgraded away from
        // it): close them as it starts, so browsers reconnect to the next server at once and
        // the drain does not wait for their connection slots.
        let live = Arc::clone(&self.live);
        // One signal, two servers: the gRPC one stops with the HTTP one.
        let (stopping, stop) = tokio::sync::watch::channel(false);
        let grpc = self.otlp_grpc.map(|(listener, services)| {
            let mut stop = stop.clone();
            tokio::spawn(services.serve(listener, async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            }))
        });
        let shutdown = async move {
            shutdown.await;
            let _ = stopping.send(true);
            live.stop();
        };
        crate::http_server::serve(
            self.listener,
            self.router,
            self.connection_limits,
            self.connection_stats,
            shutdown,
        )
        .await;
        if let Some(grpc) = grpc {
            let _ = grpc.await;
        }
        sweeper.abort();
        pruner.abort();
        alerting.abort();
        for task in fanout.into_iter().flatten() {
            task.abort();
        }
        cache_keeper.abort();
        snapshots.abort();
        write_through.abort();
        self.store.close().await;
        Ok(())
    }
}

/// Evaluates the alert rules every `interval`, and within `after_commit` of events or
/// telemetry being committed (when there are rules, and this instance leads the background
/// jobs); reads the rule file again on SIGHUP.
async fn run_alerts(
    service: Arc<MetricsService>,
    alerts: Arc<crate::alerts::engine::AlertEngine>,
    interval: Duration,
    after_commit: Option<Duration>,
) {
    let mut due_after_commit: Option<tokio::time::Instant> = None;
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    // The first evaluation one interval after the start, not during it.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let hangup = async {
            match hangups.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        let commit_due = async {
            match due_after_commit {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = ticks.tick() => {}
            () = commit_due => {}
            () = async {
                match after_commit {
                    // Commits within the delay share one evaluation.
                    Some(_) if due_after_commit.is_none() => service.committed().await,
                    _ => std::future::pending().await,
                }
            } => {
                due_after_commit =
                    after_commit.map(|delay| tokio::time::Instant::now() + delay);
                continue;
            }
            _ = hangup => {
                match alerts.reload() {
                    Ok(rules) => tracing::info!(rules, "alert rules read again (SIGHUP)"),
                    Err(e) => tracing::warn!(error = %e, "alert rules refused; the old ones stay"),
                }
                continue;
            }
        }
        due_after_commit = None;
        if alerts.rules().rules.is_empty() || !service.lead_background_jobs().await {
            continue;
        }
        match alerts.evaluate_once().await {
            Ok(done) if done.fired.is_empty() && done.resolved.is_empty() => {}
            Ok(done) => tracing::info!(
                fired = done.fired.len(),
                resolved = done.resolved.len(),
                "alerts changed"
            ),
            Err(e) => tracing::warn!(error = %e, "alert evaluation failed"),
        }
    }
}

async fn run_idle_sweep(service: Arc<MetricsService>, interval: Duration) {
    // The first sweep after one interval, not at start: nothing goes idle in the first instant,
    // reads show an idle agent as timed out before any sweep, and a sweep that ran late at
    // start would race whoever moved the clock meanwhile (a test's manual one).
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if !service.lead_background_jobs().await {
            continue;
        }
        match service.time_out_idle_agents_once().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(agents = n, "idle agents timed out"),
            Err(e) => tracing::warn!(error = %e, "idle sweep failed"),
        }
    }
}

/// Prunes what retention no longer keeps, one run per interval (nothing when retention is off).
async fn run_retention(service: Arc<MetricsService>) {
    if !service.retention().is_enabled() {
        return;
    }
    let mut ticks = tokio::time::interval(service.retention().interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Every interval, and at once when ingest finds the database past --max-db-size.
        tokio::select! {
            _ = ticks.tick() => {}
            () = service.retention_wanted() => {}
        }
        if !service.lead_background_jobs().await {
            continue;
        }
        loop {
            let report = match service.prune_once().await {
                Ok(report) => report,
                Err(e) => {
                    tracing::warn!(error = %e, "pruning failed; retrying next interval");
                    break;
                }
            };
            // A run ends when a step finds nothing to prune; still over the size limit (the
            // file shrinks behind the deletes), prune again after a breath, as long as there
            // is anything left to prune.
            let progressed = report.rows() > 0 || report.pages_released > 0;
            if !progressed || !service.over_size_limit() {
                break;
            }
            tokio::time::sleep(service.retention().pause).await;
        }
    }
}

/// Pushes metrics and health to live clients, at most once a second.
async fn run_live_snapshots(service: Arc<MetricsService>) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = crate::service::LiveSnapshots::default();
    loop {
        ticks.tick().await;
        service.push_live_snapshots_once(&mut last).await;
    }
}

/// Keeps the cache honest: every interval (and at once when the breaker closes), a dirty
/// cache takes a new epoch and is rebuilt; a clean one is pinged, which is also the breaker's
/// probe when there is no traffic. Ends at once when there is no cache.
async fn run_cache_maintenance(service: Arc<MetricsService>, cache: Arc<Cache>) {
    let Some(link) = cache.link() else {
        return;
    };
    let mut transitions = link.watch_transitions();
    let mut ticks = tokio::time::interval(cache.maintenance_interval());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            changed = transitions.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        service.maintain_cache_once().await;
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests and committing queued events");
}
