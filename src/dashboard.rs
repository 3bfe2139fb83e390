//! The dashboard at `/`, a session's trace at `/sessions/{id}` and the alerts' history at
//! `/alerts`: pages built into the binary.
//!
//! The page, its script and its stylesheet are compiled in with `include_str!`, so the binary
//! serves them offline and nothing loads from a CDN; charts are drawn by hand in SVG. The page
//! reads the same REST API and `/stream` WebSocket as any client, so what it shows is exactly
//! what the API answers.
//!
//! Event payloads are untrusted text (prompts, code, tool output). The script only ever puts
//! them into the DOM as text, and every answer here carries a Content-Security-Policy that
//! allows no inline script, no `eval` and no other origin: even a rendering bug could not run
//! an injected script. The page needs the read token (`?token=` works in a browser); the
//! script and stylesheet hold no data, so they are served to anyone.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX_HTML: &str = include_str!("../assets/dashboard/index.html");
const APP_JS: &str = include_str!("../assets/dashboard/app.js");
const APP_CSS: &str = include_str!("../assets/dashboard/app.css");
const TRACE_HTML: &str = include_str!("../assets/dashboard/trace.html");
const TRACE_JS: &str = include_str!("../assets/dashboard/trace.js");
const COMMON_JS: &str = include_str!("../assets/dashboard/common.js");
const ALERTS_HTML: &str = include_str!("../assets/dashboard/alerts.html");
const ALERTS_JS: &str = include_str!("../assets/dashboard/alerts.js");

/// Same-origin only: scripts and styles from this server, fetches and the WebSocket to it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// Paths of the static assets, which need no token (they hold no data).
pub const PUBLIC_ASSETS: [&str; 5] = [
    "/dashboard/app.js",
    "/dashboard/app.css",
    "/dashboard/trace.js",
    "/dashboard/common.js",
    "/dashboard/alerts.js",
];

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            PUBLIC_ASSETS[0],
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            PUBLIC_ASSETS[1],
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        // A session's trace: the page reads its id from the address.
        .route(
            "/sessions/{id}",
            get(|| async { asset(TRACE_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            PUBLIC_ASSETS[2],
            get(|| async { asset(TRACE_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            PUBLIC_ASSETS[3],
            get(|| async { asset(COMMON_JS, "text/javascript; charset=utf-8") }),
        )
        // The alerts' history.
        .route(
            "/alerts",
            get(|| async { asset(ALERTS_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            PUBLIC_ASSETS[4],
            get(|| async { asset(ALERTS_JS, "text/javascript; charset=utf-8") }),
        )
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            // Revalidate on every load: a new binary's page and script arrive together.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}
