//! Where revocations are kept, and the handle that applies them.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::{Revocation, RevocationSet};
use crate::time::UnixTime;

/// A boxed future, so stores can be used as trait objects.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Durable storage of revocations.
///
/// The contract every backend keeps: when [`RevocationStore::append`] returns `Ok`, the
/// revocation survives a crash of this process (and, for a shared backend, reaches the other
/// replicas). Only then is the revocation acknowledged to whoever asked for it.
pub trait RevocationStore: Send + Sync + 'static {
    /// Where the revocations live, for logs ("file state/revocations").
    fn describe(&self) -> String;

    /// Every stored revocation, oldest first. A corrupt store is an error, never a partial
    /// result presented as complete.
    fn load(&self) -> StoreFuture<'_, Vec<Revocation>>;

    /// Stores one revocation durably.
    fn append<'a>(&'a self, revocation: &'a Revocation) -> StoreFuture<'a, ()>;

    /// Rewrites the store to hold only `live` (dropping forgotten entries); optional.
    fn compact<'a>(&'a self, live: &'a [Revocation]) -> StoreFuture<'a, ()> {
        let _ = live;
        Box::pin(async { Ok(()) })
    }
}

/// Why a store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached or refused the write (disk full, Redis down): nothing
    /// was stored.
    #[error("revocation store unavailable: {0}")]
    Unavailable(String),
    /// The write was sent but not confirmed (no reply in time, the connection was lost, or
    /// fewer Redis replicas than required confirmed it): it may still take effect. Reported as
    /// such, never as "not recorded", so nobody takes a revocation for refused that then
    /// applies.
    #[error("revocation store did not confirm the write: {0}")]
    Unconfirmed(String),
    /// Stored data is damaged; the message says where.
    #[error("revocation store is corrupt: {0}")]
    Corrupt(String),
}

/// The live revocations of this process: the current [`RevocationSet`] and the store behind it.
pub struct Revocations {
    current: ArcSwap<RevocationSet>,
    store: Box<dyn RevocationStore>,
    /// Serialises writers so the set and the store agree on order; readers never wait.
    write: tokio::sync::Mutex<()>,
    /// How long after its cut-off an entry can still match a token the age rule accepts.
    horizon: ArcSwap<Duration>,
    /// Revocations recorded through this process, by origin kind (for metrics).
    added: super::AddedByOrigin,
}

impl Revocations {
    /// Loads everything `store` holds. `horizon` is the longest token age any route accepts,
    /// plus clock skew: entries older than that are dropped.
    pub async fn open(
        store: Box<dyn RevocationStore>,
        horizon: Duration,
        now: UnixTime,
    ) -> Result<Revocations, StoreError> {
        let entries = store.load().await?;
        let set = RevocationSet::from_entries(entries, |r| r.issued_before.plus(horizon) >= now);
        Ok(Revocations {
            current: ArcSwap::from_pointee(set),
            store,
            write: tokio::sync::Mutex::new(()),
            horizon: ArcSwap::from_pointee(horizon),
            added: super::AddedByOrigin::default(),
        })
    }

    /// The current set; cheap, lock-free, for the hot path.
    pub fn current(&self) -> arc_swap::Guard<Arc<RevocationSet>> {
        self.current.load()
    }

    /// Stores `revocation` durably, then applies it. When this returns `Ok`, the next request
    /// of every matching session is denied and the revocation survives a crash.
    pub async fn revoke(&self, revocation: Revocation) -> Result<(), StoreError> {
        let _writer = self.write.lock().await;
        self.store.append(&revocation).await?;
        self.added.record(&revocation.origin);
        self.apply(revocation);
        Ok(())
    }

    /// Applies a revocation already stored elsewhere (e.g. fanned out by a shared store). An
    /// entry equal to one already held is ignored, so a shared store's echo of this replica's
    /// own write (or a catch-up that overlaps what was applied) is applied exactly once.
    pub fn apply(&self, revocation: Revocation) {
        self.current.rcu(|set| {
            if set.entries().contains(&revocation) {
                Arc::clone(set)
            } else {
                Arc::new(set.with(revocation.clone()))
            }
        });
    }

    /// How many revocations of `kind` were recorded through this process (not those fanned
    /// out from other replicas, so a fleet's sum counts each once).
    pub fn added(&self, kind: super::OriginKind) -> u64 {
        self.added.get(kind)
    }

    /// Updates the horizon after a policy reload changed the longest accepted token age.
    pub fn set_horizon(&self, horizon: Duration) {
        self.horizon.store(Arc::new(horizon));
    }

    /// Drops entries no live token can match any more, in memory and in the store.
    pub async fn prune(&self, now: UnixTime) -> Result<usize, StoreError> {
        let _writer = self.write.lock().await;
        let horizon = **self.horizon.load();
        let Some(pruned) = self
            .current
            .load()
            .pruned(|r| r.issued_before.plus(horizon) >= now)
        else {
            return Ok(0);
        };
        let dropped = self.current.load().len() - pruned.len();
        self.store.compact(pruned.entries()).await?;
        self.current.store(Arc::new(pruned));
        Ok(dropped)
    }

    /// Where revocations are stored.
    pub fn describe_store(&self) -> String {
        self.store.describe()
    }
}

impl fmt::Debug for Revocations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Revocations")
            .field("store", &self.store.describe())
            .field("live", &self.current.load().len())
            .finish()
    }
}
