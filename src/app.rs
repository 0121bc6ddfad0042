//! Wiring: from a loaded [`Config`] to a running ext_authz server, and a clean stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::config::Config;
use crate::envoy::AuthorizationService;
use crate::gate::Gate;
use crate::session::SessionCache;
use crate::time::UnixTime;
use crate::token::{KeyRing, KeySource};

/// How long in-flight checks may take to finish after a stop signal before the server exits
/// anyway. Envoy's own ext_authz timeout is far shorter, so nothing is cut off in practice.
pub const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// Largest gRPC message accepted from Envoy. A CheckRequest carries headers (Envoy caps them
/// at 60 KiB by default) and optionally a buffered body; 1 MiB bounds it generously.
const MAX_CHECK_REQUEST_BYTES: usize = 1024 * 1024;

/// Builds the gate for `config`: loads every issuer's keys and sizes the session cache.
pub async fn build_gate(config: Config) -> anyhow::Result<Arc<Gate>> {
    let keys = Arc::new(KeyRing::new());
    for issuer in &config.keys {
        let parsed = issuer
            .source
            .load()
            .await
            .with_context(|| format!("loading keys of {}", issuer.issuer))?;
        tracing::info!(issuer = %issuer.issuer, source = %issuer.source.describe(), keys = parsed.keys.len(), "keys loaded");
        keys.replace(&issuer.issuer, parsed.keys);
    }
    let sessions = SessionCache::new(config.cache_capacity, config.clock_skew);
    Ok(Arc::new(Gate::new(
        config.policy,
        keys,
        sessions,
        UnixTime::now(),
    )))
}

/// Binds the configured gRPC address.
pub async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("binding the gRPC listener to {address}"))
}

/// Serves ext_authz on `listener` until `shutdown` completes, then drains in-flight checks for
/// at most [`DRAIN_GRACE`].
pub async fn serve(
    listener: TcpListener,
    gate: Arc<Gate>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let address = listener.local_addr().context("reading the bound address")?;
    tracing::info!(listener = "grpc", addr = %address, "listening");
    let service = AuthorizationServer::new(AuthorizationService::new(gate))
        .max_decoding_message_size(MAX_CHECK_REQUEST_BYTES);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("stop requested; draining in-flight checks");
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stopped(stop_rx.clone()));
    tokio::select! {
        result = server => result.context("gRPC server failed")?,
        _ = async {
            stopped(stop_rx).await;
            tokio::time::sleep(DRAIN_GRACE).await;
        } => tracing::warn!("drain grace of {DRAIN_GRACE:?} elapsed; closing remaining connections"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// Runs the sidecar for `config` until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = bind(config.grpc_listen).await?;
    let gate = build_gate(config).await?;
    serve(listener, gate, shutdown).await
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
