//! The dashboard at `/`, a session's trace at `/sessions/{id}`, the alerts' history at
//! `/alerts` and each person's use at `/team`: pages built into the binary.
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

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("../assets/dashboard/index.html");
const APP_JS: &str = include_str!("../assets/dashboard/app.js");
const APP_CSS: &str = include_str!("../assets/dashboard/app.css");
const TRACE_HTML: &str = include_str!("../assets/dashboard/trace.html");
const TRACE_JS: &str = include_str!("../assets/dashboard/trace.js");
const COMMON_JS: &str = include_str!("../assets/dashboard/common.js");
const ALERTS_HTML: &str = include_str!("../assets/dashboard/alerts.html");
const ALERTS_JS: &str = include_str!("../assets/dashboard/alerts.js");
const TEAM_HTML: &str = include_str!("../assets/dashboard/team.html");
const TEAM_JS: &str = include_str!("../assets/dashboard/team.js");

/// Same-origin only: scripts and styles from this server, fetches and the WebSocket to it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// A file built into the binary, served at `path`.
pub(crate) struct Served {
    pub path: &'static str,
    body: &'static str,
    content_type: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// The pages: they need the read token (the router's read routes).
pub(crate) static PAGES: [Served; 4] = [
    Served {
        path: "/",
        body: INDEX_HTML,
        content_type: HTML,
    },
    // A session's trace: the page reads its id from the address.
    Served {
        path: "/sessions/{id}",
        body: TRACE_HTML,
        content_type: HTML,
    },
    // The alerts' history.
    Served {
        path: "/alerts",
        body: ALERTS_HTML,
        content_type: HTML,
    },
    // Each person's use (its API answers 403 while reads are open: it names people).
    Served {
        path: "/team",
        body: TEAM_HTML,
        content_type: HTML,
    },
];

/// The pages' scripts and stylesheet: they hold no data, so they need no token (the router's
/// open routes).
pub(crate) static ASSETS: [Served; 6] = [
    Served {
        path: "/dashboard/app.js",
        body: APP_JS,
        content_type: JS,
    },
    Served {
        path: "/dashboard/app.css",
        body: APP_CSS,
        content_type: "text/css; charset=utf-8",
    },
    Served {
        path: "/dashboard/trace.js",
        body: TRACE_JS,
        content_type: JS,
    },
    Served {
        path: "/dashboard/common.js",
        body: COMMON_JS,
        content_type: JS,
    },
    Served {
        path: "/dashboard/alerts.js",
        body: ALERTS_JS,
        content_type: JS,
    },
    Served {
        path: "/dashboard/team.js",
        body: TEAM_JS,
        content_type: JS,
    },
];

impl Served {
    /// The file with its headers.
    pub(crate) fn response(&self) -> Response {
        asset(self.body, self.content_type)
    }
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
