//! `braidctl`: the operator CLI for Braid — ingest files, search, inspect and delete
//! documents, and check the health of every service.

#![forbid(unsafe_code)]

mod audit;
mod bench;
mod files;
mod filter;
mod recovery;
mod search;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use braid_proto::tonic::transport::{Channel, Endpoint};
use braid_proto::v1::gateway_client::GatewayClient;
use braid_proto::v1::{
    DeleteDocumentRequest, DiscardJobsRequest, DocumentStatus, GetDocumentRequest,
    IngestStreamRequest, JobState, ListJobsRequest, ReembedRequest, RetryJobsRequest, SearchMode,
    SearchRequest, StatsRequest, WaitIndexedRequest,
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
    /// Gateway address (`bench` takes it repeatedly and spreads its clients round-robin;
    /// other commands use the last one).
    #[arg(
        long,
        env = "BRAID_GATEWAY",
        default_value = "http://127.0.0.1:50051",
        global = true,
        action = clap::ArgAction::Append
    )]
    gateway: Vec<String>,
    /// Tenant to act on (documents and search: "default" when unset; jobs and stats: every
    /// tenant when unset).
    #[arg(long, env = "BRAID_TENANT", global = true)]
    tenant: Option<String>,
    /// Bearer token for the gateway. Without one, short-lived dev admin tokens are minted (and
    /// re-minted before they expire) when the dev key `$BRAID_HOME/secrets/dev-jwt.key` exists
    /// (`make run` writes it).
    #[arg(long, env = "BRAID_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
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
        /// Wait until every document is indexed in both legs (or --wait-timeout passes).
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value_t = 3600)]
        wait_timeout_secs: u64,
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
        #[command(flatten)]
        fusion: search::FusionArgs,
        /// Show how each hit's score was computed (per leg: raw and normalised score, rank,
        /// weight, contribution, matched chunk).
        #[arg(long)]
        explain: bool,
        /// Metadata condition (repeatable, all must hold): key=v, key!=v, key>=v, key<v
        /// (numbers or dates), "key in a,b", "key not in a,b", key (has it), !key (lacks it).
        #[arg(long = "filter")]
        filter: Vec<String>,
        /// Hits per page (0: all top_k at once); prints the token of the next page.
        #[arg(long, default_value_t = 0)]
        page_size: u32,
        /// The token a previous page printed (same query and flags).
        #[arg(long, default_value = "")]
        page_token: String,
        /// Leave out hits whose (fused) score is below this.
        #[arg(long)]
        min_score: Option<f32>,
        /// Leave out vector-leg hits with cosine similarity below this.
        #[arg(long)]
        min_vector_score: Option<f32>,
        /// Leave out text-leg hits with BM25 score below this.
        #[arg(long)]
        min_text_score: Option<f32>,
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
    /// Indexing jobs and the dead-letter queue.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Document, chunk and queue statistics.
    Stats,
    /// Re-embed every document whose vectors come from another model than the one the
    /// ingest service's embedding service serves now (searches keep using the old vectors
    /// until the gateway is switched to the new model; then `--purge` drops the old ones).
    Reembed {
        /// Only report what is left.
        #[arg(long)]
        dry_run: bool,
        /// Block until no document is left on another model.
        #[arg(long)]
        wait: bool,
        /// After the switch: delete every other model's vectors (all tenants).
        #[arg(long, conflicts_with_all = ["dry_run", "wait"])]
        purge: bool,
    },
    /// The gateway's audit trail, newest first (admin).
    Audit(audit::AuditArgs),
    /// Rebuild a search leg from PostgreSQL (admin; --tenant for one tenant).
    Reindex(recovery::ReindexArgs),
    /// Compare the chunks in PostgreSQL with both search legs, per document, and list the
    /// drift (admin; --tenant for one tenant). Exit code 2 when drift was found.
    Verify(recovery::VerifyArgs),
    /// Load-test Gateway.Search: closed loop (--clients) or open loop (--rate), with
    /// latency percentiles, errors by status code and degraded answers.
    Bench(Box<bench::BenchArgs>),
    /// User tokens for the gateway.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Check grpc.health.v1 on all five services, or on one with `--service` (container and
    /// probe health checks): the exit code is non-zero unless it reports SERVING.
    Health {
        /// Check only this service (its own health status, not the overall one).
        #[arg(long, value_enum, requires = "addr", env = "BRAID_HEALTH_SERVICE")]
        service: Option<ServiceArg>,
        /// HOST:PORT (or URL) of the service given with `--service`.
        #[arg(long, requires = "service", env = "BRAID_HEALTH_ADDR")]
        addr: Option<String>,
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

/// A service whose own `grpc.health.v1` status `health --service` checks.
#[derive(Clone, Copy, ValueEnum)]
enum ServiceArg {
    Gateway,
    Ingest,
    Embedding,
    VectorSearch,
    TextSearch,
}

impl ServiceArg {
    fn grpc_name(self) -> &'static str {
        use braid_proto::service_names as n;
        match self {
            Self::Gateway => n::GATEWAY,
            Self::Ingest => n::INGEST,
            Self::Embedding => n::EMBEDDING,
            Self::VectorSearch => n::VECTOR_SEARCH,
            Self::TextSearch => n::TEXT_SEARCH,
        }
    }
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Mint an HS256 token (prints it). Uses the dev key unless --key is given.
    Mint {
        #[arg(long)]
        sub: String,
        // The token's tenant is the global --tenant (required unless --cross-tenant).
        #[arg(long, value_parser = ["reader", "writer", "admin"], default_value = "reader")]
        role: String,
        #[arg(long, default_value_t = 0)]
        clearance: u32,
        /// Group membership (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Lifetime: 30s, 15m, 8h, 2d.
        #[arg(long, default_value = "1h", value_parser = token::parse_ttl)]
        ttl: Duration,
        /// Act in every tenant (honoured only for admin).
        #[arg(long)]
        cross_tenant: bool,
        /// HS256 key file (default: the dev key).
        #[arg(long)]
        key: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum JobsCommand {
    /// List jobs (dead ones unless --state says otherwise).
    List {
        #[arg(long = "state", value_enum)]
        states: Vec<JobStateArg>,
        /// Only jobs of this leg.
        #[arg(long, value_parser = ["vector", "text"])]
        leg: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Re-queue dead jobs with a fresh attempt budget.
    Retry {
        ids: Vec<i64>,
        /// Every dead job (of --tenant, when given).
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Give up on dead jobs (they stay listed as discarded).
    Discard {
        ids: Vec<i64>,
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum JobStateArg {
    Pending,
    Running,
    Done,
    Dead,
    Discarded,
}

impl From<JobStateArg> for JobState {
    fn from(s: JobStateArg) -> Self {
        match s {
            JobStateArg::Pending => JobState::Pending,
            JobStateArg::Running => JobState::Running,
            JobStateArg::Done => JobState::Done,
            JobStateArg::Dead => JobState::Dead,
            JobStateArg::Discarded => JobState::Discarded,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Mode {
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

type Gateway = GatewayClient<
    braid_proto::tonic::service::interceptor::InterceptedService<Channel, token::Bearer>,
>;

async fn gateway(address: &str, token: Option<&str>) -> anyhow::Result<Gateway> {
    let bearer = token::Bearer::new(token::resolve(token)?)?;
    Ok(
        GatewayClient::with_interceptor(connect(address).await?, bearer)
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024),
    )
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

fn ts(t: &Option<braid_proto::prost_types::Timestamp>) -> String {
    t.as_ref().map_or("-".to_string(), |t| t.to_string())
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Data operations: empty tenant = "default" on the server. Admin: empty = every tenant.
    let tenant = cli.tenant.unwrap_or_default();
    let gateway_addr = cli.gateway.last().cloned().unwrap_or_default();
    let gateway_addr = gateway_addr.as_str();
    match cli.command {
        Command::Bench(args) => bench::run(cli.gateway, tenant, *args).await,
        Command::Ingest {
            paths,
            wait,
            wait_timeout_secs,
            metadata,
        } => {
            let wait = wait.then(|| Duration::from_secs(wait_timeout_secs));
            ingest(
                gateway_addr,
                cli.token.as_deref(),
                &tenant,
                &paths,
                wait,
                metadata.into_iter().collect(),
            )
            .await
        }
        Command::Jobs { command } => {
            jobs(gateway_addr, cli.token.as_deref(), &tenant, command).await
        }
        Command::Audit(args) => {
            audit::run(
                gateway(gateway_addr, cli.token.as_deref()).await?,
                &tenant,
                args,
            )
            .await
        }
        Command::Reindex(args) => {
            recovery::reindex(
                gateway(gateway_addr, cli.token.as_deref()).await?,
                &tenant,
                args,
            )
            .await
        }
        Command::Verify(args) => {
            recovery::verify(
                gateway(gateway_addr, cli.token.as_deref()).await?,
                &tenant,
                args,
            )
            .await
        }
        Command::Reembed {
            dry_run,
            wait,
            purge,
        } => {
            let mut gw = gateway(gateway_addr, cli.token.as_deref()).await?;
            let r = gw
                .reembed(ReembedRequest {
                    tenant: tenant.clone(),
                    dry_run,
                    purge_other_models: purge,
                })
                .await?
                .into_inner();
            if purge {
                println!(
                    "kept {}; deleted {} vectors of other models",
                    r.model, r.purged
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "target model {}: {} jobs enqueued, {} documents on another model",
                r.model, r.enqueued, r.remaining
            );
            let mut remaining = r.remaining;
            while wait && remaining > 0 {
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                remaining = gw
                    .reembed(ReembedRequest {
                        tenant: tenant.clone(),
                        dry_run: true,
                        purge_other_models: false,
                    })
                    .await?
                    .into_inner()
                    .remaining;
                eprintln!("{remaining} documents left");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Stats => {
            let s = gateway(gateway_addr, cli.token.as_deref())
                .await?
                .stats(StatsRequest { tenant })
                .await?
                .into_inner();
            println!("documents:            {}", s.documents_total);
            let mut by: Vec<_> = s.documents_by_status.iter().collect();
            by.sort();
            for (status, n) in by {
                println!("  {status:<19} {n}");
            }
            println!("chunks:               {}", s.chunks_total);
            println!("queue depth:          {}", s.queue_depth);
            println!(
                "oldest pending job:   {:.1} s",
                s.oldest_pending_age_seconds
            );
            println!("dead-letter queue:    {}", s.dead_jobs);
            println!("last sync:            {}", ts(&s.last_sync_at));
            Ok(ExitCode::SUCCESS)
        }
        Command::Search {
            query,
            mode,
            top_k,
            rrf_k,
            fusion,
            explain,
            filter,
            page_size,
            page_token,
            min_score,
            min_vector_score,
            min_text_score,
            chunks,
            json,
        } => {
            let request = SearchRequest {
                tenant,
                query,
                top_k,
                mode: match mode {
                    Mode::Hybrid => SearchMode::Hybrid,
                    Mode::Vector => SearchMode::Vector,
                    Mode::Text => SearchMode::Text,
                } as i32,
                fusion: Some(fusion.to_proto(rrf_k)),
                filter: filter::filter(&filter).map_err(anyhow::Error::msg)?,
                chunk_level: chunks,
                bypass_cache: false,
                explain,
                page_size,
                page_token,
                min_score,
                min_vector_score,
                min_text_score,
            };
            let response = gateway(gateway_addr, cli.token.as_deref())
                .await?
                .search(request)
                .await?
                .into_inner();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&search::json(&response))?
                );
            } else {
                search::print(&response);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Get { id } => {
            let (document_id, external_id) = id_fields(&id);
            let doc = gateway(gateway_addr, cli.token.as_deref())
                .await?
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
        Command::Delete { id } => {
            let (document_id, external_id) = id_fields(&id);
            let r = gateway(gateway_addr, cli.token.as_deref())
                .await?
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
        Command::Token {
            command:
                TokenCommand::Mint {
                    sub,
                    role,
                    clearance,
                    groups,
                    ttl,
                    cross_tenant,
                    key,
                },
        } => {
            let key_path = key.unwrap_or_else(token::dev_key_path);
            let key = token::read_key(&key_path)?;
            let grant = token::Grant {
                sub: &sub,
                tenant: (!tenant.is_empty()).then_some(tenant.as_str()),
                role: &role,
                clearance,
                groups: &groups,
                cross_tenant,
                ttl,
            };
            anyhow::ensure!(
                grant.tenant.is_some() || (cross_tenant && role == "admin"),
                "--tenant is required (or --cross-tenant with --role admin)"
            );
            println!("{}", token::mint(&key, &grant)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Health {
            service: Some(service),
            addr: Some(addr),
            quiet,
            ..
        } => {
            let address = if addr.contains("://") {
                addr
            } else {
                format!("http://{addr}")
            };
            // Bounded as a whole (connect, HTTP/2 handshake, call): a listener that is bound
            // but not serving yet must fail the probe, not hang it.
            let status = tokio::time::timeout(
                Duration::from_secs(10),
                check(&address, service.grpc_name()),
            )
            .await
            .unwrap_or_else(|_| "TIMEOUT".into());
            if !quiet {
                println!("{:<14} {address:<24} {status}", service.grpc_name());
            }
            Ok(if status == "SERVING" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Health {
            ingest,
            embedding,
            vector_search,
            text_search,
            quiet,
            ..
        } => {
            use braid_proto::service_names as n;
            let targets = [
                ("gateway", gateway_addr, n::GATEWAY),
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

async fn jobs(
    address: &str,
    token: Option<&str>,
    tenant: &str,
    command: JobsCommand,
) -> anyhow::Result<ExitCode> {
    let mut client = gateway(address, token).await?;
    match command {
        JobsCommand::List { states, leg, limit } => {
            let mut page_token = String::new();
            let mut shown = 0;
            println!(
                "{:>8}  {:<9}  {:<6}  {:<6}  {:>3}  {:<24}  {:<20}  last error",
                "job", "state", "leg", "op", "try", "updated", "document"
            );
            loop {
                let page = client
                    .list_jobs(ListJobsRequest {
                        tenant: tenant.to_string(),
                        states: states.iter().map(|s| JobState::from(*s) as i32).collect(),
                        leg: leg.clone().unwrap_or_default(),
                        page_size: limit.clamp(1, 500),
                        page_token,
                    })
                    .await?
                    .into_inner();
                for j in &page.jobs {
                    let state = JobState::try_from(j.state)
                        .unwrap_or_default()
                        .as_str_name();
                    let doc = if j.external_id.is_empty() {
                        &j.document_id
                    } else {
                        &j.external_id
                    };
                    println!(
                        "{:>8}  {:<9}  {:<6}  {:<6}  {:>3}  {:<24}  {:<20}  {}",
                        j.job_id,
                        state.trim_start_matches("JOB_STATE_"),
                        j.leg,
                        j.op,
                        j.attempts,
                        ts(&j.updated_at),
                        doc,
                        j.last_error
                    );
                    shown += 1;
                }
                if page.next_page_token.is_empty() || shown >= limit {
                    break;
                }
                page_token = page.next_page_token;
            }
            println!("{shown} jobs");
        }
        JobsCommand::Retry { ids, all } => {
            let r = client
                .retry_jobs(RetryJobsRequest {
                    job_ids: ids,
                    all_dead: all,
                    tenant: tenant.to_string(),
                })
                .await?
                .into_inner();
            println!("{} jobs queued again", r.retried);
        }
        JobsCommand::Discard { ids, all } => {
            let r = client
                .discard_jobs(DiscardJobsRequest {
                    job_ids: ids,
                    all_dead: all,
                    tenant: tenant.to_string(),
                })
                .await?
                .into_inner();
            println!("{} jobs discarded", r.discarded);
        }
    }
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

async fn ingest(
    address: &str,
    token: Option<&str>,
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
    let mut client = gateway(address, token).await?;

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
