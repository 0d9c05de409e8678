//! Pagination of search answers: `page_size` hits at a time out of a ranking `top_k` deep,
//! with an opaque, signed `page_token`.
//!
//! A token is `base64url(version ‖ offset ‖ HMAC-SHA256(key, fingerprint ‖ offset))`. The
//! fingerprint ([`Fingerprint`]) covers everything that shapes the ranking — tenant, caller
//! (subject and access), query, mode, depth (`top_k`), fusion, filter, thresholds,
//! granularity, page size — and is recomputed from the request that carries the token, so a
//! token used with another query, tenant or caller, or altered in any byte, fails the MAC and
//! is rejected with INVALID_ARGUMENT. The key comes from the internal service key (shared by
//! every gateway replica) or, without one, is random per process (tokens then last as long
//! as the process).
//!
//! Every page is cut from the same ranking: the legs are always asked for the candidates of
//! the full depth, so page n of a walk is exactly hits `[n·page_size, (n+1)·page_size)` of
//! one request with the same `top_k` and no paging. The ranking is the query cache's entry
//! (keyed on the index generation): while the index is unchanged every page comes from it;
//! after an index change the next page is cut from the ranking recomputed at the same depth,
//! so a document may move across a page boundary, but no page exceeds `page_size` and the walk
//! ends at `top_k` (at most `search.max_page_depth`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::sync::Arc;

use braid_core::auth::keys::WatchedKeys;
use braid_core::auth::secret::constant_time_eq;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use braid_proto::v1::{SearchRequest, SearchResponse};

use crate::error::GatewayError;

const VERSION: u8 = 1;
const TOKEN_BYTES: usize = 1 + 4 + 32;

/// SHA-256 over the length-prefixed parts of a paged request.
pub struct Fingerprint(Sha256);

impl Default for Fingerprint {
    fn default() -> Self {
        Self::new()
    }
}

impl Fingerprint {
    pub fn new() -> Self {
        let mut f = Self(Sha256::new());
        f.add(b"braid.page-token.v2");
        f
    }

    pub fn add(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// Signs and checks page tokens.
pub struct PageTokens {
    keys: Keys,
}

enum Keys {
    Fixed(Vec<u8>),
    /// The internal key ring as it is now: tokens are signed with a key derived from its
    /// signing key and accepted under a key derived from any of its keys.
    Ring(Arc<WatchedKeys>),
}

fn derive(secret: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"braid.page-token.key");
    h.update(secret);
    h.finalize().to_vec()
}

impl PageTokens {
    /// Keyed from `secret` (the internal service key), or a random key when there is none.
    pub fn new(secret: Option<&[u8]>) -> Self {
        let key = match secret {
            Some(secret) => derive(secret),
            None => (0..32).map(|_| rand::random::<u8>()).collect(),
        };
        Self {
            keys: Keys::Fixed(key),
        }
    }

    /// Keyed from the internal key ring, following its changes.
    pub fn from_ring(ring: Arc<WatchedKeys>) -> Self {
        Self {
            keys: Keys::Ring(ring),
        }
    }

    fn signing_key(&self) -> Vec<u8> {
        match &self.keys {
            Keys::Fixed(key) => key.clone(),
            Keys::Ring(ring) => derive(ring.current().signing().secret()),
        }
    }

    fn verifying_keys(&self) -> Vec<Vec<u8>> {
        match &self.keys {
            Keys::Fixed(key) => vec![key.clone()],
            Keys::Ring(ring) => ring
                .current()
                .keys()
                .iter()
                .map(|k| derive(k.secret()))
                .collect(),
        }
    }

    fn mac(key: &[u8], fingerprint: &[u8; 32], offset: u32) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
        mac.update(fingerprint);
        mac.update(&offset.to_le_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The token of the page starting at `offset`.
    pub fn encode(&self, fingerprint: Fingerprint, offset: u32) -> String {
        let fp = fingerprint.finish();
        let mut bytes = Vec::with_capacity(TOKEN_BYTES);
        bytes.push(VERSION);
        bytes.extend_from_slice(&offset.to_le_bytes());
        bytes.extend_from_slice(&Self::mac(&self.signing_key(), &fp, offset));
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The offset a token points at, if it was issued for this very request.
    pub fn decode(&self, token: &str, fingerprint: Fingerprint) -> Result<u32, GatewayError> {
        let invalid = || {
            GatewayError::invalid(
                "page_token",
                "not a token issued for this search (the query, filters, top_k, page_size and \
                 every other field must be unchanged, by the same caller)",
            )
        };
        // 37 bytes are 50 characters of base64; anything longer is not ours.
        if token.len() > 64 {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token.as_bytes())
            .map_err(|_| invalid())?;
        if bytes.len() != TOKEN_BYTES || bytes[0] != VERSION {
            return Err(invalid());
        }
        let offset = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        let fp = fingerprint.finish();
        let signed_by_ours = self
            .verifying_keys()
            .iter()
            .any(|key| constant_time_eq(&bytes[5..], &Self::mac(key, &fp, offset)));
        if !signed_by_ours {
            return Err(invalid());
        }
        Ok(offset)
    }
}

/// The page of `full` (the whole ranking) starting at `offset`, with the token of the next
/// page from `next(offset_of_next_page)` unless this is the last one. `page_size` 0 = no
/// paging: `full` as it is.
pub fn cut(
    mut full: SearchResponse,
    offset: u32,
    page_size: u32,
    next: impl FnOnce(u32) -> String,
) -> SearchResponse {
    if page_size == 0 {
        return full;
    }
    let len = full.hits.len();
    let start = (offset as usize).min(len);
    let end = start.saturating_add(page_size as usize).min(len);
    full.hits = full.hits.drain(start..end).collect();
    full.next_page_token = if end < len {
        next(end as u32)
    } else {
        String::new()
    };
    full
}

/// `page_size` in `0..=max` (0 = no paging); a `page_token` needs a `page_size`.
pub fn check_page_size(r: &SearchRequest, max: u32) -> Result<(), GatewayError> {
    if r.page_size > max {
        return Err(GatewayError::invalid(
            "page_size",
            format!("{} is out of range 0..={max}", r.page_size),
        ));
    }
    if r.page_size == 0 && !r.page_token.is_empty() {
        return Err(GatewayError::invalid(
            "page_token",
            "needs the page_size it was issued with",
        ));
    }
    Ok(())
}

/// A score threshold: unset, or a finite number.
pub fn threshold(field: &str, value: Option<f32>) -> Result<Option<f32>, GatewayError> {
    match value {
        Some(v) if !v.is_finite() => Err(GatewayError::invalid(
            field,
            format!("{v} is not a finite number"),
        )),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(query: &str) -> Fingerprint {
        let mut f = Fingerprint::new();
        f.add(query.as_bytes());
        f
    }

    #[test]
    fn pages_are_slices_and_the_last_has_no_token() {
        let full = SearchResponse {
            hits: (0..25)
                .map(|i| braid_proto::v1::SearchHit {
                    document_id: i.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let ids = |r: &SearchResponse| -> Vec<String> {
            r.hits.iter().map(|h| h.document_id.clone()).collect()
        };
        let mut walked = Vec::new();
        let mut offset = 0;
        let mut pages = 0;
        loop {
            let page = cut(full.clone(), offset, 10, |next| next.to_string());
            walked.extend(ids(&page));
            pages += 1;
            if page.next_page_token.is_empty() {
                break;
            }
            offset = page.next_page_token.parse().unwrap();
        }
        assert_eq!(pages, 3);
        assert_eq!(walked, ids(&full));
        assert_eq!(
            ids(&cut(full.clone(), 0, 0, |_| unreachable!())),
            ids(&full)
        );
        assert!(cut(full, 40, 10, |_| unreachable!()).hits.is_empty());
    }

    #[test]
    fn tokens_round_trip_only_for_their_request() {
        let tokens = PageTokens::new(Some(b"secret"));
        let t = tokens.encode(fp("q"), 20);
        assert_eq!(tokens.decode(&t, fp("q")).unwrap(), 20);
        let e = tokens.decode(&t, fp("other")).unwrap_err();
        assert!(e.to_string().starts_with("page_token:"), "{e}");
        // Another key (another deployment) or a tampered byte: rejected.
        assert!(PageTokens::new(Some(b"other")).decode(&t, fp("q")).is_err());
        let mut bytes = URL_SAFE_NO_PAD.decode(&t).unwrap();
        bytes[1] ^= 1; // offset 20 -> 21
        let tampered = URL_SAFE_NO_PAD.encode(bytes);
        assert!(tokens.decode(&tampered, fp("q")).is_err());
        for junk in ["", "!!", "AAAA"] {
            assert!(tokens.decode(junk, fp("q")).is_err(), "{junk}");
        }
    }

    #[test]
    fn tokens_survive_a_rotation_of_the_internal_key() {
        use braid_core::auth::keys::KeyRing;
        let (a, b) = ("x".repeat(32), "y".repeat(32));
        let one = format!("[keys]\nk1 = \"{a}\"\n");
        let both = format!("signing = \"k2\"\n[keys]\nk1 = \"{a}\"\nk2 = \"{b}\"\n");
        let ring = WatchedKeys::fixed(KeyRing::parse(&one).unwrap());
        // Another replica, which took up the new ring first.
        let other = PageTokens::from_ring(WatchedKeys::fixed(KeyRing::parse(&both).unwrap()));
        let tokens = PageTokens::from_ring(ring.clone());
        let old = tokens.encode(fp("q"), 10);
        assert_eq!(other.decode(&old, fp("q")).unwrap(), 10);
        ring.apply(&both).unwrap();
        let new = tokens.encode(fp("q"), 20);
        assert_eq!(tokens.decode(&old, fp("q")).unwrap(), 10);
        assert_eq!(other.decode(&new, fp("q")).unwrap(), 20);
    }
}
