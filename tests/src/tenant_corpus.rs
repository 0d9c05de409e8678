//! The corpus and probe of the per-tenant text statistics tests (issue 23 item 2), shared by
//! the Tantivy test (`tests/e2e/tenant_scores.rs`) and the engine's (`tests/opensearch/`):
//! tenant `acme` has one document about the query among others, tenant `beta` many full of the
//! query's terms, and a tenant's text scores for the query must not move when `beta` writes.

use braid_proto::tonic::transport::Channel;
use braid_proto::v1::gateway_client::GatewayClient;
use braid_proto::v1::{DocumentInput, SearchMode, SearchRequest};

use crate::{DocumentInputExt, as_user, doc};

/// The query whose text scores are compared.
pub const QUERY: &str = "volcano lava eruption";

/// A plain-text document titled "Field notes" (the title is scored too: every document of
/// the corpus keeps the same one).
pub fn note(id: &str, content: &str) -> DocumentInput {
    doc(id, content).title("Field notes")
}

/// Tenant `acme`'s documents: one about the query's subject among others.
pub fn acme() -> Vec<DocumentInput> {
    vec![
        note(
            "a-volcano",
            "The volcano woke at dawn: an eruption sent lava down the northern slope.",
        ),
        note(
            "a-harbour",
            "Fishing boats in the harbour and a quiet market.",
        ),
        note("a-lava", "Cooled lava fields make poor farmland."),
    ]
}

/// Tenant `beta`'s documents `b-<from>` .. `b-<from + n - 1>`, all full of the query's terms.
pub fn beta(from: usize, n: usize) -> Vec<DocumentInput> {
    (from..from + n)
        .map(|i| {
            note(
                &format!("b-{i:03}"),
                &format!(
                    "Volcano survey {i}: lava, lava and more lava after the eruption; the \
                     volcano's eruption column rose for {i} hours."
                ),
            )
        })
        .collect()
}

/// (external id, text score bits) of every hit, in rank order, for a text-only search of
/// [`QUERY`] as the holder of `token`.
pub async fn text_scores(
    gw: &mut GatewayClient<Channel>,
    token: &str,
    chunk_level: bool,
) -> Vec<(String, u32)> {
    let request = SearchRequest {
        query: QUERY.into(),
        mode: SearchMode::Text as i32,
        top_k: 20,
        chunk_level,
        bypass_cache: true,
        ..Default::default()
    };
    let r = gw
        .search(as_user(request, token))
        .await
        .expect("search")
        .into_inner();
    r.hits
        .into_iter()
        .map(|h| {
            let score = h.text_score.expect("a text hit has a text score");
            (h.external_id, score.to_bits())
        })
        .collect()
}
