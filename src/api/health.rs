//! Health: `GET /healthz` for load balancers, `GET /api/agents/health` in the origin's shape.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::domain::time::iso8601;

use super::AppState;

pub async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match state.service.store().ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ok" }))),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unhealthy", "error": e.to_string() })),
        ),
    }
}

pub async fn agents_health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let started = Instant::now();
    let ping = state.service.store().ping().await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (status, code, sqlite) = match ping {
        Ok(()) => (
            "healthy",
            StatusCode::OK,
            json!({ "status": "up", "latency_ms": latency_ms }),
        ),
        Err(e) => (
            "unhealthy",
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "down", "error": e.to_string(), "latency_ms": latency_ms }),
        ),
    };
    let body = json!({
        "status": status,
        "sqlite": sqlite,
        "redis": { "status": "disabled" },
        "cache": { "enabled": false },
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": state.started_at.elapsed().as_secs(),
        "timestamp": iso8601(state.service.now_ms()),
    });
    (code, Json(body))
}
