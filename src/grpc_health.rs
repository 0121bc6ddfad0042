//! The standard `grpc.health.v1.Health` service on the ext_authz port, following [`Readiness`].
//!
//! It reports three services: the whole server (`""`) and the ext_authz service by name, both
//! SERVING while ready and no stop was requested; and [`REVOCATION_STORE_HEALTH`], the shared
//! revocation store's reachability.
//!
//! What must stay true: a stop ends every `Watch` stream. gRPC's graceful shutdown waits for
//! every open call to finish, and a `Watch` call never finishes by itself, so one open watcher
//! (a Kubernetes or Envoy health checker) held SIGTERM for the whole `shutdown_grace` even with
//! no Check in flight. On stop, each watcher is sent NOT_SERVING, then its stream ends (status
//! OK, so the client reconnects elsewhere or retries); `Check` keeps answering NOT_SERVING
//! until the process exits. (tonic-health's own service keeps its watch senders for the life of
//! the service, so its streams cannot be ended; this one owns its senders and drops them.)

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::envoy::CheckServer;
use crate::health::Readiness;
use crate::shutdown::StopSignal;

/// The health service name that reports the shared revocation store (Redis): NOT_SERVING while
/// it is unreachable or this replica is catching up with it. Apart from `""` and the ext_authz
/// service, which stay SERVING: a replica cut off from Redis still enforces every revocation it
/// knows, and a fleet whose shared Redis failed must not drop out of rotation all at once.
pub const REVOCATION_STORE_HEALTH: &str = "sessiongate.revocations";

/// The ext_authz service's name, as health checkers ask for it.
const AUTHZ: &str = <CheckServer as tonic::server::NamedService>::NAME;

/// The gRPC health service; cheap to clone.
#[derive(Clone, Debug)]
pub struct GrpcHealth {
    /// Each reported service's latest status. The senders live in the task [`GrpcHealth::new`]
    /// spawns, which drops them on stop: that is what ends the `Watch` streams.
    statuses: Arc<HashMap<&'static str, watch::Receiver<ServingStatus>>>,
}

impl GrpcHealth {
    /// Reports `readiness` until `stop` fires; then NOT_SERVING for `""` and the ext_authz
    /// service, and every `Watch` stream ends.
    pub fn new(readiness: &Readiness, stop: &StopSignal) -> GrpcHealth {
        let ready = status(readiness.is_ready() && !stop.is_stopped());
        let (server, server_rx) = watch::channel(ready);
        let (authz, authz_rx) = watch::channel(ready);
        let (store, store_rx) = watch::channel(status(readiness.is_store_reachable()));
        let mut ready_changes = readiness.subscribe();
        let mut store_changes = readiness.subscribe_store();
        let stopped = stop.stopped();
        tokio::spawn(async move {
            tokio::pin!(stopped);
            loop {
                tokio::select! {
                    () = &mut stopped => break,
                    Ok(()) = ready_changes.changed() => {
                        let ready = *ready_changes.borrow_and_update();
                        tracing::info!(ready, "readiness changed");
                        server.send_replace(status(ready));
                        authz.send_replace(status(ready));
                    }
                    Ok(()) = store_changes.changed() => {
                        let reachable = *store_changes.borrow_and_update();
                        tracing::info!(reachable, "revocation store reachability changed");
                        store.send_replace(status(reachable));
                    }
                }
            }
            // Load balancers that probe health stop sending new work while we drain.
            server.send_replace(ServingStatus::NotServing);
            authz.send_replace(ServingStatus::NotServing);
            // Dropping the senders ends every Watch stream after that last status.
        });
        GrpcHealth {
            statuses: Arc::new(HashMap::from([
                ("", server_rx),
                (AUTHZ, authz_rx),
                (REVOCATION_STORE_HEALTH, store_rx),
            ])),
        }
    }

    /// The service to add to the ext_authz port's gRPC server.
    pub fn service(self) -> HealthServer<GrpcHealth> {
        HealthServer::new(self)
    }

    fn receiver(
        &self,
        request: &HealthCheckRequest,
    ) -> Result<watch::Receiver<ServingStatus>, Status> {
        self.statuses
            .get(request.service.as_str())
            .cloned()
            .ok_or_else(|| Status::not_found("service not registered"))
    }
}

fn status(up: bool) -> ServingStatus {
    if up {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

fn response(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: tonic_health::pb::health_check_response::ServingStatus::from(status) as i32,
    }
}

#[tonic::async_trait]
impl Health for GrpcHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let current = *self.receiver(request.get_ref())?.borrow();
        Ok(Response::new(response(current)))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

    /// The current status, then each change; ends after the NOT_SERVING sent on stop.
    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let changes = WatchStream::new(self.receiver(request.get_ref())?);
        Ok(Response::new(Box::pin(
            changes.map(|status| Ok(response(status))),
        )))
    }
}
