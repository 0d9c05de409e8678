use braid_proto::tonic::Status;

/// Everything a gateway request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    /// No leg could answer the search.
    #[error("search unavailable: {0}")]
    Unavailable(String),
    /// The caller may not act in the tenant the request names.
    #[error("{0}")]
    PermissionDenied(String),
    /// No principal on the request (the auth layer did not run): never expected.
    #[error("not authenticated")]
    Unauthenticated,
    /// A downstream service's own error, passed through (its messages are client-safe).
    #[error("{}", .0.message())]
    Downstream(Status),
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
    }
}
