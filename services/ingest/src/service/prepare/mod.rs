//! Turning one `DocumentInput` into a `NewDocument`: validation of every field, extraction,
//! redaction, chunking and the content hash (CPU work; callers run it on the blocking pool),
//! and the fingerprint of a whole request for idempotency keys.

use std::collections::BTreeMap;

use braid_core::validate;
use braid_proto::v1::{DocumentInput, IngestRequest};
use sha2::{Digest, Sha256};

use super::Rules;
use crate::acl;
use crate::chunk;
use crate::config::LimitsConfig;
use crate::error::IngestError;
use crate::extract::{self, Mime};
use crate::store::NewDocument;

/// Validates, extracts, redacts and chunks one document (CPU work; runs on the blocking pool).
///
/// Field rules: `external_id` is an identifier (no control or bidi formatting characters);
/// `title` and `content` are free text whose control characters become spaces; metadata keys
/// and values follow [`validate::metadata_entry`]; the chunks must stay within
/// `limits.max_chunks_per_document` and `limits.max_chunk_bytes`. Every rejection names the
/// field and the rule.
pub fn prepare(
    tenant: &str,
    doc: DocumentInput,
    rules: &Rules,
) -> Result<NewDocument, IngestError> {
    let limits = &rules.limits;
    validate::identifier(
        "external_id",
        &doc.external_id,
        limits.max_external_id_bytes,
    )?;
    if doc.title.len() > limits.max_title_bytes {
        return Err(IngestError::invalid(
            "title",
            format!(
                "{} bytes, at most {}",
                doc.title.len(),
                limits.max_title_bytes
            ),
        ));
    }
    let mime = Mime::parse(&doc.mime_type).ok_or_else(|| {
        IngestError::invalid(
            "mime_type",
            format!(
                "`{}` is not supported; use one of {}",
                doc.mime_type.escape_debug(),
                Mime::ALLOWED
            ),
        )
    })?;
    if doc.content.len() > limits.max_document_bytes {
        return Err(IngestError::invalid(
            "content",
            format!(
                "{} bytes, at most {}",
                doc.content.len(),
                limits.max_document_bytes
            ),
        ));
    }
    if doc.metadata.len() > limits.max_metadata_entries {
        return Err(IngestError::invalid(
            "metadata",
            format!(
                "{} entries, at most {}",
                doc.metadata.len(),
                limits.max_metadata_entries
            ),
        ));
    }
    for (k, v) in &doc.metadata {
        validate::metadata_entry("metadata", k, v)?;
    }
    let acl = acl::validate(doc.acl, limits)?;
    let redactor = rules.redaction.as_ref();
    let mut extracted = extract::extract(mime, &doc.content);
    if redactor.enabled() {
        extracted.text = redactor.redact(&extracted.text).into_owned();
    }
    if extracted.text.is_empty() {
        return Err(IngestError::invalid(
            "content",
            "no text left after extraction",
        ));
    }
    let title = validate::clean_text(&doc.title);
    let title = if title.trim().is_empty() {
        extracted.title.unwrap_or_default()
    } else {
        title.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let title = redactor.redact(&title).into_owned();
    let mut metadata = doc.metadata;
    if redactor.enabled() {
        for (k, v) in metadata.iter_mut() {
            *v = redactor.redact(v).into_owned();
            validate::metadata_value(&format!("metadata[{k}]"), v).map_err(|e| {
                IngestError::invalid(e.field, format!("after redaction: {}", e.message))
            })?;
        }
    }
    rules.metadata_types.check_document(tenant, &metadata)?;
    let chunks = chunk::chunk(
        &extracted.text,
        rules.tokenizer.as_ref(),
        rules.chunking.max_tokens,
        rules.chunking.overlap_tokens,
    );
    check_chunks(&chunks, limits)?;
    // The hash covers everything that reaches the legs (the redaction settings and the ACL included), so
    // an unchanged hash means nothing to re-index.
    let mut hasher = Sha256::new();
    let fingerprint = redactor.fingerprint();
    let fields = [mime.as_str(), title.as_str(), doc.content.as_str()];
    if fingerprint.is_empty() {
        hash_fields(&mut hasher, fields, &metadata);
    } else {
        hash_fields(
            &mut hasher,
            fields.into_iter().chain([fingerprint]),
            &metadata,
        );
    }
    hash_acl(&mut hasher, &acl);
    Ok(NewDocument {
        tenant: tenant.to_string(),
        external_id: doc.external_id,
        title,
        mime_type: mime.as_str(),
        metadata,
        acl,
        content_sha256: hex::encode(hasher.finalize()),
        chunks: chunks
            .into_iter()
            .map(|c| (c.text, c.token_count as i32))
            .collect(),
    })
}

/// Rejects a document whose chunks would exceed the limits, before anything is stored or
/// embedded.
fn check_chunks(chunks: &[chunk::TextChunk], limits: &LimitsConfig) -> Result<(), IngestError> {
    if chunks.len() > limits.max_chunks_per_document {
        return Err(IngestError::invalid(
            "content",
            format!(
                "would be cut into {} chunks, at most {} (limits.max_chunks_per_document)",
                chunks.len(),
                limits.max_chunks_per_document
            ),
        ));
    }
    if let Some((i, c)) = chunks
        .iter()
        .enumerate()
        .find(|(_, c)| c.text.len() > limits.max_chunk_bytes)
    {
        return Err(IngestError::invalid(
            "content",
            format!(
                "chunk {i} would hold {} bytes, at most {} (limits.max_chunk_bytes): \
                 break long runs of text without spaces",
                c.text.len(),
                limits.max_chunk_bytes
            ),
        ));
    }
    Ok(())
}

/// Feeds length-prefixed fields and the metadata (sorted) into `hasher`: the same logical
/// input always hashes the same, whatever the map's iteration order.
fn hash_fields<'a>(
    hasher: &mut Sha256,
    fields: impl IntoIterator<Item = &'a str>,
    metadata: &'a std::collections::HashMap<String, String>,
) {
    let sorted: BTreeMap<&String, &String> = metadata.iter().collect();
    let parts = fields.into_iter().chain(
        sorted
            .into_iter()
            .flat_map(|(k, v)| [k.as_str(), v.as_str()]),
    );
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
}

/// Feeds an ACL into `hasher`: its clearance and group count, then each group
/// length-prefixed, so no two ACLs (nor an ACL and other fields) hash alike.
fn hash_acl(hasher: &mut Sha256, acl: &braid_proto::v1::DocumentAcl) {
    hasher.update(b"acl");
    hasher.update(u64::from(acl.clearance).to_le_bytes());
    hasher.update((acl.groups.len() as u64).to_le_bytes());
    for g in &acl.groups {
        hasher.update((g.len() as u64).to_le_bytes());
        hasher.update(g.as_bytes());
    }
}

/// Fingerprint of an Ingest request for idempotency keys.
pub(super) fn request_fingerprint(r: &IngestRequest) -> String {
    let mut hasher = Sha256::new();
    for d in &r.documents {
        hash_fields(
            &mut hasher,
            [
                d.external_id.as_str(),
                d.title.as_str(),
                d.content.as_str(),
                d.mime_type.as_str(),
            ],
            &d.metadata,
        );
        hash_acl(&mut hasher, &d.acl.clone().unwrap_or_default());
    }
    hex::encode(hasher.finalize())
}
#[cfg(test)]
mod tests;
