//! Text analysis per language ([`Lang`]), of every indexed field and of queries.
//!
//! English is after Lucene's `EnglishAnalyzer` (what Anserini's BM25 baselines use): split on
//! non-alphanumeric characters, drop the possessive `'s`, drop tokens over 40 bytes,
//! lowercase, remove Lucene's 33 English stop words, then stem (Snowball English, i.e.
//! Porter2). The other stemmer languages: split on non-alphanumeric characters, drop tokens
//! over 40 bytes, lowercase, remove Tantivy's (Snowball's) stop words of the language where it
//! has a list, stem with the language's Snowball stemmer. Korean, Japanese and Chinese: runs of
//! CJK characters become overlapping character bigrams (a lone character a unigram), after
//! Lucene's `CJKBigramFilter`; there is no dictionary segmenter (morphological analysis, as
//! Nori / Kuromoji / SmartCN do, is out of scope), so a bigram may straddle two words.
//! Undetermined text ([`Lang::Und`]) gets the same: words lowercased, CJK runs as bigrams, no
//! stemming.

use tantivy::Index;
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenStream, SimpleTokenizer, Stemmer,
    StopWordFilter, TextAnalyzer, Token, TokenFilter, TokenStream, Tokenizer,
};

use crate::language::{ALL, Lang};

/// The name the analyzer of `lang` is registered under (stored in the index schema; English's
/// is `braid_en`, as before there were other languages).
pub fn tokenizer_name(lang: Lang) -> String {
    format!("braid_{}", lang.code())
}

/// Lucene's `EnglishAnalyzer.ENGLISH_STOP_WORDS_SET`.
const STOP_WORDS: [&str; 33] = [
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with",
];

/// Registers the analyzers on `index` (tokenizers are not persisted: on every open).
pub fn register(index: &Index) {
    for lang in ALL {
        index
            .tokenizers()
            .register(&tokenizer_name(lang), analyzer(lang));
    }
}

/// The analysis of `lang`.
pub fn analyzer(lang: Lang) -> TextAnalyzer {
    if lang == Lang::En {
        return english();
    }
    match stemmer_language(lang) {
        Some(language) => {
            let builder = TextAnalyzer::builder(SimpleTokenizer::default())
                .filter(RemoveLongFilter::limit(40))
                .filter(LowerCaser);
            match StopWordFilter::new(language) {
                Some(stop) => builder.filter(stop).filter(Stemmer::new(language)).build(),
                None => builder.filter(Stemmer::new(language)).build(),
            }
        }
        None => TextAnalyzer::builder(CjkBigramTokenizer)
            .filter(RemoveLongFilter::limit(40))
            .filter(LowerCaser)
            .build(),
    }
}

/// Tantivy's stemmer of `lang` (none for CJK and undetermined text).
fn stemmer_language(lang: Lang) -> Option<Language> {
    Some(match lang {
        Lang::En => Language::English,
        Lang::De => Language::German,
        Lang::Fr => Language::French,
        Lang::Es => Language::Spanish,
        Lang::It => Language::Italian,
        Lang::Pt => Language::Portuguese,
        Lang::Nl => Language::Dutch,
        Lang::Sv => Language::Swedish,
        Lang::Da => Language::Danish,
        Lang::No => Language::Norwegian,
        Lang::Fi => Language::Finnish,
        Lang::Hu => Language::Hungarian,
        Lang::Ro => Language::Romanian,
        Lang::Ru => Language::Russian,
        Lang::El => Language::Greek,
        Lang::Tr => Language::Turkish,
        Lang::Ar => Language::Arabic,
        Lang::Ta => Language::Tamil,
        Lang::Ko | Lang::Ja | Lang::Zh | Lang::Und => return None,
    })
}

fn english() -> TextAnalyzer {
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
/// Other languages' snippets take their full analysis (the gate relies on Porter2).
pub fn snippet_analyzer<'a>(lang: Lang, terms: impl IntoIterator<Item = &'a str>) -> TextAnalyzer {
    if lang != Lang::En {
        return analyzer(lang);
    }
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

/// Whether `c` is written without spaces between words: Han ideographs, kana, Hangul.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x11FF // Hangul Jamo
        | 0x3005 // 々
        | 0x3040..=0x30FF // Hiragana, Katakana (ー included)
        | 0x3130..=0x318F // Hangul compatibility Jamo
        | 0x31F0..=0x31FF // Katakana phonetic extensions
        | 0x3400..=0x4DBF // CJK extension A
        | 0x4E00..=0x9FFF // CJK unified ideographs
        | 0xAC00..=0xD7AF // Hangul syllables
        | 0xF900..=0xFAFF // CJK compatibility ideographs
        | 0xFF66..=0xFF9F // halfwidth Katakana
        | 0x20000..=0x2FA1F // CJK extensions B-F, compatibility supplement
    )
}

/// Alphanumeric runs as words, except runs of CJK characters ([`is_cjk`]), which become their
/// overlapping bigrams (a run of one character: that character).
#[derive(Clone, Copy, Default)]
struct CjkBigramTokenizer;

/// The tokens of one text, computed up front.
struct VecTokenStream {
    tokens: Vec<Token>,
    next: usize,
}

impl TokenStream for VecTokenStream {
    fn advance(&mut self) -> bool {
        self.next += 1;
        self.next <= self.tokens.len()
    }
    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }
    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

impl Tokenizer for CjkBigramTokenizer {
    type TokenStream<'a> = VecTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> VecTokenStream {
        let mut tokens = Vec::new();
        let mut push = |from: usize, to: usize| {
            tokens.push(Token {
                offset_from: from,
                offset_to: to,
                position: tokens.len(),
                text: text[from..to].to_string(),
                position_length: 1,
            });
        };
        let mut chars = text.char_indices().peekable();
        while let Some((start, c)) = chars.next() {
            if is_cjk(c) {
                // (offset, char) of the run so far: emit a bigram per adjacent pair.
                let mut previous = (start, c);
                let mut alone = true;
                while let Some(&(at, next)) = chars.peek() {
                    if !is_cjk(next) {
                        break;
                    }
                    chars.next();
                    push(previous.0, at + next.len_utf8());
                    previous = (at, next);
                    alone = false;
                }
                if alone {
                    push(start, start + c.len_utf8());
                }
            } else if c.is_alphanumeric() {
                let mut end = start + c.len_utf8();
                while let Some(&(at, next)) = chars.peek() {
                    if !next.is_alphanumeric() || is_cjk(next) {
                        break;
                    }
                    chars.next();
                    end = at + next.len_utf8();
                }
                push(start, end);
            }
        }
        VecTokenStream { tokens, next: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Vec<String> {
        tokens_in(Lang::En, text)
    }

    fn tokens_in(lang: Lang, text: &str) -> Vec<String> {
        let mut a = analyzer(lang);
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
            let mut gated = snippet_analyzer(Lang::En, [stem.as_str()]);
            let mut stream = gated.token_stream(word);
            let token = stream.next().map(|t| t.text.clone());
            assert_eq!(token.as_deref(), Some(stem.as_str()), "{word}");
        }
        let mut gated = snippet_analyzer(Lang::En, ["cell"]);
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

    #[test]
    fn each_language_stems_its_own_words() {
        // The singular and the plural of a word meet in one stem, in each language's own way.
        assert_eq!(
            tokens_in(Lang::De, "Die Häuser"),
            tokens_in(Lang::De, "Haus")
        );
        assert_eq!(tokens_in(Lang::De, "Häuser"), ["haus"]);
        assert_eq!(
            tokens_in(Lang::Fr, "les maisons"),
            tokens_in(Lang::Fr, "maison")
        );
        assert_eq!(
            tokens_in(Lang::Es, "las playas costeras"),
            tokens_in(Lang::Es, "playa costera")
        );
        // English analysis does not join a German plural to its singular.
        assert_ne!(tokens_in(Lang::En, "Häuser"), tokens_in(Lang::En, "Haus"));
        // Stop words of the language go.
        assert_eq!(tokens_in(Lang::De, "und die der"), Vec::<String>::new());
        // English is the original analysis, whatever the language list.
        assert_eq!(
            tokens_in(Lang::En, "The patient's Cells"),
            ["patient", "cell"]
        );
    }

    #[test]
    fn cjk_text_becomes_bigrams_and_neutral_text_is_only_lowercased() {
        assert_eq!(tokens_in(Lang::Ja, "東京都"), ["東京", "京都"]);
        assert_eq!(
            tokens_in(Lang::Ko, "도서관에서"),
            ["도서", "서관", "관에", "에서"]
        );
        assert_eq!(tokens_in(Lang::Zh, "书"), ["书"]);
        // Mixed runs: words stay words, each CJK run is bigrammed on its own.
        assert_eq!(
            tokens_in(Lang::Ja, "Rust言語 の本"),
            ["rust", "言語", "の本"]
        );
        assert_eq!(
            tokens_in(Lang::Und, "Die HÄUSER, 2024"),
            ["die", "häuser", "2024"]
        );
        // Offsets cover the characters of each token (snippets highlight them).
        let mut a = analyzer(Lang::Ko);
        let mut stream = a.token_stream("큰 도서관");
        let mut spans = Vec::new();
        while let Some(t) = stream.next() {
            spans.push((t.offset_from, t.offset_to, t.position));
        }
        assert_eq!(spans, [(0, 3, 0), (4, 10, 1), (7, 13, 2)]);
    }
}
