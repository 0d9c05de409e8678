//! Where a key comes from: a value (usually set through a `BRAID_*` environment variable) or
//! a file. Values never appear in `Debug` output or logs.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A key given inline or as a file path; neither set = no key.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct KeySource {
    /// The key itself, e.g. from `BRAID_GATEWAY__AUTH__HS256__VALUE`.
    pub value: Option<String>,
    /// A file holding the key (surrounding whitespace is ignored).
    pub file: Option<PathBuf>,
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySource")
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .field("file", &self.file)
            .finish()
    }
}

impl KeySource {
    pub fn from_file(file: impl Into<PathBuf>) -> Self {
        Self {
            value: None,
            file: Some(file.into()),
        }
    }

    pub fn from_value(value: impl Into<String>) -> Self {
        Self {
            value: Some(value.into()),
            file: None,
        }
    }

    pub fn is_configured(&self) -> bool {
        self.value.is_some() || self.file.is_some()
    }

    /// Checks the source is set (once) and, when it names a file, that the file holds a key.
    pub fn validate(&self, name: &str, errors: &mut Vec<String>) {
        match (&self.value, &self.file) {
            (None, None) => errors.push(format!("{name}: set {name}.value or {name}.file")),
            (Some(_), Some(_)) => {
                errors.push(format!("{name}: set {name}.value or {name}.file, not both"))
            }
            _ => {
                if let Err(e) = self.load() {
                    errors.push(format!("{name}: {e}"));
                }
            }
        }
    }

    /// The key bytes. An empty or unreadable source is an error, never an empty key.
    pub fn load(&self) -> Result<Vec<u8>, String> {
        self.load_text().map(String::into_bytes)
    }

    /// The source's text, surrounding whitespace removed (a key, or a key ring: `auth::keys`).
    pub fn load_text(&self) -> Result<String, String> {
        let raw = match (&self.value, &self.file) {
            (Some(v), None) => v.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read key file {}: {e}", path.display()))?,
            (Some(_), Some(_)) => return Err("both a value and a file are set".into()),
            (None, None) => return Err("no key configured".into()),
        };
        let key = raw.trim();
        if key.is_empty() {
            return Err("the key is empty".into());
        }
        Ok(key.to_string())
    }
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_or_missing_sources_are_errors() {
        assert!(KeySource::default().load().is_err());
        assert!(KeySource::from_value("  \n").load().is_err());
        let dir = tempfile_dir();
        let path = dir.join("empty.key");
        std::fs::write(&path, "\n").unwrap();
        let mut errors = Vec::new();
        KeySource::from_file(&path).validate("internal_auth.key", &mut errors);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("empty"), "{errors:?}");
        std::fs::write(&path, "s3cret\n").unwrap();
        assert_eq!(KeySource::from_file(&path).load().unwrap(), b"s3cret");
    }

    #[test]
    fn debug_hides_the_value() {
        let s = format!("{:?}", KeySource::from_value("s3cret"));
        assert!(!s.contains("s3cret"), "{s}");
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("braid-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
