//! Who is calling.

use braid_core::auth::Principal;
use braid_proto::tonic::Request;

/// The request's verified caller. The gateway's auth layer puts a `Principal` into every
/// request; where none is there (authentication not wired in, i.e. disabled), the caller is
/// `Principal::anonymous()`, as it was before authentication existed. This is the only place
/// that falls back.
pub fn caller<T>(request: &Request<T>) -> Principal {
    braid_core::auth::principal(request)
        .cloned()
        .unwrap_or_else(Principal::anonymous)
}
