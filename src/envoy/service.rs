//! The `envoy.service.auth.v3.Authorization/Check` handler (served by [`super::server`]).

use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::CheckResponse;
use sessiongate_check::check::{CheckUseCase, KeyRefresh};
use sessiongate_check::gate::Gate;
use sessiongate_check::pinning::PinStore;
use sessiongate_check::replay::ProofReplayStore;
use sessiongate_core::deny::{Deny, DenyReason};
use tokio::time::Instant;

use super::report::CheckReporter;
use super::wire::CheckRequest;
use super::{request, response};
use crate::telemetry::{self, Tracing};
use sessiongate_core::time::UnixTime;

/// Answers Envoy's `Check` calls by running the [`CheckUseCase`] and translating its outcome.
///
/// It never returns `Err(Status)` for a request it could judge: Envoy treats a failed call per
/// `failure_mode_allow`, which an operator may have set to allow, so denials (including
/// "cannot decide") are always `Ok` responses carrying a non-OK status.
#[derive(Debug, Clone)]
pub struct AuthorizationService {
    /// The check itself: everything that decides.
    check: CheckUseCase,
    /// Makes each Check a span, when `telemetry.otlp_endpoint` is set.
    tracing: Option<Tracing>,
    /// Counts every check in metrics and writes its decision-log line.
    reporter: CheckReporter,
}

impl AuthorizationService {
    /// A service judging with `gate`, pinning in its cache, never refreshing keys.
    pub fn new(gate: Arc<Gate>) -> AuthorizationService {
        AuthorizationService::with_check(CheckUseCase::new(gate))
    }

    /// A service answering with what `check` decides.
    pub fn with_check(check: CheckUseCase) -> AuthorizationService {
        AuthorizationService {
            check,
            tracing: None,
            reporter: CheckReporter::default(),
        }
    }

    /// Reports checks into `reporter` (the process's metrics and decision log).
    pub fn with_reporter(mut self, reporter: CheckReporter) -> AuthorizationService {
        self.reporter = reporter;
        self
    }

    /// Remembers used DPoP proofs in `proofs` (e.g. Redis, fleet-wide).
    pub fn with_proof_replay(mut self, proofs: Arc<dyn ProofReplayStore>) -> AuthorizationService {
        self.check = self.check.with_proof_replay(proofs);
        self
    }

    /// Pins new sessions in `pins` (e.g. Redis, fleet-wide) instead of this process's cache.
    pub fn with_pin_store(mut self, pins: Arc<dyn PinStore>) -> AuthorizationService {
        self.check = self.check.with_pin_store(pins);
        self
    }

    /// Records each Check as a span continuing the request's trace.
    pub fn with_tracing(mut self, tracing: Option<Tracing>) -> AuthorizationService {
        self.tracing = tracing;
        self
    }

    /// Asks `introspector` about opaque tokens the cache does not hold (RFC 7662).
    pub fn with_introspector(
        mut self,
        introspector: Arc<dyn sessiongate_check::introspection::Introspector>,
    ) -> AuthorizationService {
        self.check = self.check.with_introspector(introspector);
        self
    }

    /// On an unknown `kid`, asks `keys` for a refresh and judges the request once more: the
    /// issuer may have rotated since the last refresh.
    pub fn with_key_refresh(mut self, keys: Arc<dyn KeyRefresh>) -> AuthorizationService {
        self.check = self.check.with_key_refresh(keys);
        self
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
        let Ok(outcome) = self.check.run(&facts).await else {
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
        // Dry-run changes only the answer: the outcome, its metrics, span and log line are
        // those of enforcement. Whether it applies was settled by the check use case with the
        // verdict, under the policy the request was judged by.
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
