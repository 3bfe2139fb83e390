//! The hook client and `export` against hookwatch behind HTTPS: a TLS-terminating proxy the
//! test starts in front of a real server, with a certificate from a CA made for the test and
//! passed with `--ca-cert`, as a team with its own CA would.

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio::process::Command;
use tokio_rustls::rustls;

use crate::client::run;
use crate::helpers::{TestApp, binary};

/// A CA made for one test: its certificate (PEM) and what signs with it.
struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn new_ca(name: &str) -> TestCa {
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    TestCa {
        pem,
        issuer: Issuer::new(params, key),
    }
}

/// Listens on 127.0.0.1 with a certificate for `localhost` signed by `ca`, and forwards each
/// connection's plain bytes to `backend`. Returns the proxy's port.
async fn start_tls_proxy(ca: &TestCa, backend: std::net::SocketAddr) -> u16 {
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    serve_tls(cert.der().clone(), key, backend).await
}

/// A self-signed certificate made the usual way (`openssl req -x509 -subj /CN=127.0.0.1
/// -addext subjectAltName=IP:127.0.0.1`): it says `CA:TRUE`. Valid from `not_before` to
/// `not_after`, as (year, month, day).
fn self_signed(
    not_before: (i32, u8, u8),
    not_after: (i32, u8, u8),
) -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "127.0.0.1");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let key = KeyPair::generate().unwrap();
    (params.self_signed(&key).unwrap(), key)
}

/// Serves `cert` (with `key`) on 127.0.0.1 in front of `backend`; the proxy's port.
async fn serve_tls(
    cert: rustls::pki_types::CertificateDer<'static>,
    key: KeyPair,
    backend: std::net::SocketAddr,
) -> u16 {
    // ring, the provider the hook client is built with (aws-lc-rs would add a CMake build);
    // rustls 0.23.48 deprecates it for lacking post-quantum key exchange.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to forward.
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

/// Runs `hookwatch send --ca-cert {ca}` against `https://localhost:{port}` with one hook
/// payload on stdin; returns its exit code.
async fn send_over_tls(port: u16, ca_file: &Path, spool: &Path, session: &str) -> i32 {
    send_over_tls_to("localhost", port, ca_file, spool, session).await
}

async fn send_over_tls_to(
    host: &str,
    port: u16,
    ca_file: &Path,
    spool: &Path,
    session: &str,
) -> i32 {
    let payload = format!(
        r#"{{"session_id":"{session}","hook_event_name":"UserPromptSubmit","prompt":"hi","cwd":"/w/tls-app"}}"#
    );
    let ca = ca_file.to_str().unwrap();
    let ran = run(
        &["send", "--timeout", "5s", "--ca-cert", ca],
        payload.as_bytes(),
        &format!("https://{host}:{port}"),
        spool,
        spool,
    )
    .await;
    ran.code
}

fn spooled(spool: &Path) -> usize {
    std::fs::read_dir(spool).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .count()
    })
}

async fn sessions_stored(app: &TestApp) -> Vec<String> {
    app.get_ok("/events/recent?limit=100")
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["session_id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn the_hook_client_delivers_over_tls_with_its_teams_ca_and_spools_on_a_wrong_one() {
    let app = TestApp::spawn_live().await;
    let backend: std::net::SocketAddr = app.base_url.trim_start_matches("http://").parse().unwrap();
    let team_ca = new_ca("hookwatch test team CA");
    let port = start_tls_proxy(&team_ca, backend).await;
    let dir = tempfile::tempdir().unwrap();
    let team_ca_file = dir.path().join("team-ca.pem");
    std::fs::write(&team_ca_file, &team_ca.pem).unwrap();
    let other_ca_file = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca_file, new_ca("someone else's CA").pem).unwrap();
    let spool = dir.path().join("spool");

    // The team's CA: delivered through TLS, nothing spooled.
    assert_eq!(
        send_over_tls(port, &team_ca_file, &spool, "tls-trusted").await,
        0
    );
    assert!(
        sessions_stored(&app)
            .await
            .contains(&"tls-trusted".to_owned())
    );
    assert_eq!(spooled(&spool), 0, "a delivered event is not spooled");

    // A CA that did not sign the server's certificate: refused, and the event is spooled.
    assert_eq!(
        send_over_tls(port, &other_ca_file, &spool, "tls-refused").await,
        0
    );
    assert_eq!(spooled(&spool), 1, "the refused event waits in the spool");
    assert!(
        !sessions_stored(&app)
            .await
            .contains(&"tls-refused".to_owned())
    );

    // Replayed with the right CA, the spooled event arrives once.
    let replay = Command::new(binary())
        .args(["replay", "--quiet", "--server"])
        .arg(format!("https://localhost:{port}"))
        .arg("--ca-cert")
        .arg(&team_ca_file)
        .env("HOOKWATCH_SPOOL_DIR", &spool)
        .env_remove("HOOKWATCH_TOKEN")
        .output()
        .await
        .unwrap();
    assert!(replay.status.success(), "{replay:?}");
    // The server answered the replay after its commit.
    assert!(
        sessions_stored(&app)
            .await
            .contains(&"tls-refused".to_owned())
    );
    assert_eq!(spooled(&spool), 0);

    // `export` reads through the same client.
    let export = Command::new(binary())
        .args(["export", "--quiet", "--server"])
        .arg(format!("https://localhost:{port}"))
        .arg("--ca-cert")
        .arg(&team_ca_file)
        .env_remove("HOOKWATCH_TOKEN")
        .output()
        .await
        .unwrap();
    assert!(export.status.success(), "{export:?}");
    let lines = String::from_utf8(export.stdout).unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");
    assert!(lines.contains("tls-trusted") && lines.contains("tls-refused"));
}

/// A self-signed certificate that says `CA:TRUE`, given to `--ca-cert`, is pinned: the server
/// that presents exactly it is trusted while within its dates; an expired one, or another
/// self-signed one, is refused (spooled), and `doctor` says why in plain words.
#[tokio::test]
async fn a_self_signed_certificate_made_the_usual_way_is_pinned_within_its_dates() {
    let app = TestApp::spawn_live().await;
    let backend: std::net::SocketAddr = app.base_url.trim_start_matches("http://").parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");

    let (current, key) = self_signed((2025, 1, 1), (2040, 1, 1));
    let current_file = dir.path().join("current.pem");
    std::fs::write(&current_file, current.pem()).unwrap();
    let port = serve_tls(current.der().clone(), key, backend).await;
    assert_eq!(
        send_over_tls_to("127.0.0.1", port, &current_file, &spool, "pinned").await,
        0
    );
    assert_eq!(spooled(&spool), 0, "delivered, not spooled");
    assert!(sessions_stored(&app).await.contains(&"pinned".to_owned()));

    // Another self-signed certificate in the file: not the server's, so refused.
    let (other, _) = self_signed((2025, 1, 1), (2040, 1, 1));
    let other_file = dir.path().join("other.pem");
    std::fs::write(&other_file, other.pem()).unwrap();
    assert_eq!(
        send_over_tls_to("127.0.0.1", port, &other_file, &spool, "not-pinned").await,
        0
    );
    assert_eq!(spooled(&spool), 1, "refused and spooled");

    // The server's own certificate, but expired: refused, and doctor says so.
    let (expired, key) = self_signed((2020, 1, 1), (2021, 1, 1));
    let expired_file = dir.path().join("expired.pem");
    std::fs::write(&expired_file, expired.pem()).unwrap();
    let expired_port = serve_tls(expired.der().clone(), key, backend).await;
    assert_eq!(
        send_over_tls_to("127.0.0.1", expired_port, &expired_file, &spool, "expired").await,
        0
    );
    assert_eq!(spooled(&spool), 2, "refused and spooled");
    let stored = sessions_stored(&app).await;
    assert!(!stored.contains(&"not-pinned".to_owned()) && !stored.contains(&"expired".to_owned()));
    let said = doctor_says(expired_port, &expired_file, dir.path()).await;
    assert!(
        said.contains("the server's certificate has expired"),
        "{said}"
    );
    let said = doctor_says(port, &other_file, dir.path()).await;
    assert!(
        said.contains(
            "is a CA certificate (CA:TRUE, as most self-signed ones are) and is not itself in \
             --ca-cert"
        ),
        "{said}"
    );
}

/// What `hookwatch doctor` prints against `https://127.0.0.1:{port}` with `--ca-cert {file}`,
/// its home and spool in `dir`.
async fn doctor_says(port: u16, ca_file: &Path, dir: &Path) -> String {
    let doctor = Command::new(binary())
        .args(["doctor", "--server"])
        .arg(format!("https://127.0.0.1:{port}"))
        .arg("--ca-cert")
        .arg(ca_file)
        .env("HOOKWATCH_SPOOL_DIR", dir.join("spool"))
        .env("HOME", dir)
        .env_remove("HOOKWATCH_TOKEN")
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&doctor.stdout).into_owned()
}
