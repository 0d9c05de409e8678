//! Request validation shared by every service: each check names the field and the limit, and
//! each service turns a [`FieldError`] into its own INVALID_ARGUMENT variant.

use std::fmt;

use braid_proto::v1::{
    Chunk, DeleteDocumentChunksRequest, LegSearchRequest, MetadataFilter, ReplaceDocumentRequest,
};

/// One rejected field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

pub const MAX_TENANT_BYTES: usize = 128;
pub const MAX_METADATA_KEY_BYTES: usize = 128;
pub const MAX_METADATA_VALUE_BYTES: usize = 1024;

/// A tenant id: 1..=128 bytes of `[A-Za-z0-9_.-]`.
pub fn tenant(value: &str) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(FieldError::new("tenant", "must not be empty"));
    }
    if value.len() > MAX_TENANT_BYTES {
        return Err(FieldError::new(
            "tenant",
            format!("{} bytes, at most {MAX_TENANT_BYTES}", value.len()),
        ));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(FieldError::new(
            "tenant",
            "only letters, digits, '_', '-' and '.' are allowed",
        ));
    }
    Ok(())
}

/// `top_k` in `1..=max`.
pub fn top_k(value: u32, max: u32) -> Result<(), FieldError> {
    if value == 0 || value > max {
        return Err(FieldError::new(
            "top_k",
            format!("{value} is out of range 1..={max}"),
        ));
    }
    Ok(())
}

/// A document id must be a UUID.
pub fn document_id(value: &str) -> Result<uuid_like::Uuid, FieldError> {
    uuid_like::parse(value)
        .ok_or_else(|| FieldError::new("document_id", format!("`{value}` is not a UUID")))
}

/// A metadata filter must parse: see [`crate::filter::parse`] for the rules.
pub fn filter(filter: Option<&MetadataFilter>) -> Result<(), FieldError> {
    crate::filter::parse(filter).map(|_| ())
}

/// One metadata key/value pair: the key by [`metadata_key`], the value by [`metadata_value`].
pub fn metadata_entry(field: &str, key: &str, value: &str) -> Result<(), FieldError> {
    metadata_key(field, key)?;
    metadata_value(&format!("{field}[{key}]"), value)
}

/// A metadata key (in documents and in filters): 1..=128 bytes of ASCII letters, digits and
/// `_`, `-`, `.`, `:`, `/`. The key is shown back in errors only once it passed.
pub fn metadata_key(field: &str, key: &str) -> Result<(), FieldError> {
    if key.is_empty() || key.len() > MAX_METADATA_KEY_BYTES {
        return Err(FieldError::new(
            field,
            format!(
                "a key of {} bytes; keys must be 1..={MAX_METADATA_KEY_BYTES} bytes",
                key.len()
            ),
        ));
    }
    if !key.bytes().all(is_metadata_key_byte) {
        return Err(FieldError::new(
            field,
            "keys may only contain ASCII letters, digits and '_', '-', '.', ':', '/'",
        ));
    }
    Ok(())
}

fn is_metadata_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'/')
}

/// A metadata value (in documents and in filters): at most 1024 bytes, no control characters
/// (NUL included: PostgreSQL text cannot hold it). Any other Unicode text is fine.
pub fn metadata_value(field: &str, value: &str) -> Result<(), FieldError> {
    if value.len() > MAX_METADATA_VALUE_BYTES {
        return Err(FieldError::new(
            field,
            format!("{} bytes, at most {MAX_METADATA_VALUE_BYTES}", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters (U+0000..U+001F, U+007F..U+009F)",
        ));
    }
    Ok(())
}

/// Unicode bidirectional formatting characters (embeddings, overrides, isolates and marks):
/// they make an identifier display differently from what it is.
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// An identifier chosen by the caller (external ids, idempotency keys): 1..=`max` bytes of
/// UTF-8 with no control characters and no bidi formatting characters.
pub fn identifier(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(FieldError::new(
            field,
            format!("{} bytes, at most {max}", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters (U+0000..U+001F, U+007F..U+009F)",
        ));
    }
    if value.chars().any(is_bidi_control) {
        return Err(FieldError::new(
            field,
            "must not contain bidirectional formatting characters (U+202A..U+202E, U+2066..U+2069, U+200E, U+200F, U+061C)",
        ));
    }
    Ok(())
}

/// Free text typed by a user (queries, titles): control characters become spaces, so NUL and
/// friends never reach storage or an index, and the words on either side stay apart.
pub fn clean_text(value: &str) -> std::borrow::Cow<'_, str> {
    if value.chars().any(char::is_control) {
        value
            .chars()
            .map(|c| {
                if c.is_control() && !matches!(c, '\n' | '\t') {
                    ' '
                } else {
                    c
                }
            })
            .collect::<String>()
            .into()
    } else {
        value.into()
    }
}

/// Chunks sent to a leg must all belong to the request's tenant and document.
pub fn chunks(tenant: &str, document_id: &str, chunks: &[Chunk]) -> Result<(), FieldError> {
    for (i, c) in chunks.iter().enumerate() {
        if c.tenant != tenant || c.document_id != document_id {
            return Err(FieldError::new(
                format!("chunks[{i}]"),
                "tenant and document_id must match the request",
            ));
        }
        if c.chunk_id.is_empty() {
            return Err(FieldError::new(
                format!("chunks[{i}].chunk_id"),
                "must not be empty",
            ));
        }
        for (k, v) in &c.metadata {
            metadata_entry(&format!("chunks[{i}].metadata"), k, v)?;
        }
    }
    Ok(())
}

/// The checks every search leg applies to `ReplaceDocument`.
pub fn replace_request(r: &ReplaceDocumentRequest) -> Result<(), FieldError> {
    tenant(&r.tenant)?;
    document_id(&r.document_id)?;
    chunks(&r.tenant, &r.document_id, &r.chunks)
}

/// The checks every search leg applies to `DeleteDocument`.
pub fn delete_request(r: &DeleteDocumentChunksRequest) -> Result<(), FieldError> {
    tenant(&r.tenant)?;
    document_id(&r.document_id).map(|_| ())
}

/// The checks every search leg applies to `Search` (leg-specific inputs aside).
pub fn leg_search_request(r: &LegSearchRequest, max_top_k: u32) -> Result<(), FieldError> {
    tenant(&r.tenant)?;
    top_k(r.top_k, max_top_k)?;
    if let Some(min) = r.min_score
        && !min.is_finite()
    {
        return Err(FieldError::new(
            "min_score",
            format!("{min} is not a finite number"),
        ));
    }
    filter(r.filter.as_ref())
}

/// Minimal UUID parsing without pulling the `uuid` crate into every service.
pub mod uuid_like {
    /// A parsed, canonical (lower-case, hyphenated) UUID string.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Uuid(pub String);

    pub fn parse(value: &str) -> Option<Uuid> {
        let bytes = value.as_bytes();
        if bytes.len() != 36 {
            return None;
        }
        for (i, b) in bytes.iter().enumerate() {
            let ok = match i {
                8 | 13 | 18 | 23 => *b == b'-',
                _ => b.is_ascii_hexdigit(),
            };
            if !ok {
                return None;
            }
        }
        Some(Uuid(value.to_ascii_lowercase()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_rules() {
        assert!(tenant("acme-1.eu_west").is_ok());
        assert_eq!(tenant("").unwrap_err().field, "tenant");
        assert!(tenant("a b").is_err());
        assert!(
            tenant(&"x".repeat(129))
                .unwrap_err()
                .message
                .contains("128")
        );
    }

    #[test]
    fn top_k_range() {
        assert!(top_k(1, 10).is_ok());
        assert!(top_k(10, 10).is_ok());
        assert!(top_k(0, 10).is_err());
        assert!(top_k(11, 10).unwrap_err().message.contains("1..=10"));
    }

    #[test]
    fn uuid_parsing() {
        assert!(document_id("0f8fad5b-d9cb-469f-a165-70867728950e").is_ok());
        assert!(document_id("0f8fad5b-d9cb-469f-a165-70867728950").is_err());
        assert!(document_id("zf8fad5b-d9cb-469f-a165-70867728950e").is_err());
    }

    #[test]
    fn filter_limits() {
        let mut f = MetadataFilter::default();
        f.equals.insert("lang".into(), "en".into());
        assert!(filter(Some(&f)).is_ok());
        f.equals.insert(String::new(), "x".into());
        assert!(filter(Some(&f)).is_err());
    }

    #[test]
    fn metadata_key_charset() {
        for ok in ["lang", "a.b-c_d:e/f", "X9"] {
            assert!(metadata_key("filter.equals", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "k\0",
            "ключ",
            "a'b",
            "a\u{202E}b",
            "x\u{1f}y",
            "\"k\"",
        ] {
            let e = metadata_key("filter.equals", bad).unwrap_err();
            assert_eq!(e.field, "filter.equals", "{bad:?}");
        }
        let e = metadata_key("metadata", &"k".repeat(129)).unwrap_err();
        assert!(e.message.contains("1..=128"), "{e}");
    }

    #[test]
    fn metadata_values_reject_controls_but_take_any_script() {
        assert!(metadata_value("v", "日本語 한국어 кириллица 🦀 e\u{301}").is_ok());
        assert!(metadata_value("v", "a\0b").is_err());
        assert!(metadata_value("v", "a\u{7}b").is_err());
        assert!(metadata_value("v", &"x".repeat(1025)).is_err());
    }

    #[test]
    fn identifiers_reject_controls_and_bidi() {
        assert!(identifier("external_id", "doc-日本-🦀", 64).is_ok());
        for bad in ["", "a\0", "a\nb", "evil\u{202E}gpj.exe", "a\u{2066}b"] {
            let e = identifier("external_id", bad, 64).unwrap_err();
            assert_eq!(e.field, "external_id");
        }
        assert!(identifier("external_id", &"é".repeat(33), 64).is_err());
    }

    #[test]
    fn clean_text_replaces_controls() {
        assert_eq!(clean_text("a\0b\u{1b}[31mc\td"), "a b [31mc\td");
        assert!(matches!(clean_text("plain"), std::borrow::Cow::Borrowed(_)));
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_metadata_entry_is_ok_or_names_its_field(key in ".{0,40}", value in ".{0,40}") {
                match metadata_entry("metadata", &key, &value) {
                    Ok(()) => {
                        prop_assert!(key.bytes().all(is_metadata_key_byte) && !key.is_empty());
                        prop_assert!(!value.chars().any(char::is_control));
                    }
                    Err(e) => prop_assert!(e.field.starts_with("metadata"), "{}", e),
                }
            }

            #[test]
            fn any_identifier_is_ok_or_names_its_field(value in "\\PC{0,20}|.{0,20}") {
                if let Err(e) = identifier("external_id", &value, 32) {
                    prop_assert_eq!(e.field, "external_id");
                }
            }

            #[test]
            fn any_tenant_is_ok_or_names_its_field(value in ".{0,20}") {
                if let Err(e) = tenant(&value) {
                    prop_assert_eq!(e.field, "tenant");
                }
            }

            #[test]
            fn clean_text_leaves_no_controls_but_newlines_and_tabs(value in any::<String>()) {
                let cleaned = clean_text(&value);
                prop_assert!(cleaned.chars().all(|c| !c.is_control() || c == '\n' || c == '\t'));
                prop_assert_eq!(cleaned.chars().count(), value.chars().count());
            }
        }
    }
}
