//! HMAC key rings: the gateway's HS256 user keys (`auth.hs256`) and the internal service keys
//! (`internal_auth.key`). A ring holds several keys at once, each named by a key id (`kid`);
//! tokens name the key that signed them in their `kid` header, new tokens are signed with the
//! ring's `signing` key, and a token without a `kid` is checked against every key. A ring given
//! as a file is re-read when the file changes ([`WatchedKeys::spawn_reload`]), so a key rotates
//! without a restart:
//!
//! 1. add the new key to every service's ring (it is accepted, not yet used);
//! 2. once every service has re-read it, make it the `signing` key;
//! 3. once every service has re-read that (and tokens signed with the old key have expired:
//!    5 minutes for service tokens), remove the old key.
//!
//! The file is either one bare key (the whole file, surrounding whitespace ignored: a ring of
//! one key without a `kid`) or a TOML ring:
//!
//! ```toml
//! signing = "2025-09"          # which key signs new tokens (optional with one key)
//! [keys]
//! "2025-06" = "…at least 32 bytes…"
//! "2025-09" = "…at least 32 bytes…"
//! ```
//!
//! Every key must be at least [`MIN_KEY_BYTES`] long: an HS256 key shorter than the hash is
//! guessable offline from one token.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use serde::Deserialize;

use super::secret::KeySource;

/// Shortest key accepted (HS256: the length of the SHA-256 output).
pub const MIN_KEY_BYTES: usize = 32;
/// Longest key id accepted.
pub const MAX_KID_BYTES: usize = 128;

/// One key of a ring. Its bytes never appear in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    /// `None` for a bare key (a ring of one, as before key ids).
    pub kid: Option<String>,
    secret: Vec<u8>,
}

impl Key {
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Several keys, one of which signs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRing {
    /// Sorted by kid.
    keys: Vec<Key>,
    signing: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RingFile {
    #[serde(default)]
    signing: Option<String>,
    keys: BTreeMap<String, String>,
}

impl KeyRing {
    /// A ring of one key without a kid (no length check: tests and tools).
    pub fn single(secret: &[u8]) -> Self {
        Self {
            keys: vec![Key {
                kid: None,
                secret: secret.to_vec(),
            }],
            signing: 0,
        }
    }

    /// Parses a key file's content: a TOML ring (a table with `keys`), else one bare key.
    /// The error says what is wrong without quoting any key.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("the key is empty".into());
        }
        let is_ring = toml::from_str::<toml::Table>(text)
            .map(|t| t.contains_key("keys"))
            .unwrap_or(false);
        if !is_ring {
            check_length(None, text.len())?;
            return Ok(Self::single(text.as_bytes()));
        }
        let file: RingFile =
            toml::from_str(text).map_err(|e| format!("not a key ring: {}", first_line(&e)))?;
        if file.keys.is_empty() {
            return Err("the key ring has no keys".into());
        }
        let mut keys = Vec::with_capacity(file.keys.len());
        for (kid, secret) in file.keys {
            check_kid(&kid)?;
            let secret = secret.trim();
            check_length(Some(&kid), secret.len())?;
            keys.push(Key {
                kid: Some(kid),
                secret: secret.as_bytes().to_vec(),
            });
        }
        let signing = match file.signing {
            Some(kid) => keys
                .iter()
                .position(|k| k.kid.as_deref() == Some(kid.as_str()))
                .ok_or_else(|| format!("`signing` names `{kid}`, which is not in [keys]"))?,
            None if keys.len() == 1 => 0,
            None => {
                return Err(
                    "the key ring has several keys: name the one that signs with `signing = \"<kid>\"`"
                        .into(),
                );
            }
        };
        Ok(Self { keys, signing })
    }

    /// The key new tokens are signed with.
    pub fn signing(&self) -> &Key {
        &self.keys[self.signing]
    }

    /// The keys a token with header `kid` may have been signed with: that key alone (none
    /// when the ring does not hold it), or every key for a token without a `kid`.
    pub fn candidates(&self, kid: Option<&str>) -> Vec<&Key> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect(),
            None => self.keys.iter().collect(),
        }
    }

    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// `signing k2; accepts k1, k2` (key ids only, never key material).
    pub fn describe(&self) -> String {
        let name = |k: &Key| k.kid.clone().unwrap_or_else(|| "(no kid)".into());
        let all: Vec<String> = self.keys.iter().map(name).collect();
        format!(
            "signing {}; accepts {}",
            name(self.signing()),
            all.join(", ")
        )
    }
}

fn first_line(e: &toml::de::Error) -> String {
    e.message().lines().next().unwrap_or_default().to_string()
}

fn check_length(kid: Option<&str>, len: usize) -> Result<(), String> {
    if len >= MIN_KEY_BYTES {
        return Ok(());
    }
    let which = kid.map_or_else(|| "the key".to_string(), |k| format!("key `{k}`"));
    Err(format!(
        "{which} is {len} bytes; at least {MIN_KEY_BYTES} are required \
         (generate one with: openssl rand -base64 48)"
    ))
}

fn check_kid(kid: &str) -> Result<(), String> {
    let ok = !kid.is_empty()
        && kid.len() <= MAX_KID_BYTES
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "key id `{}` must be 1..={MAX_KID_BYTES} characters of A-Z a-z 0-9 - _ .",
            kid.escape_debug()
        ))
    }
}

/// A key ring and where it comes from; a file source is re-read by [`Self::spawn_reload`].
pub struct WatchedKeys {
    /// The config key it is set under (`auth.hs256`), for logs.
    name: &'static str,
    source: KeySource,
    current: RwLock<Arc<KeyRing>>,
    generation: AtomicU64,
}

impl fmt::Debug for WatchedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchedKeys")
            .field("name", &self.name)
            .field("ring", &self.current().describe())
            .finish()
    }
}

impl WatchedKeys {
    /// Loads the ring `source` holds; every key must be at least [`MIN_KEY_BYTES`] long. The
    /// error names the config key (`name`).
    pub fn load(source: &KeySource, name: &'static str) -> Result<Arc<Self>, String> {
        let text = source.load_text().map_err(|e| format!("{name}: {e}"))?;
        let ring = KeyRing::parse(&text).map_err(|e| format!("{name}: {e}"))?;
        Ok(Arc::new(Self {
            name,
            source: source.clone(),
            current: RwLock::new(Arc::new(ring)),
            generation: AtomicU64::new(0),
        }))
    }

    /// A ring that never changes (tests, tools).
    pub fn fixed(ring: KeyRing) -> Arc<Self> {
        Arc::new(Self {
            name: "fixed",
            source: KeySource::default(),
            current: RwLock::new(Arc::new(ring)),
            generation: AtomicU64::new(0),
        })
    }

    pub fn current(&self) -> Arc<KeyRing> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Bumped on every change of the ring.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Takes `text` as the ring's new content; an invalid ring is refused (the current one
    /// stays). Returns whether the ring changed.
    pub fn apply(&self, text: &str) -> Result<bool, String> {
        let ring = KeyRing::parse(text)?;
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        if **current == ring {
            return Ok(false);
        }
        *current = Arc::new(ring);
        drop(current);
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(true)
    }

    /// Re-reads the source's file every `every` while `self` is alive (nothing to do for an
    /// inline value). A file that cannot be read or holds an invalid ring is logged and the
    /// current ring kept.
    pub fn spawn_reload(self: &Arc<Self>, every: Duration) -> Option<tokio::task::JoinHandle<()>> {
        let path = self.source.file.clone()?;
        let weak: Weak<Self> = Arc::downgrade(self);
        Some(crate::reload::spawn_watch(
            weak,
            vec![path],
            every,
            |keys: &Self, contents: &[Vec<u8>]| {
                let text = String::from_utf8_lossy(&contents[0]);
                match keys.apply(&text) {
                    Ok(true) => tracing::info!(
                        key = keys.name,
                        ring = %keys.current().describe(),
                        "key ring re-read"
                    ),
                    Ok(false) => {}
                    Err(e) => tracing::error!(
                        key = keys.name,
                        error = %e,
                        "key file changed but is not usable; keeping the current keys"
                    ),
                }
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn bare_keys_are_rings_of_one_and_short_ones_are_refused() {
        let ring = KeyRing::parse(&format!("  {A}\n")).unwrap();
        assert_eq!(ring.signing().kid, None);
        assert_eq!(ring.signing().secret(), A.as_bytes());
        assert_eq!(ring.candidates(None).len(), 1);
        assert!(ring.candidates(Some("x")).is_empty());
        let err = KeyRing::parse("change-me-jwt").unwrap_err();
        assert!(
            err.contains("13 bytes") && err.contains("at least 32"),
            "{err}"
        );
        assert!(KeyRing::parse(" \n").is_err());
    }

    #[test]
    fn toml_rings_name_their_signing_key() {
        let ring = KeyRing::parse(&format!(
            "signing = \"k2\"\n[keys]\nk1 = \"{A}\"\nk2 = \"{B}\"\n"
        ))
        .unwrap();
        assert_eq!(ring.signing().kid.as_deref(), Some("k2"));
        assert_eq!(ring.candidates(Some("k1"))[0].secret(), A.as_bytes());
        assert_eq!(ring.candidates(None).len(), 2);
        assert_eq!(ring.describe(), "signing k2; accepts k1, k2");
        assert!(!format!("{ring:?}").contains(A));
        // One key needs no `signing`; several do, and it must be one of them.
        assert!(KeyRing::parse(&format!("[keys]\nk1 = \"{A}\"\n")).is_ok());
        let err = KeyRing::parse(&format!("[keys]\nk1 = \"{A}\"\nk2 = \"{B}\"\n")).unwrap_err();
        assert!(err.contains("signing"), "{err}");
        let err = KeyRing::parse(&format!("signing = \"k9\"\n[keys]\nk1 = \"{A}\"\n")).unwrap_err();
        assert!(err.contains("k9"), "{err}");
        // Short keys are named; bad kids and unknown fields refused.
        let err = KeyRing::parse(&format!(
            "signing = \"k1\"\n[keys]\nk1 = \"{A}\"\nold = \"short\"\n"
        ))
        .unwrap_err();
        assert!(err.contains("key `old` is 5 bytes"), "{err}");
        assert!(KeyRing::parse(&format!("[keys]\n\"a b\" = \"{A}\"\n")).is_err());
        assert!(KeyRing::parse(&format!("sign = \"k1\"\n[keys]\nk1 = \"{A}\"\n")).is_err());
        assert!(KeyRing::parse("[keys]\n").is_err());
    }

    #[test]
    fn watched_rings_change_only_to_valid_rings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring");
        std::fs::write(&path, A).unwrap();
        let keys = WatchedKeys::load(&KeySource::from_file(&path), "internal_auth.key").unwrap();
        assert_eq!(keys.generation(), 0);
        assert!(!keys.apply(A).unwrap());
        assert!(keys.apply("short").is_err());
        assert_eq!(keys.current().signing().secret(), A.as_bytes());
        assert!(keys.apply(B).unwrap());
        assert_eq!(keys.generation(), 1);
        std::fs::write(&path, "short").unwrap();
        let err = WatchedKeys::load(&KeySource::from_file(&path), "internal_auth.key").unwrap_err();
        assert!(
            err.starts_with("internal_auth.key: the key is 5 bytes"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn key_files_are_re_read_when_they_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring");
        std::fs::write(&path, A).unwrap();
        let keys = WatchedKeys::load(&KeySource::from_file(&path), "auth.hs256").unwrap();
        let task = keys.spawn_reload(Duration::from_millis(100)).unwrap();
        std::fs::write(
            &path,
            format!("signing = \"new\"\n[keys]\nold = \"{A}\"\nnew = \"{B}\"\n"),
        )
        .unwrap();
        // Polls the condition (the watcher runs on its own clock), giving up after 10 s.
        for _ in 0..200 {
            if keys.generation() > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(keys.current().describe(), "signing new; accepts new, old");
        task.abort();
    }
}
