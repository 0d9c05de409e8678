//! OpenAI-compatible `/v1/embeddings`, both ways.
//!
//! **Client** ([`OpenAiProvider`]): embeds through any server speaking the OpenAI embeddings
//! API (OpenAI, Ollama, vLLM, TEI, another Braid). Request and token rate limits (token
//! buckets), a per-request timeout, retries with exponential backoff + full jitter that honour
//! `Retry-After`, and a circuit breaker (open after N consecutive failures, half-open after a
//! pause, closed after M successes) whose state is exported as a metric and a health detail.
//!
//! **Server** ([`routes`]): the same endpoint on the embedding service's admin port, so other
//! tools can embed with Braid. With `openai_server.fault_injection` on, `POST /v1/faults`
//! makes the next N requests fail with a chosen status (and `Retry-After`) or arrive late —
//! the fault layer the provider's tests drive.

mod client;
mod server;

pub use client::{OpenAiConfig, OpenAiProvider};
pub use server::{EmbedFn, Fault, OpenAiServerConfig, routes};
