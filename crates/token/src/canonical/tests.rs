//! Every re-encoding of a signed token that can be made without its key lands on one identity;
//! every other change either breaks the signature or is another identity.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    EcdsaSigningAlgorithm, KeyPair, RSA_PSS_SHA256, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::*;
use crate::testing::{ISSUER, ecdsa_twin, mint, ring, with_signature};
use crate::{ClaimRules, IssuerRules, KeyRing, KeySet, TokenVerifier, TypRule};
use sessiongate_core::token::TokenError;

fn verifier() -> TokenVerifier {
    TokenVerifier::new(
        [IssuerRules {
            issuer: ISSUER.into(),
            audiences: vec!["shop-api".into()].into(),
            algorithms: SigningAlgorithm::ALL.to_vec().into(),
            typ: TypRule::AccessTokenOrJwt,
        }],
        ClaimRules {
            scope_claim: "scope".into(),
            binding_claim: None,
        },
    )
}

fn claims() -> Value {
    json!({"iss": ISSUER, "aud": "shop-api", "sub": "alice", "iat": 1000, "exp": 2000})
}

fn plain_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Which of a token and its twin is the low-S one.
fn low_and_high(token: String, twin: String) -> (String, String) {
    let is_canonical = canonical_digest(&token) == plain_digest(&token);
    if is_canonical {
        (token, twin)
    } else {
        (twin, token)
    }
}

#[test]
fn an_es256_token_and_its_high_s_twin_share_one_identity() {
    for n in 0..8 {
        let mut claims = claims();
        claims["jti"] = json!(format!("t{n}"));
        let token = mint(Algorithm::ES256, "es256.pem", "test-es256", &claims);
        let twin = ecdsa_twin(&token, &P256_ORDER);
        assert_ne!(token, twin);
        assert!(
            verifier().verify(&twin, &ring()).is_ok(),
            "the twin verifies"
        );
        assert_eq!(canonical_digest(&token), canonical_digest(&twin));
        let (low, high) = low_and_high(token, twin);
        assert_eq!(
            canonical_digest(&low),
            plain_digest(&low),
            "a low-S token keeps the plain SHA-256 of its bytes"
        );
        assert_ne!(canonical_digest(&high), plain_digest(&high));
    }
}

/// A fresh EC key of the issuer, published as the only key of its JWKS (`kid` "ec", no
/// `alg`), and a signer of compact JWS over any header.
struct EcIssuer {
    ring: KeyRing,
    pair: EcdsaKeyPair,
}

impl EcIssuer {
    fn p256() -> EcIssuer {
        EcIssuer::new(&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256")
    }

    fn p384() -> EcIssuer {
        EcIssuer::new(&ECDSA_P384_SHA384_FIXED_SIGNING, "P-384")
    }

    fn new(curve: &'static EcdsaSigningAlgorithm, name: &str) -> EcIssuer {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(curve, &SystemRandom::new()).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(curve, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        let (x, y) = point[1..].split_at((point.len() - 1) / 2);
        let jwks = json!({"keys": [{"kty": "EC", "crv": name, "kid": "ec",
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)}]});
        let ring = KeyRing::new();
        ring.replace(
            ISSUER,
            KeySet::from_jwks_json(jwks.to_string().as_bytes())
                .unwrap()
                .keys,
        );
        EcIssuer { ring, pair }
    }

    /// `claims` signed under the JOSE header `header` (JSON text, as is).
    fn sign(&self, header: &str, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

const ES384_HEADER: &str = r#"{"alg":"ES384","kid":"ec"}"#;

#[test]
fn an_es384_token_and_its_high_s_twin_share_one_identity() {
    let issuer = EcIssuer::p384();
    let ring = &issuer.ring;
    for n in 0..8 {
        let mut claims = claims();
        claims["jti"] = json!(format!("t{n}"));
        let token = issuer.sign(ES384_HEADER, &claims);
        let twin = ecdsa_twin(&token, &P384_ORDER);
        assert!(verifier().verify(&token, ring).is_ok());
        assert!(verifier().verify(&twin, ring).is_ok(), "the twin verifies");
        assert_eq!(canonical_digest(&token), canonical_digest(&twin));
        let (low, _) = low_and_high(token, twin);
        assert_eq!(canonical_digest(&low), plain_digest(&low));
    }
}

#[test]
fn an_unusual_header_is_read_by_the_verifiers_parser_and_its_twin_still_shares_the_identity() {
    // `alg` written with an escape, and a header too long for the stack buffer: both take the
    // verifier's own parser.
    let issuer = EcIssuer::p256();
    let long = format!(
        r#"{{"alg":"ES256","kid":"ec","x-pad":"{}"}}"#,
        "a".repeat(600)
    );
    for header in [r#"{"alg":"\u0045S256","kid":"ec"}"#, long.as_str()] {
        for n in 0..4 {
            let mut claims = claims();
            claims["jti"] = json!(format!("u{n}"));
            let token = issuer.sign(header, &claims);
            let twin = ecdsa_twin(&token, &P256_ORDER);
            assert!(verifier().verify(&token, &issuer.ring).is_ok(), "{header}");
            assert!(verifier().verify(&twin, &issuer.ring).is_ok(), "{header}");
            assert_eq!(
                canonical_digest(&token),
                canonical_digest(&twin),
                "{header}"
            );
        }
    }
}

#[test]
fn an_eddsa_signature_with_s_plus_l_does_not_verify() {
    // L, the order of the Ed25519 base point, little-endian.
    let order: [u8; 32] = {
        let mut be = [0u8; 32];
        be[0] = 0x10;
        be[16..].copy_from_slice(&0x14def9dea2f79cd65812631a5cf5d3edu128.to_be_bytes());
        be.reverse();
        be
    };
    let token = mint(Algorithm::EdDSA, "eddsa.pem", "test-eddsa", &claims());
    assert!(verifier().verify(&token, &ring()).is_ok());
    let twin = with_signature(&token, |signature| {
        let mut carry = 0u16;
        for (byte, add) in signature[32..].iter_mut().zip(order) {
            let sum = u16::from(*byte) + u16::from(add) + carry;
            *byte = sum as u8;
            carry = sum >> 8;
        }
    });
    assert_eq!(
        verifier().verify(&twin, &ring()).unwrap_err(),
        TokenError::BadSignature,
        "S + L is refused, so Ed25519 has one encoding per signature"
    );
    assert_eq!(canonical_digest(&token), plain_digest(&token));
}

#[test]
fn rsa_signatures_of_another_length_or_above_the_modulus_do_not_verify() {
    let token = mint(Algorithm::RS256, "rs256.pem", "test-rs256", &claims());
    assert_eq!(canonical_digest(&token), plain_digest(&token));
    let longer = with_signature(&token, |signature| signature.insert(0, 0));
    assert_eq!(
        verifier().verify(&longer, &ring()).unwrap_err(),
        TokenError::BadSignature
    );
    let all_ones = with_signature(&token, |signature| signature.fill(0xff));
    assert_eq!(
        verifier().verify(&all_ones, &ring()).unwrap_err(),
        TokenError::BadSignature
    );
}

#[test]
fn two_pss_signatures_of_one_claim_set_are_two_tokens_the_issuer_minted() {
    // PSS is randomised by the signer: both verify, and each is its own session, because
    // making the second needs the private key.
    let pem = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/keys/rs256.pem"
    ))
    .unwrap();
    let der = pem_body(&pem);
    let pair = RsaKeyPair::from_pkcs8(&der)
        .or_else(|_| RsaKeyPair::from_der(&der))
        .unwrap();
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"PS256","kid":"test-rs256"}"#);
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims().to_string()));
    let sign = || {
        let mut signature = vec![0; pair.public_modulus_len()];
        pair.sign(
            &RSA_PSS_SHA256,
            &SystemRandom::new(),
            input.as_bytes(),
            &mut signature,
        )
        .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    };
    let (first, second) = (sign(), sign());
    assert_ne!(first, second);
    // The fixture JWK says `alg: RS256`; the same key without it accepts PS256 too.
    let mut jwks: Value = serde_json::from_slice(&crate::testing::jwks()).unwrap();
    for key in jwks["keys"].as_array_mut().unwrap() {
        key.as_object_mut().unwrap().remove("alg");
    }
    let ring = KeyRing::new();
    ring.replace(
        ISSUER,
        KeySet::from_jwks_json(jwks.to_string().as_bytes())
            .unwrap()
            .keys,
    );
    assert!(verifier().verify(&first, &ring).is_ok());
    assert!(verifier().verify(&second, &ring).is_ok());
    assert_eq!(canonical_digest(&first), plain_digest(&first));
    assert_ne!(canonical_digest(&first), canonical_digest(&second));
}

fn pem_body(pem: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(pem).unwrap();
    let body: String = text
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

#[test]
fn a_signature_text_with_non_zero_trailing_bits_does_not_verify() {
    // 64 bytes take 86 characters, whose last carries 4 unused bits.
    let token = mint(Algorithm::ES256, "es256.pem", "test-es256", &claims());
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let last = signature.as_bytes()[85];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let index = alphabet.iter().position(|&c| c == last).unwrap();
    let sloppy = alphabet[(index & !0b1111) | 0b0001] as char;
    let variant = format!("{signing_input}.{}{sloppy}", &signature[..85]);
    assert_ne!(variant, token);
    assert_eq!(
        verifier().verify(&variant, &ring()).unwrap_err(),
        TokenError::BadSignature
    );
    let padded = format!("{token}==");
    assert_eq!(
        verifier().verify(&padded, &ring()).unwrap_err(),
        TokenError::BadSignature
    );
}

#[test]
fn a_high_s_looking_signature_under_another_algorithm_is_left_alone() {
    // An EdDSA token's second half read as a P-256 scalar is "high" about half the time; only
    // a token that claims ECDSA is normalised.
    for n in 0..16 {
        let mut claims = claims();
        claims["jti"] = json!(format!("e{n}"));
        let token = mint(Algorithm::EdDSA, "eddsa.pem", "test-eddsa", &claims);
        assert_eq!(canonical_digest(&token), plain_digest(&token));
    }
}

#[test]
fn out_of_range_scalars_and_non_jws_text_hash_as_they_are() {
    let mut s = P256_ORDER;
    assert!(
        !negate_if_high(&mut s, &P256_ORDER),
        "s = n is out of range"
    );
    let mut zero = [0u8; 32];
    assert!(!negate_if_high(&mut zero, &P256_ORDER));
    let mut max = [0xffu8; 32];
    assert!(!negate_if_high(&mut max, &P256_ORDER));
    let mut one = [0u8; 32];
    one[31] = 1;
    assert!(!negate_if_high(&mut one, &P256_ORDER), "1 is low already");
    let mut minus_one = P256_ORDER;
    minus_one[31] -= 1;
    assert!(negate_if_high(&mut minus_one, &P256_ORDER));
    assert_eq!(minus_one, one, "n − 1 becomes 1");
    for text in ["", "abc", "a.b", "a.b.c.d", "....."] {
        assert_eq!(canonical_digest(text), plain_digest(text));
    }
}

/// Property tests: whatever a thief does to a signed token without the key, either the result
/// does not verify, or it is the same session.
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// What an attacker can do to a token's text without any key.
    #[derive(Debug, Clone)]
    enum Edit {
        /// Replace the character at (position modulo length) by another base64url character.
        Replace(usize, u8),
        /// Replace `s` by `n − s` (ECDSA's own malleability).
        Negate,
        /// Append base64 padding to the signature.
        Pad,
        /// Negate, then replace a character.
        NegateThenReplace(usize, u8),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        prop_oneof![
            (any::<usize>(), 0u8..64).prop_map(|(at, c)| Edit::Replace(at, c)),
            Just(Edit::Negate),
            Just(Edit::Pad),
            (any::<usize>(), 0u8..64).prop_map(|(at, c)| Edit::NegateThenReplace(at, c)),
        ]
    }

    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    fn replace(token: &str, at: usize, c: u8) -> String {
        let mut bytes = token.as_bytes().to_vec();
        let at = at % bytes.len();
        if bytes[at] != b'.' {
            bytes[at] = ALPHABET[usize::from(c)];
        }
        String::from_utf8(bytes).unwrap()
    }

    fn apply(token: &str, edit: &Edit, order: &[u8]) -> String {
        match edit {
            Edit::Replace(at, c) => replace(token, *at, *c),
            Edit::Negate => ecdsa_twin(token, order),
            Edit::Pad => format!("{token}="),
            Edit::NegateThenReplace(at, c) => replace(&ecdsa_twin(token, order), *at, *c),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn every_keyless_re_encoding_that_verifies_is_the_same_session(
            sub in "[a-z]{1,12}",
            n in any::<u32>(),
            alg in prop_oneof![Just(0u8), Just(1u8), Just(2u8), Just(3u8)],
            edits in proptest::collection::vec(edit(), 1..4),
        ) {
            let mut claims = claims();
            claims["sub"] = json!(sub);
            claims["jti"] = json!(format!("p{n}"));
            let es384 = EcIssuer::p384();
            let (token, ring, order): (String, KeyRing, &[u8]) = match alg {
                0 => (mint(Algorithm::ES256, "es256.pem", "test-es256", &claims), ring(), &P256_ORDER),
                1 => (es384.sign(ES384_HEADER, &claims), es384.ring, &P384_ORDER),
                2 => (mint(Algorithm::EdDSA, "eddsa.pem", "test-eddsa", &claims), ring(), &P256_ORDER),
                _ => (mint(Algorithm::RS256, "rs256.pem", "test-rs256", &claims), ring(), &P256_ORDER),
            };
            prop_assert!(verifier().verify(&token, &ring).is_ok());
            for edit in &edits {
                // Negation only applies to 64- and 96-byte signatures; elsewhere it is skipped.
                let signature_len = URL_SAFE_NO_PAD
                    .decode(token.rsplit_once('.').unwrap().1)
                    .unwrap()
                    .len();
                if matches!(edit, Edit::Negate | Edit::NegateThenReplace(..))
                    && signature_len != order.len() * 2
                {
                    continue;
                }
                let variant = apply(&token, edit, order);
                if verifier().verify(&variant, &ring).is_ok() {
                    prop_assert_eq!(
                        canonical_digest(&variant),
                        canonical_digest(&token),
                        "{:?} made a second session of one token", edit
                    );
                }
            }
        }
    }
}

/// The identity an ECDSA signature gets from the full decode and comparison alone, without the
/// 16-character shortcut for surely-low `s` values.
fn identity_without_shortcut(token: &str, order: &[u8]) -> [u8; 32] {
    let (signing_input, signature_b64) = token.rsplit_once('.').expect("a JWS");
    let mut signature = URL_SAFE_NO_PAD.decode(signature_b64).expect("base64url");
    let half = signature.len() / 2;
    if negate_if_high(&mut signature[half..], order) {
        Sha256::new()
            .chain_update(signing_input.as_bytes())
            .chain_update(b".")
            .chain_update(URL_SAFE_NO_PAD.encode(&signature))
            .finalize()
            .into()
    } else {
        plain_digest(token)
    }
}

#[test]
fn the_low_s_shortcut_agrees_with_the_full_comparison_around_half_the_order() {
    for (alg, order, header) in [
        ("ES256", &P256_ORDER[..], r#"{"alg":"ES256"}"#),
        ("ES384", &P384_ORDER[..], r#"{"alg":"ES384"}"#),
    ] {
        let size = order.len();
        // (n − 1) / 2, the largest low `s`, and values around it and the shortcut's prefix.
        let mut half = vec![0u8; size];
        let mut carry = 0u8;
        for (i, byte) in order.iter().enumerate() {
            half[i] = byte >> 1 | carry;
            carry = byte << 7;
        }
        let mut cases = vec![half.clone(), vec![0x01; size], order.to_vec()];
        for step in [1u8, 2, 0x80] {
            let mut above = half.clone();
            let mut below = half.clone();
            above[size - 1] = above[size - 1].wrapping_add(step);
            below[size - 1] = below[size - 1].wrapping_sub(step);
            cases.extend([above, below]);
        }
        for at in 0..10 {
            let mut nudged = half.clone();
            nudged[at] ^= 0x01;
            cases.push(nudged);
        }
        for s in cases {
            let mut signature = vec![0x42u8; size];
            signature.extend_from_slice(&s);
            let token = format!(
                "{}.e30.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(&signature)
            );
            assert_eq!(
                canonical_digest(&token),
                identity_without_shortcut(&token, order),
                "{alg} with s = {s:02x?}"
            );
        }
    }
}
