//! The gRPC server of `envoy.service.auth.v3.Authorization`: routes `Check` calls to the
//! [`AuthorizationService`], decoding each request as the lean [`CheckRequest`].
//!
//! The `AuthorizationServer` that `envoy-types` generates would decode the full message (see
//! [`super::wire`] for why that costs more than the rest of a cached check). This is the same
//! few lines of routing tonic generates, with the lean request type; what must stay true is
//! the service name and method path Envoy calls, and that every call is answered with an OK
//! gRPC status carrying the decision (a denial is never a gRPC error).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use envoy_types::ext_authz::v3::pb::CheckResponse;
use tonic::codegen::{Body, BoxFuture, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};

use super::service::AuthorizationService;
use super::wire::CheckRequest;

/// The path of the one method.
const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// Serves [`AuthorizationService`] over gRPC; add it to a `tonic::transport::Server`.
#[derive(Clone, Debug)]
pub struct CheckServer {
    service: Arc<AuthorizationService>,
    /// Largest request accepted (tonic's default, 4 MiB, when unset).
    max_decoding_message_size: Option<usize>,
}

impl CheckServer {
    /// A server answering with `service`.
    pub fn new(service: AuthorizationService) -> CheckServer {
        CheckServer {
            service: Arc::new(service),
            max_decoding_message_size: None,
        }
    }

    /// Refuses requests larger than `limit` bytes (before decoding them).
    #[must_use]
    pub fn max_decoding_message_size(mut self, limit: usize) -> CheckServer {
        self.max_decoding_message_size = Some(limit);
        self
    }
}

impl<B> tonic::codegen::Service<http::Request<B>> for CheckServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != CHECK_PATH {
            return Box::pin(async { Ok(unimplemented()) });
        }
        let check = Check(Arc::clone(&self.service));
        let max_decoding_message_size = self.max_decoding_message_size;
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<CheckResponse, CheckRequest>::default();
            let mut grpc =
                Grpc::new(codec).apply_max_message_size_config(max_decoding_message_size, None);
            Ok(grpc.unary(check, request).await)
        })
    }
}

impl NamedService for CheckServer {
    const NAME: &'static str = "envoy.service.auth.v3.Authorization";
}

/// One `Check` call.
struct Check(Arc<AuthorizationService>);

impl UnaryService<CheckRequest> for Check {
    type Response = CheckResponse;
    type Future = BoxFuture<tonic::Response<CheckResponse>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<CheckRequest>) -> Self::Future {
        let service = Arc::clone(&self.0);
        Box::pin(async move {
            Ok(tonic::Response::new(
                service.check(request.into_inner()).await,
            ))
        })
    }
}

/// The answer to any other method: gRPC `UNIMPLEMENTED`, as tonic's generated servers give.
fn unimplemented() -> http::Response<tonic::body::Body> {
    let mut response = http::Response::new(tonic::body::Body::default());
    let headers = response.headers_mut();
    headers.insert(
        tonic::Status::GRPC_STATUS,
        (tonic::Code::Unimplemented as i32).into(),
    );
    headers.insert(
        http::header::CONTENT_TYPE,
        tonic::metadata::GRPC_CONTENT_TYPE,
    );
    response
}
