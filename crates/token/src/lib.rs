//! Verifying bearer tokens against issuers' keys: JWS parsing, signatures, claim mapping, JWKS.
//!
//! Verification happens once per session (the first time a token is seen); what it produces, a
//! [`VerifiedToken`](sessiongate_core::token::VerifiedToken), is cached and re-judged by the
//! core's decision on every request. So this crate checks only what cannot change while the
//! token lives (structure, signature, issuer, audience, algorithm, `typ`); everything time- or
//! policy-dependent is the decision's job. Keys live in a [`KeyRing`]; a verified token keeps
//! only a [`KeyHandle`](sessiongate_core::token::KeyHandle) of the key, never the key itself.
//!
//! DPoP proofs (RFC 9449) are verified here too ([`ProofVerifier`]), on every request that
//! carries one, and the fleet's DPoP nonces are made and checked by a [`NonceIssuer`].
//! Opaque tokens are not verified here but described by their issuer's introspection endpoint
//! (RFC 7662); [`IntrospectionRules::read_answer`] turns the endpoint's answer into the same
//! verified token, so the rules after verification do not know the difference.
//!
//! Where keys come from (files, `jwks_uri`, discovery) and when they are fetched again is the
//! server's business: it parses what it fetched with [`KeySet::from_jwks_json`] and installs it
//! with [`KeyRing::replace`]. This crate does no I/O.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod algorithm;
mod canonical;
mod claims;
mod dpop;
mod introspection;
mod issuer;
mod json;
mod jws;
mod keys;
mod nonce;
mod verifier;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use algorithm::{KeyFamily, SigningAlgorithm};
#[cfg(any(test, feature = "testing"))]
pub use canonical::P256_ORDER;
pub use canonical::canonical_digest;
pub use claims::{ClaimRules, JoseHeader, audience_matches};
pub use dpop::{ProofError, ProofVerifier, access_token_hash};
pub use introspection::{
    INTROSPECTION_KEY_ID, Introspected, IntrospectionRules, SIGNED_ANSWER_TYP, SignedAnswers,
    is_opaque,
};
pub use issuer::{IssuerRules, TypRule};
pub use jws::CompactJws;
pub use keys::{JwksError, KeyRing, KeySet, ParsedJwks, VerificationKey};
pub use nonce::NonceIssuer;
pub use verifier::TokenVerifier;
