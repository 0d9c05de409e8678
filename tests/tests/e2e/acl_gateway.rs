//! Document ACLs through the public API: a user's token carries a clearance and groups, and
//! every search mode and GetDocument show that user only what the ACLs admit — with `top_k`
//! still filled by visible documents, because the filter runs inside both legs' queries.

use braid_tests::v1::gateway_client::GatewayClient;
use braid_tests::v1::{DocumentAcl, DocumentInput, GetDocumentRequest, SearchMode, SearchRequest};
use braid_tests::{DocumentInputExt, Ingest, Stack, Users, as_user, titled};
use tonic::Code;
use tonic::transport::Channel;

const SECRET: &str = "acl-gateway-test-secret-0123456789";

/// The six restricted documents with `acl` (titled with their ids and sent without a mime
/// type, like every document here): they match the query far better than the public ones.
fn secrets(acl: Option<DocumentAcl>) -> Vec<DocumentInput> {
    (0..6)
        .map(|i| {
            let content = format!(
                "Magnetar {i}: a neutron star with an extreme magnetic field; magnetar neutron \
                 star magnetic field measurements and magnetar bursts."
            );
            titled(&format!("secret-{i}"), content)
                .mime("")
                .acl(acl.clone())
        })
        .collect()
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
    let users = Users::new(SECRET);
    let token = |sub: &str, role: &str, clearance: u32, groups: &[&str]| {
        users.token_with_acl(sub, "acme", role, clearance, groups)
    };
    let stack = Stack::start_with(users.stack_options()).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    // The loader labels documents for groups it is not in and moves them between groups:
    // an admin's right (a writer labels only within its own clearance and groups, issue 23).
    let writer = token("loader", "admin", 0, &[]);
    let restricted = Some(DocumentAcl {
        clearance: 3,
        groups: vec!["physics".into()],
    });
    // Six restricted documents match the query far better than the three public ones.
    let mut docs = secrets(restricted.clone());
    for (i, topic) in ["bread baking", "river ecology", "medieval poetry"]
        .iter()
        .enumerate()
    {
        let content =
            format!("Notes on {topic}. Aside: a neutron star has a strong magnetic field.");
        docs.push(titled(&format!("public-{i}"), content).mime(""));
    }
    let ingested = Ingest::new(docs)
        .as_user(&writer)
        .send(&mut gw)
        .await
        .unwrap();
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
    let changed = Ingest::new(secrets(moved))
        .as_user(&writer)
        .send(&mut gw)
        .await
        .unwrap();
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
