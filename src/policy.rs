//! The compiled policy: everything the decision needs from configuration, in lookup form.
//!
//! Built once per config load and swapped whole on reload, so a request always sees one
//! consistent policy and cached sessions are judged by the newest one.

use std::time::Duration;

use crate::route::RouteTable;
use crate::token::TokenVerifier;

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

/// Everything the decision needs from configuration.
#[derive(Debug)]
pub struct Policy {
    /// The ordered routes.
    pub routes: RouteTable,
    /// Trusted issuers and claim mapping.
    pub verifier: TokenVerifier,
    /// Session-wide time rules.
    pub session: SessionRules,
    /// Workload binding rules.
    pub binding: BindingRules,
    /// Where denials are only reported, not enforced (see [`crate::dry_run`]).
    pub dry_run: crate::dry_run::DryRun,
}

impl Policy {
    /// The longest token age any route accepts: past it (plus skew) every token is denied by the
    /// age rule, so revocations older than that can be forgotten.
    pub fn longest_token_age(&self) -> Duration {
        self.routes
            .iter()
            .filter_map(|route| match &route.access {
                crate::route::RouteAccess::Session(requirements) => {
                    Some(requirements.max_token_age)
                }
                crate::route::RouteAccess::Public => None,
            })
            .max()
            .unwrap_or_default()
    }

    /// How long after its cut-off a revocation can still match a token some route accepts.
    pub fn revocation_horizon(&self) -> Duration {
        self.longest_token_age() + self.session.clock_skew
    }
}
