//! Structured logs and OpenTelemetry traces.
//!
//! Logs are JSON (or text) on stdout through `tracing-subscriber`. When an OTLP endpoint is
//! configured, spans are also exported over OTLP/gRPC, in batches from a bounded queue (spans
//! beyond it are dropped and counted by the SDK, never block a request); [`Telemetry::shutdown`]
//! flushes what is queued. The W3C trace-context propagator is always installed, so
//! `traceparent` flows across every gRPC hop even when this process does not export (a
//! downstream that does will still join the trace).
//!
//! The subscriber is process-global: a process running several services (the end-to-end tests)
//! installs it once, and every service's spans go through it.

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, TelemetryConfig};

/// Spans waiting for export at most; more are dropped (counted by the SDK, logged at shutdown).
const EXPORT_QUEUE: usize = 2048;
/// Spans per OTLP export request.
const EXPORT_BATCH: usize = 512;
/// How long a span waits at most before its batch is sent.
const EXPORT_DELAY: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps the trace exporter alive; call [`Telemetry::shutdown`] to flush before exit.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Installs the global subscriber for `service`. Safe to call more than once (later calls
/// keep the first subscriber).
pub fn init(service: &'static str, config: &TelemetryConfig) -> anyhow::Result<Telemetry> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_new(&config.log_filter)?;
    let provider = match &config.otlp_endpoint {
        Some(endpoint) => {
            use opentelemetry_otlp::WithExportConfig;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .build()?;
            let resource = opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build();
            let batches = BatchSpanProcessor::builder(exporter)
                .with_batch_config(
                    BatchConfigBuilder::default()
                        .with_max_queue_size(EXPORT_QUEUE)
                        .with_max_export_batch_size(EXPORT_BATCH)
                        .with_scheduled_delay(EXPORT_DELAY)
                        .build(),
                )
                .build();
            Some(
                SdkTracerProvider::builder()
                    .with_span_processor(batches)
                    .with_resource(resource)
                    .build(),
            )
        }
        None => None,
    };
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service)));
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let result = match config.log_format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .try_init(),
        LogFormat::Text => registry.with(tracing_subscriber::fmt::layer()).try_init(),
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "tracing subscriber already installed");
    }
    Ok(Telemetry { provider })
}

impl Telemetry {
    /// Flushes pending spans (blocks until the export ends; call it off the async runtime's
    /// worker threads, e.g. after `block_on` or in `spawn_blocking`).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            eprintln!("trace exporter shutdown failed: {e}");
        }
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::header::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Writes the current span's trace context into outgoing request headers.
pub fn inject_context(headers: &mut http::HeaderMap) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeaderInjector(headers))
    });
}

/// The server-side span of one gRPC request, parented on the caller's trace context. Named
/// `package.Service/Method` with the OpenTelemetry RPC attributes; a path that names no known
/// method is `unknown` (span names stay a closed set, like metric labels).
pub fn server_span(request: &http::Request<()>) -> tracing::Span {
    let parent = opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&HeaderExtractor(request.headers()))
    });
    let (service, method) = crate::resilience::grpc_method(request.uri().path());
    let name = if service == crate::resilience::UNKNOWN_METHOD {
        service.to_string()
    } else {
        format!("{service}/{method}")
    };
    let span = tracing::info_span!(
        "grpc.request",
        otel.name = %name,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
    );
    let _ = span.set_parent(parent);
    span
}
