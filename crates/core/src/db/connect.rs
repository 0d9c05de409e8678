//! Connection options and pools from a [`DatabaseConfig`]: TLS (rustls) and the pooler mode.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};

use super::config::{DatabaseConfig, Pooler, SslMode};
use super::exec::Db;

/// Connection options for `url` with the config's TLS settings and `application_name`.
pub fn connect_options(
    config: &DatabaseConfig,
    url: &str,
    application_name: &str,
) -> Result<PgConnectOptions, sqlx::Error> {
    let mut options: PgConnectOptions = url.parse()?;
    options = options.application_name(application_name);
    if let Some(mode) = config.ssl_mode {
        options = options.ssl_mode(match mode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require => PgSslMode::Require,
            SslMode::VerifyCa => PgSslMode::VerifyCa,
            SslMode::VerifyFull => PgSslMode::VerifyFull,
        });
    }
    if let Some(root) = &config.ssl_root_cert {
        options = options.ssl_root_cert(root);
    }
    if config.pooler == Pooler::Transaction {
        // Statements are unnamed (see `exec`); nothing to cache per connection.
        options = options.statement_cache_capacity(0);
    }
    Ok(options)
}

/// A lazily connecting pool on `config.url` (the primary), for `application_name`.
pub fn primary(config: &DatabaseConfig, application_name: &str) -> Result<Db, sqlx::Error> {
    primary_with(config, application_name, &[])
}

/// A lazily connecting pool on `config.read_url`, when one is configured.
pub fn replica(config: &DatabaseConfig, application_name: &str) -> Result<Option<Db>, sqlx::Error> {
    replica_with(config, application_name, &[])
}

/// [`primary`] whose connections start with the session `settings` (`-c name=value` in the
/// start-up packet: no round trip of their own). Without a pooler only: a transaction-mode
/// pooler shares its server connections between clients, so a session setting would reach
/// every client (and PgBouncer refuses the `options` start-up parameter); there the
/// settings are left out.
pub fn primary_with(
    config: &DatabaseConfig,
    application_name: &str,
    settings: &[(&str, &str)],
) -> Result<Db, sqlx::Error> {
    pool_on(config, &config.url, application_name, settings)
}

/// [`replica`] with the session `settings` of [`primary_with`].
pub fn replica_with(
    config: &DatabaseConfig,
    application_name: &str,
    settings: &[(&str, &str)],
) -> Result<Option<Db>, sqlx::Error> {
    config
        .read_url
        .as_deref()
        .map(|url| pool_on(config, url, application_name, settings))
        .transpose()
}

fn pool_on(
    config: &DatabaseConfig,
    url: &str,
    application_name: &str,
    settings: &[(&str, &str)],
) -> Result<Db, sqlx::Error> {
    let mut options = connect_options(config, url, application_name)?;
    if config.pooler == Pooler::None && !settings.is_empty() {
        options = options.options(settings.iter().copied());
    }
    let pool = PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout())
        .connect_lazy_with(options);
    Ok(Db::new(pool, config.pooler))
}

/// Runs `migrator` over a direct connection (`migrate_url`, else `url`): migrations take a
/// session-level advisory lock, which a transaction-mode pooler cannot hold.
pub async fn migrate(
    config: &DatabaseConfig,
    application_name: &str,
    migrator: &sqlx::migrate::Migrator,
) -> anyhow::Result<()> {
    let url = config.migrate_url.as_deref().unwrap_or(&config.url);
    let direct = DatabaseConfig {
        pooler: Pooler::None,
        ..config.clone()
    };
    let options = connect_options(&direct, url, application_name)?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(config.acquire_timeout())
        .connect_with(options)
        .await?;
    let result = migrator.run(&pool).await;
    pool.close().await;
    Ok(result?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_and_pooler_settings_reach_the_connect_options() {
        let config = DatabaseConfig {
            ssl_mode: Some(SslMode::VerifyFull),
            ssl_root_cert: Some("/etc/braid/ca.pem".into()),
            pooler: Pooler::Transaction,
            ..Default::default()
        };
        let o = connect_options(&config, "postgres://u@db.example:6432/braid", "braid-x").unwrap();
        assert!(matches!(o.get_ssl_mode(), PgSslMode::VerifyFull));
        assert_eq!(o.get_host(), "db.example");
        assert_eq!(o.get_port(), 6432);
        assert_eq!(o.get_application_name(), Some("braid-x"));
        // Unset: the URL's own sslmode is kept.
        let o = connect_options(
            &DatabaseConfig::default(),
            "postgres://u@h/db?sslmode=require",
            "braid-x",
        )
        .unwrap();
        assert!(matches!(o.get_ssl_mode(), PgSslMode::Require));
        let o = connect_options(&DatabaseConfig::default(), "postgres://u@h/db", "x").unwrap();
        assert!(matches!(o.get_ssl_mode(), PgSslMode::Prefer));
    }
}
