//! User tokens for the gateway: `--token` / `BRAID_TOKEN`, or — when neither is given and the
//! local dev key exists (`$BRAID_HOME/secrets/dev-jwt.key`, written by `make run`) — a
//! short-lived dev admin token minted on the fly. `braidctl token mint` mints any token with
//! the dev key (or `--key FILE`).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use braid_proto::tonic::metadata::{Ascii, MetadataValue};
use braid_proto::tonic::service::Interceptor;
use braid_proto::tonic::{Request, Status};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// What a minted token says.
pub struct Grant<'a> {
    pub sub: &'a str,
    pub tenant: Option<&'a str>,
    pub role: &'a str,
    pub clearance: u32,
    pub groups: &'a [String],
    pub cross_tenant: bool,
    pub ttl: Duration,
}

/// The dev signing key written by `make run`.
pub fn dev_key_path() -> PathBuf {
    let home =
        std::env::var_os("BRAID_HOME").map_or_else(|| PathBuf::from(".braid"), PathBuf::from);
    home.join("secrets").join("dev-jwt.key")
}

pub fn read_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    let key = std::fs::read_to_string(path)
        .with_context(|| format!("reading signing key {}", path.display()))?;
    let key = key.trim();
    anyhow::ensure!(!key.is_empty(), "signing key {} is empty", path.display());
    Ok(key.as_bytes().to_vec())
}

/// An HS256 token for the gateway's default `iss`/`aud` (`braid`).
pub fn mint(key: &[u8], grant: &Grant<'_>) -> anyhow::Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut claims = serde_json::json!({
        "sub": grant.sub,
        "role": grant.role,
        "clearance": grant.clearance,
        "groups": grant.groups,
        "iss": "braid",
        "aud": "braid",
        "iat": now,
        "nbf": now,
        "exp": now + grant.ttl.as_secs(),
    });
    if let Some(tenant) = grant.tenant {
        claims["tenant"] = tenant.into();
    }
    if grant.cross_tenant {
        claims["braid_cross_tenant"] = true.into();
    }
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(key),
    )?)
}

/// `30s`, `15m`, `8h`, `2d`.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 30s, 15m, 8h, 2d"))?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("`{s}`: unit must be s, m, h or d")),
    };
    if secs == 0 {
        return Err("the ttl must be positive".into());
    }
    Ok(Duration::from_secs(secs))
}

/// The token to send: the explicit one, else a 15-minute dev admin token when the dev key
/// exists, else none.
pub fn resolve(explicit: Option<&str>) -> anyhow::Result<Option<String>> {
    if let Some(token) = explicit {
        return Ok(Some(token.to_string()));
    }
    let path = dev_key_path();
    if !path.exists() {
        return Ok(None);
    }
    let grant = Grant {
        sub: "braidctl-dev",
        tenant: None,
        role: "admin",
        clearance: u32::MAX,
        groups: &[],
        cross_tenant: true,
        ttl: Duration::from_secs(900),
    };
    Ok(Some(mint(&read_key(&path)?, &grant)?))
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    pub fn new(token: Option<&str>) -> anyhow::Result<Self> {
        Ok(Self(
            token
                .map(|t| format!("Bearer {t}").parse())
                .transpose()
                .context("the token is not a valid header value")?,
        ))
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("8h").unwrap(), Duration::from_secs(8 * 3600));
        assert_eq!(parse_ttl("15m").unwrap(), Duration::from_secs(900));
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("8x").is_err());
        assert!(parse_ttl("h").is_err());
    }

    #[test]
    fn minted_tokens_carry_the_grant() {
        let groups = vec!["physics".to_string()];
        let token = mint(
            b"k",
            &Grant {
                sub: "alice",
                tenant: Some("acme"),
                role: "reader",
                clearance: 2,
                groups: &groups,
                cross_tenant: false,
                ttl: Duration::from_secs(60),
            },
        )
        .unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
        validation.set_audience(&["braid"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(b"k"),
            &validation,
        )
        .unwrap();
        assert_eq!(data.claims["tenant"], "acme");
        assert_eq!(data.claims["groups"][0], "physics");
        assert_eq!(data.claims["clearance"], 2);
    }
}
