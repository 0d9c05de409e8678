//! The language of a text: the languages the text leg analyses ([`Lang`]), detection with
//! `whatlang` (trigram profiles and scripts, pure Rust), and the metadata override.
//!
//! Every chunk and every document entry gets one [`Lang`]: the document's metadata `lang`
//! (ISO 639-1, e.g. `de` or `de-AT`) when it is set, otherwise the detected language of the
//! text. A detection below whatlang's reliability threshold (short or mixed text) whose guess
//! is not English, a language without an analysis here, and a metadata `lang` naming one, all
//! fall back to [`Lang::Und`]: language-neutral analysis (lowercase, no stemming, CJK bigrams).
//! A low-confidence English guess stays English (see [`detect`]).
//!
//! Both backends take an entry's language from here ([`chunk_langs`], [`document_lang`]) and
//! name its text fields with [`field_name`], so a chunk lands in the same language's fields
//! on Tantivy and on Elasticsearch.

use std::collections::HashMap;

use braid_proto::v1::Chunk;

/// The analysed languages: the stemmer languages of Tantivy, Korean, Japanese and Chinese
/// (character bigrams), and `Und` (undetermined: language-neutral). English comes first: its
/// fields are the index's original ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lang {
    En,
    De,
    Fr,
    Es,
    It,
    Pt,
    Nl,
    Sv,
    Da,
    No,
    Fi,
    Hu,
    Ro,
    Ru,
    El,
    Tr,
    Ar,
    Ta,
    Ko,
    Ja,
    Zh,
    Und,
}

/// Every [`Lang`], in declaration order (`ALL[l.index()] == l`).
pub const ALL: [Lang; 22] = [
    Lang::En,
    Lang::De,
    Lang::Fr,
    Lang::Es,
    Lang::It,
    Lang::Pt,
    Lang::Nl,
    Lang::Sv,
    Lang::Da,
    Lang::No,
    Lang::Fi,
    Lang::Hu,
    Lang::Ro,
    Lang::Ru,
    Lang::El,
    Lang::Tr,
    Lang::Ar,
    Lang::Ta,
    Lang::Ko,
    Lang::Ja,
    Lang::Zh,
    Lang::Und,
];

/// The metadata key that overrides detection (and that the `lang` filter matches).
pub const METADATA_KEY: &str = "lang";

impl Lang {
    /// ISO 639-1 code; `und` (BCP 47 "undetermined") for the neutral analysis.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::De => "de",
            Lang::Fr => "fr",
            Lang::Es => "es",
            Lang::It => "it",
            Lang::Pt => "pt",
            Lang::Nl => "nl",
            Lang::Sv => "sv",
            Lang::Da => "da",
            Lang::No => "no",
            Lang::Fi => "fi",
            Lang::Hu => "hu",
            Lang::Ro => "ro",
            Lang::Ru => "ru",
            Lang::El => "el",
            Lang::Tr => "tr",
            Lang::Ar => "ar",
            Lang::Ta => "ta",
            Lang::Ko => "ko",
            Lang::Ja => "ja",
            Lang::Zh => "zh",
            Lang::Und => "und",
        }
    }

    /// The language of an ISO 639-1 code (`nb` and `nn` are Norwegian).
    pub fn from_code(code: &str) -> Option<Lang> {
        match code {
            "nb" | "nn" => Some(Lang::No),
            _ => ALL.into_iter().find(|l| l.code() == code),
        }
    }

    /// Position in [`ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    fn from_whatlang(lang: whatlang::Lang) -> Lang {
        use whatlang::Lang as W;
        match lang {
            W::Eng => Lang::En,
            W::Deu => Lang::De,
            W::Fra => Lang::Fr,
            W::Spa => Lang::Es,
            W::Ita => Lang::It,
            W::Por => Lang::Pt,
            W::Nld => Lang::Nl,
            W::Swe => Lang::Sv,
            W::Dan => Lang::Da,
            W::Nob => Lang::No,
            W::Fin => Lang::Fi,
            W::Hun => Lang::Hu,
            W::Ron => Lang::Ro,
            W::Rus => Lang::Ru,
            W::Ell => Lang::El,
            W::Tur => Lang::Tr,
            W::Ara => Lang::Ar,
            W::Tam => Lang::Ta,
            W::Kor => Lang::Ko,
            W::Jpn => Lang::Ja,
            W::Cmn => Lang::Zh,
            _ => Lang::Und,
        }
    }
}

/// The detected language of `text`; [`Lang::Und`] when detection is not reliable, unless the
/// best guess is English. English was the one analysis of every text before there were others,
/// so text that is probably English keeps exactly the analysis it had: short English titles
/// and queries-like snippets are rarely "reliable" (whatlang's confidence for "Another
/// eruption, more lava." is 0.23), and 9 of SciFact's 5,183 abstracts are not either.
pub fn detect(text: &str) -> Lang {
    match whatlang::detect(prefix(text)) {
        Some(info) if info.is_reliable() => Lang::from_whatlang(info.lang()),
        Some(info) if info.lang() == whatlang::Lang::Eng => Lang::En,
        _ => Lang::Und,
    }
}

/// Detection reads at most this many bytes of a text (a document's whole text can be
/// megabytes; its first pages tell its language).
const DETECT_BYTES: usize = 4096;

/// `text` cut to [`DETECT_BYTES`] at a character boundary.
fn prefix(text: &str) -> &str {
    let mut end = text.len().min(DETECT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The primary subtag of a metadata `lang` value, lowercased (`de-AT` -> `de`).
pub fn normalise(value: &str) -> String {
    value
        .split(['-', '_'])
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The language of a text whose document has `metadata`: its `lang` when set (a code without
/// an analysis here is analysed as [`Lang::Und`]), otherwise the detected one.
pub fn language_of(metadata: &HashMap<String, String>, text: &str) -> Lang {
    match metadata.get(METADATA_KEY) {
        Some(value) => Lang::from_code(&normalise(value)).unwrap_or(Lang::Und),
        None => detect(text),
    }
}

/// The `lang` filter value of an entry: the metadata's own (normalised) code when it is set,
/// otherwise the detected language's code.
pub fn filter_code(metadata: &HashMap<String, String>, lang: Lang) -> String {
    match metadata.get(METADATA_KEY) {
        Some(value) => normalise(value),
        None => lang.code().to_string(),
    }
}

/// The name of a text field `base` (`title`, `body`, `doc_title`, `doc_body`) for `lang`:
/// English keeps the original names, the others carry their code (`title_de`, `doc_body_und`).
pub fn field_name(base: &str, lang: Lang) -> String {
    match lang {
        Lang::En => base.to_string(),
        _ => format!("{base}_{}", lang.code()),
    }
}

/// The language of each chunk (in order): its metadata's `lang` when set, otherwise the
/// language detected in its title and text. Detection is CPU work (about as much as the
/// analysis): async callers run it off the runtime.
pub fn chunk_langs(chunks: &[Chunk]) -> Vec<Lang> {
    chunks
        .iter()
        .map(|c| language_of(&c.metadata, &format!("{} {}", c.title, c.text)))
        .collect()
}

/// The document entry's language: that of most of its chunks' text (`langs`, one per chunk;
/// all the metadata's `lang` when set), ties to the first in [`ALL`] (English first). Not
/// detected again on the whole text: the chunks' detections already read all of it.
pub fn document_lang(chunks: &[Chunk], langs: &[Lang]) -> Lang {
    let mut bytes = [0usize; ALL.len()];
    for (c, lang) in chunks.iter().zip(langs) {
        bytes[lang.index()] += c.text.len() + c.title.len();
    }
    let mut best = Lang::En;
    for lang in ALL {
        if bytes[lang.index()] > bytes[best.index()] {
            best = lang;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_round_trips_its_code() {
        for (i, l) in ALL.into_iter().enumerate() {
            assert_eq!(l.index(), i);
            assert_eq!(Lang::from_code(l.code()), Some(l));
        }
        assert_eq!(Lang::from_code("nb"), Some(Lang::No));
        assert_eq!(Lang::from_code("pl"), None);
    }

    #[test]
    fn detection_names_the_language_of_each_text() {
        let cases = [
            (
                "The houses on the river were built after the great flood of the last century.",
                Lang::En,
            ),
            (
                "Die Häuser am Fluss wurden nach dem großen Hochwasser des letzten Jahrhunderts gebaut.",
                Lang::De,
            ),
            (
                "Les maisons au bord de la rivière ont été construites après la grande inondation.",
                Lang::Fr,
            ),
            (
                "Las casas junto al río fueron construidas después de la gran inundación del siglo pasado.",
                Lang::Es,
            ),
            (
                "강가의 집들은 지난 세기의 대홍수 이후에 지어졌습니다.",
                Lang::Ko,
            ),
            ("川沿いの家は前世紀の大洪水の後に建てられました。", Lang::Ja),
        ];
        for (text, lang) in cases {
            assert_eq!(detect(text), lang, "{text}");
        }
    }

    #[test]
    fn unreliable_detection_falls_back_to_neutral_and_metadata_wins() {
        assert_eq!(detect(""), Lang::Und);
        assert_eq!(detect("12345 !!"), Lang::Und);
        // A guess below whatlang's reliability threshold: neutral, unless it is English.
        assert_eq!(detect("die Häuser"), Lang::Und);
        assert_eq!(detect("Another eruption, more lava."), Lang::En);
        let german = "Die Häuser am Fluss wurden nach dem großen Hochwasser gebaut.";
        let meta = |v: &str| HashMap::from([(METADATA_KEY.to_string(), v.to_string())]);
        assert_eq!(language_of(&HashMap::new(), german), Lang::De);
        assert_eq!(language_of(&meta("fr"), german), Lang::Fr);
        assert_eq!(language_of(&meta("de-AT"), german), Lang::De);
        // A language without an analysis here: neutral analysis, its own filter code.
        assert_eq!(language_of(&meta("pl"), german), Lang::Und);
        assert_eq!(filter_code(&meta("PL"), Lang::Und), "pl");
        assert_eq!(filter_code(&HashMap::new(), Lang::De), "de");
    }
}
