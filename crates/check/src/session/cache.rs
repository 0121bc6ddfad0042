//! The bounded TTL cache of verified sessions.
//!
//! The cache is a memory bound and a way to skip signature verification, not a rule: a session
//! is handed out only until its token expires (`exp` plus clock skew; an introspected opaque
//! token only until its answer's `recheck_at`), capacity is bounded, and
//! every time-based rule is judged by the decision with an explicit clock. An evicted session
//! simply gets verified again; what is lost then is its idle history and its local pin (see
//! docs/operations.md, "Sizing the session cache").
//!
//! It is a purpose-built map rather than a general cache library because a cached session is
//! what sessiongate's memory is made of (one million sessions must fit in 512 MiB) and a lookup
//! is on every request. Each entry costs its key and one pointer, about 40 bytes plus the hash
//! table's slack, against ~400 bytes of bookkeeping in a general-purpose concurrent cache:
//!
//! - **Sharded** `RwLock<HashMap>`: lookups take a shared lock on one of up to 64 shards, so
//!   concurrent checks do not contend; inserts (once per new session) take it exclusively.
//! - **Expiry on lookup**: an expired session is never handed out; its entry is reclaimed when
//!   its shard fills up or by [`SessionCache::remove_expired`], which the server runs
//!   periodically. No timer wheel or per-entry deadline queue is needed.
//! - **Eviction by second chance (CLOCK)**: a lookup marks the session recently used; when the
//!   cache is full, the shard taking a new session drops its expired sessions first, then
//!   sessions not used since its previous sweep, and clears the mark on the others. That
//!   approximates least-recently-used at the cost of one scan of one shard per `1/16` of it
//!   inserted. Capacity is counted across shards, so keys that happen to crowd one shard do not
//!   cause evictions while the cache as a whole has room.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use super::{Session, SessionKey};
use sessiongate_core::time::UnixTime;

/// Most shards a cache is split into: enough that two to a few dozen worker threads rarely meet
/// on one lock, few enough that each shard's table stays large and its slack small.
const MAX_SHARDS: usize = 64;

/// Fewest sessions a shard is sized for: a small cache is not split into tiny shards, whose
/// per-shard bound would make eviction much coarser than the configured capacity.
const MIN_SESSIONS_PER_SHARD: u64 = 1024;

/// A shard making room frees at least this fraction of its sessions at once, so the scan that finds
/// victims is paid once per that many inserts, not on each.
const EVICTION_BATCH_DIVISOR: usize = 16;

/// Verified sessions by token hash.
pub struct SessionCache {
    shards: Box<[RwLock<Shard>]>,
    /// Sessions the cache holds at most (give or take one per thread inserting at the instant
    /// it fills up: the count is shared, the shard locks are not).
    capacity: usize,
    /// Sessions held now, in all shards.
    len: AtomicUsize,
    clock_skew: Duration,
    stats: CacheStats,
}

type Shard = HashMap<SessionKey, Arc<Session>, KeyIsHash>;

/// What the cache did since start, for metrics. Plain atomics, so this module stays free of
/// any metrics library; relaxed ordering, since each counter is read on its own.
#[derive(Debug, Default)]
pub struct CacheStats {
    hits: AtomicU64,
    misses: AtomicU64,
    evicted: AtomicU64,
    expired: AtomicU64,
}

impl CacheStats {
    /// Lookups by a check that found the session.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups by a check that did not.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Sessions evicted because the cache was full: each costs a re-verification, its idle
    /// history and its local pin. A steady rate means `cache_capacity` is too small.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Sessions dropped because their token expired.
    pub fn expired(&self) -> u64 {
        self.expired.load(Ordering::Relaxed)
    }

    fn count(counter: &AtomicU64, n: usize) {
        if n > 0 {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

impl SessionCache {
    /// A cache holding at most `capacity` sessions (at least one), each until its token's
    /// expiry plus `clock_skew`.
    pub fn new(capacity: u64, clock_skew: Duration) -> SessionCache {
        let capacity = capacity.max(1);
        let wanted = (capacity / MIN_SESSIONS_PER_SHARD).clamp(1, MAX_SHARDS as u64);
        // A power of two, so a key picks its shard with a mask.
        let shard_count = 1usize << (u64::BITS - 1 - wanted.leading_zeros());
        SessionCache {
            shards: (0..shard_count)
                .map(|_| RwLock::new(Shard::default()))
                .collect(),
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX),
            len: AtomicUsize::new(0),
            clock_skew,
            stats: CacheStats::default(),
        }
    }

    /// The live session for `key` at `now`, for a check: counted as a hit or a miss, and marked
    /// recently used so eviction spares it.
    pub fn get(&self, key: &SessionKey, now: UnixTime) -> Option<Arc<Session>> {
        let found = self.lookup(key, now);
        let counter = match &found {
            Some(session) => {
                session.activity.mark_used();
                &self.stats.hits
            }
            None => &self.stats.misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// The live session for `key` at `now`, for introspection: not counted, not marked used.
    pub fn peek(&self, key: &SessionKey, now: UnixTime) -> Option<Arc<Session>> {
        self.lookup(key, now)
    }

    /// The session held for `key` whether or not it is still live: what an introspected
    /// session being renewed carries over (its pin, its idle history). Not counted.
    pub fn held(&self, key: &SessionKey) -> Option<Arc<Session>> {
        self.read(key).get(key).map(Arc::clone)
    }

    /// Hits, misses and evictions since start.
    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// Caches `session` unless another request cached a live one for the same token first;
    /// returns the cached one either way, so concurrent first requests share one record (and
    /// one pin). An expired token is returned without being cached.
    pub fn insert_or_get(&self, key: SessionKey, session: Session, now: UnixTime) -> Arc<Session> {
        if !self.is_live(&session, now) {
            return Arc::new(session);
        }
        let session = Arc::new(session);
        session.activity.mark_used();
        let mut shard = self.write(&key);
        match shard.entry(key) {
            Entry::Occupied(cached) if self.is_live(cached.get(), now) => {
                return Arc::clone(cached.get());
            }
            // An expired entry for the same token is replaced: the count does not change.
            Entry::Occupied(mut expired) => {
                expired.insert(Arc::clone(&session));
            }
            Entry::Vacant(slot) => {
                slot.insert(Arc::clone(&session));
                if self.len.fetch_add(1, Ordering::Relaxed) >= self.capacity {
                    self.make_room(&mut shard, &key, now);
                }
            }
        }
        session
    }

    /// Drops every session whose token expired by `now`; returns how many. The server calls
    /// this periodically, so sessions nobody presents again do not hold memory until their
    /// shard fills up.
    pub fn remove_expired(&self, now: UnixTime) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let mut shard = shard.write().unwrap_or_else(PoisonError::into_inner);
                self.drop_expired(&mut shard, now)
            })
            .sum()
    }

    /// Drops every session, forcing re-verification (used when claim rules change on reload).
    /// The tables' memory is released too.
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard.write().unwrap_or_else(PoisonError::into_inner);
            self.len.fetch_sub(shard.len(), Ordering::Relaxed);
            *shard = Shard::default();
        }
    }

    /// Sessions held now, expired ones not yet reclaimed included.
    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Relaxed) as u64
    }

    /// Whether the cache holds no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Most sessions the cache holds at once.
    pub fn capacity(&self) -> u64 {
        self.capacity as u64
    }

    fn lookup(&self, key: &SessionKey, now: UnixTime) -> Option<Arc<Session>> {
        let shard = self.read(key);
        let session = shard.get(key)?;
        self.is_live(session, now).then(|| Arc::clone(session))
    }

    /// Whether `session` may still be handed out: its token has not expired beyond the skew
    /// the decision forgives, and an introspected token's answer is still trusted (no skew
    /// there: `recheck_at` is this process's own clock).
    fn is_live(&self, session: &Session, now: UnixTime) -> bool {
        now < session.token.expires_at.plus(self.clock_skew)
            && session.recheck_at.is_none_or(|recheck_at| now < recheck_at)
    }

    /// Frees room in a full cache from the shard that just took `newcomer`: expired sessions
    /// first, then, when there were none, a batch of sessions not used since the shard's
    /// previous sweep. The newcomer itself is spared.
    fn make_room(&self, shard: &mut Shard, newcomer: &SessionKey, now: UnixTime) {
        if self.drop_expired(shard, now) > 0 {
            return;
        }
        let wanted = (shard.len() / EVICTION_BATCH_DIVISOR).max(1);
        let mut evicted = 0;
        // Second chance: a session used since the last sweep loses its mark and stays; one
        // that was not goes. Two passes at most: after the first, every mark is clear.
        for _ in 0..2 {
            shard.retain(|key, session| {
                if evicted >= wanted || key == newcomer || session.activity.take_used_mark() {
                    true
                } else {
                    evicted += 1;
                    false
                }
            });
            if evicted >= wanted || shard.len() <= 1 {
                break;
            }
        }
        CacheStats::count(&self.stats.evicted, evicted);
        self.len.fetch_sub(evicted, Ordering::Relaxed);
    }

    /// Drops `shard`'s expired sessions, counted; returns how many.
    fn drop_expired(&self, shard: &mut Shard, now: UnixTime) -> usize {
        let before = shard.len();
        shard.retain(|_, session| self.is_live(session, now));
        let expired = before - shard.len();
        self.len.fetch_sub(expired, Ordering::Relaxed);
        CacheStats::count(&self.stats.expired, expired);
        expired
    }

    fn shard(&self, key: &SessionKey) -> &RwLock<Shard> {
        // The key is a SHA-256 digest: its last bytes pick the shard, its first the bucket.
        let index = usize::from(key.0[31]) | (usize::from(key.0[30]) << 8);
        &self.shards[index & (self.shards.len() - 1)]
    }

    fn read(&self, key: &SessionKey) -> RwLockReadGuard<'_, Shard> {
        // A panic while a shard was locked cannot leave the map itself inconsistent.
        self.shard(key)
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, key: &SessionKey) -> RwLockWriteGuard<'_, Shard> {
        self.shard(key)
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Hashes a [`SessionKey`] by taking its first eight bytes: the key is already a SHA-256 digest,
/// uniformly spread, so hashing it again would only cost time. Flooding one bucket would need
/// many validly signed tokens whose digests share a prefix; unsigned tokens are never inserted.
#[derive(Clone, Copy, Default)]
struct KeyIsHash;

impl BuildHasher for KeyIsHash {
    type Hasher = DigestPrefix;

    fn build_hasher(&self) -> DigestPrefix {
        DigestPrefix(0)
    }
}

/// See [`KeyIsHash`].
struct DigestPrefix(u64);

impl Hasher for DigestPrefix {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // A digest arrives whole; anything shorter (the length prefix) is folded in.
        match bytes.first_chunk::<8>() {
            Some(prefix) => self.0 ^= u64::from_le_bytes(*prefix),
            None => {
                for &byte in bytes {
                    self.0 = self.0.rotate_left(8) ^ u64::from(byte);
                }
            }
        }
    }

    fn write_usize(&mut self, _length_prefix: usize) {
        // The array's length is always 32: nothing to tell keys apart.
    }
}

impl fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionCache")
            .field("entries", &self.len())
            .field("capacity", &self.capacity())
            .finish()
    }
}

#[cfg(test)]
mod tests;
