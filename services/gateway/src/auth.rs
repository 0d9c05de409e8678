//! Identity at the edge: takes each call from its peer address's budget (`limits.per_peer`)
//! before anything else, verifies the caller's `authorization: Bearer <JWT>` on every public
//! RPC, checks the caller's role against the RPC's [`Permission`] (a closed table; an unknown
//! method is denied), and puts the [`Principal`] into the request extensions for the
//! handlers. A call refused before its caller is known is marked for the audit trail's
//! per-peer count; one refused for its role costs a token of the caller's own budget. Health
//! checks stay open. Tokens are never logged.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use braid_core::auth::jwt::{AuthMode, JwtVerifier, bearer};
use braid_core::auth::revocation::Revocations;
use braid_core::auth::{Permission, Principal};
use braid_proto::tonic::Status;
use braid_proto::tonic::server::NamedService;
use tower::{Layer, Service};

use crate::audit::AuditSlot;
use crate::limits::{Class, Limits};

/// What each Gateway RPC needs, and the budget class it is charged to. Any method not listed
/// is denied.
pub fn permission(path: &str) -> Option<(&'static str, Permission, Class)> {
    use Class::{Admin, Ingest, Search};
    use Permission::{Operate, Read, Write};
    let method = path.strip_prefix("/braid.v1.Gateway/")?;
    let entry = match method {
        "Search" => ("Search", Read, Search),
        "GetDocument" => ("GetDocument", Read, Search),
        "Ingest" => ("Ingest", Write, Ingest),
        "IngestStream" => ("IngestStream", Write, Ingest),
        "WaitIndexed" => ("WaitIndexed", Write, Ingest),
        "DeleteDocument" => ("DeleteDocument", Write, Ingest),
        "ListJobs" => ("ListJobs", Operate, Admin),
        "RetryJobs" => ("RetryJobs", Operate, Admin),
        "DiscardJobs" => ("DiscardJobs", Operate, Admin),
        "Stats" => ("Stats", Operate, Admin),
        "Reembed" => ("Reembed", Operate, Admin),
        "ListAudit" => ("ListAudit", Operate, Admin),
        "Reindex" => ("Reindex", Operate, Admin),
        "ReindexStatus" => ("ReindexStatus", Operate, Admin),
        "Verify" => ("Verify", Operate, Admin),
        "RevokeTokens" => ("RevokeTokens", Operate, Admin),
        "Status" => ("Status", Operate, Admin),
        "ResetBreaker" => ("ResetBreaker", Operate, Admin),
        _ => return None,
    };
    Some(entry)
}

fn needed_role(p: Permission) -> &'static str {
    match p {
        Permission::Read => "reader",
        Permission::Write => "writer",
        Permission::Operate => "admin",
    }
}

/// How callers are identified.
#[derive(Clone)]
pub enum Authenticator {
    Jwt(Arc<JwtVerifier>),
    /// `auth.mode = "disabled"`: everyone is [`Principal::anonymous`].
    Disabled,
}

impl Authenticator {
    /// The verifier `config` describes, refusing tokens revoked in `revocations`.
    pub async fn from_config(
        config: &braid_core::auth::jwt::AuthConfig,
        revocations: Arc<Revocations>,
    ) -> anyhow::Result<Self> {
        Ok(match config.mode {
            AuthMode::Disabled => {
                tracing::warn!(
                    "auth.mode = \"disabled\": every caller is an admin of every tenant"
                );
                Authenticator::Disabled
            }
            AuthMode::Jwt => Authenticator::Jwt(Arc::new(
                JwtVerifier::from_config(config)
                    .await
                    .map_err(anyhow::Error::msg)?
                    .with_revocations(revocations),
            )),
        })
    }

    /// Which HS256 user keys sign and verify, by key id (for `/healthz`).
    pub fn describe_keys(&self) -> Option<String> {
        match self {
            Authenticator::Jwt(v) => v.hs256_keys().map(|k| k.current().describe()),
            Authenticator::Disabled => None,
        }
    }

    /// Puts one gRPC service behind the per-peer budget and authentication: every call gets
    /// the caller's [`Principal`] in its extensions, or is refused.
    pub fn wrap<S>(&self, inner: S, limits: Arc<Limits>) -> Authenticated<S> {
        AuthLayer {
            auth: self.clone(),
            limits,
        }
        .layer(inner)
    }

    /// The caller of `path`, or why it is refused (with the caller when the token was good
    /// but the role is not, so the audit record names who was refused).
    async fn authorize(
        &self,
        path: &str,
        authorization: Option<&http::HeaderValue>,
    ) -> Result<Principal, (Status, Option<Principal>)> {
        let verifier = match self {
            Authenticator::Disabled => return Ok(Principal::anonymous()),
            Authenticator::Jwt(v) => v,
        };
        let token = bearer(authorization).map_err(|e| (e.into(), None))?;
        let principal = verifier.verify(token).await.map_err(|e| (e.into(), None))?;
        let Some((method, needs, _)) = permission(path) else {
            return Err((Status::permission_denied("unknown method"), Some(principal)));
        };
        if !principal.allows(needs) {
            let status = Status::permission_denied(format!(
                "role {} may not call {method} (needs {})",
                principal.role.as_str(),
                needed_role(needs)
            ));
            return Err((status, Some(principal)));
        }
        Ok(principal)
    }
}

#[derive(Clone)]
struct AuthLayer {
    auth: Authenticator,
    limits: Arc<Limits>,
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated {
            inner,
            auth: self.auth.clone(),
            limits: self.limits.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    auth: Authenticator,
    limits: Arc<Limits>,
}

impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, R> Service<http::Request<B>> for Authenticated<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if request.uri().path().starts_with("/grpc.health.v1.Health/") {
            return Box::pin(self.inner.call(request));
        }
        // The ready inner service serves this request; a fresh clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (auth, limits) = (self.auth.clone(), self.limits.clone());
        let peer = request
            .extensions()
            .get::<braid_proto::tonic::transport::server::TcpConnectInfo>()
            .and_then(|info| info.remote_addr())
            .map(|a| a.ip());
        Box::pin(async move {
            let path = request.uri().path().to_string();
            // Before the credential is even read: one peer cannot make the gateway verify
            // (and audit) calls faster than its budget.
            if let Some(ip) = peer
                && let Err(e) = limits.check_peer(ip)
            {
                if let Some(slot) = AuditSlot::of_http(&request) {
                    slot.refused_before_auth();
                }
                return Ok(Status::from(e).into_http::<R>());
            }
            match auth
                .authorize(&path, request.headers().get(http::header::AUTHORIZATION))
                .await
            {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                    inner.call(request).await
                }
                Err((mut status, principal)) => {
                    let slot = AuditSlot::of_http(&request);
                    match principal {
                        Some(p) => {
                            let tenant = p.access.tenant.as_deref();
                            if let Some(slot) = slot {
                                slot.caller(&p, tenant.unwrap_or_default());
                            }
                            // Refused calls cost the caller's own budget too.
                            let class = permission(&path).map_or(Class::Admin, |(_, _, c)| c);
                            if let Err(over) = limits.charge(class, &p.subject, tenant, 1).await {
                                status = over.into();
                            }
                        }
                        None => {
                            if let Some(slot) = slot {
                                slot.refused_before_auth();
                            }
                        }
                    }
                    tracing::debug!(%path, code = ?status.code(), reason = status.message(), "call refused");
                    Ok(status.into_http::<R>())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_permission_table() {
        assert_eq!(
            permission("/braid.v1.Gateway/Search").map(|p| (p.1, p.2)),
            Some((Permission::Read, Class::Search))
        );
        assert_eq!(
            permission("/braid.v1.Gateway/DeleteDocument").map(|p| p.1),
            Some(Permission::Write)
        );
        assert_eq!(
            permission("/braid.v1.Gateway/Reembed").map(|p| p.1),
            Some(Permission::Operate)
        );
        assert!(permission("/braid.v1.Gateway/Nope").is_none());
        assert!(permission("/braid.v1.IngestService/Ingest").is_none());
    }
}
