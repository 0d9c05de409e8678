//! What a client's `endpoint` setting names: one URL, or several separated by commas. Each
//! URL's host is an IP address (used as is) or a name (resolved to every address it has).

use std::net::IpAddr;

/// One configured URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// The URL as configured: sent as each request's `:authority` (a mesh or a proxy routes
    /// on the name, not on the address it was resolved to).
    pub origin: http::Uri,
    /// `http` or `https`.
    pub scheme: String,
    pub host: Host,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Host {
    Ip(IpAddr),
    Name(String),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Ip(ip) => ip.fmt(f),
            Host::Name(name) => f.write_str(name),
        }
    }
}

/// Parses `endpoint` (one URL or a comma-separated list); the error names what is wrong.
pub(crate) fn parse(endpoint: &str) -> Result<Vec<Target>, String> {
    let mut targets = Vec::new();
    for raw in endpoint.split(',').map(str::trim) {
        if raw.is_empty() {
            return Err(format!("`{endpoint}` has an empty entry"));
        }
        let origin: http::Uri = raw
            .parse()
            .map_err(|e| format!("`{raw}` is not a URL: {e}"))?;
        let scheme = match origin.scheme_str() {
            Some(s @ ("http" | "https")) => s.to_string(),
            _ => return Err(format!("`{raw}` must start with http:// or https://")),
        };
        let host = origin
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("`{raw}` has no host"))?;
        if !matches!(origin.path(), "" | "/") || origin.query().is_some() {
            return Err(format!("`{raw}` must not have a path"));
        }
        let port = origin
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let host = match bare.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(bare.to_string()),
        };
        targets.push(Target {
            origin,
            scheme,
            host,
            port,
        });
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_addresses_and_lists() {
        let t = parse("http://braid-embedding:50053").unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].host, Host::Name("braid-embedding".into()));
        assert_eq!(t[0].port, 50053);
        let t = parse("http://127.0.0.2:1, http://[::1]:2,https://x").unwrap();
        assert_eq!(t[0].host, Host::Ip("127.0.0.2".parse().unwrap()));
        assert_eq!(t[1].host, Host::Ip("::1".parse().unwrap()));
        assert_eq!((t[1].port, t[2].port), (2, 443));
        assert_eq!(t[2].scheme, "https");
    }

    #[test]
    fn rejects_what_cannot_be_dialled() {
        for bad in [
            "",
            "braid:1",
            "ftp://x:1",
            "http://x:1,",
            "http://x:1/path",
            "http://:1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
