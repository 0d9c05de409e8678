//! One audit record, and the slot handlers fill while a call runs.

use std::sync::{Arc, Mutex};

use braid_core::auth::Principal;
use braid_proto::tonic::Request;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::config::QueryText;

/// Returned document ids kept per record.
pub const MAX_RECORDED_IDS: usize = 10;
/// Longest stored subject, tenant or role, in bytes (after escaping).
pub const MAX_FIELD_BYTES: usize = 512;
/// Longest stored query text, in bytes (after escaping; `audit.query_text = "plain"`).
pub const MAX_QUERY_BYTES: usize = 4096;
/// Longest stored document id, in bytes (ids come from requests too, e.g. DeleteDocument).
pub const MAX_ID_BYTES: usize = 128;

/// A caller-influenced value as it is stored: control and bidirectional formatting
/// characters written as `\u{..}` and backslashes doubled (so no stored text can pass for
/// an escape, and NUL — which PostgreSQL refuses in text — never reaches the database), then
/// cut to `max` bytes on a character boundary with `…` marking the cut.
pub fn escape_field(value: &str, max: usize) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(value.len().min(max));
    for c in value.chars() {
        let before = out.len();
        if c == '\\' {
            out.push_str("\\\\");
        } else if c.is_control() || braid_core::validate::is_bidi_control(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
        if out.len() > max {
            out.truncate(before);
            while out.len() + '…'.len_utf8() > max {
                out.pop();
            }
            out.push('…');
            break;
        }
    }
    out
}

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
    /// Calls this record stands for: 1, or the refusals before authentication of one peer
    /// within one aggregation window (`audit::anonymous`).
    pub calls: u64,
}

/// What the handler learnt: who called, in which tenant, and what came back. Every text is
/// escaped and capped as it is filled in ([`escape_field`]).
#[derive(Debug, Default)]
pub struct Filled {
    pub subject: String,
    pub tenant: String,
    pub role: String,
    pub result_count: u64,
    pub document_ids: Vec<String>,
    pub query: String,
    /// Refused before the caller was identified (no or a bad token, the per-peer limit):
    /// counted per peer instead of recorded one by one.
    pub before_auth: bool,
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
        let (subject, tenant) = (
            escape_field(&caller.subject, MAX_FIELD_BYTES),
            escape_field(tenant, MAX_FIELD_BYTES),
        );
        self.with(|f| {
            f.subject = subject;
            f.role = caller.role.as_str().to_string();
            f.tenant = tenant;
        });
    }

    /// The call was refused before its caller was identified.
    pub fn refused_before_auth(&self) {
        self.with(|f| f.before_auth = true);
    }

    /// The query text, stored as `audit.query_text` says.
    pub fn query(&self, text: &str) {
        let stored = match self.query_text {
            QueryText::Plain => escape_field(text, MAX_QUERY_BYTES),
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
                .map(|id| escape_field(id, MAX_ID_BYTES))
                .collect();
        });
    }

    /// One more result (a stream's results arrive one at a time).
    pub fn add_result(&self, id: &str) {
        self.with(|f| {
            f.result_count += 1;
            if f.document_ids.len() < MAX_RECORDED_IDS {
                f.document_ids.push(escape_field(id, MAX_ID_BYTES));
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
    fn fields_are_escaped_and_capped() {
        assert_eq!(escape_field("plain ü text", 64), "plain ü text");
        assert_eq!(escape_field("a\u{0}b", 64), "a\\u{0}b");
        assert_eq!(
            escape_field("x\u{1f}y\u{202e}z\n", 64),
            "x\\u{1f}y\\u{202e}z\\u{a}"
        );
        // A backslash is doubled, so stored text never passes for an escape.
        assert_eq!(escape_field("a\\u{0}", 64), "a\\\\u{0}");
        let long = escape_field(&"é".repeat(1000), 11);
        assert!(long.len() <= 11 && long.ends_with('…'), "{long}");
        let nuls = escape_field(&"\u{0}".repeat(1 << 20), MAX_FIELD_BYTES);
        assert!(nuls.len() <= MAX_FIELD_BYTES && !nuls.contains('\u{0}'));
        let slot = AuditSlot::new(QueryText::Plain);
        slot.query("what\u{0}ever");
        slot.results(1, ["id\u{0}"]);
        let filled = slot.take();
        assert_eq!(filled.query, "what\\u{0}ever");
        assert_eq!(filled.document_ids, ["id\\u{0}"]);
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
