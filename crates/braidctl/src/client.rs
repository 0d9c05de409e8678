//! The connection to the gateway: one channel, the bearer token on every call.

use std::time::Duration;

use anyhow::Context;
use braid_proto::tonic::transport::{Channel, Endpoint};
use braid_proto::v1::gateway_client::GatewayClient;

use crate::token;

pub async fn connect(address: &str) -> anyhow::Result<Channel> {
    Endpoint::from_shared(address.to_string())
        .with_context(|| format!("invalid address {address}"))?
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await
        .with_context(|| format!("cannot reach {address}"))
}

pub type Gateway = GatewayClient<
    braid_proto::tonic::service::interceptor::InterceptedService<Channel, token::Bearer>,
>;

pub async fn gateway(address: &str, token: Option<&str>) -> anyhow::Result<Gateway> {
    let bearer = token::Bearer::new(token::resolve(token)?)?;
    Ok(
        GatewayClient::with_interceptor(connect(address).await?, bearer)
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024),
    )
}

/// A document named by id (a UUID) or by external id: `(document_id, external_id)`.
pub fn id_fields(id: &str) -> (String, String) {
    if braid_core::validate::uuid_like::parse(id).is_some() {
        (id.to_string(), String::new())
    } else {
        (String::new(), id.to_string())
    }
}
