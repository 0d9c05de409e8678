//! TLS on gRPC (issue 23 item 8), end to end on the real stack with certificates made by the
//! test (`braid_tests::certs`: a CA, the services' and the gateway's certificates):
//! - a hybrid search through a TLS gateway, every hop between services over mutual TLS;
//! - a client that does not trust the CA, and a plaintext client, are refused by the gateway;
//! - an internal service that requires client certificates refuses a caller without one;
//! - the gateway's certificate replaced on disk is served to new connections without a
//!   restart, while connections already open keep working.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use braid_core::tls::{ClientTls, ClientTlsConfig, TlsConnector};
use braid_tests::v1::gateway_client::GatewayClient;
use braid_tests::v1::{DocumentInput, SearchMode, SearchRequest, SearchResponse};
use braid_tests::{
    Service, Stack, StackOptions, StackTls, eventually, http_get, ingest_ready, metric_sum, titled,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

fn hybrid(query: &str) -> SearchRequest {
    SearchRequest {
        query: query.into(),
        top_k: 3,
        mode: SearchMode::Hybrid as i32,
        bypass_cache: true,
        ..Default::default()
    }
}

fn documents() -> Vec<DocumentInput> {
    vec![
        titled(
            "tides",
            "Tides are caused by the gravitational pull of the moon on the oceans.",
        ),
        titled(
            "bread",
            "Sourdough bread rises because wild yeast ferments the dough.",
        ),
    ]
}

/// A channel to `service` over TLS as `tls` says (verifying `127.0.0.1`, or its server name).
fn tls_channel(service: &Service, tls: ClientTlsConfig) -> Channel {
    let tls = ClientTls::start(&tls).expect("client TLS files");
    let endpoint = Endpoint::from_shared(format!("https://{}", service.grpc))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5));
    TlsConnector::channel(tls, endpoint).expect("server name")
}

async fn handshake_failures(service: &Service) -> f64 {
    let (_, body) = http_get(service.admin, "/metrics")
        .await
        .unwrap_or_default();
    metric_sum(&body, "braid_tls_handshake_failures_total", &[])
}

fn assert_answers(response: &SearchResponse) {
    assert!(!response.degraded, "{:?}", response.degraded_reasons);
    let best = response.hits.first().expect("a hit");
    assert_eq!(best.external_id, "tides");
    assert!(
        best.vector_score.is_some() && best.text_score.is_some(),
        "both legs answered: {best:?}"
    );
}

#[tokio::test]
async fn hybrid_search_through_a_tls_gateway_with_mutual_tls_between_services() {
    let tls = StackTls::new(true).unwrap();
    let pki = tls.pki.clone();
    let stack = Stack::start_with(StackOptions {
        tls: Some(tls.clone()),
        ..Default::default()
    })
    .await
    .unwrap();

    // Ingest (gateway -> ingest -> embedding, vector-search, text-search) and search
    // (gateway -> embedding, both legs), every hop over TLS with client certificates.
    let mut gw = stack.gateway_client().await.unwrap();
    ingest_ready(&mut gw, "default", documents()).await;
    let response = gw
        .search(hybrid("why does the sea rise and fall with the moon"))
        .await
        .expect("a hybrid search through the TLS gateway")
        .into_inner();
    assert_answers(&response);

    // A client that does not trust the CA: its own CA, or the public roots.
    let before = handshake_failures(&stack.gateway).await;
    let rogue = braid_tests::certs::Pki::new("another CA").unwrap();
    for (what, config) in [
        ("another CA", ClientTlsConfig::trusting(rogue.ca_file())),
        ("the public roots", ClientTlsConfig::default()),
    ] {
        let refused = GatewayClient::new(tls_channel(&stack.gateway, config))
            .search(hybrid("moon"))
            .await
            .expect_err(&format!("a client trusting {what} is refused"));
        assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
        assert!(
            format!("{refused:?}").contains("UnknownIssuer"),
            "refused for not trusting the certificate: {refused:?}"
        );
    }
    // Plaintext to a TLS port is no gRPC at all.
    let plaintext = Endpoint::from_shared(format!("http://{}", stack.gateway.grpc))
        .unwrap()
        .connect_lazy();
    GatewayClient::new(plaintext)
        .search(hybrid("moon"))
        .await
        .expect_err("plaintext is refused");
    // The server counts each failure when the client's alert or close reaches it.
    eventually(
        "the gateway counting the refused handshakes",
        Duration::from_secs(10),
        || async { (handshake_failures(&stack.gateway).await >= before + 3.0).then_some(()) },
    )
    .await
    .unwrap();

    // An internal service that requires client certificates: trusting its CA is not enough.
    let no_cert = ClientTlsConfig::trusting(pki.ca_file());
    let before = handshake_failures(&stack.vector).await;
    let refused = HealthClient::new(tls_channel(&stack.vector, no_cert.clone()))
        .check(HealthCheckRequest::default())
        .await
        .expect_err("no client certificate, no call");
    // TLS 1.3: the client learns it from the server's alert, after its side of the handshake.
    assert!(
        format!("{refused:?}").contains("CertificateRequired"),
        "refused for the missing certificate: {refused:?}"
    );
    eventually(
        "vector-search counting the refused handshake",
        Duration::from_secs(10),
        || async { (handshake_failures(&stack.vector).await > before).then_some(()) },
    )
    .await
    .unwrap();
    // ... while the gateway, with its client certificate, is served (health check too).
    HealthClient::new(stack.vector.channel())
        .check(HealthCheckRequest::default())
        .await
        .expect("a client certificate the CA signed is accepted");
    // The gateway asks no client certificate of its end users.
    GatewayClient::new(tls_channel(&stack.gateway, no_cert))
        .search(hybrid("moon"))
        .await
        .expect("the gateway serves TLS clients without certificates");

    stack.shutdown().await.unwrap();
}

/// The leaf certificate the server at `addr` presents on a new connection.
async fn served_certificate(addr: std::net::SocketAddr, ca: &Path) -> Vec<u8> {
    let tls = ClientTls::start(&ClientTlsConfig::trusting(ca)).unwrap();
    let connector = tokio_rustls::TlsConnector::from(tls.current());
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = connector.connect(name, tcp).await.unwrap();
    conn.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn certificate_in(file: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(file).unwrap().to_vec()
}

#[tokio::test]
async fn a_certificate_replaced_on_disk_serves_new_connections_without_a_restart() {
    let tls = StackTls::new(false).unwrap();
    let pki: Arc<braid_tests::certs::Pki> = tls.pki.clone();
    let stack = Stack::start_with(StackOptions {
        tls: Some(tls),
        ..Default::default()
    })
    .await
    .unwrap();
    let cert_file = pki.dir().join("gateway.pem");
    let first = certificate_in(&cert_file);
    assert_eq!(
        served_certificate(stack.gateway.grpc, &pki.ca_file()).await,
        first
    );
    let mut open = stack.gateway_client().await.unwrap();
    ingest_ready(&mut open, "default", documents()).await;

    // A name the first certificate does not carry: refused before the rotation.
    let renamed = ClientTlsConfig {
        server_name: Some("gateway.rotated.test".into()),
        ..ClientTlsConfig::trusting(pki.ca_file())
    };
    GatewayClient::new(tls_channel(&stack.gateway, renamed.clone()))
        .search(hybrid("moon"))
        .await
        .expect_err("the first certificate does not name gateway.rotated.test");

    // The Secret is updated: key, then certificate, each replaced by rename.
    pki.issue("gateway", &["gateway.rotated.test", "127.0.0.1"])
        .unwrap();
    let second = certificate_in(&cert_file);
    assert_ne!(first, second);
    eventually(
        "the new certificate served",
        Duration::from_secs(10),
        || async {
            (served_certificate(stack.gateway.grpc, &pki.ca_file()).await == second).then_some(())
        },
    )
    .await
    .unwrap();

    // New connections verify against the new certificate's names...
    let response = GatewayClient::new(tls_channel(&stack.gateway, renamed))
        .search(hybrid("why does the sea rise and fall with the moon"))
        .await
        .expect("the new certificate names gateway.rotated.test")
        .into_inner();
    assert_answers(&response);
    // ... and the connection opened before the rotation still works.
    let response = open
        .search(hybrid("why does the sea rise and fall with the moon"))
        .await
        .expect("an open connection outlives the rotation")
        .into_inner();
    assert_answers(&response);

    stack.shutdown().await.unwrap();
}
