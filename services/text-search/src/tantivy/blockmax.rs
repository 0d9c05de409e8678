//! Block summaries for block-max pruning ([`super::topk`]): per segment and term, the last doc
//! id and the score [`Frontier`] of every block of 128 postings, read once from the postings
//! and fieldnorms the first time a search needs them, then cached with the segment (whose
//! postings never change). Tantivy's skip lists carry one (frequency, length) pair per block
//! too, but it is the best pair for Tantivy's fixed k1/b and the segment's own average length:
//! with configurable k1/b and per-tenant averages it is no bound.
//!
//! Only terms with more than one block get a summary: a shorter list is scored whole at
//! little cost, and bounded by the term's weight. The cache holds at most a quarter of the
//! segment's doc count in blocks (about 10 bytes per doc at most) and starts over when full.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tantivy::fieldnorm::FieldNormReader;
use tantivy::postings::TermInfo;
use tantivy::schema::IndexRecordOption;
use tantivy::{DocId, InvertedIndexReader, Term};

use crate::bm25::Frontier;

/// Postings per block (Tantivy's compression block).
pub(super) const BLOCK: u32 = 128;

/// The blocks of one term's postings in one segment.
pub(super) struct TermBlocks {
    /// The last doc id of each block, ascending.
    pub(super) last_docs: Vec<DocId>,
    /// The (term frequency, fieldnorm id) frontier of each block.
    pub(super) frontiers: Vec<Frontier>,
}

impl TermBlocks {
    fn build(
        index: &InvertedIndexReader,
        info: &TermInfo,
        fieldnorms: &FieldNormReader,
    ) -> tantivy::Result<Self> {
        let mut blocks = Self {
            last_docs: Vec::new(),
            frontiers: Vec::new(),
        };
        let mut postings =
            index.read_block_postings_from_terminfo(info, IndexRecordOption::WithFreqs)?;
        loop {
            let docs = postings.docs();
            let Some(&last) = docs.last() else { break };
            let pairs = docs
                .iter()
                .zip(postings.freqs())
                .map(|(&doc, &tf)| (tf, fieldnorms.fieldnorm_id(doc)));
            blocks.frontiers.push(Frontier::of(pairs));
            blocks.last_docs.push(last);
            postings.advance();
        }
        Ok(blocks)
    }
}

/// The summaries of one segment's terms.
pub(super) struct BlockMaxCache {
    terms: Mutex<(HashMap<Term, Arc<TermBlocks>>, usize)>,
    max_blocks: usize,
}

impl BlockMaxCache {
    pub(super) fn new(max_doc: u32) -> Self {
        Self {
            terms: Mutex::new((HashMap::new(), 0)),
            max_blocks: (max_doc as usize / 4).max(1024),
        }
    }

    /// The summary of `term` (postings `info` in `index`), or `None` for a list of one block.
    pub(super) fn get(
        &self,
        term: &Term,
        index: &InvertedIndexReader,
        info: &TermInfo,
        fieldnorms: &FieldNormReader,
    ) -> tantivy::Result<Option<Arc<TermBlocks>>> {
        if info.doc_freq <= BLOCK {
            return Ok(None);
        }
        if let Some(blocks) = self.lock().0.get(term) {
            return Ok(Some(blocks.clone()));
        }
        // Built outside the lock: searches of other terms never wait for a build.
        let blocks = Arc::new(TermBlocks::build(index, info, fieldnorms)?);
        let mut guard = self.lock();
        let (terms, held) = &mut *guard;
        if let Some(built) = terms.get(term) {
            return Ok(Some(built.clone()));
        }
        if *held + blocks.last_docs.len() > self.max_blocks {
            terms.clear();
            *held = 0;
        }
        *held += blocks.last_docs.len();
        terms.insert(term.clone(), blocks.clone());
        Ok(Some(blocks))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (HashMap<Term, Arc<TermBlocks>>, usize)> {
        self.terms.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
