//! Bearer tokens: reading them from the request and verifying them against issuers' keys.
//!
//! Verification happens once per session (the first time a token is seen); what it produces, a
//! [`VerifiedToken`], is cached and re-judged by [`crate::decision`] on every request. So this
//! module checks only what cannot change while the token lives (structure, signature, issuer,
//! audience, algorithm, `typ`); everything time- or policy-dependent is the decision's job.

mod algorithm;
mod claims;
mod credential;
mod issuer;
mod jws;
mod keys;
mod verifier;

use std::sync::Arc;

pub use algorithm::{KeyFamily, SigningAlgorithm};
pub use claims::{ClaimRules, Confirmation, Scopes};
pub use credential::{CredentialError, MAX_AUTHORIZATION_LEN, bearer_token};
pub use issuer::{IssuerRules, TypRule};
pub use keys::{
    JwksError, JwksFile, KeyRing, KeySet, KeySource, KeySourceError, ParsedJwks, VerificationKey,
};
pub use verifier::TokenVerifier;

pub(crate) use claims::audience_matches;
pub(crate) use jws::CompactJws;

use crate::time::UnixTime;

/// What a verified token says, in the compact form a cached session keeps.
///
/// Only the claims some rule reads are kept: a million cached sessions must fit in a few hundred
/// MiB, so the raw claim set is dropped after extraction.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// `iss`, shared with the issuer's configuration.
    pub issuer: Arc<str>,
    /// The key that verified the signature; its `retired` flag revokes the session.
    pub key: Arc<VerificationKey>,
    /// `sub`, if any.
    pub subject: Option<Box<str>>,
    /// `jti`, if any (revocation by token id).
    pub token_id: Option<Box<str>>,
    /// OIDC `sid`, if any (revocation by session).
    pub session_id: Option<Box<str>>,
    /// `iat`; tokens without it fail the age rule.
    pub issued_at: Option<UnixTime>,
    /// `exp`; required.
    pub expires_at: UnixTime,
    /// `nbf`, if any.
    pub not_before: Option<UnixTime>,
    /// `auth_time`, if any.
    pub auth_time: Option<UnixTime>,
    /// The granted scopes, from the configured scope claim.
    pub scopes: Scopes,
    /// RFC 9068 `client_id`, if any (revocation by client).
    pub client_id: Option<Box<str>>,
    /// OIDC `email`, ASCII-lowercased once here so revocation by email (a Shared Signals
    /// subject format) compares without allocating per request.
    pub email: Option<Box<str>>,
    /// The configured binding claim's value (e.g. `client_id`), if the token has it.
    pub binding_claim: Option<Box<str>>,
    /// RFC 8705 confirmation (`cnf`).
    pub confirmation: Confirmation,
}

/// Why a token failed verification. Each variant is one deny reason of the same name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a well-formed JWS compact serialisation with JSON header and claims of the right types.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The signature does not verify with the issuer's key.
    #[error("signature does not verify")]
    BadSignature,
    /// `iss` names no configured issuer.
    #[error("issuer is not trusted")]
    UnknownIssuer,
    /// The issuer has no key with the token's `kid`.
    #[error("signing key is not known")]
    UnknownKey,
    /// No `aud` value is one of the issuer's audiences.
    #[error("audience is not accepted")]
    WrongAudience,
    /// `alg` is `none`, symmetric, not allowed for the issuer, or does not fit the key.
    #[error("{0}")]
    DisallowedAlgorithm(&'static str),
}
