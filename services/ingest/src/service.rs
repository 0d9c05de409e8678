//! The `braid.v1.IngestService` gRPC handlers: validate, extract, chunk, store (with outbox
//! jobs), optionally wait for READY.

use std::collections::BTreeMap;
#[cfg(test)]
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use braid_core::validate;
use braid_proto::tonic::{self, Request, Response, Status};
use braid_proto::v1::ingest_service_server::IngestService;
use braid_proto::v1::{
    DeleteDocumentRequest, DeleteDocumentResponse, Document, DocumentInput, DocumentResult,
    DocumentStatus, GetDocumentRequest, IngestRequest, IngestResponse,
};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::chunk::{self, Tokenize};
use crate::config::{ChunkingConfig, LimitsConfig};
use crate::error::IngestError;
use crate::extract::{self, Mime};
use crate::store::{DocumentRow, NewDocument, Store};

pub const DEFAULT_TENANT: &str = "default";

pub struct IngestApi {
    pub(crate) store: Store,
    pub(crate) limits: LimitsConfig,
    pub(crate) chunking: ChunkingConfig,
    pub(crate) tokenizer: Arc<dyn Tokenize>,
    pub(crate) wake: Arc<Notify>,
    pub(crate) progress: Arc<Notify>,
}

pub fn status_from_db(s: &str) -> DocumentStatus {
    match s {
        "pending" => DocumentStatus::Pending,
        "indexing" => DocumentStatus::Indexing,
        "ready" => DocumentStatus::Ready,
        "partial" => DocumentStatus::Partial,
        "failed" => DocumentStatus::Failed,
        "deleting" => DocumentStatus::Deleting,
        _ => DocumentStatus::Unspecified,
    }
}

fn is_settled(s: DocumentStatus) -> bool {
    matches!(
        s,
        DocumentStatus::Ready | DocumentStatus::Partial | DocumentStatus::Failed
    )
}

fn tenant_or_default(tenant: &str) -> Result<String, IngestError> {
    let tenant = if tenant.is_empty() {
        DEFAULT_TENANT
    } else {
        tenant
    };
    validate::tenant(tenant)?;
    Ok(tenant.to_string())
}

/// Validates, extracts and chunks one document (CPU work; runs on the blocking pool).
pub fn prepare(
    tenant: &str,
    doc: DocumentInput,
    limits: &LimitsConfig,
    chunking: &ChunkingConfig,
    tokenizer: &dyn Tokenize,
) -> Result<NewDocument, IngestError> {
    if doc.external_id.is_empty() {
        return Err(IngestError::invalid("external_id", "must not be empty"));
    }
    if doc.external_id.len() > limits.max_external_id_bytes {
        return Err(IngestError::invalid(
            "external_id",
            format!(
                "{} bytes, at most {}",
                doc.external_id.len(),
                limits.max_external_id_bytes
            ),
        ));
    }
    if doc.external_id.chars().any(char::is_control) {
        return Err(IngestError::invalid(
            "external_id",
            "must not contain control characters",
        ));
    }
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
                doc.mime_type,
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
    let extracted = extract::extract(mime, &doc.content);
    if extracted.text.is_empty() {
        return Err(IngestError::invalid(
            "content",
            "no text left after extraction",
        ));
    }
    let title = if doc.title.trim().is_empty() {
        extracted.title.unwrap_or_default()
    } else {
        doc.title.trim().to_string()
    };
    let chunks = chunk::chunk(
        &extracted.text,
        tokenizer,
        chunking.max_tokens,
        chunking.overlap_tokens,
    );
    // The hash covers everything that reaches the legs, so an unchanged hash means nothing
    // to re-index.
    let sorted: BTreeMap<&String, &String> = doc.metadata.iter().collect();
    let mut hasher = Sha256::new();
    for part in [mime.as_str(), title.as_str(), doc.content.as_str()] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    for (k, v) in sorted {
        hasher.update((k.len() as u64).to_le_bytes());
        hasher.update(k.as_bytes());
        hasher.update((v.len() as u64).to_le_bytes());
        hasher.update(v.as_bytes());
    }
    Ok(NewDocument {
        tenant: tenant.to_string(),
        external_id: doc.external_id,
        title,
        mime_type: mime.as_str(),
        metadata: doc.metadata,
        content_sha256: hex::encode(hasher.finalize()),
        chunks: chunks
            .into_iter()
            .map(|c| (c.text, c.token_count as i32))
            .collect(),
    })
}

fn to_document(row: DocumentRow) -> Document {
    Document {
        document_id: row.id.to_string(),
        tenant: row.tenant,
        external_id: row.external_id,
        title: row.title,
        mime_type: row.mime_type,
        metadata: row.metadata.0,
        status: status_from_db(&row.status) as i32,
        chunk_count: row.chunk_count as u32,
        content_sha256: row.content_sha256,
        version: row.version as u64,
        created_at: Some(braid_proto::timestamp_from_millis(row.created_ms)),
        updated_at: Some(braid_proto::timestamp_from_millis(row.updated_ms)),
        vector_synced_at: row.vector_synced_ms.map(braid_proto::timestamp_from_millis),
        text_synced_at: row.text_synced_ms.map(braid_proto::timestamp_from_millis),
        last_error: row.last_error.unwrap_or_default(),
    }
}

impl IngestApi {
    /// Resolves `document_id` or `(tenant, external_id)` to a document of that tenant.
    async fn resolve(
        &self,
        tenant: &str,
        document_id: &str,
        external_id: &str,
    ) -> Result<Uuid, IngestError> {
        let id = match (document_id.is_empty(), external_id.is_empty()) {
            (false, _) => Uuid::parse_str(document_id).map_err(|_| {
                IngestError::invalid("document_id", format!("`{document_id}` is not a UUID"))
            })?,
            (true, false) => self
                .store
                .find_document(tenant, external_id)
                .await?
                .ok_or(IngestError::NotFound)?,
            (true, true) => {
                return Err(IngestError::invalid(
                    "document_id",
                    "document_id or external_id is required",
                ));
            }
        };
        Ok(id)
    }

    async fn wait_settled(
        &self,
        results: &mut [DocumentResult],
        timeout: Duration,
    ) -> Result<(), IngestError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let ids: Vec<Uuid> = results
            .iter()
            .filter_map(|r| Uuid::parse_str(&r.document_id).ok())
            .collect();
        loop {
            // Register for progress before looking, so no completion slips in between.
            let progressed = self.progress.notified();
            tokio::pin!(progressed);
            progressed.as_mut().enable();
            let statuses = self.store.statuses(&ids).await?;
            for r in results.iter_mut() {
                if let Ok(id) = Uuid::parse_str(&r.document_id) {
                    r.status = statuses
                        .get(&id)
                        .map_or(DocumentStatus::Unspecified, |s| status_from_db(s))
                        as i32;
                }
            }
            let settled = results
                .iter()
                .filter(|r| !r.document_id.is_empty())
                .all(|r| is_settled(DocumentStatus::try_from(r.status).unwrap_or_default()));
            if settled {
                return Ok(());
            }
            tokio::select! {
                _ = &mut progressed => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = tokio::time::sleep_until(deadline) => return Ok(()),
            }
        }
    }
}

#[tonic::async_trait]
impl IngestService for IngestApi {
    async fn ingest(
        &self,
        request: Request<IngestRequest>,
    ) -> Result<Response<IngestResponse>, Status> {
        let r = request.into_inner();
        let tenant = tenant_or_default(&r.tenant)?;
        if r.documents.is_empty() || r.documents.len() > self.limits.max_documents_per_request {
            return Err(IngestError::invalid(
                "documents",
                format!(
                    "{} documents given, expected 1..={}",
                    r.documents.len(),
                    self.limits.max_documents_per_request
                ),
            )
            .into());
        }
        if r.wait_timeout_ms as u64 > self.limits.max_wait_ms {
            return Err(IngestError::invalid(
                "wait_timeout_ms",
                format!(
                    "{} ms, at most {}",
                    r.wait_timeout_ms, self.limits.max_wait_ms
                ),
            )
            .into());
        }
        let mut results = Vec::with_capacity(r.documents.len());
        let mut rejections = Vec::new();
        let mut enqueued = false;
        for (i, doc) in r.documents.into_iter().enumerate() {
            let external_id = doc.external_id.clone();
            let prepared = {
                let (tenant, limits, chunking, tokenizer) = (
                    tenant.clone(),
                    self.limits.clone(),
                    self.chunking.clone(),
                    self.tokenizer.clone(),
                );
                tokio::task::spawn_blocking(move || {
                    prepare(&tenant, doc, &limits, &chunking, tokenizer.as_ref())
                })
                .await
                .map_err(|e| Status::internal(format!("document preparation panicked: {e}")))?
            };
            match prepared {
                Ok(new_doc) => {
                    let up = self
                        .store
                        .upsert_document(&new_doc)
                        .await
                        .map_err(IngestError::from)?;
                    enqueued |= !up.unchanged;
                    results.push(DocumentResult {
                        external_id,
                        document_id: up.document_id.to_string(),
                        status: status_from_db(&up.status) as i32,
                        unchanged: up.unchanged,
                        chunk_count: up.chunk_count as u32,
                        error: String::new(),
                        error_code: 0,
                    });
                }
                Err(e) => {
                    let message = format!("documents[{i}] (external_id `{external_id}`): {e}");
                    rejections.push(message.clone());
                    results.push(DocumentResult {
                        external_id,
                        error: message,
                        error_code: tonic::Code::InvalidArgument as i32,
                        ..Default::default()
                    });
                }
            }
        }
        if enqueued {
            self.wake.notify_waiters();
        }
        if rejections.len() == results.len() {
            return Err(IngestError::AllRejected(rejections).into());
        }
        if r.wait_until_indexed {
            let ms = if r.wait_timeout_ms == 0 {
                self.limits.default_wait_ms
            } else {
                r.wait_timeout_ms as u64
            };
            self.wait_settled(&mut results, Duration::from_millis(ms))
                .await?;
        }
        Ok(Response::new(IngestResponse { results }))
    }

    async fn get_document(
        &self,
        request: Request<GetDocumentRequest>,
    ) -> Result<Response<Document>, Status> {
        let r = request.into_inner();
        let tenant = tenant_or_default(&r.tenant)?;
        let id = self
            .resolve(&tenant, &r.document_id, &r.external_id)
            .await?;
        let row = self
            .store
            .get_document(id)
            .await
            .map_err(IngestError::from)?
            .filter(|row| row.tenant == tenant)
            .ok_or(IngestError::NotFound)?;
        Ok(Response::new(to_document(row)))
    }

    async fn delete_document(
        &self,
        request: Request<DeleteDocumentRequest>,
    ) -> Result<Response<DeleteDocumentResponse>, Status> {
        let r = request.into_inner();
        let tenant = tenant_or_default(&r.tenant)?;
        let id = self
            .resolve(&tenant, &r.document_id, &r.external_id)
            .await?;
        if !self
            .store
            .delete_document(&tenant, id)
            .await
            .map_err(IngestError::from)?
        {
            return Err(IngestError::NotFound.into());
        }
        self.wake.notify_waiters();
        Ok(Response::new(DeleteDocumentResponse {
            deleted: true,
            document_id: id.to_string(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::BasicTokenizer;

    fn doc(content: &str) -> DocumentInput {
        DocumentInput {
            external_id: "doc-1".into(),
            title: String::new(),
            content: content.into(),
            mime_type: "text/markdown".into(),
            metadata: HashMap::from([("lang".into(), "en".into())]),
        }
    }

    fn prep(d: DocumentInput) -> Result<NewDocument, IngestError> {
        prepare(
            "t",
            d,
            &LimitsConfig::default(),
            &ChunkingConfig::default(),
            &BasicTokenizer,
        )
    }

    #[test]
    fn prepares_title_chunks_and_stable_hash() {
        let a = prep(doc("# Heading\n\nBody text.")).unwrap();
        assert_eq!(a.title, "Heading");
        assert_eq!(a.chunks.len(), 1);
        assert_eq!(a.mime_type, "text/markdown");
        let b = prep(doc("# Heading\n\nBody text.")).unwrap();
        assert_eq!(a.content_sha256, b.content_sha256);
        let mut changed = doc("# Heading\n\nBody text.");
        changed.metadata.insert("lang".into(), "de".into());
        assert_ne!(prep(changed).unwrap().content_sha256, a.content_sha256);
    }

    #[test]
    fn rejections_name_field_and_limit() {
        let limits = LimitsConfig {
            max_document_bytes: 10,
            ..LimitsConfig::default()
        };
        let err = prepare(
            "t",
            doc("0123456789ABC"),
            &limits,
            &ChunkingConfig::default(),
            &BasicTokenizer,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("content") && err.contains("at most 10"),
            "{err}"
        );

        let mut d = doc("x");
        d.mime_type = "application/pdf".into();
        assert!(prep(d).unwrap_err().to_string().starts_with("mime_type"));
        let mut d = doc("x");
        d.external_id.clear();
        assert!(prep(d).unwrap_err().to_string().starts_with("external_id"));
        assert!(
            prep(doc("<!-- only a comment -->"))
                .unwrap_err()
                .to_string()
                .contains("no text left")
        );
        let mut d = doc("<script>x</script>");
        d.mime_type = "text/html".into();
        assert!(prep(d).unwrap_err().to_string().contains("no text left"));
    }
}
