//! The HTTP API: routes, wire formats and errors. Handlers parse input into domain types
//! ([`wire`], [`params`]), call the [`MetricsService`], and shape the answer; they hold no
//! business rules.

pub(crate) mod agents;
pub(crate) mod alerts;
pub mod auth;
pub(crate) mod body_budget;
pub(crate) mod browsers;
pub(crate) mod error;
pub(crate) mod events;
pub(crate) mod export;
pub(crate) mod health;
pub(crate) mod hitl;
pub mod limits;
pub(crate) mod model;
pub(crate) mod otlp;
pub mod otlp_grpc;
pub(crate) mod params;
pub(crate) mod prometheus;
pub(crate) mod sessions;
pub(crate) mod stream;
pub(crate) mod team;
pub(crate) mod trace_export;
pub(crate) mod usage;
pub mod wire;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::{HeaderValue, Method, header};
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, get, post};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::service::MetricsService;
use auth::Scope;
use error::ApiError;
use wire::Limits;

/// The services, limits and counters the HTTP layer works with.
pub(crate) struct AppContext {
    pub service: Arc<MetricsService>,
    /// The alert rules and their evaluation (`--alerts`).
    pub alerts: Arc<crate::alerts::engine::AlertEngine>,
    /// What other instances' commits were shown here, for health.
    pub fanout: Arc<crate::fanout::Fanout>,
    /// The live messages `/stream` sends, which the service and `fanout` publish.
    pub live: Arc<crate::live::LiveHub>,
    pub limits: Arc<Limits>,
    /// What the OTLP intake prices an agent's tokens at where it reports no cost (`--prices`).
    pub prices: Arc<crate::domain::pricing::PriceTable>,
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
    /// `/metrics`' usage by app, read at most once a minute (`prometheus::AppUsage`).
    pub app_usage: Arc<prometheus::AppUsage>,
    /// `--metrics-person-label`: `/metrics` breaks Claude Code's usage down by person too
    /// (only behind a read token).
    pub metrics_person_label: bool,
}

/// What every handler shares, behind one `Arc`: axum clones the state for each middleware
/// layer and handler of every request, and one reference count is cheaper to clone and drop
/// than one per field.
#[derive(Clone)]
pub(crate) struct AppState(Arc<AppContext>);

impl AppState {
    pub(crate) fn new(context: AppContext) -> Self {
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
    pub(crate) fn allows(&self, origin: &str) -> bool {
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

/// The routes of one scope, as they are added: the router, whose `route_layer` asks for the
/// scope's token, and each route's method and path ([`route_table`]).
struct Scoped {
    scope: Scope,
    router: Router<AppState>,
    routes: Vec<(Method, &'static str)>,
}

impl Scoped {
    fn new(scope: Scope) -> Self {
        Self {
            scope,
            router: Router::new(),
            routes: Vec::new(),
        }
    }

    fn get<H, T>(self, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(Method::GET, path, get(handler))
    }

    /// A POST whose body may be at most `limit` bytes (axum's 2 MB without).
    fn post<H, T>(self, path: &'static str, handler: H, limit: Option<usize>) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let route = match limit {
            Some(bytes) => post(handler).layer(DefaultBodyLimit::max(bytes)),
            None => post(handler),
        };
        self.add(Method::POST, path, route)
    }

    /// A file of the dashboard.
    fn page(self, file: &'static crate::dashboard::Served) -> Self {
        self.add(
            Method::GET,
            file.path,
            get(move || async move { file.response() }),
        )
    }

    fn add(mut self, method: Method, path: &'static str, route: MethodRouter<AppState>) -> Self {
        self.routes.push((method, path));
        self.router = self.router.route(path, route);
        self
    }
}

/// Every route, in the group of the token it needs: the scope is declared where the route is.
fn scoped_routes(limits: &Limits) -> [Scoped; 3] {
    let event = Some(limits.max_event_bytes);
    let batch = Some(limits.max_batch_bytes);
    let small = Some(SMALL_BODY_LIMIT);
    let ingest = Scoped::new(Scope::Ingest)
        // An envelope may carry a chat besides the event (`wire::parse_envelope` checks each
        // part).
        .post(
            "/events",
            events::ingest_envelope,
            Some(limits.max_envelope_bytes()),
        )
        .post("/events/batch", events::ingest_batch, batch)
        .post("/hooks/claude-code", events::ingest_hook, event)
        .post("/api/agents/start", agents::start_agent, small)
        .post("/api/agents/complete", agents::complete_agent, small)
        // Answering a human-in-the-loop request controls an agent.
        .post("/events/{id}/respond", hitl::respond, event)
        // The hook that asked waits for its answer with the token it posted with.
        .get("/events/{id}/answer", hitl::answer)
        // Claude Code's own telemetry (OTLP/HTTP; OTLP/gRPC checks the same tokens:
        // `auth::may_ingest`).
        .post("/v1/logs", otlp::logs, batch)
        .post("/v1/metrics", otlp::metrics, batch)
        .post("/v1/traces", otlp::traces, batch);
    let mut read = Scoped::new(Scope::Read)
        .get("/events", events::list_events)
        .get("/events/{id}/chat", events::event_chat)
        .get("/api/hitl/pending", hitl::pending)
        .get("/events/recent", events::recent_events)
        .get("/stream", stream::stream)
        .get("/events/filter-options", events::filter_options)
        .get("/api/agents/metrics/current", agents::current_metrics)
        .get("/api/agents/metrics/timeline", agents::timeline)
        .get("/api/agents/types/distribution", agents::distribution)
        .get("/api/agents/tools/usage", agents::tool_usage)
        .get("/api/agents/health", health::agents_health)
        .get("/api/agents", agents::list_agents)
        .get("/api/agents/{id}", agents::get_agent)
        .get("/api/alerts", alerts::list)
        .post("/api/alerts/reload", alerts::reload, None)
        .get("/api/usage", usage::usage)
        .get("/api/usage/timeline", usage::timeline)
        // Names people: also 403 while reads are open (`usage::identities_allowed`).
        .get("/api/team", team::team)
        .get("/api/sessions", sessions::list_sessions)
        .get("/api/sessions/{id}", sessions::get_session)
        .get("/api/sessions/{id}/activity", sessions::session_activity)
        .get("/api/sessions/{id}/trace", sessions::session_trace)
        .post("/api/cache/sync", health::sync_cache, None)
        .get("/api/export", export::export)
        .get("/metrics", prometheus::metrics);
    for page in &crate::dashboard::PAGES {
        read = read.page(page);
    }
    // For load balancers.
    let mut open = Scoped::new(Scope::Open).get("/healthz", health::healthz);
    for asset in &crate::dashboard::ASSETS {
        open = open.page(asset);
    }
    [ingest, read, open]
}

/// Every route the router serves: the token it needs, its method and its path.
pub fn route_table() -> Vec<(Scope, Method, &'static str)> {
    scoped_routes(&Limits::default())
        .into_iter()
        .flat_map(|group| {
            let scope = group.scope;
            group
                .routes
                .into_iter()
                .map(move |(method, path)| (scope, method, path))
        })
        .collect()
}

pub(crate) fn router(state: AppState, guard: browsers::BrowserGuard) -> Router {
    let cors = guard.cors.clone();
    let mut routes = Router::new();
    for group in scoped_routes(&state.limits) {
        // Inside the routes, so the matched route template is known (`route_layer`).
        let door = axum::middleware::from_fn_with_state((state.clone(), group.scope), route_door);
        routes = routes.merge(group.router.route_layer(door));
    }
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            (state.clone(), Arc::new(guard)),
            front_door,
        ))
        .layer(cors.layer())
        .with_state(state)
}

/// What every request passes first, in one layer (each layer costs a clone of the stack behind
/// it and a boxed future per request, so these were five: BENCHMARKS.md, issue 33). In order: the
/// URI's length, a foreign `Host` or a browser page from a foreign `Origin` refused at once
/// (`browsers.rs`), then the rate limits and the time limit (`limits.rs`): before
/// authentication, so a flood over the limits costs almost nothing. On the way out every
/// refusal is counted by its reason, whichever layer refused, and every error answer is JSON.
async fn front_door(
    axum::extract::State((state, guard)): axum::extract::State<(
        AppState,
        Arc<browsers::BrowserGuard>,
    )>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let checked = refuse_long_uris(&request).and_then(|()| browsers::check(&guard, &request));
    let response = match checked {
        Err(refusal) => refusal.into_response(),
        Ok(()) => limits::limit_requests(&state, request, next)
            .await
            .unwrap_or_else(IntoResponse::into_response),
    };
    if let Some(error::Rejected(reason)) = response.extensions().get::<error::Rejected>() {
        state.rejections.add(reason);
    }
    json_errors(response).await
}

/// What a matched route's request passes, in one layer: the gate of its scope (`auth.rs`),
/// then its body charged to the budget of bytes in flight (`body_budget.rs`; only a client
/// with a token can spend it), and the request counted and timed under its route template.
async fn route_door(
    axum::extract::State((state, scope)): axum::extract::State<(AppState, Scope)>,
    matched: Option<axum::extract::MatchedPath>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = Instant::now();
    let method = request.method().clone();
    let admitted = auth::require_token(&state.tokens, scope, &request)
        .and_then(|()| body_budget::charge_body(&state, &request));
    let response = match admitted {
        Err(refusal) => refusal.into_response(),
        Ok(charged) => {
            let response = next.run(request).await;
            drop(charged);
            response
        }
    };
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
async fn json_errors(response: axum::response::Response) -> axum::response::Response {
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
pub(crate) const MAX_URI_BYTES: usize = 16 * 1024;

/// Refuses a path and query longer than [`MAX_URI_BYTES`] (a JSON 414).
fn refuse_long_uris(request: &axum::extract::Request) -> Result<(), ApiError> {
    let length = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if length > MAX_URI_BYTES {
        return Err(ApiError::UriTooLong(format!(
            "the path and query are {length} bytes; the limit is {MAX_URI_BYTES}"
        )));
    }
    Ok(())
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
