//! The gRPC server of `envoy.service.auth.v3.Authorization`: routes `Check` calls to the
//! [`AuthorizationService`], decoding each request as the lean [`CheckRequest`].
//!
//! The `AuthorizationServer` that `envoy-types` generates would decode the full message (see
//! [`super::wire`] for why that costs more than the rest of a cached check). This is the same
//! few lines of routing tonic generates, with the lean request type; what must stay true is
//! the service name and method path Envoy calls, and that every call is answered with an OK
//! gRPC status carrying the decision (a denial is never a gRPC error).
//!
//! Accepted connections are wrapped in [`SingleBufferWrites`] (see there for why the socket
//! hides its vectored writes) and served by [`super::threads`].

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use envoy_types::ext_authz::v3::pb::CheckResponse;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::codegen::{Body, BoxFuture, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::transport::server::{Connected, TcpConnectInfo};

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

/// A socket that tells HTTP/2 it has no vectored writes, so every answer leaves in one write.
///
/// With vectored writes, h2 does not copy a DATA payload of 256 bytes or more into its write
/// buffer but chains it, and while a chained payload is pending it buffers nothing else: the
/// connection is flushed (a `writev`) before the response's trailers, and before any other
/// stream's frames. An allow with its four identity headers is about 260 bytes, so every
/// allowed check cost two `writev`s, each waking the reader, where a tiny answer shares one
/// `writev` with its neighbours (measured: 1.8 `writev` per check against 0.8 for the
/// do-nothing server). Without vectored writes h2 copies payloads under 1 KiB into its buffer
/// (larger ones are still chained), so an answer and its trailers, and the answers of
/// concurrent checks, go out together. The bytes on the wire are the same.
#[derive(Debug)]
pub struct SingleBufferWrites<T>(T);

impl<T> SingleBufferWrites<T> {
    /// Wraps `socket`.
    pub fn new(socket: T) -> SingleBufferWrites<T> {
        SingleBufferWrites(socket)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for SingleBufferWrites<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for SingleBufferWrites<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

impl Connected for SingleBufferWrites<TcpStream> {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.0.connect_info()
    }
}
