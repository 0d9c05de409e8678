//! Replicas without a mesh: three embedding and two vector-search replicas on distinct
//! loopback addresses (one port each, like the pods of a headless Service) behind one name
//! each, which the gateway resolves through an injected resolver the test changes while the
//! stack runs (as DNS changes when pods come and go). Under a steady hybrid search load:
//! (a) each replica serves its share within ±25%, counted by the replica's own request
//! metric; (b) one embedding and one vector-search replica stopped: 0 failed or degraded
//! searches, the gateway reports them down, and forgets them once the name drops them;
//! (c) a replica added to the name receives traffic within 30 s and then its share.
//! Ingest reaches the same replicas through a static list of addresses.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use braid_core::balance::FixedResolver;
use braid_core::config::ClientConfig;
use braid_core::server::Listeners;
use braid_gateway::Budget;
use braid_proto::service_names as names;
use braid_tests::replicas::{SearchLoad, loopback, replica_listeners, scrape, served};
use braid_tests::{Service, StackOptions, TestDb, eventually, ingest_texts};

const EMBED: &str = "/braid.v1.EmbeddingService/Embed";
const VECTOR_SEARCH: &str = "/braid.v1.VectorSearchService/Search";
const EMBEDDING_NAME: &str = "embedding.braid.test";
const VECTOR_NAME: &str = "vector-search.braid.test";

const TEXTS: [&str; 4] = [
    "Sourdough bread rises slowly because wild yeast ferments the dough overnight.",
    "Marathon runners taper their training in the weeks before a long race.",
    "Volcanic eruptions eject magma, ash and pumice into the atmosphere.",
    "The borrow checker rejects programs with dangling references at compile time.",
];
const QUERIES: [&str; 4] = [
    "how does bread rise",
    "preparing for a marathon",
    "what comes out of a volcano",
    "dangling references in Rust",
];

/// Searches per measured window: enough that an even split is not luck (binomial spread of
/// a random pick over 3 replicas: σ ≈ 8 % of a share at 300 calls).
const WINDOW: u64 = 300;

/// A client of the replicas behind `name`: re-resolved every 200 ms, a failed replica
/// probed from 50 ms up to 500 ms apart.
fn balanced(name: &str, port: u16, timeout_ms: u64) -> ClientConfig {
    ClientConfig {
        resolve_interval_ms: 200,
        probe_backoff_ms: 50,
        probe_backoff_max_ms: 500,
        ..ClientConfig::new(format!("http://{name}:{port}"), timeout_ms)
    }
}

/// The same replicas as a static list of addresses.
fn listed(addrs: &[SocketAddr], timeout_ms: u64) -> ClientConfig {
    let list: Vec<String> = addrs.iter().map(|a| format!("http://{a}")).collect();
    ClientConfig::new(list.join(","), timeout_ms)
}

async fn start_embedding(options: &StackOptions, listeners: Listeners) -> anyhow::Result<Service> {
    let mut cfg = options.embedding.clone();
    cfg.model.dir = braid_tests::model_dir();
    cfg.model.onnx_runtime = braid_tests::onnx_runtime();
    cfg.internal_auth = braid_tests::internal_auth();
    // One model copy per replica: four replicas on a small machine.
    cfg.model.threads = 1;
    let service = Service::spawn("embedding", listeners, |l, s| {
        braid_embedding::run(cfg, l, s)
    })?;
    service.wait_serving(names::EMBEDDING).await?;
    Ok(service)
}

/// Each count within ±25 % of their mean; `what` names the replicas in the failure.
fn assert_even(what: &str, counts: &[f64], calls: u64) {
    let total: f64 = counts.iter().sum();
    // Every search embeds its query once and searches vectors once (plus retries).
    assert!(
        total >= calls as f64 * 0.9,
        "{what}: only {total} calls for {calls} searches: {counts:?}"
    );
    let mean = total / counts.len() as f64;
    for c in counts {
        assert!(
            (c - mean).abs() <= 0.25 * mean,
            "{what}: a replica is off its share by more than 25 %: {counts:?}"
        );
    }
}

fn all(services: &[Service]) -> Vec<&Service> {
    services.iter().collect()
}

fn delta(after: &[f64], before: &[f64]) -> Vec<f64> {
    after.iter().zip(before).map(|(a, b)| a - b).collect()
}

/// The gateway's `braid_client_endpoints` for `downstream` in `state`.
async fn endpoints(gateway: &Service, downstream: &str, state: &str) -> f64 {
    scrape(
        gateway,
        "braid_client_endpoints",
        &[
            &format!("downstream=\"{downstream}\""),
            &format!("state=\"{state}\""),
        ],
    )
    .await
    .unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_behind_one_name_share_the_load_lose_none_and_gain_new_ones() {
    let options = StackOptions::default();
    let db = TestDb::create().await.expect("test database");
    let topology = braid_tests::pg_topology::Topology::default();
    let tantivy = tempfile::tempdir().expect("tempdir");

    // Two vector-search replicas on one database (the first migrates, the second finds the
    // schema in place).
    let mut vector = Vec::new();
    let vector_listeners = replica_listeners(2).await.expect("vector listeners");
    let vector_port = vector_listeners[0].grpc_addr().expect("addr").port();
    for l in vector_listeners {
        let mut cfg = braid_vector_search::VectorSearchConfig {
            internal_auth: braid_tests::internal_auth(),
            ..Default::default()
        };
        topology.apply(&db.name, &mut cfg.database, true);
        cfg.server.health_probe_interval_ms = 100;
        cfg.server.shutdown_grace_ms = 2_000;
        let service = Service::spawn("vector-search", l, |l, s| {
            braid_vector_search::run(cfg, l, s)
        })
        .expect("vector-search");
        service
            .wait_serving(names::VECTOR_SEARCH)
            .await
            .expect("vector-search serving");
        vector.push(service);
    }

    let mut text_cfg = braid_text_search::TextSearchConfig {
        internal_auth: braid_tests::internal_auth(),
        ..Default::default()
    };
    text_cfg.index.dir = tantivy.path().to_path_buf();
    text_cfg.index.writer_memory_mb = 20;
    text_cfg.server.health_probe_interval_ms = 100;
    text_cfg.server.shutdown_grace_ms = 2_000;
    let mut text = Service::spawn(
        "text-search",
        Listeners::ephemeral().await.expect("listeners"),
        |l, s| braid_text_search::run(text_cfg, l, s),
    )
    .expect("text-search");

    // Three embedding replicas now, a fourth address kept for later.
    let mut embedding_listeners = replica_listeners(4).await.expect("embedding listeners");
    let embedding_port = embedding_listeners[0].grpc_addr().expect("addr").port();
    let spare = embedding_listeners.pop().expect("fourth listener");
    let mut embedding = Vec::new();
    for l in embedding_listeners {
        embedding.push(start_embedding(&options, l).await.expect("embedding"));
    }

    // Ingest: the replicas as static lists.
    let mut ingest_cfg = options.ingest.clone();
    ingest_cfg.internal_auth = braid_tests::internal_auth();
    topology.apply(&db.name, &mut ingest_cfg.database, false);
    ingest_cfg.embedding = listed(
        &embedding.iter().map(|s| s.grpc).collect::<Vec<_>>(),
        60_000,
    );
    ingest_cfg.vector_search = listed(&vector.iter().map(|s| s.grpc).collect::<Vec<_>>(), 30_000);
    ingest_cfg.text_search = ClientConfig::new(text.endpoint(), 30_000);
    let mut ingest = Service::spawn(
        "ingest",
        Listeners::ephemeral().await.expect("listeners"),
        |l, s| braid_ingest::run(ingest_cfg, l, s),
    )
    .expect("ingest");

    // Gateway: one name per replicated downstream, resolved by the test.
    let resolver = FixedResolver::new();
    resolver.set(EMBEDDING_NAME, (0..3).map(loopback));
    resolver.set(VECTOR_NAME, (0..2).map(loopback));
    let mut gateway_cfg = options.gateway.clone();
    gateway_cfg.internal_auth = braid_tests::internal_auth();
    // The load is one caller sending searches that bypass the cache (2 budget tokens each):
    // its budgets must not be what stops it (the test counts every search as answered).
    gateway_cfg.limits.search.per_subject = Budget::new(100_000.0, 100_000);
    gateway_cfg.limits.search.per_tenant = Budget::new(100_000.0, 100_000);
    topology.apply(&db.name, &mut gateway_cfg.audit.database, false);
    gateway_cfg.ingest = ClientConfig::new(ingest.endpoint(), 120_000);
    gateway_cfg.embedding = balanced(EMBEDDING_NAME, embedding_port, 20_000);
    gateway_cfg.vector_search = balanced(VECTOR_NAME, vector_port, 20_000);
    gateway_cfg.text_search = ClientConfig::new(text.endpoint(), 20_000);
    let gateway_resolver = Arc::new(resolver.clone());
    let mut gateway = Service::spawn(
        "gateway",
        Listeners::ephemeral().await.expect("listeners"),
        |l, s| braid_gateway::run_with_resolver(gateway_cfg, l, gateway_resolver, s),
    )
    .expect("gateway");
    for (s, name) in [
        (&text, names::TEXT_SEARCH),
        (&ingest, names::INGEST),
        (&gateway, names::GATEWAY),
    ] {
        s.wait_serving(name).await.expect("serving");
    }
    let mut gw = braid_tests::v1::gateway_client::GatewayClient::connect(gateway.endpoint())
        .await
        .expect("gateway client");
    ingest_texts(&mut gw, &TEXTS).await;

    let load = SearchLoad::start(&gateway, 4, &QUERIES)
        .await
        .expect("search load");

    // (a) An even share for every replica.
    let before_embed = served(&all(&embedding), EMBED).await.expect("scrape");
    let before_vector = served(&all(&vector), VECTOR_SEARCH).await.expect("scrape");
    let before_done = load.completed();
    load.run_for(WINDOW).await.expect("window (a)");
    let calls = load.completed() - before_done;
    let embed = delta(
        &served(&all(&embedding), EMBED).await.expect("scrape"),
        &before_embed,
    );
    let vectors = delta(
        &served(&all(&vector), VECTOR_SEARCH).await.expect("scrape"),
        &before_vector,
    );
    eprintln!("(a) {calls} searches: Embed per replica {embed:?}, vector Search {vectors:?}");
    assert_even("embedding", &embed, calls);
    assert_even("vector-search", &vectors, calls);
    load.assert_no_failure("(a)");

    // (b) One replica of each stopped under load: nothing fails.
    embedding[0].stop().await.expect("embedding stopped");
    vector[0].stop().await.expect("vector-search stopped");
    load.run_for(WINDOW).await.expect("window (b)");
    eprintln!("(b) {} searches so far", load.completed());
    load.assert_no_failure("(b) one replica of each stopped");
    // Still resolved (as a DNS record outlives a pod a little): down, being probed.
    for downstream in ["embedding", "vector-search"] {
        eventually(
            &format!("{downstream}: one endpoint down"),
            Duration::from_secs(30),
            || async { (endpoints(&gateway, downstream, "down").await == 1.0).then_some(()) },
        )
        .await
        .expect("endpoint down");
    }
    // The name drops them: the gateway forgets them.
    resolver.set(EMBEDDING_NAME, (1..3).map(loopback));
    resolver.set(VECTOR_NAME, [loopback(1)]);
    for (downstream, ready) in [("embedding", 2.0), ("vector-search", 1.0)] {
        eventually(
            &format!("{downstream}: {ready} endpoints, none down"),
            Duration::from_secs(30),
            || async {
                (endpoints(&gateway, downstream, "down").await == 0.0
                    && endpoints(&gateway, downstream, "ready").await == ready)
                    .then_some(())
            },
        )
        .await
        .expect("endpoints forgotten");
    }

    // (c) A replica added under load gets traffic within 30 s, then its share.
    let added = start_embedding(&options, spare)
        .await
        .expect("added embedding replica");
    let added_ip: IpAddr = added.grpc.ip();
    assert_eq!(added_ip, loopback(3));
    resolver.set(EMBEDDING_NAME, (1..4).map(loopback));
    let added_at = tokio::time::Instant::now();
    eventually(
        "the added replica serving searches",
        Duration::from_secs(30),
        || async {
            (scrape(&added, "braid_grpc_requests_total", &[EMBED])
                .await
                .ok()?
                > 0.0)
                .then_some(())
        },
    )
    .await
    .expect("traffic to the added replica");
    eprintln!(
        "(c) the added replica served after {:?}",
        added_at.elapsed()
    );
    let live: Vec<&Service> = embedding[1..].iter().chain([&added]).collect();
    let before = served(&live, EMBED).await.expect("scrape");
    let before_done = load.completed();
    load.run_for(WINDOW).await.expect("window (c)");
    let calls = load.completed() - before_done;
    let embed = delta(&served(&live, EMBED).await.expect("scrape"), &before);
    eprintln!("(c) {calls} searches: Embed per live replica (the added one last) {embed:?}");
    assert_even("embedding after scale-out", &embed, calls);

    load.finish().await.assert_no_failure("(c) a replica added");

    drop(gw);
    let mut added = added;
    for s in [&mut gateway, &mut ingest, &mut added, &mut text]
        .into_iter()
        .chain(embedding.iter_mut())
        .chain(vector.iter_mut())
    {
        s.stop().await.expect("stop");
    }
    db.drop_db().await;
}
