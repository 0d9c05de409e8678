//! One pass-through to ingest for the Gateway calls that only check and forward (job and
//! operator calls, deletes): admit the call for the tenant it names, make it act in the
//! tenant admission resolved, send it on behalf of the caller, pass the answer or the status
//! back. A handler names only its budget class, tenant use, field check and ingest method.

use std::future::Future;

use braid_proto::tonic::{Request, Response, Status};
use braid_proto::v1::{
    DeleteDocumentRequest, DiscardJobsRequest, ListJobsRequest, ReembedRequest, ReindexRequest,
    RetryJobsRequest, StatsRequest, VerifyRequest,
};

use super::{GatewayApi, IngestClient, caller, on_behalf, proxied};
use crate::error::GatewayError;
use crate::limits::Class;
use crate::limits::admission::TenantUse;
use crate::limits::config::RequestLimits;

/// A request forwarded to ingest that names the tenant it acts in.
pub(super) trait Tenanted {
    fn tenant(&self) -> &str;
    fn set_tenant(&mut self, tenant: String);
}

macro_rules! tenanted {
    ($($request:ty),* $(,)?) => {$(
        impl Tenanted for $request {
            fn tenant(&self) -> &str {
                &self.tenant
            }
            fn set_tenant(&mut self, tenant: String) {
                self.tenant = tenant;
            }
        }
    )*};
}

tenanted!(
    ListJobsRequest,
    RetryJobsRequest,
    DiscardJobsRequest,
    StatsRequest,
    ReembedRequest,
    ReindexRequest,
    VerifyRequest,
    DeleteDocumentRequest,
);

/// The field limits a forwarded request must respect besides its tenant.
pub(super) type FieldCheck<T> = fn(&RequestLimits, &T) -> Result<(), GatewayError>;

/// A forwarded request with no field limit.
pub(super) fn no_fields<T>(_: &RequestLimits, _: &T) -> Result<(), GatewayError> {
    Ok(())
}

impl GatewayApi {
    /// A call passed through to ingest: admitted (the tenant it names for `use_`, then
    /// `fields`; one token of `class`), made to act in the tenant admission resolved, sent
    /// by `call` on behalf of the caller, its answer or status passed back.
    pub(super) async fn forward<T, R, F, Fut>(
        &self,
        request: Request<T>,
        class: Class,
        use_: TenantUse,
        fields: FieldCheck<T>,
        call: F,
    ) -> Result<Response<R>, Status>
    where
        T: Tenanted + Send + Sync,
        F: FnOnce(IngestClient, Request<T>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let caller = caller(&request)?;
        let r = request.get_ref();
        let (tenant, ()) = self
            .admit(&request, &caller, class, r.tenant(), use_, |_| {
                Ok((1, fields(&self.limits.config.requests, r)?))
            })
            .await?;
        let mut r = request.into_inner();
        r.set_tenant(tenant);
        proxied(call(self.ingest(), on_behalf(&caller, r)).await)
    }
}
