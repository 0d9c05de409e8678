//! Page tokens (services/gateway/src/paging.rs). Input: a mode byte, then
//! - mode 0: fingerprint bytes, a NUL, a token as text. Only the gateway's key signs, so the
//!   token is refused, unless it is the very token the gateway would issue (a decoded token
//!   re-encodes to itself).
//! - mode 1: a 4-byte offset, one byte to change in the token (position, value: 2 bytes), a
//!   16-byte snapshot id, then fingerprint bytes. The issued token decodes to its position
//!   (snapshot id and offset) under the same fingerprint, is refused under another, and a
//!   changed token is refused.
#![no_main]

use std::sync::OnceLock;

use braid_gateway::fuzzing::{Fingerprint, PageTokens, Position};
use libfuzzer_sys::fuzz_target;

fn tokens() -> &'static PageTokens {
    static TOKENS: OnceLock<PageTokens> = OnceLock::new();
    TOKENS.get_or_init(|| PageTokens::new(Some(b"fuzz-internal-key-0123456789abcdef")))
}

fn fingerprint(parts: &[u8]) -> Fingerprint {
    let mut f = Fingerprint::new();
    for part in parts.split(|&b| b == b'|') {
        f.add(part);
    }
    f
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let tokens = tokens();
    if mode % 2 == 0 {
        let Some(nul) = rest.iter().position(|&b| b == 0) else {
            return;
        };
        let (fp, token) = (&rest[..nul], String::from_utf8_lossy(&rest[nul + 1..]));
        if let Ok(position) = tokens.decode(&token, fingerprint(fp)) {
            assert_eq!(
                tokens.encode(fingerprint(fp), position),
                token,
                "a token that does not re-encode to itself was accepted"
            );
        }
        return;
    }
    let [o0, o1, o2, o3, at, value, rest @ ..] = rest else {
        return;
    };
    if rest.len() < 16 {
        return;
    }
    let (id, fp) = rest.split_at(16);
    let position = Position {
        snapshot: id.try_into().expect("16 bytes"),
        offset: u32::from_le_bytes([*o0, *o1, *o2, *o3]),
    };
    let token = tokens.encode(fingerprint(fp), position);
    assert_eq!(tokens.decode(&token, fingerprint(fp)).ok(), Some(position));
    let mut other = fp.to_vec();
    other.push(b'|');
    assert!(tokens.decode(&token, fingerprint(&other)).is_err());
    let mut bytes = token.clone().into_bytes();
    let at = usize::from(*at) % bytes.len();
    bytes[at] = *value;
    if let Ok(changed) = String::from_utf8(bytes)
        && changed != token
    {
        let outcome = tokens.decode(&changed, fingerprint(fp));
        assert!(
            outcome.is_err(),
            "changed token {changed:?} accepted: {outcome:?}"
        );
    }
});
