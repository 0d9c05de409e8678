//! Service credentials between Braid services.
//!
//! Choice: short-lived service JWTs (HS256, a shared internal key from a file or the
//! environment, `aud = braid-internal`, `iss = braid`, `sub` = the calling service, 5 minute
//! lifetime) rather than mTLS: no certificate authority to run, rotation is a key file swap,
//! and the same layer works behind a service mesh that terminates TLS. The caller mints and
//! re-mints its token ([`ServiceToken`], injected by [`ServiceTokenLayer`] on the shared
//! client channel); every internal server verifies it on every RPC, reflection included,
//! with [`InternalGuardLayer`] — except `grpc.health.v1`, so Kubernetes probes work without
//! credentials.
//!
//! The verified caller becomes the request's [`Principal`]: the end user's principal when the
//! caller forwarded one (the gateway does, on proxied ingest RPCs), otherwise the calling
//! service itself (an admin of every tenant, unrestricted).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tonic::service::Routes;
use tower::{Layer, Service};

use super::jwt::{AuthError, bearer};
use super::secret::KeySource;
use super::{Access, CallerKind, Principal, Role};

/// `aud` of every service token.
pub const INTERNAL_AUDIENCE: &str = "braid-internal";
const INTERNAL_ISSUER: &str = "braid";
/// Lifetime of a minted service token.
const TOKEN_TTL: Duration = Duration::from_secs(300);
/// A cached token is re-minted when it has less than this left.
const REFRESH_BEFORE: Duration = Duration::from_secs(60);
/// Clock skew tolerated between services.
const LEEWAY_SECS: u64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InternalAuthMode {
    /// Service JWTs required and sent.
    ServiceJwt,
    /// No service credential (a trusted network only).
    Disabled,
}

/// `internal_auth.*` of every service.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct InternalAuthConfig {
    pub mode: InternalAuthMode,
    /// The shared HS256 key (`internal_auth.key.file` or `internal_auth.key.value`).
    pub key: KeySource,
}

impl Default for InternalAuthConfig {
    fn default() -> Self {
        Self {
            mode: InternalAuthMode::ServiceJwt,
            key: KeySource::default(),
        }
    }
}

impl InternalAuthConfig {
    pub fn disabled() -> Self {
        Self {
            mode: InternalAuthMode::Disabled,
            key: KeySource::default(),
        }
    }

    pub fn with_key(key: KeySource) -> Self {
        Self {
            mode: InternalAuthMode::ServiceJwt,
            key,
        }
    }

    pub fn validate(&self, errors: &mut Vec<String>) {
        if self.mode == InternalAuthMode::ServiceJwt {
            self.key.validate("internal_auth.key", errors);
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct ServiceClaims {
    sub: String,
    aud: String,
    iss: String,
    iat: u64,
    exp: u64,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// This service's identity and the shared key: mints its own tokens, verifies others'.
#[derive(Clone)]
pub struct InternalAuth {
    inner: Option<Arc<Keys>>,
}

struct Keys {
    service: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl InternalAuth {
    /// Loads the key; fails when the mode needs one and the source is empty or unreadable.
    pub fn from_config(config: &InternalAuthConfig, service: &str) -> Result<Self, String> {
        match config.mode {
            InternalAuthMode::Disabled => Ok(Self { inner: None }),
            InternalAuthMode::ServiceJwt => {
                let key = config
                    .key
                    .load()
                    .map_err(|e| format!("internal_auth.key: {e}"))?;
                Ok(Self::from_key(&key, service))
            }
        }
    }

    pub fn from_key(key: &[u8], service: &str) -> Self {
        Self {
            inner: Some(Arc::new(Keys {
                service: service.to_string(),
                encoding: EncodingKey::from_secret(key),
                decoding: DecodingKey::from_secret(key),
            })),
        }
    }

    pub fn disabled() -> Self {
        Self { inner: None }
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// A fresh token for this service (`None` when disabled).
    pub fn mint(&self) -> Option<String> {
        let keys = self.inner.as_ref()?;
        mint_service_token(&keys.encoding, &keys.service, TOKEN_TTL).ok()
    }

    /// The calling service named by a valid token.
    pub fn verify(&self, token: &str) -> Result<String, AuthError> {
        let Some(keys) = &self.inner else {
            return Ok("unverified".into());
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_audience(&[INTERNAL_AUDIENCE]);
        validation.set_issuer(&[INTERNAL_ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
        jsonwebtoken::decode::<ServiceClaims>(token, &keys.decoding, &validation)
            .map(|d| d.claims.sub)
            .map_err(|_| AuthError::Invalid("service credential refused"))
    }

    /// The token source for this service's client channels.
    pub fn token_source(&self) -> ServiceToken {
        ServiceToken {
            auth: self.clone(),
            cached: Arc::new(Mutex::new(None)),
        }
    }

    /// Puts `routes` (reflection included) behind the service-credential check; health
    /// stays open.
    pub fn guard(&self, routes: Routes) -> Routes {
        Routes::from(
            routes
                .into_axum_router()
                .layer(InternalGuardLayer { auth: self.clone() }),
        )
    }

    /// The principal of a request carrying `token` and, optionally, a forwarded principal.
    fn principal(
        &self,
        authorization: Option<&http::HeaderValue>,
        forwarded: Option<Principal>,
    ) -> Result<Principal, AuthError> {
        if !self.is_enabled() {
            return Ok(forwarded.unwrap_or_else(Principal::anonymous));
        }
        let service = self.verify(bearer(authorization)?)?;
        Ok(forwarded.unwrap_or(Principal {
            subject: service,
            kind: CallerKind::Service,
            role: Role::Admin,
            access: Access::unrestricted(),
        }))
    }
}

/// Signs a service token for `service` with `key` (also used by tests and tools).
pub fn mint_service_token(
    key: &EncodingKey,
    service: &str,
    ttl: Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = now_secs();
    let claims = ServiceClaims {
        sub: service.to_string(),
        aud: INTERNAL_AUDIENCE.into(),
        iss: INTERNAL_ISSUER.into(),
        iat: now,
        exp: now + ttl.as_secs(),
    };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key)
}

/// A cached, automatically re-minted `Bearer` header value for outgoing calls.
#[derive(Clone)]
pub struct ServiceToken {
    auth: InternalAuth,
    cached: Arc<Mutex<Option<(http::HeaderValue, std::time::Instant)>>>,
}

impl ServiceToken {
    /// A token source that adds nothing (internal auth disabled).
    pub fn none() -> Self {
        InternalAuth::disabled().token_source()
    }

    /// The header value to send, or `None` when internal auth is disabled.
    pub fn header(&self) -> Option<http::HeaderValue> {
        self.auth.inner.as_ref()?;
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((value, expires)) = cached.as_ref()
            && expires.saturating_duration_since(std::time::Instant::now()) > REFRESH_BEFORE
        {
            return Some(value.clone());
        }
        let token = self.auth.mint()?;
        let value = http::HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
        *cached = Some((value.clone(), std::time::Instant::now() + TOKEN_TTL));
        Some(value)
    }
}

/// Client side: adds the service token to every outgoing request.
#[derive(Clone)]
pub struct ServiceTokenLayer {
    token: ServiceToken,
}

impl ServiceTokenLayer {
    pub fn new(token: ServiceToken) -> Self {
        Self { token }
    }
}

impl<S> Layer<S> for ServiceTokenLayer {
    type Service = WithServiceToken<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WithServiceToken {
            inner,
            token: self.token.clone(),
        }
    }
}

#[derive(Clone)]
pub struct WithServiceToken<S> {
    inner: S,
    token: ServiceToken,
}

impl<S, B> Service<http::Request<B>> for WithServiceToken<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if let Some(value) = self.token.header() {
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, value);
        }
        self.inner.call(request)
    }
}

/// Server side: verifies the service credential on every RPC except health checks and puts
/// the caller's [`Principal`] into the request extensions.
#[derive(Clone)]
pub struct InternalGuardLayer {
    auth: InternalAuth,
}

impl<S> Layer<S> for InternalGuardLayer {
    type Service = InternalGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InternalGuard {
            inner,
            auth: self.auth.clone(),
        }
    }
}

#[derive(Clone)]
pub struct InternalGuard<S> {
    inner: S,
    auth: InternalAuth,
}

/// Health checks are open so orchestrator probes need no credentials.
fn is_open_path(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
}

impl<S, B, R> Service<http::Request<B>> for InternalGuard<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if !is_open_path(request.uri().path()) {
            let metadata = tonic::metadata::MetadataMap::from_headers(request.headers().clone());
            let forwarded = Principal::from_metadata(&metadata);
            match self.auth.principal(
                request.headers().get(http::header::AUTHORIZATION),
                forwarded,
            ) {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                }
                Err(e) => {
                    tracing::debug!(path = request.uri().path(), reason = %e, "internal call refused");
                    let response = tonic::Status::from(e).into_http::<R>();
                    return Box::pin(async move { Ok(response) });
                }
            }
        }
        Box::pin(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_with_the_same_key() {
        let a = InternalAuth::from_key(b"key-a", "gateway");
        let b = InternalAuth::from_key(b"key-b", "gateway");
        let token = a.mint().unwrap();
        assert_eq!(a.verify(&token).unwrap(), "gateway");
        assert!(b.verify(&token).is_err());
        let hv = http::HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        let p = a.principal(Some(&hv), None).unwrap();
        assert_eq!(p.kind, CallerKind::Service);
        assert!(p.access.unrestricted);
        assert!(a.principal(None, None).is_err());
    }

    #[test]
    fn expired_service_tokens_are_refused() {
        let a = InternalAuth::from_key(b"key-a", "ingest");
        let claims = ServiceClaims {
            sub: "ingest".into(),
            aud: INTERNAL_AUDIENCE.into(),
            iss: INTERNAL_ISSUER.into(),
            iat: now_secs() - 1000,
            exp: now_secs() - 500,
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"key-a"),
        )
        .unwrap();
        assert!(a.verify(&token).is_err());
    }

    #[test]
    fn forwarded_principal_needs_a_valid_service_token() {
        let a = InternalAuth::from_key(b"key-a", "gateway");
        let user = Principal {
            subject: "alice".into(),
            kind: CallerKind::User,
            role: Role::Reader,
            access: Access {
                tenant: Some("acme".into()),
                clearance: 0,
                groups: Default::default(),
                unrestricted: false,
            },
        };
        assert!(a.principal(None, Some(user.clone())).is_err());
        let hv = a.token_source().header().unwrap();
        assert_eq!(a.principal(Some(&hv), Some(user.clone())).unwrap(), user);
    }

    #[test]
    fn token_source_caches_and_disabled_sends_nothing() {
        let a = InternalAuth::from_key(b"key-a", "gateway").token_source();
        assert_eq!(a.header(), a.header());
        assert!(ServiceToken::none().header().is_none());
        assert!(is_open_path("/grpc.health.v1.Health/Check"));
        assert!(!is_open_path(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        ));
    }
}
