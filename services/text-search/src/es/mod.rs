//! Elasticsearch implementation of [`TextIndex`] and [`IndexAdmin`] (cargo feature
//! `elasticsearch`).
//!
//! Layout in the cluster (all names from `index.elasticsearch.index_prefix`, see
//! [`request::Names`]): an index template `<prefix>` ([`mapping::template`]) for every
//! concrete index `<prefix>-<id>`; the alias `<prefix>` names the one that serves, and its id
//! is what `RebuildStatus` reports (ingest records it, so a lost and recreated index is a
//! fault, as with Tantivy). A rebuild fills a new index under the alias `<prefix>-rebuild`
//! with `bulk_refresh_interval` (no refreshes while loading), then restores
//! `refresh_interval`, refreshes, and switches the alias atomically. The rebuild's state
//! lives in the cluster (the rebuild alias), so any replica of text-search can serve the
//! rebuild RPCs and every replica's live writes also go into the rebuild.
//!
//! Ranking is the Tantivy leg's (see [`mapping`]): documents by BM25 over their whole text,
//! each shown by its best chunk ([`query::best_chunks`], one `collapse`d search), or chunks
//! on their own with `chunk_level`.
//!
//! Languages as on the Tantivy side: each chunk's language comes from
//! [`crate::language`] (the metadata's `lang`, else detection), its text goes into that
//! language's fields only, analysed by the engine's analyzer for the language (see
//! [`mapping`]: English is Braid's own, unchanged), so BM25 statistics are per language; a
//! query runs against the fields of the languages the tenant has ([`query`] says why), and the `lang`
//! filter is a metadata `term`. An index of an older entry format, e.g. format 2 (every text
//! in the English fields, no `lang`), is a fault until rebuilt: health and searches say
//! NOT_SERVING naming `braidctl reindex --leg text`; writes into it are refused by the engine
//! (its strict mapping has no `lang` field; the old entries stay) and ingest retries them;
//! the rebuild fills an index of this format and its switch clears the fault.
//!
//! Writes (see [`write`]): a live replace or delete reads the document's entries by id
//! (realtime `_mget` through the serving and the rebuild alias), writes the new entries,
//! then deletes by id the chunks the new version lacks (`_bulk`, no refresh), then waits for
//! a coalesced `_refresh` ([`refresh`]) so the document is searchable when the call returns
//! (ingest then reports it READY). Unlike a Tantivy commit this is not atomic: a search
//! during the bulk may see a shrunk document's stale chunks (never a missing document or a
//! mix of two document entries). Every operation sets the template and alias up first if
//! they are not (so the service starts while the cluster is down, NOT_SERVING until it
//! answers).

mod bulk;
mod client;
#[cfg(test)]
mod golden_tests;
mod mapping;
mod query;
mod refresh;
mod request;
mod response;
mod tenants;
#[cfg(test)]
mod wire_tests;
mod write;

use std::collections::HashMap;

use braid_proto::tonic;
use braid_proto::v1::{Chunk, ChunkHit};

use self::bulk::{Item, Outcome};
use self::client::Client;
use self::query::Scoring;
use self::request::Names;
use crate::config::{ElasticsearchConfig, Layout, SearchConfig};
use crate::error::TextError;
use crate::index::{IndexAdmin, IndexStatus, TextIndex, TextQuery};
use crate::language::Lang;

/// How many predecessor ids an index remembers.
const MAX_SUPERSEDED: usize = 16;

pub struct EsIndex {
    client: Client,
    names: Names,
    config: ElasticsearchConfig,
    search: SearchConfig,
    scoring: Scoring,
    /// Set once the template is in place and the alias names an index.
    ready: tokio::sync::OnceCell<()>,
    /// Why searches are refused (the serving index is not the one ingest wrote to, or has
    /// another entry format).
    fault: std::sync::Mutex<Option<String>>,
    /// Refreshes of the serving index (or a tenant's) after live writes, at most one in
    /// flight per index.
    refreshers: tenants::Refreshers,
}

impl EsIndex {
    /// The backend for `config`; sends nothing yet (the first operation or health check sets
    /// the index up). Fails for unusable settings: credentials, CA file, URLs.
    pub fn new(config: &ElasticsearchConfig, search: &SearchConfig) -> Result<Self, TextError> {
        Ok(Self {
            client: Client::new(config).map_err(TextError::Index)?,
            names: Names::new(&config.index_prefix),
            config: config.clone(),
            search: search.clone(),
            scoring: Scoring {
                title_boost: search.title_boost,
                snippet_chars: search.snippet_chars,
            },
            ready: tokio::sync::OnceCell::new(),
            fault: std::sync::Mutex::new(None),
            refreshers: tenants::Refreshers::default(),
        })
    }

    /// Deletes every index of this prefix (serving, rebuild and tenants') and the template:
    /// for tests and decommissioning.
    pub async fn remove_from_cluster(&self) -> Result<(), TextError> {
        let tenants: Vec<String> = self
            .tenant_indices()
            .await?
            .into_iter()
            .map(|(index, _)| index)
            .collect();
        self.delete_indices(&tenants).await?;
        let mut indices = Vec::new();
        for alias in [&self.names.alias, &self.names.rebuild_alias] {
            let reply = self.client.send(&request::get_alias(alias)).await?;
            if reply.is_success() {
                indices.extend(response::alias_indices(&reply.body));
            }
        }
        for index in indices.iter().filter(|i| self.names.is_index(i)) {
            self.client
                .ok(&request::delete_index(index), "deleting an index")
                .await?;
        }
        let reply = self
            .client
            .send(&request::delete_template(&self.names))
            .await?;
        if !(reply.is_success() || reply.status == 404) {
            return Err(reply.into_error("deleting the index template"));
        }
        Ok(())
    }

    /// Puts the index template and, when the alias names no index, creates the first one.
    async fn ready(&self) -> Result<(), TextError> {
        self.ready
            .get_or_try_init(|| async {
                let template = mapping::template(&self.names, &self.config, &self.search);
                self.client
                    .ok(&template, "putting the index template")
                    .await?;
                let reply = self
                    .client
                    .send(&request::get_mapping(&self.names.alias))
                    .await?;
                match reply.status {
                    200 => Ok(()),
                    404 => {
                        let index = self.names.new_index();
                        let create = request::create_index(
                            &index,
                            &self.names.alias,
                            &self.config.refresh_interval,
                            &[],
                            self.config.layout,
                        );
                        self.client.ok(&create, "creating the text index").await?;
                        tracing::info!(%index, "created a new empty Elasticsearch text index");
                        Ok(())
                    }
                    _ => Err(reply.into_error("reading the text index alias")),
                }
            })
            .await
            .map(|_| ())
    }

    /// The serving index, the ids it supersedes and its entry format.
    async fn active(&self) -> Result<response::Active, TextError> {
        let reply = self
            .client
            .send(&request::get_mapping(&self.names.alias))
            .await?;
        match reply.status {
            200 => response::active_index(&reply.body),
            404 => Err(TextError::NotServing(format!(
                "the Elasticsearch alias {} names no index (deleted?); rebuild it with \
                 `braidctl reindex --leg text`",
                self.names.alias
            ))),
            _ => Err(reply.into_error("reading the text index alias")),
        }
    }

    /// Why `active` cannot serve this version, if its entries have another format or
    /// another layout than the configured one.
    fn format_fault(&self, active: &response::Active) -> Option<String> {
        let layout = active.layout.as_deref().unwrap_or(Layout::Shared.as_str());
        if active.format != Some(mapping::FORMAT) {
            Some(format!(
                "the Elasticsearch index {} holds entries of another Braid version (format \
                 {}, this version writes {}); rebuild it with `braidctl reindex --leg text`",
                active.index,
                active.format.map_or("none".into(), |f| f.to_string()),
                mapping::FORMAT
            ))
        } else if layout != self.config.layout.as_str() {
            Some(format!(
                "the Elasticsearch index {} has the {layout} layout, but \
                 index.elasticsearch.layout is {}; rebuild it with `braidctl reindex --leg \
                 text` (or set the layout back)",
                active.index,
                self.config.layout.as_str()
            ))
        } else {
            None
        }
    }

    /// The index a rebuild is filling, if any.
    async fn rebuilding(&self) -> Result<Option<String>, TextError> {
        let reply = self
            .client
            .send(&request::get_alias(&self.names.rebuild_alias))
            .await?;
        match reply.status {
            200 => Ok(response::alias_indices(&reply.body).into_iter().next()),
            404 => Ok(None),
            _ => Err(reply.into_error("reading the rebuild alias")),
        }
    }

    fn set_fault(&self, fault: Option<String>) {
        let mut slot = self.fault.lock().unwrap_or_else(|p| p.into_inner());
        if fault.is_some() && slot.is_none() {
            tracing::error!(fault = ?fault, "text index not serving");
        }
        *slot = fault;
    }

    fn serving(&self) -> Result<(), TextError> {
        match &*self.fault.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(fault) => Err(TextError::NotServing(fault.clone())),
            None => Ok(()),
        }
    }

    /// Writes `items`, sending again only the retryable failures; the final outcome of each
    /// and the concrete index it went to.
    async fn bulk(&self, items: &[Item]) -> Result<Vec<(Outcome, String)>, TextError> {
        let mut outcomes =
            vec![(Outcome::Retryable("not sent".into()), String::new()); items.len()];
        let mut pending: Vec<usize> = (0..items.len()).collect();
        let mut attempt = 0;
        while !pending.is_empty() {
            let batch: Vec<Item> = pending.iter().map(|&i| items[i].clone()).collect();
            let body = self
                .client
                .ok(&bulk::request(&batch), "bulk indexing")
                .await?;
            for (&i, outcome) in pending.iter().zip(bulk::outcomes(&body, &batch)?) {
                outcomes[i] = outcome;
            }
            pending.retain(|&i| matches!(outcomes[i].0, Outcome::Retryable(_)));
            if pending.is_empty() || attempt >= self.client.retries() {
                break;
            }
            tokio::time::sleep(self.client.backoff(attempt)).await;
            attempt += 1;
        }
        Ok(outcomes)
    }

    /// The languages `tenant` has entries in (see [`query`] for why a search needs them);
    /// `None` when it has none (nothing to search).
    async fn languages(&self, alias: &str, tenant: &str) -> Result<Option<Vec<Lang>>, TextError> {
        let r = query::languages(alias, tenant);
        let Some(body) = self
            .read_tenant(&r, "reading the tenant's languages")
            .await?
        else {
            return Ok(None);
        };
        let langs = response::languages(&body)?;
        Ok((!langs.is_empty()).then_some(langs))
    }

    /// Hits of a chunk search, text and snippet only for the first `detail` (0 = all).
    fn chunk_hits(body: &serde_json::Value, detail: u32) -> Result<Vec<ChunkHit>, TextError> {
        let hits = response::hits(body)?;
        Ok(hits
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let mut hit = response::chunk_hit(h);
                if detail != 0 && i >= detail as usize {
                    hit.text.clear();
                    hit.snippet.clear();
                }
                hit
            })
            .collect())
    }
}

/// The first failed item as an error: retryable failures (out of retries) as
/// [`TextError::Unavailable`], permanent ones as [`TextError::Index`], naming the document.
fn failure(items: &[Item], outcomes: &[(Outcome, String)]) -> Option<TextError> {
    items.iter().zip(outcomes).find_map(|(item, (o, _))| {
        let (tenant, document) = &item.document;
        match o {
            Outcome::Written | Outcome::Exists => None,
            Outcome::Retryable(d) => Some(TextError::Unavailable(format!(
                "indexing {tenant}/{document}: {d}"
            ))),
            Outcome::Permanent(d) => Some(TextError::Index(format!(
                "Elasticsearch rejected {tenant}/{document}: {d}"
            ))),
        }
    })
}

#[tonic::async_trait]
impl TextIndex for EsIndex {
    async fn replace_document(
        &self,
        tenant: &str,
        document_id: &str,
        chunks: Vec<Chunk>,
    ) -> Result<u32, TextError> {
        let (chunks, langs) = write::detect(chunks).await?;
        self.live_write((tenant, document_id), Some((&chunks, &langs)))
            .await?;
        Ok(chunks.len() as u32)
    }

    async fn delete_document(&self, tenant: &str, document_id: &str) -> Result<u32, TextError> {
        self.live_write((tenant, document_id), None).await
    }

    async fn search(&self, q: TextQuery) -> Result<Vec<ChunkHit>, TextError> {
        self.ready().await?;
        self.serving()?;
        let alias = &self.tenant_names(&q.tenant).alias;
        let Some(langs) = self.languages(alias, &q.tenant).await? else {
            return Ok(Vec::new());
        };
        if q.chunk_level {
            let r = query::chunks(alias, &q, &langs, self.scoring);
            return match self.read_tenant(&r, "searching chunks").await? {
                Some(body) => Self::chunk_hits(&body, q.detail),
                None => Ok(Vec::new()),
            };
        }
        let r = query::documents(alias, &q, &langs, self.scoring);
        let Some(body) = self.read_tenant(&r, "searching documents").await? else {
            return Ok(Vec::new());
        };
        let documents: Vec<(String, f32)> = response::hits(&body)?
            .iter()
            .map(response::document_hit)
            .collect();
        if documents.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = documents.iter().map(|(id, _)| id.clone()).collect();
        let body = self
            .client
            .ok(
                &query::best_chunks(alias, &q, &langs, self.scoring, &ids),
                "choosing chunks",
            )
            .await?;
        let mut best: HashMap<String, ChunkHit> = response::hits(&body)?
            .iter()
            .map(response::chunk_hit)
            .map(|h| (h.document_id.clone(), h))
            .collect();
        // A document without a visible chunk (deleted meanwhile) is left out.
        Ok(documents
            .into_iter()
            .filter_map(|(id, score)| best.remove(&id).map(|h| ChunkHit { score, ..h }))
            .enumerate()
            .map(|(i, mut h)| {
                if q.detail != 0 && i >= q.detail as usize {
                    h.text.clear();
                    h.snippet.clear();
                }
                h
            })
            .collect())
    }

    async fn fetch(
        &self,
        tenant: &str,
        query: &str,
        chunk_ids: Vec<String>,
    ) -> Result<Vec<ChunkHit>, TextError> {
        if chunk_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.ready().await?;
        self.serving()?;
        let alias = self.tenant_names(tenant).alias;
        let Some(langs) = self.languages(&alias, tenant).await? else {
            return Ok(Vec::new());
        };
        let r = query::fetch(&alias, (tenant, query), &chunk_ids, &langs, self.scoring);
        let Some(body) = self.read_tenant(&r, "fetching chunks").await? else {
            return Ok(Vec::new());
        };
        let mut by_id: HashMap<String, ChunkHit> = response::hits(&body)?
            .iter()
            .map(response::chunk_hit)
            .map(|h| (h.chunk_id.clone(), ChunkHit { score: 0.0, ..h }))
            .collect();
        Ok(chunk_ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }

    async fn check(&self) -> Result<(), TextError> {
        self.ready().await?;
        let reply = self
            .client
            .send(&request::health(&self.names.alias))
            .await?;
        // A health check that timed out waiting answers 408 with the same body.
        if !(reply.is_success() || reply.status == 408) {
            return Err(reply.into_error("checking cluster health"));
        }
        response::health(&reply.body).map_err(TextError::NotServing)?;
        let active = self.active().await?;
        if let Some(fault) = self.format_fault(&active) {
            self.set_fault(Some(fault.clone()));
            return Err(TextError::NotServing(fault));
        }
        self.serving()
    }
}

#[tonic::async_trait]
impl IndexAdmin for EsIndex {
    async fn status(&self, expected: &str) -> Result<IndexStatus, TextError> {
        self.ready().await?;
        let serving = match self.active().await {
            Ok(active) => active,
            Err(TextError::NotServing(reason)) => {
                return Ok(IndexStatus {
                    index_id: String::new(),
                    fault: Some(reason),
                    rebuild: None,
                });
            }
            Err(e) => return Err(e),
        };
        let active = serving.index.clone();
        let fault = (!expected.is_empty()
            && active != expected
            && !serving.supersedes.iter().any(|s| s == expected))
        .then(|| {
            format!(
                "the text index was lost or replaced: ingest indexed documents into \
                 {expected}, but the Elasticsearch alias {} names {active} (a new, incomplete \
                 index); rebuild it with `braidctl reindex --leg text`",
                self.names.alias
            )
        })
        .or_else(|| self.format_fault(&serving));
        // Not sticky: the alias is shared by every replica, and another replica's finished
        // rebuild clears the fault here too.
        self.set_fault(fault.clone());
        let rebuild = match self.rebuilding().await? {
            Some(index) => {
                // Per tenant: summed over the rebuild's tenant indices.
                let counted = if self.per_tenant() {
                    format!("{index}*")
                } else {
                    index.clone()
                };
                let body = self
                    .client
                    .ok(&request::count_documents(&counted), "counting the rebuild")
                    .await?;
                let n = body.get("count").and_then(serde_json::Value::as_u64);
                Some((index, n.unwrap_or(0)))
            }
            None => None,
        };
        Ok(IndexStatus {
            index_id: active,
            fault,
            rebuild,
        })
    }

    async fn document_chunks(
        &self,
        tenant: &str,
        document_id: &str,
    ) -> Result<Vec<(String, String)>, TextError> {
        self.ready().await?;
        self.serving()?;
        let alias = self.tenant_names(tenant).alias;
        let r = query::document_chunks(&alias, tenant, document_id);
        let Some(body) = self.read_tenant(&r, "listing a document's chunks").await? else {
            return Ok(Vec::new());
        };
        Ok(response::hits(&body)?
            .iter()
            .map(response::chunk_hit)
            .map(|h| (h.chunk_id, h.text))
            .collect())
    }

    async fn rebuild_start(&self, supersedes_index_id: &str) -> Result<String, TextError> {
        self.ready().await?;
        // Tenant indices of an unfinished rebuild, and any left behind a tenant rebuild alias
        // (a tenant's first write racing an earlier switch): one rebuild alias names one
        // index.
        let old = self.rebuilding().await?;
        let stale = self.stale_rebuild_indices(old.as_deref()).await?;
        self.delete_indices(&stale).await?;
        if let Some(old) = old {
            self.client
                .ok(
                    &request::delete_index(&old),
                    "dropping an unfinished rebuild",
                )
                .await?;
        }
        let mut supersedes: Vec<String> = Vec::new();
        if !supersedes_index_id.is_empty() {
            supersedes.push(supersedes_index_id.to_string());
        }
        if let Ok(serving) = self.active().await {
            supersedes.push(serving.index);
            supersedes.extend(serving.supersedes);
        }
        supersedes.dedup();
        supersedes.truncate(MAX_SUPERSEDED);
        let index = self.names.new_index();
        let create = request::create_index(
            &index,
            &self.names.rebuild_alias,
            &self.config.bulk_refresh_interval,
            &supersedes,
            self.config.layout,
        );
        self.client
            .ok(&create, "creating the rebuild index")
            .await?;
        tracing::info!(rebuild = %index, "text index rebuild started (Elasticsearch)");
        Ok(index)
    }

    async fn rebuild_write(
        &self,
        id: &str,
        documents: Vec<(String, String, Vec<Chunk>)>,
    ) -> Result<(u32, u32), TextError> {
        if self.rebuilding().await?.as_deref() != Some(id) || !self.names.is_index(id) {
            return Err(TextError::RebuildGone(id.to_string()));
        }
        self.load_rebuild(id, documents).await
    }

    async fn rebuild_finish(&self, id: &str) -> Result<String, TextError> {
        if self.rebuilding().await?.as_deref() != Some(id) || !self.names.is_index(id) {
            return Err(TextError::RebuildGone(id.to_string()));
        }
        // The catalog and, per tenant, every tenant index of the rebuild.
        let rebuilt = format!("{id}*");
        let restore = request::put_refresh_interval(&rebuilt, &self.config.refresh_interval);
        self.client
            .ok(&restore, "restoring refresh_interval")
            .await?;
        self.client
            .ok(&request::refresh(&rebuilt), "refreshing the rebuilt index")
            .await?;
        let old = self.active().await.ok().map(|serving| serving.index);
        // Tenant aliases move in the same atomic request (none in the shared layout, unless
        // it replaces a per-tenant one).
        let (tenants, old_tenants) =
            request::tenant_switch(&self.names, id, &self.tenant_indices().await?);
        let switch = request::switch_alias(&self.names, old.as_deref(), id, &tenants);
        self.client.ok(&switch, "switching the alias").await?;
        if let Err(e) = self.delete_indices(&old_tenants).await {
            tracing::warn!(error = %e, "deleting the old tenant indices failed");
        }
        self.set_fault(None);
        tracing::info!(index = %id, "text index rebuilt and switched (Elasticsearch)");
        if let Some(old) = old
            && let Err(e) = self
                .client
                .ok(&request::delete_index(&old), "deleting the old index")
                .await
        {
            tracing::warn!(error = %e, index = %old, "deleting the old text index failed");
        }
        Ok(id.to_string())
    }
}
