//! The receiver: verify a SET, interpret its events, remember its `jti`, store the revocations.
//!
//! The order matters. Everything that can refuse a SET (signature, claims, events, subjects)
//! runs before anything changes, so a refused SET leaves no trace. The `jti` is claimed before
//! storing, so concurrent duplicates apply once, and released when storing fails, so the
//! transmitter's retry is applied rather than mistaken for a replay.

use std::collections::HashMap;
use std::sync::Arc;

use super::SetError;
use super::events::{self, Interpretation};
use super::replay::ReplayGuard;
use super::settings::SsfSettings;
use super::verify::{SetVerifier, Transmitter};
use crate::keys::KeyFetchError;
use crate::keys::source::{fetch, http_client};
use crate::revocation::{Revocations, StoreError};
use sessiongate_check::budget::{BudgetLimits, CallerKey, Rate, Throttled, VerificationBudget};
use sessiongate_core::time::UnixTime;

/// Most `jti`s remembered per transmitter (see [`super::replay`]): a few minutes of a busy
/// identity provider's events, a few MiB at most.
const REPLAY_CAPACITY: u64 = 100_000;

/// What became of an accepted SET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receipt {
    /// Its events were applied: this many revocations are now durable.
    Applied {
        /// Revocations stored.
        revocations: usize,
    },
    /// Its `jti` was seen already: acknowledged, nothing done.
    Replayed,
}

/// Why a SET was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The SET is refused (RFC 8935 error); nothing changed.
    #[error(transparent)]
    Refused(#[from] SetError),
    /// The revocations could not be stored; the transmitter should retry.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The sender spent its verification budget; it may retry after the delay.
    #[error("too many SETs to verify from this source; retry in {:?}", .0.retry_after)]
    Throttled(Throttled),
}

/// Why the receiver could not be set up from configuration.
#[derive(Debug, thiserror::Error)]
pub enum SsfSetupError {
    /// A transmitter's JWKS could not be loaded.
    #[error("ssf transmitter {issuer}: {source}")]
    Keys {
        /// The transmitter.
        issuer: String,
        /// What went wrong.
        source: KeyFetchError,
    },
}

/// The Shared Signals receiver: trusted transmitters, their replay guards, and the revocations
/// their events feed.
#[derive(Debug)]
pub struct SsfReceiver {
    verifier: SetVerifier,
    replay: HashMap<Arc<str>, ReplayGuard>,
    revocations: Arc<Revocations>,
    /// Signature verifications per sending address and in all: the push endpoint has no other
    /// authentication, so anyone who can reach it can make us verify.
    budget: VerificationBudget,
}

/// The push endpoint's default verification budget (`limits.ssf_verifications`): a mass
/// logout is a burst of SETs from one transmitter, which retries after `Retry-After`; one
/// source cannot make us verify more than 100 SETs a second (burst 1,000), nor all sources
/// more than 1,000 (burst 2,000).
pub const PUSH_BUDGET: BudgetLimits = BudgetLimits {
    per_caller: Rate {
        per_second: 100,
        burst: 1000,
    },
    total: Rate {
        per_second: 1000,
        burst: 2000,
    },
    callers: 10_000,
};

impl SsfReceiver {
    /// A receiver for the configured transmitters, loading their keys now (a `jwks_uri` is
    /// fetched once, at start-up: transmitter keys are not refreshed while running, so a
    /// transmitter that rotates its key needs sessiongate restarted).
    pub async fn new(
        settings: &SsfSettings,
        revocations: Arc<Revocations>,
    ) -> Result<SsfReceiver, SsfSetupError> {
        let client = http_client();
        let mut transmitters = Vec::new();
        for transmitter in &settings.transmitters {
            let keys = fetch(&transmitter.keys, &client)
                .await
                .map_err(|source| SsfSetupError::Keys {
                    issuer: transmitter.issuer.clone(),
                    source,
                })?
                .jwks;
            for skipped in &keys.skipped {
                tracing::warn!(transmitter = %transmitter.issuer, "{skipped}");
            }
            transmitters.push(Transmitter::new(
                &transmitter.issuer,
                &transmitter.audience,
                keys.keys,
                transmitter.issuers.iter().cloned(),
            ));
        }
        Ok(SsfReceiver::with_transmitters(transmitters, revocations))
    }

    /// A receiver for `transmitters` (already holding their keys).
    pub fn with_transmitters(
        transmitters: Vec<Transmitter>,
        revocations: Arc<Revocations>,
    ) -> SsfReceiver {
        let replay = transmitters
            .iter()
            .map(|t| (Arc::clone(&t.issuer), ReplayGuard::new(REPLAY_CAPACITY)))
            .collect();
        SsfReceiver {
            verifier: SetVerifier::new(transmitters),
            replay,
            revocations,
            budget: VerificationBudget::new(PUSH_BUDGET),
        }
    }

    /// Verifies SETs within `limits` instead of [`PUSH_BUDGET`].
    pub fn with_budget(mut self, limits: BudgetLimits) -> SsfReceiver {
        self.budget = VerificationBudget::new(limits);
        self
    }

    /// Receives the compact SET `set` at `now` from an unidentified source (tests, tools).
    pub async fn receive(&self, set: &str, now: UnixTime) -> Result<Receipt, ReceiveError> {
        self.receive_from(set, &CallerKey::Unknown, now).await
    }

    /// Receives the compact SET `set`, sent by `source`, at `now`. `Ok` means the transmitter
    /// may forget it: its revocations are durable and apply to the next request of every
    /// matching session. Every check but the signature runs first; the signature is verified
    /// only within `source`'s budget.
    pub async fn receive_from(
        &self,
        set: &str,
        source: &CallerKey,
        now: UnixTime,
    ) -> Result<Receipt, ReceiveError> {
        let prechecked = self.verifier.precheck(set, now)?;
        self.budget
            .try_spend(source, now)
            .map_err(ReceiveError::Throttled)?;
        let event = prechecked.verify_signature()?;
        let Interpretation {
            revocations,
            unchanged,
        } = events::interpret(&event, now).inspect_err(|refused| {
            if let SetError::AccessDenied(why) = refused {
                tracing::warn!(transmitter = %event.issuer, jti = %event.jti, "SET refused, nothing applied: {why}");
            }
        })?;
        let guard = &self.replay[&event.issuer];
        if !guard.claim(&event.jti) {
            tracing::info!(transmitter = %event.issuer, jti = %event.jti, "replayed SET ignored");
            return Ok(Receipt::Replayed);
        }
        for (event_type, why) in &unchanged {
            tracing::info!(transmitter = %event.issuer, jti = %event.jti, event = %event_type, "SET event changes nothing: {why}");
        }
        let count = revocations.len();
        for revocation in revocations {
            let reason = revocation.reason.clone();
            let selector = format!("{:?}", revocation.selector);
            if let Err(error) = self.revocations.revoke(revocation).await {
                guard.release(&event.jti);
                return Err(error.into());
            }
            tracing::info!(transmitter = %event.issuer, jti = %event.jti, event = %reason, selector = %selector, "SET event applied");
        }
        Ok(Receipt::Applied { revocations: count })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::revocation::{Effect, Selector};
    use crate::ssf::events::{ASSURANCE_LEVEL_CHANGE, CREDENTIAL_CHANGE};
    use crate::ssf::testing::{
        MemoryStore, OTHER_ISSUER, Set, TOKEN_ISSUER, transmitter, transmitter_for,
    };

    const NOW: u64 = 1_700_000_000;

    async fn receiver() -> (SsfReceiver, MemoryStore) {
        let store = MemoryStore::default();
        let handle = MemoryStore {
            appended: Arc::clone(&store.appended),
            failing: Arc::clone(&store.failing),
            unconfirmed: Arc::clone(&store.unconfirmed),
        };
        let revocations = Revocations::open(
            Box::new(store),
            Duration::from_secs(3600),
            UnixTime::from_secs(NOW),
        )
        .await
        .unwrap();
        (
            SsfReceiver::with_transmitters(vec![transmitter()], Arc::new(revocations)),
            handle,
        )
    }

    fn now() -> UnixTime {
        UnixTime::from_secs(NOW)
    }

    #[tokio::test]
    async fn an_accepted_set_is_stored_and_applied() {
        let (receiver, store) = receiver().await;
        let receipt = receiver.receive(&Set::at(NOW).sign(), now()).await.unwrap();
        assert_eq!(receipt, Receipt::Applied { revocations: 1 });
        let stored = store.appended.lock().unwrap().clone();
        assert_eq!(
            stored[0].selector,
            Selector::Subject {
                issuer: TOKEN_ISSUER.into(),
                sub: "alice".into()
            }
        );
        assert_eq!(receiver.revocations.current().len(), 1);
    }

    #[tokio::test]
    async fn a_replayed_set_is_acknowledged_and_changes_nothing() {
        let (receiver, store) = receiver().await;
        let set = Set::at(NOW).sign();
        receiver.receive(&set, now()).await.unwrap();
        let again = receiver.receive(&set, now()).await.unwrap();
        assert_eq!(again, Receipt::Replayed);
        // Even re-signed with other events, a seen jti is a replay.
        let other = Set::at(NOW).event(CREDENTIAL_CHANGE, json!({})).sign();
        assert_eq!(
            receiver.receive(&other, now()).await.unwrap(),
            Receipt::Replayed
        );
        assert_eq!(store.appended.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_refused_set_changes_nothing_and_its_jti_stays_usable() {
        let (receiver, store) = receiver().await;
        let refused = receiver
            .receive(&Set::at(NOW).signed_by_untrusted_key(), now())
            .await
            .unwrap_err();
        assert!(matches!(refused, ReceiveError::Refused(_)));
        let bad_event = Set::at(NOW).without("sub_id").sign();
        assert!(receiver.receive(&bad_event, now()).await.is_err());
        assert!(store.appended.lock().unwrap().is_empty());
        assert!(receiver.revocations.current().is_empty());
        assert_eq!(
            receiver.receive(&Set::at(NOW).sign(), now()).await.unwrap(),
            Receipt::Applied { revocations: 1 }
        );
    }

    #[tokio::test]
    async fn a_set_about_another_issuers_user_is_access_denied_and_changes_nothing() {
        let (receiver, store) = receiver().await;
        let about_other = Set::at(NOW).claim(
            "sub_id",
            json!({"format": "iss_sub", "iss": OTHER_ISSUER, "sub": "alice"}),
        );
        let refused = receiver
            .receive(&about_other.sign(), now())
            .await
            .unwrap_err();
        let ReceiveError::Refused(error) = refused else {
            panic!("expected a refusal, got {refused:?}")
        };
        assert_eq!(error.code(), "access_denied");
        assert!(error.to_string().contains(OTHER_ISSUER), "{error}");
        assert!(store.appended.lock().unwrap().is_empty());
        assert!(receiver.revocations.current().is_empty());
        // The same SET from a transmitter configured for both issuers is applied.
        let both = SsfReceiver::with_transmitters(
            vec![transmitter_for(&[TOKEN_ISSUER, OTHER_ISSUER])],
            Arc::clone(&receiver.revocations),
        );
        assert_eq!(
            both.receive(&about_other.sign(), now()).await.unwrap(),
            Receipt::Applied { revocations: 1 }
        );
    }

    #[tokio::test]
    async fn an_email_subject_is_stored_scoped_to_the_transmitters_issuers() {
        let (receiver, store) = receiver().await;
        let set = Set::at(NOW)
            .claim(
                "sub_id",
                json!({"format": "email", "email": "alice@example.com"}),
            )
            .sign();
        receiver.receive(&set, now()).await.unwrap();
        let stored = store.appended.lock().unwrap().clone();
        assert_eq!(
            stored[0].issuers.as_deref(),
            Some(&[Arc::from(TOKEN_ISSUER)][..])
        );
    }

    #[tokio::test]
    async fn a_store_failure_is_not_acknowledged_and_the_retry_applies() {
        let (receiver, store) = receiver().await;
        store.failing.store(true, Ordering::SeqCst);
        let set = Set::at(NOW).sign();
        assert!(matches!(
            receiver.receive(&set, now()).await,
            Err(ReceiveError::Store(_))
        ));
        assert!(receiver.revocations.current().is_empty());
        store.failing.store(false, Ordering::SeqCst);
        assert_eq!(
            receiver.receive(&set, now()).await.unwrap(),
            Receipt::Applied { revocations: 1 }
        );
    }

    #[tokio::test]
    async fn assurance_level_change_makes_old_logins_reauthenticate() {
        let (receiver, _store) = receiver().await;
        let set = Set::at(NOW)
            .event(ASSURANCE_LEVEL_CHANGE, json!({"event_timestamp": NOW}))
            .sign();
        receiver.receive(&set, now()).await.unwrap();
        let entry = receiver.revocations.current().entries()[0].clone();
        assert_eq!(entry.effect, Effect::RequireReauthentication);
    }
}
