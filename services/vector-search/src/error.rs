use braid_proto::tonic::Status;

/// Everything a vector-search request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    #[error("database unavailable: {0}")]
    Unavailable(sqlx::Error),
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

impl VectorError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for VectorError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            e if braid_core::db::is_unavailable(&e) => VectorError::Unavailable(e),
            other => VectorError::Database(other),
        }
    }
}

impl From<VectorError> for Status {
    fn from(e: VectorError) -> Self {
        match e {
            VectorError::InvalidArgument { .. } => Status::invalid_argument(e.to_string()),
            VectorError::Unavailable(inner) => {
                tracing::warn!(error = %inner, "database unavailable");
                Status::unavailable("vector store unavailable")
            }
            VectorError::Database(inner) => {
                tracing::error!(error = %inner, "database error");
                Status::internal("vector store error")
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
                VectorError::invalid("top_k", "at most 10"),
                Code::InvalidArgument,
            ),
            (
                VectorError::from(sqlx::Error::PoolTimedOut),
                Code::Unavailable,
            ),
            (
                VectorError::from(sqlx::Error::ColumnNotFound("secret".into())),
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
