//! Health and self-measurement: `GET /healthz` for load balancers, `GET /api/agents/health` in
//! the origin's shape plus what an operator needs about the cache, `GET /metrics` in Prometheus
//! text format, and `POST /api/cache/sync`.
//!
//! Status is `healthy`, `degraded` (Redis configured but down: reads come from the database)
//! or `unhealthy` (503), and only the primary store can make it unhealthy.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::cache::breaker::BreakerState;
use crate::cache::hit_rate;
use crate::cache::sync::{SyncOutcome, SyncTrigger};
use crate::domain::time::iso8601;
use crate::health::{CacheHealth, HealthSnapshot, IngestCounts, RedisHealth};
use crate::telemetry::{Exposition, Histogram};

use super::AppState;
use super::error::ApiError;
use super::params::Params;

pub async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match state.service.ping_store().await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ok" }))),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unhealthy", "error": e.to_string() })),
        ),
    }
}

pub async fn agents_health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let started = Instant::now();
    let ping = state.service.ping_store().await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let health = state.service.health_snapshot();
    let redis_down = health.redis.as_ref().is_some_and(|r| r.status == "down");
    let writes_failing = &health.store.writes_failing;
    let (status, code, database) = match ping {
        Ok(()) => (
            if redis_down || writes_failing.is_some() {
                "degraded"
            } else {
                "healthy"
            },
            StatusCode::OK,
            match writes_failing {
                // Reads work, writes do not (a full disk): said, with the reason.
                Some(failing) => json!({
                    "status": "up", "latency_ms": latency_ms,
                    "writes": "failing", "writes_failing_since": iso8601(failing.since_ms),
                    "reason": failing.reason,
                }),
                None => json!({ "status": "up", "latency_ms": latency_ms, "writes": "ok" }),
            },
        ),
        Err(e) => (
            "unhealthy",
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "down", "error": e.to_string(), "latency_ms": latency_ms }),
        ),
    };
    let backend = health.store.backend;
    let mut body = json!({
        "status": status,
        "database": { "backend": backend, "instance": health.instance_id, "detail": database.clone() },
        "redis": redis_health(health.redis.as_ref()),
        "cache": cache_health(health.cache.as_ref()),
        "retention": retention_health(&health),
        "fanout": fanout_health(&state.fanout),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": state.started_at.elapsed().as_secs(),
        "timestamp": iso8601(health.now_ms),
    });
    // The origin's key (`sqlite`), named after the store in use (`sqlite` or `postgres`).
    body[backend] = database;
    (code, Json(body))
}

/// Other instances' events shown to this one's live clients, by the path they came by.
fn fanout_health(fanout: &crate::fanout::Fanout) -> Value {
    let (redis, postgres) = fanout.delivered();
    json!({
        "shared_store": fanout.is_shared(),
        "redis_reading": fanout.redis_reading(),
        "events_from_redis": redis,
        "events_from_postgres": postgres,
    })
}

fn retention_health(health: &HealthSnapshot<'_>) -> Value {
    let retention = &health.retention;
    let settings = retention.settings;
    json!({
        "enabled": settings.is_enabled(),
        "raw_days": settings.raw_ms.map(|ms| ms as f64 / 86_400_000.0),
        "rollup_days": settings.rollups_ms.map(|ms| ms as f64 / 86_400_000.0),
        "max_db_bytes": settings.max_db_bytes,
        "database_bytes": health.store.size_bytes,
        "runs": retention.runs,
        "failures": retention.failures,
        "last_run": retention.last_run_at_ms.map(iso8601),
        "pruned": retention.pruned,
    })
}

fn redis_health(redis: Option<&RedisHealth>) -> Value {
    let Some(redis) = redis else {
        return json!({ "status": "disabled" });
    };
    let (state, since_ms) = redis.breaker_entered;
    let counts = &redis.breaker_counts;
    let last_error = redis.last_error.as_ref();
    json!({
        "status": redis.status,
        "url": redis.url,
        "timeout_ms": redis.timeout_ms,
        "error": last_error.map(|e| e.message.clone()),
        "last_error": last_error.map(|e| json!({ "message": e.message, "at": iso8601(e.at_ms) })),
        "errors": redis.errors,
        "timeouts": redis.timeouts,
        "breaker": {
            "state": state.as_str(),
            "since": iso8601(since_ms),
            "opened": counts.opened,
            "half_opened": counts.half_opened,
            "closed": counts.closed,
            "rejected": counts.rejected,
        },
    })
}

fn latency(histogram: &Histogram) -> Value {
    json!({
        "count": histogram.count(),
        "p50": histogram.quantile_ms(0.5),
        "p99": histogram.quantile_ms(0.99),
    })
}

fn cache_health(cache: Option<&CacheHealth<'_>>) -> Value {
    let Some(cache) = cache else {
        return json!({ "enabled": false });
    };
    let stats = &cache.stats;
    let views: serde_json::Map<String, Value> = stats
        .views
        .iter()
        .map(|v| {
            (
                v.view.to_owned(),
                json!({
                    "hits": v.hits,
                    "misses": v.misses,
                    "bypassed": v.bypassed,
                    "hit_rate": hit_rate(v.hits, v.misses),
                    "ttl_s": v.ttl_s,
                }),
            )
        })
        .collect();
    json!({
        "enabled": true,
        "namespace": cache.namespace,
        "epoch": stats.epoch,
        "dirty": stats.dirty,
        "hits": stats.hits,
        "misses": stats.misses,
        "hit_rate": cache.hit_rate(),
        "views": views,
        "latency_ms": { "hit": latency(cache.hit_latency), "miss": latency(cache.miss_latency) },
        "invalidations": stats.invalidations,
        "write_failures": stats.write_failures,
        "warmup": {
            "in_progress": cache.warmup_in_progress,
            "runs": cache.warmup_runs,
            "last": cache.last_warmup.as_ref().map(|r| json!({
                "trigger": r.trigger,
                "started_at": iso8601(r.started_at_ms),
                "duration_ms": r.duration_ms,
                "keys_written": r.keys_written,
                "error": r.error,
            })),
        },
    })
}

/// `POST /api/cache/sync[?force=false]`: rebuilds the cache from the database now. Forced by
/// default; `force=false` respects the rate limit.
pub async fn sync_cache(
    State(state): State<AppState>,
    params: Params,
) -> Result<Response, ApiError> {
    if !state.service.cache_enabled() {
        return Err(ApiError::Conflict(
            "the cache is disabled: start hookwatch with --redis-url".into(),
        ));
    }
    let force = match params.text("force")?.as_deref() {
        None | Some("true") | Some("1") => true,
        Some("false") | Some("0") => false,
        Some(_) => return Err(ApiError::field("force", "force must be true or false")),
    };
    let trigger = if force {
        SyncTrigger::Forced
    } else {
        SyncTrigger::Routine
    };
    let body = match state.service.sync_cache_from_database(trigger).await {
        SyncOutcome::Ran(report) => json!({ "status": "ran", "report": report }),
        SyncOutcome::Joined(report) => json!({ "status": "joined", "report": report }),
        SyncOutcome::RateLimited { retry_in } => json!({
            "status": "rate_limited",
            "retry_in_ms": retry_in.as_millis() as u64,
        }),
    };
    Ok(Json(body).into_response())
}

/// `GET /metrics`: hookwatch's own counters in Prometheus text format.
pub async fn prometheus(State(state): State<AppState>) -> Response {
    let health = state.service.health_snapshot();
    let mut out = Exposition::default();
    let IngestCounts {
        ingested,
        duplicates,
        clamped_timestamps,
    } = health.ingest;
    out.family(
        "hookwatch_events_ingested_total",
        "counter",
        "Events committed to the store.",
    )
    .sample("", ingested);
    out.family(
        "hookwatch_events_duplicate_total",
        "counter",
        "Events re-sent with a known event_id (stored once).",
    )
    .sample("", duplicates);
    out.family(
        "hookwatch_write_queue_depth",
        "gauge",
        "Write jobs waiting for the writer.",
    )
    .sample("", health.store.write_queue_depth);
    out.family(
        "hookwatch_database_bytes",
        "gauge",
        "Bytes the database takes on disk (with its WAL).",
    )
    .sample("", health.store.size_bytes);
    let retention = &health.retention;
    let pruned = out.family(
        "hookwatch_rows_pruned_total",
        "counter",
        "Rows deleted by retention, by table.",
    );
    for (table, rows) in retention.pruned.by_table() {
        pruned.sample(&format!("table=\"{table}\""), rows);
    }
    out.family(
        "hookwatch_prune_runs_total",
        "counter",
        "Pruning runs, and those that failed.",
    )
    .sample("outcome=\"ok\"", retention.runs - retention.failures)
    .sample("outcome=\"failed\"", retention.failures);
    out.family(
        "hookwatch_connections_refused_total",
        "counter",
        "Connections closed at once because --max-connections were open.",
    )
    .sample(
        "",
        state
            .connection_stats
            .refused
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    out.family(
        "hookwatch_websocket_clients",
        "gauge",
        "Connected /stream clients.",
    )
    .sample("", health.live.clients);
    out.family(
        "hookwatch_websocket_lagged_total",
        "counter",
        "Times a /stream client fell behind and was told what it missed.",
    )
    .sample("", health.live.lagged);
    let relays = &state.relay_stats;
    let family = out.family(
        "hookwatch_hitl_relays_total",
        "counter",
        "Human-in-the-loop answers relayed to hooks, by outcome (refused: host not allowed).",
    );
    for (outcome, count) in [
        ("delivered", &relays.delivered),
        ("failed", &relays.failed),
        ("refused", &relays.refused),
    ] {
        family.sample(
            &format!("outcome=\"{outcome}\""),
            count.load(std::sync::atomic::Ordering::Relaxed),
        );
    }
    out.family(
        "hookwatch_request_body_bytes_in_flight",
        "gauge",
        "Request body bytes being handled now (capped by --max-body-bytes-in-flight).",
    )
    .sample("", state.body_budget.in_flight());
    out.family(
        "hookwatch_timestamps_clamped_total",
        "counter",
        "Events whose timestamp was further ahead than --max-clock-skew, stored at their arrival.",
    )
    .sample("", clamped_timestamps);
    state.rejections.write_prometheus(&mut out);
    state.http_metrics.write_prometheus(&mut out);
    out.family(
        "hookwatch_cache_enabled",
        "gauge",
        "1 when a Redis cache is configured.",
    )
    .sample("", u8::from(health.cache.is_some()));
    if let Some(cache) = &health.cache {
        let stats = &cache.stats;
        out.family(
            "hookwatch_cache_requests_total",
            "counter",
            "View reads by view and result (a bypass is a miss that skipped Redis).",
        );
        for v in &stats.views {
            for (result, value) in [("hit", v.hits), ("miss", v.misses), ("bypass", v.bypassed)] {
                out.sample(&format!("view=\"{}\",result=\"{result}\"", v.view), value);
            }
        }
        out.family(
            "hookwatch_cache_invalidations_total",
            "counter",
            "Write-throughs that reached Redis.",
        )
        .sample("", stats.invalidations);
        out.family(
            "hookwatch_cache_write_failures_total",
            "counter",
            "Write-throughs that failed or were skipped by the breaker.",
        )
        .sample("", stats.write_failures);
        out.family("hookwatch_cache_epoch", "gauge", "The cache epoch in use.")
            .sample("", stats.epoch);
        out.family(
            "hookwatch_cache_syncs_total",
            "counter",
            "Cache rebuilds from the database.",
        )
        .sample("", cache.warmup_runs);
        out.family(
            "hookwatch_cache_read_seconds",
            "histogram",
            "View read latency by result.",
        );
        cache.hit_latency.write_prometheus(
            &mut out.text,
            "hookwatch_cache_read_seconds",
            "result=\"hit\"",
        );
        cache.miss_latency.write_prometheus(
            &mut out.text,
            "hookwatch_cache_read_seconds",
            "result=\"miss\"",
        );
    }
    if let Some(redis) = &health.redis {
        out.family("hookwatch_redis_up", "gauge", "1 when Redis is reachable.")
            .sample("", u8::from(redis.status == "up"));
        out.family(
            "hookwatch_redis_errors_total",
            "counter",
            "Redis calls that failed with an error.",
        )
        .sample("", redis.errors);
        out.family(
            "hookwatch_redis_timeouts_total",
            "counter",
            "Redis calls that ran past the command timeout.",
        )
        .sample("", redis.timeouts);
        let counts = &redis.breaker_counts;
        out.family(
            "hookwatch_redis_breaker_rejected_total",
            "counter",
            "Calls the open breaker skipped with no I/O.",
        )
        .sample("", counts.rejected);
        out.family(
            "hookwatch_redis_breaker_transitions_total",
            "counter",
            "Breaker transitions by the state entered.",
        );
        for (to, value) in [
            ("open", counts.opened),
            ("half_open", counts.half_opened),
            ("closed", counts.closed),
        ] {
            out.sample(&format!("to=\"{to}\""), value);
        }
        out.family(
            "hookwatch_redis_breaker_state",
            "gauge",
            "1 for the breaker's current state.",
        );
        let current = redis.breaker;
        for state in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            out.sample(
                &format!("state=\"{}\"", state.as_str()),
                u8::from(state == current),
            );
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out.text,
    )
        .into_response()
}
