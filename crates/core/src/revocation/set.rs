//! The in-memory revocation index the decision reads on every request.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Effect, Revocation, Selector};
use crate::time::UnixTime;
use crate::token::VerifiedToken;

/// The latest cut-off per effect for one selector: several revocations of the same subject
/// collapse into one entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Cutoffs {
    revoke: Option<UnixTime>,
    reauthenticate: Option<UnixTime>,
}

impl Cutoffs {
    fn raise(&mut self, effect: Effect, to: UnixTime) {
        let slot = match effect {
            Effect::Revoke => &mut self.revoke,
            Effect::RequireReauthentication => &mut self.reauthenticate,
        };
        *slot = Some(slot.map_or(to, |current| current.max(to)));
    }

    fn judge(&self, token: &VerifiedToken) -> RevocationCheck {
        // A token without iat is denied by the age rule anyway; here it counts as old.
        let issued = token.issued_at.unwrap_or(UnixTime::EPOCH);
        if self.revoke.is_some_and(|cutoff| issued <= cutoff) {
            return RevocationCheck::Revoked;
        }
        let authenticated = token.auth_time.unwrap_or(issued);
        if self
            .reauthenticate
            .is_some_and(|cutoff| authenticated <= cutoff)
        {
            return RevocationCheck::ReauthenticationRequired;
        }
        RevocationCheck::Clear
    }
}

/// Whether a session is affected by a revocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RevocationCheck {
    /// No revocation applies.
    #[default]
    Clear,
    /// Revoked: deny as `revoked`.
    Revoked,
    /// The user must authenticate again (assurance level changed).
    ReauthenticationRequired,
}

type ByIssuer = HashMap<Arc<str>, HashMap<Box<str>, Cutoffs>>;

/// Cut-offs keyed by a value that names no issuer (a `client_id`, a workload, an `email`):
/// those of unscoped revocations, which apply to tokens of any issuer, and those of scoped ones
/// (see [`Revocation::issuers`]), filed under each issuer of their scope.
#[derive(Clone, Debug, Default)]
struct AnyIssuer {
    everywhere: HashMap<Box<str>, Cutoffs>,
    within: ByIssuer,
}

impl AnyIssuer {
    fn raise(&mut self, scope: Option<&[Arc<str>]>, value: &str, effect: Effect, cutoff: UnixTime) {
        match scope {
            None => self
                .everywhere
                .entry(value.into())
                .or_default()
                .raise(effect, cutoff),
            Some(issuers) => {
                for issuer in issuers {
                    self.within
                        .entry(Arc::clone(issuer))
                        .or_default()
                        .entry(value.into())
                        .or_default()
                        .raise(effect, cutoff);
                }
            }
        }
    }

    /// The cut-offs that apply to `value` on a token of `issuer`.
    fn get(&self, issuer: &str, value: Option<&str>) -> [Option<Cutoffs>; 2] {
        let Some(value) = value else {
            return [None, None];
        };
        [
            self.everywhere.get(value).copied(),
            self.within
                .get(issuer)
                .and_then(|values| values.get(value))
                .copied(),
        ]
    }
}

/// Every live revocation, indexed by what a token carries. Immutable: adding an entry builds a
/// new set, so requests never lock.
#[derive(Clone, Debug, Default)]
pub struct RevocationSet {
    by_token_id: ByIssuer,
    by_session: ByIssuer,
    by_subject: ByIssuer,
    by_client: AnyIssuer,
    by_workload: AnyIssuer,
    by_email: AnyIssuer,
    by_issuer: HashMap<Arc<str>, Cutoffs>,
    entries: Vec<Revocation>,
}

impl RevocationSet {
    /// A set holding `revocations`, minus those already past `forget` (see
    /// [`Revocation::forget_after`]).
    pub fn from_entries(
        revocations: impl IntoIterator<Item = Revocation>,
        live: impl Fn(&Revocation) -> bool,
    ) -> RevocationSet {
        let mut set = RevocationSet::default();
        for revocation in revocations.into_iter().filter(|r| live(r)) {
            set.index(revocation);
        }
        set
    }

    /// This set plus `revocation`.
    pub fn with(&self, revocation: Revocation) -> RevocationSet {
        let mut next = self.clone();
        next.index(revocation);
        next
    }

    /// This set without the entries `live` rejects; `None` when nothing would change.
    pub fn pruned(&self, live: impl Fn(&Revocation) -> bool) -> Option<RevocationSet> {
        if self.entries.iter().all(&live) {
            return None;
        }
        Some(RevocationSet::from_entries(
            self.entries.iter().cloned(),
            live,
        ))
    }

    /// Every live revocation, oldest first.
    pub fn entries(&self) -> &[Revocation] {
        &self.entries
    }

    /// Number of live revocations.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is revoked (the common case, checked first on the hot path).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn index(&mut self, revocation: Revocation) {
        let (effect, cutoff) = (revocation.effect, revocation.issued_before);
        let scope = revocation.issuers.as_deref();
        let per_issuer = |map: &mut ByIssuer, issuer: &Arc<str>, value: &str| {
            // A selector naming an issuer outside its own scope matches nothing.
            if revocation.reaches(issuer) {
                map.entry(Arc::clone(issuer))
                    .or_default()
                    .entry(value.into())
                    .or_default()
                    .raise(effect, cutoff);
            }
        };
        match &revocation.selector {
            Selector::TokenId { issuer, jti } => per_issuer(&mut self.by_token_id, issuer, jti),
            Selector::Session { issuer, sid } => per_issuer(&mut self.by_session, issuer, sid),
            Selector::Subject { issuer, sub } => per_issuer(&mut self.by_subject, issuer, sub),
            Selector::Client { client_id } => {
                self.by_client.raise(scope, client_id, effect, cutoff)
            }
            Selector::Workload { spiffe_id } => {
                self.by_workload.raise(scope, spiffe_id, effect, cutoff)
            }
            Selector::Email { email } => {
                self.by_email
                    .raise(scope, &email.to_ascii_lowercase(), effect, cutoff)
            }
            Selector::Issuer { issuer } => {
                if revocation.reaches(issuer) {
                    self.by_issuer
                        .entry(Arc::clone(issuer))
                        .or_default()
                        .raise(effect, cutoff)
                }
            }
        }
        self.entries.push(revocation);
    }

    /// Whether `token`, presented by the workload `caller` (its SPIFFE ID, if any), is revoked.
    /// A revocation beats a re-authentication requirement.
    pub fn check(&self, token: &VerifiedToken, caller: Option<&str>) -> RevocationCheck {
        if self.is_empty() {
            return RevocationCheck::Clear;
        }
        let issuer: &str = &token.issuer;
        let in_issuer = |map: &ByIssuer, value: Option<&str>| {
            value
                .and_then(|v| map.get(issuer).and_then(|values| values.get(v)))
                .copied()
        };
        let [client, client_within] = self.by_client.get(issuer, token.client_id.as_deref());
        let [workload, workload_within] = self.by_workload.get(issuer, caller);
        let [email, email_within] = self.by_email.get(issuer, token.email());
        let candidates = [
            in_issuer(&self.by_token_id, token.token_id()),
            in_issuer(&self.by_session, token.session_id()),
            in_issuer(&self.by_subject, token.subject()),
            client,
            client_within,
            workload,
            workload_within,
            email,
            email_within,
            self.by_issuer.get(issuer).copied(),
        ];
        let mut verdict = RevocationCheck::Clear;
        for cutoffs in candidates.iter().flatten() {
            match cutoffs.judge(token) {
                RevocationCheck::Revoked => return RevocationCheck::Revoked,
                RevocationCheck::ReauthenticationRequired => {
                    verdict = RevocationCheck::ReauthenticationRequired
                }
                RevocationCheck::Clear => {}
            }
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{Confirmation, Identifiers, KeyHandle, Scopes};

    const ISSUER: &str = "https://idp";

    fn token(iat: u64) -> VerifiedToken {
        let key = KeyHandle::new("test-es256".into());
        VerifiedToken {
            issuer: ISSUER.into(),
            key,
            ids: Identifiers::new(
                Some("alice"),
                Some("j1"),
                Some("s1"),
                Some("alice@example.com"),
            ),
            client_id: Some("shop-frontend".into()),
            issued_at: Some(UnixTime::from_secs(iat)),
            expires_at: UnixTime::from_secs(iat + 600),
            not_before: None,
            auth_time: None,
            scopes: Scopes::default(),
            binding_claim: None,
            confirmation: Confirmation::None,
        }
    }

    fn revoke(selector: Selector, before: u64) -> Revocation {
        Revocation {
            selector,
            issued_before: UnixTime::from_secs(before),
            effect: Effect::Revoke,
            recorded_at: UnixTime::from_secs(before),
            origin: "test".into(),
            reason: "".into(),
            issuers: None,
            retain_until: None,
        }
    }

    fn all_selectors() -> Vec<Selector> {
        vec![
            Selector::TokenId {
                issuer: ISSUER.into(),
                jti: "j1".into(),
            },
            Selector::Session {
                issuer: ISSUER.into(),
                sid: "s1".into(),
            },
            Selector::Subject {
                issuer: ISSUER.into(),
                sub: "alice".into(),
            },
            Selector::Client {
                client_id: "shop-frontend".into(),
            },
            Selector::Workload {
                spiffe_id: "spiffe://c/ns/a".into(),
            },
            Selector::Email {
                email: "Alice@Example.com".into(),
            },
            Selector::Issuer {
                issuer: ISSUER.into(),
            },
        ]
    }

    #[test]
    fn every_selector_revokes_tokens_issued_up_to_its_cutoff() {
        for selector in all_selectors() {
            let set = RevocationSet::default().with(revoke(selector.clone(), 1000));
            assert_eq!(
                set.check(&token(1000), Some("spiffe://c/ns/a")),
                RevocationCheck::Revoked,
                "{selector:?}"
            );
            assert_eq!(
                set.check(&token(1001), Some("spiffe://c/ns/a")),
                RevocationCheck::Clear,
                "{selector:?}"
            );
        }
    }

    #[test]
    fn selectors_do_not_leak_to_other_values_or_issuers() {
        for selector in [
            Selector::TokenId {
                issuer: ISSUER.into(),
                jti: "j2".into(),
            },
            Selector::TokenId {
                issuer: "https://other".into(),
                jti: "j1".into(),
            },
            Selector::Subject {
                issuer: "https://other".into(),
                sub: "alice".into(),
            },
            Selector::Subject {
                issuer: ISSUER.into(),
                sub: "bob".into(),
            },
            Selector::Workload {
                spiffe_id: "spiffe://c/ns/b".into(),
            },
            Selector::Email {
                email: "bob@example.com".into(),
            },
            Selector::Issuer {
                issuer: "https://other".into(),
            },
        ] {
            let set = RevocationSet::default().with(revoke(selector.clone(), 1000));
            assert_eq!(
                set.check(&token(900), Some("spiffe://c/ns/a")),
                RevocationCheck::Clear,
                "{selector:?}"
            );
        }
    }

    #[test]
    fn a_scoped_revocation_reaches_only_tokens_of_its_issuers() {
        for selector in all_selectors() {
            let mut scoped = revoke(selector.clone(), 1000);
            scoped.issuers = Some(vec![Arc::from(ISSUER), Arc::from("https://third")].into());
            let set = RevocationSet::default().with(scoped.clone());
            assert_eq!(
                set.check(&token(1000), Some("spiffe://c/ns/a")),
                RevocationCheck::Revoked,
                "{selector:?} within its scope"
            );
            scoped.issuers = Some(vec![Arc::from("https://other")].into());
            let set = RevocationSet::default().with(scoped);
            assert_eq!(
                set.check(&token(1000), Some("spiffe://c/ns/a")),
                RevocationCheck::Clear,
                "{selector:?} scoped to another issuer"
            );
        }
    }

    #[test]
    fn an_email_scoped_to_one_issuer_leaves_the_same_address_at_another_issuer_alone() {
        let mut scoped = revoke(
            Selector::Email {
                email: "alice@example.com".into(),
            },
            1000,
        );
        scoped.issuers = Some(vec![Arc::from("https://other")].into());
        let set = RevocationSet::default().with(scoped);
        let mut at_other = token(900);
        at_other.issuer = "https://other".into();
        assert_eq!(set.check(&at_other, None), RevocationCheck::Revoked);
        assert_eq!(set.check(&token(900), None), RevocationCheck::Clear);
    }

    #[test]
    fn reauthentication_compares_auth_time() {
        let mut entry = revoke(
            Selector::Subject {
                issuer: ISSUER.into(),
                sub: "alice".into(),
            },
            1000,
        );
        entry.effect = Effect::RequireReauthentication;
        let set = RevocationSet::default().with(entry);
        let mut fresh_login = token(900);
        fresh_login.auth_time = Some(UnixTime::from_secs(1001));
        assert_eq!(set.check(&fresh_login, None), RevocationCheck::Clear);
        let mut old_login = token(1100);
        old_login.auth_time = Some(UnixTime::from_secs(999));
        assert_eq!(
            set.check(&old_login, None),
            RevocationCheck::ReauthenticationRequired
        );
        assert_eq!(
            set.check(&token(900), None),
            RevocationCheck::ReauthenticationRequired,
            "no auth_time: iat counts"
        );
    }

    #[test]
    fn revocation_beats_reauthentication() {
        let mut reauth = revoke(
            Selector::Subject {
                issuer: ISSUER.into(),
                sub: "alice".into(),
            },
            1000,
        );
        reauth.effect = Effect::RequireReauthentication;
        let set = RevocationSet::default().with(reauth).with(revoke(
            Selector::TokenId {
                issuer: ISSUER.into(),
                jti: "j1".into(),
            },
            1000,
        ));
        assert_eq!(set.check(&token(900), None), RevocationCheck::Revoked);
    }

    #[test]
    fn later_cutoffs_extend_earlier_ones() {
        let subject = Selector::Subject {
            issuer: ISSUER.into(),
            sub: "alice".into(),
        };
        let set = RevocationSet::default()
            .with(revoke(subject.clone(), 2000))
            .with(revoke(subject, 1000));
        assert_eq!(set.check(&token(1500), None), RevocationCheck::Revoked);
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn pruning_forgets_entries_no_live_token_can_match() {
        let set = RevocationSet::default()
            .with(revoke(
                Selector::Subject {
                    issuer: ISSUER.into(),
                    sub: "alice".into(),
                },
                1000,
            ))
            .with(revoke(
                Selector::Subject {
                    issuer: ISSUER.into(),
                    sub: "bob".into(),
                },
                5000,
            ));
        let live = |r: &Revocation| r.issued_before > UnixTime::from_secs(2000);
        let pruned = set.pruned(live).unwrap();
        assert_eq!(pruned.len(), 1);
        assert_eq!(pruned.check(&token(900), None), RevocationCheck::Clear);
        assert!(pruned.pruned(live).is_none());
    }
}
