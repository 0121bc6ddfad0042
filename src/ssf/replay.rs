//! Replay protection: the `jti`s of one transmitter's recently accepted SETs.
//!
//! A SET is believed only while its `iat` is within [`MAX_SET_AGE`] (plus skew) of now, so a
//! `jti` needs remembering only that long: an older replay is refused by the age check anyway.
//! That makes the memory bound honest: at most `capacity` entries, each for a few minutes.
//!
//! Should a transmitter ever push more than `capacity` SETs within that window, the cache may
//! forget a `jti` early; a replay of it is then applied again, which is harmless because
//! revocations only ever tighten (applying one twice changes nothing a token sees).

use std::time::Duration;

use moka::sync::Cache;

use super::verify::{MAX_SET_AGE, SET_CLOCK_SKEW};

/// How long a `jti` is remembered: as long as a SET carrying it could pass the age check.
pub const REPLAY_WINDOW: Duration = MAX_SET_AGE.saturating_add(SET_CLOCK_SKEW);

/// The recently accepted `jti`s of one transmitter.
pub struct ReplayGuard {
    seen: Cache<Box<str>, ()>,
}

impl ReplayGuard {
    /// Remembers at most `capacity` `jti`s, each for [`REPLAY_WINDOW`].
    pub fn new(capacity: u64) -> ReplayGuard {
        ReplayGuard {
            seen: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(REPLAY_WINDOW)
                .build(),
        }
    }

    /// Claims `jti`: true the first time (the caller applies the SET), false for a replay.
    /// Atomic, so two concurrent deliveries of one SET apply it once.
    pub fn claim(&self, jti: &str) -> bool {
        self.seen.entry(jti.into()).or_insert(()).is_fresh()
    }

    /// Forgets `jti` after applying its SET failed, so the transmitter's retry is applied
    /// rather than taken for a replay.
    pub fn release(&self, jti: &str) {
        self.seen.invalidate(jti);
    }
}

impl std::fmt::Debug for ReplayGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayGuard")
            .field("seen", &self.seen.entry_count())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jti_is_fresh_once() {
        let guard = ReplayGuard::new(100);
        assert!(guard.claim("a"));
        assert!(!guard.claim("a"));
        assert!(guard.claim("b"));
    }

    #[test]
    fn a_released_jti_is_fresh_again() {
        let guard = ReplayGuard::new(100);
        assert!(guard.claim("a"));
        guard.release("a");
        assert!(guard.claim("a"));
    }

    #[test]
    fn the_window_outlasts_the_age_a_set_may_have() {
        assert!(REPLAY_WINDOW >= MAX_SET_AGE + SET_CLOCK_SKEW);
    }
}
