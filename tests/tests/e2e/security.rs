//! Keys, tokens and transport (issue 23 items 6-8), end to end on the real stack:
//! - revocation: a token works, is revoked, is refused by every gateway replica within the
//!   poll interval, and a token issued afterwards works; over-long tokens are refused;
//! - rotation: the user key and the internal key rotate (add, switch signing, remove) while
//!   several callers search continuously, with no failed or degraded call;
//! - TLS: see `tls.rs` next to this file.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use braid_core::auth::internal::InternalAuthConfig;
use braid_core::auth::secret::KeySource;
use braid_tests::users::{Users, as_user, claims, now};
use braid_tests::v1::gateway_client::GatewayClient;
use braid_tests::v1::{RevokeTokensRequest, SearchMode, SearchRequest};
use braid_tests::{Ingest, Stack, StackOptions, doc, eventually, http_get, titled};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tonic::Code;

const SECRET: &str = "security-test-user-key-0123456789abcdef";

fn search(query: &str) -> SearchRequest {
    SearchRequest {
        query: query.into(),
        top_k: 3,
        mode: SearchMode::Hybrid as i32,
        bypass_cache: true,
        ..Default::default()
    }
}

/// The code and message of a call's outcome (`Ok` as `Code::Ok`).
fn outcome<T>(r: Result<tonic::Response<T>, tonic::Status>) -> (Code, String) {
    match r {
        Ok(_) => (Code::Ok, String::new()),
        Err(s) => (s.code(), s.message().to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoked_tokens_are_refused_by_every_replica_and_new_ones_work() {
    let users = Users::new(SECRET);
    let mut options = users.stack_options();
    let poll = Duration::from_millis(300);
    options.gateway.revocation.poll_interval_ms = poll.as_millis() as u64;
    let stack = Stack::start_with(options).await.unwrap();
    // A second gateway replica: same configuration, same database, its own process state.
    let mut second = stack.second_gateway().await.unwrap();
    let mut one = stack.gateway_client().await.unwrap();
    let mut two = GatewayClient::connect(second.endpoint()).await.unwrap();

    let writer = users.token("wanda", "acme", "writer");
    Ingest::new(vec![titled(
        "comet",
        "A comet's tail points away from the sun.",
    )])
    .as_user(&writer)
    .ready(&mut one)
    .await;
    let bob = users.token("bob", "acme", "reader");
    for gw in [&mut one, &mut two] {
        let r = gw.search(as_user(search("comet tail"), &bob)).await;
        assert_eq!(outcome(r).0, Code::Ok, "bob searches before the revocation");
    }

    // Who may revoke: not a reader; not an admin of another tenant in acme.
    let admin = users.token("ada", "acme", "admin");
    let revoke = |subject: &str, tenant: &str| RevokeTokensRequest {
        subject: subject.into(),
        tenant: tenant.into(),
    };
    let (code, _) = outcome(one.revoke_tokens(as_user(revoke("bob", ""), &bob)).await);
    assert_eq!(code, Code::PermissionDenied);
    let beta_admin = users.token("bea", "beta", "admin");
    let (code, _) = outcome(
        one.revoke_tokens(as_user(revoke("bob", "acme"), &beta_admin))
            .await,
    );
    assert_eq!(code, Code::PermissionDenied);
    let (code, message) = outcome(one.revoke_tokens(as_user(revoke("", ""), &admin)).await);
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.starts_with("subject:"), "{message}");
    // Bea revoking "bob" in her own tenant does not touch acme's bob.
    one.revoke_tokens(as_user(revoke("bob", ""), &beta_admin))
        .await
        .unwrap();

    // Ada revokes bob through replica one: refused there at once...
    let revoked = one
        .revoke_tokens(as_user(revoke("bob", ""), &admin))
        .await
        .unwrap()
        .into_inner();
    let at = Instant::now();
    assert_eq!(revoked.tenant, "acme");
    let cut_off = revoked.cut_off.expect("a cut-off").seconds as u64;
    assert!(cut_off >= now() && cut_off <= now() + 1, "{cut_off}");
    let (code, message) = outcome(one.search(as_user(search("comet tail"), &bob)).await);
    assert_eq!(code, Code::Unauthenticated);
    assert!(message.contains("revoked"), "{message}");
    // ...and on replica two within the poll interval (measured; asserted loosely: the machine
    // is shared).
    eventually(
        "replica two refusing bob",
        poll + Duration::from_secs(10),
        || {
            let mut two = two.clone();
            let bob = bob.clone();
            async move {
                let (code, _) = outcome(two.search(as_user(search("comet tail"), &bob)).await);
                (code == Code::Unauthenticated).then_some(())
            }
        },
    )
    .await
    .unwrap();
    println!(
        "replica two refused the revoked token {:?} after the call returned (poll interval {poll:?})",
        at.elapsed()
    );

    // A token issued at the cut-off works on both replicas; so does another subject's.
    let mut fresh = claims("bob", "acme", "reader");
    fresh["iat"] = cut_off.into();
    fresh["exp"] = (cut_off + 600).into();
    let fresh = users.sign(&fresh);
    for gw in [&mut one, &mut two] {
        let r = gw.search(as_user(search("comet tail"), &fresh)).await;
        assert_eq!(outcome(r).0, Code::Ok, "a token issued after the cut-off");
        let r = gw
            .search(as_user(
                search("comet tail"),
                &users.token("rita", "acme", "reader"),
            ))
            .await;
        assert_eq!(outcome(r).0, Code::Ok, "another subject");
    }

    // A correctly signed token living 100 years is refused, naming the limit.
    let mut forever = claims("bob", "acme", "reader");
    forever["exp"] = (now() + 100 * 365 * 86_400).into();
    let (code, message) = outcome(
        two.search(as_user(search("comet"), &users.sign(&forever)))
            .await,
    );
    assert_eq!(code, Code::Unauthenticated);
    assert!(message.contains("auth.max_token_ttl_secs"), "{message}");

    // Audited: the revocation is in the trail (who, whom) and in its own history table.
    let db = stack.db().await.unwrap();
    let (by, tenant): (String, String) = sqlx::query_as(
        "SELECT revoked_by, tenant FROM auth.revocations WHERE subject = 'bob' \
         ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!((by.as_str(), tenant.as_str()), ("ada", "acme"));
    eventually(
        "the revocation in the audit trail",
        Duration::from_secs(30),
        || {
            let db = db.clone();
            async move {
                sqlx::query_as::<_, (String, String)>(
                    "SELECT subject, code FROM audit.records WHERE rpc = 'RevokeTokens' \
                 AND query = 'bob' AND tenant = 'acme' AND code = 'Ok'",
                )
                .fetch_optional(&db)
                .await
                .ok()
                .flatten()
                .filter(|(who, _)| who == "ada")
            }
        },
    )
    .await
    .unwrap();

    second.stop().await.unwrap();
    stack.shutdown().await.unwrap();
}

/// A fresh 64-character key.
fn random_key() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// A key ring file's text (`braid_core::auth::keys`).
fn ring(signing: &str, keys: &[(&str, &str)]) -> String {
    let mut text = format!("signing = \"{signing}\"\n[keys]\n");
    for (kid, key) in keys {
        text.push_str(&format!("{kid} = \"{key}\"\n"));
    }
    text
}

/// Replaces `path`'s content in one step, as a Secret volume update does.
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Waits until every service's `/healthz` shows `internal` as its internal key ring and the
/// gateway's shows `users` as its user key ring.
async fn rings_everywhere(stack: &Stack, internal: &str, users: &str) {
    let want_internal = format!("internal_auth.key: {internal}\n");
    let want_users = format!("auth.hs256: {users}\n");
    for service in stack.services() {
        let is_gateway = service.name == "gateway";
        eventually(
            &format!("{} showing `{internal}`", service.name),
            Duration::from_secs(30),
            || {
                let (want_internal, want_users) = (want_internal.clone(), want_users.clone());
                async move {
                    let (_, body) = http_get(service.admin, "/healthz").await.ok()?;
                    (body.contains(&want_internal) && (!is_gateway || body.contains(&want_users)))
                        .then_some(())
                }
            },
        )
        .await
        .unwrap();
    }
}

/// The user tokens callers take: generation, and a reader token signed with the current key.
struct Issuer {
    generation: AtomicU64,
    token: std::sync::RwLock<String>,
}

impl Issuer {
    fn sign_with(&self, kid: &str, key: &str) {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.into());
        let token = jsonwebtoken::encode(
            &header,
            &claims("carol", "acme", "writer"),
            &EncodingKey::from_secret(key.as_bytes()),
        )
        .unwrap();
        *self.token.write().unwrap() = token;
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn current(&self) -> (u64, String) {
        let token = self.token.read().unwrap().clone();
        (self.generation.load(Ordering::SeqCst), token)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn user_and_internal_keys_rotate_under_load_without_a_failed_call() {
    let dir = tempfile::tempdir().unwrap();
    let internal_file = dir.path().join("internal.keys");
    let users_file = dir.path().join("users.keys");
    let (internal_old, internal_new) = (random_key(), random_key());
    let (users_old, users_new) = (random_key(), random_key());
    replace_file(&internal_file, &ring("k1", &[("k1", &internal_old)]));
    replace_file(&users_file, &ring("u1", &[("u1", &users_old)]));

    let internal = InternalAuthConfig {
        key_reload_ms: 100,
        ..InternalAuthConfig::with_key(KeySource::from_file(&internal_file))
    };
    let mut options = StackOptions::with_jwt(braid_core::auth::jwt::AuthConfig {
        hs256: KeySource::from_file(&users_file),
        key_reload_ms: 100,
        ..Default::default()
    });
    options.gateway.internal_auth = internal.clone();
    options.ingest.internal_auth = internal.clone();
    options.embedding.internal_auth = internal.clone();
    options.vector_internal_auth = internal.clone();
    options.text_internal_auth = internal;
    let stack = Stack::start_with(options).await.unwrap();
    rings_everywhere(&stack, "signing k1; accepts k1", "signing u1; accepts u1").await;

    let issuer = Arc::new(Issuer {
        generation: AtomicU64::new(0),
        token: Default::default(),
    });
    issuer.sign_with("u1", &users_old);
    let mut gw = stack.gateway_client().await.unwrap();
    Ingest::new(vec![
        titled("comet", "A comet's tail points away from the sun."),
        titled("tide", "The moon's gravity raises the ocean tides."),
    ])
    .as_user(&issuer.current().1)
    .ready(&mut gw)
    .await;

    // Four callers, each on its own connection: three search (every leg, uncached), one
    // ingests (the gateway calls ingest, whose workers call every leg). Each records the
    // token generation of its last finished call.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let finished: Arc<Vec<AtomicU64>> = Arc::new((0..4).map(|_| AtomicU64::new(0)).collect());
    let mut callers = Vec::new();
    for i in 0..4 {
        let mut gw = stack.gateway_client().await.unwrap();
        let (stop, calls, failures, finished, issuer) = (
            stop.clone(),
            calls.clone(),
            failures.clone(),
            finished.clone(),
            issuer.clone(),
        );
        callers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let (generation, token) = issuer.current();
                let failed = if i < 3 {
                    match gw.search(as_user(search("comet tail"), &token)).await {
                        Ok(r) if r.get_ref().degraded => {
                            Some(format!("degraded: {:?}", r.get_ref().degraded_reasons))
                        }
                        Ok(_) => None,
                        Err(s) => Some(format!("{:?}: {}", s.code(), s.message())),
                    }
                } else {
                    n += 1;
                    Ingest::new(vec![doc(
                        format!("note-{n}"),
                        format!("Observation {n} of the comet's tail."),
                    )])
                    .as_user(&token)
                    .no_wait()
                    .send(&mut gw)
                    .await
                    .err()
                    .map(|s| format!("ingest {:?}: {}", s.code(), s.message()))
                };
                calls.fetch_add(1, Ordering::SeqCst);
                if let Some(f) = failed {
                    failures.lock().unwrap().push(f);
                }
                finished[i].store(generation, Ordering::SeqCst);
            }
        }));
    }
    // Waits until every caller finished calls with tokens of `generation` or later, i.e. no
    // call with an older token is in flight.
    let settled = |generation: u64| {
        let finished = finished.clone();
        eventually(
            "every caller on the new token",
            Duration::from_secs(60),
            move || {
                let done = finished
                    .iter()
                    .all(|g| g.load(Ordering::SeqCst) >= generation);
                async move { done.then_some(()) }
            },
        )
    };
    let calls_now = || calls.load(Ordering::SeqCst);
    let mut per_step = Vec::new();

    // 1. Add the new keys (the old ones still sign).
    let start = calls_now();
    replace_file(
        &internal_file,
        &ring("k1", &[("k1", &internal_old), ("k2", &internal_new)]),
    );
    replace_file(
        &users_file,
        &ring("u1", &[("u1", &users_old), ("u2", &users_new)]),
    );
    rings_everywhere(
        &stack,
        "signing k1; accepts k1, k2",
        "signing u1; accepts u1, u2",
    )
    .await;
    settled(1).await.unwrap();
    per_step.push(calls_now() - start);

    // 2. Switch signing: the services re-read the ring; the identity provider (this test)
    // signs users' tokens with the new key.
    let start = calls_now();
    replace_file(
        &internal_file,
        &ring("k2", &[("k1", &internal_old), ("k2", &internal_new)]),
    );
    replace_file(
        &users_file,
        &ring("u2", &[("u1", &users_old), ("u2", &users_new)]),
    );
    rings_everywhere(
        &stack,
        "signing k2; accepts k1, k2",
        "signing u2; accepts u1, u2",
    )
    .await;
    issuer.sign_with("u2", &users_new);
    settled(2).await.unwrap();
    per_step.push(calls_now() - start);

    // 3. Remove the old keys.
    let start = calls_now();
    replace_file(&internal_file, &ring("k2", &[("k2", &internal_new)]));
    replace_file(&users_file, &ring("u2", &[("u2", &users_new)]));
    rings_everywhere(&stack, "signing k2; accepts k2", "signing u2; accepts u2").await;
    // A little more load on the new keys alone.
    let target = calls_now() + 20;
    eventually(
        "20 calls after the rotation",
        Duration::from_secs(120),
        || {
            let done = calls_now() >= target;
            async move { done.then_some(()) }
        },
    )
    .await
    .unwrap();
    per_step.push(calls_now() - start);

    stop.store(true, Ordering::SeqCst);
    for caller in callers {
        caller.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    println!(
        "{} calls from 4 callers across the rotation (add / switch / remove: {per_step:?}), {} failed",
        calls_now(),
        failures.len()
    );
    assert!(failures.is_empty(), "failed calls: {failures:?}");
    assert!(
        per_step.iter().all(|n| *n > 0),
        "calls in every step: {per_step:?}"
    );

    // No service refused a credential at any time: internal calls included (a refused leg
    // call degrades a search instead of failing it; an ingest worker retries).
    for service in stack.services() {
        let (_, metrics) = http_get(service.admin, "/metrics").await.unwrap();
        let refused = braid_tests::metric_sum(
            &metrics,
            "braid_grpc_requests_total",
            &["code=\"Unauthenticated\""],
        );
        assert_eq!(refused, 0.0, "{} refused a credential", service.name);
    }
    // The old user key is gone: a token it signs is refused now.
    let mut gw = stack.gateway_client().await.unwrap();
    let old = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("u1".into());
        jsonwebtoken::encode(
            &header,
            &claims("carol", "acme", "reader"),
            &EncodingKey::from_secret(users_old.as_bytes()),
        )
        .unwrap()
    };
    let (code, _) = outcome(gw.search(as_user(search("comet"), &old)).await);
    assert_eq!(code, Code::Unauthenticated);
    stack.shutdown().await.unwrap();
}
