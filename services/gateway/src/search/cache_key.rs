//! The query-cache key of a search: every parameter, the caller's access, the query model
//! and the tenant's index generation (learnt per search, within a short timeout).

use braid_core::auth::Access;
use braid_proto::tonic::Request;
use braid_proto::v1::{IndexGenerationRequest, ModelInfoRequest, SearchMode, SearchRequest};

use super::Searcher;
use super::legs::describe;
use super::validate::Validated;
use crate::cache::{self, QueryCache};

impl Searcher {
    /// The cache key of this search, or `None` when the tenant's index generation or the
    /// query model's identity cannot be learnt in time (the search then goes uncached).
    pub(super) async fn cache_key(
        &self,
        cache: &QueryCache,
        v: &Validated,
        r: &SearchRequest,
        access: &Access,
    ) -> Option<String> {
        let timeout = cache.generation_timeout;
        let generation = async {
            let mut request = Request::new(IndexGenerationRequest {
                tenant: v.tenant.clone(),
            });
            request.set_timeout(timeout);
            match tokio::time::timeout(
                timeout,
                self.clients.ingest.clone().index_generation(request),
            )
            .await
            {
                Ok(Ok(g)) => Some(g.into_inner().generation),
                Ok(Err(status)) => {
                    tracing::warn!(status = %describe(&status), "query cache: no index generation; answering uncached");
                    None
                }
                Err(_) => {
                    tracing::warn!("query cache: index generation timed out; answering uncached");
                    None
                }
            }
        };
        let model = async {
            if v.mode == SearchMode::Text {
                return Some("-".into());
            }
            if let Some(model) = cache.model() {
                return Some(model);
            }
            let mut request = Request::new(ModelInfoRequest {});
            request.set_timeout(timeout);
            let info =
                tokio::time::timeout(timeout, self.clients.embedding.clone().model_info(request))
                    .await
                    .ok()?
                    .ok()?
                    .into_inner();
            cache.observe_model(&info.model);
            cache.model()
        };
        let (generation, model) = tokio::join!(generation, model);
        let (generation, model) = (generation?, model?);
        Some(cache::key(&cache::KeyParts {
            tenant: &v.tenant,
            access,
            query: &r.query,
            mode: v.mode as i32,
            top_k: v.top_k,
            rrf_k: v.fusion.params.k,
            vector_weight: v.fusion.params.vector_weight,
            text_weight: v.fusion.params.text_weight,
            fusion: &v.fusion.cache_part(),
            explain: v.explain,
            filter: r.filter.as_ref(),
            chunk_level: r.chunk_level,
            controls: &v.controls(),
            model: &model,
            generation,
        }))
    }
}
