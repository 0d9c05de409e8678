//! User tokens for the gateway: `--token` / `BRAID_TOKEN`, or — when neither is given and the
//! local dev key exists (`$BRAID_HOME/secrets/dev-jwt.key`, written by `make run`) — a
//! short-lived dev admin token minted on the fly. `braidctl token mint` mints any token with
//! the dev key (or `--key FILE`). A key file may be one bare key or a key ring (the gateway's
//! `auth.hs256` format, `braid_core::auth::keys`): tokens are signed with its signing key and
//! carry that key's `kid`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use braid_core::auth::keys::{Key, KeyRing};
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

/// The signing key of the key (ring) file at `path`; a key shorter than 32 bytes is refused.
pub fn read_key(path: &Path) -> anyhow::Result<Key> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading signing key {}", path.display()))?;
    let ring = KeyRing::parse(&text)
        .map_err(|e| anyhow::anyhow!("signing key {}: {e}", path.display()))?;
    Ok(ring.signing().clone())
}

/// An HS256 token for the gateway's default `iss`/`aud` (`braid`), its `kid` the key's.
pub fn mint(key: &Key, grant: &Grant<'_>) -> anyhow::Result<String> {
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
    let mut header = Header::new(Algorithm::HS256);
    header.kid = key.kid.clone();
    Ok(jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(key.secret()),
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

/// What to authenticate with: an explicit token, the local dev key (tokens minted on the fly),
/// or nothing.
pub enum Credential {
    None,
    Token(String),
    DevKey(Key),
}

/// The explicit token, else the dev key when it exists (a dev admin token is minted from it and
/// re-minted before it expires, so long commands such as `ingest --wait` keep working), else
/// none.
pub fn resolve(explicit: Option<&str>) -> anyhow::Result<Credential> {
    if let Some(token) = explicit {
        return Ok(Credential::Token(token.to_string()));
    }
    let path = dev_key_path();
    if !path.exists() {
        return Ok(Credential::None);
    }
    Ok(Credential::DevKey(read_key(&path)?))
}

/// Lifetime of a dev token, and how long before its expiry a fresh one is minted.
const DEV_TTL: Duration = Duration::from_secs(900);
const DEV_RENEW_BEFORE: Duration = Duration::from_secs(120);

fn dev_grant() -> Grant<'static> {
    Grant {
        sub: "braidctl-dev",
        tenant: None,
        role: "admin",
        clearance: u32::MAX,
        groups: &[],
        cross_tenant: true,
        ttl: DEV_TTL,
    }
}

fn header(token: &str) -> anyhow::Result<MetadataValue<Ascii>> {
    format!("Bearer {token}")
        .parse()
        .context("the token is not a valid header value")
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(Source);

#[derive(Clone)]
enum Source {
    None,
    Fixed(MetadataValue<Ascii>),
    Dev {
        key: Arc<Key>,
        current: Arc<Mutex<(MetadataValue<Ascii>, SystemTime)>>,
    },
}

impl Bearer {
    pub fn new(credential: Credential) -> anyhow::Result<Self> {
        Ok(Self(match credential {
            Credential::None => Source::None,
            Credential::Token(token) => Source::Fixed(header(&token)?),
            Credential::DevKey(key) => {
                let minted = (
                    header(&mint(&key, &dev_grant())?)?,
                    SystemTime::now() + DEV_TTL,
                );
                Source::Dev {
                    key: Arc::new(key),
                    current: Arc::new(Mutex::new(minted)),
                }
            }
        }))
    }

    /// The header value to send now (a dev token close to expiry is replaced first).
    fn value(&self) -> Result<Option<MetadataValue<Ascii>>, Status> {
        match &self.0 {
            Source::None => Ok(None),
            Source::Fixed(value) => Ok(Some(value.clone())),
            Source::Dev { key, current } => {
                let mut current = current
                    .lock()
                    .map_err(|_| Status::internal("dev token lock poisoned"))?;
                if current.1 <= SystemTime::now() + DEV_RENEW_BEFORE {
                    let token = mint(key, &dev_grant())
                        .and_then(|t| header(&t))
                        .map_err(|e| Status::internal(format!("minting a dev token: {e}")))?;
                    *current = (token, SystemTime::now() + DEV_TTL);
                }
                Ok(Some(current.0.clone()))
            }
        }
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = self.value()? {
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_KEY: &str = "braidctl-unit-test-key-0123456789ab";

    fn test_key() -> Key {
        KeyRing::parse(TEST_KEY).unwrap().signing().clone()
    }

    #[test]
    fn key_rings_sign_with_their_signing_key_and_short_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring");
        let other = "braidctl-unit-test-key-other-012345";
        std::fs::write(
            &path,
            format!("signing = \"new\"\n[keys]\nold = \"{other}\"\nnew = \"{TEST_KEY}\"\n"),
        )
        .unwrap();
        let key = read_key(&path).unwrap();
        assert_eq!(key.kid.as_deref(), Some("new"));
        let grant = Grant {
            sub: "a",
            tenant: Some("t"),
            role: "reader",
            clearance: 0,
            groups: &[],
            cross_tenant: false,
            ttl: Duration::from_secs(60),
        };
        let token = mint(&key, &grant).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some("new"));
        std::fs::write(&path, "change-me-jwt").unwrap();
        let err = read_key(&path).unwrap_err().to_string();
        assert!(err.contains("at least 32"), "{err}");
    }

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
            &test_key(),
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
            &jsonwebtoken::DecodingKey::from_secret(TEST_KEY.as_bytes()),
            &validation,
        )
        .unwrap();
        assert_eq!(data.claims["tenant"], "acme");
        assert_eq!(data.claims["groups"][0], "physics");
        assert_eq!(data.claims["clearance"], 2);
    }

    fn exp_of(value: &MetadataValue<Ascii>) -> u64 {
        let token = value.to_str().unwrap().strip_prefix("Bearer ").unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
        validation.set_audience(&["braid"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(
            token,
            &jsonwebtoken::DecodingKey::from_secret(TEST_KEY.as_bytes()),
            &validation,
        )
        .unwrap();
        data.claims["exp"].as_u64().unwrap()
    }

    #[test]
    fn dev_tokens_are_reminted_before_they_expire() {
        let bearer = Bearer::new(Credential::DevKey(test_key())).unwrap();
        let Source::Dev { current, .. } = &bearer.0 else {
            panic!("a dev key gives a dev source");
        };
        let first = bearer.value().unwrap().unwrap();
        // Still fresh: the same token is reused.
        assert_eq!(bearer.value().unwrap().unwrap(), first);
        // About to expire (as after a long `ingest --wait`): a new one with a later exp.
        let stale = SystemTime::now() + DEV_RENEW_BEFORE / 2;
        current.lock().unwrap().1 = stale;
        let renewed = bearer.value().unwrap().unwrap();
        let renewed_until = current.lock().unwrap().1;
        assert!(
            renewed_until > stale + DEV_TTL / 2,
            "the dev token was not re-minted"
        );
        let now_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(exp_of(&renewed) + 5 >= now_secs + DEV_TTL.as_secs());
        assert_eq!(current.lock().unwrap().0, renewed);
    }

    #[test]
    fn explicit_tokens_are_sent_as_given() {
        let bearer = Bearer::new(Credential::Token("abc".into())).unwrap();
        assert_eq!(bearer.value().unwrap().unwrap(), "Bearer abc");
        assert!(
            Bearer::new(Credential::None)
                .unwrap()
                .value()
                .unwrap()
                .is_none()
        );
    }
}
