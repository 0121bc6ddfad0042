//! Where DPoP proofs' `jti`s are remembered, so each proof is accepted once (RFC 9449 section
//! 11.1): per replica, or fleet-wide.
//!
//! The gate decides *that* an allowed request's proof must be claimed (a [`ReplayClaim`]: the
//! proof's replay key and how long it could still be accepted); a [`ProofReplayStore`] records
//! it and answers whether this was its first use, and the gate then settles the verdict
//! ([`crate::gate::Gate::settle_replay`]). As with pins, the store sits behind a small async
//! trait so the gate stays synchronous and the decision pure.
//!
//! - [`LocalProofReplay`]: this process's memory (one replica), bounded.
//! - the server's Redis fleet: one `SET key 1 NX PX ttl` per proof, so a proof used at one
//!   replica is a replay at every other.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use sessiongate_core::time::UnixTime;

/// A boxed future, so replay stores can be used as trait objects.
pub type ReplayFuture<'a> = Pin<Box<dyn Future<Output = Result<bool, ReplayError>> + Send + 'a>>;

/// A proof to record before its request is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayClaim {
    /// SHA-256 over the proof's key thumbprint and its `jti` (never the `jti` itself, which a
    /// client chooses: fixed-size keys bound the store's memory).
    pub key: [u8; 32],
    /// How long the proof could still be accepted (its lifetime plus twice the clock skew):
    /// after that its `iat` refuses it anyway, so the store may forget it.
    pub ttl: Duration,
}

/// Records proofs' first use.
pub trait ProofReplayStore: std::fmt::Debug + Send + Sync + 'static {
    /// Records `key` for `ttl` unless it is recorded already; `true` exactly when this call
    /// recorded it (first use).
    fn claim(&self, key: [u8; 32], ttl: Duration) -> ReplayFuture<'_>;
}

/// Why a proof's first use could not be established; the request fails closed (503).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The shared store cannot be reached.
    #[error("replay store unavailable: {0}")]
    Unavailable(String),
    /// The local store holds `dpop.replay.max_entries` live proofs.
    #[error("replay store full ({0} live proofs)")]
    Full(usize),
}

/// Proofs remembered by this process: at most `max_entries` live ones.
///
/// A hash map and a queue in insertion order, behind one mutex: expired entries are swept from
/// the front of the queue on each claim. Written here rather than taken from a cache library
/// because a cache may evict (or decline to admit) a live entry under pressure, which would let
/// a proof be replayed; this store refuses new proofs instead (503) while full, so the bound
/// costs availability, never a replay. Size it above the proof rate times the TTL.
#[derive(Debug)]
pub struct LocalProofReplay {
    max_entries: usize,
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// Replay key → when it may be forgotten.
    expiry: HashMap<[u8; 32], UnixTime>,
    /// Keys in the order recorded, with the expiry they were recorded with.
    order: VecDeque<(UnixTime, [u8; 32])>,
}

impl LocalProofReplay {
    /// A store holding at most `max_entries` live proofs.
    pub fn new(max_entries: usize) -> LocalProofReplay {
        LocalProofReplay {
            max_entries: max_entries.max(1),
            seen: Mutex::new(Seen::default()),
        }
    }

    /// The synchronous claim at `now` (the trait's future wraps it).
    pub fn claim_at(
        &self,
        key: [u8; 32],
        ttl: Duration,
        now: UnixTime,
    ) -> Result<bool, ReplayError> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while let Some(&(expires, old)) = seen.order.front() {
            if expires > now {
                break;
            }
            seen.order.pop_front();
            if seen.expiry.get(&old) == Some(&expires) {
                seen.expiry.remove(&old);
            }
        }
        if seen.expiry.get(&key).is_some_and(|&expires| expires > now) {
            return Ok(false);
        }
        if seen.expiry.len() >= self.max_entries {
            return Err(ReplayError::Full(self.max_entries));
        }
        let expires = now.plus(ttl);
        seen.expiry.insert(key, expires);
        seen.order.push_back((expires, key));
        Ok(true)
    }

    /// How many proofs are remembered (live or not yet swept).
    pub fn len(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .expiry
            .len()
    }

    /// Whether no proof is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for LocalProofReplay {
    /// 1,000,000 live proofs (about 100 MB at worst): 20,000 DPoP requests per second with
    /// the default 5 s lifetime and 30 s skew on both sides.
    fn default() -> LocalProofReplay {
        LocalProofReplay::new(1_000_000)
    }
}

impl ProofReplayStore for LocalProofReplay {
    fn claim(&self, key: [u8; 32], ttl: Duration) -> ReplayFuture<'_> {
        let result = self.claim_at(key, ttl, UnixTime::now());
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    fn at(seconds: u64) -> UnixTime {
        UnixTime::from_secs(1_800_000_000 + seconds)
    }

    #[test]
    fn a_proof_is_accepted_once_within_its_ttl() {
        let store = LocalProofReplay::new(10);
        assert!(store.claim_at([1; 32], TTL, at(0)).unwrap());
        assert!(!store.claim_at([1; 32], TTL, at(9)).unwrap());
        assert!(store.claim_at([2; 32], TTL, at(9)).unwrap());
    }

    #[test]
    fn expired_proofs_are_forgotten() {
        let store = LocalProofReplay::new(10);
        assert!(store.claim_at([1; 32], TTL, at(0)).unwrap());
        assert!(store.claim_at([2; 32], TTL, at(5)).unwrap());
        assert!(store.claim_at([3; 32], TTL, at(11)).unwrap());
        assert_eq!(store.len(), 2, "the first was swept");
    }

    #[test]
    fn a_full_store_refuses_new_proofs_rather_than_forget_live_ones() {
        let store = LocalProofReplay::new(2);
        assert!(store.claim_at([1; 32], TTL, at(0)).unwrap());
        assert!(store.claim_at([2; 32], TTL, at(0)).unwrap());
        assert!(matches!(
            store.claim_at([3; 32], TTL, at(1)),
            Err(ReplayError::Full(2))
        ));
        assert!(
            !store.claim_at([1; 32], TTL, at(1)).unwrap(),
            "still a replay"
        );
        assert!(
            store.claim_at([3; 32], TTL, at(10)).unwrap(),
            "room once expired"
        );
    }
}
