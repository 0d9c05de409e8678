//! The `braid.v1.IngestService` gRPC handlers: validate, extract, chunk, store (with outbox
//! jobs), optionally wait for READY.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use braid_core::auth::{Permission, Principal};
use braid_core::validate;
use braid_proto::prost::Message;
use braid_proto::tonic::{self, Request, Response, Status};
use braid_proto::v1::ingest_service_server::IngestService;
use braid_proto::v1::{
    DeleteDocumentRequest, DeleteDocumentResponse, DiscardJobsRequest, DiscardJobsResponse,
    Document, DocumentInput, DocumentResult, DocumentStatus, GetDocumentRequest,
    IndexGenerationRequest, IndexGenerationResponse, IngestRequest, IngestResponse,
    IngestStreamRequest, Job, JobState, ListJobsRequest, ListJobsResponse, ModelInfoRequest,
    PurgeModelsRequest, ReembedRequest, ReembedResponse, ReindexLeg, ReindexRequest,
    ReindexResponse, ReindexStatusRequest, RetryJobsRequest, RetryJobsResponse, StatsRequest,
    StatsResponse, VerifyRequest, VerifyResponse, WaitIndexedRequest, WaitIndexedResponse,
};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use uuid::Uuid;

use crate::acl;
use crate::chunk::{self, Tokenize};
use crate::config::{ChunkingConfig, LimitsConfig};
use crate::error::IngestError;
use crate::extract::{self, Mime};
#[cfg(test)]
use crate::redact::RedactionConfig;
use crate::redact::Redactor;
use crate::store::{DocumentRow, JobRow, JobSelection, Leg, NewDocument, Store};

const MAX_IDEMPOTENCY_KEY_BYTES: usize = 128;
const MAX_JOB_PAGE: u32 = 500;
const MAX_WAIT_IDS: usize = 10_000;

/// Everything that decides how a document is validated and cut up.
#[derive(Clone)]
pub struct Rules {
    pub limits: LimitsConfig,
    pub chunking: ChunkingConfig,
    pub redaction: Arc<Redactor>,
    pub tokenizer: Arc<dyn Tokenize>,
    /// Declared metadata types, enforced per document.
    pub metadata_types: Arc<braid_core::filter::MetadataTypes>,
}

#[derive(Clone)]
pub struct IngestApi {
    pub(crate) store: Store,
    /// Reindex and verify (see `recovery`).
    pub(crate) recovery: crate::recovery::Recovery,
    pub(crate) rules: Rules,
    pub(crate) wake: Arc<Notify>,
    pub(crate) progress: Arc<Notify>,
    /// For `Reembed`: the embedding service's current model, and vector purges.
    pub(crate) downstream: crate::worker::Downstream,
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
fn request_fingerprint(r: &IngestRequest) -> String {
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

fn job_state(s: &str) -> JobState {
    match s {
        "pending" => JobState::Pending,
        "running" => JobState::Running,
        "done" => JobState::Done,
        "dead" => JobState::Dead,
        "discarded" => JobState::Discarded,
        _ => JobState::Unspecified,
    }
}

fn job_state_db(s: JobState) -> Option<&'static str> {
    match s {
        JobState::Unspecified => None,
        JobState::Pending => Some("pending"),
        JobState::Running => Some("running"),
        JobState::Done => Some("done"),
        JobState::Dead => Some("dead"),
        JobState::Discarded => Some("discarded"),
    }
}

fn to_job(row: JobRow) -> Job {
    Job {
        job_id: row.id,
        document_id: row.document_id.to_string(),
        tenant: row.tenant,
        external_id: row.external_id,
        leg: row.leg,
        op: row.op,
        state: job_state(&row.state) as i32,
        attempts: row.attempts.max(0) as u32,
        last_error: row.last_error.unwrap_or_default(),
        created_at: Some(braid_proto::timestamp_from_millis(row.created_ms)),
        updated_at: Some(braid_proto::timestamp_from_millis(row.updated_ms)),
        run_after: Some(braid_proto::timestamp_from_millis(row.run_after_ms)),
    }
}

/// The verified caller (the internal auth layer's principal: a forwarded user, or the
/// calling service), allowed to do `needs`.
fn caller<T>(request: &Request<T>, needs: Permission) -> Result<Principal, IngestError> {
    let caller = braid_core::auth::principal(request)
        .cloned()
        .ok_or(IngestError::Unauthenticated)?;
    if !caller.allows(needs) {
        return Err(IngestError::PermissionDenied(format!(
            "role {} may not do this",
            caller.role.as_str()
        )));
    }
    Ok(caller)
}

/// The tenant a document request acts in: the caller's own (naming another is
/// PERMISSION_DENIED), or the named one for a cross-tenant caller.
fn document_tenant(caller: &Principal, requested: &str) -> Result<String, IngestError> {
    let tenant = caller.tenant_for(requested)?;
    validate::tenant(&tenant)?;
    Ok(tenant)
}

/// The tenant scope of an operator call (`None` = every tenant, cross-tenant callers only).
fn tenant_scope(caller: &Principal, requested: &str) -> Result<Option<String>, IngestError> {
    match caller.access.tenant {
        Some(_) => Ok(Some(document_tenant(caller, requested)?)),
        None => Ok(tenant_filter(requested)?.map(str::to_string)),
    }
}

/// An optional tenant filter for admin calls: empty means every tenant.
fn tenant_filter(tenant: &str) -> Result<Option<&str>, IngestError> {
    if tenant.is_empty() {
        return Ok(None);
    }
    validate::tenant(tenant)?;
    Ok(Some(tenant))
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
            (true, false) => {
                validate::identifier(
                    "external_id",
                    external_id,
                    self.rules.limits.max_external_id_bytes,
                )?;
                self.store
                    .find_document(tenant, external_id)
                    .await?
                    .ok_or(IngestError::NotFound)?
            }
            (true, true) => {
                return Err(IngestError::invalid(
                    "document_id",
                    "document_id or external_id is required",
                ));
            }
        };
        Ok(id)
    }

    /// Validates, prepares and stores one document; a rejection is a result, not an error.
    /// Database failures are errors (the caller may retry: ingest is idempotent).
    async fn ingest_one(
        &self,
        tenant: &str,
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
        match prepared {
            Ok(new_doc) => {
                let up = match self.store.upsert_document(&new_doc).await {
                    Ok(up) => up,
                    // The store is down: the whole request can be retried (ingest is
                    // idempotent).
                    Err(e) if crate::error::is_unavailable(&e) => {
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

    fn wait_timeout(&self, ms: u32) -> Result<Duration, IngestError> {
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

    async fn ingest_batch(
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
        let mut results = Vec::with_capacity(r.documents.len());
        for (i, doc) in r.documents.into_iter().enumerate() {
            results.push(self.ingest_one(&tenant, i, doc).await?);
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

    fn selection<'a>(
        ids: &'a [i64],
        all_dead: bool,
        tenant: Option<&'a str>,
    ) -> Result<JobSelection<'a>, IngestError> {
        if ids.is_empty() && !all_dead {
            return Err(IngestError::invalid(
                "job_ids",
                "give job ids, or set all_dead",
            ));
        }
        Ok(JobSelection {
            ids,
            all_dead,
            tenant,
        })
    }
}

type ResultStream = ReceiverStream<Result<DocumentResult, Status>>;

#[tonic::async_trait]
impl IngestService for IngestApi {
    type IngestStreamStream = ResultStream;

    async fn ingest(
        &self,
        request: Request<IngestRequest>,
    ) -> Result<Response<IngestResponse>, Status> {
        let caller = caller(&request, Permission::Write)?;
        Ok(Response::new(
            self.ingest_batch(&caller, request.into_inner()).await?,
        ))
    }

    async fn ingest_stream(
        &self,
        request: Request<tonic::Streaming<IngestStreamRequest>>,
    ) -> Result<Response<Self::IngestStreamStream>, Status> {
        let caller = caller(&request, Permission::Write)?;
        let mut inbound = request.into_inner();
        // Small buffer: when the client stops reading results, we stop reading documents.
        let (tx, rx) = mpsc::channel(16);
        let api = self.clone();
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
                        .ingest_one(&tenant, index, doc)
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

    async fn wait_indexed(
        &self,
        request: Request<WaitIndexedRequest>,
    ) -> Result<Response<WaitIndexedResponse>, Status> {
        let caller = caller(&request, Permission::Write)?;
        let r = request.into_inner();
        let tenant = document_tenant(&caller, &r.tenant)?;
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
        // Only this tenant's documents are waited on and reported; others look absent, and
        // answer as fast as a random id would.
        let ids: Vec<Uuid> = results
            .iter()
            .filter_map(|r| Uuid::parse_str(&r.document_id).ok())
            .collect();
        let owned = self
            .store
            .tenant_documents(&tenant, &ids)
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

    async fn get_document(
        &self,
        request: Request<GetDocumentRequest>,
    ) -> Result<Response<Document>, Status> {
        let caller = caller(&request, Permission::Read)?;
        let r = request.into_inner();
        let tenant = document_tenant(&caller, &r.tenant)?;
        let id = self
            .resolve(&tenant, &r.document_id, &r.external_id)
            .await?;
        let row = self
            .store
            .get_document(&tenant, id)
            .await
            .map_err(IngestError::from)?;
        // Missing, in another tenant or hidden by its ACL: the same NOT_FOUND.
        let row = acl::visible(row, &tenant, &caller.access)?;
        Ok(Response::new(to_document(row)))
    }

    async fn delete_document(
        &self,
        request: Request<DeleteDocumentRequest>,
    ) -> Result<Response<DeleteDocumentResponse>, Status> {
        let caller = caller(&request, Permission::Write)?;
        let r = request.into_inner();
        let tenant = document_tenant(&caller, &r.tenant)?;
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

    async fn list_jobs(
        &self,
        request: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        let caller = caller(&request, Permission::Operate)?;
        let r = request.into_inner();
        let tenant = tenant_scope(&caller, &r.tenant)?;
        let mut states = Vec::new();
        for s in &r.states {
            match JobState::try_from(*s).ok().and_then(job_state_db) {
                Some(state) => states.push(state),
                None => {
                    return Err(
                        IngestError::invalid("states", format!("unknown job state {s}")).into(),
                    );
                }
            }
        }
        if states.is_empty() {
            states.push("dead");
        }
        let leg = match r.leg.as_str() {
            "" => None,
            "vector" | "text" => Some(r.leg.as_str()),
            other => {
                return Err(IngestError::invalid(
                    "leg",
                    format!("`{other}` is not one of vector, text"),
                )
                .into());
            }
        };
        let page_size = if r.page_size == 0 { 50 } else { r.page_size };
        if page_size > MAX_JOB_PAGE {
            return Err(IngestError::invalid(
                "page_size",
                format!("{page_size}, at most {MAX_JOB_PAGE}"),
            )
            .into());
        }
        let after: i64 = if r.page_token.is_empty() {
            0
        } else {
            r.page_token.parse().map_err(|_| {
                IngestError::invalid("page_token", "not a token from a previous response")
            })?
        };
        let rows = self
            .store
            .list_jobs(tenant.as_deref(), &states, leg, after, page_size as i64 + 1)
            .await
            .map_err(IngestError::from)?;
        let more = rows.len() > page_size as usize;
        let jobs: Vec<Job> = rows
            .into_iter()
            .take(page_size as usize)
            .map(to_job)
            .collect();
        let next_page_token = if more {
            jobs.last()
                .map(|j| j.job_id.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListJobsResponse {
            jobs,
            next_page_token,
        }))
    }

    async fn retry_jobs(
        &self,
        request: Request<RetryJobsRequest>,
    ) -> Result<Response<RetryJobsResponse>, Status> {
        let caller = caller(&request, Permission::Operate)?;
        let r = request.into_inner();
        let tenant = tenant_scope(&caller, &r.tenant)?;
        let selection = Self::selection(&r.job_ids, r.all_dead, tenant.as_deref())?;
        let retried = self
            .store
            .retry_jobs(&selection)
            .await
            .map_err(IngestError::from)?;
        if retried > 0 {
            self.wake.notify_waiters();
        }
        Ok(Response::new(RetryJobsResponse { retried }))
    }

    async fn discard_jobs(
        &self,
        request: Request<DiscardJobsRequest>,
    ) -> Result<Response<DiscardJobsResponse>, Status> {
        let caller = caller(&request, Permission::Operate)?;
        let r = request.into_inner();
        let tenant = tenant_scope(&caller, &r.tenant)?;
        let selection = Self::selection(&r.job_ids, r.all_dead, tenant.as_deref())?;
        let discarded = self
            .store
            .discard_jobs(&selection)
            .await
            .map_err(IngestError::from)?;
        Ok(Response::new(DiscardJobsResponse { discarded }))
    }

    async fn reembed(
        &self,
        request: Request<ReembedRequest>,
    ) -> Result<Response<ReembedResponse>, Status> {
        let caller = caller(&request, Permission::Operate)?;
        let r = request.into_inner();
        let scope = tenant_scope(&caller, &r.tenant)?;
        let tenant = scope.as_deref();
        if r.purge_other_models && caller.access.tenant.is_some() {
            return Err(IngestError::PermissionDenied(
                "purge_other_models affects every tenant: it needs a cross-tenant admin".into(),
            )
            .into());
        }
        let model = self
            .downstream
            .embedding
            .clone()
            .model_info(ModelInfoRequest {})
            .await
            .map_err(|s| {
                Status::unavailable(format!(
                    "embedding service (asked for its model): {}",
                    s.message()
                ))
            })?
            .into_inner()
            .model;
        let (mut enqueued, mut purged) = (0, 0);
        if r.purge_other_models {
            if tenant.is_some() {
                return Err(IngestError::invalid(
                    "tenant",
                    "purge_other_models applies to every tenant; leave tenant empty",
                )
                .into());
            }
            let remaining = self
                .store
                .reembed_candidates(None, &model)
                .await
                .map_err(IngestError::from)?;
            if remaining > 0 {
                return Err(Status::failed_precondition(format!(
                    "{remaining} documents are not yet embedded with {model}: re-embed (and let \
                     the jobs finish) before purging the other models' vectors"
                )));
            }
            purged = self
                .downstream
                .vector
                .clone()
                .purge_models(PurgeModelsRequest {
                    keep_model: model.clone(),
                })
                .await?
                .into_inner()
                .deleted;
        } else if !r.dry_run {
            enqueued = self
                .store
                .enqueue_reembed(tenant, &model)
                .await
                .map_err(IngestError::from)?;
            if enqueued > 0 {
                self.wake.notify_waiters();
            }
            tracing::info!(%model, enqueued, tenant = ?tenant, "re-embedding enqueued");
        }
        let remaining = self
            .store
            .reembed_candidates(tenant, &model)
            .await
            .map_err(IngestError::from)?;
        Ok(Response::new(ReembedResponse {
            model,
            enqueued: enqueued as u32,
            remaining: remaining as u32,
            purged,
        }))
    }

    async fn index_generation(
        &self,
        request: Request<IndexGenerationRequest>,
    ) -> Result<Response<IndexGenerationResponse>, Status> {
        let caller = caller(&request, Permission::Read)?;
        let tenant = document_tenant(&caller, &request.into_inner().tenant)?;
        let generation = self
            .store
            .index_generation(&tenant)
            .await
            .map_err(IngestError::from)?;
        Ok(Response::new(IndexGenerationResponse {
            generation: generation.max(0) as u64,
        }))
    }

    async fn stats(
        &self,
        request: Request<StatsRequest>,
    ) -> Result<Response<StatsResponse>, Status> {
        let caller = caller(&request, Permission::Operate)?;
        let r = request.into_inner();
        let tenant = tenant_scope(&caller, &r.tenant)?;
        let stats = self
            .store
            .stats(tenant.as_deref())
            .await
            .map_err(IngestError::from)?;
        Ok(Response::new(StatsResponse {
            documents_total: stats.by_status.values().sum::<i64>() as u64,
            documents_by_status: stats
                .by_status
                .into_iter()
                .map(|(k, v)| (k, v as u64))
                .collect(),
            chunks_total: stats.chunks as u64,
            queue_depth: stats.queue_depth as u64,
            oldest_pending_age_seconds: stats.oldest_pending_seconds,
            dead_jobs: stats.dead as u64,
            last_sync_at: stats.last_sync_ms.map(braid_proto::timestamp_from_millis),
        }))
    }

    async fn reindex(
        &self,
        request: Request<ReindexRequest>,
    ) -> Result<Response<ReindexResponse>, Status> {
        let caller = caller(&request, Permission::Operate)?;
        let r = request.into_inner();
        let tenant = tenant_scope(&caller, &r.tenant)?;
        let leg = match ReindexLeg::try_from(r.leg) {
            Ok(ReindexLeg::Text) => Leg::Text,
            Ok(ReindexLeg::Vector) => Leg::Vector,
            _ => {
                return Err(IngestError::invalid(
                    "leg",
                    "must be REINDEX_LEG_TEXT or REINDEX_LEG_VECTOR",
                )
                .into());
            }
        };
        let wait = if r.wait {
            Some(self.wait_timeout(r.wait_timeout_ms)?)
        } else {
            None
        };
        let run = self.recovery.reindex(leg, tenant, wait).await?;
        Ok(Response::new(ReindexResponse { run: Some(run) }))
    }

    async fn reindex_status(
        &self,
        request: Request<ReindexStatusRequest>,
    ) -> Result<Response<ReindexResponse>, Status> {
        let caller = caller(&request, Permission::Operate)?;
        let r = request.into_inner();
        // A tenant-bound admin sees its own tenant's runs only.
        let tenant = caller.access.tenant.clone();
        let run = self
            .recovery
            .run_status(r.run_id, tenant.as_deref())
            .await?;
        Ok(Response::new(ReindexResponse { run: Some(run) }))
    }

    async fn verify(
        &self,
        request: Request<VerifyRequest>,
    ) -> Result<Response<VerifyResponse>, Status> {
        let caller = caller(&request, Permission::Operate)?;
        let r = request.into_inner();
        let tenant = tenant_scope(&caller, &r.tenant)?;
        Ok(Response::new(
            self.recovery
                .verify_response(tenant.as_deref(), r.repair)
                .await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::BasicTokenizer;

    fn doc(content: &str) -> DocumentInput {
        DocumentInput {
            acl: None,
            external_id: "doc-1".into(),
            title: String::new(),
            content: content.into(),
            mime_type: "text/markdown".into(),
            metadata: HashMap::from([("lang".into(), "en".into())]),
        }
    }

    fn rules(limits: LimitsConfig, redaction: RedactionConfig) -> Rules {
        Rules {
            limits,
            chunking: ChunkingConfig::default(),
            redaction: Arc::new(Redactor::new(&redaction).unwrap()),
            tokenizer: Arc::new(BasicTokenizer),
            metadata_types: Arc::default(),
        }
    }

    fn prep(d: DocumentInput) -> Result<NewDocument, IngestError> {
        prepare(
            "t",
            d,
            &rules(LimitsConfig::default(), RedactionConfig::default()),
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
    fn the_acl_is_validated_normalised_and_hashed() {
        let with_acl = |clearance, groups: &[&str]| {
            let mut d = doc("# Heading\n\nBody text.");
            d.acl = Some(braid_proto::v1::DocumentAcl {
                clearance,
                groups: groups.iter().map(|g| g.to_string()).collect(),
            });
            d
        };
        let public = prep(doc("# Heading\n\nBody text.")).unwrap();
        assert_eq!(public.acl, Default::default());
        let a = prep(with_acl(2, &["physics", "chem"])).unwrap();
        assert_eq!(a.acl.groups, ["chem", "physics"]);
        // Changing only the ACL changes the hash (so it re-indexes); group order does not.
        assert_ne!(a.content_sha256, public.content_sha256);
        assert_ne!(
            prep(with_acl(3, &["physics", "chem"]))
                .unwrap()
                .content_sha256,
            a.content_sha256
        );
        assert_ne!(
            prep(with_acl(2, &["physics"])).unwrap().content_sha256,
            a.content_sha256
        );
        assert_eq!(
            prep(with_acl(2, &["chem", "physics", "chem"]))
                .unwrap()
                .content_sha256,
            a.content_sha256
        );
        let err = prep(with_acl(0, &["ok", "bad\u{0}"]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("acl.groups[1]:"), "{err}");
        let err = prep(with_acl(1001, &[])).unwrap_err().to_string();
        assert_eq!(err, "acl.clearance: 1001, at most 1000");
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
            &rules(limits, RedactionConfig::default()),
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

    #[test]
    fn redaction_happens_before_chunking() {
        let redaction = RedactionConfig {
            emails: true,
            phone_numbers: true,
            ..Default::default()
        };
        let d = prepare(
            "t",
            doc("Write to jane@example.com or call +1 555 123 4567."),
            &rules(LimitsConfig::default(), redaction),
        )
        .unwrap();
        assert_eq!(d.chunks[0].0, "Write to [EMAIL] or call [PHONE].");
    }

    #[test]
    fn chunk_limits_reject_before_any_work() {
        let words = (0..400)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let limits = LimitsConfig {
            max_chunks_per_document: 2,
            ..LimitsConfig::default()
        };
        let err = prepare("t", doc(&words), &rules(limits, RedactionConfig::default()))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("content:") && err.contains("limits.max_chunks_per_document"),
            "{err}"
        );
        let blob = "A".repeat(20_000);
        let err = prep(doc(&blob)).unwrap_err().to_string();
        assert!(
            err.starts_with("content:") && err.contains("limits.max_chunk_bytes"),
            "{err}"
        );
        assert!(prep(doc(&words)).is_ok());
    }

    #[test]
    fn nul_and_control_characters_have_a_rule_per_field() {
        // Free text: control characters become spaces.
        let mut d = doc("body\u{0}text\u{1b}[0m");
        d.title = "Ti\u{0}tle\r\n".into();
        d.mime_type = "text/plain".into();
        let p = prep(d).unwrap();
        assert_eq!(p.title, "Ti tle");
        assert_eq!(p.chunks[0].0, "body text [0m");
        // Identifiers and metadata: rejected, naming the field.
        for (mutate, field) in [
            (
                (|d: &mut DocumentInput| d.external_id = "a\u{0}b".into())
                    as fn(&mut DocumentInput),
                "external_id",
            ),
            (
                |d| d.external_id = "invoice\u{202E}fdp.exe".into(),
                "external_id",
            ),
            (
                |d| {
                    d.metadata.insert("bad key".into(), "v".into());
                },
                "metadata",
            ),
            (
                |d| {
                    d.metadata.insert("k".into(), "v\u{0}".into());
                },
                "metadata[k]",
            ),
            (|d| d.mime_type = "text/\u{0}html".into(), "mime_type"),
            (|d| d.content = "\u{0}\u{1} \u{7f}".into(), "content"),
        ] {
            let mut d = doc("x");
            mutate(&mut d);
            let err = prep(d).unwrap_err();
            match err {
                IngestError::InvalidArgument { field: f, .. } => assert_eq!(f, field),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn redaction_covers_title_and_metadata_and_changes_the_hash() {
        let redaction = RedactionConfig {
            emails: true,
            ..Default::default()
        };
        let mut d = doc("Contact jane@example.com.");
        d.title = "From bob@example.com".into();
        d.metadata.insert("owner".into(), "ann@example.com".into());
        let plain = prep(d.clone()).unwrap();
        let redacted = prepare("t", d, &rules(LimitsConfig::default(), redaction)).unwrap();
        assert_eq!(redacted.title, "From [EMAIL]");
        assert_eq!(redacted.metadata["owner"], "[EMAIL]");
        assert_eq!(redacted.chunks[0].0, "Contact [EMAIL].");
        assert_ne!(plain.content_sha256, redacted.content_sha256);
        // Redaction off adds nothing to the hash: the fields and the ACL only.
        let mut legacy = Sha256::new();
        hash_fields(
            &mut legacy,
            [
                "text/markdown",
                plain.title.as_str(),
                "Contact jane@example.com.",
            ],
            &plain.metadata,
        );
        hash_acl(&mut legacy, &plain.acl);
        assert_eq!(plain.content_sha256, hex::encode(legacy.finalize()));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        const FIELDS: &[&str] = &["external_id", "title", "mime_type", "content", "metadata"];

        fn nasty() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "[a-zé日한🦀\u{0}\u{1}\u{202E}\u{301}<>&#;:*\"()\\- \n]{0,60}",
            ]
        }

        proptest! {
            #[test]
            fn any_document_is_prepared_or_rejected_naming_a_field(
                external_id in nasty(),
                title in nasty(),
                content in nasty(),
                mime in prop_oneof![Just(""), Just("text/html"), Just("text/markdown"), Just("x/y")],
                key in nasty(),
                value in nasty(),
            ) {
                let d = DocumentInput {
                    external_id,
                    title,
                    content,
                    mime_type: mime.to_string(),
                    metadata: HashMap::from([(key, value)]),
                    acl: None,
                };
                match prep(d) {
                    Ok(p) => {
                        prop_assert!(!p.chunks.is_empty());
                        prop_assert!(!p.title.contains('\0'));
                        prop_assert!(p.chunks.iter().all(|(t, _)| !t.contains('\0')));
                    }
                    Err(IngestError::InvalidArgument { field, .. }) => {
                        prop_assert!(
                            FIELDS.iter().any(|f| field.starts_with(f)),
                            "unexpected field {}", field
                        );
                    }
                    Err(other) => prop_assert!(false, "{:?}", other),
                }
            }
        }
    }

    #[test]
    fn fingerprint_ignores_map_order_but_not_content() {
        let mut a = doc("x");
        a.metadata.insert("b".into(), "2".into());
        a.metadata.insert("c".into(), "3".into());
        let mut b = doc("x");
        b.metadata.insert("c".into(), "3".into());
        b.metadata.insert("b".into(), "2".into());
        let req = |d: DocumentInput| IngestRequest {
            documents: vec![d],
            ..Default::default()
        };
        assert_eq!(
            request_fingerprint(&req(a.clone())),
            request_fingerprint(&req(b))
        );
        a.content = "y".into();
        assert_ne!(
            request_fingerprint(&req(a)),
            request_fingerprint(&req(doc("x")))
        );
    }
}
