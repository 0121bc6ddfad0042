//! Test fixtures shared by unit tests: the fixture issuer's keys and token minting.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

use crate::token::{KeyRing, KeySet};

/// The issuer the fixture keys belong to.
pub const ISSUER: &str = "https://idp.example.test";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys");

/// The fixture issuer's published JWKS.
pub fn jwks() -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/jwks.json")).unwrap()
}

/// A key ring holding the fixture JWKS for [`ISSUER`].
pub fn ring() -> KeyRing {
    let ring = KeyRing::new();
    ring.replace(ISSUER, KeySet::from_jwks_json(&jwks()).unwrap().keys);
    ring
}

/// The private key in `file` (under tests/fixtures/keys) for `alg`.
pub fn signing_key(file: &str, alg: Algorithm) -> EncodingKey {
    let pem = std::fs::read(format!("{FIXTURES}/{file}")).unwrap();
    match alg {
        Algorithm::RS256 | Algorithm::PS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
        _ => EncodingKey::from_ed_pem(&pem).unwrap(),
    }
}

/// A token over `claims`, signed with the key in `file`, naming `kid`.
pub fn mint(alg: Algorithm, file: &str, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, &signing_key(file, alg)).unwrap()
}

/// An ES256 token from the trusted fixture key.
pub fn mint_es256(claims: &Value) -> String {
    mint(Algorithm::ES256, "es256.pem", "test-es256", claims)
}
