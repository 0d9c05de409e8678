//! The BM25 backend traits the service is written against: [`TextIndex`] (writes, searches,
//! health) and [`IndexAdmin`] (which index serves, listing a document's chunks, rebuilding a
//! new index and switching to it). Tantivy implements both (`tantivy` + `managed`), and so
//! does Elasticsearch (`es`, behind the `elasticsearch` cargo feature).

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

/// What [`IndexAdmin::status`] reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexStatus {
    /// The index that serves (its id survives restarts; a rebuild gives a new one).
    pub index_id: String,
    /// Why searches are refused, if they are.
    pub fault: Option<String>,
    /// The rebuild under way: its id and the documents written into it so far.
    pub rebuild: Option<(String, u64)>,
}

/// The recovery side of a backend (the `Verify*` and `Rebuild*` RPCs).
#[tonic::async_trait]
pub trait IndexAdmin: Send + Sync + 'static {
    /// The serving state; with `expected` (the index ingest last wrote to), an index that is
    /// neither it nor a successor of it is a fault.
    async fn status(&self, expected: &str) -> Result<IndexStatus, TextError>;

    /// (chunk id, chunk text) of every chunk the serving index holds for one document.
    async fn document_chunks(
        &self,
        tenant: &str,
        document_id: &str,
    ) -> Result<Vec<(String, String)>, TextError>;

    /// Starts a new empty index next to the serving one; returns its id.
    async fn rebuild_start(&self, supersedes_index_id: &str) -> Result<String, TextError>;

    /// Writes documents (tenant, document id, chunks) into rebuild `id`, skipping those
    /// written live since it started; returns (written, skipped).
    async fn rebuild_write(
        &self,
        id: &str,
        documents: Vec<(String, String, Vec<Chunk>)>,
    ) -> Result<(u32, u32), TextError>;

    /// Switches searches to the rebuilt index; returns its id.
    async fn rebuild_finish(&self, id: &str) -> Result<String, TextError>;
}
