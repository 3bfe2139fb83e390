//! What the hook client trusts given `--ca-cert`: a server whose certificate is exactly one of
//! the file's (pinned, as a self-signed certificate is meant to be used), within its validity
//! period and for the host it was asked for; otherwise a chain to one of the file's
//! certificates as a CA, as webpki checks it.
//!
//! Most self-signed certificates (`openssl req -x509 …`) say `CA:TRUE`, and webpki refuses a
//! CA certificate as a server's own (`CaUsedAsEndEntity`), so with the chain check alone such
//! a server was refused and every event spooled, while curl, Python and Go accept it. ureq
//! takes no custom verifier, so this module is also the TLS step of the client's connector:
//! ureq's own rustls step with this verifier in it.

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_name};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, StreamOwned,
};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, Transport,
    TransportAdapter,
};

/// The file's certificates, pinned, and as the roots of the chain check.
#[derive(Debug)]
struct PinnedOrChained {
    pinned: Vec<CertificateDer<'static>>,
    chained: Arc<WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedOrChained {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !self.pinned.iter().any(|pinned| pinned == end_entity) {
            return self.chained.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            );
        }
        let (not_before, not_after) = validity(end_entity).ok_or(
            rustls::Error::InvalidCertificate(CertificateError::BadEncoding),
        )?;
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        if now < not_before {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet,
            ));
        }
        if now > not_after {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Expired));
        }
        verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A certificate's `notBefore` and `notAfter`, in Unix seconds, read from its DER.
fn validity(der: &[u8]) -> Option<(i64, i64)> {
    let time = |reader: yasna::BERReader<'_, '_>| -> yasna::ASN1Result<i64> {
        if reader.lookahead_tag()? == yasna::tags::TAG_UTCTIME {
            Ok(reader.read_utctime()?.datetime().unix_timestamp())
        } else {
            Ok(reader.read_generalized_time()?.datetime().unix_timestamp())
        }
    };
    yasna::parse_der(der, |reader| {
        reader.read_sequence(|reader| {
            // TBSCertificate: [0] version (optional), serial, signature algorithm, issuer,
            // validity, …
            let fields = reader
                .next()
                .collect_sequence_of(|reader| reader.read_der())?;
            reader.next().read_der()?;
            reader.next().read_der()?;
            let has_version = fields.first().is_some_and(|f| f.first() == Some(&0xa0));
            let validity = fields
                .get(if has_version { 4 } else { 3 })
                .ok_or(yasna::ASN1Error::new(yasna::ASN1ErrorKind::Invalid))?;
            yasna::parse_der(validity, |reader| {
                reader.read_sequence(|reader| Ok((time(reader.next())?, time(reader.next())?)))
            })
        })
    })
    .ok()
}

/// The rustls settings for a `--ca-cert` file's certificates.
pub(crate) fn client_config(
    certs: &[CertificateDer<'static>],
) -> Result<Arc<ClientConfig>, rustls::Error> {
    // ring, as ureq is built with (aws-lc-rs would add a CMake build).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        // A certificate that cannot be a root can still be pinned.
        let _ = roots.add(cert.clone());
    }
    // Fails when no certificate in the file can be a root: then none can be trusted.
    let chained = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let verifier = PinnedOrChained {
        pinned: certs.to_vec(),
        chained,
        provider: provider.clone(),
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The connector's TLS step with [`client_config`]: what ureq's rustls step does, with the
/// client's own verifier.
#[derive(Debug)]
pub(crate) struct PinningTlsConnector {
    pub config: Arc<ClientConfig>,
}

impl<In: Transport> Connector<In> for PinningTlsConnector {
    type Out = Either<In, TlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let host = details
            .uri
            .authority()
            .map(|authority| authority.host())
            .ok_or(ureq::Error::Tls("no host to check the certificate for"))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let name = ServerName::try_from(host)
            .map_err(|_| ureq::Error::Tls("the host is not a DNS name or an IP address"))?
            .to_owned();
        let mut connection = ClientConnection::new(self.config.clone(), name)?;
        let mut socket = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        socket.set_timeout(details.timeout);
        connection.complete_io(&mut socket)?;
        Ok(Some(Either::B(TlsTransport {
            buffers: LazyBuffers::new(
                details.config.input_buffer_size(),
                details.config.output_buffer_size(),
            ),
            stream: StreamOwned::new(connection, socket),
        })))
    }
}

/// A TLS connection, as ureq reads and writes it.
pub(crate) struct TlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTransport").finish_non_exhaustive()
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        self.stream.write_all(&self.buffers.output()[..amount])?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

/// Why a TLS connection failed, in plain words, when `error` is a certificate's fault.
pub(crate) fn plain_words(error: &ureq::Error) -> Option<String> {
    let rustls_error = match error {
        ureq::Error::Rustls(e) => Some(e),
        ureq::Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    }?;
    let rustls::Error::InvalidCertificate(why) = rustls_error else {
        return Some(format!("the TLS handshake failed: {rustls_error}"));
    };
    Some(match why {
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the server's certificate has expired".into()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "the server's certificate is not valid yet (is this machine's clock right?)".into()
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "the server's certificate is not for this host name: use the name (or IP) it was \
             made for in the server URL"
                .into()
        }
        CertificateError::UnknownIssuer => {
            "the server's certificate is neither in --ca-cert nor signed by a CA there (without \
             --ca-cert, by a public CA)"
                .into()
        }
        // webpki's own error, which rustls passes on opaque.
        other if format!("{other:?}").contains("CaUsedAsEndEntity") => {
            "the server's certificate is a CA certificate (CA:TRUE, as most self-signed ones \
             are) and is not itself in --ca-cert: put the server's own certificate there to pin \
             it"
            .into()
        }
        other => format!("the server's certificate was refused: {other:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificates_dates_are_read_from_its_der() {
        for (before, after) in [
            ((2025, 1, 1), (2040, 6, 30)),
            ((1999, 12, 31), (2051, 1, 2)),
        ] {
            let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".into()]).unwrap();
            params.not_before = rcgen::date_time_ymd(before.0, before.1, before.2);
            params.not_after = rcgen::date_time_ymd(after.0, after.1, after.2);
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            let unix = |(y, m, d): (i32, u8, u8)| rcgen::date_time_ymd(y, m, d).unix_timestamp();
            assert_eq!(validity(cert.der()), Some((unix(before), unix(after))));
        }
        assert_eq!(validity(b"not a certificate"), None);
    }
}
