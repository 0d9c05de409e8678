//! A database of its own for a test that needs the real PostgreSQL: created on the server of
//! `BRAID_TEST_DATABASE_URL` (what `make test` exports, the end-to-end tests' server), dropped
//! by [`ScratchDatabase::drop`]. Used by the services' store tests.

use sqlx::Connection;

use super::DatabaseConfig;

/// The server the tests use when `BRAID_TEST_DATABASE_URL` is not set (`make setup`'s).
const DEFAULT_ADMIN_URL: &str = "postgres://braid@127.0.0.1:54329/postgres";

pub struct ScratchDatabase {
    admin: String,
    name: String,
    /// A `[database]` section pointing at the new database, the other settings defaulted.
    pub config: DatabaseConfig,
}

impl ScratchDatabase {
    /// Creates `{prefix}_{random}` on the test server. Panics when the server is not there:
    /// only tests call this.
    pub async fn create(prefix: &str) -> Self {
        let admin =
            std::env::var("BRAID_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.into());
        let name = format!("{prefix}_{:016x}", rand::random::<u64>());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .expect("PostgreSQL for tests (BRAID_TEST_DATABASE_URL)");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("CREATE DATABASE");
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let config = DatabaseConfig {
            url: format!("{base}/{name}"),
            ..DatabaseConfig::default()
        };
        Self {
            admin,
            name,
            config,
        }
    }

    /// Drops the database, closing whatever is still connected to it.
    pub async fn drop(self) {
        let mut conn = sqlx::PgConnection::connect(&self.admin)
            .await
            .expect("PostgreSQL for tests (BRAID_TEST_DATABASE_URL)");
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await
        .expect("DROP DATABASE");
    }
}
