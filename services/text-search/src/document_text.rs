//! The whole text of a document, rebuilt from its chunks for the document-level entry that
//! BM25 ranks. Chunks overlap (the ingest chunker starts each window a few tokens before the
//! previous one ended, on a word boundary), so joining them as they are would count the
//! overlapping words twice: each chunk's longest prefix that is also a suffix of the previous
//! chunk is dropped before joining.

use braid_proto::v1::Chunk;

/// Chunk texts in ordinal order, overlaps removed, joined by a space.
pub fn document_text(chunks: &[Chunk]) -> String {
    let mut ordered: Vec<&Chunk> = chunks.iter().collect();
    ordered.sort_by_key(|c| c.ordinal);
    let mut out = String::new();
    let mut previous: &str = "";
    for c in ordered {
        let text = c.text.as_str();
        let rest = &text[overlap(previous, text)..];
        if !out.is_empty() && !rest.trim().is_empty() {
            out.push(' ');
        }
        out.push_str(rest.trim_start());
        previous = text;
    }
    out
}

/// Byte length of the longest prefix of `next` that ends `previous`, on word boundaries at
/// both ends (a match starting or ending inside a word is a coincidence, not the overlap).
fn overlap(previous: &str, next: &str) -> usize {
    let max = previous.len().min(next.len());
    (1..=max)
        .rev()
        .filter(|&n| next.is_char_boundary(n))
        .filter(|&n| {
            next[n..]
                .chars()
                .next()
                .is_none_or(|c| !c.is_alphanumeric())
        })
        .find(|&n| {
            previous.ends_with(&next[..n])
                && previous[..previous.len() - n]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !c.is_alphanumeric())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(ordinal: u32, text: &str) -> Chunk {
        Chunk {
            ordinal,
            text: text.into(),
            ..Chunk::default()
        }
    }

    #[test]
    fn overlapping_chunks_join_without_repeating_words() {
        let chunks = [
            chunk(1, "fox jumps over the lazy dog"),
            chunk(0, "the quick brown fox jumps"),
            chunk(2, "lazy dog sleeps"),
        ];
        assert_eq!(
            document_text(&chunks),
            "the quick brown fox jumps over the lazy dog sleeps"
        );
    }

    #[test]
    fn chunks_without_overlap_are_joined_whole() {
        let chunks = [
            chunk(0, "alpha beta"),
            chunk(1, "beta2 gamma"),
            chunk(2, ""),
        ];
        assert_eq!(document_text(&chunks), "alpha beta beta2 gamma");
        assert_eq!(document_text(&[]), "");
        // A suffix that only matches inside a word is no overlap.
        assert_eq!(document_text(&[chunk(0, "ab"), chunk(1, "bc")]), "ab bc");
    }
}
