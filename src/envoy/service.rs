//! The tonic `envoy.service.auth.v3.Authorization` service.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::{Authorization, CheckRequest, CheckResponse};
use tonic::{Request, Response, Status};

use super::{request, response};
use crate::gate::{Gate, Outcome};
use crate::time::UnixTime;

/// Answers Envoy's `Check` calls by asking the [`Gate`].
///
/// It never returns `Err(Status)` for a request it could judge: Envoy treats a failed call per
/// `failure_mode_allow`, which an operator may have set to allow, so denials (including
/// "cannot decide") are always `Ok` responses carrying a non-OK status.
#[derive(Debug, Clone)]
pub struct AuthorizationService {
    gate: Arc<Gate>,
}

impl AuthorizationService {
    /// A service judging with `gate`.
    pub fn new(gate: Arc<Gate>) -> AuthorizationService {
        AuthorizationService { gate }
    }
}

#[tonic::async_trait]
impl Authorization for AuthorizationService {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let check = request.into_inner();
        let http = match request::http_request(&check) {
            Ok(http) => http,
            Err(deny) => {
                tracing::info!(
                    decision = "deny",
                    reason = deny.reason.as_str(),
                    "{}",
                    deny.description
                );
                return Ok(Response::new(response::denied(&deny)));
            }
        };
        let facts = request::facts(&check, http);
        // A panic must not become a failed call (which `failure_mode_allow` may turn into an
        // allow): it becomes a 503 denial.
        let judged = panic::catch_unwind(AssertUnwindSafe(|| {
            self.gate.check(&facts, UnixTime::now())
        }));
        let Ok(outcome) = judged else {
            tracing::error!(
                decision = "deny",
                reason = "internal_error",
                "check panicked; denying"
            );
            return Ok(Response::new(response::internal_error(
                "sessiongate failed to judge the request",
            )));
        };
        log(&outcome);
        let answer =
            response::check_response(&outcome, facts.peer.principal, request::header_names(http));
        Ok(Response::new(answer))
    }
}

/// One line per denial (allows at debug): route, reason and the session's short hash, never
/// the token.
fn log(outcome: &Outcome) {
    let route = outcome.route.as_deref().unwrap_or("-");
    let session = outcome.session.as_ref().map(|(key, _)| key.short());
    let session = session.as_ref().map_or("-", |s| s.as_str());
    match &outcome.verdict {
        Ok(()) => tracing::debug!(decision = "allow", route, session, "allowed"),
        Err(deny) => tracing::info!(
            decision = "deny",
            route,
            session,
            reason = deny.reason.as_str(),
            "{}",
            deny.description
        ),
    }
}
