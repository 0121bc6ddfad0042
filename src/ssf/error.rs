//! Why a Security Event Token was refused, in the vocabulary of RFC 8935 section 2.4.
//!
//! The transmitter reads the `err` code to decide whether retrying can help (a store outage can
//! be retried; a bad signature cannot), so every refusal maps to exactly one registered code.

use sessiongate_core::token::TokenError;

/// A SET that is refused. Refusing changes no state: nothing is revoked and the `jti` is not
/// remembered, so a corrected SET with the same `jti` is still accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// Not a SET, or an event or subject that does not conform (`invalid_request`).
    #[error("{0}")]
    InvalidRequest(String),
    /// The signing key or algorithm is unacceptable (`invalid_key`).
    #[error("{0}")]
    InvalidKey(&'static str),
    /// `iss` names no configured transmitter (`invalid_issuer`).
    #[error("the SET issuer is not a configured transmitter")]
    InvalidIssuer,
    /// `aud` does not name this receiver (`invalid_audience`).
    #[error("the SET audience does not name this receiver")]
    InvalidAudience,
    /// The signature is missing or does not verify (`authentication_failed`).
    #[error("{0}")]
    AuthenticationFailed(&'static str),
    /// The transmitter may not act on what the SET names: a subject of a token issuer outside
    /// its `ssf.transmitters[].issuers` (`access_denied`).
    #[error("{0}")]
    AccessDenied(String),
}

impl SetError {
    /// The RFC 8935 `err` code.
    pub fn code(&self) -> &'static str {
        match self {
            SetError::InvalidRequest(_) => "invalid_request",
            SetError::InvalidKey(_) => "invalid_key",
            SetError::InvalidIssuer => "invalid_issuer",
            SetError::InvalidAudience => "invalid_audience",
            SetError::AuthenticationFailed(_) => "authentication_failed",
            SetError::AccessDenied(_) => "access_denied",
        }
    }

    /// An `invalid_request` with this description.
    pub(crate) fn invalid(description: impl Into<String>) -> SetError {
        SetError::InvalidRequest(description.into())
    }
}

/// The JWS layer is shared with access tokens; its errors translate here.
impl From<TokenError> for SetError {
    fn from(error: TokenError) -> SetError {
        match error {
            TokenError::Malformed(why) => SetError::InvalidRequest(why.to_owned()),
            TokenError::BadSignature => {
                SetError::AuthenticationFailed("the SET signature does not verify")
            }
            TokenError::UnknownIssuer => SetError::InvalidIssuer,
            TokenError::UnknownKey => {
                SetError::InvalidKey("the transmitter publishes no key with this kid")
            }
            TokenError::WrongAudience => SetError::InvalidAudience,
            TokenError::DisallowedAlgorithm(why) => SetError::InvalidKey(why),
            // Only introspection answers say this; a SET is never introspected.
            TokenError::Inactive => SetError::InvalidRequest(error.to_string()),
        }
    }
}
