//! User-token and service-token verification (crates/core/src/auth). A token refused never
//! yields a principal, and an accepted one is what the rules accept.
//!
//! Input: a mode byte, then
//! - mode 0: a token as text. Nobody but the key holder can sign, so both the user-token
//!   verifier and the internal (service) verifier must refuse it.
//! - mode 1 and 2: a JOSE header and claims (JSON, separated by a NUL byte; `NOW` in the
//!   claims is replaced by the current time), signed HS256 here with ring key `k1`. When the
//!   verifier accepts the token, the header and claims must satisfy every rule
//!   (`check_accepted`). Mode 2 then changes one byte of the signed token (position and
//!   value from the input's last two bytes): a changed token is refused.
#![no_main]

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use braid_core::auth::internal::InternalAuth;
use braid_core::auth::jwt::{AuthConfig, JwtVerifier};
use braid_core::auth::secret::KeySource;
use braid_core::auth::{Principal, Role};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sha2::Sha256;

const K1: &str = "k1-0123456789abcdef0123456789abcdef";
const K2: &str = "k2-0123456789abcdef0123456789abcdef";
const LEEWAY: u64 = 30;
const MAX_TTL: u64 = 3600;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    verifier: JwtVerifier,
    internal: InternalAuth,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let config = AuthConfig {
            hs256: KeySource::from_value(format!(
                "signing = \"k2\"\n[keys]\nk1 = \"{K1}\"\nk2 = \"{K2}\"\n"
            )),
            leeway_secs: LEEWAY,
            max_token_ttl_secs: MAX_TTL,
            ..AuthConfig::default()
        };
        let verifier = runtime
            .block_on(JwtVerifier::from_config(&config))
            .expect("verifier");
        let internal = InternalAuth::from_key(K1.as_bytes(), "fuzz");
        Fixture {
            runtime,
            verifier,
            internal,
        }
    })
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn sign(header: &[u8], claims: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(K1.as_bytes()).expect("any key length");
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// `braid`, or a list holding it (jsonwebtoken accepts lists for `aud` and `iss`).
fn names_braid(claim: Option<&Value>) -> bool {
    match claim {
        Some(Value::String(a)) => a == "braid",
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some("braid")),
        _ => false,
    }
}

/// The rules an accepted token (signed with `k1`, verified at `now` or a second later) must
/// follow.
fn check_accepted(header: &[u8], claims: &[u8], p: &Principal, now: u64) {
    let header: Value = serde_json::from_slice(header).expect("accepted header is JSON");
    assert_eq!(header["alg"], "HS256", "accepted alg {header}");
    assert!(
        matches!(header.get("kid"), None | Some(Value::Null)) || header["kid"] == "k1",
        "accepted a token signed by k1 under kid {}",
        header["kid"]
    );
    let c: Value = serde_json::from_slice(claims).expect("accepted claims are JSON");
    let exp = c["exp"].as_u64().expect("accepted without an integer exp");
    assert!(
        exp + LEEWAY >= now,
        "accepted an expired token (exp {exp}, now {now})"
    );
    if let Some(nbf) = c.get("nbf").and_then(Value::as_u64) {
        assert!(nbf <= now + LEEWAY + 1, "accepted before nbf {nbf}");
    }
    match c.get("iat").and_then(Value::as_u64) {
        Some(iat) => {
            assert!(
                iat <= now + LEEWAY + 1,
                "accepted a token issued in the future"
            );
            assert!(
                exp.saturating_sub(iat) <= MAX_TTL,
                "accepted a lifetime over the max"
            );
        }
        None => assert!(exp.saturating_sub(now) <= MAX_TTL + 1),
    }
    assert!(names_braid(c.get("iss")), "accepted issuer {}", c["iss"]);
    assert!(names_braid(c.get("aud")), "accepted audience {}", c["aud"]);
    assert_eq!(c["sub"].as_str(), Some(p.subject.as_str()));
    assert!(!p.subject.is_empty() && p.subject.len() <= 256);
    let roles: Vec<&str> = c["role"]
        .as_str()
        .into_iter()
        .chain(
            c["roles"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str),
        )
        .collect();
    assert!(
        roles.contains(&p.role.as_str()),
        "role {:?} not in {roles:?}",
        p.role
    );
    match &p.access.tenant {
        Some(t) => assert_eq!(c["tenant"].as_str(), Some(t.as_str())),
        None => {
            assert_eq!(p.role, Role::Admin, "cross-tenant without admin");
            assert_eq!(c["braid_cross_tenant"], Value::Bool(true));
        }
    }
    for g in &p.access.groups {
        assert!(
            !g.is_empty() && !g.chars().any(char::is_control),
            "group {g:?}"
        );
    }
    assert!(
        !p.access.unrestricted,
        "a user token gave unrestricted access"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    if mode % 3 == 0 {
        let token = String::from_utf8_lossy(rest);
        let user = f.runtime.block_on(f.verifier.verify(&token));
        assert!(
            user.is_err(),
            "forged user token accepted: {token:?} -> {user:?}"
        );
        let service = f.internal.verify(&token);
        assert!(service.is_err(), "forged service token accepted: {token:?}");
        return;
    }
    let (body, edit) = match mode % 3 {
        2 if rest.len() >= 2 => {
            let (body, edit) = rest.split_at(rest.len() - 2);
            (body, Some((edit[0], edit[1])))
        }
        _ => (rest, None),
    };
    let Some(nul) = body.iter().position(|&b| b == 0) else {
        return;
    };
    let header = &body[..nul];
    let now = now();
    let claims = String::from_utf8_lossy(&body[nul + 1..]).replace("NOW", &now.to_string());
    let token = sign(header, claims.as_bytes());
    match edit {
        None => {
            if let Ok(p) = f.runtime.block_on(f.verifier.verify(&token)) {
                check_accepted(header, claims.as_bytes(), &p, now);
            }
        }
        Some((at, value)) => {
            let mut bytes = token.clone().into_bytes();
            let at = usize::from(at) % bytes.len();
            bytes[at] = value;
            let Ok(changed) = String::from_utf8(bytes) else {
                return;
            };
            if changed != token {
                let outcome = f.runtime.block_on(f.verifier.verify(&changed));
                assert!(outcome.is_err(), "changed token accepted: {changed:?}");
            }
        }
    }
});
