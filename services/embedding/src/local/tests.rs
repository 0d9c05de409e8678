//! The local provider on the real model (`make setup` fetches it; `BRAID_TEST_MODEL_DIR` and
//! `BRAID_TEST_ONNX_RUNTIME` point elsewhere): which graph answers queries and documents,
//! and at which OS priority the model threads run.

use std::path::PathBuf;
use std::sync::Arc;

use super::*;
use crate::cache::{CacheConfig, EmbeddingCache};
use crate::config::LimitsConfig;
use crate::embedder::{Embedder, InputKind, Provider};

fn from_env(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(default))
}

/// The test defaults: the real model, one document and one query model thread.
fn model_config() -> ModelConfig {
    ModelConfig {
        dir: from_env(
            "BRAID_TEST_MODEL_DIR",
            "../../.braid/models/all-MiniLM-L6-v2",
        ),
        onnx_runtime: from_env(
            "BRAID_TEST_ONNX_RUNTIME",
            "../../.braid/lib/libonnxruntime.so",
        ),
        workers: 1,
        threads: 1,
        query_workers: 1,
        query_threads: 1,
        ..ModelConfig::default()
    }
}

fn metrics(name: &str) -> batcher::BatcherMetrics {
    batcher::BatcherMetrics::new(&braid_core::metrics::Metrics::new(name))
}

/// One text through a model copy of its own (the reference for what a graph returns).
fn direct(config: &ModelConfig, quantized: bool, text: &str) -> Vec<f32> {
    let mut model = Model::load(
        &config.dir,
        ModelOptions {
            max_tokens: config.max_tokens,
            engine: config.engine,
            gelu: config.gelu,
            onnx_runtime: config.onnx_runtime.clone(),
            threads: 1,
            spin: false,
            quantized,
        },
    )
    .expect("the model (run `make setup`)");
    model.embed(&[text]).expect("embed").remove(0)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

const TEXT: &str = "Vitamin D deficiency is associated with an increased risk of fractures.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn int8_queries_leave_documents_and_the_model_identity_at_fp32() {
    let config = ModelConfig {
        query_quantized: true,
        ..model_config()
    };
    let local = start(&config, 16, metrics("int8q")).await.expect("start");
    assert!(
        !local.model_id.contains("int8"),
        "queries must stay comparable with fp32 documents: {}",
        local.model_id
    );
    let fp32 = direct(&config, false, TEXT);
    let int8 = direct(&config, true, TEXT);
    assert!(
        max_diff(&fp32, &int8) > 1e-3,
        "the two graphs differ, or this test proves nothing"
    );
    let embedder = Embedder {
        provider: Provider::Local(local.batcher),
        cache: EmbeddingCache::new(
            &CacheConfig::default(),
            &local.model_id,
            &braid_core::metrics::Metrics::new("int8q_cache"),
        )
        .expect("cache"),
        limits: LimitsConfig::default(),
        model: local.model_id.as_str().into(),
        dimensions: local.dimensions,
        query_prefix: Arc::from(""),
        document_prefix: Arc::from(""),
        query_cache_variant: config.query_cache_variant().map(Into::into),
    };
    let embed = |kind| {
        let embedder = embedder.clone();
        async move {
            embedder
                .embed(vec![TEXT.to_string()], kind)
                .await
                .expect("embed")
                .vectors
                .remove(0)
        }
    };
    // The query first, so its vector is in the cache when the same text comes as a document.
    let query = embed(InputKind::Query).await;
    assert!(max_diff(&query, &int8) < 1e-5, "queries run the int8 graph");
    let document = embed(InputKind::Document).await;
    assert!(
        max_diff(&document, &fp32) < 1e-5,
        "documents run fp32 and never get a cached int8 query vector"
    );
    // And the other way round: a cached document vector does not answer the query.
    let again = embed(InputKind::Query).await;
    assert!(max_diff(&again, &int8) < 1e-5);
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_model_threads_run_at_a_lower_priority_than_queries() {
    use braid_core::priority::{all_tids, current_tid, nice_of};
    // 7: a nice increment no other test in this binary uses, so the threads counted below
    // are this test's. Two threads per document pass: ONNX Runtime adds one of its own.
    let config = ModelConfig {
        document_nice: 7,
        threads: 2,
        ..model_config()
    };
    let base = nice_of(current_tid()).expect("own nice value");
    let lowered = (base + 7).min(19);
    let local = start(&config, 16, metrics("nice")).await.expect("start");
    // One request per lane: both threads have started (and set their priority) once answered.
    for kind in [InputKind::Query, InputKind::Document] {
        local
            .batcher
            .embed(vec![TEXT.to_string()], kind)
            .await
            .expect("embed");
    }
    let threads = local.batcher.thread_ids();
    assert_eq!(threads.len(), 2, "{threads:?}");
    for (pool, tid) in threads {
        let want = match pool {
            batcher::Pool::Document => lowered,
            batcher::Pool::Query => base,
        };
        assert_eq!(nice_of(tid), Some(want), "{pool:?} model thread {tid}");
    }
    // ONNX Runtime's intra-op thread of the document session inherited the priority too.
    let at_lowered = all_tids()
        .into_iter()
        .filter(|&t| nice_of(t) == Some(lowered))
        .count();
    assert!(
        at_lowered >= 2,
        "{at_lowered} thread(s) at nice {lowered}: the document model thread and ONNX Runtime's"
    );
}
