//! One audit record, and the slot handlers fill while a call runs.

use std::sync::{Arc, Mutex};

use braid_core::auth::Principal;
use braid_proto::tonic::Request;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::config::QueryText;

/// Returned document ids kept per record.
pub const MAX_RECORDED_IDS: usize = 10;

/// What is recorded of one call (also the JSON log line, target `audit`).
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// Milliseconds since the Unix epoch when the call arrived.
    pub at_ms: i64,
    pub subject: String,
    pub tenant: String,
    pub role: String,
    pub client_addr: String,
    pub rpc: &'static str,
    pub code: String,
    pub latency_ms: f64,
    pub result_count: u64,
    pub document_ids: Vec<String>,
    pub trace_id: String,
    pub query: String,
}

/// What the handler learnt: who called, in which tenant, and what came back.
#[derive(Debug, Default)]
pub struct Filled {
    pub subject: String,
    pub tenant: String,
    pub role: String,
    pub result_count: u64,
    pub document_ids: Vec<String>,
    pub query: String,
}

/// Put into each request's extensions by the audit layer; handlers fill it through the
/// request (cheap to clone, shared with the layer).
#[derive(Debug, Clone)]
pub struct AuditSlot {
    filled: Arc<Mutex<Filled>>,
    query_text: QueryText,
}

impl AuditSlot {
    pub fn new(query_text: QueryText) -> Self {
        Self {
            filled: Arc::default(),
            query_text,
        }
    }

    /// The slot of a request; `None` when audit is off.
    pub fn of<T>(request: &Request<T>) -> Option<Self> {
        request.extensions().get::<AuditSlot>().cloned()
    }

    /// The slot of an HTTP request (in a layer, before tonic decodes it).
    pub fn of_http<B>(request: &http::Request<B>) -> Option<&Self> {
        request.extensions().get::<AuditSlot>()
    }

    fn with(&self, f: impl FnOnce(&mut Filled)) {
        f(&mut self.filled.lock().unwrap_or_else(|p| p.into_inner()));
    }

    pub fn caller(&self, caller: &Principal, tenant: &str) {
        self.with(|f| {
            f.subject = caller.subject.clone();
            f.role = caller.role.as_str().to_string();
            f.tenant = tenant.to_string();
        });
    }

    /// The query text, stored as `audit.query_text` says.
    pub fn query(&self, text: &str) {
        let stored = match self.query_text {
            QueryText::Plain => text.to_string(),
            QueryText::Hash => hex::encode(Sha256::digest(text.as_bytes())),
            QueryText::Redact => String::new(),
        };
        self.with(|f| f.query = stored);
    }

    /// How many results the call returned and the first of their document ids.
    pub fn results<'a>(&self, count: usize, ids: impl IntoIterator<Item = &'a str>) {
        self.with(|f| {
            f.result_count = count as u64;
            f.document_ids = ids
                .into_iter()
                .take(MAX_RECORDED_IDS)
                .map(str::to_string)
                .collect();
        });
    }

    /// One more result (a stream's results arrive one at a time).
    pub fn add_result(&self, id: &str) {
        self.with(|f| {
            f.result_count += 1;
            if f.document_ids.len() < MAX_RECORDED_IDS {
                f.document_ids.push(id.to_string());
            }
        });
    }

    /// What an operator RPC acted on, kept as is in the record's `query` field
    /// (`RevokeTokens`: the revoked subject).
    pub fn target(&self, what: &str) {
        self.with(|f| f.query = what.to_string());
    }

    pub fn take(&self) -> Filled {
        std::mem::take(&mut self.filled.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_text_is_stored_as_configured() {
        let stored = |mode| {
            let slot = AuditSlot::new(mode);
            slot.query("quantum physics");
            slot.take().query
        };
        assert_eq!(stored(QueryText::Plain), "quantum physics");
        assert_eq!(
            stored(QueryText::Hash),
            hex::encode(Sha256::digest(b"quantum physics"))
        );
        assert_eq!(stored(QueryText::Redact), "");
    }

    #[test]
    fn at_most_ten_document_ids_are_kept() {
        let slot = AuditSlot::new(QueryText::Redact);
        let ids: Vec<String> = (0..25).map(|i| format!("d{i}")).collect();
        slot.results(ids.len(), ids.iter().map(String::as_str));
        let filled = slot.take();
        assert_eq!(filled.result_count, 25);
        assert_eq!(filled.document_ids.len(), MAX_RECORDED_IDS);
        assert_eq!(filled.document_ids[0], "d0");
        for id in &ids {
            slot.add_result(id);
        }
        let filled = slot.take();
        assert_eq!(filled.result_count, 25);
        assert_eq!(filled.document_ids.len(), MAX_RECORDED_IDS);
        assert_eq!(filled.document_ids[9], "d9");
    }
}
