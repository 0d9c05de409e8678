//! Name resolution for client balancing, behind a trait so tests can map one name to several
//! loopback addresses and change the mapping while a client runs.
//!
//! [`SystemResolver`] asks the system resolver (`getaddrinfo` through
//! `tokio::net::lookup_host`), which is what a headless Kubernetes Service needs: its name
//! resolves to one A/AAAA record per ready pod. [`FixedResolver`] answers from a table.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;

/// Resolves a host name to every address serving it.
pub trait Resolve: Send + Sync + 'static {
    /// Every address of `host` with `port`; an error when the name does not resolve.
    fn resolve(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>>;
}

/// The system resolver (`/etc/hosts`, then DNS as `/etc/nsswitch.conf` says).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        let host = host.to_string();
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect())
        })
    }
}

/// The system resolver, shared.
pub fn system() -> Arc<dyn Resolve> {
    Arc::new(SystemResolver)
}

/// Answers from a table of host → addresses that may change at any time (like DNS records:
/// the port comes from the endpoint URL). A name not in the table does not resolve.
#[derive(Clone, Debug, Default)]
pub struct FixedResolver {
    table: Arc<RwLock<HashMap<String, Vec<IpAddr>>>>,
}

impl FixedResolver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the addresses of `host` (an empty list makes it resolve to nothing).
    pub fn set(&self, host: &str, addresses: impl IntoIterator<Item = IpAddr>) {
        self.table
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(host.to_string(), addresses.into_iter().collect());
    }

    /// Removes `host` (it no longer resolves).
    pub fn remove(&self, host: &str) {
        self.table
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(host);
    }
}

impl Resolve for FixedResolver {
    fn resolve(&self, host: &str, port: u16) -> BoxFuture<'static, io::Result<Vec<SocketAddr>>> {
        let answer = self
            .table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(host)
            .map(|ips| {
                ips.iter()
                    .map(|ip| SocketAddr::new(*ip, port))
                    .collect::<Vec<_>>()
            })
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{host} is not in the table"),
                )
            });
        Box::pin(async move { answer })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fixed_resolver_follows_its_table() {
        let r = FixedResolver::new();
        assert!(r.resolve("svc", 1).await.is_err());
        r.set(
            "svc",
            ["127.0.0.2".parse().unwrap(), "::1".parse().unwrap()],
        );
        assert_eq!(
            r.resolve("svc", 7).await.unwrap(),
            vec![
                "127.0.0.2:7".parse::<SocketAddr>().unwrap(),
                "[::1]:7".parse().unwrap()
            ]
        );
        r.remove("svc");
        assert!(r.resolve("svc", 7).await.is_err());
    }

    #[tokio::test]
    async fn system_resolver_resolves_localhost() {
        let addrs = SystemResolver.resolve("localhost", 9).await.unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 9));
        assert!(!addrs.is_empty());
    }
}
