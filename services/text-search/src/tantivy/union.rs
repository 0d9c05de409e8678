//! A disjunction whose score is its clauses' scores summed in clause order. Tantivy's union
//! (a `BooleanQuery` of `Should` clauses) sums them in an order that changes as its clauses'
//! postings run out, which depends on where the entries sit in the index: the same entry
//! could score a bit differently (in the last bits of the float) after a merge moved it, or
//! after another tenant's entries were merged in between. Summed in clause order, an entry's
//! score depends on the query and the tenant's statistics only.

use tantivy::query::{EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::{DocId, DocSet, Score, SegmentReader, TERMINATED, TantivyError, Term};

/// Entries matching any clause, scored by the sum of the matching clauses' scores in clause
/// order.
#[derive(Debug)]
pub(super) struct OrderedUnion {
    clauses: Vec<Box<dyn Query>>,
}

impl OrderedUnion {
    pub(super) fn new(clauses: Vec<Box<dyn Query>>) -> Self {
        Self { clauses }
    }
}

impl Clone for OrderedUnion {
    fn clone(&self) -> Self {
        Self {
            clauses: self.clauses.iter().map(|c| c.box_clone()).collect(),
        }
    }
}

impl Query for OrderedUnion {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        let weights = self
            .clauses
            .iter()
            .map(|c| c.weight(enable_scoring))
            .collect::<tantivy::Result<_>>()?;
        Ok(Box::new(OrderedUnionWeight { weights }))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        for c in &self.clauses {
            c.query_terms(visitor);
        }
    }
}

struct OrderedUnionWeight {
    weights: Vec<Box<dyn Weight>>,
}

impl Weight for OrderedUnionWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let mut scorers = Vec::with_capacity(self.weights.len());
        for w in &self.weights {
            let scorer = w.scorer(reader, boost)?;
            if scorer.doc() != TERMINATED {
                scorers.push(scorer);
            }
        }
        let doc = scorers.iter().map(|s| s.doc()).min().unwrap_or(TERMINATED);
        Ok(Box::new(OrderedUnionScorer { scorers, doc }))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.seek(doc) != doc {
            return Err(TantivyError::InvalidArgument(format!(
                "document #{doc} does not match"
            )));
        }
        Ok(Explanation::new(
            "sum of the matching clauses, in clause order",
            scorer.score(),
        ))
    }
}

/// The clauses' scorers in clause order (those with postings in the segment).
struct OrderedUnionScorer {
    scorers: Vec<Box<dyn Scorer>>,
    doc: DocId,
}

impl OrderedUnionScorer {
    fn settle(&mut self) -> DocId {
        self.doc = self
            .scorers
            .iter()
            .map(|s| s.doc())
            .min()
            .unwrap_or(TERMINATED);
        self.doc
    }
}

impl DocSet for OrderedUnionScorer {
    fn advance(&mut self) -> DocId {
        let doc = self.doc;
        for s in &mut self.scorers {
            if s.doc() == doc {
                s.advance();
            }
        }
        self.settle()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        for s in &mut self.scorers {
            if s.doc() < target {
                s.seek(target);
            }
        }
        self.settle()
    }

    fn doc(&self) -> DocId {
        self.doc
    }

    fn size_hint(&self) -> u32 {
        self.scorers
            .iter()
            .map(|s| s.size_hint())
            .fold(0u32, u32::saturating_add)
    }
}

impl Scorer for OrderedUnionScorer {
    fn score(&mut self) -> Score {
        let doc = self.doc;
        let mut sum = 0.0;
        for s in &mut self.scorers {
            if s.doc() == doc {
                sum += s.score();
            }
        }
        sum
    }
}
