//! The server side: TCP connections in, TLS streams out, each handshake run with the rustls
//! config current when the connection arrived.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

use super::ServerTls;
use crate::metrics::Metrics;

/// Handshakes in progress at once; further connections wait to be accepted.
const MAX_HANDSHAKES: usize = 256;
/// A caller that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A server-side TLS connection. Its connect info is the TCP one, so whatever reads the
/// caller's address (per-peer limits, audit) works the same with and without TLS.
pub struct TlsConn(tokio_rustls::server::TlsStream<TcpStream>);

impl Connected for TlsConn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// The TLS connections of `tcp`, for `serve_with_incoming`; abort the handle when the server
/// stops (it owns the listener). A failed or slow handshake drops that connection only.
pub(crate) fn incoming(
    tls: Arc<ServerTls>,
    mut tcp: TcpIncoming,
    metrics: &Metrics,
) -> (ReceiverStream<io::Result<TlsConn>>, JoinHandle<()>) {
    let failures = metrics.counter(
        "tls_handshake_failures_total",
        "TLS handshakes that failed or timed out (e.g. an untrusted or missing client certificate)",
    );
    let (tx, rx) = mpsc::channel(64);
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let task = tokio::spawn(async move {
        while let Some(accepted) = tcp.next().await {
            let stream = match accepted {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
            let (tx, failures) = (tx.clone(), failures.clone());
            tokio::spawn(async move {
                let peer = stream.peer_addr().ok();
                let handshake =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                drop(permit);
                match handshake {
                    Ok(Ok(conn)) => {
                        let _ = tx.send(Ok(TlsConn(conn))).await;
                    }
                    Ok(Err(e)) => {
                        failures.increment(1);
                        tracing::debug!(?peer, error = %e, "TLS handshake failed");
                    }
                    Err(_) => {
                        failures.increment(1);
                        tracing::debug!(?peer, "TLS handshake timed out");
                    }
                }
            });
        }
    });
    (ReceiverStream::new(rx), task)
}
