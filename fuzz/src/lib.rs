//! What the fuzz targets in `fuzz_targets/` share: checks and input helpers.

#![forbid(unsafe_code)]

use braid_ingest::fuzzing::Extracted;

/// Extracted text holds no NUL and no control character but `\n` (PostgreSQL refuses NUL in
/// text; indexes and logs should not see escapes), is trimmed, and has no run of more than
/// one blank line; a title is non-empty and has no control character at all.
pub fn check_extracted(input: &str, e: &Extracted) {
    assert!(
        e.text.chars().all(|c| c == '\n' || !c.is_control()),
        "control character in {:?} (from {input:?})",
        e.text
    );
    assert_eq!(e.text.trim(), e.text, "untrimmed text from {input:?}");
    assert!(!e.text.contains("\n\n\n"), "blank lines not collapsed");
    if let Some(t) = &e.title {
        assert!(
            !t.is_empty() && !t.chars().any(char::is_control),
            "bad title {t:?} from {input:?}"
        );
    }
}
