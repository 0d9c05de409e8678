//! Test harness: starts all five Braid services in-process, each through its real `run`, on
//! ephemeral ports, against a fresh PostgreSQL database (created from
//! `BRAID_TEST_DATABASE_URL`, dropped afterwards), a temporary Tantivy directory and the real
//! all-MiniLM-L6-v2 model from `BRAID_TEST_MODEL_DIR`. `make test` provides both.
//!
//! Internal auth is on: every service gets the same per-process service key
//! ([`internal_key`]), so every test exercises service credentials; [`service_channel`] and
//! the `Stack::*_client` helpers carry a valid one. The gateway's user auth is off unless a
//! test opts in with [`StackOptions::with_jwt`], or with [`Users::stack_options`], which also
//! signs a token per subject, tenant and role.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use braid_core::auth::internal::{InternalAuth, InternalAuthConfig, WithServiceToken};
use braid_core::auth::jwt::AuthConfig;
use braid_core::auth::secret::KeySource;
use braid_core::config::ClientConfig;
use braid_core::server::Listeners;
use braid_core::tls::{ClientTls, ClientTlsConfig, ServerTlsConfig, TlsConnector};
use braid_proto::tonic::transport::{Channel, Endpoint};
use braid_proto::v1::embedding_service_client::EmbeddingServiceClient;
use braid_proto::v1::gateway_client::GatewayClient;
use braid_proto::v1::ingest_service_client::IngestServiceClient;
use braid_proto::v1::text_search_service_client::TextSearchServiceClient;
use braid_proto::v1::vector_search_service_client::VectorSearchServiceClient;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tower::Layer;

pub use braid_proto::v1;

pub mod certs;
#[cfg(test)]
mod config_reference;
mod documents;
#[cfg(feature = "elasticsearch")]
pub mod opensearch;
pub mod pg_topology;
mod process;
pub mod replicas;
mod servers;
pub mod tenant_corpus;
pub mod users;

pub use documents::{DocumentInputExt, Ingest, acl, doc, ingest_ready, ingest_texts, titled};
pub use process::Process;
pub use servers::{HungServer, RedisServer, SlowProxy};
pub use users::{Users, as_user};

/// The internal service key every test service shares (random per test process).
pub fn internal_key() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| format!("test-internal-{}", uuid::Uuid::new_v4().simple()))
}

/// Internal auth configured with [`internal_key`].
pub fn internal_auth() -> InternalAuthConfig {
    InternalAuthConfig::with_key(KeySource::from_value(internal_key()))
}

/// A channel to an internal service carrying a valid service credential (subject `test`).
pub type ServiceChannel = WithServiceToken<Channel>;

/// A lazily connecting channel to `service` that authenticates as service `test`.
pub fn service_channel(service: &Service) -> ServiceChannel {
    let channel = service.channel();
    let token = InternalAuth::from_key(internal_key().as_bytes(), "test").token_source();
    tower_layer(token).layer(channel)
}

fn tower_layer(
    token: braid_core::auth::internal::ServiceToken,
) -> braid_core::auth::internal::ServiceTokenLayer {
    braid_core::auth::internal::ServiceTokenLayer::new(token)
}

/// Fills the harness key into an internal-auth config a test left at its default.
fn with_internal_key(config: &mut InternalAuthConfig) {
    if *config == InternalAuthConfig::default() {
        *config = internal_auth();
    }
}

pub(crate) fn admin_url() -> String {
    braid_core::db::ScratchDatabase::admin_url()
}

/// The ONNX Runtime library the set-up script unpacked (`BRAID_TEST_ONNX_RUNTIME` overrides).
pub fn onnx_runtime() -> PathBuf {
    match std::env::var_os("BRAID_TEST_ONNX_RUNTIME") {
        Some(lib) => PathBuf::from(lib),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.braid/lib/libonnxruntime.so"),
    }
}

pub fn model_dir() -> PathBuf {
    match std::env::var_os("BRAID_TEST_MODEL_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.braid/models/all-MiniLM-L6-v2"),
    }
}

/// A database of its own for one test (`braid_core::db::ScratchDatabase`).
pub struct TestDb {
    pub url: String,
    pub name: String,
    scratch: braid_core::db::ScratchDatabase,
}

impl TestDb {
    pub async fn create() -> anyhow::Result<Self> {
        Self::create_on(&admin_url()).await
    }

    /// A database on the cluster whose admin URL (database `postgres`) is `admin`.
    pub async fn create_on(admin: &str) -> anyhow::Result<Self> {
        let scratch = braid_core::db::ScratchDatabase::create_on(admin, "braid_test")
            .await
            .with_context(|| {
                format!("cannot create a test database at {admin}: run the tests through `make test`, which starts PostgreSQL")
            })?;
        Ok(Self {
            url: scratch.config.url.clone(),
            name: scratch.name.clone(),
            scratch,
        })
    }

    /// Drops the database (tests that assemble services themselves; `Stack::shutdown` does
    /// it for a stack).
    pub async fn drop_db(&self) {
        let _ = self.scratch.remove().await;
    }
}

/// One running service.
/// The embedding service alone, in-process on ephemeral ports, with `configure` applied to
/// the test defaults (real model).
pub async fn start_embedding(
    configure: impl FnOnce(&mut braid_embedding::EmbeddingConfig),
) -> anyhow::Result<Service> {
    let mut cfg = braid_embedding::EmbeddingConfig::default();
    cfg.model.dir = model_dir();
    cfg.model.onnx_runtime = onnx_runtime();
    cfg.server.health_probe_interval_ms = 100;
    cfg.server.shutdown_grace_ms = 2_000;
    cfg.internal_auth = internal_auth();
    configure(&mut cfg);
    let service = Service::spawn("embedding", Listeners::ephemeral().await?, |l, s| {
        braid_embedding::run(cfg, l, s)
    })?;
    service
        .wait_serving(braid_proto::service_names::EMBEDDING)
        .await?;
    Ok(service)
}

pub struct Service {
    pub name: &'static str,
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    /// How the test reaches it when it serves TLS.
    tls: Option<Arc<ClientTls>>,
}

impl Service {
    /// Starts the service again on the same gRPC port (after [`Service::stop`]).
    pub async fn restart<F, Fut>(&mut self, run: F) -> anyhow::Result<()>
    where
        F: FnOnce(Listeners, std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        anyhow::ensure!(self.task.is_none(), "{} is still running", self.name);
        let listeners = Listeners {
            grpc: tokio::net::TcpListener::bind(self.grpc).await?,
            admin: tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        };
        let tls = self.tls.take();
        *self = Self::spawn(self.name, listeners, run)?.with_tls(tls);
        Ok(())
    }

    pub fn spawn<F, Fut>(name: &'static str, listeners: Listeners, run: F) -> anyhow::Result<Self>
    where
        F: FnOnce(Listeners, std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let grpc = listeners.grpc_addr()?;
        let admin = listeners.admin_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = Box::pin(async move {
            let _ = rx.await;
        });
        let task = tokio::spawn(run(listeners, shutdown));
        Ok(Self {
            name,
            grpc,
            admin,
            stop: Some(tx),
            task: Some(task),
            tls: None,
        })
    }

    /// The service serves TLS: the test reaches it with `tls` (`https://` endpoint).
    pub fn with_tls(mut self, tls: Option<Arc<ClientTls>>) -> Self {
        self.tls = tls;
        self
    }

    pub fn endpoint(&self) -> String {
        match self.tls {
            Some(_) => format!("https://{}", self.grpc),
            None => format!("http://{}", self.grpc),
        }
    }

    /// A lazily connecting channel to the service (over TLS when it serves TLS).
    pub fn channel(&self) -> Channel {
        let endpoint = Endpoint::from_shared(self.endpoint()).expect("valid endpoint");
        match &self.tls {
            Some(tls) => TlsConnector::channel(tls.clone(), endpoint)
                .expect("an IP address is a valid server name"),
            None => endpoint.connect_lazy(),
        }
    }

    /// Graceful shutdown; returns the service's own result.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .context("service did not stop within 30 s")??,
            None => Ok(()),
        }
    }

    pub async fn health(&self, service: &str) -> Option<ServingStatus> {
        let response = HealthClient::new(self.channel())
            .check(HealthCheckRequest {
                service: service.to_string(),
            })
            .await
            .ok()?;
        ServingStatus::try_from(response.into_inner().status).ok()
    }

    /// Waits until the service reports SERVING for `service`.
    pub async fn wait_serving(&self, service: &str) -> anyhow::Result<()> {
        eventually(
            &format!("{} SERVING", self.name),
            Duration::from_secs(60),
            || async { (self.health(service).await == Some(ServingStatus::Serving)).then_some(()) },
        )
        .await
    }
}

/// A free TCP port on 127.0.0.1 (for a server a test starts itself).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port` (`what` names it).
pub async fn accepting(what: &str, port: u16, patience: Duration) -> anyhow::Result<()> {
    eventually(
        &format!("{what} accepting connections"),
        patience,
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await
}

/// Polls `check` every 50 ms until it returns Some, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Knobs tests may turn before the stack starts.
pub struct StackOptions {
    pub ingest: braid_ingest::IngestConfig,
    pub gateway: braid_gateway::GatewayConfig,
    /// Model directory and runtime library are filled in by the harness.
    pub embedding: braid_embedding::EmbeddingConfig,
    pub vector_internal_auth: InternalAuthConfig,
    pub text_internal_auth: InternalAuthConfig,
    /// Where the database is and how services reach it (default: the shared PostgreSQL).
    pub topology: pg_topology::Topology,
    /// The text leg on this Elasticsearch-compatible engine instead of a temporary Tantivy
    /// index (needs the `elasticsearch` feature; see `opensearch`).
    pub text_engine: Option<braid_text_search::ElasticsearchConfig>,
    /// TLS on every gRPC server and Braid client of the stack (plaintext when unset).
    pub tls: Option<StackTls>,
}

/// TLS for a whole stack, from one test CA: every service serves a certificate for
/// `localhost` and `127.0.0.1` (the gateway its own, `gateway.pem`/`gateway.key` in the
/// CA's directory, so a test can replace it); every Braid client trusts the CA and presents
/// the services' certificate; the test's own clients ([`Service::channel`]) do the same.
#[derive(Clone)]
pub struct StackTls {
    pub pki: Arc<certs::Pki>,
    /// The internal services require a client certificate the CA signed (mutual TLS).
    pub mutual: bool,
    /// How often servers re-read their certificate files.
    pub reload_ms: u64,
}

impl StackTls {
    pub fn new(mutual: bool) -> anyhow::Result<Self> {
        Ok(Self {
            pki: Arc::new(certs::Pki::new("braid test CA")?),
            mutual,
            reload_ms: 50,
        })
    }

    /// What a Braid client of this stack trusts and presents.
    pub fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::trusting(self.pki.ca_file()).with_identity(
            self.pki.dir().join("services.pem"),
            self.pki.dir().join("services.key"),
        )
    }

    fn issue(&self) -> anyhow::Result<()> {
        self.pki.issue("services", &["localhost", "127.0.0.1"])?;
        self.pki.issue("gateway", &["localhost", "127.0.0.1"])?;
        Ok(())
    }

    /// `server.tls` of an internal service.
    fn internal(&self) -> ServerTlsConfig {
        ServerTlsConfig {
            cert_file: self.pki.dir().join("services.pem"),
            key_file: self.pki.dir().join("services.key"),
            client_ca_file: self.mutual.then(|| self.pki.ca_file()),
            reload_ms: self.reload_ms,
        }
    }

    /// `server.tls` of the gateway (its callers are end users: no client certificate asked).
    fn gateway(&self) -> ServerTlsConfig {
        ServerTlsConfig {
            cert_file: self.pki.dir().join("gateway.pem"),
            key_file: self.pki.dir().join("gateway.key"),
            client_ca_file: None,
            reload_ms: self.reload_ms,
        }
    }
}

impl Default for StackOptions {
    fn default() -> Self {
        let mut ingest = braid_ingest::IngestConfig::default();
        ingest.server.health_probe_interval_ms = 100;
        ingest.server.shutdown_grace_ms = 2_000;
        ingest.worker.poll_interval_ms = 100;
        ingest.worker.backoff_base_ms = 100;
        ingest.worker.backoff_max_ms = 1_000;
        ingest.worker.lease_ms = 30_000;
        ingest.breaker.open_ms = 200;
        // Slow shared CI machines: long waits for READY need long request deadlines.
        ingest.server.request_timeout_ms = 150_000;
        ingest.limits.max_wait_ms = 120_000;
        ingest.chunking.tokenizer_file = Some(model_dir().join("tokenizer.json"));
        let mut gateway = braid_gateway::GatewayConfig::default();
        gateway.server.health_probe_interval_ms = 100;
        gateway.server.shutdown_grace_ms = 2_000;
        // Generous: debug builds on a shared 2-core machine.
        gateway.search.vector_timeout_ms = 20_000;
        gateway.search.text_timeout_ms = 20_000;
        gateway.breaker.open_ms = 200;
        gateway.server.request_timeout_ms = 150_000;
        // User auth is opt-in per test (`with_jwt`); internal auth is always on.
        gateway.auth = AuthConfig::disabled();
        let mut embedding = braid_embedding::EmbeddingConfig::default();
        embedding.server.health_probe_interval_ms = 100;
        embedding.server.shutdown_grace_ms = 2_000;
        Self {
            ingest,
            gateway,
            embedding,
            vector_internal_auth: internal_auth(),
            text_internal_auth: internal_auth(),
            topology: pg_topology::Topology::default(),
            text_engine: None,
            tls: None,
        }
    }
}

impl StackOptions {
    /// The default stack with the gateway verifying user tokens as `auth` says.
    pub fn with_jwt(auth: AuthConfig) -> Self {
        let mut options = Self::default();
        options.gateway.auth = auth;
        options
    }
}

/// All five services, running.
pub struct Stack {
    pub gateway: Service,
    pub ingest: Service,
    pub embedding: Service,
    pub vector: Service,
    pub text: Service,
    pub db: TestDb,
    pub vector_config: braid_vector_search::VectorSearchConfig,
    pub text_config: braid_text_search::TextSearchConfig,
    pub ingest_config: braid_ingest::IngestConfig,
    pub gateway_config: braid_gateway::GatewayConfig,
    _tantivy: tempfile::TempDir,
}

impl Stack {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(StackOptions::default()).await
    }

    pub async fn start_with(options: StackOptions) -> anyhow::Result<Self> {
        use braid_proto::service_names as n;
        let topology = options.topology;
        let tls = options.tls;
        if let Some(tls) = &tls {
            tls.issue()?;
        }
        let internal_tls = || tls.as_ref().map(StackTls::internal);
        let test_client_tls = || -> anyhow::Result<Option<Arc<ClientTls>>> {
            tls.as_ref()
                .map(|t| ClientTls::start(&t.client()).map_err(anyhow::Error::msg))
                .transpose()
        };
        let db = TestDb::create_on(&topology.admin_url).await?;
        let tantivy = tempfile::tempdir()?;

        let mut vector_cfg = braid_vector_search::VectorSearchConfig {
            internal_auth: options.vector_internal_auth,
            ..Default::default()
        };
        with_internal_key(&mut vector_cfg.internal_auth);
        topology.apply(&db.name, &mut vector_cfg.database, true);
        vector_cfg.server.health_probe_interval_ms = 100;
        vector_cfg.server.shutdown_grace_ms = 2_000;
        vector_cfg.server.tls = internal_tls();
        let vector_config = vector_cfg.clone();
        let vector = Service::spawn("vector-search", Listeners::ephemeral().await?, |l, s| {
            braid_vector_search::run(vector_cfg, l, s)
        })?
        .with_tls(test_client_tls()?);
        // Migrations run before SERVING; the ingest schema is created after, not concurrently.
        vector.wait_serving(n::VECTOR_SEARCH).await?;

        let mut text_cfg = braid_text_search::TextSearchConfig {
            internal_auth: options.text_internal_auth,
            ..Default::default()
        };
        with_internal_key(&mut text_cfg.internal_auth);
        text_cfg.index.dir = tantivy.path().to_path_buf();
        text_cfg.index.writer_memory_mb = 20;
        if let Some(engine) = options.text_engine {
            text_cfg.index.backend = braid_text_search::Backend::Elasticsearch;
            text_cfg.index.elasticsearch = engine;
        }
        text_cfg.server.health_probe_interval_ms = 100;
        text_cfg.server.shutdown_grace_ms = 2_000;
        text_cfg.server.tls = internal_tls();
        let text_config = text_cfg.clone();
        let text = Service::spawn("text-search", Listeners::ephemeral().await?, |l, s| {
            braid_text_search::run(text_cfg, l, s)
        })?
        .with_tls(test_client_tls()?);

        let mut embedding_cfg = options.embedding;
        embedding_cfg.model.dir = model_dir();
        embedding_cfg.model.onnx_runtime = onnx_runtime();
        with_internal_key(&mut embedding_cfg.internal_auth);
        embedding_cfg.server.tls = internal_tls();
        let embedding = Service::spawn("embedding", Listeners::ephemeral().await?, |l, s| {
            braid_embedding::run(embedding_cfg, l, s)
        })?
        .with_tls(test_client_tls()?);

        let client = |s: &Service, timeout_ms| {
            let config = ClientConfig::new(s.endpoint(), timeout_ms);
            match &tls {
                Some(tls) => config.with_tls(tls.client()),
                None => config,
            }
        };
        let mut ingest_cfg = options.ingest;
        with_internal_key(&mut ingest_cfg.internal_auth);
        topology.apply(&db.name, &mut ingest_cfg.database, false);
        ingest_cfg.embedding = client(&embedding, 60_000);
        ingest_cfg.vector_search = client(&vector, 30_000);
        ingest_cfg.text_search = client(&text, 30_000);
        ingest_cfg.server.tls = internal_tls();
        let ingest_config = ingest_cfg.clone();
        let ingest = Service::spawn("ingest", Listeners::ephemeral().await?, |l, s| {
            braid_ingest::run(ingest_cfg, l, s)
        })?
        .with_tls(test_client_tls()?);

        let mut gateway_cfg = options.gateway;
        with_internal_key(&mut gateway_cfg.internal_auth);
        gateway_cfg.ingest = client(&ingest, 120_000);
        gateway_cfg.embedding = client(&embedding, 20_000);
        gateway_cfg.vector_search = client(&vector, 20_000);
        gateway_cfg.text_search = client(&text, 20_000);
        // Audit is on in every end-to-end test, in the test database, unless a test points it
        // elsewhere or turns it off.
        if gateway_cfg.audit.database.url.is_empty() {
            topology.apply(&db.name, &mut gateway_cfg.audit.database, false);
        }
        gateway_cfg.server.tls = tls.as_ref().map(StackTls::gateway);
        let gateway_config = gateway_cfg.clone();
        let gateway = Service::spawn("gateway", Listeners::ephemeral().await?, |l, s| {
            braid_gateway::run(gateway_cfg, l, s)
        })?
        .with_tls(test_client_tls()?);

        text.wait_serving(n::TEXT_SEARCH).await?;
        embedding.wait_serving(n::EMBEDDING).await?;
        ingest.wait_serving(n::INGEST).await?;
        gateway.wait_serving(n::GATEWAY).await?;
        Ok(Self {
            gateway,
            ingest,
            embedding,
            vector,
            text,
            db,
            vector_config,
            text_config,
            ingest_config,
            gateway_config,
            _tantivy: tantivy,
        })
    }

    /// Stops vector-search (if running) and starts it again on the same port.
    pub async fn restart_vector(&mut self) -> anyhow::Result<()> {
        self.vector.stop().await?;
        let config = self.vector_config.clone();
        self.vector
            .restart(|l, s| braid_vector_search::run(config, l, s))
            .await?;
        self.vector
            .wait_serving(braid_proto::service_names::VECTOR_SEARCH)
            .await
    }

    /// Stops text-search (if running) and starts it again on the same port and index.
    pub async fn restart_text(&mut self) -> anyhow::Result<()> {
        self.text.stop().await?;
        let config = self.text_config.clone();
        self.text
            .restart(|l, s| braid_text_search::run(config, l, s))
            .await?;
        self.text
            .wait_serving(braid_proto::service_names::TEXT_SEARCH)
            .await
    }

    /// Stops ingest (if running) and starts it again on the same port and database.
    pub async fn restart_ingest(&mut self) -> anyhow::Result<()> {
        self.ingest.stop().await?;
        let config = self.ingest_config.clone();
        self.ingest
            .restart(|l, s| braid_ingest::run(config, l, s))
            .await?;
        self.ingest
            .wait_serving(braid_proto::service_names::INGEST)
            .await
    }

    /// Restarts the gateway (same port) with `gateway_config` as it is now.
    pub async fn restart_gateway(&mut self) -> anyhow::Result<()> {
        self.gateway.stop().await?;
        let config = self.gateway_config.clone();
        self.gateway
            .restart(|l, s| braid_gateway::run(config, l, s))
            .await?;
        self.gateway
            .wait_serving(braid_proto::service_names::GATEWAY)
            .await
    }

    /// A second gateway replica on ephemeral ports: the same configuration (database, Redis,
    /// downstreams), its own process state; returned once it is SERVING.
    pub async fn second_gateway(&self) -> anyhow::Result<Service> {
        let config = self.gateway_config.clone();
        let second = Service::spawn("gateway-2", Listeners::ephemeral().await?, |l, s| {
            braid_gateway::run(config, l, s)
        })?;
        second
            .wait_serving(braid_proto::service_names::GATEWAY)
            .await?;
        Ok(second)
    }

    /// A small pool on the test database, for assertions on stored state.
    pub async fn db(&self) -> anyhow::Result<sqlx::PgPool> {
        Ok(sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.db.url)
            .await?)
    }

    pub async fn gateway_client(&self) -> anyhow::Result<GatewayClient<Channel>> {
        if self.gateway.tls.is_some() {
            return Ok(GatewayClient::new(self.gateway.channel()));
        }
        Ok(GatewayClient::connect(self.gateway.endpoint()).await?)
    }

    /// The ingest service, called directly as service `test` (cross-tenant, unrestricted).
    pub fn ingest_client(&self) -> IngestServiceClient<ServiceChannel> {
        IngestServiceClient::new(service_channel(&self.ingest))
    }

    pub fn embedding_client(&self) -> EmbeddingServiceClient<ServiceChannel> {
        EmbeddingServiceClient::new(service_channel(&self.embedding))
    }

    pub fn vector_client(&self) -> VectorSearchServiceClient<ServiceChannel> {
        VectorSearchServiceClient::new(service_channel(&self.vector))
    }

    pub fn text_client(&self) -> TextSearchServiceClient<ServiceChannel> {
        TextSearchServiceClient::new(service_channel(&self.text))
    }

    pub fn services(&self) -> [&Service; 5] {
        [
            &self.gateway,
            &self.ingest,
            &self.embedding,
            &self.vector,
            &self.text,
        ]
    }

    /// Stops every service (gateway first) and drops the database.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        for s in [
            &mut self.gateway,
            &mut self.ingest,
            &mut self.embedding,
            &mut self.vector,
            &mut self.text,
        ] {
            s.stop()
                .await
                .with_context(|| format!("stopping {}", s.name))?;
        }
        self.db.drop_db().await;
        Ok(())
    }
}

/// Sum of the samples of metric `name` (Prometheus text format) whose labels contain every
/// string in `filters`.
pub fn metric_sum(text: &str, name: &str, filters: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| filters.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// GET `path` from an admin HTTP listener; returns (status line, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(String, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await?;
    let mut buf = String::new();
    stream.read_to_string(&mut buf).await?;
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((buf.as_str(), ""));
    Ok((
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    ))
}
