//! What one query embedding costs the embedding service: CPU time per query at a steady
//! arrival rate (the figure issue 10's load scenarios depend on), CPU burnt while idle right
//! after (spinning threads), texts per forward pass (are concurrent queries merged?), and
//! latency one query at a time.
//!
//! The service runs in this process; the load client runs on a thread of its own with its own
//! runtime, so the service's CPU is the process's CPU minus the client thread's.

use std::time::{Duration, Instant};

use braid_tests::v1::embedding_service_client::EmbeddingServiceClient;
use braid_tests::v1::{EmbedRequest, InputType};
use braid_tests::{Service, ServiceChannel, metric_sum, service_channel};

use crate::measure::{percentile, process_cpu, thread_cpu};

pub struct QueryCost {
    /// Service CPU per query at the steady rate, milliseconds.
    pub cpu_ms: f64,
    /// Queries per second actually sent and answered.
    pub rate: f64,
    /// Latency at the steady rate, from each query's intended send time.
    pub loaded_p50: Duration,
    pub loaded_p99: Duration,
    /// Service CPU in the second after the load, percent of one core.
    pub idle_after_pct: f64,
    /// Texts per forward pass during the steady load.
    pub texts_per_pass: f64,
    /// One query at a time.
    pub p50: Duration,
    pub p99: Duration,
}

async fn embed_query(
    client: &mut EmbeddingServiceClient<ServiceChannel>,
    text: &str,
) -> anyhow::Result<()> {
    client
        .embed(EmbedRequest {
            texts: vec![text.to_string()],
            input_type: InputType::Query as i32,
        })
        .await?;
    Ok(())
}

/// Sends `queries` at `rate` per second (open loop), then measures one at a time.
pub async fn measure(
    service: &Service,
    queries: &[String],
    rate: f64,
) -> anyhow::Result<QueryCost> {
    let channel = service_channel(service);
    let admin = service.admin;
    let before = crate::metrics(admin).await?;
    let queries = queries.to_vec();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("bench-client".into())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(steady(channel, queries, rate)));
            let _ = tx.send(result);
        })?;
    let steady = rx.await??;
    let after = crate::metrics(admin).await?;
    let passes = metric_sum(&after, "braid_embedding_batch_size_count", &[])
        - metric_sum(&before, "braid_embedding_batch_size_count", &[]);
    let texts = metric_sum(&after, "braid_embedding_batch_size_sum", &[])
        - metric_sum(&before, "braid_embedding_batch_size_sum", &[]);

    // One query at a time (different queries: the cache is off anyway).
    let mut client = EmbeddingServiceClient::new(service_channel(service));
    let mut latencies = Vec::new();
    for q in steady.queries.iter().take(200) {
        let started = Instant::now();
        embed_query(&mut client, q).await?;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    Ok(QueryCost {
        cpu_ms: steady.service_cpu.as_secs_f64() * 1e3 / steady.sent as f64,
        rate: steady.sent as f64 / steady.wall.as_secs_f64(),
        loaded_p50: steady.p50,
        loaded_p99: steady.p99,
        idle_after_pct: steady.idle_cpu.as_secs_f64() * 100.0,
        texts_per_pass: if passes > 0.0 { texts / passes } else { 0.0 },
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
    })
}

struct Steady {
    queries: Vec<String>,
    sent: usize,
    wall: Duration,
    service_cpu: Duration,
    idle_cpu: Duration,
    p50: Duration,
    p99: Duration,
}

/// Runs on the client thread: the open-loop load, then one idle second.
async fn steady(
    channel: ServiceChannel,
    queries: Vec<String>,
    rate: f64,
) -> anyhow::Result<Steady> {
    let client = EmbeddingServiceClient::new(channel);
    // Connect and warm up (untimed), with queries the load does not repeat.
    let (warm_up, queries) = queries.split_at(queries.len().min(20));
    for q in warm_up {
        embed_query(&mut client.clone(), q).await?;
    }
    let queries = queries.to_vec();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let (process0, thread0) = (process_cpu(), thread_cpu());
    let started = Instant::now();
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(queries.len());
    for (i, q) in queries.iter().enumerate() {
        let intended = start + interval * i as u32;
        tokio::time::sleep_until(intended).await;
        let mut client = client.clone();
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            embed_query(&mut client, &q).await?;
            Ok::<_, anyhow::Error>(intended.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for t in tasks {
        latencies.push(t.await??);
    }
    let wall = started.elapsed();
    let (process1, thread1) = (process_cpu(), thread_cpu());
    // One second with nothing to do: threads that spin for work show up here.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (process2, thread2) = (process_cpu(), thread_cpu());
    latencies.sort();
    Ok(Steady {
        sent: queries.len(),
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        queries,
        wall,
        service_cpu: (process1 - process0).saturating_sub(thread1 - thread0),
        idle_cpu: (process2 - process1).saturating_sub(thread2 - thread1),
    })
}
