use braid_proto::tonic::Status;

/// Metadata key (sent as a trailer) telling a rate-limited client when to retry, in seconds.
pub const RETRY_AFTER: &str = "retry-after";

/// Everything a gateway request can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    /// No leg could answer the search.
    #[error("search unavailable: {0}")]
    Unavailable(String),
    /// No principal on the request (the auth layer did not run): never expected.
    #[error("not authenticated")]
    Unauthenticated,
    /// A downstream service's own error, passed through (its messages are client-safe).
    #[error("{}", .0.message())]
    Downstream(Status),
    /// A rate budget is used up; the next call fits after `retry_after`.
    #[error("rate limit: the {class} budget per {scope} is used up")]
    RateLimited {
        class: &'static str,
        scope: &'static str,
        retry_after: std::time::Duration,
    },
    /// The caller holds as many long calls as it may.
    #[error("too many long calls: {0}")]
    TooManyLongCalls(String),
    /// An IngestStream went over its size budget.
    #[error("stream budget: {0}")]
    StreamBudget(String),
    /// The caller's role does not allow the RPC, or the request names another tenant.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The RPC needs a part of the gateway that is not configured.
    #[error("{0}")]
    NotConfigured(String),
    /// An IngestStream client sent nothing for too long.
    #[error("stream idle: {0}")]
    StreamIdle(String),
    /// A store the RPC writes to cannot be reached (details in the log).
    #[error("{0} is unavailable; try again")]
    StoreUnavailable(&'static str),
    /// What a request refers to is gone and will not come back (an expired page snapshot):
    /// the client must start over.
    #[error("{field}: {message}")]
    Expired { field: String, message: String },
}

impl GatewayError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<braid_core::validate::FieldError> for GatewayError {
    fn from(e: braid_core::validate::FieldError) -> Self {
        Self::InvalidArgument {
            field: e.field,
            message: e.message,
        }
    }
}

impl From<braid_core::auth::TenantDenied> for GatewayError {
    fn from(e: braid_core::auth::TenantDenied) -> Self {
        Self::PermissionDenied(e.to_string())
    }
}

impl From<GatewayError> for Status {
    fn from(e: GatewayError) -> Self {
        match e {
            GatewayError::InvalidArgument { .. } => Status::invalid_argument(e.to_string()),
            GatewayError::Unavailable(_) => Status::unavailable(e.to_string()),
            GatewayError::PermissionDenied(_) => Status::permission_denied(e.to_string()),
            GatewayError::Unauthenticated => Status::unauthenticated(e.to_string()),
            GatewayError::Downstream(status) => Status::new(status.code(), status.message()),
            GatewayError::RateLimited { retry_after, .. } => {
                // Whole seconds, rounded up, and at least 1 (RFC 9110 Retry-After).
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                let secs = secs.max(1);
                let mut status = Status::resource_exhausted(format!("{e}; retry after {secs} s"));
                status.metadata_mut().insert(
                    RETRY_AFTER,
                    secs.to_string().parse().expect("digits are ASCII"),
                );
                status
            }
            GatewayError::TooManyLongCalls(_) | GatewayError::StreamBudget(_) => {
                Status::resource_exhausted(e.to_string())
            }
            GatewayError::StreamIdle(_) => Status::deadline_exceeded(e.to_string()),
            GatewayError::NotConfigured(_) => Status::failed_precondition(e.to_string()),
            GatewayError::StoreUnavailable(_) => Status::unavailable(e.to_string()),
            GatewayError::Expired { .. } => Status::failed_precondition(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_proto::tonic::Code;

    #[test]
    fn maps_every_variant() {
        assert_eq!(
            Status::from(GatewayError::invalid("top_k", "too big")).code(),
            Code::InvalidArgument
        );
        assert_eq!(
            Status::from(GatewayError::Unavailable("both legs".into())).code(),
            Code::Unavailable
        );
        assert_eq!(
            Status::from(GatewayError::PermissionDenied("tenant".into())).code(),
            Code::PermissionDenied
        );
        assert_eq!(
            Status::from(GatewayError::Unauthenticated).code(),
            Code::Unauthenticated
        );
        let passed = Status::from(GatewayError::Downstream(Status::not_found(
            "document not found",
        )));
        assert_eq!(passed.code(), Code::NotFound);
        assert_eq!(passed.message(), "document not found");
        let limited = Status::from(GatewayError::RateLimited {
            class: "search",
            scope: "subject",
            retry_after: std::time::Duration::from_millis(1200),
        });
        assert_eq!(limited.code(), Code::ResourceExhausted);
        assert!(limited.message().contains("search budget per subject"));
        assert_eq!(limited.metadata().get(RETRY_AFTER).unwrap(), "2");
        for e in [
            GatewayError::TooManyLongCalls("x".into()),
            GatewayError::StreamBudget("x".into()),
        ] {
            assert_eq!(Status::from(e).code(), Code::ResourceExhausted);
        }
        assert_eq!(
            Status::from(GatewayError::StreamIdle("x".into())).code(),
            Code::DeadlineExceeded
        );
        assert_eq!(
            Status::from(GatewayError::PermissionDenied("x".into())).code(),
            Code::PermissionDenied
        );
        assert_eq!(
            Status::from(GatewayError::NotConfigured("x".into())).code(),
            Code::FailedPrecondition
        );
        assert_eq!(
            Status::from(GatewayError::StoreUnavailable("the revocation store")).code(),
            Code::Unavailable
        );
    }
}
