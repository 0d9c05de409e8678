//! The consistency check: per document, the chunks in PostgreSQL (the source of truth)
//! against what each leg lists for it (`VerifyListChunks`), as drift entries.
//!
//! Documents are read in (tenant, id) pages and each leg is asked about one page at a time,
//! so memory stays bounded by the page size whatever the corpus. Documents with indexing
//! jobs pending or running are counted as in flight and not compared (they are not drift,
//! just not done). Limitation: chunks a leg holds for a document PostgreSQL no longer has at
//! all (deleted, and the delete job lost) are not listed; deletes go through the outbox.

use std::collections::{BTreeMap, HashMap};

use braid_proto::v1::{VerifyChunk, VerifyDrift};
use sha2::{Digest, Sha256};

use crate::recovery::store::DocumentPage;
use crate::store::Leg;

/// Drift entries listed at most; the count beyond is reported as truncated.
pub const MAX_DRIFT: usize = 1000;

pub fn text_sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The drift of one leg for one document: what PostgreSQL says the leg should hold against
/// what it lists. `listed` may hold several entries per chunk (one per vector model).
pub fn compare(doc: &DocumentPage, leg: Leg, listed: &[&VerifyChunk]) -> Vec<VerifyDrift> {
    let document_id = doc.id.to_string();
    let expected: BTreeMap<String, String> = doc
        .payload
        .chunks
        .iter()
        .map(|(ordinal, body)| (format!("{document_id}:{ordinal}"), text_sha256(body)))
        .collect();
    let mut held: BTreeMap<&str, Vec<&VerifyChunk>> = BTreeMap::new();
    for c in listed {
        held.entry(c.chunk_id.as_str()).or_default().push(c);
    }
    let (mut missing, mut extra, mut stale_content, mut stale_model) =
        (vec![], vec![], vec![], vec![]);
    for (id, sha) in &expected {
        match held.get(id.as_str()) {
            None => missing.push(id.clone()),
            Some(copies) => {
                if copies.iter().any(|c| &c.text_sha256 != sha) {
                    stale_content.push(id.clone());
                }
                if let (Leg::Vector, Some(model)) = (leg, &doc.vector_model)
                    && !copies.iter().any(|c| &c.model == model)
                {
                    stale_model.push(id.clone());
                }
            }
        }
    }
    for id in held.keys() {
        if !expected.contains_key(*id) {
            extra.push(id.to_string());
        }
    }
    [
        ("missing", missing),
        ("extra", extra),
        ("stale_content", stale_content),
        ("stale_model", stale_model),
    ]
    .into_iter()
    .filter(|(_, ids)| !ids.is_empty())
    .map(|(kind, chunk_ids)| VerifyDrift {
        tenant: doc.tenant.clone(),
        document_id: document_id.clone(),
        external_id: doc.payload.external_id.clone(),
        leg: leg.as_str().to_string(),
        kind: kind.to_string(),
        chunk_ids,
    })
    .collect()
}

/// A leg's listing grouped by (tenant, document id).
pub fn group(chunks: &[VerifyChunk]) -> HashMap<(&str, &str), Vec<&VerifyChunk>> {
    let mut by_doc: HashMap<(&str, &str), Vec<&VerifyChunk>> = HashMap::new();
    for c in chunks {
        by_doc
            .entry((c.tenant.as_str(), c.document_id.as_str()))
            .or_default()
            .push(c);
    }
    by_doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::IndexPayload;
    use braid_proto::v1::DocumentAcl;
    use uuid::Uuid;

    fn doc(chunks: &[&str], model: Option<&str>) -> DocumentPage {
        DocumentPage {
            id: Uuid::nil(),
            tenant: "t".into(),
            version: 1,
            vector_model: model.map(str::to_string),
            in_flight: false,
            payload: IndexPayload {
                external_id: "e".into(),
                title: String::new(),
                metadata: HashMap::new(),
                acl: DocumentAcl::default(),
                chunks: chunks
                    .iter()
                    .enumerate()
                    .map(|(i, b)| (i as i32, b.to_string()))
                    .collect(),
            },
        }
    }

    fn held(ordinal: u32, text: &str, model: &str) -> VerifyChunk {
        VerifyChunk {
            tenant: "t".into(),
            document_id: Uuid::nil().to_string(),
            chunk_id: format!("{}:{ordinal}", Uuid::nil()),
            text_sha256: text_sha256(text),
            model: model.into(),
        }
    }

    fn kinds(drift: &[VerifyDrift]) -> Vec<(String, usize)> {
        drift
            .iter()
            .map(|d| (d.kind.clone(), d.chunk_ids.len()))
            .collect()
    }

    #[test]
    fn finds_missing_extra_and_stale_chunks() {
        let d = doc(&["a", "b", "c"], Some("m2"));
        let clean = [held(0, "a", "m2"), held(1, "b", "m2"), held(2, "c", "m2")];
        let refs: Vec<&VerifyChunk> = clean.iter().collect();
        assert!(compare(&d, Leg::Vector, &refs).is_empty());
        assert!(compare(&d, Leg::Text, &refs).is_empty());

        let drifted = [held(0, "a", "m2"), held(1, "B!", "m2"), held(7, "x", "m2")];
        let refs: Vec<&VerifyChunk> = drifted.iter().collect();
        assert_eq!(
            kinds(&compare(&d, Leg::Text, &refs)),
            [
                ("missing".into(), 1),
                ("extra".into(), 1),
                ("stale_content".into(), 1)
            ]
        );

        // Vectors of an older model only: stale model (the text leg has no models).
        let old = [held(0, "a", "m1"), held(1, "b", "m1"), held(2, "c", "m1")];
        let refs: Vec<&VerifyChunk> = old.iter().collect();
        assert_eq!(
            kinds(&compare(&d, Leg::Vector, &refs)),
            [("stale_model".into(), 3)]
        );
        assert!(compare(&d, Leg::Text, &refs).is_empty());
    }
}
