//! Tantivy implementation of [`TextIndex`]: one index directory holding two kinds of entries
//! (`kind`): every chunk (`title`, `body`), and one entry per document (`doc_title`,
//! `doc_body` = the whole text, see [`document_text`]), all with English analysis
//! ([`crate::analysis`]). A search ranks documents by BM25 over the document entries, summed
//! over title (boosted) and body with k1/b from config ([`crate::bm25`]), then picks each
//! document's best chunk for the snippet and text with a chunk-level query restricted to those
//! documents. Exact-match `tenant` and `meta` (`key\x1fvalue`) fields and the document's ACL
//! (`acl_clearance`, `acl_group`) are on both kinds, and both queries add the same zero-score
//! filter clauses ([`filter_clauses`]), so `top_k` counts only visible documents. Writes take
//! the single writer, commit, and reload the reader, all on the blocking pool.

use std::ops::Bound;
use std::sync::{Arc, Mutex};

use braid_core::auth::{Access, chunks_acl};
use braid_proto::tonic;
use braid_proto::v1::{Chunk, ChunkHit};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{
    BooleanQuery, BoostQuery, ConstScoreQuery, EmptyQuery, Occur, PhraseQuery, Query, RangeQuery,
    TermQuery, TermSetQuery,
};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TantivyDocument,
    TextFieldIndexing, TextOptions, Value,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, Term, doc};

use crate::analysis;
use crate::bm25::{Bm25Params, Bm25TermQuery};
use crate::config::{IndexConfig, SearchConfig};
use crate::document_text::document_text;
use crate::error::TextError;
use crate::filter;
use crate::index::{TextIndex, TextQuery};

const SEP: char = '\u{1f}';
/// The `acl_group` term of a chunk whose document has no groups (visible to every group).
/// Group names cannot contain control characters, so no real group collides with it.
const NO_GROUPS: &str = "\u{1f}none";
/// `kind` of a chunk entry and of a document entry.
const KIND_CHUNK: &str = "chunk";
const KIND_DOCUMENT: &str = "document";
/// The chunk query that picks each ranked document's best chunk first asks for this many
/// chunks per document; documents left without one are then looked up one by one.
const CHUNKS_PER_DOCUMENT: usize = 4;

#[derive(Clone, Copy)]
struct Fields {
    chunk_id: Field,
    document_id: Field,
    doc_key: Field,
    tenant: Field,
    external_id: Field,
    title: Field,
    body: Field,
    ordinal: Field,
    meta: Field,
    acl_clearance: Field,
    acl_group: Field,
    kind: Field,
    doc_title: Field,
    doc_body: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(analysis::ENGLISH)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        )
        .set_stored();
    // Document entries are only scored (bag of words): frequencies, no positions, not stored.
    let doc_text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(analysis::ENGLISH)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let fields = Fields {
        chunk_id: b.add_text_field("chunk_id", STRING | STORED),
        document_id: b.add_text_field("document_id", STRING | STORED),
        doc_key: b.add_text_field("doc_key", STRING),
        tenant: b.add_text_field("tenant", STRING),
        external_id: b.add_text_field("external_id", STORED),
        title: b.add_text_field("title", text.clone()),
        body: b.add_text_field("body", text),
        ordinal: b.add_u64_field("ordinal", STORED | INDEXED),
        meta: b.add_text_field("meta", STRING),
        acl_clearance: b.add_u64_field("acl_clearance", INDEXED | FAST),
        acl_group: b.add_text_field("acl_group", STRING),
        kind: b.add_text_field("kind", STRING),
        doc_title: b.add_text_field("doc_title", doc_text.clone()),
        doc_body: b.add_text_field("doc_body", doc_text),
    };
    (b.build(), fields)
}

fn doc_key(tenant: &str, document_id: &str) -> String {
    format!("{tenant}{SEP}{document_id}")
}

struct Inner {
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    /// Writes added to the writer so far (bumped under the writer lock).
    added: std::sync::atomic::AtomicU64,
    /// Writes made durable and visible by a commit (group commit, see `Inner::write`).
    committed: Mutex<u64>,
    fields: Fields,
    snippet_chars: usize,
    title_boost: f32,
    bm25: Bm25Params,
}

/// Cheap to clone; clones share the index.
#[derive(Clone)]
pub struct TantivyIndex {
    inner: Arc<Inner>,
}

fn index_err(e: impl std::fmt::Display) -> TextError {
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
                // text to the wrong callers) or before document entries and English analysis
                // (its documents could not be ranked): rebuilding is the only correct way.
                return Err(TextError::Index(format!(
                    "the text index in {} was written by another Braid version (its schema \
                     differs, e.g. no document ACL fields or no document-level entries): stop \
                     the service, remove that directory and re-ingest the documents to rebuild \
                     it",
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
        // documents arrive a few at a time, so one thread is the default.
        let writer = index
            .writer_with_num_threads(config.writer_threads, config.writer_memory_mb * 1024 * 1024)
            .map_err(index_err)?;
        Ok(Self {
            inner: Arc::new(Inner {
                index,
                reader,
                writer: Mutex::new(writer),
                added: std::sync::atomic::AtomicU64::new(0),
                committed: Mutex::new(0),
                fields,
                snippet_chars: search.snippet_chars,
                title_boost: search.title_boost,
                bm25: Bm25Params {
                    k1: search.bm25_k1,
                    b: search.bm25_b,
                },
            }),
        })
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, TextError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, TextError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| TextError::Task(e.to_string()))?
    }
}

impl Inner {
    /// Chunks of document `key`.
    fn count_document(&self, key: &str) -> Result<u32, TextError> {
        let f = self.fields;
        let searcher = self.reader.searcher();
        let term = |field: Field, value: &str| -> (Occur, Box<dyn Query>) {
            let t = Term::from_field_text(field, value);
            (
                Occur::Must,
                Box::new(TermQuery::new(t, IndexRecordOption::Basic)),
            )
        };
        let q = BooleanQuery::new(vec![term(f.doc_key, key), term(f.kind, KIND_CHUNK)]);
        Ok(searcher.search(&q, &Count).map_err(index_err)? as u32)
    }

    /// Deletes `key`, adds `chunks`, and returns once a commit made the result durable and
    /// visible. Group commit: concurrent writers queue behind one commit, and whoever gets
    /// the commit lock commits everything added so far, so N concurrent writes cost about
    /// one commit instead of N (a Tantivy commit is the expensive part).
    fn write(&self, key: &str, chunks: &[Chunk]) -> Result<(), TextError> {
        let mine = self.add(key, chunks)?;
        self.commit_upto(mine)
    }

    /// [`Inner::write`] for several documents under one commit (rebuilds).
    fn write_many(&self, documents: &[(String, Vec<Chunk>)]) -> Result<(), TextError> {
        let mut mine = 0;
        for (key, chunks) in documents {
            mine = self.add(key, chunks)?;
        }
        self.commit_upto(mine)
    }

    /// Returns once a commit covered the write with sequence number `mine`.
    fn commit_upto(&self, mine: u64) -> Result<(), TextError> {
        use std::sync::atomic::Ordering;
        let mut committed = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        if *committed >= mine {
            return Ok(()); // a commit that started after our add covered it
        }
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let upto = self.added.load(Ordering::SeqCst);
        writer.commit().map_err(index_err)?;
        drop(writer);
        self.reader.reload().map_err(index_err)?;
        *committed = upto;
        Ok(())
    }

    /// Stages the replacement in the writer; returns its sequence number.
    fn add(&self, key: &str, chunks: &[Chunk]) -> Result<u64, TextError> {
        let f = self.fields;
        let acl = chunks_acl(chunks).map_err(TextError::from)?;
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        writer.delete_term(Term::from_field_text(f.doc_key, key));
        for c in chunks {
            let mut d = doc!(
                f.chunk_id => c.chunk_id.as_str(),
                f.document_id => c.document_id.as_str(),
                f.doc_key => key,
                f.tenant => c.tenant.as_str(),
                f.external_id => c.external_id.as_str(),
                f.title => c.title.as_str(),
                f.body => c.text.as_str(),
                f.ordinal => c.ordinal as u64,
                f.kind => KIND_CHUNK,
            );
            add_filter_fields(&f, &mut d, &c.metadata, &acl);
            writer.add_document(d).map_err(index_err)?;
        }
        if let Some(first) = chunks.iter().min_by_key(|c| c.ordinal) {
            let mut d = doc!(
                f.document_id => first.document_id.as_str(),
                f.doc_key => key,
                f.tenant => first.tenant.as_str(),
                f.external_id => first.external_id.as_str(),
                f.doc_title => first.title.as_str(),
                f.doc_body => document_text(chunks),
                f.kind => KIND_DOCUMENT,
            );
            add_filter_fields(&f, &mut d, &first.metadata, &acl);
            writer.add_document(d).map_err(index_err)?;
        }
        Ok(self.added.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1)
    }

    /// The scoring part of a search, built from the analyzed terms of the user's text, which
    /// is never parsed as query syntax (`title:x`, `"`, `(`, `AND`, `*` are just text). Each
    /// whitespace-separated word is run through the field's own tokenizer: one token gives a
    /// `TermQuery`, several (`e-mail`, `COVID-19`) a `PhraseQuery` over them; every word is a
    /// `Should` clause in both `title` (boosted) and `body`. That is what Tantivy's query
    /// parser builds for plain words, so BM25 scores of plain queries are unchanged.
    fn text_query(&self, text: &str) -> Result<Box<dyn Query>, TextError> {
        let f = self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (field, boost) in [(f.title, self.title_boost), (f.body, 1.0)] {
            let mut analyzer = self.index.tokenizer_for_field(field).map_err(index_err)?;
            for word in text.split_whitespace() {
                let mut terms: Vec<(usize, Term)> = Vec::new();
                let mut stream = analyzer.token_stream(word);
                while let Some(token) = stream.next() {
                    terms.push((token.position, Term::from_field_text(field, &token.text)));
                }
                let query: Box<dyn Query> = match terms.len() {
                    0 => continue,
                    1 => Box::new(TermQuery::new(
                        terms.remove(0).1,
                        IndexRecordOption::WithFreqs,
                    )),
                    _ => Box::new(PhraseQuery::new_with_offset(terms)),
                };
                let query: Box<dyn Query> = if boost == 1.0 {
                    query
                } else {
                    Box::new(BoostQuery::new(query, boost))
                };
                clauses.push((Occur::Should, query));
            }
        }
        if clauses.is_empty() {
            return Ok(Box::new(EmptyQuery));
        }
        Ok(Box::new(BooleanQuery::new(clauses)))
    }

    /// The document-level BM25 query: the analyzed query terms (bag of words, a repeated
    /// term counts once per occurrence, as Anserini's bag-of-words query does) scored in
    /// `doc_title` (boosted) and `doc_body`, summed.
    fn document_query(&self, text: &str) -> Result<Box<dyn Query>, TextError> {
        let f = self.fields;
        let population = Term::from_field_text(f.kind, KIND_DOCUMENT);
        let mut counts: Vec<(String, f32)> = Vec::new();
        let mut analyzer = self
            .index
            .tokenizer_for_field(f.doc_body)
            .map_err(index_err)?;
        let mut stream = analyzer.token_stream(text);
        while let Some(token) = stream.next() {
            match counts.iter_mut().find(|(t, _)| *t == token.text) {
                Some((_, n)) => *n += 1.0,
                None => counts.push((token.text.clone(), 1.0)),
            }
        }
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (field, boost) in [(f.doc_title, self.title_boost), (f.doc_body, 1.0)] {
            for (text, n) in &counts {
                let term = Term::from_field_text(field, text);
                let q = Bm25TermQuery::new(term, population.clone(), self.bm25, boost * n);
                clauses.push((Occur::Should, Box::new(q)));
            }
        }
        if clauses.is_empty() {
            return Ok(Box::new(EmptyQuery));
        }
        Ok(Box::new(BooleanQuery::new(clauses)))
    }

    /// Documents ranked by [`Self::document_query`], each represented by its best chunk; or
    /// with `chunk_level`, chunks ranked by their own BM25.
    fn search(&self, q: &TextQuery) -> Result<Vec<ChunkHit>, TextError> {
        let f = self.fields;
        let searcher = self.reader.searcher();
        if q.chunk_level {
            let text_query = self.text_query(&q.query)?;
            let mut clauses = vec![
                (Occur::Must, text_query.box_clone()),
                zero_score_term(f.kind, KIND_CHUNK),
            ];
            clauses.extend(filter_clauses(&f, q));
            let mut top = searcher
                .search(
                    &BooleanQuery::new(clauses),
                    &TopDocs::with_limit(q.top_k as usize),
                )
                .map_err(index_err)?;
            // Best first: the threshold cuts the tail.
            if let Some(min) = q.min_score {
                top.retain(|(score, _)| *score >= min);
            }
            return self.hits(&searcher, &*text_query, &top, q.detail as usize);
        }
        let mut clauses = vec![
            (Occur::Must, self.document_query(&q.query)?),
            zero_score_term(f.kind, KIND_DOCUMENT),
        ];
        clauses.extend(filter_clauses(&f, q));
        let mut documents = searcher
            .search(
                &BooleanQuery::new(clauses),
                &TopDocs::with_limit(q.top_k as usize),
            )
            .map_err(index_err)?;
        // Best first: the threshold (on the document's BM25) cuts the tail.
        if let Some(min) = q.min_score {
            documents.retain(|(score, _)| *score >= min);
        }
        let ids = documents
            .iter()
            .map(|&(_, address)| stored_str(&searcher, address, f.document_id))
            .collect::<Result<Vec<_>, _>>()?;
        let text_query = self.text_query(&q.query)?;
        let best = self.best_chunks(&searcher, &*text_query, q, &ids)?;
        // Both queries run on one searcher (one commit), where a document entry exists
        // exactly when its chunks do; a document without a chunk is left out all the same.
        let top: Vec<(f32, DocAddress)> = documents
            .iter()
            .zip(&ids)
            .filter_map(|(&(score, _), id)| best.get(id).map(|&a| (score, a)))
            .collect();
        self.hits(&searcher, &*text_query, &top, q.detail as usize)
    }

    /// The best-scoring chunk (chunk-level BM25 of `text_query`, ties to the lower address)
    /// of each document in `ids`, under the same filters as the document query.
    fn best_chunks(
        &self,
        searcher: &Searcher,
        text_query: &dyn Query,
        q: &TextQuery,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, DocAddress>, TextError> {
        let f = self.fields;
        let mut best = std::collections::HashMap::new();
        let query_for = |ids: &[&String]| {
            let keys = ids
                .iter()
                .map(|id| Term::from_field_text(f.doc_key, &doc_key(&q.tenant, id)));
            let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![
                (
                    Occur::Must,
                    Box::new(ConstScoreQuery::new(Box::new(TermSetQuery::new(keys)), 0.0)),
                ),
                (Occur::Should, text_query.box_clone()),
                zero_score_term(f.kind, KIND_CHUNK),
            ];
            clauses.extend(filter_clauses(&f, q));
            BooleanQuery::new(clauses)
        };
        let all: Vec<&String> = ids.iter().collect();
        let limit = (ids.len() * CHUNKS_PER_DOCUMENT).max(1);
        let mut collect = |top: Vec<(f32, DocAddress)>| -> Result<(), TextError> {
            for (_, address) in top {
                let id = stored_str(searcher, address, f.document_id)?;
                best.entry(id).or_insert(address);
            }
            Ok(())
        };
        collect(
            searcher
                .search(&query_for(&all), &TopDocs::with_limit(limit))
                .map_err(index_err)?,
        )?;
        let missing: Vec<&String> = ids.iter().filter(|id| !best.contains_key(*id)).collect();
        for id in missing {
            let top = searcher
                .search(&query_for(&[id]), &TopDocs::with_limit(1))
                .map_err(index_err)?;
            if let Some(&(_, address)) = top.first() {
                best.insert(id.clone(), address);
            }
        }
        Ok(best)
    }

    /// Hits for `top`, best first: ids, title, ordinal and score for all, stored text and a
    /// snippet only for the first `detail` (0 = all): the rest rarely survive fusion, and the
    /// gateway fetches those that do (`fetch`).
    fn hits(
        &self,
        searcher: &Searcher,
        text_query: &dyn Query,
        top: &[(f32, DocAddress)],
        detail: usize,
    ) -> Result<Vec<ChunkHit>, TextError> {
        let detail = if detail == 0 { top.len() } else { detail };
        let snippets = if detail > 0 && !top.is_empty() {
            let mut g = SnippetGenerator::create(searcher, text_query, self.fields.body)
                .map_err(index_err)?;
            g.set_max_num_chars(self.snippet_chars);
            Some(g)
        } else {
            None
        };
        top.iter()
            .enumerate()
            .map(|(i, &(score, address))| {
                let with_text = if i < detail { snippets.as_ref() } else { None };
                self.hit(searcher, address, score, with_text)
            })
            .collect()
    }

    /// One stored chunk as a hit; text and snippet when `snippets` is given.
    fn hit(
        &self,
        searcher: &Searcher,
        address: DocAddress,
        score: f32,
        snippets: Option<&SnippetGenerator>,
    ) -> Result<ChunkHit, TextError> {
        let f = self.fields;
        let d: TantivyDocument = searcher.doc(address).map_err(index_err)?;
        let text = |field| {
            d.get_first(field)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let (body, snippet) = match snippets {
            Some(g) => {
                let body = text(f.body);
                let snippet = g.snippet(&body).to_html();
                (body, snippet)
            }
            None => (String::new(), String::new()),
        };
        Ok(ChunkHit {
            chunk_id: text(f.chunk_id),
            document_id: text(f.document_id),
            external_id: text(f.external_id),
            title: text(f.title),
            snippet,
            text: body,
            ordinal: d.get_first(f.ordinal).and_then(|v| v.as_u64()).unwrap_or(0) as u32,
            score,
        })
    }

    /// Text and snippet of `chunk_ids` (of `tenant` only), in the order given; unknown ids are
    /// left out. Scores are 0: the caller has them from the search.
    fn fetch(
        &self,
        tenant: &str,
        query: &str,
        chunk_ids: &[String],
    ) -> Result<Vec<ChunkHit>, TextError> {
        let f = self.fields;
        let term = |field: Field, value: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, value),
                IndexRecordOption::Basic,
            ))
        };
        let ids: Vec<(Occur, Box<dyn Query>)> = chunk_ids
            .iter()
            .map(|id| (Occur::Should, term(f.chunk_id, id)))
            .collect();
        let wanted = BooleanQuery::new(vec![
            (
                Occur::Must,
                Box::new(BooleanQuery::new(ids)) as Box<dyn Query>,
            ),
            (Occur::Must, term(f.tenant, tenant)),
        ]);
        let searcher = self.reader.searcher();
        let found = searcher
            .search(&wanted, &TopDocs::with_limit(chunk_ids.len().max(1)))
            .map_err(index_err)?;
        let text_query = self.text_query(query)?;
        let mut g = SnippetGenerator::create(&searcher, &*text_query, f.body).map_err(index_err)?;
        g.set_max_num_chars(self.snippet_chars);
        let mut by_id: std::collections::HashMap<String, ChunkHit> = found
            .into_iter()
            .map(|(_, address)| self.hit(&searcher, address, 0.0, Some(&g)))
            .map(|h| h.map(|h| (h.chunk_id.clone(), h)))
            .collect::<Result<_, _>>()?;
        Ok(chunk_ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }
}

/// A stored string field of one entry.
fn stored_str(searcher: &Searcher, address: DocAddress, field: Field) -> Result<String, TextError> {
    let d: TantivyDocument = searcher.doc(address).map_err(index_err)?;
    Ok(d.get_first(field)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string())
}

/// The filterable fields every entry (chunk or document) carries: metadata and ACL.
fn add_filter_fields(
    f: &Fields,
    d: &mut TantivyDocument,
    metadata: &std::collections::HashMap<String, String>,
    acl: &braid_proto::v1::DocumentAcl,
) {
    for term in filter::meta_terms(metadata) {
        d.add_text(f.meta, term);
    }
    d.add_u64(f.acl_clearance, u64::from(acl.clearance));
    if acl.groups.is_empty() {
        d.add_text(f.acl_group, NO_GROUPS);
    }
    for g in &acl.groups {
        d.add_text(f.acl_group, g);
    }
}

/// A zero-score Must clause: the entry has `value` in `field`.
fn zero_score_term(field: Field, value: &str) -> (Occur, Box<dyn Query>) {
    let term = TermQuery::new(
        Term::from_field_text(field, value),
        IndexRecordOption::Basic,
    );
    (
        Occur::Must,
        Box::new(ConstScoreQuery::new(Box::new(term), 0.0)),
    )
}

/// Every filter of `q` as zero-score Must clauses: tenant, metadata, the caller's access.
/// Both the document and the chunk query take exactly these.
fn filter_clauses(f: &Fields, q: &TextQuery) -> Vec<(Occur, Box<dyn Query>)> {
    let mut clauses = vec![zero_score_term(f.tenant, &q.tenant)];
    clauses.extend(filter::filter_clauses(f.meta, &q.filter));
    clauses.extend(access_clauses(f, &q.access));
    clauses
}

/// Zero-score Must clauses admitting only chunks `access` may see: clearance at most the
/// caller's, and no groups or one of the caller's. Nothing for unrestricted access.
fn access_clauses(f: &Fields, access: &Access) -> Vec<(Occur, Box<dyn Query>)> {
    if access.unrestricted {
        return Vec::new();
    }
    let clearance = RangeQuery::new(
        Bound::Unbounded,
        Bound::Included(Term::from_field_u64(
            f.acl_clearance,
            u64::from(access.clearance),
        )),
    );
    let groups = TermSetQuery::new(
        std::iter::once(NO_GROUPS)
            .chain(access.groups.iter().map(String::as_str))
            .map(|g| Term::from_field_text(f.acl_group, g)),
    );
    let zero = |q: Box<dyn Query>| -> (Occur, Box<dyn Query>) {
        (Occur::Must, Box::new(ConstScoreQuery::new(q, 0.0)))
    };
    vec![zero(Box::new(clearance)), zero(Box::new(groups))]
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
        self.blocking(move |inner| inner.write_many(&documents))
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
                    Ok((text(f.chunk_id), text(f.body)))
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
        self.blocking(move |inner| inner.write(&key, &chunks))
            .await?;
        Ok(n)
    }

    async fn delete_document(&self, tenant: &str, document_id: &str) -> Result<u32, TextError> {
        let key = doc_key(tenant, document_id);
        self.blocking(move |inner| {
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use braid_proto::v1::DocumentAcl;

    use super::*;

    fn chunk(tenant: &str, doc: &str, ordinal: u32, title: &str, text: &str) -> Chunk {
        Chunk {
            acl: None,
            chunk_id: format!("{doc}:{ordinal}"),
            document_id: doc.into(),
            tenant: tenant.into(),
            external_id: format!("ext-{doc}"),
            title: title.into(),
            text: text.into(),
            ordinal,
            metadata: HashMap::from([("lang".to_string(), "en".to_string())]),
        }
    }

    fn query(tenant: &str, q: &str) -> TextQuery {
        TextQuery {
            tenant: tenant.into(),
            query: q.into(),
            top_k: 10,
            filter: braid_core::filter::Filter::default(),
            min_score: None,
            access: Access::unrestricted(),
            detail: 0,
            chunk_level: false,
        }
    }

    fn test_search() -> SearchConfig {
        SearchConfig {
            snippet_chars: 120,
            title_boost: 1.5,
            ..SearchConfig::default()
        }
    }

    fn test_config(dir: &std::path::Path) -> IndexConfig {
        IndexConfig {
            dir: dir.to_path_buf(),
            writer_memory_mb: 20,
            writer_threads: 1,
        }
    }

    #[tokio::test]
    async fn bm25_filters_replace_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let idx = TantivyIndex::open(&test_config(dir.path()), &test_search()).unwrap();
        idx.replace_document(
            "t1",
            "d1",
            vec![chunk(
                "t1",
                "d1",
                0,
                "Rust",
                "ownership and borrowing in Rust programs",
            )],
        )
        .await
        .unwrap();
        idx.replace_document(
            "t1",
            "d2",
            vec![chunk(
                "t1",
                "d2",
                0,
                "Gardening",
                "tomatoes need sun and water",
            )],
        )
        .await
        .unwrap();
        idx.replace_document(
            "t2",
            "d3",
            vec![chunk("t2", "d3", 0, "Rust", "borrowing rules")],
        )
        .await
        .unwrap();

        let hits = idx.search(query("t1", "borrowed")).await.unwrap();
        assert_eq!(
            hits.len(),
            1,
            "stemming matches borrowed ~ borrowing; tenant t2 excluded"
        );
        assert_eq!(hits[0].document_id, "d1");
        assert!(hits[0].snippet.contains("<b>"), "{}", hits[0].snippet);

        let mut q = query("t1", "tomatoes");
        q.filter = braid_core::filter::parse(Some(&braid_proto::v1::MetadataFilter {
            equals: HashMap::from([("lang".into(), "de".into())]),
            ..Default::default()
        }))
        .unwrap();
        assert!(
            idx.search(q).await.unwrap().is_empty(),
            "metadata filter applies"
        );

        // Replacing swaps the chunks; nothing of the old text remains.
        idx.replace_document("t1", "d1", vec![chunk("t1", "d1", 0, "Rust", "lifetimes")])
            .await
            .unwrap();
        assert!(
            idx.search(query("t1", "borrowing"))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(idx.search(query("t1", "lifetimes")).await.unwrap().len(), 1);

        assert_eq!(idx.delete_document("t1", "d1").await.unwrap(), 1);
        assert!(
            idx.search(query("t1", "lifetimes"))
                .await
                .unwrap()
                .is_empty()
        );
        // Odd query syntax is not an error.
        assert!(idx.search(query("t1", "\"unbalanced AND (")).await.is_ok());
    }

    fn acl(clearance: u32, groups: &[&str]) -> Option<DocumentAcl> {
        Some(DocumentAcl {
            clearance,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        })
    }

    fn access(clearance: u32, groups: &[&str]) -> Access {
        Access {
            tenant: None,
            clearance,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            unrestricted: false,
        }
    }

    async fn ids(idx: &TantivyIndex, text: &str, access: Access) -> Vec<String> {
        let mut q = query("t", text);
        q.access = access;
        let mut ids: Vec<String> = idx
            .search(q)
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.document_id)
            .collect();
        ids.sort();
        ids
    }

    #[tokio::test]
    async fn access_applies_clearance_and_groups_inside_the_query() {
        let dir = tempfile::tempdir().unwrap();
        let idx = TantivyIndex::open(&test_config(dir.path()), &test_search()).unwrap();
        let docs = [
            ("public", None),
            ("c2", acl(2, &[])),
            ("c3", acl(3, &[])),
            ("physics", acl(0, &["physics"])),
            ("physics-or-chem-c2", acl(2, &["physics", "chem"])),
        ];
        for (id, a) in docs {
            let mut c = chunk("t", id, 0, "", "neutron stars");
            c.acl = a;
            idx.replace_document("t", id, vec![c]).await.unwrap();
        }
        // Clearance below, at and above the documents' levels; no groups.
        assert_eq!(ids(&idx, "neutron", access(1, &[])).await, ["public"]);
        assert_eq!(ids(&idx, "neutron", access(2, &[])).await, ["c2", "public"]);
        assert_eq!(
            ids(&idx, "neutron", access(3, &[])).await,
            ["c2", "c3", "public"]
        );
        // A shared group admits; another group does not; both rules must hold.
        assert_eq!(
            ids(&idx, "neutron", access(0, &["physics"])).await,
            ["physics", "public"]
        );
        assert_eq!(
            ids(&idx, "neutron", access(5, &["biology"])).await,
            ["c2", "c3", "public"]
        );
        assert_eq!(
            ids(&idx, "neutron", access(2, &["chem"])).await,
            ["c2", "physics-or-chem-c2", "public"]
        );
        // Unrestricted sees everything; an unset AccessFilter is public documents only.
        assert_eq!(ids(&idx, "neutron", Access::unrestricted()).await.len(), 5);
        assert_eq!(
            ids(&idx, "neutron", braid_core::auth::access_from_filter(None)).await,
            ["public"]
        );
    }

    #[tokio::test]
    async fn top_k_is_filled_with_visible_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let idx = TantivyIndex::open(&test_config(dir.path()), &test_search()).unwrap();
        // 20 restricted documents match the query far better than the 5 public ones.
        for i in 0..20 {
            let id = format!("secret{i:02}");
            let mut c = chunk("t", &id, 0, "quasar", "quasar quasar quasar jets");
            c.acl = acl(3, &["astro"]);
            idx.replace_document("t", &id, vec![c]).await.unwrap();
        }
        for i in 0..5 {
            let id = format!("public{i}");
            let c = chunk(
                "t",
                &id,
                0,
                "",
                &format!("a long note {i} that mentions a quasar once among many other words"),
            );
            idx.replace_document("t", &id, vec![c]).await.unwrap();
        }
        let mut q = query("t", "quasar");
        q.top_k = 5;
        q.access = access(1, &["physics"]);
        let hits = idx.search(q.clone()).await.unwrap();
        let mut got: Vec<&str> = hits.iter().map(|h| h.document_id.as_str()).collect();
        got.sort();
        assert_eq!(got, ["public0", "public1", "public2", "public3", "public4"]);
        q.access = Access::unrestricted();
        let hits = idx.search(q).await.unwrap();
        assert!(
            hits.iter().all(|h| h.document_id.starts_with("secret")),
            "the restricted documents do rank first for a caller who may see them"
        );
    }

    #[tokio::test]
    async fn query_syntax_typed_by_a_user_is_just_text() {
        let dir = tempfile::tempdir().unwrap();
        let idx = TantivyIndex::open(&test_config(dir.path()), &test_search()).unwrap();
        idx.replace_document(
            "t",
            "d1",
            vec![chunk(
                "t",
                "d1",
                0,
                "Notes",
                "notes on title rust and the e-mail policy",
            )],
        )
        .await
        .unwrap();
        idx.replace_document(
            "t",
            "d2",
            vec![chunk("t", "d2", 0, "Other", "nothing relevant here")],
        )
        .await
        .unwrap();
        // As query syntax these would be a field query, a prohibited term, a range, a
        // phrase prefix, a boost or a syntax error; as text they are words.
        for (q, hits) in [
            // Field syntax: the words are words in any field, not a field query (as one,
            // `title:rust` would find nothing; `body:nothing` finds d2 by the word
            // "nothing", not by a field query on `body`).
            ("title:rust", 1),
            ("body:nothing", 1),
            ("-rust", 1),
            ("policy^", 1),
            ("[a TO z]", 0),
            ("\"e-mail", 1),
            ("(((", 0),
            ("*", 0),
            // English stop words only: nothing left to match.
            ("AND OR NOT", 0),
            ("日本語 🦀", 0),
        ] {
            let found = idx.search(query("t", q)).await.unwrap();
            assert_eq!(found.len(), hits, "{q}: {found:?}");
        }
        // `-rust` excludes nothing: as text it finds the document about rust.
        assert_eq!(
            idx.search(query("t", "-rust")).await.unwrap()[0].document_id,
            "d1"
        );
    }

    #[tokio::test]
    async fn chunks_of_one_document_must_share_its_acl() {
        let dir = tempfile::tempdir().unwrap();
        let idx = TantivyIndex::open(&test_config(dir.path()), &test_search()).unwrap();
        let a = chunk("t", "d", 0, "", "one");
        let mut b = chunk("t", "d", 1, "", "two");
        b.acl = acl(1, &[]);
        let err = idx
            .replace_document("t", "d", vec![a, b])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("chunks[1].acl"), "{err}");
    }

    #[test]
    fn an_index_without_acl_fields_is_refused_with_a_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut old = Schema::builder();
        old.add_text_field("chunk_id", STRING | STORED);
        Index::create_in_dir(dir.path(), old.build()).unwrap();
        let err = TantivyIndex::open(&test_config(dir.path()), &test_search())
            .err()
            .expect("an index with another schema must not open")
            .to_string();
        assert!(
            err.contains("remove that directory") && err.contains("re-ingest"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn plain_queries_score_as_the_query_parser_did() {
        let dir = tempfile::tempdir().unwrap();
        let idx = TantivyIndex::open(&test_config(dir.path()), &test_search()).unwrap();
        let texts = [
            (
                "Rust ownership",
                "ownership and borrowing in rust programs, e-mail rust",
            ),
            ("Gardening", "tomatoes need sun and water; rust on leaves"),
            ("Mail", "the e-mail server sends mail about borrowing"),
        ];
        for (i, (title, body)) in texts.iter().enumerate() {
            let d = format!("d{i}");
            idx.replace_document("t", &d, vec![chunk("t", &d, 0, title, body)])
                .await
                .unwrap();
        }
        let inner = &idx.inner;
        let mut parser = tantivy::query::QueryParser::for_index(
            &inner.index,
            vec![inner.fields.title, inner.fields.body],
        );
        parser.set_field_boost(inner.fields.title, inner.title_boost);
        let searcher = inner.reader.searcher();
        for q in [
            "rust borrowing",
            "e-mail rust",
            "tomatoes water sun",
            "Rust, ownership.",
        ] {
            let (parsed, errors) = parser.parse_query_lenient(q);
            assert!(errors.is_empty(), "{q}");
            let ours = inner.text_query(q).unwrap();
            let top = |query: &dyn Query| {
                searcher
                    .search(query, &TopDocs::with_limit(10))
                    .unwrap()
                    .into_iter()
                    .map(|(score, a)| (a, score))
                    .collect::<Vec<_>>()
            };
            let (want, got) = (top(&*parsed), top(&*ours));
            assert_eq!(want.len(), got.len(), "{q}");
            for ((wa, ws), (ga, gs)) in want.iter().zip(&got) {
                assert_eq!(wa, ga, "{q}");
                assert!((ws - gs).abs() < 1e-5, "{q}: {ws} vs {gs}");
            }
        }
    }

    #[tokio::test]
    async fn text_only_for_the_detail_hits_and_fetch_fills_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let idx = TantivyIndex::open(&test_config(dir.path()), &test_search()).unwrap();
        for (i, words) in ["comet comet comet tail", "comet comet orbit", "comet dust"]
            .iter()
            .enumerate()
        {
            let d = format!("d{i}");
            idx.replace_document("t", &d, vec![chunk("t", &d, 0, "", words)])
                .await
                .unwrap();
        }
        idx.replace_document("u", "x", vec![chunk("u", "x", 0, "", "comet")])
            .await
            .unwrap();
        let mut q = query("t", "comet");
        q.detail = 1;
        let hits = idx.search(q.clone()).await.unwrap();
        assert_eq!(hits.len(), 3);
        assert!(hits[0].snippet.contains("<b>comet</b>"), "{hits:?}");
        assert_eq!(hits[0].text, "comet comet comet tail");
        for h in &hits[1..] {
            assert!(h.text.is_empty() && h.snippet.is_empty(), "{h:?}");
            assert!(!h.chunk_id.is_empty() && !h.document_id.is_empty() && h.score > 0.0);
        }
        q.detail = 0;
        let full = idx.search(q).await.unwrap();
        let ids: Vec<_> = full.iter().map(|h| h.chunk_id.clone()).collect();
        assert_eq!(
            ids,
            hits.iter().map(|h| h.chunk_id.clone()).collect::<Vec<_>>()
        );

        // Fetch: in the order asked, other tenants' and unknown ids left out.
        let wanted = vec![ids[2].clone(), "nope".into(), "x:0".into(), ids[1].clone()];
        let fetched = idx.fetch("t", "comet", wanted).await.unwrap();
        assert_eq!(fetched.len(), 2, "{fetched:?}");
        assert_eq!(fetched[0].chunk_id, ids[2]);
        assert_eq!(fetched[0].text, full[2].text);
        assert_eq!(fetched[0].snippet, full[2].snippet);
        assert_eq!(fetched[1].text, full[1].text);
        assert!(fetched[1].snippet.contains("<b>comet</b>"));
    }

    #[tokio::test]
    async fn documents_rank_on_their_whole_text_and_show_their_best_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let idx = TantivyIndex::open(&test_config(dir.path()), &test_search()).unwrap();
        // `long`: the two query words in different chunks; `short`: one word, in a tiny
        // chunk that outscores either chunk of `long` on its own.
        let long = vec![
            chunk(
                "t",
                "long",
                0,
                "",
                "quasar jets seen from far away in the survey",
            ),
            chunk(
                "t",
                "long",
                1,
                "",
                "away in the survey a bright magnetar flared",
            ),
        ];
        idx.replace_document("t", "long", long).await.unwrap();
        idx.replace_document("t", "short", vec![chunk("t", "short", 0, "", "quasar")])
            .await
            .unwrap();
        let hits = idx.search(query("t", "quasar magnetar")).await.unwrap();
        let docs: Vec<&str> = hits.iter().map(|h| h.document_id.as_str()).collect();
        assert_eq!(docs, ["long", "short"], "{hits:?}");
        assert_eq!(hits.len(), 2, "one hit per document");
        assert!(hits[0].snippet.contains("<b>"), "{hits:?}");

        // Chunk level: each matching chunk on its own; the tiny chunk ranks first.
        let mut q = query("t", "quasar magnetar");
        q.chunk_level = true;
        let chunks = idx.search(q).await.unwrap();
        let ids: Vec<&str> = chunks.iter().map(|h| h.chunk_id.as_str()).collect();
        assert_eq!(ids.len(), 3, "{ids:?}");
        assert_eq!(ids[0], "short:0", "{chunks:?}");

        // The document entry follows replaces and deletes like its chunks.
        idx.replace_document("t", "long", vec![chunk("t", "long", 0, "", "nothing")])
            .await
            .unwrap();
        let hits = idx.search(query("t", "magnetar")).await.unwrap();
        assert!(hits.is_empty(), "{hits:?}");
        assert_eq!(idx.delete_document("t", "short").await.unwrap(), 1);
        assert!(idx.search(query("t", "quasar")).await.unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_share_commits_and_every_one_is_visible_on_return() {
        let dir = tempfile::tempdir().unwrap();
        let idx = TantivyIndex::open(&test_config(dir.path()), &test_search()).unwrap();
        let writes = (0..24).map(|i| {
            let idx = idx.clone();
            async move {
                let doc = format!("d{i}");
                idx.replace_document(
                    "t",
                    &doc,
                    vec![chunk("t", &doc, 0, "", &format!("word{i} shared"))],
                )
                .await
                .unwrap();
                // Visible as soon as the call returns, whoever committed it.
                let hits = idx.search(query("t", &format!("word{i}"))).await.unwrap();
                assert_eq!(hits.len(), 1, "d{i} not visible after its write returned");
            }
        });
        futures::future::join_all(writes).await;
        let mut q = query("t", "shared");
        q.top_k = 100;
        assert_eq!(idx.search(q).await.unwrap().len(), 24);
        let committed = *idx.inner.committed.lock().unwrap();
        assert_eq!(committed, 24, "every write was covered by a commit");
    }
}
