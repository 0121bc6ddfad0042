//! The JWS compact serialisation (RFC 7515) taken apart, and its signature checked.
//!
//! Shared by access-token verification ([`super::TokenVerifier`]) and Security Event Token
//! verification (the server's `ssf` module): both must split, decode and verify exactly the same way, so
//! that a parsing quirk fixed for one is fixed for the other (e.g. a member named twice is
//! refused in both, see [`super::json`]). Nothing here decides *which* key or algorithm is
//! acceptable; callers do that before asking whether the signature holds.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::algorithm::SigningAlgorithm;
use super::claims::JoseHeader;
use super::json::{ObjectError, object_with_unique_members};
use super::keys::VerificationKey;
use sessiongate_core::token::TokenError;

/// A compact JWS split into its three parts; nothing is verified yet, so every part is
/// attacker-controlled text.
#[derive(Debug, Clone, Copy)]
pub struct CompactJws<'a> {
    header_b64: &'a str,
    payload_b64: &'a str,
    signature_b64: &'a str,
    /// `header.payload`, the bytes the signature covers.
    signing_input: &'a str,
}

impl<'a> CompactJws<'a> {
    /// Splits `token` into header, payload and signature; exactly three dot-separated parts.
    pub fn split(token: &'a str) -> Result<CompactJws<'a>, TokenError> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed(
                "not a JWS compact serialisation (three dot-separated parts)",
            ));
        };
        Ok(CompactJws {
            header_b64,
            payload_b64,
            signature_b64,
            signing_input: &token[..header_b64.len() + 1 + payload_b64.len()],
        })
    }

    /// The decoded JOSE header: a JSON object naming each member once.
    pub fn header(&self) -> Result<JoseHeader, TokenError> {
        JoseHeader::from_members(decode_object(
            self.header_b64,
            "header is not a base64url JSON object",
            "header names a member twice",
        )?)
    }

    /// The decoded header as a JSON object, every member kept (a DPoP proof's header carries its
    /// key, `jwk`, which [`JoseHeader`] does not read).
    pub fn header_object(&self) -> Result<Map<String, Value>, TokenError> {
        decode_object(
            self.header_b64,
            "header is not a base64url JSON object",
            "header names a member twice",
        )
    }

    /// The decoded payload (a JWT claim set): a JSON object whose objects, at every depth,
    /// name each member once.
    pub fn claims(&self) -> Result<Map<String, Value>, TokenError> {
        decode_object(
            self.payload_b64,
            "claims are not a base64url JSON object",
            "claims name a member twice (at some depth)",
        )
    }

    /// Whether the signature verifies with `key` under `algorithm`. The caller has already
    /// checked that `key` accepts `algorithm` ([`VerificationKey::accepts`]).
    pub fn signed_by(&self, key: &VerificationKey, algorithm: SigningAlgorithm) -> bool {
        let (Some(parsed), Ok(signature)) = (
            key.parsed_for(algorithm),
            URL_SAFE_NO_PAD.decode(self.signature_b64),
        ) else {
            return false;
        };
        parsed
            .verify_sig(self.signing_input.as_bytes(), &signature)
            .is_ok()
    }
}

/// The one reading of both JWS parts, so header and payload follow the same JSON rule
/// (see [`super::json`]).
fn decode_object(
    part: &str,
    not_an_object: &'static str,
    duplicate: &'static str,
) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed(not_an_object))?;
    object_with_unique_members(&bytes).map_err(|error| {
        TokenError::Malformed(match error {
            ObjectError::NotAnObject => not_an_object,
            ObjectError::DuplicateMember => duplicate,
        })
    })
}
