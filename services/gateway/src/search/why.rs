//! "Why not this document?" (`SearchRequest.why`): where one document stood in a search.
//!
//! The document is looked up in the ingest service on behalf of the caller, so a document
//! the caller may not read (another tenant's, hidden by its ACL) comes back NOT_FOUND exactly
//! like one that does not exist, and gets the same answer: `found` false, nothing else. For a
//! readable one, from the search's own legs and fusion: the filter clauses it fails (checked
//! against its metadata as the legs apply them), per leg its rank and score or why it is not
//! among the leg's candidates, its fused rank, score and explanation before `top_k` and
//! `min_score`, and what removed it.

use braid_core::auth::Principal;
use braid_proto::tonic::{Code, Request};
use braid_proto::v1::{
    ChunkHit, Document, DocumentStatus, DocumentWhy, GetDocumentRequest, LegWhy, WhyRequest,
};

use super::Searcher;
use super::legs::Leg;
use super::validate::Validated;
use crate::error::GatewayError;
use crate::explain;
use crate::fusion::{Adapted, FusedHit, Params};

/// The document asked about, as the caller may see it.
pub(super) enum Target {
    /// Missing, or not readable by the caller: indistinguishable on purpose.
    Unseen,
    Seen(Box<Document>),
}

/// What one leg did in this search.
pub(super) struct LegOutcome<'a> {
    pub name: &'static str,
    pub leg: &'a Leg,
    /// Hits asked of the leg.
    pub candidates: u32,
    /// The leg's own threshold, if any.
    pub min_score: Option<f32>,
}

impl Searcher {
    /// The document `why` names, looked up as `caller` in `tenant`.
    pub(super) async fn why_target(
        &self,
        why: &WhyRequest,
        tenant: &str,
        caller: &Principal,
    ) -> Result<Target, GatewayError> {
        let mut request = Request::new(GetDocumentRequest {
            tenant: tenant.to_string(),
            document_id: why.document_id.clone(),
            external_id: why.external_id.clone(),
        });
        caller.attach(request.metadata_mut());
        match self.clients.ingest.clone().get_document(request).await {
            Ok(d) => Ok(Target::Seen(Box::new(d.into_inner()))),
            Err(status) if status.code() == Code::NotFound => Ok(Target::Unseen),
            Err(status) if status.code() == Code::InvalidArgument => {
                Err(GatewayError::invalid("why", status.message().to_string()))
            }
            Err(status) => Err(GatewayError::Downstream(status)),
        }
    }
}

/// `why` must name one document: exactly one of its two ids.
pub(super) fn check(why: Option<&WhyRequest>) -> Result<(), GatewayError> {
    let Some(w) = why else { return Ok(()) };
    match (w.document_id.is_empty(), w.external_id.is_empty()) {
        (false, true) | (true, false) => Ok(()),
        _ => Err(GatewayError::invalid(
            "why",
            "set exactly one of document_id and external_id",
        )),
    }
}

/// Where `target` stood: `legs` as they answered, `fused` the whole fused ranking (before
/// `top_k` and `min_score`) under `weights` (the search's fusion parameters and, with adaptive
/// weighting, how they were chosen), `single_leg` as for [`explain::explanation`].
pub(super) fn answer(
    target: &Target,
    v: &Validated,
    legs: [LegOutcome<'_>; 2],
    fused: &[FusedHit],
    weights: (&Params, Option<&Adapted>),
    single_leg: bool,
) -> DocumentWhy {
    let Target::Seen(doc) = target else {
        return DocumentWhy {
            found: false,
            reasons: vec!["no such document (or one the caller may not read)".into()],
            ..Default::default()
        };
    };
    let id = doc.document_id.as_str();
    let mut reasons = Vec::new();
    if doc.status != DocumentStatus::Ready as i32 {
        let status = DocumentStatus::try_from(doc.status).map_or("unknown", |s| {
            s.as_str_name().trim_start_matches("DOCUMENT_STATUS_")
        });
        reasons.push(format!("its status is {status}: a leg may not hold it yet"));
    }
    let failed_filter_clauses: Vec<String> = v
        .filter
        .clauses
        .iter()
        .filter(|c| !c.holds(&doc.metadata))
        .map(|c| c.describe())
        .collect();
    for c in &failed_filter_clauses {
        reasons.push(format!("removed by the filter: {c}"));
    }
    let legs: Vec<LegWhy> = legs
        .iter()
        .map(|l| leg_why(l, id, !failed_filter_clauses.is_empty()))
        .collect();
    for l in &legs {
        if !l.returned {
            reasons.push(format!("{} leg: {}", l.leg, l.note));
        }
    }
    let mut why = DocumentWhy {
        found: true,
        document_id: doc.document_id.clone(),
        external_id: doc.external_id.clone(),
        status: doc.status,
        failed_filter_clauses,
        legs,
        ..Default::default()
    };
    if let Some((i, hit)) = fused
        .iter()
        .enumerate()
        .find(|(_, f)| f.hit.document_id == id)
    {
        let rank = i as u32 + 1;
        why.fused_rank = rank;
        why.fused_score = hit.score;
        why.explanation = Some(explain::explanation(hit, weights.0, weights.1, single_leg));
        let within = rank <= v.top_k;
        let above = v.min_score.is_none_or(|m| hit.score >= m);
        if !within {
            reasons.push(format!(
                "ranked {rank} after fusion (score {:.4}), below top_k {}",
                hit.score, v.top_k
            ));
        }
        if let Some(m) = v.min_score.filter(|_| !above) {
            reasons.push(format!(
                "removed by min_score {m}: its score is {:.4}",
                hit.score
            ));
        }
        why.returned = within && above;
        if why.returned {
            reasons.push(format!(
                "in the answer at rank {rank} (score {:.4})",
                hit.score
            ));
        }
    }
    why.reasons = reasons;
    why
}

/// Where document `id` stood in one leg.
fn leg_why(l: &LegOutcome<'_>, id: &str, filtered_out: bool) -> LegWhy {
    let mut out = LegWhy {
        leg: l.name.to_string(),
        candidates: l.candidates,
        ..Default::default()
    };
    let hits: &[ChunkHit] = match l.leg {
        Leg::Skipped => {
            out.note = "not run (the search's mode leaves it out)".into();
            return out;
        }
        Leg::Failed(reason) => {
            out.note = format!("failed: {reason}");
            return out;
        }
        Leg::Answered(hits) => hits,
    };
    // Ranks count documents, as fusion does.
    let mut seen = std::collections::HashSet::new();
    let ranked: Vec<&ChunkHit> = hits
        .iter()
        .filter(|h| seen.insert(h.document_id.as_str()))
        .collect();
    out.hits = ranked.len() as u32;
    if let Some(i) = ranked.iter().position(|h| h.document_id == id) {
        out.returned = true;
        out.rank = i as u32 + 1;
        out.score = ranked[i].score;
        out.note = format!("rank {} of {}", out.rank, out.hits);
        return out;
    }
    out.note = if filtered_out {
        "not a candidate: the filter removed it".into()
    } else if hits.len() < l.candidates as usize {
        let threshold = l
            .min_score
            .map(|m| format!(" (its threshold min_{}_score {m} applies)", l.name))
            .unwrap_or_default();
        format!(
            "the leg matched only {} documents, not this one{threshold}",
            ranked.len()
        )
    } else {
        format!("not in the first {} candidates", l.candidates)
    };
    out
}
