//! English text analysis of every indexed field and of queries, after Lucene's
//! `EnglishAnalyzer` (what Anserini's BM25 baselines use): split on non-alphanumeric
//! characters, drop the possessive `'s`, drop tokens over 40 bytes, lowercase, remove
//! Lucene's 33 English stop words, then stem (Snowball English, i.e. Porter2).

use tantivy::Index;
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenStream, SimpleTokenizer, Stemmer,
    StopWordFilter, TextAnalyzer, Token, TokenFilter, TokenStream, Tokenizer,
};

/// The name the analyzer is registered under (stored in the index schema).
pub const ENGLISH: &str = "braid_en";

/// Lucene's `EnglishAnalyzer.ENGLISH_STOP_WORDS_SET`.
const STOP_WORDS: [&str; 33] = [
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with",
];

/// Registers the analyzer on `index` (tokenizers are not persisted: on every open).
pub fn register(index: &Index) {
    index.tokenizers().register(ENGLISH, analyzer());
}

fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(PossessiveTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(StopWordFilter::remove(
            STOP_WORDS.iter().map(|w| w.to_string()),
        ))
        .filter(Stemmer::new(Language::English))
        .build()
}

/// `SimpleTokenizer` (alphanumeric runs) without the `s` of a possessive `'s` / `’s`, which
/// it would otherwise emit as a token of its own.
#[derive(Clone, Default)]
struct PossessiveTokenizer {
    inner: SimpleTokenizer,
}

struct PossessiveTokenStream<'a> {
    inner: SimpleTokenStream<'a>,
    text: &'a str,
}

impl Tokenizer for PossessiveTokenizer {
    type TokenStream<'a> = PossessiveTokenStream<'a>;
    fn token_stream<'a>(&'a mut self, text: &'a str) -> PossessiveTokenStream<'a> {
        PossessiveTokenStream {
            inner: self.inner.token_stream(text),
            text,
        }
    }
}

/// Whether `token` is the `s` of `word's`.
fn is_possessive(text: &str, token: &Token) -> bool {
    if !token.text.eq_ignore_ascii_case("s") {
        return false;
    }
    let before = text.get(..token.offset_from).unwrap_or_default();
    let mut chars = before.chars().rev();
    matches!(chars.next(), Some('\'' | '’')) && chars.next().is_some_and(char::is_alphanumeric)
}

impl TokenStream for PossessiveTokenStream<'_> {
    fn advance(&mut self) -> bool {
        while self.inner.advance() {
            if !is_possessive(self.text, self.inner.token()) {
                return true;
            }
        }
        false
    }
    fn token(&self) -> &Token {
        self.inner.token()
    }
    fn token_mut(&mut self) -> &mut Token {
        self.inner.token_mut()
    }
}

/// The analyzer of snippets for a query whose terms are `terms`: the field's analysis, but a
/// token is stemmed only when its stem could be one of `terms` (see [`StemGate`]); the others
/// are left empty, which matches no term. Highlights and fragments are the same as with the
/// full analysis (every token keeps its offsets), at a fraction of the stemming: the snippets
/// of a page of hits are most of the leg's analysis work (BENCHMARKS.md, "Text leg").
pub fn snippet_analyzer<'a>(terms: impl IntoIterator<Item = &'a str>) -> TextAnalyzer {
    let mut keys: Vec<(Option<char>, Option<char>)> = terms.into_iter().map(key).collect();
    keys.sort_unstable();
    keys.dedup();
    TextAnalyzer::builder(PossessiveTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(StopWordFilter::remove(
            STOP_WORDS.iter().map(|w| w.to_string()),
        ))
        .filter(StemGate { keys: keys.into() })
        .filter(Stemmer::new(Language::English))
        .build()
}

/// The first two characters of a word.
fn key(word: &str) -> (Option<char>, Option<char>) {
    let mut chars = word.chars();
    (chars.next(), chars.next())
}

/// Empties the tokens whose stem cannot be one of the query's terms, so the stemmer after it
/// has nothing to do for them. The English (Porter2) stemmer only rewrites the end of a word:
/// a stem starts with the word's first two characters, or is the word's first character
/// alone (`oed` -> `o`), but for `dying`, `lying` and `tying` (`die`, `lie`, `tie`), whose
/// second letter turns from `y` to `i`. So a token can stem to a term only if it starts with
/// the term's first two characters (its first and `y` where the term has `i`), or with the
/// term when that is one character. (Checked on every word of SciFact and every a-z word of
/// up to five letters, 12.4 million: no other case.)
#[derive(Clone)]
struct StemGate {
    keys: std::sync::Arc<[(Option<char>, Option<char>)]>,
}

impl StemGate {
    fn may_stem_to_a_term(&self, token: &str) -> bool {
        let (first, second) = key(token);
        let known = |k| self.keys.binary_search(&k).is_ok();
        known((first, second))
            || known((first, None))
            || (second == Some('y') && known((first, Some('i'))))
    }
}

impl TokenFilter for StemGate {
    type Tokenizer<T: Tokenizer> = StemGateFilter<T>;

    fn transform<T: Tokenizer>(self, inner: T) -> StemGateFilter<T> {
        StemGateFilter { gate: self, inner }
    }
}

#[derive(Clone)]
struct StemGateFilter<T> {
    gate: StemGate,
    inner: T,
}

impl<T: Tokenizer> Tokenizer for StemGateFilter<T> {
    type TokenStream<'a> = StemGateStream<'a, T::TokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        StemGateStream {
            gate: &self.gate,
            tail: self.inner.token_stream(text),
        }
    }
}

struct StemGateStream<'a, T> {
    gate: &'a StemGate,
    tail: T,
}

impl<T: TokenStream> TokenStream for StemGateStream<'_, T> {
    fn advance(&mut self) -> bool {
        if !self.tail.advance() {
            return false;
        }
        if !self.gate.may_stem_to_a_term(&self.tail.token().text) {
            self.tail.token_mut().text.clear();
        }
        true
    }
    fn token(&self) -> &Token {
        self.tail.token()
    }
    fn token_mut(&mut self) -> &mut Token {
        self.tail.token_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Vec<String> {
        let mut a = analyzer();
        let mut stream = a.token_stream(text);
        let mut out = Vec::new();
        while let Some(t) = stream.next() {
            out.push(t.text.clone());
        }
        out
    }

    #[test]
    fn english_analysis_stems_drops_stop_words_and_possessives() {
        assert_eq!(
            tokens("The patient's Cells were INFECTED by viruses"),
            ["patient", "cell", "were", "infect", "virus"]
        );
        assert_eq!(tokens("Alzheimer’s disease"), ["alzheim", "diseas"]);
        // A lone `s` that is not a possessive stays.
        assert_eq!(tokens("vitamin s"), ["vitamin", "s"]);
        assert_eq!(tokens("COVID-19 e-mail"), ["covid", "19", "e", "mail"]);
        assert!(tokens("to be or not to be").is_empty());
    }

    #[test]
    fn a_word_stems_to_a_term_only_through_the_gate() {
        // Every word whose stem is the term passes the gate, the Porter2 exceptions too; a
        // word that cannot stem to it is emptied.
        let words = [
            "dying",
            "lying",
            "tying",
            "died",
            "skies",
            "sky",
            "news",
            "cries",
            "flies",
            "happily",
            "generously",
            "yelling",
            "early",
            "only",
            "ugly",
            "idly",
            "gently",
            "singly",
            "by",
            "as",
            "ox",
            "a",
            "cells",
            "cellular",
            "proceedings",
            "exceeding",
            "inning",
            "outing",
            "herring",
            "atlas",
            "cosmos",
            "bias",
            "andes",
            "Ümlaut",
            "naïveté",
            "año",
            "x",
            "19",
            "covid",
            "yes",
            "eyes",
            "ayes",
            "oed",
        ];
        for word in words {
            let stems = tokens(word);
            let Some(stem) = stems.first() else { continue };
            let mut gated = snippet_analyzer([stem.as_str()]);
            let mut stream = gated.token_stream(word);
            let token = stream.next().map(|t| t.text.clone());
            assert_eq!(token.as_deref(), Some(stem.as_str()), "{word}");
        }
        let mut gated = snippet_analyzer(["cell"]);
        let mut stream = gated.token_stream("cells and viruses");
        let mut out = Vec::new();
        while let Some(t) = stream.next() {
            out.push(t.text.clone());
        }
        assert_eq!(
            out,
            ["cell", ""],
            "stop words still go, other words are emptied"
        );
    }
}
