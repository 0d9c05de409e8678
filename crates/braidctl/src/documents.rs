//! Document commands: `ingest` (files streamed to the gateway, with progress and `--wait`),
//! `get` and `delete`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use braid_proto::v1::{
    DeleteDocumentRequest, DocumentStatus, GetDocumentRequest, IngestStreamRequest,
    WaitIndexedRequest,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::Gateway;
use crate::client::id_fields;
use crate::files;

pub fn status_name(code: i32) -> &'static str {
    match DocumentStatus::try_from(code).unwrap_or_default() {
        DocumentStatus::Unspecified => "-",
        DocumentStatus::Pending => "PENDING",
        DocumentStatus::Indexing => "INDEXING",
        DocumentStatus::Ready => "READY",
        DocumentStatus::Partial => "PARTIAL",
        DocumentStatus::Failed => "FAILED",
        DocumentStatus::Deleting => "DELETING",
    }
}

/// A timestamp, or `-` when unset.
pub fn ts(t: &Option<braid_proto::prost_types::Timestamp>) -> String {
    t.as_ref().map_or("-".to_string(), |t| t.to_string())
}

pub async fn get(mut gw: Gateway, tenant: String, id: String) -> anyhow::Result<ExitCode> {
    let (document_id, external_id) = id_fields(&id);
    let doc = gw
        .get_document(GetDocumentRequest {
            tenant,
            document_id,
            external_id,
        })
        .await?
        .into_inner();
    println!("document_id:      {}", doc.document_id);
    println!("external_id:      {}", doc.external_id);
    println!("tenant:           {}", doc.tenant);
    println!("title:            {}", doc.title);
    println!("mime_type:        {}", doc.mime_type);
    println!("status:           {}", status_name(doc.status));
    println!("version:          {}", doc.version);
    println!("chunks:           {}", doc.chunk_count);
    println!("sha256:           {}", doc.content_sha256);
    println!("created_at:       {}", ts(&doc.created_at));
    println!("updated_at:       {}", ts(&doc.updated_at));
    println!("vector_synced_at: {}", ts(&doc.vector_synced_at));
    println!("text_synced_at:   {}", ts(&doc.text_synced_at));
    let mut meta: Vec<_> = doc.metadata.iter().collect();
    meta.sort();
    for (k, v) in meta {
        println!("metadata.{k}: {v}");
    }
    if !doc.last_error.is_empty() {
        println!("last_error:       {}", doc.last_error);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn delete(mut gw: Gateway, tenant: String, id: String) -> anyhow::Result<ExitCode> {
    let (document_id, external_id) = id_fields(&id);
    let r = gw
        .delete_document(DeleteDocumentRequest {
            tenant,
            document_id,
            external_id,
        })
        .await?
        .into_inner();
    println!(
        "deleted {} (removal from both legs is queued)",
        r.document_id
    );
    Ok(ExitCode::SUCCESS)
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} [{{elapsed_precise}}] {{bar:40}} {{pos}}/{{len}} {what} ({{per_sec}}, eta {{eta}}) {{msg}}"
        ))
        .expect("static template"),
    );
    bar
}

pub async fn ingest(
    mut client: Gateway,
    tenant: &str,
    paths: &[PathBuf],
    wait: Option<Duration>,
    metadata: std::collections::HashMap<String, String>,
) -> anyhow::Result<ExitCode> {
    let sources = files::plan(paths)?;
    let total = files::count(&sources)?;
    if total == 0 {
        anyhow::bail!("no ingestible files found (.md, .markdown, .txt, .html, .htm, .jsonl)");
    }

    // Files are read on a blocking thread into a small bounded channel: the upload stream
    // pulls from it only as fast as the server accepts documents.
    let (tx, rx) = tokio::sync::mpsc::channel(32);
    let producer = tokio::task::spawn_blocking(move || {
        files::produce(&sources, &metadata, |doc| tx.blocking_send(doc).is_ok())
    });
    let tenant_owned = tenant.to_string();
    let outbound = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::ReceiverStream::new(rx),
        move |doc| IngestStreamRequest {
            tenant: tenant_owned.clone(),
            document: Some(doc),
        },
    );
    let uploading = bar(total, "documents");
    let mut results = client.ingest_stream(outbound).await?.into_inner();
    let (mut accepted, mut unchanged, mut rejected) = (0usize, 0usize, Vec::new());
    let mut ids = Vec::new();
    while let Some(r) = results
        .message()
        .await
        .map_err(|s| anyhow::anyhow!("ingest failed: {:?}: {}", s.code(), s.message()))?
    {
        if !r.error.is_empty() {
            rejected.push(r.error);
        } else {
            if r.unchanged {
                unchanged += 1;
            } else {
                accepted += 1;
            }
            ids.push(r.document_id);
        }
        uploading.inc(1);
    }
    producer.await??;
    uploading.finish();
    println!(
        "{} documents: {accepted} accepted, {unchanged} unchanged, {} rejected",
        accepted + unchanged + rejected.len(),
        rejected.len()
    );
    for r in &rejected {
        println!("  rejected: {r}");
    }
    let mut not_ready = Vec::new();
    if let Some(timeout) = wait {
        let deadline = tokio::time::Instant::now() + timeout;
        let indexing = bar(ids.len() as u64, "indexed");
        for group in ids.chunks(1000) {
            let mut pending: Vec<String> = group.to_vec();
            loop {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let response = client
                    .wait_indexed(WaitIndexedRequest {
                        tenant: tenant.to_string(),
                        document_ids: pending.clone(),
                        timeout_ms: left.min(Duration::from_secs(20)).as_millis() as u32,
                    })
                    .await?
                    .into_inner();
                let mut still = Vec::new();
                for r in response.results {
                    match DocumentStatus::try_from(r.status).unwrap_or_default() {
                        DocumentStatus::Ready => indexing.inc(1),
                        DocumentStatus::Partial | DocumentStatus::Failed => {
                            indexing.inc(1);
                            not_ready.push(format!("{}: {}", r.external_id, status_name(r.status)));
                        }
                        _ => still.push(r),
                    }
                }
                if still.is_empty() {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    not_ready.extend(
                        still
                            .iter()
                            .map(|r| format!("{}: {}", r.external_id, status_name(r.status))),
                    );
                    break;
                }
                pending = still.into_iter().map(|r| r.document_id).collect();
            }
        }
        indexing.finish();
        println!(
            "{} of {} documents READY",
            ids.len() - not_ready.len(),
            ids.len()
        );
        for r in not_ready.iter().take(50) {
            println!("  not ready: {r}");
        }
    }
    Ok(if rejected.is_empty() && not_ready.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
