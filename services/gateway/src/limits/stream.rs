//! IngestStream's limits: an idle timeout between the client's messages and a budget of
//! documents and bytes per stream. A stream that breaks one stops forwarding, lets the results
//! of what it already sent come back, then ends with the error saying which limit it hit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use braid_proto::prost::Message;
use braid_proto::tonic::Status;
use braid_proto::v1::IngestStreamRequest;
use futures::{Stream, StreamExt};

use super::config::StreamLimits;
use crate::error::GatewayError;

/// Set when the inbound stream was cut by a limit.
#[derive(Clone, Default)]
pub struct Cut(Arc<Mutex<Option<GatewayError>>>);

impl Cut {
    fn set(&self, e: GatewayError) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    }

    /// The error to end the response stream with, if any.
    pub fn take(&self) -> Option<Status> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .map(Status::from)
    }
}

struct State<S> {
    inbound: S,
    documents: u64,
    bytes: u64,
    cut: Cut,
    limits: StreamLimits,
}

/// The client's messages as long as they keep within `limits`; a client error ends the upload.
pub fn guard<S>(inbound: S, limits: StreamLimits) -> (impl Stream<Item = IngestStreamRequest>, Cut)
where
    S: Stream<Item = Result<IngestStreamRequest, Status>> + Unpin,
{
    let cut = Cut::default();
    let state = State {
        inbound,
        documents: 0,
        bytes: 0,
        cut: cut.clone(),
        limits,
    };
    let stream = futures::stream::unfold(state, |mut st| async move {
        let idle = Duration::from_millis(st.limits.idle_timeout_ms);
        let message = match tokio::time::timeout(idle, st.inbound.next()).await {
            Err(_) => {
                st.cut.set(GatewayError::StreamIdle(format!(
                    "no message for {} ms (limits.stream.idle_timeout_ms)",
                    st.limits.idle_timeout_ms
                )));
                return None;
            }
            Ok(Some(Ok(m))) => m,
            Ok(_) => return None,
        };
        st.documents += 1;
        st.bytes += message.encoded_len() as u64;
        if st.documents > st.limits.max_documents {
            st.cut.set(GatewayError::StreamBudget(format!(
                "more than {} documents in one stream (limits.stream.max_documents)",
                st.limits.max_documents
            )));
            return None;
        }
        if st.bytes > st.limits.max_bytes {
            st.cut.set(GatewayError::StreamBudget(format!(
                "more than {} bytes in one stream (limits.stream.max_bytes)",
                st.limits.max_bytes
            )));
            return None;
        }
        Some((message, st))
    });
    (stream, cut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_proto::tonic::Code;
    use braid_proto::v1::DocumentInput;

    fn msg(content: &str) -> Result<IngestStreamRequest, Status> {
        Ok(IngestStreamRequest {
            tenant: String::new(),
            document: Some(DocumentInput {
                content: content.into(),
                ..Default::default()
            }),
        })
    }

    fn limits(max_documents: u64, max_bytes: u64) -> StreamLimits {
        StreamLimits {
            idle_timeout_ms: 1_000,
            max_documents,
            max_bytes,
        }
    }

    #[tokio::test]
    async fn document_budget_cuts_the_stream() {
        let inbound = futures::stream::iter(vec![msg("a"), msg("b"), msg("c")]);
        let (out, cut) = guard(inbound, limits(2, 1 << 20));
        assert_eq!(out.collect::<Vec<_>>().await.len(), 2);
        let status = cut.take().unwrap();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("limits.stream.max_documents"));
    }

    #[tokio::test]
    async fn byte_budget_cuts_the_stream() {
        let inbound = futures::stream::iter(vec![msg("a"), msg(&"x".repeat(100))]);
        let (out, cut) = guard(inbound, limits(10, 50));
        assert_eq!(out.collect::<Vec<_>>().await.len(), 1);
        assert!(cut.take().unwrap().message().contains("max_bytes"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_client_is_cut() {
        let inbound = futures::stream::iter(vec![msg("a")]).chain(futures::stream::pending());
        let (out, cut) = guard(Box::pin(inbound), limits(10, 1 << 20));
        assert_eq!(out.collect::<Vec<_>>().await.len(), 1);
        let status = cut.take().unwrap();
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert!(status.message().contains("idle_timeout_ms"));
    }

    #[tokio::test]
    async fn a_stream_within_limits_ends_cleanly() {
        let inbound = futures::stream::iter(vec![msg("a"), msg("b")]);
        let (out, cut) = guard(inbound, limits(2, 1 << 20));
        assert_eq!(out.collect::<Vec<_>>().await.len(), 2);
        assert!(cut.take().is_none());
    }
}
