//! Tantivy implementation of [`TextIndex`]: one index directory, chunks as documents with
//! English-stemmed `title` and `body` fields scored by BM25, exact-match `tenant` and `meta`
//! (`key\x1fvalue`) fields used as zero-score filters inside the query. Writes take the single
//! writer, commit, and reload the reader, all on the blocking pool.

use std::sync::{Arc, Mutex};

use braid_proto::tonic;
use braid_proto::v1::{Chunk, ChunkHit};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{BooleanQuery, ConstScoreQuery, Occur, Query, QueryParser, TermQuery};
use tantivy::schema::{
    Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TantivyDocument, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, Term, doc};

use crate::config::IndexConfig;
use crate::error::TextError;
use crate::index::{TextIndex, TextQuery};

const SEP: char = '\u{1f}';

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
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("en_stem")
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        )
        .set_stored();
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
    };
    (b.build(), fields)
}

fn doc_key(tenant: &str, document_id: &str) -> String {
    format!("{tenant}{SEP}{document_id}")
}

struct Inner {
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    /// Writes added to the writer so far (bumped under the writer lock).
    added: std::sync::atomic::AtomicU64,
    /// Writes made durable and visible by a commit (group commit, see `Inner::write`).
    committed: Mutex<u64>,
    fields: Fields,
    /// Built once: a parser per query (tokenizer manager clone, field boosts) was a
    /// measurable share of a BM25 query's CPU.
    parser: QueryParser,
    snippet_chars: usize,
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
    pub fn open(
        config: &IndexConfig,
        snippet_chars: usize,
        title_boost: f32,
    ) -> Result<Self, TextError> {
        let dir = config.dir.as_path();
        let (schema, fields) = schema();
        std::fs::create_dir_all(dir).map_err(index_err)?;
        let index = if dir.join("meta.json").exists() {
            let index = Index::open_in_dir(dir).map_err(index_err)?;
            if index.schema() != schema {
                return Err(TextError::Index(format!(
                    "index in {} has a different schema; remove it to rebuild",
                    dir.display()
                )));
            }
            index
        } else {
            Index::create_in_dir(dir, schema).map_err(index_err)?
        };
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
        let mut parser = QueryParser::for_index(&index, vec![fields.title, fields.body]);
        parser.set_field_boost(fields.title, title_boost);
        Ok(Self {
            inner: Arc::new(Inner {
                reader,
                writer: Mutex::new(writer),
                added: std::sync::atomic::AtomicU64::new(0),
                committed: Mutex::new(0),
                fields,
                parser,
                snippet_chars,
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
    fn count_document(&self, key: &str) -> Result<u32, TextError> {
        let searcher = self.reader.searcher();
        let q = TermQuery::new(
            Term::from_field_text(self.fields.doc_key, key),
            IndexRecordOption::Basic,
        );
        Ok(searcher.search(&q, &Count).map_err(index_err)? as u32)
    }

    /// Deletes `key`, adds `chunks`, and returns once a commit made the result durable and
    /// visible. Group commit: concurrent writers queue behind one commit, and whoever gets
    /// the commit lock commits everything added so far, so N concurrent writes cost about
    /// one commit instead of N (a Tantivy commit is the expensive part).
    fn write(&self, key: &str, chunks: &[Chunk]) -> Result<(), TextError> {
        use std::sync::atomic::Ordering;
        let mine = self.add(key, chunks)?;
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
            );
            for (k, v) in &c.metadata {
                d.add_text(f.meta, format!("{k}{SEP}{v}"));
            }
            writer.add_document(d).map_err(index_err)?;
        }
        Ok(self.added.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1)
    }

    fn search(&self, q: &TextQuery) -> Result<Vec<ChunkHit>, TextError> {
        let f = self.fields;
        // Lenient: user text is never a syntax error; unparsable parts are dropped.
        let (text_query, _ignored) = self.parser.parse_query_lenient(&q.query);
        let filter = |field: Field, value: &str| -> (Occur, Box<dyn Query>) {
            let term = TermQuery::new(
                Term::from_field_text(field, value),
                IndexRecordOption::Basic,
            );
            (
                Occur::Must,
                Box::new(ConstScoreQuery::new(Box::new(term), 0.0)),
            )
        };
        let mut clauses = vec![
            (Occur::Must, text_query.box_clone()),
            filter(f.tenant, &q.tenant),
        ];
        let mut filters: Vec<_> = q.filter.iter().collect();
        filters.sort();
        for (k, v) in filters {
            clauses.push(filter(f.meta, &format!("{k}{SEP}{v}")));
        }
        let query = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let top = searcher
            .search(&query, &TopDocs::with_limit(q.top_k as usize))
            .map_err(index_err)?;
        self.hits(&searcher, &*text_query, &top, q.detail as usize)
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
        let (text_query, _ignored) = self.parser.parse_query_lenient(query);
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
            filter: HashMap::new(),
            detail: 0,
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
        let idx = TantivyIndex::open(&test_config(dir.path()), 120, 1.5).unwrap();
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
        q.filter.insert("lang".into(), "de".into());
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

    #[tokio::test]
    async fn text_only_for_the_detail_hits_and_fetch_fills_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let idx = TantivyIndex::open(&test_config(dir.path()), 120, 1.5).unwrap();
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_share_commits_and_every_one_is_visible_on_return() {
        let dir = tempfile::tempdir().unwrap();
        let idx = TantivyIndex::open(&test_config(dir.path()), 120, 1.5).unwrap();
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
