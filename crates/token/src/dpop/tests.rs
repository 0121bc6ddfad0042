//! One test per check of a proof, each breaking one thing of a sound proof minted with a
//! freshly generated key (aws-lc-rs, as a client would).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use serde_json::{Value, json};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;

const ALLOWED: [SigningAlgorithm; 2] = [SigningAlgorithm::Es256, SigningAlgorithm::EdDsa];

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A client's P-256 key and its public JWK.
struct Client {
    key: EcdsaKeyPair,
    jwk: Value,
}

fn client() -> Client {
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let point = key.public_key().as_ref().to_vec();
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])});
    Client { key, jwk }
}

impl Client {
    /// RFC 7638, computed here independently of the code under test.
    fn thumbprint(&self) -> Thumbprint {
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            self.jwk["x"].as_str().unwrap(),
            self.jwk["y"].as_str().unwrap()
        );
        Thumbprint(Sha256::digest(canonical.as_bytes()).into())
    }

    fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk})
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", b64(signature.as_ref()))
    }
}

fn claims() -> Value {
    json!({"jti": "e1j3V_bKic8-LAEB", "htm": "GET", "htu": "https://api.example.com/orders",
           "iat": 1_800_000_000, "ath": b64(&[9; 32]), "nonce": "n-1"})
}

fn verifier() -> ProofVerifier {
    ProofVerifier::new(ALLOWED)
}

fn refused(proof: &str) -> &'static str {
    verifier().verify(proof).expect_err("expected a refusal").0
}

#[test]
fn a_sound_proof_says_what_it_claims_and_whose_key_signed_it() {
    let client = client();
    let proof = verifier()
        .verify(&client.sign(&client.header(), &claims()))
        .unwrap();
    assert_eq!(proof.key, client.thumbprint());
    assert_eq!(&*proof.method, "GET");
    assert_eq!(&*proof.target, "https://api.example.com/orders");
    assert_eq!(proof.issued_at, UnixTime::from_secs(1_800_000_000));
    assert_eq!(proof.token_hash, Some(Thumbprint([9; 32])));
    assert_eq!(proof.nonce.as_deref(), Some("n-1"));
}

#[test]
fn an_ed25519_proof_verifies() {
    let key = Ed25519KeyPair::generate().unwrap();
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(key.public_key().as_ref())});
    let header = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": jwk});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims().to_string().as_bytes())
    );
    let proof = format!("{input}.{}", b64(key.sign(input.as_bytes()).as_ref()));
    assert!(verifier().verify(&proof).is_ok());
}

#[test]
fn the_thumbprint_is_rfc_7638s() {
    // RFC 7638 section 3.1's example key and thumbprint.
    let jwk = json!({"kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"});
    let key = parse_jwk_for(jwk, Some(SigningAlgorithm::Rs256)).unwrap();
    assert_eq!(
        b64(key.thumbprint()),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
}

#[test]
fn typ_must_be_dpop_jwt() {
    let client = client();
    for typ in [json!("JWT"), json!("at+jwt"), Value::Null] {
        let mut header = client.header();
        header["typ"] = typ.clone();
        let problem = refused(&client.sign(&header, &claims()));
        assert!(
            problem.contains("typ") || problem.contains("malformed"),
            "{typ}: {problem}"
        );
    }
    let mut header = client.header();
    header.as_object_mut().unwrap().remove("typ");
    assert_eq!(
        refused(&client.sign(&header, &claims())),
        "DPoP proof typ is not dpop+jwt"
    );
}

#[test]
fn alg_must_be_on_the_allow_list_and_asymmetric() {
    let client = client();
    for alg in ["none", "HS256", "ES384", "RS256", "es256"] {
        let mut header = client.header();
        header["alg"] = json!(alg);
        assert_eq!(
            refused(&client.sign(&header, &claims())),
            "DPoP proof alg is not an allowed algorithm",
            "{alg}"
        );
    }
}

#[test]
fn alg_must_fit_the_jwk() {
    let client = client();
    let mut header = client.header();
    header["alg"] = json!("EdDSA");
    assert_eq!(
        refused(&client.sign(&header, &claims())),
        "DPoP proof alg does not fit its jwk"
    );
}

#[test]
fn jwk_must_be_a_public_key() {
    let client = client();
    for (member, value) in [
        ("d", json!("AAAA")),
        ("p", json!("AAAA")),
        ("q", json!("AAAA")),
        ("dp", json!("AAAA")),
        ("qi", json!("AAAA")),
    ] {
        let mut header = client.header();
        header["jwk"][member] = value;
        assert_eq!(
            refused(&client.sign(&header, &claims())),
            "DPoP proof jwk is a private key",
            "{member}"
        );
    }
    let mut header = client.header();
    header["jwk"] = json!({"kty": "oct", "k": "c2VjcmV0"});
    assert_eq!(
        refused(&client.sign(&header, &claims())),
        "DPoP proof jwk is a symmetric key"
    );
    let mut header = client.header();
    header.as_object_mut().unwrap().remove("jwk");
    assert_eq!(
        refused(&client.sign(&header, &claims())),
        "DPoP proof header has no jwk object"
    );
}

#[test]
fn the_signature_must_verify_with_the_jwk() {
    let (client, other) = (client(), client());
    let mut header = client.header();
    header["jwk"] = other.jwk.clone();
    assert_eq!(
        refused(&client.sign(&header, &claims())),
        "DPoP proof signature does not verify"
    );
}

#[test]
fn a_critical_header_is_refused() {
    let client = client();
    let mut header = client.header();
    header["crit"] = json!(["exp"]);
    assert_eq!(
        refused(&client.sign(&header, &claims())),
        "DPoP proof has a crit header"
    );
}

#[test]
fn jti_htm_htu_and_iat_are_required() {
    let client = client();
    for (claim, problem) in [
        ("jti", "DPoP proof has no jti"),
        ("htm", "DPoP proof has no htm"),
        ("htu", "DPoP proof has no htu"),
        ("iat", "DPoP proof has no numeric iat"),
    ] {
        let mut claims = claims();
        claims.as_object_mut().unwrap().remove(claim);
        assert_eq!(refused(&client.sign(&client.header(), &claims)), problem);
        let mut claims = super::tests::claims();
        claims[claim] = json!(["x"]);
        assert_eq!(refused(&client.sign(&client.header(), &claims)), problem);
    }
}

#[test]
fn one_bounded_proof_only() {
    let client = client();
    let proof = client.sign(&client.header(), &claims());
    assert_eq!(
        refused(&format!("{proof},{proof}")),
        "exactly one DPoP proof is allowed"
    );
    assert_eq!(
        verifier()
            .verify_header(AuthorizationValues::Several)
            .unwrap_err()
            .0,
        "exactly one DPoP proof is allowed"
    );
    assert_eq!(
        verifier()
            .verify_header(AuthorizationValues::Absent)
            .unwrap_err()
            .0,
        "a DPoP proof is required"
    );
    let mut huge = claims();
    huge["pad"] = json!("a".repeat(MAX_PROOF_LEN));
    assert_eq!(
        refused(&client.sign(&client.header(), &huge)),
        "DPoP proof exceeds 8192 bytes"
    );
    assert_eq!(refused("a.b"), "DPoP proof is not a JWS");
}

#[test]
fn replay_keys_differ_by_jti_and_by_key() {
    let (a, b) = (client(), client());
    let first = verifier().verify(&a.sign(&a.header(), &claims())).unwrap();
    let mut other_jti = claims();
    other_jti["jti"] = json!("another");
    let second = verifier().verify(&a.sign(&a.header(), &other_jti)).unwrap();
    let other_key = verifier().verify(&b.sign(&b.header(), &claims())).unwrap();
    assert_ne!(first.replay_key, second.replay_key);
    assert_ne!(first.replay_key, other_key.replay_key);
    let again = verifier().verify(&a.sign(&a.header(), &claims())).unwrap();
    assert_eq!(first.replay_key, again.replay_key, "same key, same jti");
}
