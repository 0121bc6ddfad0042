//! Opaque tokens vouched for by their issuer's introspection endpoint (RFC 7662): which tokens
//! are opaque, and what an endpoint's answer means, as the same [`VerifiedToken`] a JWT becomes.
//!
//! Pure: the server posts the token and hands this module the answer's bytes. Everything a
//! rule reads afterwards (age, auth age, scope, binding, pinning, revocation, `cnf`) comes from
//! the answer through the claim mapping JWTs use ([`ClaimRules`]), so every decision rule and
//! the session cache apply unchanged.
//!
//! What an answer must say, and why:
//! - `active` must be the JSON `true`: missing, `false` or any other value is an inactive token
//!   ([`TokenError::Inactive`], denied `revoked`), as RFC 7662 section 2.2 requires.
//! - `iss`, when present, must be the issuer the endpoint was configured for (another issuer's
//!   tokens are not this endpoint's to vouch for); when absent, the endpoint speaks for its
//!   issuer (RFC 7662 makes `iss` optional, and the endpoint is authenticated by TLS).
//! - `aud` must name one of the issuer's audiences, exactly as for a JWT: a token minted for
//!   another resource server is refused (`wrong_audience`).
//! - `exp` is required, as for a JWT: an answer without it would make a session that never
//!   expires but for the cache. A missing `iat` is kept missing: the age rules then deny the
//!   token (`token_too_old`), as they do a JWT without `iat`, since sessiongate cannot know
//!   when it was issued and will not guess.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::algorithm::SigningAlgorithm;
use super::claims::{self, ClaimRules};
use super::json::object_with_unique_members;
use super::jws::CompactJws;
use super::keys::KeyRing;
use sessiongate_core::intern::intern;
use sessiongate_core::time::UnixTime;
use sessiongate_core::token::{KeyHandle, TokenError, VerifiedToken};

/// The key id an introspected session names in its [`KeyHandle`]: no signing key verified it,
/// and this handle is never retired (revocation of an opaque token is the endpoint's
/// `active: false`, seen when the session is re-introspected after its cache time).
pub const INTROSPECTION_KEY_ID: &str = "introspection";

/// The issuer whose introspection endpoint vouches for opaque tokens, and how long its answers
/// are trusted; compiled from config, part of the [`crate::TokenVerifier`], so a reload that
/// changes them drops the sessions they produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectionRules {
    /// The exact issuer the endpoint speaks for (`iss` of its answers, when they carry one).
    pub issuer: Arc<str>,
    /// `aud` of an active answer must contain one of these (the issuer's `audiences`).
    pub audiences: Box<[Box<str>]>,
    /// Longest an active answer is trusted before the token is introspected again: the delay
    /// after which the issuer's revocation (`active: false`) takes effect here.
    pub cache_ttl: Duration,
    /// Set when answers must be JWTs signed by the issuer (RFC 9701); `None`: plain JSON.
    pub signed: Option<SignedAnswers>,
}

/// What a signed introspection answer (RFC 9701, `application/token-introspection+jwt`) must
/// be: a JWS of type `token-introspection+jwt`, signed with one of the issuer's published keys
/// and algorithms, whose `iss` is the issuer and whose `aud` names sessiongate's client id. The
/// answer proper is its `token_introspection` claim. Signed answers let the answer be trusted
/// on its own, not only because the TLS connection it came over was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedAnswers {
    /// sessiongate's client id at the endpoint: the answer's `aud` must name it.
    pub audience: Box<str>,
    /// The issuer's allowed signature algorithms.
    pub algorithms: Box<[SigningAlgorithm]>,
}

/// An active answer: the token, and when it must be introspected again.
#[derive(Debug)]
pub struct Introspected {
    /// What the answer says, as every rule reads it.
    pub token: VerifiedToken,
    /// `min(exp, answered_at + cache_ttl)`: the session made of this answer is not handed out
    /// from this instant on, so the next request asks the endpoint again.
    pub recheck_at: UnixTime,
}

/// Whether `token` is opaque: not a three-part JWS compact serialisation, so no signature can
/// be checked here and only its issuer's introspection endpoint can say what it is.
pub fn is_opaque(token: &str) -> bool {
    token.bytes().filter(|&byte| byte == b'.').count() != 2
}

impl IntrospectionRules {
    /// Reads an introspection answer (`body`, the endpoint's JSON) received at `answered_at`:
    /// the token it describes, or why it is refused (see the module doc).
    ///
    /// A signed answer's signature is checked with the issuer's keys in `keys` first.
    pub fn read_answer(
        &self,
        body: &[u8],
        claim_rules: &ClaimRules,
        keys: &KeyRing,
        answered_at: UnixTime,
    ) -> Result<Introspected, TokenError> {
        let answer = match &self.signed {
            None => object_with_unique_members(body)
                .map_err(|_| TokenError::Malformed("introspection answer is not a JSON object"))?,
            Some(signed) => self.signed_answer(body, signed, keys)?,
        };
        if answer.get("active") != Some(&Value::Bool(true)) {
            return Err(TokenError::Inactive);
        }
        match answer.get("iss") {
            None => {}
            Some(Value::String(iss)) if *iss == *self.issuer => {}
            Some(Value::String(_)) => return Err(TokenError::UnknownIssuer),
            Some(_) => return Err(TokenError::Malformed("iss is not a string")),
        }
        if !claims::audience_matches(&answer, &self.audiences)? {
            return Err(TokenError::WrongAudience);
        }
        let token = claims::extract_vouched(
            &answer,
            claim_rules,
            Arc::clone(&self.issuer),
            KeyHandle::new(intern(INTROSPECTION_KEY_ID)),
        )?;
        let recheck_at = token.expires_at.min(answered_at.plus(self.cache_ttl));
        Ok(Introspected { token, recheck_at })
    }

    /// The `token_introspection` claim of a signed answer, once its type, algorithm,
    /// signature, `iss` and `aud` are checked, in that order (as a token's: unverified input
    /// never chooses how it is verified).
    fn signed_answer(
        &self,
        body: &[u8],
        signed: &SignedAnswers,
        keys: &KeyRing,
    ) -> Result<Map<String, Value>, TokenError> {
        let text = std::str::from_utf8(body)
            .map_err(|_| TokenError::Malformed("signed introspection answer is not text"))?
            .trim();
        let jws = CompactJws::split(text)?;
        let header = jws.header()?;
        let algorithm = header.algorithm()?;
        if header.critical {
            return Err(TokenError::Malformed(
                "header has critical extensions (crit)",
            ));
        }
        if !signed.algorithms.contains(&algorithm) {
            return Err(TokenError::DisallowedAlgorithm(
                "algorithm is not allowed for this issuer",
            ));
        }
        let typ = header.typ.as_deref().map(|typ| {
            typ.strip_prefix("application/")
                .unwrap_or(typ)
                .to_ascii_lowercase()
        });
        if typ.as_deref() != Some(SIGNED_ANSWER_TYP) {
            return Err(TokenError::Malformed(
                "signed introspection answer is not typed token-introspection+jwt",
            ));
        }
        keys.key_that_signed(&self.issuer, &jws, header.kid.as_deref(), algorithm)?;
        let mut claims = jws.claims()?;
        match claims.get("iss") {
            Some(Value::String(iss)) if *iss == *self.issuer => {}
            Some(Value::String(_)) | None => return Err(TokenError::UnknownIssuer),
            Some(_) => return Err(TokenError::Malformed("iss is not a string")),
        }
        if !claims::audience_matches(&claims, std::slice::from_ref(&signed.audience))? {
            return Err(TokenError::WrongAudience);
        }
        match claims.remove("token_introspection") {
            Some(Value::Object(answer)) => Ok(answer),
            _ => Err(TokenError::Malformed(
                "signed introspection answer has no token_introspection object",
            )),
        }
    }
}

/// The JOSE `typ` of a signed introspection answer (RFC 9701 section 5).
pub const SIGNED_ANSWER_TYP: &str = "token-introspection+jwt";

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ISSUER: &str = "https://idp.example.test";

    fn rules() -> IntrospectionRules {
        IntrospectionRules {
            issuer: ISSUER.into(),
            audiences: vec!["shop-api".into()].into(),
            cache_ttl: Duration::from_secs(300),
            signed: None,
        }
    }

    fn claim_rules() -> ClaimRules {
        ClaimRules {
            scope_claim: "scope".into(),
            binding_claim: Some("client_id".into()),
        }
    }

    fn read(answer: serde_json::Value) -> Result<Introspected, TokenError> {
        rules().read_answer(
            answer.to_string().as_bytes(),
            &claim_rules(),
            &KeyRing::new(),
            UnixTime::from_secs(1_000),
        )
    }

    fn active() -> serde_json::Value {
        json!({"active": true, "iss": ISSUER, "aud": "shop-api", "sub": "alice",
               "scope": "orders:read", "iat": 900, "exp": 2_000, "client_id": "shop",
               "jti": "t-1", "cnf": {"x5t#S256": "LQYIG0fhVZ3qqF4wXd5ehD7JaH1dLq44t0tO6QEd_2k"}})
    }

    #[test]
    fn only_three_part_tokens_are_jws() {
        assert!(is_opaque("2YotnFZFEjr1zCsicMWpAA"));
        assert!(is_opaque("a.b"));
        assert!(is_opaque("a.b.c.d"));
        assert!(!is_opaque("a.b.c"));
    }

    #[test]
    fn an_active_answer_is_the_token_a_jwt_would_be() {
        let got = read(active()).unwrap();
        assert_eq!(&*got.token.issuer, ISSUER);
        assert_eq!(got.token.subject(), Some("alice"));
        assert_eq!(got.token.token_id(), Some("t-1"));
        assert_eq!(got.token.scopes.as_str(), "orders:read");
        assert_eq!(got.token.issued_at, Some(UnixTime::from_secs(900)));
        assert_eq!(got.token.expires_at, UnixTime::from_secs(2_000));
        assert_eq!(got.token.binding_claim.as_deref(), Some("shop"));
        assert!(matches!(
            got.token.confirmation,
            sessiongate_core::token::Confirmation::Certificate(_)
        ));
        assert_eq!(&**got.token.key.id(), INTROSPECTION_KEY_ID);
        assert!(!got.token.key.is_retired());
    }

    #[test]
    fn an_answer_is_rechecked_at_exp_or_after_cache_ttl_whichever_is_first() {
        assert_eq!(
            read(active()).unwrap().recheck_at,
            UnixTime::from_secs(1_300)
        );
        let mut soon = active();
        soon["exp"] = json!(1_100);
        assert_eq!(read(soon).unwrap().recheck_at, UnixTime::from_secs(1_100));
    }

    #[test]
    fn anything_but_active_true_is_inactive() {
        for active in [json!(false), json!("true"), json!(1), json!(null)] {
            let mut answer = json!({"active": active, "exp": 2_000});
            assert_eq!(read(answer.take()).unwrap_err(), TokenError::Inactive);
        }
        assert_eq!(
            read(json!({"exp": 2_000})).unwrap_err(),
            TokenError::Inactive
        );
    }

    #[test]
    fn another_issuers_answer_or_audience_is_refused() {
        let mut other = active();
        other["iss"] = json!("https://evil.example.test");
        assert_eq!(read(other).unwrap_err(), TokenError::UnknownIssuer);
        let mut unnamed = active();
        unnamed.as_object_mut().unwrap().remove("iss");
        assert!(read(unnamed).is_ok(), "the endpoint speaks for its issuer");
        let mut billing = active();
        billing["aud"] = json!(["billing"]);
        assert_eq!(read(billing).unwrap_err(), TokenError::WrongAudience);
        let mut none = active();
        none.as_object_mut().unwrap().remove("aud");
        assert_eq!(read(none).unwrap_err(), TokenError::WrongAudience);
    }

    #[test]
    fn an_answer_without_exp_or_of_the_wrong_shape_is_malformed() {
        let mut endless = active();
        endless.as_object_mut().unwrap().remove("exp");
        assert!(matches!(read(endless), Err(TokenError::Malformed(_))));
        let duplicate = br#"{"active":true,"active":true}"#;
        assert!(matches!(
            rules().read_answer(
                duplicate,
                &claim_rules(),
                &KeyRing::new(),
                UnixTime::from_secs(1)
            ),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            rules().read_answer(
                b"<html>",
                &claim_rules(),
                &KeyRing::new(),
                UnixTime::from_secs(1)
            ),
            Err(TokenError::Malformed(_))
        ));
    }

    mod signed {
        use jsonwebtoken::{Algorithm, Header};

        use super::*;
        use crate::testing::{ISSUER as KEYS_ISSUER, ring, signing_key};

        fn signed_rules() -> IntrospectionRules {
            IntrospectionRules {
                issuer: KEYS_ISSUER.into(),
                signed: Some(SignedAnswers {
                    audience: "sessiongate".into(),
                    algorithms: vec![SigningAlgorithm::Es256].into(),
                }),
                ..rules()
            }
        }

        fn sign(typ: &str, key_file: &str, claims: serde_json::Value) -> Vec<u8> {
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some("test-es256".into());
            header.typ = Some(typ.into());
            jsonwebtoken::encode(&header, &claims, &signing_key(key_file, Algorithm::ES256))
                .unwrap()
                .into_bytes()
        }

        fn envelope(answer: serde_json::Value) -> serde_json::Value {
            json!({"iss": KEYS_ISSUER, "aud": "sessiongate", "iat": 1_000,
                   "token_introspection": answer})
        }

        fn read_signed(body: &[u8]) -> Result<Introspected, TokenError> {
            signed_rules().read_answer(body, &claim_rules(), &ring(), UnixTime::from_secs(1_000))
        }

        fn inner() -> serde_json::Value {
            let mut answer = active();
            answer["iss"] = json!(KEYS_ISSUER);
            answer
        }

        #[test]
        fn a_signed_answer_is_read_from_its_token_introspection_claim() {
            let body = sign("token-introspection+jwt", "es256.pem", envelope(inner()));
            let got = read_signed(&body).unwrap();
            assert_eq!(got.token.subject(), Some("alice"));
        }

        #[test]
        fn a_signed_answer_must_verify_be_typed_and_name_us() {
            let forged = sign(
                "token-introspection+jwt",
                "untrusted-es256.pem",
                envelope(inner()),
            );
            assert_eq!(read_signed(&forged).unwrap_err(), TokenError::BadSignature);
            let untyped = sign("JWT", "es256.pem", envelope(inner()));
            assert!(matches!(
                read_signed(&untyped),
                Err(TokenError::Malformed(_))
            ));
            let mut other = envelope(inner());
            other["aud"] = json!("someone-else");
            let body = sign("token-introspection+jwt", "es256.pem", other);
            assert_eq!(read_signed(&body).unwrap_err(), TokenError::WrongAudience);
            let plain = inner().to_string().into_bytes();
            assert!(
                matches!(read_signed(&plain), Err(TokenError::Malformed(_))),
                "a plain JSON answer is refused when answers must be signed"
            );
        }
    }
}
