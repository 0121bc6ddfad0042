//! The `envoy.service.auth.v3.Authorization/Check` handler (served by [`super::server`]).

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::CheckResponse;
use tokio::time::Instant;

use super::report::CheckReporter;
use super::wire::CheckRequest;
use super::{request, response};
use crate::deny::{Deny, DenyReason};
use crate::gate::{Gate, Outcome};
use crate::keys::KeyRefresher;
use crate::pinning::{LocalPins, PinStore};
use crate::request::RequestFacts;
use crate::telemetry::{self, Tracing};
use crate::time::UnixTime;
use crate::token::bearer_token;

/// Answers Envoy's `Check` calls by asking the [`Gate`].
///
/// It never returns `Err(Status)` for a request it could judge: Envoy treats a failed call per
/// `failure_mode_allow`, which an operator may have set to allow, so denials (including
/// "cannot decide") are always `Ok` responses carrying a non-OK status.
#[derive(Debug, Clone)]
pub struct AuthorizationService {
    gate: Arc<Gate>,
    /// Asked for a prompt key refresh when a token names a key its issuer's set lacks.
    refresher: Option<KeyRefresher>,
    /// Makes each Check a span, when `telemetry.otlp_endpoint` is set.
    tracing: Option<Tracing>,
    /// Records the first workload of each new session (`binding.pin_first_workload`).
    pins: Arc<dyn PinStore>,
    /// Counts every check in metrics and writes its decision-log line.
    reporter: CheckReporter,
}

impl AuthorizationService {
    /// A service judging with `gate`.
    pub fn new(gate: Arc<Gate>) -> AuthorizationService {
        AuthorizationService {
            gate,
            refresher: None,
            tracing: None,
            pins: Arc::new(LocalPins),
            reporter: CheckReporter::default(),
        }
    }

    /// Reports checks into `reporter` (the process's metrics and decision log).
    pub fn with_reporter(mut self, reporter: CheckReporter) -> AuthorizationService {
        self.reporter = reporter;
        self
    }

    /// Pins new sessions in `pins` (e.g. Redis, fleet-wide) instead of this process's cache.
    pub fn with_pin_store(mut self, pins: Arc<dyn PinStore>) -> AuthorizationService {
        self.pins = pins;
        self
    }

    /// Records the pin a fresh session needs (the only await on the path of a check, once per
    /// new session) and lets the gate settle the verdict.
    async fn pin(&self, outcome: Outcome) -> Outcome {
        let (Some(claim), Some((key, session))) = (&outcome.pin, &outcome.session) else {
            return outcome;
        };
        let owner = self
            .pins
            .claim(key, session, claim.identity.clone(), claim.ttl)
            .await;
        self.gate.settle_pin(outcome, owner, UnixTime::now())
    }

    /// Records each Check as a span continuing the request's trace.
    pub fn with_tracing(mut self, tracing: Option<Tracing>) -> AuthorizationService {
        self.tracing = tracing;
        self
    }

    /// On an unknown `kid`, refresh the issuer's keys (rate-limited, briefly awaited) and
    /// judge the request once more: the issuer may have rotated since the last refresh.
    pub fn with_key_refresher(mut self, refresher: KeyRefresher) -> AuthorizationService {
        self.refresher = Some(refresher);
        self
    }

    /// Runs the gate; a panic becomes `None` (answered as a 503 denial).
    fn judge(&self, facts: &RequestFacts<'_>) -> Option<Outcome> {
        panic::catch_unwind(AssertUnwindSafe(|| self.gate.check(facts, UnixTime::now()))).ok()
    }

    /// The new token's `kid` is not in its issuer's set (not a cached session whose key was
    /// retired: that one is gone for good).
    fn worth_a_key_refresh(outcome: &Outcome) -> bool {
        outcome.session.is_none()
            && matches!(&outcome.verdict, Err(deny) if deny.reason == DenyReason::UnknownKey)
    }

    /// The answer to a `Check` call (arrived at `started`) whose request could not be read at
    /// all (too large, not a CheckRequest): `deny`, counted and logged like every other denial.
    pub fn refuse(&self, deny: &Deny, started: Instant) -> CheckResponse {
        self.reporter.refused(deny, started.elapsed());
        response::denied(deny)
    }

    /// Judges one `Check` (arrived at `started`, which its latency is measured from). Always an
    /// answer, never a gRPC error (see the type's doc).
    pub async fn check(&self, check: CheckRequest, started: Instant) -> CheckResponse {
        let span = self.tracing.as_ref().map(|tracing| {
            tracing.begin(|name| {
                let http = request::http_request(&check).ok()?;
                request::header(http, name)
            })
        });
        let (http, facts) = match request::http_request(&check)
            .and_then(|http| Ok((http, request::facts(&check, http)?)))
        {
            Ok(read) => read,
            Err(deny) => {
                self.reporter.refused(&deny, started.elapsed());
                telemetry::record_denied(span, deny.reason);
                return response::denied(&deny);
            }
        };
        // A panic must not become a failed call (which `failure_mode_allow` may turn into an
        // allow): it becomes a 503 denial.
        let mut judged = self.judge(&facts);
        if let (Some(refresher), Some(outcome)) = (&self.refresher, &judged)
            && Self::worth_a_key_refresh(outcome)
            && let Ok(Some(token)) = bearer_token(facts.authorization)
            && refresher.refresh_for_unknown_key(token).await
        {
            judged = self.judge(&facts);
        }
        let Some(outcome) = judged else {
            tracing::error!(
                decision = "deny",
                reason = "internal_error",
                "check panicked; denying"
            );
            let failed = Deny::new(DenyReason::InternalError, "check panicked");
            self.reporter.refused(&failed, started.elapsed());
            telemetry::record_denied(span, DenyReason::InternalError);
            return response::internal_error("sessiongate failed to judge the request");
        };
        let outcome = self.pin(outcome).await;
        // Dry-run changes only the answer: the outcome, its metrics, span and log line are
        // those of enforcement. Whether it applies was settled with the verdict, under the
        // same policy (a reload during the pin claim above changes neither).
        let dry_run = outcome.dry_run;
        telemetry::record(span, &outcome, dry_run);
        let answer = match &outcome.verdict {
            Err(deny) if dry_run => response::dry_run_denial(deny, request::header_names(http)),
            _ => response::check_response(
                &outcome,
                facts.peer.principal,
                request::header_names(http),
            ),
        };
        let now = UnixTime::now();
        self.reporter.judged(
            &outcome,
            facts.peer.principal,
            dry_run,
            now,
            started.elapsed(),
        );
        answer
    }
}
