//! The command line: global options and every subcommand with its flags (a command with many
//! flags keeps them in its own module's `Args` struct, e.g. `search::SearchArgs`).

use std::path::PathBuf;
use std::time::Duration;

use braid_proto::v1::JobState;
use clap::{Parser, Subcommand, ValueEnum};

use crate::{audit, bench, recovery, search, token};

#[derive(Parser)]
#[command(
    name = "braidctl",
    version,
    about = "Operate a Braid hybrid retrieval deployment"
)]
pub struct Cli {
    /// Gateway address (`bench` takes it repeatedly and spreads its clients round-robin;
    /// other commands use the last one).
    #[arg(
        long,
        env = "BRAID_GATEWAY",
        default_value = "http://127.0.0.1:50051",
        global = true,
        action = clap::ArgAction::Append
    )]
    pub gateway: Vec<String>,
    /// Tenant to act on (documents and search: "default" when unset; jobs and stats: every
    /// tenant when unset).
    #[arg(long, env = "BRAID_TENANT", global = true)]
    pub tenant: Option<String>,
    /// Bearer token for the gateway. Without one, short-lived dev admin tokens are minted (and
    /// re-minted before they expire) when the dev key `$BRAID_HOME/secrets/dev-jwt.key` exists
    /// (`make run` writes it).
    #[arg(long, env = "BRAID_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// PEM CA certificate(s) an `https://` gateway's certificate must chain to (default: the
    /// Mozilla roots).
    #[arg(long, env = "BRAID_TLS_CA", global = true)]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate, for a server that requires mutual TLS (with --tls-key).
    #[arg(long, env = "BRAID_TLS_CERT", global = true, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "BRAID_TLS_KEY", global = true, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The name the server's certificate must carry, instead of the address's host (e.g. when
    /// the address is an IP the certificate does not list).
    #[arg(long, env = "BRAID_TLS_SERVER_NAME", global = true)]
    pub tls_server_name: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    Search(Box<search::SearchArgs>),
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
    /// Token revocation (admin).
    Auth {
        #[command(subcommand)]
        command: AuthCommand,
    },
    /// One status view of all five services through the gateway (admin): health and why,
    /// version, uptime, breakers, pools, caches, queues and indexes.
    Status {
        /// Print the whole report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The gateway's circuit breakers (admin).
    Breaker {
        #[command(subcommand)]
        command: BreakerCommand,
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
        #[arg(
            long,
            default_value = "http://127.0.0.1:50052",
            env = "BRAID_HEALTH_INGEST"
        )]
        ingest: String,
        #[arg(
            long,
            default_value = "http://127.0.0.1:50053",
            env = "BRAID_HEALTH_EMBEDDING"
        )]
        embedding: String,
        #[arg(
            long,
            default_value = "http://127.0.0.1:50054",
            env = "BRAID_HEALTH_VECTOR_SEARCH"
        )]
        vector_search: String,
        #[arg(
            long,
            default_value = "http://127.0.0.1:50055",
            env = "BRAID_HEALTH_TEXT_SEARCH"
        )]
        text_search: String,
        /// Print nothing; the exit code says whether everything is SERVING.
        #[arg(long)]
        quiet: bool,
    },
}

/// A service whose own `grpc.health.v1` status `health --service` checks.
#[derive(Clone, Copy, ValueEnum)]
pub enum ServiceArg {
    Gateway,
    Ingest,
    Embedding,
    VectorSearch,
    TextSearch,
}

impl ServiceArg {
    pub fn grpc_name(self) -> &'static str {
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
pub enum TokenCommand {
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
pub enum BreakerCommand {
    /// Close the breaker of one downstream at once (on the gateway replica that serves the
    /// call: breakers are per process).
    Reset {
        /// vector, text, embedding or ingest.
        leg: String,
    },
}

#[derive(Subcommand)]
pub enum AuthCommand {
    /// Refuse every token of a subject issued before now, on every gateway replica within
    /// its `revocation.poll_interval_ms`; tokens issued afterwards work. In --tenant (a
    /// tenant-bound admin: its own tenant); a cross-tenant admin without --tenant revokes the
    /// subject in every tenant.
    Revoke {
        /// The `sub` claim of the tokens to refuse.
        #[arg(long)]
        sub: String,
    },
}

#[derive(Subcommand)]
pub enum JobsCommand {
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
pub enum JobStateArg {
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
pub enum Mode {
    Hybrid,
    Vector,
    Text,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not key=value"))
}
