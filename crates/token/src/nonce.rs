//! DPoP server nonces (RFC 9449 section 8): stateless, rotating, and valid across a fleet.
//!
//! A nonce is the HMAC-SHA256, under a secret every replica shares (`dpop.nonce.secret_file`),
//! of the number of the current period (`dpop.nonce.rotate_every`): any replica issues the
//! same nonce for a period and accepts another replica's without talking to it. A nonce is
//! accepted during its own period and the next one, so one issued just before a rotation still
//! works for at least a period. Nothing is stored per client.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::{constant_time, hmac};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use sessiongate_core::dpop::NonceCheck;
use sessiongate_core::time::UnixTime;

/// Domain separation, so the nonce secret can never sign anything else by accident.
const CONTEXT: &[u8] = b"sessiongate dpop nonce v1\0";

/// Issues and checks the fleet's DPoP nonces.
pub struct NonceIssuer {
    key: hmac::Key,
    period_millis: u64,
    /// The nonces of the last period computed and of the one before it: one HMAC per period
    /// rather than per request. A `Mutex` (held for a copy of two `Arc`s, or two HMACs once per
    /// period) because only requests on nonce routes touch it.
    recent: Mutex<Option<Recent>>,
}

#[derive(Clone)]
struct Recent {
    period: u64,
    current: Arc<str>,
    previous: Arc<str>,
}

impl NonceIssuer {
    /// Nonces keyed by `secret`, rotating every `period` (at least a second).
    pub fn new(secret: &[u8], period: Duration) -> NonceIssuer {
        NonceIssuer {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            period_millis: u64::try_from(period.as_millis())
                .unwrap_or(u64::MAX)
                .max(1000),
            recent: Mutex::new(None),
        }
    }

    /// The nonce to hand out at `now`.
    pub fn current(&self, now: UnixTime) -> Arc<str> {
        self.recent(now).current
    }

    /// Whether `nonce` (a proof's, if any) was issued by the fleet in the current or the
    /// previous period at `now`.
    pub fn check(&self, nonce: Option<&str>, now: UnixTime) -> NonceCheck {
        let Some(nonce) = nonce else {
            return NonceCheck::Missing;
        };
        let recent = self.recent(now);
        let matches = |issued: &str| {
            constant_time::verify_slices_are_equal(issued.as_bytes(), nonce.as_bytes()).is_ok()
        };
        if matches(&recent.current) || matches(&recent.previous) {
            NonceCheck::Current
        } else {
            NonceCheck::Missing
        }
    }

    fn recent(&self, now: UnixTime) -> Recent {
        let period = now.as_millis() / self.period_millis;
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match &*recent {
            Some(known) if known.period == period => known.clone(),
            known => {
                let previous = match known {
                    Some(known) if known.period + 1 == period => Arc::clone(&known.current),
                    _ => self.nonce_of(period.saturating_sub(1)),
                };
                let fresh = Recent {
                    period,
                    current: self.nonce_of(period),
                    previous,
                };
                *recent = Some(fresh.clone());
                fresh
            }
        }
    }

    fn nonce_of(&self, period: u64) -> Arc<str> {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(CONTEXT);
        context.update(&period.to_be_bytes());
        URL_SAFE_NO_PAD.encode(context.sign().as_ref()).into()
    }
}

impl std::fmt::Debug for NonceIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceIssuer")
            .field("period_millis", &self.period_millis)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_secs(60);

    fn at(seconds: u64) -> UnixTime {
        UnixTime::from_secs(1_800_000_000 + seconds)
    }

    #[test]
    fn a_nonce_is_valid_for_its_period_and_the_next() {
        let issuer = NonceIssuer::new(b"fleet secret", PERIOD);
        let start = 1_800_000_000 % 60;
        let nonce = issuer.current(at(60 - start));
        assert_eq!(
            issuer.check(Some(&nonce), at(60 - start)),
            NonceCheck::Current
        );
        assert_eq!(
            issuer.check(Some(&nonce), at(119 - start)),
            NonceCheck::Current
        );
        assert_eq!(
            issuer.check(Some(&nonce), at(179 - start)),
            NonceCheck::Current
        );
        assert_eq!(
            issuer.check(Some(&nonce), at(180 - start)),
            NonceCheck::Missing
        );
        assert_ne!(issuer.current(at(120 - start)), nonce, "rotated");
    }

    #[test]
    fn every_replica_with_the_secret_issues_and_accepts_the_same_nonces() {
        let (one, two) = (
            NonceIssuer::new(b"fleet secret", PERIOD),
            NonceIssuer::new(b"fleet secret", PERIOD),
        );
        let nonce = one.current(at(0));
        assert_eq!(two.current(at(0)), nonce);
        assert_eq!(two.check(Some(&nonce), at(0)), NonceCheck::Current);
        let stranger = NonceIssuer::new(b"another secret", PERIOD);
        assert_eq!(stranger.check(Some(&nonce), at(0)), NonceCheck::Missing);
    }

    #[test]
    fn no_nonce_or_a_made_up_one_is_missing() {
        let issuer = NonceIssuer::new(b"fleet secret", PERIOD);
        assert_eq!(issuer.check(None, at(0)), NonceCheck::Missing);
        assert_eq!(issuer.check(Some("guess"), at(0)), NonceCheck::Missing);
        assert_eq!(issuer.check(Some(""), at(0)), NonceCheck::Missing);
    }
}
