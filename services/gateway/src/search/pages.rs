//! Paged walks over ranking snapshots ([`crate::paging`]): the first page stores the whole
//! ranking it was cut from; every later page is cut from that snapshot, in its order, after
//! checking that the caller may still read each of the page's documents.
//!
//! **Why ingest decides what is still readable.** The ingest service's document table is
//! where a delete or an ACL change is committed first: `DeleteDocument` marks the row
//! `deleting` in the same transaction that answers the client, and a re-ingest with another
//! ACL replaces the row's ACL at once, while both legs hear of either later, through the
//! outbox. A check against a leg (its `FetchChunks` takes no caller access either) would
//! still show a document the client has just deleted or hidden. So each hit of a later page
//! is looked up with `GetDocument` *as the caller* (the ingest service applies the tenant
//! and the caller's current access: missing, another tenant's, or hidden all answer
//! NOT_FOUND), and a document being deleted counts as gone. The lookups of one page run
//! concurrently ([`CHECKS_AT_ONCE`] at a time); when they cannot be made (ingest down or
//! slow) the page is refused (UNAVAILABLE), never shown unchecked.
//!
//! **Pages stay full.** A hit left out is replaced by the snapshot's next hits (checked the
//! same way) until the page is full or the snapshot ends; at most [`CHECKED_PER_SLOT`] hits
//! per page slot are looked at in one call, after which the page is answered shorter and the
//! token goes on from there.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use braid_core::auth::Principal;
use braid_proto::tonic::{Code, Request};
use braid_proto::v1::{DocumentStatus, GetDocumentRequest, SearchRequest, SearchResponse};
use futures::stream::{self, StreamExt, TryStreamExt};

use super::Searcher;
use super::legs::describe;
use super::validate::Validated;
use crate::error::GatewayError;
use crate::paging::{self, Position};

/// Document lookups in flight at once for one page.
const CHECKS_AT_ONCE: usize = 16;

/// Most snapshot hits looked at per page slot in one call.
const CHECKED_PER_SLOT: usize = 4;

impl Searcher {
    /// The first page of `full` (the whole ranking), storing `full` as the walk's snapshot
    /// when there is a next page. `page_size` 0 = no paging: `full` as it is.
    pub(super) async fn first_page(
        &self,
        full: SearchResponse,
        v: &Validated,
        r: &SearchRequest,
        caller: &Principal,
    ) -> SearchResponse {
        if v.page_size == 0 || full.hits.len() <= v.page_size as usize {
            return paging::cut(full, 0, v.page_size, |_| String::new());
        }
        let snapshot = paging::new_snapshot_id();
        self.snapshots.store(snapshot, &full).await;
        paging::cut(full, 0, v.page_size, |offset| {
            self.pages.encode(
                self.fingerprint(v, r, caller),
                Position { snapshot, offset },
            )
        })
    }

    /// The page of the walk at `at`, from its snapshot.
    pub(super) async fn later_page(
        &self,
        v: &Validated,
        r: &SearchRequest,
        caller: &Principal,
        at: Position,
    ) -> Result<SearchResponse, GatewayError> {
        let started = Instant::now();
        let Some(snapshot) = self.snapshots.load(&at.snapshot).await? else {
            return Err(GatewayError::Expired {
                field: "page_token".into(),
                message: format!(
                    "the ranking snapshot of this walk expired (kept {} ms after the first \
                     page, search.page_snapshot_ttl_ms); start again from the first page",
                    self.snapshots.ttl().as_millis()
                ),
            });
        };
        let hits = &snapshot.hits;
        let page_size = v.page_size as usize;
        let mut next = (at.offset as usize).min(hits.len());
        let last = next
            .saturating_add(page_size.saturating_mul(CHECKED_PER_SLOT))
            .min(hits.len());
        let mut page = Vec::with_capacity(page_size);
        let mut readable: HashMap<String, bool> = HashMap::new();
        let mut dropped = 0;
        while page.len() < page_size && next < last {
            let end = (next + page_size - page.len()).min(last);
            let batch = &hits[next..end];
            let mut unknown: Vec<String> = Vec::new();
            for h in batch {
                if !readable.contains_key(&h.document_id) && !unknown.contains(&h.document_id) {
                    unknown.push(h.document_id.clone());
                }
            }
            readable.extend(self.readable(&v.tenant, caller, unknown).await?);
            for h in batch {
                if readable.get(&h.document_id).copied().unwrap_or(false) {
                    page.push(h.clone());
                } else {
                    dropped += 1;
                }
            }
            next = end;
        }
        self.snapshots.count_dropped(dropped);
        let next_page_token = if next < hits.len() {
            self.pages.encode(
                self.fingerprint(v, r, caller),
                Position {
                    snapshot: at.snapshot,
                    offset: next as u32,
                },
            )
        } else {
            String::new()
        };
        Ok(SearchResponse {
            hits: page,
            degraded: snapshot.degraded,
            degraded_reasons: snapshot.degraded_reasons.clone(),
            took_ms: started.elapsed().as_millis() as u32,
            cached: true,
            next_page_token,
            why: snapshot.why.clone(),
        })
    }

    /// Whether `caller` may read each of `documents` now: looked up in the ingest service as
    /// the caller (module doc).
    async fn readable(
        &self,
        tenant: &str,
        caller: &Principal,
        documents: Vec<String>,
    ) -> Result<Vec<(String, bool)>, GatewayError> {
        let timeout = Duration::from_millis(self.config.page_check_timeout_ms);
        let unchecked = |why: String| {
            GatewayError::Unavailable(format!(
                "the documents of this page could not be checked (the ingest service {why}); \
                 try again"
            ))
        };
        stream::iter(documents)
            .map(|document_id| async move {
                let mut request = Request::new(GetDocumentRequest {
                    tenant: tenant.to_string(),
                    document_id: document_id.clone(),
                    external_id: String::new(),
                });
                caller.attach(request.metadata_mut());
                request.set_timeout(timeout);
                let mut ingest = self.clients.ingest.clone();
                match tokio::time::timeout(timeout, ingest.get_document(request)).await {
                    Ok(Ok(d)) => {
                        let live = d.into_inner().status != DocumentStatus::Deleting as i32;
                        Ok((document_id, live))
                    }
                    Ok(Err(status)) if status.code() == Code::NotFound => Ok((document_id, false)),
                    Ok(Err(status)) => Err(unchecked(describe(&status))),
                    Err(_) => Err(unchecked(format!(
                        "did not answer within {} ms",
                        timeout.as_millis()
                    ))),
                }
            })
            .buffer_unordered(CHECKS_AT_ONCE)
            .try_collect()
            .await
    }
}
