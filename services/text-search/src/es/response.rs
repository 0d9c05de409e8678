//! Reading Elasticsearch answers: search hits as [`ChunkHit`]s, the index behind an alias,
//! and cluster health.

use braid_proto::v1::ChunkHit;
use serde_json::Value;

use crate::error::TextError;
use crate::language::{ALL, Lang, field_name};

/// The hits of a search answer, in order. An answer from only some shards (a shard failed,
/// or its index was deleted under the search by a rebuild's switch) is an error, never a
/// short list of hits: [`TextError::Unavailable`], which callers retry.
pub fn hits(body: &Value) -> Result<&Vec<Value>, TextError> {
    let failed = body.pointer("/_shards/failed").and_then(Value::as_u64);
    if let Some(failed) = failed.filter(|n| *n > 0) {
        let total = body.pointer("/_shards/total").and_then(Value::as_u64);
        let reason = body
            .pointer("/_shards/failures/0/reason/type")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        return Err(TextError::Unavailable(format!(
            "search answered by only some shards ({failed} of {} failed: {reason})",
            total.unwrap_or(0)
        )));
    }
    body.pointer("/hits/hits")
        .and_then(Value::as_array)
        .ok_or_else(|| TextError::Index("Elasticsearch search answer without hits.hits".into()))
}

fn text(hit: &Value, field: &str) -> String {
    hit.pointer(&format!("/_source/{field}"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// `_source.document_id` and `_score` of a hit.
pub fn document_hit(hit: &Value) -> (String, f32) {
    (text(hit, "document_id"), score(hit))
}

fn score(hit: &Value) -> f32 {
    hit.get("_score").and_then(Value::as_f64).unwrap_or(0.0) as f32
}

/// A chunk hit with its text and highlighted snippet (empty when no word of the body
/// matched, as on the Tantivy side).
pub fn chunk_hit(hit: &Value) -> ChunkHit {
    // The text is in the fields of the entry's language (English for an entry without one).
    let lang = Lang::from_code(&text(hit, "lang")).unwrap_or(Lang::En);
    let body = field_name("body", lang);
    let snippet = hit
        .pointer(&format!("/highlight/{body}/0"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    ChunkHit {
        chunk_id: text(hit, "chunk_id"),
        document_id: text(hit, "document_id"),
        external_id: text(hit, "external_id"),
        title: text(hit, &field_name("title", lang)),
        snippet,
        text: text(hit, &body),
        ordinal: hit
            .pointer("/_source/ordinal")
            .and_then(Value::as_u64)
            .unwrap_or(0) as u32,
        score: score(hit),
    }
}

/// The languages of a [`super::query::languages`] answer, in [`ALL`]'s order (English first);
/// codes this version does not know are left out.
pub fn languages(body: &Value) -> Result<Vec<Lang>, TextError> {
    let buckets = body
        .pointer("/aggregations/lang/buckets")
        .and_then(Value::as_array)
        .ok_or_else(|| TextError::Index("language aggregation answer without buckets".into()))?;
    let codes: Vec<&str> = buckets
        .iter()
        .filter_map(|b| b.get("key").and_then(Value::as_str))
        .collect();
    Ok(ALL
        .into_iter()
        .filter(|l| codes.contains(&l.code()))
        .collect())
}

/// The concrete index behind the serving alias, from its mapping's `_meta`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Active {
    pub index: String,
    /// The index ids it supersedes (rebuilt from).
    pub supersedes: Vec<String>,
    /// Its entry format (`braid_format`; none before format 2).
    pub format: Option<u64>,
    /// Its layout (`braid_layout`; none before layouts existed, which was `shared`).
    pub layout: Option<String>,
}

/// The concrete index behind an alias, the ids it supersedes and its entry format, from a
/// `GET <alias>/_mapping` answer (`{"<index>": {"mappings": {"_meta": {...}}}}`).
pub fn active_index(body: &Value) -> Result<Active, TextError> {
    let indices = body
        .as_object()
        .ok_or_else(|| TextError::Index("unexpected answer to GET _mapping".into()))?;
    let mut names = indices.keys();
    let (Some(name), None) = (names.next(), names.next()) else {
        return Err(TextError::NotServing(format!(
            "the Elasticsearch alias points at {} indices, not one; fix the alias (POST \
             _aliases) or rebuild with `braidctl reindex --leg text`",
            indices.len()
        )));
    };
    let meta = indices[name].pointer("/mappings/_meta");
    let supersedes = meta
        .and_then(|m| m.get("braid_supersedes"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Ok(Active {
        index: name.clone(),
        supersedes,
        format: meta
            .and_then(|m| m.get("braid_format"))
            .and_then(Value::as_u64),
        layout: meta
            .and_then(|m| m.get("braid_layout"))
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// (index, its aliases) of every index in a `GET <pattern>/_alias` or `GET _alias/<pattern>`
/// answer (`{"<index>": {"aliases": {"<alias>": {}}}}`).
pub fn indices_and_aliases(body: &Value) -> Vec<(String, Vec<String>)> {
    body.as_object()
        .map(|o| {
            o.iter()
                .map(|(index, v)| {
                    let aliases = v
                        .get("aliases")
                        .and_then(Value::as_object)
                        .map(|a| a.keys().cloned().collect())
                        .unwrap_or_default();
                    (index.clone(), aliases)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The indices named in a `GET _alias/<alias>` answer.
pub fn alias_indices(body: &Value) -> Vec<String> {
    body.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// `status` of a cluster health answer: `Ok` for green or yellow, the reason for red (or
/// anything else).
pub fn health(body: &Value) -> Result<(), String> {
    match body.get("status").and_then(Value::as_str) {
        Some("green" | "yellow") => Ok(()),
        Some("red") => Err(format!(
            "Elasticsearch reports the text index red ({} unassigned shards): a primary shard is \
             unavailable",
            body.get("unassigned_shards")
                .and_then(Value::as_u64)
                .unwrap_or(0)
        )),
        other => Err(format!(
            "Elasticsearch cluster health without a usable status ({other:?})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn health_red_is_not_serving() {
        // The documented cluster health answer's fields.
        let green = json!({ "cluster_name": "c", "status": "green", "timed_out": false,
            "number_of_nodes": 1, "unassigned_shards": 0 });
        assert!(health(&green).is_ok());
        assert!(health(&json!({ "status": "yellow" })).is_ok());
        let red = json!({ "status": "red", "timed_out": true, "unassigned_shards": 2 });
        assert!(health(&red).unwrap_err().contains("red (2 unassigned"));
        assert!(health(&json!({})).is_err());
    }

    #[test]
    fn hits_and_the_active_index_are_read() {
        let body = json!({ "hits": { "hits": [ {
            "_id": "x", "_score": 1.5,
            "_source": { "chunk_id": "d:0", "document_id": "d", "external_id": "e",
                         "title": "T", "body": "a comet", "ordinal": 3 },
            "highlight": { "body": ["a <b>comet</b>"] } } ] } });
        let h = chunk_hit(&hits(&body).unwrap()[0]);
        assert_eq!(
            (h.chunk_id.as_str(), h.ordinal, h.score, h.snippet.as_str()),
            ("d:0", 3, 1.5, "a <b>comet</b>")
        );
        let langs = json!({ "aggregations": { "lang": { "buckets": [
            { "key": "ko", "doc_count": 1 }, { "key": "en", "doc_count": 9 },
            { "key": "xx", "doc_count": 1 } ] } } });
        assert_eq!(languages(&langs).unwrap(), [Lang::En, Lang::Ko]);
        assert!(languages(&json!({})).is_err());
        // A German entry: its text and highlight are in the German fields.
        let german = json!({ "_score": 2.0, "_source": { "chunk_id": "g:0", "lang": "de",
            "title_de": "Häuser", "body_de": "Die Häuser am Fluss" },
            "highlight": { "body_de": ["Die <b>Häuser</b> am Fluss"] } });
        let h = chunk_hit(&german);
        assert_eq!(
            (h.title.as_str(), h.text.as_str(), h.snippet.as_str()),
            (
                "Häuser",
                "Die Häuser am Fluss",
                "Die <b>Häuser</b> am Fluss"
            )
        );
        let mapping = json!({ "braid-text-abc": { "mappings": {
            "_meta": { "braid_supersedes": ["braid-text-old"], "braid_format": 2 } } } });
        assert_eq!(
            active_index(&mapping).unwrap(),
            Active {
                index: "braid-text-abc".to_string(),
                supersedes: vec!["braid-text-old".to_string()],
                format: Some(2),
                layout: None,
            }
        );
        let old = json!({ "braid-text-abc": { "mappings": { "_meta": {} } } });
        assert_eq!(active_index(&old).unwrap().format, None);
        let partial = json!({ "_shards": { "total": 2, "successful": 1, "failed": 1,
            "failures": [ { "shard": 0, "reason": { "type": "node_not_connected_exception" } } ] },
            "hits": { "hits": [] } });
        assert!(
            matches!(hits(&partial), Err(TextError::Unavailable(r)) if r.contains("1 of 2")),
            "{:?}",
            hits(&partial)
        );
        let two = json!({ "a": {}, "b": {} });
        assert!(matches!(active_index(&two), Err(TextError::NotServing(_))));
    }
}
