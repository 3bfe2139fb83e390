//! Token authentication.
//!
//! Two scopes: ingest tokens guard the routes that write (hook events, agent reports, OTLP,
//! answers to a human-in-the-loop request), read tokens guard everything else except
//! `/healthz` (for load balancers) and the dashboard's scripts. Each route is declared in the
//! group of its scope (`api::scoped_routes`), so none falls to a scope by omission. Either
//! list may hold several tokens, so a token can be rotated without downtime. A scope with no tokens is open; `startup` refuses to listen
//! beyond loopback while either scope is open, unless told `--insecure-no-auth`.
//!
//! Tokens travel as `Authorization: Bearer …`; browsers, which cannot set that header on a
//! WebSocket or a page load, may pass `?token=…` on GET requests instead. Tokens are compared
//! in constant time, and never logged or echoed.

use axum::extract::Request;
use axum::http::{Method, header};

use super::error::ApiError;

/// The tokens each scope accepts; an empty list leaves the scope open.
#[derive(Clone, Default)]
pub struct Tokens {
    pub ingest: Vec<String>,
    pub read: Vec<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("ingest", &format!("{} token(s)", self.ingest.len()))
            .field("read", &format!("{} token(s)", self.read.len()))
            .finish()
    }
}

/// Who may call a route: each route is added to the router in the group of its scope
/// (`api::router`), whose gate is [`require_token`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The routes that write: ingest tokens.
    Ingest,
    /// Everything that reads: read tokens.
    Read,
    /// No token: `/healthz` and the dashboard's scripts and stylesheet.
    Open,
}

/// Compares without stopping at the first difference, so timing says nothing about how much of
/// a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = u8::from(a.len() != b.len());
    for (i, byte) in a.iter().enumerate() {
        difference |= byte ^ b.get(i).copied().unwrap_or(!byte);
    }
    difference == 0
}

fn accepted(tokens: &[String], presented: &str) -> bool {
    // Every token is compared, so the position of a match is not revealed either.
    tokens.iter().fold(false, |found, token| {
        constant_time_eq(token.as_bytes(), presented.as_bytes()) | found
    })
}

fn presented_token(request: &Request) -> Option<String> {
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        // The scheme is case-insensitive (RFC 9110, 11.1): `BEARER x` is `Bearer x`.
        let (scheme, token) = value.to_str().ok()?.trim_start().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    if request.method() != Method::GET {
        return None;
    }
    request.uri().query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == "token").then(|| percent_decode(value))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether an `Authorization` value may write (OTLP/gRPC carries it as metadata, not through
/// the HTTP middleware): the error says why not.
pub(crate) fn may_ingest(tokens: &Tokens, authorization: Option<&str>) -> Result<(), &'static str> {
    if tokens.ingest.is_empty() {
        return Ok(());
    }
    let token = authorization
        .and_then(|value| value.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match token {
        Some(token) if accepted(&tokens.ingest, token) => Ok(()),
        Some(token) if accepted(&tokens.read, token) => {
            Err("this token may not write (ingest and read tokens are separate)")
        }
        Some(_) => Err("the token is not valid"),
        None => Err("a token is required: send authorization: Bearer <ingest token>"),
    }
}

/// The gate of a group of routes: 401 without a valid token for its scope, 403 with a token
/// of the other scope.
pub(crate) fn require_token(
    tokens: &Tokens,
    scope: Scope,
    request: &Request,
) -> Result<(), ApiError> {
    let (wanted, other) = match scope {
        Scope::Open => return Ok(()),
        Scope::Ingest => (&tokens.ingest, &tokens.read),
        Scope::Read => (&tokens.read, &tokens.ingest),
    };
    if wanted.is_empty() {
        return Ok(());
    }
    match presented_token(request) {
        Some(token) if accepted(wanted, &token) => Ok(()),
        Some(token) if accepted(other, &token) => Err(ApiError::Forbidden(
            "this token may not be used for this route (ingest and read tokens are separate)"
                .into(),
        )),
        Some(_) => Err(ApiError::Unauthorized("the token is not valid".into())),
        None => Err(ApiError::Unauthorized(
            "a token is required: send Authorization: Bearer <token> (in a browser, add ?token=<token> to the address)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(accepted(&["old".into(), "new".into()], "new"));
        assert!(!accepted(&["old".into()], "ol"));
    }

    #[test]
    fn query_tokens_are_percent_decoded() {
        assert_eq!(percent_decode("a%2Bb%3D"), "a+b=");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
        assert_eq!(percent_decode("%é1"), "%é1");
        assert_eq!(percent_decode("end%4"), "end%4");
    }
}
