//! Bulk writes: the `_bulk` lines of a document's entries, the per-item results of a bulk
//! response, and which failures are worth retrying. See
//! <https://www.elastic.co/guide/en/elasticsearch/reference/8.17/docs-bulk.html>.
//!
//! Every action names its target (`_index`, always an alias) and the request carries
//! `require_alias=true`, so an alias that vanished meanwhile (a rebuild switched) fails that
//! item instead of auto-creating an index of that name. No `refresh`: visibility is the
//! caller's business (see `refresh.rs`).
//!
//! Per item: 2xx is written (and a `delete` answered 404 `not_found`: already gone); 429
//! (`es_rejected_execution_exception`, a full write queue) and 5xx (a shard unavailable, a
//! node failing) are retryable, so only those items are sent again; 409 on a `create` means
//! the entry already exists (a rebuild skips what was written live); 409 on an `index` (a
//! concurrent write won) is retryable; any other 4xx (`document_parsing_exception`,
//! `mapper_parsing_exception`, `illegal_argument_exception`, ...) is permanent: the item
//! will never succeed as it is, and only that item's document fails.

use braid_core::auth::chunks_acl;
use braid_proto::v1::Chunk;
use serde_json::{Value, json};

use super::mapping::{chunk_entry_id, chunk_source, doc_key, document_entry_id, document_source};
use super::request::{Body, EsRequest, Method};
use crate::document_text::document_text;
use crate::error::TextError;
use crate::language::{Lang, document_lang};

/// How a bulk item is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Create or overwrite.
    Index,
    /// Create only if absent (409 otherwise).
    Create,
    /// Remove (absent is fine).
    Delete,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Index => "index",
            Op::Create => "create",
            Op::Delete => "delete",
        }
    }
}

/// One entry to write or delete: its action and (except for a delete) source lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub op: Op,
    /// The alias written through.
    pub index: String,
    pub id: String,
    pub routing: String,
    pub source: Option<Value>,
    /// Which document (tenant, document id) the entry belongs to.
    pub document: (String, String),
}

impl Item {
    /// Deletes entry `id` of `document` through `index`.
    pub fn delete(index: &str, id: String, document: &(String, String)) -> Self {
        Item {
            op: Op::Delete,
            index: index.to_string(),
            id,
            routing: doc_key(&document.0, &document.1),
            source: None,
            document: document.clone(),
        }
    }

    fn lines(&self) -> impl Iterator<Item = Value> {
        let mut action = serde_json::Map::new();
        action.insert(
            self.op.name().into(),
            json!({ "_index": self.index, "_id": self.id, "routing": self.routing }),
        );
        std::iter::once(Value::Object(action)).chain(self.source.clone())
    }
}

/// The entries of one document written through `index`: its chunks, each in its language
/// (`langs`, one per chunk, from [`crate::language::chunk_langs`]) and, when it has any, its
/// document entry in the language of most of its text (listing the chunk ids, and
/// `stale_ids`: chunk ids of earlier writes this write deletes). Every entry carries
/// `write_id`. The document's chunks must share one ACL.
pub fn document_items(
    index: &str,
    (tenant, document_id): (&str, &str),
    chunks: &[Chunk],
    langs: &[Lang],
    write_id: &str,
    op: Op,
    stale_ids: &[String],
) -> Result<(Option<Item>, Vec<Item>), TextError> {
    let acl = chunks_acl(chunks).map_err(TextError::from)?;
    if langs.len() != chunks.len() {
        return Err(TextError::Index(format!(
            "{} languages for {} chunks of {tenant}/{document_id}",
            langs.len(),
            chunks.len()
        )));
    }
    let key = doc_key(tenant, document_id);
    let document = (tenant.to_string(), document_id.to_string());
    let items = chunks
        .iter()
        .zip(langs)
        .map(|(c, &lang)| Item {
            op,
            index: index.to_string(),
            id: chunk_entry_id(tenant, &c.chunk_id),
            routing: key.clone(),
            source: Some(chunk_source(c, lang, &key, write_id, &acl)),
            document: document.clone(),
        })
        .collect();
    let chunk_ids: Vec<&str> = chunks.iter().map(|c| c.chunk_id.as_str()).collect();
    let entry = chunks.iter().min_by_key(|c| c.ordinal).map(|first| Item {
        op,
        index: index.to_string(),
        id: document_entry_id(tenant, document_id),
        routing: key.clone(),
        source: Some(document_source(
            first,
            document_lang(chunks, langs),
            &chunk_ids,
            &key,
            write_id,
            &acl,
            &document_text(chunks),
            stale_ids,
        )),
        document: document.clone(),
    });
    Ok((entry, items))
}

/// `_bulk` of `items` (each naming its alias), `require_alias=true`, no refresh.
pub fn request(items: &[Item]) -> EsRequest {
    let lines = items.iter().flat_map(Item::lines).collect();
    let mut r = EsRequest::new(Method::Post, "/_bulk".into()).param("require_alias", "true");
    r.body = Body::NdJson(lines);
    r
}

/// What became of one bulk item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written, or (a delete) gone.
    Written,
    /// A `create` whose entry exists.
    Exists,
    /// Worth sending again (429, 5xx, an `index` version conflict).
    Retryable(String),
    /// Will not succeed as it is.
    Permanent(String),
}

/// The outcome of each item of a bulk response and the concrete index it went to (empty
/// when none), in request order. A response that is not a bulk response (or has another
/// number of items) is an error.
pub fn outcomes(response: &Value, sent: &[Item]) -> Result<Vec<(Outcome, String)>, TextError> {
    let items = response
        .get("items")
        .and_then(Value::as_array)
        .filter(|items| items.len() == sent.len())
        .ok_or_else(|| {
            TextError::Index(format!(
                "Elasticsearch answered a bulk request of {} items with an unexpected body",
                sent.len()
            ))
        })?;
    Ok(items
        .iter()
        .zip(sent)
        .map(|(item, sent)| outcome(item, sent.op))
        .collect())
}

fn outcome(item: &Value, op: Op) -> (Outcome, String) {
    // Each item is `{"<op>": {"_index": .., "status": .., "error": {"type": .., "reason": ..}}}`.
    let result = item
        .as_object()
        .and_then(|o| o.values().next())
        .unwrap_or(&Value::Null);
    let index = result
        .get("_index")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let status = result.get("status").and_then(Value::as_u64).unwrap_or(0);
    let error = result.get("error");
    let kind = error
        .and_then(|e| e.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let reason = error
        .and_then(|e| e.get("reason"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let detail = || format!("{status} {kind}: {reason}");
    let outcome = match status {
        200..=299 if error.is_none() => Outcome::Written,
        404 if op == Op::Delete && error.is_none() => Outcome::Written,
        409 if op == Op::Create => Outcome::Exists,
        409 | 429 | 500..=599 => Outcome::Retryable(detail()),
        // 0: no status at all; a malformed item is not worth retrying.
        _ => Outcome::Permanent(detail()),
    };
    (outcome, index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(op: Op) -> Item {
        Item {
            op,
            index: "braid-text".into(),
            id: "x".into(),
            routing: "r".into(),
            source: (op != Op::Delete).then(|| json!({})),
            document: ("t".into(), "d".into()),
        }
    }

    /// Canned responses in the documented shape (the bulk API page's "Example response"
    /// with `errors: true`), one per failure class.
    #[test]
    fn per_item_results_map_to_retryable_and_permanent() {
        let response = json!({
            "took": 3,
            "errors": true,
            "items": [
                { "index": { "_index": "i", "_id": "1", "_version": 1, "result": "created", "status": 201 } },
                { "index": { "_index": "i", "_id": "2", "status": 429, "error": {
                    "type": "es_rejected_execution_exception",
                    "reason": "rejected execution of coordinating operation" } } },
                { "index": { "_index": "i", "_id": "3", "status": 503, "error": {
                    "type": "unavailable_shards_exception", "reason": "primary shard is not active" } } },
                { "index": { "_index": "i", "_id": "4", "status": 400, "error": {
                    "type": "document_parsing_exception",
                    "reason": "[1:10] failed to parse field [ordinal] of type [integer]" } } },
                { "create": { "_index": "i", "_id": "5", "status": 409, "error": {
                    "type": "version_conflict_engine_exception",
                    "reason": "[5]: version conflict, document already exists" } } },
                { "index": { "_index": "i", "_id": "6", "status": 409, "error": {
                    "type": "version_conflict_engine_exception", "reason": "[6]: version conflict" } } },
                { "index": { "_index": "i", "_id": "7", "status": 400, "error": {
                    "type": "strict_dynamic_mapping_exception",
                    "reason": "[1:2] mapping set to strict, dynamic introduction of [x] within [_doc] is not allowed" } } },
                { "index": { "_index": "i", "_id": "8", "result": "updated", "status": 200 } },
                { "delete": { "_index": "i", "_id": "9", "result": "not_found", "status": 404 } },
                { "delete": { "_index": "gone", "_id": "10", "status": 404, "error": {
                    "type": "index_not_found_exception", "reason": "no such index [gone]" } } },
            ]
        });
        let sent = [
            item(Op::Index),
            item(Op::Index),
            item(Op::Index),
            item(Op::Index),
            item(Op::Create),
            item(Op::Index),
            item(Op::Index),
            item(Op::Index),
            item(Op::Delete),
            item(Op::Delete),
        ];
        let got: Vec<Outcome> = outcomes(&response, &sent)
            .unwrap()
            .into_iter()
            .map(|(o, _)| o)
            .collect();
        assert_eq!(got[0], Outcome::Written);
        assert!(
            matches!(&got[1], Outcome::Retryable(d) if d.contains("es_rejected_execution_exception"))
        );
        assert!(matches!(&got[2], Outcome::Retryable(d) if d.starts_with("503")));
        assert!(
            matches!(&got[3], Outcome::Permanent(d) if d.contains("document_parsing_exception"))
        );
        assert_eq!(got[4], Outcome::Exists);
        assert!(matches!(&got[5], Outcome::Retryable(_)));
        assert!(matches!(&got[6], Outcome::Permanent(d) if d.contains("strict_dynamic")));
        assert_eq!(got[7], Outcome::Written);
        assert_eq!(
            got[8],
            Outcome::Written,
            "a delete of an absent entry is done"
        );
        assert!(matches!(&got[9], Outcome::Permanent(d) if d.contains("index_not_found")));
        assert_eq!(outcomes(&response, &sent).unwrap()[0].1, "i");
    }

    #[test]
    fn a_response_that_does_not_match_the_request_is_an_error() {
        let sent = [item(Op::Index), item(Op::Index)];
        let one = json!({ "errors": false, "items": [ { "index": { "status": 201 } } ] });
        assert!(outcomes(&one, &sent).is_err());
        let error = json!({ "error": { "type": "illegal_argument_exception" }, "status": 400 });
        assert!(outcomes(&error, &sent).is_err());
    }
}
