use braid_proto::tonic::Status;

/// Everything an embedding request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddingError {
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    #[error("embedding queue is full ({capacity} requests waiting)")]
    Overloaded { capacity: usize },
    #[error("the model worker has stopped")]
    WorkerStopped,
    #[error("inference failed: {0}")]
    Inference(String),
    /// The provider refused the request or answered nonsense (not worth retrying).
    #[error("embedding provider: {0}")]
    Provider(String),
    /// The provider is down, timing out, or its circuit breaker is open.
    #[error("embedding provider unavailable: {0}")]
    ProviderUnavailable(String),
    /// The provider kept rate-limiting us (HTTP 429) through every retry.
    #[error("embedding provider throttled: {0}")]
    ProviderThrottled(String),
}

impl EmbeddingError {
    /// The gRPC code this error is reported with.
    pub fn code(&self) -> braid_proto::tonic::Code {
        use braid_proto::tonic::Code;
        match self {
            Self::InvalidArgument { .. } => Code::InvalidArgument,
            Self::Overloaded { .. } | Self::ProviderThrottled(_) => Code::ResourceExhausted,
            Self::WorkerStopped | Self::ProviderUnavailable(_) => Code::Unavailable,
            Self::Provider(_) => Code::FailedPrecondition,
            Self::Inference(_) => Code::Internal,
        }
    }
}

impl From<EmbeddingError> for Status {
    fn from(e: EmbeddingError) -> Self {
        match e {
            EmbeddingError::InvalidArgument { .. } => Status::invalid_argument(e.to_string()),
            EmbeddingError::Overloaded { .. } => Status::resource_exhausted(e.to_string()),
            EmbeddingError::WorkerStopped => Status::unavailable(e.to_string()),
            EmbeddingError::Inference(detail) => {
                tracing::error!(%detail, "inference failed");
                Status::internal("inference failed")
            }
            EmbeddingError::Provider(_) => Status::failed_precondition(e.to_string()),
            EmbeddingError::ProviderUnavailable(_) => Status::unavailable(e.to_string()),
            EmbeddingError::ProviderThrottled(_) => Status::resource_exhausted(e.to_string()),
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
                EmbeddingError::InvalidArgument {
                    field: "texts".into(),
                    message: "at most 2".into(),
                },
                Code::InvalidArgument,
            ),
            (
                EmbeddingError::Overloaded { capacity: 1 },
                Code::ResourceExhausted,
            ),
            (EmbeddingError::WorkerStopped, Code::Unavailable),
            (
                EmbeddingError::Inference("secret detail".into()),
                Code::Internal,
            ),
            (
                EmbeddingError::Provider("400".into()),
                Code::FailedPrecondition,
            ),
            (
                EmbeddingError::ProviderUnavailable("open".into()),
                Code::Unavailable,
            ),
            (
                EmbeddingError::ProviderThrottled("429".into()),
                Code::ResourceExhausted,
            ),
        ];
        for (err, code) in cases {
            assert_eq!(err.code(), code);
            let status = Status::from(err);
            assert_eq!(status.code(), code);
            assert!(!status.message().contains("secret"));
        }
    }
}
