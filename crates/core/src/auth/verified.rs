//! Verified user tokens, remembered for a short while: a caller sends the same token on every
//! call, and checking its signature and reading its claims once per [`TTL_SECS`] is enough.
//!
//! Keyed by the SHA-256 of the token (the cache never holds a token). An entry answers until
//! the token's `exp` or [`TTL_SECS`] after it was verified, whichever comes first, and only
//! while the HS256 key ring that verified it is unchanged (a key removed from the ring refuses
//! its tokens at once; a JWKS key removed refuses them within [`TTL_SECS`], well inside the
//! JWKS refresh interval). Revocation is never cached: [`super::jwt::JwtVerifier`] checks the
//! cut-offs in force on every call, cached or not. Bounded: at most [`CAPACITY`] entries; a
//! full cache first drops its expired entries and, when none are, starts afresh.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::Principal;

/// Longest an entry answers for its token (seconds).
pub const TTL_SECS: u64 = 30;
/// Most tokens remembered.
pub const CAPACITY: usize = 10_000;

/// The cache key of a token.
pub type TokenKey = [u8; 32];

pub fn key(token: &str) -> TokenKey {
    Sha256::digest(token.as_bytes()).into()
}

struct Entry {
    principal: Principal,
    /// The token's `iat` (revocation checks).
    iat: Option<u64>,
    /// Answers while `now < until` (seconds since the Unix epoch).
    until: u64,
    /// The key ring generation that verified it.
    generation: u64,
}

#[derive(Default)]
pub struct VerifiedTokens {
    entries: Mutex<HashMap<TokenKey, Entry>>,
}

impl VerifiedTokens {
    /// The principal and `iat` of a token verified earlier, at `now`, with the key ring at
    /// `generation`.
    pub fn get(
        &self,
        key: &TokenKey,
        now: u64,
        generation: u64,
    ) -> Option<(Principal, Option<u64>)> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let e = entries.get(key)?;
        (now < e.until && e.generation == generation).then(|| (e.principal.clone(), e.iat))
    }

    /// Remembers a token verified at `now` (expiring at `exp`) with the key ring at
    /// `generation`.
    pub fn put(
        &self,
        key: TokenKey,
        principal: &Principal,
        iat: Option<u64>,
        exp: u64,
        now: u64,
        generation: u64,
    ) {
        let until = exp.min(now.saturating_add(TTL_SECS));
        if until <= now {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CAPACITY && !entries.contains_key(&key) {
            entries.retain(|_, e| now < e.until);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(
            key,
            Entry {
                principal: principal.clone(),
                iat,
                until,
                generation,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_answer_until_exp_or_ttl_and_for_their_ring_only() {
        let cache = VerifiedTokens::default();
        let p = Principal::anonymous();
        let (a, b) = (key("a.b.c"), key("a.b.d"));
        assert_ne!(a, b);
        // exp first: answers up to exp, not at it.
        cache.put(a, &p, Some(90), 110, 100, 7);
        assert_eq!(cache.get(&a, 109, 7), Some((p.clone(), Some(90))));
        assert_eq!(cache.get(&a, 110, 7), None);
        // Another ring generation: not answered.
        assert_eq!(cache.get(&a, 105, 8), None);
        // The TTL first.
        cache.put(b, &p, None, 10_000, 100, 7);
        assert!(cache.get(&b, 100 + TTL_SECS - 1, 7).is_some());
        assert_eq!(cache.get(&b, 100 + TTL_SECS, 7), None);
        // Already expired: not kept.
        cache.put(key("x"), &p, None, 100, 100, 7);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn bounded() {
        let cache = VerifiedTokens::default();
        let p = Principal::anonymous();
        for i in 0..CAPACITY {
            cache.put(key(&i.to_string()), &p, None, 1_000, 100, 0);
        }
        assert_eq!(cache.len(), CAPACITY);
        // Full of live entries: starts afresh.
        cache.put(key("one more"), &p, None, 1_000, 100, 0);
        assert_eq!(cache.len(), 1);
        // Full with expired entries: they go, the live ones stay.
        for i in 0..CAPACITY - 1 {
            cache.put(key(&i.to_string()), &p, None, 120, 100, 0);
        }
        cache.put(key("late"), &p, None, 1_000, 125, 0);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&key("one more"), 125, 0).is_some());
    }
}
