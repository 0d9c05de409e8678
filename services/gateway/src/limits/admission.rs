//! Check before charging: the tenant a request names is checked (length, characters, then
//! whether the caller may act in it) before anything is charged or recorded, and a refused
//! call is charged to the caller's own budgets — never to the tenant it named, so naming
//! another tenant can neither lock that tenant out nor turn a megabyte of request into a
//! limiter key.

use braid_core::auth::Principal;
use braid_core::validate;

use crate::error::GatewayError;

/// How an RPC uses the tenant its request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantUse {
    /// Documents and searches: the caller's own tenant (empty = it), or for a cross-tenant
    /// caller the named one (empty = `default`).
    Document,
    /// Operator calls: the same, except that a cross-tenant caller naming none acts in every
    /// tenant (the resolved tenant is then empty).
    Operator,
}

/// The tenant a call acts in: a non-empty name must be a valid tenant id (INVALID_ARGUMENT
/// naming the field and the limit), and a caller bound to a tenant may name only its own
/// (PERMISSION_DENIED). Empty only for [`TenantUse::Operator`] calls over every tenant.
pub fn resolve_tenant(
    caller: &Principal,
    requested: &str,
    use_: TenantUse,
) -> Result<String, GatewayError> {
    if !requested.is_empty() {
        validate::tenant(requested)?;
    }
    match (use_, &caller.access.tenant) {
        (TenantUse::Operator, None) => Ok(requested.to_string()),
        _ => Ok(caller.tenant_for(requested)?),
    }
}

/// The tenant whose budget a call is charged to: the tenant it acts in; for a refused call,
/// the caller's own (`None`: a cross-tenant caller refused or acting in every tenant — its
/// own budget only).
pub fn charged_tenant<'a>(caller: &'a Principal, resolved: Result<&'a str, ()>) -> Option<&'a str> {
    match resolved {
        Ok(tenant) if !tenant.is_empty() => Some(tenant),
        Ok(_) => None,
        Err(()) => caller.access.tenant.as_deref(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use braid_core::auth::{Access, CallerKind, Role};

    use super::*;

    fn user(tenant: Option<&str>, role: Role) -> Principal {
        Principal {
            subject: "u".into(),
            kind: CallerKind::User,
            role,
            access: Access {
                tenant: tenant.map(str::to_string),
                clearance: 0,
                groups: BTreeSet::new(),
                unrestricted: false,
            },
        }
    }

    #[test]
    fn a_bad_tenant_is_refused_before_it_is_used_anywhere() {
        let a = user(Some("a"), Role::Reader);
        let huge = "b".repeat(1 << 20);
        let err = resolve_tenant(&a, &huge, TenantUse::Document).unwrap_err();
        assert_eq!(err.to_string(), "tenant: 1048576 bytes, at most 128");
        let err = resolve_tenant(&a, "b\u{0}", TenantUse::Document).unwrap_err();
        assert!(err.to_string().starts_with("tenant: only letters"), "{err}");
        // Valid but not the caller's: PERMISSION_DENIED.
        let err = resolve_tenant(&a, "b", TenantUse::Document).unwrap_err();
        assert!(matches!(err, GatewayError::PermissionDenied(_)), "{err}");
        assert_eq!(resolve_tenant(&a, "", TenantUse::Document).unwrap(), "a");
        assert_eq!(resolve_tenant(&a, "a", TenantUse::Operator).unwrap(), "a");
        // A cross-tenant admin: the named tenant, `default`, or every tenant for operators.
        let ops = user(None, Role::Admin);
        assert_eq!(resolve_tenant(&ops, "b", TenantUse::Document).unwrap(), "b");
        assert_eq!(
            resolve_tenant(&ops, "", TenantUse::Document).unwrap(),
            "default"
        );
        assert_eq!(resolve_tenant(&ops, "", TenantUse::Operator).unwrap(), "");
        assert!(resolve_tenant(&ops, &huge, TenantUse::Operator).is_err());
    }

    #[test]
    fn refused_calls_are_charged_to_the_callers_own_tenant() {
        let a = user(Some("a"), Role::Reader);
        for requested in ["b", "b\u{0}", &"b".repeat(1 << 20)] {
            let resolved = resolve_tenant(&a, requested, TenantUse::Document);
            let charged = charged_tenant(&a, resolved.as_deref().map_err(|_| ()));
            assert_eq!(charged, Some("a"), "{:.20}", requested);
        }
        let ops = user(None, Role::Admin);
        let resolved = resolve_tenant(&ops, "b\u{0}", TenantUse::Document);
        assert_eq!(
            charged_tenant(&ops, resolved.as_deref().map_err(|_| ())),
            None
        );
        let resolved = resolve_tenant(&ops, "b", TenantUse::Document);
        assert_eq!(
            charged_tenant(&ops, resolved.as_deref().map_err(|_| ())),
            Some("b")
        );
        let resolved = resolve_tenant(&ops, "", TenantUse::Operator);
        assert_eq!(
            charged_tenant(&ops, resolved.as_deref().map_err(|_| ())),
            None
        );
    }
}
