//! The gateway's downstream clients, built once with shared channels (each with its own
//! circuit breaker) and cloned per request.

use braid_core::client::{Channel, ClientError, Connector};
use braid_core::resilience::CircuitBreaker;
use braid_proto::v1::embedding_service_client::EmbeddingServiceClient;
use braid_proto::v1::ingest_service_client::IngestServiceClient;
use braid_proto::v1::service_status_client::ServiceStatusClient;
use braid_proto::v1::text_search_service_client::TextSearchServiceClient;
use braid_proto::v1::vector_search_service_client::VectorSearchServiceClient;
use tonic_health::pb::health_client::HealthClient;

use crate::config::GatewayConfig;

/// One downstream's health and status clients and its breaker, for probes, metrics and the
/// status view.
#[derive(Clone)]
pub struct Downstream {
    pub name: &'static str,
    pub service: &'static str,
    pub health: HealthClient<Channel>,
    pub status: ServiceStatusClient<Channel>,
    pub breaker: CircuitBreaker,
}

#[derive(Clone)]
pub struct Clients {
    pub ingest: IngestServiceClient<Channel>,
    pub embedding: EmbeddingServiceClient<Channel>,
    pub vector: VectorSearchServiceClient<Channel>,
    pub text: TextSearchServiceClient<Channel>,
    pub downstreams: Vec<Downstream>,
}

impl Clients {
    pub fn new(config: &GatewayConfig, connector: &Connector) -> Result<Self, ClientError> {
        use braid_proto::service_names as names;
        let max = config.server.max_message_bytes;
        let mut downstreams = Vec::new();
        let mut connect =
            |name: &'static str, service: &'static str, c| -> Result<Channel, ClientError> {
                let (channel, breaker) = connector.channel(name, c)?;
                downstreams.push(Downstream {
                    name,
                    service,
                    health: HealthClient::new(channel.clone()),
                    status: ServiceStatusClient::new(channel.clone()),
                    breaker,
                });
                Ok(channel)
            };
        let ingest = connect("ingest", names::INGEST, &config.ingest)?;
        let embedding = connect("embedding", names::EMBEDDING, &config.embedding)?;
        let vector = connect("vector-search", names::VECTOR_SEARCH, &config.vector_search)?;
        let text = connect("text-search", names::TEXT_SEARCH, &config.text_search)?;
        Ok(Self {
            ingest: IngestServiceClient::new(ingest)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            embedding: EmbeddingServiceClient::new(embedding),
            vector: VectorSearchServiceClient::new(vector).max_decoding_message_size(max),
            text: TextSearchServiceClient::new(text).max_decoding_message_size(max),
            downstreams,
        })
    }
}
