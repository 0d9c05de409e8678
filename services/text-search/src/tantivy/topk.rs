//! Top-k documents by document-level BM25 with block-max pruning (MaxScore over windows of
//! blocks, after Lucene's `MaxScoreBulkScorer`), so a search scores the postings that can
//! still reach the top k instead of every matching entry (issue 24 item 1).
//!
//! Per segment, each query term (a clause: a term of `doc_title` or `doc_body` with its
//! [`Bm25Term`]) walks its postings; terms with more than one block carry their blocks' last
//! doc ids and score bounds ([`super::blockmax`]). The segment is cut into windows that end
//! where the first of the clauses' current blocks ends, and in each window:
//! - every clause's bound over the window is its current block's bound (a one-block term's
//!   is its weight); if they add up to no more than the score to beat (the k-th best so far,
//!   carried over segments), the window is skipped without decoding anything;
//! - otherwise the clauses with the smallest bounds whose sum cannot beat it are
//!   *non-essential*: only the others' postings produce candidates, and a candidate is scored
//!   on the non-essential clauses (highest bound first) only while its score plus the bounds
//!   left can still beat the k-th.
//!
//! Filters stay inside: a candidate must be the tenant's entry, alive, and match the filter
//! clauses (metadata, ACL) before it enters the top k; the filter is checked last, for the
//! candidates that would enter it. A candidate's score is the sum of its clauses' scores in
//! clause order, whatever was pruned, so the score of an entry does not depend on which other
//! entries were seen first; ties go to the lower address, as Tantivy's `TopDocs` orders them.
//! Bounds are compared with a relative margin of [`MARGIN`], so float rounding in a sum of
//! bounds never prunes an entry whose exact score would enter.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use tantivy::fieldnorm::FieldNormReader;
use tantivy::postings::{Postings, SegmentPostings, TermInfo};
use tantivy::query::{Scorer, Weight};
use tantivy::schema::IndexRecordOption;
use tantivy::{DocAddress, DocId, DocSet, Score, Searcher, SegmentReader, TERMINATED, Term};

use super::blockmax::TermBlocks;
use super::columns::SegmentColumns;
use super::tenants::{TenantFilter, TenantStatistics};
use crate::bm25::Bm25Term;

/// Relative slack on every pruning comparison (f32 sums of up to a few hundred terms are off
/// by far less).
const MARGIN: f32 = 1e-4;

/// One query term with its BM25 and its postings per segment.
pub(super) struct Clause {
    pub(super) term: Term,
    pub(super) bm25: Bm25Term,
    /// The term's postings per segment ordinal (`None`: not there, or the tenant is not).
    pub(super) segments: Vec<Option<TermInfo>>,
}

/// The best `k` entries matching any clause and passing the tenant, the alive bitsets and
/// `filter`, best first (ties: lower address first), with their scores.
pub(super) fn top_documents(
    searcher: &Searcher,
    columns: &[Arc<SegmentColumns>],
    tenant: &TenantStatistics<'_>,
    clauses: &[Clause],
    filter: Option<&dyn Weight>,
    k: usize,
) -> tantivy::Result<Vec<(Score, DocAddress)>> {
    let mut top = TopK::new(k);
    if k == 0 {
        return Ok(Vec::new());
    }
    for (ordinal, (segment, columns)) in searcher.segment_readers().iter().zip(columns).enumerate()
    {
        let Some(tenant) = tenant.filter(ordinal) else {
            continue;
        };
        let mut cursors = Vec::new();
        for (i, clause) in clauses.iter().enumerate() {
            let Some(info) = clause.segments.get(ordinal).and_then(Option::as_ref) else {
                continue;
            };
            cursors.push(Cursor::open(i, clause, info, segment, columns)?);
        }
        if cursors.is_empty() {
            continue;
        }
        let filter = match filter {
            Some(weight) => Some(weight.scorer(segment, 1.0)?),
            None => None,
        };
        let mut run = SegmentRun {
            ordinal: ordinal as u32,
            segment,
            tenant,
            filter,
            cursors,
            contributions: vec![0.0; clauses.len()],
        };
        run.collect(&mut top);
    }
    Ok(top.into_sorted())
}

/// A clause's postings in one segment.
struct Cursor<'a> {
    clause: usize,
    bm25: &'a Bm25Term,
    postings: SegmentPostings,
    fieldnorms: FieldNormReader,
    blocks: Option<Arc<TermBlocks>>,
    /// Per block, the bound of its scores (with the margin); empty without blocks.
    bounds: Vec<Score>,
    /// The first block that may hold docs at or after the window's start.
    block: usize,
}

impl<'a> Cursor<'a> {
    fn open(
        clause_index: usize,
        clause: &'a Clause,
        info: &TermInfo,
        segment: &SegmentReader,
        columns: &SegmentColumns,
    ) -> tantivy::Result<Self> {
        let field = clause.term.field();
        let index = segment.inverted_index(field)?;
        let fieldnorms = segment.get_fieldnorms_reader(field)?;
        let blocks = columns
            .blocks()
            .get(&clause.term, &index, info, &fieldnorms)?;
        let bounds = blocks.as_ref().map_or_else(Vec::new, |b| {
            b.frontiers
                .iter()
                .map(|f| clause.bm25.bound(f) * (1.0 + MARGIN))
                .collect()
        });
        Ok(Self {
            clause: clause_index,
            bm25: &clause.bm25,
            postings: index.read_postings_from_terminfo(info, IndexRecordOption::WithFreqs)?,
            fieldnorms,
            blocks,
            bounds,
            block: 0,
        })
    }

    fn doc(&self) -> DocId {
        self.postings.doc()
    }

    fn score(&self) -> Score {
        let doc = self.postings.doc();
        self.bm25
            .score(self.postings.term_freq(), self.fieldnorms.fieldnorm_id(doc))
    }

    /// The bound of this clause's scores from `from` to the end of the block holding `from`,
    /// and that end (`TERMINATED` for a one-block list). 0 once the postings are exhausted.
    fn window(&mut self, from: DocId) -> (Score, DocId) {
        if self.postings.doc() == TERMINATED {
            return (0.0, TERMINATED);
        }
        let Some(blocks) = &self.blocks else {
            return (self.bm25.max() * (1.0 + MARGIN), TERMINATED);
        };
        while blocks
            .last_docs
            .get(self.block)
            .is_some_and(|&last| last < from)
        {
            self.block += 1;
        }
        match blocks.last_docs.get(self.block) {
            Some(&last) => (self.bounds[self.block], last),
            None => (0.0, TERMINATED),
        }
    }
}

/// Whether a score bounded by `bound` may still beat `threshold`.
fn may_beat(bound: Score, threshold: Option<Score>) -> bool {
    threshold.is_none_or(|t| bound * (1.0 + MARGIN) > t)
}

/// One segment's pass.
struct SegmentRun<'a, 'c> {
    ordinal: u32,
    segment: &'a SegmentReader,
    tenant: TenantFilter<'a>,
    filter: Option<Box<dyn Scorer>>,
    cursors: Vec<Cursor<'c>>,
    /// Per clause, its score for the candidate at hand (0 for clauses it does not hold).
    contributions: Vec<Score>,
}

impl SegmentRun<'_, '_> {
    fn collect(&mut self, top: &mut TopK) {
        let n = self.cursors.len();
        let mut bounds = vec![0.0f32; n];
        let mut order: Vec<usize> = (0..n).collect();
        // `prefix[j]`: the bounds of the first j non-essential clauses (in `order`), summed.
        let mut prefix = vec![0.0f32; n + 1];
        let mut from: DocId = 0;
        loop {
            let mut end = TERMINATED;
            let mut live = false;
            for (bound, cursor) in bounds.iter_mut().zip(&mut self.cursors) {
                let (b, last) = cursor.window(from);
                *bound = b;
                live |= b > 0.0;
                end = end.min(last);
            }
            if !live {
                return;
            }
            let threshold = top.threshold();
            if may_beat(bounds.iter().sum(), threshold) {
                order.sort_unstable_by(|&a, &b| bounds[a].total_cmp(&bounds[b]));
                let mut essential_from = 0;
                if threshold.is_some() {
                    while essential_from < n
                        && !may_beat(
                            prefix[essential_from] + bounds[order[essential_from]],
                            threshold,
                        )
                    {
                        prefix[essential_from + 1] =
                            prefix[essential_from] + bounds[order[essential_from]];
                        essential_from += 1;
                    }
                }
                self.window(top, &order, essential_from, &bounds, &prefix, from, end);
            }
            if end == TERMINATED {
                return;
            }
            from = end + 1;
        }
    }

    /// Scores the candidates in `from..=end` (see the module docs): `order[..essential_from]`
    /// are the non-essential clauses, lowest bound first.
    #[allow(clippy::too_many_arguments)]
    fn window(
        &mut self,
        top: &mut TopK,
        order: &[usize],
        essential_from: usize,
        bounds: &[Score],
        prefix: &[Score],
        from: DocId,
        end: DocId,
    ) {
        let (non_essential, essential) = order.split_at(essential_from);
        for &i in essential {
            if self.cursors[i].doc() < from {
                self.cursors[i].postings.seek(from);
            }
        }
        loop {
            let doc = essential
                .iter()
                .map(|&i| self.cursors[i].doc())
                .min()
                .unwrap_or(TERMINATED);
            if doc > end || doc == TERMINATED {
                return;
            }
            let mut score = 0.0;
            for &i in essential {
                let cursor = &self.cursors[i];
                if cursor.doc() == doc {
                    let s = cursor.score();
                    self.contributions[cursor.clause] = s;
                    score += s;
                }
            }
            if self.admits(top, doc, score, non_essential, bounds, prefix) {
                // The score in clause order: the same whatever was pruned.
                let exact = self.contributions.iter().fold(0.0, |sum, s| sum + s);
                if may_enter(exact, top.threshold()) && self.passes_filter(doc) {
                    top.push(exact, DocAddress::new(self.ordinal, doc));
                }
            }
            self.contributions.fill(0.0);
            for &i in essential {
                if self.cursors[i].doc() == doc {
                    self.cursors[i].postings.advance();
                }
            }
        }
    }

    /// Whether candidate `doc` (scoring `score` on the essential clauses) is the tenant's, alive,
    /// and may still enter the top k once the non-essential clauses are added (which this
    /// scores into `contributions`, highest bound first, while that holds).
    fn admits(
        &mut self,
        top: &TopK,
        doc: DocId,
        mut score: Score,
        non_essential: &[usize],
        bounds: &[Score],
        prefix: &[Score],
    ) -> bool {
        let threshold = top.threshold();
        if !may_beat(score + prefix[non_essential.len()], threshold) {
            return false;
        }
        if !self.tenant.admits(doc) || self.segment.is_deleted(doc) {
            return false;
        }
        for (j, &i) in non_essential.iter().enumerate().rev() {
            let cursor = &mut self.cursors[i];
            if cursor.doc() < doc {
                cursor.postings.seek(doc);
            }
            if cursor.doc() == doc {
                let s = cursor.score();
                self.contributions[cursor.clause] = s;
                score += s;
            } else if bounds[i] == 0.0 {
                continue;
            }
            if !may_beat(score + prefix[j], threshold) {
                return false;
            }
        }
        true
    }

    fn passes_filter(&mut self, doc: DocId) -> bool {
        let Some(filter) = &mut self.filter else {
            return true;
        };
        let at = if filter.doc() < doc {
            filter.seek(doc)
        } else {
            filter.doc()
        };
        at == doc
    }
}

/// Whether an exact score enters a top k whose k-th is `threshold` (later addresses lose ties).
fn may_enter(score: Score, threshold: Option<Score>) -> bool {
    threshold.is_none_or(|t| score > t)
}

/// An entry of the top k; the greatest is the one to drop first (lowest score, then highest
/// address).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Entry {
    score: Score,
    address: DocAddress,
}

impl Eq for Entry {}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.address.cmp(&other.address))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The best `k` entries seen so far.
struct TopK {
    k: usize,
    heap: BinaryHeap<Entry>,
}

impl TopK {
    fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k.min(4096) + 1),
        }
    }

    /// The score to beat once k entries are held.
    fn threshold(&self) -> Option<Score> {
        if self.heap.len() < self.k {
            return None;
        }
        self.heap.peek().map(|e| e.score)
    }

    fn push(&mut self, score: Score, address: DocAddress) {
        self.heap.push(Entry { score, address });
        if self.heap.len() > self.k {
            self.heap.pop();
        }
    }

    /// Best first, ties to the lower address.
    fn into_sorted(self) -> Vec<(Score, DocAddress)> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|e| (e.score, e.address))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_k_keeps_the_best_and_the_lower_address_on_ties() {
        let mut top = TopK::new(2);
        assert_eq!(top.threshold(), None);
        top.push(1.0, DocAddress::new(0, 5));
        top.push(3.0, DocAddress::new(0, 6));
        assert_eq!(top.threshold(), Some(1.0));
        // Addresses arrive ascending, so a tie with the k-th never enters.
        assert!(!may_enter(1.0, top.threshold()));
        top.push(2.0, DocAddress::new(1, 0));
        top.push(2.0, DocAddress::new(0, 1));
        assert_eq!(
            top.into_sorted(),
            [(3.0, DocAddress::new(0, 6)), (2.0, DocAddress::new(0, 1))]
        );
    }
}
