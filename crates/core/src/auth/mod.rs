//! Identity: who is calling and what they may see.
//!
//! The gateway verifies the caller's credential once, at the edge, and puts a [`Principal`]
//! into the request extensions; handlers take it from there ([`principal`]) and never re-read
//! headers. Internal calls carry a service credential, and the gateway forwards the end user's
//! principal to the ingest service in the [`PRINCIPAL_METADATA`] binary header, trusted only
//! when the service credential checks out. Search legs receive the caller's [`Access`] as an
//! `AccessFilter` field of the leg request and apply it inside their queries.
//!
//! Visibility rule, the same in SQL, in the text index and here ([`Access::admits`]): a
//! document is visible when the caller is in its tenant, the caller's clearance is at least
//! the document's, and the document has no groups or shares one with the caller.

pub mod internal;
pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod revocation;
pub mod secret;
pub mod verified;

use std::collections::BTreeSet;

use braid_proto::v1::{AccessFilter, Chunk, DocumentAcl};
use serde::{Deserialize, Serialize};

/// Binary metadata key carrying a forwarded principal (JSON) on internal calls.
pub const PRINCIPAL_METADATA: &str = "x-braid-principal-bin";

/// Roles, weakest first: each role may do everything the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Search, GetDocument.
    Reader,
    /// + Ingest, IngestStream, WaitIndexed, DeleteDocument.
    Writer,
    /// + jobs, Stats, Reembed and the other operator RPCs.
    Admin,
}

/// What an RPC needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    Read,
    Write,
    Operate,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "reader" => Some(Role::Reader),
            "writer" => Some(Role::Writer),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Writer => "writer",
            Role::Admin => "admin",
        }
    }

    pub fn allows(self, permission: Permission) -> bool {
        match permission {
            Permission::Read => true,
            Permission::Write => self >= Role::Writer,
            Permission::Operate => self >= Role::Admin,
        }
    }
}

/// How the caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallerKind {
    /// An end user or system with a verified token.
    User,
    /// Another Braid service with a verified service credential.
    Service,
    /// Authentication is disabled (`auth.mode = "disabled"`): full access, as before auth.
    Anonymous,
}

/// What a caller may see: one tenant (or all) and the documents its clearance and groups admit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Access {
    /// `None`: every tenant (an explicit cross-tenant admin claim, or auth disabled); the
    /// request names the tenant.
    pub tenant: Option<String>,
    pub clearance: u32,
    /// Sorted and de-duplicated.
    pub groups: BTreeSet<String>,
    /// Sees every document whatever its ACL (auth disabled, internal jobs).
    pub unrestricted: bool,
}

impl Access {
    /// Full access to every tenant (auth disabled, internal service work).
    pub fn unrestricted() -> Self {
        Self {
            tenant: None,
            clearance: u32::MAX,
            groups: BTreeSet::new(),
            unrestricted: true,
        }
    }

    /// Whether a document with `acl` is visible (the tenant is checked separately).
    pub fn admits(&self, acl: Option<&DocumentAcl>) -> bool {
        if self.unrestricted {
            return true;
        }
        let Some(acl) = acl else { return true };
        acl.clearance <= self.clearance
            && (acl.groups.is_empty() || acl.groups.iter().any(|g| self.groups.contains(g)))
    }

    /// The leg-request form of this access.
    pub fn to_filter(&self) -> AccessFilter {
        AccessFilter {
            clearance: self.clearance,
            groups: self.groups.iter().cloned().collect(),
            unrestricted: self.unrestricted,
        }
    }

    /// Stable bytes identifying what this access can see (cache keys, page tokens): callers
    /// with the same fingerprint see the same documents, and different accesses never share
    /// one. Structured, not joined: the clearance, the number of groups and each group with
    /// its length, so no group name (whatever bytes it holds) can pass for several.
    pub fn fingerprint(&self) -> Vec<u8> {
        if self.unrestricted {
            return b"*".to_vec();
        }
        let mut out =
            Vec::with_capacity(16 + self.groups.iter().map(|g| 8 + g.len()).sum::<usize>());
        out.push(b'c');
        out.extend_from_slice(&self.clearance.to_le_bytes());
        out.extend_from_slice(&(self.groups.len() as u64).to_le_bytes());
        for g in &self.groups {
            out.extend_from_slice(&(g.len() as u64).to_le_bytes());
            out.extend_from_slice(g.as_bytes());
        }
        out
    }
}

/// A leg's view of an `AccessFilter` (unset = public documents only).
pub fn access_from_filter(filter: Option<&AccessFilter>) -> Access {
    match filter {
        Some(f) => Access {
            tenant: None,
            clearance: f.clearance,
            groups: f.groups.iter().cloned().collect(),
            unrestricted: f.unrestricted,
        },
        None => Access {
            tenant: None,
            clearance: 0,
            groups: BTreeSet::new(),
            unrestricted: false,
        },
    }
}

/// The ACL a leg stores for one document's chunks: every chunk carries its document's ACL
/// (unset = public), so they must all agree. Group names must be free of control characters
/// (the text leg uses one as its "no groups" sentinel) and the clearance must fit a
/// PostgreSQL `integer`. The result's groups are sorted and de-duplicated.
pub fn chunks_acl(chunks: &[Chunk]) -> Result<DocumentAcl, crate::validate::FieldError> {
    use crate::validate::FieldError;
    let first = chunks
        .first()
        .and_then(|c| c.acl.clone())
        .unwrap_or_default();
    for (i, c) in chunks.iter().enumerate().skip(1) {
        if c.acl.clone().unwrap_or_default() != first {
            return Err(FieldError::new(
                format!("chunks[{i}].acl"),
                "differs from chunks[0].acl: the chunks of a document share its ACL",
            ));
        }
    }
    if first.clearance > i32::MAX as u32 {
        return Err(FieldError::new(
            "chunks[0].acl.clearance",
            format!("{}, at most {}", first.clearance, i32::MAX),
        ));
    }
    for (j, g) in first.groups.iter().enumerate() {
        if g.is_empty() || g.chars().any(char::is_control) {
            return Err(FieldError::new(
                format!("chunks[0].acl.groups[{j}]"),
                "must be non-empty and free of control characters",
            ));
        }
    }
    let groups: BTreeSet<String> = first.groups.into_iter().collect();
    Ok(DocumentAcl {
        clearance: first.clearance,
        groups: groups.into_iter().collect(),
    })
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// `sub` of the token (a user, a system), or the service name.
    pub subject: String,
    pub kind: CallerKind,
    /// The strongest role the credential grants.
    pub role: Role,
    pub access: Access,
}

/// A request naming a tenant the caller may not act in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant `{requested}` is not the caller's tenant")]
pub struct TenantDenied {
    pub requested: String,
}

impl Principal {
    /// Authentication disabled: an admin of every tenant that sees every document.
    pub fn anonymous() -> Self {
        Self {
            subject: "anonymous".into(),
            kind: CallerKind::Anonymous,
            role: Role::Admin,
            access: Access::unrestricted(),
        }
    }

    /// The tenant a request acts in. A caller bound to a tenant gets it whatever the request
    /// leaves empty, and PERMISSION_DENIED (via [`TenantDenied`]) for naming another; a
    /// cross-tenant caller acts in the named tenant, or `default` when none is named.
    pub fn tenant_for(&self, requested: &str) -> Result<String, TenantDenied> {
        match &self.access.tenant {
            Some(own) if requested.is_empty() || requested == own => Ok(own.clone()),
            Some(_) => Err(TenantDenied {
                requested: requested.to_string(),
            }),
            None if requested.is_empty() => Ok(DEFAULT_TENANT.to_string()),
            None => Ok(requested.to_string()),
        }
    }

    pub fn allows(&self, permission: Permission) -> bool {
        self.role.allows(permission)
    }

    /// Adds this principal to outgoing call metadata (internal calls on the user's behalf).
    pub fn attach(&self, metadata: &mut tonic::metadata::MetadataMap) {
        if let Ok(json) = serde_json::to_vec(self) {
            metadata.insert_bin(
                PRINCIPAL_METADATA,
                tonic::metadata::MetadataValue::from_bytes(&json),
            );
        }
    }

    /// A principal forwarded in call metadata; `None` when absent or malformed. Only trust it
    /// after the caller's service credential was verified.
    pub fn from_metadata(metadata: &tonic::metadata::MetadataMap) -> Option<Self> {
        let value = metadata.get_bin(PRINCIPAL_METADATA)?;
        let bytes = value.to_bytes().ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// The tenant used when a request names none and the caller is not bound to one.
pub const DEFAULT_TENANT: &str = "default";

/// The principal the auth layer put into the request's extensions.
pub fn principal<T>(request: &tonic::Request<T>) -> Option<&Principal> {
    request.extensions().get::<Principal>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(tenant: &str, clearance: u32, groups: &[&str]) -> Principal {
        Principal {
            subject: "alice".into(),
            kind: CallerKind::User,
            role: Role::Reader,
            access: Access {
                tenant: Some(tenant.into()),
                clearance,
                groups: groups.iter().map(|g| g.to_string()).collect(),
                unrestricted: false,
            },
        }
    }

    fn acl(clearance: u32, groups: &[&str]) -> DocumentAcl {
        DocumentAcl {
            clearance,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn roles_nest() {
        assert!(Role::Reader.allows(Permission::Read));
        assert!(!Role::Reader.allows(Permission::Write));
        assert!(Role::Writer.allows(Permission::Write));
        assert!(!Role::Writer.allows(Permission::Operate));
        assert!(Role::Admin.allows(Permission::Operate));
    }

    #[test]
    fn visibility_needs_clearance_and_a_shared_group() {
        let p = user("acme", 2, &["physics"]);
        assert!(p.access.admits(None));
        assert!(p.access.admits(Some(&acl(0, &[]))));
        assert!(p.access.admits(Some(&acl(2, &["physics", "chem"]))));
        assert!(!p.access.admits(Some(&acl(3, &[]))));
        assert!(!p.access.admits(Some(&acl(1, &["chem"]))));
        assert!(Access::unrestricted().admits(Some(&acl(9, &["x"]))));
        assert!(!access_from_filter(None).admits(Some(&acl(1, &[]))));
    }

    #[test]
    fn chunks_share_one_checked_acl() {
        let chunk = |a: Option<DocumentAcl>| Chunk {
            acl: a,
            ..Default::default()
        };
        assert_eq!(chunks_acl(&[]).unwrap(), DocumentAcl::default());
        let both = [
            chunk(Some(acl(2, &["b", "a", "b"]))),
            chunk(Some(acl(2, &["b", "a", "b"]))),
        ];
        assert_eq!(chunks_acl(&both).unwrap(), acl(2, &["a", "b"]));
        let differ = [chunk(Some(acl(2, &["a"]))), chunk(None)];
        assert_eq!(chunks_acl(&differ).unwrap_err().field, "chunks[1].acl");
        let bad = [chunk(Some(acl(0, &["ok", "x\u{1f}y"])))];
        assert_eq!(
            chunks_acl(&bad).unwrap_err().field,
            "chunks[0].acl.groups[1]"
        );
        let high = [chunk(Some(acl(u32::MAX, &[])))];
        assert_eq!(
            chunks_acl(&high).unwrap_err().field,
            "chunks[0].acl.clearance"
        );
    }

    #[test]
    fn tenant_comes_from_the_token() {
        let p = user("acme", 0, &[]);
        assert_eq!(p.tenant_for("").unwrap(), "acme");
        assert_eq!(p.tenant_for("acme").unwrap(), "acme");
        assert!(p.tenant_for("other").is_err());
        let admin = Principal::anonymous();
        assert_eq!(admin.tenant_for("").unwrap(), DEFAULT_TENANT);
        assert_eq!(admin.tenant_for("other").unwrap(), "other");
    }

    #[test]
    fn metadata_round_trip() {
        let p = user("acme", 2, &["physics", "ü-group"]);
        let mut md = tonic::metadata::MetadataMap::new();
        p.attach(&mut md);
        assert_eq!(Principal::from_metadata(&md), Some(p));
    }

    #[test]
    fn fingerprint_separates_what_callers_see() {
        let a = user("acme", 2, &["b", "a"]).access.fingerprint();
        let b = user("acme", 2, &["a", "b"]).access.fingerprint();
        let c = user("acme", 1, &["a", "b"]).access.fingerprint();
        assert_eq!(a, b);
        assert_ne!(a, c);
        // One group whose name holds the old separator is not two groups (issue 23).
        let joined = user("acme", 2, &["a\u{1f}b"]).access.fingerprint();
        assert_ne!(joined, b);
        let split = user("acme", 2, &["a", "b\u{1f}c"]).access.fingerprint();
        let other = user("acme", 2, &["a\u{1f}b", "c"]).access.fingerprint();
        assert_ne!(split, other);
        assert_ne!(
            Access::unrestricted().fingerprint(),
            user("acme", 0, &["*"]).access.fingerprint()
        );
    }
}
