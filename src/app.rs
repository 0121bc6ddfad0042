//! Wiring: from a loaded [`Config`] to a running ext_authz server, and a clean stop.

use crate::introspection::HttpIntrospector;
use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::admin::{self, AdminState};
use crate::config::{Config, LimitSettings};
use crate::connections::ConnectionCap;
use crate::decision_log::DecisionLog;
use crate::envoy::report::CheckReporter;
use crate::envoy::threads::ConnectionBounds;
use crate::envoy::{AuthorizationService, CheckServer, threads};
use crate::fleet::FollowerTask;
use crate::grpc_health::GrpcHealth;
use crate::health::Readiness;
use crate::http_server::HttpBounds;
use crate::keys::KeyManager;
use crate::metrics::{ConnectionMetrics, Metrics, StateSources};
use crate::ops::{OpsServer, OpsState};
use crate::port::ReservedPort;
use crate::reload::{Reloader, RunningSettings};
use crate::revocation::Revocations;
use crate::shutdown::{self, StopSignal};
use crate::ssf::settings::SsfSettings;
use crate::ssf::{self, SsfReceiver};
use crate::stores::{self, Stores};
use crate::telemetry::Tracing;
use sessiongate_check::budget::BudgetLimits;
use sessiongate_check::gate::Gate;
use sessiongate_check::pinning::PinStore;
use sessiongate_check::replay::ProofReplayStore;
use sessiongate_check::session::SessionCache;
use sessiongate_core::time::UnixTime;
use sessiongate_token::KeyRing;

pub use crate::grpc_health::REVOCATION_STORE_HEALTH;

/// How often revocations and cached sessions no token can match any more are forgotten (and
/// the revocation store compacted).
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Builds the gate for `config`: loads every issuer's keys and sizes the session cache. The
/// keys are loaded once and not refreshed (tests); [`run`] keeps them current.
pub async fn build_gate(config: Config) -> anyhow::Result<Arc<Gate>> {
    Ok(start(config).await?.gate)
}

/// What [`run`] starts before it serves: the gate, the key manager keeping the gate's keys
/// current (its refresh tasks stop when it is dropped), readiness, and the reloader.
pub struct Started {
    /// Judges every check.
    pub gate: Arc<Gate>,
    /// Refreshes issuers' keys; reloads go through it.
    pub keys: Arc<KeyManager>,
    /// Whether every issuer's keys are fresh enough.
    pub readiness: Readiness,
    /// Applies new versions of the config file (not yet listening for changes).
    pub reloader: Reloader,
    /// The live revocations the gate enforces, loaded from the durable store.
    pub revocations: Arc<Revocations>,
    /// Where new sessions are pinned (this process, or Redis fleet-wide).
    pub pins: Arc<dyn PinStore>,
    /// Where used DPoP proofs are remembered (this process, or Redis fleet-wide).
    pub proofs: Arc<dyn ProofReplayStore>,
    /// Keeps the local mirror of a shared store current; stops when dropped.
    pub follower: Option<FollowerTask>,
    /// Metric handles (key refreshes and reloads already record into them).
    pub metrics: Metrics,
    /// Asks the introspecting issuer about opaque tokens, when one is configured.
    pub introspector: Option<Arc<HttpIntrospector>>,
}

/// Loads every issuer's keys (failing if any cannot be loaded), starts their refresh tasks and
/// builds the gate.
pub async fn start(config: Config) -> anyhow::Result<Started> {
    start_with(config, Readiness::new(), Metrics::new()).await
}

/// [`start`], recording into `readiness` and `metrics`, which the ops listener already serves
/// while this loads (see [`run`]).
pub async fn start_with(
    config: Config,
    readiness: Readiness,
    metrics: Metrics,
) -> anyhow::Result<Started> {
    let running = RunningSettings::of(&config);
    let ring = Arc::new(KeyRing::new());
    let keys = Arc::new(
        KeyManager::start_counted(
            &config.keys,
            Arc::clone(&ring),
            readiness.clone(),
            metrics.keys.clone(),
        )
        .await
        .context("loading issuers' keys")?,
    );
    let Stores {
        revocations,
        pins,
        proofs,
        follower,
    } = open_revocations(&config, &readiness).await?;
    let sessions = SessionCache::new(config.cache_capacity, config.clock_skew);
    let gate = Arc::new(
        Gate::new(config.policy, ring, sessions, UnixTime::now())
            .with_revocations(Arc::clone(revocations.in_force()))
            .with_verification_budget(config.verification.budget)
            .with_rejection_memory(config.verification.rejections),
    );
    let reloader = Reloader::new(running, Arc::clone(&gate), Arc::clone(&keys))
        .with_metrics(metrics.config.clone())
        .with_check_metrics(metrics.checks.clone());
    metrics.checks.declare_policy(&gate.policy());
    let introspector = config.introspection.map(|settings| {
        Arc::new(HttpIntrospector::new(
            settings,
            tokio::runtime::Handle::current(),
            metrics.introspections.clone(),
        ))
    });
    Ok(Started {
        introspector,
        gate,
        keys,
        readiness,
        reloader,
        revocations,
        pins,
        proofs,
        follower,
        metrics,
    })
}

/// Opens the configured revocation store and loads every live revocation. A corrupt store is
/// an error: starting without revocations an operator was promised would re-admit sessions.
/// With Redis this waits until Redis answers (see [`stores::open`]).
pub async fn open_revocations(config: &Config, readiness: &Readiness) -> anyhow::Result<Stores> {
    let opened = stores::open(
        &config.revocation,
        config.policy.revocation_horizon(),
        config.dpop_replay_entries,
        readiness,
    )
    .await?;
    tracing::info!(
        store = %opened.revocations.describe_store(),
        live = opened.revocations.current().len(),
        "revocations loaded"
    );
    Ok(opened)
}

/// Forgets, every `PRUNE_INTERVAL`, revocations no accepted token can match any more (past
/// both the retention horizon, which policy reloads only widen, and what each entry was
/// promised when recorded: [`crate::revocation::Revocation::forget_after`]), and cached
/// sessions whose token expired (the cache never hands them out, but holds their memory until
/// then).
pub async fn prune_expired(gate: Arc<Gate>, revocations: Arc<Revocations>) {
    let mut every = tokio::time::interval(PRUNE_INTERVAL);
    every.tick().await;
    loop {
        every.tick().await;
        let sessions = gate.sessions().remove_expired(UnixTime::now());
        if sessions > 0 {
            tracing::debug!(sessions, "expired sessions dropped from the cache");
        }
        match revocations.prune(UnixTime::now()).await {
            Ok(0) => {}
            Ok(forgotten) => tracing::info!(forgotten, "expired revocations forgotten"),
            Err(error) => tracing::error!(%error, "pruning revocations failed"),
        }
    }
}

/// The Shared Signals push endpoint, when `ssf` is configured (config validation guarantees an
/// admin listener to serve it); otherwise no routes.
pub async fn ssf_router(
    settings: Option<&SsfSettings>,
    budget: BudgetLimits,
    revocations: &Arc<Revocations>,
) -> anyhow::Result<axum::Router> {
    let Some(settings) = settings else {
        return Ok(axum::Router::new());
    };
    let receiver = SsfReceiver::new(settings, Arc::clone(revocations))
        .await
        .context("starting the Shared Signals receiver")?
        .with_budget(budget);
    tracing::info!(
        path = %settings.push_path,
        transmitters = settings.transmitters.len(),
        "Shared Signals receiver ready"
    );
    Ok(ssf::router(Arc::new(receiver), &settings.push_path))
}

/// Serves the admin API (`state`: the gate, its revocations, the credential) on `listener`, with
/// `ssf_routes` (the Shared Signals push endpoint, when configured), under `limits`, counted
/// into `connections`, until `stop`: the sidecar's admin listener, and the in-process module's.
pub fn spawn_admin(
    listener: TcpListener,
    state: AdminState,
    ssf_routes: axum::Router,
    limits: &LimitSettings,
    connections: ConnectionMetrics,
    stop: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let bounds = http_bounds("admin", limits.max_connections.admin, limits, connections);
    tokio::spawn(admin::serve(listener, state, ssf_routes, bounds, stop))
}

/// The ext_authz listener's connection bounds under `limits`, counted into `metrics`.
pub fn grpc_bounds(limits: &LimitSettings, metrics: ConnectionMetrics) -> ConnectionBounds {
    ConnectionBounds {
        cap: ConnectionCap::new("grpc", limits.max_connections.grpc, metrics),
        handshake_timeout: limits.handshake_timeout,
    }
}

/// The admin or ops (`http`) listener's connection bounds under `limits`.
fn http_bounds(
    listener: &'static str,
    max_connections: usize,
    limits: &LimitSettings,
    metrics: ConnectionMetrics,
) -> HttpBounds {
    HttpBounds {
        cap: ConnectionCap::new(listener, max_connections, metrics),
        handshake_timeout: limits.handshake_timeout,
        body_timeout: limits.body_timeout,
    }
}

/// Serves `service` and, on the same port, the standard `grpc.health.v1.Health` service
/// following `readiness` (for the whole server, `""`, and for the ext_authz service by name),
/// each connection within `bounds` on one of `threads` threads. After `shutdown`, in-flight
/// checks get `grace` to finish.
pub async fn serve_with(
    listener: TcpListener,
    service: CheckServer,
    readiness: Readiness,
    threads: usize,
    grace: Duration,
    bounds: ConnectionBounds,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let address = listener.local_addr().context("reading the bound address")?;
    tracing::info!(listener = "grpc", addr = %address, threads, "listening");
    let stop = StopSignal::new(async move {
        shutdown.await;
        tracing::info!("stop requested; draining in-flight checks");
    });
    // NOT_SERVING at once on stop, and every Watch stream ended, so the drain waits only for
    // in-flight Checks.
    let health_service = GrpcHealth::new(&readiness, &stop).service();
    let server = threads::serve_on_threads(
        listener,
        threads,
        bounds,
        stop.clone(),
        move |connections, stop| {
            tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(Duration::from_secs(30)))
                .add_service(health_service.clone())
                .add_service(service.clone())
                .serve_with_incoming_shutdown(connections, stop.stopped())
        },
    );
    if let Some(result) = shutdown::drain(server, &stop, grace, "grpc").await {
        result?;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The server's ports, bound before anything is loaded (see [`run`] for why).
///
/// The binary binds the configured addresses; tests bind the same configuration with port 0
/// and read back the addresses the kernel chose. Both then call [`run`]: there is no other
/// way to serve, so tests exercise the wiring users run.
#[derive(Debug)]
pub struct Listeners {
    grpc: ReservedPort,
    admin: Option<ReservedPort>,
    ops: TcpListener,
}

impl Listeners {
    /// Binds the ext_authz and admin ports (not yet accepting) and the ops listener (which
    /// serves from start-up). Fails, naming the listener and address, when one is taken.
    pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
        let grpc = ReservedPort::bind("grpc", config.grpc_listen)?;
        let admin = match &config.admin {
            Some(settings) => Some(ReservedPort::bind("admin", settings.listen)?),
            None => None,
        };
        let address = config.ops.http_listen;
        let ops = TcpListener::bind(address)
            .await
            .with_context(|| format!("binding the ops listener to {address}"))?;
        Ok(Listeners { grpc, admin, ops })
    }

    /// Where ext_authz is served.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr()
    }

    /// Where the admin API is served, if configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(ReservedPort::local_addr)
    }

    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub fn ops_addr(&self) -> anyhow::Result<SocketAddr> {
        self.ops
            .local_addr()
            .context("reading the ops listener's address")
    }
}

/// Runs the sidecar for `config` on `listeners` until `shutdown` completes, serving ext_authz connections on
/// `connection_threads` threads (default: [`threads::default_threads`]).
///
/// Start-up order, and why:
/// 1. the ext_authz and admin ports are bound but not listening ([`Listeners::bind`]): a taken
///    port fails at once, and nothing can connect to them yet;
/// 2. the ops listener serves at once: `/healthz` 200 (alive), `/readyz` 503 `loading`,
///    `/metrics` with `sessiongate_ready 0`;
/// 3. keys and every revocation are loaded (with Redis, this waits until Redis answers; a stop
///    requested meanwhile ends the process cleanly);
/// 4. the ext_authz and admin ports start listening, and readiness turns ready.
///
/// So a port that accepts a connection is a port that answers it: a `tcpSocket` probe or an
/// Envoy health check never takes a replica that is still loading for a ready one.
pub async fn run(
    config: Config,
    listeners: Listeners,
    connection_threads: Option<NonZeroUsize>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let Listeners {
        grpc: grpc_port,
        admin: admin_port,
        ops: ops_listener,
    } = listeners;
    let admin = match (&config.admin, admin_port) {
        // Read and checked by the config loader: not read again on the runtime.
        (Some(settings), Some(port)) => Some((port, settings.credential.clone())),
        _ => None,
    };
    let ssf_settings = config.ssf.clone();
    let ssf_budget = config.verification.ssf;
    let ops_settings = config.ops.clone();
    let limits = config.limits.clone();
    let tracing = Tracing::start(&config.telemetry)?;
    let stop = StopSignal::new(shutdown);
    let readiness = Readiness::loading();
    let metrics = Metrics::new();
    let sources = StateSources::new(readiness.clone());
    let connections = metrics.connections.clone();
    let ops_server = OpsServer::spawn(
        ops_listener,
        OpsState {
            registry: Arc::new(metrics.registry(sources.clone())),
            readiness: readiness.clone(),
            stop: stop.clone(),
            config: metrics.config.clone(),
        },
        http_bounds(
            "http",
            limits.max_connections.http,
            &limits,
            connections.clone(),
        ),
    );
    let started = tokio::select! {
        started = start_with(config, readiness.clone(), metrics) => started,
        () = stop.stopped() => {
            tracing::info!("stop requested while loading; exiting");
            ops_server.stop().await;
            return Ok(());
        }
    };
    let started = match started {
        Ok(started) => started,
        Err(error) => {
            ops_server.stop().await;
            return Err(error);
        }
    };
    let ssf_routes = ssf_router(ssf_settings.as_ref(), ssf_budget, &started.revocations).await?;
    let _reloads = started
        .reloader
        .spawn()
        .context("watching the config file and SIGHUP")?;
    sources.loaded(Arc::clone(&started.gate), Arc::clone(&started.revocations));
    let pruning = tokio::spawn(prune_expired(
        Arc::clone(&started.gate),
        Arc::clone(&started.revocations),
    ));
    let listener = grpc_port.listen()?;
    let admin = match admin {
        Some((port, credential)) => Some((port.listen()?, credential)),
        None => None,
    };
    readiness.set_loaded();
    let admin_server = admin.map(|(listener, credential)| {
        let state = AdminState {
            gate: Arc::clone(&started.gate),
            revocations: Arc::clone(&started.revocations),
            credential,
        };
        spawn_admin(
            listener,
            state,
            ssf_routes,
            &limits,
            connections.clone(),
            stop.stopped(),
        )
    });
    let mut service = AuthorizationService::new(started.gate)
        .with_key_refresh(Arc::new(started.keys.refresher()))
        .with_pin_store(Arc::clone(&started.pins))
        .with_proof_replay(Arc::clone(&started.proofs));
    if let Some(introspector) = started.introspector {
        service = service.with_introspector(introspector);
    }
    let service = service.with_tracing(tracing.clone());
    let service = service.with_reporter(CheckReporter::new(
        started.metrics.checks.clone(),
        DecisionLog::new(ops_settings.log_allowed_sample_rate)
            .with_denied_per_second(ops_settings.log_denied_per_second),
    ));
    let served = serve_with(
        listener,
        CheckServer::new(service).with_limits(limits.check_messages()),
        started.readiness,
        connection_threads.map_or_else(threads::default_threads, NonZeroUsize::get),
        ops_settings.shutdown_grace,
        grpc_bounds(&limits, connections),
        stop.stopped(),
    )
    .await;
    pruning.abort();
    if let Some(admin_server) = admin_server {
        match admin_server.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "admin listener failed"),
            Err(error) => tracing::error!(%error, "admin listener task failed"),
        }
    }
    ops_server.stop().await;
    // The last spans (those of the drained checks included) are exported before exit.
    if let Some(tracing) = tracing {
        tracing.shutdown().await;
    }
    served
}

/// Completes on SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this is called,
/// not when the future is first polled: a SIGTERM that arrives between "listening" and the
/// first poll must drain the server, not kill it. Call it inside the runtime.
pub fn stop_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
        let mut interrupt = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
        async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = interrupt.recv() => tracing::info!("SIGINT received"),
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
