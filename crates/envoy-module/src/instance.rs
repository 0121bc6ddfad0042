//! One running sessiongate per config file and Envoy process, shared by every worker thread.
//!
//! Envoy creates a filter config on the main thread, once per listener update, and shares it
//! with all workers; the module keeps one [`Instance`] per config file for the life of the
//! process (the module is never unloaded: `do_not_close: true`), so a listener update reuses the
//! running gate and its session cache instead of starting a second one.
//!
//! The instance owns one background thread (a single-threaded Tokio runtime) for what must wait
//! or run on its own: loading keys and revocations, key refresh, the revocation stores (the file
//! log, or the Redis follower), hot reload of the config file, pruning, and the rare pin claim or
//! key refresh a new session waits for. Requests themselves are judged on Envoy's workers.
//! Until the keys and revocations are loaded every request is denied 503 (fail closed), as the
//! sidecar accepts no connection until then.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use sessiongate::admin::AdminState;
use sessiongate::app;
use sessiongate::config::{self, Config};
use sessiongate::decision_log::DecisionLog;
use sessiongate::envoy::report::CheckReporter;
use sessiongate::fleet::FollowerTask;
use sessiongate::keys::KeyManager;
use sessiongate::logging::{self, LogFormat};
use sessiongate_check::check::{CheckUseCase, WaitFuture, Waited};
use tokio::runtime::Runtime;

use crate::abi::{self, log_level};

/// Every instance of this process, by config file.
static INSTANCES: Mutex<Option<HashMap<PathBuf, Arc<Instance>>>> = Mutex::new(None);

/// A sessiongate running inside this Envoy process.
pub struct Instance {
    /// The config file, for log lines.
    path: PathBuf,
    /// The background thread's runtime.
    runtime: Runtime,
    /// Set once keys and revocations are loaded.
    loaded: OnceLock<Loaded>,
}

/// What a loaded instance judges requests with.
pub struct Loaded {
    /// The check use case, the same as the ext_authz server's.
    pub check: CheckUseCase,
    /// Writes the decision log (decisions are counted in Envoy's stats, see [`crate::stats`]).
    pub reporter: CheckReporter,
    /// Keeps the key refreshers running (they stop when it is dropped).
    _keys: Arc<KeyManager>,
    /// Keeps the Redis follower running, with that backend.
    _follower: Option<FollowerTask>,
}

impl Instance {
    /// The instance for the config file at `path`: the running one, or a new one once the file
    /// is valid. The error is the message `sessiongate check-config` prints for the same file.
    pub fn for_config(path: &str) -> Result<Arc<Instance>, String> {
        let path = PathBuf::from(path);
        let config = config::load(&path).map_err(|error| format!("error: {error}"))?;
        // The decision log and sessiongate's own events, as JSON lines on Envoy's stdout, as the
        // sidecar writes them on its own (the first call installs it; later ones keep it).
        logging::init(LogFormat::Json);
        let mut instances = INSTANCES.lock().unwrap_or_else(PoisonError::into_inner);
        let instances = instances.get_or_insert_with(HashMap::new);
        if let Some(running) = instances.get(&path) {
            return Ok(Arc::clone(running));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sessiongate")
            .enable_all()
            .build()
            .map_err(|error| format!("error: cannot start sessiongate's runtime: {error}"))?;
        let instance = Arc::new(Instance {
            path: path.clone(),
            runtime,
            loaded: OnceLock::new(),
        });
        instance.runtime.spawn(Arc::clone(&instance).load(config));
        instances.insert(path, Arc::clone(&instance));
        Ok(instance)
    }

    /// The check use case, once loaded.
    pub fn loaded(&self) -> Option<&Loaded> {
        self.loaded.get()
    }

    /// Runs `future` (a pin claim, a key refresh or an introspection a request waits for) on the background
    /// thread, then `done` with its result there.
    pub fn spawn_wait(&self, future: WaitFuture, done: impl FnOnce(Waited) + Send + 'static) {
        self.runtime.spawn(async move { done(future.await) });
    }

    /// Runs `task` on the background thread (periodic work that must not occupy a worker).
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.runtime.spawn(task);
    }

    /// Polls `future` once on the calling thread, inside this runtime's context (a Redis pin
    /// claim registers its I/O there): most waits are answered at once (pins kept in this
    /// process), and need no trip to the background thread.
    pub fn try_now(&self, future: &mut WaitFuture) -> Option<Waited> {
        let _inside = self.runtime.enter();
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut context) {
            std::task::Poll::Ready(waited) => Some(waited),
            std::task::Poll::Pending => None,
        }
    }

    /// Loads keys and revocations, starts the background work and publishes the check use case.
    async fn load(self: Arc<Self>, config: Config) {
        let ops = config.ops.clone();
        let admin = config.admin.clone();
        let (ssf, ssf_budget, limits) = (
            config.ssf.clone(),
            config.verification.ssf,
            config.limits.clone(),
        );
        let app::Started {
            gate,
            keys,
            reloader,
            revocations,
            pins,
            proofs,
            follower,
            metrics,
            introspector,
            ..
        } = match app::start(config).await {
            Ok(started) => started,
            Err(error) => {
                abi::log(
                    log_level::ERROR,
                    &format!(
                        "sessiongate {}: cannot start: {error:#}; every request is denied 503",
                        self.path.display()
                    ),
                );
                return;
            }
        };
        if let Err(error) = reloader.spawn_watching_file() {
            abi::log(
                log_level::WARN,
                &format!(
                    "sessiongate {}: hot reload is off: {error}",
                    self.path.display()
                ),
            );
        }
        if let Some(admin) = admin {
            let serving = async {
                let listener = tokio::net::TcpListener::bind(admin.listen).await?;
                let ssf_routes = app::ssf_router(ssf.as_ref(), ssf_budget, &revocations).await?;
                let state = AdminState {
                    gate: Arc::clone(&gate),
                    revocations: Arc::clone(&revocations),
                    credential: admin.credential.clone(),
                };
                app::spawn_admin(
                    listener,
                    state,
                    ssf_routes,
                    &limits,
                    metrics.connections.clone(),
                    std::future::pending(),
                );
                anyhow::Ok(())
            };
            match serving.await {
                Ok(()) => abi::log(
                    log_level::INFO,
                    &format!("sessiongate: admin API on {}", admin.listen),
                ),
                Err(error) => abi::log(
                    log_level::ERROR,
                    &format!(
                        "sessiongate: no admin API on {}: {error:#}; revoke through another \
                         replica of the Redis fleet",
                        admin.listen
                    ),
                ),
            }
        }
        tokio::spawn(app::prune_expired(Arc::clone(&gate), revocations));
        let mut check = CheckUseCase::new(gate)
            .with_key_refresh(Arc::new(keys.refresher()))
            .with_pin_store(pins)
            .with_proof_replay(proofs);
        // Opaque tokens are introspected on this instance's runtime: a check waiting for the
        // answer pauses its request like a pin claim does.
        if let Some(introspector) = introspector {
            check = check.with_introspector(introspector);
        }
        let reporter = CheckReporter::log_only(
            DecisionLog::new(ops.log_allowed_sample_rate)
                .with_denied_per_second(ops.log_denied_per_second),
        );
        let _ = self.loaded.set(Loaded {
            check,
            reporter,
            _keys: keys,
            _follower: follower,
        });
        abi::log(
            log_level::INFO,
            &format!(
                "sessiongate {}: loaded; judging requests",
                self.path.display()
            ),
        );
    }
}

/// The path of an instance, for diagnostics.
impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("path", &self.path)
            .field("loaded", &self.loaded.get().is_some())
            .finish()
    }
}
