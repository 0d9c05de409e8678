//! BM25 with configurable `k1` and `b` over a population of entries. Tantivy's own BM25 fixes
//! k1 = 1.2 and b = 0.75 and takes its statistics from every entry of the index; here the
//! caller states them (the document entries of one tenant, see `tantivy/tenants.rs`): N the
//! population size, n the term's document frequency within it, and the field's average
//! length over it. The score is Lucene's BM25 (`idf * tf / (tf + k1 * (1 - b + b * len /
//! avg_len))`, idf = `ln(1 + (N - n + 0.5) / (n + 0.5))`), times the query-side weight
//! (boost).

use tantivy::fieldnorm::FieldNormReader;
use tantivy::postings::{Postings, SegmentPostings};
use tantivy::query::{EmptyScorer, EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::schema::IndexRecordOption;
use tantivy::{DocId, DocSet, Score, SegmentReader, TantivyError, Term};

/// BM25 free parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bm25Params {
    pub k1: f32,
    pub b: f32,
}

/// Lucene's idf (never negative).
pub fn idf(doc_freq: u64, population: u64) -> f32 {
    let (n, df) = (population as f32, doc_freq as f32);
    (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
}

/// `k1 * (1 - b + b * len / avg_len)` per fieldnorm id: the length part of BM25 for one field
/// over one population, shared by every term of that field.
#[derive(Clone)]
pub struct LengthNorms([f32; 256]);

impl LengthNorms {
    /// Norms for a field holding `tokens` tokens over `population` entries.
    pub fn new(params: Bm25Params, population: u64, tokens: u64) -> Self {
        let avg_len = if population == 0 {
            1.0
        } else {
            (tokens as f32 / population as f32).max(1.0)
        };
        let mut norms = [0.0f32; 256];
        for (id, norm) in norms.iter_mut().enumerate() {
            let len = FieldNormReader::id_to_fieldnorm(id as u8) as f32;
            *norm = params.k1 * (1.0 - params.b + params.b * len / avg_len);
        }
        Self(norms)
    }
}

/// One term's BM25: its weight (idf times the query-side boost) and its field's norms.
#[derive(Clone)]
pub struct Bm25Term {
    weight: f32,
    norms: LengthNorms,
}

impl Bm25Term {
    /// A term held by `doc_freq` of the `population` entries, weighted by `boost`.
    pub fn new(norms: LengthNorms, population: u64, doc_freq: u64, boost: f32) -> Self {
        Self {
            weight: idf(doc_freq.min(population), population) * boost,
            norms,
        }
    }

    /// The score of an entry holding the term `tf` times, with fieldnorm id `fieldnorm_id`.
    #[inline]
    pub fn score(&self, tf: u32, fieldnorm_id: u8) -> Score {
        let tf = tf as f32;
        self.weight * tf / (tf + self.norms.0[usize::from(fieldnorm_id)])
    }
}

/// One term of one field scored with a [`Bm25Term`] (whose statistics the caller computed).
#[derive(Clone)]
pub struct Bm25TermQuery {
    term: Term,
    bm25: Bm25Term,
}

impl std::fmt::Debug for Bm25TermQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bm25TermQuery")
            .field("term", &self.term)
            .field("weight", &self.bm25.weight)
            .finish()
    }
}

impl Bm25TermQuery {
    pub fn new(term: Term, bm25: Bm25Term) -> Self {
        Self { term, bm25 }
    }
}

impl Query for Bm25TermQuery {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        let mut bm25 = self.bm25.clone();
        if !enable_scoring.is_scoring_enabled() {
            bm25.weight = 0.0;
        }
        Ok(Box::new(Bm25TermWeight {
            term: self.term.clone(),
            bm25,
        }))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        visitor(&self.term, false);
    }
}

struct Bm25TermWeight {
    term: Term,
    bm25: Bm25Term,
}

impl Weight for Bm25TermWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let field = self.term.field();
        let postings = reader
            .inverted_index(field)?
            .read_postings(&self.term, IndexRecordOption::WithFreqs)?;
        let Some(postings) = postings else {
            return Ok(Box::new(EmptyScorer));
        };
        let mut bm25 = self.bm25.clone();
        bm25.weight *= boost;
        Ok(Box::new(Bm25TermScorer {
            postings,
            fieldnorms: reader.get_fieldnorms_reader(field)?,
            bm25,
        }))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.seek(doc) != doc {
            return Err(TantivyError::InvalidArgument(format!(
                "document #{doc} does not match"
            )));
        }
        Ok(Explanation::new("BM25 (k1, b from config)", scorer.score()))
    }
}

struct Bm25TermScorer {
    postings: SegmentPostings,
    fieldnorms: FieldNormReader,
    bm25: Bm25Term,
}

impl DocSet for Bm25TermScorer {
    fn advance(&mut self) -> DocId {
        self.postings.advance()
    }
    fn seek(&mut self, target: DocId) -> DocId {
        self.postings.seek(target)
    }
    fn doc(&self) -> DocId {
        self.postings.doc()
    }
    fn size_hint(&self) -> u32 {
        self.postings.size_hint()
    }
}

impl Scorer for Bm25TermScorer {
    fn score(&mut self) -> Score {
        let tf = self.postings.term_freq();
        self.bm25
            .score(tf, self.fieldnorms.fieldnorm_id(self.doc()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idf_is_lucenes() {
        // ln(1 + (10 - 1 + 0.5) / (1 + 0.5))
        assert!((idf(1, 10) - (1.0f32 + 9.5 / 1.5).ln()).abs() < 1e-6);
        assert!(idf(10, 10) > 0.0, "never negative, unlike classic BM25");
        assert!(idf(1, 10) > idf(5, 10));
    }
}
