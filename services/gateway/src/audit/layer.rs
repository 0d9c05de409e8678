//! The audit layer around the Gateway service: it reserves a place in the audit queue, puts
//! an [`AuditSlot`] into the request for the handler to fill, and queues the record when the
//! response is ready, with the status from its `grpc-status` header (errors are trailers-only
//! responses; a response without one is OK).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use braid_proto::tonic::body::Body;
use braid_proto::tonic::server::NamedService;
use braid_proto::tonic::{Code, Status};
use futures::future::BoxFuture;
use tower::Service;

use super::Auditor;
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
        let client_addr = request
            .extensions()
            .get::<braid_proto::tonic::transport::server::TcpConnectInfo>()
            .and_then(|info| info.remote_addr())
            .map(|a| a.to_string())
            .unwrap_or_default();
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
                    auditor.dropped.inc();
                    let status = Status::unavailable(
                        "the audit trail cannot record this call; it was not run",
                    );
                    return Box::pin(async move { Ok(status.into_http()) });
                }
                OnFailure::BestEffort => {
                    auditor.dropped.inc();
                    None
                }
            },
        };
        let slot = AuditSlot::new(auditor.query_text);
        request.extensions_mut().insert(slot.clone());
        Box::pin(async move {
            let response = inner.call(request).await?;
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map_or(Code::Ok, Code::from);
            if let Some(place) = place {
                let filled = slot.take();
                place.send(Record {
                    at_ms,
                    subject: filled.subject,
                    tenant: filled.tenant,
                    role: filled.role,
                    client_addr,
                    rpc,
                    code: format!("{code:?}"),
                    latency_ms: started.elapsed().as_secs_f64() * 1000.0,
                    result_count: filled.result_count,
                    document_ids: filled.document_ids,
                    trace_id,
                    query: filled.query,
                });
            }
            Ok(response)
        })
    }
}
