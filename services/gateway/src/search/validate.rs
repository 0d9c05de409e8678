//! Validation of a search request into [`Validated`], and what its page tokens are bound to.

use braid_core::auth::{Access, Principal};
use braid_core::validate;
use braid_proto::v1::{SearchMode, SearchRequest};

use super::Searcher;
use crate::cache;
use crate::error::GatewayError;
use crate::fusion::{self, Choices};
use crate::paging;

pub(super) struct Validated {
    pub(super) tenant: String,
    /// The query with control characters turned into spaces.
    pub(super) query: String,
    /// What the caller may see, applied inside both legs.
    pub(super) access: Access,
    pub(super) top_k: u32,
    pub(super) mode: SearchMode,
    pub(super) fusion: Choices,
    pub(super) explain: bool,
    /// The filter, parsed (checked against the tenant's metadata types by
    /// `Searcher::check_filter_types`).
    pub(super) filter: braid_core::filter::Filter,
    /// Score thresholds: fused, vector leg, text leg.
    pub(super) min_score: Option<f32>,
    pub(super) min_vector_score: Option<f32>,
    pub(super) min_text_score: Option<f32>,
    /// 0 = no paging.
    pub(super) page_size: u32,
    /// Where a later page starts: its walk's snapshot and the offset in it (from
    /// `page_token`); `None` for a first page.
    pub(super) position: Option<paging::Position>,
    /// The document asked about (`why`), checked to name exactly one id.
    pub(super) why: Option<braid_proto::v1::WhyRequest>,
}

impl Validated {
    /// The search controls in canonical text (part of the query cache key).
    pub(super) fn controls(&self) -> String {
        format!(
            "filter={}|min={:?}|vmin={:?}|tmin={:?}",
            self.filter.canonical(),
            self.min_score.map(f32::to_bits),
            self.min_vector_score.map(f32::to_bits),
            self.min_text_score.map(f32::to_bits),
        )
    }
}

impl Searcher {
    pub(super) fn validate(
        &self,
        r: &SearchRequest,
        caller: &Principal,
    ) -> Result<Validated, GatewayError> {
        // The tenant comes from the caller's token; naming another is PERMISSION_DENIED.
        let tenant = caller.tenant_for(&r.tenant)?;
        validate::tenant(&tenant)?;
        // Control characters (NUL included) in a query are treated as spaces; the text is
        // never parsed as query syntax by either leg.
        let query = validate::clean_text(&r.query);
        if query.trim().is_empty() {
            return Err(GatewayError::invalid(
                "query",
                "must not be empty (whitespace and control characters do not count)",
            ));
        }
        if r.query.len() > self.config.max_query_bytes {
            return Err(GatewayError::invalid(
                "query",
                format!(
                    "{} bytes, at most {}",
                    r.query.len(),
                    self.config.max_query_bytes
                ),
            ));
        }
        let top_k = if r.top_k == 0 {
            self.config.default_top_k
        } else {
            r.top_k
        };
        // With paging, top_k is the depth of the ranking the pages are cut from.
        let depth_limit = if r.page_size > 0 {
            self.config.max_page_depth
        } else {
            self.config.max_top_k
        };
        validate::top_k(top_k, depth_limit)?;
        paging::check_page_size(r, self.config.max_top_k)?;
        let filter = braid_core::filter::parse(r.filter.as_ref())?;
        super::why::check(r.why.as_ref())?;
        let mode = match SearchMode::try_from(r.mode) {
            Ok(SearchMode::Unspecified) => SearchMode::Hybrid,
            Ok(mode) => mode,
            Err(_) => {
                return Err(GatewayError::invalid(
                    "mode",
                    format!("unknown mode {}", r.mode),
                ));
            }
        };
        let fusion = fusion::choices(
            &r.fusion.unwrap_or_default(),
            top_k,
            &self.config.fusion_defaults(),
        )?;
        let mut v = Validated {
            tenant,
            query: query.trim().to_string(),
            access: caller.access.clone(),
            top_k,
            mode,
            fusion,
            explain: r.explain,
            filter,
            min_score: paging::threshold("min_score", r.min_score)?,
            min_vector_score: paging::threshold("min_vector_score", r.min_vector_score)?,
            min_text_score: paging::threshold("min_text_score", r.min_text_score)?,
            page_size: r.page_size,
            position: None,
            why: r.why.clone(),
        };
        if !r.page_token.is_empty() {
            v.position = Some(
                self.pages
                    .decode(&r.page_token, self.fingerprint(&v, r, caller))?,
            );
        }
        Ok(v)
    }

    /// Everything a page token is bound to ([`paging`]).
    pub(super) fn fingerprint(
        &self,
        v: &Validated,
        r: &SearchRequest,
        caller: &Principal,
    ) -> paging::Fingerprint {
        let mut f = paging::Fingerprint::new();
        f.add(v.tenant.as_bytes())
            .add(caller.subject.as_bytes())
            .add(&v.access.fingerprint())
            .add(cache::normalise_query(&v.query).as_bytes())
            .add(&(v.mode as i32).to_le_bytes())
            .add(&v.top_k.to_le_bytes())
            .add(v.fusion.cache_part().as_bytes())
            .add(&[u8::from(r.chunk_level)])
            .add(v.controls().as_bytes())
            .add(&v.page_size.to_le_bytes());
        f
    }
}
