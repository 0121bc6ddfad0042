//! Readiness: whether this sidecar can judge requests right now.
//!
//! Ready means every configured issuer has keys fresh enough to trust (see
//! [`crate::keys`]'s `max_stale`).
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
    /// Issuers whose keys are past `max_stale` (or never loaded). A std `Mutex`: held for a set
    /// insert, never across an await.
    unready: Mutex<HashSet<Arc<str>>>,
    /// `true` while ready; watchers (the gRPC health service) follow it.
    ready: watch::Sender<bool>,
    /// `true` while the shared revocation store is reachable and this replica has caught up
    /// with it (always `true` for the embedded store).
    store: watch::Sender<bool>,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness::new()
    }
}

impl Readiness {
    /// Ready, with no issuer known yet.
    pub fn new() -> Readiness {
        Readiness {
            inner: Arc::new(Inner {
                unready: Mutex::new(HashSet::new()),
                ready: watch::channel(true).0,
                store: watch::channel(true).0,
            }),
        }
    }

    /// Records whether `issuer`'s keys are fresh enough to trust.
    pub fn set_issuer_fresh(&self, issuer: &str, fresh: bool) {
        self.update(|unready| {
            if fresh {
                unready.remove(issuer);
            } else {
                unready.insert(Arc::from(issuer));
            }
        });
    }

    /// Stops tracking `issuer` (removed from the configuration).
    pub fn forget_issuer(&self, issuer: &str) {
        self.update(|unready| {
            unready.remove(issuer);
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
        let unready = self.inner.unready.lock().expect("readiness lock");
        let mut issuers: Vec<Arc<str>> = unready.iter().cloned().collect();
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

    fn update(&self, change: impl FnOnce(&mut HashSet<Arc<str>>)) {
        let mut unready = self.inner.unready.lock().expect("readiness lock");
        change(&mut unready);
        let ready = unready.is_empty();
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
    fn a_removed_issuer_no_longer_counts() {
        let readiness = Readiness::new();
        readiness.set_issuer_fresh("gone", false);
        readiness.forget_issuer("gone");
        assert!(readiness.is_ready());
    }
}
