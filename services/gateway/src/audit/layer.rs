//! The audit layer around the Gateway service: it reserves a place in the audit queue, puts
//! an [`AuditSlot`] into the request for the handler to fill, and queues the record when the
//! response body ends — with the `grpc-status` of its trailers (or of its headers, for a
//! trailers-only error), so a stream's record carries the stream's real outcome, its counts
//! and its whole duration. A response dropped unfinished (the client went away) is CANCELLED.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use braid_proto::tonic::body::Body;
use braid_proto::tonic::server::NamedService;
use braid_proto::tonic::{Code, Status};
use futures::future::BoxFuture;
use tokio::sync::mpsc::OwnedPermit;
use tower::Service;

use super::Auditor;
use super::anonymous::Anonymous;
use super::config::OnFailure;
use super::record::{AuditSlot, Record};

/// The Gateway RPCs by name; anything else is "unknown" (a closed set for labels and rows).
const RPCS: &[&str] = &[
    "Search",
    "Ingest",
    "IngestStream",
    "WaitIndexed",
    "GetDocument",
    "DeleteDocument",
    "ListJobs",
    "RetryJobs",
    "DiscardJobs",
    "Stats",
    "Reembed",
    "ListAudit",
    "Reindex",
    "ReindexStatus",
    "Verify",
    "RevokeTokens",
    "Status",
    "ResetBreaker",
];

pub fn rpc_name(name: &str) -> &'static str {
    RPCS.iter()
        .find(|r| **r == name)
        .copied()
        .unwrap_or("unknown")
}

/// `S` with every call audited (when an auditor is configured).
#[derive(Clone)]
pub struct Audited<S> {
    inner: S,
    auditor: Option<Arc<Auditor>>,
}

impl<S> Audited<S> {
    pub fn new(inner: S, auditor: Option<Arc<Auditor>>) -> Self {
        Self { inner, auditor }
    }
}

impl<S: NamedService> NamedService for Audited<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for Audited<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone that was polled ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some(auditor) = self.auditor.clone() else {
            return Box::pin(inner.call(request));
        };
        let started = Instant::now();
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let rpc = rpc_name(request.uri().path().rsplit('/').next().unwrap_or_default());
        let peer = request
            .extensions()
            .get::<braid_proto::tonic::transport::server::TcpConnectInfo>()
            .and_then(|info| info.remote_addr());
        let client_addr = peer.map(|a| a.to_string()).unwrap_or_default();
        let peer_ip = peer.map(|a| a.ip().to_string()).unwrap_or_default();
        let trace_id = request
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split('-').nth(1))
            .filter(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .unwrap_or_default()
            .to_string();
        let place = match auditor.tx.clone().try_reserve_owned() {
            Ok(place) => Some(place),
            Err(_) => match auditor.on_failure {
                OnFailure::FailClosed => {
                    auditor.dropped.increment(1);
                    let status = Status::unavailable(
                        "the audit trail cannot record this call; it was not run",
                    );
                    return Box::pin(async move { Ok(status.into_http()) });
                }
                OnFailure::BestEffort => {
                    auditor.dropped.increment(1);
                    None
                }
            },
        };
        let slot = AuditSlot::new(auditor.query_text);
        request.extensions_mut().insert(slot.clone());
        let Some(place) = place else {
            return Box::pin(inner.call(request));
        };
        // Sent when dropped: if this future is dropped before the response (the client went
        // away), the record says CANCELLED.
        let mut pending = Pending {
            place: Some(place),
            slot,
            started,
            at_ms,
            rpc,
            client_addr,
            peer_ip,
            anonymous: auditor.anonymous.clone(),
            trace_id,
            header_code: None,
            trailer_code: None,
            ended: false,
        };
        Box::pin(async move {
            let response = inner.call(request).await?;
            // A refused or failed call is a trailers-only response: its status is in the
            // headers. Otherwise the status comes in the trailers after the last message —
            // for a stream that is when it ends — so the record is sent when the body is done.
            pending.header_code = grpc_status(response.headers());
            Ok(response.map(|body| {
                Body::new(AuditedBody {
                    inner: body,
                    pending,
                })
            }))
        })
    }
}

/// The `grpc-status` of a header or trailer map.
fn grpc_status(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from)
}

/// A call's record waiting for the call's outcome.
struct Pending {
    /// Taken when the record is sent.
    place: Option<OwnedPermit<Record>>,
    slot: AuditSlot,
    started: Instant,
    at_ms: i64,
    rpc: &'static str,
    client_addr: String,
    /// The peer's IP address (no port): the key refusals before authentication are counted by.
    peer_ip: String,
    anonymous: Arc<Anonymous>,
    trace_id: String,
    header_code: Option<Code>,
    trailer_code: Option<Code>,
    /// The body reached its end (rather than being dropped early).
    ended: bool,
}

impl Pending {
    /// The call's outcome: the status it ended with; CANCELLED when the client went away
    /// before the end (the response was dropped unfinished).
    fn code(&self) -> Code {
        match (self.trailer_code.or(self.header_code), self.ended) {
            (Some(code), _) => code,
            (None, true) => Code::Unknown,
            (None, false) => Code::Cancelled,
        }
    }

    /// Queues the record (once).
    fn send(&mut self) {
        let Some(place) = self.place.take() else {
            return;
        };
        let code = self.code();
        let filled = self.slot.take();
        let latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        if filled.before_auth {
            // Counted, and written once per window; the reserved place is given back.
            self.anonymous.count(
                &self.peer_ip,
                self.rpc,
                &format!("{code:?}"),
                self.at_ms,
                latency_ms,
            );
            drop(place);
            return;
        }
        place.send(Record {
            at_ms: self.at_ms,
            subject: filled.subject,
            tenant: filled.tenant,
            role: filled.role,
            client_addr: std::mem::take(&mut self.client_addr),
            rpc: self.rpc,
            code: format!("{code:?}"),
            latency_ms,
            result_count: filled.result_count,
            document_ids: filled.document_ids,
            trace_id: std::mem::take(&mut self.trace_id),
            query: filled.query,
            calls: 1,
        });
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.send();
    }
}

/// A response body that sends its call's audit record when it ends or is dropped.
struct AuditedBody {
    inner: Body,
    pending: Pending,
}

impl http_body::Body for AuditedBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Status>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                // The trailers end the call: the record is queued before they are sent, so
                // a client's next call is always recorded after this one.
                if let Some(trailers) = frame.trailers_ref() {
                    this.pending.trailer_code = grpc_status(trailers);
                    this.pending.ended = true;
                    this.pending.send();
                }
            }
            Poll::Ready(Some(Err(_))) => {
                this.pending.trailer_code.get_or_insert(Code::Internal);
            }
            Poll::Ready(None) => this.pending.ended = true,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for AuditedBody {
    fn drop(&mut self) {
        // An empty body (a trailers-only response) ends without being polled.
        if http_body::Body::is_end_stream(&self.inner) {
            self.pending.ended = true;
        }
    }
}
