//! Health and self-measurement: `GET /healthz` for load balancers, `GET /api/agents/health` in
//! the origin's shape plus what an operator needs about the cache, `GET /metrics` in Prometheus
//! text format, and `POST /api/cache/sync`.
//!
//! Status is `healthy`, `degraded` (Redis configured but down: reads come from the database)
//! or `unhealthy` (503), and only the primary store can make it unhealthy.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::cache::hit_rate;
use crate::cache::sync::{SyncOutcome, SyncTrigger};
use crate::domain::time::iso8601;
use crate::health::{CacheHealth, HealthSnapshot, RedisHealth};
use crate::telemetry::Histogram;

use super::AppState;
use super::error::ApiError;
use super::params::Params;

pub(crate) async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match state.service.ping_store().await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ok" }))),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unhealthy", "error": e.to_string() })),
        ),
    }
}

pub(crate) async fn agents_health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
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
        // The in-process view tier (SQLite): reads answered from memory, per view.
        "local_views": match state.service.local_view_hits() {
            Some(hits) => json!({
                "enabled": true,
                "hits": hits
                    .into_iter()
                    .map(|(view, n)| (view.to_owned(), Value::from(n)))
                    .collect::<serde_json::Map<String, Value>>(),
            }),
            None => json!({ "enabled": false }),
        },
        "retention": retention_health(&health),
        "fanout": fanout_health(&state.fanout),
        // Claude Code's own telemetry: how much, and when it last arrived.
        "otlp": {
            "records_stored": state.otlp_stats.stored(),
            "last_record_at": state.otlp_stats.last_record_ms().map(iso8601),
        },
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
        "notices_settled": fanout.notices_settled(),
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
            // While open: when the next call may probe Redis (0: the next one will).
            "probe_in_ms": redis.breaker_probe_in.map(|wait| wait.as_millis() as u64),
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
                    "local_hits": v.local_hits,
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
pub(crate) async fn sync_cache(
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
