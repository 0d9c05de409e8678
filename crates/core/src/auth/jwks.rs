//! Public keys for RS256/ES256 user tokens from a JWKS document (a file or an HTTPS URL),
//! cached by `kid`. The set is re-read periodically and when a token names an unknown `kid`,
//! but never more often than the refresh floor, so a flood of made-up `kid`s cannot turn
//! into a flood of fetches. Key rotation therefore needs no restart.
//!
//! Each key's algorithm is pinned by its type: an RSA key verifies only RS256, a P-256 key
//! only ES256. Symmetric (`oct`) keys in a JWKS are ignored.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::{Mutex, RwLock};
use tokio::time::Instant;

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Where the key set is read from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    File(PathBuf),
    Url(String),
}

#[derive(Clone)]
pub struct JwksKey {
    pub key: DecodingKey,
    pub algorithm: Algorithm,
}

struct Cache {
    keys: HashMap<String, JwksKey>,
    last_attempt: Option<Instant>,
}

/// A cached, refreshable JWKS.
pub struct Jwks {
    source: JwksSource,
    floor: Duration,
    http: reqwest::Client,
    cache: RwLock<Cache>,
    /// Serialises refreshes (single flight).
    refreshing: Mutex<()>,
}

impl Jwks {
    /// Loads the set once (an unreadable or empty set is an error: start-up fails).
    pub async fn load(source: JwksSource, floor: Duration) -> Result<Arc<Self>, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("jwks http client: {e}"))?;
        let jwks = Arc::new(Self {
            source,
            floor,
            http,
            cache: RwLock::new(Cache {
                keys: HashMap::new(),
                last_attempt: None,
            }),
            refreshing: Mutex::new(()),
        });
        let n = jwks.refresh().await?;
        if n == 0 {
            return Err("the JWKS holds no usable RS256/ES256 key".into());
        }
        Ok(jwks)
    }

    /// Re-reads the set every `every` while the returned handle's owner keeps `self` alive.
    pub fn spawn_refresh(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(jwks) = weak.upgrade() else { return };
                if let Err(e) = jwks.refresh().await {
                    tracing::warn!(error = %e, "JWKS refresh failed; keeping the cached keys");
                }
            }
        })
    }

    /// The key for `kid` (or the only key, when the token names none), refreshing once if
    /// it is unknown and the floor allows.
    pub async fn key(&self, kid: Option<&str>) -> Option<JwksKey> {
        if let Some(k) = self.lookup(kid).await {
            return Some(k);
        }
        let due = {
            let cache = self.cache.read().await;
            cache.last_attempt.is_none_or(|t| t.elapsed() >= self.floor)
        };
        if due && let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, "JWKS refresh on unknown kid failed");
        }
        self.lookup(kid).await
    }

    async fn lookup(&self, kid: Option<&str>) -> Option<JwksKey> {
        let cache = self.cache.read().await;
        match kid {
            Some(kid) => cache.keys.get(kid).cloned(),
            None if cache.keys.len() == 1 => cache.keys.values().next().cloned(),
            None => None,
        }
    }

    /// Fetches and replaces the key set; returns how many keys are usable.
    pub async fn refresh(&self) -> Result<usize, String> {
        let _single = self.refreshing.lock().await;
        self.cache.write().await.last_attempt = Some(Instant::now());
        let bytes = self.fetch().await?;
        let set: JwkSet =
            serde_json::from_slice(&bytes).map_err(|e| format!("JWKS is not valid JSON: {e}"))?;
        let keys = usable_keys(&set);
        let n = keys.len();
        if n > 0 {
            self.cache.write().await.keys = keys;
        }
        Ok(n)
    }

    async fn fetch(&self) -> Result<Vec<u8>, String> {
        match &self.source {
            JwksSource::File(path) => {
                let bytes = tokio::fs::read(path)
                    .await
                    .map_err(|e| format!("cannot read JWKS file {}: {e}", path.display()))?;
                if bytes.len() > MAX_JWKS_BYTES {
                    return Err(format!("JWKS file is larger than {MAX_JWKS_BYTES} bytes"));
                }
                Ok(bytes)
            }
            JwksSource::Url(url) => {
                let response = self
                    .http
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| format!("fetching JWKS: {e}"))?;
                if !response.status().is_success() {
                    return Err(format!("fetching JWKS: HTTP {}", response.status()));
                }
                if response
                    .content_length()
                    .is_some_and(|n| n as usize > MAX_JWKS_BYTES)
                {
                    return Err(format!("JWKS is larger than {MAX_JWKS_BYTES} bytes"));
                }
                let bytes = response
                    .bytes()
                    .await
                    .map_err(|e| format!("reading JWKS: {e}"))?;
                if bytes.len() > MAX_JWKS_BYTES {
                    return Err(format!("JWKS is larger than {MAX_JWKS_BYTES} bytes"));
                }
                Ok(bytes.to_vec())
            }
        }
    }
}

/// The signature keys of `set` with a `kid`, each pinned to the one algorithm its type allows.
fn usable_keys(set: &JwkSet) -> HashMap<String, JwksKey> {
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let (algorithm, declared_ok) = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => (
                Algorithm::RS256,
                matches!(jwk.common.key_algorithm, None | Some(KeyAlgorithm::RS256)),
            ),
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => (
                Algorithm::ES256,
                matches!(jwk.common.key_algorithm, None | Some(KeyAlgorithm::ES256)),
            ),
            _ => continue,
        };
        if !declared_ok {
            tracing::warn!(%kid, "JWKS key declares an algorithm its type does not allow; ignored");
            continue;
        }
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => {
                keys.insert(kid, JwksKey { key, algorithm });
            }
            Err(e) => tracing::warn!(%kid, error = %e, "unusable JWKS key ignored"),
        }
    }
    keys
}
