//! Restarts that drop nothing, on the real stack under a search loop: text-search restarted →
//! answers degrade to the vector leg, then recover (a fresh, uncached answer is hybrid again),
//! with no error; one of two gateways stopped gracefully → clients that move to the other one
//! on a refusal see no failed request, while the same clients do see failures when that
//! gateway is killed instead (so the first test proves the drain, not the clients' retries).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use braid_proto::tonic::{Code, Request, Status};
use braid_tests::v1::gateway_client::GatewayClient;
use braid_tests::v1::{SearchMode, SearchRequest};
use braid_tests::{Process, SlowProxy, Stack, eventually, http_get, metric_sum};
use tonic::transport::Channel;

const PATIENCE: Duration = Duration::from_secs(60);

const TOPICS: &[&str] = &[
    "Mitochondria produce most of the chemical energy needed by the cell.",
    "Vaccines train the immune system to recognise a pathogen.",
    "Insulin regulates the level of glucose in the blood.",
];

async fn ingest_corpus(gw: &mut GatewayClient<Channel>) {
    braid_tests::ingest_texts(gw, TOPICS).await;
}

fn search(i: u64) -> Request<SearchRequest> {
    let words = ["energy", "immune", "glucose"];
    let mut r = Request::new(SearchRequest {
        query: format!("{} {i}", words[i as usize % words.len()]),
        mode: SearchMode::Hybrid as i32,
        top_k: 3,
        // Every search reaches the legs: a cached answer would hide a leg that is down.
        bypass_cache: true,
        ..Default::default()
    });
    r.set_timeout(Duration::from_secs(60));
    r
}

#[derive(Default)]
struct Tally {
    answered: AtomicU64,
    degraded: AtomicU64,
    errors: std::sync::Mutex<Vec<String>>,
}

/// Whether the gateway never started this, so the request may go to the next one:
/// UNAVAILABLE (connection refused, or the stream refused after GOAWAY), or a request the
/// client had queued on a connection that closed before it was sent (hyper's `Canceled`, which
/// tonic reports as CANCELLED "operation was canceled"). A request cut while a gateway was
/// working on it (a kill: the connection reset mid-stream) fails, and is never retried here.
fn refused_unstarted(s: &Status) -> bool {
    s.code() == Code::Unavailable
        || (s.code() == Code::Cancelled && s.message() == "operation was canceled")
}

/// `clients` loops searching round-robin over `gateways` until `stop` is set.
fn search_loops(
    gateways: Vec<GatewayClient<Channel>>,
    clients: usize,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|c| {
            let (gateways, stop, tally) = (gateways.clone(), stop.clone(), tally.clone());
            tokio::spawn(async move {
                let mut target = c % gateways.len();
                let mut i = c as u64;
                while !stop.load(Ordering::SeqCst) {
                    let mut outcome = Err(Status::unavailable("no gateway tried"));
                    for _ in 0..gateways.len() {
                        outcome = gateways[target].clone().search(search(i)).await;
                        match &outcome {
                            Err(s) if gateways.len() > 1 && refused_unstarted(s) => {
                                target = (target + 1) % gateways.len();
                            }
                            _ => break,
                        }
                    }
                    match outcome {
                        Ok(r) => {
                            tally.answered.fetch_add(1, Ordering::SeqCst);
                            if r.get_ref().degraded {
                                tally.degraded.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Err(s) => tally.errors.lock().unwrap().push(format!(
                            "{:?}: {}",
                            s.code(),
                            s.message()
                        )),
                    }
                    i += clients as u64;
                }
            })
        })
        .collect()
}

async fn wait_answers(tally: &Tally, more_than: u64) {
    eventually("more answers", PATIENCE, || async {
        (tally.answered.load(Ordering::SeqCst) > more_than).then_some(())
    })
    .await
    .expect("answers keep coming");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarting_text_search_under_load_degrades_answers_without_errors() {
    let mut stack = Stack::start().await.expect("stack");
    let mut gw = stack.gateway_client().await.expect("client");
    ingest_corpus(&mut gw).await;

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let loops = search_loops(vec![gw.clone()], 4, stop.clone(), tally.clone());
    wait_answers(&tally, 10).await;

    stack.text.stop().await.expect("stop text-search");
    eventually(
        "a degraded answer while text-search is down",
        PATIENCE,
        || async { (tally.degraded.load(Ordering::SeqCst) > 0).then_some(()) },
    )
    .await
    .expect("answers degrade to the vector leg");
    stack.restart_text().await.expect("restart text-search");
    let degraded_before = tally.degraded.load(Ordering::SeqCst);
    // Recovered: a fresh answer is hybrid again.
    eventually("a hybrid answer after the restart", PATIENCE, || {
        let mut gw = gw.clone();
        async move {
            let r = gw.search(search(0)).await.ok()?.into_inner();
            (!r.degraded).then_some(())
        }
    })
    .await
    .expect("hybrid again");
    wait_answers(&tally, tally.answered.load(Ordering::SeqCst) + 10).await;

    stop.store(true, Ordering::SeqCst);
    for l in loops {
        l.await.expect("search loop");
    }
    let errors = tally.errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "{} errors: {errors:?}", errors.len());
    assert!(degraded_before > 0);
    stack.shutdown().await.expect("shutdown");
}

/// Starts a second gateway of `stack` as its own process, searches from 6 clients
/// round-robin over both gateways until 20 are answered, ends the second one with `end`, waits
/// for 30 more answers and returns the tally and how many were answered when `end` returned.
/// The second gateway's text leg answers 300 ms late (a proxy in front of text-search), so
/// when it ends, searches are in flight there: a graceful stop finishes them, a kill (or a
/// stop without a grace period) cuts them.
async fn two_gateways_one_ended<E>(stack: &Stack, end: E) -> (Arc<Tally>, u64)
where
    E: AsyncFnOnce(&mut Process),
{
    let slow_text = SlowProxy::start(stack.text.grpc, Duration::from_millis(300))
        .await
        .expect("slow proxy");
    let mut config = stack.gateway_config.clone();
    config.text_search.endpoint = slow_text.endpoint();
    let mut second = Process::spawn("gateway-2", |l, s| braid_gateway::run(config, l, s))
        .await
        .expect("second gateway");
    let other = Channel::from_shared(second.endpoint())
        .expect("endpoint")
        .connect_lazy();
    eventually("the second gateway serving", PATIENCE, || {
        let mut other = GatewayClient::new(other.clone());
        async move { other.search(search(0)).await.ok() }
    })
    .await
    .expect("second gateway serving");
    let first = Channel::from_shared(stack.gateway.endpoint())
        .expect("endpoint")
        .connect_lazy();
    let gateways = vec![GatewayClient::new(first), GatewayClient::new(other)];

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let loops = search_loops(gateways, 6, stop.clone(), tally.clone());
    wait_answers(&tally, 20).await;
    end(&mut second).await;
    let after_end = tally.answered.load(Ordering::SeqCst);
    wait_answers(&tally, after_end + 30).await;
    stop.store(true, Ordering::SeqCst);
    for l in loops {
        l.await.expect("search loop");
    }
    (tally, after_end)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stopping_one_of_two_gateways_under_load_fails_no_request() {
    let stack = Stack::start().await.expect("stack");
    ingest_corpus(&mut stack.gateway_client().await.expect("client")).await;
    // Graceful stop of the second gateway under load (what SIGTERM triggers): in-flight
    // searches finish there, later ones are refused unstarted and go to the first.
    let (tally, after_stop) = two_gateways_one_ended(&stack, async |second: &mut Process| {
        second.stop().await.expect("graceful stop");
    })
    .await;
    let errors = tally.errors.lock().unwrap().clone();
    assert!(
        errors.is_empty(),
        "{} failed requests: {errors:?}",
        errors.len()
    );
    // The remaining gateway took every request after the stop.
    let (_, m) = http_get(stack.gateway.admin, "/metrics")
        .await
        .expect("metrics");
    let served = metric_sum(&m, "braid_grpc_requests_total", &["Search", "code=\"Ok\""]);
    assert!(
        served as u64 >= after_stop / 2 + 30,
        "{served} on the first gateway"
    );
    stack.shutdown().await.expect("shutdown");
}

/// The control for the test above: the same clients, the same retry rule, the second gateway
/// killed instead of stopped. Searches it was working on are cut and fail, so a graceful
/// stop that cut requests (or a retry rule that hid it) would fail the test above.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_one_of_two_gateways_under_load_fails_its_in_flight_requests() {
    let stack = Stack::start().await.expect("stack");
    ingest_corpus(&mut stack.gateway_client().await.expect("client")).await;
    let (tally, _) = two_gateways_one_ended(&stack, async |second: &mut Process| {
        second.kill().await;
    })
    .await;
    let errors = tally.errors.lock().unwrap().clone();
    eprintln!(
        "killed under load: {} failed requests: {errors:?}",
        errors.len()
    );
    assert!(
        !errors.is_empty(),
        "no request failed although a gateway was killed under load"
    );
    stack.shutdown().await.expect("shutdown");
}
