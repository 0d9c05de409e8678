//! Whether a database error means PostgreSQL cannot serve right now (so the call may be
//! retried and callers get UNAVAILABLE), shared by every service that owns a schema.

/// Whether `e` says PostgreSQL cannot serve right now — down, restarting or shutting down,
/// out of connections, or the connection was lost — rather than that this statement failed:
/// the call may be retried, so callers get UNAVAILABLE, not INTERNAL.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::WorkerCrashed => true,
        // The connection does not speak PostgreSQL's protocol as expected: the session is
        // unusable and sqlx drops it, a new one may work. Seen while a cluster restarts:
        // "unexpected response from SSLRequest: 0x00" from a connection opened in the window.
        sqlx::Error::Protocol(_) => true,
        // SQLSTATE class 08: connection exception; 57P01 admin_shutdown (`pg_ctl stop -m
        // fast` ends every session with it), 57P02 crash_shutdown, 57P03 cannot_connect_now;
        // 53300 too_many_connections.
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_database_that_is_down_restarting_or_out_of_connections_is_unavailable() {
        // `pg_ctl stop -m fast` ends every session with 57P01; 57P03 while it starts or
        // stops; class 08 when the connection breaks.
        for code in ["57P01", "57P02", "57P03", "53300", "08006", "08003"] {
            assert!(is_unavailable(&server_error(code)), "{code}");
        }
        assert!(is_unavailable(&sqlx::Error::WorkerCrashed));
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(is_unavailable(&sqlx::Error::Protocol(
            "unexpected response from SSLRequest: 0x00".into()
        )));
        // A statement that fails on a working server is not.
        for code in ["23505", "42P01", "22P02"] {
            assert!(!is_unavailable(&server_error(code)), "{code}");
        }
        assert!(!is_unavailable(&sqlx::Error::ColumnNotFound(
            "secret".into()
        )));
    }
}
