//! Runs one Braid gRPC server: the service's routes plus `grpc.health.v1`, reflection v1 and
//! v1alpha, the shared tower stack, and an admin HTTP listener with `/metrics`, `/healthz` and `/livez`.
//!
//! Shutdown: when the passed future resolves, health flips to NOT_SERVING, the listener stops
//! accepting, in-flight requests get `shutdown_grace` to finish, then the server returns.
//!
//! Connections age: after `max_connection_age_ms` a connection gets GOAWAY (its requests
//! finish within the grace period), so a caller that balances per connection, or holds one
//! connection through a ClusterIP Service, reconnects and reaches replicas added since.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tower::ServiceBuilder;

use crate::auth::internal::InternalAuth;
use crate::config::ServerConfig;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::resilience::{AdmissionConfig, AdmissionLayer, GrpcMetricsLayer};

/// The two already-bound listeners a service runs on.
pub struct Listeners {
    pub grpc: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds the configured addresses.
    pub async fn bind(config: &ServerConfig) -> std::io::Result<Self> {
        Ok(Self {
            grpc: TcpListener::bind(config.grpc_addr).await?,
            admin: TcpListener::bind(config.admin_addr).await?,
        })
    }

    /// Two ephemeral ports on 127.0.0.1 (tests).
    pub async fn ephemeral() -> std::io::Result<Self> {
        Ok(Self {
            grpc: TcpListener::bind("127.0.0.1:0").await?,
            admin: TcpListener::bind("127.0.0.1:0").await?,
        })
    }

    pub fn grpc_addr(&self) -> std::io::Result<SocketAddr> {
        self.grpc.local_addr()
    }

    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin.local_addr()
    }
}

/// Who may call a server's routes (health checks are always open).
#[derive(Clone)]
pub enum Guard {
    /// An internal service: every RPC, reflection included, needs a service credential.
    Internal(InternalAuth),
    /// The gateway: its public API authenticates end users itself; reflection is open.
    Public,
}

/// A server's routes and who may call them.
pub struct Guarded {
    routes: Routes,
    guard: Guard,
}

impl Guard {
    /// `routes` behind this guard (reflection, added by the server, is guarded too).
    pub fn over(self, routes: Routes) -> Guarded {
        Guarded {
            routes,
            guard: self,
        }
    }

    fn apply(&self, routes: Routes) -> Routes {
        match self {
            Guard::Internal(auth) => auth.guard(routes),
            Guard::Public => routes,
        }
    }
}

/// Serves `routes` (which must include the health service of `health`) and, on the admin
/// port, `admin_routes` next to `/metrics`, `/healthz` and `/livez`, until `shutdown`
/// resolves; then flips health to NOT_SERVING, stops accepting and drains within the grace
/// period. [`crate::host::Host`] is the one caller outside tests.
pub(crate) async fn serve<F>(
    config: &ServerConfig,
    metrics: Metrics,
    health: Health,
    routes: Guarded,
    admin_routes: axum::Router,
    listeners: Listeners,
    shutdown: F,
) -> anyhow::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let (drain_tx, drain_rx) = watch::channel(false);
    let admin = spawn_admin(
        listeners.admin,
        metrics.clone(),
        health.clone(),
        admin_routes,
        drain_rx.clone(),
    );

    // Advertise what this server serves, not every service in the shared descriptor set.
    let internal = matches!(routes.guard, Guard::Internal(_));
    let reflection = || {
        let builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(braid_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(health.service());
        let builder = if internal {
            builder.with_service_name(braid_proto::service_names::SERVICE_STATUS)
        } else {
            builder
        };
        builder
            .with_service_name("grpc.health.v1.Health")
            .with_service_name("grpc.reflection.v1.ServerReflection")
            .with_service_name("grpc.reflection.v1alpha.ServerReflection")
    };
    // grpcurl builds in the wild still speak only v1alpha, so both versions are served.
    let Guarded { routes, guard } = routes;
    if let Guard::Internal(auth) = &guard
        && auth.is_enabled()
    {
        let auth = auth.clone();
        health.set_live_detail("internal_auth.key", move || {
            auth.describe().unwrap_or_default()
        });
    }
    let routes = routes
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?);
    let routes = guard.apply(routes);

    // Outermost first: metrics see every request (shed ones too), then admission runs at most
    // `concurrency_limit` requests, queues up to `queue_limit` more in arrival order and sheds
    // with RESOURCE_EXHAUSTED only when the queue is full or a request's deadline passes
    // while it waits.
    let admission = AdmissionLayer::new(
        AdmissionConfig {
            concurrency_limit: config.concurrency_limit,
            queue_limit: config.queue_limit,
            request_timeout: config.request_timeout(),
        },
        &metrics,
    );
    let metrics_for_tls = metrics.clone();
    let stack = ServiceBuilder::new()
        .layer(GrpcMetricsLayer::new(metrics))
        .layer(admission);

    let signal = {
        let health = health.clone();
        async move {
            shutdown.await;
            tracing::info!(service = health.service(), "shutdown: draining");
            health.drain().await;
            let _ = drain_tx.send(true);
        }
    };
    let mut builder = tonic::transport::Server::builder().timeout(config.request_timeout());
    if let Some((age, grace)) = config.max_connection_age() {
        // GOAWAY after `age`: callers reconnect and land on replicas added since.
        builder = builder
            .max_connection_age(age)
            .max_connection_age_grace(grace);
    }
    // Without TCP_NODELAY small responses wait ~40 ms for the peer's delayed ACK.
    let tcp = tonic::transport::server::TcpIncoming::from(listeners.grpc)
        .with_nodelay(Some(true))
        .with_keepalive(Some(std::time::Duration::from_secs(60)));
    let router = builder
        .trace_fn(crate::telemetry::server_span)
        .layer(stack)
        .add_routes(routes);
    let mut acceptor = None;
    let server: std::pin::Pin<
        Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>,
    > = match &config.tls {
        None => Box::pin(router.serve_with_incoming_shutdown(tcp, signal)),
        Some(tls_config) => {
            let tls = crate::tls::ServerTls::start(tls_config)
                .map_err(|e| anyhow::anyhow!("server.tls: {e}"))?;
            tracing::info!(
                service = health.service(),
                mutual = tls.requires_client_certs(),
                "serving gRPC over TLS"
            );
            let (incoming, task) = crate::tls::incoming(tls, tcp, &metrics_for_tls);
            acceptor = Some(task);
            Box::pin(router.serve_with_incoming_shutdown(incoming, signal))
        }
    };

    let grace = config.shutdown_grace();
    let mut grace_rx = drain_rx;
    let result = tokio::select! {
        result = server => result.map_err(anyhow::Error::from),
        _ = async {
            let _ = grace_rx.wait_for(|d| *d).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(service = health.service(), ?grace, "grace period over; dropping in-flight requests");
            Ok(())
        }
    };
    admin.abort();
    if let Some(task) = acceptor {
        // It owns the listener: the port closes with the server.
        task.abort();
    }
    result
}

fn spawn_admin(
    listener: TcpListener,
    metrics: Metrics,
    health: Health,
    extra: axum::Router,
    mut drain: watch::Receiver<bool>,
) -> JoinHandle<()> {
    use axum::http::StatusCode;
    use axum::routing::get;
    let app = extra
        .route("/metrics", get(move || async move { metrics.render() }))
        // Liveness: the process answers HTTP. Never depends on downstreams, so a dependency
        // outage cannot turn into a restart storm (readiness is the gRPC health check).
        .route("/livez", get(|| async { "ok" }))
        .route(
            "/healthz",
            get(move || async move {
                let status = if health.is_serving() {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                (status, health.report())
            }),
        );
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = drain.wait_for(|d| *d).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(error = %e, "admin listener failed");
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    use super::*;
    use crate::health::health;

    /// Forwards connections on a new port to `target`, counting them.
    async fn counting_proxy(target: SocketAddr) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        (addr, accepted)
    }

    /// A server of `grpc.health.v1` alone (service `braid.test.Svc`, SERVING) on an ephemeral
    /// port: its address, its health handle, the sender that stops it and its task.
    async fn serve_health(
        config: ServerConfig,
    ) -> (
        SocketAddr,
        Health,
        tokio::sync::oneshot::Sender<()>,
        JoinHandle<anyhow::Result<()>>,
    ) {
        let listeners = Listeners::ephemeral().await.unwrap();
        let grpc = listeners.grpc_addr().unwrap();
        let (health, health_service) = health("braid.test.Svc");
        health.set_serving(true).await;
        let handle = health.clone();
        let routes = Guard::Public.over(Routes::new(health_service));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            serve(
                &config,
                Metrics::new("t"),
                health,
                routes,
                axum::Router::new(),
                listeners,
                async move {
                    let _ = stopped.await;
                },
            )
            .await
        });
        (grpc, handle, stop, server)
    }

    /// A stream outlives the connection's age and the request timeout: GOAWAY stops new calls
    /// on the aged connection, never the ones running (an `IngestStream` of a whole corpus).
    #[tokio::test]
    async fn a_stream_outlives_the_connection_age_and_the_request_timeout() {
        let config = ServerConfig {
            max_connection_age_ms: 100,
            request_timeout_ms: 200,
            ..ServerConfig::default()
        };
        let (grpc, watched, stop, server) = serve_health(config).await;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut stream = HealthClient::new(channel)
            .watch(HealthCheckRequest {
                service: "braid.test.Svc".into(),
            })
            .await
            .unwrap()
            .into_inner();
        let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
        assert_eq!(stream.message().await.unwrap().unwrap().status, serving);
        // Past the age and the request timeout (100 + 200 ms) several times over.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        watched.set_serving(false).await;
        let update = stream
            .message()
            .await
            .expect("the stream is still open after the connection aged")
            .expect("an update, not the end of the stream");
        assert_ne!(update.status, serving);
        drop(stream);
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn connections_older_than_the_maximum_age_are_recycled_without_failing_calls() {
        let config = ServerConfig {
            max_connection_age_ms: 200,
            max_connection_age_grace_ms: Some(1_000),
            ..ServerConfig::default()
        };
        let (grpc, _, stop, server) = serve_health(config).await;

        let (proxy, connections) = counting_proxy(grpc).await;
        let connector = crate::client::Connector::new(
            crate::auth::internal::ServiceToken::none(),
            crate::resilience::BreakerConfig::default(),
            &Metrics::new("client"),
            crate::balance::system(),
        );
        let (channel, _) = connector
            .channel(
                "svc",
                &crate::config::ClientConfig::new(format!("http://{proxy}"), 5_000),
            )
            .unwrap();
        let mut client = HealthClient::new(channel);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut calls = 0;
        // One long-lived Braid client calling steadily: after the age, the server sends
        // GOAWAY and the client opens a new connection; no call fails on the way (a call
        // that raced the close never reached the server and is resent by the retry layer).
        while connections.load(Ordering::SeqCst) < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "still on one connection after {calls} calls"
            );
            client
                .check(HealthCheckRequest::default())
                .await
                .expect("no call fails while connections are recycled");
            calls += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        client.check(HealthCheckRequest::default()).await.unwrap();
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
}
