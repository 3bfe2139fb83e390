//! Browsers are not clients unless allowed.
//!
//! hookwatch listens on 127.0.0.1 without a token by default, and any web page the user opens
//! can send requests there. CORS only stops a page from *reading* an answer; it does not stop
//! the request. So, before anything else runs:
//! - **`Host`** must name this server: `localhost`, a loopback address, the address it listens
//!   on (any IP literal when it listens on all interfaces), or one of `--allowed-hosts`.
//!   Anything else is answered 421: a page that rebinds its own DNS name to 127.0.0.1 (DNS
//!   rebinding) sends its own name as `Host`, and reads nothing.
//! - **`Origin`**, which browsers send on every cross-origin write and WebSocket handshake,
//!   must be this server's own origin, a page on localhost or a loopback address (any port:
//!   the upstream's Vue dashboard runs on its own port), or one of `--cors-origins`, for every
//!   write and for the WebSocket (which CORS never covers). Anything else is answered 403. A
//!   request with no `Origin` is a CLI or a hook, not a browser, and passes whatever its
//!   content type (`curl -d` sends a form type).
//!
//! `/healthz` skips the `Host` check: load balancers probe it by address, and it holds nothing.
//!
//! A request with two `Host` or two `Origin` headers, or a `Host` that is not `name[:port]`,
//! `ipv4[:port]` or `[ipv6][:port]`, is answered 400: the checks above must judge the one
//! value every later reader sees (`[::1]x` once passed as loopback).

use std::net::{IpAddr, SocketAddr};

use axum::extract::Request;
use axum::http::{Method, header};

use super::CorsPolicy;
use super::error::ApiError;

/// Which hosts and origins a request may name.
#[derive(Debug, Clone)]
pub(crate) struct BrowserGuard {
    pub cors: CorsPolicy,
    /// Host names besides localhost and the listen address (`*` for any).
    pub allowed_hosts: Vec<String>,
    /// The address hookwatch listens on.
    pub listen: SocketAddr,
}

impl BrowserGuard {
    /// Whether a `Host` header value (`name[:port]`) names this server.
    pub(crate) fn allows_host(&self, host: &str) -> bool {
        let Some(name) = host_name(host) else {
            return false;
        };
        if name.eq_ignore_ascii_case("localhost") {
            return true;
        }
        if let Ok(ip) = name.parse::<IpAddr>() {
            let listen = self.listen.ip();
            return ip.is_loopback() || listen.is_unspecified() || ip == listen;
        }
        self.allowed_hosts
            .iter()
            .any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(name))
    }

    /// Whether a browser page at `origin` may write here or open the stream; `host` is the
    /// request's `Host`, which makes the dashboard's own origin allowed.
    pub(crate) fn allows_origin(&self, origin: &str, host: Option<&str>) -> bool {
        let same_origin = host.is_some_and(|host| {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
        });
        same_origin || self.cors.allows(origin)
    }
}

/// `name` of `name`, `name:port`, `[v6]` or `[v6]:port` (without brackets), or `None` when
/// `host` is none of these: a port must be 1 to 5 digits, a bracketed name an IPv6 address,
/// and a name only letters, digits, `-`, `.` and `_`.
fn host_name(host: &str) -> Option<&str> {
    let port_ok = |port: &str| {
        (1..=5).contains(&port.len())
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| p <= 65_535)
    };
    if let Some(rest) = host.strip_prefix('[') {
        let (name, after) = rest.split_once(']')?;
        name.parse::<std::net::Ipv6Addr>().ok()?;
        return match after {
            "" => Some(name),
            _ => after.strip_prefix(':').filter(|p| port_ok(p)).map(|_| name),
        };
    }
    let (name, port) = match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    (name_ok && port.is_none_or(port_ok)).then_some(name)
}

/// A header sent more than once, which no check may judge by its first value alone.
fn repeated(request: &Request) -> Option<&'static str> {
    [(header::HOST, "Host"), (header::ORIGIN, "Origin")]
        .into_iter()
        .find(|(name, _)| request.headers().get_all(name).iter().nth(1).is_some())
        .map(|(_, shown)| shown)
}

/// The `Host` and `Origin` checks, before authentication and everything else.
pub(crate) fn check(guard: &BrowserGuard, request: &Request) -> Result<(), ApiError> {
    if let Some(header) = repeated(request) {
        return Err(ApiError::field(
            header,
            format!("the {header} header is sent more than once"),
        ));
    }
    let host = request
        .headers()
        .get(header::HOST)
        .map(|value| value.to_str().unwrap_or("\u{fffd}").to_owned())
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()));
    if request.uri().path() != "/healthz"
        && let Some(host) = &host
        && host_name(host).is_none()
    {
        return Err(ApiError::field(
            "Host",
            format!("the Host header {host:?} is not name[:port], ipv4[:port] or [ipv6][:port]"),
        ));
    }
    if request.uri().path() != "/healthz"
        && let Some(host) = &host
        && !guard.allows_host(host)
    {
        return Err(ApiError::MisdirectedRequest(format!(
            "this server does not answer for host {host:?}; add it with --allowed-hosts"
        )));
    }
    let writes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let opens_stream = request.headers().contains_key(header::UPGRADE);
    if (writes || opens_stream)
        && let Some(origin) = request.headers().get(header::ORIGIN)
    {
        let origin = origin.to_str().unwrap_or("\u{fffd}");
        if !guard.allows_origin(origin, host.as_deref()) {
            return Err(ApiError::Forbidden(format!(
                "browser pages from origin {origin:?} may not write here or open the stream; \
                 add it with --cors-origins"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(listen: &str, allowed_hosts: &[&str]) -> BrowserGuard {
        BrowserGuard {
            cors: CorsPolicy {
                allowed_origins: vec!["https://dash.example.com".into()],
            },
            allowed_hosts: allowed_hosts.iter().map(|h| (*h).to_owned()).collect(),
            listen: listen.parse().unwrap(),
        }
    }

    #[test]
    fn hosts_must_name_this_server() {
        let local = guard("127.0.0.1:4000", &[]);
        for host in [
            "localhost:4000",
            "127.0.0.1:4000",
            "[::1]:4000",
            "LOCALHOST",
            "127.0.0.2",
        ] {
            assert!(local.allows_host(host), "{host}");
        }
        for host in [
            "attacker.example:4000",
            "10.0.0.5:4000",
            "localhost.evil:4000",
            "",
            "[::1]x",
            "[::1]:",
            "[::1]:4000x",
            "[evil]:4000",
            "127.0.0.1:4000:1",
            "127.0.0.1:99999",
            "::1",
            "localhost:",
            "local host",
        ] {
            assert!(!local.allows_host(host), "{host}");
        }
        let everywhere = guard("0.0.0.0:4000", &["hookwatch.internal"]);
        assert!(everywhere.allows_host("10.0.0.5:4000"));
        assert!(everywhere.allows_host("HookWatch.Internal:4000"));
        assert!(!everywhere.allows_host("attacker.example"));
        assert!(guard("0.0.0.0:4000", &["*"]).allows_host("anything.example"));
    }

    #[test]
    fn origins_are_this_server_localhost_pages_or_configured() {
        let g = guard("127.0.0.1:4000", &[]);
        let host = Some("127.0.0.1:4000");
        assert!(g.allows_origin("http://127.0.0.1:4000", host));
        assert!(g.allows_origin("http://localhost:5173", host));
        assert!(g.allows_origin("https://dash.example.com", host));
        assert!(!g.allows_origin("https://evil.example", host));
        assert!(!g.allows_origin("null", host));
        let named = guard("0.0.0.0:4000", &["hookwatch.internal"]);
        assert!(named.allows_origin("https://hookwatch.internal", Some("hookwatch.internal")));
    }
}
