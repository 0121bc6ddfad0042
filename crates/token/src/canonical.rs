//! The canonical identity of a signed token: what every re-encoding of it that can be made
//! without the signing key has in common.
//!
//! A session is keyed by a hash of its token (the check use case's `SessionKey`). If a thief
//! could turn a stolen token into other bytes that still verify, each variant would be a session
//! of its own, with its own idle clock and its own workload pin, and pinning would stop nothing.
//! So the hash is taken over the token's *canonical encoding*, and this module is the one place
//! that knows which encodings are equivalent. For every accepted algorithm:
//!
//! - **Header and payload** are signed as their exact base64url text: any change to them breaks
//!   the signature. (They are also decoded strictly: no padding, no non-zero trailing bits.)
//! - **The signature segment** is decoded strictly too, so one signature value has exactly one
//!   text form; a token whose signature text is not canonical never verifies.
//! - **ECDSA (ES256, ES384)** is malleable: if `(r, s)` verifies, so does `(r, n − s)`, and
//!   anyone can compute it. Identity providers need not normalise `s` (and many do not), so
//!   high-S signatures are accepted; the canonical encoding is the one with the low `s`
//!   (`min(s, n − s)`), and both variants hash alike.
//! - **EdDSA (Ed25519)**: the verifier (aws-lc) rejects `S ≥ L` and compares the encoding of
//!   `R` byte for byte, so a valid signature has one encoding. Ed25519 is deterministic, so a
//!   second valid signature for the same message needs the private key.
//! - **RSA PKCS#1 v1.5 (RS*)** is deterministic: one valid signature per key and message, of
//!   exactly the modulus' length, below the modulus (aws-lc checks both).
//! - **RSA-PSS (PS*)** is randomised, but only by the signer: another valid signature for the
//!   same message needs the private key, and each one is a token the issuer minted.
//!
//! A token that is already canonical (every RSA and EdDSA token, and every ECDSA token with a
//! low `s`) hashes to the SHA-256 of its exact bytes, as sessions were keyed before; only a
//! high-S ECDSA token is hashed as its low-S twin. The work is a base64url decode of the
//! signature and a comparison; the header is read only for a signature whose second half is
//! high, to learn whether the token claims ECDSA at all (without allocating, in the usual case).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::algorithm::SigningAlgorithm;
use super::jws::CompactJws;

/// The order `n` of the P-256 group, big-endian.
pub const P256_ORDER: [u8; 32] =
    hex32(b"FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551");

/// The order `n` of the P-384 group, big-endian.
pub(crate) const P384_ORDER: [u8; 48] = hex48(
    b"FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
);

/// The first 8 bytes of `(n − 1) / 2` for P-256: an `s` whose first 8 bytes are smaller is low
/// (see [`surely_low_s`]).
const P256_HALF_ORDER_PREFIX: [u8; 8] = half_prefix(&P256_ORDER);

/// The first 8 bytes of `(n − 1) / 2` for P-384.
const P384_HALF_ORDER_PREFIX: [u8; 8] = half_prefix(&P384_ORDER);

/// The longest ECDSA signature normalised (ES384: two 48-byte integers).
const MAX_ECDSA_SIGNATURE: usize = 96;

/// The SHA-256 of `token`'s canonical encoding (see the module doc): equal for every
/// re-encoding of one signed token that can be made without the key, and the plain SHA-256 of
/// the token's bytes when it is already canonical. Never fails: text that is not a compact JWS
/// hashes as it is (it can never verify, so it never names a session).
pub fn canonical_digest(token: &str) -> [u8; 32] {
    let mut signature = [0u8; MAX_ECDSA_SIGNATURE];
    match high_s_signature(token, &mut signature) {
        Some((signing_input, low_s)) => {
            let mut text = [0u8; MAX_ECDSA_SIGNATURE * 4 / 3 + 1];
            let written = URL_SAFE_NO_PAD
                .encode_slice(low_s, &mut text)
                .expect("an ECDSA signature fits the buffer");
            Sha256::new()
                .chain_update(signing_input.as_bytes())
                .chain_update(b".")
                .chain_update(&text[..written])
                .finalize()
                .into()
        }
        None => Sha256::digest(token.as_bytes()).into(),
    }
}

/// For an ECDSA token whose `s` is in the upper half of the group: the signing input and the
/// signature with `s` replaced by `n − s` (written into `buffer`). `None` for everything else,
/// which is canonical as it stands.
fn high_s_signature<'t, 'b>(
    token: &'t str,
    buffer: &'b mut [u8; MAX_ECDSA_SIGNATURE],
) -> Option<(&'t str, &'b [u8])> {
    let (signing_input, signature_b64) = token.rsplit_once('.')?;
    // An ES256 signature is 86 characters, an ES384 one 128: anything else is not ECDSA, and
    // nothing longer is decoded into the buffer.
    let length = match signature_b64.len() {
        86 => 64,
        128 => 96,
        _ => return None,
    };
    if surely_low_s(signature_b64.as_bytes(), length) {
        return None;
    }
    let written = URL_SAFE_NO_PAD
        .decode_slice(signature_b64, &mut buffer[..])
        .ok()?;
    if written != length {
        return None;
    }
    let signature = &mut buffer[..length];
    let (_, s) = signature.split_at_mut(length / 2);
    let order: &[u8] = if length == 64 {
        &P256_ORDER
    } else {
        &P384_ORDER
    };
    if !negate_if_high(s, order) {
        return None;
    }
    // Only now is the header read: whether the token claims the curve this length implies.
    let claimed = claimed_algorithm(token)?;
    let expected = if length == 64 {
        SigningAlgorithm::Es256
    } else {
        SigningAlgorithm::Es384
    };
    (claimed == expected).then_some((signing_input, &buffer[..length]))
}

/// Whether the `s` half of a base64url ECDSA signature (`length` bytes decoded, 64 or 96) is
/// certainly low, judged from its first 8 bytes alone: below the first 8 bytes of `(n − 1) / 2`.
/// Every cached request of an ECDSA session computes its key, and half of all signatures are
/// low: for them this decodes 16 characters instead of 86 or 128 (the full decode and
/// comparison were about 2k of the module's instructions per request under callgrind). `false`
/// means "decode it all and compare" (high, equal prefixes, or not base64url): never a wrong
/// "low", so the identity is exactly the full comparison's.
fn surely_low_s(signature_b64: &[u8], length: usize) -> bool {
    // `s` starts at byte 32 (ES256: inside the 4-character group for bytes 30..33, which
    // starts at character 40) or at byte 48 (ES384: character 64 starts exactly there).
    let (characters, skip, half) = if length == 64 {
        (40..56, 2, &P256_HALF_ORDER_PREFIX)
    } else {
        (64..80, 0, &P384_HALF_ORDER_PREFIX)
    };
    let Some(chunk) = signature_b64.get(characters) else {
        return false;
    };
    let mut decoded = [0u8; 12];
    URL_SAFE_NO_PAD
        .decode_slice(chunk, &mut decoded)
        .is_ok_and(|_| decoded[skip..skip + 8] < half[..])
}

/// The first 8 bytes of `(order − 1) / 2`, i.e. of `order >> 1` (the order is odd).
const fn half_prefix(order: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    let mut i = 0;
    while i < 8 {
        let carry = if i == 0 { 0 } else { order[i - 1] << 7 };
        out[i] = order[i] >> 1 | carry;
        i += 1;
    }
    out
}

/// The `alg` the token's header names. Every request of a high-S session asks, so the usual
/// header (small, `alg` without escapes, no member twice) is read without allocating: decoded
/// on the stack and `alg` borrowed. Anything else takes the verifier's own parser, so the two
/// never disagree on a header that verifies.
fn claimed_algorithm(token: &str) -> Option<SigningAlgorithm> {
    #[derive(serde::Deserialize)]
    struct AlgOnly<'a> {
        alg: &'a str,
    }
    let header_b64 = token.split('.').next()?;
    let mut decoded = [0u8; 512];
    let fast = URL_SAFE_NO_PAD
        .decode_slice(header_b64, &mut decoded)
        .ok()
        .and_then(|length| serde_json::from_slice::<AlgOnly<'_>>(&decoded[..length]).ok())
        .and_then(|header| SigningAlgorithm::from_jose(header.alg));
    fast.or_else(|| {
        CompactJws::split(token)
            .ok()?
            .header()
            .ok()?
            .algorithm()
            .ok()
    })
}

/// Replaces `s` (big-endian, as long as `order`) by `order − s` when `0 < s < order` and the
/// result is smaller than `s`; says whether it did. Out-of-range values are left alone: they
/// never verify, so they need no twin.
fn negate_if_high(s: &mut [u8], order: &[u8]) -> bool {
    debug_assert_eq!(s.len(), order.len());
    if s.iter().all(|&b| b == 0) || *s >= *order {
        return false;
    }
    let mut negated = [0u8; MAX_ECDSA_SIGNATURE / 2];
    let negated = &mut negated[..s.len()];
    let mut borrow = 0u16;
    for i in (0..s.len()).rev() {
        let difference = u16::from(order[i])
            .wrapping_sub(u16::from(s[i]))
            .wrapping_sub(borrow);
        negated[i] = difference as u8;
        borrow = u16::from(difference > 0xff);
    }
    // Equal halves cannot happen for an odd order; compare as big-endian integers.
    if *negated >= *s {
        return false;
    }
    s.copy_from_slice(negated);
    true
}

const fn hex32(text: &[u8; 64]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = hex_byte(text[2 * i], text[2 * i + 1]);
        i += 1;
    }
    out
}

const fn hex48(text: &[u8; 96]) -> [u8; 48] {
    let mut out = [0u8; 48];
    let mut i = 0;
    while i < 48 {
        out[i] = hex_byte(text[2 * i], text[2 * i + 1]);
        i += 1;
    }
    out
}

const fn hex_byte(high: u8, low: u8) -> u8 {
    const fn digit(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'F' => c - b'A' + 10,
            _ => panic!("not an upper-case hex digit"),
        }
    }
    digit(high) << 4 | digit(low)
}

#[cfg(test)]
mod tests;
