//! JWS signature verification against the issuers' current keys.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::claims::{self, ClaimRules};
use super::introspection::{Introspected, IntrospectionRules};
use super::issuer::IssuerRules;
use super::jws::CompactJws;
use super::keys::KeyRing;
use sessiongate_core::token::{TokenError, VerifiedToken};

/// Verifies bearer tokens for a set of issuers. Built from config; immutable; replaced whole on
/// reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenVerifier {
    issuers: HashMap<Arc<str>, IssuerRules>,
    claims: ClaimRules,
    /// The issuer whose introspection endpoint vouches for opaque tokens, if any: at most one,
    /// since an opaque token names no issuer to route it by.
    introspection: Option<IntrospectionRules>,
}

impl TokenVerifier {
    /// A verifier trusting `issuers` and reading claims as `claims` says.
    pub fn new(
        issuers: impl IntoIterator<Item = IssuerRules>,
        claims: ClaimRules,
    ) -> TokenVerifier {
        let issuers = issuers
            .into_iter()
            .map(|rules| (Arc::clone(&rules.issuer), rules))
            .collect();
        TokenVerifier {
            issuers,
            claims,
            introspection: None,
        }
    }

    /// Accepts opaque tokens too, as `rules`' issuer's introspection endpoint describes them.
    pub fn with_introspection(mut self, rules: IntrospectionRules) -> TokenVerifier {
        self.introspection = Some(rules);
        self
    }

    /// How opaque tokens are judged, when some issuer introspects them.
    pub fn introspection(&self) -> Option<&IntrospectionRules> {
        self.introspection.as_ref()
    }

    /// Reads an introspection answer for an opaque token, received at `answered_at` (see
    /// [`IntrospectionRules::read_answer`]); `UnknownIssuer` when no issuer introspects.
    /// A signed answer (RFC 9701) is checked against the issuer's keys in `keys`.
    pub fn read_introspection(
        &self,
        body: &[u8],
        keys: &KeyRing,
        answered_at: sessiongate_core::time::UnixTime,
    ) -> Result<Introspected, TokenError> {
        self.introspection
            .as_ref()
            .ok_or(TokenError::UnknownIssuer)?
            .read_answer(body, &self.claims, keys, answered_at)
    }

    /// The issuers this verifier trusts.
    pub fn issuers(&self) -> impl Iterator<Item = &IssuerRules> {
        self.issuers.values()
    }

    /// Verifies `token` (the compact JWS from the `Authorization` header).
    ///
    /// Checks run cheapest-first and in an order that never lets unverified input choose how it
    /// is verified: the algorithm must be on the issuer's allow-list *and* fit the key, which is
    /// found by `kid` in the key set of the issuer named by `iss`. Time claims are not judged
    /// here (see the module doc).
    pub fn verify(&self, token: &str, keys: &KeyRing) -> Result<VerifiedToken, TokenError> {
        let jws = CompactJws::split(token)?;
        let header = jws.header()?;
        let algorithm = header.algorithm()?;
        if header.critical {
            return Err(TokenError::Malformed(
                "header has critical extensions (crit)",
            ));
        }
        let claims = jws.claims()?;
        let issuer = match claims.get("iss") {
            Some(Value::String(iss)) => self
                .issuers
                .get(iss.as_str())
                .ok_or(TokenError::UnknownIssuer)?,
            Some(_) => return Err(TokenError::Malformed("iss is not a string")),
            None => return Err(TokenError::UnknownIssuer),
        };
        if !issuer.algorithms.contains(&algorithm) {
            return Err(TokenError::DisallowedAlgorithm(
                "algorithm is not allowed for this issuer",
            ));
        }
        if !issuer.typ.accepts(header.typ.as_deref()) {
            return Err(TokenError::Malformed(
                "token type (typ) is not an access token",
            ));
        }
        let key = keys.key_that_signed(&issuer.issuer, &jws, header.kid.as_deref(), algorithm)?;
        if !claims::audience_matches(&claims, &issuer.audiences)? {
            return Err(TokenError::WrongAudience);
        }
        claims::extract(&claims, &self.claims, Arc::clone(&issuer.issuer), key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SigningAlgorithm, TypRule};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::json;

    use crate::testing::{ISSUER, mint, ring, signing_key as key};

    fn verifier() -> TokenVerifier {
        let rules = IssuerRules {
            issuer: ISSUER.into(),
            audiences: vec!["shop-api".into()].into(),
            algorithms: vec![
                SigningAlgorithm::Rs256,
                SigningAlgorithm::Es256,
                SigningAlgorithm::EdDsa,
            ]
            .into(),
            typ: TypRule::AccessTokenOrJwt,
        };
        TokenVerifier::new(
            [rules],
            ClaimRules {
                scope_claim: "scope".into(),
                binding_claim: None,
            },
        )
    }

    fn claims() -> Value {
        json!({"iss": ISSUER, "aud": "shop-api", "sub": "alice", "iat": 1000, "exp": 2000, "scope": "a b"})
    }

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    #[test]
    fn verifies_rs256_es256_and_eddsa() {
        for (alg, file, kid) in [
            (Algorithm::RS256, "rs256.pem", "test-rs256"),
            (Algorithm::ES256, "es256.pem", "test-es256"),
            (Algorithm::EdDSA, "eddsa.pem", "test-eddsa"),
        ] {
            let token = mint(alg, file, kid, &claims());
            let verified = verifier().verify(&token, &ring()).unwrap();
            assert_eq!(verified.subject(), Some("alice"));
            assert_eq!(&**verified.key.id(), kid);
            assert_eq!(verified.scopes.as_str(), "a b");
        }
    }

    #[test]
    fn a_signature_by_another_key_is_bad_signature() {
        let token = mint(
            Algorithm::ES256,
            "untrusted-es256.pem",
            "test-es256",
            &claims(),
        );
        assert_eq!(
            verifier().verify(&token, &ring()).unwrap_err(),
            TokenError::BadSignature
        );
    }

    #[test]
    fn a_tampered_payload_is_bad_signature() {
        let token = mint(Algorithm::EdDSA, "eddsa.pem", "test-eddsa", &claims());
        let parts: Vec<&str> = token.split('.').collect();
        let mut forged = claims();
        forged["scope"] = json!("admin");
        let tampered = format!("{}.{}.{}", parts[0], b64(&forged), parts[2]);
        assert_eq!(
            verifier().verify(&tampered, &ring()).unwrap_err(),
            TokenError::BadSignature
        );
    }

    #[test]
    fn unknown_issuer_and_unknown_kid_are_named() {
        let mut other = claims();
        other["iss"] = json!("https://evil.example");
        let token = mint(Algorithm::RS256, "rs256.pem", "test-rs256", &other);
        assert_eq!(
            verifier().verify(&token, &ring()).unwrap_err(),
            TokenError::UnknownIssuer
        );
        let token = mint(Algorithm::RS256, "rs256.pem", "rotated-away", &claims());
        assert_eq!(
            verifier().verify(&token, &ring()).unwrap_err(),
            TokenError::UnknownKey
        );
    }

    #[test]
    fn wrong_audience_is_named() {
        let mut other = claims();
        other["aud"] = json!(["billing"]);
        let token = mint(Algorithm::RS256, "rs256.pem", "test-rs256", &other);
        assert_eq!(
            verifier().verify(&token, &ring()).unwrap_err(),
            TokenError::WrongAudience
        );
    }

    #[test]
    fn alg_none_is_disallowed() {
        let token = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&claims())
        );
        assert!(matches!(
            verifier().verify(&token, &ring()),
            Err(TokenError::DisallowedAlgorithm(_))
        ));
    }

    #[test]
    fn hmac_with_the_public_key_as_secret_is_disallowed() {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("test-rs256".into());
        let secret = EncodingKey::from_secret(&crate::testing::jwks());
        let token = jsonwebtoken::encode(&header, &claims(), &secret).unwrap();
        assert!(matches!(
            verifier().verify(&token, &ring()),
            Err(TokenError::DisallowedAlgorithm(_))
        ));
    }

    #[test]
    fn an_algorithm_off_the_issuers_list_is_disallowed() {
        let token = mint(Algorithm::PS256, "rs256.pem", "test-rs256", &claims());
        assert_eq!(
            verifier().verify(&token, &ring()).unwrap_err(),
            TokenError::DisallowedAlgorithm("algorithm is not allowed for this issuer")
        );
    }

    #[test]
    fn an_algorithm_that_does_not_fit_the_key_is_disallowed() {
        // ES256 is allowed for the issuer, but the kid names the RSA key.
        let token = mint(Algorithm::ES256, "es256.pem", "test-rs256", &claims());
        assert_eq!(
            verifier().verify(&token, &ring()).unwrap_err(),
            TokenError::DisallowedAlgorithm("algorithm does not match the signing key")
        );
    }

    /// The fixture JWKS with its EC P-256 and Ed25519 keys both published under `kid`
    /// `migrating`, as RFC 7517 section 4.5 allows for keys of different types.
    fn ring_with_one_kid_for_ec_and_okp() -> KeyRing {
        let mut jwks: Value = serde_json::from_slice(&crate::testing::jwks()).unwrap();
        for key in jwks["keys"].as_array_mut().unwrap() {
            if key["kty"] == "EC" || key["kty"] == "OKP" {
                key["kid"] = json!("migrating");
            }
        }
        let keys = crate::KeySet::from_jwks_json(jwks.to_string().as_bytes())
            .unwrap()
            .keys;
        let ring = KeyRing::new();
        ring.replace(ISSUER, keys);
        ring
    }

    #[test]
    fn one_kid_shared_by_keys_of_different_types_verifies_each_algorithm() {
        let ring = ring_with_one_kid_for_ec_and_okp();
        for (alg, file) in [
            (Algorithm::ES256, "es256.pem"),
            (Algorithm::EdDSA, "eddsa.pem"),
        ] {
            let token = mint(alg, file, "migrating", &claims());
            let verified = verifier().verify(&token, &ring);
            assert!(verified.is_ok(), "{alg:?}: {verified:?}");
        }
        // No key under that kid fits RS256: still the algorithm's fault, not an unknown key.
        let token = mint(Algorithm::RS256, "rs256.pem", "migrating", &claims());
        assert_eq!(
            verifier().verify(&token, &ring).unwrap_err(),
            TokenError::DisallowedAlgorithm("algorithm does not match the signing key")
        );
    }

    /// A token with exactly these header and claims JSON texts, signed by the fixture ES256 key.
    fn es256_over(header: &str, claims: &str) -> String {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = jsonwebtoken::crypto::sign(
            signing_input.as_bytes(),
            &key("es256.pem", Algorithm::ES256),
            Algorithm::ES256,
        )
        .unwrap();
        format!("{signing_input}.{signature}")
    }

    #[test]
    fn null_header_members_are_malformed_not_absent() {
        let claims = claims().to_string();
        let well_formed = es256_over(r#"{"alg":"ES256","kid":"test-es256"}"#, &claims);
        assert!(verifier().verify(&well_formed, &ring()).is_ok());
        for (header, problem) in [
            (
                r#"{"alg":"ES256","kid":null}"#,
                "header kid is not a string",
            ),
            (
                r#"{"alg":"ES256","kid":"test-es256","typ":null}"#,
                "header typ is not a string",
            ),
            (
                r#"{"alg":"ES256","kid":"test-es256","crit":null}"#,
                "header has critical extensions (crit)",
            ),
            (
                r#"{"alg":null,"kid":"test-es256"}"#,
                "header alg is not a string",
            ),
        ] {
            assert_eq!(
                verifier()
                    .verify(&es256_over(header, &claims), &ring())
                    .unwrap_err(),
                TokenError::Malformed(problem),
                "{header}"
            );
        }
    }

    #[test]
    fn a_member_named_twice_is_malformed_in_the_header_and_at_any_depth_of_the_claims() {
        let header = r#"{"alg":"ES256","kid":"test-es256"}"#;
        let claims = r#"{"iss":"https://idp.example.test","aud":"shop-api","sub":"alice","iat":1000,"exp":2000,"cnf":{"x5t#S256":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc"}}"#;
        assert!(
            verifier()
                .verify(&es256_over(header, claims), &ring())
                .is_ok()
        );
        let duplicate_header = r#"{"alg":"ES256","kid":"test-es256","kid":"test-rs256"}"#;
        assert_eq!(
            verifier()
                .verify(&es256_over(duplicate_header, claims), &ring())
                .unwrap_err(),
            TokenError::Malformed("header names a member twice")
        );
        for (from, to) in [
            (r#""sub":"alice""#, r#""sub":"alice","sub":"admin""#),
            (r#""sub":"alice""#, r#""sub":"alice","sub":"admin""#),
            (r#""x5t#S256":"#, r#""x5t#S256":"AA","x5t#S256":"#),
        ] {
            let forged = claims.replacen(from, to, 1);
            assert_eq!(
                verifier()
                    .verify(&es256_over(header, &forged), &ring())
                    .unwrap_err(),
                TokenError::Malformed("claims name a member twice (at some depth)"),
                "{forged}"
            );
        }
    }

    #[test]
    fn null_claims_are_malformed_not_absent() {
        for claim in ["iat", "nbf", "sub", "jti", "aud", "scope", "cnf", "iss"] {
            let mut with_null = claims();
            with_null[claim] = Value::Null;
            let token = es256_over(
                r#"{"alg":"ES256","kid":"test-es256"}"#,
                &with_null.to_string(),
            );
            let verified = verifier().verify(&token, &ring());
            assert!(
                matches!(verified, Err(TokenError::Malformed(_))),
                "{claim}: null gave {verified:?}"
            );
        }
    }

    #[test]
    fn structural_garbage_is_malformed() {
        let header = b64(&json!({"alg": "RS256"}));
        for token in [
            "abc".to_owned(),
            "a.b".to_owned(),
            "a.b.c.d.e".to_owned(),
            "!!!.b.c".to_owned(),
            format!("{header}.bm90IGpzb24.sig"),
            format!("{header}.{}.sig", b64(&json!([1, 2]))),
            format!(
                "{}.{}.sig",
                b64(&json!({"alg": "RS256", "crit": ["exp"]})),
                b64(&claims())
            ),
            format!("{}.{}.sig", b64(&json!({"kid": "x"})), b64(&claims())),
        ] {
            assert!(
                matches!(
                    verifier().verify(&token, &ring()),
                    Err(TokenError::Malformed(_))
                ),
                "{token}"
            );
        }
    }

    #[test]
    fn foreign_token_types_are_malformed() {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("test-rs256".into());
        header.typ = Some("dpop+jwt".into());
        let token =
            jsonwebtoken::encode(&header, &claims(), &key("rs256.pem", Algorithm::RS256)).unwrap();
        assert!(matches!(
            verifier().verify(&token, &ring()),
            Err(TokenError::Malformed(_))
        ));
    }
}
