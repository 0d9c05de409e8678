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

/// Whether `e` says PostgreSQL cannot serve right now — down, restarting or shutting down,
/// out of connections, or the connection was lost — rather than that this statement failed:
/// the call may be retried, so callers get UNAVAILABLE, not INTERNAL.
pub(crate) fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE class 08: connection exception; 57P01 admin_shutdown (`pg_ctl stop -m
        // fast` ends every session with it), 57P02 crash_shutdown, 57P03 cannot_connect_now;
        // 53300 too_many_connections.
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

impl From<sqlx::Error> for VectorError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            e if is_unavailable(&e) => VectorError::Unavailable(e),
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

    /// A server error with SQLSTATE `code`, as the driver reports it.
    #[derive(Debug)]
    struct ServerError(&'static str);

    impl std::fmt::Display for ServerError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "server error {} secret", self.0)
        }
    }

    impl std::error::Error for ServerError {}

    impl sqlx::error::DatabaseError for ServerError {
        fn message(&self) -> &str {
            "secret"
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn server_error(code: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(ServerError(code)))
    }

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
                VectorError::from(sqlx::Error::Protocol("secret".into())),
                Code::Internal,
            ),
        ];
        for (err, code) in cases {
            let status = Status::from(err);
            assert_eq!(status.code(), code);
            assert!(!status.message().contains("secret"));
        }
    }

    #[test]
    fn a_database_that_is_down_restarting_or_out_of_connections_is_unavailable() {
        // `pg_ctl stop -m fast` ends every session with 57P01; 57P03 while it starts or
        // stops; class 08 when the connection breaks.
        for code in ["57P01", "57P02", "57P03", "53300", "08006", "08003"] {
            let status = Status::from(VectorError::from(server_error(code)));
            assert_eq!(status.code(), Code::Unavailable, "{code}");
            assert!(!status.message().contains("secret"));
        }
        assert!(is_unavailable(&sqlx::Error::WorkerCrashed));
        // A statement that fails on a working server is an internal error.
        for code in ["23505", "42P01", "22P02"] {
            let status = Status::from(VectorError::from(server_error(code)));
            assert_eq!(status.code(), Code::Internal, "{code}");
            assert!(!status.message().contains("secret"));
        }
    }
}
