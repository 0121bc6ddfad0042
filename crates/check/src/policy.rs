//! The compiled policy: everything the decision needs from configuration, in lookup form.
//!
//! Built once per config load and swapped whole on reload, so a request always sees one
//! consistent policy and cached sessions are judged by the newest one.

use std::time::Duration;

use sessiongate_core::policy::{BindingRules, SessionRules};
use sessiongate_core::route::RouteTable;
use sessiongate_token::TokenVerifier;

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
    /// Where denials are only reported, not enforced (see [`sessiongate_core::dry_run`]).
    pub dry_run: sessiongate_core::dry_run::DryRun,
}

impl Policy {
    /// The longest token age any route accepts: past it (plus skew) every token is denied by the
    /// age rule, so revocations older than that can be forgotten.
    pub fn longest_token_age(&self) -> Duration {
        self.routes
            .iter()
            .filter_map(|route| match &route.access {
                sessiongate_core::route::RouteAccess::Session(requirements) => {
                    Some(requirements.max_token_age)
                }
                sessiongate_core::route::RouteAccess::Public => None,
            })
            .max()
            .unwrap_or_default()
    }

    /// How long after its cut-off a revocation can still match a token some route accepts.
    pub fn revocation_horizon(&self) -> Duration {
        self.longest_token_age() + self.session.clock_skew
    }
}
