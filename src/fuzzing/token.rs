//! The `token` target: the `Authorization` header through the credential, JWS and claims
//! parsers to a [`VerifiedToken`].
//!
//! The first byte picks the mode, the rest is:
//! - even: an `Authorization` value. Seeds are real tokens signed by the fixture keys
//!   (`tests/fixtures/keys/`) over [`SIGNED_TOKENS`]; the fuzzer mutates the bytes around them.
//!   Invariant: the verifier accepts only a token whose signed bytes (`header.payload`) are one
//!   of [`SIGNED_TOKENS`] (the signature itself may be a re-encoding, e.g. ECDSA `s -> n-s`), and
//!   reads its claims as their JSON says.
//! - odd: a claim set (any bytes), or a JOSE header, byte `0xff`, and a claim set, which the
//!   harness signs with its own key ([`super::signing`]). This reaches the claims parser with
//!   every claim set the fuzzer invents. Invariant: a token the harness signed with its default
//!   header never fails as a signature, key or algorithm problem, and an accepted one is read
//!   as its JSON says.

use std::collections::HashSet;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::signing;
use sessiongate_core::request::AuthorizationValues;
use sessiongate_core::time::UnixTime;
use sessiongate_core::token::{
    Confirmation, MAX_AUTHORIZATION_LEN, TokenError, VerifiedToken, bearer_token,
};
use sessiongate_core::workload::Thumbprint;
use sessiongate_token::{
    ClaimRules, IssuerRules, KeyRing, KeySet, SigningAlgorithm, TokenVerifier, TypRule,
};

/// The issuer whose keys are the fixture JWKS (`tests/fixtures/keys/jwks.json`).
pub const FIXTURE_ISSUER: &str = "https://idp.example.test";
/// The issuer whose key is the harness's own ([`super::signing`]).
pub const HARNESS_ISSUER: &str = "https://fuzzing.sessiongate.invalid";
/// The audience both issuers' tokens must name.
pub const AUDIENCE: &str = "shop-api";

/// The JOSE header and claim set (JSON text, exactly as signed) of every token the fixture keys
/// have signed for the seed corpus. `tests/fuzz_regressions.rs` signs them to write the seeds.
pub const SIGNED_TOKENS: &[(&str, &str)] = &[
    (
        r#"{"alg":"RS256","kid":"test-rs256","typ":"JWT"}"#,
        r#"{"iss":"https://idp.example.test","aud":"shop-api","sub":"alice","jti":"fuzz-rs256","iat":1800000000,"exp":1800003600,"scope":"orders:read orders:write","client_id":"spiffe://cluster.local/ns/shop/sa/frontend"}"#,
    ),
    (
        r#"{"alg":"ES256","kid":"test-es256","typ":"at+jwt"}"#,
        r#"{"iss":"https://idp.example.test","aud":["billing","shop-api"],"sub":"bob","sid":"session-7","email":"Bob@Example.TEST","iat":1800000000,"nbf":1799999990,"auth_time":1799999000,"exp":1800000900.5,"scope":["orders:read"],"cnf":{"x5t#S256":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"}}"#,
    ),
    (
        r#"{"alg":"EdDSA","kid":"test-eddsa"}"#,
        r#"{"iss":"https://idp.example.test","aud":"shop-api","sub":"carol","jti":"fuzz-eddsa","iat":1800000000,"exp":1800003600,"cnf":{"jkt":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}"#,
    ),
];

/// The header the harness signs claim sets under unless the input brings its own.
const HARNESS_HEADER: &str = r#"{"alg":"EdDSA","kid":"fuzzing-eddsa","typ":"at+jwt"}"#;

/// Separates a fuzzer-chosen header from the claim set (never part of UTF-8 text).
const HEADER_END: u8 = 0xff;

struct Harness {
    verifier: TokenVerifier,
    keys: KeyRing,
    /// `header.payload` of every [`SIGNED_TOKENS`] entry.
    signed: HashSet<String>,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let issuer = |name: &str, algorithms: Vec<SigningAlgorithm>| IssuerRules {
            issuer: name.into(),
            audiences: vec![AUDIENCE.into()].into(),
            algorithms: algorithms.into(),
            typ: TypRule::AccessTokenOrJwt,
        };
        let verifier = TokenVerifier::new(
            [
                issuer(
                    FIXTURE_ISSUER,
                    vec![
                        SigningAlgorithm::Rs256,
                        SigningAlgorithm::Es256,
                        SigningAlgorithm::EdDsa,
                    ],
                ),
                issuer(HARNESS_ISSUER, vec![SigningAlgorithm::EdDsa]),
            ],
            ClaimRules {
                scope_claim: "scope".into(),
                binding_claim: Some("client_id".into()),
            },
        );
        let keys = KeyRing::new();
        let fixture = include_bytes!("../../tests/fixtures/keys/jwks.json");
        keys.replace(
            FIXTURE_ISSUER,
            KeySet::from_jwks_json(fixture)
                .expect("the fixture JWKS parses")
                .keys,
        );
        keys.replace(HARNESS_ISSUER, signing::key_set());
        let signed = SIGNED_TOKENS
            .iter()
            .map(|(header, claims)| {
                format!(
                    "{}.{}",
                    URL_SAFE_NO_PAD.encode(header),
                    URL_SAFE_NO_PAD.encode(claims)
                )
            })
            .collect();
        Harness {
            verifier,
            keys,
            signed,
        }
    })
}

/// The `token` target (see the module docs). Returns whether the token was accepted.
pub fn token(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    if mode % 2 == 0 {
        around_signed_tokens(rest)
    } else {
        harness_signed(rest)
    }
}

fn around_signed_tokens(value: &[u8]) -> bool {
    let Ok(value) = std::str::from_utf8(value) else {
        return false;
    };
    let Some(token) = credential(value) else {
        return false;
    };
    let harness = harness();
    let Ok(verified) = harness.verifier.verify(token, &harness.keys) else {
        return false;
    };
    let input = signing::signing_input(token).expect("an accepted token has a signature part");
    assert!(
        harness.signed.contains(input),
        "accepted a token whose signed bytes no key holder signed: {token}"
    );
    assert_eq!(&*verified.issuer, FIXTURE_ISSUER);
    assert_read_as_json(&verified, token);
    true
}

fn harness_signed(rest: &[u8]) -> bool {
    let (header, claims, chosen) = match rest.iter().position(|&b| b == HEADER_END) {
        Some(end) => match std::str::from_utf8(&rest[..end]) {
            Ok(header) => (header, &rest[end + 1..], true),
            Err(_) => return false,
        },
        None => (HARNESS_HEADER, rest, false),
    };
    let value = format!("Bearer {}", signing::sign(header, claims));
    let Some(token) = credential(&value) else {
        return false;
    };
    let harness = harness();
    match harness.verifier.verify(token, &harness.keys) {
        Ok(verified) => {
            assert_read_as_json(&verified, token);
            true
        }
        Err(error @ (TokenError::BadSignature | TokenError::DisallowedAlgorithm(_))) if !chosen => {
            panic!("a token the harness signed failed as {error:?}: {token}")
        }
        Err(TokenError::UnknownKey) if !chosen => {
            // The harness key is the only key of HARNESS_ISSUER; another issuer's set does
            // not hold `fuzzing-eddsa`.
            let claims: Option<Map<String, Value>> = serde_json::from_slice(claims).ok();
            let iss = claims.as_ref().and_then(|c| c.get("iss"));
            assert_ne!(
                iss.and_then(Value::as_str),
                Some(HARNESS_ISSUER),
                "the harness key was not found for its own issuer: {token}"
            );
            false
        }
        Err(_) => false,
    }
}

/// The bearer token of the `Authorization` value `value`, checking what the credential parser
/// promises about it.
fn credential(value: &str) -> Option<&str> {
    let token = bearer_token(AuthorizationValues::One(value)).ok()??;
    assert!(
        value.len() <= MAX_AUTHORIZATION_LEN,
        "over-long credential read"
    );
    assert!(
        value.ends_with(token),
        "the token is the end of the header value"
    );
    let body = token.trim_end_matches('=');
    assert!(
        !body.is_empty()
            && body.bytes().all(|b| b.is_ascii_alphanumeric()
                || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')),
        "a credential outside the token68 syntax was read: {value:?}"
    );
    Some(token)
}

/// An accepted token's [`VerifiedToken`] says what its signed claim set says.
fn assert_read_as_json(verified: &VerifiedToken, token: &str) {
    let payload = token.split('.').nth(1).expect("three parts");
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .expect("an accepted payload is base64url");
    let claims: Map<String, Value> =
        serde_json::from_slice(&bytes).expect("an accepted claim set is a JSON object");

    assert_eq!(
        claims.get("iss").and_then(Value::as_str),
        Some(&*verified.issuer),
        "iss"
    );
    let audience_named = match claims.get("aud") {
        Some(Value::String(aud)) => aud == AUDIENCE,
        Some(Value::Array(list)) => list.iter().any(|aud| aud.as_str() == Some(AUDIENCE)),
        _ => false,
    };
    assert!(audience_named, "accepted without naming the audience");

    assert_eq!(verified.subject(), text(&claims, "sub"), "sub");
    assert_eq!(verified.token_id(), text(&claims, "jti"), "jti");
    assert_eq!(verified.session_id(), text(&claims, "sid"), "sid");
    assert_eq!(
        verified.email(),
        text(&claims, "email")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        "email"
    );
    assert_eq!(
        verified.client_id.as_deref(),
        text(&claims, "client_id"),
        "client_id"
    );
    assert_eq!(
        verified.binding_claim.as_deref(),
        text(&claims, "client_id"),
        "binding claim (client_id)"
    );

    assert_eq!(
        Some(verified.expires_at),
        date(&claims, "exp"),
        "exp is required and read as a NumericDate"
    );
    assert_eq!(verified.issued_at, date(&claims, "iat"), "iat");
    assert_eq!(verified.not_before, date(&claims, "nbf"), "nbf");
    assert_eq!(verified.auth_time, date(&claims, "auth_time"), "auth_time");

    let granted: Vec<&str> = match claims.get("scope") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(scope)) => scope.split(' ').filter(|s| !s.is_empty()).collect(),
        Some(Value::Array(list)) => list
            .iter()
            .map(|s| s.as_str().expect("accepted a non-string scope"))
            .filter(|s| !s.is_empty())
            .collect(),
        Some(other) => panic!("accepted a scope claim of the wrong type: {other}"),
    };
    let read: Vec<&str> = verified
        .scopes
        .as_str()
        .split(' ')
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(read, granted, "scopes");

    // A bound token must never read as a plain bearer token (fail closed).
    match (claims.get("cnf"), &verified.confirmation) {
        (None | Some(Value::Null), Confirmation::None) => {}
        (Some(Value::Object(cnf)), Confirmation::None) if cnf.is_empty() => {}
        (Some(Value::Object(cnf)), Confirmation::Certificate(thumbprint)) => {
            let stated = cnf
                .get("x5t#S256")
                .and_then(Value::as_str)
                .and_then(Thumbprint::from_base64url);
            assert_eq!(stated, Some(**thumbprint), "cnf x5t#S256");
        }
        (Some(Value::Object(cnf)), Confirmation::DpopKey(thumbprint)) => {
            let stated = cnf
                .get("jkt")
                .and_then(Value::as_str)
                .and_then(Thumbprint::from_base64url);
            assert_eq!(stated, Some(**thumbprint), "cnf jkt");
            assert!(
                !cnf.contains_key("x5t#S256"),
                "a cnf with both bindings read as DPoP-bound only"
            );
        }
        (Some(Value::Object(cnf)), Confirmation::Unsupported) => {
            assert!(!cnf.is_empty(), "an empty cnf read as unsupported");
        }
        (cnf, read) => panic!("cnf {cnf:?} read as {read:?}"),
    }
}

fn text<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    match claims.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => panic!("accepted a non-string {name}: {other}"),
    }
}

fn date(claims: &Map<String, Value>, name: &str) -> Option<UnixTime> {
    match claims.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(UnixTime::from_numeric_date(
            n.as_f64().expect("a JSON number has an f64 value"),
        )),
        Some(other) => panic!("accepted a non-numeric {name}: {other}"),
    }
}
