//! Hot reload: the config file is watched (Kubernetes ConfigMap symlink swaps included, see
//! [`crate::watch`]) and re-read on SIGHUP; a valid new config replaces the running policy for
//! the next request, cached sessions included.
//!
//! What must stay true:
//! - **All or nothing.** An invalid file is rejected with one error line naming file, key and
//!   problem; the running policy stays. So does it when a new issuer's keys cannot be loaded.
//! - **Keys first.** New and changed issuers' keys are loaded before the policy that names them
//!   is installed ([`KeyManager::apply`]), so no request meets an issuer without keys.
//! - **No request dropped.** The policy is swapped with one atomic store; a request in flight
//!   finishes with the policy it loaded, the next one sees the new policy.
//! - Settings bound at start-up (listeners, admin, revocation backend, cache size, SSF) are
//!   not applied live: a change to them is logged as "restart required" and otherwise ignored.

use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::config::{self, Config, ConfigError};
use crate::keys::KeyManager;
use crate::metrics::{CheckMetrics, ConfigMetrics};
use crate::watch::FileWatcher;
use sessiongate_check::gate::Gate;

/// The SIGHUP stream a server reloads on.
#[cfg(unix)]
type Hangup = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangup = std::convert::Infallible;

/// Why a reload was attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The file (or its ConfigMap symlink) changed; an unchanged content is ignored.
    FileChanged,
    /// SIGHUP: reload even if the content looks unchanged (e.g. to retry a failed key load).
    Signal,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::FileChanged => "file changed",
            Trigger::Signal => "SIGHUP",
        }
    }
}

/// What one reload attempt did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// The new policy is running; this is its generation (the start-up config is 0).
    Applied(u64),
    /// The file's content did not change since the last attempt.
    Unchanged,
    /// The new config was refused; the running policy stays.
    Rejected,
}

/// The settings a process binds at start-up (rendered for comparison), and its config file.
#[derive(Debug, Clone)]
pub struct RunningSettings {
    file: PathBuf,
    restart_only: RestartOnly,
}

impl RunningSettings {
    /// What `config` binds at start-up.
    pub fn of(config: &Config) -> RunningSettings {
        RunningSettings {
            file: config.file.clone(),
            restart_only: restart_only(config),
        }
    }
}

/// Settings bound at start-up, rendered for comparison.
type RestartOnly = [(&'static str, String); 11];

fn restart_only(config: &Config) -> RestartOnly {
    [
        ("listen.grpc", config.grpc_listen.to_string()),
        ("listen.http", config.ops.http_listen.to_string()),
        ("shutdown_grace", format!("{:?}", config.ops.shutdown_grace)),
        (
            "telemetry.log_allowed_sample_rate/log_denied_per_second",
            format!(
                "{} {}",
                config.ops.log_allowed_sample_rate, config.ops.log_denied_per_second
            ),
        ),
        ("session.cache_capacity", config.cache_capacity.to_string()),
        ("admin", format!("{:?}", config.admin)),
        ("revocation", format!("{:?}", config.revocation)),
        ("ssf", format!("{:?}", config.ssf)),
        // The introspection client is built once, at start (its answer rules reload with the
        // policy). The secret or key prints as a SHA-256 prefix only, which still tells a
        // changed one apart.
        (
            "issuers[].introspection",
            format!("{:?}", config.introspection),
        ),
        // The trace exporter is built once, at start.
        (
            "telemetry.otlp_endpoint/service_name",
            format!("{:?}", config.telemetry),
        ),
        // Listeners, their connections and the verification budgets are set up once, at start.
        (
            "limits",
            format!("{:?} {:?}", config.limits, config.verification),
        ),
    ]
}

/// Applies new versions of the config file to a running gate.
pub struct Reloader {
    file: PathBuf,
    gate: Arc<Gate>,
    keys: Arc<KeyManager>,
    /// The start-up values of [`restart_only`] settings: those the process actually runs with.
    running: RestartOnly,
    generation: u64,
    /// SHA-256 of the content last attempted, so a burst of directory events (or a write that
    /// changed nothing) does not re-apply or re-reject the same file.
    last_seen: Option<[u8; 32]>,
    /// Counts applied and rejected reloads; holds the running generation for `/readyz`.
    metrics: ConfigMetrics,
    /// Where a reloaded policy's routes are declared at 0 (see [`CheckMetrics::declare_policy`]),
    /// so a route added by a reload is as visible to alerts as one present at start-up.
    checks: Option<CheckMetrics>,
}

impl Reloader {
    /// A reloader for a process started with `running` (generation 0).
    pub fn new(running: RunningSettings, gate: Arc<Gate>, keys: Arc<KeyManager>) -> Reloader {
        Reloader {
            last_seen: crate::files::read_bounded(&running.file, config::MAX_CONFIG_BYTES)
                .ok()
                .map(|bytes| digest(&bytes)),
            file: running.file,
            gate,
            keys,
            running: running.restart_only,
            generation: 0,
            metrics: ConfigMetrics::default(),
            checks: None,
        }
    }

    /// Counts reloads in `metrics`.
    pub fn with_metrics(mut self, metrics: ConfigMetrics) -> Reloader {
        self.metrics = metrics;
        self
    }

    /// Declares every applied policy's routes in `checks`.
    pub fn with_check_metrics(mut self, checks: CheckMetrics) -> Reloader {
        self.checks = Some(checks);
        self
    }

    /// Watches the file and listens for SIGHUP, reloading on either, until the runtime stops.
    /// The SIGHUP handler is installed before this returns, so a SIGHUP sent once the server
    /// reports `listening` never takes the default action (terminating the process).
    pub fn spawn(self) -> std::io::Result<tokio::task::JoinHandle<()>> {
        #[cfg(unix)]
        let hangup = Some(tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::hangup(),
        )?);
        #[cfg(not(unix))]
        let hangup = None;
        self.spawn_with(hangup)
    }

    /// Watches the file only, reloading when it changes: for a gate running inside another
    /// process (Envoy, in-process), whose signals are not sessiongate's to take.
    pub fn spawn_watching_file(self) -> std::io::Result<tokio::task::JoinHandle<()>> {
        self.spawn_with(None)
    }

    /// Reloads whenever the file changes or, with `hangup`, on SIGHUP.
    fn spawn_with(
        self,
        mut hangup: Option<Hangup>,
    ) -> std::io::Result<tokio::task::JoinHandle<()>> {
        let changed = Arc::new(Notify::new());
        let watcher = FileWatcher::new(&self.file, Arc::clone(&changed))
            .map_err(|error| std::io::Error::other(error.to_string()))?;
        let mut reloader = self;
        Ok(tokio::spawn(async move {
            let _watcher = watcher;
            loop {
                let signalled = async {
                    match hangup.as_mut() {
                        #[cfg(unix)]
                        Some(hangup) => {
                            hangup.recv().await;
                        }
                        _ => std::future::pending::<()>().await,
                    }
                };
                let trigger = tokio::select! {
                    _ = changed.notified() => Trigger::FileChanged,
                    () = signalled => Trigger::Signal,
                };
                reloader.reload(trigger).await;
            }
        }))
    }

    /// Reads the file and, if it is valid and its keys load, installs it.
    pub async fn reload(&mut self, trigger: Trigger) -> Reloaded {
        let file = self.file.clone();
        let read = file.clone();
        let content = tokio::task::spawn_blocking(move || {
            crate::files::read_bounded(&read, config::MAX_CONFIG_BYTES)
        })
        .await
        .ok()
        .and_then(Result::ok)
        .map(|bytes| digest(&bytes));
        if trigger == Trigger::FileChanged && content.is_some() && content == self.last_seen {
            return Reloaded::Unchanged;
        }
        self.last_seen = content;
        let loaded = tokio::task::spawn_blocking(move || config::load(&file))
            .await
            .unwrap_or_else(|panic| {
                Err(ConfigError::Unreadable {
                    file: self.file.clone(),
                    message: format!("loading panicked: {panic}"),
                })
            });
        let config = match loaded {
            Ok(config) => config,
            Err(error) => {
                self.rejected(&error);
                return Reloaded::Rejected;
            }
        };
        for ((key, running), (_, wanted)) in self.running.iter().zip(restart_only(&config)) {
            if *running != wanted {
                tracing::warn!(
                    file = %self.file.display(),
                    key,
                    "restart required: {key} changed; the running value stays until restart"
                );
            }
        }
        if let Err(error) = self.keys.apply(&config.keys).await {
            tracing::error!(
                file = %self.file.display(),
                key = %error.config_key,
                problem = %error.source,
                trigger = trigger.as_str(),
                error = %error,
                "config rejected; the running policy stays"
            );
            self.metrics.rejected();
            return Reloaded::Rejected;
        }
        if let Some(checks) = &self.checks {
            checks.declare_policy(&config.policy);
        }
        self.gate.replace_policy(config.policy);
        self.generation += 1;
        self.metrics.applied(self.generation);
        tracing::info!(
            generation = self.generation,
            trigger = trigger.as_str(),
            file = %self.file.display(),
            "config reloaded"
        );
        Reloaded::Applied(self.generation)
    }

    fn rejected(&self, error: &ConfigError) {
        self.metrics.rejected();
        let (key, problem) = match error {
            ConfigError::Invalid { key, problem, .. } => (key.as_str(), problem.as_str()),
            ConfigError::Unreadable { message, .. } => ("(file)", message.as_str()),
        };
        tracing::error!(
            file = %self.file.display(),
            key,
            problem,
            error = %error,
            "config rejected; the running policy stays"
        );
    }
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("file", &self.file)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}
