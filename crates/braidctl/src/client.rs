//! The connection to the gateway: one channel, the bearer token on every call; over TLS for an
//! `https://` address (the `--tls-*` options: the CA trusted, a client certificate, the name
//! verified).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use braid_core::tls::{ClientTls, ClientTlsConfig, TlsConnector};
use braid_proto::tonic::transport::{Channel, Endpoint};
use braid_proto::v1::gateway_client::GatewayClient;

use crate::token;

/// The `--tls-*` options, shared by every connection of this run.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub server_name: Option<String>,
}

impl TlsOptions {
    fn is_set(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some() || self.server_name.is_some()
    }
}

static TLS: OnceLock<TlsOptions> = OnceLock::new();
static LOADED: OnceLock<Result<Arc<ClientTls>, String>> = OnceLock::new();

/// Sets the TLS options of this run (once, before the first connection).
pub fn configure_tls(options: TlsOptions) {
    let _ = TLS.set(options);
}

/// The files are read once per run (a CLI lives for seconds: no re-reading).
fn tls() -> anyhow::Result<Arc<ClientTls>> {
    LOADED
        .get_or_init(|| {
            let o = TLS.get().cloned().unwrap_or_default();
            ClientTls::start(&ClientTlsConfig {
                ca_file: o.ca,
                cert_file: o.cert,
                key_file: o.key,
                server_name: o.server_name,
                reload_ms: 0,
            })
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("TLS options: {e}"))
}

/// The endpoint for `address`, over TLS when it is `https://`.
fn endpoint(address: &str) -> anyhow::Result<(Endpoint, bool)> {
    let endpoint = Endpoint::from_shared(address.to_string())
        .with_context(|| format!("invalid address {address}"))?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true);
    let https = endpoint.uri().scheme_str() == Some("https");
    anyhow::ensure!(
        https || !TLS.get().is_some_and(TlsOptions::is_set),
        "--tls-* options are set but {address} is not an https:// address"
    );
    Ok((endpoint, https))
}

/// A lazily connecting channel to `address`.
pub fn connect_lazy(address: &str) -> anyhow::Result<Channel> {
    let (endpoint, https) = endpoint(address)?;
    if https {
        return TlsConnector::channel(tls()?, endpoint).map_err(anyhow::Error::msg);
    }
    Ok(endpoint.connect_lazy())
}

pub async fn connect(address: &str) -> anyhow::Result<Channel> {
    let (endpoint, https) = endpoint(address)?;
    let channel = if https {
        let host = endpoint.uri().host().unwrap_or_default().to_string();
        let tls = tls()?;
        let name = tls.server_name(&host).map_err(anyhow::Error::msg)?;
        endpoint
            .connect_with_connector(TlsConnector::new(tls, name))
            .await
    } else {
        endpoint.connect().await
    };
    channel.map_err(|e| {
        let mut text = e.to_string();
        let mut next = std::error::Error::source(&e);
        while let Some(cause) = next {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            next = cause.source();
        }
        anyhow::anyhow!("cannot reach {address}: {text}")
    })
}

pub type Gateway = GatewayClient<
    braid_proto::tonic::service::interceptor::InterceptedService<Channel, token::Bearer>,
>;

pub async fn gateway(address: &str, token: Option<&str>) -> anyhow::Result<Gateway> {
    let bearer = token::Bearer::new(token::resolve(token)?)?;
    Ok(
        GatewayClient::with_interceptor(connect(address).await?, bearer)
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024),
    )
}

/// A document named by id (a UUID) or by external id: `(document_id, external_id)`.
pub fn id_fields(id: &str) -> (String, String) {
    if braid_core::validate::uuid_like::parse(id).is_some() {
        (id.to_string(), String::new())
    } else {
        (String::new(), id.to_string())
    }
}
