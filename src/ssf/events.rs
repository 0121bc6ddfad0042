//! CAEP events → revocations. Pure: the verified SET and the clock in, revocations out.
//!
//! | event | effect |
//! |---|---|
//! | `session-revoked` | revoke the session (`sid`) if the subject names one, else the user |
//! | `credential-change`, `token-claims-change` | revoke the user's tokens issued up to the event |
//! | `assurance-level-change` | tokens whose `auth_time` is up to the event need re-authentication |
//! | `device-compliance-change` to `not-compliant` | revoke the user's tokens (`compliant`: nothing) |
//! | anything else | nothing; acknowledged and logged, so a transmitter may send more than we act on |
//!
//! Every revocation is scoped to the token issuers the transmitter acts for
//! ([`crate::revocation::Revocation::issuers`]); a subject naming another issuer refuses the
//! whole SET as `access_denied` (see [`super::subject`]).
//!
//! The cut-off is the event's `event_timestamp` (else the SET's `iat`): a token issued after the
//! event (the user signed in again, with the new credential or from a compliant device) is not
//! touched. The cut-off never lies further ahead than our clock plus skew, so a transmitter with
//! a wild clock cannot pre-revoke sessions that do not exist yet.

use serde_json::{Map, Value};

use super::SetError;
use super::subject::{self, Subject};
use super::verify::{SET_CLOCK_SKEW, SecurityEvent};
use crate::revocation::{Effect, Revocation, Selector};
use sessiongate_core::time::UnixTime;

const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";
/// CAEP 1.0 `session-revoked`.
pub const SESSION_REVOKED: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// CAEP 1.0 `credential-change`.
pub const CREDENTIAL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/credential-change";
/// CAEP 1.0 `token-claims-change`.
pub const TOKEN_CLAIMS_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/token-claims-change";
/// CAEP 1.0 `assurance-level-change`.
pub const ASSURANCE_LEVEL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/assurance-level-change";
/// CAEP 1.0 `device-compliance-change`.
pub const DEVICE_COMPLIANCE_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/device-compliance-change";

/// What a SET asks for: the revocations to store, and the events that change nothing (logged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interpretation {
    /// To store, in order; the SET is acknowledged only once all are durable.
    pub revocations: Vec<Revocation>,
    /// Events understood or not, that change nothing, with why.
    pub unchanged: Vec<(String, &'static str)>,
}

/// Interprets every event of `set`, received at `now`. All or nothing: one malformed event
/// refuses the whole SET, so a refused SET never changed state.
pub fn interpret(set: &SecurityEvent, now: UnixTime) -> Result<Interpretation, SetError> {
    let mut interpretation = Interpretation::default();
    for (event_type, payload) in &set.events {
        let Value::Object(payload) = payload else {
            return Err(SetError::invalid(format!(
                "event {event_type} is not a JSON object"
            )));
        };
        let Some(kind) = Kind::of(event_type) else {
            interpretation
                .unchanged
                .push((event_type.clone(), "event type not acted on"));
            continue;
        };
        let cutoff = event_time(payload, set.issued_at, now)?;
        let subject = subject_of(set, payload)?;
        let effect = match kind {
            Kind::DeviceComplianceChange => match payload.get("current_status") {
                Some(Value::String(status)) if status == "not-compliant" => Effect::Revoke,
                Some(Value::String(status)) if status == "compliant" => {
                    interpretation
                        .unchanged
                        .push((event_type.clone(), "device is compliant"));
                    continue;
                }
                _ => {
                    return Err(SetError::invalid(
                        "device-compliance-change needs current_status compliant or not-compliant",
                    ));
                }
            },
            Kind::AssuranceLevelChange => Effect::RequireReauthentication,
            Kind::SessionRevoked | Kind::CredentialChange | Kind::TokenClaimsChange => {
                Effect::Revoke
            }
        };
        let selectors = kind.pick(subject);
        if selectors.is_empty() {
            return Err(SetError::invalid(format!(
                "the subject of {event_type} names nothing to act on"
            )));
        }
        for selector in selectors {
            interpretation.revocations.push(Revocation {
                selector,
                issued_before: cutoff,
                effect,
                recorded_at: now,
                origin: format!("ssf:{}", set.issuer).into(),
                reason: event_type.as_str().into(),
                // Whatever the selector, never beyond the issuers the transmitter acts for: an
                // `email` names no issuer of its own.
                issuers: Some(set.acts_for.iter().cloned().collect()),
                retain_until: None,
            });
        }
    }
    Ok(interpretation)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    SessionRevoked,
    CredentialChange,
    TokenClaimsChange,
    AssuranceLevelChange,
    DeviceComplianceChange,
}

impl Kind {
    fn of(event_type: &str) -> Option<Kind> {
        match event_type.strip_prefix(CAEP)? {
            "session-revoked" => Some(Kind::SessionRevoked),
            "credential-change" => Some(Kind::CredentialChange),
            "token-claims-change" => Some(Kind::TokenClaimsChange),
            "assurance-level-change" => Some(Kind::AssuranceLevelChange),
            "device-compliance-change" => Some(Kind::DeviceComplianceChange),
            _ => None,
        }
    }

    /// The facet of the subject the event is about: a revoked session is that session alone
    /// (the user's other sessions live on); a changed credential, claim set, assurance level
    /// or device belongs to the user, so all their sessions are affected. Empty when the
    /// subject names none of them.
    fn pick(self, subject: Subject) -> Vec<Selector> {
        let Subject {
            user,
            session,
            token,
        } = subject;
        let preference = match self {
            Kind::SessionRevoked => [session, token, user],
            _ => [user, session, token],
        };
        preference
            .into_iter()
            .find(|facet| !facet.is_empty())
            .unwrap_or_default()
    }
}

/// The SSF 1.0 top-level `sub_id`, else the event's own `subject` (CAEP drafts before SSF 1.0).
fn subject_of(set: &SecurityEvent, payload: &Map<String, Value>) -> Result<Subject, SetError> {
    let identifier = set
        .sub_id
        .as_ref()
        .or_else(|| payload.get("subject"))
        .ok_or_else(|| SetError::invalid("event has no subject (sub_id or subject)"))?;
    subject::parse(identifier, &set.acts_for)
}

fn event_time(
    payload: &Map<String, Value>,
    issued_at: UnixTime,
    now: UnixTime,
) -> Result<UnixTime, SetError> {
    let at = match payload.get("event_timestamp") {
        None => issued_at,
        Some(Value::Number(n)) => n
            .as_f64()
            .map(UnixTime::from_numeric_date)
            .ok_or_else(|| SetError::invalid("event_timestamp is not a number"))?,
        Some(_) => return Err(SetError::invalid("event_timestamp is not a number")),
    };
    Ok(at.min(now.plus(SET_CLOCK_SKEW)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    const TRANSMITTER: &str = "https://transmitter.example.test";
    const NOW: u64 = 1_700_000_000;

    /// The token issuer the transmitter acts for.
    const IDP: &str = "https://idp";

    fn set(events: Value, sub_id: Option<Value>) -> SecurityEvent {
        SecurityEvent {
            issuer: Arc::from(TRANSMITTER),
            acts_for: Arc::from([Arc::from(IDP)]),
            jti: "j".into(),
            issued_at: UnixTime::from_secs(NOW - 10),
            sub_id,
            events: events.as_object().unwrap().clone(),
        }
    }

    fn alice() -> Value {
        json!({"format": "iss_sub", "iss": "https://idp", "sub": "alice"})
    }

    fn alice_selector() -> Selector {
        Selector::Subject {
            issuer: "https://idp".into(),
            sub: "alice".into(),
        }
    }

    fn interpret_one(event_type: &str, payload: Value) -> Result<Interpretation, SetError> {
        interpret(
            &set(json!({ event_type: payload }), Some(alice())),
            UnixTime::from_secs(NOW),
        )
    }

    fn only(interpretation: Interpretation) -> Revocation {
        assert_eq!(interpretation.revocations.len(), 1, "{interpretation:?}");
        interpretation.revocations.into_iter().next().unwrap()
    }

    #[test]
    fn session_revoked_revokes_the_user_up_to_the_event() {
        let got =
            only(interpret_one(SESSION_REVOKED, json!({"event_timestamp": NOW - 20})).unwrap());
        assert_eq!(
            got,
            Revocation {
                selector: alice_selector(),
                issued_before: UnixTime::from_secs(NOW - 20),
                effect: Effect::Revoke,
                recorded_at: UnixTime::from_secs(NOW),
                origin: format!("ssf:{TRANSMITTER}").into(),
                reason: SESSION_REVOKED.into(),
                issuers: Some(vec![Arc::from(IDP)].into()),
                retain_until: None,
            }
        );
    }

    #[test]
    fn session_revoked_of_a_session_revokes_only_that_session() {
        let subject = json!({
            "format": "complex",
            "user": alice(),
            "session": {"format": "opaque", "id": "s-9"}
        });
        let got = interpret(
            &set(json!({ SESSION_REVOKED: {} }), Some(subject)),
            UnixTime::from_secs(NOW),
        );
        assert_eq!(
            only(got.unwrap()).selector,
            Selector::Session {
                issuer: IDP.into(),
                sid: "s-9".into()
            }
        );
    }

    #[test]
    fn credential_and_claims_changes_watermark_the_user() {
        for event in [CREDENTIAL_CHANGE, TOKEN_CLAIMS_CHANGE] {
            let got = only(interpret_one(event, json!({"event_timestamp": NOW - 5})).unwrap());
            assert_eq!(got.selector, alice_selector(), "{event}");
            assert_eq!(got.effect, Effect::Revoke, "{event}");
            assert_eq!(got.issued_before, UnixTime::from_secs(NOW - 5), "{event}");
            assert_eq!(&*got.reason, event);
        }
    }

    #[test]
    fn a_user_event_about_a_complex_subject_picks_the_user() {
        let subject = json!({
            "format": "complex",
            "user": alice(),
            "session": {"format": "opaque", "id": "s-9"}
        });
        let got = interpret(
            &set(json!({ CREDENTIAL_CHANGE: {} }), Some(subject)),
            UnixTime::from_secs(NOW),
        );
        assert_eq!(only(got.unwrap()).selector, alice_selector());
    }

    #[test]
    fn assurance_level_change_requires_reauthentication() {
        let got = only(
            interpret_one(
                ASSURANCE_LEVEL_CHANGE,
                json!({"namespace": "NIST-AAL", "current_level": "nist-aal1", "change_direction": "decrease", "event_timestamp": NOW - 1}),
            )
            .unwrap(),
        );
        assert_eq!(got.effect, Effect::RequireReauthentication);
        assert_eq!(got.issued_before, UnixTime::from_secs(NOW - 1));
        assert_eq!(got.selector, alice_selector());
    }

    #[test]
    fn device_compliance_change_revokes_only_when_not_compliant() {
        let got = only(
            interpret_one(
                DEVICE_COMPLIANCE_CHANGE,
                json!({"previous_status": "compliant", "current_status": "not-compliant"}),
            )
            .unwrap(),
        );
        assert_eq!(got.effect, Effect::Revoke);
        assert_eq!(got.selector, alice_selector());

        let compliant = interpret_one(
            DEVICE_COMPLIANCE_CHANGE,
            json!({"previous_status": "not-compliant", "current_status": "compliant"}),
        )
        .unwrap();
        assert!(compliant.revocations.is_empty());
        assert_eq!(compliant.unchanged.len(), 1);

        for payload in [json!({}), json!({"current_status": "unknown"})] {
            assert_eq!(
                interpret_one(DEVICE_COMPLIANCE_CHANGE, payload)
                    .unwrap_err()
                    .code(),
                "invalid_request"
            );
        }
    }

    #[test]
    fn unknown_event_types_are_accepted_and_change_nothing() {
        for event in [
            "https://schemas.openid.net/secevent/risc/event-type/account-disabled",
            "https://schemas.openid.net/secevent/caep/event-type/session-established",
            "https://schemas.openid.net/secevent/ssf/event-type/verification",
        ] {
            let got = interpret(
                &set(json!({ event: {"state": "x"} }), None),
                UnixTime::from_secs(NOW),
            )
            .unwrap();
            assert!(got.revocations.is_empty(), "{event}");
            assert_eq!(got.unchanged[0].0, event);
        }
    }

    #[test]
    fn the_cutoff_falls_back_to_iat_and_never_runs_ahead_of_our_clock() {
        let got = only(interpret_one(SESSION_REVOKED, json!({})).unwrap());
        assert_eq!(got.issued_before, UnixTime::from_secs(NOW - 10));
        let far =
            only(interpret_one(SESSION_REVOKED, json!({"event_timestamp": NOW + 86_400})).unwrap());
        assert_eq!(
            far.issued_before,
            UnixTime::from_secs(NOW).plus(SET_CLOCK_SKEW)
        );
        assert_eq!(
            interpret_one(SESSION_REVOKED, json!({"event_timestamp": "now"}))
                .unwrap_err()
                .code(),
            "invalid_request"
        );
    }

    #[test]
    fn the_legacy_subject_inside_the_event_is_used_without_sub_id() {
        let got = interpret(
            &set(
                json!({ SESSION_REVOKED: {"subject": {"format": "email", "email": "A@b.c"}} }),
                None,
            ),
            UnixTime::from_secs(NOW),
        );
        assert_eq!(
            only(got.unwrap()).selector,
            Selector::Email {
                email: "a@b.c".into()
            }
        );
    }

    #[test]
    fn jwt_id_subjects_revoke_one_token() {
        let got = interpret(
            &set(
                json!({ TOKEN_CLAIMS_CHANGE: {} }),
                Some(json!({"format": "jwt_id", "iss": "https://idp", "jti": "t-1"})),
            ),
            UnixTime::from_secs(NOW),
        );
        assert_eq!(
            only(got.unwrap()).selector,
            Selector::TokenId {
                issuer: "https://idp".into(),
                jti: "t-1".into()
            }
        );
    }

    #[test]
    fn a_known_event_without_a_usable_subject_refuses_the_whole_set() {
        for (events, sub_id) in [
            (json!({ SESSION_REVOKED: {} }), None),
            (
                json!({ SESSION_REVOKED: {} }),
                Some(json!({"format": "phone_number", "phone_number": "+1"})),
            ),
            (json!({ SESSION_REVOKED: "revoked" }), Some(alice())),
            (
                json!({ CREDENTIAL_CHANGE: {}, DEVICE_COMPLIANCE_CHANGE: {} }),
                Some(alice()),
            ),
        ] {
            let err =
                interpret(&set(events.clone(), sub_id), UnixTime::from_secs(NOW)).unwrap_err();
            assert_eq!(err.code(), "invalid_request", "{events}");
        }
    }

    #[test]
    fn an_email_subject_is_revoked_only_at_the_issuers_the_transmitter_acts_for() {
        let mut event = set(
            json!({ CREDENTIAL_CHANGE: {} }),
            Some(json!({"format": "email", "email": "Alice@Example.com"})),
        );
        event.acts_for = Arc::from([Arc::from(IDP), Arc::from("https://idp/tenant-b")]);
        let got = only(interpret(&event, UnixTime::from_secs(NOW)).unwrap());
        assert_eq!(
            got.selector,
            Selector::Email {
                email: "alice@example.com".into()
            }
        );
        assert_eq!(
            got.issuers.as_deref(),
            Some(&[Arc::from(IDP), Arc::from("https://idp/tenant-b")][..])
        );
    }

    #[test]
    fn an_opaque_subject_is_revoked_at_each_issuer_the_transmitter_acts_for() {
        let mut event = set(
            json!({ SESSION_REVOKED: {} }),
            Some(json!({"format": "opaque", "id": "alice"})),
        );
        event.acts_for = Arc::from([Arc::from(IDP), Arc::from("https://idp/tenant-b")]);
        let got = interpret(&event, UnixTime::from_secs(NOW)).unwrap();
        let selectors: Vec<Selector> = got.revocations.into_iter().map(|r| r.selector).collect();
        assert_eq!(
            selectors,
            [IDP, "https://idp/tenant-b"].map(|issuer| Selector::Subject {
                issuer: issuer.into(),
                sub: "alice".into()
            })
        );
    }

    #[test]
    fn an_event_about_another_issuers_user_refuses_the_whole_set() {
        let other = json!({"format": "iss_sub", "iss": "https://other-idp", "sub": "bob"});
        for events in [
            json!({ SESSION_REVOKED: {} }),
            json!({ CREDENTIAL_CHANGE: {}, ASSURANCE_LEVEL_CHANGE: {} }),
        ] {
            let err = interpret(
                &set(events.clone(), Some(other.clone())),
                UnixTime::from_secs(NOW),
            )
            .unwrap_err();
            assert_eq!(err.code(), "access_denied", "{events}");
        }
        // One event in scope does not carry another out of scope: nothing is applied.
        let mixed = set(
            json!({
                CREDENTIAL_CHANGE: {"subject": alice()},
                SESSION_REVOKED: {"subject": other},
            }),
            None,
        );
        assert_eq!(
            interpret(&mixed, UnixTime::from_secs(NOW))
                .unwrap_err()
                .code(),
            "access_denied"
        );
    }

    #[test]
    fn several_events_yield_several_revocations() {
        let got = interpret(
            &set(
                json!({ CREDENTIAL_CHANGE: {}, ASSURANCE_LEVEL_CHANGE: {} }),
                Some(alice()),
            ),
            UnixTime::from_secs(NOW),
        )
        .unwrap();
        assert_eq!(got.revocations.len(), 2);
    }
}
