//! The compiled policy: everything the decision needs from configuration, in lookup form.
//!
//! Built once per config load and swapped whole on reload, so a request always sees one
//! consistent policy and cached sessions are judged by the newest one.

use std::sync::Arc;
use std::time::Duration;

use sessiongate_core::dpop::DpopRules;
use sessiongate_core::policy::{BindingRules, SessionRules};
use sessiongate_core::route::RouteTable;
use sessiongate_token::{NonceIssuer, ProofVerifier, SigningAlgorithm, TokenVerifier};

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
    /// DPoP (RFC 9449): how proofs are verified and judged (`dpop`).
    pub dpop: DpopPolicy,
}

/// The `dpop` section, compiled.
#[derive(Debug)]
pub struct DpopPolicy {
    /// What the decision's rules read (algorithms for challenges, proof lifetime, origin).
    pub rules: DpopRules,
    /// Verifies proofs with the allowed algorithms.
    pub verifier: ProofVerifier,
    /// Issues and checks the fleet's nonces (`dpop.nonce`); `None`: no route may require one.
    pub nonces: Option<Arc<NonceIssuer>>,
}

impl DpopPolicy {
    /// Proofs signed with `algorithms`, accepted for `proof_lifetime` after their `iat`.
    pub fn new(algorithms: &[SigningAlgorithm], proof_lifetime: Duration) -> DpopPolicy {
        let names: Vec<&str> = algorithms.iter().map(|alg| alg.jose_name()).collect();
        DpopPolicy {
            rules: DpopRules {
                algorithms: names.join(" ").into(),
                proof_lifetime,
                origin: None,
            },
            verifier: ProofVerifier::new(algorithms.to_vec()),
            nonces: None,
        }
    }

    /// How long the replay store must remember a proof: as long as its `iat` can be accepted
    /// (its lifetime, plus the clock skew on both sides).
    pub fn replay_ttl(&self, clock_skew: Duration) -> Duration {
        self.rules.proof_lifetime + clock_skew * 2
    }
}

impl Default for DpopPolicy {
    /// Every supported algorithm, proofs accepted for 5 seconds (plus skew), no nonces.
    fn default() -> DpopPolicy {
        DpopPolicy::new(&SigningAlgorithm::ALL, Duration::from_secs(5))
    }
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
