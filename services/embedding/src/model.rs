//! all-MiniLM-L6-v2 (a 6-layer BERT) on CPU: WordPiece tokenisation with truncation, the
//! encoder, attention-masked mean pooling and L2 normalisation — the same pipeline as
//! sentence-transformers' `Transformer -> Pooling(mean) -> Normalize`.
//!
//! Two engines run the encoder: ONNX Runtime (default; the runtime library comes from the
//! `onnxruntime` PyPI wheel and the graph from `deploy/scripts/export_onnx.py`, both fetched by
//! the set-up script) and candle (pure Rust, no native library; about 3x slower on CPU).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config, HiddenAct};
use sha2::{Digest, Sha256};
use tokenizers::{Tokenizer, TruncationParams};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid model config: {0}")]
    Config(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("inference: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("onnx runtime: {0}")]
    Onnx(String),
}

impl From<ort::Error> for ModelError {
    fn from(e: ort::Error) -> Self {
        Self::Onnx(e.to_string())
    }
}

/// Appended to the revision of the int8 graph: its vectors differ from fp32's, and from the
/// per-batch (per-tensor) int8 scheme earlier versions wrote, so it is its own model identity.
pub const INT8_REVISION_SUFFIX: &str = "-int8-per-token";

/// Which engine runs the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// ONNX Runtime, loaded at run time from `ModelOptions::onnx_runtime`.
    #[default]
    Onnx,
    /// candle's pure-Rust BERT.
    Candle,
}

/// How the encoder evaluates GELU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Gelu {
    /// Whatever `config.json` says (exact, erf-based, for all-MiniLM-L6-v2).
    Exact,
    /// The tanh approximation: several times cheaper than candle's scalar `erf`, and within
    /// cosine 0.9999 of the exact model on the reference fixture.
    #[default]
    Tanh,
}

/// Load-time choices.
#[derive(Debug, Clone)]
pub struct ModelOptions {
    /// Tokens per input; longer inputs are truncated.
    pub max_tokens: usize,
    pub engine: Engine,
    /// GELU evaluation for the candle engine (ONNX Runtime always runs the exact graph).
    pub gelu: Gelu,
    /// The ONNX Runtime shared library (`libonnxruntime.so`).
    pub onnx_runtime: PathBuf,
    /// Threads ONNX Runtime uses inside one forward pass (0 = one per core).
    pub threads: usize,
    /// Whether ONNX Runtime's threads spin while waiting for work (with `threads` > 1). Off by
    /// default: measured on the shared 2-core machine, spinning doubled the CPU per query and
    /// slowed batches (BENCHMARKS.md, "Embedding engine settings").
    pub spin: bool,
    /// ONNX Runtime only: run `model.int8.onnx` (`deploy/scripts/quantize_onnx.py`: 7-bit
    /// weights, activations quantised per token, so a text's vector depends on that text
    /// alone and not on the CPU's int8 kernels) instead of the fp32 `model.onnx`.
    pub quantized: bool,
}

impl Default for ModelOptions {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            engine: Engine::default(),
            gelu: Gelu::default(),
            onnx_runtime: PathBuf::from(".braid/lib/libonnxruntime.so"),
            threads: 0,
            spin: false,
            quantized: false,
        }
    }
}

enum Encoder {
    Candle {
        bert: Box<BertModel>,
        device: Device,
    },
    Onnx(ort::session::Session),
}

/// ONNX Runtime allows one environment per process, created from the first library loaded.
static ORT_ENV: OnceLock<Result<(PathBuf, ort::environment::Environment), String>> =
    OnceLock::new();

fn ort_environment(library: &Path) -> Result<ort::environment::Environment, ModelError> {
    let loaded = ORT_ENV.get_or_init(|| {
        let env = ort::init_from(library)
            .map_err(|e| e.to_string())?
            .with_name("braid-embedding")
            .build()
            .map_err(|e| e.to_string())?;
        Ok((library.to_path_buf(), env))
    });
    match loaded {
        Ok((path, env)) if path == library => Ok(env.clone()),
        Ok((path, _)) => Err(ModelError::Onnx(format!(
            "ONNX Runtime already loaded from {} in this process, cannot also load {}",
            path.display(),
            library.display()
        ))),
        Err(e) => Err(ModelError::Onnx(format!(
            "cannot load ONNX Runtime from {}: {e} (run `make setup`)",
            library.display()
        ))),
    }
}

/// An ONNX Runtime session with the options chosen by measurement (BENCHMARKS.md, "Embedding
/// engine settings").
fn onnx_session(graph: &Path, options: &ModelOptions) -> Result<ort::session::Session, ModelError> {
    use ort::session::builder::GraphOptimizationLevel;
    let env = ort_environment(&options.onnx_runtime)?;
    let threads = match options.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let session = ort::session::Session::builder(&env)?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(ort::Error::from)?
        .with_intra_threads(threads)
        .map_err(ort::Error::from)?
        .with_inter_threads(1)
        .map_err(ort::Error::from)?
        .with_intra_op_spinning(options.spin)
        .map_err(ort::Error::from)?
        .commit_from_file(graph)?;
    Ok(session)
}

/// A batch of tokenised texts, row-major `rows x cols`.
pub struct TokenBatch {
    pub rows: usize,
    /// The longest text's length in tokens (with [CLS] and [SEP]).
    pub cols: usize,
    pub ids: Vec<i64>,
    pub mask: Vec<i64>,
}

/// A loaded model. Not `Sync`-shared on purpose: one thread owns it (see `batcher`).
pub struct Model {
    encoder: Encoder,
    tokenizer: Tokenizer,
    dimensions: usize,
    revision: String,
}

fn read(path: &Path) -> Result<Vec<u8>, ModelError> {
    std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.display().to_string(),
        source,
    })
}

impl Model {
    /// Loads the model from `dir`; the revision is the first 12 hex digits of the weights'
    /// SHA-256, so a changed model file is a changed model identity.
    pub fn load(dir: &Path, options: ModelOptions) -> Result<Self, ModelError> {
        let mut config: Config = serde_json::from_slice(&read(&dir.join("config.json"))?)
            .map_err(|e| ModelError::Config(e.to_string()))?;
        if options.gelu == Gelu::Tanh && config.hidden_act == HiddenAct::Gelu {
            config.hidden_act = HiddenAct::GeluApproximate;
        }
        let mut tokenizer = Tokenizer::from_bytes(read(&dir.join("tokenizer.json"))?)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: options.max_tokens,
                ..Default::default()
            }))
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        // tokenizer.json pads every text to 128 tokens: `tokenize` pads per batch instead.
        tokenizer.with_padding(None);
        let weights = read(&dir.join("model.safetensors"))?;
        let mut revision = hex::encode(&Sha256::digest(&weights)[..6]);
        let encoder = match options.engine {
            Engine::Candle => {
                if options.quantized {
                    return Err(ModelError::Config(
                        "the quantised model runs on ONNX Runtime only (model.engine = \"onnx\")"
                            .into(),
                    ));
                }
                let device = Device::Cpu;
                let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)?;
                Encoder::Candle {
                    bert: Box::new(BertModel::load(vb, &config)?),
                    device,
                }
            }
            Engine::Onnx => {
                let (file, script) = if options.quantized {
                    // Other vectors than fp32's: another model identity.
                    revision.push_str(INT8_REVISION_SUFFIX);
                    ("model.int8.onnx", "quantize_onnx.py")
                } else {
                    ("model.onnx", "export_onnx.py")
                };
                let graph = dir.join(file);
                if !graph.is_file() {
                    return Err(ModelError::Onnx(format!(
                        "{} is missing (deploy/scripts/{script} writes it; run `make setup`)",
                        graph.display()
                    )));
                }
                Encoder::Onnx(onnx_session(&graph, &options)?)
            }
        };
        Ok(Self {
            encoder,
            tokenizer,
            dimensions: config.hidden_size,
            revision,
        })
    }

    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// Token ids and attention mask of `texts` (truncated to the window), padded to the
    /// longest text of this batch only ([PAD] = 0, masked out).
    pub fn tokenize(&self, texts: &[&str]) -> Result<TokenBatch, ModelError> {
        // One text at a time on this thread: `encode_batch` would hand the texts to rayon's
        // pool (a thread per core, spinning between batches) for microseconds of work each.
        let encodings = texts
            .iter()
            .map(|t| self.tokenizer.encode_fast(*t, true))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        let rows = encodings.len();
        let cols = encodings
            .iter()
            .map(|e| e.get_ids().len())
            .max()
            .unwrap_or(0);
        let mut ids = vec![0i64; rows * cols];
        let mut mask = vec![0i64; rows * cols];
        for (row, enc) in encodings.iter().enumerate() {
            let at = row * cols;
            for (i, (&id, &m)) in enc
                .get_ids()
                .iter()
                .zip(enc.get_attention_mask())
                .enumerate()
            {
                ids[at + i] = i64::from(id);
                mask[at + i] = i64::from(m);
            }
        }
        Ok(TokenBatch {
            rows,
            cols,
            ids,
            mask,
        })
    }

    /// L2-normalised sentence embeddings, one per text, in order.
    pub fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let TokenBatch {
            rows,
            cols,
            ids,
            mask,
        } = self.tokenize(texts)?;
        match &mut self.encoder {
            Encoder::Candle { bert, device } => candle_forward(bert, device, ids, mask, rows, cols),
            Encoder::Onnx(session) => {
                use ort::value::TensorRef;
                let outputs = session.run(ort::inputs![
                    "input_ids" => TensorRef::from_array_view(([rows, cols], &*ids))?,
                    "attention_mask" => TensorRef::from_array_view(([rows, cols], &*mask))?,
                ])?;
                let (_, data) = outputs["sentence_embedding"].try_extract_tensor::<f32>()?;
                if data.len() != rows * self.dimensions {
                    return Err(ModelError::Onnx(format!(
                        "graph returned {} values for {rows} x {} dimensions",
                        data.len(),
                        self.dimensions
                    )));
                }
                Ok(data.chunks(self.dimensions).map(<[f32]>::to_vec).collect())
            }
        }
    }
}

fn candle_forward(
    bert: &BertModel,
    device: &Device,
    ids: Vec<i64>,
    mask: Vec<i64>,
    rows: usize,
    cols: usize,
) -> Result<Vec<Vec<f32>>, ModelError> {
    let ids = Tensor::from_vec(ids, (rows, cols), device)?;
    let mask = Tensor::from_vec(mask, (rows, cols), device)?;
    let token_types = ids.zeros_like()?;
    let hidden = bert.forward(&ids, &token_types, Some(&mask))?;
    // Mean over real tokens only.
    let mask_f = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&mask_f)?.sum(1)?;
    let counts = mask_f.sum(1)?.clamp(1e-9, f64::MAX)?;
    let mean = summed.broadcast_div(&counts)?;
    let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    let normalised = mean.broadcast_div(&norms)?;
    Ok(normalised.to_vec2::<f32>()?)
}
