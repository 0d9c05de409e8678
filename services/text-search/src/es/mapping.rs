//! The index template: settings (shards, replicas, refresh interval, the BM25 similarity of
//! the document fields, Braid's English and neutral analyzers) and mappings of every concrete index, and the
//! fields one chunk entry or document entry holds.
//!
//! Like the Tantivy index, one index holds two kinds of entries (`kind`): every chunk
//! (`title`, `body`, in its language's fields: ranked with Elasticsearch's default BM25, as Tantivy's chunk fields are)
//! and one entry per document (`doc_title`, `doc_body` = the whole text, see
//! [`crate::document_text`]) ranked with BM25 using `search.bm25_k1` / `search.bm25_b`
//! (the `braid_bm25` similarity). Lucene keeps BM25 statistics per field (document count =
//! entries holding the field, average field length over them), so the two kinds never mix
//! statistics, which is what `bm25.rs` computes by hand on the Tantivy side. (A separate
//! document index would give the same scores; one index keeps a document's entries on one
//! shard via routing, so a replace or delete touches one shard.)
//!
//! Exact-match fields: `tenant`, `document_id`, `chunk_id`, `doc_key` (tenant + document, the
//! routing value), `write_id` (which write an entry came from). A document entry also lists
//! its chunks (`chunk_ids`) and the chunk ids its write deleted (`stale_ids`, deleted once
//! more by the next write in case a delete failed), kept in `_source` only: a replace reads
//! them with a realtime get and deletes what the new version no longer has, by id, in the
//! same `_bulk` (no refresh, no delete-by-query). A `tombstone` entry (same id as the
//! document entry, a rebuild index only) marks a document deleted live during a rebuild, so
//! the rebuild's older copy is skipped. ACL: `acl_clearance`
//! (integer) and `acl_groups` (keyword; absent = visible to every group). Metadata, typed as
//! the Tantivy side stores it: `meta` (`key\x1fvalue` keywords: equality and `in`),
//! `meta_keys` (`exists`), and `meta_typed` (nested `{key, number}` / `{key, date}` for
//! values that read as a number or a date: ranges). Nested keeps arbitrary metadata keys out
//! of the mapping (no mapping explosion, no key that is an invalid field name).
//!
//! Languages (see [`crate::language`]): every entry's text goes into the fields of its
//! language only, named as on the Tantivy side ([`field_name`]: `title`, `body`, `doc_title`,
//! `doc_body` for English, `title_de`, `doc_body_ko`, ... for the others), each field analysed
//! by its language's analyzer ([`analyzer`]). They are separate fields, not multi-fields of
//! one: a multi-field indexes every entry's text in every language, so each language's BM25
//! statistics would count every entry; separate fields hold only their language's entries,
//! and Lucene's per-field statistics (document count, average length, document frequencies)
//! are then per language. `lang` (keyword) holds the language of the entry's analysis (which
//! fields hold its text), and the entry's `meta` gets `lang\x1f<code>` (the metadata's own
//! code, normalised, or the detected one) as on the Tantivy side, so the metadata filter
//! `lang` is a `term` filter on `meta` matching the same entries on both backends.
//!
//! English analysis (`braid_english`) mirrors `analysis.rs` exactly: a char filter drops the
//! possessive `'s`, the pattern tokenizer splits on non-alphanumeric characters (Tantivy's
//! `SimpleTokenizer`), tokens over 40 characters are dropped, then lowercase, Lucene's English
//! stop words (`_english_`, the same 33) and the Snowball English stemmer (`porter2`, what
//! Tantivy's English stemmer is). The other languages use the engine's own language analyzers
//! (analysis-common: `german`, `french`, ..., standard tokenizer, the language's stop words
//! and its Lucene stemmer, mostly the "light" ones), so their stems are not Tantivy's Snowball
//! ones: the same German text may score differently on the two backends, English never does.
//! Korean, Japanese and Chinese use `cjk` (overlapping bigrams of CJK characters, as Tantivy's
//! analysis), Tamil (no analyzer in the engine) and undetermined text `braid_neutral`:
//! standard tokenizer, lowercase and CJK bigrams, no stop words, no stemming (Tantivy's `und`).

use std::collections::HashMap;

use braid_core::filter::typed;
use braid_proto::v1::{Chunk, DocumentAcl};
use serde_json::{Value, json};

use super::request::{EsRequest, Method, Names};
use crate::config::{ElasticsearchConfig, SearchConfig};
use crate::language::{self, ALL, Lang, field_name};

pub const KIND_CHUNK: &str = "chunk";
pub const KIND_DOCUMENT: &str = "document";
pub const KIND_TOMBSTONE: &str = "tombstone";
/// The entry layout this version writes, in each concrete index's mapping `_meta`
/// (`braid_format`); an index of another layout is a fault until rebuilt. 2: document
/// entries list their chunks (`chunk_ids`, `stale_ids`) and tombstones exist. 3: text in
/// per-language fields, `lang` on every entry.
pub const FORMAT: u64 = 3;
/// Between a metadata key and its value in `meta`, and between tenant and document in
/// `doc_key` (neither may contain control characters).
pub const SEP: char = '\u{1f}';

/// `doc_key` and routing value of a document.
pub fn doc_key(tenant: &str, document_id: &str) -> String {
    format!("{tenant}{SEP}{document_id}")
}

/// The `_id` of a chunk entry / of a document entry: deterministic, so a rewrite replaces.
pub fn chunk_entry_id(tenant: &str, chunk_id: &str) -> String {
    format!("c{SEP}{tenant}{SEP}{chunk_id}")
}

pub fn document_entry_id(tenant: &str, document_id: &str) -> String {
    format!("d{SEP}{tenant}{SEP}{document_id}")
}

/// The analyzer of `lang`'s fields: Braid's English, the engine's language analyzers, `cjk`,
/// and the neutral one for Tamil (the engine has no Tamil analyzer) and undetermined text.
/// See <https://www.elastic.co/guide/en/elasticsearch/reference/8.17/analysis-lang-analyzer.html>.
pub fn analyzer(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "braid_english",
        Lang::De => "german",
        Lang::Fr => "french",
        Lang::Es => "spanish",
        Lang::It => "italian",
        Lang::Pt => "portuguese",
        Lang::Nl => "dutch",
        Lang::Sv => "swedish",
        Lang::Da => "danish",
        Lang::No => "norwegian",
        Lang::Fi => "finnish",
        Lang::Hu => "hungarian",
        Lang::Ro => "romanian",
        Lang::Ru => "russian",
        Lang::El => "greek",
        Lang::Tr => "turkish",
        Lang::Ar => "arabic",
        Lang::Ko | Lang::Ja | Lang::Zh => "cjk",
        Lang::Ta | Lang::Und => "braid_neutral",
    }
}

/// PUT the index template every concrete index `<prefix>-*` is created from. See
/// <https://www.elastic.co/guide/en/elasticsearch/reference/8.17/indices-put-template.html>,
/// <https://www.elastic.co/guide/en/elasticsearch/reference/8.17/index-modules-similarity.html> and
/// <https://www.elastic.co/guide/en/elasticsearch/reference/8.17/analysis-stemmer-tokenfilter.html>.
pub fn template(names: &Names, es: &ElasticsearchConfig, search: &SearchConfig) -> EsRequest {
    let keyword = || json!({ "type": "keyword" });
    let mut properties = json!({
        "kind": keyword(),
        "tenant": keyword(),
        "document_id": keyword(),
        "chunk_id": keyword(),
        "doc_key": keyword(),
        "write_id": keyword(),
        "external_id": { "type": "keyword", "index": false },
        "ordinal": { "type": "integer" },
        "lang": keyword(),
        "chunk_ids": { "type": "keyword", "index": false, "doc_values": false },
        "stale_ids": { "type": "keyword", "index": false, "doc_values": false },
        "acl_clearance": { "type": "integer" },
        "acl_groups": keyword(),
        "meta": keyword(),
        "meta_keys": keyword(),
        "meta_typed": {
            "type": "nested",
            "properties": {
                "key": keyword(),
                "number": { "type": "double" },
                "date": { "type": "date", "format": "epoch_millis" },
            },
        },
    });
    for lang in ALL {
        let analyzer = analyzer(lang);
        let chunk = json!({ "type": "text", "analyzer": analyzer, "similarity": "BM25" });
        // Document fields are only scored (bag of words): frequencies, no positions.
        let document = json!({
            "type": "text",
            "analyzer": analyzer,
            "similarity": "braid_bm25",
            "index_options": "freqs",
        });
        properties[field_name("title", lang)] = chunk.clone();
        properties[field_name("body", lang)] = chunk;
        properties[field_name("doc_title", lang)] = document.clone();
        properties[field_name("doc_body", lang)] = document;
    }
    EsRequest::new(Method::Put, format!("/_index_template/{}", names.alias)).json(json!({
        "index_patterns": [names.pattern()],
        "priority": 500,
        "_meta": { "managed_by": "braid-text-search" },
        "template": {
            "settings": {
                "index": {
                    "number_of_shards": es.shards,
                    "number_of_replicas": es.replicas,
                    "refresh_interval": es.refresh_interval,
                    "similarity": {
                        "braid_bm25": { "type": "BM25", "k1": search.bm25_k1, "b": search.bm25_b }
                    },
                },
                "analysis": {
                    "char_filter": {
                        "braid_possessive": {
                            "type": "pattern_replace",
                            "pattern": "([\\p{L}\\p{N}])['\u{2019}][sS](?![\\p{L}\\p{N}])",
                            "replacement": "$1",
                        }
                    },
                    "tokenizer": {
                        "braid_alphanumeric": {
                            "type": "pattern",
                            "pattern": "[^\\p{L}\\p{N}]+",
                        }
                    },
                    "filter": {
                        "braid_long": { "type": "length", "max": 40 },
                        "braid_english_stop": { "type": "stop", "stopwords": "_english_" },
                        "braid_english_stemmer": { "type": "stemmer", "language": "porter2" },
                    },
                    "analyzer": {
                        "braid_english": {
                            "type": "custom",
                            "char_filter": ["braid_possessive"],
                            "tokenizer": "braid_alphanumeric",
                            "filter": [
                                "braid_long",
                                "lowercase",
                                "braid_english_stop",
                                "braid_english_stemmer",
                            ],
                        },
                        "braid_neutral": {
                            "type": "custom",
                            "tokenizer": "standard",
                            "filter": ["lowercase", "cjk_bigram"],
                        },
                    },
                },
            },
            "mappings": {
                "dynamic": "strict",
                // The whole document text is only scored, never returned.
                "_source": { "excludes": ["doc_title*", "doc_body*"] },
                "properties": properties,
            },
        },
    }))
}

/// The source of a chunk entry in language `lang` (its text in that language's fields).
pub fn chunk_source(c: &Chunk, lang: Lang, key: &str, write_id: &str, acl: &DocumentAcl) -> Value {
    let mut source = json!({
        "kind": KIND_CHUNK,
        "tenant": c.tenant,
        "document_id": c.document_id,
        "chunk_id": c.chunk_id,
        "doc_key": key,
        "write_id": write_id,
        "external_id": c.external_id,
        "ordinal": c.ordinal,
    });
    source[field_name("title", lang)] = json!(c.title);
    source[field_name("body", lang)] = json!(c.text);
    add_filter_fields(&mut source, &c.metadata, lang, acl);
    source
}

/// The source of a document entry in language `lang`: `first` = the chunk with the lowest
/// ordinal, `chunk_ids` every chunk's id, `text` the whole text, `stale_ids` the chunk ids of
/// earlier writes this write deletes.
#[allow(clippy::too_many_arguments)]
pub fn document_source(
    first: &Chunk,
    lang: Lang,
    chunk_ids: &[&str],
    key: &str,
    write_id: &str,
    acl: &DocumentAcl,
    text: &str,
    stale_ids: &[String],
) -> Value {
    let mut source = json!({
        "kind": KIND_DOCUMENT,
        "tenant": first.tenant,
        "document_id": first.document_id,
        "doc_key": key,
        "write_id": write_id,
        "external_id": first.external_id,
        "chunk_ids": chunk_ids,
        "stale_ids": stale_ids,
    });
    source[field_name("doc_title", lang)] = json!(first.title);
    source[field_name("doc_body", lang)] = json!(text);
    add_filter_fields(&mut source, &first.metadata, lang, acl);
    source
}

/// The source of a tombstone: the document was deleted live while a rebuild was loading, and
/// `stale_ids` are its chunk ids the delete removed (deleted once more by a later write).
pub fn tombstone_source(
    tenant: &str,
    document_id: &str,
    write_id: &str,
    stale_ids: &[String],
) -> Value {
    json!({
        "kind": KIND_TOMBSTONE,
        "tenant": tenant,
        "document_id": document_id,
        "doc_key": doc_key(tenant, document_id),
        "write_id": write_id,
        "chunk_ids": [],
        "stale_ids": stale_ids,
    })
}

/// Metadata, language and ACL fields, the same on both kinds. Metadata keys are sorted so a
/// document always has the same source. The language is a `meta` value of the key `lang` too
/// (the metadata's own, normalised, or the detected code), as on the Tantivy side.
fn add_filter_fields(
    source: &mut Value,
    metadata: &HashMap<String, String>,
    lang: Lang,
    acl: &DocumentAcl,
) {
    let mut entries: Vec<(&String, &String)> = metadata.iter().collect();
    entries.sort();
    let mut meta = Vec::new();
    let mut keys = Vec::new();
    let mut typed_values = Vec::new();
    for (k, v) in entries {
        meta.push(Value::String(format!("{k}{SEP}{v}")));
        keys.push(Value::String(k.clone()));
        if let Some(n) = typed::number(v) {
            typed_values.push(json!({ "key": k, "number": n }));
        } else if let Some(ms) = typed::date_millis(v) {
            typed_values.push(json!({ "key": k, "date": ms }));
        }
    }
    let code = language::filter_code(metadata, lang);
    let lang_value = Value::String(format!("{}{SEP}{code}", language::METADATA_KEY));
    if !meta.contains(&lang_value) {
        meta.push(lang_value);
    }
    let lang_key = Value::String(language::METADATA_KEY.to_string());
    if !keys.contains(&lang_key) {
        keys.push(lang_key);
    }
    source["lang"] = json!(lang.code());
    source["meta"] = Value::Array(meta);
    source["meta_keys"] = Value::Array(keys);
    source["meta_typed"] = Value::Array(typed_values);
    source["acl_clearance"] = json!(acl.clearance);
    source["acl_groups"] = json!(acl.groups);
}
