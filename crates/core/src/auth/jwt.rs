//! User tokens: configuration (`auth.*`), verification and the mapping from claims to a
//! [`Principal`].
//!
//! Accepted: HS256 with a key of the configured key ring (selected by the token's `kid`, see
//! [`super::keys`]; the file is re-read on change), RS256/ES256 with a key from the JWKS
//! (pinned per key type, see [`super::jwks`]). Everything else — `alg: none`, HS384, an HS256
//! token when no secret is configured, an RS256 header on an EC key — is refused before any
//! signature check, so a public key can never be used as an HMAC secret.
//!
//! Lifetime: a token living longer than `auth.max_token_ttl_secs` (`exp - iat`, or
//! `exp - now` without `iat`) is refused, and so is one issued in the future. Revocation: a
//! token issued before its subject's cut-off ([`super::revocation`]) is refused, on every call.
//!
//! A verified token is remembered for a short while ([`super::verified`]): the same token sent
//! again skips the signature check and the claims, never the revocation check.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use super::jwks::{Jwks, JwksSource};
use super::keys::WatchedKeys;
use super::revocation::Revocations;
use super::secret::KeySource;
use super::verified::{self, VerifiedTokens};
use super::{Access, CallerKind, Principal, Role};
use crate::config::positive;

/// Most groups a token may carry.
pub const MAX_GROUPS: usize = 256;
/// Longest group name a token may carry, in bytes.
pub const MAX_GROUP_BYTES: usize = 256;
/// Largest token accepted (header value).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Default of `auth.max_token_ttl_secs`: a working day and then some (24 h).
pub const DEFAULT_MAX_TOKEN_TTL_SECS: u64 = 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// `authorization: Bearer <JWT>` required on every public RPC.
    Jwt,
    /// Everyone is [`Principal::anonymous`] (local experiments only).
    Disabled,
}

/// User authentication at the gateway (`BRAID_GATEWAY__AUTH__*`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Whether user tokens are required.
    pub mode: AuthMode,
    /// HS256 key or key ring (every key at least 32 bytes; see `auth::keys`); unset = HS256
    /// tokens are refused.
    pub hs256: KeySource,
    /// How often an `hs256.file` is re-read; a changed ring is used from then on.
    pub key_reload_ms: u64,
    /// Longest lifetime a token may have: `exp - iat`, or `exp - now` when it has no `iat`.
    /// Longer-lived tokens are refused whoever signed them.
    pub max_token_ttl_secs: u64,
    /// RS256/ES256 public keys as a JWKS file...
    pub jwks_file: Option<PathBuf>,
    /// ...or URL (`https://`, or `http://` for a local identity provider).
    pub jwks_url: Option<String>,
    /// How often the JWKS is re-read.
    pub jwks_refresh_secs: u64,
    /// Least time between two reads prompted by unknown `kid`s.
    pub jwks_min_refresh_secs: u64,
    /// Required `iss`; empty = not checked.
    pub issuer: String,
    /// Required `aud`; empty = not checked.
    pub audience: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::Jwt,
            hs256: KeySource::default(),
            key_reload_ms: super::internal::DEFAULT_KEY_RELOAD_MS,
            max_token_ttl_secs: DEFAULT_MAX_TOKEN_TTL_SECS,
            jwks_file: None,
            jwks_url: None,
            jwks_refresh_secs: 300,
            jwks_min_refresh_secs: 10,
            issuer: "braid".into(),
            audience: "braid".into(),
            leeway_secs: 30,
        }
    }
}

impl AuthConfig {
    pub fn disabled() -> Self {
        Self {
            mode: AuthMode::Disabled,
            ..Self::default()
        }
    }

    pub fn validate(&self, errors: &mut Vec<String>) {
        if self.mode == AuthMode::Disabled {
            return;
        }
        if !self.hs256.is_configured() && self.jwks_file.is_none() && self.jwks_url.is_none() {
            errors.push(
                "auth.mode = \"jwt\" needs a key: auth.hs256.value, auth.hs256.file, \
                 auth.jwks_file or auth.jwks_url"
                    .into(),
            );
        }
        if self.hs256.is_configured() {
            let before = errors.len();
            self.hs256.validate("auth.hs256", errors);
            if errors.len() == before
                && let Err(e) = WatchedKeys::load(&self.hs256, "auth.hs256")
            {
                errors.push(e);
            }
        }
        positive(errors, "auth.key_reload_ms", self.key_reload_ms);
        positive(errors, "auth.max_token_ttl_secs", self.max_token_ttl_secs);
        if self.jwks_file.is_some() && self.jwks_url.is_some() {
            errors.push("auth: set auth.jwks_file or auth.jwks_url, not both".into());
        }
        if let Some(url) = &self.jwks_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            errors.push("auth.jwks_url must start with https:// or http://".into());
        }
        positive(errors, "auth.jwks_refresh_secs", self.jwks_refresh_secs);
        positive(
            errors,
            "auth.jwks_min_refresh_secs",
            self.jwks_min_refresh_secs,
        );
    }
}

/// Why a token was refused; the message goes to the client as UNAUTHENTICATED.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing credentials: send `authorization: Bearer <token>`")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    #[error("token refused: {0}")]
    Claims(String),
}

impl From<AuthError> for tonic::Status {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing | AuthError::Invalid(_) | AuthError::Claims(_) => {
                tonic::Status::unauthenticated(e.to_string())
            }
        }
    }
}

/// The claims Braid reads; others are ignored.
#[derive(Debug, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    #[serde(default)]
    pub clearance: Option<u32>,
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    /// Acts in any tenant; honoured only with the admin role.
    #[serde(default)]
    pub braid_cross_tenant: Option<bool>,
    /// Issued at (seconds since the Unix epoch): lifetime and revocation checks.
    #[serde(default)]
    pub iat: Option<u64>,
    /// Required by the verifier before the claims are read.
    #[serde(default)]
    pub exp: u64,
}

impl Claims {
    /// The principal these (already verified) claims describe.
    pub fn into_principal(self) -> Result<Principal, AuthError> {
        if self.sub.is_empty() || self.sub.len() > 256 {
            return Err(AuthError::Claims("`sub` must be 1..=256 bytes".into()));
        }
        let role = self
            .role
            .iter()
            .chain(self.roles.iter().flatten())
            .filter_map(|r| Role::parse(r))
            .max()
            .ok_or_else(|| {
                AuthError::Claims("no known role in `role`/`roles` (reader, writer, admin)".into())
            })?;
        let cross_tenant = role == Role::Admin && self.braid_cross_tenant == Some(true);
        let tenant = if cross_tenant {
            None
        } else {
            let tenant = self
                .tenant
                .filter(|t| !t.is_empty())
                .ok_or_else(|| AuthError::Claims("missing `tenant` claim".into()))?;
            crate::validate::tenant(&tenant)
                .map_err(|e| AuthError::Claims(format!("`tenant` claim: {}", e.message)))?;
            Some(tenant)
        };
        let groups = self.groups.unwrap_or_default();
        // Group names become ACL matches, cache keys and log fields: whole, printable names only.
        for (i, g) in groups.iter().enumerate() {
            if g.is_empty() || g.len() > MAX_GROUP_BYTES || g.chars().any(char::is_control) {
                return Err(AuthError::Claims(format!(
                    "`groups[{i}]` must be 1..={MAX_GROUP_BYTES} bytes without control characters"
                )));
            }
        }
        let groups: BTreeSet<String> = groups.into_iter().collect();
        if groups.len() > MAX_GROUPS {
            return Err(AuthError::Claims(format!(
                "`groups` has {} entries, at most {MAX_GROUPS}",
                groups.len()
            )));
        }
        Ok(Principal {
            subject: self.sub,
            kind: CallerKind::User,
            role,
            access: Access {
                tenant,
                clearance: self.clearance.unwrap_or(0),
                groups,
                unrestricted: false,
            },
        })
    }
}

/// Verifies user tokens.
pub struct JwtVerifier {
    hs256: Option<Arc<WatchedKeys>>,
    jwks: Option<Arc<Jwks>>,
    issuer: String,
    audience: String,
    leeway: u64,
    max_ttl: u64,
    revocations: Option<Arc<Revocations>>,
    verified: VerifiedTokens,
    _refresh: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for JwtVerifier {
    fn drop(&mut self) {
        for task in &self._refresh {
            task.abort();
        }
    }
}

/// Refuses a token living longer than `max_ttl` or issued in the future (beyond `leeway`).
fn check_lifetime(
    iat: Option<u64>,
    exp: u64,
    now: u64,
    max_ttl: u64,
    leeway: u64,
) -> Result<(), AuthError> {
    let lifetime = match iat {
        Some(iat) if iat > now.saturating_add(leeway) => {
            return Err(AuthError::Claims("`iat` is in the future".into()));
        }
        Some(iat) => exp.saturating_sub(iat),
        None => exp.saturating_sub(now),
    };
    if lifetime > max_ttl {
        return Err(AuthError::Claims(format!(
            "token lifetime {lifetime} s exceeds the maximum of {max_ttl} s \
             (auth.max_token_ttl_secs)"
        )));
    }
    Ok(())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl JwtVerifier {
    /// Loads the keys (an HS256 key file is then re-read every `auth.key_reload_ms`); a
    /// configured but empty or unreadable key source, or a key shorter than 32 bytes, is an
    /// error.
    pub async fn from_config(config: &AuthConfig) -> Result<Self, String> {
        let mut tasks = Vec::new();
        let hs256 = if config.hs256.is_configured() {
            let ring = WatchedKeys::load(&config.hs256, "auth.hs256")?;
            tasks.extend(ring.spawn_reload(Duration::from_millis(config.key_reload_ms.max(1))));
            Some(ring)
        } else {
            None
        };
        let source = match (&config.jwks_file, &config.jwks_url) {
            (Some(f), _) => Some(JwksSource::File(f.clone())),
            (None, Some(u)) => Some(JwksSource::Url(u.clone())),
            (None, None) => None,
        };
        let jwks = match source {
            Some(source) => {
                let jwks = Jwks::load(source, Duration::from_secs(config.jwks_min_refresh_secs))
                    .await
                    .map_err(|e| format!("auth JWKS: {e}"))?;
                tasks.push(jwks.spawn_refresh(Duration::from_secs(config.jwks_refresh_secs)));
                Some(jwks)
            }
            None => None,
        };
        if hs256.is_none() && jwks.is_none() {
            return Err("auth: no verification key configured".into());
        }
        Ok(Self {
            hs256,
            jwks,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway: config.leeway_secs,
            max_ttl: config.max_token_ttl_secs,
            revocations: None,
            verified: VerifiedTokens::default(),
            _refresh: tasks,
        })
    }

    /// Also refuses tokens issued before their subject's cut-off in `revocations`.
    pub fn with_revocations(mut self, revocations: Arc<Revocations>) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// The HS256 key ring (`None` without HS256 keys).
    pub fn hs256_keys(&self) -> Option<Arc<WatchedKeys>> {
        self.hs256.clone()
    }

    /// The principal of a verified `token`.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_at(token, unix_now()).await
    }

    /// [`Self::verify`] at `now` (seconds since the Unix epoch): from the verified-token cache
    /// when it holds `token`, else checked in full (and remembered); revocation either way.
    async fn verify_at(&self, token: &str, now: u64) -> Result<Principal, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Invalid("token too large"));
        }
        let key = verified::key(token);
        let generation = self.hs256.as_ref().map_or(0, |ring| ring.generation());
        let (principal, iat) = match self.verified.get(&key, now, generation) {
            Some(hit) => hit,
            None => {
                let (principal, iat, exp) = self.verify_in_full(token, now).await?;
                self.verified
                    .put(key, &principal, iat, exp, now, generation);
                (principal, iat)
            }
        };
        if let Some(revocations) = &self.revocations {
            revocations.check(principal.access.tenant.as_deref(), &principal.subject, iat)?;
        }
        Ok(principal)
    }

    /// Checks `token` in full at `now` (header, key, signature, claims, lifetime; not
    /// revocation): its principal, `iat` and `exp`.
    async fn verify_in_full(
        &self,
        token: &str,
        now: u64,
    ) -> Result<(Principal, Option<u64>, u64), AuthError> {
        let (alg, kid) = read_header(token)?;
        let (keys, algorithm) = match alg.as_str() {
            "none" | "None" | "NONE" => {
                return Err(AuthError::Invalid("unsigned tokens (alg none) are refused"));
            }
            "HS256" => match &self.hs256 {
                Some(ring) => {
                    let ring = ring.current();
                    let keys: Vec<DecodingKey> = ring
                        .candidates(kid.as_deref())
                        .into_iter()
                        .map(|k| DecodingKey::from_secret(k.secret()))
                        .collect();
                    if keys.is_empty() {
                        return Err(AuthError::Invalid("unknown signing key (kid)"));
                    }
                    (keys, Algorithm::HS256)
                }
                None => return Err(AuthError::Invalid("HS256 tokens are not accepted here")),
            },
            "RS256" | "ES256" => {
                let Some(jwks) = &self.jwks else {
                    return Err(AuthError::Invalid(
                        "RS256/ES256 tokens are not accepted here",
                    ));
                };
                let found = jwks
                    .key(kid.as_deref())
                    .await
                    .ok_or(AuthError::Invalid("unknown signing key (kid)"))?;
                let wanted = if alg == "RS256" {
                    Algorithm::RS256
                } else {
                    Algorithm::ES256
                };
                if found.algorithm != wanted {
                    return Err(AuthError::Invalid("algorithm does not match the key type"));
                }
                (vec![found.key], found.algorithm)
            }
            _ => return Err(AuthError::Invalid("signing algorithm not accepted")),
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if self.issuer.is_empty() {
            validation.iss = None;
        } else {
            validation.set_issuer(&[&self.issuer]);
            required.push("iss");
        }
        if self.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&[&self.audience]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        // A token without a `kid` is tried with every key of the ring: the first that
        // verifies it wins; otherwise the error of the last one is the answer.
        let mut outcome = Err(AuthError::Invalid("bad signature"));
        for key in &keys {
            outcome = jsonwebtoken::decode::<Claims>(token, key, &validation)
                .map_err(|e| AuthError::Invalid(reason(e.kind())));
            if !matches!(outcome, Err(AuthError::Invalid("bad signature"))) {
                break;
            }
        }
        let claims = outcome?.claims;
        // `exp` again, at `now` (the library reads the system clock).
        if claims.exp.saturating_add(self.leeway) < now {
            return Err(AuthError::Invalid("token expired"));
        }
        check_lifetime(claims.iat, claims.exp, now, self.max_ttl, self.leeway)?;
        let (iat, exp) = (claims.iat, claims.exp);
        Ok((claims.into_principal()?, iat, exp))
    }
}

/// `alg` and `kid` of the token header, read without trusting anything else in it.
fn read_header(token: &str) -> Result<(String, Option<String>), AuthError> {
    #[derive(Deserialize)]
    struct Header {
        alg: String,
        #[serde(default)]
        kid: Option<String>,
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Invalid(
            "not a JWT (expected three dot-separated parts)",
        ));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .map_err(|_| AuthError::Invalid("header is not base64url"))?;
    let header: Header =
        serde_json::from_slice(&bytes).map_err(|_| AuthError::Invalid("header is not JSON"))?;
    Ok((header.alg, header.kid))
}

fn reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not yet valid (nbf)",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAudience => "wrong audience (aud)",
        ErrorKind::InvalidIssuer => "wrong issuer (iss)",
        ErrorKind::MissingRequiredClaim(c) => match c.as_str() {
            "exp" => "missing claim exp",
            "sub" => "missing claim sub",
            "iss" => "missing claim iss",
            "aud" => "missing claim aud",
            _ => "missing required claim",
        },
        ErrorKind::InvalidAlgorithm => "algorithm does not match the key",
        ErrorKind::Json(_) => "claims are malformed",
        _ => "malformed token",
    }
}

/// The token of an `authorization: Bearer <token>` header value.
pub fn bearer(value: Option<&http::HeaderValue>) -> Result<&str, AuthError> {
    let value = value.ok_or(AuthError::Missing)?;
    let value = value
        .to_str()
        .map_err(|_| AuthError::Invalid("authorization header is not ASCII"))?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Invalid(
        "authorization header must be `Bearer <token>`",
    ))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Invalid(
            "authorization header must be `Bearer <token>`",
        ));
    }
    Ok(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: serde_json::Value) -> Claims {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn strongest_role_wins_and_claims_map_to_access() {
        let p = claims(serde_json::json!({
            "sub": "alice", "tenant": "acme", "roles": ["reader", "writer", "wizard"],
            "clearance": 2, "groups": ["physics", "chem", "physics"]
        }))
        .into_principal()
        .unwrap();
        assert_eq!(p.role, Role::Writer);
        assert_eq!(p.kind, CallerKind::User);
        assert_eq!(p.access.tenant.as_deref(), Some("acme"));
        assert_eq!(p.access.clearance, 2);
        assert_eq!(p.access.groups.len(), 2);
        assert!(!p.access.unrestricted);
    }

    #[test]
    fn cross_tenant_only_for_admins() {
        let admin = claims(serde_json::json!({
            "sub": "ops", "role": "admin", "braid_cross_tenant": true
        }))
        .into_principal()
        .unwrap();
        assert_eq!(admin.access.tenant, None);
        // A writer claiming cross-tenant stays in its tenant...
        let writer = claims(serde_json::json!({
            "sub": "w", "role": "writer", "tenant": "acme", "braid_cross_tenant": true
        }))
        .into_principal()
        .unwrap();
        assert_eq!(writer.access.tenant.as_deref(), Some("acme"));
        // ...and without a tenant it is refused.
        let err = claims(serde_json::json!({
            "sub": "w", "role": "writer", "braid_cross_tenant": true
        }))
        .into_principal()
        .unwrap_err();
        assert!(err.to_string().contains("tenant"), "{err}");
    }

    #[test]
    fn no_known_role_is_refused() {
        let err = claims(serde_json::json!({"sub": "x", "tenant": "t", "role": "root"}))
            .into_principal()
            .unwrap_err();
        assert!(err.to_string().contains("role"), "{err}");
        let err = claims(serde_json::json!({"sub": "x", "tenant": "t"}))
            .into_principal()
            .unwrap_err();
        assert!(err.to_string().contains("role"), "{err}");
    }

    #[test]
    fn too_many_groups_or_bad_tenant_refused() {
        let groups: Vec<String> = (0..=MAX_GROUPS).map(|i| format!("g{i}")).collect();
        let err = claims(serde_json::json!({
            "sub": "x", "tenant": "t", "role": "reader", "groups": groups
        }))
        .into_principal()
        .unwrap_err();
        assert!(err.to_string().contains("groups"), "{err}");
        assert!(
            claims(serde_json::json!({"sub": "x", "tenant": "a b/c", "role": "reader"}))
                .into_principal()
                .is_err()
        );
    }

    #[test]
    fn group_names_with_control_characters_are_refused() {
        for bad in ["x\u{1f}y", "", "a\u{0}", "tab\there"] {
            let err = claims(serde_json::json!({
                "sub": "x", "tenant": "t", "role": "reader", "groups": ["ok", bad]
            }))
            .into_principal()
            .unwrap_err();
            assert!(err.to_string().contains("`groups[1]`"), "{bad:?}: {err}");
        }
        let long = "g".repeat(MAX_GROUP_BYTES + 1);
        assert!(
            claims(
                serde_json::json!({"sub": "x", "tenant": "t", "role": "reader", "groups": [long]})
            )
            .into_principal()
            .is_err()
        );
        let fine = claims(serde_json::json!({
            "sub": "x", "tenant": "t", "role": "reader", "groups": ["physik-ü", "a b", "g".repeat(MAX_GROUP_BYTES)]
        }))
        .into_principal()
        .unwrap();
        assert_eq!(fine.access.groups.len(), 3);
    }

    #[test]
    fn bearer_header_parsing() {
        let v = http::HeaderValue::from_static("Bearer abc.def.ghi");
        assert_eq!(bearer(Some(&v)).unwrap(), "abc.def.ghi");
        assert_eq!(bearer(None).unwrap_err(), AuthError::Missing);
        let v = http::HeaderValue::from_static("Basic xyz");
        assert!(bearer(Some(&v)).is_err());
    }

    #[test]
    fn alg_none_and_garbage_are_refused_before_any_key_lookup() {
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"sub":"x"}"#);
        let (alg, _) = read_header(&format!("{header}.{body}.")).unwrap();
        assert_eq!(alg, "none");
        assert!(read_header("nonsense").is_err());
    }

    fn signed(claims: &serde_json::Value, key: &str, kid: Option<&str>) -> String {
        let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(
            &header,
            claims,
            &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
        )
        .unwrap()
    }

    fn user_claims(iat: Option<u64>, exp: u64) -> serde_json::Value {
        let mut c = serde_json::json!({
            "sub": "alice", "tenant": "acme", "role": "reader",
            "iss": "braid", "aud": "braid", "exp": exp,
        });
        if let Some(iat) = iat {
            c["iat"] = iat.into();
        }
        c
    }

    const K1: &str = "user-key-one-0123456789abcdef01234";
    const K2: &str = "user-key-two-0123456789abcdef01234";

    #[test]
    fn lifetimes_beyond_the_maximum_are_refused() {
        let now = 1_000_000;
        assert!(check_lifetime(Some(now), now + 3600, now, 86_400, 30).is_ok());
        let err = check_lifetime(Some(now), now + 100 * 365 * 86_400, now, 86_400, 30).unwrap_err();
        assert!(err.to_string().contains("auth.max_token_ttl_secs"), "{err}");
        // Without iat, what is left of the token counts.
        assert!(check_lifetime(None, now + 3600, now, 86_400, 30).is_ok());
        assert!(check_lifetime(None, now + 86_401, now, 86_400, 30).is_err());
        // Issued in the future (beyond the leeway): refused.
        assert!(check_lifetime(Some(now + 20), now + 60, now, 86_400, 30).is_ok());
        assert!(check_lifetime(Some(now + 31), now + 60, now, 86_400, 30).is_err());
    }

    #[tokio::test]
    async fn hs256_rings_select_by_kid_cap_lifetimes_and_honour_revocations() {
        let (verifier, revocations) = ring_verifier_with(AuthConfig::default().leeway_secs).await;
        let now = unix_now();
        let good = user_claims(Some(now), now + 600);
        for (key, kid) in [(K1, Some("k1")), (K2, Some("k2")), (K1, None), (K2, None)] {
            let p = verifier.verify(&signed(&good, key, kid)).await;
            assert_eq!(p.unwrap().subject, "alice", "{kid:?}");
        }
        // The kid picks the key: another key under that kid, or an unknown kid, is refused.
        let err = verifier
            .verify(&signed(&good, K2, Some("k1")))
            .await
            .unwrap_err();
        assert_eq!(err, AuthError::Invalid("bad signature"));
        let err = verifier
            .verify(&signed(&good, K1, Some("k9")))
            .await
            .unwrap_err();
        assert_eq!(err, AuthError::Invalid("unknown signing key (kid)"));
        let other = "some-other-key-0123456789abcdef0123";
        assert!(verifier.verify(&signed(&good, other, None)).await.is_err());
        // A 100-year token is refused even when correctly signed.
        let long = user_claims(Some(now), now + 100 * 365 * 86_400);
        let err = verifier
            .verify(&signed(&long, K1, Some("k1")))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("exceeds the maximum"), "{err}");
        // Revoked: tokens issued before the cut-off are refused, later ones pass.
        revocations.add(super::super::revocation::Revocation {
            tenant: "acme".into(),
            subject: "alice".into(),
            cut_off: now + 1,
        });
        let err = verifier
            .verify(&signed(&good, K2, Some("k2")))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("revoked"), "{err}");
        let fresh = user_claims(Some(now + 1), now + 600);
        assert!(
            verifier
                .verify(&signed(&fresh, K2, Some("k2")))
                .await
                .is_ok()
        );
    }

    /// A verifier on ring `k1` + `k2` (signing `k2`) with no leeway, and its revocations.
    async fn ring_verifier() -> (JwtVerifier, Arc<Revocations>) {
        ring_verifier_with(0).await
    }

    /// A verifier on ring `k1` + `k2` (signing `k2`) with `leeway_secs`, and its revocations.
    async fn ring_verifier_with(leeway_secs: u64) -> (JwtVerifier, Arc<Revocations>) {
        let ring = format!("signing = \"k2\"\n[keys]\nk1 = \"{K1}\"\nk2 = \"{K2}\"\n");
        let config = AuthConfig {
            hs256: KeySource::from_value(ring),
            leeway_secs,
            ..AuthConfig::default()
        };
        let revocations = Arc::new(Revocations::new());
        let verifier = JwtVerifier::from_config(&config)
            .await
            .unwrap()
            .with_revocations(revocations.clone());
        (verifier, revocations)
    }

    #[tokio::test]
    async fn a_cached_token_is_still_refused_once_revoked_expired_or_its_key_gone() {
        let (verifier, revocations) = ring_verifier().await;
        let now = unix_now();
        let token = signed(&user_claims(Some(now), now + 10), K1, Some("k1"));
        assert_eq!(
            verifier.verify_at(&token, now).await.unwrap().subject,
            "alice"
        );
        assert_eq!(verifier.verified.len(), 1, "remembered");
        assert!(verifier.verify_at(&token, now + 5).await.is_ok());
        // Past its exp (no leeway here): refused, though remembered for less than the TTL.
        let err = verifier.verify_at(&token, now + 11).await.unwrap_err();
        assert_eq!(err, AuthError::Invalid("token expired"));
        // Revoked: refused while remembered.
        assert!(verifier.verify_at(&token, now + 1).await.is_ok());
        revocations.add(super::super::revocation::Revocation {
            tenant: "acme".into(),
            subject: "alice".into(),
            cut_off: now + 1,
        });
        let err = verifier.verify_at(&token, now + 1).await.unwrap_err();
        assert!(err.to_string().contains("revoked"), "{err}");
        // Its key taken out of the ring: refused at once.
        let other = signed(&user_claims(Some(now + 2), now + 10), K1, Some("k1"));
        assert!(verifier.verify_at(&other, now + 2).await.is_ok());
        let ring = verifier.hs256_keys().unwrap();
        assert!(
            ring.apply(&format!("signing = \"k2\"\n[keys]\nk2 = \"{K2}\"\n"))
                .unwrap()
        );
        let err = verifier.verify_at(&other, now + 2).await.unwrap_err();
        assert_eq!(err, AuthError::Invalid("unknown signing key (kid)"));
    }

    #[test]
    fn short_hs256_keys_fail_validation_naming_the_key() {
        let mut errors = Vec::new();
        AuthConfig {
            hs256: KeySource::from_value("change-me-jwt"),
            ..AuthConfig::default()
        }
        .validate(&mut errors);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("auth.hs256: the key is 13 bytes"),
            "{errors:?}"
        );
    }
}
