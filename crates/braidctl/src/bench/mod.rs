//! `braidctl bench`: a load generator for `Gateway.Search`.
//!
//! Closed loop: `--clients` workers, each sending its next query as soon as the previous one
//! was answered, each on its own HTTP/2 connection (or spread over `--connections`). Open
//! loop (`--rate`): requests leave on a fixed schedule whatever the answers do, and latency is
//! measured from each request's intended send time (see [`schedule`]). Queries cycle through a
//! file. With several `--gateway` targets each connection starts on the next target in turn,
//! and a request whose target refuses or answers UNAVAILABLE (e.g. while it shuts down) is
//! sent again to the next target and stays there.

mod queries;
mod report;
mod schedule;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use braid_proto::tonic::metadata::{AsciiMetadataValue, MetadataValue};
use braid_proto::tonic::transport::Channel;
use braid_proto::tonic::{Code, Request, Status};
use braid_proto::v1::gateway_client::GatewayClient;
use braid_proto::v1::{SearchMode, SearchRequest};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::Mode;
use report::{Recorder, Report, Setup, WholeRun};
use schedule::Schedule;

/// Open-loop requests in flight past which the client itself is saturated: further due
/// requests are counted as `CLIENT_SATURATED` errors instead of queueing in the client.
const DEFAULT_MAX_IN_FLIGHT: usize = 10_000;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Queries, one per line: BEIR-style JSON objects (their `text` field) or plain text.
    #[arg(long, default_value = "../shared/eval/scifact/queries.jsonl")]
    queries: PathBuf,
    /// Closed loop: concurrent clients (ignored with --rate).
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// HTTP/2 connections the requests are spread over (closed loop default: one per
    /// client; open loop default: 32).
    #[arg(long)]
    connections: Option<usize>,
    /// Open loop: requests per second, sent on schedule whatever the latency.
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: requests in flight at most before the client counts itself saturated.
    #[arg(long, default_value_t = DEFAULT_MAX_IN_FLIGHT)]
    max_in_flight: usize,
    #[arg(long, value_enum, default_value_t = Mode::Hybrid)]
    mode: Mode,
    #[arg(long, default_value_t = 10)]
    top_k: u32,
    /// Unmeasured time first (e.g. 5s, 500ms, 1m).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    warmup: Duration,
    /// Measured time after the warm-up.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Deadline of each request (sent as grpc-timeout).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Bearer token sent as `authorization: Bearer <token>`.
    #[arg(long, env = "BRAID_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Many callers: a file with one bearer token per line; request i carries token
    /// i mod n, so per-caller budgets and caches see n callers (replaces --token).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Ask the gateway not to answer from its query cache (uncached figures).
    #[arg(long)]
    bypass_cache: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// No live progress line on stderr.
    #[arg(long)]
    quiet: bool,
}

/// `5s`, `250ms`, `2m` or a plain number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 30s, 500ms or 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("`{s}`: unit must be ms, s or m")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{s}` must be a non-negative duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Whether a failure means "this gateway is not taking requests" (refused, shutting down,
/// connection gone, or the request cancelled unsent on a closing connection), so the same
/// request should go to the next target.
fn should_fail_over(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable => true,
        Code::Unknown | Code::Cancelled => {
            let m = status.message().to_ascii_lowercase();
            [
                "transport",
                "connection",
                "h2",
                "goaway",
                "broken pipe",
                "canceled",
            ]
            .iter()
            .any(|w| m.contains(w))
        }
        _ => false,
    }
}

/// One HTTP/2 connection slot: a lazily connected client per target.
struct Slot {
    per_target: Vec<GatewayClient<Channel>>,
}

struct Bench {
    slots: Vec<Slot>,
    queries: Vec<String>,
    next_query: AtomicU64,
    template: SearchRequest,
    /// One per caller; request i carries `authorization[i % len]` (none when empty).
    authorization: Vec<AsciiMetadataValue>,
    timeout: Duration,
    recorder: Mutex<Recorder>,
    /// Every answer of the run, the warm-up and the requests finishing after the measured
    /// window included: what the stack's CPU over the whole run is divided by.
    answered_whole_run: AtomicU64,
}

enum Outcome {
    Answered { degraded: bool },
    Failed(&'static str),
}

impl Bench {
    fn next_request(&self) -> Request<SearchRequest> {
        let i = self.next_query.fetch_add(1, Ordering::Relaxed) as usize;
        let mut body = self.template.clone();
        body.query = self.queries[i % self.queries.len()].clone();
        let mut request = Request::new(body);
        request.set_timeout(self.timeout);
        if !self.authorization.is_empty() {
            let value = &self.authorization[i % self.authorization.len()];
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        request
    }

    /// Sends one query over `slot`, starting at target `*target` and moving on (for this and
    /// later requests) when it is not taking requests.
    async fn send(
        &self,
        slot: usize,
        target: &AtomicUsize,
        record: impl Fn(&mut Recorder),
    ) -> Outcome {
        let slot = &self.slots[slot % self.slots.len()];
        let targets = slot.per_target.len();
        let mut last = Outcome::Failed("UNAVAILABLE");
        for attempt in 0..targets {
            let t = target.load(Ordering::Relaxed) % targets;
            let mut client = slot.per_target[t].clone();
            // A hung connection must not hang the benchmark past the request's deadline.
            let call = tokio::time::timeout(
                self.timeout + Duration::from_secs(1),
                client.search(self.next_request()),
            );
            match call.await {
                Ok(Ok(response)) => {
                    self.answered_whole_run.fetch_add(1, Ordering::Relaxed);
                    return Outcome::Answered {
                        degraded: response.get_ref().degraded,
                    };
                }
                Ok(Err(status)) if targets > 1 && should_fail_over(&status) => {
                    last = Outcome::Failed(code_name(status.code()));
                    if attempt + 1 < targets {
                        self.record_with(&record);
                    }
                    let _ = target.compare_exchange(
                        t,
                        (t + 1) % targets,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                Ok(Err(status)) => return Outcome::Failed(code_name(status.code())),
                Err(_) => return Outcome::Failed("DEADLINE_EXCEEDED"),
            }
        }
        last
    }

    fn record_with(&self, record: &impl Fn(&mut Recorder)) {
        record(&mut self.recorder.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Records a request sent `sent` into the measured window.
    fn record(&self, outcome: Outcome, sent: Duration, latency: Duration) {
        let mut r = self.recorder.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Outcome::Answered { degraded } => r.ok(sent, latency, degraded),
            Outcome::Failed(code) => r.error(sent, latency, code),
        }
    }
}

fn connect_lazy(address: &str) -> anyhow::Result<Channel> {
    crate::client::connect_lazy(address)
}

pub async fn run(
    targets: Vec<String>,
    tenant: String,
    args: BenchArgs,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(!targets.is_empty(), "at least one --gateway is required");
    if let Some(rate) = args.rate {
        anyhow::ensure!(
            rate.is_finite() && rate > 0.0,
            "--rate must be a positive number of requests per second"
        );
    } else {
        anyhow::ensure!(args.clients > 0, "--clients must be at least 1");
    }
    anyhow::ensure!(!args.duration.is_zero(), "--duration must be positive");
    let connections = match (args.connections, args.rate) {
        (Some(c), _) => c,
        (None, Some(_)) => 32,
        (None, None) => args.clients,
    };
    anyhow::ensure!(connections > 0, "--connections must be at least 1");
    let queries = queries::load(&args.queries)?;
    let tokens: Vec<String> = match (&args.token_file, &args.token) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("could not read --token-file {}", path.display()))?;
            let tokens: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect();
            anyhow::ensure!(
                !tokens.is_empty(),
                "--token-file {} holds no token",
                path.display()
            );
            tokens
        }
        (None, Some(token)) => vec![token.clone()],
        (None, None) => Vec::new(),
    };
    let authorization = tokens
        .iter()
        .map(|token| {
            MetadataValue::try_from(format!("Bearer {token}"))
                .context("a token is not a valid header value")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let callers = authorization.len();
    let mut slots = Vec::with_capacity(connections);
    for _ in 0..connections {
        let per_target =
            targets
                .iter()
                .map(|t| {
                    Ok(GatewayClient::new(connect_lazy(t)?)
                        .max_decoding_message_size(64 * 1024 * 1024))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
        slots.push(Slot { per_target });
    }
    let (mode, mode_name) = match args.mode {
        Mode::Hybrid => (SearchMode::Hybrid, "hybrid"),
        Mode::Vector => (SearchMode::Vector, "vector"),
        Mode::Text => (SearchMode::Text, "text"),
    };
    let bench = Arc::new(Bench {
        slots,
        queries,
        next_query: AtomicU64::new(0),
        template: SearchRequest {
            tenant,
            top_k: args.top_k,
            mode: mode as i32,
            bypass_cache: args.bypass_cache,
            ..Default::default()
        },
        authorization,
        timeout: args.timeout,
        recorder: Mutex::new(Recorder::new()),
        answered_whole_run: AtomicU64::new(0),
    });
    let setup = Setup {
        loop_kind: if args.rate.is_some() {
            "open"
        } else {
            "closed"
        },
        mode: mode_name,
        clients: if args.rate.is_some() { 0 } else { args.clients },
        connections,
        target_rate: args.rate,
        targets: targets.len(),
        callers,
    };

    let start = Instant::now();
    let measure_from = start + args.warmup;
    let end = measure_from + args.duration;
    let progress = (!args.quiet).then(|| spawn_progress(bench.clone(), measure_from));
    match args.rate {
        None => closed_loop(&bench, args.clients, measure_from, end, targets.len()).await,
        Some(rate) => {
            open_loop(
                &bench,
                Schedule::new(rate),
                start,
                measure_from,
                end,
                args.max_in_flight,
                targets.len(),
            )
            .await
        }
    }
    // Requests sent within the measured window count, including those answered after it.
    let elapsed = args.duration;
    if let Some(p) = progress {
        p.abort();
        if std::io::stderr().is_terminal() {
            eprintln!();
        }
    }
    let whole_run = WholeRun {
        answered: bench.answered_whole_run.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
    };
    let report: Report = bench
        .recorder
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .report(setup, elapsed, whole_run);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(ExitCode::SUCCESS)
}

async fn closed_loop(
    bench: &Arc<Bench>,
    clients: usize,
    measure_from: Instant,
    end: Instant,
    targets: usize,
) {
    let mut workers = tokio::task::JoinSet::new();
    for i in 0..clients {
        let bench = bench.clone();
        workers.spawn(async move {
            let target = AtomicUsize::new(i % targets);
            while Instant::now() < end {
                let sent = Instant::now();
                let measured = sent >= measure_from;
                let outcome = bench
                    .send(i, &target, |r| {
                        if measured {
                            r.failover()
                        }
                    })
                    .await;
                if measured {
                    bench.record(outcome, sent - measure_from, sent.elapsed());
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
}

async fn open_loop(
    bench: &Arc<Bench>,
    schedule: Schedule,
    start: Instant,
    measure_from: Instant,
    end: Instant,
    max_in_flight: usize,
    targets: usize,
) {
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    let total = schedule.count_within(end - start);
    let mut i = 0u64;
    while i < total {
        let due = start + schedule.due(i);
        tokio::time::sleep_until(due).await;
        let measured = due >= measure_from;
        match in_flight.clone().try_acquire_owned() {
            Ok(permit) => {
                let bench = bench.clone();
                let slot = i as usize;
                tokio::spawn(async move {
                    let target = AtomicUsize::new(slot % targets);
                    let outcome = bench
                        .send(slot, &target, |r| {
                            if measured {
                                r.failover()
                            }
                        })
                        .await;
                    let done = Instant::now();
                    if measured {
                        let latency = schedule::latency_from_due(due - start, done - start);
                        bench.record(outcome, due - measure_from, latency);
                    }
                    drop(permit);
                });
            }
            Err(_) if measured => bench.record(
                Outcome::Failed("CLIENT_SATURATED"),
                due - measure_from,
                Duration::ZERO,
            ),
            Err(_) => {}
        }
        i += 1;
    }
    // Wait for every request still in flight.
    let _ = in_flight.acquire_many(max_in_flight as u32).await;
}

fn spawn_progress(bench: Arc<Bench>, measure_from: Instant) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let tty = std::io::stderr().is_terminal();
        let every = if tty {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(10)
        };
        let mut ticker = tokio::time::interval(every);
        ticker.tick().await;
        let mut last = 0u64;
        loop {
            ticker.tick().await;
            let now = Instant::now();
            let line = {
                let r = bench.recorder.lock().unwrap_or_else(|p| p.into_inner());
                let requests = r.requests();
                let line = if now < measure_from {
                    "warming up".to_string()
                } else {
                    r.progress_line(now - measure_from, requests - last, every)
                };
                last = requests;
                line
            };
            if tty {
                eprint!("\r{line}\x1b[K");
            } else {
                eprintln!("{line}");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_rotate_over_the_callers_tokens() {
        let bench = Bench {
            slots: Vec::new(),
            queries: vec!["q".into()],
            next_query: AtomicU64::new(0),
            template: SearchRequest::default(),
            authorization: ["a", "b", "c"]
                .iter()
                .map(|t| MetadataValue::try_from(format!("Bearer {t}")).unwrap())
                .collect(),
            timeout: Duration::from_secs(1),
            recorder: Mutex::new(Recorder::new()),
            answered_whole_run: AtomicU64::new(0),
        };
        let sent: Vec<String> = (0..6)
            .map(|_| {
                let request = bench.next_request();
                let value = request.metadata().get("authorization").unwrap();
                value.to_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(
            sent,
            ["a", "b", "c", "a", "b", "c"].map(|t| format!("Bearer {t}"))
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn failover_only_when_the_target_is_not_taking_requests() {
        assert!(should_fail_over(&Status::unavailable("tcp connect error")));
        assert!(should_fail_over(&Status::unknown(
            "h2 protocol error: GOAWAY"
        )));
        assert!(!should_fail_over(&Status::resource_exhausted("queue full")));
        assert!(!should_fail_over(&Status::invalid_argument("query")));
        assert!(!should_fail_over(&Status::unknown("something else")));
        // hyper cancels a request it could not send on a connection that was closing.
        assert!(should_fail_over(&Status::cancelled(
            "operation was canceled"
        )));
    }
}
