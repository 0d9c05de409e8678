//! Text and snippets of page hits the text leg ranked deeper than its detailed hits.

use std::time::Duration;

use braid_proto::tonic::Request;
use braid_proto::v1::{ChunkHit, FetchChunksRequest};

use super::Searcher;
use super::legs::describe;
use crate::fusion::{self, Granularity};

impl Searcher {
    /// Fills text and snippet of page hits the text leg ranked deeper than its detailed hits
    /// (one `FetchChunks` call, only when some are missing).
    pub(super) async fn fetch_details(
        &self,
        page: &mut [fusion::FusedHit],
        text_hits: &[ChunkHit],
        granularity: Granularity,
        tenant: &str,
        query: &str,
    ) -> Result<(), String> {
        let key = |h: &ChunkHit| match granularity {
            Granularity::Document => h.document_id.clone(),
            Granularity::Chunk => h.chunk_id.clone(),
        };
        // The text leg's (best) chunk of each page hit it found without detail.
        let mut missing: Vec<(usize, String)> = Vec::new();
        for (i, f) in page.iter().enumerate() {
            if f.text.is_none() || !(f.snippet.is_empty() || f.hit.text.is_empty()) {
                continue;
            }
            let k = key(&f.hit);
            if let Some(t) = text_hits.iter().find(|t| key(t) == k)
                && t.text.is_empty()
            {
                missing.push((i, t.chunk_id.clone()));
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let timeout = Duration::from_millis(self.config.text_timeout_ms);
        let mut request = Request::new(FetchChunksRequest {
            tenant: tenant.to_string(),
            query: query.to_string(),
            chunk_ids: missing.iter().map(|(_, id)| id.clone()).collect(),
        });
        request.set_timeout(timeout);
        let fetched =
            tokio::time::timeout(timeout, self.clients.text.clone().fetch_chunks(request))
                .await
                .map_err(|_| format!("timed out after {} ms", timeout.as_millis()))?
                .map_err(|s| describe(&s))?
                .into_inner()
                .hits;
        for (i, chunk_id) in missing {
            let Some(found) = fetched.iter().find(|h| h.chunk_id == chunk_id) else {
                continue; // deleted since the search
            };
            let f = &mut page[i];
            f.snippet = found.snippet.clone();
            if f.hit.text.is_empty() && f.hit.chunk_id == found.chunk_id {
                f.hit.text = found.text.clone();
            }
        }
        Ok(())
    }
}
