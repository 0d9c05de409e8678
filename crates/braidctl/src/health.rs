//! `braidctl health`: `grpc.health.v1` on all five services, or on one (`--service`, for
//! container and probe health checks).

use std::process::ExitCode;
use std::time::Duration;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::cli::ServiceArg;
use crate::client::connect;

/// One service's own status (`--service` + `--addr`).
pub async fn one(service: ServiceArg, addr: String, quiet: bool) -> ExitCode {
    let address = if addr.contains("://") {
        addr
    } else {
        format!("http://{addr}")
    };
    // Bounded as a whole (connect, HTTP/2 handshake, call): a listener that is bound
    // but not serving yet must fail the probe, not hang it.
    let status = tokio::time::timeout(
        Duration::from_secs(10),
        check(&address, service.grpc_name()),
    )
    .await
    .unwrap_or_else(|_| "TIMEOUT".into());
    if !quiet {
        println!("{:<14} {address:<24} {status}", service.grpc_name());
    }
    if status == "SERVING" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The addresses of the services behind the gateway.
pub struct Targets {
    pub ingest: String,
    pub embedding: String,
    pub vector_search: String,
    pub text_search: String,
}

/// Every service's overall status.
pub async fn all(gateway_addr: &str, t: Targets, quiet: bool) -> ExitCode {
    use braid_proto::service_names as n;
    let targets = [
        ("gateway", gateway_addr, n::GATEWAY),
        ("ingest", t.ingest.as_str(), n::INGEST),
        ("embedding", t.embedding.as_str(), n::EMBEDDING),
        ("vector-search", t.vector_search.as_str(), n::VECTOR_SEARCH),
        ("text-search", t.text_search.as_str(), n::TEXT_SEARCH),
    ];
    let mut all_ok = true;
    for (name, address, service) in targets {
        let status = check(address, service).await;
        all_ok &= status == "SERVING";
        if !quiet {
            println!("{name:<14} {address:<24} {status}");
        }
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn check(address: &str, service: &str) -> String {
    let channel = match connect(address).await {
        Ok(c) => c,
        Err(_) => return "UNREACHABLE".into(),
    };
    let request = HealthCheckRequest {
        service: service.to_string(),
    };
    match HealthClient::new(channel).check(request).await {
        Ok(r) => match ServingStatus::try_from(r.into_inner().status) {
            Ok(ServingStatus::Serving) => "SERVING".into(),
            Ok(other) => other.as_str_name().into(),
            Err(_) => "UNKNOWN".into(),
        },
        Err(s) => format!("ERROR ({:?})", s.code()),
    }
}
