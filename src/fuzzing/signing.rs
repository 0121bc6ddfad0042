//! A signing key that only the fuzz harnesses trust, so a harness can sign whatever claim set
//! the fuzzer invents and drive the parsers that run *after* the signature check.
//!
//! Ed25519 from a fixed seed: its signatures are deterministic, so a crash input replays to the
//! same token. The key is public knowledge by construction; nothing outside [`super`] trusts it.

use std::sync::OnceLock;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use sessiongate_token::KeySet;

/// The `kid` the harness key is published under.
pub const KID: &str = "fuzzing-eddsa";

fn key_pair() -> &'static Ed25519KeyPair {
    static KEY: OnceLock<Ed25519KeyPair> = OnceLock::new();
    KEY.get_or_init(|| {
        Ed25519KeyPair::from_seed_unchecked(&[0x5e; 32]).expect("a 32-byte Ed25519 seed")
    })
}

/// The harness key as a one-key JWKS set.
pub fn key_set() -> KeySet {
    let jwks = serde_json::json!({"keys": [{
        "kty": "OKP",
        "crv": "Ed25519",
        "kid": KID,
        "use": "sig",
        "alg": "EdDSA",
        "x": URL_SAFE_NO_PAD.encode(key_pair().public_key().as_ref()),
    }]});
    KeySet::from_jwks_json(jwks.to_string().as_bytes())
        .expect("the harness JWKS parses")
        .keys
}

/// A compact JWS of `header` (JSON text) and `payload` (any bytes), signed with the harness key.
pub fn sign(header: &str, payload: &[u8]) -> String {
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let signature = key_pair().sign(token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
    token
}

/// `header.payload` of a compact JWS: the bytes its signature covers.
pub fn signing_input(token: &str) -> Option<&str> {
    token.rsplit_once('.').map(|(input, _)| input)
}
