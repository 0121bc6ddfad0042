//! Why a cached session would be denied now, whatever the route: the admin API's answer to
//! "what is wrong with this session?".
//!
//! [`decide`](super::decide) stops at the first failed rule of one request on one route. An
//! operator asking about a session wants every session-wide problem at once, and no route is
//! involved, so the same list of rules ([`super::RULES`]) is run to the end without a request:
//! the route rules (per-route authentication age, `cnf`, pin, binding claim, workloads, scopes)
//! have nothing to say, and the token age is judged against the longest age any route accepts.
//! Being the same list, it cannot drift from what requests are told (stale keys included).

use std::time::Duration;

use super::{Clock, Facts, RULES, SessionState};
use crate::deny::Deny;
use crate::policy::SessionRules;
use crate::token::VerifiedToken;

/// Every session-wide reason `token` would be denied at `clock.now`, in the order
/// [`decide`](super::decide) checks them; empty when the session is sound on some route.
/// `longest_token_age` is the largest `max_token_age` of any route
/// (the check crate's `Policy::longest_token_age`).
pub fn session_denials(
    token: &VerifiedToken,
    state: SessionState<'_>,
    session: &SessionRules,
    longest_token_age: Duration,
    clock: Clock,
) -> Vec<Deny> {
    let facts = Facts {
        token,
        state,
        clock,
        session,
        max_token_age: longest_token_age,
        request: None,
    };
    RULES.iter().filter_map(|rule| rule(&facts).err()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deny::DenyReason;
    use crate::revocation::RevocationCheck;
    use crate::time::UnixTime;
    use crate::token::{Confirmation, Identifiers, KeyHandle, Scopes};

    const T0: u64 = 1_800_000_000;

    fn at(seconds: u64) -> UnixTime {
        UnixTime::from_secs(T0 + seconds)
    }

    fn clock(seconds: u64) -> Clock {
        Clock {
            now: at(seconds),
            started_at: at(0),
        }
    }

    /// Issued at T0, expiring an hour later.
    fn token() -> VerifiedToken {
        VerifiedToken {
            issuer: "https://idp".into(),
            key: KeyHandle::new("test-es256".into()),
            ids: Identifiers::new(Some("alice"), None, None, None),
            client_id: None,
            issued_at: Some(at(0)),
            expires_at: at(3600),
            not_before: None,
            auth_time: None,
            scopes: Scopes::default(),
            binding_claim: None,
            confirmation: Confirmation::None,
        }
    }

    fn rules(idle_minutes: Option<u64>) -> SessionRules {
        SessionRules {
            idle_timeout: idle_minutes.map(|m| Duration::from_secs(m * 60)),
            clock_skew: Duration::from_secs(30),
        }
    }

    const FIFTEEN_MINUTES: Duration = Duration::from_secs(900);

    fn reasons(denials: Vec<Deny>) -> Vec<DenyReason> {
        denials.into_iter().map(|d| d.reason).collect()
    }

    #[test]
    fn a_fresh_unrevoked_session_has_nothing_against_it() {
        let denials = session_denials(
            &token(),
            SessionState::default(),
            &rules(None),
            FIFTEEN_MINUTES,
            clock(60),
        );
        assert!(denials.is_empty(), "{denials:?}");
    }

    #[test]
    fn a_revoked_session_says_revoked() {
        let state = SessionState {
            revocation: RevocationCheck::Revoked,
            ..Default::default()
        };
        let denials = session_denials(&token(), state, &rules(None), FIFTEEN_MINUTES, clock(60));
        assert_eq!(reasons(denials), [DenyReason::Revoked]);
    }

    #[test]
    fn a_reauthentication_requirement_says_auth_too_old() {
        let state = SessionState {
            revocation: RevocationCheck::ReauthenticationRequired,
            ..Default::default()
        };
        let denials = session_denials(&token(), state, &rules(None), FIFTEEN_MINUTES, clock(60));
        assert_eq!(reasons(denials), [DenyReason::AuthTooOld]);
    }

    #[test]
    fn every_problem_is_listed_not_just_the_first() {
        let state = SessionState {
            revocation: RevocationCheck::Revoked,
            last_allowed: Some(at(10)),
            ..Default::default()
        };
        let denials = session_denials(
            &token(),
            state,
            &rules(Some(5)),
            FIFTEEN_MINUTES,
            clock(7200),
        );
        assert_eq!(
            reasons(denials),
            [
                DenyReason::Revoked,
                DenyReason::Expired,
                DenyReason::TokenTooOld,
                DenyReason::SessionIdle
            ]
        );
    }

    #[test]
    fn age_is_judged_against_the_longest_route_age() {
        let denials = session_denials(
            &token(),
            SessionState::default(),
            &rules(None),
            FIFTEEN_MINUTES,
            clock(901),
        );
        assert_eq!(reasons(denials), [DenyReason::TokenTooOld]);
        let longer = Duration::from_secs(1800);
        assert!(
            session_denials(
                &token(),
                SessionState::default(),
                &rules(None),
                longer,
                clock(901)
            )
            .is_empty()
        );
    }

    #[test]
    fn an_idle_session_says_session_idle() {
        let state = SessionState {
            last_allowed: Some(at(10)),
            ..Default::default()
        };
        let denials = session_denials(
            &token(),
            state,
            &rules(Some(5)),
            FIFTEEN_MINUTES,
            clock(400),
        );
        assert_eq!(reasons(denials), [DenyReason::SessionIdle]);
    }

    #[test]
    fn an_authentication_in_the_future_is_not_yet_valid() {
        let mut future = token();
        future.auth_time = Some(at(600));
        let denials = session_denials(
            &future,
            SessionState::default(),
            &rules(None),
            FIFTEEN_MINUTES,
            clock(60),
        );
        assert_eq!(reasons(denials), [DenyReason::NotYetValid]);
        future.auth_time = Some(at(90));
        let within_skew = session_denials(
            &future,
            SessionState::default(),
            &rules(None),
            FIFTEEN_MINUTES,
            clock(60),
        );
        assert!(within_skew.is_empty(), "{within_skew:?}");
        future.auth_time = Some(at(600));
        future.issued_at = None;
        let without_iat = session_denials(
            &future,
            SessionState::default(),
            &rules(None),
            FIFTEEN_MINUTES,
            clock(60),
        );
        assert_eq!(
            reasons(without_iat),
            [DenyReason::TokenTooOld, DenyReason::NotYetValid]
        );
    }

    #[test]
    fn a_token_without_iat_or_from_the_future_is_listed() {
        let mut no_iat = token();
        no_iat.issued_at = None;
        let denials = session_denials(
            &no_iat,
            SessionState::default(),
            &rules(None),
            FIFTEEN_MINUTES,
            clock(60),
        );
        assert_eq!(reasons(denials), [DenyReason::TokenTooOld]);
        let mut future = token();
        future.issued_at = Some(at(600));
        future.not_before = Some(at(600));
        let denials = session_denials(
            &future,
            SessionState::default(),
            &rules(None),
            FIFTEEN_MINUTES,
            clock(60),
        );
        assert_eq!(
            reasons(denials),
            [DenyReason::NotYetValid, DenyReason::NotYetValid]
        );
    }
}
