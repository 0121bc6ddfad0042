//! Dry-run rollout: judge every request, enforce none of the denials.
//!
//! `dry_run: true` (globally, or on a route) lets a team put sessiongate in front of live
//! traffic and watch what it *would* deny (in metrics, the decision log and a header to the
//! upstream) before it denies anything. The decision itself is untouched and stays pure: the
//! gate decides exactly as when enforcing, and only the answer to Envoy changes, here and in
//! the response layer.
//!
//! What must stay true:
//! - A would-be denial is answered as an allow carrying `x-sessiongate-dry-run: deny:<reason>`
//!   (set with overwrite, so a client cannot pre-set it) and **without** the identity headers:
//!   the upstream must never take a request sessiongate would have refused for an
//!   authenticated one. Client-sent `x-sessiongate-*` headers are removed as on every allow.
//! - The session is not touched as if allowed: no activity is recorded and no pin is made for a
//!   would-be denial, so switching to enforcement changes no session's history.
//! - A request sessiongate cannot judge at all (no HTTP attributes, an internal panic) is still
//!   denied: dry-run covers decisions, not failures.

use std::sync::Arc;

/// The header telling the upstream what would have happened.
pub const HEADER: &str = "x-sessiongate-dry-run";

/// Where dry-run applies; part of the policy, so a reload switches it live.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DryRun {
    /// Every request, matched by a route or not.
    pub everywhere: bool,
    /// The routes in dry-run (by configured name; few, so a slice beats a hash set).
    pub routes: Box<[Arc<str>]>,
}

impl DryRun {
    /// Enforcing everywhere.
    pub fn off() -> DryRun {
        DryRun::default()
    }

    /// Whether a request judged under `route` (none: no route matched) is in dry-run.
    pub fn covers(&self, route: Option<&str>) -> bool {
        self.everywhere || route.is_some_and(|route| self.routes.iter().any(|r| **r == *route))
    }
}

/// The header value for a would-be denial with `reason` (its stable name).
pub fn header_value(reason: &str) -> String {
    format!("deny:{reason}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_covers_nothing() {
        let dry_run = DryRun::off();
        assert!(!dry_run.covers(Some("orders")));
        assert!(!dry_run.covers(None));
    }

    #[test]
    fn a_route_in_dry_run_covers_that_route_only() {
        let dry_run = DryRun {
            everywhere: false,
            routes: vec![Arc::from("orders-read")].into(),
        };
        assert!(dry_run.covers(Some("orders-read")));
        assert!(!dry_run.covers(Some("orders-write")));
        assert!(!dry_run.covers(None), "no route is not a dry-run route");
    }

    #[test]
    fn global_dry_run_covers_unmatched_requests_too() {
        let dry_run = DryRun {
            everywhere: true,
            routes: Box::default(),
        };
        assert!(dry_run.covers(Some("anything")));
        assert!(dry_run.covers(None));
    }

    #[test]
    fn the_header_names_the_reason() {
        assert_eq!(header_value("missing_token"), "deny:missing_token");
    }
}
