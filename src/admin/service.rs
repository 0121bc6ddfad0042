//! The `sessiongate.admin.v1.Admin` service: thin handlers over the gate and the revocations.
//! Input is validated in [`super::convert`]; the judgement of a session is
//! [`sessiongate_core::decision::session_denials`]. Tokens sent to `ExplainSession` are hashed, never logged.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{self, InvalidInput};
use super::proto;
use super::server::AdminState;
use crate::revocation::{Effect, Revocation, Selector, StoreError};
use sessiongate_core::time::UnixTime;

/// Who a revocation made through this API is attributed to.
const ORIGIN: &str = "admin";

/// The admin service; cheap to clone (shared state behind `Arc`s).
#[derive(Clone, Debug)]
pub struct AdminService {
    state: AdminState,
}

impl AdminService {
    /// A service over `state`.
    pub fn new(state: AdminState) -> AdminService {
        AdminService { state }
    }

    /// Validates a `Revoke` request into a revocation recorded at `now`.
    fn revocation(
        &self,
        request: proto::RevokeRequest,
        now: UnixTime,
    ) -> Result<Revocation, InvalidInput> {
        let policy = self.state.gate.policy();
        let trusted: Vec<Arc<str>> = policy
            .verifier
            .issuers()
            .map(|rules| Arc::clone(&rules.issuer))
            .collect();
        let mut selector = request.selector.ok_or(InvalidInput::MissingSelector)?;
        convert::fill_issuer(&mut selector, &trusted)?;
        Ok(Revocation {
            selector: Selector::try_from(selector)?,
            issued_before: convert::cutoff(
                request.issued_before_unix_ms,
                now,
                policy.session.clock_skew,
            )?,
            effect: Effect::Revoke,
            recorded_at: now,
            origin: ORIGIN.into(),
            reason: convert::reason(request.reason)?,
            issuers: None,
            retain_until: None,
        })
    }
}

fn invalid(error: InvalidInput) -> Status {
    Status::invalid_argument(error.to_string())
}

/// `UNAVAILABLE`, saying what became of a revocation the store did not acknowledge: certainly
/// not recorded (the store was unreachable or refused it), or sent but not confirmed, in which
/// case it may still apply; an operator told "not recorded" would not expect that.
fn not_acknowledged(error: &StoreError, selector: &str) -> Status {
    match error {
        StoreError::Unconfirmed(cause) => {
            tracing::error!(%error, selector, "revocation NOT confirmed; it may still apply");
            Status::unavailable(format!(
                "revocation not confirmed: {cause}; it may still apply (check with list before \
                 retrying)"
            ))
        }
        StoreError::Unavailable(_) | StoreError::Corrupt(_) => {
            tracing::error!(%error, selector, "revocation NOT recorded");
            Status::unavailable(format!("revocation not recorded: {error}"))
        }
    }
}

#[tonic::async_trait]
impl proto::admin_server::Admin for AdminService {
    async fn revoke(
        &self,
        request: Request<proto::RevokeRequest>,
    ) -> Result<Response<proto::RevokeResponse>, Status> {
        let now = UnixTime::now();
        let revocation = self
            .revocation(request.into_inner(), now)
            .map_err(invalid)?;
        let selector = convert::describe_selector(&(&revocation.selector).into());
        let stored = match self.state.revocations.revoke(revocation).await {
            Ok(stored) => stored,
            Err(error) => return Err(not_acknowledged(&error, &selector)),
        };
        let wire = convert::revocation_to_proto(&stored, self.state.revocations.horizon());
        tracing::info!(
            selector,
            issued_before = wire.issued_before_unix_ms,
            reason = wire.reason,
            origin = ORIGIN,
            "revoked"
        );
        Ok(Response::new(proto::RevokeResponse {
            revocation: Some(wire),
        }))
    }

    async fn list_revocations(
        &self,
        _request: Request<proto::ListRevocationsRequest>,
    ) -> Result<Response<proto::ListRevocationsResponse>, Status> {
        let horizon = self.state.revocations.horizon();
        let revocations = self
            .state
            .revocations
            .current()
            .entries()
            .iter()
            .map(|revocation| convert::revocation_to_proto(revocation, horizon))
            .collect();
        Ok(Response::new(proto::ListRevocationsResponse {
            revocations,
        }))
    }

    async fn explain_session(
        &self,
        request: Request<proto::ExplainSessionRequest>,
    ) -> Result<Response<proto::ExplainSessionResponse>, Status> {
        let request = request.into_inner();
        let token = request.token.trim();
        let token = token
            .strip_prefix("Bearer ")
            .or_else(|| token.strip_prefix("bearer "))
            .unwrap_or(token)
            .trim();
        if token.is_empty() {
            return Err(invalid(InvalidInput::Empty("token")));
        }
        let Some(report) = self.state.gate.explain(token, UnixTime::now()) else {
            return Ok(Response::new(proto::ExplainSessionResponse::default()));
        };
        let session = &report.session;
        let claims = &session.token;
        let text = |value: Option<&str>| value.unwrap_or_default().to_owned();
        Ok(Response::new(proto::ExplainSessionResponse {
            found: true,
            session: report.key.short().to_string(),
            issuer: claims.issuer.to_string(),
            subject: text(claims.subject()),
            scopes: claims
                .scopes
                .as_str()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            jti: text(claims.token_id()),
            sid: text(claims.session_id()),
            client_id: text(claims.client_id.as_deref()),
            pinned_workload: session
                .pinned()
                .map(ToString::to_string)
                .unwrap_or_default(),
            first_seen_unix_ms: session.first_seen.as_millis(),
            last_allowed_unix_ms: session.last_allowed().map(UnixTime::as_millis),
            issued_at_unix_ms: claims.issued_at.map(UnixTime::as_millis),
            expires_at_unix_ms: claims.expires_at.as_millis(),
            auth_time_unix_ms: claims.auth_time.map(UnixTime::as_millis),
            key_id: claims.key.id().to_string(),
            would_be_denied: report
                .denials
                .iter()
                .map(|deny| proto::Denial {
                    reason: deny.reason.as_str().to_owned(),
                    description: deny.description.to_string(),
                })
                .collect(),
        }))
    }
}
