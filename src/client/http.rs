//! A minimal blocking HTTP/1.1 client over `std::net`, for the hook client.
//!
//! `hookwatch send` runs once per hook event and must finish in milliseconds: no async
//! runtime, no connection pool, one request with one deadline that covers connecting,
//! writing and reading. Only `http://` is supported; hookwatch's server speaks plain HTTP
//! (put a TLS proxy in front of it for remote use).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("unsupported server URL {0:?}: use http://host:port")]
    BadUrl(String),
    #[error("could not reach {0}: {1}")]
    Unreachable(String, String),
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    #[error("malformed answer from the server")]
    Malformed,
}

/// `http://host:port[/prefix]`, parsed once.
#[derive(Debug, Clone)]
pub struct ServerUrl {
    host_header: String,
    authority: String,
    prefix: String,
}

impl ServerUrl {
    pub fn parse(url: &str) -> Result<Self, HttpError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| HttpError::BadUrl(url.to_owned()))?;
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], rest[slash..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(HttpError::BadUrl(url.to_owned()));
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
        {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(Self {
            host_header: authority.to_owned(),
            authority: with_port,
            prefix: path.to_owned(),
        })
    }

    /// `host:port`, to connect to.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The `Host` header's value.
    pub fn host_header(&self) -> &str {
        &self.host_header
    }

    /// The path the server is mounted under (`""` at the root).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn display(&self) -> String {
        format!("http://{}{}", self.host_header, self.prefix)
    }
}

/// The status and body of an answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Sends one request and reads the whole answer, all within `deadline`.
pub fn request(
    server: &ServerUrl,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
    token: Option<&str>,
    deadline: Duration,
) -> Result<Answer, HttpError> {
    let started = Instant::now();
    let left = || {
        deadline
            .checked_sub(started.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or(HttpError::TimedOut(deadline))
    };
    let address = resolve(&server.authority)?;
    let mut stream = TcpStream::connect_timeout(&address, left()?).map_err(|e| {
        if e.kind() == std::io::ErrorKind::TimedOut {
            HttpError::TimedOut(deadline)
        } else {
            HttpError::Unreachable(server.display(), e.to_string())
        }
    })?;
    let _ = stream.set_nodelay(true);
    let mut head = format!(
        "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        server.prefix,
        server.host_header,
        body.len()
    );
    if let Some(content_type) = content_type {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    head.push_str("\r\n");
    let io_error = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            HttpError::TimedOut(deadline)
        }
        _ => HttpError::Unreachable(server.display(), e.to_string()),
    };
    stream.set_write_timeout(Some(left()?)).map_err(io_error)?;
    stream.write_all(head.as_bytes()).map_err(io_error)?;
    stream.write_all(body).map_err(io_error)?;
    let mut answer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 8192];
    loop {
        stream.set_read_timeout(Some(left()?)).map_err(io_error)?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(io_error(e)),
        }
    }
    parse_answer(&answer)
}

fn resolve(authority: &str) -> Result<SocketAddr, HttpError> {
    authority
        .to_socket_addrs()
        .map_err(|e| HttpError::Unreachable(authority.to_owned(), e.to_string()))?
        .next()
        .ok_or_else(|| HttpError::Unreachable(authority.to_owned(), "no address".into()))
}

fn parse_answer(raw: &[u8]) -> Result<Answer, HttpError> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or(HttpError::Malformed)?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| HttpError::Malformed)?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(HttpError::Malformed)?;
    let mut body = raw[head_end + 4..].to_vec();
    let chunked = head.lines().any(|line| {
        let lower = line.to_ascii_lowercase();
        lower.starts_with("transfer-encoding:") && lower.contains("chunked")
    });
    if chunked {
        body = dechunk(&body).ok_or(HttpError::Malformed)?;
    }
    Ok(Answer { status, body })
}

fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_parse_with_default_port_and_prefix() {
        let url = ServerUrl::parse("http://127.0.0.1:4000").unwrap();
        assert_eq!(url.authority, "127.0.0.1:4000");
        assert_eq!(url.prefix, "");
        let url = ServerUrl::parse("http://hooks.internal/hookwatch/").unwrap();
        assert_eq!(url.authority, "hooks.internal:80");
        assert_eq!(url.prefix, "/hookwatch");
        assert!(ServerUrl::parse("https://x").is_err());
        assert!(ServerUrl::parse("http://user:pw@x").is_err());
    }

    #[test]
    fn answers_parse_plain_and_chunked() {
        let plain = parse_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").unwrap();
        assert_eq!((plain.status, plain.body.as_slice()), (200, &b"ok"[..]));
        let chunked = parse_answer(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n3\r\nabc\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(chunked.body, b"{}abc");
        assert!(parse_answer(b"garbage").is_err());
    }
}
