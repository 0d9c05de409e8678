//! Redis connection pools for every service that uses Redis (query cache, rate limits,
//! embedding cache): `redis://` or `rediss://` (TLS with rustls) URLs, and for TLS an optional
//! CA file (PEM) instead of the system trust store.

use std::path::Path;
use std::time::Duration;

/// Pool size and timeouts of one Redis pool.
#[derive(Clone, Copy, Debug)]
pub struct PoolSettings {
    pub max_size: usize,
    pub wait: Duration,
    pub create: Duration,
    pub recycle: Duration,
}

/// Checks a Redis URL and its CA file; `field` names the URL setting (`cache.redis_url`),
/// `ca_field` the CA setting (`cache.redis_ca_file`). An empty URL (Redis off) is valid.
pub fn validate(
    field: &str,
    url: &str,
    ca_field: &str,
    ca_file: Option<&Path>,
    errors: &mut Vec<String>,
) {
    if !(url.is_empty() || url.starts_with("redis://") || url.starts_with("rediss://")) {
        errors.push(format!(
            "{field} must start with redis:// or rediss:// (TLS), got {url:?}"
        ));
    }
    if let Some(path) = ca_file {
        if !url.starts_with("rediss://") {
            errors.push(format!(
                "{ca_field} is only used with a rediss:// (TLS) {field}"
            ));
        }
        if !path.is_file() {
            errors.push(format!(
                "{ca_field}: {} is not a readable file",
                path.display()
            ));
        }
    }
}

/// A lazily connecting pool (nothing is dialled until the first command).
pub fn pool(
    url: &str,
    ca_file: Option<&Path>,
    settings: PoolSettings,
) -> anyhow::Result<deadpool_redis::Pool> {
    let manager = match ca_file {
        None => deadpool_redis::Manager::new(url)?,
        Some(path) => {
            let root = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            let client = redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root),
                },
            )?;
            deadpool_redis::Manager::new(client.get_connection_info().clone())?
        }
    };
    Ok(deadpool_redis::Pool::builder(manager)
        .max_size(settings.max_size)
        .wait_timeout(Some(settings.wait))
        .create_timeout(Some(settings.create))
        .recycle_timeout(Some(settings.recycle))
        .runtime(deadpool_redis::Runtime::Tokio1)
        .build()?)
}

/// How `pool` is used now, as the status view shows it under `name` ("redis:query-cache").
pub fn status(name: &str, pool: &deadpool_redis::Pool) -> braid_proto::v1::PoolStatus {
    let s = pool.status();
    let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    braid_proto::v1::PoolStatus {
        name: name.into(),
        max: n(s.max_size),
        idle: n(s.available),
        in_use: n(s.size.saturating_sub(s.available)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(url: &str, ca: Option<&Path>) -> Vec<String> {
        let mut e = Vec::new();
        validate("cache.redis_url", url, "cache.redis_ca_file", ca, &mut e);
        e
    }

    #[test]
    fn urls_and_ca_files_are_checked() {
        assert!(errors("", None).is_empty());
        assert!(errors("redis://r:6379/0", None).is_empty());
        assert!(errors("rediss://r:6380/0", None).is_empty());
        assert_eq!(
            errors("http://r", None),
            ["cache.redis_url must start with redis:// or rediss:// (TLS), got \"http://r\""]
        );
        let ca = std::env::temp_dir().join(format!("braid-redis-ca-{}.pem", std::process::id()));
        std::fs::write(&ca, "pem").unwrap();
        assert!(errors("rediss://r:6380/0", Some(&ca)).is_empty());
        assert_eq!(
            errors("redis://r:6379/0", Some(&ca)),
            ["cache.redis_ca_file is only used with a rediss:// (TLS) cache.redis_url"]
        );
        let missing = Path::new("/nonexistent/ca.pem");
        assert_eq!(
            errors("rediss://r:6380/0", Some(missing)),
            ["cache.redis_ca_file: /nonexistent/ca.pem is not a readable file"]
        );
    }

    #[tokio::test]
    async fn tls_pools_are_built_from_rediss_urls_with_a_ca() {
        let settings = PoolSettings {
            max_size: 2,
            wait: Duration::from_millis(100),
            create: Duration::from_millis(100),
            recycle: Duration::from_millis(100),
        };
        assert!(pool("rediss://127.0.0.1:1/0", None, settings).is_ok());
        let ca = std::env::temp_dir().join(format!("braid-redis-ca2-{}.pem", std::process::id()));
        std::fs::write(&ca, TEST_CA).unwrap();
        assert!(pool("rediss://127.0.0.1:1/0", Some(&ca), settings).is_ok());
        // Lazily: a pool to nowhere is built, and fails only when used.
        let p = pool("redis://127.0.0.1:1/0", None, settings).unwrap();
        assert!(p.get().await.is_err());
    }

    /// A self-signed CA certificate (parsed by the TLS client builder, never connected to).
    const TEST_CA: &str = include_str!("redis_test_ca.pem");
}
