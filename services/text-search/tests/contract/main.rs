//! The backend contract suite: one set of cases run through the [`TextIndex`] and
//! [`IndexAdmin`] traits against every backend available here.
//!
//! - `tantivy` always runs (a fresh index directory per case);
//! - `elasticsearch-live` (the `per_tenant` layout) and `elasticsearch-live-shared` (the
//!   `shared` layout) run only when `BRAID_TEST_ELASTICSEARCH_URL` is set (and the crate
//!   is built with `--features elasticsearch`), against that cluster, each case under a fresh
//!   index prefix that is removed afterwards. Set but unreachable, it fails; unset, it is
//!   not run, and the summary says so (it never counts as passed).
//!
//! A custom runner (`harness = false`), so the set of instances is decided at run time and
//! printed: `cargo test -p braid-text-search --features elasticsearch --test contract
//! [case-name-filter]`.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;

use braid_text_search::{IndexAdmin, IndexConfig, SearchConfig, TextIndex};

mod cases;
mod multilingual;

use cases::*;

/// A backend through both traits.
#[derive(Clone)]
struct Backend {
    index: Arc<dyn TextIndex>,
    admin: Arc<dyn IndexAdmin>,
    /// Whether BM25 statistics are per tenant (Tantivy; Elasticsearch's `per_tenant` layout).
    tenant_statistics: bool,
}

type CaseFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type Case = (&'static str, fn(Backend) -> CaseFuture);

const CASES: &[Case] = &[
    ("replace_search_and_delete", |b| {
        Box::pin(replace_search_and_delete(b))
    }),
    ("user_text_is_never_query_syntax", |b| {
        Box::pin(user_text_is_never_query_syntax(b))
    }),
    ("every_filter_operator", |b| {
        Box::pin(every_filter_operator(b))
    }),
    ("acl_inside_the_query", |b| {
        Box::pin(acl_inside_the_query(b))
    }),
    ("documents_rank_on_their_whole_text", |b| {
        Box::pin(documents_rank_on_their_whole_text(b))
    }),
    ("detail_hits_and_fetch", |b| {
        Box::pin(detail_hits_and_fetch(b))
    }),
    ("rebuild_switches_and_keeps_live_writes", |b| {
        Box::pin(rebuild_switches_and_keeps_live_writes(b))
    }),
    ("a_live_delete_during_a_rebuild_is_not_undone", |b| {
        Box::pin(a_live_delete_during_a_rebuild_is_not_undone(b))
    }),
    ("concurrent_writes_are_each_searchable_on_return", |b| {
        Box::pin(concurrent_writes_are_each_searchable_on_return(b))
    }),
    ("another_tenants_writes_never_move_scores", |b| {
        Box::pin(another_tenants_writes_never_move_scores(b))
    }),
    ("each_language_is_analysed_and_filtered_on_its_own", |b| {
        Box::pin(multilingual::each_language_is_analysed_and_filtered_on_its_own(b))
    }),
];

/// A fresh Tantivy backend (and the directory to keep alive).
fn tantivy() -> (Backend, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = IndexConfig {
        dir: dir.path().to_path_buf(),
        writer_memory_mb: 20,
        ..IndexConfig::default()
    };
    let managed =
        Arc::new(braid_text_search::ManagedIndex::open(&config, &SearchConfig::default()).unwrap());
    (
        Backend {
            index: managed.clone(),
            admin: managed,
            tenant_statistics: true,
        },
        dir,
    )
}

#[cfg(feature = "elasticsearch")]
mod live {
    use super::*;
    use braid_text_search::{ElasticsearchConfig, EsIndex, Layout};

    pub fn config(url: &str, layout: Layout) -> ElasticsearchConfig {
        ElasticsearchConfig {
            urls: vec![url.to_string()],
            index_prefix: format!("braid-contract-{}", uuid::Uuid::new_v4().simple()),
            layout,
            replicas: 0,
            retries: 1,
            ..ElasticsearchConfig::default()
        }
    }

    /// A fresh Elasticsearch backend under its own prefix; fails loudly when unreachable.
    pub async fn backend(url: &str, layout: Layout) -> (Backend, Arc<EsIndex>) {
        let es = Arc::new(EsIndex::new(&config(url, layout), &SearchConfig::default()).unwrap());
        if let Err(e) = es.check().await {
            panic!(
                "BRAID_TEST_ELASTICSEARCH_URL={url} is set but Elasticsearch is unusable: {e:?}"
            );
        }
        (
            Backend {
                index: es.clone(),
                admin: es.clone(),
                tenant_statistics: layout == Layout::PerTenant,
            },
            es,
        )
    }
}

fn main() -> ExitCode {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let es_url = std::env::var("BRAID_TEST_ELASTICSEARCH_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let mut instances = vec!["tantivy"];
    match (&es_url, cfg!(feature = "elasticsearch")) {
        // Both layouts of the index (see `index.elasticsearch.layout`).
        (Some(_), true) => instances.extend(["elasticsearch-live", "elasticsearch-live-shared"]),
        (Some(_), false) => {
            eprintln!(
                "BRAID_TEST_ELASTICSEARCH_URL is set but this build has no `elasticsearch` \
                 feature: run with --features elasticsearch"
            );
            return ExitCode::FAILURE;
        }
        (None, _) => println!(
            "contract: instance elasticsearch-live NOT RUN (BRAID_TEST_ELASTICSEARCH_URL unset)"
        ),
    }
    let (mut passed, mut failed) = (0, 0);
    for instance in instances {
        for (name, case) in CASES {
            if filter.as_deref().is_some_and(|f| !name.contains(f)) {
                continue;
            }
            let url = es_url.clone().unwrap_or_default();
            let ok = runtime.block_on(async move {
                let task = tokio::spawn(async move {
                    if instance == "tantivy" {
                        let (backend, _dir) = tantivy();
                        case(backend).await;
                        return;
                    }
                    #[cfg(feature = "elasticsearch")]
                    {
                        let layout = if instance.ends_with("-shared") {
                            braid_text_search::Layout::Shared
                        } else {
                            braid_text_search::Layout::PerTenant
                        };
                        let (backend, es) = live::backend(&url, layout).await;
                        let result = tokio::spawn(case(backend)).await;
                        es.remove_from_cluster()
                            .await
                            .expect("removing the test indices");
                        if let Err(e) = result {
                            std::panic::resume_unwind(e.into_panic());
                        }
                    }
                    let _ = &url;
                });
                task.await.is_ok()
            });
            println!(
                "test contract::{instance}::{name} ... {}",
                if ok { "ok" } else { "FAILED" }
            );
            if ok {
                passed += 1;
            } else {
                failed += 1;
            }
        }
    }
    println!("contract: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
