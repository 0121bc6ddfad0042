//! Where revocations are kept, and the handle that applies them.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sessiongate_check::revocations::RevocationsInForce;

use super::{Revocation, RevocationSet};
use sessiongate_core::time::UnixTime;

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

/// The live revocations of this process: the set in force (which checks read) and the store
/// behind it.
pub struct Revocations {
    in_force: Arc<RevocationsInForce>,
    store: Box<dyn RevocationStore>,
    /// Serialises writers so the set and the store agree on order; readers never wait.
    write: tokio::sync::Mutex<()>,
    /// Revocations recorded through this process, by origin kind (for metrics).
    added: super::AddedByOrigin,
}

impl Revocations {
    /// Loads everything `store` holds. `horizon` is the longest token age any route accepts,
    /// plus clock skew; an entry is dropped only once past both that horizon and the moment
    /// promised when it was recorded ([`Revocation::forget_after`]), so a restart under a
    /// narrower policy forgets nothing early.
    ///
    /// The retention horizon starts as the widest of `horizon` and of those the kept entries
    /// were recorded under: a policy widened before the restart keeps counting for every entry,
    /// as long as one recorded under it is held.
    pub async fn open(
        store: Box<dyn RevocationStore>,
        horizon: Duration,
        now: UnixTime,
    ) -> Result<Revocations, StoreError> {
        let entries = store.load().await?;
        let recorded_under = entries
            .iter()
            .filter_map(|r| {
                r.retain_until
                    .filter(|&until| now <= until)
                    .map(|until| until.since(r.issued_before))
            })
            .max()
            .unwrap_or_default();
        let horizon = horizon.max(recorded_under);
        let set = RevocationSet::from_entries(entries, |r| r.is_kept(horizon, now));
        Ok(Revocations {
            in_force: Arc::new(RevocationsInForce::new(set, horizon)),
            store,
            write: tokio::sync::Mutex::new(()),
            added: super::AddedByOrigin::default(),
        })
    }

    /// The set in force, shared with the gate that judges by it.
    pub fn in_force(&self) -> &Arc<RevocationsInForce> {
        &self.in_force
    }

    /// The current set; cheap, lock-free, for the hot path.
    pub fn current(&self) -> arc_swap::Guard<Arc<RevocationSet>> {
        self.in_force.current()
    }

    /// Stores `revocation` durably, then applies it, and returns the entry as stored. When this
    /// returns `Ok`, the next request of every matching session is denied and the revocation
    /// survives a crash.
    ///
    /// The stored entry carries its retention ([`Revocation::retain_until`]): the cut-off plus
    /// the retention horizon now, so what the caller is told (`forget_after`) holds whatever
    /// the policy does later.
    pub async fn revoke(&self, mut revocation: Revocation) -> Result<Revocation, StoreError> {
        let promised = revocation.forget_after(self.horizon());
        revocation.retain_until = Some(promised);
        let _writer = self.write.lock().await;
        self.store.append(&revocation).await?;
        self.added.record(&revocation.origin);
        self.apply(revocation.clone());
        Ok(revocation)
    }

    /// Applies a revocation already stored elsewhere (e.g. fanned out by a shared store). An
    /// entry equal to one already held is ignored, so a shared store's echo of this replica's
    /// own write (or a catch-up that overlaps what was applied) is applied exactly once.
    pub fn apply(&self, revocation: Revocation) {
        self.in_force.apply(revocation);
    }

    /// How many revocations of `kind` were recorded through this process (not those fanned
    /// out from other replicas, so a fleet's sum counts each once).
    pub fn added(&self, kind: super::OriginKind) -> u64 {
        self.added.get(kind)
    }

    /// Widens the retention horizon (see [`RevocationsInForce::widen_horizon`]).
    pub fn widen_horizon(&self, horizon: Duration) {
        self.in_force.widen_horizon(horizon);
    }

    /// How long after its cut-off an entry is kept now (see
    /// [`RevocationsInForce::widen_horizon`]).
    pub fn horizon(&self) -> Duration {
        self.in_force.horizon()
    }

    /// Drops entries no live token can match any more, in memory and in the store: those past
    /// both the retention horizon and the moment promised when they were recorded.
    pub async fn prune(&self, now: UnixTime) -> Result<usize, StoreError> {
        let _writer = self.write.lock().await;
        let horizon = self.horizon();
        let current = self.in_force.current();
        let Some(pruned) = current.pruned(|r| r.is_kept(horizon, now)) else {
            return Ok(0);
        };
        let dropped = current.len() - pruned.len();
        drop(current);
        self.store.compact(pruned.entries()).await?;
        self.in_force.replace(pruned);
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
            .field("live", &self.in_force.current().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::{Effect, FileStore, Selector};

    const MINUTE: Duration = Duration::from_secs(60);
    /// The cut-off of every revocation here.
    const CUT_OFF: UnixTime = UnixTime::from_secs(1_000_000);

    fn revocation(sub: &str) -> Revocation {
        Revocation {
            selector: Selector::Subject {
                issuer: "https://idp".into(),
                sub: sub.into(),
            },
            issued_before: CUT_OFF,
            effect: Effect::Revoke,
            recorded_at: CUT_OFF,
            origin: "test".into(),
            reason: String::new().into(),
            issuers: None,
            retain_until: None,
        }
    }

    fn at_minute(minutes: u64) -> UnixTime {
        CUT_OFF.plus(MINUTE * u32::try_from(minutes).unwrap())
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Opens (or re-opens, as a restart does) the log in `dir` with `horizon`, at `now`.
    async fn open(dir: &tempfile::TempDir, horizon: Duration, now: UnixTime) -> Revocations {
        let store = FileStore::open(&dir.path().join("revocations")).unwrap();
        Revocations::open(Box::new(store), horizon, now)
            .await
            .unwrap()
    }

    fn subjects(revocations: &Revocations) -> Vec<String> {
        revocations
            .current()
            .entries()
            .iter()
            .map(|r| match &r.selector {
                Selector::Subject { sub, .. } => sub.to_string(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_revocation_is_stored_with_the_retention_it_was_promised() {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let revocations = open(&dir, 15 * MINUTE, CUT_OFF).await;
            let stored = revocations.revoke(revocation("alice")).await.unwrap();
            assert_eq!(stored.retain_until, Some(at_minute(15)));
            assert_eq!(stored.forget_after(revocations.horizon()), at_minute(15));
            drop(revocations);
            let reopened = open(&dir, 15 * MINUTE, at_minute(1)).await;
            assert_eq!(
                reopened.current().entries()[0].retain_until,
                Some(at_minute(15)),
                "the promise is durable"
            );
        });
    }

    #[test]
    fn a_restart_under_a_narrower_policy_forgets_nothing_before_its_promise() {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let revocations = open(&dir, 15 * MINUTE, CUT_OFF).await;
            revocations.revoke(revocation("alice")).await.unwrap();
            drop(revocations);

            // Restarted with max_token_age narrowed to 1 minute, 5 minutes after the cut-off.
            let narrowed = open(&dir, MINUTE, at_minute(5)).await;
            assert_eq!(subjects(&narrowed), ["alice"], "kept at the restart");
            assert_eq!(narrowed.prune(at_minute(5)).await.unwrap(), 0);
            assert_eq!(narrowed.prune(at_minute(15)).await.unwrap(), 0);
            assert_eq!(subjects(&narrowed), ["alice"], "kept up to its promise");
            assert_eq!(narrowed.prune(at_minute(16)).await.unwrap(), 1);
            assert!(subjects(&narrowed).is_empty(), "forgotten after it");
        });
    }

    #[test]
    fn a_policy_that_narrows_for_a_moment_shortens_no_retention() {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let revocations = open(&dir, 15 * MINUTE, CUT_OFF).await;
            revocations.revoke(revocation("alice")).await.unwrap();
            // A reload narrows to 1 minute, a prune runs, a reload widens again.
            revocations.widen_horizon(MINUTE);
            assert_eq!(revocations.horizon(), 15 * MINUTE);
            assert_eq!(revocations.prune(at_minute(5)).await.unwrap(), 0);
            revocations.widen_horizon(15 * MINUTE);
            assert_eq!(subjects(&revocations), ["alice"]);
        });
    }

    #[test]
    fn a_wider_policy_extends_every_held_entry_and_survives_a_restart_through_new_entries() {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let revocations = open(&dir, 15 * MINUTE, CUT_OFF).await;
            revocations.revoke(revocation("alice")).await.unwrap();
            revocations.widen_horizon(60 * MINUTE);
            assert_eq!(revocations.prune(at_minute(30)).await.unwrap(), 0);
            let listed = revocations.current().entries()[0].clone();
            assert_eq!(listed.forget_after(revocations.horizon()), at_minute(60));
            let bob = revocations.revoke(revocation("bob")).await.unwrap();
            assert_eq!(bob.retain_until, Some(at_minute(60)));
            drop(revocations);

            // Restarted under the old, narrower policy: bob's entry remembers the wider
            // horizon, and alice (recorded before the widening) keeps it too.
            let restarted = open(&dir, 15 * MINUTE, at_minute(30)).await;
            assert_eq!(restarted.horizon(), 60 * MINUTE);
            assert_eq!(subjects(&restarted), ["alice", "bob"]);
            assert_eq!(restarted.prune(at_minute(60)).await.unwrap(), 0);
            assert_eq!(restarted.prune(at_minute(61)).await.unwrap(), 2);
        });
    }

    #[test]
    fn an_entry_stored_before_retention_was_recorded_follows_the_horizon() {
        runtime().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = FileStore::open(&dir.path().join("revocations")).unwrap();
            store.append(&revocation("legacy")).await.unwrap();
            drop(store);
            let revocations = open(&dir, 15 * MINUTE, at_minute(10)).await;
            assert_eq!(subjects(&revocations), ["legacy"]);
            assert_eq!(revocations.prune(at_minute(16)).await.unwrap(), 1);
        });
    }
}
