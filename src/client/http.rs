//! The hook client's HTTP, over `ureq` (blocking, rustls for `https://`).
//!
//! `hookwatch send` runs once per hook event and must finish in milliseconds: no async
//! runtime, one request with one deadline that covers resolving, connecting, the TLS
//! handshake, writing and reading. `https://` servers are checked against the public roots
//! (webpki-roots), or, with `--ca-cert`, against the file's certificates only: pinned, or as
//! the team's own CA (`client::tls`). No proxy from the
//! environment and no redirects: the hook talks to the server it was given, or spools.

use std::path::Path;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use ureq::tls::{RootCerts, TlsConfig};

#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("unsupported server URL {0:?}: use http://host:port or https://host")]
    BadUrl(String),
    #[error("could not read the CA certificate {0}: {1}")]
    BadCaCert(String, String),
    #[error("could not reach {0}: {1}")]
    Unreachable(String, String),
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    #[error("malformed answer from the server")]
    Malformed,
}

/// `http[s]://host[:port][/prefix]`, checked once.
#[derive(Debug, Clone)]
pub(crate) struct ServerUrl {
    /// `http://host:port` or `https://host:port`, without the prefix.
    origin: String,
    prefix: String,
}

impl ServerUrl {
    pub(crate) fn parse(url: &str) -> Result<Self, HttpError> {
        let bad = || HttpError::BadUrl(url.to_owned());
        let (scheme, rest) = url
            .strip_prefix("http://")
            .map(|rest| ("http", rest))
            .or_else(|| url.strip_prefix("https://").map(|rest| ("https", rest)))
            .ok_or_else(bad)?;
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], rest[slash..].trim_end_matches('/')),
            None => (rest, ""),
        };
        // No credentials in the URL (tokens go in HOOKWATCH_TOKEN), no query or fragment.
        if authority.is_empty() || authority.contains(['@', '?', '#']) || path.contains(['?', '#'])
        {
            return Err(bad());
        }
        Ok(Self {
            origin: format!("{scheme}://{authority}"),
            prefix: path.to_owned(),
        })
    }

    pub(crate) fn display(&self) -> String {
        format!("{}{}", self.origin, self.prefix)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}{path}", self.origin, self.prefix)
    }
}

/// The status and body of an answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The most bytes of an answer read (the server's answers to the client are small).
const MAX_ANSWER_BYTES: u64 = 8 * 1024 * 1024;

/// The connection's read and write buffers.
const IO_BUFFER_BYTES: usize = 16 * 1024;

/// The certificates of a `--ca-cert` PEM file (at least one).
fn read_ca_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, HttpError> {
    let shown = path.display().to_string();
    let pem =
        std::fs::read(path).map_err(|e| HttpError::BadCaCert(shown.clone(), e.to_string()))?;
    let certs: Vec<CertificateDer<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => {
                Some(Ok(CertificateDer::from(cert.der().to_vec())))
            }
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()
        .map_err(|e| HttpError::BadCaCert(shown.clone(), e.to_string()))?;
    if certs.is_empty() {
        return Err(HttpError::BadCaCert(
            shown,
            "no PEM certificate in it".into(),
        ));
    }
    Ok(certs)
}

/// One client, made once per command: what it trusts for `https://`.
pub(crate) struct HttpClient {
    agent: ureq::Agent,
}

impl HttpClient {
    /// A client that trusts the public roots, or with `ca_cert` (a PEM file holding one or
    /// more certificates) only those.
    pub(crate) fn new(ca_cert: Option<&Path>) -> Result<Self, HttpError> {
        let config = ureq::Agent::config_builder()
            .proxy(None)
            .max_redirects(0)
            .http_status_as_error(false)
            // 128 KiB each by default, zeroed on every connection: a sixth of what a `send`
            // process executes. Answers are small and bodies stream through.
            .input_buffer_size(IO_BUFFER_BYTES)
            .output_buffer_size(IO_BUFFER_BYTES);
        let agent = match ca_cert {
            None => ureq::Agent::with_parts(
                config
                    .tls_config(TlsConfig::builder().root_certs(RootCerts::WebPki).build())
                    .build(),
                ureq::unversioned::transport::DefaultConnector::default(),
                LiteralFirstResolver::default(),
            ),
            Some(path) => {
                // The file's certificates pinned, or as the CAs of the server's chain
                // (`client::tls`): the client's own TLS step after the TCP one.
                use ureq::unversioned::transport::{Connector, TcpConnector};
                let certs = read_ca_certs(path)?;
                let tls = super::tls::client_config(&certs)
                    .map_err(|e| HttpError::BadCaCert(path.display().to_string(), e.to_string()))?;
                ureq::Agent::with_parts(
                    config.build(),
                    ().chain(TcpConnector::default())
                        .chain(super::tls::PinningTlsConnector { config: tls }),
                    LiteralFirstResolver::default(),
                )
            }
        };
        Ok(Self { agent })
    }

    /// Sends one request (`GET` or `POST`) and reads the whole answer, all within `deadline`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn request(
        &self,
        server: &ServerUrl,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
        token: Option<&str>,
        deadline: Duration,
    ) -> Result<Answer, HttpError> {
        let url = server.url(path);
        let authorization = token.map(|token| format!("Bearer {token}"));
        let answer = match method {
            Method::Get => {
                let mut request = self.agent.get(&url);
                if let Some(authorization) = &authorization {
                    request = request.header("Authorization", authorization);
                }
                request
                    .config()
                    .timeout_global(Some(deadline))
                    .build()
                    .call()
            }
            Method::Post => {
                let mut request = self.agent.post(&url);
                if let Some(authorization) = &authorization {
                    request = request.header("Authorization", authorization);
                }
                if let Some(content_type) = content_type {
                    request = request.header("Content-Type", content_type);
                }
                request
                    .config()
                    .timeout_global(Some(deadline))
                    .build()
                    .send(body)
            }
        };
        let error = |e: ureq::Error| match e {
            ureq::Error::Timeout(_) => HttpError::TimedOut(deadline),
            ureq::Error::BadUri(_) => HttpError::BadUrl(url.clone()),
            ureq::Error::Protocol(_) => HttpError::Malformed,
            e => HttpError::Unreachable(
                server.display(),
                super::tls::plain_words(&e).unwrap_or_else(|| e.to_string()),
            ),
        };
        let mut answer = answer.map_err(error)?;
        let status = answer.status().as_u16();
        let body = answer
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_vec()
            .map_err(error)?;
        Ok(Answer { status, body })
    }
}

impl HttpClient {
    /// A `GET` whose answer is read as it arrives (an export of any size): connecting and the
    /// answer's head within `head_deadline`, the body with no deadline and no size limit.
    pub(crate) fn get_streaming(
        &self,
        server: &ServerUrl,
        path: &str,
        token: Option<&str>,
        head_deadline: Duration,
    ) -> Result<(u16, ureq::BodyReader<'static>), HttpError> {
        let url = server.url(path);
        let mut request = self.agent.get(&url);
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let answer = request
            .config()
            .timeout_connect(Some(head_deadline))
            .timeout_recv_response(Some(head_deadline))
            .build()
            .call()
            .map_err(|e| match e {
                ureq::Error::Timeout(_) => HttpError::TimedOut(head_deadline),
                e => HttpError::Unreachable(
                    server.display(),
                    super::tls::plain_words(&e).unwrap_or_else(|| e.to_string()),
                ),
            })?;
        let status = answer.status().as_u16();
        Ok((status, answer.into_body().into_reader()))
    }
}

/// Takes a literal IP address as it is, and hands a host name to ureq's resolver (which runs
/// the lookup on a thread of its own so that the deadline holds). The default server is
/// 127.0.0.1: `send` then starts no thread (one per send before; BENCHMARKS.md).
#[derive(Debug, Default)]
struct LiteralFirstResolver(ureq::unversioned::resolver::DefaultResolver);

impl ureq::unversioned::resolver::Resolver for LiteralFirstResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let literal = uri.authority().and_then(|authority| {
            let host = authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']');
            let ip: std::net::IpAddr = host.parse().ok()?;
            let port = authority
                .port_u16()
                .unwrap_or(if uri.scheme_str() == Some("https") {
                    443
                } else {
                    80
                });
            Some(std::net::SocketAddr::new(ip, port))
        });
        match literal {
            Some(address) => {
                let mut addresses = self.empty();
                addresses.push(address);
                Ok(addresses)
            }
            None => self.0.resolve(uri, config, timeout),
        }
    }
}

/// The methods the client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_parse_with_their_scheme_and_prefix() {
        let url = ServerUrl::parse("http://127.0.0.1:4000").unwrap();
        assert_eq!(url.url("/events"), "http://127.0.0.1:4000/events");
        let url = ServerUrl::parse("https://hooks.internal/hookwatch/").unwrap();
        assert_eq!(
            url.url("/events"),
            "https://hooks.internal/hookwatch/events"
        );
        assert!(ServerUrl::parse("ftp://x").is_err());
        assert!(ServerUrl::parse("http://user:pw@x").is_err());
        assert!(ServerUrl::parse("http://x/?q=1").is_err());
    }

    #[test]
    fn literal_addresses_resolve_without_a_lookup_and_names_with_one() {
        use ureq::unversioned::resolver::Resolver;
        let config = ureq::config::Config::default();
        let resolve = |uri: &str| {
            let timeout = ureq::unversioned::transport::NextTimeout {
                after: ureq::unversioned::transport::time::Duration::from(Duration::from_secs(1)),
                reason: ureq::Timeout::Resolve,
                ..Default::default()
            };
            LiteralFirstResolver::default()
                .resolve(&uri.parse().unwrap(), &config, timeout)
                .unwrap()
                .to_vec()
        };
        assert_eq!(
            resolve("http://127.0.0.1:4000/x"),
            ["127.0.0.1:4000".parse().unwrap()]
        );
        assert_eq!(resolve("https://[::1]/x"), ["[::1]:443".parse().unwrap()]);
        assert_eq!(
            resolve("http://10.1.2.3/"),
            ["10.1.2.3:80".parse().unwrap()]
        );
        assert!(
            resolve("http://localhost:4000/")
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 4000)
        );
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let error = HttpClient::new(Some(&path)).err().expect("refused");
        assert!(error.to_string().contains("ca.pem"), "{error}");
        let missing = HttpClient::new(Some(&dir.path().join("missing.pem")))
            .err()
            .expect("refused");
        assert!(missing.to_string().contains("missing.pem"), "{missing}");
    }
}
