//! Why a request is denied, and how that is told to the client (RFC 6750, RFC 9470).
//!
//! Every denial carries one [`DenyReason`] with a stable snake_case name: it appears in the
//! response body, in logs and in metrics, so dashboards and alerts can rely on it. The HTTP
//! status and the `WWW-Authenticate` challenge follow from the reason, so clients learn whether
//! to get a new token (401 `invalid_token`), re-authenticate the user (401
//! `insufficient_user_authentication`), ask for more scope (403 `insufficient_scope`) or give up.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// The stable name of every way a request can be denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// No bearer token on a route that needs one.
    MissingToken,
    /// The token is not a well-formed JWT with well-typed claims.
    MalformedToken,
    /// The signature does not verify.
    BadSignature,
    /// `iss` is not a configured issuer.
    UnknownIssuer,
    /// The issuer has no such key, or it was rotated away.
    UnknownKey,
    /// `aud` names none of the issuer's audiences.
    WrongAudience,
    /// `none`, HMAC, an algorithm off the allow-list, or one that does not fit the key.
    DisallowedAlgorithm,
    /// Past `exp`.
    Expired,
    /// Before `nbf` (or `iat` in the future).
    NotYetValid,
    /// Issued longer ago than the route's `max_token_age`, or without `iat`.
    TokenTooOld,
    /// The user authenticated longer ago than `max_auth_age`.
    AuthTooOld,
    /// No allowed request for longer than `idle_timeout`.
    SessionIdle,
    /// The token lacks a scope the route requires.
    InsufficientScope,
    /// The token is certificate-bound (`cnf`) to another certificate, or none was presented.
    CnfMismatch,
    /// The binding claim names another workload than the caller.
    WorkloadMismatch,
    /// The caller is not on the route's `workloads` list.
    WorkloadNotAllowed,
    /// The session is pinned to another workload: the token was replayed.
    SessionReplayed,
    /// No route matches the request.
    NoRoute,
    /// The request itself is unusable (bad `Authorization` syntax, no HTTP attributes).
    BadRequest,
    /// sessiongate could not decide; fails closed.
    InternalError,
    /// The session was revoked (admin API or a security event).
    Revoked,
    /// A new token was not verified because its caller, or all callers together, spent their
    /// verification budget (`limits.verifications`); retry after `Retry-After`.
    VerificationThrottled,
    /// The DPoP proof is missing, several, malformed, wrongly typed or signed, signed with an
    /// algorithm off `dpop.algorithms` or a key that is not public, or names another method,
    /// URI, token (`ath`) or time (`iat`) than this request (RFC 9449 section 4.3).
    InvalidDpopProof,
    /// The DPoP proof's `jti` was accepted before (this replica, or the fleet through Redis).
    DpopProofReplayed,
    /// The token presented with `DPoP` is not bound (`cnf.jkt`) to the key that signed the proof.
    DpopKeyMismatch,
    /// A DPoP-bound token (`cnf.jkt`) presented as a `Bearer` token (RFC 9449 section 7.2).
    DpopDowngrade,
    /// The route requires proof of possession (`proof_of_possession`) and the token is a plain
    /// bearer token, or bound in a way the route does not accept.
    ProofOfPossessionRequired,
    /// The route requires a server nonce (`dpop_nonce`) and the proof has none, or a stale one;
    /// the response carries a fresh one in `DPoP-Nonce`.
    UseDpopNonce,
}

impl DenyReason {
    /// Every reason, for metrics pre-registration and exhaustive tests.
    pub const ALL: [DenyReason; 28] = [
        DenyReason::MissingToken,
        DenyReason::MalformedToken,
        DenyReason::BadSignature,
        DenyReason::UnknownIssuer,
        DenyReason::UnknownKey,
        DenyReason::WrongAudience,
        DenyReason::DisallowedAlgorithm,
        DenyReason::Expired,
        DenyReason::NotYetValid,
        DenyReason::TokenTooOld,
        DenyReason::AuthTooOld,
        DenyReason::SessionIdle,
        DenyReason::InsufficientScope,
        DenyReason::CnfMismatch,
        DenyReason::WorkloadMismatch,
        DenyReason::WorkloadNotAllowed,
        DenyReason::SessionReplayed,
        DenyReason::NoRoute,
        DenyReason::BadRequest,
        DenyReason::InternalError,
        DenyReason::Revoked,
        DenyReason::VerificationThrottled,
        DenyReason::InvalidDpopProof,
        DenyReason::DpopProofReplayed,
        DenyReason::DpopKeyMismatch,
        DenyReason::DpopDowngrade,
        DenyReason::ProofOfPossessionRequired,
        DenyReason::UseDpopNonce,
    ];

    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::MissingToken => "missing_token",
            DenyReason::MalformedToken => "malformed_token",
            DenyReason::BadSignature => "bad_signature",
            DenyReason::UnknownIssuer => "unknown_issuer",
            DenyReason::UnknownKey => "unknown_key",
            DenyReason::WrongAudience => "wrong_audience",
            DenyReason::DisallowedAlgorithm => "disallowed_algorithm",
            DenyReason::Expired => "expired",
            DenyReason::NotYetValid => "not_yet_valid",
            DenyReason::TokenTooOld => "token_too_old",
            DenyReason::AuthTooOld => "auth_too_old",
            DenyReason::SessionIdle => "session_idle",
            DenyReason::InsufficientScope => "insufficient_scope",
            DenyReason::CnfMismatch => "cnf_mismatch",
            DenyReason::WorkloadMismatch => "workload_mismatch",
            DenyReason::WorkloadNotAllowed => "workload_not_allowed",
            DenyReason::SessionReplayed => "session_replayed",
            DenyReason::NoRoute => "no_route",
            DenyReason::BadRequest => "bad_request",
            DenyReason::InternalError => "internal_error",
            DenyReason::Revoked => "revoked",
            DenyReason::VerificationThrottled => "verification_throttled",
            DenyReason::InvalidDpopProof => "invalid_dpop_proof",
            DenyReason::DpopProofReplayed => "dpop_proof_replayed",
            DenyReason::DpopKeyMismatch => "dpop_key_mismatch",
            DenyReason::DpopDowngrade => "dpop_downgrade",
            DenyReason::ProofOfPossessionRequired => "proof_of_possession_required",
            DenyReason::UseDpopNonce => "use_dpop_nonce",
        }
    }

    /// The HTTP status the client receives.
    pub fn http_status(self) -> u16 {
        match self {
            DenyReason::InsufficientScope
            | DenyReason::WorkloadMismatch
            | DenyReason::WorkloadNotAllowed
            | DenyReason::NoRoute => 403,
            DenyReason::BadRequest => 400,
            DenyReason::InternalError | DenyReason::VerificationThrottled => 503,
            _ => 401,
        }
    }

    /// The OAuth-style error code of the response body.
    pub fn error_code(self) -> &'static str {
        match self {
            DenyReason::MissingToken => "unauthorized",
            DenyReason::AuthTooOld => "insufficient_user_authentication",
            DenyReason::InsufficientScope => "insufficient_scope",
            DenyReason::WorkloadMismatch | DenyReason::WorkloadNotAllowed | DenyReason::NoRoute => {
                "access_denied"
            }
            DenyReason::BadRequest => "invalid_request",
            DenyReason::InternalError | DenyReason::VerificationThrottled => {
                "temporarily_unavailable"
            }
            DenyReason::InvalidDpopProof | DenyReason::DpopProofReplayed => "invalid_dpop_proof",
            DenyReason::UseDpopNonce => "use_dpop_nonce",
            _ => "invalid_token",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Extra challenge parameters some reasons carry.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ChallengeDetail {
    None,
    /// The scopes the route requires, space-separated (shared with the route).
    Scope(Arc<str>),
    /// The applicable `max_auth_age`, in seconds.
    MaxAge(u64),
    /// Whole seconds after which a retry can succeed (`Retry-After`, RFC 9110 section 10.2.3).
    RetryAfter(u64),
    /// A `DPoP` challenge (RFC 9449 section 7.1): the accepted proof algorithms
    /// (space-separated, shared with the policy) and, for `use_dpop_nonce`, the nonce to use.
    Dpop {
        algs: Arc<str>,
        nonce: Option<Arc<str>>,
    },
}

/// A denial: the reason, a human-readable description, and challenge details.
///
/// Descriptions are static or built from configuration, never from token content, so a response
/// cannot echo attacker-chosen text (or a token) back into headers or logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deny {
    /// The stable reason.
    pub reason: DenyReason,
    /// What exactly failed, for the client and the logs.
    pub description: Cow<'static, str>,
    detail: ChallengeDetail,
}

impl Deny {
    /// A denial with no extra challenge parameters.
    pub fn new(reason: DenyReason, description: impl Into<Cow<'static, str>>) -> Deny {
        Deny {
            reason,
            description: description.into(),
            detail: ChallengeDetail::None,
        }
    }

    /// `insufficient_scope`, telling the client which scopes the route needs.
    pub fn insufficient_scope(required: &Arc<str>) -> Deny {
        Deny {
            reason: DenyReason::InsufficientScope,
            description: "token lacks a scope the route requires".into(),
            detail: ChallengeDetail::Scope(Arc::clone(required)),
        }
    }

    /// `auth_too_old`, telling the client the acceptable authentication age (RFC 9470).
    pub fn auth_too_old(max_auth_age_secs: u64) -> Deny {
        Deny {
            reason: DenyReason::AuthTooOld,
            description: "user authentication is older than the route allows".into(),
            detail: ChallengeDetail::MaxAge(max_auth_age_secs),
        }
    }

    /// A new token not verified because a verification budget is spent; a retry after
    /// `retry_after` (rounded up to whole seconds, at least one) can succeed.
    pub fn verification_throttled(retry_after: std::time::Duration, per_caller: bool) -> Deny {
        let description = if per_caller {
            "too many new tokens from this caller; retry later"
        } else {
            "too many new tokens; retry later"
        };
        let millis = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX);
        Deny {
            reason: DenyReason::VerificationThrottled,
            description: description.into(),
            detail: ChallengeDetail::RetryAfter(millis.div_ceil(1000).max(1)),
        }
    }

    /// A denial answered with a `DPoP` challenge naming the accepted algorithms `algs`
    /// (RFC 9449 section 7.1), so a client learns to present a proof, or a better one.
    pub fn dpop(
        reason: DenyReason,
        description: impl Into<Cow<'static, str>>,
        algs: &Arc<str>,
    ) -> Deny {
        Deny {
            reason,
            description: description.into(),
            detail: ChallengeDetail::Dpop {
                algs: Arc::clone(algs),
                nonce: None,
            },
        }
    }

    /// `use_dpop_nonce`: the proof must carry `nonce`, sent back in a `DPoP-Nonce` header.
    pub fn use_dpop_nonce(algs: &Arc<str>, nonce: Arc<str>) -> Deny {
        Deny {
            reason: DenyReason::UseDpopNonce,
            description: "the DPoP proof must carry the server's current nonce".into(),
            detail: ChallengeDetail::Dpop {
                algs: Arc::clone(algs),
                nonce: Some(nonce),
            },
        }
    }

    /// The nonce for a `DPoP-Nonce` header (RFC 9449 section 8), when the denial asks for one.
    pub fn dpop_nonce(&self) -> Option<&str> {
        match &self.detail {
            ChallengeDetail::Dpop {
                nonce: Some(nonce), ..
            } => Some(nonce),
            _ => None,
        }
    }

    /// Seconds after which a retry can succeed, for a `Retry-After` header.
    pub fn retry_after(&self) -> Option<u64> {
        match self.detail {
            ChallengeDetail::RetryAfter(seconds) => Some(seconds),
            _ => None,
        }
    }

    /// `auth_too_old` because the user's assurance level changed after they authenticated
    /// (CAEP): no `max_age` applies, the user must simply authenticate again.
    pub fn reauthentication_required() -> Deny {
        Deny::new(
            DenyReason::AuthTooOld,
            "user must authenticate again (assurance level changed)",
        )
    }

    /// The `WWW-Authenticate` header value, if the reason has a challenge.
    pub fn www_authenticate(&self) -> Option<String> {
        let challenge = match (self.reason, &self.detail) {
            (reason, ChallengeDetail::Dpop { algs, .. }) => format!(
                r#"DPoP error="{}", error_description="{}", algs="{}""#,
                reason.error_code(),
                quotable(&self.description),
                quotable(algs)
            ),
            (DenyReason::MissingToken, _) => r#"Bearer realm="sessiongate""#.to_owned(),
            (DenyReason::InsufficientScope, ChallengeDetail::Scope(scope)) => {
                format!(
                    r#"Bearer error="insufficient_scope", scope="{}""#,
                    quotable(scope)
                )
            }
            (DenyReason::AuthTooOld, ChallengeDetail::MaxAge(max_age)) => {
                format!(r#"Bearer error="insufficient_user_authentication", max_age="{max_age}""#)
            }
            (DenyReason::AuthTooOld, _) => format!(
                r#"Bearer error="insufficient_user_authentication", error_description="{}""#,
                quotable(&self.description)
            ),
            (DenyReason::BadRequest, _) => r#"Bearer error="invalid_request""#.to_owned(),
            (reason, _) if reason.http_status() == 401 => format!(
                r#"Bearer error="invalid_token", error_description="{}""#,
                quotable(&self.description)
            ),
            _ => return None,
        };
        Some(challenge)
    }

    /// The JSON response body: `{"error", "reason", "error_description"}`.
    pub fn body(&self) -> String {
        serde_json::json!({
            "error": self.reason.error_code(),
            "reason": self.reason.as_str(),
            "error_description": self.description,
        })
        .to_string()
    }
}

/// Keeps only the characters RFC 6750 allows inside a quoted auth-param
/// (`%x20-21 / %x23-5B / %x5D-7E`), so a description can never break the header.
fn quotable(text: &str) -> Cow<'_, str> {
    let allowed = |c: char| matches!(c, '\x20'..='\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E');
    if text.chars().all(allowed) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(text.chars().filter(|c| allowed(*c)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for reason in DenyReason::ALL {
            let name = reason.as_str();
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
            assert!(seen.insert(name), "duplicate {name}");
        }
    }

    #[test]
    fn statuses_follow_the_table() {
        use DenyReason::*;
        for reason in [
            MissingToken,
            MalformedToken,
            BadSignature,
            UnknownIssuer,
            UnknownKey,
            WrongAudience,
            DisallowedAlgorithm,
            Expired,
            NotYetValid,
            TokenTooOld,
            AuthTooOld,
            SessionIdle,
            CnfMismatch,
            SessionReplayed,
            InvalidDpopProof,
            DpopProofReplayed,
            DpopKeyMismatch,
            DpopDowngrade,
            ProofOfPossessionRequired,
            UseDpopNonce,
        ] {
            assert_eq!(reason.http_status(), 401, "{reason}");
        }
        for reason in [
            InsufficientScope,
            WorkloadMismatch,
            WorkloadNotAllowed,
            NoRoute,
        ] {
            assert_eq!(reason.http_status(), 403, "{reason}");
        }
        assert_eq!(BadRequest.http_status(), 400);
        assert_eq!(InternalError.http_status(), 503);
        assert_eq!(VerificationThrottled.http_status(), 503);
    }

    #[test]
    fn a_throttled_verification_says_when_to_retry_and_has_no_challenge() {
        let deny = Deny::verification_throttled(std::time::Duration::from_millis(1), true);
        assert_eq!(deny.reason.as_str(), "verification_throttled");
        assert_eq!(deny.retry_after(), Some(1), "at least a second");
        assert_eq!(deny.www_authenticate(), None, "not the token's fault");
        let deny = Deny::verification_throttled(std::time::Duration::from_millis(2001), false);
        assert_eq!(deny.retry_after(), Some(3), "rounded up");
        assert_eq!(
            Deny::new(DenyReason::InternalError, "x").retry_after(),
            None
        );
    }

    #[test]
    fn challenges_follow_rfc_6750_and_9470() {
        let missing = Deny::new(DenyReason::MissingToken, "no bearer token");
        assert_eq!(
            missing.www_authenticate().unwrap(),
            r#"Bearer realm="sessiongate""#
        );
        let expired = Deny::new(DenyReason::Expired, "token expired");
        assert_eq!(
            expired.www_authenticate().unwrap(),
            r#"Bearer error="invalid_token", error_description="token expired""#
        );
        let scope = Deny::insufficient_scope(&Arc::from("orders:write admin"));
        assert_eq!(
            scope.www_authenticate().unwrap(),
            r#"Bearer error="insufficient_scope", scope="orders:write admin""#
        );
        assert_eq!(
            Deny::auth_too_old(28800).www_authenticate().unwrap(),
            r#"Bearer error="insufficient_user_authentication", max_age="28800""#
        );
        let bad = Deny::new(DenyReason::BadRequest, "two credentials");
        assert_eq!(
            bad.www_authenticate().unwrap(),
            r#"Bearer error="invalid_request""#
        );
        for reason in [
            DenyReason::WorkloadMismatch,
            DenyReason::WorkloadNotAllowed,
            DenyReason::NoRoute,
            DenyReason::InternalError,
        ] {
            assert_eq!(Deny::new(reason, "x").www_authenticate(), None, "{reason}");
        }
    }

    #[test]
    fn dpop_denials_carry_a_dpop_challenge_per_rfc_9449() {
        let algs: Arc<str> = "ES256 EdDSA".into();
        let proof = Deny::dpop(DenyReason::InvalidDpopProof, "htm does not match", &algs);
        assert_eq!(
            proof.www_authenticate().unwrap(),
            r#"DPoP error="invalid_dpop_proof", error_description="htm does not match", algs="ES256 EdDSA""#
        );
        assert_eq!(proof.dpop_nonce(), None);
        let replayed = Deny::dpop(DenyReason::DpopProofReplayed, "jti seen", &algs);
        assert!(
            replayed
                .www_authenticate()
                .unwrap()
                .starts_with(r#"DPoP error="invalid_dpop_proof""#)
        );
        let downgrade = Deny::dpop(DenyReason::DpopDowngrade, "bound", &algs);
        assert!(
            downgrade
                .www_authenticate()
                .unwrap()
                .starts_with(r#"DPoP error="invalid_token""#)
        );
        let nonce = Deny::use_dpop_nonce(&algs, "n-1".into());
        assert_eq!(nonce.reason.as_str(), "use_dpop_nonce");
        assert_eq!(nonce.dpop_nonce(), Some("n-1"));
        assert!(
            nonce
                .www_authenticate()
                .unwrap()
                .starts_with(r#"DPoP error="use_dpop_nonce""#)
        );
    }

    #[test]
    fn descriptions_cannot_break_the_header() {
        let deny = Deny::new(DenyReason::Expired, "a\"b\\c\r\nd");
        assert_eq!(
            deny.www_authenticate().unwrap(),
            r#"Bearer error="invalid_token", error_description="abcd""#
        );
    }

    #[test]
    fn body_is_small_json_with_the_reason() {
        let body: serde_json::Value =
            serde_json::from_str(&Deny::insufficient_scope(&Arc::from("a")).body()).unwrap();
        assert_eq!(body["reason"], "insufficient_scope");
        assert_eq!(body["error"], "insufficient_scope");
    }
}
