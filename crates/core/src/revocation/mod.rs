//! Revocation: trust withdrawn before a token expires.
//!
//! A [`Revocation`] names which sessions it kills with a [`Selector`] and a cut-off: it applies
//! to tokens *issued at or before* `issued_before` (by default, the moment of revocation). So
//! "revoke alice" kills every session alice has now, and alice can sign in again; and every
//! entry can be forgotten once no token it could match can still pass the age rule
//! ([`Revocation::forget_after`]), which bounds the set's growth. That moment is fixed when the
//! entry is recorded and only ever extended, never recomputed from a narrower policy.
//!
//! [`RevocationSet`] is the in-memory index the decision reads; it is pure and immutable
//! (replaced whole when an entry is added). Keeping it current and persisting entries is the
//! stores' job, outside this crate (the server's file log and Redis fleet).

mod origin;
mod set;

pub use origin::{AddedByOrigin, OriginKind};
pub use set::{RevocationCheck, RevocationSet};

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::time::UnixTime;

/// Which sessions a revocation applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Selector {
    /// One token, by issuer and `jti`.
    TokenId {
        /// The token's `iss`.
        issuer: Arc<str>,
        /// The token's `jti`.
        jti: Box<str>,
    },
    /// Every token of one OIDC session (`sid`).
    Session {
        /// The token's `iss`.
        issuer: Arc<str>,
        /// The `sid` claim.
        sid: Box<str>,
    },
    /// Every token of one subject of one issuer.
    Subject {
        /// The token's `iss`.
        issuer: Arc<str>,
        /// The `sub` claim.
        sub: Box<str>,
    },
    /// Every token issued to one OAuth client (`client_id`), whoever issued it.
    Client {
        /// The `client_id` claim.
        client_id: Box<str>,
    },
    /// Every session presented by one workload (its SPIFFE ID).
    Workload {
        /// The caller's SPIFFE ID.
        spiffe_id: Box<str>,
    },
    /// Every token carrying this `email` claim, whoever issued it: Shared Signals transmitters
    /// may name a user only by email (RFC 9493 `email` format). Compared ASCII-lowercased.
    Email {
        /// The address, ASCII-lowercased.
        email: Box<str>,
    },
    /// Every token of one issuer.
    Issuer {
        /// The token's `iss`.
        issuer: Arc<str>,
    },
}

/// What a matching session suffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Denied outright (`revoked`): the client needs a new token.
    #[default]
    Revoke,
    /// Denied for insufficient authentication (CAEP `assurance-level-change`): the cut-off is
    /// compared with `auth_time`, not `iat`, so the user must re-authenticate.
    RequireReauthentication,
}

/// One revocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Which sessions.
    pub selector: Selector,
    /// Tokens issued (or, for [`Effect::RequireReauthentication`], authenticated) at or before
    /// this instant are affected.
    pub issued_before: UnixTime,
    /// What they suffer.
    #[serde(default)]
    pub effect: Effect,
    /// When it was recorded.
    pub recorded_at: UnixTime,
    /// Who or what asked for it (`admin`, `ssf:<issuer>`), for audit.
    pub origin: Box<str>,
    /// Free-text reason, for audit; never shown to clients.
    #[serde(default)]
    pub reason: Box<str>,
    /// The only issuers whose tokens this revocation may touch; `None`: any issuer.
    ///
    /// A Shared Signals transmitter may act only on the issuers it is configured for, and some
    /// subjects name no issuer (an `email`, an `opaque` id): the scope keeps such a revocation
    /// from reaching another identity provider's users. A selector that names an issuer outside
    /// the scope matches nothing. Admin revocations are unscoped, and so is every entry stored
    /// before scopes existed (the member is absent from its JSON), which keeps its meaning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuers: Option<Box<[Arc<str>]>>,
    /// The earliest instant this entry may be forgotten, fixed when it was recorded (the
    /// cut-off plus the retention horizon then; see the server's `Revocations::revoke`).
    ///
    /// Stored with the entry so that a later, narrower policy (a reload, a restart with another
    /// config, a replica of a fleet mid-rollout) can never shorten what `Revoke` promised: the
    /// horizon is a property of the moment of recording, not recomputed from whatever policy
    /// runs when the entry is pruned. `None` for entries stored before it existed (their
    /// retention follows the horizon alone, as it did then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_until: Option<UnixTime>,
}

impl Revocation {
    /// Whether this revocation may touch tokens of `issuer` at all (see
    /// [`Revocation::issuers`]).
    pub fn reaches(&self, issuer: &str) -> bool {
        self.issuers
            .as_deref()
            .is_none_or(|scope| scope.iter().any(|own| &**own == issuer))
    }

    /// When this entry can be forgotten, given the retention `horizon` now in force (the
    /// longest token age any route accepts, plus skew: past it the age rule denies every token
    /// the entry could match): the later of that and what was promised at recording
    /// ([`Revocation::retain_until`]). A wider horizon extends retention; a narrower one never
    /// shortens it.
    pub fn forget_after(&self, horizon: Duration) -> UnixTime {
        let by_horizon = self.issued_before.plus(horizon);
        self.retain_until
            .map_or(by_horizon, |promised| promised.max(by_horizon))
    }

    /// Whether this entry must still be kept at `now` under `horizon`.
    pub fn is_kept(&self, horizon: Duration, now: UnixTime) -> bool {
        now <= self.forget_after(horizon)
    }
}
