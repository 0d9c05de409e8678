//! The BM25 backend trait the service is written against. Tantivy implements it today; an
//! Elasticsearch implementation plugs in behind the same trait.

use braid_core::auth::Access;
use braid_core::filter::Filter;
use braid_proto::tonic;
use braid_proto::v1::{Chunk, ChunkHit};

use crate::error::TextError;

/// A text query against one tenant. No `Default`: every query states whose access it runs
/// with, so forgetting the caller's ACL does not compile.
#[derive(Debug, Clone)]
pub struct TextQuery {
    pub tenant: String,
    pub query: String,
    pub top_k: u32,
    /// Metadata conditions required of every hit (inside the query, see `filter.rs`).
    pub filter: Filter,
    /// Hits below this BM25 score are left out.
    pub min_score: Option<f32>,
    /// The caller's clearance and groups, applied inside the query (never after it).
    pub access: Access,
    /// Text and snippet only for the best `detail` hits; 0 = all.
    pub detail: u32,
    /// Rank chunks instead of documents.
    pub chunk_level: bool,
}

#[tonic::async_trait]
pub trait TextIndex: Send + Sync + 'static {
    /// Replaces every chunk of a document; readers see either the old or the new set.
    async fn replace_document(
        &self,
        tenant: &str,
        document_id: &str,
        chunks: Vec<Chunk>,
    ) -> Result<u32, TextError>;

    /// Removes every chunk of a document; returns how many were removed.
    async fn delete_document(&self, tenant: &str, document_id: &str) -> Result<u32, TextError>;

    /// BM25-ranked chunks, best first, with highlighted snippets.
    async fn search(&self, query: TextQuery) -> Result<Vec<ChunkHit>, TextError>;

    /// Text and snippet of chunks a search returned without them, in the order asked.
    async fn fetch(
        &self,
        tenant: &str,
        query: &str,
        chunk_ids: Vec<String>,
    ) -> Result<Vec<ChunkHit>, TextError>;

    /// Whether the backend can serve (health probe).
    async fn check(&self) -> Result<(), TextError>;
}
