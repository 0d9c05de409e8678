//! Token revocation: per subject (in one tenant, or in every tenant), a cut-off time; a user
//! token of that subject issued (`iat`) before it is refused. The list lives in memory here;
//! the gateway fills it from PostgreSQL (`gateway::revocation`) and checks every token against
//! it after the signature ([`super::jwt::JwtVerifier`]).
//!
//! A token without `iat` cannot show it was issued after a cut-off: for a revoked subject it is
//! refused.

use std::collections::HashMap;
use std::sync::RwLock;

use super::jwt::AuthError;

/// One cut-off: tokens of `subject` in `tenant` (empty: in every tenant) issued before
/// `cut_off` (seconds since the Unix epoch) are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub tenant: String,
    pub subject: String,
    pub cut_off: u64,
}

/// The cut-offs in force, by subject.
#[derive(Debug, Default)]
pub struct Revocations {
    /// subject -> (tenant, cut-off), the latest cut-off per tenant.
    by_subject: RwLock<HashMap<String, Vec<(String, u64)>>>,
}

impl Revocations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the whole list (a fresh read of the store).
    pub fn replace(&self, all: impl IntoIterator<Item = Revocation>) {
        let mut map: HashMap<String, Vec<(String, u64)>> = HashMap::new();
        for r in all {
            merge(map.entry(r.subject).or_default(), r.tenant, r.cut_off);
        }
        *self.by_subject.write().unwrap_or_else(|p| p.into_inner()) = map;
    }

    /// Adds one cut-off (this replica's own revocation, in force before the next read).
    pub fn add(&self, r: Revocation) {
        let mut map = self.by_subject.write().unwrap_or_else(|p| p.into_inner());
        merge(map.entry(r.subject).or_default(), r.tenant, r.cut_off);
    }

    pub fn len(&self) -> usize {
        self.by_subject
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(Vec::len)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The latest cut-off for `subject` acting in `tenant` (`None`: a cross-tenant token,
    /// bound only by cut-offs for every tenant).
    pub fn cut_off(&self, tenant: Option<&str>, subject: &str) -> Option<u64> {
        let map = self.by_subject.read().unwrap_or_else(|p| p.into_inner());
        map.get(subject)?
            .iter()
            .filter(|(t, _)| t.is_empty() || Some(t.as_str()) == tenant)
            .map(|(_, c)| *c)
            .max()
    }

    /// Refuses a token of `subject` in `tenant` issued at `iat` before the cut-off in force.
    pub fn check(
        &self,
        tenant: Option<&str>,
        subject: &str,
        iat: Option<u64>,
    ) -> Result<(), AuthError> {
        let Some(cut_off) = self.cut_off(tenant, subject) else {
            return Ok(());
        };
        match iat {
            Some(iat) if iat >= cut_off => Ok(()),
            Some(_) => Err(AuthError::Claims(
                "token revoked: issued before its subject's revocation cut-off".into(),
            )),
            None => Err(AuthError::Claims(
                "token revoked: its subject has a revocation cut-off and the token has no `iat`"
                    .into(),
            )),
        }
    }
}

fn merge(entries: &mut Vec<(String, u64)>, tenant: String, cut_off: u64) {
    match entries.iter_mut().find(|(t, _)| *t == tenant) {
        Some((_, c)) => *c = (*c).max(cut_off),
        None => entries.push((tenant, cut_off)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(tenant: &str, subject: &str, cut_off: u64) -> Revocation {
        Revocation {
            tenant: tenant.into(),
            subject: subject.into(),
            cut_off,
        }
    }

    #[test]
    fn tokens_issued_before_the_cut_off_are_refused() {
        let list = Revocations::new();
        assert!(list.check(Some("acme"), "bob", Some(1)).is_ok());
        list.add(r("acme", "bob", 100));
        assert!(list.check(Some("acme"), "bob", Some(99)).is_err());
        assert!(list.check(Some("acme"), "bob", Some(100)).is_ok());
        assert!(list.check(Some("acme"), "bob", None).is_err());
        // Another tenant's bob, another subject, a cross-tenant token: untouched.
        assert!(list.check(Some("other"), "bob", Some(1)).is_ok());
        assert!(list.check(Some("acme"), "alice", Some(1)).is_ok());
        assert!(list.check(None, "bob", Some(1)).is_ok());
        // A cut-off in every tenant binds them all; the later of two cut-offs wins.
        list.add(r("", "bob", 50));
        assert!(list.check(Some("other"), "bob", Some(49)).is_err());
        assert!(list.check(None, "bob", Some(49)).is_err());
        assert_eq!(list.cut_off(Some("acme"), "bob"), Some(100));
        list.add(r("acme", "bob", 10));
        assert_eq!(list.cut_off(Some("acme"), "bob"), Some(100));
        list.replace([r("acme", "carol", 5)]);
        assert_eq!(list.len(), 1);
        assert!(list.check(Some("acme"), "bob", Some(1)).is_ok());
    }
}
