//! Hybrid search: validate, embed the query, query both legs concurrently (each under its
//! own deadline, behind its client's circuit breaker), fuse, and report what degraded.

use std::time::{Duration, Instant};

use braid_core::auth::{Access, Principal};
use braid_core::validate;
use braid_proto::tonic::{Request, Status};
use braid_proto::v1::{
    ChunkHit, EmbedRequest, InputType, LegSearchRequest, SearchHit, SearchMode, SearchRequest,
    SearchResponse,
};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};

use crate::clients::Clients;
use crate::config::SearchConfig;
use crate::error::GatewayError;
use crate::fusion::{self, Granularity, RrfParams};

pub struct SearchMetrics {
    leg_latency: HistogramVec,
    degraded: IntCounterVec,
}

impl SearchMetrics {
    pub fn new(metrics: &braid_core::metrics::Metrics) -> anyhow::Result<Self> {
        let leg_latency = HistogramVec::new(
            HistogramOpts::new("search_leg_duration_seconds", "latency of each search leg")
                .buckets(braid_core::metrics::latency_buckets()),
            &["leg", "outcome"],
        )?;
        let degraded = IntCounterVec::new(
            Opts::new("search_degraded_total", "searches answered without one leg"),
            &["leg"],
        )?;
        metrics.register(Box::new(leg_latency.clone()));
        metrics.register(Box::new(degraded.clone()));
        Ok(Self {
            leg_latency,
            degraded,
        })
    }
}

pub struct Searcher {
    pub clients: Clients,
    pub config: SearchConfig,
    pub metrics: SearchMetrics,
}

/// What happened to one leg.
enum Leg {
    Skipped,
    Answered(Vec<ChunkHit>),
    Failed(String),
}

struct Validated {
    tenant: String,
    /// What the caller may see, applied inside both legs.
    access: Access,
    top_k: u32,
    mode: SearchMode,
    params: RrfParams,
}

fn describe(status: &Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

impl Searcher {
    fn validate(&self, r: &SearchRequest, caller: &Principal) -> Result<Validated, GatewayError> {
        // The tenant comes from the caller's token; naming another is PERMISSION_DENIED.
        let tenant = caller.tenant_for(&r.tenant)?;
        validate::tenant(&tenant)?;
        if r.query.trim().is_empty() {
            return Err(GatewayError::invalid("query", "must not be empty"));
        }
        if r.query.len() > self.config.max_query_bytes {
            return Err(GatewayError::invalid(
                "query",
                format!(
                    "{} bytes, at most {}",
                    r.query.len(),
                    self.config.max_query_bytes
                ),
            ));
        }
        let top_k = if r.top_k == 0 {
            self.config.default_top_k
        } else {
            r.top_k
        };
        validate::top_k(top_k, self.config.max_top_k)?;
        validate::filter(r.filter.as_ref())?;
        let mode = match SearchMode::try_from(r.mode) {
            Ok(SearchMode::Unspecified) => SearchMode::Hybrid,
            Ok(mode) => mode,
            Err(_) => {
                return Err(GatewayError::invalid(
                    "mode",
                    format!("unknown mode {}", r.mode),
                ));
            }
        };
        let fusion = r.fusion.unwrap_or_default();
        let k = if fusion.rrf_k == 0 {
            self.config.rrf_k
        } else {
            fusion.rrf_k
        };
        if k > 10_000 {
            return Err(GatewayError::invalid(
                "fusion.rrf_k",
                format!("{k}, at most 10000"),
            ));
        }
        let weight = |field: &str, w: Option<f32>| -> Result<f32, GatewayError> {
            match w {
                None => Ok(1.0),
                Some(w) if w.is_finite() && (0.0..=100.0).contains(&w) => Ok(w),
                Some(w) => Err(GatewayError::invalid(
                    field,
                    format!("{w} is out of range 0..=100"),
                )),
            }
        };
        let params = RrfParams {
            k: k as f32,
            vector_weight: weight("fusion.vector_weight", fusion.vector_weight)?,
            text_weight: weight("fusion.text_weight", fusion.text_weight)?,
        };
        Ok(Validated {
            tenant,
            access: caller.access.clone(),
            top_k,
            mode,
            params,
        })
    }

    fn leg_request(&self, v: &Validated, r: &SearchRequest) -> LegSearchRequest {
        let candidates = (v.top_k.saturating_mul(3))
            .max(self.config.min_candidates)
            .min(self.config.max_candidates);
        LegSearchRequest {
            access: Some(v.access.to_filter()),
            tenant: v.tenant.clone(),
            top_k: candidates,
            filter: r.filter.clone(),
            query: String::new(),
            embedding: Vec::new(),
            model: String::new(),
        }
    }

    async fn vector_leg(
        &self,
        mut request: LegSearchRequest,
        query: String,
    ) -> Result<Vec<ChunkHit>, String> {
        let timeout = Duration::from_millis(self.config.vector_timeout_ms);
        let work = async {
            let mut embed = Request::new(EmbedRequest {
                texts: vec![query],
                input_type: InputType::Query as i32,
            });
            embed.set_timeout(timeout);
            let embedded = self
                .clients
                .embedding
                .clone()
                .embed(embed)
                .await
                .map_err(|s| format!("embedding {}", describe(&s)))?
                .into_inner();
            request.embedding = embedded
                .embeddings
                .into_iter()
                .next()
                .map(|v| v.values)
                .ok_or("embedding service returned no vector")?;
            // Compare like with like: only vectors of the model that embedded the query
            // (during a re-embedding the other model's vectors stay until purged).
            request.model = embedded.model;
            let mut search = Request::new(request);
            search.set_timeout(timeout);
            let hits = self
                .clients
                .vector
                .clone()
                .search(search)
                .await
                .map_err(|s| describe(&s))?
                .into_inner()
                .hits;
            Ok(hits)
        };
        tokio::time::timeout(timeout, work)
            .await
            .unwrap_or_else(|_| Err(format!("timed out after {} ms", timeout.as_millis())))
    }

    async fn text_leg(
        &self,
        mut request: LegSearchRequest,
        query: String,
    ) -> Result<Vec<ChunkHit>, String> {
        let timeout = Duration::from_millis(self.config.text_timeout_ms);
        request.query = query;
        let mut search = Request::new(request);
        search.set_timeout(timeout);
        let work = async {
            self.clients
                .text
                .clone()
                .search(search)
                .await
                .map(|r| r.into_inner().hits)
                .map_err(|s| describe(&s))
        };
        tokio::time::timeout(timeout, work)
            .await
            .unwrap_or_else(|_| Err(format!("timed out after {} ms", timeout.as_millis())))
    }

    async fn timed<F>(&self, leg: &str, enabled: bool, fut: F) -> Leg
    where
        F: std::future::Future<Output = Result<Vec<ChunkHit>, String>>,
    {
        if !enabled {
            return Leg::Skipped;
        }
        let started = Instant::now();
        let result = fut.await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.metrics
            .leg_latency
            .with_label_values(&[leg, outcome])
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(hits) => Leg::Answered(hits),
            Err(reason) => {
                tracing::warn!(leg, %reason, "search leg failed");
                Leg::Failed(reason)
            }
        }
    }

    pub async fn search(
        &self,
        r: SearchRequest,
        caller: &Principal,
    ) -> Result<SearchResponse, GatewayError> {
        let started = Instant::now();
        let v = self.validate(&r, caller)?;
        let base = self.leg_request(&v, &r);
        let use_vector = matches!(v.mode, SearchMode::Hybrid | SearchMode::Vector);
        let use_text = matches!(v.mode, SearchMode::Hybrid | SearchMode::Text);
        let (vector, text) = tokio::join!(
            self.timed(
                "vector",
                use_vector,
                self.vector_leg(base.clone(), r.query.clone())
            ),
            self.timed("text", use_text, self.text_leg(base, r.query.clone())),
        );
        let mut reasons = Vec::new();
        let mut answered = |name: &str, leg: &Leg| -> Option<Vec<ChunkHit>> {
            match leg {
                Leg::Answered(hits) => Some(hits.clone()),
                Leg::Failed(reason) => {
                    reasons.push(format!("{name} leg failed: {reason}"));
                    None
                }
                Leg::Skipped => None,
            }
        };
        let vector_hits = answered("vector", &vector);
        let text_hits = answered("text", &text);
        if vector_hits.is_none() && text_hits.is_none() {
            return Err(GatewayError::Unavailable(reasons.join("; ")));
        }
        for (name, leg) in [("vector", &vector), ("text", &text)] {
            if matches!(leg, Leg::Failed(_)) {
                self.metrics.degraded.with_label_values(&[name]).inc();
            }
        }
        let granularity = if r.chunk_level {
            Granularity::Chunk
        } else {
            Granularity::Document
        };
        let fused = fusion::fuse(
            vector_hits.as_deref(),
            text_hits.as_deref(),
            v.params,
            granularity,
        );
        let hits = fused
            .into_iter()
            .take(v.top_k as usize)
            .map(|f| SearchHit {
                document_id: f.hit.document_id,
                external_id: f.hit.external_id,
                title: f.hit.title,
                chunk_id: f.hit.chunk_id,
                text: f.hit.text,
                snippet: f.snippet,
                score: f.score,
                vector_score: f.vector.map(|l| l.score),
                vector_rank: f.vector.map(|l| l.rank),
                text_score: f.text.map(|l| l.score),
                text_rank: f.text.map(|l| l.rank),
            })
            .collect();
        Ok(SearchResponse {
            hits,
            degraded: !reasons.is_empty(),
            degraded_reasons: reasons,
            took_ms: started.elapsed().as_millis() as u32,
        })
    }
}
