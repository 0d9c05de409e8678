//! Searches: documents ranked on their whole text and shown by their best chunk, chunk-level
//! ranking, hits with snippets, and fetching chunks by id.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use braid_proto::v1::ChunkHit;
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, EnableScoring, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, TantivyDocument, Value};
use tantivy::snippet::SnippetGenerator;
use tantivy::{DocAddress, DocId, DocSet, Score, Searcher, Term};

use super::columns::SegmentColumns;
use super::query::{filter_clauses, restriction};
use super::schema::{KIND_CHUNK, zero_score_term};
use super::tenants::{Population, TenantStatistics};
use super::topk::top_documents;
use super::{Inner, index_err};
use crate::analysis;
use crate::error::TextError;
use crate::index::TextQuery;
use crate::language::{ALL, Lang};

/// Snippet generators by [`Lang::index`] (`None` for a language the tenant has no entry in).
type Snippets = Vec<Option<SnippetGenerator>>;

/// The language of a stored entry (English for one without: never written so).
pub(super) fn entry_lang(d: &TantivyDocument, field: Field) -> Lang {
    d.get_first(field)
        .and_then(|v| v.as_str())
        .and_then(Lang::from_code)
        .unwrap_or(Lang::En)
}

impl Inner {
    /// Documents ranked by [`Self::document_clauses`] (top k with block-max pruning, see
    /// [`top_documents`]), each represented by its best chunk; or
    /// with `chunk_level`, chunks ranked by their own BM25.
    pub(super) fn search(&self, q: &TextQuery) -> Result<Vec<ChunkHit>, TextError> {
        let f = self.fields;
        let searcher = self.reader.searcher();
        let columns = self.columns.get(&f, &searcher).map_err(index_err)?;
        // Chunk-level BM25 (the chunk ranking, the best chunk, snippets) over the tenant's
        // entries only.
        let entries =
            TenantStatistics::new(&f, &searcher, &columns, &q.tenant, Population::Entries);
        let langs = entries.languages();
        if q.chunk_level {
            let text_query = self.text_query(&q.query, &langs)?;
            let mut clauses = vec![
                (Occur::Must, text_query.box_clone()),
                zero_score_term(f.kind, KIND_CHUNK),
            ];
            clauses.extend(filter_clauses(&f, q));
            let mut top = searcher
                .search_with_statistics_provider(
                    &BooleanQuery::new(clauses),
                    &TopDocs::with_limit(q.top_k as usize),
                    &entries,
                )
                .map_err(index_err)?;
            // Best first: the threshold cuts the tail.
            if let Some(min) = q.min_score {
                top.retain(|(score, _)| *score >= min);
            }
            return self.hits(
                &searcher,
                &entries,
                &*text_query,
                &langs,
                &top,
                q.detail as usize,
            );
        }
        let statistics =
            TenantStatistics::new(&f, &searcher, &columns, &q.tenant, Population::Documents);
        let clauses = self.document_clauses(&q.query, &statistics)?;
        // Metadata and ACL filters inside the ranking (the tenant is checked there too).
        let restriction = match restriction(&f, q) {
            Some(query) => Some(
                query
                    .weight(EnableScoring::disabled_from_searcher(&searcher))
                    .map_err(index_err)?,
            ),
            None => None,
        };
        let mut documents = top_documents(
            &searcher,
            &columns,
            &statistics,
            &clauses,
            restriction.as_deref(),
            q.top_k as usize,
        )
        .map_err(index_err)?;
        // Best first: the threshold (on the document's BM25) cuts the tail.
        if let Some(min) = q.min_score {
            documents.retain(|(score, _)| *score >= min);
        }
        let keys: Vec<Option<&str>> = documents
            .iter()
            .map(|&(_, a)| {
                columns
                    .get(a.segment_ord as usize)
                    .and_then(|c| c.key(a.doc_id))
            })
            .collect();
        let text_query = self.text_query(&q.query, &langs)?;
        let best = best_chunks(&searcher, &entries, &columns, &*text_query, &keys)?;
        // Both queries run on one searcher (one commit), where a document entry exists
        // exactly when its chunks do; a document without a chunk is left out all the same.
        let top: Vec<(f32, DocAddress)> = documents
            .iter()
            .zip(&best)
            .filter_map(|(&(score, _), best)| best.map(|a| (score, a)))
            .collect();
        self.hits(
            &searcher,
            &entries,
            &*text_query,
            &langs,
            &top,
            q.detail as usize,
        )
    }

    /// Hits for `top`, best first: ids, title, ordinal and score for all, stored text and a
    /// snippet only for the first `detail` (0 = all): the rest rarely survive fusion, and the
    /// gateway fetches those that do (`fetch`).
    pub(super) fn hits(
        &self,
        searcher: &Searcher,
        statistics: &TenantStatistics<'_>,
        text_query: &dyn Query,
        langs: &[Lang],
        top: &[(f32, DocAddress)],
        detail: usize,
    ) -> Result<Vec<ChunkHit>, TextError> {
        let detail = if detail == 0 { top.len() } else { detail };
        let snippets = if detail > 0 && !top.is_empty() {
            Some(self.snippet_generators(statistics, text_query, langs)?)
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
    pub(super) fn hit(
        &self,
        searcher: &Searcher,
        address: DocAddress,
        score: f32,
        snippets: Option<&Snippets>,
    ) -> Result<ChunkHit, TextError> {
        let f = self.fields;
        let d: TantivyDocument = searcher.doc(address).map_err(index_err)?;
        let text = |field| {
            d.get_first(field)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let lang = entry_lang(&d, f.lang).index();
        let (body, snippet) = match snippets {
            Some(g) => {
                let body = text(f.body[lang]);
                let snippet = g[lang]
                    .as_ref()
                    .map(|g| g.snippet(&body).to_html())
                    .unwrap_or_default();
                (body, snippet)
            }
            None => (String::new(), String::new()),
        };
        Ok(ChunkHit {
            chunk_id: text(f.chunk_id),
            document_id: text(f.document_id),
            external_id: text(f.external_id),
            title: text(f.title[lang]),
            snippet,
            text: body,
            ordinal: d.get_first(f.ordinal).and_then(|v| v.as_u64()).unwrap_or(0) as u32,
            score,
        })
    }

    /// Snippets of `body` highlighting the terms of `text_query`, the rarer within the tenant
    /// the more (Tantivy's `SnippetGenerator::create` weighs each term by its document
    /// frequency over the whole index, another tenant's entries included).
    /// One per language of `langs`, by [`Lang::index`].
    fn snippet_generators(
        &self,
        statistics: &TenantStatistics<'_>,
        text_query: &dyn Query,
        langs: &[Lang],
    ) -> Result<Snippets, TextError> {
        let mut generators: Snippets = ALL.iter().map(|_| None).collect();
        for &lang in langs {
            generators[lang.index()] = Some(self.snippet_generator(statistics, text_query, lang)?);
        }
        Ok(generators)
    }

    fn snippet_generator(
        &self,
        statistics: &TenantStatistics<'_>,
        text_query: &dyn Query,
        lang: Lang,
    ) -> Result<SnippetGenerator, TextError> {
        let field = self.fields.body[lang.index()];
        let mut terms: BTreeSet<&Term> = BTreeSet::new();
        text_query.query_terms(&mut |term, _| {
            if term.field() == field {
                terms.insert(term);
            }
        });
        let mut weights: BTreeMap<String, Score> = BTreeMap::new();
        for term in terms {
            let value = term.value();
            let Some(text) = value.as_str() else {
                continue;
            };
            let doc_freq = statistics.doc_freq(term).map_err(index_err)?;
            if doc_freq > 0 {
                weights.insert(text.to_string(), 1.0 / (1.0 + doc_freq as Score));
            }
        }
        // The body's analysis, stemming only the words that may stem to a query term.
        let analyzer = analysis::snippet_analyzer(lang, weights.keys().map(String::as_str));
        Ok(SnippetGenerator::new(
            weights,
            analyzer,
            field,
            self.snippet_chars,
        ))
    }

    /// Text and snippet of `chunk_ids` (of `tenant` only), in the order given; unknown ids are
    /// left out. Scores are 0: the caller has them from the search.
    pub(super) fn fetch(
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
        let columns = self.columns.get(&f, &searcher).map_err(index_err)?;
        let entries = TenantStatistics::new(&f, &searcher, &columns, tenant, Population::Entries);
        let langs = entries.languages();
        let text_query = self.text_query(query, &langs)?;
        let g = self.snippet_generators(&entries, &*text_query, &langs)?;
        let mut by_id: HashMap<String, ChunkHit> = found
            .into_iter()
            .map(|(_, address)| self.hit(&searcher, address, 0.0, Some(&g)))
            .map(|h| h.map(|h| (h.chunk_id.clone(), h)))
            .collect::<Result<_, _>>()?;
        Ok(chunk_ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }
}

/// The best chunk of each document key in `keys` (by chunk-level BM25 of `text_query`, a chunk
/// without a query term scoring 0; ties to the lower address, as `TopDocs` orders them), or
/// `None` for a document without a live chunk. The documents passed the tenant, metadata and
/// ACL filters in the document query, and their chunks carry the same tenant (in the key), ACL
/// (one per document, [`chunks_acl`](braid_core::auth::chunks_acl)) and metadata (the
/// document's, as ingest writes them), so only the keys' chunks are scored: their doc ids come
/// from the id columns, and the text query's scorer is moved to each of them, ascending,
/// instead of running a query that restricts the text query to the keys (a `TermSetQuery`
/// whose automaton was built per search, and a stored-document read per candidate chunk to
/// learn its document).
fn best_chunks(
    searcher: &Searcher,
    statistics: &TenantStatistics<'_>,
    columns: &[Arc<SegmentColumns>],
    text_query: &dyn Query,
    keys: &[Option<&str>],
) -> Result<Vec<Option<DocAddress>>, TextError> {
    let weight = text_query
        .weight(EnableScoring::enabled_from_statistics_provider(
            statistics, searcher,
        ))
        .map_err(index_err)?;
    let mut best: Vec<Option<(Score, DocAddress)>> = vec![None; keys.len()];
    let mut candidates: Vec<(DocId, usize)> = Vec::new();
    for (ordinal, (segment, columns)) in searcher.segment_readers().iter().zip(columns).enumerate()
    {
        candidates.clear();
        let alive = segment.alive_bitset();
        for (i, key) in keys.iter().enumerate() {
            let Some(key) = key else { continue };
            candidates.extend(
                columns
                    .chunks(key)
                    .iter()
                    .filter(|&&doc| alive.is_none_or(|a| a.is_alive(doc)))
                    .map(|&doc| (doc, i)),
            );
        }
        if candidates.is_empty() {
            continue;
        }
        candidates.sort_unstable();
        let mut scorer = weight.scorer(segment, 1.0).map_err(index_err)?;
        for &(doc, i) in &candidates {
            let at = if scorer.doc() < doc {
                scorer.seek(doc)
            } else {
                scorer.doc()
            };
            let score = if at == doc { scorer.score() } else { 0.0 };
            let address = DocAddress::new(ordinal as u32, doc);
            // Addresses come in ascending order, so a tie keeps the lower one.
            if best[i].is_none_or(|(s, _)| score > s) {
                best[i] = Some((score, address));
            }
        }
    }
    Ok(best.into_iter().map(|b| b.map(|(_, a)| a)).collect())
}
