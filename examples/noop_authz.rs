//! A do-nothing ext_authz server: every `Check` is allowed without looking at it. The limit of
//! sessiongate's stack, for `scripts/bench-load.sh`.
//!
//! Built exactly as `sessiongate serve` serves: the same tonic server and generated service, the
//! same message limit, keepalive and `TCP_NODELAY` on accepted sockets, the same default
//! multi-threaded tokio runtime. The request is still decoded by tonic (that is the stack's
//! work); only the judging and the response's identity headers are missing.
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
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
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
    // The same settings as `app::serve_with`.
    let service = AuthorizationServer::new(Noop).max_decoding_message_size(1024 * 1024);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
