//! `[limits]`: per-peer and per-caller rate budgets, call costs, long-call caps, stream
//! budgets and request list caps.

use braid_core::config::positive;
use serde::{Deserialize, Serialize};

/// Fair limits per caller (`BRAID_GATEWAY__LIMITS__*`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Shares the rate budgets between gateway replicas (`redis://host:port/db`); empty keeps
    /// them in this process (`rediss://` for TLS). When Redis does not answer, the local
    /// limiter decides.
    pub redis_url: String,
    /// TLS: PEM file of the CA that signs Redis' certificate; unset = the system trust store.
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// How long one Redis rate check may take before the local limiter decides instead.
    pub redis_timeout_ms: u64,
    /// Keys (subjects, tenants, peers) tracked per budget; past it, idle keys are evicted and
    /// new keys share one overflow budget until room frees up.
    pub max_tracked_keys: usize,
    /// Every call from one peer address, checked before its token is read (in this process;
    /// behind a proxy that hides client addresses, raise it to the proxy's whole traffic).
    pub per_peer: Budget,
    /// What a call costs in tokens of its class's budgets.
    pub cost: CostConfig,
    /// Search, GetDocument.
    pub search: ClassBudget,
    /// Ingest, IngestStream, WaitIndexed, DeleteDocument.
    pub ingest: ClassBudget,
    /// Jobs, Stats, Reembed, ListAudit and the other operator calls.
    pub admin: ClassBudget,
    pub long_calls: LongCallLimits,
    pub stream: StreamLimits,
    pub requests: RequestLimits,
}

/// The budgets of one class of RPCs, per caller and per tenant.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassBudget {
    pub per_subject: Budget,
    pub per_tenant: Budget,
}

/// A GCRA budget: `rate_per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Budget {
    /// Tokens added per second: the sustained rate.
    pub rate_per_second: f64,
    /// Tokens that may be spent at once: the bucket's size.
    pub burst: u32,
}

/// Tokens per call. A search costs one token per `search_work_per_token` units of work (the
/// candidates each leg it uses is asked for, plus the ranking depth `top_k`), at least one,
/// times `cache_bypass_factor` when it bypasses the cache. Ingest calls cost one token per
/// document (IngestStream: charged as each document arrives, the stream waiting while the
/// budget is empty). Every other call costs one. A call costing more than a budget's burst
/// takes the whole burst.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostConfig {
    /// Units of search work (each used leg's candidates plus `top_k`) per token.
    pub search_work_per_token: u32,
    /// A search with `bypass_cache` costs this many times as much.
    pub cache_bypass_factor: u32,
}

impl Default for CostConfig {
    fn default() -> Self {
        Self {
            search_work_per_token: 200,
            cache_bypass_factor: 2,
        }
    }
}

/// Concurrent long calls (WaitIndexed, IngestStream, Ingest with `wait_until_indexed`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LongCallLimits {
    /// Long calls one subject may have running at once; more are refused at once.
    pub per_subject: u32,
    /// Subjects tracked at once; a new subject past it is refused until one finishes.
    pub max_tracked_subjects: usize,
}

/// One IngestStream call.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamLimits {
    /// Longest wait for the client's next message.
    pub idle_timeout_ms: u64,
    /// Documents one stream may send.
    pub max_documents: u64,
    /// Sum of the encoded sizes of the stream's messages.
    pub max_bytes: u64,
}

/// Caps on the list fields of Gateway requests (the ingest service's own limits match).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestLimits {
    /// Documents in one Ingest request.
    pub max_documents_per_ingest: usize,
    /// Document ids in one WaitIndexed request.
    pub max_wait_ids: usize,
    /// Job ids in one RetryJobs or DiscardJobs request.
    pub max_job_ids: usize,
    /// States in one ListJobs request.
    pub max_job_states: usize,
}

impl Budget {
    pub const fn new(rate_per_second: f64, burst: u32) -> Self {
        Self {
            rate_per_second,
            burst,
        }
    }

    fn validate(&self, name: &str, errors: &mut Vec<String>) {
        if !(self.rate_per_second.is_finite() && self.rate_per_second > 0.0) {
            errors.push(format!("{name}.rate_per_second must be a positive number"));
        }
        positive(errors, &format!("{name}.burst"), self.burst as u64);
    }
}

impl Default for Budget {
    fn default() -> Self {
        Self::new(100.0, 200)
    }
}

impl ClassBudget {
    const fn new(per_subject: Budget, per_tenant: Budget) -> Self {
        Self {
            per_subject,
            per_tenant,
        }
    }

    fn validate(&self, name: &str, errors: &mut Vec<String>) {
        self.per_subject
            .validate(&format!("{name}.per_subject"), errors);
        self.per_tenant
            .validate(&format!("{name}.per_tenant"), errors);
    }
}

impl Default for ClassBudget {
    fn default() -> Self {
        Self::new(Budget::default(), Budget::new(1000.0, 2000))
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            redis_url: String::new(),
            redis_ca_file: None,
            redis_timeout_ms: 50,
            max_tracked_keys: 100_000,
            per_peer: Budget::new(1000.0, 2000),
            cost: CostConfig::default(),
            search: ClassBudget::new(Budget::new(200.0, 400), Budget::new(2000.0, 4000)),
            // Tokens are documents here (see `CostConfig`).
            ingest: ClassBudget::new(Budget::new(200.0, 1000), Budget::new(1000.0, 5000)),
            admin: ClassBudget::new(Budget::new(10.0, 50), Budget::new(50.0, 200)),
            long_calls: LongCallLimits::default(),
            stream: StreamLimits::default(),
            requests: RequestLimits::default(),
        }
    }
}

impl Default for LongCallLimits {
    fn default() -> Self {
        Self {
            per_subject: 8,
            max_tracked_subjects: 10_000,
        }
    }
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            idle_timeout_ms: 60_000,
            max_documents: 100_000,
            max_bytes: 1024 * 1024 * 1024,
        }
    }
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_documents_per_ingest: 256,
            max_wait_ids: 10_000,
            max_job_ids: 10_000,
            max_job_states: 8,
        }
    }
}

impl LimitsConfig {
    pub fn validate(&self, errors: &mut Vec<String>) {
        braid_core::redis_pool::validate(
            "limits.redis_url",
            &self.redis_url,
            "limits.redis_ca_file",
            self.redis_ca_file.as_deref(),
            errors,
        );
        positive(errors, "limits.redis_timeout_ms", self.redis_timeout_ms);
        positive(
            errors,
            "limits.max_tracked_keys",
            self.max_tracked_keys as u64,
        );
        self.per_peer.validate("limits.per_peer", errors);
        positive(
            errors,
            "limits.cost.search_work_per_token",
            self.cost.search_work_per_token as u64,
        );
        positive(
            errors,
            "limits.cost.cache_bypass_factor",
            self.cost.cache_bypass_factor as u64,
        );
        self.search.validate("limits.search", errors);
        self.ingest.validate("limits.ingest", errors);
        self.admin.validate("limits.admin", errors);
        positive(
            errors,
            "limits.long_calls.per_subject",
            self.long_calls.per_subject as u64,
        );
        positive(
            errors,
            "limits.long_calls.max_tracked_subjects",
            self.long_calls.max_tracked_subjects as u64,
        );
        positive(
            errors,
            "limits.stream.idle_timeout_ms",
            self.stream.idle_timeout_ms,
        );
        positive(
            errors,
            "limits.stream.max_documents",
            self.stream.max_documents,
        );
        positive(errors, "limits.stream.max_bytes", self.stream.max_bytes);
        let r = &self.requests;
        for (name, v) in [
            ("max_documents_per_ingest", r.max_documents_per_ingest),
            ("max_wait_ids", r.max_wait_ids),
            ("max_job_ids", r.max_job_ids),
            ("max_job_states", r.max_job_states),
        ] {
            positive(errors, &format!("limits.requests.{name}"), v as u64);
        }
    }
}
