//! The gRPC server of `envoy.service.auth.v3.Authorization`: routes `Check` calls to the
//! [`AuthorizationService`], reading each request as the lean [`CheckRequest`].
//!
//! The `AuthorizationServer` that `envoy-types` generates would decode the full message (see
//! [`super::wire`] for why that costs more than the rest of a cached check), and tonic's codec
//! answers a request it cannot read with a failed call (see [`super::grpc`]). This reads the
//! call with [`grpc::read_message`], decodes it, and answers with [`grpc::ok_response`]. What
//! must stay true: the service name and method path Envoy calls, and that every `Check` call is
//! answered with an OK gRPC status carrying the decision (a denial, an oversized or unreadable
//! request included, is never a gRPC error).
//!
//! Accepted connections are wrapped in [`SingleBufferWrites`] (see there for why the socket
//! hides its vectored writes) and served by [`super::threads`].

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use prost::Message as _;
use prost::bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tonic::codegen::{Body, BoxFuture, StdError, http};
use tonic::server::NamedService;
use tonic::transport::server::Connected;

use super::grpc::{self, BadMessage, MessageLimits};
use super::service::AuthorizationService;
use super::wire::CheckRequest;
use sessiongate_core::deny::{Deny, DenyReason};

/// The path of the one method.
const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// Serves [`AuthorizationService`] over gRPC; add it to a `tonic::transport::Server`.
#[derive(Clone, Debug)]
pub struct CheckServer {
    service: Arc<AuthorizationService>,
    /// How much of each call is read.
    limits: MessageLimits,
}

impl CheckServer {
    /// A server answering with `service`, reading calls within [`MessageLimits::default`].
    pub fn new(service: AuthorizationService) -> CheckServer {
        CheckServer {
            service: Arc::new(service),
            limits: MessageLimits::default(),
        }
    }

    /// Reads calls within `limits` (`limits.max_check_request_bytes`, `limits.body_timeout`).
    #[must_use]
    pub fn with_limits(mut self, limits: MessageLimits) -> CheckServer {
        self.limits = limits;
        self
    }
}

impl<B> tonic::codegen::Service<http::Request<B>> for CheckServer
where
    B: Body<Data = Bytes> + Send + 'static,
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
        let service = Arc::clone(&self.service);
        let limits = self.limits;
        Box::pin(async move {
            let started = Instant::now();
            let read = grpc::read_message(request.into_body(), limits)
                .await
                .and_then(|message| CheckRequest::decode(message).map_err(BadMessage::NotProtobuf));
            let answer = match read {
                Ok(check) => service.check(check, started).await,
                Err(bad) => {
                    let deny = Deny::new(DenyReason::BadRequest, bad.to_string());
                    service.refuse(&deny, started)
                }
            };
            Ok(grpc::ok_response(&answer))
        })
    }
}

impl NamedService for CheckServer {
    const NAME: &'static str = "envoy.service.auth.v3.Authorization";
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

impl<T: Connected> Connected for SingleBufferWrites<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> T::ConnectInfo {
        self.0.connect_info()
    }
}
