//! Hybrid search: validate, embed the query, query both legs concurrently (each under its
//! own deadline, behind its client's circuit breaker), fuse, and report what degraded.
//!
//! Deadlines: each leg gets what is left of the request's deadline (the caller's
//! `grpc-timeout` capped by the server's request timeout), at most its own leg timeout. Under
//! overload a leg waits for one of `leg_concurrency` slots within the request's deadline; its
//! own timeout starts when it leaves the queue, so being queued does not degrade an answer.
//!
//! `validate` turns a request into a [`validate::Validated`] search; `legs` calls the two
//! legs; `cache_key` builds the query-cache key; `pages` cuts pages from ranking snapshots; `details` fetches text and snippets of deep
//! text hits; `types` checks a filter against the tenant's metadata types (learnt from the
//! ingest service); `why` says where one named document stood ("why not this document?");
//! this module puts them together.

mod cache_key;
mod details;
mod legs;
mod metrics;
mod pages;
mod passage;
mod types;
mod validate;
mod why;

use std::collections::HashMap;
use std::time::Instant;

use braid_core::auth::{Access, Principal};
use braid_proto::v1::{
    ChunkHit, LegSearchRequest, SearchHit, SearchMode, SearchRequest, SearchResponse, VectorPassage,
};

use crate::cache::QueryCache;
use crate::clients::Clients;
use crate::config::SearchConfig;
use crate::error::GatewayError;
use crate::explain;
use crate::fusion::{self, Granularity};
use crate::limits::cost::SearchWork;
use crate::paging::{PageTokens, Snapshots};

use legs::Leg;
pub use metrics::{LegLimits, SearchMetrics};
pub use types::TypeSource;
use validate::Validated;

/// A search answer being computed, boxed.
type Answer<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<SearchResponse, GatewayError>> + Send + 'a>,
>;

pub struct Searcher {
    pub clients: Clients,
    pub limits: LegLimits,
    pub config: SearchConfig,
    pub metrics: SearchMetrics,
    /// `None` when `query_cache.enabled` is false.
    pub cache: Option<QueryCache>,
    /// Signs and checks `page_token`s.
    pub pages: PageTokens,
    /// Each tenant's metadata types, from the ingest service (filters must fit them).
    pub types: TypeSource,
    /// The ranking snapshots paged walks are cut from.
    pub snapshots: Snapshots,
}

/// A validated search, ready to run: what it asks for is known before it runs (its cost).
pub struct Prepared(Validated);

impl Prepared {
    /// The work this search asks for (`limits::cost`).
    pub fn work(&self, r: &SearchRequest) -> SearchWork {
        let v = &self.0;
        SearchWork {
            vector_candidates: matches!(v.mode, SearchMode::Hybrid | SearchMode::Vector)
                .then_some(v.fusion.vector_candidates),
            text_candidates: matches!(v.mode, SearchMode::Hybrid | SearchMode::Text)
                .then_some(v.fusion.text_candidates),
            top_k: v.top_k,
            bypass_cache: r.bypass_cache,
        }
    }

    /// The search mode as a metric label: "hybrid", "vector" or "text".
    pub fn mode_label(&self) -> &'static str {
        match self.0.mode {
            SearchMode::Vector => "vector",
            SearchMode::Text => "text",
            SearchMode::Hybrid | SearchMode::Unspecified => "hybrid",
        }
    }
}

impl Searcher {
    /// Validates a search of `caller` (the tenant, every field, the page token).
    pub fn prepare(&self, r: &SearchRequest, caller: &Principal) -> Result<Prepared, GatewayError> {
        self.validate(r, caller).map(Prepared)
    }

    /// Searches as `caller`: in the caller's tenant, both legs filter on the caller's access,
    /// and cached answers are shared only between callers with the same access fingerprint.
    pub async fn search(
        &self,
        prepared: Prepared,
        r: SearchRequest,
        caller: &Principal,
    ) -> Result<SearchResponse, GatewayError> {
        let v = prepared.0;
        if let Some(at) = v.position {
            return self.later_page(&v, &r, caller, at).await;
        }
        self.check_filter_types(&v).await?;
        let full = match &v.why {
            // Computed afresh: the answer depends on one document, not worth a cache entry.
            Some(why) => {
                let target = self.why_target(why, &v.tenant, caller).await?;
                Box::pin(self.compute(&v, &r, &v.access, Some(&target))).await?
            }
            None => self.answering(&v, &r).await?,
        };
        Ok(self.first_page(full, &v, &r, caller).await)
    }

    /// [`Searcher::full_answer`] on the heap. Its state and that of `compute` are large in
    /// debug builds, and every place one is awaited reserves room for it in the stack frame
    /// of whatever polls it: boxed behind these two calls, a search's poll chain stays far
    /// below a 2 MiB thread stack (tests run whole stacks on one such thread).
    fn answering<'a>(&'a self, v: &'a Validated, r: &'a SearchRequest) -> Answer<'a> {
        Box::pin(self.full_answer(v, r))
    }

    /// [`Searcher::compute`] on the heap (see [`Searcher::answering`]).
    fn computing<'a>(
        &'a self,
        v: &'a Validated,
        r: &'a SearchRequest,
        access: &'a Access,
    ) -> Answer<'a> {
        Box::pin(self.compute(v, r, access, None))
    }

    /// The whole ranking (`top_k` deep), from the cache or the legs.
    async fn full_answer(
        &self,
        v: &Validated,
        r: &SearchRequest,
    ) -> Result<SearchResponse, GatewayError> {
        let started = Instant::now();
        let access = &v.access;
        let Some(cache) = &self.cache else {
            return self.computing(v, r, access).await;
        };
        if r.bypass_cache {
            cache.count("bypass");
            return self.computing(v, r, access).await;
        }
        let Some(key) = self.cache_key(cache, v, r, access).await else {
            cache.count("unavailable");
            return self.computing(v, r, access).await;
        };
        let mut response = cache
            .get_or_compute(key, self.computing(v, r, access))
            .await?;
        if response.cached {
            response.took_ms = started.elapsed().as_millis() as u32;
        }
        Ok(response)
    }

    /// Answers a validated search from the legs (no cache); with `why`, also where that
    /// document stood ([`why`]).
    async fn compute(
        &self,
        v: &Validated,
        r: &SearchRequest,
        access: &Access,
        why: Option<&why::Target>,
    ) -> Result<SearchResponse, GatewayError> {
        let started = Instant::now();
        let base = self.leg_request(v, r, access);
        let vector_request = LegSearchRequest {
            min_score: v.min_vector_score,
            ..base.clone()
        };
        let use_vector = matches!(v.mode, SearchMode::Hybrid | SearchMode::Vector);
        let use_text = matches!(v.mode, SearchMode::Hybrid | SearchMode::Text);
        let (vector, text) = tokio::join!(
            self.timed(
                "vector",
                use_vector,
                self.vector_leg(
                    LegSearchRequest {
                        top_k: v.fusion.vector_candidates,
                        ef_search: v.fusion.ef_search,
                        ..vector_request
                    },
                    v.query.clone()
                )
            ),
            self.timed(
                "text",
                use_text,
                self.text_leg(
                    LegSearchRequest {
                        // Text and snippets only for as many hits as the page holds; the
                        // fetch step gets them for deeper hits that survive fusion.
                        detail_top_k: v.top_k,
                        min_score: v.min_text_score,
                        chunk_level: r.chunk_level,
                        ..base
                    },
                    v.query.clone()
                )
            ),
        );
        let mut reasons = Vec::new();
        let mut answered = |name: &str, leg: Leg| -> Option<Vec<ChunkHit>> {
            match leg {
                Leg::Answered(hits) => Some(hits),
                Leg::Failed(reason) => {
                    reasons.push(format!("{name} leg failed: {reason}"));
                    None
                }
                Leg::Skipped => None,
            }
        };
        let (vector_failed, text_failed) = (
            matches!(vector, Leg::Failed(_)),
            matches!(text, Leg::Failed(_)),
        );
        // What each leg did, kept for `why` only (the hits are moved into fusion).
        let outcomes = why.map(|_| (copy_leg(&vector), copy_leg(&text)));
        let vector_hits = answered("vector", vector);
        let text_hits = answered("text", text);
        if vector_hits.is_none() && text_hits.is_none() {
            return Err(GatewayError::Unavailable(reasons.join("; ")));
        }
        for (name, failed) in [("vector", vector_failed), ("text", text_failed)] {
            if failed {
                self.metrics.degraded.get(&[name]).increment(1);
            }
        }
        let granularity = if r.chunk_level {
            Granularity::Chunk
        } else {
            Granularity::Document
        };
        let single_leg = vector_hits.is_none() || text_hits.is_none();
        let terms = passage::QueryTerms::new(&v.query);
        // Adaptive weighting: this query's weights, from both legs' answers and its length.
        let adapted = match (&v.fusion.adaptive, &vector_hits, &text_hits) {
            (Some(rule), Some(vector), Some(text)) => Some(fusion::adaptive::adapt(
                rule,
                &v.fusion.params,
                fusion::Features::of(vector, text, granularity, terms.count()),
            )),
            _ => None,
        };
        let params = adapted.as_ref().map_or(v.fusion.params, |a| a.params);
        // `why` reads the whole ranking; otherwise only the hits kept are copied out of the
        // legs' answers.
        let keep = if why.is_some() {
            usize::MAX
        } else {
            v.top_k as usize
        };
        let mut fused = fusion::fuse_top(
            vector_hits.as_deref(),
            text_hits.as_deref(),
            &params,
            granularity,
            keep,
        );
        let why = why.zip(outcomes.as_ref()).map(|(target, (vector, text))| {
            why::answer(
                target,
                v,
                [
                    why::LegOutcome {
                        name: "vector",
                        leg: vector,
                        candidates: v.fusion.vector_candidates,
                        min_score: v.min_vector_score,
                    },
                    why::LegOutcome {
                        name: "text",
                        leg: text,
                        candidates: v.fusion.text_candidates,
                        min_score: v.min_text_score,
                    },
                ],
                &fused,
                (&params, adapted.as_ref()),
                single_leg,
            )
        });
        fused.truncate(v.top_k as usize);
        if let Some(min) = v.min_score {
            fused.retain(|f| f.score >= min);
        }
        if let Some(text_hits) = &text_hits
            && let Err(reason) = self
                .fetch_details(&mut fused, text_hits, granularity, &v.tenant, &v.query)
                .await
        {
            tracing::warn!(%reason, "text leg fetch failed");
            reasons.push(format!("text leg fetch failed: {reason}"));
            self.metrics.degraded.get(&["text"]).increment(1);
        }
        // The vector leg's chunks by id: each hit's vector passage comes from the chunk the
        // vector leg matched, which need not be the hit's representative chunk.
        let vector_chunks: HashMap<&str, &ChunkHit> = vector_hits
            .iter()
            .flatten()
            .map(|h| (h.chunk_id.as_str(), h))
            .collect();
        let hits = fused
            .into_iter()
            .map(|f| SearchHit {
                vector_passage: f
                    .vector
                    .as_ref()
                    .and_then(|l| vector_chunks.get(l.chunk_id.as_str()))
                    .map(|chunk| vector_passage(chunk, &terms)),
                explanation: v
                    .explain
                    .then(|| explain::explanation(&f, &params, adapted.as_ref(), single_leg)),
                vector_score: f.vector.as_ref().map(|l| l.score),
                vector_rank: f.vector.as_ref().map(|l| l.rank),
                text_score: f.text.as_ref().map(|l| l.score),
                text_rank: f.text.as_ref().map(|l| l.rank),
                document_id: f.hit.document_id,
                external_id: f.hit.external_id,
                title: f.hit.title,
                chunk_id: f.hit.chunk_id,
                text: f.hit.text,
                snippet: f.snippet,
                score: f.score,
            })
            .collect();
        Ok(SearchResponse {
            hits,
            degraded: !reasons.is_empty(),
            degraded_reasons: reasons,
            took_ms: started.elapsed().as_millis() as u32,
            cached: false,
            next_page_token: String::new(),
            why,
        })
    }
}

/// A copy of a leg's outcome (its hits' ids and scores are what `why` reads).
fn copy_leg(leg: &Leg) -> Leg {
    match leg {
        Leg::Skipped => Leg::Skipped,
        Leg::Failed(reason) => Leg::Failed(reason.clone()),
        Leg::Answered(hits) => Leg::Answered(
            hits.iter()
                .map(|h| ChunkHit {
                    chunk_id: h.chunk_id.clone(),
                    document_id: h.document_id.clone(),
                    score: h.score,
                    ..Default::default()
                })
                .collect(),
        ),
    }
}

/// The best passage of the chunk the vector leg matched ([`passage`]).
fn vector_passage(chunk: &ChunkHit, terms: &passage::QueryTerms) -> VectorPassage {
    let p = passage::best_for(&chunk.text, terms);
    VectorPassage {
        chunk_id: chunk.chunk_id.clone(),
        ordinal: chunk.ordinal,
        chunk_text: chunk.text.clone(),
        start: p.start as u32,
        end: p.end as u32,
        highlighted: p.highlighted,
        matched_terms: p.matched_terms,
        score: chunk.score,
    }
}
