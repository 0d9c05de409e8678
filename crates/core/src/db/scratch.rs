//! A database of its own for a test that needs the real PostgreSQL: created on the server of
//! `BRAID_TEST_DATABASE_URL` (what `make test` exports, the end-to-end tests' server), dropped
//! by [`ScratchDatabase::drop`]. Used by the services' store tests.

use sqlx::Connection;

use super::DatabaseConfig;

/// The server the tests use when `BRAID_TEST_DATABASE_URL` is not set (`make setup`'s).
const DEFAULT_ADMIN_URL: &str = "postgres://braid@127.0.0.1:54329/postgres";

pub struct ScratchDatabase {
    admin: String,
    pub name: String,
    /// A `[database]` section pointing at the new database, the other settings defaulted.
    pub config: DatabaseConfig,
}

impl ScratchDatabase {
    /// The test server's admin URL (database `postgres`): `BRAID_TEST_DATABASE_URL`, else
    /// `make setup`'s.
    pub fn admin_url() -> String {
        std::env::var("BRAID_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.into())
    }

    /// Creates `{prefix}_{random}` on the test server. Panics when the server is not there:
    /// only tests call this.
    pub async fn create(prefix: &str) -> Self {
        Self::create_on(&Self::admin_url(), prefix)
            .await
            .expect("PostgreSQL for tests (BRAID_TEST_DATABASE_URL)")
    }

    /// Creates `{prefix}_{random}` on the server whose admin URL is `admin`.
    pub async fn create_on(admin: &str, prefix: &str) -> Result<Self, sqlx::Error> {
        let name = format!("{prefix}_{:016x}", rand::random::<u64>());
        let mut conn = sqlx::PgConnection::connect(admin).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
        let config = DatabaseConfig {
            url: format!("{base}/{name}"),
            ..DatabaseConfig::default()
        };
        Ok(Self {
            admin: admin.to_string(),
            name,
            config,
        })
    }

    /// Drops the database, closing whatever is still connected to it.
    pub async fn remove(&self) -> Result<(), sqlx::Error> {
        let mut conn = sqlx::PgConnection::connect(&self.admin).await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await
        .map(|_| ())
    }

    /// [`ScratchDatabase::remove`], panicking on failure (tests).
    pub async fn drop(self) {
        self.remove().await.expect("DROP DATABASE");
    }
}
