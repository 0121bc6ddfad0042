//! Pulling the claims the rules need out of a token's JSON claim set, with strict types.
//!
//! A claim of the wrong JSON type is a malformed token, never "absent": treating
//! `"exp": "never"` as no expiry, or `"scope": 7` as no scope, would let a sloppy or hostile
//! issuer change what a rule means. `null` is such a wrong type too (`"nbf": null` is not "no
//! nbf", `"iat": null` is not "no iat"); the same holds for the JOSE header members read here.

use serde_json::{Map, Value};

use std::sync::Arc;

use super::algorithm::SigningAlgorithm;
use super::keys::VerificationKey;
use sessiongate_core::intern::intern;
use sessiongate_core::time::UnixTime;
use sessiongate_core::token::{
    Confirmation, Identifiers, KeyHandle, Scopes, TokenError, VerifiedToken,
};
use sessiongate_core::workload::Thumbprint;

/// Which claims carry the policy-relevant facts; configured per deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRules {
    /// The claim holding granted scopes: a space-separated string or an array of strings.
    pub scope_claim: Box<str>,
    /// The claim that must equal the caller's SPIFFE ID (`binding.claim`), if configured.
    pub binding_claim: Option<Box<str>>,
}

/// Whether `aud` (a string or an array of strings) names one of `audiences`.
pub fn audience_matches(
    claims: &Map<String, Value>,
    audiences: &[Box<str>],
) -> Result<bool, TokenError> {
    let accepted = |aud: &str| audiences.iter().any(|a| &**a == aud);
    match claims.get("aud") {
        None => Ok(false),
        Some(Value::String(aud)) => Ok(accepted(aud)),
        Some(Value::Array(list)) => {
            let mut found = false;
            for item in list {
                let aud = item.as_str().ok_or(TokenError::Malformed(
                    "aud is not a string or array of strings",
                ))?;
                found |= accepted(aud);
            }
            Ok(found)
        }
        Some(_) => Err(TokenError::Malformed(
            "aud is not a string or array of strings",
        )),
    }
}

/// The verified token: `claims` read as `rules` say, for a signature already checked with `key`
/// of `issuer`.
pub(super) fn extract(
    claims: &Map<String, Value>,
    rules: &ClaimRules,
    issuer: Arc<str>,
    key: Arc<VerificationKey>,
) -> Result<VerifiedToken, TokenError> {
    extract_vouched(claims, rules, issuer, key.handle().clone())
}

/// The verified token: `claims` read as `rules` say, for a token `issuer` vouched for through
/// what `key` names (a signing key, or the issuer's introspection endpoint).
pub(super) fn extract_vouched(
    claims: &Map<String, Value>,
    rules: &ClaimRules,
    issuer: Arc<str>,
    key: KeyHandle,
) -> Result<VerifiedToken, TokenError> {
    // Read in a fixed order, so a token with several wrong claims always gets the same message.
    let subject = string(claims, "sub", "sub is not a string")?;
    let token_id = string(claims, "jti", "jti is not a string")?;
    let session_id = string(claims, "sid", "sid is not a string")?;
    let client_id = string(claims, "client_id", "client_id is not a string")?.map(intern);
    let email = string(claims, "email", "email is not a string")?.map(str::to_ascii_lowercase);
    let issued_at = numeric_date(claims, "iat", "iat is not a number")?;
    let expires_at = numeric_date(claims, "exp", "exp is not a number")?
        .ok_or(TokenError::Malformed("token has no exp"))?;
    let not_before = numeric_date(claims, "nbf", "nbf is not a number")?;
    let auth_time = numeric_date(claims, "auth_time", "auth_time is not a number")?;
    let scopes = scopes(claims.get(&*rules.scope_claim))?;
    let binding_claim = match rules.binding_claim.as_deref() {
        // The usual binding claim: share the value rather than keep it twice.
        Some("client_id") => client_id.clone(),
        Some(name) => string(claims, name, "binding claim is not a string")?.map(intern),
        None => None,
    };
    Ok(VerifiedToken {
        issuer,
        key,
        ids: Identifiers::new(subject, token_id, session_id, email.as_deref()),
        issued_at,
        expires_at,
        not_before,
        auth_time,
        scopes,
        client_id,
        binding_claim,
        confirmation: confirmation(claims.get("cnf"))?,
    })
}

fn string<'a>(
    claims: &'a Map<String, Value>,
    name: &str,
    wrong_type: &'static str,
) -> Result<Option<&'a str>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(TokenError::Malformed(wrong_type)),
    }
}

fn numeric_date(
    claims: &Map<String, Value>,
    name: &str,
    wrong_type: &'static str,
) -> Result<Option<UnixTime>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .map(|seconds| Some(UnixTime::from_numeric_date(seconds)))
            .ok_or(TokenError::Malformed(wrong_type)),
        Some(_) => Err(TokenError::Malformed(wrong_type)),
    }
}

/// `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )` (RFC 6749 section 3.3).
fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

fn scopes(value: Option<&Value>) -> Result<Scopes, TokenError> {
    const WRONG: TokenError =
        TokenError::Malformed("scope claim is not a space-separated string or array of strings");
    match value {
        None => Ok(Scopes::default()),
        Some(Value::String(text)) => {
            let items: Vec<&str> = text.split(' ').filter(|s| !s.is_empty()).collect();
            if items.iter().all(|s| is_scope_token(s)) {
                Ok(Scopes::from_list(items))
            } else {
                Err(WRONG)
            }
        }
        Some(Value::Array(list)) => {
            let mut items = Vec::with_capacity(list.len());
            for item in list {
                match item.as_str() {
                    Some(s) if is_scope_token(s) => items.push(s),
                    _ => return Err(WRONG),
                }
            }
            Ok(Scopes::from_list(items))
        }
        Some(_) => Err(WRONG),
    }
}

/// Reads `cnf` (RFC 7800): only a confirmation sessiongate can check in full binds the token.
///
/// Every method a `cnf` names is a condition on the presenter, and they all hold together.
/// So `x5t#S256` beside another method (`jkt`, `jwk`, anything else) is not "bound to this
/// certificate": the other condition would go unchecked, and the token fails closed as
/// [`Confirmation::Unsupported`]. An empty `cnf` names no method anyone could satisfy and
/// fails closed the same way. A malformed `x5t#S256` is a malformed token, whatever else the
/// `cnf` holds. `jkt` (RFC 9449 section 6.1) alone binds the token to a DPoP key, and is
/// malformed unless it is a base64url SHA-256 thumbprint.
fn confirmation(value: Option<&Value>) -> Result<Confirmation, TokenError> {
    let cnf = match value {
        None => return Ok(Confirmation::None),
        Some(Value::Object(cnf)) => cnf,
        Some(_) => return Err(TokenError::Malformed("cnf is not an object")),
    };
    let certificate = match cnf.get("x5t#S256") {
        None => None,
        Some(Value::String(text)) => Some(Thumbprint::from_base64url(text).ok_or(
            TokenError::Malformed("cnf x5t#S256 is not a base64url SHA-256 thumbprint"),
        )?),
        Some(_) => return Err(TokenError::Malformed("cnf x5t#S256 is not a string")),
    };
    let dpop_key = match cnf.get("jkt") {
        None => None,
        Some(Value::String(text)) => Some(Thumbprint::from_base64url(text).ok_or(
            TokenError::Malformed("cnf jkt is not a base64url SHA-256 thumbprint"),
        )?),
        Some(_) => return Err(TokenError::Malformed("cnf jkt is not a string")),
    };
    match (certificate, dpop_key) {
        (Some(thumbprint), None) if cnf.len() == 1 => {
            Ok(Confirmation::Certificate(Box::new(thumbprint)))
        }
        (None, Some(thumbprint)) if cnf.len() == 1 => {
            Ok(Confirmation::DpopKey(Box::new(thumbprint)))
        }
        _ => Ok(Confirmation::Unsupported),
    }
}

/// The JOSE header members sessiongate reads.
///
/// Each is absent or of its type: a member present with another type, `null` included, makes
/// the token malformed. Reading `"kid": null` as "no kid" would pick a key by algorithm alone.
#[derive(Debug)]
pub struct JoseHeader {
    /// `alg`: the signing algorithm the token claims (checked against the issuer's allow-list
    /// and the key before use).
    pub alg: Option<String>,
    /// `kid`: which of the issuer's keys signed it.
    pub kid: Option<String>,
    /// `typ`: the media type, which issuers may require (e.g. `at+jwt`, RFC 9068).
    pub typ: Option<String>,
    /// Whether the header has a `crit` member, whatever its value (`null` included):
    /// sessiongate understands no critical extension, so any makes the token unacceptable
    /// (RFC 7515 section 4.1.11).
    pub critical: bool,
}

impl JoseHeader {
    /// The members sessiongate reads out of a decoded header object.
    pub fn from_members(mut header: Map<String, Value>) -> Result<JoseHeader, TokenError> {
        let mut text = |name: &str, wrong_type: &'static str| match header.remove(name) {
            None => Ok(None),
            Some(Value::String(value)) => Ok(Some(value)),
            Some(_) => Err(TokenError::Malformed(wrong_type)),
        };
        Ok(JoseHeader {
            alg: text("alg", "header alg is not a string")?,
            kid: text("kid", "header kid is not a string")?,
            typ: text("typ", "header typ is not a string")?,
            critical: header.contains_key("crit"),
        })
    }

    /// The header's algorithm, refusing `none`, HMAC and anything unknown.
    pub fn algorithm(&self) -> Result<SigningAlgorithm, TokenError> {
        match self.alg.as_deref() {
            None => Err(TokenError::Malformed("header has no alg")),
            Some(alg) if alg.eq_ignore_ascii_case("none") => Err(TokenError::DisallowedAlgorithm(
                "unsigned tokens (alg none) are never accepted",
            )),
            Some(alg) if alg.starts_with("HS") => Err(TokenError::DisallowedAlgorithm(
                "symmetric algorithms are never accepted",
            )),
            Some(alg) => SigningAlgorithm::from_jose(alg).ok_or(TokenError::DisallowedAlgorithm(
                "algorithm is not supported",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> ClaimRules {
        ClaimRules {
            scope_claim: "scope".into(),
            binding_claim: Some("client_id".into()),
        }
    }

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    /// `extract` for a token of the fixture issuer's ES256 key.
    fn extract(
        claims: &Map<String, Value>,
        rules: &ClaimRules,
    ) -> Result<VerifiedToken, TokenError> {
        let keys = crate::KeySet::from_jwks_json(&crate::testing::jwks())
            .unwrap()
            .keys;
        let key = keys
            .find(Some("test-es256"), SigningAlgorithm::Es256)
            .unwrap()
            .clone();
        super::extract(claims, rules, crate::testing::ISSUER.into(), key)
    }

    #[test]
    fn extracts_every_claim_a_rule_reads() {
        let thumb = Thumbprint([7; 32]);
        let claims = object(json!({
            "sub": "alice", "jti": "j1", "sid": "s1", "iat": 100, "exp": 200.5, "nbf": 90,
            "auth_time": 80, "scope": "orders:read  orders:write", "client_id": "spiffe://a/b",
            "email": "Alice@Example.COM",
            "cnf": {"x5t#S256": thumb.to_string()}
        }));
        let got = extract(&claims, &rules()).unwrap();
        assert_eq!(got.subject(), Some("alice"));
        assert_eq!(got.token_id(), Some("j1"));
        assert_eq!(got.session_id(), Some("s1"));
        assert_eq!(got.email(), Some("alice@example.com"));
        assert_eq!(got.issued_at, Some(UnixTime::from_secs(100)));
        assert_eq!(got.expires_at, UnixTime::from_millis(200_500));
        assert_eq!(got.not_before, Some(UnixTime::from_secs(90)));
        assert_eq!(got.auth_time, Some(UnixTime::from_secs(80)));
        assert_eq!(got.scopes.as_str(), "orders:read orders:write");
        assert_eq!(got.binding_claim.as_deref(), Some("spiffe://a/b"));
        assert!(
            Arc::ptr_eq(
                got.client_id.as_ref().unwrap(),
                got.binding_claim.as_ref().unwrap()
            ),
            "client_id as the binding claim is kept once"
        );
        assert_eq!(got.confirmation, Confirmation::Certificate(Box::new(thumb)));
    }

    #[test]
    fn scopes_may_be_an_array() {
        let got = extract(&object(json!({"exp": 1, "scope": ["a", "b:c"]})), &rules()).unwrap();
        assert!(got.scopes.contains("a") && got.scopes.contains("b:c"));
        assert!(!got.scopes.contains("b"));
    }

    #[test]
    fn wrong_types_are_malformed_not_absent() {
        for claims in [
            json!({}),
            json!({"exp": "never"}),
            json!({"exp": 1, "iat": "0"}),
            json!({"exp": 1, "sub": 5}),
            json!({"exp": 1, "scope": 7}),
            json!({"exp": 1, "scope": ["ok", 3]}),
            json!({"exp": 1, "scope": "has\"quote"}),
            json!({"exp": 1, "client_id": ["x"]}),
            json!({"exp": 1, "email": true}),
            json!({"exp": 1, "cnf": "x"}),
            json!({"exp": 1, "cnf": {"x5t#S256": "short"}}),
        ] {
            assert!(
                matches!(
                    extract(&object(claims.clone()), &rules()),
                    Err(TokenError::Malformed(_))
                ),
                "{claims}"
            );
        }
    }

    #[test]
    fn null_is_a_wrong_type_for_every_claim_read_not_absent() {
        let rules = ClaimRules {
            scope_claim: "scp".into(),
            binding_claim: Some("azp".into()),
        };
        for (claim, problem) in [
            ("sub", "sub is not a string"),
            ("jti", "jti is not a string"),
            ("sid", "sid is not a string"),
            ("client_id", "client_id is not a string"),
            ("email", "email is not a string"),
            ("iat", "iat is not a number"),
            ("exp", "exp is not a number"),
            ("nbf", "nbf is not a number"),
            ("auth_time", "auth_time is not a number"),
            (
                "scp",
                "scope claim is not a space-separated string or array of strings",
            ),
            ("azp", "binding claim is not a string"),
            ("cnf", "cnf is not an object"),
        ] {
            let mut claims = object(json!({"exp": 1}));
            claims.insert(claim.into(), Value::Null);
            assert_eq!(
                extract(&claims, &rules).unwrap_err(),
                TokenError::Malformed(problem),
                "{claim}: null"
            );
        }
        assert!(audience_matches(&object(json!({"aud": null})), &["a".into()]).is_err());
        assert!(audience_matches(&object(json!({"aud": [null]})), &["a".into()]).is_err());
    }

    #[test]
    fn null_header_members_are_malformed_not_absent() {
        for (header, problem) in [
            (json!({"alg": null}), Some("header alg is not a string")),
            (
                json!({"alg": "ES256", "kid": null}),
                Some("header kid is not a string"),
            ),
            (
                json!({"alg": "ES256", "typ": null}),
                Some("header typ is not a string"),
            ),
            (
                json!({"alg": "ES256", "kid": 7}),
                Some("header kid is not a string"),
            ),
            (json!({"alg": "ES256", "crit": null}), None),
        ] {
            let parsed = JoseHeader::from_members(object(header.clone()));
            match problem {
                Some(problem) => {
                    assert_eq!(
                        parsed.unwrap_err(),
                        TokenError::Malformed(problem),
                        "{header}"
                    )
                }
                None => assert!(parsed.unwrap().critical, "{header}: crit present"),
            }
        }
    }

    #[test]
    fn unknown_confirmation_methods_fail_closed() {
        let got = extract(&object(json!({"exp": 1, "cnf": {"jwk": {}}})), &rules()).unwrap();
        assert_eq!(got.confirmation, Confirmation::Unsupported);
    }

    #[test]
    fn a_dpop_key_thumbprint_binds_the_token_to_that_key() {
        let jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
        let got = extract(&object(json!({"exp": 1, "cnf": {"jkt": jkt}})), &rules()).unwrap();
        assert_eq!(
            got.confirmation,
            Confirmation::DpopKey(Box::new(Thumbprint::from_base64url(jkt).unwrap()))
        );
        for (jkt, problem) in [
            (
                json!("abc"),
                "cnf jkt is not a base64url SHA-256 thumbprint",
            ),
            (json!(7), "cnf jkt is not a string"),
        ] {
            let got = extract(&object(json!({"exp": 1, "cnf": {"jkt": jkt}})), &rules());
            assert_eq!(got.unwrap_err(), TokenError::Malformed(problem));
        }
    }

    #[test]
    fn a_certificate_beside_another_confirmation_method_fails_closed() {
        let thumb = Thumbprint([7; 32]).to_string();
        for cnf in [
            json!({"x5t#S256": thumb, "jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}),
            json!({"x5t#S256": thumb, "jwk": {"kty": "OKP", "crv": "Ed25519", "x": "AA"}}),
            json!({"x5t#S256": thumb, "jku": "https://idp.example/keys"}),
            json!({"x5t#S256": thumb, "made-up": true}),
            json!({}),
        ] {
            let got = extract(&object(json!({"exp": 1, "cnf": cnf.clone()})), &rules()).unwrap();
            assert_eq!(got.confirmation, Confirmation::Unsupported, "{cnf}");
        }
    }

    #[test]
    fn a_malformed_certificate_thumbprint_is_malformed_whatever_else_cnf_holds() {
        for (cnf, problem) in [
            (json!({"x5t#S256": 7}), "cnf x5t#S256 is not a string"),
            (
                json!({"x5t#S256": ["x"], "jkt": "abc"}),
                "cnf x5t#S256 is not a string",
            ),
            (
                json!({"x5t#S256": "c2hvcnQ"}),
                "cnf x5t#S256 is not a base64url SHA-256 thumbprint",
            ),
            (
                json!({"x5t#S256": "+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+", "jkt": "abc"}),
                "cnf x5t#S256 is not a base64url SHA-256 thumbprint",
            ),
            (json!([]), "cnf is not an object"),
        ] {
            let got = extract(&object(json!({"exp": 1, "cnf": cnf.clone()})), &rules());
            assert_eq!(got.unwrap_err(), TokenError::Malformed(problem), "{cnf}");
        }
    }

    #[test]
    fn audience_may_be_a_string_or_a_list() {
        let audiences: Vec<Box<str>> = vec!["shop-api".into()];
        assert!(audience_matches(&object(json!({"aud": "shop-api"})), &audiences).unwrap());
        assert!(audience_matches(&object(json!({"aud": ["x", "shop-api"]})), &audiences).unwrap());
        assert!(!audience_matches(&object(json!({"aud": ["x"]})), &audiences).unwrap());
        assert!(!audience_matches(&object(json!({})), &audiences).unwrap());
        assert!(audience_matches(&object(json!({"aud": 3})), &audiences).is_err());
    }

    #[test]
    fn header_algorithm_refuses_none_and_hmac() {
        let header = |alg: &str| JoseHeader {
            alg: Some(alg.into()),
            kid: None,
            typ: None,
            critical: false,
        };
        assert!(matches!(
            header("none").algorithm(),
            Err(TokenError::DisallowedAlgorithm(_))
        ));
        assert!(matches!(
            header("NONE").algorithm(),
            Err(TokenError::DisallowedAlgorithm(_))
        ));
        assert!(matches!(
            header("HS256").algorithm(),
            Err(TokenError::DisallowedAlgorithm(_))
        ));
        assert!(matches!(
            header("XX1").algorithm(),
            Err(TokenError::DisallowedAlgorithm(_))
        ));
        assert_eq!(header("ES256").algorithm(), Ok(SigningAlgorithm::Es256));
    }
}
