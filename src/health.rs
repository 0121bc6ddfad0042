//! Readiness: whether this sidecar can judge requests right now.
//!
//! Ready means the state the rules need is loaded (every issuer's keys, every revocation) and
//! every configured issuer has keys fresh enough to trust (see [`crate::keys`]'s `max_stale`).
//! A serving process starts [`Readiness::loading`]: until [`Readiness::set_loaded`], `/readyz`
//! says 503 `loading` while `/healthz` already answers (waiting for Redis is not a wedge).
//!
//! The link to a shared revocation store (Redis) is reported apart, as its own component
//! ([`Readiness::set_store_reachable`]): while Redis is down a replica still enforces every
//! revocation it knows and keeps judging requests, so it must stay in rotation; taking every
//! replica of a fleet out at once because their shared Redis failed would turn a degraded
//! admin API into a mesh-wide outage. The running configuration is always valid (an invalid
//! reload is refused and the old one keeps running), so it does not appear here. The state is
//! kept apart from any protocol: the gRPC health service follows it today, and an HTTP `/readyz`
//! can follow the same [`Readiness::subscribe`] later.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// Shared readiness state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Readiness {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// What holds readiness back. A std `Mutex`: held for a set insert, never across an await.
    components: Mutex<Components>,
    /// `true` while ready; watchers (the gRPC health service) follow it.
    ready: watch::Sender<bool>,
    /// `true` while the shared revocation store is reachable and this replica has caught up
    /// with it (always `true` for the embedded store).
    store: watch::Sender<bool>,
}

/// What readiness is made of.
#[derive(Debug, Default)]
struct Components {
    /// Issuers whose keys are past `max_stale` (or never loaded).
    unready: HashSet<Arc<str>>,
    /// The state (keys, revocations) is still being loaded at start-up.
    loading: bool,
}

impl Components {
    fn ready(&self) -> bool {
        !self.loading && self.unready.is_empty()
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness::new()
    }
}

impl Readiness {
    /// Ready, with no issuer known yet: for a gate whose state is already loaded.
    pub fn new() -> Readiness {
        Readiness::with(Components::default())
    }

    /// Not ready until [`Readiness::set_loaded`]: what a serving process starts with, so that
    /// `/readyz` says "loading" while keys and revocations are loaded (Redis may be down).
    pub fn loading() -> Readiness {
        Readiness::with(Components {
            loading: true,
            ..Components::default()
        })
    }

    fn with(components: Components) -> Readiness {
        let ready = components.ready();
        Readiness {
            inner: Arc::new(Inner {
                components: Mutex::new(components),
                ready: watch::channel(ready).0,
                store: watch::channel(true).0,
            }),
        }
    }

    /// The state is loaded: from now on readiness follows the issuers' keys alone.
    pub fn set_loaded(&self) {
        self.update(|components| components.loading = false);
    }

    /// Whether the state is still being loaded at start-up.
    pub fn is_loading(&self) -> bool {
        self.inner
            .components
            .lock()
            .expect("readiness lock")
            .loading
    }

    /// Records whether `issuer`'s keys are fresh enough to trust.
    pub fn set_issuer_fresh(&self, issuer: &str, fresh: bool) {
        self.update(|components| {
            if fresh {
                components.unready.remove(issuer);
            } else {
                components.unready.insert(Arc::from(issuer));
            }
        });
    }

    /// Stops tracking `issuer` (removed from the configuration).
    pub fn forget_issuer(&self, issuer: &str) {
        self.update(|components| {
            components.unready.remove(issuer);
        });
    }

    /// Records whether the shared revocation store is reachable and caught up with.
    pub fn set_store_reachable(&self, reachable: bool) {
        self.inner.store.send_if_modified(|current| {
            let changed = *current != reachable;
            *current = reachable;
            changed
        });
    }

    /// Whether the shared revocation store is reachable and caught up with now.
    pub fn is_store_reachable(&self) -> bool {
        *self.inner.store.borrow()
    }

    /// Follows the revocation store's reachability.
    pub fn subscribe_store(&self) -> watch::Receiver<bool> {
        self.inner.store.subscribe()
    }

    /// The issuers whose keys are past `max_stale` (or never loaded), sorted: what `/readyz`
    /// names when not ready.
    pub fn unready_issuers(&self) -> Vec<Arc<str>> {
        let components = self.inner.components.lock().expect("readiness lock");
        let mut issuers: Vec<Arc<str>> = components.unready.iter().cloned().collect();
        issuers.sort();
        issuers
    }

    /// Whether the sidecar is ready now.
    pub fn is_ready(&self) -> bool {
        *self.inner.ready.borrow()
    }

    /// Follows readiness changes.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.inner.ready.subscribe()
    }

    fn update(&self, change: impl FnOnce(&mut Components)) {
        let mut components = self.inner.components.lock().expect("readiness lock");
        change(&mut components);
        let ready = components.ready();
        self.inner.ready.send_if_modified(|current| {
            let changed = *current != ready;
            *current = ready;
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_while_every_issuer_is_fresh() {
        let readiness = Readiness::new();
        let mut changes = readiness.subscribe();
        assert!(readiness.is_ready());
        readiness.set_issuer_fresh("a", true);
        readiness.set_issuer_fresh("b", false);
        assert!(!readiness.is_ready());
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        readiness.set_issuer_fresh("a", true);
        assert!(!changes.has_changed().unwrap(), "no change, no wake-up");
        readiness.set_issuer_fresh("b", true);
        assert!(readiness.is_ready());
    }

    #[test]
    fn the_revocation_store_link_is_a_component_of_its_own() {
        let readiness = Readiness::new();
        let store = readiness.subscribe_store();
        readiness.set_store_reachable(false);
        assert!(
            readiness.is_ready(),
            "an unreachable store never takes the replica out"
        );
        assert!(!readiness.is_store_reachable());
        assert!(store.has_changed().unwrap());
        readiness.set_store_reachable(true);
        assert!(readiness.is_store_reachable());
    }

    #[test]
    fn a_loading_process_is_not_ready_until_its_state_is_loaded() {
        let readiness = Readiness::loading();
        let changes = readiness.subscribe();
        readiness.set_issuer_fresh("a", true);
        assert!(!readiness.is_ready() && readiness.is_loading());
        readiness.set_loaded();
        assert!(readiness.is_ready() && !readiness.is_loading());
        assert!(changes.has_changed().unwrap());
    }

    #[test]
    fn a_removed_issuer_no_longer_counts() {
        let readiness = Readiness::new();
        readiness.set_issuer_fresh("gone", false);
        readiness.forget_issuer("gone");
        assert!(readiness.is_ready());
    }
}
