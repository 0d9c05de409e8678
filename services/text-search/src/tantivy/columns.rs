//! Per-segment id columns: the document key (`doc_key`) of every entry of a segment, and the
//! chunk entries of every key, read once per segment from the `doc_key` and `kind` postings;
//! the segment's tenants with their BM25 statistics ([`SegmentTenants`]); and the block
//! summaries of the terms searches asked for ([`BlockMaxCache`]).
//! A search resolves its ranked documents' keys and their chunks from them instead of reading
//! the stored document of every candidate (the largest cost of the leg before, see
//! BENCHMARKS.md "Fast path").
//!
//! Segments are immutable: a delete only changes a segment's alive bitset, which the search
//! checks itself, so a segment's columns stay valid for as long as the segment lives. The cache
//! holds one entry per segment of the searchers in use: [`ColumnsCache::prepare`] builds the
//! new segments' columns after each commit, before the reader reload shows them to searches
//! (on a writer thread, so searches build none unless a merge lands between the two), and
//! [`ColumnsCache::warm`] forgets the segments the reloaded searcher no longer has, which
//! bounds the cache by the index's live segments (`segments()` for the gauge).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tantivy::directory::META_LOCK;
use tantivy::index::SegmentId;
use tantivy::schema::IndexRecordOption;
use tantivy::{Directory, DocId, DocSet, Index, Searcher, SegmentReader, TERMINATED, Term};

use super::blockmax::BlockMaxCache;
use super::schema::{Fields, KIND_DOCUMENT};
use super::tenants::SegmentTenants;

/// `key_of` of an entry without a document key (none is written without one).
const NO_KEY: u32 = u32::MAX;

/// The id columns of one segment.
pub(super) struct SegmentColumns {
    /// Per doc id, the ordinal of its document key in `keys`, or [`NO_KEY`].
    key_of: Vec<u32>,
    /// The segment's document keys in term order (byte order), so a key's ordinal is found by
    /// binary search.
    keys: Vec<Box<str>>,
    /// The chunk entries (not the document entry) of key ordinal `o`, ascending, deleted ones
    /// included: `chunk_docs[chunk_start[o]..chunk_start[o + 1]]`.
    chunk_start: Vec<u32>,
    chunk_docs: Vec<DocId>,
    /// The segment's tenants and their BM25 statistics.
    tenants: SegmentTenants,
    /// Block summaries of the terms searches asked for (block-max pruning).
    blocks: BlockMaxCache,
}

impl SegmentColumns {
    fn build(f: &Fields, segment: &SegmentReader) -> tantivy::Result<Self> {
        let max_doc = segment.max_doc() as usize;
        let mut is_document = vec![false; max_doc];
        let kinds = segment.inverted_index(f.kind)?;
        let documents = Term::from_field_text(f.kind, KIND_DOCUMENT);
        if let Some(mut postings) = kinds.read_postings(&documents, IndexRecordOption::Basic)? {
            let mut doc = postings.doc();
            while doc != TERMINATED {
                is_document[doc as usize] = true;
                doc = postings.advance();
            }
        }
        let keys_index = segment.inverted_index(f.doc_key)?;
        let mut columns = Self {
            key_of: vec![NO_KEY; max_doc],
            keys: Vec::new(),
            chunk_start: vec![0],
            chunk_docs: Vec::new(),
            tenants: SegmentTenants::build(f, segment, &is_document)?,
            blocks: BlockMaxCache::new(segment.max_doc()),
        };
        let mut terms = keys_index.terms().stream()?;
        while terms.advance() {
            let ordinal = columns.keys.len() as u32;
            columns
                .keys
                .push(String::from_utf8_lossy(terms.key()).into());
            let mut postings =
                keys_index.read_postings_from_terminfo(terms.value(), IndexRecordOption::Basic)?;
            let mut doc = postings.doc();
            while doc != TERMINATED {
                columns.key_of[doc as usize] = ordinal;
                if !is_document[doc as usize] {
                    columns.chunk_docs.push(doc);
                }
                doc = postings.advance();
            }
            columns.chunk_start.push(columns.chunk_docs.len() as u32);
        }
        Ok(columns)
    }

    /// The segment's tenants (per-tenant BM25 statistics).
    pub(super) fn tenants(&self) -> &SegmentTenants {
        &self.tenants
    }

    /// The block summaries of the segment's terms (block-max pruning).
    pub(super) fn blocks(&self) -> &BlockMaxCache {
        &self.blocks
    }

    /// The document key of entry `doc`.
    pub(super) fn key(&self, doc: DocId) -> Option<&str> {
        let ordinal = *self.key_of.get(doc as usize)?;
        self.keys.get(ordinal as usize).map(|k| &**k)
    }

    /// The chunk entries of document `key` in this segment, ascending (deleted ones included).
    pub(super) fn chunks(&self, key: &str) -> &[DocId] {
        let Ok(ordinal) = self
            .keys
            .binary_search_by(|k| k.as_bytes().cmp(key.as_bytes()))
        else {
            return &[];
        };
        let (start, end) = (self.chunk_start[ordinal], self.chunk_start[ordinal + 1]);
        &self.chunk_docs[start as usize..end as usize]
    }
}

/// Segments whose columns a search built, over every index this process opened (the metric:
/// a rebuild's new index starts its own count at 0).
static BUILT_BY_SEARCHES: AtomicU64 = AtomicU64::new(0);

/// [`BUILT_BY_SEARCHES`].
pub(crate) fn built_by_searches_in_process() -> u64 {
    BUILT_BY_SEARCHES.load(Ordering::Relaxed)
}

/// The columns of the segments in use, by segment id.
#[derive(Default)]
pub(super) struct ColumnsCache {
    segments: Mutex<HashMap<SegmentId, Arc<SegmentColumns>>>,
    /// Segments whose columns [`ColumnsCache::get`] (a search) had to build.
    built_by_searches: AtomicU64,
}

impl ColumnsCache {
    /// The columns of every segment of `searcher`, by segment ordinal, building those missing
    /// (for a search: counted in [`ColumnsCache::built_by_searches`]).
    pub(super) fn get(
        &self,
        f: &Fields,
        searcher: &Searcher,
    ) -> tantivy::Result<Vec<Arc<SegmentColumns>>> {
        let (columns, built) = self.fill(f, searcher)?;
        // Almost always 0: the shared counters are written only when a search built something.
        if built > 0 {
            self.built_by_searches.fetch_add(built, Ordering::Relaxed);
            BUILT_BY_SEARCHES.fetch_add(built, Ordering::Relaxed);
        }
        Ok(columns)
    }

    /// Segments whose columns a search had to build since the cache was made.
    pub(super) fn built_by_searches(&self) -> u64 {
        self.built_by_searches.load(Ordering::Relaxed)
    }

    /// Builds the columns of the searchable segments of `index`'s last commit that have none,
    /// before a reload shows them to searches.
    ///
    /// The cache's lock is held only to look up and to insert (searches take it too, and
    /// this runs at the writer's lower priority); the segments are opened under Tantivy's
    /// meta lock, as its reader does, so no garbage collection removes their files meanwhile.
    pub(super) fn prepare(&self, f: &Fields, index: &Index) -> tantivy::Result<()> {
        let segments = index.searchable_segments()?;
        let missing: Vec<_> = {
            let cached = self.lock();
            segments
                .into_iter()
                .filter(|s| !cached.contains_key(&s.id()))
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let readers = {
            let _meta = index.directory().acquire_lock(&META_LOCK)?;
            missing
                .iter()
                .map(SegmentReader::open)
                .collect::<tantivy::Result<Vec<_>>>()?
        };
        // A segment that fails keeps the others' columns (the searches build its own).
        let mut built = Vec::with_capacity(readers.len());
        let mut failed = Ok(());
        for reader in &readers {
            match SegmentColumns::build(f, reader) {
                Ok(c) => built.push((reader.segment_id(), Arc::new(c))),
                Err(e) => failed = Err(e),
            }
        }
        self.lock().extend(built);
        failed
    }

    /// [`ColumnsCache::get`] without counting, and how many segments it built.
    fn fill(
        &self,
        f: &Fields,
        searcher: &Searcher,
    ) -> tantivy::Result<(Vec<Arc<SegmentColumns>>, u64)> {
        let readers = searcher.segment_readers();
        let mut columns: Vec<Option<Arc<SegmentColumns>>> = {
            let cached = self.lock();
            readers
                .iter()
                .map(|r| cached.get(&r.segment_id()).cloned())
                .collect()
        };
        // Built outside the lock: searches on other segments never wait for a build.
        let mut built = Vec::new();
        for (slot, reader) in columns.iter_mut().zip(readers) {
            if slot.is_none() {
                let c = Arc::new(SegmentColumns::build(f, reader)?);
                built.push((reader.segment_id(), c.clone()));
                *slot = Some(c);
            }
        }
        let count = built.len() as u64;
        if !built.is_empty() {
            self.lock().extend(built);
        }
        Ok((columns.into_iter().flatten().collect(), count))
    }

    /// Builds the columns of `searcher`'s new segments and forgets the segments it does not
    /// have (call with the searcher of a reload: older searchers still in use rebuild what
    /// they need, and the next reload forgets it again).
    pub(super) fn warm(&self, f: &Fields, searcher: &Searcher) -> tantivy::Result<()> {
        self.fill(f, searcher)?;
        let live: Vec<SegmentId> = searcher
            .segment_readers()
            .iter()
            .map(SegmentReader::segment_id)
            .collect();
        self.lock().retain(|id, _| live.contains(id));
        Ok(())
    }

    /// Segments held (each the id columns of one live segment).
    pub(super) fn segments(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SegmentId, Arc<SegmentColumns>>> {
        self.segments.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use braid_proto::v1::Chunk;

    use crate::config::{IndexConfig, SearchConfig};
    use crate::index::TextIndex;
    use crate::tantivy::TantivyIndex;

    fn chunk(doc: &str, ordinal: u32, text: &str) -> Chunk {
        Chunk {
            acl: None,
            chunk_id: format!("{doc}:{ordinal}"),
            document_id: doc.into(),
            tenant: "t".into(),
            external_id: format!("ext-{doc}"),
            title: String::new(),
            text: text.into(),
            ordinal,
            metadata: HashMap::new(),
        }
    }

    fn open(dir: &std::path::Path) -> TantivyIndex {
        let config = IndexConfig {
            dir: dir.to_path_buf(),
            writer_memory_mb: 20,
            writer_threads: 1,
            ..IndexConfig::default()
        };
        TantivyIndex::open(&config, &SearchConfig::default()).unwrap()
    }

    async fn best(idx: &TantivyIndex, text: &str) -> Vec<(String, String)> {
        let hits = idx
            .search(super::super::tests::query("t", text))
            .await
            .unwrap();
        hits.into_iter().map(|h| (h.chunk_id, h.text)).collect()
    }

    fn live_segments(idx: &TantivyIndex) -> usize {
        idx.inner.reader.searcher().segment_readers().len()
    }

    #[tokio::test]
    async fn the_best_chunk_comes_from_the_live_version_of_a_document() {
        let dir = tempfile::tempdir().unwrap();
        let idx = open(dir.path());
        // `keep` keeps the first segment alive once `d` is replaced, so the old version of
        // `d` (whose chunk 0 outscores anything in the new one) stays there, deleted.
        idx.replace_many(vec![
            (
                "t".into(),
                "d".into(),
                vec![
                    chunk("d", 0, "zebra zebra zebra"),
                    chunk("d", 1, "plain words"),
                ],
            ),
            (
                "t".into(),
                "keep".into(),
                vec![chunk("keep", 0, "unrelated")],
            ),
        ])
        .await
        .unwrap();
        assert_eq!(
            best(&idx, "zebra").await,
            [("d:0".to_string(), "zebra zebra zebra".to_string())]
        );
        idx.replace_document(
            "t",
            "d",
            vec![chunk("d", 0, "plain words"), chunk("d", 1, "zebra stripes")],
        )
        .await
        .unwrap();
        assert_eq!(
            live_segments(&idx),
            2,
            "the old version is still in a segment"
        );
        assert_eq!(
            best(&idx, "zebra").await,
            [("d:1".to_string(), "zebra stripes".to_string())]
        );
    }

    #[tokio::test]
    async fn columns_are_kept_for_the_live_segments_only() {
        let dir = tempfile::tempdir().unwrap();
        let idx = open(dir.path());
        for (i, word) in ["alpha", "beta", "gamma"].iter().enumerate() {
            let doc = format!("d{i}");
            let chunks = vec![chunk(&doc, 0, "filler text"), chunk(&doc, 1, word)];
            idx.replace_document("t", &doc, chunks).await.unwrap();
        }
        assert_eq!(live_segments(&idx), 3);
        assert_eq!(idx.id_column_segments(), 3);
        // Merge the three into one, then write once more: the reload after that write has the
        // merged segment and the new one, and the cache forgets the three merged away.
        {
            let segments = idx.inner.index.searchable_segment_ids().unwrap();
            let mut writer = idx.inner.writer.lock().unwrap();
            writer.merge(&segments).wait().unwrap();
        }
        idx.replace_document("t", "d3", vec![chunk("d3", 0, "delta")])
            .await
            .unwrap();
        assert_eq!(live_segments(&idx), 2);
        assert_eq!(idx.id_column_segments(), 2);
        // The merged segment's columns find each document's best chunk.
        for (i, word) in ["alpha", "beta", "gamma"].iter().enumerate() {
            assert_eq!(
                best(&idx, word).await,
                [(format!("d{i}:1"), word.to_string())]
            );
        }
        assert_eq!(best(&idx, "delta").await, [("d3:0".into(), "delta".into())]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn searches_running_beside_commits_never_build_columns() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};

        let dir = tempfile::tempdir().unwrap();
        let idx = open(dir.path());
        // No merges: a merge that lands between a commit's build and its reload is left to
        // the searches (rare, and not what this test is about).
        idx.inner
            .writer
            .lock()
            .unwrap()
            .set_merge_policy(Box::new(tantivy::merge_policy::NoMergePolicy));
        let stop = Arc::new(AtomicBool::new(false));
        let searcher = {
            let (idx, stop) = (idx.clone(), stop.clone());
            tokio::spawn(async move {
                let mut searches = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    best(&idx, "common").await;
                    searches += 1;
                }
                searches
            })
        };
        // Sizeable segments, so building a segment's columns takes a while: long enough for a
        // search to meet the segment first if a reload showed it before its columns existed.
        for i in 0..40 {
            let doc = format!("d{i}");
            let chunks = (0..200)
                .map(|o| chunk(&doc, o, &format!("common words {o} of {doc}")))
                .collect();
            idx.replace_document("t", &doc, chunks).await.unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        let searches = searcher.await.unwrap();
        assert!(searches > 40, "{searches} searches ran beside 40 commits");
        assert_eq!(live_segments(&idx), 40);
        let built = idx.columns_built_by_searches();
        assert_eq!(
            built, 0,
            "{built} segment(s) had their id columns built by a search"
        );
    }
}
