//! The index schema: the fields of chunk and document entries, the keys that tie them to
//! a document, and the filterable fields (metadata, ACL) both kinds carry.
//!
//! The text fields are per language ([`Lang`]): an entry's text goes into its language's
//! `title` / `body` (chunk) or `doc_title` / `doc_body` (document) only, analysed with that
//! language's analyzer, so each language's BM25 statistics (document frequencies, lengths) are
//! its own. English keeps the original field names (`title`, `body`, ...); the others carry
//! their code (`title_de`, `body_ko`, `doc_body_und`). `lang` holds the entry's language
//! code (stored: a hit's text is read from its language's field).

use tantivy::Term;
use tantivy::query::{ConstScoreQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TantivyDocument,
    TextFieldIndexing, TextOptions,
};

use crate::analysis;
use crate::filter;
use crate::language::{self, ALL, Lang, field_name};

/// Fields per language, by [`Lang::index`].
pub(super) type PerLang = [Field; ALL.len()];

pub(super) const SEP: char = '\u{1f}';
/// The `acl_group` term of a chunk whose document has no groups (visible to every group).
/// Group names cannot contain control characters, so no real group collides with it.
pub(super) const NO_GROUPS: &str = "\u{1f}none";
/// `kind` of a chunk entry and of a document entry.
pub(super) const KIND_CHUNK: &str = "chunk";
pub(super) const KIND_DOCUMENT: &str = "document";

#[derive(Clone, Copy)]
pub(super) struct Fields {
    pub(super) chunk_id: Field,
    pub(super) document_id: Field,
    pub(super) doc_key: Field,
    pub(super) tenant: Field,
    pub(super) external_id: Field,
    pub(super) title: PerLang,
    pub(super) body: PerLang,
    pub(super) ordinal: Field,
    pub(super) meta: Field,
    pub(super) acl_clearance: Field,
    pub(super) acl_group: Field,
    pub(super) kind: Field,
    pub(super) doc_title: PerLang,
    pub(super) doc_body: PerLang,
    pub(super) lang: Field,
}

pub(super) fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = |lang: Lang| {
        TextOptions::default()
            .set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(&analysis::tokenizer_name(lang))
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions),
            )
            .set_stored()
    };
    // Document entries are only scored (bag of words): frequencies, no positions, not stored.
    let doc_text = |lang: Lang| {
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(&analysis::tokenizer_name(lang))
                .set_index_option(IndexRecordOption::WithFreqs),
        )
    };
    let mut per_lang = |base: &str, options: &dyn Fn(Lang) -> TextOptions| -> PerLang {
        ALL.map(|lang| b.add_text_field(&field_name(base, lang), options(lang)))
    };
    // English first, in the original order (title, body, then the document fields later).
    let title = per_lang("title", &text);
    let body = per_lang("body", &text);
    let fields = Fields {
        chunk_id: b.add_text_field("chunk_id", STRING | STORED),
        document_id: b.add_text_field("document_id", STRING | STORED),
        doc_key: b.add_text_field("doc_key", STRING),
        tenant: b.add_text_field("tenant", STRING),
        external_id: b.add_text_field("external_id", STORED),
        title,
        body,
        ordinal: b.add_u64_field("ordinal", STORED | INDEXED),
        meta: b.add_text_field("meta", STRING),
        acl_clearance: b.add_u64_field("acl_clearance", INDEXED | FAST),
        acl_group: b.add_text_field("acl_group", STRING),
        kind: b.add_text_field("kind", STRING),
        doc_title: ALL.map(|lang| b.add_text_field(&field_name("doc_title", lang), doc_text(lang))),
        doc_body: ALL.map(|lang| b.add_text_field(&field_name("doc_body", lang), doc_text(lang))),
        lang: b.add_text_field("lang", STRING | STORED),
    };
    (b.build(), fields)
}

pub(super) fn doc_key(tenant: &str, document_id: &str) -> String {
    format!("{tenant}{SEP}{document_id}")
}

/// The filterable fields every entry (chunk or document) carries: metadata, language and ACL.
/// The entry's language is a `meta` term of the key `lang` too (the metadata's own, normalised,
/// or the detected one), so the metadata filter `lang` matches it.
pub(super) fn add_filter_fields(
    f: &Fields,
    d: &mut TantivyDocument,
    metadata: &std::collections::HashMap<String, String>,
    lang: Lang,
    acl: &braid_proto::v1::DocumentAcl,
) {
    let mut terms = filter::meta_terms(metadata);
    let code = language::filter_code(metadata, lang);
    let lang_term = format!("{}{}{code}", language::METADATA_KEY, filter::SEP);
    if !terms.contains(&lang_term) {
        terms.push(lang_term);
    }
    for term in terms {
        d.add_text(f.meta, term);
    }
    d.add_text(f.lang, lang.code());
    d.add_u64(f.acl_clearance, u64::from(acl.clearance));
    if acl.groups.is_empty() {
        d.add_text(f.acl_group, NO_GROUPS);
    }
    for g in &acl.groups {
        d.add_text(f.acl_group, g);
    }
}

/// A zero-score Must clause: the entry has `value` in `field`.
pub(super) fn zero_score_term(field: Field, value: &str) -> (Occur, Box<dyn Query>) {
    let term = TermQuery::new(
        Term::from_field_text(field, value),
        IndexRecordOption::Basic,
    );
    (
        Occur::Must,
        Box::new(ConstScoreQuery::new(Box::new(term), 0.0)),
    )
}
