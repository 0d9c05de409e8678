//! Multilingual text (issue 25 item 4) through the backend traits: English, German, French,
//! Spanish, Korean and Japanese documents, each analysed in its own language (detected, or the
//! metadata's `lang`) on every backend. A query in each language finds its document first by
//! the language's stems or CJK bigrams (German `Haus` finds `Häuser`, French `maison` finds
//! `maisons`, Korean `도서관` is inside `도서관들은`), the snippet and text come from the
//! document's own fields, other languages' documents never move an English score (BM25
//! statistics are per language), and the `lang` filter keeps one language or several.

use std::collections::{BTreeSet, HashMap};

use braid_core::filter::{Clause, Filter, Op};
use braid_text_search::TextQuery;

use super::Backend;
use super::cases::{chunk, put, query};

/// (document, title, text, metadata `lang` if set).
const DOCS: [(&str, &str, &str, Option<&str>); 8] = [
    (
        "en-roofs",
        "Roofs after the storm",
        "After the storm the roofers replaced the broken roofs of the old houses on our \
         street, and every house received solar panels.",
        None,
    ),
    (
        "en-trains",
        "Night trains",
        "Night trains between the capitals returned this year, and travellers booked the \
         sleeping cars weeks in advance.",
        None,
    ),
    (
        "de-haeuser",
        "Häuser am Fluss",
        "Die alten Häuser am Fluss wurden nach dem Hochwasser im Frühjahr gründlich \
         renoviert und bekamen neue Fenster.",
        None,
    ),
    (
        "de-zug",
        "Der Zug nach Berlin",
        "Der Zug nach Berlin fährt seit dem Winter jeden Morgen pünktlich um acht Uhr vom \
         Hauptbahnhof ab.",
        None,
    ),
    (
        "fr-maisons",
        "Les maisons du village",
        "Les anciennes maisons du village ont été restaurées par les habitants pendant \
         l'été, pierre par pierre.",
        None,
    ),
    (
        "es-ciudades",
        "Ciudades de la costa",
        "Las ciudades costeras del norte recibieron miles de turistas durante el verano y \
         ampliaron sus playas.",
        Some("es"),
    ),
    (
        "ko-library",
        "서울의 도서관",
        "서울의 도서관들은 올해부터 주말에도 늦게까지 문을 엽니다.",
        None,
    ),
    (
        "ja-temple",
        "京都の寺院",
        "京都の古い寺院は秋の紅葉で有名で、今年も多くの観光客が訪れました。",
        None,
    ),
];

async fn put_doc(b: &Backend, (id, title, text, lang): (&str, &str, &str, Option<&str>)) {
    let mut c = chunk(id, 0, title, text);
    c.metadata = lang
        .map(|l| HashMap::from([("lang".to_string(), l.to_string())]))
        .unwrap_or_default();
    put(b, id, vec![c]).await;
}

/// Document ids of a search, in rank order.
async fn ranked(b: &Backend, q: TextQuery) -> Vec<String> {
    let text = q.query.clone();
    b.index
        .search(q)
        .await
        .unwrap_or_else(|e| panic!("{text}: {e:?}"))
        .into_iter()
        .map(|h| h.document_id)
        .collect()
}

fn lang_in(codes: &[&str]) -> Filter {
    Filter {
        clauses: vec![Clause {
            field: "filter.clauses[0]".into(),
            key: "lang".into(),
            op: Op::In(codes.iter().map(|c| c.to_string()).collect()),
            negate: false,
        }],
    }
}

pub async fn each_language_is_analysed_and_filtered_on_its_own(b: Backend) {
    // English first: the scores of an English-only tenant.
    for doc in &DOCS[..2] {
        put_doc(&b, *doc).await;
    }
    let english = |b: Backend| async move {
        let hits = b.index.search(query("houses river roofs")).await.unwrap();
        hits.into_iter()
            .map(|h| (h.document_id, h.score.to_bits()))
            .collect::<Vec<_>>()
    };
    let before = english(b.clone()).await;
    assert_eq!(before.first().map(|(id, _)| id.as_str()), Some("en-roofs"));
    for doc in &DOCS[2..] {
        put_doc(&b, *doc).await;
    }
    // Statistics per language: the other languages' documents never reach the English
    // fields, so every English score is the same to the bit.
    assert_eq!(english(b.clone()).await, before);

    // Queries whose words are not the document's own forms: only the language's stemmer (or
    // CJK bigrams) joins them. Document-level and chunk-level ranking alike.
    let cases = [
        ("house roof", "en-roofs"),
        ("Haus", "de-haeuser"),
        ("maison restaurée", "fr-maisons"),
        ("playa costera", "es-ciudades"),
        ("도서관", "ko-library"),
        // Two words: Tantivy's chunk-level ranking takes a word of several bigrams as a
        // phrase (`紅葉の寺院` would need that exact run of characters).
        ("紅葉 寺院", "ja-temple"),
    ];
    for chunk_level in [false, true] {
        for (text, expected) in cases {
            let ids = ranked(
                &b,
                TextQuery {
                    chunk_level,
                    ..query(text)
                },
            )
            .await;
            assert_eq!(
                ids.first().map(String::as_str),
                Some(expected),
                "{text} (chunk_level {chunk_level}): {ids:?}"
            );
        }
    }
    // A hit's title, text and snippet come from its language's fields.
    for chunk_level in [false, true] {
        let hits = b
            .index
            .search(TextQuery {
                chunk_level,
                ..query("Haus")
            })
            .await
            .unwrap();
        let hit = &hits[0];
        assert_eq!(hit.title, "Häuser am Fluss");
        assert!(hit.text.starts_with("Die alten Häuser"), "{hit:?}");
        assert!(hit.snippet.contains("<b>Häuser</b>"), "{hit:?}");
    }
    let listed = b.admin.document_chunks("t", "de-haeuser").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].1.starts_with("Die alten Häuser"), "{listed:?}");

    // Nothing lost, and the filter `lang` keeps the detected language (German), the
    // metadata's (Spanish) and several at once (Korean and Japanese).
    let every = "houses trains Haus Zug maison playa 도서관 寺院";
    let found = |ids: Vec<String>| ids.into_iter().collect::<BTreeSet<String>>();
    let expect = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    let all = found(ranked(&b, query(every)).await);
    assert_eq!(all, expect(&DOCS.map(|d| d.0)), "every document is indexed");
    let filtered: [(&[&str], &[&str]); 4] = [
        (&["de"], &["de-haeuser", "de-zug"]),
        (&["es"], &["es-ciudades"]),
        (&["ko", "ja"], &["ko-library", "ja-temple"]),
        (&["en"], &["en-roofs", "en-trains"]),
    ];
    for (codes, expected) in filtered {
        let q = TextQuery {
            filter: lang_in(codes),
            ..query(every)
        };
        assert_eq!(
            found(ranked(&b, q).await),
            expect(expected),
            "lang in {codes:?}"
        );
    }
    // A German query under an English filter finds nothing.
    let q = TextQuery {
        filter: lang_in(&["en"]),
        ..query("Haus")
    };
    assert!(ranked(&b, q).await.is_empty());

    // A long question (46 words) is searched like a short one: on Elasticsearch the text runs
    // against the fields of the tenant's six languages, far from the engine's limit of 1,024
    // term queries (all 22 languages' 44 fields would be 2,024).
    let long = "after which storm did the roofers of our old street replace the broken roofs \
                of every house and fit solar panels while the neighbours watched from the \
                windows across the road during a cold and windy autumn week when most \
                families stayed home waiting for repairs";
    assert_eq!(long.split_whitespace().count(), 46);
    let ids = ranked(&b, query(long)).await;
    assert_eq!(ids.first().map(String::as_str), Some("en-roofs"), "{ids:?}");
}
