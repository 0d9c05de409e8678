//! Token-aware chunking with overlap.
//!
//! Text is cut into windows of at most `max_tokens` tokens, counted by the embedding model's
//! own tokenizer when configured (so no chunk is silently truncated by the model) or by a
//! BERT-style pre-tokeniser (words and single punctuation marks) otherwise. A window ends at
//! the last paragraph break, else sentence end, else word boundary in its second half; the
//! next window starts `overlap_tokens` earlier, on a word boundary.

use std::path::Path;

/// Byte spans of the tokens of a text.
pub trait Tokenize: Send + Sync {
    fn spans(&self, text: &str) -> Vec<(usize, usize)>;
}

/// Words (runs of alphanumerics) and single punctuation characters, as BERT's basic
/// tokeniser splits them before WordPiece.
#[derive(Debug, Default, Clone, Copy)]
pub struct BasicTokenizer;

impl Tokenize for BasicTokenizer {
    fn spans(&self, text: &str) -> Vec<(usize, usize)> {
        let mut spans = Vec::new();
        let mut word_start: Option<usize> = None;
        for (i, c) in text.char_indices() {
            if c.is_alphanumeric() {
                word_start.get_or_insert(i);
                continue;
            }
            if let Some(s) = word_start.take() {
                spans.push((s, i));
            }
            if !c.is_whitespace() {
                spans.push((i, i + c.len_utf8()));
            }
        }
        if let Some(s) = word_start {
            spans.push((s, text.len()));
        }
        spans
    }
}

/// The embedding model's WordPiece tokenizer (`tokenizer.json`).
pub struct ModelTokenizer(tokenizers::Tokenizer);

impl ModelTokenizer {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let mut t = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| anyhow::anyhow!("loading {}: {e}", path.display()))?;
        t.with_truncation(None)
            .map_err(|e| anyhow::anyhow!("configuring tokenizer: {e}"))?;
        t.with_padding(None);
        Ok(Self(t))
    }
}

impl Tokenize for ModelTokenizer {
    fn spans(&self, text: &str) -> Vec<(usize, usize)> {
        match self.0.encode(text, false) {
            Ok(enc) => enc
                .get_offsets()
                .iter()
                .copied()
                .filter(|(s, e)| e > s)
                .collect(),
            // Tokenisation of valid UTF-8 does not fail in practice; fall back rather than
            // lose the document.
            Err(_) => BasicTokenizer.spans(text),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextChunk {
    pub text: String,
    pub token_count: usize,
}

pub fn chunk(
    text: &str,
    tokenizer: &dyn Tokenize,
    max_tokens: usize,
    overlap: usize,
) -> Vec<TextChunk> {
    chunk_spans(text, tokenizer, max_tokens, overlap)
        .into_iter()
        .map(|(start, end, token_count)| TextChunk {
            text: text[start..end].to_string(),
            token_count,
        })
        .collect()
}

/// Token spans made safe to slice with: inside `text`, on character boundaries, non-empty,
/// and with non-decreasing starts (a tokenizer may report one character as several tokens
/// with the same or overlapping offsets; those tokens still count).
fn safe_spans(text: &str, spans: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
    for (s, e) in spans {
        let ok = s < e
            && e <= text.len()
            && text.is_char_boundary(s)
            && text.is_char_boundary(e)
            && out.last().is_none_or(|&(ps, _)| s >= ps);
        if ok {
            out.push((s, e));
        }
    }
    out
}

/// The chunks as `(start byte, end byte, token count)`.
pub fn chunk_spans(
    text: &str,
    tokenizer: &dyn Tokenize,
    max_tokens: usize,
    overlap: usize,
) -> Vec<(usize, usize, usize)> {
    let spans = safe_spans(text, tokenizer.spans(text));
    let n = spans.len();
    let max_tokens = max_tokens.max(1);
    let overlap = overlap.min(max_tokens / 2);
    // Text between token k and token k+1 (empty when they touch or overlap).
    let gap = |k: usize| text.get(spans[k].1..spans[k + 1].0).unwrap_or("");
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < n {
        let mut end = (start + max_tokens).min(n);
        if end < n {
            end = best_break(text, &spans, start, end, &gap);
        }
        let last = spans[start..end]
            .iter()
            .map(|s| s.1)
            .max()
            .unwrap_or(spans[start].1);
        chunks.push((spans[start].0, last, end - start));
        if end == n {
            break;
        }
        let mut next = end.saturating_sub(overlap).max(start + 1);
        // Do not start in the middle of a word (WordPiece continuation).
        while next < end && next > 0 && gap(next - 1).is_empty() {
            next += 1;
        }
        start = next;
    }
    chunks
}

/// The exclusive end token of a window `[start, end)`, moved back to a natural break in the
/// window's second half when there is one.
fn best_break<'a>(
    text: &str,
    spans: &[(usize, usize)],
    start: usize,
    end: usize,
    gap: &dyn Fn(usize) -> &'a str,
) -> usize {
    let floor = start + (end - start) / 2;
    // Token k ends the chunk when we cut after it: the break lies between k and k+1.
    let candidates = || (floor.max(start + 1)..end).rev().map(|e| e - 1);
    if let Some(k) = candidates().find(|&k| gap(k).contains('\n')) {
        return k + 1;
    }
    if let Some(k) = candidates()
        .find(|&k| matches!(&text[spans[k].0..spans[k].1], "." | "!" | "?") && !gap(k).is_empty())
    {
        return k + 1;
    }
    if let Some(k) = candidates().find(|&k| !gap(k).is_empty()) {
        return k + 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(n: usize) -> String {
        (0..n)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn basic_tokenizer_splits_words_and_punctuation() {
        let t = "Hello, world! café-au-lait";
        let spans = BasicTokenizer.spans(t);
        let toks: Vec<&str> = spans.iter().map(|(s, e)| &t[*s..*e]).collect();
        assert_eq!(
            toks,
            ["Hello", ",", "world", "!", "café", "-", "au", "-", "lait"]
        );
    }

    #[test]
    fn short_text_is_one_chunk() {
        let c = chunk("just a few words", &BasicTokenizer, 10, 2);
        assert_eq!(
            c,
            vec![TextChunk {
                text: "just a few words".into(),
                token_count: 4
            }]
        );
        assert!(chunk("   \n ", &BasicTokenizer, 10, 2).is_empty());
    }

    #[test]
    fn windows_respect_max_and_overlap() {
        let text = words(100);
        let chunks = chunk(&text, &BasicTokenizer, 30, 5);
        assert!(chunks.iter().all(|c| c.token_count <= 30));
        // Every word is covered, consecutive chunks share exactly the overlap.
        assert!(chunks[0].text.starts_with("w0 "));
        assert!(chunks.last().unwrap().text.ends_with("w99"));
        for pair in chunks.windows(2) {
            let prev: Vec<&str> = pair[0].text.split(' ').collect();
            let next: Vec<&str> = pair[1].text.split(' ').collect();
            assert_eq!(&prev[prev.len() - 5..], &next[..5]);
        }
    }

    #[test]
    fn prefers_paragraph_then_sentence_breaks() {
        let text = format!("{}.\n\n{}", words(20), words(20));
        let chunks = chunk(&text, &BasicTokenizer, 30, 0);
        assert!(chunks[0].text.ends_with("w19."), "{:?}", chunks[0].text);
        let text = format!("{}. {}", words(20), words(20));
        let chunks = chunk(&text, &BasicTokenizer, 30, 0);
        assert!(chunks[0].text.ends_with("w19."), "{:?}", chunks[0].text);
    }

    #[test]
    fn one_giant_word_still_terminates() {
        let text = "x".repeat(10_000);
        let c = chunk(&text, &BasicTokenizer, 5, 2);
        assert_eq!(c.len(), 1);
        // A token stream without any whitespace still makes progress.
        let text = ",".repeat(50);
        let c = chunk(&text, &BasicTokenizer, 10, 3);
        assert!(c.len() >= 5 && c.iter().all(|c| c.token_count <= 10));
    }

    /// Reports every character as two tokens with the same offsets, and some offsets that
    /// are not character boundaries, as a subword tokenizer may.
    struct Stuttering;

    impl Tokenize for Stuttering {
        fn spans(&self, text: &str) -> Vec<(usize, usize)> {
            let mut spans = Vec::new();
            for (i, c) in text.char_indices() {
                let e = i + c.len_utf8();
                spans.push((i, e));
                spans.push((i, e));
                spans.push((i + 1, e)); // inside a multi-byte character for non-ASCII
            }
            spans
        }
    }

    #[test]
    fn overlapping_and_misaligned_offsets_do_not_panic() {
        let text = "日本語のテキスト é\u{301} 🦀🦀 한국어 кириллица";
        let chunks = chunk(text, &Stuttering, 5, 2);
        assert!(!chunks.is_empty());
        assert!(chunks.iter().all(|c| c.token_count <= 5));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "([a-zé日🦀\u{301}]{1,12}[ .,!?\n]{0,3}){0,120}",
            ]
        }

        proptest! {
            #[test]
            fn chunks_are_bounded_aligned_and_cover_every_token(
                input in text(),
                max in 1usize..40,
                overlap in 0usize..20,
            ) {
                let spans = BasicTokenizer.spans(&input);
                let chunks = chunk_spans(&input, &BasicTokenizer, max, overlap);
                for &(s, e, count) in &chunks {
                    prop_assert!(count >= 1 && count <= max);
                    prop_assert!(s < e && input.is_char_boundary(s) && input.is_char_boundary(e));
                }
                for (s, e) in spans {
                    prop_assert!(
                        chunks.iter().any(|&(cs, ce, _)| cs <= s && e <= ce),
                        "token {:?} not covered", &input[s..e]
                    );
                }
                // Same answer through the public function, as text.
                let texts = chunk(&input, &BasicTokenizer, max, overlap);
                prop_assert_eq!(texts.len(), chunks.len());
            }

            #[test]
            fn stuttering_tokenizers_never_panic(input in any::<String>(), max in 1usize..10) {
                let chunks = chunk(&input, &Stuttering, max, max / 2);
                prop_assert!(chunks.iter().all(|c| c.token_count <= max));
            }
        }
    }
}
