//! English text analysis of every indexed field and of queries, after Lucene's
//! `EnglishAnalyzer` (what Anserini's BM25 baselines use): split on non-alphanumeric
//! characters, drop the possessive `'s`, drop tokens over 40 bytes, lowercase, remove
//! Lucene's 33 English stop words, then stem (Snowball English, i.e. Porter2).

use tantivy::Index;
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenStream, SimpleTokenizer, Stemmer,
    StopWordFilter, TextAnalyzer, Token, TokenStream, Tokenizer,
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
}
