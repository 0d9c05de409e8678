//! OTLP trace export against a real OTLP/gRPC receiver: this file starts
//! `opentelemetry.proto.collector.trace.v1.TraceService` (the service an OpenTelemetry collector
//! serves) on an ephemeral port, points `telemetry.otlp_endpoint` at it, makes hybrid searches
//! through a full stack and checks what arrives: the gateway's span and the legs' spans in one
//! trace (the W3C context crossed every gRPC hop), with RPC names and attributes; the JSON log
//! line a request writes carries the trace and span ids of its exported spans; batches are
//! sent on their own, and shutdown flushes what is still queued.
//!
//! The tracing subscriber is process-global (a real service installs it once in `main`), so this
//! is its own test binary with one test and one stack: it installs telemetry once, and the five
//! in-process services all export through it (one OTLP resource, `service.name = braid-tests`;
//! each server span says which service answered in `rpc.service`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use braid_core::config::TelemetryConfig;
use braid_tests::v1::{SearchMode, SearchRequest};
use braid_tests::{Stack, eventually, ingest_texts};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tokio_stream::wrappers::TcpListenerStream;

/// One received span, flattened.
#[derive(Clone, Debug)]
struct Received {
    service_name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    name: String,
    kind: i32,
    attributes: HashMap<String, String>,
}

/// The receiver: keeps every span of every export request.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
    requests: Arc<Mutex<usize>>,
}

fn text(value: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let service_name = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .map(|a| text(&a.value))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    received.push(Received {
                        service_name: service_name.clone(),
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent_span_id: span.parent_span_id,
                        name: span.name,
                        kind: span.kind,
                        attributes: span
                            .attributes
                            .iter()
                            .map(|a| (a.key.clone(), text(&a.value)))
                            .collect(),
                    });
                }
            }
        }
        self.spans.lock().unwrap().extend(received);
        *self.requests.lock().unwrap() += 1;
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    async fn start(self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(self))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        addr
    }

    fn trace(&self, trace_id: &[u8]) -> Vec<Received> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }
}

/// A search that joins the trace `trace_id` (as a caller already tracing would send it).
fn traced_search(query: &str, trace_id: &[u8; 16]) -> tonic::Request<SearchRequest> {
    let mut request = tonic::Request::new(SearchRequest {
        query: query.into(),
        top_k: 5,
        mode: SearchMode::Hybrid as i32,
        bypass_cache: true,
        ..Default::default()
    });
    let traceparent = format!("00-{}-{}-01", hex::encode(trace_id), hex::encode([7u8; 8]));
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    request
}

/// The server spans a hybrid search leaves, by name.
const SEARCH_SPANS: [&str; 4] = [
    "braid.v1.Gateway/Search",
    "braid.v1.EmbeddingService/Embed",
    "braid.v1.VectorSearchService/Search",
    "braid.v1.TextSearchService/Search",
];

fn complete(spans: &[Received]) -> bool {
    SEARCH_SPANS
        .iter()
        .all(|name| spans.iter().any(|s| s.name == *name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spans_of_a_hybrid_search_reach_an_otlp_receiver_in_one_trace() {
    let collector = Collector::default();
    let receiver = collector.clone().start().await;
    let config = TelemetryConfig {
        log_filter: "info".into(),
        otlp_endpoint: Some(format!("http://{receiver}")),
        ..TelemetryConfig::default()
    };
    let logs = braid_core::telemetry::CapturedLogs::default();
    let telemetry =
        braid_core::telemetry::init_with_writer("braid-tests", &config, logs.clone()).unwrap();

    let mut stack = Stack::start().await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    ingest_texts(
        &mut gw,
        &[
            "Magma rises through cracks and erupts as lava and ash.",
            "Sourdough starter, flour and water make a crusty loaf.",
        ],
    )
    .await;

    // 1. Batches go out on their own (no flush): the first search's whole trace arrives.
    let first: [u8; 16] = *uuid::Uuid::new_v4().as_bytes();
    let r = gw
        .search(traced_search("volcanic eruption", &first))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.degraded, "{r:?}");
    assert_eq!(
        r.hits.first().map(|h| h.external_id.as_str()),
        Some("doc-0")
    );
    let spans = eventually("the first search's spans", Duration::from_secs(60), || {
        let spans = collector.trace(&first);
        async move { complete(&spans).then_some(spans) }
    })
    .await
    .unwrap();

    let by_name = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name} in {spans:#?}"))
    };
    let gateway = by_name("braid.v1.Gateway/Search");
    // The gateway joined the caller's trace: its parent is the span in our traceparent.
    assert_eq!(gateway.parent_span_id, vec![7u8; 8], "{gateway:?}");
    for name in SEARCH_SPANS {
        let span = by_name(name);
        assert_eq!(span.service_name, "braid-tests", "{span:?}");
        assert_eq!(span.kind, SpanKind::Server as i32, "{span:?}");
        assert_eq!(span.span_id.len(), 8, "{span:?}");
        let (service, method) = name.split_once('/').unwrap();
        assert_eq!(
            span.attributes.get("rpc.system").map(String::as_str),
            Some("grpc")
        );
        assert_eq!(
            span.attributes.get("rpc.service").map(String::as_str),
            Some(service)
        );
        assert_eq!(
            span.attributes.get("rpc.method").map(String::as_str),
            Some(method)
        );
        if name != gateway.name {
            // Each leg's span is a child of the gateway's: the context crossed the hop.
            assert_eq!(span.parent_span_id, gateway.span_id, "{name}: {span:?}");
        }
    }

    // 2. Logs and traces share ids: without its text leg a search logs "search leg failed"
    //    inside the gateway's request; that JSON line names the caller's trace and the span id
    //    of one of the spans exported for it.
    stack.text.stop().await.unwrap();
    let third: [u8; 16] = *uuid::Uuid::new_v4().as_bytes();
    let r = gw
        .search(traced_search("volcanic eruption", &third))
        .await
        .unwrap()
        .into_inner();
    assert!(r.degraded, "{r:?}");
    let line = logs
        .json_lines()
        .expect("every log line is JSON")
        .into_iter()
        .find(|l| l["message"] == "search leg failed" && l["trace_id"] == hex::encode(third))
        .unwrap_or_else(|| panic!("no log line of the trace: {:#?}", logs.json_lines()));
    let span_id = line["span_id"].as_str().unwrap().to_string();
    eventually(
        "the logged span among the exported ones",
        Duration::from_secs(60),
        || {
            let found = collector
                .trace(&third)
                .iter()
                .any(|s| hex::encode(&s.span_id) == span_id);
            async move { found.then_some(()) }
        },
    )
    .await
    .unwrap();
    stack.restart_text().await.unwrap();
    eventually(
        "hybrid answers with both legs again",
        Duration::from_secs(60),
        || {
            let mut gw = gw.clone();
            async move {
                let r = gw
                    .search(SearchRequest {
                        bypass_cache: true,
                        ..traced_search("volcanic eruption", &[1; 16]).into_inner()
                    })
                    .await
                    .ok()?
                    .into_inner();
                (!r.degraded).then_some(())
            }
        },
    )
    .await
    .unwrap();

    // 3. Shutdown flushes: the second search's spans are all there once `shutdown` returns,
    //    without waiting for the next scheduled batch.
    let second: [u8; 16] = *uuid::Uuid::new_v4().as_bytes();
    gw.search(traced_search("bread flour water", &second))
        .await
        .unwrap();
    // Every server span of the search closed (and was queued) before its server sent the
    // response headers, so before this call returned.
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .unwrap();
    let spans = collector.trace(&second);
    assert!(complete(&spans), "after shutdown: {spans:#?}");
    assert!(*collector.requests.lock().unwrap() >= 2);

    // Span names stay a closed set, whatever a client sends.
    let names: std::collections::BTreeSet<String> = collector
        .spans
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.name.clone())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n == "unknown" || n.starts_with("braid.v1.") || n.starts_with("grpc.")),
        "{names:?}"
    );
    stack.shutdown().await.unwrap();
}
