//! A do-nothing ext_authz server: every `Check` is allowed without looking at it. The limit of
//! sessiongate's stack, for `scripts/bench-load.sh`.
//!
//! Built exactly as `sessiongate serve` serves: the same tonic server, message limit and
//! keepalive, the same connection threads (`sessiongate::envoy::threads`: each connection on
//! one single-threaded runtime, `TCP_NODELAY`, one thread per CPU). The request is decoded by
//! the generated service as the whole `CheckRequest` (that is the stack's work); only the
//! judging and the response's identity headers are missing.
//!
//! ```text
//! cargo run --release --example noop_authz -- 127.0.0.1:19191
//! ```

use std::time::Duration;

use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse,
};
use envoy_types::pb::envoy::service::auth::v3::OkHttpResponse;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::google::rpc;
use sessiongate::envoy::threads;
use sessiongate::shutdown::StopSignal;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

/// Allows everything.
struct Noop;

#[tonic::async_trait]
impl Authorization for Noop {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let _check = request.into_inner();
        Ok(Response::new(CheckResponse {
            status: Some(rpc::Status {
                code: 0,
                ..Default::default()
            }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse::default())),
            ..Default::default()
        }))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:19191".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("noop ext_authz listening on {}", listener.local_addr()?);
    let stop = StopSignal::new(async {
        let _ = tokio::signal::ctrl_c().await;
    });
    // The same settings as `app::serve_with`.
    let service = AuthorizationServer::new(Noop).max_decoding_message_size(1024 * 1024);
    let limits = sessiongate::config::LimitSettings::default();
    threads::serve_on_threads(
        listener,
        threads::default_threads(),
        sessiongate::app::grpc_bounds(&limits, Default::default()),
        stop,
        move |connections, stop| {
            tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(Duration::from_secs(30)))
                .add_service(service.clone())
                .serve_with_incoming_shutdown(connections, stop.stopped())
        },
    )
    .await
}
