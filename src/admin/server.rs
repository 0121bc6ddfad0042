//! The admin listener: the gRPC service (behind the credential check) plus any plain HTTP
//! routes merged in, on one port.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::credential::AdminCredential;
use super::proto::admin_server::AdminServer;
use super::service::AdminService;
use crate::http_server::{self, HttpBounds};
use crate::revocation::Revocations;
use crate::shutdown::StopSignal;
use sessiongate_check::gate::Gate;

/// How long open admin connections may linger after a stop signal before the listener closes
/// anyway: a CLI or an HTTP/2 client keeping its connection alive must not hold up a shutdown.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// What the admin API reads and changes.
#[derive(Clone, Debug)]
pub struct AdminState {
    /// The gate, for its policy (trusted issuers, skew, horizon) and its session cache.
    pub gate: Arc<Gate>,
    /// The live revocations and their durable store.
    pub revocations: Arc<Revocations>,
    /// The credential every gRPC call must present.
    pub credential: AdminCredential,
}

/// Serves the admin API on `listener`, with `extra` routes (which do their own authentication,
/// e.g. signed Security Event Tokens) on the same port, each connection within `bounds`, until
/// `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    extra: axum::Router,
    bounds: HttpBounds,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    tracing::info!(listener = "admin", addr = %address, "listening");
    let credential = state.credential.clone();
    let admin = AdminServer::with_interceptor(AdminService::new(state), move |request| {
        credential.check(request)
    });
    let router = tonic::service::Routes::new(admin)
        .into_axum_router()
        .merge(extra);
    let stop = StopSignal::new(shutdown);
    http_server::serve(listener, router, bounds, stop, DRAIN_GRACE).await?;
    tracing::info!(listener = "admin", "stopped");
    Ok(())
}
