//! One background task per issuer keeps its keys current; the [`KeyManager`] starts, replaces
//! and stops those tasks (at start-up and on each config reload); the [`KeyRefresher`] lets a
//! request whose token names an unknown key ask for a prompt, rate-limited refresh.
//!
//! The gate stays synchronous and the decision pure: a refresh only ever *installs* a key set
//! (through [`KeyRing::replace`]) or suspends / resumes an issuer; the ext_authz service then
//! simply runs the check again.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::schedule::{Schedule, UnknownKeyLimiter, UnknownKeyTrigger};
use super::settings::IssuerKeys;
use super::source::{self, Fetched, KeyOrigin};
use crate::health::Readiness;
use crate::keys::KeyFetchError;
use crate::metrics::KeyMetrics;
use crate::watch::FileWatcher;
use sessiongate_token::{CompactJws, KeyRing};

/// Longest a request that met an unknown `kid` waits for the refresh it triggered. Envoy's
/// ext_authz timeout in the shipped configuration is 1 s, and the check itself must still fit
/// after the wait; a refresh that takes longer still completes and serves the next request.
pub const UNKNOWN_KEY_WAIT: Duration = Duration::from_millis(500);

/// An issuer's keys could not be loaded, so a start-up or reload cannot go ahead.
#[derive(Debug, thiserror::Error)]
#[error("{config_key}: cannot load the keys of `{issuer}`: {source}")]
pub struct KeyLoadError {
    /// The issuer.
    pub issuer: Arc<str>,
    /// The config key of its source (`issuers[0].jwks_uri`).
    pub config_key: String,
    /// What went wrong.
    pub source: KeyFetchError,
}

/// What the request path and an issuer's refresh task share.
#[derive(Debug)]
struct IssuerHandle {
    min_interval: Duration,
    /// Wakes the task for an immediate fetch (unknown `kid`, or the JWKS file changed).
    wake: Arc<Notify>,
    /// Number of fetches requested by unknown-`kid` requests so far.
    requested: AtomicU64,
    /// The highest request number whose fetch has completed (successfully or not).
    served: watch::Sender<u64>,
    /// A std `Mutex`: held for a comparison, never across an await.
    limiter: Mutex<UnknownKeyLimiter>,
}

/// A running issuer: its configuration, its task and, for files, the watch on it.
struct Running {
    spec: IssuerKeys,
    handle: Arc<IssuerHandle>,
    task: tokio::task::JoinHandle<()>,
    _watcher: Option<FileWatcher>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Handles = ArcSwap<HashMap<Arc<str>, Arc<IssuerHandle>>>;

/// Starts, replaces and stops the per-issuer refresh tasks.
pub struct KeyManager {
    ring: Arc<KeyRing>,
    readiness: Readiness,
    client: reqwest::Client,
    /// Changed only by start-up and reloads, which are serialised by the reloader; a std
    /// `Mutex` because it is never held across an await.
    running: Mutex<HashMap<Arc<str>, Running>>,
    /// What [`KeyRefresher`] reads on the request path, swapped whole.
    handles: Arc<Handles>,
    /// Counts fetches and staleness per issuer.
    metrics: KeyMetrics,
}

impl KeyManager {
    /// Loads every issuer's keys into `ring` and starts refreshing them. Fails (installing
    /// nothing) if any source cannot be loaded.
    pub async fn start(
        issuers: &[IssuerKeys],
        ring: Arc<KeyRing>,
        readiness: Readiness,
    ) -> Result<KeyManager, KeyLoadError> {
        KeyManager::start_counted(issuers, ring, readiness, KeyMetrics::default()).await
    }

    /// [`KeyManager::start`], counting every fetch and staleness change in `metrics`.
    pub async fn start_counted(
        issuers: &[IssuerKeys],
        ring: Arc<KeyRing>,
        readiness: Readiness,
        metrics: KeyMetrics,
    ) -> Result<KeyManager, KeyLoadError> {
        let manager = KeyManager {
            ring,
            readiness,
            client: source::http_client(),
            running: Mutex::new(HashMap::new()),
            handles: Arc::new(ArcSwap::default()),
            metrics,
        };
        manager.apply(issuers).await?;
        Ok(manager)
    }

    /// The handle the ext_authz service uses on an unknown `kid`.
    pub fn refresher(&self) -> KeyRefresher {
        KeyRefresher {
            handles: Arc::clone(&self.handles),
        }
    }

    /// The key ring the tasks install into.
    pub fn ring(&self) -> &Arc<KeyRing> {
        &self.ring
    }

    /// Brings the running issuers in line with `issuers`: new issuers and issuers whose source
    /// or bounds changed are loaded first, and only if all of them load are their keys
    /// installed and their tasks (re)started; issuers no longer listed are stopped and
    /// forgotten. Unchanged issuers keep their keys and their tasks untouched.
    ///
    /// Call it *before* installing a policy that names new issuers, so no request sees an
    /// issuer without keys.
    pub async fn apply(&self, issuers: &[IssuerKeys]) -> Result<(), KeyLoadError> {
        let changed: Vec<&IssuerKeys> = {
            let running = self.running.lock().expect("key manager lock");
            issuers
                .iter()
                .filter(|spec| {
                    running.get(&spec.issuer).is_none_or(|current| {
                        current.spec.source != spec.source || current.spec.refresh != spec.refresh
                    })
                })
                .collect()
        };
        let mut loaded = Vec::with_capacity(changed.len());
        for spec in changed {
            let fetched = source::fetch(&spec.source, &self.client)
                .await
                .inspect_err(|_| self.metrics.refresh_failed(&spec.issuer))
                .map_err(|source| KeyLoadError {
                    issuer: Arc::clone(&spec.issuer),
                    config_key: spec.config_key.clone(),
                    source,
                })?;
            loaded.push((spec, fetched));
        }
        let mut running = self.running.lock().expect("key manager lock");
        for (spec, fetched) in loaded {
            tracing::info!(
                issuer = %spec.issuer,
                source = %spec.source.describe(),
                keys = fetched.jwks.keys.len(),
                "keys loaded"
            );
            for skipped in &fetched.jwks.skipped {
                tracing::warn!(issuer = %spec.issuer, "skipping {skipped}");
            }
            let max_age = fetched.max_age;
            // Stop the old task first, so it cannot install its source's keys over these.
            drop(running.remove(&spec.issuer));
            self.ring.replace(&spec.issuer, fetched.jwks.keys);
            self.ring.resume(&spec.issuer);
            self.readiness.set_issuer_fresh(&spec.issuer, true);
            self.metrics.refreshed(&spec.issuer);
            self.metrics.set_stale(&spec.issuer, false);
            let started = self.spawn(spec.clone(), max_age);
            running.insert(Arc::clone(&spec.issuer), started);
        }
        let removed: Vec<Arc<str>> = running
            .keys()
            .filter(|issuer| !issuers.iter().any(|spec| spec.issuer == **issuer))
            .cloned()
            .collect();
        for issuer in removed {
            running.remove(&issuer);
            self.ring.remove(&issuer);
            self.readiness.forget_issuer(&issuer);
            self.metrics.forget(&issuer);
            tracing::info!(issuer = %issuer, "issuer removed; its keys are no longer refreshed");
        }
        self.handles.store(Arc::new(
            running
                .iter()
                .map(|(issuer, run)| (Arc::clone(issuer), Arc::clone(&run.handle)))
                .collect(),
        ));
        Ok(())
    }

    fn spawn(&self, spec: IssuerKeys, max_age: Option<Duration>) -> Running {
        let handle = Arc::new(IssuerHandle {
            min_interval: spec.refresh.min_interval,
            wake: Arc::new(Notify::new()),
            requested: AtomicU64::new(0),
            served: watch::channel(0).0,
            limiter: Mutex::new(UnknownKeyLimiter::default()),
        });
        let watcher = match &spec.source {
            KeyOrigin::File(path) => match FileWatcher::new(path, Arc::clone(&handle.wake)) {
                Ok(watcher) => Some(watcher),
                Err(error) => {
                    // Still refreshed every max_interval; only the prompt reaction is lost.
                    tracing::warn!(issuer = %spec.issuer, file = %path.display(), %error, "cannot watch the JWKS file; it is re-read every max_interval only");
                    None
                }
            },
            _ => None,
        };
        let task = RefreshTask {
            schedule: Schedule::new(spec.refresh, Instant::now(), max_age),
            issuer: Arc::clone(&spec.issuer),
            origin: spec.source.clone(),
            handle: Arc::clone(&handle),
            ring: Arc::clone(&self.ring),
            readiness: self.readiness.clone(),
            client: self.client.clone(),
            metrics: self.metrics.clone(),
        };
        Running {
            spec,
            handle,
            task: tokio::spawn(task.run()),
            _watcher: watcher,
        }
    }
}

impl std::fmt::Debug for KeyManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyManager")
            .field("ring", &self.ring)
            .finish_non_exhaustive()
    }
}

/// One issuer's refresh loop.
struct RefreshTask {
    schedule: Schedule,
    issuer: Arc<str>,
    origin: KeyOrigin,
    handle: Arc<IssuerHandle>,
    ring: Arc<KeyRing>,
    readiness: Readiness,
    client: reqwest::Client,
    metrics: KeyMetrics,
}

impl RefreshTask {
    async fn run(mut self) {
        loop {
            let forced = tokio::select! {
                _ = tokio::time::sleep_until(self.schedule.wake_at()) => false,
                _ = self.handle.wake.notified() => true,
            };
            let now = Instant::now();
            if self.schedule.newly_stale(now) {
                self.ring.suspend(&self.issuer);
                self.readiness.set_issuer_fresh(&self.issuer, false);
                self.metrics.set_stale(&self.issuer, true);
                tracing::error!(
                    issuer = %self.issuer,
                    source = %self.origin.describe(),
                    "keys are older than max_stale; denying the issuer's tokens until a refresh succeeds"
                );
            }
            if !forced && !self.schedule.fetch_due(now) {
                continue;
            }
            // Requests counted up to here are served by this fetch, which starts after them.
            let serving = self.handle.requested.load(Ordering::Acquire);
            let result = source::fetch(&self.origin, &self.client).await;
            self.settle(result);
            self.handle.served.send_if_modified(|served| {
                let advanced = serving > *served;
                *served = (*served).max(serving);
                advanced
            });
        }
    }

    fn settle(&mut self, result: Result<Fetched, KeyFetchError>) {
        let now = Instant::now();
        match result {
            Ok(fetched) => {
                let was_stale = self.schedule.is_stale(now);
                self.schedule.succeeded(now, fetched.max_age);
                self.metrics.refreshed(&self.issuer);
                let before: BTreeSet<Arc<str>> = self
                    .ring
                    .keys_of(&self.issuer)
                    .map(|set| set.ids().cloned().collect())
                    .unwrap_or_default();
                let after: BTreeSet<Arc<str>> = fetched.jwks.keys.ids().cloned().collect();
                self.ring.replace(&self.issuer, fetched.jwks.keys);
                if before != after {
                    let added: Vec<&str> = after.difference(&before).map(|k| &**k).collect();
                    let removed: Vec<&str> = before.difference(&after).map(|k| &**k).collect();
                    tracing::info!(
                        issuer = %self.issuer,
                        added = ?added,
                        removed = ?removed,
                        "keys changed"
                    );
                    for skipped in &fetched.jwks.skipped {
                        tracing::warn!(issuer = %self.issuer, "skipping {skipped}");
                    }
                } else {
                    tracing::debug!(issuer = %self.issuer, "keys refreshed, unchanged");
                }
                if was_stale {
                    self.ring.resume(&self.issuer);
                    self.readiness.set_issuer_fresh(&self.issuer, true);
                    self.metrics.set_stale(&self.issuer, false);
                    tracing::info!(issuer = %self.issuer, "keys fresh again; the issuer's tokens are judged again");
                }
            }
            Err(error) => {
                self.schedule.failed(now);
                self.metrics.refresh_failed(&self.issuer);
                let stale_in = self.schedule.stale_at().saturating_duration_since(now);
                tracing::warn!(
                    issuer = %self.issuer,
                    %error,
                    stale_in = ?stale_in,
                    "key refresh failed; keeping the last good keys"
                );
            }
        }
    }
}

/// Lets the ext_authz service ask for a prompt refresh when a token names a key its issuer's
/// current set lacks (the issuer may have rotated since the last refresh). Cheap to clone.
#[derive(Clone, Default)]
pub struct KeyRefresher {
    handles: Arc<Handles>,
}

/// The check use case's unknown-key retry, served by this process's refreshers.
impl sessiongate_check::check::KeyRefresh for KeyRefresher {
    fn refresh_for_unknown_key<'a>(
        &'a self,
        token: &'a str,
    ) -> sessiongate_check::check::RefreshFuture<'a> {
        Box::pin(KeyRefresher::refresh_for_unknown_key(self, token))
    }
}

impl KeyRefresher {
    /// For a token whose `kid` is not in its issuer's set: triggers (or joins) a refresh of that
    /// issuer's keys, at most one per `min_interval`, and waits up to [`UNKNOWN_KEY_WAIT`] for
    /// it. Returns true when a refresh completed, i.e. the check is worth running again.
    ///
    /// The issuer is read from the token's claims *unverified*: it only picks which configured
    /// issuer to refresh, unknown issuers are ignored, and the rate limit bounds what a forged
    /// token can cause.
    pub async fn refresh_for_unknown_key(&self, token: &str) -> bool {
        let Some(issuer) = unverified_issuer(token) else {
            return false;
        };
        let Some(handle) = self.handles.load().get(issuer.as_str()).cloned() else {
            return false;
        };
        let trigger = handle.limiter.lock().expect("limiter lock").admit(
            Instant::now(),
            handle.min_interval,
            UNKNOWN_KEY_WAIT,
        );
        let target = match trigger {
            UnknownKeyTrigger::Refused => return false,
            UnknownKeyTrigger::Join => handle.requested.load(Ordering::Acquire),
            UnknownKeyTrigger::Start => {
                let target = handle.requested.fetch_add(1, Ordering::AcqRel) + 1;
                tracing::info!(issuer = %issuer, "token names an unknown key; refreshing the issuer's keys");
                handle.wake.notify_one();
                target
            }
        };
        let mut served = handle.served.subscribe();
        tokio::time::timeout(
            UNKNOWN_KEY_WAIT,
            served.wait_for(|served| *served >= target),
        )
        .await
        .is_ok_and(|waited| waited.is_ok())
    }
}

impl std::fmt::Debug for KeyRefresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRefresher").finish_non_exhaustive()
    }
}

/// The `iss` claim of a token, without verifying anything.
fn unverified_issuer(token: &str) -> Option<String> {
    match CompactJws::split(token)
        .ok()?
        .claims()
        .ok()?
        .remove("iss")?
    {
        serde_json::Value::String(issuer) => Some(issuer),
        _ => None,
    }
}
