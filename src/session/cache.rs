//! The bounded TTL cache of verified sessions (moka).
//!
//! The cache is a memory bound and a way to skip signature verification, not a rule: entries
//! expire with their token (`exp` plus clock skew), capacity is bounded, and every time-based
//! rule is judged by the decision with an explicit clock, because moka's clock cannot be driven
//! from tests. An evicted session simply gets verified again; what is lost then is its idle
//! history and its local pin (see README "Cache sizing").

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;

use super::{Session, SessionKey};
use crate::time::UnixTime;

/// Verified sessions by token hash.
pub struct SessionCache {
    entries: moka::sync::Cache<SessionKey, Arc<Session>>,
}

/// Per-entry lifetime: until the token expires, plus the skew the decision would forgive.
struct UntilTokenExpiry {
    clock_skew: Duration,
}

impl Expiry<SessionKey, Arc<Session>> for UntilTokenExpiry {
    fn expire_after_create(&self, _key: &SessionKey, session: &Arc<Session>, _created: Instant) -> Option<Duration> {
        let lives_until = session.token.expires_at.plus(self.clock_skew);
        Some(lives_until.since(UnixTime::now()))
    }
}

impl SessionCache {
    /// A cache holding at most `capacity` sessions.
    pub fn new(capacity: u64, clock_skew: Duration) -> SessionCache {
        let entries = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .expire_after(UntilTokenExpiry { clock_skew })
            .build();
        SessionCache { entries }
    }

    /// The cached session for `key`.
    pub fn get(&self, key: &SessionKey) -> Option<Arc<Session>> {
        self.entries.get(key)
    }

    /// Caches `session` unless another request cached one for the same token first; returns
    /// the cached one either way, so concurrent first requests share one record (and one pin).
    pub fn insert_or_get(&self, key: SessionKey, session: Session) -> Arc<Session> {
        self.entries.entry(key).or_insert_with(|| Arc::new(session)).into_value()
    }

    /// Drops every session, forcing re-verification (used when claim rules change on reload).
    pub fn clear(&self) {
        self.entries.invalidate_all();
    }

    /// Approximate number of cached sessions.
    pub fn len(&self) -> u64 {
        self.entries.entry_count()
    }

    /// Whether the cache is (approximately) empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionCache").field("entries", &self.len()).finish()
    }
}
