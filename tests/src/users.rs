//! Users at the gateway: the options for a stack whose gateway verifies HS256 user tokens,
//! and valid tokens for any subject, tenant, role and ACL signed with the same secret, so a
//! test states who calls (`users.token("rita", "acme", "reader")`) instead of writing its
//! own claims, signing and `authorization` header.

use std::time::{SystemTime, UNIX_EPOCH};

use braid_core::auth::jwt::AuthConfig;
use braid_core::auth::secret::KeySource;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::StackOptions;

/// The gateway's user-token secret and the tokens it accepts.
pub struct Users {
    secret: String,
}

impl Users {
    /// Users whose tokens are HS256-signed with `secret`.
    pub fn new(secret: &str) -> Self {
        Self {
            secret: secret.into(),
        }
    }

    /// The gateway's auth settings: HS256 with this secret, the default issuer and audience.
    pub fn auth(&self) -> AuthConfig {
        AuthConfig {
            hs256: KeySource::from_value(&self.secret),
            ..Default::default()
        }
    }

    /// The default stack with the gateway verifying these users' tokens.
    pub fn stack_options(&self) -> StackOptions {
        StackOptions::with_jwt(self.auth())
    }

    /// A valid token for `sub` in `tenant` with `role` (no ACL claims).
    pub fn token(&self, sub: &str, tenant: &str, role: &str) -> String {
        self.sign(&claims(sub, tenant, role))
    }

    /// A valid token that also carries an ACL: a clearance level and groups.
    pub fn token_with_acl(
        &self,
        sub: &str,
        tenant: &str,
        role: &str,
        clearance: u32,
        groups: &[&str],
    ) -> String {
        let mut claims = claims(sub, tenant, role);
        claims["clearance"] = clearance.into();
        claims["groups"] = groups.into();
        self.sign(&claims)
    }

    /// `claims` as they are, HS256-signed with this secret (for expired, foreign-audience
    /// and other deliberately wrong tokens).
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        hs256(claims, self.secret.as_bytes())
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Standard valid claims for `sub` in `tenant` with `role`: issuer and audience `braid`,
/// issued now, expiring in ten minutes.
pub fn claims(sub: &str, tenant: &str, role: &str) -> serde_json::Value {
    serde_json::json!({
        "sub": sub, "tenant": tenant, "role": role,
        "iss": "braid", "aud": "braid", "iat": now(), "exp": now() + 600,
    })
}

/// `claims` HS256-signed with `secret`.
pub fn hs256(claims: &serde_json::Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing of JSON claims cannot fail")
}

/// `message` as a request carrying `token` as its bearer credential.
pub fn as_user<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .expect("a JWT is a valid header value"),
    );
    request
}
