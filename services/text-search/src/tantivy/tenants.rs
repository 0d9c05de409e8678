//! Per-tenant BM25 statistics: a tenant's text scores depend on that tenant's entries only,
//! never on another tenant's writes (issue 23 item 2). BM25 needs, per field, the population
//! size N, the term's document frequency n and the average field length; Tantivy keeps them
//! per index (or segment), where every tenant's entries add to them, so a reader could watch
//! their own scores move as another tenant writes and learn what that tenant's hidden entries
//! contain. Here each segment gets, when a reload first brings it ([`SegmentTenants::build`],
//! next to the id columns), per tenant present in it:
//! - its entries (deleted ones included, until a merge drops them), ascending, and how many
//!   are document entries and chunk entries;
//! - its token count per text field, summed from the postings' term frequencies (exact, and
//!   the same whatever segments the entries sit in; Tantivy's own per-segment total is an
//!   estimate after a merge of segments with deletes);
//! - per language (the `lang` postings), how many of its entries and document entries are in
//!   that language: the population of that language's fields, so a language's BM25 statistics
//!   (N, average lengths) are its own.
//!
//! A search sums those over the searcher's segments ([`TenantStatistics`]), and the document
//! frequency of a term within the tenant is, per segment: 0 when the tenant has no entry there
//! (no lookup at all), the term's own document frequency when the tenant is the segment's only
//! one (the common case: one tenant, or a segment written by one tenant's commit), and
//! otherwise the size of the intersection of the term's postings with the tenant's entries,
//! walked from the shorter side and cached per segment (segments are immutable, and the count
//! includes deleted entries, so it never goes stale).
//!
//! What counts is the tenant, not the caller's ACL: entries a reader may not see inside their
//! own tenant count too, as in Elasticsearch, whose statistics ignore the filters of a query.
//! Deleted entries count until a merge removes them, as in Elasticsearch and Lucene: a merge
//! can then move the statistics of a tenant that has deleted (or replaced) entries, whoever's
//! write started it, but by that tenant's own deleted entries only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tantivy::postings::TermInfo;
use tantivy::query::Bm25StatisticsProvider;
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocId, DocSet, InvertedIndexReader, Searcher, SegmentReader, TERMINATED, Term};

use super::columns::SegmentColumns;
use super::schema::Fields;
use crate::language::{ALL, Lang};

/// The text fields BM25 scores, in the order of [`TenantPart::tokens`]: per kind (`doc_title`,
/// `doc_body`, `title`, `body`) every language's, so slot `i` is in language `ALL[i % N]`.
fn text_fields(f: &Fields) -> Vec<Field> {
    [f.doc_title, f.doc_body, f.title, f.body]
        .into_iter()
        .flatten()
        .collect()
}

/// The language of text field slot `slot` of [`text_fields`].
fn slot_lang(slot: usize) -> Lang {
    ALL[slot % ALL.len()]
}

/// Cached intersections per segment before the cache is cleared (each a few dozen bytes).
const MAX_CACHED_DOC_FREQS: usize = 4096;

/// One tenant's part of a segment.
#[derive(Debug, Default)]
pub(super) struct TenantPart {
    /// Its entries, ascending, deleted ones included; empty when it is the segment's only
    /// tenant (then every entry is its own).
    docs: Vec<DocId>,
    /// Entries of every kind (the chunk-level population, as Tantivy counts it).
    entries: u64,
    /// Document entries (the document-level population).
    documents: u64,
    /// Tokens per field of [`text_fields`].
    tokens: Vec<u64>,
    /// Entries per language (by [`Lang::index`]).
    entries_in: [u64; ALL.len()],
    /// Document entries per language.
    documents_in: [u64; ALL.len()],
}

/// The tenants of one segment.
pub(super) struct SegmentTenants {
    /// Tenant names in byte order.
    names: Vec<Box<str>>,
    parts: Vec<TenantPart>,
    /// Per doc id, the ordinal of its tenant; empty when the segment has one tenant.
    tenant_of: Vec<u32>,
    /// Document frequencies within one tenant, by (tenant ordinal, term), for segments with
    /// several tenants.
    doc_freqs: Mutex<HashMap<(u32, Term), u32>>,
}

impl SegmentTenants {
    /// Reads the segment's tenants from the `tenant` postings and their token counts from the
    /// text fields' postings. `is_document` flags the document entries.
    pub(super) fn build(
        f: &Fields,
        segment: &SegmentReader,
        is_document: &[bool],
    ) -> tantivy::Result<Self> {
        let max_doc = segment.max_doc() as usize;
        let tenants = segment.inverted_index(f.tenant)?;
        let mut names = Vec::new();
        let mut parts: Vec<TenantPart> = Vec::new();
        let mut tenant_of = vec![u32::MAX; max_doc];
        let mut terms = tenants.terms().stream()?;
        while terms.advance() {
            let ordinal = parts.len() as u32;
            names.push(String::from_utf8_lossy(terms.key()).into());
            let mut part = TenantPart {
                tokens: vec![0; ALL.len() * 4],
                ..TenantPart::default()
            };
            let mut postings =
                tenants.read_postings_from_terminfo(terms.value(), IndexRecordOption::Basic)?;
            let mut doc = postings.doc();
            while doc != TERMINATED {
                tenant_of[doc as usize] = ordinal;
                part.docs.push(doc);
                part.entries += 1;
                part.documents += u64::from(is_document[doc as usize]);
                doc = postings.advance();
            }
            parts.push(part);
        }
        let languages = segment.inverted_index(f.lang)?;
        let mut terms = languages.terms().stream()?;
        while terms.advance() {
            let Some(lang) = std::str::from_utf8(terms.key())
                .ok()
                .and_then(Lang::from_code)
            else {
                continue;
            };
            let mut postings =
                languages.read_postings_from_terminfo(terms.value(), IndexRecordOption::Basic)?;
            let mut doc = postings.doc();
            while doc != TERMINATED {
                if let Some(part) = tenant_of
                    .get(doc as usize)
                    .and_then(|&t| parts.get_mut(t as usize))
                {
                    part.entries_in[lang.index()] += 1;
                    part.documents_in[lang.index()] += u64::from(is_document[doc as usize]);
                }
                doc = postings.advance();
            }
        }
        for (slot, field) in text_fields(f).into_iter().enumerate() {
            let index = segment.inverted_index(field)?;
            let mut terms = index.terms().stream()?;
            while terms.advance() {
                let mut block = index.read_block_postings_from_terminfo(
                    terms.value(),
                    IndexRecordOption::WithFreqs,
                )?;
                loop {
                    let docs = block.docs();
                    if docs.is_empty() {
                        break;
                    }
                    for (&doc, &tf) in docs.iter().zip(block.freqs()) {
                        if let Some(part) = tenant_of
                            .get(doc as usize)
                            .and_then(|&t| parts.get_mut(t as usize))
                        {
                            part.tokens[slot] += u64::from(tf);
                        }
                    }
                    block.advance();
                }
            }
        }
        if parts.len() == 1 {
            parts[0].docs = Vec::new();
            tenant_of = Vec::new();
        }
        Ok(Self {
            names,
            parts,
            tenant_of,
            doc_freqs: Mutex::new(HashMap::new()),
        })
    }

    fn ordinal(&self, tenant: &str) -> Option<u32> {
        self.names
            .binary_search_by(|n| n.as_bytes().cmp(tenant.as_bytes()))
            .ok()
            .map(|o| o as u32)
    }

    /// Entries of tenant `ordinal` holding the term of `info` (deleted ones included).
    fn doc_freq(
        &self,
        ordinal: u32,
        index: &InvertedIndexReader,
        term: &Term,
        info: &TermInfo,
    ) -> tantivy::Result<u32> {
        if self.parts.len() == 1 {
            return Ok(info.doc_freq);
        }
        let key = (ordinal, term.clone());
        if let Some(&n) = self.lock().get(&key) {
            return Ok(n);
        }
        let mine = &self.parts[ordinal as usize].docs;
        let mut n = 0u32;
        if info.doc_freq as usize <= mine.len() {
            // Walk the postings, checking each entry's tenant.
            let mut block =
                index.read_block_postings_from_terminfo(info, IndexRecordOption::Basic)?;
            loop {
                let docs = block.docs();
                if docs.is_empty() {
                    break;
                }
                n += docs
                    .iter()
                    .filter(|&&d| self.tenant_of.get(d as usize) == Some(&ordinal))
                    .count() as u32;
                block.advance();
            }
        } else {
            // Seek the postings to each of the tenant's entries.
            let mut postings = index.read_postings_from_terminfo(info, IndexRecordOption::Basic)?;
            for &d in mine {
                let at = postings.seek(d);
                if at == TERMINATED {
                    break;
                }
                n += u32::from(at == d);
            }
        }
        let mut cached = self.lock();
        if cached.len() >= MAX_CACHED_DOC_FREQS {
            cached.clear();
        }
        cached.insert(key, n);
        Ok(n)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(u32, Term), u32>> {
        self.doc_freqs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Which text fields' statistics a population counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Population {
    /// Document entries (`doc_title`, `doc_body`).
    Documents,
    /// Every entry (`title`, `body` are on chunk entries only, but Tantivy's statistics have
    /// always counted every entry of the index as the population, document entries too; kept,
    /// so chunk-level scores of a single-tenant index do not move).
    Entries,
}

/// One tenant's statistics over the segments of one searcher.
pub(super) struct TenantStatistics<'a> {
    fields: Vec<Field>,
    /// Per segment ordinal, the segment's tenants and the tenant's ordinal there, if present.
    segments: Vec<(&'a SegmentReader, Option<(&'a SegmentTenants, u32)>)>,
    population: Population,
}

impl<'a> TenantStatistics<'a> {
    pub(super) fn new(
        f: &Fields,
        searcher: &'a Searcher,
        columns: &'a [Arc<SegmentColumns>],
        tenant: &str,
        population: Population,
    ) -> Self {
        let segments = searcher
            .segment_readers()
            .iter()
            .zip(columns)
            .map(|(reader, c)| {
                let tenants = c.tenants();
                (reader, tenants.ordinal(tenant).map(|o| (tenants, o)))
            })
            .collect();
        Self {
            fields: text_fields(f),
            segments,
            population,
        }
    }

    fn parts(&self) -> impl Iterator<Item = &TenantPart> {
        self.segments
            .iter()
            .filter_map(|(_, s)| s.map(|(t, o)| &t.parts[o as usize]))
    }

    /// The population size N.
    pub(super) fn population(&self) -> u64 {
        self.parts()
            .map(|p| match self.population {
                Population::Documents => p.documents,
                Population::Entries => p.entries,
            })
            .sum()
    }

    /// The population of `lang`'s fields: the tenant's entries (or document entries) in it.
    pub(super) fn population_of(&self, lang: Lang) -> u64 {
        self.parts()
            .map(|p| match self.population {
                Population::Documents => p.documents_in[lang.index()],
                Population::Entries => p.entries_in[lang.index()],
            })
            .sum()
    }

    /// The languages the tenant has entries in (of this population), English first.
    pub(super) fn languages(&self) -> Vec<Lang> {
        ALL.into_iter()
            .filter(|&l| self.population_of(l) > 0)
            .collect()
    }

    /// Tokens of `field` over the tenant's entries.
    pub(super) fn tokens(&self, field: Field) -> u64 {
        let Some(slot) = self.fields.iter().position(|&f| f == field) else {
            return 0;
        };
        self.parts().map(|p| p.tokens[slot]).sum()
    }

    /// Entries of the tenant in segment `ordinal` holding `term`, whose postings there are
    /// described by `info` (the caller looked it up).
    pub(super) fn segment_doc_freq(
        &self,
        ordinal: usize,
        index: &InvertedIndexReader,
        term: &Term,
        info: &TermInfo,
    ) -> tantivy::Result<u64> {
        match self.segments.get(ordinal) {
            Some((_, Some((tenants, o)))) => {
                Ok(u64::from(tenants.doc_freq(*o, index, term, info)?))
            }
            _ => Ok(0),
        }
    }

    /// Entries of the tenant holding `term`, over every segment.
    pub(super) fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        Ok(self.postings(term)?.0)
    }

    /// Entries of the tenant holding `term`, and the term's postings in each segment where
    /// some of them are (by segment ordinal; `None` elsewhere).
    pub(super) fn postings(&self, term: &Term) -> tantivy::Result<(u64, Vec<Option<TermInfo>>)> {
        let mut n = 0;
        let mut postings = Vec::with_capacity(self.segments.len());
        for (ordinal, (reader, tenants)) in self.segments.iter().enumerate() {
            let mut found = None;
            if tenants.is_some() {
                let index = reader.inverted_index(term.field())?;
                if let Some(info) = index.get_term_info(term)? {
                    let mine = self.segment_doc_freq(ordinal, &index, term, &info)?;
                    if mine > 0 {
                        n += mine;
                        found = Some(info);
                    }
                }
            }
            postings.push(found);
        }
        Ok((n, postings))
    }

    /// Which entries of segment `ordinal` are the tenant's; `None` when it has none there.
    pub(super) fn filter(&self, ordinal: usize) -> Option<TenantFilter<'a>> {
        let (_, Some((tenants, o))) = self.segments.get(ordinal)? else {
            return None;
        };
        Some(TenantFilter {
            tenant_of: &tenants.tenant_of,
            ordinal: *o,
        })
    }
}

/// Tantivy's own BM25 (chunk-level term and phrase queries) over the tenant's statistics.
impl Bm25StatisticsProvider for TenantStatistics<'_> {
    /// Tantivy's average field length is these tokens over [`Self::total_num_docs`], the whole
    /// population (one N for every field): scaled, so the average is over the entries of the
    /// field's language (exact for a one-language tenant). Its idf keeps the whole N.
    fn total_num_tokens(&self, field: Field) -> tantivy::Result<u64> {
        let tokens = self.tokens(field);
        let Some(slot) = self.fields.iter().position(|&f| f == field) else {
            return Ok(tokens);
        };
        let (all, mine) = (self.population(), self.population_of(slot_lang(slot)));
        if mine == 0 || mine == all {
            return Ok(tokens);
        }
        Ok((u128::from(tokens) * u128::from(all) / u128::from(mine)) as u64)
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        // Tantivy divides by it; a tenant without entries matches nothing anyway.
        Ok(self.population().max(1))
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        // Never above N (Tantivy asserts it).
        Ok(TenantStatistics::doc_freq(self, term)?.min(self.population()))
    }
}

/// The entries of one tenant in one segment.
#[derive(Clone, Copy)]
pub(super) struct TenantFilter<'a> {
    /// Per doc id, the ordinal of its tenant; empty when the segment has one tenant.
    tenant_of: &'a [u32],
    ordinal: u32,
}

impl TenantFilter<'_> {
    /// Whether entry `doc` is the tenant's.
    pub(super) fn admits(&self, doc: DocId) -> bool {
        self.tenant_of.is_empty() || self.tenant_of.get(doc as usize) == Some(&self.ordinal)
    }
}
