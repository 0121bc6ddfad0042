//! The `security_event` target: a pushed Security Event Token through verification and the
//! interpretation of its events into revocations.
//!
//! The first byte picks the mode, as in [`super::token`]:
//! - even: a compact SET. Seeds are SETs signed by the fixture transmitter key
//!   (`tests/fixtures/keys/transmitter-es256.pem`) over [`SIGNED_SETS`]. Invariant: only a SET
//!   whose signed bytes are one of [`SIGNED_SETS`] verifies.
//! - odd: a claim set (or a JOSE header, `0xff`, a claim set) that the harness signs with its
//!   own key, as a second transmitter. Invariant: a SET the harness signed with its default
//!   header never fails as a key or signature problem.
//!
//! Either way a verified SET must say what its JSON says, and its interpretation must stay
//! within its promises: one revocation or one "unchanged" note per event, recorded now, with a
//! cut-off no later than now plus skew.

use std::collections::HashSet;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::signing;
use crate::ssf::events::interpret;
use crate::ssf::verify::{MAX_SET_AGE, SET_CLOCK_SKEW};
use crate::ssf::{SecurityEvent, SetError, SetVerifier, Transmitter};
use sessiongate_core::time::UnixTime;
use sessiongate_token::KeySet;

/// The transmitter whose key is the fixture `transmitter-jwks.json`.
pub const FIXTURE_TRANSMITTER: &str = "https://transmitter.example.test";
/// The transmitter whose key is the harness's own ([`super::signing`]).
pub const HARNESS_TRANSMITTER: &str = "https://fuzzing-transmitter.sessiongate.invalid";
/// The receiver's audience.
pub const AUDIENCE: &str = "sessiongate";
/// The instant every SET is received at (seconds): the seeds' `iat`, so they stay fresh.
pub const SET_NOW: u64 = 1_800_000_000;

/// The JOSE header and claim set of every SET the fixture transmitter key has signed for the
/// seed corpus.
pub const SIGNED_SETS: &[(&str, &str)] = &[
    (
        r#"{"alg":"ES256","kid":"transmitter-es256","typ":"secevent+jwt"}"#,
        r#"{"iss":"https://transmitter.example.test","aud":"sessiongate","iat":1800000000,"jti":"fuzz-set-1","sub_id":{"format":"iss_sub","iss":"https://idp.example.test","sub":"alice"},"events":{"https://schemas.openid.net/secevent/caep/event-type/session-revoked":{"event_timestamp":1799999990}}}"#,
    ),
    (
        r#"{"alg":"ES256","kid":"transmitter-es256","typ":"application/secevent+jwt"}"#,
        r#"{"iss":"https://transmitter.example.test","aud":["sessiongate"],"iat":1799999900,"jti":"fuzz-set-2","events":{"https://schemas.openid.net/secevent/caep/event-type/credential-change":{"subject":{"format":"email","email":"Bob@Example.TEST"},"credential_type":"password","change_type":"update"},"https://schemas.openid.net/secevent/caep/event-type/assurance-level-change":{"subject":{"format":"opaque","id":"carol"},"event_timestamp":1800000100},"https://schemas.openid.net/secevent/caep/event-type/device-compliance-change":{"subject":{"format":"iss_sub","iss":"https://idp.example.test","sub":"dave"},"current_status":"compliant","previous_status":"not-compliant"},"https://example.test/unknown-event":{}}}"#,
    ),
];

/// The header the harness signs claim sets under unless the input brings its own.
const HARNESS_HEADER: &str = r#"{"alg":"EdDSA","kid":"fuzzing-eddsa","typ":"secevent+jwt"}"#;

/// Separates a fuzzer-chosen header from the claim set.
const HEADER_END: u8 = 0xff;

struct Harness {
    verifier: SetVerifier,
    /// `header.payload` of every [`SIGNED_SETS`] entry.
    signed: HashSet<String>,
}

/// The token issuer both transmitters act for (their SETs' subjects name it).
fn acts_for() -> [std::sync::Arc<str>; 1] {
    [crate::fuzzing::token::FIXTURE_ISSUER.into()]
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let fixture = include_bytes!("../../tests/fixtures/keys/transmitter-jwks.json");
        let fixture = KeySet::from_jwks_json(fixture)
            .expect("the fixture transmitter JWKS parses")
            .keys;
        Harness {
            verifier: SetVerifier::new([
                Transmitter::new(FIXTURE_TRANSMITTER, AUDIENCE, fixture, acts_for()),
                Transmitter::new(
                    HARNESS_TRANSMITTER,
                    AUDIENCE,
                    signing::key_set(),
                    acts_for(),
                ),
            ]),
            signed: SIGNED_SETS
                .iter()
                .map(|(header, claims)| {
                    format!(
                        "{}.{}",
                        URL_SAFE_NO_PAD.encode(header),
                        URL_SAFE_NO_PAD.encode(claims)
                    )
                })
                .collect(),
        }
    })
}

/// The `security_event` target (see the module docs). Returns whether the SET was verified
/// and its events interpreted.
pub fn security_event(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    let now = UnixTime::from_secs(SET_NOW);
    let harness = harness();
    if mode % 2 == 0 {
        let Ok(set) = std::str::from_utf8(rest) else {
            return false;
        };
        let Ok(event) = harness.verifier.verify(set, now) else {
            return false;
        };
        let input = signing::signing_input(set).expect("a verified SET has a signature part");
        assert!(
            harness.signed.contains(input),
            "verified a SET whose signed bytes no transmitter signed: {set}"
        );
        assert_eq!(&*event.issuer, FIXTURE_TRANSMITTER);
        interpreted(&event, set, now)
    } else {
        let (header, claims, chosen) = match rest.iter().position(|&b| b == HEADER_END) {
            Some(end) => match std::str::from_utf8(&rest[..end]) {
                Ok(header) => (header, &rest[end + 1..], true),
                Err(_) => return false,
            },
            None => (HARNESS_HEADER, rest, false),
        };
        let set = signing::sign(header, claims);
        match harness.verifier.verify(&set, now) {
            Ok(event) => interpreted(&event, &set, now),
            Err(error @ (SetError::AuthenticationFailed(_) | SetError::InvalidKey(_)))
                if !chosen =>
            {
                let iss = serde_json::from_slice::<Map<String, Value>>(claims)
                    .ok()
                    .and_then(|c| c.get("iss").and_then(Value::as_str).map(str::to_owned));
                assert_ne!(
                    iss.as_deref(),
                    Some(HARNESS_TRANSMITTER),
                    "a SET the harness signed failed as {error:?}: {set}"
                );
                false
            }
            Err(_) => false,
        }
    }
}

/// Checks a verified SET against its JSON, then its interpretation.
fn interpreted(event: &SecurityEvent, set: &str, now: UnixTime) -> bool {
    let payload = set.split('.').nth(1).expect("three parts");
    let claims: Map<String, Value> = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(payload)
            .expect("a verified payload is base64url"),
    )
    .expect("a verified claim set is a JSON object");
    assert_eq!(
        claims.get("iss").and_then(Value::as_str),
        Some(&*event.issuer)
    );
    assert_eq!(
        claims.get("jti").and_then(Value::as_str),
        Some(&*event.jti),
        "jti"
    );
    assert!(
        (1..=256).contains(&event.jti.len()),
        "jti length is bounded"
    );
    assert!(
        event.issued_at >= UnixTime::from_secs(SET_NOW - MAX_SET_AGE.as_secs())
            && event.issued_at <= now.plus(SET_CLOCK_SKEW),
        "iat {:?} is fresh",
        event.issued_at
    );
    assert_eq!(
        claims.get("events"),
        Some(&Value::Object(event.events.clone())),
        "events"
    );
    assert!(!event.events.is_empty(), "a SET without events verified");

    let Ok(interpretation) = interpret(event, now) else {
        return false;
    };
    assert_eq!(
        interpretation.revocations.len() + interpretation.unchanged.len(),
        event.events.len(),
        "one revocation or one note per event: {interpretation:?}"
    );
    let origin = format!("ssf:{}", event.issuer);
    for revocation in &interpretation.revocations {
        assert!(
            revocation.issued_before <= now.plus(SET_CLOCK_SKEW),
            "a cut-off beyond now plus skew: {revocation:?}"
        );
        assert_eq!(revocation.recorded_at, now);
        assert_eq!(&*revocation.origin, origin);
        assert!(event.events.contains_key(&*revocation.reason));
    }
    true
}
