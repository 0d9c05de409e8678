//! The in-process model provider: loads one model copy per model thread and starts the
//! batcher. Document copies load on a thread already at the documents' lowered priority
//! (`model.document_nice`), so ONNX Runtime's intra-op threads, created with the session,
//! inherit it; query copies load the int8 graph when `model.query_quantized` is set, while
//! the model identity stays the document graph's (no re-embed).

use anyhow::Context;

use crate::batcher::{self, Batcher, DocumentThreads};
use crate::config::ModelConfig;
use crate::model::{self, Model, ModelOptions};

/// The started provider and what it reports with every vector.
pub struct Local {
    pub batcher: Batcher,
    /// `name@revision` of the document graph (queries are comparable with it).
    pub model_id: String,
    pub dimensions: usize,
}

/// Loads the model copies (off the async runtime) and starts their threads.
pub async fn start(
    config: &ModelConfig,
    queue_capacity: usize,
    metrics: batcher::BatcherMetrics,
) -> anyhow::Result<Local> {
    let model_config = config.clone();
    let (workers, threads) = model_config.parallelism();
    // 0 stays 0: the model then uses one thread per core.
    let query_threads = model_config.query_threads;
    let query_workers = model_config.query_workers;
    let lone_threads = model_config.lone_pass_threads();
    let documents = DocumentThreads {
        nice: config.effective_document_nice(),
        take_queries: config.document_threads_take_queries(),
    };
    let (models, lone_model, query_models) = tokio::task::spawn_blocking(move || {
        // No spinning: on a shared 2-core machine, threads spinning for work doubled
        // the CPU per query and slowed batches (BENCHMARKS.md, engine settings).
        let load = |threads: usize, quantized: bool| {
            Model::load(
                &model_config.dir,
                ModelOptions {
                    max_tokens: model_config.max_tokens,
                    engine: model_config.engine,
                    gelu: model_config.gelu,
                    onnx_runtime: model_config.onnx_runtime.clone(),
                    threads,
                    spin: false,
                    quantized,
                },
            )
        };
        // The lone-pass copy runs document passes: loaded on the lowered thread too, so its
        // ONNX Runtime threads start lowered.
        type Documents = (Vec<Model>, Option<Model>);
        let (models, lone_model) =
            std::thread::scope(|scope| -> Result<Documents, model::ModelError> {
                std::thread::Builder::new()
                    .name("braid-embed-load".into())
                    .spawn_scoped(scope, || {
                        braid_core::priority::lower_or_warn(
                            documents.nice,
                            "braid-embed-load",
                            "model.document_nice",
                        );
                        let models = (0..workers)
                            .map(|_| load(threads, model_config.quantized))
                            .collect::<Result<Vec<_>, _>>()?;
                        let lone = lone_threads
                            .map(|t| load(t, model_config.quantized))
                            .transpose()?;
                        Ok((models, lone))
                    })
                    .map_err(|e| model::ModelError::Config(format!("loader thread: {e}")))?
                    .join()
                    .map_err(|_| model::ModelError::Config("the model loader panicked".into()))?
            })?;
        let query_quantized = model_config.quantized || model_config.query_quantized;
        let query_models = (0..query_workers)
            .map(|_| load(query_threads, query_quantized))
            .collect::<Result<Vec<_>, _>>()?;
        Ok::<_, model::ModelError>((models, lone_model, query_models))
    })
    .await?
    .with_context(|| format!("loading the model from {}", config.dir.display()))?;
    let model = models
        .first()
        .context("model.workers resolved to no model thread")?;
    // The revision names the weights and, for the int8 document graph, the quantisation.
    let model_id = format!("{}@{}", config.name, model.revision());
    let dimensions = model.dimensions();
    tracing::info!(
        model = %model_id,
        dimensions,
        engine = ?config.engine,
        workers,
        threads,
        query_workers,
        query_threads,
        ?lone_threads,
        query_quantized = config.query_quantized,
        document_nice = documents.nice,
        "model loaded"
    );
    let batcher = Batcher::start(
        models,
        query_models,
        lone_model,
        documents,
        batcher::BatchLimits {
            max_batch: config.max_batch,
            max_batch_tokens: config.max_batch_tokens,
            max_tokens: config.max_tokens,
        },
        queue_capacity,
        metrics,
    );
    Ok(Local {
        batcher,
        model_id,
        dimensions,
    })
}

#[cfg(test)]
mod tests;
