//! The document RPCs: ingest (unary and streaming), wait for READY, get, delete, and the
//! tenant's index generation.

use std::collections::HashMap;
use std::time::Duration;

use braid_core::auth::Principal;
use braid_core::validate;
use braid_proto::prost::Message;
use braid_proto::tonic::{self, Response, Status};
use braid_proto::v1::{
    DeleteDocumentRequest, DeleteDocumentResponse, Document, DocumentInput, DocumentResult,
    DocumentStatus, GetDocumentRequest, IndexGenerationRequest, IndexGenerationResponse,
    IngestRequest, IngestResponse, IngestStreamRequest, WaitIndexedRequest, WaitIndexedResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use uuid::Uuid;

use super::prepare::{prepare, request_fingerprint};
use super::{IngestApi, ResultStream, document_tenant, is_settled, status_from_db};
use crate::acl::{self, Writer};
use crate::error::IngestError;
use crate::store::{DocumentRef, DocumentRow, Upsert};

const MAX_IDEMPOTENCY_KEY_BYTES: usize = 128;
const MAX_WAIT_IDS: usize = 10_000;

impl IngestApi {
    /// The document a request names: `document_id`, else `external_id` (of the request's
    /// tenant). Only the form is checked here; whether it exists is the store's question.
    fn target(&self, document_id: &str, external_id: &str) -> Result<DocumentRef, IngestError> {
        match (document_id.is_empty(), external_id.is_empty()) {
            (false, _) => Uuid::parse_str(document_id)
                .map(DocumentRef::Id)
                .map_err(|_| {
                    IngestError::invalid(
                        "document_id",
                        format!("`{}` is not a UUID", document_id.escape_debug()),
                    )
                }),
            (true, false) => {
                validate::identifier(
                    "external_id",
                    external_id,
                    self.rules.limits.max_external_id_bytes,
                )?;
                Ok(DocumentRef::External(external_id.to_string()))
            }
            (true, true) => Err(IngestError::invalid(
                "document_id",
                "document_id or external_id is required",
            )),
        }
    }

    /// Validates, prepares and stores one document; a rejection is a result, not an error.
    /// Database failures are errors (the caller may retry: ingest is idempotent).
    async fn ingest_one(
        &self,
        tenant: &str,
        writer: &Writer,
        index: usize,
        doc: DocumentInput,
    ) -> Result<DocumentResult, IngestError> {
        let external_id = doc.external_id.clone();
        // Shown back to the caller: escaped, so control or bidi characters in a rejected id
        // cannot garble the message.
        let shown_id = external_id
            .chars()
            .take(128)
            .collect::<String>()
            .escape_debug()
            .to_string();
        let prepared = {
            let (tenant, rules) = (tenant.to_string(), self.rules.clone());
            tokio::task::spawn_blocking(move || prepare(&tenant, doc, &rules))
                .await
                .unwrap_or_else(|e| {
                    // A bug, not the caller's fault; the panic message stays in the log.
                    tracing::error!(error = %e, index, "document preparation failed");
                    Err(IngestError::invalid(
                        "content",
                        "could not be processed (an internal error was logged)",
                    ))
                })
        };
        // A writer labels only within its own access (checked on the normalised ACL).
        let prepared = prepared.and_then(|d| writer.check_label(&d.acl).map(|()| d));
        match prepared {
            Ok(new_doc) => {
                let up = match self
                    .store
                    .upsert_document(&new_doc, &writer.visibility())
                    .await
                {
                    Ok(Upsert::Stored(up)) => up,
                    // Nothing about that document is said: not its id, status, ACL or whether
                    // the content differs. (That the external id is taken cannot be hidden:
                    // it is unique in the tenant, and writing a second one would lose data.)
                    Ok(Upsert::NotWritable) => {
                        return Ok(DocumentResult {
                            error: format!(
                                "documents[{index}] (external_id \"{shown_id}\"): held by a document this caller may not change"
                            ),
                            error_code: tonic::Code::PermissionDenied as i32,
                            external_id,
                            ..Default::default()
                        });
                    }
                    // The store is down: the whole request can be retried (ingest is
                    // idempotent).
                    Err(e) if braid_core::db::is_unavailable(&e) => {
                        return Err(e.into());
                    }
                    // Anything else concerns this document only: the others go on.
                    Err(e) => {
                        tracing::error!(error = %e, index, "storing a document failed");
                        return Ok(DocumentResult {
                            error: format!(
                                "documents[{index}] (external_id \"{shown_id}\"): could not be stored (an internal error was logged)"
                            ),
                            error_code: tonic::Code::Internal as i32,
                            external_id,
                            ..Default::default()
                        });
                    }
                };
                if !up.unchanged {
                    self.wake.notify_waiters();
                }
                Ok(DocumentResult {
                    external_id,
                    document_id: up.document_id.to_string(),
                    status: status_from_db(&up.status) as i32,
                    unchanged: up.unchanged,
                    chunk_count: up.chunk_count as u32,
                    error: String::new(),
                    error_code: 0,
                })
            }
            Err(e) => Ok(DocumentResult {
                error: match e {
                    IngestError::InvalidArgument { field, message } => format!(
                        "documents[{index}].{field}: {message} (external_id \"{shown_id}\")"
                    ),
                    other => format!("documents[{index}] (external_id \"{shown_id}\"): {other}"),
                },
                error_code: tonic::Code::InvalidArgument as i32,
                external_id,
                ..Default::default()
            }),
        }
    }

    pub(super) fn wait_timeout(&self, ms: u32) -> Result<Duration, IngestError> {
        if ms as u64 > self.rules.limits.max_wait_ms {
            return Err(IngestError::invalid(
                "wait_timeout_ms",
                format!("{ms} ms, at most {}", self.rules.limits.max_wait_ms),
            ));
        }
        Ok(Duration::from_millis(if ms == 0 {
            self.rules.limits.default_wait_ms
        } else {
            ms as u64
        }))
    }

    /// Updates each result's status until all are settled or `timeout` passes.
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

    pub(super) async fn ingest_batch(
        &self,
        caller: &Principal,
        r: IngestRequest,
    ) -> Result<IngestResponse, IngestError> {
        let tenant = document_tenant(caller, &r.tenant)?;
        let limits = &self.rules.limits;
        if r.documents.is_empty() || r.documents.len() > limits.max_documents_per_request {
            return Err(IngestError::invalid(
                "documents",
                format!(
                    "{} documents given, expected 1..={}",
                    r.documents.len(),
                    limits.max_documents_per_request
                ),
            ));
        }
        let timeout = self.wait_timeout(r.wait_timeout_ms)?;
        if !r.idempotency_key.is_empty() {
            validate::identifier(
                "idempotency_key",
                &r.idempotency_key,
                MAX_IDEMPOTENCY_KEY_BYTES,
            )?;
        }
        let key = (!r.idempotency_key.is_empty())
            .then(|| (r.idempotency_key.clone(), request_fingerprint(&r)));
        if let Some((key, fingerprint)) = &key
            && let Some((stored_fingerprint, bytes)) =
                self.store.idempotent_response(&tenant, key).await?
        {
            if &stored_fingerprint != fingerprint {
                return Err(IngestError::invalid(
                    "idempotency_key",
                    "already used for a different request within the last 24 h",
                ));
            }
            let mut response = IngestResponse::decode(bytes.as_slice()).map_err(|e| {
                IngestError::invalid("idempotency_key", format!("stored answer unreadable: {e}"))
            })?;
            if r.wait_until_indexed {
                self.wait_settled(&mut response.results, timeout).await?;
            }
            return Ok(response);
        }
        let writer = Writer::of(caller);
        let mut results = Vec::with_capacity(r.documents.len());
        for (i, doc) in r.documents.into_iter().enumerate() {
            results.push(self.ingest_one(&tenant, &writer, i, doc).await?);
        }
        if results.iter().all(|r| !r.error.is_empty()) {
            return Err(IngestError::AllRejected(
                results.into_iter().map(|r| r.error).collect(),
            ));
        }
        let mut response = IngestResponse { results };
        if let Some((key, fingerprint)) = &key {
            self.store
                .remember_response(&tenant, key, fingerprint, &response.encode_to_vec())
                .await?;
        }
        if r.wait_until_indexed {
            self.wait_settled(&mut response.results, timeout).await?;
        }
        Ok(response)
    }

    pub(super) async fn stream_documents(
        &self,
        caller: Principal,
        mut inbound: tonic::Streaming<IngestStreamRequest>,
    ) -> Result<Response<ResultStream>, Status> {
        // Small buffer: when the client stops reading results, we stop reading documents.
        let (tx, rx) = mpsc::channel(16);
        let api = self.clone();
        let writer = Writer::of(&caller);
        tokio::spawn(async move {
            let mut index = 0usize;
            loop {
                let message = match inbound.message().await {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(%status, "ingest stream closed by client");
                        break;
                    }
                };
                // Every message's tenant is checked: naming another ends the stream.
                let result = match (document_tenant(&caller, &message.tenant), message.document) {
                    (Err(e), _) => Err(Status::from(e)),
                    (Ok(_), None) => Err(Status::from(IngestError::invalid(
                        "document",
                        "is required",
                    ))),
                    (Ok(tenant), Some(doc)) => api
                        .ingest_one(&tenant, &writer, index, doc)
                        .await
                        .map_err(Status::from),
                };
                index += 1;
                let fatal = result.is_err();
                if tx.send(result).await.is_err() || fatal {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    pub(super) async fn wait_for_documents(
        &self,
        caller: &Principal,
        r: WaitIndexedRequest,
    ) -> Result<Response<WaitIndexedResponse>, Status> {
        let tenant = document_tenant(caller, &r.tenant)?;
        if r.document_ids.len() > MAX_WAIT_IDS {
            return Err(IngestError::invalid(
                "document_ids",
                format!("{} ids, at most {MAX_WAIT_IDS}", r.document_ids.len()),
            )
            .into());
        }
        let timeout = self.wait_timeout(r.timeout_ms)?;
        let mut results = Vec::with_capacity(r.document_ids.len());
        for (i, id) in r.document_ids.into_iter().enumerate() {
            Uuid::parse_str(&id).map_err(|_| {
                IngestError::invalid(
                    format!("document_ids[{i}]"),
                    format!("`{id}` is not a UUID"),
                )
            })?;
            results.push(DocumentResult {
                document_id: id,
                ..Default::default()
            });
        }
        // Only this tenant's documents the caller may read are waited on and reported; others
        // look absent (one query decides, the same for both), and answer as fast as a random
        // id would.
        let ids: Vec<Uuid> = results
            .iter()
            .filter_map(|r| Uuid::parse_str(&r.document_id).ok())
            .collect();
        let owned = self
            .store
            .tenant_documents(&tenant, &ids, &Writer::of(caller).visibility())
            .await
            .map_err(IngestError::from)?;
        let mut mine: Vec<DocumentResult> = results
            .iter()
            .filter(|r| Uuid::parse_str(&r.document_id).is_ok_and(|id| owned.contains_key(&id)))
            .cloned()
            .collect();
        self.wait_settled(&mut mine, timeout).await?;
        let settled: HashMap<String, i32> = mine
            .into_iter()
            .map(|r| (r.document_id, r.status))
            .collect();
        for r in &mut results {
            r.status = settled
                .get(&r.document_id)
                .copied()
                .unwrap_or(DocumentStatus::Unspecified as i32);
        }
        for r in &mut results {
            if let Some((external_id, chunks)) = Uuid::parse_str(&r.document_id)
                .ok()
                .and_then(|id| owned.get(&id))
            {
                r.external_id = external_id.clone();
                r.chunk_count = *chunks as u32;
            } else {
                r.status = DocumentStatus::Unspecified as i32;
            }
        }
        Ok(Response::new(WaitIndexedResponse { results }))
    }

    pub(super) async fn document(
        &self,
        caller: &Principal,
        r: GetDocumentRequest,
    ) -> Result<Response<Document>, Status> {
        let tenant = document_tenant(caller, &r.tenant)?;
        let target = self.target(&r.document_id, &r.external_id)?;
        let row = self
            .store
            .get_document(&tenant, &target)
            .await
            .map_err(IngestError::from)?;
        // Missing, in another tenant or hidden by its ACL: the same NOT_FOUND.
        let row = acl::visible(row, &tenant, &caller.access)?;
        Ok(Response::new(to_document(row)))
    }

    pub(super) async fn remove_document(
        &self,
        caller: &Principal,
        r: DeleteDocumentRequest,
    ) -> Result<Response<DeleteDocumentResponse>, Status> {
        let tenant = document_tenant(caller, &r.tenant)?;
        let target = self.target(&r.document_id, &r.external_id)?;
        // Missing, in another tenant, being deleted or hidden from this caller: the same
        // statement matches nothing and the answer is the same NOT_FOUND.
        let Some(id) = self
            .store
            .delete_document(&tenant, &target, &Writer::of(caller).visibility())
            .await
            .map_err(IngestError::from)?
        else {
            return Err(IngestError::NotFound.into());
        };
        self.wake.notify_waiters();
        Ok(Response::new(DeleteDocumentResponse {
            deleted: true,
            document_id: id.to_string(),
        }))
    }

    pub(super) async fn generation(
        &self,
        caller: &Principal,
        r: IndexGenerationRequest,
    ) -> Result<Response<IndexGenerationResponse>, Status> {
        let tenant = document_tenant(caller, &r.tenant)?;
        let generation = self
            .store
            .index_generation(&tenant)
            .await
            .map_err(IngestError::from)?;
        Ok(Response::new(IndexGenerationResponse {
            generation: generation.max(0) as u64,
        }))
    }
}

fn to_document(row: DocumentRow) -> Document {
    Document {
        acl: Some(row.acl()),
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
