//! The requests the Elasticsearch backend sends, as plain values: built by pure functions
//! (`mapping`, `query`, `bulk`, and the admin requests here), compared with the golden files
//! in `tests/golden/` and sent by `client`. Index names, the alias and the template name come
//! from [`Names`].

use serde_json::{Value, json};

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The alias searches and writes go to, and the index template's name.
    pub alias: String,
    /// The alias of the index a rebuild is filling.
    pub rebuild_alias: String,
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

    /// A new concrete index name.
    pub fn new_index(&self) -> String {
        format!("{}-{}", self.alias, uuid::Uuid::new_v4().simple())
    }

    /// Whether `name` is one of our concrete indices (never the alias or the rebuild alias).
    pub fn is_index(&self, name: &str) -> bool {
        name.strip_prefix(&self.alias)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
    }
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
) -> EsRequest {
    EsRequest::new(Method::Put, format!("/{index}")).json(json!({
        "aliases": { alias: {} },
        "settings": { "index": { "refresh_interval": refresh_interval } },
        "mappings": {
            "_meta": { "braid_supersedes": supersedes, "braid_format": super::mapping::FORMAT }
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
/// `new`, atomically. See
/// <https://www.elastic.co/guide/en/elasticsearch/reference/8.17/indices-aliases.html>.
pub fn switch_alias(names: &Names, old: Option<&str>, new: &str) -> EsRequest {
    let mut actions = Vec::new();
    if let Some(old) = old {
        actions.push(json!({ "remove": { "index": old, "alias": names.alias } }));
    }
    actions.push(json!({ "add": { "index": new, "alias": names.alias } }));
    actions.push(json!({ "remove": { "index": new, "alias": names.rebuild_alias } }));
    EsRequest::new(Method::Post, "/_aliases".into()).json(json!({ "actions": actions }))
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
