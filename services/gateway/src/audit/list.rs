//! `ListAudit`: the audit trail newest first, filtered, with keyset pagination (the page token
//! is the last record's id).

use braid_proto::v1::{AuditRecord, ListAuditRequest, ListAuditResponse};

use super::store::{AuditQuery, AuditStore};
use crate::error::GatewayError;

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;
const MAX_FILTER_BYTES: usize = 256;
/// 9999-12-31T23:59:59Z.
const MAX_SINCE_SECONDS: i64 = 253_402_300_799;

fn filter(field: &str, value: &str) -> Result<Option<String>, GatewayError> {
    if value.len() > MAX_FILTER_BYTES {
        return Err(GatewayError::invalid(
            field,
            format!("{} bytes, at most {MAX_FILTER_BYTES}", value.len()),
        ));
    }
    Ok((!value.is_empty()).then(|| value.to_string()))
}

pub async fn list(
    store: &AuditStore,
    r: ListAuditRequest,
) -> Result<ListAuditResponse, GatewayError> {
    let page_size = match r.page_size {
        0 => DEFAULT_PAGE,
        n if n > MAX_PAGE => {
            return Err(GatewayError::invalid(
                "page_size",
                format!("{n}, at most {MAX_PAGE}"),
            ));
        }
        n => n,
    };
    let before_id = match r.page_token.as_str() {
        "" => None,
        token => Some(
            token
                .parse::<i64>()
                .map_err(|_| GatewayError::invalid("page_token", "not a token from ListAudit"))?,
        ),
    };
    let since_ms = match r.since {
        None => None,
        Some(t) if (0..=MAX_SINCE_SECONDS).contains(&t.seconds) => {
            Some(t.seconds * 1000 + i64::from(t.nanos.clamp(0, 999_999_999) / 1_000_000))
        }
        Some(_) => {
            return Err(GatewayError::invalid(
                "since",
                "must lie between 1970 and 9999",
            ));
        }
    };
    let query = AuditQuery {
        since_ms,
        subject: filter("subject", &r.subject)?,
        tenant: filter("tenant", &r.tenant)?,
        rpc: filter("rpc", &r.rpc)?,
        before_id,
        limit: i64::from(page_size) + 1,
    };
    let mut rows = store.list(&query).await.map_err(|e| {
        tracing::warn!(error = %e, "audit read failed");
        GatewayError::Unavailable("the audit trail cannot be read right now".into())
    })?;
    let more = rows.len() > page_size as usize;
    rows.truncate(page_size as usize);
    let next_page_token = match (more, rows.last()) {
        (true, Some(last)) => last.id.to_string(),
        _ => String::new(),
    };
    let records = rows
        .into_iter()
        .map(|row| {
            let r = row.record;
            AuditRecord {
                at: Some(braid_proto::timestamp_from_millis(r.at_ms)),
                subject: r.subject,
                tenant: r.tenant,
                role: r.role,
                client_addr: r.client_addr,
                rpc: r.rpc.to_string(),
                code: r.code,
                latency_ms: r.latency_ms,
                result_count: r.result_count,
                document_ids: r.document_ids,
                trace_id: r.trace_id,
                query: r.query,
                calls: r.calls,
            }
        })
        .collect();
    Ok(ListAuditResponse {
        records,
        next_page_token,
    })
}
