//! Caps on the list fields of Gateway requests, checked before anything is forwarded; each
//! refusal names the field and the limit. The defaults match the ingest service's own limits,
//! so the gateway never accepts what ingest would refuse. Lists inside one document (metadata,
//! ACL groups) are left to ingest's per-document validation, which refuses the bad document
//! alone instead of its whole batch. Search filter entries are capped by
//! `braid_core::validate::filter`.

use braid_proto::v1::{
    DiscardJobsRequest, IngestRequest, ListJobsRequest, RetryJobsRequest, WaitIndexedRequest,
};

use super::config::RequestLimits;
use crate::error::GatewayError;

fn cap(field: impl Into<String>, len: usize, max: usize, what: &str) -> Result<(), GatewayError> {
    if len > max {
        return Err(GatewayError::invalid(
            field,
            format!("{len} {what}, at most {max}"),
        ));
    }
    Ok(())
}

pub fn ingest(limits: &RequestLimits, r: &IngestRequest) -> Result<(), GatewayError> {
    cap(
        "documents",
        r.documents.len(),
        limits.max_documents_per_ingest,
        "documents",
    )
}

pub fn wait_indexed(limits: &RequestLimits, r: &WaitIndexedRequest) -> Result<(), GatewayError> {
    cap(
        "document_ids",
        r.document_ids.len(),
        limits.max_wait_ids,
        "ids",
    )
}

pub fn list_jobs(limits: &RequestLimits, r: &ListJobsRequest) -> Result<(), GatewayError> {
    cap("states", r.states.len(), limits.max_job_states, "states")
}

pub fn retry_jobs(limits: &RequestLimits, r: &RetryJobsRequest) -> Result<(), GatewayError> {
    cap("job_ids", r.job_ids.len(), limits.max_job_ids, "ids")
}

pub fn discard_jobs(limits: &RequestLimits, r: &DiscardJobsRequest) -> Result<(), GatewayError> {
    cap("job_ids", r.job_ids.len(), limits.max_job_ids, "ids")
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_proto::v1::DocumentInput;

    #[test]
    fn lists_over_their_cap_name_the_field_and_the_limit() {
        let limits = RequestLimits {
            max_documents_per_ingest: 2,
            max_wait_ids: 2,
            max_job_ids: 2,
            max_job_states: 1,
        };
        let doc = DocumentInput::default();
        let three = IngestRequest {
            documents: vec![doc.clone(), doc.clone(), doc.clone()],
            ..Default::default()
        };
        let e = ingest(&limits, &three).unwrap_err().to_string();
        assert_eq!(e, "documents: 3 documents, at most 2");
        let w = WaitIndexedRequest {
            document_ids: vec!["a".into(); 3],
            ..Default::default()
        };
        assert!(
            wait_indexed(&limits, &w)
                .unwrap_err()
                .to_string()
                .starts_with("document_ids: 3 ids, at most 2")
        );
        let j = RetryJobsRequest {
            job_ids: vec![1, 2, 3],
            ..Default::default()
        };
        assert!(retry_jobs(&limits, &j).is_err());
        let ok = IngestRequest {
            documents: vec![doc],
            ..Default::default()
        };
        assert!(ingest(&limits, &ok).is_ok());
    }
}
