//! Service credentials between Braid services.
//!
//! Choice: short-lived service JWTs (HS256, a shared internal key ring from a file or the
//! environment, `aud = braid-internal`, `iss = braid`, `sub` = the calling service, 5 minute
//! lifetime) as the service identity: no certificate authority needed for it, and the same
//! layer works behind a service mesh that terminates TLS. Mutual TLS (`crate::tls`) can be
//! required on top, for the transport. The key ring (`super::keys`) holds several keys at
//! once: tokens carry their key's `kid`, are signed with the ring's signing key and verified
//! with any key in the ring; a key file is re-read every `internal_auth.key_reload_ms`, so
//! the key rotates without a restart (add, switch signing, remove: see `super::keys`). The caller mints and
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

use super::keys::{Key, KeyRing, WatchedKeys};
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
    /// Whether service tokens are required from callers and sent downstream.
    pub mode: InternalAuthMode,
    /// The shared HS256 key or key ring (`internal_auth.key.file` or `internal_auth.key.value`;
    /// every key at least 32 bytes, see `auth::keys`).
    pub key: KeySource,
    /// How often a key file is re-read; a changed ring is used from then on.
    pub key_reload_ms: u64,
}

/// Default of `internal_auth.key_reload_ms` and `auth.key_reload_ms`.
pub const DEFAULT_KEY_RELOAD_MS: u64 = 1_000;

impl Default for InternalAuthConfig {
    fn default() -> Self {
        Self {
            mode: InternalAuthMode::ServiceJwt,
            key: KeySource::default(),
            key_reload_ms: DEFAULT_KEY_RELOAD_MS,
        }
    }
}

impl InternalAuthConfig {
    pub fn disabled() -> Self {
        Self {
            mode: InternalAuthMode::Disabled,
            ..Self::default()
        }
    }

    pub fn with_key(key: KeySource) -> Self {
        Self {
            mode: InternalAuthMode::ServiceJwt,
            key,
            ..Self::default()
        }
    }

    pub fn validate(&self, errors: &mut Vec<String>) {
        if self.mode == InternalAuthMode::ServiceJwt {
            let before = errors.len();
            self.key.validate("internal_auth.key", errors);
            if errors.len() == before
                && let Err(e) = WatchedKeys::load(&self.key, "internal_auth.key")
            {
                errors.push(e);
            }
            crate::config::positive(errors, "internal_auth.key_reload_ms", self.key_reload_ms);
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
    ring: Arc<WatchedKeys>,
}

impl InternalAuth {
    /// Loads the key ring and, when it is a file and a tokio runtime is running, re-reads it
    /// every `key_reload_ms`; fails when the mode needs a key and the source is empty,
    /// unreadable, or holds a key shorter than 32 bytes.
    pub fn from_config(config: &InternalAuthConfig, service: &str) -> Result<Self, String> {
        match config.mode {
            InternalAuthMode::Disabled => Ok(Self { inner: None }),
            InternalAuthMode::ServiceJwt => {
                let ring = WatchedKeys::load(&config.key, "internal_auth.key")?;
                if tokio::runtime::Handle::try_current().is_ok() {
                    ring.spawn_reload(Duration::from_millis(config.key_reload_ms.max(1)));
                }
                Ok(Self::from_ring(ring, service))
            }
        }
    }

    /// One fixed key without a kid (tests and tools; no length check).
    pub fn from_key(key: &[u8], service: &str) -> Self {
        Self::from_ring(WatchedKeys::fixed(KeyRing::single(key)), service)
    }

    /// Signs and verifies with `ring` as it is at each call.
    pub fn from_ring(ring: Arc<WatchedKeys>, service: &str) -> Self {
        Self {
            inner: Some(Arc::new(Keys {
                service: service.to_string(),
                ring,
            })),
        }
    }

    /// The key ring (`None` when disabled).
    pub fn keys(&self) -> Option<Arc<WatchedKeys>> {
        self.inner.as_ref().map(|k| k.ring.clone())
    }

    /// Which keys sign and verify, by key id (for `/healthz`); `None` when disabled.
    pub fn describe(&self) -> Option<String> {
        self.inner.as_ref().map(|k| k.ring.current().describe())
    }

    pub fn disabled() -> Self {
        Self { inner: None }
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// A fresh token for this service, signed with the ring's signing key (`None` when
    /// disabled).
    pub fn mint(&self) -> Option<String> {
        let keys = self.inner.as_ref()?;
        sign(keys.ring.current().signing(), &keys.service, TOKEN_TTL).ok()
    }

    /// The calling service named by a valid token: signed by the ring's key its `kid` names
    /// (or, without a `kid`, by any key of the ring).
    pub fn verify(&self, token: &str) -> Result<String, AuthError> {
        let Some(keys) = &self.inner else {
            return Ok("unverified".into());
        };
        let refused = AuthError::Invalid("service credential refused");
        let header = jsonwebtoken::decode_header(token).map_err(|_| refused.clone())?;
        if header.alg != Algorithm::HS256 {
            return Err(refused);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_audience(&[INTERNAL_AUDIENCE]);
        validation.set_issuer(&[INTERNAL_ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
        let ring = keys.ring.current();
        ring.candidates(header.kid.as_deref())
            .into_iter()
            .find_map(|key| {
                jsonwebtoken::decode::<ServiceClaims>(
                    token,
                    &DecodingKey::from_secret(key.secret()),
                    &validation,
                )
                .ok()
            })
            .map(|d| d.claims.sub)
            .ok_or(refused)
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
    mint_with_header(Header::new(Algorithm::HS256), key, service, ttl)
}

/// A service token signed with ring key `key`, its `kid` in the header.
fn sign(key: &Key, service: &str, ttl: Duration) -> Result<String, jsonwebtoken::errors::Error> {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = key.kid.clone();
    mint_with_header(
        header,
        &EncodingKey::from_secret(key.secret()),
        service,
        ttl,
    )
}

fn mint_with_header(
    header: Header,
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
    jsonwebtoken::encode(&header, &claims, key)
}

/// A token minted for outgoing calls: the header value, when it expires, and the generation
/// of the key ring it was signed with.
type Cached = (http::HeaderValue, std::time::Instant, u64);

/// A cached, automatically re-minted `Bearer` header value for outgoing calls; re-minted too
/// when the key ring changes, so a token signed with a key about to be removed is not reused.
#[derive(Clone)]
pub struct ServiceToken {
    auth: InternalAuth,
    cached: Arc<Mutex<Option<Cached>>>,
}

impl ServiceToken {
    /// A token source that adds nothing (internal auth disabled).
    pub fn none() -> Self {
        InternalAuth::disabled().token_source()
    }

    /// The header value to send, or `None` when internal auth is disabled.
    pub fn header(&self) -> Option<http::HeaderValue> {
        let keys = self.auth.inner.as_ref()?;
        let generation = keys.ring.generation();
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((value, expires, signed_with)) = cached.as_ref()
            && *signed_with == generation
            && expires.saturating_duration_since(std::time::Instant::now()) > REFRESH_BEFORE
        {
            return Some(value.clone());
        }
        let token = self.auth.mint()?;
        let value = http::HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
        *cached = Some((
            value.clone(),
            std::time::Instant::now() + TOKEN_TTL,
            generation,
        ));
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
    fn rings_rotate_add_switch_remove_without_refusing_a_caller() {
        let a = "key-one-0123456789abcdef0123456789";
        let b = "key-two-0123456789abcdef0123456789";
        let only_one = format!("[keys]\none = \"{a}\"\n");
        let both = |signing: &str| {
            format!("signing = \"{signing}\"\n[keys]\none = \"{a}\"\ntwo = \"{b}\"\n")
        };
        let only_two = format!("[keys]\ntwo = \"{b}\"\n");
        let ring = WatchedKeys::fixed(KeyRing::parse(&only_one).unwrap());
        let caller = InternalAuth::from_ring(ring.clone(), "gateway");
        let callee_ring = WatchedKeys::fixed(KeyRing::parse(&only_one).unwrap());
        let callee = InternalAuth::from_ring(callee_ring.clone(), "ingest");
        let source = caller.token_source();
        let check = |source: &ServiceToken| {
            let value = source.header().unwrap();
            let token = value.to_str().unwrap().strip_prefix("Bearer ").unwrap();
            callee.verify(token)
        };
        let first = source.header().unwrap();
        assert_eq!(check(&source).unwrap(), "gateway");
        // 1. Both learn the new key; the caller still signs with the old one.
        callee_ring.apply(&both("one")).unwrap();
        ring.apply(&both("one")).unwrap();
        assert_eq!(check(&source).unwrap(), "gateway");
        // 2. The caller switches signing: its cached token is replaced at once.
        ring.apply(&both("two")).unwrap();
        assert_ne!(source.header().unwrap(), first);
        assert_eq!(check(&source).unwrap(), "gateway");
        let kid = jsonwebtoken::decode_header(
            source
                .header()
                .unwrap()
                .to_str()
                .unwrap()
                .strip_prefix("Bearer ")
                .unwrap(),
        )
        .unwrap()
        .kid;
        assert_eq!(kid.as_deref(), Some("two"));
        // 3. The old key goes: tokens it signed are refused, the caller's are not.
        callee_ring.apply(&only_two).unwrap();
        ring.apply(&only_two).unwrap();
        assert_eq!(check(&source).unwrap(), "gateway");
        let old = first.to_str().unwrap().strip_prefix("Bearer ").unwrap();
        assert!(callee.verify(old).is_err());
    }

    #[test]
    fn short_or_missing_internal_keys_fail_validation_naming_the_key() {
        let mut errors = Vec::new();
        InternalAuthConfig::with_key(KeySource::from_value("change-me-internal"))
            .validate(&mut errors);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("internal_auth.key: the key is 18 bytes; at least 32"),
            "{errors:?}"
        );
        let err = InternalAuth::from_config(
            &InternalAuthConfig::with_key(KeySource::from_value("short")),
            "ingest",
        )
        .err()
        .unwrap();
        assert!(err.starts_with("internal_auth.key:"), "{err}");
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
