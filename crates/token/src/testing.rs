//! Test fixtures shared by the workspace's unit tests (feature `testing`): the fixture
//! issuer's keys (`tests/fixtures/keys`) and token minting.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

use crate::{KeyRing, KeySet};

/// The issuer the fixture keys belong to.
pub const ISSUER: &str = "https://idp.example.test";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/keys");

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

/// `token` with its signature bytes replaced by `edit` of them.
pub fn with_signature(token: &str, edit: impl FnOnce(&mut Vec<u8>)) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
    edit(&mut bytes);
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// An ECDSA token's twin that anyone can compute without the key: `s` replaced by `n − s`
/// (`order` is the curve's `n`, big-endian, e.g. [`crate::P256_ORDER`]).
pub fn ecdsa_twin(token: &str, order: &[u8]) -> String {
    with_signature(token, |signature| {
        let s = &mut signature[order.len()..];
        let mut borrow = 0i16;
        for i in (0..s.len()).rev() {
            let mut digit = i16::from(order[i]) - i16::from(s[i]) - borrow;
            borrow = i16::from(digit < 0);
            if digit < 0 {
                digit += 256;
            }
            s[i] = digit as u8;
        }
    })
}
