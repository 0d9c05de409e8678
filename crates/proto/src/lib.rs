//! Braid's gRPC contracts: the code generated from `proto/braid/v1/*.proto`, the encoded file
//! descriptor set served by reflection, and re-exports of `tonic`/`prost` so every other crate
//! builds against exactly the same versions.

#![forbid(unsafe_code)]

pub use prost;
pub use prost_types;
pub use tonic;

/// Generated messages and service stubs for package `braid.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("braid.v1");
}

/// Encoded `FileDescriptorSet` of every Braid proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("braid_descriptor");

/// Fully-qualified gRPC service names, as used by health checks and reflection.
pub mod service_names {
    pub const GATEWAY: &str = "braid.v1.Gateway";
    pub const INGEST: &str = "braid.v1.IngestService";
    pub const EMBEDDING: &str = "braid.v1.EmbeddingService";
    pub const VECTOR_SEARCH: &str = "braid.v1.VectorSearchService";
    pub const TEXT_SEARCH: &str = "braid.v1.TextSearchService";
    /// The internal status RPC every internal service serves next to its own.
    pub const SERVICE_STATUS: &str = "braid.v1.ServiceStatus";
}

/// `prost_types::Timestamp` from milliseconds since the Unix epoch.
pub fn timestamp_from_millis(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}
