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
pub const MAX_FILTER_ENTRIES: usize = 16;
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

/// Filter entries: bounded count, non-empty bounded keys, bounded values.
pub fn filter(filter: Option<&MetadataFilter>) -> Result<(), FieldError> {
    let Some(filter) = filter else { return Ok(()) };
    if filter.equals.len() > MAX_FILTER_ENTRIES {
        return Err(FieldError::new(
            "filter.equals",
            format!(
                "{} entries, at most {MAX_FILTER_ENTRIES}",
                filter.equals.len()
            ),
        ));
    }
    for (k, v) in &filter.equals {
        metadata_entry("filter.equals", k, v)?;
    }
    Ok(())
}

/// One metadata key/value pair within limits.
pub fn metadata_entry(field: &str, key: &str, value: &str) -> Result<(), FieldError> {
    if key.is_empty() || key.len() > MAX_METADATA_KEY_BYTES {
        return Err(FieldError::new(
            field,
            format!("key `{key}` must be 1..={MAX_METADATA_KEY_BYTES} bytes"),
        ));
    }
    if value.len() > MAX_METADATA_VALUE_BYTES {
        return Err(FieldError::new(
            format!("{field}[{key}]"),
            format!("{} bytes, at most {MAX_METADATA_VALUE_BYTES}", value.len()),
        ));
    }
    Ok(())
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
}
