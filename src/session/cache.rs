//! The bounded TTL cache of verified sessions (moka).
//!
//! The cache is a memory bound and a way to skip signature verification, not a rule: entries
//! expire with their token (`exp` plus clock skew), capacity is bounded, and every time-based
//! rule is judged by the decision with an explicit clock, because moka's clock cannot be driven
//! from tests. An evicted session simply gets verified again; what is lost then is its idle
//! history and its local pin (see README "Cache sizing").

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::notification::RemovalCause;

use super::{Session, SessionKey};
use crate::time::UnixTime;

/// Verified sessions by token hash.
pub struct SessionCache {
    entries: moka::sync::Cache<SessionKey, Arc<Session>>,
    /// Shared with moka's eviction listener, which runs outside any call of ours.
    stats: Arc<CacheStats>,
}

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

    fn removed(&self, cause: RemovalCause) {
        match cause {
            RemovalCause::Size => self.evicted.fetch_add(1, Ordering::Relaxed),
            RemovalCause::Expired => self.expired.fetch_add(1, Ordering::Relaxed),
            // Cleared on reload or replaced: not the cache's own doing.
            RemovalCause::Explicit | RemovalCause::Replaced => 0,
        };
    }
}

/// Per-entry lifetime: until the token expires, plus the skew the decision would forgive.
struct UntilTokenExpiry {
    clock_skew: Duration,
}

impl Expiry<SessionKey, Arc<Session>> for UntilTokenExpiry {
    fn expire_after_create(
        &self,
        _key: &SessionKey,
        session: &Arc<Session>,
        _created: Instant,
    ) -> Option<Duration> {
        let lives_until = session.token.expires_at.plus(self.clock_skew);
        Some(lives_until.since(UnixTime::now()))
    }
}

impl SessionCache {
    /// A cache holding at most `capacity` sessions.
    pub fn new(capacity: u64, clock_skew: Duration) -> SessionCache {
        let stats = Arc::new(CacheStats::default());
        let listener = Arc::clone(&stats);
        let entries = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .expire_after(UntilTokenExpiry { clock_skew })
            .eviction_listener(move |_key, _session, cause| listener.removed(cause))
            .build();
        SessionCache { entries, stats }
    }

    /// The cached session for `key`, for a check: counted as a hit or a miss.
    pub fn get(&self, key: &SessionKey) -> Option<Arc<Session>> {
        let found = self.entries.get(key);
        let counter = if found.is_some() {
            &self.stats.hits
        } else {
            &self.stats.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// The cached session for `key`, for introspection: not counted.
    pub fn peek(&self, key: &SessionKey) -> Option<Arc<Session>> {
        self.entries.get(key)
    }

    /// Hits, misses and evictions since start.
    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// Caches `session` unless another request cached one for the same token first; returns
    /// the cached one either way, so concurrent first requests share one record (and one pin).
    pub fn insert_or_get(&self, key: SessionKey, session: Session) -> Arc<Session> {
        self.entries
            .entry(key)
            .or_insert_with(|| Arc::new(session))
            .into_value()
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
        f.debug_struct("SessionCache")
            .field("entries", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::{ISSUER, mint_es256, ring};
    use crate::token::{ClaimRules, IssuerRules, SigningAlgorithm, TokenVerifier, TypRule};

    fn session_expiring_at(exp: UnixTime) -> Arc<Session> {
        let verifier = TokenVerifier::new(
            [IssuerRules {
                issuer: ISSUER.into(),
                audiences: vec!["a".into()].into(),
                algorithms: vec![SigningAlgorithm::Es256].into(),
                typ: TypRule::AccessTokenOrJwt,
            }],
            ClaimRules {
                scope_claim: "scope".into(),
                binding_claim: None,
            },
        );
        let token = mint_es256(&json!({"iss": ISSUER, "aud": "a", "exp": exp.as_secs(), "iat": 0}));
        Arc::new(Session::new(
            verifier.verify(&token, &ring()).unwrap(),
            UnixTime::now(),
        ))
    }

    #[test]
    fn an_entry_lives_no_longer_than_its_token_plus_skew() {
        let expiry = UntilTokenExpiry {
            clock_skew: Duration::from_secs(30),
        };
        let key = SessionKey::of_token("t");
        let in_ten_minutes = UnixTime::now().plus(Duration::from_secs(600));
        let ttl = expiry
            .expire_after_create(&key, &session_expiring_at(in_ten_minutes), Instant::now())
            .unwrap();
        assert!(
            ttl <= Duration::from_secs(630) && ttl > Duration::from_secs(620),
            "{ttl:?}"
        );
        let ttl = expiry.expire_after_create(
            &key,
            &session_expiring_at(UnixTime::from_secs(60)),
            Instant::now(),
        );
        assert_eq!(ttl, Some(Duration::ZERO), "an expired token is not kept");
    }

    #[test]
    fn concurrent_inserts_keep_the_first_session() {
        let cache = SessionCache::new(10, Duration::from_secs(30));
        let exp = UnixTime::now().plus(Duration::from_secs(600));
        let key = SessionKey::of_token("t");
        let first = cache.insert_or_get(key, Arc::try_unwrap(session_expiring_at(exp)).unwrap());
        let second = cache.insert_or_get(key, Arc::try_unwrap(session_expiring_at(exp)).unwrap());
        assert!(Arc::ptr_eq(&first, &second));
    }

    #[test]
    fn capacity_is_bounded() {
        let cache = SessionCache::new(5, Duration::from_secs(30));
        let exp = UnixTime::now().plus(Duration::from_secs(600));
        let template = session_expiring_at(exp);
        for i in 0..50 {
            let session = Session::new(template.token.clone(), UnixTime::now());
            cache.insert_or_get(SessionKey::of_token(&i.to_string()), session);
        }
        cache.entries.run_pending_tasks();
        assert!(cache.len() <= 5, "{}", cache.len());
        assert!(
            cache.stats().evicted() >= 45,
            "evictions for size are counted: {}",
            cache.stats().evicted()
        );
    }

    #[test]
    fn lookups_by_checks_count_hits_and_misses_and_introspection_does_not() {
        let cache = SessionCache::new(10, Duration::from_secs(30));
        let exp = UnixTime::now().plus(Duration::from_secs(600));
        let key = SessionKey::of_token("t");
        assert!(cache.get(&key).is_none());
        cache.insert_or_get(key, Arc::try_unwrap(session_expiring_at(exp)).unwrap());
        assert!(cache.get(&key).is_some());
        assert!(cache.get(&key).is_some());
        assert!(cache.peek(&key).is_some());
        assert_eq!((cache.stats().hits(), cache.stats().misses()), (2, 1));
    }
}
