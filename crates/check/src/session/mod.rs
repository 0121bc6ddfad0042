//! Live sessions: one verified token and what sessiongate has seen of it since.
//!
//! A session is keyed by the SHA-256 of the token's canonical encoding
//! ([`sessiongate_token::canonical_digest`]), not by its `jti`: before the signature is checked a
//! `jti` is just attacker-chosen text, so keying by it would let a forged token naming a cached
//! `jti` ride on another token's verification. Canonical, so that every re-encoding of one signed
//! token a thief can make without the key (an ECDSA `s` replaced by `n − s`) is the same session,
//! with the same idle clock and the same pin.

mod cache;

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub use cache::SessionCache;

use sessiongate_core::time::UnixTime;
use sessiongate_core::token::VerifiedToken;
use sessiongate_core::workload::PinnedWorkload;

/// SHA-256 of a bearer token's canonical encoding: the cache key, the pin's name in a shared
/// store, and (shortened) the session's public handle.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    /// The key of `token`: equal for every re-encoding of it that verifies, and the plain
    /// SHA-256 of its bytes when it is canonical already (every RSA and EdDSA token, and ECDSA
    /// tokens with a low `s`), so keys, pins and handles did not change for those.
    pub fn of_token(token: &str) -> SessionKey {
        SessionKey(sessiongate_token::canonical_digest(token))
    }

    /// The whole hash in base64url (43 characters): names the session in a shared store
    /// (fleet-wide pinning) without revealing the token.
    pub fn full(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// A short, non-reversible handle for logs and the `x-sessiongate-session` header: the
    /// first 96 bits of the hash in base64url (16 characters). Enough to correlate requests of
    /// one session, useless for recovering or replaying the token.
    pub fn short(&self) -> ShortHash {
        let mut text = [0u8; 16];
        URL_SAFE_NO_PAD
            .encode_slice(&self.0[..12], &mut text)
            .expect("12 bytes encode to 16 base64 characters");
        ShortHash(text)
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKey({})", self.short())
    }
}

/// The printable short form of a [`SessionKey`], without heap allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ShortHash([u8; 16]);

impl ShortHash {
    /// The 16-character text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("base64url is ASCII")
    }
}

impl fmt::Display for ShortHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ShortHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cached session: the verified token plus what this process has seen of it.
///
/// Shared across concurrent requests behind an `Arc`, so the mutable parts are atomics: the
/// last allowed request (for idle timeouts) and the pinned workload (set once, first wins).
#[derive(Debug)]
pub struct Session {
    /// The verified token.
    pub token: VerifiedToken,
    /// When this process first verified the token.
    pub first_seen: UnixTime,
    /// For an opaque token: when its introspection answer stops being trusted (`min(exp,
    /// answered + cache_ttl)`), after which the cache no longer hands the session out and the
    /// next request asks the issuer again. That is what makes the issuer's `active: false` a
    /// revocation here. `None` for a JWT, whose signature does not go stale.
    pub recheck_at: Option<UnixTime>,
    activity: Activity,
    pinned: OnceLock<PinnedWorkload>,
}

impl Session {
    /// A session for a token verified at `now`, never allowed yet and not pinned.
    pub fn new(token: VerifiedToken, now: UnixTime) -> Session {
        Session {
            token,
            first_seen: now,
            recheck_at: None,
            activity: Activity::default(),
            pinned: OnceLock::new(),
        }
    }

    /// A session for an opaque token its issuer's introspection endpoint described at `now`,
    /// to be introspected again at `recheck_at`.
    pub fn introspected(token: VerifiedToken, now: UnixTime, recheck_at: UnixTime) -> Session {
        Session {
            recheck_at: Some(recheck_at),
            ..Session::new(token, now)
        }
    }

    /// This session, renewed from `earlier` (the same token's previous session, whose
    /// introspection answer went stale): the pin and the last allowed request carry over, so
    /// re-asking the issuer neither frees a pinned session for another workload to claim nor
    /// resets its idle clock.
    pub fn renewing(self, earlier: &Session) -> Session {
        if let Some(pinned) = earlier.pinned() {
            self.pin(pinned.clone());
        }
        if let Some(last) = earlier.last_allowed() {
            self.record_allowed(last);
            // A carried-over time is not a use since the cache's last sweep.
            self.activity.take_used_mark();
        }
        self
    }

    /// When a request of this session was last allowed, if ever.
    pub fn last_allowed(&self) -> Option<UnixTime> {
        self.activity.last_allowed()
    }

    /// Records an allowed request at `now`. Never moves backwards, so a request that read the
    /// clock earlier but finished later cannot shorten the session's idle window.
    pub fn record_allowed(&self, now: UnixTime) {
        self.activity.record_allowed(now);
    }

    /// The workload this session is pinned to, if any.
    pub fn pinned(&self) -> Option<&PinnedWorkload> {
        self.pinned.get()
    }

    /// Pins the session to `workload` unless it is pinned already; returns the workload it is
    /// pinned to now. When two workloads race for a fresh session, exactly one wins and the
    /// caller compares the result with its own identity.
    pub fn pin(&self, workload: PinnedWorkload) -> &PinnedWorkload {
        self.pinned.get_or_init(|| workload)
    }
}

/// The last allowed request's time and the cache's recently-used mark, in one atomic word:
/// a session is what a million cached sessions are made of, and a separate flag would grow
/// every one of them by a whole allocator step.
///
/// The word holds the time in milliseconds shifted left by one, and the mark in bit 0, so
/// `fetch_max` on the word still keeps the latest time.
#[derive(Debug, Default)]
struct Activity(AtomicU64);

/// Bit 0 of [`Activity`]: used since the cache's last eviction sweep.
const USED_MARK: u64 = 1;

impl Activity {
    fn last_allowed(&self) -> Option<UnixTime> {
        match self.0.load(Ordering::Relaxed) >> 1 {
            0 => None,
            millis => Some(UnixTime::from_millis(millis)),
        }
    }

    fn record_allowed(&self, now: UnixTime) {
        // An allowed request is a use too; the time is at least 1 ms so it is never "never".
        let millis = now.as_millis().clamp(1, u64::MAX >> 1);
        let word = (millis << 1) | USED_MARK;
        // Requests of a busy session on several threads mostly find this millisecond already
        // recorded: a read keeps the cache line shared where a `fetch_max` would claim it.
        if self.0.load(Ordering::Relaxed) < word {
            self.0.fetch_max(word, Ordering::Relaxed);
        }
    }

    /// Marks the session used. Reads first, so a busy session's cache line is not written
    /// on every request.
    fn mark_used(&self) {
        if self.0.load(Ordering::Relaxed) & USED_MARK == 0 {
            self.0.fetch_or(USED_MARK, Ordering::Relaxed);
        }
    }

    /// Whether the session was used since the last sweep; clears the mark.
    fn take_used_mark(&self) -> bool {
        self.0.fetch_and(!USED_MARK, Ordering::Relaxed) & USED_MARK != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_hash_is_stable_and_never_the_token() {
        let token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln";
        let short = SessionKey::of_token(token).short();
        assert_eq!(short.as_str().len(), 16);
        assert_eq!(short, SessionKey::of_token(token).short());
        assert_ne!(short, SessionKey::of_token("other").short());
        assert!(!token.contains(short.as_str()));
    }

    #[test]
    fn activity_keeps_the_latest_allowed_time_and_the_used_mark_apart() {
        let activity = Activity::default();
        assert_eq!(activity.last_allowed(), None);
        assert!(!activity.take_used_mark());
        activity.mark_used();
        assert_eq!(
            activity.last_allowed(),
            None,
            "a lookup is not an allowed request"
        );
        assert!(activity.take_used_mark());
        assert!(!activity.take_used_mark(), "taking the mark clears it");
        activity.record_allowed(UnixTime::from_millis(5_000));
        activity.record_allowed(UnixTime::from_millis(4_000));
        assert_eq!(activity.last_allowed(), Some(UnixTime::from_millis(5_000)));
        assert!(
            activity.take_used_mark(),
            "an allowed request marks the session used"
        );
        assert_eq!(activity.last_allowed(), Some(UnixTime::from_millis(5_000)));
        activity.record_allowed(UnixTime::from_millis(0));
        assert_eq!(activity.last_allowed(), Some(UnixTime::from_millis(5_000)));
    }
}
