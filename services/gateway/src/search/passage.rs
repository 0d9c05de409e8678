//! The vector leg's best matching passage in a hit: the chunk the vector leg matched and,
//! within it, the sentence sharing the most distinct query terms, those terms marked
//! `<b>…</b>` (HTML-escaped around them, like the text leg's snippets).
//!
//! Lexical, on purpose. Scoring each sentence by cosine similarity with the query would embed
//! every sentence of every hit's chunk on each search: a 200-token chunk holds about 8
//! sentences, so a 10-hit page costs ~80 forward passes where the search itself costs one
//! (the query), and the model runs ~75 passages/s on the project machine (BENCHMARKS.md,
//! bench:embed) — about a second of model time per search. Term overlap costs microseconds,
//! and the chunk it points into is exactly the one the vector leg matched; `matched_terms`
//! says when no sentence shares a term with the query (the passage is then the chunk's first
//! sentence), so a client never mistakes a fallback for a match.

/// Longest passage returned (bytes); a longer sentence is cut to a window around its first
/// matched term.
const MAX_PASSAGE_BYTES: usize = 400;
/// Query terms considered (a query is at most `search.max_query_bytes`).
const MAX_QUERY_TERMS: usize = 32;

/// Lucene's English stop words plus question words: they match nearly every sentence.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "can", "did", "do", "does", "for",
    "from", "has", "have", "how", "if", "in", "into", "is", "it", "its", "no", "not", "of", "on",
    "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was",
    "what", "when", "where", "which", "who", "why", "will", "with",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passage {
    /// `chunk[start..end]` is the passage (byte offsets on char boundaries).
    pub start: usize,
    pub end: usize,
    /// The passage with the query terms it contains marked `<b>…</b>`.
    pub highlighted: String,
    /// Distinct query terms in the passage (0: no sentence shares a term with the query).
    pub matched_terms: u32,
}

/// The words of `text` with their byte ranges (runs of alphanumeric characters).
fn words(text: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut chars = text.char_indices().peekable();
    std::iter::from_fn(move || {
        let (start, _) = chars.find(|(_, c)| c.is_alphanumeric())?;
        let mut end = text.len();
        while let Some(&(i, c)) = chars.peek() {
            if !c.is_alphanumeric() {
                end = i;
                break;
            }
            chars.next();
        }
        Some((start, end))
    })
}

/// A crude English stem (applied alike to query and passage words): lower case, plural and
/// `-ing` / `-ed` endings removed. Written into `w` (cleared first), so a passage's words
/// reuse one buffer.
fn stem_into(word: &str, w: &mut String) {
    w.clear();
    if word.is_ascii() {
        w.extend(word.chars().map(|c| c.to_ascii_lowercase()));
    } else {
        w.push_str(&word.to_lowercase());
    }
    let chars = |w: &String| {
        if w.is_ascii() {
            w.len()
        } else {
            w.chars().count()
        }
    };
    let n = chars(w);
    if n > 4 && w.ends_with("ies") {
        w.truncate(w.len() - 3);
        w.push('y');
    } else if w.ends_with("sses") {
        w.truncate(w.len() - 2);
    } else if n > 3
        && w.ends_with('s')
        && !(w.ends_with("ss") || w.ends_with("us") || w.ends_with("is"))
    {
        w.truncate(w.len() - 1);
    }
    let n = chars(w);
    if n > 5 && w.ends_with("ing") {
        w.truncate(w.len() - 3);
    } else if n > 4 && w.ends_with("ed") {
        w.truncate(w.len() - 2);
    }
}

/// The query's distinct terms (stems), stop words left out: worked out once per search and
/// used for every hit's passage.
pub struct QueryTerms {
    /// At most [`MAX_QUERY_TERMS`] (one bit each in the `u64` set of a passage's matches).
    terms: Vec<String>,
}

impl QueryTerms {
    pub fn new(query: &str) -> Self {
        let mut terms: Vec<String> = Vec::new();
        let mut w = String::new();
        for (s, e) in words(query)
            .filter(|&(s, e)| !STOP_WORDS.contains(&query[s..e].to_lowercase().as_str()))
            .take(MAX_QUERY_TERMS)
        {
            stem_into(&query[s..e], &mut w);
            if !terms.contains(&w) {
                terms.push(w.clone());
            }
        }
        Self { terms }
    }

    /// How many distinct terms the query has (stop words aside; at most 32).
    pub fn count(&self) -> usize {
        self.terms.len()
    }

    /// Which term `stem` is, if any.
    fn find(&self, stem: &str) -> Option<usize> {
        self.terms.iter().position(|t| t == stem)
    }

    /// Whether `word` (unstemmed) is one of the terms; `buf` is scratch space.
    fn contains(&self, word: &str, buf: &mut String) -> bool {
        stem_into(word, buf);
        self.find(buf).is_some()
    }
}

/// The sentences of `text` as trimmed byte ranges: a sentence ends after `.`, `!` or `?`
/// followed by white space, or at a line break.
fn sentences(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let end = match c {
            '\n' => Some(i),
            '.' | '!' | '?' => match chars.peek() {
                Some(&(_, next)) if next.is_whitespace() => Some(i + c.len_utf8()),
                None => Some(i + c.len_utf8()),
                _ => None,
            },
            _ => None,
        };
        if let Some(end) = end {
            push_trimmed(text, start, end, &mut out);
            start = end;
        }
    }
    push_trimmed(text, start, text.len(), &mut out);
    out
}

fn push_trimmed(text: &str, start: usize, end: usize, out: &mut Vec<(usize, usize)>) {
    let part = &text[start..end];
    let lead = part.len() - part.trim_start().len();
    let trimmed = part.trim();
    if !trimmed.is_empty() {
        out.push((start + lead, start + lead + trimmed.len()));
    }
}

fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
}

/// The best passage of `chunk` for `query`.
#[cfg(test)]
pub fn best(chunk: &str, query: &str) -> Passage {
    best_for(chunk, &QueryTerms::new(query))
}

/// The best passage of `chunk` for the query whose terms are `terms`.
pub fn best_for(chunk: &str, terms: &QueryTerms) -> Passage {
    let mut buf = String::new();
    // How many distinct terms `chunk[s..e]` holds.
    let mut matched = |s: usize, e: usize| -> u32 {
        let mut seen = 0u64;
        for (ws, we) in words(&chunk[s..e]) {
            stem_into(&chunk[s + ws..s + we], &mut buf);
            if let Some(i) = terms.find(&buf) {
                seen |= 1 << i;
            }
        }
        seen.count_ones()
    };
    // The first sentence with the most distinct terms (the first sentence if none has any).
    let mut best: Option<(usize, usize, u32)> = None;
    for (s, e) in sentences(chunk) {
        let n = matched(s, e);
        if best.is_none_or(|b| n > b.2) {
            best = Some((s, e, n));
        }
    }
    let (mut start, mut end, _) = best.unwrap_or((0, 0, 0));
    if end - start > MAX_PASSAGE_BYTES {
        (start, end) = window(chunk, start, end, terms);
    }
    let matched_terms = matched(start, end);
    let mut highlighted = String::new();
    let mut at = start;
    for (ws, we) in words(&chunk[start..end]) {
        let (ws, we) = (start + ws, start + we);
        if terms.contains(&chunk[ws..we], &mut buf) {
            escape(&chunk[at..ws], &mut highlighted);
            highlighted.push_str("<b>");
            escape(&chunk[ws..we], &mut highlighted);
            highlighted.push_str("</b>");
            at = we;
        }
    }
    escape(&chunk[at..end], &mut highlighted);
    Passage {
        start,
        end,
        highlighted,
        matched_terms,
    }
}

/// At most `MAX_PASSAGE_BYTES` of the sentence `[start, end)`, in whole words, from a few
/// words before its first matched term.
fn window(chunk: &str, start: usize, end: usize, terms: &QueryTerms) -> (usize, usize) {
    let ws: Vec<(usize, usize)> = words(&chunk[start..end])
        .map(|(s, e)| (start + s, start + e))
        .collect();
    let mut buf = String::new();
    let first = ws
        .iter()
        .position(|&(s, e)| terms.contains(&chunk[s..e], &mut buf))
        .unwrap_or(0);
    let from = first.saturating_sub(5);
    let begin = ws.get(from).map_or(start, |w| w.0);
    let mut stop = begin;
    for &(_, e) in &ws[from..] {
        if e - begin > MAX_PASSAGE_BYTES {
            break;
        }
        stop = e;
    }
    if stop == begin {
        // One word longer than the limit: cut it on a char boundary.
        stop = begin + MAX_PASSAGE_BYTES;
        while !chunk.is_char_boundary(stop) {
            stop -= 1;
        }
    }
    (begin, stop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_sentence_with_most_distinct_query_terms() {
        let chunk = "Bees live in hives. Worker bees collect nectar from flowers. \
                     In the hive, bees turn nectar into honey by evaporation.";
        let p = best(chunk, "How do bees make honey from nectar?");
        assert_eq!(
            &chunk[p.start..p.end],
            "In the hive, bees turn nectar into honey by evaporation."
        );
        assert_eq!(p.matched_terms, 3);
        assert_eq!(
            p.highlighted,
            "In the hive, <b>bees</b> turn <b>nectar</b> into <b>honey</b> by evaporation."
        );
    }

    #[test]
    fn stems_match_plurals_and_endings() {
        let chunk = "The study measured batteries. Charging stations were counted.";
        let p = best(chunk, "battery charge");
        assert_eq!(p.matched_terms, 1);
        assert_eq!(&chunk[p.start..p.end], "The study measured batteries.");
        assert!(p.highlighted.contains("<b>batteries</b>"), "{p:?}");
    }

    #[test]
    fn no_shared_term_falls_back_to_the_first_sentence_and_says_so() {
        let chunk = "\n  First sentence here.  Second one!";
        let p = best(chunk, "quantum chromodynamics");
        assert_eq!(&chunk[p.start..p.end], "First sentence here.");
        assert_eq!(p.matched_terms, 0);
        assert_eq!(p.highlighted, "First sentence here.");
        let p = best("", "anything");
        assert_eq!((p.start, p.end, p.matched_terms), (0, 0, 0));
    }

    #[test]
    fn stop_words_do_not_count_and_markup_is_escaped() {
        let chunk = "The <b> of the and. Fish & chips are tasty.";
        let p = best(chunk, "the fish of the");
        assert_eq!(&chunk[p.start..p.end], "Fish & chips are tasty.");
        assert_eq!(p.highlighted, "<b>Fish</b> &amp; chips are tasty.");
        let p = best(chunk, "the and of");
        assert_eq!(p.matched_terms, 0);
        assert_eq!(p.highlighted, "The &lt;b&gt; of the and.");
    }

    #[test]
    fn a_long_sentence_is_cut_to_a_window_around_its_first_match() {
        let chunk = format!(
            "{} zebra stripes {}",
            "word ".repeat(200),
            "tail ".repeat(200)
        );
        let p = best(&chunk, "zebra");
        assert!(p.end - p.start <= MAX_PASSAGE_BYTES, "{p:?}");
        assert!(chunk[p.start..p.end].starts_with("word word"), "{p:?}");
        assert!(chunk[p.start..p.end].contains("zebra"));
        assert_eq!(p.matched_terms, 1);
        assert!(chunk.is_char_boundary(p.start) && chunk.is_char_boundary(p.end));
        let long_word = "é".repeat(500);
        let p = best(&long_word, "x");
        assert!(p.end <= MAX_PASSAGE_BYTES && long_word.is_char_boundary(p.end));
    }
}
