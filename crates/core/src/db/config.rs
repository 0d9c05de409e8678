//! `[database]`: where a service's PostgreSQL is, how it is reached (TLS, a transaction-mode
//! pooler such as PgBouncer in front of it) and, for vector-search, the read replica.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::positive;

/// A PostgreSQL connection pool.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:port/database`; prefer the environment for secrets.
    pub url: String,
    /// Connections in the pool.
    pub max_connections: u32,
    /// Longest wait for a free connection before the call fails.
    pub acquire_timeout_ms: u64,
    /// Run the service's schema migrations at start-up.
    pub migrate: bool,
    /// A direct connection (not through a pooler) for migrations, which hold a session-level
    /// advisory lock; default: `url`. Required with `pooler = "transaction"` and `migrate`.
    pub migrate_url: Option<String>,
    /// `none`: `url` is PostgreSQL itself (or a session-mode pooler). `transaction`: `url` is
    /// a transaction-mode pooler (PgBouncer `pool_mode = transaction`): no named prepared
    /// statements, every statement in a transaction of its own.
    pub pooler: Pooler,
    /// TLS to PostgreSQL (`disable`, `prefer`, `require`, `verify-ca`, `verify-full`); unset:
    /// the URL's `sslmode`, else `prefer`.
    pub ssl_mode: Option<SslMode>,
    /// PEM file of the CA(s) that sign the server certificate (`verify-ca`, `verify-full`);
    /// unset: the public web PKI roots.
    pub ssl_root_cert: Option<PathBuf>,
    /// vector-search only: a streaming replica that serves searches while it is up and no
    /// more than `max_replica_lag_ms` behind the primary (`url`); writes always go to `url`.
    pub read_url: Option<String>,
    /// Replication lag beyond which searches read from the primary.
    pub max_replica_lag_ms: u64,
    /// How often the replica's health and lag are checked (in the background, not per query).
    pub replica_check_interval_ms: u64,
}

/// What sits between the service and PostgreSQL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooler {
    #[default]
    None,
    Transaction,
}

/// libpq's `sslmode` values (without `allow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "postgres://braid@127.0.0.1:54329/braid".into(),
            max_connections: 16,
            acquire_timeout_ms: 3_000,
            migrate: true,
            migrate_url: None,
            pooler: Pooler::None,
            ssl_mode: None,
            ssl_root_cert: None,
            read_url: None,
            max_replica_lag_ms: 5_000,
            replica_check_interval_ms: 1_000,
        }
    }
}

fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The `sslmode` query parameter of a URL, if any.
fn url_sslmode(url: &str) -> Option<&str> {
    let (_, query) = url.split_once('?')?;
    query.split('&').find_map(|kv| kv.strip_prefix("sslmode="))
}

impl DatabaseConfig {
    /// Checks every field; `section` names the table in messages (`database`, `audit.database`).
    pub fn validate_section(&self, section: &str, errors: &mut Vec<String>) {
        if !is_postgres_url(&self.url) {
            errors.push(format!("{section}.url must be a postgres:// URL"));
        }
        for (name, url) in [
            ("migrate_url", &self.migrate_url),
            ("read_url", &self.read_url),
        ] {
            if let Some(url) = url
                && !is_postgres_url(url)
            {
                errors.push(format!("{section}.{name} must be a postgres:// URL"));
            }
        }
        positive(
            errors,
            &format!("{section}.max_connections"),
            self.max_connections as u64,
        );
        positive(
            errors,
            &format!("{section}.acquire_timeout_ms"),
            self.acquire_timeout_ms,
        );
        positive(
            errors,
            &format!("{section}.replica_check_interval_ms"),
            self.replica_check_interval_ms,
        );
        if self.pooler == Pooler::Transaction && self.migrate && self.migrate_url.is_none() {
            errors.push(format!(
                "{section}.migrate_url is required with pooler = \"transaction\" and migrate = true \
                 (migrations hold a session lock: give a direct connection, or set migrate = false)"
            ));
        }
        if let Some(mode) = self.ssl_mode {
            for (name, url) in [
                ("url", Some(&self.url)),
                ("read_url", self.read_url.as_ref()),
            ] {
                if let Some(given) = url.and_then(|u| url_sslmode(u))
                    && given != mode.as_str()
                {
                    errors.push(format!(
                        "{section}.{name} says sslmode={given} but {section}.ssl_mode is {}: keep one",
                        mode.as_str()
                    ));
                }
            }
        }
        if let Some(path) = &self.ssl_root_cert {
            if !self.ssl_mode.is_some_and(SslMode::verifies) {
                errors.push(format!(
                    "{section}.ssl_root_cert is only used with ssl_mode = \"verify-ca\" or \"verify-full\""
                ));
            }
            if !path.is_file() {
                errors.push(format!(
                    "{section}.ssl_root_cert: {} is not a readable file",
                    path.display()
                ));
            }
        }
    }

    /// [`DatabaseConfig::validate_section`] for `[database]`.
    pub fn validate(&self, errors: &mut Vec<String>) {
        self.validate_section("database", errors);
    }

    /// For services that read their own writes: a replica is an error, not silently unused.
    pub fn reject_replica(&self, section: &str, errors: &mut Vec<String>) {
        if self.read_url.is_some() {
            errors.push(format!(
                "{section}.read_url: only vector-search reads from a replica; this service reads \
                 its own writes from the primary"
            ));
        }
    }

    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }

    pub fn max_replica_lag(&self) -> Duration {
        Duration::from_millis(self.max_replica_lag_ms)
    }

    pub fn replica_check_interval(&self) -> Duration {
        Duration::from_millis(self.replica_check_interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(c: &DatabaseConfig) -> Vec<String> {
        let mut e = Vec::new();
        c.validate(&mut e);
        e
    }

    #[test]
    fn defaults_are_valid() {
        assert!(errors(&DatabaseConfig::default()).is_empty());
    }

    #[test]
    fn transaction_pooler_needs_a_direct_url_for_migrations() {
        let mut c = DatabaseConfig {
            pooler: Pooler::Transaction,
            ..Default::default()
        };
        let e = errors(&c);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("database.migrate_url is required"),
            "{e:?}"
        );
        c.migrate_url = Some("postgres://braid@127.0.0.1:54329/braid".into());
        assert!(errors(&c).is_empty());
        c.migrate_url = None;
        c.migrate = false;
        assert!(errors(&c).is_empty());
    }

    #[test]
    fn tls_settings_are_checked_together() {
        let c = DatabaseConfig {
            url: "postgres://h/db?sslmode=require".into(),
            ssl_mode: Some(SslMode::VerifyFull),
            ssl_root_cert: Some("/nonexistent/ca.pem".into()),
            read_url: Some("mysql://replica".into()),
            ..Default::default()
        };
        let e = errors(&c);
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(
            e.iter()
                .any(|m| m.contains("read_url must be a postgres://"))
        );
        assert!(
            e.iter()
                .any(|m| m.contains("sslmode=require but database.ssl_mode is verify-full"))
        );
        assert!(
            e.iter()
                .any(|m| m.contains("/nonexistent/ca.pem is not a readable file"))
        );

        let file = tempfile_path();
        let c = DatabaseConfig {
            ssl_mode: Some(SslMode::Require),
            ssl_root_cert: Some(file.clone()),
            ..Default::default()
        };
        assert_eq!(
            errors(&c),
            [
                "database.ssl_root_cert is only used with ssl_mode = \"verify-ca\" or \"verify-full\""
            ]
        );
        let c = DatabaseConfig {
            ssl_mode: Some(SslMode::VerifyCa),
            ssl_root_cert: Some(file),
            ..Default::default()
        };
        assert!(errors(&c).is_empty());
    }

    #[test]
    fn ssl_mode_names_are_libpq_s() {
        #[derive(Deserialize)]
        struct T {
            m: SslMode,
        }
        for (name, mode) in [
            ("disable", SslMode::Disable),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            let t: T = toml::from_str(&format!("m = \"{name}\"")).unwrap();
            assert_eq!(t.m, mode);
            assert_eq!(mode.as_str(), name);
        }
        assert!(toml::from_str::<T>("m = \"allow\"").is_err());
    }

    #[test]
    fn a_replica_is_rejected_where_it_would_be_ignored() {
        let c = DatabaseConfig {
            read_url: Some("postgres://replica/db".into()),
            ..Default::default()
        };
        let mut e = Vec::new();
        c.reject_replica("audit.database", &mut e);
        assert!(
            e[0].starts_with("audit.database.read_url: only vector-search"),
            "{e:?}"
        );
    }

    fn tempfile_path() -> PathBuf {
        let path = std::env::temp_dir().join(format!("braid-ca-{}.pem", std::process::id()));
        std::fs::write(&path, "not checked here").unwrap();
        path
    }
}
