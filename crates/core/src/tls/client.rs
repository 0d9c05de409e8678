//! The client side: a tonic connector that dials TCP and runs a TLS handshake with the
//! downstream's current rustls config, verifying the server as one fixed name.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tonic::transport::{Channel, Endpoint};

use super::{ALPN_H2, ClientTls};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Dials the URI's host and port and verifies the server as `server_name`, for
/// [`Endpoint::connect_with_connector_lazy`]. The endpoint's connect timeout covers both the
/// TCP connect and the handshake.
#[derive(Clone)]
pub struct TlsConnector {
    tls: Arc<ClientTls>,
    server_name: ServerName<'static>,
}

impl TlsConnector {
    pub fn new(tls: Arc<ClientTls>, server_name: ServerName<'static>) -> Self {
        Self { tls, server_name }
    }

    /// A lazily connecting channel to `endpoint` over TLS, verifying the server as the
    /// endpoint's host (or `tls.server_name`).
    pub fn channel(tls: Arc<ClientTls>, endpoint: Endpoint) -> Result<Channel, String> {
        let host = endpoint.uri().host().unwrap_or_default().to_string();
        let server_name = tls.server_name(&host)?;
        Ok(endpoint.connect_with_connector_lazy(Self::new(tls, server_name)))
    }
}

impl tower::Service<http::Uri> for TlsConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.tls.current());
        let server_name = self.server_name.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| format!("`{uri}` has no host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            // Without TCP_NODELAY small requests wait for the peer's delayed ACK.
            tcp.set_nodelay(true)?;
            let stream = connector.connect(server_name, tcp).await?;
            let alpn = stream.get_ref().1.alpn_protocol();
            if alpn.is_some_and(|p| p != ALPN_H2) {
                return Err(format!("{uri} negotiated a protocol other than h2").into());
            }
            Ok(TokioIo::new(stream))
        })
    }
}
