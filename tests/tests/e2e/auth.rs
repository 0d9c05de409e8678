//! Authentication and authorization end to end, on the real stack: user tokens at the
//! gateway (HS256 secret and an RS256/ES256 JWKS file the test rotates), roles per RPC,
//! tenant isolation without an existence oracle, and service credentials on every internal
//! service (health stays open).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use braid_core::auth::jwt::AuthConfig;
use braid_core::auth::secret::KeySource;
use braid_tests::v1::gateway_client::GatewayClient;
use braid_tests::v1::{
    DeleteDocumentRequest, DiscardJobsRequest, DocumentStatus, EmbedRequest, GetDocumentRequest,
    JobState, ListJobsRequest, PurgeModelsRequest, ReplaceDocumentRequest, RetryJobsRequest,
    SearchMode, SearchRequest, WaitIndexedRequest,
};
use braid_tests::{DocumentInputExt, Ingest, Service, Stack, StackOptions, eventually, titled};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::EncodePublicKey;
use rsa::traits::PublicKeyParts;
use tonic::Code;
use tonic::transport::Channel;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;

const HS_SECRET: &str = "test-user-secret-0123456789abcdefgh";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Standard valid claims for `sub` in `tenant` with `role`.
fn claims(sub: &str, tenant: &str, role: &str) -> serde_json::Value {
    serde_json::json!({
        "sub": sub, "tenant": tenant, "role": role,
        "iss": "braid", "aud": "braid", "iat": now(), "exp": now() + 600,
    })
}

fn hs256(claims: &serde_json::Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn signed(alg: Algorithm, kid: &str, claims: &serde_json::Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

struct RsaKey {
    encoding: EncodingKey,
    public_pem: String,
    jwk: serde_json::Value,
}

fn rsa_key(kid: &str) -> RsaKey {
    let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let public = private.to_public_key();
    let pem = private.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).unwrap();
    RsaKey {
        encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        public_pem: public
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap(),
        jwk: serde_json::json!({
            "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": b64(&public.n().to_bytes_be()), "e": b64(&public.e().to_bytes_be()),
        }),
    }
}

fn ec_key(kid: &str) -> (EncodingKey, serde_json::Value) {
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
        "x": b64(&point[1..33]), "y": b64(&point[33..65]),
    });
    (EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
}

fn write_jwks(path: &std::path::Path, keys: &[&serde_json::Value]) {
    let set = serde_json::json!({ "keys": keys });
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&set).unwrap()).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

async fn code_of<T>(result: Result<tonic::Response<T>, tonic::Status>) -> (Code, String) {
    match result {
        Ok(_) => (Code::Ok, String::new()),
        Err(s) => (s.code(), s.message().to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn user_tokens_roles_tenants_and_key_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let jwks_path = dir.path().join("jwks.json");
    let rsa = rsa_key("rsa-1");
    write_jwks(&jwks_path, &[&rsa.jwk]);
    let auth = AuthConfig {
        hs256: KeySource::from_value(HS_SECRET),
        jwks_file: Some(jwks_path.clone()),
        jwks_min_refresh_secs: 1,
        // No periodic re-read during the test: only the unknown-kid refresh can find the key.
        jwks_refresh_secs: 3600,
        ..Default::default()
    };
    let stack = Stack::start_with(StackOptions::with_jwt(auth))
        .await
        .unwrap();
    let mut gw: GatewayClient<Channel> = stack.gateway_client().await.unwrap();
    let search = |tenant: &str, query: &str| SearchRequest {
        tenant: tenant.into(),
        query: query.into(),
        mode: SearchMode::Hybrid as i32,
        ..Default::default()
    };

    // --- Bad credentials: UNAUTHENTICATED with a reason.
    let secret = HS_SECRET.as_bytes();
    let mut expired = claims("alice", "acme", "reader");
    expired["exp"] = (now() - 3600).into();
    let mut immature = claims("alice", "acme", "reader");
    immature["nbf"] = (now() + 3600).into();
    let mut wrong_aud = claims("alice", "acme", "reader");
    wrong_aud["aud"] = "someone-else".into();
    let mut wrong_iss = claims("alice", "acme", "reader");
    wrong_iss["iss"] = "evil".into();
    let alg_none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims("alice", "acme", "admin").to_string().as_bytes())
    );
    // HS/RS confusion: an HS256 token "signed" with the RSA public key the server trusts.
    let mut confusion_header = Header::new(Algorithm::HS256);
    confusion_header.kid = Some("rsa-1".into());
    let confusion = jsonwebtoken::encode(
        &confusion_header,
        &claims("mallory", "acme", "admin"),
        &EncodingKey::from_secret(rsa.public_pem.as_bytes()),
    )
    .unwrap();
    let cases = [
        (
            "forged signature",
            hs256(&claims("alice", "acme", "reader"), b"not-the-secret"),
        ),
        ("expired", hs256(&expired, secret)),
        ("not yet valid", hs256(&immature, secret)),
        ("wrong aud", hs256(&wrong_aud, secret)),
        ("wrong iss", hs256(&wrong_iss, secret)),
        ("alg none", alg_none),
        ("HS/RS confusion", confusion),
        ("garbage", "not-a-jwt".to_string()),
    ];
    for (what, token) in &cases {
        let (code, message) = code_of(gw.search(with_token(search("", "x"), token)).await).await;
        assert_eq!(code, Code::Unauthenticated, "{what}: {message}");
        assert!(!message.is_empty(), "{what}: a reason is given");
    }
    let (code, message) = code_of(gw.search(search("", "x")).await).await;
    assert_eq!(code, Code::Unauthenticated, "missing header: {message}");
    assert!(message.contains("authorization"), "{message}");

    // --- Roles per RPC.
    let reader = hs256(&claims("rita", "acme", "reader"), secret);
    let writer_a = hs256(&claims("alice", "acme", "writer"), secret);
    let writer_b = hs256(&claims("bob", "beta", "writer"), secret);
    let admin_b = hs256(&claims("bea", "beta", "admin"), secret);
    // One document titled with its id and sent without a mime type, as `tenant`'s `token`.
    let ingest = |tenant: &str, id: &str, content: &str, token: &str| {
        Ingest::new(vec![titled(id, content).mime("")])
            .tenant(tenant)
            .as_user(token)
            .request()
    };
    let (code, message) = code_of(gw.ingest(ingest("", "r1", "reader text", &reader)).await).await;
    assert_eq!(code, Code::PermissionDenied, "{message}");
    assert!(message.contains("writer"), "{message}");
    let (code, _) = code_of(
        gw.delete_document(with_token(
            DeleteDocumentRequest {
                external_id: "x".into(),
                ..Default::default()
            },
            &reader,
        ))
        .await,
    )
    .await;
    assert_eq!(code, Code::PermissionDenied);
    let (code, _) = code_of(
        gw.list_jobs(with_token(ListJobsRequest::default(), &writer_a))
            .await,
    )
    .await;
    assert_eq!(code, Code::PermissionDenied, "writer may not list jobs");
    let (code, _) = code_of(
        gw.list_jobs(with_token(ListJobsRequest::default(), &reader))
            .await,
    )
    .await;
    assert_eq!(code, Code::PermissionDenied, "reader may not list jobs");

    // --- Tenant isolation.
    let a = gw
        .ingest(ingest(
            "",
            "secret-a",
            "The zirconium accelerator budget of acme.",
            &writer_a,
        ))
        .await
        .unwrap()
        .into_inner()
        .results
        .remove(0);
    assert_eq!(a.status, DocumentStatus::Ready as i32, "{a:?}");
    let b = gw
        .ingest(ingest(
            "beta",
            "own-b",
            "Beta's own notes on gardening.",
            &writer_b,
        ))
        .await
        .unwrap()
        .into_inner()
        .results
        .remove(0);
    assert_eq!(b.status, DocumentStatus::Ready as i32, "{b:?}");
    // The owner sees its document; the reader of the same tenant too.
    let hits = gw
        .search(with_token(search("", "zirconium accelerator"), &reader))
        .await
        .unwrap()
        .into_inner()
        .hits;
    assert!(
        hits.iter().any(|h| h.document_id == a.document_id),
        "{hits:?}"
    );
    // Tenant B: no hits from A, and naming A's tenant is refused.
    let hits = gw
        .search(with_token(search("", "zirconium accelerator"), &writer_b))
        .await
        .unwrap()
        .into_inner()
        .hits;
    assert!(
        hits.iter().all(|h| h.document_id != a.document_id),
        "{hits:?}"
    );
    let (code, _) = code_of(
        gw.search(with_token(search("acme", "zirconium"), &writer_b))
            .await,
    )
    .await;
    assert_eq!(code, Code::PermissionDenied);
    let (code, _) = code_of(gw.ingest(ingest("acme", "planted", "x", &writer_b)).await).await;
    assert_eq!(code, Code::PermissionDenied, "writing into another tenant");
    // Get / delete / wait on A's document look exactly like a random id.
    let random = uuid::Uuid::new_v4().to_string();
    let get = |id: &str| GetDocumentRequest {
        document_id: id.into(),
        ..Default::default()
    };
    let theirs = code_of(
        gw.get_document(with_token(get(&a.document_id), &writer_b))
            .await,
    )
    .await;
    let nobody = code_of(gw.get_document(with_token(get(&random), &writer_b)).await).await;
    assert_eq!(theirs.0, Code::NotFound);
    assert_eq!(theirs, nobody);
    let by_external = code_of(
        gw.get_document(with_token(
            GetDocumentRequest {
                external_id: "secret-a".into(),
                ..Default::default()
            },
            &writer_b,
        ))
        .await,
    )
    .await;
    assert_eq!(by_external, nobody);
    let delete = |id: &str| DeleteDocumentRequest {
        document_id: id.into(),
        ..Default::default()
    };
    let theirs = code_of(
        gw.delete_document(with_token(delete(&a.document_id), &writer_b))
            .await,
    )
    .await;
    let nobody = code_of(
        gw.delete_document(with_token(delete(&random), &writer_b))
            .await,
    )
    .await;
    assert_eq!(theirs.0, Code::NotFound);
    assert_eq!(theirs, nobody);
    let waited = gw
        .wait_indexed(with_token(
            WaitIndexedRequest {
                document_ids: vec![a.document_id.clone(), random.clone()],
                timeout_ms: 1_000,
                ..Default::default()
            },
            &writer_b,
        ))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(waited.len(), 2);
    assert_eq!(waited[0].status, waited[1].status);
    assert_eq!(waited[0].status, DocumentStatus::Unspecified as i32);
    assert_eq!(waited[0].external_id, "", "no detail leaks");
    // Admin of B lists only B's jobs, and may not name A.
    let all_states = vec![
        JobState::Pending as i32,
        JobState::Running as i32,
        JobState::Done as i32,
        JobState::Dead as i32,
    ];
    let jobs = gw
        .list_jobs(with_token(
            ListJobsRequest {
                states: all_states.clone(),
                ..Default::default()
            },
            &admin_b,
        ))
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert!(!jobs.is_empty(), "B's own jobs are listed");
    assert!(jobs.iter().all(|j| j.tenant == "beta"), "{jobs:?}");
    let (code, _) = code_of(
        gw.list_jobs(with_token(
            ListJobsRequest {
                tenant: "acme".into(),
                states: all_states,
                ..Default::default()
            },
            &admin_b,
        ))
        .await,
    )
    .await;
    assert_eq!(code, Code::PermissionDenied);
    // A dead job of A's: B's admin retrying or discarding it by id gets what a random id
    // gets (nothing done), never learns it exists, and does not touch it; A's admin can.
    let db = stack.db().await.unwrap();
    let a_job: i64 = sqlx::query_scalar(
        "UPDATE ingest.jobs SET state = 'dead' \
         WHERE id = (SELECT min(id) FROM ingest.jobs WHERE tenant = 'acme') RETURNING id",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let random_job = a_job + 1_000_000;
    for ids in [vec![a_job], vec![random_job]] {
        let retried = gw
            .retry_jobs(with_token(
                RetryJobsRequest {
                    job_ids: ids.clone(),
                    ..Default::default()
                },
                &admin_b,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(retried.retried, 0, "{ids:?}");
        let discarded = gw
            .discard_jobs(with_token(
                DiscardJobsRequest {
                    job_ids: ids.clone(),
                    ..Default::default()
                },
                &admin_b,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(discarded.discarded, 0, "{ids:?}");
    }
    let dead_jobs = gw
        .list_jobs(with_token(ListJobsRequest::default(), &admin_b))
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert!(dead_jobs.iter().all(|j| j.job_id != a_job), "{dead_jobs:?}");
    let state: String = sqlx::query_scalar("SELECT state::text FROM ingest.jobs WHERE id = $1")
        .bind(a_job)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(state, "dead", "B's calls left A's job alone");
    let admin_a = hs256(&claims("ann", "acme", "admin"), secret);
    let listed = gw
        .list_jobs(with_token(ListJobsRequest::default(), &admin_a))
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert!(listed.iter().any(|j| j.job_id == a_job), "{listed:?}");
    let retried = gw
        .retry_jobs(with_token(
            RetryJobsRequest {
                job_ids: vec![a_job],
                ..Default::default()
            },
            &admin_a,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.retried, 1, "A's admin retries A's job");
    // A's document survived B's attempts.
    gw.get_document(with_token(get(&a.document_id), &writer_a))
        .await
        .unwrap();

    // --- JWKS: an RS256 token verifies; a key added to the file later works without restart.
    let rs = signed(
        Algorithm::RS256,
        "rsa-1",
        &claims("rsa-user", "acme", "reader"),
        &rsa.encoding,
    );
    gw.search(with_token(search("", "zirconium"), &rs))
        .await
        .unwrap();
    // An RS256 header on the RSA key's kid but an ES256 signature is refused (pinned alg).
    let (ec_encoding, ec_jwk) = ec_key("ec-2");
    let es = signed(
        Algorithm::ES256,
        "ec-2",
        &claims("ec-user", "acme", "reader"),
        &ec_encoding,
    );
    let (code, message) = code_of(gw.search(with_token(search("", "x"), &es)).await).await;
    assert_eq!(
        code,
        Code::Unauthenticated,
        "unknown kid before rotation: {message}"
    );
    write_jwks(&jwks_path, &[&rsa.jwk, &ec_jwk]);
    let mut gw2 = gw.clone();
    eventually(
        "the rotated-in key is accepted",
        Duration::from_secs(30),
        || {
            let mut gw = gw2.clone();
            let es = es.clone();
            async move {
                gw.search(with_token(search("", "zirconium"), &es))
                    .await
                    .ok()
                    .map(|_| ())
            }
        },
    )
    .await
    .unwrap();
    // Health stays open without a token.
    assert!(
        stack
            .gateway
            .health(braid_proto::service_names::GATEWAY)
            .await
            .is_some()
    );
    gw2.search(with_token(search("", "x"), &es)).await.unwrap();
    stack.shutdown().await.unwrap();
}

/// Reflection's ListServices, with an optional `authorization` header value.
async fn list_services(
    service: &Service,
    authorization: Option<&str>,
) -> Result<(), tonic::Status> {
    let channel = Channel::from_shared(service.endpoint())
        .unwrap()
        .connect_lazy();
    let mut client = ServerReflectionClient::new(channel);
    let mut request = tonic::Request::new(tokio_stream::iter([ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    }]));
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().unwrap());
    }
    let mut stream = client.server_reflection_info(request).await?.into_inner();
    stream.message().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn internal_services_need_a_service_credential() {
    let stack = Stack::start().await.unwrap();
    let wrong_key = format!(
        "Bearer {}",
        braid_core::auth::internal::InternalAuth::from_key(b"some-other-key", "gateway")
            .mint()
            .unwrap()
    );
    let internal = [
        (&stack.ingest, braid_proto::service_names::INGEST),
        (&stack.embedding, braid_proto::service_names::EMBEDDING),
        (&stack.vector, braid_proto::service_names::VECTOR_SEARCH),
        (&stack.text, braid_proto::service_names::TEXT_SEARCH),
    ];
    for (service, name) in internal {
        for auth in [None, Some(wrong_key.as_str()), Some("Bearer garbage")] {
            let err = list_services(service, auth).await.unwrap_err();
            assert_eq!(
                err.code(),
                Code::Unauthenticated,
                "{name} reflection {auth:?}"
            );
        }
        // Kubernetes probes need no credentials.
        assert_eq!(
            service.health(name).await,
            Some(tonic_health::pb::health_check_response::ServingStatus::Serving),
            "{name}"
        );
    }
    // The destructive internal RPCs, without credentials.
    let plain = |s: &Service| Channel::from_shared(s.endpoint()).unwrap().connect_lazy();
    use braid_tests::v1::embedding_service_client::EmbeddingServiceClient;
    use braid_tests::v1::ingest_service_client::IngestServiceClient;
    use braid_tests::v1::text_search_service_client::TextSearchServiceClient;
    use braid_tests::v1::vector_search_service_client::VectorSearchServiceClient;
    let err = VectorSearchServiceClient::new(plain(&stack.vector))
        .purge_models(PurgeModelsRequest {
            keep_model: "none".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = TextSearchServiceClient::new(plain(&stack.text))
        .replace_document(ReplaceDocumentRequest {
            tenant: "victim".into(),
            document_id: uuid::Uuid::new_v4().to_string(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = IngestServiceClient::new(plain(&stack.ingest))
        .list_jobs(ListJobsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = EmbeddingServiceClient::new(plain(&stack.embedding))
        .embed(EmbedRequest {
            texts: vec!["x".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // With the credential the same calls work, and the stack (which calls itself with
    // service tokens) ingests and searches end to end.
    for (service, name) in internal {
        let mut reflection = ServerReflectionClient::new(braid_tests::service_channel(service));
        reflection
            .server_reflection_info(tokio_stream::iter([ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            }]))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    stack
        .embedding_client()
        .embed(EmbedRequest {
            texts: vec!["x".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    stack
        .ingest_client()
        .list_jobs(ListJobsRequest::default())
        .await
        .unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    let result = Ingest::new(vec![
        titled("d1", "Service tokens protect the internal hops.").mime(""),
    ])
    .results(&mut gw)
    .await
    .remove(0);
    assert_eq!(result.status, DocumentStatus::Ready as i32, "{result:?}");
    let response = gw
        .search(SearchRequest {
            query: "internal hops".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!response.degraded, "{:?}", response.degraded_reasons);
    assert_eq!(response.hits[0].document_id, result.document_id);
    stack.shutdown().await.unwrap();
}

#[test]
fn start_up_refuses_missing_or_empty_keys() {
    use std::collections::HashMap;
    let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    // Service JWTs are the default mode: no key is an error.
    let err = braid_core::config::load::<braid_ingest::IngestConfig>("ingest", None, &env(&[]))
        .unwrap_err();
    assert!(err.to_string().contains("internal_auth.key"), "{err}");
    let err = braid_core::config::load::<braid_vector_search::VectorSearchConfig>(
        "vector-search",
        None,
        &env(&[("BRAID_VECTOR_SEARCH__INTERNAL_AUTH__KEY__VALUE", "")]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    // The embedding admin endpoint: a configured but empty key source.
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.key");
    std::fs::write(&empty, "\n").unwrap();
    let err = braid_core::config::load::<braid_embedding::EmbeddingConfig>(
        "embedding",
        None,
        &env(&[
            ("BRAID_EMBEDDING__INTERNAL_AUTH__MODE", "disabled"),
            (
                "BRAID_EMBEDDING__OPENAI_SERVER__API_KEY__FILE",
                empty.to_str().unwrap(),
            ),
        ]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("openai_server.api_key"), "{err}");
    // The gateway in jwt mode (the default) needs a key.
    let err = braid_core::config::load::<braid_gateway::GatewayConfig>(
        "gateway",
        None,
        &env(&[("BRAID_GATEWAY__INTERNAL_AUTH__MODE", "disabled")]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("auth.mode"), "{err}");
    // Disabled modes need nothing.
    braid_core::config::load::<braid_gateway::GatewayConfig>(
        "gateway",
        None,
        &env(&[
            ("BRAID_GATEWAY__INTERNAL_AUTH__MODE", "disabled"),
            ("BRAID_GATEWAY__AUTH__MODE", "disabled"),
        ]),
    )
    .unwrap();
}
