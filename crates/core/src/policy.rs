//! The session-wide rules of a policy, as the decision reads them (per-route rules live on the
//! [`crate::route::Route`]). The policy as a whole, with its routes and the token verifier,
//! is compiled from configuration and swapped whole on reload by the check use case.

use std::time::Duration;

/// Session-wide time rules (per-route ages live on the route).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRules {
    /// Deny a session with no allowed request for this long.
    pub idle_timeout: Option<Duration>,
    /// Tolerance for issuer/sidecar clock differences on `exp`, `nbf` and future `iat`.
    pub clock_skew: Duration,
}

/// How sessions are tied to the workload presenting them.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BindingRules {
    /// A claim that, when present, must equal the caller's SPIFFE ID.
    pub claim: Option<Box<str>>,
    /// Deny tokens that lack `claim`.
    pub require_claim: bool,
    /// Pin each session to the first workload it is allowed for.
    pub pin_first_workload: bool,
}
