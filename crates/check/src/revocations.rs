//! The revocations in force in this process, as every check reads them.
//!
//! One [`RevocationSet`] (immutable, swapped whole when an entry is added or pruned) and the
//! retention horizon. Stores outside this crate (the server's file log, the Redis fleet's
//! follower) keep it current; the gate only reads it, lock-free, on every request.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use sessiongate_core::revocation::{Revocation, RevocationSet};

/// The current revocation set and how long entries are kept after their cut-off.
pub struct RevocationsInForce {
    current: ArcSwap<RevocationSet>,
    /// The retention horizon, in milliseconds: the widest of every policy horizon this process
    /// applied and of the horizons the loaded entries were recorded under. It only grows (see
    /// [`RevocationsInForce::widen_horizon`]).
    horizon_ms: AtomicU64,
}

impl RevocationsInForce {
    /// `set` in force, kept for `horizon` after each entry's cut-off (at least).
    pub fn new(set: RevocationSet, horizon: Duration) -> RevocationsInForce {
        RevocationsInForce {
            current: ArcSwap::from_pointee(set),
            horizon_ms: AtomicU64::new(millis(horizon)),
        }
    }

    /// The current set; cheap, lock-free, for the hot path.
    pub fn current(&self) -> arc_swap::Guard<Arc<RevocationSet>> {
        self.current.load()
    }

    /// Applies a revocation already stored. An entry equal to one already held is ignored, so
    /// a shared store's echo of this replica's own write (or a catch-up that overlaps what was
    /// applied) is applied exactly once.
    pub fn apply(&self, revocation: Revocation) {
        self.current.rcu(|set| {
            if set.entries().contains(&revocation) {
                Arc::clone(set)
            } else {
                Arc::new(set.with(revocation.clone()))
            }
        });
    }

    /// Puts `set` in force in place of the current one (after a prune). The caller serialises
    /// writers, so no entry applied meanwhile is lost.
    pub fn replace(&self, set: RevocationSet) {
        self.current.store(Arc::new(set));
    }

    /// Takes a policy's horizon into account after a reload changed the longest accepted token
    /// age. The retention horizon only grows: a policy that widens extends every held entry;
    /// one that narrows shortens nothing, because it may widen again before the tokens the
    /// entries match have expired (narrow for a moment, prune, widen: without this, a revoked,
    /// unexpired token would be admitted again).
    pub fn widen_horizon(&self, horizon: Duration) {
        self.horizon_ms
            .fetch_max(millis(horizon), Ordering::Relaxed);
    }

    /// How long after its cut-off an entry is kept now (see
    /// [`RevocationsInForce::widen_horizon`]).
    pub fn horizon(&self) -> Duration {
        Duration::from_millis(self.horizon_ms.load(Ordering::Relaxed))
    }
}

/// `duration` in whole milliseconds, saturating (a horizon is at most days).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl fmt::Debug for RevocationsInForce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationsInForce")
            .field("live", &self.current.load().len())
            .field("horizon", &self.horizon())
            .finish()
    }
}
