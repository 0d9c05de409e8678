//! Chunking (services/ingest/src/chunk.rs). Input: `max_tokens`, `overlap`, a mode byte, then
//! the text; in mode 1 a list of token spans taken from the input stands in for the
//! tokenizer (a model tokenizer may report overlapping, repeated or misaligned offsets).
//!
//! Always: no panic, every chunk a non-empty slice of the text on character boundaries with
//! 1..=max_tokens tokens, chunks in order (starts increasing). With the basic tokenizer
//! also: the chunks cover the text, i.e. everything outside them is whitespace.
#![no_main]

use braid_ingest::fuzzing::{BasicTokenizer, Tokenize, chunk_spans};
use libfuzzer_sys::fuzz_target;

/// Spans read from the input, as any tokenizer might report them.
struct Given(Vec<(usize, usize)>);

impl Tokenize for Given {
    fn spans(&self, _text: &str) -> Vec<(usize, usize)> {
        self.0.clone()
    }
}

fuzz_target!(|data: &[u8]| {
    let [max, overlap, mode, rest @ ..] = data else {
        return;
    };
    let max = usize::from(*max % 64) + 1;
    let overlap = usize::from(*overlap % 64);
    let (spans, rest) = match mode % 2 {
        0 => (None, rest),
        _ => {
            let Some((&n, rest)) = rest.split_first() else {
                return;
            };
            let n = usize::from(n).min(rest.len() / 2);
            let (pairs, rest) = rest.split_at(2 * n);
            let spans = pairs
                .chunks(2)
                .map(|p| {
                    (
                        usize::from(p[0]),
                        usize::from(p[0]) + usize::from(p[1] % 16),
                    )
                })
                .collect();
            (Some(Given(spans)), rest)
        }
    };
    let text = String::from_utf8_lossy(rest);
    let tokenizer: &dyn Tokenize = match &spans {
        Some(given) => given,
        None => &BasicTokenizer,
    };
    let chunks = chunk_spans(&text, tokenizer, max, overlap);
    for &(s, e, count) in &chunks {
        assert!(
            s < e && e <= text.len(),
            "chunk {s}..{e} outside 0..{}",
            text.len()
        );
        assert!(text.is_char_boundary(s) && text.is_char_boundary(e));
        assert!((1..=max).contains(&count), "{count} tokens, max {max}");
    }
    for pair in chunks.windows(2) {
        // Strictly after with disjoint tokens; a tokenizer reporting several tokens at one
        // offset may start two chunks there, never earlier.
        let in_order = match spans {
            None => pair[0].0 < pair[1].0,
            Some(_) => pair[0].0 <= pair[1].0,
        };
        assert!(in_order, "chunks out of order: {pair:?}");
    }
    if spans.is_none() {
        // Covered: before the first, after the last and between consecutive chunks there is
        // only whitespace.
        let mut covered_to = 0;
        for &(s, e, _) in &chunks {
            if s > covered_to {
                assert!(
                    text[covered_to..s].trim().is_empty(),
                    "gap {covered_to}..{s} lost"
                );
            }
            covered_to = covered_to.max(e);
        }
        assert!(
            text[covered_to..].trim().is_empty(),
            "tail {covered_to}.. lost"
        );
        assert_eq!(chunks.is_empty(), text.trim().is_empty());
    }
});
