//! BM25 with configurable `k1` and `b` over a sub-population of the index. Tantivy's own BM25
//! fixes k1 = 1.2 and b = 0.75 and takes its statistics (document count, average length)
//! from every document of the index; here the document-level entries share the index with the
//! chunks, so [`Bm25TermQuery`] computes its own: N is the number of entries holding the
//! `population` term (the document entries), the average length is the field's token total
//! over N (only document entries have tokens in the document fields), and the document
//! frequency is the term's, which only document entries can contribute. The score is
//! Lucene's BM25 (`idf * tf / (tf + k1 * (1 - b + b * len / avg_len))`, idf =
//! `ln(1 + (N - n + 0.5) / (n + 0.5))`), times the query-side weight (boost).

use std::sync::{Arc, Mutex, PoisonError};

use tantivy::fieldnorm::FieldNormReader;
use tantivy::postings::{Postings, SegmentPostings};
use tantivy::query::{EmptyScorer, EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocId, DocSet, Score, Searcher, SegmentReader, TantivyError, Term};

/// BM25 free parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bm25Params {
    pub k1: f32,
    pub b: f32,
}

/// One term of one field, scored with BM25 over the entries holding `population`.
#[derive(Debug, Clone)]
pub struct Bm25TermQuery {
    term: Term,
    population: Term,
    params: Bm25Params,
    boost: f32,
    fields: Arc<FieldStatistics>,
}

impl Bm25TermQuery {
    /// The clauses of one query should share `fields`, so the population's statistics are
    /// looked up once per field instead of once per clause.
    pub fn new(
        term: Term,
        population: Term,
        params: Bm25Params,
        boost: f32,
        fields: Arc<FieldStatistics>,
    ) -> Self {
        Self {
            term,
            population,
            params,
            boost,
            fields,
        }
    }
}

/// The population size and a field's average length within it, per (searcher generation,
/// field): what every term of that field needs, computed by the first of them.
#[derive(Debug, Default)]
pub struct FieldStatistics {
    computed: Mutex<Vec<(u64, Field, u64, f32)>>,
}

impl FieldStatistics {
    fn get(&self, searcher: &Searcher, q: &Bm25TermQuery) -> tantivy::Result<(u64, f32)> {
        let (generation, field) = (searcher.generation().generation_id(), q.term.field());
        let mut computed = self.computed.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(&(_, _, population, avg_len)) = computed
            .iter()
            .find(|(g, f, _, _)| *g == generation && *f == field)
        {
            return Ok((population, avg_len));
        }
        let population = searcher.doc_freq(&q.population)?;
        let mut tokens = 0u64;
        for reader in searcher.segment_readers() {
            tokens += reader.inverted_index(field)?.total_num_tokens();
        }
        let avg_len = if population == 0 {
            1.0
        } else {
            (tokens as f32 / population as f32).max(1.0)
        };
        computed.push((generation, field, population, avg_len));
        Ok((population, avg_len))
    }
}

/// Collection statistics of a field within the population.
fn statistics(searcher: &Searcher, q: &Bm25TermQuery) -> tantivy::Result<(u64, u64, f32)> {
    let (population, avg_len) = q.fields.get(searcher, q)?;
    let doc_freq = searcher.doc_freq(&q.term)?.min(population);
    Ok((population, doc_freq, avg_len))
}

fn idf(doc_freq: u64, population: u64) -> f32 {
    let (n, df) = (population as f32, doc_freq as f32);
    (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
}

impl Query for Bm25TermQuery {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        let (weight, avg_len) = match enable_scoring.searcher() {
            Some(searcher) if enable_scoring.is_scoring_enabled() => {
                let (population, doc_freq, avg_len) = statistics(searcher, self)?;
                (idf(doc_freq, population) * self.boost, avg_len)
            }
            _ => (0.0, 1.0),
        };
        let mut norms = [0.0f32; 256];
        for (id, norm) in norms.iter_mut().enumerate() {
            let len = FieldNormReader::id_to_fieldnorm(id as u8) as f32;
            *norm = self.params.k1 * (1.0 - self.params.b + self.params.b * len / avg_len);
        }
        Ok(Box::new(Bm25TermWeight {
            term: self.term.clone(),
            weight,
            norms,
        }))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        visitor(&self.term, false);
    }
}

struct Bm25TermWeight {
    term: Term,
    /// idf times the query-side boost.
    weight: f32,
    /// `k1 * (1 - b + b * len / avg_len)` per fieldnorm id.
    norms: [f32; 256],
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
        Ok(Box::new(Bm25TermScorer {
            postings,
            fieldnorms: reader.get_fieldnorms_reader(field)?,
            weight: self.weight * boost,
            norms: self.norms,
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
    weight: f32,
    norms: [f32; 256],
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
        let tf = self.postings.term_freq() as f32;
        let norm = self.norms[usize::from(self.fieldnorms.fieldnorm_id(self.doc()))];
        self.weight * tf / (tf + norm)
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
