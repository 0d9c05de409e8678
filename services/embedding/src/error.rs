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
        ];
        for (err, code) in cases {
            let status = Status::from(err);
            assert_eq!(status.code(), code);
            assert!(!status.message().contains("secret"));
        }
    }
}
