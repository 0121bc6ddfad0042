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
    }
}
