//! The recovery RPCs' request handling: listing the chunks held per document (for `verify`),
//! the serving state, and rebuild writes. The index mechanics live behind [`IndexAdmin`]
//! (`managed` for Tantivy, `es` for Elasticsearch).

use braid_core::validate;
use braid_proto::v1::{
    RebuildStatusRequest, RebuildStatusResponse, RebuildWriteRequest, RebuildWriteResponse,
    VerifyChunk, VerifyListChunksRequest, VerifyListChunksResponse,
};
use sha2::{Digest, Sha256};

use crate::error::TextError;
use crate::index::IndexAdmin;

/// Documents per `VerifyListChunks` call.
pub const MAX_VERIFY_DOCUMENTS: usize = 500;
/// Documents per `RebuildWrite` call.
pub const MAX_REBUILD_DOCUMENTS: usize = 500;

pub fn text_sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

pub async fn list_chunks(
    index: &dyn IndexAdmin,
    r: VerifyListChunksRequest,
) -> Result<VerifyListChunksResponse, TextError> {
    if r.documents.len() > MAX_VERIFY_DOCUMENTS {
        return Err(validate::FieldError::new(
            "documents",
            format!(
                "{} documents, at most {MAX_VERIFY_DOCUMENTS}",
                r.documents.len()
            ),
        )
        .into());
    }
    let mut chunks = Vec::new();
    for (i, key) in r.documents.into_iter().enumerate() {
        validate::tenant(&key.tenant).map_err(|e| at(i, e))?;
        validate::document_id(&key.document_id).map_err(|e| at(i, e))?;
        for (chunk_id, text) in index.document_chunks(&key.tenant, &key.document_id).await? {
            chunks.push(VerifyChunk {
                tenant: key.tenant.clone(),
                document_id: key.document_id.clone(),
                chunk_id,
                text_sha256: text_sha256(&text),
                model: String::new(),
            });
        }
    }
    Ok(VerifyListChunksResponse { chunks })
}

fn at(i: usize, e: validate::FieldError) -> TextError {
    validate::FieldError::new(format!("documents[{i}].{}", e.field), e.message).into()
}

pub async fn status(
    index: &dyn IndexAdmin,
    r: RebuildStatusRequest,
) -> Result<RebuildStatusResponse, TextError> {
    let status = index.status(&r.expected_index_id).await?;
    let (rebuild_id, rebuild_documents) = status.rebuild.unwrap_or_default();
    Ok(RebuildStatusResponse {
        index_id: status.index_id,
        serving: status.fault.is_none(),
        reason: status.fault.unwrap_or_default(),
        rebuild_id,
        rebuild_documents,
    })
}

pub async fn write(
    index: &dyn IndexAdmin,
    r: RebuildWriteRequest,
) -> Result<RebuildWriteResponse, TextError> {
    if r.documents.len() > MAX_REBUILD_DOCUMENTS {
        return Err(validate::FieldError::new(
            "documents",
            format!(
                "{} documents, at most {MAX_REBUILD_DOCUMENTS}",
                r.documents.len()
            ),
        )
        .into());
    }
    let mut documents = Vec::with_capacity(r.documents.len());
    for (i, d) in r.documents.into_iter().enumerate() {
        validate::replace_request(&d).map_err(|e| at(i, e))?;
        documents.push((d.tenant, d.document_id, d.chunks));
    }
    let (written, skipped) = index.rebuild_write(&r.rebuild_id, documents).await?;
    Ok(RebuildWriteResponse { written, skipped })
}
