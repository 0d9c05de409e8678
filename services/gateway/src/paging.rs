//! Pagination of search answers: `page_size` hits at a time out of a ranking `top_k` deep,
//! with an opaque, signed `page_token`, every page of one walk cut from one ranking snapshot.
//!
//! **Snapshots.** The first page (no `page_token`) computes the whole ranking — the hits of
//! the full depth `top_k` (at most `search.max_page_depth`), from the query cache or the legs
//! — answers its first `page_size` hits, and, when there are more, stores the whole ranking
//! as the walk's snapshot under a random 128-bit id ([`snapshots`]: in process and, with
//! `query_cache.redis_url`, in Redis, so any gateway replica serves the next page; with the
//! query cache disabled or bypassed alike). Every later page is cut from that snapshot, in
//! its order (`search/pages.rs`): documents ingested or re-ranked after the first page do not
//! enter the walk, so the part that did not change has no repeats and no gaps; documents
//! deleted or no longer readable by the caller since the first page are left out (checked
//! with the ingest service as the caller, before answering) and the page is topped up from
//! the snapshot's next hits, so pages stay full while the snapshot has hits. A snapshot is
//! kept `search.page_snapshot_ttl_ms` (default 5 min) from its first page, not extended by
//! later pages; a page asked for after that is refused with FAILED_PRECONDITION naming
//! `page_token` ("expired ... start again from the first page"), never answered from another
//! ranking.
//!
//! **Tokens.** A token is `base64url(2 ‖ snapshot id ‖ offset ‖ HMAC-SHA256(key, fingerprint ‖
//! snapshot id ‖ offset))`. The fingerprint ([`Fingerprint`]) covers everything that shapes
//! the ranking — tenant, caller (subject and access), query, mode, depth (`top_k`), fusion,
//! filter, thresholds, granularity, page size — and is recomputed from the request that
//! carries the token, so a token used with another query, tenant or caller, or altered in any
//! byte, fails the MAC and is rejected with INVALID_ARGUMENT; the snapshot id cannot be
//! guessed nor swapped for another walk's. The key comes from the internal service key ring
//! (shared by every gateway replica, rotation included) or, without one, is random per
//! process. Tokens of version 1 (offset only, cut from a recomputed ranking) are refused with
//! INVALID_ARGUMENT saying to start the walk again.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::sync::Arc;

use braid_core::auth::keys::WatchedKeys;
use braid_core::auth::secret::constant_time_eq;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use braid_proto::v1::{SearchRequest, SearchResponse};

use crate::error::GatewayError;

mod snapshots;

pub use snapshots::{SnapshotId, Snapshots, new_id as new_snapshot_id};

const VERSION: u8 = 2;
const ID_BYTES: usize = 16;
const TOKEN_BYTES: usize = 1 + ID_BYTES + 4 + 32;
/// Version 1: `1 ‖ offset ‖ MAC`, pages cut from the ranking recomputed at each page.
const V1: (u8, usize) = (1, 1 + 4 + 32);

/// Where a later page starts: the walk's snapshot and an offset into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub snapshot: SnapshotId,
    pub offset: u32,
}

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

    fn mac(key: &[u8], fingerprint: &[u8; 32], at: &Position) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
        mac.update(fingerprint);
        mac.update(&at.snapshot);
        mac.update(&at.offset.to_le_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The token of the page at `at`.
    pub fn encode(&self, fingerprint: Fingerprint, at: Position) -> String {
        let fp = fingerprint.finish();
        let mut bytes = Vec::with_capacity(TOKEN_BYTES);
        bytes.push(VERSION);
        bytes.extend_from_slice(&at.snapshot);
        bytes.extend_from_slice(&at.offset.to_le_bytes());
        bytes.extend_from_slice(&Self::mac(&self.signing_key(), &fp, &at));
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Where a token points, if it was issued for this very request.
    pub fn decode(&self, token: &str, fingerprint: Fingerprint) -> Result<Position, GatewayError> {
        let invalid = || {
            GatewayError::invalid(
                "page_token",
                "not a token issued for this search (the query, filters, top_k, page_size and \
                 every other field must be unchanged, by the same caller)",
            )
        };
        // 53 bytes are 71 characters of base64; anything longer is not ours.
        if token.len() > 96 {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token.as_bytes())
            .map_err(|_| invalid())?;
        if (bytes.first().copied(), bytes.len()) == (Some(V1.0), V1.1) {
            return Err(GatewayError::invalid(
                "page_token",
                "issued by an earlier gateway version, whose pages were not cut from one \
                 ranking snapshot; start the walk again from the first page (no page_token)",
            ));
        }
        if bytes.len() != TOKEN_BYTES || bytes[0] != VERSION {
            return Err(invalid());
        }
        let (id, rest) = bytes[1..].split_at(ID_BYTES);
        let (offset, mac) = rest.split_at(4);
        let at = Position {
            snapshot: id.try_into().map_err(|_| invalid())?,
            offset: u32::from_le_bytes(offset.try_into().map_err(|_| invalid())?),
        };
        let fp = fingerprint.finish();
        let signed_by_ours = self
            .verifying_keys()
            .iter()
            .any(|key| constant_time_eq(mac, &Self::mac(key, &fp, &at)));
        if !signed_by_ours {
            return Err(invalid());
        }
        Ok(at)
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

    fn at(offset: u32) -> Position {
        Position {
            snapshot: [7; 16],
            offset,
        }
    }

    #[test]
    fn tokens_round_trip_only_for_their_request() {
        let tokens = PageTokens::new(Some(b"secret"));
        let t = tokens.encode(fp("q"), at(20));
        assert_eq!(tokens.decode(&t, fp("q")).unwrap(), at(20));
        assert_eq!(URL_SAFE_NO_PAD.decode(&t).unwrap().len(), TOKEN_BYTES);
        let e = tokens.decode(&t, fp("other")).unwrap_err();
        assert!(e.to_string().starts_with("page_token:"), "{e}");
        // Another key (another deployment) or a tampered byte: rejected.
        assert!(PageTokens::new(Some(b"other")).decode(&t, fp("q")).is_err());
        let bytes = URL_SAFE_NO_PAD.decode(&t).unwrap();
        // The snapshot id (another walk's), the offset, the MAC: each byte is covered.
        for i in 1..bytes.len() {
            let mut tampered = bytes.clone();
            tampered[i] ^= 1;
            let tampered = URL_SAFE_NO_PAD.encode(tampered);
            assert!(tokens.decode(&tampered, fp("q")).is_err(), "byte {i}");
        }
        for junk in ["", "!!", "AAAA", &"A".repeat(200)] {
            assert!(tokens.decode(junk, fp("q")).is_err(), "{junk}");
        }
    }

    #[test]
    fn version_1_tokens_are_refused_with_a_way_out() {
        let tokens = PageTokens::new(Some(b"secret"));
        // A version 1 token as earlier gateways signed it: 1 ‖ offset ‖ MAC(fp ‖ offset).
        let mut mac = Hmac::<Sha256>::new_from_slice(&derive(b"secret")).unwrap();
        mac.update(&fp("q").finish());
        mac.update(&10u32.to_le_bytes());
        let mut old = vec![1u8];
        old.extend_from_slice(&10u32.to_le_bytes());
        old.extend_from_slice(&mac.finalize().into_bytes());
        let e = tokens
            .decode(&URL_SAFE_NO_PAD.encode(old), fp("q"))
            .unwrap_err();
        let message = e.to_string();
        assert!(message.starts_with("page_token:"), "{message}");
        assert!(message.contains("start the walk again"), "{message}");
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
        let old = tokens.encode(fp("q"), at(10));
        assert_eq!(other.decode(&old, fp("q")).unwrap(), at(10));
        ring.apply(&both).unwrap();
        let new = tokens.encode(fp("q"), at(20));
        assert_eq!(tokens.decode(&old, fp("q")).unwrap(), at(10));
        assert_eq!(other.decode(&new, fp("q")).unwrap(), at(20));
    }
}
