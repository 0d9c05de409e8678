use braid_proto::tonic::Status;

/// Everything an ingest request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    /// Every document of the request was rejected; one message per document.
    #[error("every document was rejected: {}", .0.join("; "))]
    AllRejected(Vec<String>),
    #[error("document not found")]
    NotFound,
    /// The caller's role or tenant does not allow the call.
    #[error("{0}")]
    PermissionDenied(String),
    /// No verified caller on the request (the internal auth layer did not run).
    #[error("not authenticated")]
    Unauthenticated,
    /// The call conflicts with the current state (e.g. a reindex of the leg is running).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A search leg could not do its part; the message is ours (service, code, and the
    /// leg's own validation or not-serving reason).
    #[error("{0}")]
    LegUnavailable(String),
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

impl IngestError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<braid_core::validate::FieldError> for IngestError {
    fn from(e: braid_core::validate::FieldError) -> Self {
        Self::InvalidArgument {
            field: e.field,
            message: e.message,
        }
    }
}

impl From<sqlx::Error> for IngestError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            e if braid_core::db::is_unavailable(&e) => IngestError::Unavailable(e),
            other => IngestError::Database(other),
        }
    }
}

impl From<braid_core::auth::TenantDenied> for IngestError {
    fn from(e: braid_core::auth::TenantDenied) -> Self {
        Self::PermissionDenied(e.to_string())
    }
}

impl From<IngestError> for Status {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::InvalidArgument { .. } | IngestError::AllRejected(_) => {
                Status::invalid_argument(e.to_string())
            }
            IngestError::NotFound => Status::not_found(e.to_string()),
            IngestError::PermissionDenied(_) => Status::permission_denied(e.to_string()),
            IngestError::Unauthenticated => Status::unauthenticated(e.to_string()),
            IngestError::FailedPrecondition(_) => Status::failed_precondition(e.to_string()),
            IngestError::LegUnavailable(_) => Status::unavailable(e.to_string()),
            IngestError::Unavailable(inner) => {
                tracing::warn!(error = %inner, "database unavailable");
                Status::unavailable("document store unavailable")
            }
            IngestError::Database(inner) => {
                tracing::error!(error = %inner, "database error");
                Status::internal("document store error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_proto::tonic::Code;

    #[test]
    fn maps_every_variant_without_leaking_details() {
        let cases = [
            (
                IngestError::invalid("documents", "too many"),
                Code::InvalidArgument,
            ),
            (
                IngestError::AllRejected(vec!["documents[0]: bad".into()]),
                Code::InvalidArgument,
            ),
            (IngestError::NotFound, Code::NotFound),
            (
                IngestError::PermissionDenied("tenant".into()),
                Code::PermissionDenied,
            ),
            (IngestError::Unauthenticated, Code::Unauthenticated),
            (
                IngestError::FailedPrecondition("busy".into()),
                Code::FailedPrecondition,
            ),
            (
                IngestError::LegUnavailable("text-search".into()),
                Code::Unavailable,
            ),
            (
                IngestError::from(sqlx::Error::PoolTimedOut),
                Code::Unavailable,
            ),
            (
                IngestError::from(sqlx::Error::ColumnNotFound("secret".into())),
                Code::Internal,
            ),
        ];
        for (err, code) in cases {
            let status = Status::from(err);
            assert_eq!(status.code(), code);
            assert!(!status.message().contains("secret"));
        }
    }
}
