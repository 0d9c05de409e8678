//! Tantivy implementation of [`TextIndex`]: one index directory holding two kinds of entries
//! (`kind`): every chunk (`title`, `body`), and one entry per document (`doc_title`,
//! `doc_body` = the whole text, see [`document_text`]), each in the fields of its language
//! and analysed in it ([`crate::language`], [`crate::analysis`], [`schema`]). A search ranks
//! documents by BM25 over the document entries, summed over title (boosted) and body with
//! k1/b from config ([`crate::bm25`]), collecting the top k with block-max pruning
//! ([`topk`]), then picks each document's best chunk for the snippet and text with a
//! chunk-level query restricted to those documents. Every BM25 statistic (population,
//! document frequencies, average lengths) is the caller's tenant's alone ([`tenants`]), so
//! another tenant's writes never move a score, and per language (a query runs against the
//! fields of every language the tenant has, analysed in that language). Exact-match `tenant` and
//! `meta` (`key\x1fvalue`) fields and the document's ACL (`acl_clearance`, `acl_group`) are on
//! both kinds, and both rankings apply them inside (the chunk query as zero-score clauses,
//! [`query::filter_clauses`]; the document ranking before an entry enters the top k), so
//! `top_k` counts only visible documents. Writes take the single writer, commit, and reload the
//! reader, all on the writer threads at a lower OS priority than searches ([`writers`]); each
//! commit builds the id columns ([`columns`]) of the new segments before the reload shows them
//! to searches, which learn their candidates' documents and chunks from them without reading
//! stored documents.

mod blockmax;
mod columns;
mod query;
mod schema;
mod search;
mod tenants;
#[cfg(test)]
mod tests;
mod topk;
mod union;
mod write;
mod writers;

use std::sync::{Arc, Mutex};

use braid_proto::tonic;
use braid_proto::v1::{Chunk, ChunkHit};
use tantivy::query::BooleanQuery;
use tantivy::schema::TantivyDocument;
use tantivy::schema::Value;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy};

use crate::analysis;
use crate::bm25::Bm25Params;
use crate::config::{IndexConfig, SearchConfig};
use crate::error::TextError;
use crate::index::{TextIndex, TextQuery};

use self::columns::ColumnsCache;
use self::schema::{Fields, KIND_CHUNK, doc_key, schema, zero_score_term};
use self::writers::WritePool;

pub(crate) use self::columns::built_by_searches_in_process;

struct Inner {
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    /// Writes added to the writer so far (bumped under the writer lock).
    added: std::sync::atomic::AtomicU64,
    /// Writes made durable and visible by a commit (group commit, see `Inner::write`).
    committed: Mutex<u64>,
    fields: Fields,
    /// Per-segment document keys and chunks, built for new segments at each commit.
    columns: ColumnsCache,
    snippet_chars: usize,
    title_boost: f32,
    bm25: Bm25Params,
}

/// Cheap to clone; clones share the index.
#[derive(Clone)]
pub struct TantivyIndex {
    inner: Arc<Inner>,
    writes: Arc<WritePool>,
}

pub(super) fn index_err(e: impl std::fmt::Display) -> TextError {
    TextError::Index(e.to_string())
}

impl TantivyIndex {
    /// Opens the index in `config.dir`, creating it on first use.
    pub fn open(config: &IndexConfig, search: &SearchConfig) -> Result<Self, TextError> {
        let dir = config.dir.as_path();
        let (schema, fields) = schema();
        std::fs::create_dir_all(dir).map_err(index_err)?;
        let index = if dir.join("meta.json").exists() {
            let index = Index::open_in_dir(dir).map_err(index_err)?;
            if index.schema() != schema {
                // An index written before document ACLs (guessing an ACL would show restricted
                // text to the wrong callers), before document entries and English analysis
                // (its documents could not be ranked) or before per-language fields (its text
                // would not be in its language's fields): rebuilding is the only correct way.
                // The managed index reports this as a fault naming `braidctl reindex --leg text`.
                return Err(TextError::Index(format!(
                    "the text index in {} was written by another Braid version (its schema \
                     differs, e.g. no per-language text fields, no document ACL fields or no \
                     document-level entries)",
                    dir.display()
                )));
            }
            index
        } else {
            Index::create_in_dir(dir, schema).map_err(index_err)?
        };
        analysis::register(&index);
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(index_err)?;
        // Each indexing thread starts a segment per commit (with a 4 MB hash table to clear);
        // documents arrive a few at a time, so one thread is the default. Created on a writer
        // thread, so the threads the writer spawns share its lower priority.
        let writes = WritePool::start(config.writer_nice)?;
        let writer = {
            let (index, threads) = (index.clone(), config.writer_threads);
            let memory = config.writer_memory_mb * 1024 * 1024;
            writes.run_blocking(move || {
                index
                    .writer_with_num_threads(threads, memory)
                    .map_err(index_err)
            })?
        };
        let columns = ColumnsCache::default();
        columns
            .warm(&fields, &reader.searcher())
            .map_err(index_err)?;
        Ok(Self {
            inner: Arc::new(Inner {
                index,
                reader,
                writer: Mutex::new(writer),
                added: std::sync::atomic::AtomicU64::new(0),
                committed: Mutex::new(0),
                fields,
                columns,
                snippet_chars: search.snippet_chars,
                title_boost: search.title_boost,
                bm25: Bm25Params {
                    k1: search.bm25_k1,
                    b: search.bm25_b,
                },
            }),
            writes: Arc::new(writes),
        })
    }

    /// Segments whose id columns are cached (one per live segment, see [`columns`]).
    pub fn id_column_segments(&self) -> usize {
        self.inner.columns.segments()
    }

    /// Segments whose id columns a search had to build itself since the index opened (each
    /// commit builds them before searches see the segment; see [`columns`]).
    pub fn columns_built_by_searches(&self) -> u64 {
        self.inner.columns.built_by_searches()
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, TextError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, TextError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(TextError::from_join)?
    }

    /// [`TantivyIndex::blocking`] for writes: on the writer threads ([`writers`]).
    async fn writing<T, F>(&self, f: F) -> Result<T, TextError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, TextError> + Send + 'static,
    {
        let inner = self.inner.clone();
        self.writes.run(move || f(&inner)).await
    }
}

impl TantivyIndex {
    /// Replaces the chunks of several documents (tenant, document id, chunks) in one commit.
    pub(crate) async fn replace_many(
        &self,
        documents: Vec<(String, String, Vec<Chunk>)>,
    ) -> Result<(), TextError> {
        let documents: Vec<(String, Vec<Chunk>)> = documents
            .into_iter()
            .map(|(tenant, document_id, chunks)| (doc_key(&tenant, &document_id), chunks))
            .collect();
        self.writing(move |inner| inner.write_many(&documents))
            .await
    }

    /// (chunk id, chunk text) of every chunk held for one document of a tenant.
    pub(crate) async fn document_chunks(
        &self,
        tenant: &str,
        document_id: &str,
    ) -> Result<Vec<(String, String)>, TextError> {
        let key = doc_key(tenant, document_id);
        self.blocking(move |inner| {
            let f = inner.fields;
            let searcher = inner.reader.searcher();
            // Chunk entries only: the document-level entry shares the key.
            let q = BooleanQuery::new(vec![
                zero_score_term(f.doc_key, &key),
                zero_score_term(f.kind, KIND_CHUNK),
            ]);
            let found = searcher
                .search(&q, &tantivy::collector::DocSetCollector)
                .map_err(index_err)?;
            found
                .into_iter()
                .map(|address| {
                    let d: TantivyDocument = searcher.doc(address).map_err(index_err)?;
                    let text = |field| {
                        d.get_first(field)
                            .and_then(|v| v.as_str())
                            .unwrap_or_default()
                            .to_string()
                    };
                    let lang = search::entry_lang(&d, f.lang);
                    Ok((text(f.chunk_id), text(f.body[lang.index()])))
                })
                .collect()
        })
        .await
    }
}

#[tonic::async_trait]
impl TextIndex for TantivyIndex {
    async fn replace_document(
        &self,
        tenant: &str,
        document_id: &str,
        chunks: Vec<Chunk>,
    ) -> Result<u32, TextError> {
        let key = doc_key(tenant, document_id);
        let n = chunks.len() as u32;
        self.writing(move |inner| inner.write(&key, &chunks))
            .await?;
        Ok(n)
    }

    async fn delete_document(&self, tenant: &str, document_id: &str) -> Result<u32, TextError> {
        let key = doc_key(tenant, document_id);
        self.writing(move |inner| {
            let n = inner.count_document(&key)?;
            inner.write(&key, &[])?;
            Ok(n)
        })
        .await
    }

    async fn search(&self, query: TextQuery) -> Result<Vec<ChunkHit>, TextError> {
        self.blocking(move |inner| inner.search(&query)).await
    }

    async fn fetch(
        &self,
        tenant: &str,
        query: &str,
        chunk_ids: Vec<String>,
    ) -> Result<Vec<ChunkHit>, TextError> {
        let (tenant, query) = (tenant.to_string(), query.to_string());
        self.blocking(move |inner| inner.fetch(&tenant, &query, &chunk_ids))
            .await
    }

    async fn check(&self) -> Result<(), TextError> {
        // The searcher must be obtainable and the directory present.
        let _ = self.inner.reader.searcher();
        Ok(())
    }
}
