//! What a verified bearer token says, and why a token or credential is refused.
//!
//! Verification (signatures, issuers' keys, claim mapping) lives in the `sessiongate-token`
//! crate and happens once per session; what it produces, a [`VerifiedToken`], is cached and
//! re-judged by [`crate::decision`] on every request. This module holds only that product and
//! the errors, so the decision never sees a crypto key: a token names the key that verified it
//! through a [`KeyHandle`], whose `retired` flag is all a rule reads.

mod credential;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use credential::{CredentialError, MAX_AUTHORIZATION_LEN, Scheme, access_token, bearer_token};

use crate::intern::intern;
use crate::time::UnixTime;
use crate::workload::Thumbprint;

/// Which issuer key verified a token, and whether the issuer still publishes it.
///
/// The crypto key itself stays with the verifier; a cached session keeps only this handle (one
/// pointer), shared with the key it names. When a new key set no longer holds the key, the
/// key ring retires it, and every session verified with it is denied on its next request with
/// one atomic load, without re-verifying anything.
#[derive(Clone)]
pub struct KeyHandle(Arc<KeyStatus>);

struct KeyStatus {
    id: Arc<str>,
    retired: AtomicBool,
}

impl KeyHandle {
    /// A handle for the key `id` (the JWK `kid`, or its thumbprint), not retired.
    pub fn new(id: Arc<str>) -> KeyHandle {
        KeyHandle(Arc::new(KeyStatus {
            id,
            retired: AtomicBool::new(false),
        }))
    }

    /// The key's id as tokens name it in `kid`.
    pub fn id(&self) -> &Arc<str> {
        &self.0.id
    }

    /// True once the issuer stopped publishing this key: sessions verified with it are dead.
    pub fn is_retired(&self) -> bool {
        self.0.retired.load(Ordering::Acquire)
    }

    /// Marks the key as no longer published, for every session holding this handle. Only the
    /// key ring calls this, when a new key set drops the key; it is never undone.
    pub fn retire(&self) {
        self.0.retired.store(true, Ordering::Release);
    }
}

impl fmt::Debug for KeyHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyHandle")
            .field("id", &self.0.id)
            .field("retired", &self.is_retired())
            .finish()
    }
}

/// A token's granted scopes, kept as one space-separated string.
///
/// One string serves both uses: it is the `x-sessiongate-scopes` header value as is, and a
/// containment check over a handful of scopes is a short scan with no allocation. Interned:
/// a deployment grants a few distinct scope sets to very many tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes(Arc<str>);

impl Default for Scopes {
    fn default() -> Scopes {
        Scopes(intern(""))
    }
}

impl Scopes {
    /// Scopes from a list; callers guarantee each item is a valid scope token.
    pub fn from_list<'a>(scopes: impl IntoIterator<Item = &'a str>) -> Scopes {
        let joined: Vec<&str> = scopes.into_iter().filter(|s| !s.is_empty()).collect();
        Scopes(intern(&joined.join(" ")))
    }

    /// Whether `scope` was granted.
    pub fn contains(&self, scope: &str) -> bool {
        self.0.split(' ').any(|granted| granted == scope)
    }

    /// The space-separated form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The token's RFC 8705 / RFC 7800 proof-of-possession confirmation.
///
/// The thumbprint is boxed: most tokens are plain bearer tokens, and an inline 32-byte
/// thumbprint would grow every cached session by 24 bytes for the few that are bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// No `cnf` claim: a plain bearer token.
    None,
    /// `cnf.x5t#S256`: only the holder of this certificate may present the token.
    Certificate(Box<Thumbprint>),
    /// `cnf.jkt` (RFC 9449 section 6): only a request with a DPoP proof signed by the key of this
    /// RFC 7638 thumbprint may present the token.
    DpopKey(Box<Thumbprint>),
    /// A `cnf` sessiongate cannot check in full: a method it does not implement, two methods
    /// together (`x5t#S256` beside `jkt`), or no method at all. Fails closed as `cnf_mismatch`.
    Unsupported,
}

/// What a verified token says, in the compact form a cached session keeps.
///
/// Only the claims some rule reads are kept: a million cached sessions must fit in 512 MiB, so
/// the raw claim set is dropped after extraction, the per-token strings share one allocation
/// ([`Identifiers`]) and the strings many tokens repeat are shared ([`crate::intern`]).
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// `iss`, shared with the issuer's configuration.
    pub issuer: Arc<str>,
    /// The key that verified the signature; its `retired` flag revokes the session.
    pub key: KeyHandle,
    /// `sub`, `jti`, `sid` and `email`: see the accessors of the same names.
    pub ids: Identifiers,
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
    /// RFC 9068 `client_id`, if any (revocation by client). Interned: few clients, many tokens.
    pub client_id: Option<Arc<str>>,
    /// The configured binding claim's value (e.g. `client_id`), if the token has it. The same
    /// `Arc` as [`client_id`](Self::client_id) when the binding claim is `client_id`.
    pub binding_claim: Option<Arc<str>>,
    /// RFC 8705 confirmation (`cnf`).
    pub confirmation: Confirmation,
}

impl VerifiedToken {
    /// `sub`, if any.
    pub fn subject(&self) -> Option<&str> {
        self.ids.get(Identifiers::SUBJECT)
    }

    /// `jti`, if any (revocation by token id).
    pub fn token_id(&self) -> Option<&str> {
        self.ids.get(Identifiers::TOKEN_ID)
    }

    /// OIDC `sid`, if any (revocation by session).
    pub fn session_id(&self) -> Option<&str> {
        self.ids.get(Identifiers::SESSION_ID)
    }

    /// OIDC `email`, ASCII-lowercased at verification so revocation by email (a Shared Signals
    /// subject format) compares without allocating per request.
    pub fn email(&self) -> Option<&str> {
        self.ids.get(Identifiers::EMAIL)
    }
}

/// A token's own identifying strings (`sub`, `jti`, `sid`, `email`), in one heap allocation.
///
/// They differ per token, so interning cannot share them; one string with offsets costs one
/// allocation instead of four (each with its own malloc header and rounding), and 40 bytes
/// inline instead of 64. Absent and empty are kept apart: an absent `jti` matches no revocation.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Identifiers {
    /// The present values, concatenated in slot order.
    text: Box<str>,
    /// Where each slot's value ends in `text` (an absent slot ends where the previous one did).
    ends: [u32; 4],
    /// Bit `i` set: slot `i` is present.
    present: u8,
}

impl Identifiers {
    const SUBJECT: usize = 0;
    const TOKEN_ID: usize = 1;
    const SESSION_ID: usize = 2;
    const EMAIL: usize = 3;

    /// The identifiers of a token with these claims.
    pub fn new(
        subject: Option<&str>,
        token_id: Option<&str>,
        session_id: Option<&str>,
        email: Option<&str>,
    ) -> Identifiers {
        let slots = [subject, token_id, session_id, email];
        let mut text = String::with_capacity(slots.iter().flatten().map(|s| s.len()).sum());
        let mut ends = [0u32; 4];
        let mut present = 0u8;
        for (slot, value) in slots.into_iter().enumerate() {
            if let Some(value) = value {
                text.push_str(value);
                present |= 1 << slot;
            }
            // Claims come from a token of at most `MAX_AUTHORIZATION_LEN` bytes.
            ends[slot] = u32::try_from(text.len()).expect("token claims are far below 4 GiB");
        }
        Identifiers {
            text: text.into_boxed_str(),
            ends,
            present,
        }
    }

    fn get(&self, slot: usize) -> Option<&str> {
        if self.present & (1 << slot) == 0 {
            return None;
        }
        let start = if slot == 0 { 0 } else { self.ends[slot - 1] };
        Some(&self.text[start as usize..self.ends[slot] as usize])
    }
}

impl fmt::Debug for Identifiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identifiers")
            .field("sub", &self.get(Self::SUBJECT))
            .field("jti", &self.get(Self::TOKEN_ID))
            .field("sid", &self.get(Self::SESSION_ID))
            .field("email", &self.get(Self::EMAIL))
            .finish()
    }
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
    /// The issuer's introspection endpoint (RFC 7662) answered that an opaque token is not
    /// active: revoked, expired or never issued. Denied as `revoked`, since the issuer's word
    /// is all there is to go by.
    #[error("the issuer says the token is not active")]
    Inactive,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_keep_absent_apart_from_empty() {
        let ids = Identifiers::new(Some("alice"), None, Some(""), Some("a@b"));
        assert_eq!(ids.get(Identifiers::SUBJECT), Some("alice"));
        assert_eq!(ids.get(Identifiers::TOKEN_ID), None);
        assert_eq!(ids.get(Identifiers::SESSION_ID), Some(""));
        assert_eq!(ids.get(Identifiers::EMAIL), Some("a@b"));
        let none = Identifiers::new(None, None, None, None);
        assert!((0..4).all(|slot| none.get(slot).is_none()));
    }
}
