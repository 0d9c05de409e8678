//! Stable pages (issue 25 item 5): a walk over the pages of one search is cut from the
//! ranking snapshot its first page stored, so documents ingested or deleted between the pages
//! cause no repeats and no gaps in the part that did not change; a deleted document is never
//! shown; a second gateway replica sharing Redis serves the next page of a walk the first
//! started; an expired snapshot is a clear error, never a silently different ranking.

use std::collections::HashSet;
use std::time::Duration;

use braid_proto::tonic::Code;
use braid_tests::users::as_user;
use braid_tests::v1::gateway_client::GatewayClient;
use braid_tests::v1::{
    DeleteDocumentRequest, DocumentInput, SearchMode, SearchRequest, SearchResponse,
};
use braid_tests::{
    DocumentInputExt, Ingest, RedisServer, Stack, StackOptions, acl, doc, eventually, ingest_ready,
};
use tonic::transport::Channel;

type Gateway = GatewayClient<Channel>;

const QUERY: &str = "glacier melt rates in the alps";
const DEPTH: u32 = 30;
const PAGE: u32 = 7;

/// Document `i` of the first batch: about the query, each with a length of its own (no ties).
fn report(i: usize) -> DocumentInput {
    let content = format!(
        "Field notes {i}: glacier observations over {} summers, with melt measurements from \
         station {i} in the alps.{}",
        2 + i,
        " annex".repeat(i)
    );
    doc(format!("g{i:02}"), content).title(format!("Field notes {i}"))
}

/// A document written after the first page that ranks above every one of the first batch.
fn newcomer(i: usize) -> DocumentInput {
    let content = format!(
        "Glacier melt rates in the alps. Glacier melt rates in the alps are rising: melt rates \
         of every glacier in the alps, survey {i}."
    );
    doc(format!("new{i}"), content).title("Glacier melt rates in the alps")
}

fn request(token: &str) -> SearchRequest {
    SearchRequest {
        query: QUERY.into(),
        mode: SearchMode::Hybrid as i32,
        top_k: DEPTH,
        page_size: PAGE,
        page_token: token.into(),
        ..Default::default()
    }
}

fn ids(r: &SearchResponse) -> Vec<String> {
    r.hits.iter().map(|h| h.external_id.clone()).collect()
}

async fn page(gw: &mut Gateway, token: &str) -> Result<SearchResponse, tonic::Status> {
    gw.search(request(token)).await.map(|r| r.into_inner())
}

/// Every page after the first, fetched alternately from `gateways` (starting with the
/// first), following the tokens from `token`; the ids of each page.
async fn walk(gateways: &mut [Gateway], mut token: String) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut turn = 0;
    while !token.is_empty() {
        let gw = &mut gateways[turn % gateways.len()];
        let p = page(gw, &token)
            .await
            .unwrap_or_else(|e| panic!("page {}: {e:?}", pages.len() + 2));
        assert!(p.hits.len() <= PAGE as usize, "{p:?}");
        pages.push(ids(&p));
        token = p.next_page_token;
        turn += 1;
        assert!(pages.len() < 20, "the walk does not end");
    }
    pages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_stay_stable_while_documents_are_ingested_and_deleted_between_them() {
    let redis = RedisServer::start().await.unwrap();
    let mut options = StackOptions::default();
    options.gateway.query_cache.redis_url = redis.url();
    options.gateway.query_cache.redis_timeout_ms = 5_000;
    let stack = Stack::start_with(options).await.unwrap();
    // A second gateway replica sharing Redis (same configuration, its own process state).
    let mut second = stack.second_gateway().await.unwrap();
    let mut one = stack.gateway_client().await.unwrap();
    let two = GatewayClient::connect(second.endpoint()).await.unwrap();

    ingest_ready(&mut one, "", (0..DEPTH as usize).map(report).collect()).await;
    // The ranking as it stands (no paging), then the first page of a walk over it.
    let ranking = ids(&one
        .search(SearchRequest {
            page_size: 0,
            ..request("")
        })
        .await
        .unwrap()
        .into_inner());
    assert_eq!(ranking.len(), DEPTH as usize, "{ranking:?}");
    let first = page(&mut one, "").await.unwrap();
    assert_eq!(
        ids(&first),
        ranking[..PAGE as usize],
        "page 1 is the ranking's head"
    );
    assert!(!first.next_page_token.is_empty());

    // Between the pages: documents that rank above all others, and the deletion of one not
    // shown yet (the legs hear of it later, through the outbox; the walk must not show it).
    let new_ids = ingest_ready(&mut one, "", (0..4).map(newcomer).collect()).await;
    assert_eq!(new_ids.len(), 4);
    let now = ids(&one
        .search(SearchRequest {
            page_size: 0,
            ..request("")
        })
        .await
        .unwrap()
        .into_inner());
    assert!(
        now[..4].iter().all(|id| id.starts_with("new")),
        "the newcomers rank first now: {now:?}"
    );
    let deleted = ranking[(PAGE as usize) + 5].clone();
    one.delete_document(DeleteDocumentRequest {
        external_id: deleted.clone(),
        ..Default::default()
    })
    .await
    .unwrap();

    // Page 2 from the second gateway, then alternately.
    let mut gateways = vec![two, one.clone()];
    let pages = walk(&mut gateways, first.next_page_token.clone()).await;
    let mut shown: Vec<String> = ids(&first);
    for p in &pages {
        shown.extend(p.iter().cloned());
    }
    let unique: HashSet<&String> = shown.iter().collect();
    assert_eq!(unique.len(), shown.len(), "no document twice: {pages:?}");
    assert!(
        !shown.contains(&deleted),
        "{deleted} was deleted: {pages:?}"
    );
    let expected: Vec<String> = ranking
        .iter()
        .filter(|id| **id != deleted)
        .cloned()
        .collect();
    assert_eq!(
        shown, expected,
        "the first ranking minus the deleted document, in its order (pages {pages:?})"
    );
    // Pages stay full while the snapshot has hits: 7, 7, 7, 7, 1.
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [7, 7, 7, 1], "{pages:?}");

    second.stop().await.unwrap();
    stack.shutdown().await.unwrap();
}

/// A page asked for after the walk's snapshot expired is refused, naming `page_token` and
/// what to do, with the query cache off (paging does not depend on it); a new walk works.
#[tokio::test]
async fn an_expired_snapshot_is_a_clear_error_not_another_ranking() {
    let mut options = StackOptions::default();
    options.gateway.search.page_snapshot_ttl_ms = 1_000;
    options.gateway.query_cache.enabled = false;
    let stack = Stack::start_with(options).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    ingest_ready(&mut gw, "", (0..10).map(report).collect()).await;
    let first = page(&mut gw, "").await.unwrap();
    assert_eq!(first.hits.len(), PAGE as usize);
    // Within the TTL the next page is served (from the snapshot), then it expires.
    let second = page(&mut gw, &first.next_page_token).await.unwrap();
    assert_eq!(second.hits.len(), 3);
    let refused = eventually("the snapshot expiring", Duration::from_secs(30), || {
        let mut gw = gw.clone();
        let token = first.next_page_token.clone();
        async move { page(&mut gw, &token).await.err() }
    })
    .await
    .unwrap();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let message = refused.message();
    assert!(message.starts_with("page_token:"), "{message}");
    assert!(
        message.contains("expired") && message.contains("start again"),
        "{message}"
    );
    let again = page(&mut gw, "").await.unwrap();
    assert_eq!(
        ids(&again),
        ids(&first),
        "a new walk starts from the first page"
    );
    stack.shutdown().await.unwrap();
}

/// A document whose ACL changed after the first page so that the caller may no longer read
/// it is left out of the later pages (checked with ingest as the caller, who sees the change
/// first); the rest of the walk is the first ranking in its order.
#[tokio::test]
async fn a_document_hidden_by_an_acl_change_since_the_first_page_is_never_shown() {
    let users = braid_tests::users::Users::new("stable-pages-test-secret-0123456789");
    let stack = Stack::start_with(users.stack_options()).await.unwrap();
    let mut gw = stack.gateway_client().await.unwrap();
    let writer = users.token_with_acl("wanda", "acme", "writer", 10, &[]);
    let reader = users.token_with_acl("rita", "acme", "reader", 1, &[]);
    Ingest::new((0..12).map(report).collect())
        .as_user(&writer)
        .accepted(&mut gw)
        .await;
    let search = |token: &str, page_size: u32| {
        as_user(
            SearchRequest {
                page_size,
                ..request(token)
            },
            &reader,
        )
    };
    let ranking = ids(&gw.search(search("", 0)).await.unwrap().into_inner());
    assert_eq!(ranking.len(), 12, "{ranking:?}");
    let first = gw.search(search("", PAGE)).await.unwrap().into_inner();
    assert_eq!(ids(&first), ranking[..PAGE as usize]);

    // The writer raises the clearance of a document the reader has not been shown yet.
    let hidden = ranking[PAGE as usize + 1].clone();
    let i: usize = hidden[1..].parse().unwrap();
    let mut raised = report(i).acl(acl(5, &[]));
    raised.content.push_str(" Revised.");
    Ingest::new(vec![raised])
        .as_user(&writer)
        .accepted(&mut gw)
        .await;

    let second = gw
        .search(search(&first.next_page_token, PAGE))
        .await
        .unwrap()
        .into_inner();
    assert!(second.next_page_token.is_empty());
    let expected: Vec<String> = ranking[PAGE as usize..]
        .iter()
        .filter(|id| **id != hidden)
        .cloned()
        .collect();
    assert_eq!(
        ids(&second),
        expected,
        "{hidden} is hidden from the reader now"
    );
    stack.shutdown().await.unwrap();
}
