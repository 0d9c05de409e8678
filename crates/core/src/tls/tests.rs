//! A real server (a `host::Host` with `server.tls`) and real clients (the balanced channel of
//! `client::Connector`), with a CA and certificates made per test (rcgen).

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::*;
use crate::config::{ClientConfig, ServerConfig};
use crate::host::Host;
use crate::metrics::Metrics;
use crate::server::{Guard, Listeners};

/// A CA and the certificates it issued, as PEM files in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Self { dir, ca }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Issues `<stem>.pem` and `<stem>.key` for `sans` (DNS names or IP addresses), usable
    /// by servers and clients.
    fn issue(&self, stem: &str, sans: &[&str]) -> (PathBuf, PathBuf) {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, stem);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let (cert_file, key_file) = (
            self.dir.path().join(format!("{stem}.pem")),
            self.dir.path().join(format!("{stem}.key")),
        );
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        (cert_file, key_file)
    }
}

struct Running {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        self.task.await.unwrap().unwrap();
    }
}

async fn server(tls: ServerTlsConfig) -> Running {
    let config = ServerConfig {
        tls: Some(tls),
        ..ServerConfig::default()
    };
    let listeners = Listeners::ephemeral().await.unwrap();
    let addr = listeners.grpc_addr().unwrap();
    let host = Host::new("braid.test.Svc", "t", &config);
    host.health().set_serving(true).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(host.serve(Guard::Public, listeners, async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

/// One health check over the balanced Braid channel `endpoint` and `tls` make.
async fn check(endpoint: String, tls: Option<ClientTlsConfig>) -> Result<(), String> {
    let connector = crate::client::Connector::new(
        crate::auth::internal::ServiceToken::none(),
        crate::resilience::BreakerConfig::default(),
        &Metrics::new("client"),
        crate::balance::system(),
    );
    let config = ClientConfig {
        tls,
        ..ClientConfig::new(endpoint, 5_000)
    };
    let (channel, _) = connector
        .channel("svc", &config)
        .map_err(|e| e.to_string())?;
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
}

fn server_tls(cert: (PathBuf, PathBuf)) -> ServerTlsConfig {
    ServerTlsConfig {
        cert_file: cert.0,
        key_file: cert.1,
        client_ca_file: None,
        reload_ms: 20,
    }
}

#[tokio::test]
async fn an_endpoint_given_by_ip_verifies_the_ip_san_or_the_configured_server_name() {
    let pki = Pki::new("test CA");
    let by_name = server(server_tls(pki.issue("by-name", &["svc.internal"]))).await;
    let by_ip = server(server_tls(pki.issue("by-ip", &["127.0.0.1"]))).await;

    let trusting = ClientTlsConfig::trusting(pki.ca_file());
    check(format!("https://{}", by_ip.addr), Some(trusting.clone()))
        .await
        .expect("the IP address SAN matches an endpoint given by IP");
    let refused = check(format!("https://{}", by_name.addr), Some(trusting.clone()))
        .await
        .expect_err("a certificate for another name is refused");
    assert!(refused.contains("NotValidForName"), "{refused}");
    check(
        format!("https://{}", by_name.addr),
        Some(ClientTlsConfig {
            server_name: Some("svc.internal".into()),
            ..trusting.clone()
        }),
    )
    .await
    .expect("tls.server_name names what the certificate must carry");

    by_name.stop().await;
    by_ip.stop().await;
}

#[tokio::test]
async fn a_half_written_rotation_keeps_the_current_certificate() {
    let pki = Pki::new("test CA");
    let (cert, key) = pki.issue("first", &["127.0.0.1"]);
    let tls = ServerTls::start(&server_tls((cert.clone(), key.clone()))).unwrap();
    let first = tls.current();
    // The new certificate lands before its key: the pair does not match, so nothing changes.
    let (next_cert, next_key) = pki.issue("next", &["127.0.0.1"]);
    std::fs::copy(&next_cert, &cert).unwrap();
    tls.apply(&read_now(&server_files(&tls.config)).unwrap());
    assert!(
        Arc::ptr_eq(&first, &tls.current()),
        "a mismatched pair was taken"
    );
    std::fs::copy(&next_key, &key).unwrap();
    tls.apply(&read_now(&server_files(&tls.config)).unwrap());
    assert!(
        !Arc::ptr_eq(&first, &tls.current()),
        "the complete pair was not taken"
    );
}

#[test]
fn client_settings_are_checked_together() {
    let mut errors = Vec::new();
    let config = ClientConfig {
        tls: Some(ClientTlsConfig {
            cert_file: Some("c.pem".into()),
            server_name: Some("not a name".into()),
            ..ClientTlsConfig::default()
        }),
        ..ClientConfig::new("http://a:1", 10)
    };
    config.validate("embedding", &mut errors);
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].contains("https://"), "{errors:?}");
    assert!(errors[1].contains("embedding.tls.key_file"), "{errors:?}");
    assert!(
        errors[2].contains("embedding.tls.server_name"),
        "{errors:?}"
    );
}

#[tokio::test]
async fn missing_or_unusable_files_stop_the_start() {
    let pki = Pki::new("test CA");
    let (cert, _) = pki.issue("a", &["127.0.0.1"]);
    let (_, other_key) = pki.issue("b", &["127.0.0.1"]);
    let err = ServerTls::start(&server_tls((cert.clone(), pki.dir.path().join("none.key"))))
        .err()
        .unwrap();
    assert!(err.contains("none.key"), "{err}");
    let err = ServerTls::start(&server_tls((cert, other_key)))
        .err()
        .unwrap();
    assert!(err.contains("a.pem with"), "{err}");
}

#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
struct Sample {
    server: ServerConfig,
    embedding: ClientConfig,
}

impl crate::config::Validate for Sample {
    fn validate(&self, errors: &mut Vec<String>) {
        self.server.validate(errors);
        self.embedding.validate("embedding", errors);
    }
}

#[test]
fn tls_settings_come_from_the_environment_with_their_defaults() {
    let env: std::collections::HashMap<String, String> = [
        ("BRAID_SVC__SERVER__TLS__CERT_FILE", "/s/tls.crt"),
        ("BRAID_SVC__SERVER__TLS__KEY_FILE", "/s/tls.key"),
        (
            "BRAID_SVC__EMBEDDING__ENDPOINT",
            "https://braid-embedding:50053",
        ),
        ("BRAID_SVC__EMBEDDING__TLS__CA_FILE", "/s/ca.crt"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config: Sample = crate::config::load("svc", None, &env).unwrap();
    let server = config.server.tls.unwrap();
    assert_eq!(server.key_file, PathBuf::from("/s/tls.key"));
    assert_eq!(
        (server.client_ca_file, server.reload_ms),
        (None, DEFAULT_RELOAD_MS)
    );
    let client = config.embedding.tls.unwrap();
    assert_eq!(client.ca_file, Some(PathBuf::from("/s/ca.crt")));
    assert_eq!(client.reload_ms, DEFAULT_RELOAD_MS);

    let mut typo = env.clone();
    typo.insert("BRAID_SVC__SERVER__TLS__CERT".into(), "/s/x".into());
    let err = crate::config::load::<Sample>("svc", None, &typo).unwrap_err();
    assert!(err.to_string().contains("cert"), "{err}");
}
