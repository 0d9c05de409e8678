//! `braidctl`: the operator CLI for Braid — ingest files, search, inspect and delete
//! documents, and check the health of every service.

#![forbid(unsafe_code)]

mod files;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use braid_proto::tonic::transport::{Channel, Endpoint};
use braid_proto::v1::gateway_client::GatewayClient;
use braid_proto::v1::{
    DeleteDocumentRequest, DocumentResult, DocumentStatus, FusionParams, GetDocumentRequest,
    IngestRequest, MetadataFilter, SearchMode, SearchRequest,
};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[derive(Parser)]
#[command(
    name = "braidctl",
    version,
    about = "Operate a Braid hybrid retrieval deployment"
)]
struct Cli {
    /// Gateway address.
    #[arg(
        long,
        env = "BRAID_GATEWAY",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    gateway: String,
    /// Tenant to act on.
    #[arg(long, env = "BRAID_TENANT", default_value = "default", global = true)]
    tenant: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Ingest files and directories (.md, .markdown, .txt, .html, .htm) or BEIR-style .jsonl
    /// files (one {"_id", "title", "text"} object per line).
    Ingest {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Documents per request.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Wait until every document is indexed in both legs.
        #[arg(long)]
        wait: bool,
        /// Metadata added to every document, as key=value (repeatable).
        #[arg(long = "meta", value_parser = parse_kv)]
        metadata: Vec<(String, String)>,
    },
    /// Search the corpus.
    Search {
        query: String,
        #[arg(long, value_enum, default_value_t = Mode::Hybrid)]
        mode: Mode,
        #[arg(long, default_value_t = 10)]
        top_k: u32,
        /// Reciprocal rank fusion k (0: server default).
        #[arg(long, default_value_t = 0)]
        rrf_k: u32,
        /// Exact metadata filter, as key=value (repeatable).
        #[arg(long = "filter", value_parser = parse_kv)]
        filter: Vec<(String, String)>,
        /// Return every matching chunk instead of the best chunk per document.
        #[arg(long)]
        chunks: bool,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a document by id or external id.
    Get { id: String },
    /// Delete a document by id or external id (from both search legs).
    Delete { id: String },
    /// Check grpc.health.v1 on all five services.
    Health {
        #[arg(long, default_value = "http://127.0.0.1:50052")]
        ingest: String,
        #[arg(long, default_value = "http://127.0.0.1:50053")]
        embedding: String,
        #[arg(long, default_value = "http://127.0.0.1:50054")]
        vector_search: String,
        #[arg(long, default_value = "http://127.0.0.1:50055")]
        text_search: String,
        /// Print nothing; the exit code says whether everything is SERVING.
        #[arg(long)]
        quiet: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Hybrid,
    Vector,
    Text,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not key=value"))
}

async fn connect(address: &str) -> anyhow::Result<Channel> {
    Endpoint::from_shared(address.to_string())
        .with_context(|| format!("invalid address {address}"))?
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await
        .with_context(|| format!("cannot reach {address}"))
}

async fn gateway(address: &str) -> anyhow::Result<GatewayClient<Channel>> {
    Ok(GatewayClient::new(connect(address).await?)
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024))
}

fn id_fields(id: &str) -> (String, String) {
    if braid_core::validate::uuid_like::parse(id).is_some() {
        (id.to_string(), String::new())
    } else {
        (String::new(), id.to_string())
    }
}

fn status_name(code: i32) -> &'static str {
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

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("braidctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Ingest {
            paths,
            batch,
            wait,
            metadata,
        } => {
            ingest(
                &cli.gateway,
                &cli.tenant,
                &paths,
                batch.max(1),
                wait,
                &metadata,
            )
            .await
        }
        Command::Search {
            query,
            mode,
            top_k,
            rrf_k,
            filter,
            chunks,
            json,
        } => {
            let request = SearchRequest {
                tenant: cli.tenant,
                query,
                top_k,
                mode: match mode {
                    Mode::Hybrid => SearchMode::Hybrid,
                    Mode::Vector => SearchMode::Vector,
                    Mode::Text => SearchMode::Text,
                } as i32,
                fusion: Some(FusionParams {
                    rrf_k,
                    ..Default::default()
                }),
                filter: (!filter.is_empty()).then(|| MetadataFilter {
                    equals: filter.into_iter().collect(),
                }),
                chunk_level: chunks,
            };
            let response = gateway(&cli.gateway)
                .await?
                .search(request)
                .await?
                .into_inner();
            if json {
                println!("{}", serde_json::to_string_pretty(&search_json(&response))?);
            } else {
                print_hits(&response);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Get { id } => {
            let (document_id, external_id) = id_fields(&id);
            let doc = gateway(&cli.gateway)
                .await?
                .get_document(GetDocumentRequest {
                    tenant: cli.tenant,
                    document_id,
                    external_id,
                })
                .await?
                .into_inner();
            let ts = |t: &Option<braid_proto::prost_types::Timestamp>| {
                t.as_ref().map_or("-".to_string(), |t| format!("{}", t))
            };
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
        Command::Delete { id } => {
            let (document_id, external_id) = id_fields(&id);
            let r = gateway(&cli.gateway)
                .await?
                .delete_document(DeleteDocumentRequest {
                    tenant: cli.tenant,
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
        Command::Health {
            ingest,
            embedding,
            vector_search,
            text_search,
            quiet,
        } => {
            use braid_proto::service_names as n;
            let targets = [
                ("gateway", cli.gateway.as_str(), n::GATEWAY),
                ("ingest", ingest.as_str(), n::INGEST),
                ("embedding", embedding.as_str(), n::EMBEDDING),
                ("vector-search", vector_search.as_str(), n::VECTOR_SEARCH),
                ("text-search", text_search.as_str(), n::TEXT_SEARCH),
            ];
            let mut all_ok = true;
            for (name, address, service) in targets {
                let status = check(address, service).await;
                all_ok &= status == "SERVING";
                if !quiet {
                    println!("{name:<14} {address:<24} {status}");
                }
            }
            Ok(if all_ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

async fn check(address: &str, service: &str) -> String {
    let channel = match connect(address).await {
        Ok(c) => c,
        Err(_) => return "UNREACHABLE".into(),
    };
    let request = HealthCheckRequest {
        service: service.to_string(),
    };
    match HealthClient::new(channel).check(request).await {
        Ok(r) => match ServingStatus::try_from(r.into_inner().status) {
            Ok(ServingStatus::Serving) => "SERVING".into(),
            Ok(other) => other.as_str_name().into(),
            Err(_) => "UNKNOWN".into(),
        },
        Err(s) => format!("ERROR ({:?})", s.code()),
    }
}

fn search_json(r: &braid_proto::v1::SearchResponse) -> serde_json::Value {
    serde_json::json!({
        "hits": r.hits.iter().map(|h| serde_json::json!({
            "document_id": h.document_id,
            "external_id": h.external_id,
            "title": h.title,
            "chunk_id": h.chunk_id,
            "score": h.score,
            "vector_score": h.vector_score,
            "vector_rank": h.vector_rank,
            "text_score": h.text_score,
            "text_rank": h.text_rank,
            "snippet": h.snippet,
        })).collect::<Vec<_>>(),
        "degraded": r.degraded,
        "degraded_reasons": r.degraded_reasons,
        "took_ms": r.took_ms,
    })
}

fn print_hits(r: &braid_proto::v1::SearchResponse) {
    if r.degraded {
        println!("DEGRADED: {}", r.degraded_reasons.join("; "));
    }
    if r.hits.is_empty() {
        println!("no hits ({} ms)", r.took_ms);
        return;
    }
    for (i, h) in r.hits.iter().enumerate() {
        let leg = |score: Option<f32>, rank: Option<u32>| match (score, rank) {
            (Some(s), Some(r)) => format!("{s:.3} (#{r})"),
            _ => "-".to_string(),
        };
        println!(
            "{:>3}. {:.4}  {}  [{}]   vector {}  text {}",
            i + 1,
            h.score,
            if h.title.is_empty() {
                "(untitled)"
            } else {
                &h.title
            },
            h.external_id,
            leg(h.vector_score, h.vector_rank),
            leg(h.text_score, h.text_rank),
        );
        let excerpt = if h.snippet.is_empty() {
            &h.text
        } else {
            &h.snippet
        };
        let excerpt: String = excerpt.split_whitespace().collect::<Vec<_>>().join(" ");
        let excerpt: String = excerpt.chars().take(160).collect();
        println!("       {excerpt}");
    }
    println!("{} hits in {} ms", r.hits.len(), r.took_ms);
}

async fn ingest(
    address: &str,
    tenant: &str,
    paths: &[PathBuf],
    batch: usize,
    wait: bool,
    metadata: &[(String, String)],
) -> anyhow::Result<ExitCode> {
    let docs = files::collect(paths, metadata)?;
    if docs.is_empty() {
        anyhow::bail!("no ingestible files found (.md, .markdown, .txt, .html, .htm, .jsonl)");
    }
    let mut client = gateway(address).await?;
    let bar = ProgressBar::new(docs.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} documents {msg}",
        )
        .expect("static template"),
    );
    let (mut accepted, mut unchanged, mut rejected, mut not_ready) =
        (0usize, 0usize, Vec::new(), Vec::new());
    for group in docs.chunks(batch) {
        let request = IngestRequest {
            tenant: tenant.to_string(),
            documents: group.to_vec(),
            wait_until_indexed: wait,
            wait_timeout_ms: 0,
        };
        let results: Vec<DocumentResult> = match client.ingest(request).await {
            Ok(r) => r.into_inner().results,
            Err(s) if s.code() == tonic::Code::InvalidArgument => {
                rejected.push(s.message().to_string());
                bar.inc(group.len() as u64);
                continue;
            }
            Err(s) => {
                bar.abandon();
                return Err(anyhow::anyhow!(
                    "ingest failed: {:?}: {}",
                    s.code(),
                    s.message()
                ));
            }
        };
        for r in results {
            if !r.error.is_empty() {
                rejected.push(r.error.clone());
            } else if r.unchanged {
                unchanged += 1;
            } else {
                accepted += 1;
            }
            let status = DocumentStatus::try_from(r.status).unwrap_or_default();
            if wait && r.error.is_empty() && status != DocumentStatus::Ready {
                not_ready.push(format!("{}: {}", r.external_id, status_name(r.status)));
            }
        }
        bar.inc(group.len() as u64);
    }
    bar.finish_with_message("done");
    println!(
        "{} documents: {accepted} accepted, {unchanged} unchanged, {} rejected",
        docs.len(),
        rejected.len()
    );
    for r in &rejected {
        println!("  rejected: {r}");
    }
    for r in &not_ready {
        println!("  not ready: {r}");
    }
    Ok(if rejected.is_empty() && not_ready.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
