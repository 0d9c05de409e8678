//! TLS on gRPC, with certificates re-read on change (rustls on ring, like every other TLS
//! client in the tree).
//!
//! - **Server** ([`ServerTls`], `server.tls`): a certificate chain and key, and optionally a
//!   client CA (then every caller must present a certificate it signed: mutual TLS). The files
//!   are polled every `reload_ms` (`crate::reload`); a changed, valid set becomes the rustls
//!   config of every connection accepted from then on (connections already open keep theirs);
//!   an invalid one (unreadable, a key that does not match the certificate during a rotation
//!   written file by file) is logged and the current config kept. `server::serve` accepts TCP,
//!   runs each handshake in a task of its own (bounded, with a deadline) and hands tonic the
//!   TLS streams ([`server`]). ALPN `h2` is offered: gRPC clients such as grpcurl require it.
//! - **Client** ([`ClientTls`], per downstream `tls`, or any `https://` endpoint): the CA it
//!   trusts (the Mozilla roots when unset), its own certificate and key for mutual TLS, and
//!   the name it verifies (the endpoint's host name; an endpoint given by IP address verifies
//!   the IP address SAN, or `tls.server_name` when set). Files are re-read like the server's;
//!   each new connection uses the current set ([`client`]).
//!
//! Plaintext stays the default: behind a mesh that encrypts pod-to-pod traffic, Braid's own
//! TLS is not needed. The admin HTTP port (metrics, health) stays plaintext either way.

mod client;
mod server;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_rustls::rustls;
use tokio_rustls::rustls::RootCertStore;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

pub use client::TlsConnector;
pub(crate) use server::incoming;

/// Default of `tls.reload_ms`: how often certificate files are re-read.
pub const DEFAULT_RELOAD_MS: u64 = 1_000;

/// `server.tls`: what a server presents, and whom it asks for a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM certificate chain, the server's own certificate first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of that certificate.
    pub key_file: PathBuf,
    /// PEM CA certificate(s): when set, every caller must present a client certificate one of
    /// them signed (mutual TLS); unset, callers are not asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
    /// How often the files are re-read (a changed set serves new connections).
    #[serde(default = "default_reload_ms")]
    pub reload_ms: u64,
}

/// A downstream client's `tls`: whom it trusts and what it presents.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTlsConfig {
    /// PEM CA certificate(s) the server's certificate must chain to; unset: the Mozilla roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain, for servers that require mutual TLS (with `key_file`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate must carry, instead of the endpoint's host (e.g. an
    /// endpoint given by IP address, or a name the certificate does not list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// How often the files are re-read (a changed set is used by new connections); 0 reads
    /// them once.
    pub reload_ms: u64,
}

fn default_reload_ms() -> u64 {
    DEFAULT_RELOAD_MS
}

impl Default for ClientTlsConfig {
    /// The Mozilla roots, no client certificate, the endpoint's host, re-read every second.
    fn default() -> Self {
        Self {
            ca_file: None,
            cert_file: None,
            key_file: None,
            server_name: None,
            reload_ms: DEFAULT_RELOAD_MS,
        }
    }
}

impl ServerTlsConfig {
    pub fn validate(&self, errors: &mut Vec<String>) {
        crate::config::positive(errors, "server.tls.reload_ms", self.reload_ms);
    }
}

impl ClientTlsConfig {
    /// Trusts `ca_file`, presents nothing, re-reads every second.
    pub fn trusting(ca_file: impl Into<PathBuf>) -> Self {
        Self {
            ca_file: Some(ca_file.into()),
            ..Self::default()
        }
    }

    /// The same, presenting `cert_file` and `key_file` (mutual TLS).
    pub fn with_identity(mut self, cert_file: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.cert_file = Some(cert_file.into());
        self.key_file = Some(key.into());
        self
    }

    pub fn validate(&self, name: &str, errors: &mut Vec<String>) {
        if self.cert_file.is_some() != self.key_file.is_some() {
            errors.push(format!(
                "{name}.tls.cert_file and {name}.tls.key_file go together (a client certificate needs its key)"
            ));
        }
        if let Some(server_name) = &self.server_name
            && ServerName::try_from(server_name.as_str()).is_err()
        {
            errors.push(format!(
                "{name}.tls.server_name `{server_name}` is neither a DNS name nor an IP address"
            ));
        }
    }

    fn files(&self) -> Vec<PathBuf> {
        [&self.ca_file, &self.cert_file, &self.key_file]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

/// The rustls server config in use, replaced when the files change.
pub struct ServerTls {
    config: ServerTlsConfig,
    current: RwLock<Arc<rustls::ServerConfig>>,
    /// The file contents `current` was built from (a re-read of the same bytes is a no-op).
    loaded: Mutex<Vec<Vec<u8>>>,
}

impl ServerTls {
    /// Reads the files once (start-up fails on a bad set) and re-reads them every
    /// `reload_ms` while the returned value is alive (needs a tokio runtime).
    pub fn start(config: &ServerTlsConfig) -> Result<Arc<Self>, String> {
        let paths = server_files(config);
        let contents = read_now(&paths)?;
        let built = build_server(config, &contents)?;
        let tls = Arc::new(Self {
            config: config.clone(),
            current: RwLock::new(Arc::new(built)),
            loaded: Mutex::new(contents),
        });
        crate::reload::spawn_watch(
            Arc::downgrade(&tls),
            paths,
            Duration::from_millis(config.reload_ms.max(1)),
            |tls: &Self, contents: &[Vec<u8>]| tls.apply(contents),
        );
        Ok(tls)
    }

    /// The config new connections are accepted with.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether callers must present a client certificate.
    pub fn requires_client_certs(&self) -> bool {
        self.config.client_ca_file.is_some()
    }

    fn apply(&self, contents: &[Vec<u8>]) {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if loaded.as_slice() == contents {
            return;
        }
        match build_server(&self.config, contents) {
            Ok(built) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(built);
                *loaded = contents.to_vec();
                tracing::info!(
                    cert_file = %self.config.cert_file.display(),
                    "server certificate re-read; new connections use it"
                );
            }
            Err(e) => tracing::error!(
                error = %e,
                "server certificate files changed but are not usable; keeping the current ones"
            ),
        }
    }
}

/// The rustls client config of one downstream, replaced when its files change.
pub struct ClientTls {
    config: ClientTlsConfig,
    current: RwLock<Arc<rustls::ClientConfig>>,
    loaded: Mutex<Vec<Vec<u8>>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Reads the files once (a bad set is an error) and, when `reload_ms` > 0, re-reads them
    /// while the returned value is alive (then it needs a tokio runtime).
    pub fn start(config: &ClientTlsConfig) -> Result<Arc<Self>, String> {
        let paths = config.files();
        let contents = read_now(&paths)?;
        let built = build_client(config, &contents)?;
        let tls = Arc::new(Self {
            config: config.clone(),
            current: RwLock::new(Arc::new(built)),
            loaded: Mutex::new(contents),
        });
        if config.reload_ms > 0 && !paths.is_empty() {
            crate::reload::spawn_watch(
                Arc::downgrade(&tls),
                paths,
                Duration::from_millis(config.reload_ms),
                |tls: &Self, contents: &[Vec<u8>]| tls.apply(contents),
            );
        }
        Ok(tls)
    }

    /// The config new connections are made with.
    pub fn current(&self) -> Arc<rustls::ClientConfig> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The name a server reached at `host` must prove: `tls.server_name` when set, else
    /// `host` itself (a DNS name, or an IP address matched against IP address SANs).
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, String> {
        let name = self.config.server_name.as_deref().unwrap_or(host);
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(bare.to_string())
            .map_err(|_| format!("`{bare}` is neither a DNS name nor an IP address"))
    }

    fn apply(&self, contents: &[Vec<u8>]) {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if loaded.as_slice() == contents {
            return;
        }
        match build_client(&self.config, contents) {
            Ok(built) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(built);
                *loaded = contents.to_vec();
                tracing::info!("client TLS files re-read; new connections use them");
            }
            Err(e) => tracing::error!(
                error = %e,
                "client TLS files changed but are not usable; keeping the current ones"
            ),
        }
    }
}

fn server_files(config: &ServerTlsConfig) -> Vec<PathBuf> {
    let mut paths = vec![config.cert_file.clone(), config.key_file.clone()];
    paths.extend(config.client_ca_file.clone());
    paths
}

fn read_now(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>, String> {
    paths
        .iter()
        .map(|p| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())))
        .collect()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// gRPC runs over HTTP/2 only.
const ALPN_H2: &[u8] = b"h2";

/// `contents`: certificate, key, then the client CA when configured (as `server_files`).
fn build_server(
    config: &ServerTlsConfig,
    contents: &[Vec<u8>],
) -> Result<rustls::ServerConfig, String> {
    let certs = certificates(&contents[0], &config.cert_file)?;
    let key = private_key(&contents[1], &config.key_file)?;
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match (&config.client_ca_file, contents.get(2)) {
        (Some(path), Some(pem)) => {
            let roots = roots(pem, path)?;
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut built = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "{} with {}: {e}",
            config.cert_file.display(),
            config.key_file.display()
        )
    })?;
    built.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(built)
}

/// `contents`: the files of `config.files()`, in that order.
fn build_client(
    config: &ClientTlsConfig,
    contents: &[Vec<u8>],
) -> Result<rustls::ClientConfig, String> {
    let mut files = contents.iter();
    let roots = match &config.ca_file {
        Some(path) => roots(files.next().map_or(&[][..], Vec::as_slice), path)?,
        None => Arc::new(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut built = match (&config.cert_file, &config.key_file) {
        (Some(cert_path), Some(key_path)) => {
            let certs = certificates(files.next().map_or(&[][..], Vec::as_slice), cert_path)?;
            let key = private_key(files.next().map_or(&[][..], Vec::as_slice), key_path)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("{} with {}: {e}", cert_path.display(), key_path.display()))?
        }
        _ => builder.with_no_client_auth(),
    };
    built.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(built)
}

fn certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate", path.display()));
    }
    Ok(certs)
}

fn private_key(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| format!("{}: no usable private key ({e})", path.display()))
}

fn roots(pem: &[u8], path: &Path) -> Result<Arc<RootCertStore>, String> {
    let mut store = RootCertStore::empty();
    for cert in certificates(pem, path)? {
        store
            .add(cert)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(Arc::new(store))
}

#[cfg(test)]
mod tests;
