use serde_json::json;

use super::*;
use sessiongate_token::testing::{ISSUER, mint_es256, ring};
use sessiongate_token::{ClaimRules, IssuerRules, SigningAlgorithm, TokenVerifier, TypRule};

const SKEW: Duration = Duration::from_secs(30);

/// A verified session whose token expires at `exp`.
fn session_expiring_at(exp: UnixTime) -> Session {
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
    // Verification judges `exp` against the real clock; tests move their own `now`.
    let verified = verifier
        .verify(&token, &ring())
        .or_else(|_| {
            let later = mint_es256(&json!({"iss": ISSUER, "aud": "a", "exp": u32::MAX, "iat": 0}));
            verifier.verify(&later, &ring()).map(|mut token| {
                token.expires_at = exp;
                token
            })
        })
        .unwrap();
    Session::new(verified, UnixTime::from_secs(0))
}

fn copy(template: &Session) -> Session {
    Session::new(template.token.clone(), template.first_seen)
}

fn key(n: u64) -> SessionKey {
    SessionKey::of_token(&n.to_string())
}

fn before(time: UnixTime, duration: Duration) -> UnixTime {
    UnixTime::from_millis(time.as_millis() - duration.as_millis() as u64)
}

const NOW: UnixTime = UnixTime::from_secs(1_000_000);

fn in_ten_minutes() -> UnixTime {
    NOW.plus(Duration::from_secs(600))
}

#[test]
fn concurrent_inserts_keep_the_first_session() {
    let cache = SessionCache::new(10, SKEW);
    let template = session_expiring_at(in_ten_minutes());
    let first = cache.insert_or_get(key(1), copy(&template), NOW);
    let second = cache.insert_or_get(key(1), copy(&template), NOW);
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(cache.len(), 1);
}

#[test]
fn a_session_is_handed_out_until_its_token_expires_plus_skew() {
    let cache = SessionCache::new(10, SKEW);
    let exp = in_ten_minutes();
    cache.insert_or_get(key(1), session_expiring_at(exp), NOW);
    let just_before = before(exp.plus(SKEW), Duration::from_millis(1));
    assert!(cache.get(&key(1), just_before).is_some());
    assert!(
        cache.get(&key(1), exp.plus(SKEW)).is_none(),
        "expired: a miss"
    );
    assert!(cache.peek(&key(1), exp.plus(SKEW)).is_none());
    assert_eq!((cache.stats().hits(), cache.stats().misses()), (1, 1));
}

#[test]
fn an_expired_token_is_not_cached() {
    let cache = SessionCache::new(10, SKEW);
    let expired = session_expiring_at(before(NOW, SKEW));
    let session = cache.insert_or_get(key(1), expired, NOW);
    assert_eq!(session.token.expires_at, before(NOW, SKEW));
    assert!(cache.is_empty());
}

#[test]
fn an_expired_entry_is_replaced_by_a_new_session_for_the_same_token() {
    let cache = SessionCache::new(10, SKEW);
    let old = cache.insert_or_get(key(1), session_expiring_at(NOW.plus(SKEW)), NOW);
    let later = NOW.plus(Duration::from_secs(120));
    let new = cache.insert_or_get(key(1), session_expiring_at(in_ten_minutes()), later);
    assert!(!Arc::ptr_eq(&old, &new));
    assert!(Arc::ptr_eq(&cache.get(&key(1), later).unwrap(), &new));
}

#[test]
fn remove_expired_reclaims_only_expired_sessions_and_counts_them() {
    let cache = SessionCache::new(100, SKEW);
    let soon = session_expiring_at(NOW.plus(Duration::from_secs(60)));
    let later = session_expiring_at(in_ten_minutes());
    for n in 0..10 {
        cache.insert_or_get(key(n), copy(&soon), NOW);
        cache.insert_or_get(key(100 + n), copy(&later), NOW);
    }
    assert_eq!(cache.remove_expired(NOW), 0);
    let after_soon = NOW.plus(Duration::from_secs(60)).plus(SKEW);
    assert_eq!(cache.remove_expired(after_soon), 10);
    assert_eq!(cache.len(), 10);
    assert_eq!(cache.stats().expired(), 10);
    assert!((0..10).all(|n| cache.get(&key(100 + n), after_soon).is_some()));
}

#[test]
fn capacity_is_bounded_and_evictions_are_counted() {
    let cache = SessionCache::new(5, SKEW);
    let template = session_expiring_at(in_ten_minutes());
    for n in 0..50 {
        let session = cache.insert_or_get(key(n), copy(&template), NOW);
        assert!(Arc::ptr_eq(&session, &cache.peek(&key(n), NOW).unwrap()));
        assert!(cache.len() <= 5, "{}", cache.len());
    }
    assert_eq!(cache.stats().evicted(), 45);
}

#[test]
fn a_full_cache_drops_expired_sessions_before_live_ones() {
    let cache = SessionCache::new(4, SKEW);
    let short = session_expiring_at(NOW.plus(Duration::from_secs(10)));
    let long = session_expiring_at(in_ten_minutes());
    cache.insert_or_get(key(1), copy(&short), NOW);
    cache.insert_or_get(key(2), copy(&short), NOW);
    cache.insert_or_get(key(3), copy(&long), NOW);
    cache.insert_or_get(key(4), copy(&long), NOW);
    let later = NOW.plus(Duration::from_secs(60));
    cache.insert_or_get(key(5), copy(&long), later);
    assert!(cache.peek(&key(3), later).is_some() && cache.peek(&key(4), later).is_some());
    assert!(cache.peek(&key(5), later).is_some());
    assert_eq!(cache.len(), 3);
    assert_eq!((cache.stats().expired(), cache.stats().evicted()), (2, 0));
}

#[test]
fn sessions_in_use_survive_eviction() {
    let cache = SessionCache::new(16, SKEW);
    let template = session_expiring_at(in_ten_minutes());
    for n in 0..16 {
        cache.insert_or_get(key(n), copy(&template), NOW);
    }
    // Every session was just used (inserted): this first sweep clears all marks and evicts one.
    cache.insert_or_get(key(100), copy(&template), NOW);
    assert_eq!(cache.stats().evicted(), 1);
    let busy: Vec<u64> = (0..16)
        .filter(|n| cache.peek(&key(*n), NOW).is_some())
        .take(8)
        .collect();
    for n in 200..240 {
        for n in &busy {
            assert!(
                cache.get(&key(*n), NOW).is_some(),
                "busy session {n} was evicted"
            );
        }
        cache.insert_or_get(key(n), copy(&template), NOW);
        assert!(cache.len() <= 16);
    }
    assert!(busy.iter().all(|n| cache.peek(&key(*n), NOW).is_some()));
    assert_eq!(cache.stats().evicted(), 41);
}

#[test]
fn clear_drops_everything() {
    let cache = SessionCache::new(10, SKEW);
    cache.insert_or_get(key(1), session_expiring_at(in_ten_minutes()), NOW);
    cache.clear();
    assert!(cache.is_empty());
    assert!(cache.get(&key(1), NOW).is_none());
}

#[test]
fn lookups_by_checks_count_hits_and_misses_and_introspection_does_not() {
    let cache = SessionCache::new(10, SKEW);
    assert!(cache.get(&key(1), NOW).is_none());
    cache.insert_or_get(key(1), session_expiring_at(in_ten_minutes()), NOW);
    assert!(cache.get(&key(1), NOW).is_some());
    assert!(cache.get(&key(1), NOW).is_some());
    assert!(cache.peek(&key(1), NOW).is_some());
    assert_eq!((cache.stats().hits(), cache.stats().misses()), (2, 1));
}

#[test]
fn large_caches_are_sharded() {
    for (configured, shards) in [(0, 1), (5, 1), (4096, 4), (100_000, 64), (1_010_000, 64)] {
        let cache = SessionCache::new(configured, SKEW);
        assert_eq!(cache.shards.len(), shards, "capacity {configured}");
        assert_eq!(cache.capacity(), configured.max(1));
    }
}

#[test]
fn a_sharded_cache_holds_its_whole_capacity_before_evicting() {
    let cache = SessionCache::new(20_000, SKEW);
    let template = session_expiring_at(in_ten_minutes());
    for n in 0..20_000 {
        cache.insert_or_get(key(n), copy(&template), NOW);
    }
    assert_eq!((cache.len(), cache.stats().evicted()), (20_000, 0));
    cache.insert_or_get(key(20_000), copy(&template), NOW);
    assert!(cache.stats().evicted() >= 1);
    assert!(cache.len() < 20_000, "{}", cache.len());
    assert!(
        cache.peek(&key(20_000), NOW).is_some(),
        "the newcomer is kept"
    );
}

#[test]
fn keys_spread_over_every_shard() {
    let cache = SessionCache::new(100_000, SKEW);
    let template = session_expiring_at(in_ten_minutes());
    for n in 0..2_000 {
        cache.insert_or_get(key(n), copy(&template), NOW);
    }
    for shard in cache.shards.iter() {
        let len = shard.read().unwrap().len();
        assert!(
            (10..=60).contains(&len),
            "{len} of 2,000 keys in one of 64 shards"
        );
    }
}

#[test]
fn an_introspected_session_is_not_handed_out_after_its_recheck_time() {
    let cache = SessionCache::new(10, SKEW);
    let token = session_expiring_at(in_ten_minutes()).token;
    let recheck_at = NOW.plus(Duration::from_secs(60));
    cache.insert_or_get(key(1), Session::introspected(token, NOW, recheck_at), NOW);
    assert!(
        cache
            .get(&key(1), before(recheck_at, Duration::from_millis(1)))
            .is_some()
    );
    assert!(
        cache.get(&key(1), recheck_at).is_none(),
        "the issuer must be asked again once its answer's cache time is over"
    );
    assert_eq!(cache.remove_expired(recheck_at), 1);
}
