//! Document ACLs through the public API: a user's token carries a clearance and groups, and
//! every search mode and GetDocument show that user only what the ACLs admit — with `top_k`
//! still filled by visible documents, because the filter runs inside both legs' queries.

use std::time::{SystemTime, UNIX_EPOCH};

use braid_core::auth::jwt::AuthConfig;
use braid_core::auth::secret::KeySource;
use braid_tests::v1::gateway_client::GatewayClient;
use braid_tests::v1::{
    DocumentAcl, DocumentInput, GetDocumentRequest, IngestRequest, SearchMode, SearchRequest,
};
use braid_tests::{Stack, StackOptions};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tonic::Code;
use tonic::transport::Channel;

const SECRET: &str = "acl-gateway-test-secret-0123456789";

fn token(sub: &str, role: &str, clearance: u32, groups: &[&str]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "sub": sub, "tenant": "acme", "role": role, "clearance": clearance, "groups": groups,
        "iss": "braid", "aud": "braid", "iat": now, "exp": now + 600,
    });
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn as_user<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn doc(id: &str, content: &str, acl: Option<DocumentAcl>) -> DocumentInput {
    DocumentInput {
        external_id: id.into(),
        title: id.into(),
        content: content.into(),
        acl,
        ..Default::default()
    }
}

async fn visible_ids(
    gw: &mut GatewayClient<Channel>,
    token: &str,
    mode: SearchMode,
    top_k: u32,
) -> Vec<String> {
    let r = gw
        .search(as_user(
            SearchRequest {
                query: "magnetar neutron star magnetic field".into(),
                top_k,
                mode: mode as i32,
                bypass_cache: true,
                ..Default::default()
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.degraded, "{mode:?}: {:?}", r.degraded_reasons);
    r.hits.into_iter().map(|h| h.external_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clearance_and_groups_filter_every_mode_with_top_k_filled() {
    let auth = AuthConfig {
        hs256: KeySource::from_value(SECRET),
        ..Default::default()
    };
    let stack = Stack::start_with(StackOptions::with_jwt(auth))
        .await
        .unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    // The loader labels documents for groups it is not in and moves them between groups:
    // an admin's right (a writer labels only within its own clearance and groups, issue 23).
    let writer = token("loader", "admin", 0, &[]);
    let restricted = Some(DocumentAcl {
        clearance: 3,
        groups: vec!["physics".into()],
    });
    // Six restricted documents match the query far better than the three public ones.
    let mut docs: Vec<DocumentInput> = (0..6)
        .map(|i| {
            doc(
                &format!("secret-{i}"),
                &format!(
                    "Magnetar {i}: a neutron star with an extreme magnetic field; magnetar \
                     neutron star magnetic field measurements and magnetar bursts."
                ),
                restricted.clone(),
            )
        })
        .collect();
    for (i, topic) in ["bread baking", "river ecology", "medieval poetry"]
        .iter()
        .enumerate()
    {
        docs.push(doc(
            &format!("public-{i}"),
            &format!("Notes on {topic}. Aside: a neutron star has a strong magnetic field."),
            None,
        ));
    }
    let ingested = gw
        .ingest(as_user(
            IngestRequest {
                documents: docs,
                wait_until_indexed: true,
                ..Default::default()
            },
            &writer,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        ingested.results.iter().all(|r| r.error.is_empty()),
        "{ingested:?}"
    );
    let secret_id = ingested.results[0].document_id.clone();

    let outsider = token("olga", "reader", 1, &["chemistry"]);
    let wrong_group = token("gus", "reader", 5, &["chemistry"]);
    let low_clearance = token("lou", "reader", 2, &["physics"]);
    let insider = token("ines", "reader", 3, &["physics"]);
    for mode in [SearchMode::Hybrid, SearchMode::Vector, SearchMode::Text] {
        for (who, t) in [
            ("outsider", &outsider),
            ("wrong group", &wrong_group),
            ("low clearance", &low_clearance),
        ] {
            let mut ids = visible_ids(&mut gw, t, mode, 3).await;
            ids.sort();
            assert_eq!(
                ids,
                ["public-0", "public-1", "public-2"],
                "{mode:?}, {who}: top_k filled with the visible documents only"
            );
        }
        let ids = visible_ids(&mut gw, &insider, mode, 3).await;
        assert_eq!(ids.len(), 3, "{mode:?}: {ids:?}");
        assert!(
            ids.iter().all(|id| id.starts_with("secret-")),
            "{mode:?}: the restricted documents rank first for a caller who may see them: {ids:?}"
        );
    }

    // GetDocument: hidden looks exactly like missing.
    let get = |t: &str| {
        as_user(
            GetDocumentRequest {
                document_id: secret_id.clone(),
                ..Default::default()
            },
            t,
        )
    };
    let hidden = gw.get_document(get(&outsider)).await.unwrap_err();
    let missing = gw
        .get_document(as_user(
            GetDocumentRequest {
                document_id: "00000000-0000-4000-8000-000000000000".into(),
                ..Default::default()
            },
            &outsider,
        ))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    assert_eq!(
        (hidden.code(), hidden.message()),
        (missing.code(), missing.message())
    );
    let seen = gw.get_document(get(&insider)).await.unwrap().into_inner();
    assert_eq!(seen.acl, restricted);

    // Changing the ACL (group physics → chemistry, same content) re-indexes the documents:
    // the physics insider no longer finds them in any mode, a chemistry reader now does.
    let moved = Some(DocumentAcl {
        clearance: 3,
        groups: vec!["chemistry".into()],
    });
    let secrets: Vec<DocumentInput> = (0..6)
        .map(|i| {
            doc(
                &format!("secret-{i}"),
                &format!(
                    "Magnetar {i}: a neutron star with an extreme magnetic field; magnetar \
                     neutron star magnetic field measurements and magnetar bursts."
                ),
                moved.clone(),
            )
        })
        .collect();
    let changed = gw
        .ingest(as_user(
            IngestRequest {
                documents: secrets,
                wait_until_indexed: true,
                ..Default::default()
            },
            &writer,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        changed
            .results
            .iter()
            .all(|r| r.error.is_empty() && !r.unchanged),
        "an ACL change is a change: {changed:?}"
    );
    let chemist = token("cora", "reader", 3, &["chemistry"]);
    for mode in [SearchMode::Hybrid, SearchMode::Vector, SearchMode::Text] {
        let mut ids = visible_ids(&mut gw, &insider, mode, 3).await;
        ids.sort();
        assert_eq!(
            ids,
            ["public-0", "public-1", "public-2"],
            "{mode:?}: the physics group lost access to the moved documents"
        );
        let ids = visible_ids(&mut gw, &chemist, mode, 3).await;
        assert!(
            ids.len() == 3 && ids.iter().all(|id| id.starts_with("secret-")),
            "{mode:?}: the chemistry group gained access: {ids:?}"
        );
    }
    let hidden_now = gw.get_document(get(&insider)).await.unwrap_err();
    assert_eq!(hidden_now.code(), Code::NotFound);
    stack.shutdown().await.unwrap();
}
