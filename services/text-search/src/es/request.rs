//! The requests the Elasticsearch backend sends, as plain values: built by pure functions
//! (`mapping`, `query`, `bulk`, and the admin requests here), compared with the golden files
//! in `tests/golden/` and sent by `client`. Index names, the alias and the template name come
//! from [`Names`].

use serde_json::{Value, json};

use crate::config::Layout;

/// HTTP method of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Post,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// A request body: none, one JSON document, or newline-delimited JSON (`_bulk`).
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    None,
    Json(Value),
    NdJson(Vec<Value>),
}

/// One request to Elasticsearch.
#[derive(Debug, Clone, PartialEq)]
pub struct EsRequest {
    pub method: Method,
    /// Path from the node root, starting with `/`.
    pub path: String,
    /// Query-string parameters, in order.
    pub query: Vec<(&'static str, String)>,
    pub body: Body,
}

impl EsRequest {
    pub fn new(method: Method, path: String) -> Self {
        Self {
            method,
            path,
            query: Vec::new(),
            body: Body::None,
        }
    }

    pub fn param(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.query.push((name, value.into()));
        self
    }

    pub fn json(mut self, body: Value) -> Self {
        self.body = Body::Json(body);
        self
    }

    /// The body as sent: JSON text, or one JSON line per entry each ending in `\n`.
    pub fn body_bytes(&self) -> Option<Vec<u8>> {
        match &self.body {
            Body::None => None,
            Body::Json(v) => Some(v.to_string().into_bytes()),
            Body::NdJson(lines) => {
                let mut out = Vec::new();
                for line in lines {
                    out.extend_from_slice(line.to_string().as_bytes());
                    out.push(b'\n');
                }
                Some(out)
            }
        }
    }

    /// The whole request as one JSON value (the golden files' form).
    #[cfg(test)]
    pub fn to_golden(&self) -> Value {
        let query: serde_json::Map<String, Value> = self
            .query
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
            .collect();
        let mut out = json!({
            "method": self.method.as_str(),
            "path": self.path,
            "query": query,
        });
        match &self.body {
            Body::None => {}
            Body::Json(v) => out["body"] = v.clone(),
            Body::NdJson(lines) => out["ndjson"] = Value::Array(lines.clone()),
        }
        out
    }
}

/// The names of everything the backend creates in the cluster, all from `index_prefix`.
///
/// Shared layout: the alias `<prefix>` names the one concrete index `<prefix>-<id>` holding
/// every tenant. Per-tenant layout: the same alias names an index of that form holding no
/// entries (the catalog: its id is the generation ingest records, its `_meta` the layout and
/// format), and tenant `t` of generation `<prefix>-<id>` lives in `<prefix>-<id>-<key(t)>`
/// under the alias `<prefix>-tenant-<key(t)>` (`-rebuild` appended while a rebuild fills it).
/// Aliases never look like concrete names (`tenant` is not 32 hex digits), so they never
/// collide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The alias searches and writes go to (the catalog in the per-tenant layout), and the
    /// index template's name.
    pub alias: String,
    /// The alias of the index a rebuild is filling.
    pub rebuild_alias: String,
}

/// The aliases of one tenant's index (per-tenant layout), or the shared ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantNames {
    /// `<key>`: appended to a generation's index name to name the tenant's index.
    pub key: String,
    pub alias: String,
    pub rebuild_alias: String,
}

/// A tenant's part of its index and alias names: legal in an index name whatever the tenant
/// (lowercase ASCII letters and digits of the tenant, at most 32, for the operator's eye)
/// and unique (`-` and 32 hex digits of the tenant's SHA-256: tenants that differ only in
/// case or in characters dropped here still differ; a collision needs 2^64 tenants). Even
/// so, every query keeps its tenant filter: names decide statistics, never visibility.
pub fn tenant_key(tenant: &str) -> String {
    use sha2::Digest;
    let readable: String = tenant
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .take(32)
        .collect();
    let digest = sha2::Sha256::digest(tenant.as_bytes());
    format!("{readable}-{}", hex::encode(&digest[..16]))
}

impl Names {
    pub fn new(prefix: &str) -> Self {
        Self {
            alias: prefix.to_string(),
            rebuild_alias: format!("{prefix}-rebuild"),
        }
    }

    /// The pattern the template applies to: every concrete index.
    pub fn pattern(&self) -> String {
        format!("{}-*", self.alias)
    }

    /// The aliases of `tenant`'s index (per-tenant layout).
    pub fn tenant(&self, tenant: &str) -> TenantNames {
        let key = tenant_key(tenant);
        TenantNames {
            alias: format!("{}-tenant-{key}", self.alias),
            rebuild_alias: format!("{}-tenant-{key}-rebuild", self.alias),
            key,
        }
    }

    /// A new concrete index name.
    pub fn new_index(&self) -> String {
        format!("{}-{}", self.alias, uuid::Uuid::new_v4().simple())
    }

    /// Whether `name` is one of our concrete indices (never the alias or the rebuild alias).
    pub fn is_index(&self, name: &str) -> bool {
        self.split(name).is_some_and(|(_, key)| key.is_none())
    }

    /// Whether `name` is a tenant's index (of any generation).
    pub fn is_tenant_index(&self, name: &str) -> bool {
        self.split(name).is_some_and(|(_, key)| key.is_some())
    }

    /// The generation (catalog index name) a tenant index belongs to.
    pub fn generation_of<'a>(&self, name: &'a str) -> Option<&'a str> {
        let (id, key) = self.split(name)?;
        key?;
        Some(&name[..self.alias.len() + 1 + id.len()])
    }

    /// `<prefix>-<32 hex>` and the optional `-<key>` after it.
    fn split<'a>(&self, name: &'a str) -> Option<(&'a str, Option<&'a str>)> {
        let rest = name.strip_prefix(&self.alias)?.strip_prefix('-')?;
        let id = rest.get(..32)?;
        if !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        match &rest[32..] {
            "" => Some((id, None)),
            tail => tail
                .strip_prefix('-')
                .filter(|k| !k.is_empty())
                .map(|k| (id, Some(k))),
        }
    }
}

/// Tenant `key`'s index in generation `generation` (a catalog index name).
pub fn tenant_index(generation: &str, key: &str) -> String {
    format!("{generation}-{key}")
}

/// A tenant's index in the per-tenant layout: one primary shard (BM25 statistics are per
/// shard, so one shard makes them exactly the tenant's), `alias`, `refresh_interval`, and
/// the entry format in `_meta`. Answered 400 `resource_already_exists_exception` when another
/// writer created it first.
pub fn create_tenant_index(index: &str, alias: &str, refresh_interval: &str) -> EsRequest {
    EsRequest::new(Method::Put, format!("/{index}")).json(json!({
        "aliases": { alias: {} },
        "settings": { "index": { "number_of_shards": 1, "refresh_interval": refresh_interval } },
        "mappings": { "_meta": { "braid_format": super::mapping::FORMAT } },
    }))
}

/// Every index matching `pattern` with its aliases (`{}` when none matches).
/// See <https://www.elastic.co/guide/en/elasticsearch/reference/8.17/indices-get-alias.html>.
pub fn indices_with_aliases(pattern: &str) -> EsRequest {
    EsRequest::new(Method::Get, format!("/{pattern}/_alias"))
}

/// A concrete index with `alias`, created with `refresh_interval` and remembering the
/// indices it supersedes and its entry format in its mapping's `_meta`. Settings and
/// mappings come from the template. See
/// <https://www.elastic.co/guide/en/elasticsearch/reference/8.17/indices-create-index.html>.
pub fn create_index(
    index: &str,
    alias: &str,
    refresh_interval: &str,
    supersedes: &[String],
    layout: Layout,
) -> EsRequest {
    EsRequest::new(Method::Put, format!("/{index}")).json(json!({
        "aliases": { alias: {} },
        "settings": { "index": { "refresh_interval": refresh_interval } },
        "mappings": {
            "_meta": {
                "braid_supersedes": supersedes,
                "braid_format": super::mapping::FORMAT,
                "braid_layout": layout.as_str(),
            }
        },
    }))
}

/// The concrete index behind `alias` and its mapping (`_meta`); 404 when there is none.
/// See <https://www.elastic.co/guide/en/elasticsearch/reference/8.17/indices-get-mapping.html>.
pub fn get_mapping(alias: &str) -> EsRequest {
    EsRequest::new(Method::Get, format!("/{alias}/_mapping"))
}

/// Cluster health as it concerns `alias`'s index: red = a primary shard is unassigned.
/// See <https://www.elastic.co/guide/en/elasticsearch/reference/8.17/cluster-health.html>.
pub fn health(alias: &str) -> EsRequest {
    EsRequest::new(Method::Get, format!("/_cluster/health/{alias}"))
        .param("level", "cluster")
        .param("timeout", "5s")
}

/// Waits (up to 10 s) until `index`'s primary is active. (Not `wait_for_status=yellow`: a
/// new index's initializing primaries already count as yellow.)
pub fn wait_for_primary(index: &str) -> EsRequest {
    EsRequest::new(Method::Get, format!("/_cluster/health/{index}"))
        .param("wait_for_active_shards", "1")
        .param("timeout", "10s")
}

/// Sets `index.refresh_interval` (restoring it after a bulk load).
/// See <https://www.elastic.co/guide/en/elasticsearch/reference/8.17/indices-update-settings.html>.
pub fn put_refresh_interval(index: &str, interval: &str) -> EsRequest {
    EsRequest::new(Method::Put, format!("/{index}/_settings"))
        .json(json!({ "index": { "refresh_interval": interval } }))
}

/// Makes everything written to `index` searchable now.
/// See <https://www.elastic.co/guide/en/elasticsearch/reference/8.17/indices-refresh.html>.
pub fn refresh(index: &str) -> EsRequest {
    EsRequest::new(Method::Post, format!("/{index}/_refresh"))
}

/// Switches `names.alias` from `old` (if any) to `new` and drops the rebuild alias from
/// `new`, atomically, together with `tenants` (the per-tenant layout's alias actions, see
/// [`tenant_switch`]). See
/// <https://www.elastic.co/guide/en/elasticsearch/reference/8.17/indices-aliases.html>.
pub fn switch_alias(names: &Names, old: Option<&str>, new: &str, tenants: &[Value]) -> EsRequest {
    let mut actions = Vec::new();
    if let Some(old) = old {
        actions.push(json!({ "remove": { "index": old, "alias": names.alias } }));
    }
    actions.push(json!({ "add": { "index": new, "alias": names.alias } }));
    actions.push(json!({ "remove": { "index": new, "alias": names.rebuild_alias } }));
    actions.extend_from_slice(tenants);
    EsRequest::new(Method::Post, "/_aliases".into()).json(json!({ "actions": actions }))
}

/// The alias actions that make generation `new`'s tenant indices serve: each `(index,
/// aliases)` of `tenant_indices` (every tenant index with its aliases) of generation `new`
/// gets its serving alias and loses its rebuild alias; every other one holding a serving
/// alias loses it (a tenant the rebuild did not write has no documents: no alias, no
/// answers). Returns the actions and the indices of other generations (to delete after).
pub fn tenant_switch(
    names: &Names,
    new: &str,
    tenant_indices: &[(String, Vec<String>)],
) -> (Vec<Value>, Vec<String>) {
    let (mut actions, mut old) = (Vec::new(), Vec::new());
    for (index, aliases) in tenant_indices {
        if names.generation_of(index) == Some(new) {
            for rebuild in aliases.iter().filter(|a| a.ends_with("-rebuild")) {
                let serving = rebuild.trim_end_matches("-rebuild");
                actions.push(json!({ "add": { "index": index, "alias": serving } }));
                actions.push(json!({ "remove": { "index": index, "alias": rebuild } }));
            }
        } else {
            for serving in aliases.iter().filter(|a| !a.ends_with("-rebuild")) {
                actions.push(json!({ "remove": { "index": index, "alias": serving } }));
            }
            old.push(index.clone());
        }
    }
    // Removals first: a tenant's serving alias moves from its old index to its new one.
    actions.sort_by_key(|a| a.get("add").is_some());
    (actions, old)
}

/// Deletes a concrete index.
/// See <https://www.elastic.co/guide/en/elasticsearch/reference/8.17/indices-delete-index.html>.
pub fn delete_index(index: &str) -> EsRequest {
    EsRequest::new(Method::Delete, format!("/{index}"))
}

/// How many documents `index` holds (document entries, not chunks).
/// See <https://www.elastic.co/guide/en/elasticsearch/reference/8.17/search-count.html>.
pub fn count_documents(index: &str) -> EsRequest {
    EsRequest::new(Method::Post, format!("/{index}/_count"))
        .json(json!({ "query": { "term": { "kind": super::mapping::KIND_DOCUMENT } } }))
}

/// The indices an alias points at; 404 when it points at none.
/// See <https://www.elastic.co/guide/en/elasticsearch/reference/8.17/indices-get-alias.html>.
pub fn get_alias(alias: &str) -> EsRequest {
    EsRequest::new(Method::Get, format!("/_alias/{alias}"))
}

/// Deletes the index template (tests and decommissioning).
pub fn delete_template(names: &Names) -> EsRequest {
    EsRequest::new(Method::Delete, format!("/_index_template/{}", names.alias))
}
