//! The public `braid.v1.Gateway` gRPC handlers: search here, document operations proxied to
//! the ingest service. Every handler takes the caller's [`Principal`] (put there by the auth
//! layer), acts in the caller's tenant only, and forwards the principal to ingest, which
//! enforces the same rules again. The calls that only check and forward go through one generic
//! pass-through (`forward`).

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use braid_core::auth::Principal;

use braid_core::auth::Permission;
use braid_proto::tonic::{self, Request, Response, Status};
use braid_proto::v1::gateway_server::Gateway;
use braid_proto::v1::{
    DeleteDocumentRequest, DeleteDocumentResponse, DiscardJobsRequest, DiscardJobsResponse,
    Document, DocumentResult, GetDocumentRequest, IngestRequest, IngestResponse,
    IngestStreamRequest, ListAuditRequest, ListAuditResponse, ListJobsRequest, ListJobsResponse,
    ReembedRequest, ReembedResponse, ReindexRequest, ReindexResponse, ReindexStatusRequest,
    ResetBreakerRequest, ResetBreakerResponse, RetryJobsRequest, RetryJobsResponse,
    RevokeTokensRequest, RevokeTokensResponse, SearchRequest, SearchResponse, StatsRequest,
    StatsResponse, StatusRequest, StatusResponse, VerifyRequest, VerifyResponse,
    WaitIndexedRequest, WaitIndexedResponse,
};
use futures::Stream;
use tokio_stream::StreamExt;

use crate::audit::AuditSlot;
use crate::audit::store::AuditStore;
use crate::error::GatewayError;
use crate::limits::admission::{TenantUse, charged_tenant, resolve_tenant};
use crate::limits::{Class, Limits, cost, fields, stream};
use crate::revocation::Revoker;
use crate::search::Searcher;
use crate::status::StatusView;
use forward::no_fields;

mod forward;

pub struct GatewayApi {
    pub(crate) searcher: Arc<Searcher>,
    pub(crate) limits: Arc<Limits>,
    /// `None` when audit is off.
    pub(crate) audit: Option<AuditStore>,
    /// `None` without a database.
    pub(crate) revoker: Option<Arc<Revoker>>,
    /// `Status` and `ResetBreaker`.
    pub(crate) status: Arc<StatusView>,
}

impl GatewayApi {
    /// Check before charging: checks the tenant the request names (`requested`), then the
    /// rest of the request (`check`, which also says what the call costs in tokens); notes
    /// the caller and the charged tenant in the audit record; and charges the tokens to the
    /// caller's and that tenant's budgets of `class`. A refused call costs one token: of the
    /// tenant it may act in when refused for another reason, else of the caller's own
    /// budgets — never of a tenant it may not act in. Returns the tenant the call acts in
    /// (empty: every tenant, cross-tenant operator calls) and what `check` made of it.
    async fn admit<T, X>(
        &self,
        request: &Request<T>,
        caller: &Principal,
        class: Class,
        requested: &str,
        use_: TenantUse,
        check: impl FnOnce(&str) -> Result<(u32, X), GatewayError>,
    ) -> Result<(String, X), GatewayError> {
        let resolved = resolve_tenant(caller, requested, use_);
        // A tenant it may act in, or (refused for its tenant) the caller's own.
        let charged = charged_tenant(caller, resolved.as_deref().map_err(|_| ())).map(String::from);
        let checked =
            resolved.and_then(|tenant| check(&tenant).map(|(tokens, x)| (tenant, tokens, x)));
        let tokens = checked.as_ref().map_or(1, |(_, tokens, _)| *tokens);
        if let Some(slot) = AuditSlot::of(request) {
            slot.caller(caller, charged.as_deref().unwrap_or_default());
        }
        self.limits
            .charge(class, &caller.subject, charged.as_deref(), tokens)
            .await?;
        checked.map(|(tenant, _, x)| (tenant, x))
    }

    /// [`admit`](Self::admit) for a call about the whole service (`rpc` names it): an admin of
    /// every tenant only ([`whole_service`]); returns the caller.
    async fn admit_whole_service<T>(
        &self,
        request: &Request<T>,
        rpc: &str,
    ) -> Result<Principal, GatewayError> {
        let caller = caller(request)?;
        self.admit(
            request,
            &caller,
            Class::Admin,
            "",
            TenantUse::Operator,
            |_| whole_service(&caller, rpc),
        )
        .await?;
        Ok(caller)
    }
}

/// A call that costs one token and needs no other check.
fn one<X: Default>(_: &str) -> Result<(u32, X), GatewayError> {
    Ok((1, X::default()))
}

/// Forwards a request to the ingest service, passing its status through.
fn proxied<T>(result: Result<Response<T>, Status>) -> Result<Response<T>, Status> {
    result.map_err(|s| GatewayError::Downstream(s).into())
}

/// The caller the auth layer identified.
fn caller<T>(request: &Request<T>) -> Result<Principal, GatewayError> {
    braid_core::auth::principal(request)
        .cloned()
        .ok_or(GatewayError::Unauthenticated)
}

/// A downstream request on behalf of `caller`.
fn on_behalf<T>(caller: &Principal, message: T) -> Request<T> {
    let mut request = Request::new(message);
    caller.attach(request.metadata_mut());
    request
}

/// An IngestStream upload on its way to the ingest service (see `ingest_stream`).
struct Upload<S> {
    inbound: Pin<Box<S>>,
    caller: Principal,
    /// Set when a message named a tenant it may not: the stream's final status.
    denied: Arc<Mutex<Option<Status>>>,
    limits: Arc<Limits>,
}

impl<S: Stream<Item = IngestStreamRequest>> Upload<S> {
    /// The next message, its tenant checked and its document paid for.
    async fn next(mut self) -> Option<(IngestStreamRequest, Self)> {
        let mut m = self.inbound.next().await?;
        match resolve_tenant(&self.caller, &m.tenant, TenantUse::Document) {
            Ok(tenant) => {
                self.limits
                    .charge_waiting(Class::Ingest, &self.caller.subject, Some(&tenant), 1)
                    .await;
                m.tenant = tenant;
                Some((m, self))
            }
            Err(e) => {
                *self.denied.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.into());
                None
            }
        }
    }
}

type ResultStream = Pin<Box<dyn Stream<Item = Result<DocumentResult, Status>> + Send>>;

type IngestClient =
    braid_proto::v1::ingest_service_client::IngestServiceClient<braid_core::client::Channel>;

impl GatewayApi {
    fn ingest(&self) -> IngestClient {
        self.searcher.clients.ingest.clone()
    }
}

#[tonic::async_trait]
impl Gateway for GatewayApi {
    type IngestStreamStream = ResultStream;

    async fn search(
        &self,
        request: Request<SearchRequest>,
    ) -> Result<Response<SearchResponse>, Status> {
        let caller = caller(&request)?;
        let slot = AuditSlot::of(&request);
        if let Some(slot) = &slot {
            slot.query(&request.get_ref().query);
        }
        let r = request.get_ref();
        let (_, prepared) = self
            .admit(
                &request,
                &caller,
                Class::Search,
                &r.tenant,
                TenantUse::Document,
                |_| {
                    let prepared = self.searcher.prepare(r, &caller)?;
                    let tokens = cost::search(&self.limits.config.cost, prepared.work(r));
                    Ok((tokens, prepared))
                },
            )
            .await?;
        let (mode, started) = (prepared.mode_label(), std::time::Instant::now());
        let response = self
            .searcher
            .search(prepared, request.into_inner(), &caller)
            .await;
        self.searcher.metrics.record_search(
            mode,
            started.elapsed(),
            response.as_ref().ok().map(|r| r.hits.len()),
        );
        let response = response?;
        if let Some(slot) = &slot {
            slot.results(
                response.hits.len(),
                response.hits.iter().map(|h| h.document_id.as_str()),
            );
        }
        Ok(Response::new(response))
    }

    async fn ingest(
        &self,
        request: Request<IngestRequest>,
    ) -> Result<Response<IngestResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let (tenant, ()) = self
            .admit(
                &request,
                &caller,
                Class::Ingest,
                &r.tenant,
                TenantUse::Document,
                |_| {
                    fields::ingest(&self.limits.config.requests, r)?;
                    Ok((cost::documents(r.documents.len()), ()))
                },
            )
            .await?;
        // Waiting for READY makes this a long call.
        let _long_call = if request.get_ref().wait_until_indexed {
            Some(self.limits.long_call(&caller)?)
        } else {
            None
        };
        let slot = AuditSlot::of(&request);
        let mut r = request.into_inner();
        r.tenant = tenant;
        let response = proxied(self.ingest().ingest(on_behalf(&caller, r)).await)?;
        if let Some(slot) = slot {
            let r = response.get_ref();
            slot.results(
                r.results.len(),
                r.results.iter().map(|d| d.document_id.as_str()),
            );
        }
        Ok(response)
    }

    async fn ingest_stream(
        &self,
        request: Request<tonic::Streaming<IngestStreamRequest>>,
    ) -> Result<Response<Self::IngestStreamStream>, Status> {
        let caller = caller(&request)?;
        self.admit(
            &request,
            &caller,
            Class::Ingest,
            "",
            TenantUse::Document,
            one::<()>,
        )
        .await?;
        let long_call = self.limits.long_call(&caller)?;
        let slot = AuditSlot::of(&request);
        // Documents flow through as they arrive (a client error, an idle client or a stream
        // over its budget ends the upload); results flow back the same way, so back-pressure
        // reaches from ingest to the client. A cut stream ends with the limit it hit. Every
        // message's tenant is checked; the first one that is malformed or names another
        // tenant ends the upload (INVALID_ARGUMENT, PERMISSION_DENIED) after the results of
        // the messages before it. Each document costs one token of the ingest budgets as it
        // arrives; while they are used up the upload waits (back-pressure to the client).
        let (guarded, cut) = stream::guard(request.into_inner(), self.limits.config.stream.clone());
        let denied: Arc<Mutex<Option<Status>>> = Arc::new(Mutex::new(None));
        let outbound = futures::stream::unfold(
            Upload {
                inbound: Box::pin(guarded),
                caller: caller.clone(),
                denied: denied.clone(),
                limits: self.limits.clone(),
            },
            Upload::next,
        );
        let results = self
            .ingest()
            .ingest_stream(on_behalf(&caller, outbound))
            .await
            .map_err(GatewayError::Downstream)?
            .into_inner()
            .map(move |r| {
                // The audit record counts the results the caller actually received.
                if let (Ok(result), Some(slot)) = (&r, &slot) {
                    slot.add_result(&result.document_id);
                }
                r.map_err(|s| Status::from(GatewayError::Downstream(s)))
            });
        let ends = futures::stream::once(async move {
            // The long-call slot is held until the response stream ends.
            drop(long_call);
            let refused = denied.lock().unwrap_or_else(|p| p.into_inner()).take();
            refused.or_else(|| cut.take())
        })
        .filter_map(|end| end.map(Err));
        Ok(Response::new(Box::pin(results.chain(ends))))
    }

    async fn wait_indexed(
        &self,
        request: Request<WaitIndexedRequest>,
    ) -> Result<Response<WaitIndexedResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let (tenant, ()) = self
            .admit(
                &request,
                &caller,
                Class::Ingest,
                &r.tenant,
                TenantUse::Document,
                |_| Ok((1, fields::wait_indexed(&self.limits.config.requests, r)?)),
            )
            .await?;
        let _long_call = self.limits.long_call(&caller)?;
        let slot = AuditSlot::of(&request);
        let mut r = request.into_inner();
        r.tenant = tenant;
        let response = proxied(self.ingest().wait_indexed(on_behalf(&caller, r)).await)?;
        if let Some(slot) = slot {
            let r = response.get_ref();
            slot.results(
                r.results.len(),
                r.results.iter().map(|d| d.document_id.as_str()),
            );
        }
        Ok(response)
    }

    async fn list_jobs(
        &self,
        request: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        self.forward(
            request,
            Class::Admin,
            TenantUse::Operator,
            fields::list_jobs,
            |mut ingest, r| async move { ingest.list_jobs(r).await },
        )
        .await
    }

    async fn retry_jobs(
        &self,
        request: Request<RetryJobsRequest>,
    ) -> Result<Response<RetryJobsResponse>, Status> {
        self.forward(
            request,
            Class::Admin,
            TenantUse::Operator,
            fields::retry_jobs,
            |mut ingest, r| async move { ingest.retry_jobs(r).await },
        )
        .await
    }

    async fn discard_jobs(
        &self,
        request: Request<DiscardJobsRequest>,
    ) -> Result<Response<DiscardJobsResponse>, Status> {
        self.forward(
            request,
            Class::Admin,
            TenantUse::Operator,
            fields::discard_jobs,
            |mut ingest, r| async move { ingest.discard_jobs(r).await },
        )
        .await
    }

    async fn stats(
        &self,
        request: Request<StatsRequest>,
    ) -> Result<Response<StatsResponse>, Status> {
        self.forward(
            request,
            Class::Admin,
            TenantUse::Operator,
            no_fields,
            |mut ingest, r| async move { ingest.stats(r).await },
        )
        .await
    }

    async fn reembed(
        &self,
        request: Request<ReembedRequest>,
    ) -> Result<Response<ReembedResponse>, Status> {
        self.forward(
            request,
            Class::Admin,
            TenantUse::Operator,
            no_fields,
            |mut ingest, r| async move { ingest.reembed(r).await },
        )
        .await
    }

    async fn reindex(
        &self,
        request: Request<ReindexRequest>,
    ) -> Result<Response<ReindexResponse>, Status> {
        self.forward(
            request,
            Class::Admin,
            TenantUse::Operator,
            no_fields,
            |mut ingest, r| async move { ingest.reindex(r).await },
        )
        .await
    }

    async fn reindex_status(
        &self,
        request: Request<ReindexStatusRequest>,
    ) -> Result<Response<ReindexResponse>, Status> {
        let caller = caller(&request)?;
        self.admit(
            &request,
            &caller,
            Class::Admin,
            "",
            TenantUse::Operator,
            one::<()>,
        )
        .await?;
        let r = request.into_inner();
        proxied(self.ingest().reindex_status(on_behalf(&caller, r)).await)
    }

    async fn verify(
        &self,
        request: Request<VerifyRequest>,
    ) -> Result<Response<VerifyResponse>, Status> {
        self.forward(
            request,
            Class::Admin,
            TenantUse::Operator,
            no_fields,
            |mut ingest, r| async move { ingest.verify(r).await },
        )
        .await
    }

    async fn get_document(
        &self,
        request: Request<GetDocumentRequest>,
    ) -> Result<Response<Document>, Status> {
        let caller = caller(&request)?;
        let (tenant, ()) = self
            .admit(
                &request,
                &caller,
                Class::Search,
                &request.get_ref().tenant,
                TenantUse::Document,
                one,
            )
            .await?;
        let slot = AuditSlot::of(&request);
        let mut r = request.into_inner();
        r.tenant = tenant;
        let response = proxied(self.ingest().get_document(on_behalf(&caller, r)).await)?;
        if let Some(slot) = slot {
            let r = response.get_ref();
            slot.results(1, [r.document_id.as_str()]);
        }
        Ok(response)
    }

    async fn delete_document(
        &self,
        request: Request<DeleteDocumentRequest>,
    ) -> Result<Response<DeleteDocumentResponse>, Status> {
        if let Some(slot) = AuditSlot::of(&request) {
            let id = &request.get_ref().document_id;
            slot.results(0, (!id.is_empty()).then_some(id.as_str()));
        }
        self.forward(
            request,
            Class::Ingest,
            TenantUse::Document,
            no_fields,
            |mut ingest, r| async move { ingest.delete_document(r).await },
        )
        .await
    }

    async fn list_audit(
        &self,
        request: Request<ListAuditRequest>,
    ) -> Result<Response<ListAuditResponse>, Status> {
        let caller = caller(&request)?;
        let (tenant, ()) = self
            .admit(
                &request,
                &caller,
                Class::Admin,
                &request.get_ref().tenant,
                TenantUse::Operator,
                |_| {
                    if !caller.allows(Permission::Operate) {
                        return Err(GatewayError::PermissionDenied(
                            "ListAudit needs the admin role".into(),
                        ));
                    }
                    Ok((1, ()))
                },
            )
            .await?;
        let Some(store) = &self.audit else {
            return Err(GatewayError::NotConfigured(
                "the audit trail is off (set audit.database.url)".into(),
            )
            .into());
        };
        let slot = AuditSlot::of(&request);
        let mut r = request.into_inner();
        // A tenant-bound admin reads its own tenant's trail only.
        r.tenant = tenant;
        let response = crate::audit::list(store, r).await?;
        if let Some(slot) = slot {
            slot.results(response.records.len(), []);
        }
        Ok(Response::new(response))
    }

    async fn revoke_tokens(
        &self,
        request: Request<RevokeTokensRequest>,
    ) -> Result<Response<RevokeTokensResponse>, Status> {
        let caller = caller(&request)?;
        // A tenant-bound admin revokes in its own tenant; a cross-tenant one where it says
        // (empty: every tenant).
        let (tenant, ()) = self
            .admit(
                &request,
                &caller,
                Class::Admin,
                &request.get_ref().tenant,
                TenantUse::Operator,
                one,
            )
            .await?;
        let Some(revoker) = &self.revoker else {
            return Err(GatewayError::NotConfigured(
                "token revocation needs the gateway's database (set audit.database.url)".into(),
            )
            .into());
        };
        let slot = AuditSlot::of(&request);
        let r = request.into_inner();
        if let Some(slot) = &slot {
            slot.target(&r.subject);
        }
        let cut_off = revoker.revoke(&caller, &tenant, &r.subject).await?;
        Ok(Response::new(RevokeTokensResponse {
            cut_off: Some(braid_proto::prost_types::Timestamp {
                seconds: cut_off as i64,
                nanos: 0,
            }),
            tenant,
        }))
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        self.admit_whole_service(&request, "Status").await?;
        let response = self.status.collect().await;
        if let Some(slot) = AuditSlot::of(&request) {
            slot.results(response.services.len(), []);
        }
        Ok(Response::new(response))
    }

    async fn reset_breaker(
        &self,
        request: Request<ResetBreakerRequest>,
    ) -> Result<Response<ResetBreakerResponse>, Status> {
        let caller = self.admit_whole_service(&request, "ResetBreaker").await?;
        let leg = &request.get_ref().leg;
        if let Some(slot) = AuditSlot::of(&request) {
            slot.target(&leg.chars().take(64).collect::<String>());
        }
        let response = self.status.reset(leg)?;
        tracing::info!(
            subject = %caller.subject,
            leg = %response.leg,
            was = %response.previous_state,
            "breaker reset"
        );
        Ok(Response::new(response))
    }
}

/// Calls about the whole service (every tenant's traffic goes through its breakers, pools and
/// queues) are for an admin of every tenant (`braid_cross_tenant`), never an admin of one
/// tenant; they cost 1.
fn whole_service(caller: &Principal, rpc: &str) -> Result<(u32, ()), GatewayError> {
    if !caller.allows(Permission::Operate) {
        return Err(GatewayError::PermissionDenied(format!(
            "{rpc} needs the admin role"
        )));
    }
    if let Some(tenant) = &caller.access.tenant {
        return Err(GatewayError::PermissionDenied(format!(
            "{rpc} acts on the whole service: it needs an admin of every tenant, not of `{tenant}` only"
        )));
    }
    Ok((1, ()))
}
