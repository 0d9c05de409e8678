//! Structured logs and OpenTelemetry traces.
//!
//! Logs are JSON (or text) on stdout through `tracing-subscriber`; a JSON line written inside a
//! span starts with that span's `trace_id` and `span_id`, the ids its exported span has. When
//! an OTLP endpoint is configured (`telemetry.otlp_endpoint`, else the standard
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`; `OTEL_SERVICE_NAME`
//! renames the service, `OTEL_SDK_DISABLED=true` turns export off), spans are also exported over OTLP/gRPC, in batches from a bounded queue (spans
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

use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::FmtContext;
pub use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
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

/// Installs the global subscriber for `service`, logging to stdout. Safe to call more than
/// once (later calls keep the first subscriber).
pub fn init(service: &'static str, config: &TelemetryConfig) -> anyhow::Result<Telemetry> {
    init_with_writer(service, config, std::io::stdout)
}

/// [`init`] with the log lines going to `writer` (tests read them back).
pub fn init_with_writer<W>(
    service: &'static str,
    config: &TelemetryConfig,
    writer: W,
) -> anyhow::Result<Telemetry>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let env = OtelEnv::read(|k| std::env::var(k).ok());
    let mut resource = opentelemetry_sdk::Resource::builder();
    if env.service_name.is_none() {
        // OTEL_SERVICE_NAME, when set, names the service (the SDK's resource detector reads it).
        resource = resource.with_service_name(service);
    }
    let mut builder = SdkTracerProvider::builder().with_resource(resource.build());
    let exporting = match env.endpoint(config) {
        Some(endpoint) => {
            use opentelemetry_otlp::WithExportConfig;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()?;
            let batches = BatchSpanProcessor::builder(exporter)
                .with_batch_config(
                    BatchConfigBuilder::default()
                        .with_max_queue_size(EXPORT_QUEUE)
                        .with_max_export_batch_size(EXPORT_BATCH)
                        .with_scheduled_delay(EXPORT_DELAY)
                        .build(),
                )
                .build();
            builder = builder.with_span_processor(batches);
            true
        }
        None => false,
    };
    // Always a tracer, exporting or not: every span gets trace and span ids (joined to the
    // caller's `traceparent` when there is one), which the JSON log lines carry.
    let provider = builder.build();
    if let Err(e) = subscriber(service, config, writer, &provider)?.try_init() {
        tracing::debug!(error = %e, "tracing subscriber already installed");
    }
    Ok(Telemetry {
        provider: exporting.then_some(provider),
    })
}

/// Logs (filtered by `config.log_filter`, in `config.log_format`) to `writer`, spans to
/// `provider`'s tracer.
fn subscriber<W>(
    service: &'static str,
    config: &TelemetryConfig,
    writer: W,
    provider: &SdkTracerProvider,
) -> anyhow::Result<Box<dyn Subscriber + Send + Sync>>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(&config.log_filter)?;
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer(service));
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    Ok(match config.log_format {
        LogFormat::Json => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .event_format(WithTraceIds(
                        tracing_subscriber::fmt::format()
                            .json()
                            .flatten_event(true)
                            .with_current_span(true),
                    ))
                    .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                    .with_writer(writer),
            ),
        ),
        LogFormat::Text => {
            Box::new(registry.with(tracing_subscriber::fmt::layer().with_writer(writer)))
        }
    })
}

/// The standard OpenTelemetry variables Braid honours (the config's `otlp_endpoint` wins).
#[derive(Debug, Default, PartialEq, Eq)]
struct OtelEnv {
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else `OTEL_EXPORTER_OTLP_ENDPOINT`.
    endpoint: Option<String>,
    /// `OTEL_SERVICE_NAME`.
    service_name: Option<String>,
    /// `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`: no export at all.
    disabled: bool,
}

impl OtelEnv {
    fn read(get: impl Fn(&str) -> Option<String>) -> Self {
        let set = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Self {
            endpoint: set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT")),
            service_name: set("OTEL_SERVICE_NAME"),
            disabled: set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
                || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none")),
        }
    }

    fn endpoint(&self, config: &TelemetryConfig) -> Option<String> {
        if self.disabled {
            return None;
        }
        config
            .otlp_endpoint
            .clone()
            .or_else(|| self.endpoint.clone())
    }
}

/// A JSON event format that puts the current span's `trace_id` and `span_id` (W3C hex, as in
/// `traceparent` and in the exported spans) first in every log line written inside a span.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let ids = ctx.lookup_current().and_then(|span| {
            let extensions = span.extensions();
            let data = extensions.get::<tracing_opentelemetry::OtelData>()?;
            Some((data.trace_id()?, data.span_id()?))
        });
        let Some((trace, span)) = ids.filter(|(t, _)| *t != opentelemetry::TraceId::INVALID) else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => {
                let comma = if rest.starts_with('}') { "" } else { "," };
                write!(
                    writer,
                    "{{\"trace_id\":\"{trace}\",\"span_id\":\"{span}\"{comma}{rest}"
                )
            }
            None => writer.write_str(&line),
        }
    }
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

/// Log lines kept in memory: a writer for [`init_with_writer`] whose lines a test reads back.
#[derive(Clone, Default)]
pub struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// Every line written so far, parsed as JSON (the `json` log format); an error names the
    /// first line that is not JSON.
    pub fn json_lines(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let bytes = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|l| serde_json::from_str(l).map_err(|e| anyhow::anyhow!("{e}: {l}")))
            .collect()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'w> MakeWriter<'w> for CapturedLogs {
    type Writer = CapturedLogs;

    fn make_writer(&'w self) -> CapturedLogs {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SimpleSpanProcessor};

    #[test]
    fn standard_otel_variables_fill_what_the_config_leaves_unset() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            OtelEnv::read(|k| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            })
        };
        let none = TelemetryConfig::default();
        let configured = TelemetryConfig {
            otlp_endpoint: Some("http://configured:4317".into()),
            ..TelemetryConfig::default()
        };
        assert_eq!(env(&[]).endpoint(&none), None);
        let general = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")]);
        assert_eq!(
            general.endpoint(&none).as_deref(),
            Some("http://collector:4317")
        );
        assert_eq!(
            general.endpoint(&configured).as_deref(),
            Some("http://configured:4317")
        );
        let traces = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317"),
            ("OTEL_SERVICE_NAME", " braid-gw-eu "),
        ]);
        assert_eq!(
            traces.endpoint(&none).as_deref(),
            Some("http://traces:4317")
        );
        assert_eq!(traces.service_name.as_deref(), Some("braid-gw-eu"));
        for off in [
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            let pairs: &'static [(&str, &str)] = Box::leak(Box::new([
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
                off,
            ]));
            assert_eq!(env(pairs).endpoint(&configured), None, "{off:?}");
        }
        assert_eq!(
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "  ")]).endpoint(&none),
            None
        );
    }

    #[test]
    fn a_log_line_inside_a_request_carries_the_ids_of_its_exported_span() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(SimpleSpanProcessor::new(exporter.clone()))
            .build();
        let lines = CapturedLogs::default();
        let config = TelemetryConfig::default();
        let subscriber = subscriber("braid-test", &config, lines.clone(), &provider).unwrap();
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let request = http::Request::builder()
            .uri("/braid.v1.Gateway/Search")
            .header(
                "traceparent",
                format!("00-{caller_trace}-00f067aa0ba902b7-01"),
            )
            .body(())
            .unwrap();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside any request");
            let span = server_span(&request);
            let _entered = span.enter();
            tracing::warn!(leg = "text", "search leg failed");
            let inner = tracing::info_span!("fuse");
            inner.in_scope(|| tracing::info!(hits = 3, "fused"));
        });
        provider.force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        let id_of = |name: &str| {
            let s = spans.iter().find(|s| s.name == name).unwrap();
            (
                s.span_context.trace_id().to_string(),
                s.span_context.span_id().to_string(),
            )
        };
        let (request_trace, request_span) = id_of("braid.v1.Gateway/Search");
        let (fuse_trace, fuse_span) = id_of("fuse");
        assert_eq!(request_trace, caller_trace);
        assert_eq!(fuse_trace, caller_trace);

        let logs = lines.json_lines().unwrap();
        assert_eq!(logs.len(), 3, "{logs:?}");
        assert_eq!(logs[0]["message"], "outside any request");
        assert!(logs[0].get("trace_id").is_none(), "{:?}", logs[0]);
        assert_eq!(logs[1]["message"], "search leg failed");
        assert_eq!(logs[1]["leg"], "text");
        assert_eq!(logs[1]["trace_id"], caller_trace.to_string());
        assert_eq!(logs[1]["span_id"], request_span);
        assert_eq!(logs[2]["message"], "fused");
        assert_eq!(logs[2]["trace_id"], caller_trace.to_string());
        assert_eq!(logs[2]["span_id"], fuse_span);
    }

    #[test]
    fn without_a_caller_trace_every_request_gets_its_own_trace_id() {
        let provider = SdkTracerProvider::builder().build();
        let lines = CapturedLogs::default();
        let subscriber = subscriber(
            "braid-test",
            &TelemetryConfig::default(),
            lines.clone(),
            &provider,
        )
        .unwrap();
        let request = http::Request::builder()
            .uri("/braid.v1.Gateway/Search")
            .body(())
            .unwrap();
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..2 {
                let span = server_span(&request);
                span.in_scope(|| tracing::info!("answered"));
            }
        });
        let logs = lines.json_lines().unwrap();
        let ids: Vec<&str> = logs
            .iter()
            .map(|l| l["trace_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1]);
        assert!(
            ids.iter().all(|id| id.len() == 32 && *id != "0".repeat(32)),
            "{ids:?}"
        );
    }
}
