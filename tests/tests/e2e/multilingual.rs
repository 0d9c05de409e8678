//! Multilingual text end to end (issue 25 item 4): English, German, French, Spanish, Korean
//! and Japanese documents ingested through the gateway, each analysed in its own language by
//! the text leg (detected, or the metadata's `lang`); a query in each language finds its
//! document first in text mode, by stems (German `Haus` finds `Häuser`) or CJK bigrams
//! (`도서관` inside `도서관들은`), and the `lang` filter keeps one language. Real PostgreSQL +
//! pgvector, Tantivy and the real model.

use std::collections::BTreeSet;

use braid_tests::v1::{
    DocumentInput, FilterClause, MetadataFilter, SearchMode, SearchRequest, StringList,
    filter_clause,
};
use braid_tests::{DocumentInputExt, Ingest, Stack, doc};

type Gateway = braid_tests::v1::gateway_client::GatewayClient<tonic::transport::Channel>;

/// (external id, title, content, metadata `lang` if set). Every text holds `2024`, the
/// term the filter searches share.
const DOCS: [(&str, &str, &str, Option<&str>); 8] = [
    (
        "en-roofs",
        "Roofs after the storm",
        "After the storm of 2024 the roofers replaced the broken roofs of the old houses on \
         our street, and every house received solar panels.",
        None,
    ),
    (
        "en-trains",
        "Night trains",
        "Night trains between the capitals returned in 2024, and travellers booked the \
         sleeping cars weeks in advance.",
        None,
    ),
    (
        "de-haeuser",
        "Häuser am Fluss",
        "Die alten Häuser am Fluss wurden nach dem Hochwasser im Frühjahr 2024 gründlich \
         renoviert und bekamen neue Fenster.",
        None,
    ),
    (
        "de-zug",
        "Der Zug nach Berlin",
        "Der Zug nach Berlin fährt seit 2024 jeden Morgen pünktlich um acht Uhr vom \
         Hauptbahnhof ab.",
        None,
    ),
    (
        "fr-maisons",
        "Les maisons du village",
        "Les anciennes maisons du village ont été restaurées par les habitants pendant \
         l'été 2024, pierre par pierre.",
        None,
    ),
    (
        "es-ciudades",
        "Ciudades de la costa",
        "Las ciudades costeras del norte recibieron miles de turistas durante el verano de \
         2024 y ampliaron sus playas.",
        Some("es"),
    ),
    (
        "ko-library",
        "서울의 도서관",
        "서울의 도서관들은 2024년부터 주말에도 늦게까지 문을 엽니다.",
        None,
    ),
    (
        "ja-temple",
        "京都の寺院",
        "京都の古い寺院は秋の紅葉で有名で、2024年も多くの観光客が訪れました。",
        None,
    ),
];

fn documents() -> Vec<DocumentInput> {
    DOCS.iter()
        .map(|(id, title, content, lang)| {
            let d = doc(*id, *content).title(*title);
            match lang {
                Some(lang) => d.meta("lang", *lang),
                None => d,
            }
        })
        .collect()
}

async fn text_search(gw: &mut Gateway, query: &str, filter: Option<MetadataFilter>) -> Vec<String> {
    let r = gw
        .search(SearchRequest {
            query: query.into(),
            mode: SearchMode::Text as i32,
            top_k: 10,
            filter,
            bypass_cache: true,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .into_inner();
    r.hits.into_iter().map(|h| h.external_id).collect()
}

fn lang_in(codes: &[&str]) -> Option<MetadataFilter> {
    Some(MetadataFilter {
        clauses: vec![FilterClause {
            key: "lang".into(),
            op: Some(filter_clause::Op::In(StringList {
                values: codes.iter().map(|c| c.to_string()).collect(),
            })),
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn set(ids: &[String]) -> BTreeSet<&str> {
    ids.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn each_language_finds_its_document_and_filters_by_lang() {
    let stack = Stack::start().await.expect("stack");
    let mut gw = stack.gateway_client().await.unwrap();
    let ids = Ingest::new(documents()).ready(&mut gw).await;
    assert_eq!(ids.len(), DOCS.len());

    // Queries whose words are not the document's own forms: only the language's stemmer (or
    // CJK bigrams) joins them.
    let cases = [
        ("house roof", "en-roofs"),
        ("Haus renovieren", "de-haeuser"),
        ("maison restaurée", "fr-maisons"),
        ("playa costera", "es-ciudades"),
        ("도서관", "ko-library"),
        ("紅葉の寺院", "ja-temple"),
    ];
    for (query, expected) in cases {
        let ids = text_search(&mut gw, query, None).await;
        assert_eq!(
            ids.first().map(String::as_str),
            Some(expected),
            "{query}: {ids:?}"
        );
    }

    // Nothing lost: every document holds `2024`.
    let all = text_search(&mut gw, "2024", None).await;
    assert_eq!(
        set(&all),
        DOCS.iter().map(|d| d.0).collect(),
        "every document is indexed: {all:?}"
    );
    // The filter `lang` keeps the detected language (German), the metadata's (Spanish), and
    // several at once (Korean and Japanese).
    let german = text_search(&mut gw, "2024", lang_in(&["de"])).await;
    assert_eq!(
        set(&german),
        BTreeSet::from(["de-haeuser", "de-zug"]),
        "{german:?}"
    );
    let spanish = text_search(&mut gw, "2024", lang_in(&["es"])).await;
    assert_eq!(
        set(&spanish),
        BTreeSet::from(["es-ciudades"]),
        "{spanish:?}"
    );
    let cjk = text_search(&mut gw, "2024", lang_in(&["ko", "ja"])).await;
    assert_eq!(
        set(&cjk),
        BTreeSet::from(["ko-library", "ja-temple"]),
        "{cjk:?}"
    );
    // A German query under an English filter finds nothing German.
    let none = text_search(&mut gw, "Haus renovieren", lang_in(&["en"])).await;
    assert!(!none.iter().any(|id| id.starts_with("de-")), "{none:?}");
}
