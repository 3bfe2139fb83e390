//! The HTTP API: routes, wire formats and errors. Handlers parse input into domain types
//! ([`wire`], [`params`]), call the [`MetricsService`], and shape the answer; they hold no
//! business rules.

pub mod agents;
pub mod alerts;
pub mod auth;
pub mod body_budget;
pub mod browsers;
pub mod error;
pub mod events;
pub mod export;
pub mod health;
pub mod hitl;
pub mod limits;
pub mod model;
pub mod otlp;
pub mod otlp_grpc;
pub mod params;
pub mod prometheus;
pub mod sessions;
pub mod stream;
pub mod trace_export;
pub mod usage;
pub mod wire;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::service::MetricsService;
use error::ApiError;
use wire::Limits;

/// The services, limits and counters the HTTP layer works with.
pub struct AppContext {
    pub service: Arc<MetricsService>,
    /// The alert rules and their evaluation (`--alerts`).
    pub alerts: Arc<crate::alerts::engine::AlertEngine>,
    /// What other instances' commits were shown here, for health.
    pub fanout: Arc<crate::fanout::Fanout>,
    /// The live messages `/stream` sends, which the service and `fanout` publish.
    pub live: Arc<crate::live::LiveHub>,
    pub limits: Arc<Limits>,
    pub tokens: Arc<auth::Tokens>,
    pub http_metrics: Arc<crate::telemetry::HttpMetrics>,
    pub request_limits: Arc<limits::RequestLimits>,
    pub rate_limiter: Arc<limits::RateLimiter>,
    pub connection_stats: Arc<crate::http_server::ConnectionStats>,
    pub rejections: Arc<crate::telemetry::Rejections>,
    pub started_at: Instant,
    /// Events in the WebSocket's `initial` message.
    pub stream_initial: usize,
    /// One permit per open `/stream` client (`--max-stream-clients`).
    pub stream_slots: Arc<tokio::sync::Semaphore>,
    /// Request body bytes that may be in flight at once.
    pub body_budget: Arc<body_budget::BodyBudget>,
    /// Hosts besides loopback that human-in-the-loop answers may be relayed to.
    pub hitl_allow_hosts: Arc<Vec<String>>,
    pub relay_stats: Arc<hitl::RelayStats>,
    pub otlp_stats: Arc<otlp::OtlpStats>,
    /// The bytes chat readers hold (`GET /events/{id}/chat`): compressed chats and the piece
    /// being sent.
    pub chat_budget: Arc<body_budget::BodyBudget>,
    /// The OTLP/gRPC door's connections, for `/metrics`.
    pub grpc_stats: Arc<otlp_grpc::GrpcStats>,
}

/// What every handler shares, behind one `Arc`: axum clones the state for each middleware
/// layer and handler of every request, and one reference count is cheaper to clone and drop
/// than one per field.
#[derive(Clone)]
pub struct AppState(Arc<AppContext>);

impl AppState {
    pub fn new(context: AppContext) -> Self {
        Self(Arc::new(context))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppContext;

    fn deref(&self) -> &AppContext {
        &self.0
    }
}

/// Which browser origins may call the API.
#[derive(Debug, Clone, Default)]
pub struct CorsPolicy {
    /// Exact origins (`https://dash.example.com`), or `*` for any.
    pub allowed_origins: Vec<String>,
}

impl CorsPolicy {
    /// Pages served from localhost or 127.0.0.1 on any port are always allowed.
    pub fn allows(&self, origin: &str) -> bool {
        let local = [
            "http://localhost",
            "http://127.0.0.1",
            "https://localhost",
            "https://127.0.0.1",
            "http://[::1]",
        ]
        .iter()
        .any(|base| {
            origin == *base
                || origin
                    .strip_prefix(base)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .is_some_and(|port| {
                        !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
                    })
        });
        local
            || self
                .allowed_origins
                .iter()
                .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin))
    }

    fn layer(self) -> CorsLayer {
        CorsLayer::new()
            .allow_origin(AllowOrigin::predicate(move |origin: &HeaderValue, _| {
                origin.to_str().is_ok_and(|o| self.allows(o))
            }))
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
    }
}

/// Bodies of routes that take small JSON reports.
const SMALL_BODY_LIMIT: usize = agents::MAX_REPORT_BYTES;

pub fn router(state: AppState, guard: browsers::BrowserGuard) -> Router {
    let cors = guard.cors.clone();
    let event_limit = DefaultBodyLimit::max(state.limits.max_event_bytes);
    // An envelope may carry a chat besides the event (`wire::parse_envelope` checks each part).
    let envelope_limit = DefaultBodyLimit::max(state.limits.max_envelope_bytes());
    let batch_limit = DefaultBodyLimit::max(state.limits.max_batch_bytes);
    Router::new()
        .route(
            "/events",
            post(events::ingest_envelope)
                .layer(envelope_limit)
                .get(events::list_events),
        )
        .route("/events/{id}/chat", get(events::event_chat))
        .route(
            "/events/{id}/respond",
            post(hitl::respond).layer(event_limit),
        )
        .route("/events/{id}/answer", get(hitl::answer))
        .route("/api/hitl/pending", get(hitl::pending))
        .route(
            "/events/batch",
            post(events::ingest_batch).layer(batch_limit),
        )
        .route(
            "/hooks/claude-code",
            post(events::ingest_hook).layer(event_limit),
        )
        .route("/events/recent", get(events::recent_events))
        .route("/stream", get(stream::stream))
        .route("/events/filter-options", get(events::filter_options))
        .route("/api/agents/metrics/current", get(agents::current_metrics))
        .route("/api/agents/metrics/timeline", get(agents::timeline))
        .route("/api/agents/types/distribution", get(agents::distribution))
        .route("/api/agents/tools/usage", get(agents::tool_usage))
        .route(
            "/api/agents/start",
            post(agents::start_agent).layer(DefaultBodyLimit::max(SMALL_BODY_LIMIT)),
        )
        .route(
            "/api/agents/complete",
            post(agents::complete_agent).layer(DefaultBodyLimit::max(SMALL_BODY_LIMIT)),
        )
        .route("/api/agents/health", get(health::agents_health))
        .route("/api/agents", get(agents::list_agents))
        .route("/api/agents/{id}", get(agents::get_agent))
        .route("/api/alerts", get(alerts::list))
        .route("/api/alerts/reload", post(alerts::reload))
        .route("/api/usage", get(usage::usage))
        .route("/api/usage/timeline", get(usage::timeline))
        .route("/api/sessions", get(sessions::list_sessions))
        .route("/api/sessions/{id}", get(sessions::get_session))
        .route(
            "/api/sessions/{id}/activity",
            get(sessions::session_activity),
        )
        .route("/api/sessions/{id}/trace", get(sessions::session_trace))
        .route("/api/cache/sync", post(health::sync_cache))
        .route("/api/export", get(export::export))
        .route("/metrics", get(prometheus::metrics))
        .route("/v1/logs", post(otlp::logs).layer(batch_limit))
        .route("/v1/metrics", post(otlp::metrics).layer(batch_limit))
        .route("/v1/traces", post(otlp::traces).layer(batch_limit))
        .route("/healthz", get(health::healthz))
        .merge(crate::dashboard::routes())
        // Inside the routes, so the matched route template is known (`route_layer`).
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe_request,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // After authentication: only a client with a token can spend the budget.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            body_budget::limit_body_bytes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        // Before authentication: a flood over the limits costs almost nothing.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::limit_requests,
        ))
        // Before everything that does work: a foreign Host or a browser page from a foreign
        // Origin is refused at once (`browsers.rs`).
        .layer(axum::middleware::from_fn_with_state(
            std::sync::Arc::new(guard),
            browsers::guard,
        ))
        .layer(axum::middleware::from_fn(refuse_long_uris))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_rejections,
        ))
        .layer(axum::middleware::from_fn(json_errors))
        .layer(cors.layer())
        .with_state(state)
}

/// Counts the request and times it under its route template.
async fn observe_request(
    axum::extract::State(state): axum::extract::State<AppState>,
    matched: Option<axum::extract::MatchedPath>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = Instant::now();
    let method = request.method().clone();
    let response = next.run(request).await;
    state.http_metrics.record(
        method.as_str(),
        matched.as_ref().map_or("unmatched", |m| m.as_str()),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Every error answer is JSON, whoever made it: axum's own rejections (a path that is not
/// UTF-8, a missing upgrade) answer plain text, which becomes `{"error": "<that text>"}`.
async fn json_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Rejection texts are short; anything longer is cut.
    let text = match axum::body::to_bytes(body, 4096).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_owned()
    } else {
        text
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = serde_json::json!({ "error": message }).to_string();
    axum::response::Response::from_parts(parts, axum::body::Body::from(body))
}

/// The longest path and query hookwatch reads. No route needs more; a filter list that does is
/// a mistake or an attack. The HTTP parser itself refuses a URI past 64 KiB with a bodiless 414
/// before any of this code runs (see the README's section on limits).
pub const MAX_URI_BYTES: usize = 16 * 1024;

/// Refuses a path and query longer than [`MAX_URI_BYTES`] with a JSON 414.
async fn refuse_long_uris(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let length = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if length > MAX_URI_BYTES {
        return ApiError::UriTooLong(format!(
            "the path and query are {length} bytes; the limit is {MAX_URI_BYTES}"
        ))
        .into_response();
    }
    next.run(request).await
}

/// Counts every refusal by its reason, whichever layer refused (limits, auth, a handler).
async fn count_rejections(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let response = next.run(request).await;
    if let Some(error::Rejected(reason)) = response.extensions().get::<error::Rejected>() {
        state.rejections.add(reason);
    }
    response
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_origins_on_any_port_are_allowed_by_default() {
        let policy = CorsPolicy::default();
        assert!(policy.allows("http://localhost:5173"));
        assert!(policy.allows("http://127.0.0.1:4000"));
        assert!(policy.allows("http://localhost"));
        assert!(!policy.allows("http://localhost.evil.com"));
        assert!(!policy.allows("http://localhost:80.evil.com"));
        assert!(!policy.allows("https://example.com"));
    }

    #[test]
    fn configured_origins_are_allowed() {
        let policy = CorsPolicy {
            allowed_origins: vec!["https://dash.example.com".into()],
        };
        assert!(policy.allows("https://dash.example.com"));
        assert!(!policy.allows("https://other.example.com"));
    }
}
