//! Typed configuration from an injectable source: an optional TOML file overlaid with
//! `BRAID_<SERVICE>__<FIELD>[__<SUBFIELD>]` variables taken from a map the caller passes in
//! (the process environment in `main`, a literal map in tests). Unknown keys are errors; every
//! semantic problem is reported at once.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Every problem found while loading a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub errors: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}", self.errors.join("; "))
    }
}

impl std::error::Error for ConfigError {}

/// Semantic checks run after parsing; push one message per problem.
pub trait Validate {
    fn validate(&self, errors: &mut Vec<String>);
}

/// Environment prefix of a service, e.g. `BRAID_VECTOR_SEARCH__` for `vector-search`.
pub fn env_prefix(service: &str) -> String {
    format!("BRAID_{}__", service.to_uppercase().replace('-', "_"))
}

/// Loads `T`: its defaults, overlaid with `file` (if any), overlaid with the
/// `BRAID_<SERVICE>__*` entries of `env`.
pub fn load<T>(
    service: &str,
    file: Option<&Path>,
    env: &HashMap<String, String>,
) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default + Validate,
{
    let one = |e: String| ConfigError { errors: vec![e] };
    let mut table = toml::Table::try_from(T::default())
        .map_err(|e| one(format!("serialising defaults: {e}")))?;
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| one(format!("cannot read {}: {e}", path.display())))?;
        let overlay = toml::from_str::<toml::Table>(&text)
            .map_err(|e| one(format!("{}: {e}", path.display())))?;
        merge(&mut table, overlay);
    }
    let prefix = env_prefix(service);
    let mut keys: Vec<&String> = env.keys().filter(|k| k.starts_with(&prefix)).collect();
    keys.sort();
    let mut errors = Vec::new();
    for key in keys {
        let path: Vec<String> = key[prefix.len()..]
            .split("__")
            .map(str::to_lowercase)
            .collect();
        if let Err(e) = insert(&mut table, &path, parse_env_value(&env[key])) {
            errors.push(format!("{key}: {e}"));
        }
    }
    if !errors.is_empty() {
        return Err(ConfigError { errors });
    }
    // Round-trip through TOML text so errors point at the offending key.
    let text = toml::to_string(&table).map_err(|e| one(format!("serialising config: {e}")))?;
    let config: T = toml::from_str(&text).map_err(|e| {
        one(e
            .to_string()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && *l != "|")
            .collect::<Vec<_>>()
            .join(" "))
    })?;
    config.validate(&mut errors);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError { errors })
    }
}

/// An environment value is read as a TOML scalar or array when it parses as one
/// (`42`, `true`, `1.5`, `["a", "b"]`, `"quoted"`), and as a plain string otherwise.
fn parse_env_value(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// Deep-merges `overlay` into `base` (tables merge, everything else replaces).
fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn insert(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    match path {
        [] => Err("empty key".into()),
        [last] if last.is_empty() => Err("empty key segment".into()),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(inner) => insert(inner, rest, value),
                _ => Err(format!("`{first}` is not a section")),
            }
        }
    }
}

/// Listening addresses and server-side limits shared by every service.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the gRPC server.
    pub grpc_addr: SocketAddr,
    /// Address of the admin HTTP server (`/metrics`, `/healthz`, `/livez`).
    pub admin_addr: SocketAddr,
    /// Deadline for any single request handled by this server.
    pub request_timeout_ms: u64,
    /// Requests running at once across all connections; beyond it requests wait in the
    /// admission queue.
    pub concurrency_limit: usize,
    /// Requests that may wait for a slot (in arrival order); beyond it, or when a waiting
    /// request's deadline passes, requests are shed with RESOURCE_EXHAUSTED. 0: no queue.
    pub queue_limit: usize,
    /// How long in-flight requests may take to finish after shutdown starts.
    pub shutdown_grace_ms: u64,
    /// Largest gRPC message this server accepts or sends, in bytes.
    pub max_message_bytes: usize,
    /// How often hard dependencies are probed for the health status.
    pub health_probe_interval_ms: u64,
    /// A client connection older than this is asked to go away (HTTP/2 GOAWAY; requests in
    /// flight finish), so long-lived callers reconnect and spread over replicas added since,
    /// even through a plain L4 Service. 0: connections live as long as the client wants.
    pub max_connection_age_ms: u64,
    /// How long an aged connection may still finish its requests before it is closed; unset:
    /// a day, so a long stream (an `IngestStream` of a whole corpus, a health `Watch`) ends on
    /// its own terms while new calls already go to a new connection (unary calls end at
    /// `request_timeout_ms` anyway).
    pub max_connection_age_grace_ms: Option<u64>,
    /// Serve gRPC over TLS (certificate and key re-read on change; with `client_ca_file`,
    /// mutual TLS). Unset: plaintext (e.g. behind a mesh that encrypts). See `crate::tls`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::ServerTlsConfig>,
}

/// `server.max_connection_age_grace_ms` unset: streams on an aged connection may run this long.
/// (The request timeout, the old default, cut every stream longer than the connection age plus
/// 30 s: a 5,000-document `IngestStream` failed with "transport error" after ~5.5 minutes.)
pub const UNSET_CONNECTION_AGE_GRACE: Duration = Duration::from_secs(24 * 3600);

impl ServerConfig {
    pub fn with_ports(grpc: u16, admin: u16) -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], grpc)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], admin)),
            request_timeout_ms: 30_000,
            concurrency_limit: 256,
            queue_limit: 4096,
            shutdown_grace_ms: 10_000,
            max_message_bytes: 16 * 1024 * 1024,
            health_probe_interval_ms: 2_000,
            max_connection_age_ms: 300_000,
            max_connection_age_grace_ms: None,
            tls: None,
        }
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    pub fn health_probe_interval(&self) -> Duration {
        Duration::from_millis(self.health_probe_interval_ms)
    }

    /// The maximum connection age and its grace period; `None` when connections never age.
    pub fn max_connection_age(&self) -> Option<(Duration, Duration)> {
        (self.max_connection_age_ms > 0).then(|| {
            (
                Duration::from_millis(self.max_connection_age_ms),
                self.max_connection_age_grace_ms
                    .map_or(UNSET_CONNECTION_AGE_GRACE, Duration::from_millis),
            )
        })
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self::with_ports(0, 0)
    }
}

impl Validate for ServerConfig {
    fn validate(&self, errors: &mut Vec<String>) {
        positive(errors, "server.request_timeout_ms", self.request_timeout_ms);
        positive(
            errors,
            "server.concurrency_limit",
            self.concurrency_limit as u64,
        );
        positive(
            errors,
            "server.max_message_bytes",
            self.max_message_bytes as u64,
        );
        positive(
            errors,
            "server.health_probe_interval_ms",
            self.health_probe_interval_ms,
        );
        if let Some(tls) = &self.tls {
            tls.validate(errors);
        }
    }
}

/// Logs and traces.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `tracing` filter directive, e.g. `info` or `braid_gateway=debug,info`.
    pub log_filter: String,
    /// `json` (default) or `text`.
    pub log_format: LogFormat,
    /// OTLP/gRPC collector endpoint, e.g. `http://127.0.0.1:4317`. Unset: the standard
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`; neither: no
    /// export (logs still carry trace ids). `OTEL_SERVICE_NAME` renames the service in traces,
    /// `OTEL_SDK_DISABLED=true` turns export off.
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_filter: "info".into(),
            log_format: LogFormat::Json,
            otlp_endpoint: None,
        }
    }
}

impl Validate for TelemetryConfig {
    fn validate(&self, errors: &mut Vec<String>) {
        if let Some(ep) = &self.otlp_endpoint
            && !(ep.starts_with("http://") || ep.starts_with("https://"))
        {
            errors.push(format!(
                "telemetry.otlp_endpoint must start with http:// or https://, got `{ep}`"
            ));
        }
    }
}

/// How to reach a downstream Braid service, and how its replicas are balanced
/// (see `balance`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    /// `http://host:port`, or several such URLs separated by commas. A host that is a name
    /// (e.g. a headless Kubernetes Service) stands for every address it resolves to; each
    /// call goes to one ready address.
    pub endpoint: String,
    /// Deadline for opening a connection.
    pub connect_timeout_ms: u64,
    /// Deadline of each call unless the caller sets a tighter one.
    pub timeout_ms: u64,
    /// How often names in `endpoint` are resolved again (replicas added or removed are seen
    /// within this); an endpoint that fails also triggers a resolution (at most once a second).
    pub resolve_interval_ms: u64,
    /// First wait before a failed endpoint is health-checked; doubles up to
    /// `probe_backoff_max_ms` until it answers SERVING and rejoins the rotation.
    pub probe_backoff_ms: u64,
    /// Longest wait between two health checks of a failed endpoint.
    pub probe_backoff_max_ms: u64,
    /// TLS to this downstream (`https://` endpoints only): the CA trusted, a client
    /// certificate for mutual TLS, the name verified. An `https://` endpoint without it
    /// trusts the Mozilla roots and presents no certificate. See `crate::tls`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::ClientTlsConfig>,
}

impl ClientConfig {
    pub fn new(endpoint: impl Into<String>, timeout_ms: u64) -> Self {
        Self {
            endpoint: endpoint.into(),
            connect_timeout_ms: 2_000,
            timeout_ms,
            resolve_interval_ms: 10_000,
            probe_backoff_ms: 100,
            probe_backoff_max_ms: 5_000,
            tls: None,
        }
    }

    /// The same downstream over TLS as `tls` says (every `http://` becomes `https://`).
    pub fn with_tls(mut self, tls: crate::tls::ClientTlsConfig) -> Self {
        self.endpoint = self.endpoint.replace("http://", "https://");
        self.tls = Some(tls);
        self
    }

    pub fn validate(&self, name: &str, errors: &mut Vec<String>) {
        if let Err(e) = crate::balance::check_endpoint(&self.endpoint) {
            errors.push(format!("{name}.endpoint: {e}"));
        }
        if let Some(tls) = &self.tls {
            if self
                .endpoint
                .split(',')
                .any(|e| !e.trim().starts_with("https://"))
            {
                errors.push(format!(
                    "{name}.tls is set: every URL of {name}.endpoint must start with https://"
                ));
            }
            tls.validate(name, errors);
        }
        positive(errors, &format!("{name}.timeout_ms"), self.timeout_ms);
        positive(
            errors,
            &format!("{name}.connect_timeout_ms"),
            self.connect_timeout_ms,
        );
        positive(
            errors,
            &format!("{name}.resolve_interval_ms"),
            self.resolve_interval_ms,
        );
        positive(
            errors,
            &format!("{name}.probe_backoff_ms"),
            self.probe_backoff_ms,
        );
        if self.probe_backoff_max_ms < self.probe_backoff_ms {
            errors.push(format!(
                "{name}.probe_backoff_max_ms ({}) must be at least {name}.probe_backoff_ms ({})",
                self.probe_backoff_max_ms, self.probe_backoff_ms
            ));
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self::new("http://127.0.0.1:0", 10_000)
    }
}

pub use crate::db::DatabaseConfig;

/// Circuit breaker of a downstream client (see `resilience::CircuitBreaker`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long it stays open before letting trial calls through.
    pub open_ms: u64,
    /// Successful trial calls that close it again.
    pub success_threshold: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        let d = crate::resilience::BreakerConfig::default();
        Self {
            failure_threshold: d.failure_threshold,
            open_ms: d.open_for.as_millis() as u64,
            success_threshold: d.success_threshold,
        }
    }
}

impl BreakerSettings {
    pub fn to_config(&self) -> crate::resilience::BreakerConfig {
        crate::resilience::BreakerConfig {
            failure_threshold: self.failure_threshold,
            open_for: Duration::from_millis(self.open_ms),
            success_threshold: self.success_threshold,
        }
    }

    pub fn validate(&self, errors: &mut Vec<String>) {
        positive(
            errors,
            "breaker.failure_threshold",
            self.failure_threshold as u64,
        );
        positive(
            errors,
            "breaker.success_threshold",
            self.success_threshold as u64,
        );
    }
}

/// Pushes an error when a numeric setting is zero.
pub fn positive(errors: &mut Vec<String>, name: &str, value: u64) {
    if value == 0 {
        errors.push(format!("{name} must be greater than 0"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, default)]
    struct Sample {
        server: ServerConfig,
        name: String,
        limit: u32,
    }

    impl Default for Sample {
        fn default() -> Self {
            Self {
                server: ServerConfig::with_ports(1, 2),
                name: "x".into(),
                limit: 5,
            }
        }
    }

    impl Validate for Sample {
        fn validate(&self, errors: &mut Vec<String>) {
            self.server.validate(errors);
            if self.limit > 100 {
                errors.push("limit must be at most 100".into());
            }
        }
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_overrides_nested_fields_and_ignores_other_services() {
        let cfg: Sample = load(
            "my-svc",
            None,
            &env(&[
                ("BRAID_MY_SVC__NAME", "hello"),
                ("BRAID_MY_SVC__SERVER__GRPC_ADDR", "0.0.0.0:7000"),
                ("BRAID_OTHER__NAME", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.name, "hello");
        assert_eq!(cfg.server.grpc_addr.port(), 7000);
        assert_eq!(cfg.server.admin_addr.port(), 2);
        assert_eq!(cfg.limit, 5);
    }

    #[test]
    fn file_then_env() {
        let dir = std::env::temp_dir().join(format!("braid-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "name = \"file\"\nlimit = 7\n").unwrap();
        let cfg: Sample =
            load("my-svc", Some(&path), &env(&[("BRAID_MY_SVC__LIMIT", "9")])).unwrap();
        assert_eq!(cfg.name, "file");
        assert_eq!(cfg.limit, 9);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = load::<Sample>("my-svc", None, &env(&[("BRAID_MY_SVC__NAEM", "x")])).unwrap_err();
        assert!(err.to_string().contains("naem"), "{err}");
        let err = load::<Sample>("my-svc", None, &env(&[("BRAID_MY_SVC__SERVER__PORT", "1")]))
            .unwrap_err();
        assert!(err.to_string().contains("port"), "{err}");
    }

    #[test]
    fn all_semantic_errors_reported_together() {
        let err = load::<Sample>(
            "my-svc",
            None,
            &env(&[
                ("BRAID_MY_SVC__LIMIT", "500"),
                ("BRAID_MY_SVC__SERVER__CONCURRENCY_LIMIT", "0"),
            ]),
        )
        .unwrap_err();
        assert_eq!(err.errors.len(), 2, "{err}");
    }

    #[test]
    fn client_endpoints_are_lists_of_urls() {
        let mut errors = Vec::new();
        ClientConfig::new("http://braid-embedding:50053, http://10.0.0.7:50053", 10)
            .validate("embedding", &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        ClientConfig {
            probe_backoff_max_ms: 1,
            ..ClientConfig::new("http://a:1,braid-embedding:50053", 10)
        }
        .validate("embedding", &mut errors);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("embedding.endpoint: `braid-embedding:50053`"),
            "{errors:?}"
        );
        assert!(errors[1].contains("probe_backoff_max_ms"), "{errors:?}");
    }

    #[test]
    fn wrong_type_is_an_error() {
        let err =
            load::<Sample>("my-svc", None, &env(&[("BRAID_MY_SVC__LIMIT", "many")])).unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
    }
}
