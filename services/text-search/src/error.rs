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
    /// The index backend (an Elasticsearch cluster) did not answer, or asked to slow down,
    /// through every retry; worth trying again later.
    #[error("text index backend unavailable: {0}")]
    Unavailable(String),
    /// The index is lost, corrupt or missing; the reason says what to do.
    #[error("text index not serving: {0}")]
    NotServing(String),
    /// The rebuild named by the caller is not the one under way.
    #[error("no text index rebuild {0} under way (replaced by another, or the service restarted)")]
    RebuildGone(String),
}

impl From<braid_core::validate::FieldError> for TextError {
    fn from(e: braid_core::validate::FieldError) -> Self {
        TextError::InvalidArgument {
            field: e.field,
            message: e.message,
        }
    }
}

impl TextError {
    /// A blocking task that did not finish. A panic is a fault (INTERNAL: ingest charges the
    /// job an attempt, so a document that panics the indexer dead-letters instead of passing for
    /// an outage of the leg); a task cancelled by the runtime's shutdown is UNAVAILABLE.
    pub fn from_join(e: tokio::task::JoinError) -> Self {
        if e.is_panic() {
            TextError::Index(format!("indexing task panicked: {e}"))
        } else {
            TextError::Task(e.to_string())
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
            TextError::Unavailable(detail) => {
                tracing::warn!(%detail, "text index backend unavailable");
                Status::unavailable("text index backend unavailable")
            }
            TextError::NotServing(_) => Status::unavailable(e.to_string()),
            TextError::RebuildGone(_) => Status::failed_precondition(e.to_string()),
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
            (TextError::Unavailable("secret".into()), Code::Unavailable),
            (TextError::NotServing("lost".into()), Code::Unavailable),
            (
                TextError::RebuildGone("idx-1".into()),
                Code::FailedPrecondition,
            ),
        ];
        for (err, code) in cases {
            let status = Status::from(err);
            assert_eq!(status.code(), code);
            assert!(!status.message().contains("secret"));
        }
    }

    #[tokio::test]
    async fn a_panicked_task_is_a_fault_and_a_cancelled_one_unavailable() {
        let panicked = tokio::task::spawn_blocking(|| panic!("secret"))
            .await
            .unwrap_err();
        let status = Status::from(TextError::from_join(panicked));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"));
        let cancelled = tokio::spawn(std::future::pending::<()>());
        cancelled.abort();
        let cancelled = cancelled.await.unwrap_err();
        assert_eq!(
            Status::from(TextError::from_join(cancelled)).code(),
            Code::Unavailable
        );
    }
}
