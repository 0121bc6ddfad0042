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

/// A DPoP client (RFC 9449) with a freshly generated key: ES256 (P-256) or EdDSA (Ed25519).
/// Proofs are assembled and signed here with aws-lc-rs directly, as a client library would,
/// not with the code under test.
pub struct DpopClient {
    key: DpopKey,
    jwk: Value,
}

enum DpopKey {
    P256(aws_lc_rs::signature::EcdsaKeyPair),
    Ed25519(aws_lc_rs::signature::Ed25519KeyPair),
}

impl DpopClient {
    /// A client with a new P-256 key (ES256).
    pub fn es256() -> DpopClient {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let point = key.public_key().as_ref().to_vec();
        let jwk = serde_json::json!({"kty": "EC", "crv": "P-256",
            "x": b64(&point[1..33]), "y": b64(&point[33..])});
        DpopClient {
            key: DpopKey::P256(key),
            jwk,
        }
    }

    /// A client with a new Ed25519 key (EdDSA).
    pub fn ed25519() -> DpopClient {
        use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
        let key = Ed25519KeyPair::generate().unwrap();
        let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519",
            "x": b64(key.public_key().as_ref())});
        DpopClient {
            key: DpopKey::Ed25519(key),
            jwk,
        }
    }

    /// The public JWK.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// The `alg` this client signs with.
    pub fn alg(&self) -> &'static str {
        match self.key {
            DpopKey::P256(_) => "ES256",
            DpopKey::Ed25519(_) => "EdDSA",
        }
    }

    /// The RFC 7638 thumbprint of the public key, base64url: a bound token's `cnf.jkt`.
    pub fn jkt(&self) -> String {
        use sha2::{Digest, Sha256};
        let member = |name: &str| self.jwk[name].as_str().unwrap_or_default().to_owned();
        let canonical = match self.key {
            DpopKey::P256(_) => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                member("x"),
                member("y")
            ),
            DpopKey::Ed25519(_) => {
                format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, member("x"))
            }
        };
        b64(&Sha256::digest(canonical.as_bytes()))
    }

    /// The header and claims of a sound proof for `method` `htu` with `access_token`, issued
    /// now with a random `jti`, for a test to alter before [`DpopClient::sign`].
    pub fn parts(&self, method: &str, htu: &str, access_token: &str) -> (Value, Value) {
        use sha2::{Digest, Sha256};
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        (
            serde_json::json!({"typ": "dpop+jwt", "alg": self.alg(), "jwk": self.jwk}),
            serde_json::json!({"jti": b64(&jti), "htm": method, "htu": htu, "iat": now,
                "ath": b64(&Sha256::digest(access_token.as_bytes()))}),
        )
    }

    /// A sound proof for `method` `htu` with `access_token`.
    pub fn proof(&self, method: &str, htu: &str, access_token: &str) -> String {
        let (header, claims) = self.parts(method, htu, access_token);
        self.sign(&header, &claims)
    }

    /// `header` and `claims` as a JWS signed with this client's key.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = match &self.key {
            DpopKey::P256(key) => key
                .sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            DpopKey::Ed25519(key) => key.sign(input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", b64(&signature))
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
