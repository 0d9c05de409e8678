//! The index schema: the fields of chunk and document entries, the keys that tie them to
//! a document, and the filterable fields (metadata, ACL) both kinds carry.

use tantivy::Term;
use tantivy::query::{ConstScoreQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TantivyDocument,
    TextFieldIndexing, TextOptions,
};

use crate::analysis;
use crate::filter;

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
    pub(super) title: Field,
    pub(super) body: Field,
    pub(super) ordinal: Field,
    pub(super) meta: Field,
    pub(super) acl_clearance: Field,
    pub(super) acl_group: Field,
    pub(super) kind: Field,
    pub(super) doc_title: Field,
    pub(super) doc_body: Field,
}

pub(super) fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(analysis::ENGLISH)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        )
        .set_stored();
    // Document entries are only scored (bag of words): frequencies, no positions, not stored.
    let doc_text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(analysis::ENGLISH)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let fields = Fields {
        chunk_id: b.add_text_field("chunk_id", STRING | STORED),
        document_id: b.add_text_field("document_id", STRING | STORED),
        doc_key: b.add_text_field("doc_key", STRING),
        tenant: b.add_text_field("tenant", STRING),
        external_id: b.add_text_field("external_id", STORED),
        title: b.add_text_field("title", text.clone()),
        body: b.add_text_field("body", text),
        ordinal: b.add_u64_field("ordinal", STORED | INDEXED),
        meta: b.add_text_field("meta", STRING),
        acl_clearance: b.add_u64_field("acl_clearance", INDEXED | FAST),
        acl_group: b.add_text_field("acl_group", STRING),
        kind: b.add_text_field("kind", STRING),
        doc_title: b.add_text_field("doc_title", doc_text.clone()),
        doc_body: b.add_text_field("doc_body", doc_text),
    };
    (b.build(), fields)
}

pub(super) fn doc_key(tenant: &str, document_id: &str) -> String {
    format!("{tenant}{SEP}{document_id}")
}

/// The filterable fields every entry (chunk or document) carries: metadata and ACL.
pub(super) fn add_filter_fields(
    f: &Fields,
    d: &mut TantivyDocument,
    metadata: &std::collections::HashMap<String, String>,
    acl: &braid_proto::v1::DocumentAcl,
) {
    for term in filter::meta_terms(metadata) {
        d.add_text(f.meta, term);
    }
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
