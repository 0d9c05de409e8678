//! The per-tenant layout (`index.elasticsearch.layout = "per_tenant"`): each tenant's entries
//! in an index of its own, so Lucene's BM25 statistics (document frequency, document count
//! and average field length, all per field per shard) are the tenant's: another tenant's
//! writes never move its scores. (A tenant filter does not restrict them, and neither does
//! `dfs_query_then_fetch`: it gathers the same statistics from every shard, filter or not.)
//!
//! Names (see [`Names`]): the serving alias `<prefix>` names the catalog index of the current
//! generation (no entries; its id is what ingest records); tenant `t`'s index in generation
//! `G` is `G-<key(t)>` under the alias `<prefix>-tenant-<key(t)>`. A tenant's first write
//! creates its index (one primary shard, the template's mapping); a search for a tenant with
//! no index answers no hits. A rebuild fills `R-<key>` under `<prefix>-tenant-<key>-rebuild`
//! for every tenant it (or a live write) writes, and its switch moves the catalog alias and
//! every tenant alias in one atomic `_aliases` request, then deletes the old generation.
//!
//! The cost: one shard per tenant (times `1 + replicas`). OpenSearch and Elasticsearch refuse
//! new shards past `cluster.max_shards_per_node` (1,000 by default) times the data nodes, so
//! one node holds about a thousand tenants with no replicas; see docs/operations.md.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::EsIndex;
use super::refresh::Coalescer;
use super::request::{self, EsRequest, TenantNames};
use super::response;
use super::write::Held;
use crate::config::Layout;
use crate::error::TextError;

/// Index names per `DELETE` request (URLs stay short).
const DELETE_BATCH: usize = 20;

impl EsIndex {
    pub(super) fn per_tenant(&self) -> bool {
        self.config.layout == Layout::PerTenant
    }

    /// The aliases `tenant`'s entries go through: its own in the per-tenant layout, the
    /// shared ones otherwise.
    pub(super) fn tenant_names(&self, tenant: &str) -> TenantNames {
        if self.per_tenant() {
            self.names.tenant(tenant)
        } else {
            TenantNames {
                key: String::new(),
                alias: self.names.alias.clone(),
                rebuild_alias: self.names.rebuild_alias.clone(),
            }
        }
    }

    /// Creates `tenant`'s index in `generation` under `alias`, unless another writer did.
    pub(super) async fn ensure_tenant_index(
        &self,
        generation: &str,
        tenant: &TenantNames,
        alias: &str,
        refresh_interval: &str,
    ) -> Result<(), TextError> {
        let index = request::tenant_index(generation, &tenant.key);
        let create = request::create_tenant_index(&index, alias, refresh_interval);
        let reply = self.client.send(&create).await?;
        if reply.is_success() {
            tracing::info!(%index, "created a tenant's text index (Elasticsearch)");
            return Ok(());
        }
        if reply.error_type() == "resource_already_exists_exception" {
            // Another writer's create: its primary may still be starting (a get would find
            // no shard), so wait until it is active, as the creator did.
            return self.wait_for_primary(&index).await;
        }
        Err(reply.into_error("creating a tenant's text index"))
    }

    /// Per-tenant layout: creates the tenant's index in the serving generation when the
    /// tenant has none, and in the rebuilding one when a rebuild loads and the tenant has
    /// none there; `found` is the answer to the lookup through the tenant's two aliases and
    /// the catalog's two. Whether it created one (look again).
    pub(super) async fn tenant_indices_missing(
        &self,
        names: &TenantNames,
        found: &[Option<Held>],
    ) -> Result<bool, TextError> {
        let [serving, rebuild, catalog, catalog_rebuild] = found else {
            return Err(TextError::Index(
                "a lookup of four entries answered otherwise".into(),
            ));
        };
        let mut created = false;
        if serving.is_none() {
            let generation = catalog.as_ref().ok_or_else(|| {
                TextError::NotServing(format!(
                    "the Elasticsearch alias {} names no index (deleted?); rebuild it with \
                     `braidctl reindex --leg text`",
                    self.names.alias
                ))
            })?;
            self.ensure_tenant_index(
                &generation.index,
                names,
                &names.alias,
                &self.config.refresh_interval,
            )
            .await?;
            created = true;
        }
        if let (None, Some(generation)) = (rebuild, catalog_rebuild) {
            self.ensure_tenant_index(
                &generation.index,
                names,
                &names.rebuild_alias,
                &self.config.bulk_refresh_interval,
            )
            .await?;
            created = true;
        }
        Ok(created)
    }

    /// Waits until the primary of `index` (or of the index behind an alias) is active.
    pub(super) async fn wait_for_primary(&self, index: &str) -> Result<(), TextError> {
        let reply = self.client.send(&request::wait_for_primary(index)).await?;
        if !(reply.is_success() || reply.status == 408) {
            return Err(reply.into_error("waiting for a tenant's text index"));
        }
        response::health(&reply.body).map_err(TextError::Unavailable)
    }

    /// Every tenant index of this prefix (any generation) with its aliases.
    pub(super) async fn tenant_indices(&self) -> Result<Vec<(String, Vec<String>)>, TextError> {
        let r = request::indices_with_aliases(&self.names.pattern());
        let reply = self.client.send(&r).await?;
        if reply.status == 404 {
            return Ok(Vec::new());
        }
        if !reply.is_success() {
            return Err(reply.into_error("listing the tenant indices"));
        }
        Ok(response::indices_and_aliases(&reply.body)
            .into_iter()
            .filter(|(index, _)| self.names.is_tenant_index(index))
            .collect())
    }

    /// The tenant indices of the unfinished rebuild `old`, and every tenant index holding a
    /// tenant rebuild alias (one a tenant's first write created as a switch happened).
    pub(super) async fn stale_rebuild_indices(
        &self,
        old: Option<&str>,
    ) -> Result<Vec<String>, TextError> {
        Ok(self
            .tenant_indices()
            .await?
            .into_iter()
            .filter(|(index, aliases)| {
                old.is_some_and(|old| self.names.generation_of(index) == Some(old))
                    || aliases.iter().any(|a| a.ends_with("-rebuild"))
            })
            .map(|(index, _)| index)
            .collect())
    }

    /// Deletes concrete indices by name (never a wildcard: clusters may require names).
    pub(super) async fn delete_indices(&self, indices: &[String]) -> Result<(), TextError> {
        for batch in indices.chunks(DELETE_BATCH) {
            let reply = self
                .client
                .send(&request::delete_index(&batch.join(",")))
                .await?;
            if !(reply.is_success() || reply.status == 404) {
                return Err(reply.into_error("deleting indices"));
            }
        }
        Ok(())
    }

    /// Sends a read through a tenant's alias; `None` when the tenant has no index yet (per-
    /// tenant layout: it never wrote), which is an empty answer, not a fault.
    pub(super) async fn read_tenant(
        &self,
        r: &EsRequest,
        what: &str,
    ) -> Result<Option<Value>, TextError> {
        let reply = self.client.send(r).await?;
        if reply.is_success() {
            return Ok(Some(reply.body));
        }
        if self.per_tenant()
            && reply.status == 404
            && reply.error_type() == "index_not_found_exception"
        {
            return Ok(None);
        }
        Err(reply.into_error(what))
    }

    /// Waits for a refresh of `alias` that started after this call (see [`Coalescer`]); one
    /// coalescer per alias written to, kept while someone waits on it.
    pub(super) async fn refresh_after_write(&self, alias: &str) -> Result<(), TextError> {
        let coalescer = {
            let mut map = self.refreshers.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(alias.to_string()).or_default().clone()
        };
        let result = coalescer
            .after_write(|| async {
                self.client
                    .ok(&request::refresh(alias), "refreshing the text index")
                    .await
                    .map(|_| ())
            })
            .await;
        let mut map = self.refreshers.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map and this call hold it: nobody waits, forget it (bounded by writers).
        if Arc::strong_count(&coalescer) == 2 {
            map.remove(alias);
        }
        result
    }
}

/// Coalescers of the aliases being refreshed.
pub(super) type Refreshers = std::sync::Mutex<HashMap<String, Arc<Coalescer>>>;

#[cfg(test)]
mod tests {
    use super::super::mapping::FORMAT;
    use super::super::response::Active;
    use super::*;
    use crate::config::{ElasticsearchConfig, SearchConfig};

    fn es(layout: Layout) -> EsIndex {
        let config = ElasticsearchConfig {
            layout,
            ..ElasticsearchConfig::default()
        };
        EsIndex::new(&config, &SearchConfig::default()).unwrap()
    }

    fn active(layout: Option<&str>) -> Active {
        Active {
            index: "braid-text-0123456789abcdef0123456789abcdef".into(),
            supersedes: Vec::new(),
            format: Some(FORMAT),
            layout: layout.map(str::to_string),
        }
    }

    #[test]
    fn an_index_of_the_other_layout_is_a_fault_until_rebuilt() {
        let per_tenant = es(Layout::PerTenant);
        assert_eq!(per_tenant.format_fault(&active(Some("per_tenant"))), None);
        // An index from before layouts existed holds every tenant: shared.
        for other in [None, Some("shared")] {
            let fault = per_tenant.format_fault(&active(other)).unwrap_or_default();
            assert!(
                fault.contains("has the shared layout") && fault.contains("reindex"),
                "{fault}"
            );
        }
        let shared = es(Layout::Shared);
        assert_eq!(shared.format_fault(&active(None)), None);
        assert!(shared.format_fault(&active(Some("per_tenant"))).is_some());
    }
}
