//! The ops HTTP listener (`listen.http`): `/metrics`, `/healthz` and `/readyz` for Prometheus
//! and Kubernetes probes.
//!
//! It is a port of its own, never the ext_authz or the admin port: probes and scrapers need no
//! credential and must not be able to reach the admin API, and a scrape must never queue behind
//! Envoy's checks.
//!
//! What must stay true:
//! - The listener is served from start-up, before keys and revocations are loaded (the ext_authz
//!   and admin ports accept nothing until then): a replica waiting for Redis is alive, not
//!   wedged, so a liveness probe must not restart it, and `/readyz` says why it is not ready.
//! - `/healthz` answers 200 while the process runs (a liveness probe restarts a wedged process,
//!   never a merely unready one).
//! - `/readyz` answers 200 only once the state is loaded, while every issuer's keys are fresh
//!   and no stop was requested; otherwise 503 naming what is not ready (`loading`,
//!   `keys_stale`, `stopping`). It follows the same [`Readiness`] as the `grpc.health.v1`
//!   service on the ext_authz port, so both agree.
//! - The listener outlives the ext_authz drain: after SIGTERM it keeps answering (`/readyz` 503
//!   `stopping`) until the gRPC server has drained, so probes see "not ready", not "refused".

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::health::Readiness;
use crate::http_server::{self, HttpBounds};
use crate::metrics::{self, ConfigMetrics};
use crate::shutdown::StopSignal;

/// The content type of the OpenMetrics text format (which Prometheus asks for first).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The classic Prometheus text format, for every other scraper.
const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the ops endpoints read; cheap to clone.
#[derive(Clone, Debug)]
pub struct OpsState {
    /// Everything `/metrics` exposes.
    pub registry: Arc<Registry>,
    /// Whether issuers' keys are fresh and the revocation store is reachable.
    pub readiness: Readiness,
    /// The process-wide stop signal: once it fired, `/readyz` says `stopping`.
    pub stop: StopSignal,
    /// The running config's generation, reported by `/readyz`.
    pub config: ConfigMetrics,
}

/// The `/readyz` body: short, and enough to see which component holds readiness back.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ReadyReport {
    /// Whether the replica should receive traffic.
    pub ready: bool,
    /// A stop was requested; the replica is draining.
    pub stopping: bool,
    /// Start-up is still loading keys and revocations (the ext_authz port is not open yet).
    pub loading: bool,
    /// Issuers whose keys are past `max_stale` (their tokens are denied).
    pub keys_stale: Vec<Arc<str>>,
    /// `up` or `unreachable`. An unreachable shared store does not make the replica unready:
    /// it still enforces every revocation it holds, and taking every replica out because their
    /// shared Redis failed would turn a degraded admin API into an outage.
    pub revocation_store: &'static str,
    /// The running config's generation (the running config is always a valid one).
    pub config_generation: u64,
}

impl ReadyReport {
    /// Readiness as of now.
    pub fn of(state: &OpsState) -> ReadyReport {
        let stopping = state.stop.is_stopped();
        let keys_stale = state.readiness.unready_issuers();
        ReadyReport {
            ready: !stopping && keys_stale.is_empty() && state.readiness.is_ready(),
            stopping,
            loading: state.readiness.is_loading(),
            keys_stale,
            revocation_store: if state.readiness.is_store_reachable() {
                "up"
            } else {
                "unreachable"
            },
            config_generation: state.config.generation(),
        }
    }
}

/// The ops routes.
pub fn router(state: OpsState) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(alive))
        .route("/readyz", get(ready))
        .with_state(state)
}

/// OpenMetrics when the scraper asks for it (Prometheus does), else the classic text format.
async fn scrape(State(state): State<OpsState>, headers: HeaderMap) -> impl IntoResponse {
    let wants_openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|accept| accept.contains("application/openmetrics-text"));
    if wants_openmetrics {
        (
            [(header::CONTENT_TYPE, OPENMETRICS)],
            metrics::encode(&state.registry),
        )
    } else {
        (
            [(header::CONTENT_TYPE, CLASSIC)],
            metrics::encode_classic(&state.registry),
        )
    }
}

async fn alive() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"alive":true}"#,
    )
}

async fn ready(State(state): State<OpsState>) -> impl IntoResponse {
    let report = ReadyReport::of(&state);
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(&report).expect("the report serializes"),
    )
}

/// Serves the ops routes on `listener`, each connection within `bounds`, until `shutdown`
/// completes. Requests are tiny and answered at once, so open connections get only
/// `DRAIN_GRACE` to close.
pub async fn serve(
    listener: TcpListener,
    state: OpsState,
    bounds: HttpBounds,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    tracing::info!(listener = "http", addr = %address, "listening");
    let stop = StopSignal::new(shutdown);
    http_server::serve(listener, router(state), bounds, stop, DRAIN_GRACE).await?;
    tracing::info!(listener = "http", "stopped");
    Ok(())
}

/// How long open ops connections (a scraper's keep-alive, a probe) may take to close once the
/// listener stops.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// The ops listener running in the background; [`OpsServer::stop`] ends it.
#[derive(Debug)]
pub struct OpsServer {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl OpsServer {
    /// Starts serving on `listener` within `bounds`. It is stopped explicitly, after the
    /// ext_authz drain, not by the stop signal: probes must see `/readyz` 503 during the drain,
    /// not a refused port.
    pub fn spawn(listener: TcpListener, state: OpsState, bounds: HttpBounds) -> OpsServer {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state, bounds, async move {
            let _ = stopped.await;
        }));
        OpsServer { stop, task }
    }

    /// Stops the listener and waits for it; a failure is logged, never fatal at exit.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "ops listener failed"),
            Err(error) => tracing::error!(%error, "ops listener task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(stop: StopSignal) -> OpsState {
        OpsState {
            registry: Arc::new(Registry::default()),
            readiness: Readiness::new(),
            stop,
            config: ConfigMetrics::default(),
        }
    }

    #[tokio::test]
    async fn not_ready_while_loading() {
        let state = OpsState {
            readiness: Readiness::loading(),
            ..state(StopSignal::new(std::future::pending()))
        };
        let report = ReadyReport::of(&state);
        assert!(!report.ready && report.loading && !report.stopping);
        state.readiness.set_loaded();
        let report = ReadyReport::of(&state);
        assert!(report.ready && !report.loading);
    }

    #[tokio::test]
    async fn ready_until_an_issuer_goes_stale_or_a_stop_is_requested() {
        let (fire, fired) = tokio::sync::oneshot::channel::<()>();
        let stop = StopSignal::new(async move {
            let _ = fired.await;
        });
        let state = state(stop);
        assert!(ReadyReport::of(&state).ready);

        state.readiness.set_issuer_fresh("https://idp", false);
        let report = ReadyReport::of(&state);
        assert!(!report.ready);
        assert_eq!(report.keys_stale, vec![Arc::from("https://idp")]);
        state.readiness.set_issuer_fresh("https://idp", true);

        state.readiness.set_store_reachable(false);
        let report = ReadyReport::of(&state);
        assert!(
            report.ready,
            "an unreachable store degrades, never takes out"
        );
        assert_eq!(report.revocation_store, "unreachable");

        fire.send(()).unwrap();
        state.stop.stopped().await;
        let report = ReadyReport::of(&state);
        assert!(!report.ready && report.stopping);
    }
}
