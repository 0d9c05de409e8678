use braid_proto::tonic::Status;

/// Everything a text-search request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    #[error("index error: {0}")]
    Index(String),
    #[error("index task failed: {0}")]
    Task(String),
}

impl From<braid_core::validate::FieldError> for TextError {
    fn from(e: braid_core::validate::FieldError) -> Self {
        TextError::InvalidArgument {
            field: e.field,
            message: e.message,
        }
    }
}

impl From<TextError> for Status {
    fn from(e: TextError) -> Self {
        match e {
            TextError::InvalidArgument { .. } => Status::invalid_argument(e.to_string()),
            TextError::Index(detail) => {
                tracing::error!(%detail, "text index error");
                Status::internal("text index error")
            }
            TextError::Task(detail) => {
                tracing::error!(%detail, "text index task failed");
                Status::unavailable("text index busy or shutting down")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_proto::tonic::Code;

    #[test]
    fn maps_every_variant() {
        let cases = [
            (
                TextError::InvalidArgument {
                    field: "query".into(),
                    message: "empty".into(),
                },
                Code::InvalidArgument,
            ),
            (TextError::Index("secret".into()), Code::Internal),
            (TextError::Task("secret".into()), Code::Unavailable),
        ];
        for (err, code) in cases {
            let status = Status::from(err);
            assert_eq!(status.code(), code);
            assert!(!status.message().contains("secret"));
        }
    }
}
