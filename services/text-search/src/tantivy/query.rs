//! Query building: the scoring part of chunk and document queries from the user's text
//! (never parsed as query syntax), and the zero-score filter clauses every query adds.

use std::ops::Bound;

use braid_core::auth::Access;
use tantivy::Term;
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, EmptyQuery, Occur, PhraseQuery, Query,
    RangeQuery, TermQuery,
};
use tantivy::schema::IndexRecordOption;

use super::schema::{Fields, NO_GROUPS, zero_score_term};
use super::tenants::TenantStatistics;
use super::topk::Clause;
use super::union::OrderedUnion;
use super::{Inner, index_err};
use crate::bm25::{Bm25Term, LengthNorms};
use crate::error::TextError;
use crate::filter;
use crate::index::TextQuery;
use crate::language::Lang;

impl Inner {
    /// The scoring part of a search, built from the analyzed terms of the user's text, which
    /// is never parsed as query syntax (`title:x`, `"`, `(`, `AND`, `*` are just text). Each
    /// whitespace-separated word is run through the field's own tokenizer: one token gives a
    /// `TermQuery`, several (`e-mail`, `COVID-19`) a `PhraseQuery` over them; every word is a
    /// clause in both `title` (boosted) and `body`, summed in that order ([`OrderedUnion`]).
    /// That is what Tantivy's query parser builds for plain words, so BM25 scores of plain
    /// queries are unchanged (but for the order of the sum).
    ///
    /// The query's language is not guessed (a query of one to three words is too short to
    /// detect reliably): it is analysed in each of `langs` (the languages the tenant has
    /// entries in) and run against that language's fields, so an entry is scored by its own
    /// language's analysis and statistics, and a German query finds German entries by their
    /// stems whatever it would be detected as.
    pub(super) fn text_query(
        &self,
        text: &str,
        langs: &[Lang],
    ) -> Result<Box<dyn Query>, TextError> {
        let f = self.fields;
        let mut clauses: Vec<Box<dyn Query>> = Vec::new();
        let fields = langs.iter().flat_map(|l| {
            [
                (f.title[l.index()], self.title_boost),
                (f.body[l.index()], 1.0),
            ]
        });
        for (field, boost) in fields {
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
                clauses.push(query);
            }
        }
        if clauses.is_empty() {
            return Ok(Box::new(EmptyQuery));
        }
        Ok(Box::new(OrderedUnion::new(clauses)))
    }

    /// The document-level BM25 clauses: the analyzed query terms (bag of words, a repeated
    /// term counts once per occurrence, as Anserini's bag-of-words query does) in `doc_title`
    /// (boosted) and `doc_body`, in that order, each with the statistics of the tenant's
    /// document entries (`statistics`). A term no entry of the tenant holds is left out.
    ///
    /// Per language the tenant has document entries in (as [`Self::text_query`]): the query
    /// analysed in that language against its fields, with that language's population (N and
    /// average lengths over the tenant's document entries in it). A document entry is in one
    /// language, so its score comes from its own language's clauses only; for a tenant whose
    /// documents are all English these are exactly the clauses of the English-only index.
    pub(super) fn document_clauses(
        &self,
        text: &str,
        statistics: &TenantStatistics<'_>,
    ) -> Result<Vec<Clause>, TextError> {
        let mut clauses = Vec::new();
        for lang in statistics.languages() {
            self.language_clauses(text, lang, statistics, &mut clauses)?;
        }
        Ok(clauses)
    }

    /// [`Self::document_clauses`] of one language.
    fn language_clauses(
        &self,
        text: &str,
        lang: Lang,
        statistics: &TenantStatistics<'_>,
        clauses: &mut Vec<Clause>,
    ) -> Result<(), TextError> {
        let f = self.fields;
        let (title, body) = (f.doc_title[lang.index()], f.doc_body[lang.index()]);
        let mut counts: Vec<(String, f32)> = Vec::new();
        let mut analyzer = self.index.tokenizer_for_field(body).map_err(index_err)?;
        let mut stream = analyzer.token_stream(text);
        while let Some(token) = stream.next() {
            match counts.iter_mut().find(|(t, _)| *t == token.text) {
                Some((_, n)) => *n += 1.0,
                None => counts.push((token.text.clone(), 1.0)),
            }
        }
        let population = statistics.population_of(lang);
        for (field, boost) in [(title, self.title_boost), (body, 1.0)] {
            let norms = LengthNorms::new(self.bm25, population, statistics.tokens(field));
            for (text, n) in &counts {
                let term = Term::from_field_text(field, text);
                let (doc_freq, segments) = statistics.postings(&term).map_err(index_err)?;
                if doc_freq == 0 {
                    continue;
                }
                clauses.push(Clause {
                    term,
                    bm25: Bm25Term::new(norms.clone(), population, doc_freq, boost * n),
                    segments,
                });
            }
        }
        Ok(())
    }
}

/// The filters of `q` other than the tenant (metadata, the caller's access) as one query
/// matching the entries that pass them, or `None` without any.
pub(super) fn restriction(f: &Fields, q: &TextQuery) -> Option<BooleanQuery> {
    let mut clauses = filter::filter_clauses(f.meta, &q.filter);
    clauses.extend(access_clauses(f, &q.access));
    if clauses.is_empty() {
        return None;
    }
    // Negated metadata clauses alone would match nothing.
    if !clauses.iter().any(|(occur, _)| *occur == Occur::Must) {
        clauses.push((Occur::Must, Box::new(AllQuery)));
    }
    Some(BooleanQuery::new(clauses))
}

/// Every filter of `q` as zero-score Must clauses: tenant, metadata, the caller's access.
/// Both the document and the chunk query take exactly these.
pub(super) fn filter_clauses(f: &Fields, q: &TextQuery) -> Vec<(Occur, Box<dyn Query>)> {
    let mut clauses = vec![zero_score_term(f.tenant, &q.tenant)];
    clauses.extend(filter::filter_clauses(f.meta, &q.filter));
    clauses.extend(access_clauses(f, &q.access));
    clauses
}

/// Zero-score Must clauses admitting only chunks `access` may see: clearance at most the
/// caller's, and no groups or one of the caller's. Nothing for unrestricted access.
pub(super) fn access_clauses(f: &Fields, access: &Access) -> Vec<(Occur, Box<dyn Query>)> {
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
    let groups = filter::any_term(
        std::iter::once(NO_GROUPS)
            .chain(access.groups.iter().map(String::as_str))
            .map(|g| Term::from_field_text(f.acl_group, g))
            .collect(),
    );
    let zero = |q: Box<dyn Query>| -> (Occur, Box<dyn Query>) {
        (Occur::Must, Box::new(ConstScoreQuery::new(q, 0.0)))
    };
    vec![zero(Box::new(clearance)), zero(groups)]
}
