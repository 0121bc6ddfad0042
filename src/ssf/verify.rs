//! Security Event Token verification (RFC 8417, as profiled by OpenID SSF 1.0).
//!
//! A SET withdraws trust, so a forged one is a denial-of-service against real users: only a
//! SET signed by a configured transmitter's key, naming that transmitter as `iss` and this
//! receiver in `aud`, typed `secevent+jwt` and fresh, is believed. Pure: the clock is an argument.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::SetError;
use sessiongate_core::time::UnixTime;
use sessiongate_token::{CompactJws, KeySet, SigningAlgorithm, VerificationKey, audience_matches};

/// The oldest `iat` accepted. SETs carry no `exp`; without a bound, a SET captured once could be
/// replayed forever, and the replay cache would have to remember every `jti` forever. Five
/// minutes covers a transmitter's prompt retries (RFC 8935 section 2.1); a transmitter whose
/// delivery backlog is older must re-issue the event.
pub const MAX_SET_AGE: Duration = Duration::from_secs(5 * 60);

/// How far in the future `iat` (and an event's time) may lie: tolerance for the transmitter's
/// clock running ahead of ours.
pub const SET_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// The JOSE `typ` of a SET (RFC 8417 section 2.3); anything else could be an ID or access
/// token replayed as an event.
const SET_TYP: &str = "secevent+jwt";

/// Longest `jti` remembered, bounding the replay cache's memory per entry.
const MAX_JTI_LEN: usize = 256;

/// One trusted transmitter, as configured.
#[derive(Debug)]
pub struct Transmitter {
    /// Its `iss`.
    pub issuer: Arc<str>,
    /// The token issuers whose sessions its events may act on (`ssf.transmitters[].issuers`,
    /// never empty): with several identity providers trusted, one must not be able to log out
    /// another's users.
    pub acts_for: Arc<[Arc<str>]>,
    /// The one `aud` value its SETs must carry (a list of one, as the audience check takes).
    audiences: [Box<str>; 1],
    /// Its signing keys.
    keys: KeySet,
}

impl Transmitter {
    /// A transmitter named `issuer`, sending to `audience`, signing with `keys`, acting on
    /// sessions of the token issuers `acts_for`.
    pub fn new(
        issuer: &str,
        audience: &str,
        keys: KeySet,
        acts_for: impl IntoIterator<Item = Arc<str>>,
    ) -> Transmitter {
        Transmitter {
            issuer: issuer.into(),
            acts_for: acts_for.into_iter().collect(),
            audiences: [audience.into()],
            keys,
        }
    }
}

/// A SET whose signature, issuer, audience and freshness were checked. Its events are not
/// interpreted yet (see [`super::events`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SecurityEvent {
    /// The transmitter (`iss`).
    pub issuer: Arc<str>,
    /// The token issuers the transmitter may act on ([`Transmitter::acts_for`]).
    pub acts_for: Arc<[Arc<str>]>,
    /// `jti`, unique per transmitter.
    pub jti: Box<str>,
    /// `iat`.
    pub issued_at: UnixTime,
    /// SSF 1.0 top-level subject (`sub_id`), if any.
    pub sub_id: Option<Value>,
    /// `events`: event type URI → payload.
    pub events: Map<String, Value>,
}

/// Verifies SETs from a fixed set of transmitters. Built once from config.
#[derive(Debug, Default)]
pub struct SetVerifier {
    transmitters: HashMap<Arc<str>, Transmitter>,
}

impl SetVerifier {
    /// A verifier trusting `transmitters`.
    pub fn new(transmitters: impl IntoIterator<Item = Transmitter>) -> SetVerifier {
        SetVerifier {
            transmitters: transmitters
                .into_iter()
                .map(|t| (Arc::clone(&t.issuer), t))
                .collect(),
        }
    }

    /// Verifies the compact SET `set` as received at `now`: [`SetVerifier::precheck`], then
    /// the signature.
    pub fn verify(&self, set: &str, now: UnixTime) -> Result<SecurityEvent, SetError> {
        self.precheck(set, now)?.verify_signature()
    }

    /// Every check of `set` but its signature, cheapest first: a SET that is malformed, from
    /// no configured transmitter, for another audience, stale, or without `jti` or events is
    /// refused before any signature is verified, so forging SETs costs an attacker as much as
    /// it costs us. Nothing of a prechecked SET is believed until
    /// [`PrecheckedSet::verify_signature`] succeeds.
    ///
    /// The order never lets unverified input choose how it is verified: the algorithm must be
    /// asymmetric and fit the key that `kid` names among the keys of the transmitter that `iss`
    /// names.
    pub fn precheck<'a>(
        &'a self,
        set: &'a str,
        now: UnixTime,
    ) -> Result<PrecheckedSet<'a>, SetError> {
        let jws = CompactJws::split(set)?;
        let header = jws.header()?;
        if header
            .alg
            .as_deref()
            .is_some_and(|alg| alg.eq_ignore_ascii_case("none"))
        {
            return Err(SetError::AuthenticationFailed(
                "unsigned SETs (alg none) are never accepted",
            ));
        }
        let algorithm = header.algorithm()?;
        if header.critical {
            return Err(SetError::invalid("header has critical extensions (crit)"));
        }
        if !header.typ.as_deref().is_some_and(is_set_typ) {
            return Err(SetError::invalid("typ is not secevent+jwt"));
        }
        let claims = jws.claims()?;
        let transmitter = match claims.get("iss") {
            Some(Value::String(iss)) => self
                .transmitters
                .get(iss.as_str())
                .ok_or(SetError::InvalidIssuer)?,
            Some(_) => return Err(SetError::invalid("iss is not a string")),
            None => return Err(SetError::InvalidIssuer),
        };
        let key = transmitter
            .keys
            .find(header.kid.as_deref(), algorithm)
            .ok_or(SetError::InvalidKey(
                "the transmitter publishes no key with this kid",
            ))?;
        if !key.accepts(algorithm) {
            return Err(SetError::InvalidKey(
                "the algorithm does not match the signing key",
            ));
        }
        if !audience_matches(&claims, &transmitter.audiences)? {
            return Err(SetError::InvalidAudience);
        }
        let issued_at = match claims.get("iat") {
            Some(Value::Number(n)) => n
                .as_f64()
                .map(UnixTime::from_numeric_date)
                .ok_or_else(|| SetError::invalid("iat is not a number"))?,
            Some(_) => return Err(SetError::invalid("iat is not a number")),
            None => return Err(SetError::invalid("SET has no iat")),
        };
        if now.since(issued_at) > MAX_SET_AGE {
            return Err(SetError::invalid(format!(
                "SET is too old: iat is more than {}s ago",
                MAX_SET_AGE.as_secs()
            )));
        }
        if issued_at > now.plus(SET_CLOCK_SKEW) {
            return Err(SetError::invalid("SET iat is in the future"));
        }
        // SETs should carry no exp (RFC 8417 section 2.2); one that does is held to it.
        match claims.get("exp") {
            None => {}
            Some(Value::Number(n)) => {
                let exp = n
                    .as_f64()
                    .map(UnixTime::from_numeric_date)
                    .ok_or_else(|| SetError::invalid("exp is not a number"))?;
                if now > exp.plus(SET_CLOCK_SKEW) {
                    return Err(SetError::invalid("SET has expired (exp)"));
                }
            }
            Some(_) => return Err(SetError::invalid("exp is not a number")),
        }
        let jti = match claims.get("jti") {
            Some(Value::String(jti)) if !jti.is_empty() && jti.len() <= MAX_JTI_LEN => jti,
            Some(Value::String(_)) => {
                return Err(SetError::invalid(format!(
                    "jti must be 1 to {MAX_JTI_LEN} characters"
                )));
            }
            Some(_) => return Err(SetError::invalid("jti is not a string")),
            None => return Err(SetError::invalid("SET has no jti")),
        };
        let events = match claims.get("events") {
            Some(Value::Object(events)) if !events.is_empty() => events.clone(),
            Some(Value::Object(_)) => return Err(SetError::invalid("events is empty")),
            Some(_) => return Err(SetError::invalid("events is not a JSON object")),
            None => return Err(SetError::invalid("SET has no events")),
        };
        let sub_id = match claims.get("sub_id") {
            None => None,
            Some(value @ Value::Object(_)) => Some(value.clone()),
            Some(_) => return Err(SetError::invalid("sub_id is not a JSON object")),
        };
        Ok(PrecheckedSet {
            jws,
            key,
            algorithm,
            event: SecurityEvent {
                issuer: Arc::clone(&transmitter.issuer),
                acts_for: Arc::clone(&transmitter.acts_for),
                jti: jti.as_str().into(),
                issued_at,
                sub_id,
                events,
            },
        })
    }
}

/// A SET that passed every check but its signature (see [`SetVerifier::precheck`]): what it
/// says is still attacker-controlled.
#[derive(Debug)]
pub struct PrecheckedSet<'a> {
    jws: CompactJws<'a>,
    key: &'a Arc<VerificationKey>,
    algorithm: SigningAlgorithm,
    event: SecurityEvent,
}

impl PrecheckedSet<'_> {
    /// The transmitter the SET claims to come from (unverified).
    pub fn claimed_issuer(&self) -> &Arc<str> {
        &self.event.issuer
    }

    /// The event, once the signature verifies with the transmitter's key.
    pub fn verify_signature(self) -> Result<SecurityEvent, SetError> {
        if !self.jws.signed_by(self.key, self.algorithm) {
            return Err(SetError::AuthenticationFailed(
                "the SET signature does not verify",
            ));
        }
        Ok(self.event)
    }
}

/// `secevent+jwt`, or its full media type; media types compare case-insensitively
/// (RFC 7515 section 4.1.9).
fn is_set_typ(typ: &str) -> bool {
    let short = typ
        .get(..12)
        .filter(|prefix| prefix.eq_ignore_ascii_case("application/"))
        .map_or(typ, |_| &typ[12..]);
    short.eq_ignore_ascii_case(SET_TYP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssf::testing::{AUDIENCE, Set, TRANSMITTER, verifier};
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;

    fn now() -> UnixTime {
        UnixTime::from_secs(NOW)
    }

    fn verify(set: &str) -> Result<SecurityEvent, SetError> {
        verifier().verify(set, now())
    }

    fn code(set: &str) -> &'static str {
        verify(set).unwrap_err().code()
    }

    #[test]
    fn a_well_formed_set_verifies() {
        let event = verify(&Set::at(NOW).sign()).unwrap();
        assert_eq!(&*event.issuer, TRANSMITTER);
        assert_eq!(&*event.jti, "set-1");
        assert_eq!(event.issued_at, now());
        assert!(
            event
                .events
                .contains_key(crate::ssf::events::SESSION_REVOKED)
        );
        assert!(event.sub_id.is_some());
    }

    #[test]
    fn every_cheap_check_runs_before_the_signature() {
        // Forged (another key) and wrong in a cheap way: refused for the cheap reason, so no
        // signature was verified for it.
        for (forged, expected) in [
            (
                Set::at(NOW - 3600).signed_by_untrusted_key(),
                "invalid_request",
            ),
            (
                Set::at(NOW).claim("aud", "other").signed_by_untrusted_key(),
                "invalid_audience",
            ),
            (
                Set::at(NOW)
                    .claim("jti", json!(7))
                    .signed_by_untrusted_key(),
                "invalid_request",
            ),
        ] {
            assert_eq!(code(&forged), expected);
        }
        let prechecked = verifier()
            .precheck(&Set::at(NOW).signed_by_untrusted_key(), now())
            .map(|set| set.verify_signature().unwrap_err().code());
        assert_eq!(prechecked.unwrap(), "authentication_failed");
    }

    #[test]
    fn typ_may_be_the_full_media_type_in_any_case() {
        for typ in ["secevent+jwt", "application/secevent+jwt", "SecEvent+JWT"] {
            assert!(verify(&Set::at(NOW).typ(Some(typ)).sign()).is_ok(), "{typ}");
        }
    }

    #[test]
    fn malformed_sets_are_invalid_requests() {
        for set in ["", "abc", "a.b", "a.b.c.d", "!!!.e30.sig"] {
            assert_eq!(code(set), "invalid_request", "{set:?}");
        }
    }

    #[test]
    fn a_wrong_or_missing_typ_is_an_invalid_request() {
        for typ in [Some("JWT"), Some("at+jwt"), None] {
            assert_eq!(
                code(&Set::at(NOW).typ(typ).sign()),
                "invalid_request",
                "{typ:?}"
            );
        }
    }

    #[test]
    fn an_unsigned_set_fails_authentication() {
        assert_eq!(code(&Set::at(NOW).unsigned()), "authentication_failed");
    }

    #[test]
    fn a_set_signed_by_another_key_fails_authentication() {
        assert_eq!(
            code(&Set::at(NOW).signed_by_untrusted_key()),
            "authentication_failed"
        );
    }

    #[test]
    fn a_tampered_payload_fails_authentication() {
        let set = Set::at(NOW).sign();
        let forged = Set::at(NOW).claim("jti", "other").sign();
        let parts: Vec<&str> = set.split('.').collect();
        let forged_payload = forged.split('.').nth(1).unwrap();
        let tampered = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
        assert_eq!(code(&tampered), "authentication_failed");
    }

    #[test]
    fn an_unknown_kid_or_a_symmetric_algorithm_is_an_invalid_key() {
        assert_eq!(
            code(&Set::at(NOW).kid("rotated-away").sign()),
            "invalid_key"
        );
        assert_eq!(code(&Set::at(NOW).hs256()), "invalid_key");
    }

    #[test]
    fn an_unconfigured_issuer_is_an_invalid_issuer() {
        assert_eq!(
            code(&Set::at(NOW).claim("iss", "https://evil.example").sign()),
            "invalid_issuer"
        );
        assert_eq!(code(&Set::at(NOW).without("iss").sign()), "invalid_issuer");
    }

    #[test]
    fn another_audience_is_an_invalid_audience() {
        assert_eq!(
            code(&Set::at(NOW).claim("aud", "someone-else").sign()),
            "invalid_audience"
        );
        assert_eq!(
            code(&Set::at(NOW).without("aud").sign()),
            "invalid_audience"
        );
        assert!(
            verify(&Set::at(NOW).claim("aud", json!(["x", AUDIENCE])).sign()).is_ok(),
            "aud may be a list"
        );
    }

    #[test]
    fn iat_must_be_present_and_recent() {
        assert_eq!(code(&Set::at(NOW).without("iat").sign()), "invalid_request");
        assert_eq!(
            code(&Set::at(NOW).claim("iat", "yesterday").sign()),
            "invalid_request"
        );
        let too_old = NOW - MAX_SET_AGE.as_secs() - 1;
        assert_eq!(code(&Set::at(too_old).sign()), "invalid_request");
        assert!(verify(&Set::at(NOW - MAX_SET_AGE.as_secs()).sign()).is_ok());
        let too_new = NOW + SET_CLOCK_SKEW.as_secs() + 1;
        assert_eq!(code(&Set::at(too_new).sign()), "invalid_request");
        assert!(verify(&Set::at(NOW + SET_CLOCK_SKEW.as_secs()).sign()).is_ok());
    }

    #[test]
    fn exp_is_ignored_when_absent_and_held_to_when_present() {
        assert!(verify(&Set::at(NOW).without("exp").sign()).is_ok());
        assert!(verify(&Set::at(NOW).claim("exp", NOW + 60).sign()).is_ok());
        assert_eq!(
            code(&Set::at(NOW).claim("exp", NOW - 3600).sign()),
            "invalid_request"
        );
    }

    #[test]
    fn jti_is_required() {
        assert_eq!(code(&Set::at(NOW).without("jti").sign()), "invalid_request");
        assert_eq!(
            code(&Set::at(NOW).claim("jti", "").sign()),
            "invalid_request"
        );
        assert_eq!(
            code(&Set::at(NOW).claim("jti", 7).sign()),
            "invalid_request"
        );
        assert_eq!(
            code(
                &Set::at(NOW)
                    .claim("jti", "x".repeat(MAX_JTI_LEN + 1))
                    .sign()
            ),
            "invalid_request"
        );
    }

    #[test]
    fn a_null_sub_id_is_an_invalid_request_not_absent() {
        let refused = verify(&Set::at(NOW).claim("sub_id", Value::Null).sign()).unwrap_err();
        assert_eq!(refused.code(), "invalid_request");
        assert!(
            refused.to_string().contains("sub_id is not a JSON object"),
            "{refused}"
        );
    }

    #[test]
    fn a_member_named_twice_at_any_depth_is_an_invalid_request() {
        let set = Set::at(NOW);
        let valid = serde_json::to_string(&set.claims()).unwrap();
        assert!(verify(&set.sign_claims_text(&valid)).is_ok());
        for (from, to) in [
            // The top level: a second jti.
            (r#""jti":"set-1""#, r#""jti":"set-1","jti":"set-2""#),
            // Inside sub_id: whose sessions would be revoked?
            (r#""sub":"alice""#, r#""sub":"alice","sub":"bob""#),
        ] {
            assert!(valid.contains(from), "{valid}");
            let refused = verify(&set.sign_claims_text(&valid.replacen(from, to, 1))).unwrap_err();
            assert_eq!(refused.code(), "invalid_request", "{to}");
            assert!(
                refused.to_string().contains("name a member twice"),
                "{refused}"
            );
        }
    }

    #[test]
    fn events_must_be_a_non_empty_object() {
        for events in [json!([]), json!("x"), json!({})] {
            assert_eq!(
                code(&Set::at(NOW).claim("events", events.clone()).sign()),
                "invalid_request",
                "{events}"
            );
        }
        assert_eq!(
            code(&Set::at(NOW).without("events").sign()),
            "invalid_request"
        );
    }
}
