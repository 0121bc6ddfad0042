//! **Why was this request denied?** The whole answer is in this file.
//!
//! Pure functions, no I/O: the clock, the verified token and the session's cached state are
//! arguments, so every rule is tested exactly (see the tests at the bottom, one per rule).
//!
//! A request is judged in two steps, because verifying a signature costs far more than anything
//! else and must happen only once per session:
//! 1. [`admit`]: pick the route (`no_route`), let public routes through, and read the bearer
//!    credential (`missing_token`, `bad_request`).
//! 2. [`decide`]: once the token is verified (or found in the cache), judge the session against
//!    the route on *every* request: key still trusted, not revoked, `exp`/`nbf`, token age,
//!    `auth_time` not in the future, authentication age, idleness, certificate binding (`cnf`), replay (pinning), binding claim, allowed
//!    workloads, scopes. Authentication failures (401) are checked before authorization (403),
//!    so a client that must fetch a new token learns that first.

use std::sync::Arc;
use std::time::Duration;

use crate::deny::{Deny, DenyReason};
use crate::dpop::{DpopProof, DpopRules, NonceCheck, RequestTarget, target_matches};
use crate::policy::{BindingRules, SessionRules};
use crate::request::RequestFacts;
use crate::revocation::RevocationCheck;
use crate::route::{Route, RouteAccess, RouteTable, SessionRequirements};
use crate::time::UnixTime;
use crate::token::{
    Confirmation, CredentialError, Scheme, TokenError, VerifiedToken, access_token,
};
use crate::workload::{Caller, PinnedWorkload, SpiffeId, Thumbprint};

/// Outcome of the first step for a request that may proceed.
#[derive(Debug)]
pub enum Admission<'p, 'r> {
    /// A public route: allow without a token.
    Public(&'p Route),
    /// A route needing a session; `token` is the access token to verify.
    Bearer {
        /// The matched route.
        route: &'p Route,
        /// What the route demands of the session.
        requirements: &'p SessionRequirements,
        /// The compact JWS from the `Authorization` header.
        token: &'r str,
        /// How it was presented: `Bearer`, or `DPoP` with a proof to verify.
        scheme: Scheme,
    },
}

/// Step 1: route, public access, bearer credential.
pub fn admit<'p, 'r>(
    routes: &'p RouteTable,
    request: &RequestFacts<'r>,
) -> Result<Admission<'p, 'r>, Deny> {
    let route = routes
        .find(request)
        .ok_or_else(|| Deny::new(DenyReason::NoRoute, "no route matches the request"))?;
    let requirements = match &route.access {
        RouteAccess::Public => {
            if !route.admits_workload(SpiffeId::parse(request.peer.principal)) {
                return Err(workload_not_allowed());
            }
            return Ok(Admission::Public(route));
        }
        RouteAccess::Session(requirements) => requirements,
    };
    match access_token(request.authorization) {
        Ok(Some((scheme, token))) => Ok(Admission::Bearer {
            route,
            requirements,
            token,
            scheme,
        }),
        Ok(None) => Err(Deny::new(
            DenyReason::MissingToken,
            "a bearer token is required",
        )),
        Err(error) => Err(bad_request(error)),
    }
}

fn bad_request(error: CredentialError) -> Deny {
    Deny::new(DenyReason::BadRequest, error.to_string())
}

fn workload_not_allowed() -> Deny {
    Deny::new(
        DenyReason::WorkloadNotAllowed,
        "caller is not allowed on this route",
    )
}

/// The denial for a token that failed verification.
pub fn token_rejected(error: &TokenError) -> Deny {
    let reason = match error {
        TokenError::Malformed(_) => DenyReason::MalformedToken,
        TokenError::BadSignature => DenyReason::BadSignature,
        TokenError::UnknownIssuer => DenyReason::UnknownIssuer,
        TokenError::UnknownKey => DenyReason::UnknownKey,
        TokenError::WrongAudience => DenyReason::WrongAudience,
        TokenError::DisallowedAlgorithm(_) => DenyReason::DisallowedAlgorithm,
        TokenError::Inactive => DenyReason::Revoked,
    };
    let description: std::borrow::Cow<'static, str> = match error {
        TokenError::Malformed(what) | TokenError::DisallowedAlgorithm(what) => (*what).into(),
        other => other.to_string().into(),
    };
    Deny::new(reason, description)
}

/// The denial for a DPoP proof that could not be read or verified (`what` says why; never
/// proof content), with the `DPoP` challenge naming the accepted algorithms.
pub fn proof_rejected(what: &'static str, rules: &DpopRules) -> Deny {
    Deny::dpop(DenyReason::InvalidDpopProof, what, &rules.algorithms)
}

/// The denial when a DPoP proof's `jti` was accepted before (RFC 9449 section 11.1).
pub fn proof_replayed(rules: &DpopRules) -> Deny {
    Deny::dpop(
        DenyReason::DpopProofReplayed,
        "the DPoP proof was used before (jti)",
        &rules.algorithms,
    )
}

/// The denial when another workload won the race to pin a fresh session.
pub fn replayed() -> Deny {
    Deny::new(
        DenyReason::SessionReplayed,
        "session is bound to another workload",
    )
}

/// What is known about a session besides its token: its history here and its revocation status.
#[derive(Clone, Copy, Debug, Default)]
pub struct SessionState<'a> {
    /// When a request of the session was last allowed here; `None` if never.
    pub last_allowed: Option<UnixTime>,
    /// The workload the session is pinned to, if any.
    pub pinned: Option<&'a PinnedWorkload>,
    /// Whether a revocation applies (see [`crate::revocation::RevocationSet::check`]).
    pub revocation: RevocationCheck,
    /// The issuer's keys could not be refreshed for longer than its `max_stale`
    /// (the token crate's `KeyRing::is_suspended`): nothing says the key is still trusted.
    pub keys_stale: bool,
}

/// The clock as the decision needs it.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// The instant the request is judged at.
    pub now: UnixTime,
    /// When this process started; idle rules forgive unseen sessions for one idle timeout
    /// after it, because a restart forgets every session's state.
    pub started_at: UnixTime,
}

/// The rules that apply, borrowed from the current policy.
#[derive(Clone, Copy, Debug)]
pub struct Rules<'p> {
    /// The route's session requirements.
    pub route: &'p Route,
    /// Its session requirements.
    pub requirements: &'p SessionRequirements,
    /// Session-wide time rules.
    pub session: &'p SessionRules,
    /// Workload binding rules.
    pub binding: &'p BindingRules,
    /// DPoP settings (algorithms for challenges, proof lifetime, public origin).
    pub dpop: &'p DpopRules,
}

/// How the access token was presented, and the DPoP proof that came with it: the request facts
/// the proof-of-possession rules read.
#[derive(Clone, Copy, Debug)]
pub struct Possession<'a> {
    /// The `Authorization` scheme.
    pub scheme: Scheme,
    /// The verified proof; `Some` exactly when `scheme` is `DPoP` (the check use case verifies
    /// it before the decision, and denies when it cannot).
    pub proof: Option<&'a DpopProof>,
    /// SHA-256 of the access token as presented, for `ath`; computed only with a proof.
    pub token_hash: Option<Thumbprint>,
    /// Method, scheme, authority and path of the request, for `htm` and `htu`.
    pub target: RequestTarget<'a>,
    /// Whether the proof's nonce is current (or none is required).
    pub nonce: NonceCheck,
    /// The nonce to hand out when the proof's is missing or stale.
    pub fresh_nonce: Option<&'a Arc<str>>,
}

impl Possession<'_> {
    /// A plain `Bearer` presentation, with nothing to prove.
    pub fn bearer() -> Possession<'static> {
        Possession {
            scheme: Scheme::Bearer,
            proof: None,
            token_hash: None,
            target: RequestTarget::default(),
            nonce: NonceCheck::NotRequired,
            fresh_nonce: None,
        }
    }
}

/// Step 2: judge a verified session for this request. `Ok(())` allows it; the caller then
/// records the allowed request and pins the session (the check use case's `Gate`). Stops at the first
/// of `RULES` that denies.
pub fn decide(
    token: &VerifiedToken,
    state: SessionState<'_>,
    caller: &Caller<'_>,
    possession: Possession<'_>,
    rules: Rules<'_>,
    clock: Clock,
) -> Result<(), Deny> {
    let facts = Facts {
        token,
        state,
        clock,
        session: rules.session,
        max_token_age: rules.requirements.max_token_age,
        request: Some(RequestRules {
            caller,
            possession,
            rules,
        }),
    };
    RULES.iter().try_for_each(|rule| rule(&facts))
}

/// Everything a rule reads. `request` is `None` when a session is judged without a request
/// (the admin API's `ExplainSession`, see [`session_denials`]): the rules that need a route
/// or a caller then have nothing to say.
struct Facts<'a> {
    token: &'a VerifiedToken,
    state: SessionState<'a>,
    clock: Clock,
    session: &'a SessionRules,
    /// The route's `max_token_age` for a request; the longest any route accepts otherwise.
    max_token_age: Duration,
    request: Option<RequestRules<'a>>,
}

/// The request-specific half of [`Facts`].
struct RequestRules<'a> {
    caller: &'a Caller<'a>,
    possession: Possession<'a>,
    rules: Rules<'a>,
}

/// One rule: `Err` with the denial when the session fails it.
type Rule = fn(&Facts<'_>) -> Result<(), Deny>;

/// Every rule a verified session is judged by, in order: [`decide`] stops at the first that
/// denies, [`session_denials`] collects every one (those that need a request are silent
/// there). One list, so the two can never disagree on what a rule says or on its order.
/// Authentication failures (401) come before authorization failures (403).
const RULES: &[Rule] = &[
    key_still_trusted,
    keys_fresh,
    not_revoked,
    not_expired,
    not_before,
    issued_at_known_and_past,
    young_enough,
    authenticated_in_the_past,
    authenticated_recently_enough,
    not_idle,
    certificate_bound,
    not_downgraded,
    possession_proven,
    dpop_key_bound,
    dpop_proof_for_this_token,
    dpop_proof_for_this_request,
    dpop_proof_fresh,
    dpop_nonce_current,
    not_replayed,
    binding_claim_matches,
    workload_allowed,
    scopes_granted,
];

fn key_still_trusted(facts: &Facts<'_>) -> Result<(), Deny> {
    if facts.token.key.is_retired() {
        return Err(Deny::new(
            DenyReason::UnknownKey,
            "signing key was removed from the issuer's key set",
        ));
    }
    Ok(())
}

fn keys_fresh(facts: &Facts<'_>) -> Result<(), Deny> {
    if facts.state.keys_stale {
        // 503, not 401: the fault is ours (the key source is unreachable), the token may well be
        // fine, and a 401 would send every client to its identity provider for a new token,
        // which would be judged the same way.
        return Err(Deny::new(
            DenyReason::InternalError,
            "the issuer's keys could not be refreshed in time; try again later",
        ));
    }
    Ok(())
}

fn not_revoked(facts: &Facts<'_>) -> Result<(), Deny> {
    match facts.state.revocation {
        RevocationCheck::Clear => Ok(()),
        RevocationCheck::Revoked => Err(Deny::new(DenyReason::Revoked, "session has been revoked")),
        RevocationCheck::ReauthenticationRequired => Err(Deny::reauthentication_required()),
    }
}

fn not_expired(facts: &Facts<'_>) -> Result<(), Deny> {
    if facts.clock.now > facts.token.expires_at.plus(facts.session.clock_skew) {
        return Err(Deny::new(DenyReason::Expired, "token has expired"));
    }
    Ok(())
}

fn not_before(facts: &Facts<'_>) -> Result<(), Deny> {
    let latest = facts.clock.now.plus(facts.session.clock_skew);
    if facts.token.not_before.is_some_and(|nbf| nbf > latest) {
        return Err(Deny::new(
            DenyReason::NotYetValid,
            "token is not valid yet (nbf)",
        ));
    }
    Ok(())
}

/// `iat` when it is present and not in the future: what the age and idle rules measure from.
fn issued_at(facts: &Facts<'_>) -> Option<UnixTime> {
    facts
        .token
        .issued_at
        .filter(|&iat| iat <= facts.clock.now.plus(facts.session.clock_skew))
}

fn issued_at_known_and_past(facts: &Facts<'_>) -> Result<(), Deny> {
    match facts.token.issued_at {
        None => Err(Deny::new(
            DenyReason::TokenTooOld,
            "token has no iat, so its age is unbounded",
        )),
        Some(iat) if iat > facts.clock.now.plus(facts.session.clock_skew) => Err(Deny::new(
            DenyReason::NotYetValid,
            "token is issued in the future (iat)",
        )),
        Some(_) => Ok(()),
    }
}

fn young_enough(facts: &Facts<'_>) -> Result<(), Deny> {
    let Some(iat) = issued_at(facts) else {
        return Ok(()); // issued_at_known_and_past has said it
    };
    if facts.clock.now.since(iat) > facts.max_token_age {
        let description = if facts.request.is_some() {
            "token is older than the route allows"
        } else {
            "token is older than any route allows"
        };
        return Err(Deny::new(DenyReason::TokenTooOld, description));
    }
    Ok(())
}

fn authenticated_in_the_past(facts: &Facts<'_>) -> Result<(), Deny> {
    check_auth_time_not_in_future(facts.token, facts.clock.now, facts.session.clock_skew)
}

fn authenticated_recently_enough(facts: &Facts<'_>) -> Result<(), Deny> {
    let Some(request) = &facts.request else {
        return Ok(());
    };
    if let (Some(max_auth_age), Some(auth_time)) = (
        request.rules.requirements.max_auth_age,
        facts.token.auth_time,
    ) && facts.clock.now.since(auth_time) > max_auth_age
    {
        return Err(Deny::auth_too_old(max_auth_age.as_secs()));
    }
    Ok(())
}

fn not_idle(facts: &Facts<'_>) -> Result<(), Deny> {
    match (facts.session.idle_timeout, issued_at(facts)) {
        (Some(idle_timeout), Some(iat)) => {
            check_idle(iat, facts.state.last_allowed, idle_timeout, facts.clock)
        }
        _ => Ok(()),
    }
}

fn certificate_bound(facts: &Facts<'_>) -> Result<(), Deny> {
    let Some(request) = &facts.request else {
        return Ok(());
    };
    match &facts.token.confirmation {
        // A DPoP-bound token is judged by the DPoP rules that follow.
        Confirmation::None | Confirmation::DpopKey(_) => Ok(()),
        Confirmation::Certificate(bound) if request.caller.thumbprint == Some(**bound) => Ok(()),
        Confirmation::Certificate(_) => Err(Deny::new(
            DenyReason::CnfMismatch,
            "token is bound to a different client certificate",
        )),
        Confirmation::Unsupported => Err(Deny::new(
            DenyReason::CnfMismatch,
            "token uses an unsupported confirmation method",
        )),
    }
}

/// RFC 9449 section 7.2: a DPoP-bound token presented as `Bearer` would let whoever stole it
/// skip the proof.
fn not_downgraded(facts: &Facts<'_>) -> Result<(), Deny> {
    let Some(request) = &facts.request else {
        return Ok(());
    };
    if request.possession.scheme == Scheme::Bearer
        && matches!(facts.token.confirmation, Confirmation::DpopKey(_))
    {
        return Err(Deny::dpop(
            DenyReason::DpopDowngrade,
            "a DPoP-bound token must be presented with the DPoP scheme and a proof",
            &request.rules.dpop.algorithms,
        ));
    }
    Ok(())
}

/// `routes[].proof_of_possession`: on such a route a plain bearer token is refused, and so is
/// a token bound in a way the route does not accept. The binding itself is checked by
/// `certificate_bound` and the DPoP rules.
fn possession_proven(facts: &Facts<'_>) -> Result<(), Deny> {
    let Some(request) = &facts.request else {
        return Ok(());
    };
    let Some(required) = request.rules.requirements.proof_of_possession else {
        return Ok(());
    };
    let proven = match (&facts.token.confirmation, request.possession.scheme) {
        (Confirmation::DpopKey(_), Scheme::Dpop) => required.accepts_dpop(),
        (Confirmation::Certificate(_), _) => required.accepts_mtls(),
        _ => false,
    };
    if proven {
        return Ok(());
    }
    Err(if required.accepts_dpop() {
        Deny::dpop(
            DenyReason::ProofOfPossessionRequired,
            "the route requires a sender-constrained token",
            &request.rules.dpop.algorithms,
        )
    } else {
        Deny::new(
            DenyReason::ProofOfPossessionRequired,
            "the route requires a certificate-bound token",
        )
    })
}

/// The proof of a `DPoP` request, once verified; its absence fails closed.
fn proof<'a>(request: &'a RequestRules<'a>) -> Result<Option<&'a DpopProof>, Deny> {
    if request.possession.scheme != Scheme::Dpop {
        return Ok(None);
    }
    match request.possession.proof {
        Some(proof) => Ok(Some(proof)),
        None => Err(proof_rejected(
            "a DPoP proof is required",
            request.rules.dpop,
        )),
    }
}

fn invalid_proof(request: &RequestRules<'_>, what: &'static str) -> Deny {
    proof_rejected(what, request.rules.dpop)
}

/// RFC 9449 section 7.1: the token presented with `DPoP` is bound (`cnf.jkt`) to the proof's key.
fn dpop_key_bound(facts: &Facts<'_>) -> Result<(), Deny> {
    let Some(request) = &facts.request else {
        return Ok(());
    };
    let Some(proof) = proof(request)? else {
        return Ok(());
    };
    let description = match &facts.token.confirmation {
        Confirmation::DpopKey(jkt) if **jkt == proof.key => return Ok(()),
        Confirmation::DpopKey(_) => "token is bound to another key than the DPoP proof's (cnf.jkt)",
        _ => "token presented with DPoP is not bound to a DPoP key (no cnf.jkt)",
    };
    Err(Deny::dpop(
        DenyReason::DpopKeyMismatch,
        description,
        &request.rules.dpop.algorithms,
    ))
}

/// `ath`: the proof was made for this access token (RFC 9449 section 4.3, check 12).
fn dpop_proof_for_this_token(facts: &Facts<'_>) -> Result<(), Deny> {
    let Some(request) = &facts.request else {
        return Ok(());
    };
    let Some(proof) = proof(request)? else {
        return Ok(());
    };
    match (proof.token_hash, request.possession.token_hash) {
        (Some(claimed), Some(actual)) if claimed == actual => Ok(()),
        (None, _) => Err(invalid_proof(
            request,
            "DPoP proof has no valid ath (hash of the access token)",
        )),
        _ => Err(invalid_proof(
            request,
            "DPoP proof's ath does not match the access token",
        )),
    }
}

/// `htm` and `htu`: the proof was made for this request (RFC 9449 section 4.3, checks 8–9).
fn dpop_proof_for_this_request(facts: &Facts<'_>) -> Result<(), Deny> {
    let Some(request) = &facts.request else {
        return Ok(());
    };
    let Some(proof) = proof(request)? else {
        return Ok(());
    };
    let target = &request.possession.target;
    if *proof.method != *target.method {
        return Err(invalid_proof(
            request,
            "DPoP proof's htm does not match the request method",
        ));
    }
    let origin = request.rules.requirements.dpop_origin.as_deref().or(request
        .rules
        .dpop
        .origin
        .as_deref());
    if !target_matches(&proof.target, target, origin) {
        return Err(invalid_proof(
            request,
            "DPoP proof's htu does not match the request URI",
        ));
    }
    Ok(())
}

/// `iat` within `dpop.proof_lifetime` (plus `session.clock_skew` on both sides): a proof is
/// short-lived, and the replay store only has to remember it that long.
fn dpop_proof_fresh(facts: &Facts<'_>) -> Result<(), Deny> {
    let Some(request) = &facts.request else {
        return Ok(());
    };
    let Some(proof) = proof(request)? else {
        return Ok(());
    };
    let skew = facts.session.clock_skew;
    if proof.issued_at > facts.clock.now.plus(skew) {
        return Err(invalid_proof(
            request,
            "DPoP proof is issued in the future (iat)",
        ));
    }
    if facts.clock.now.since(proof.issued_at) > request.rules.dpop.proof_lifetime + skew {
        return Err(invalid_proof(request, "DPoP proof is too old (iat)"));
    }
    Ok(())
}

/// `routes[].dpop_nonce`: the proof carries a current server nonce (RFC 9449 section 8).
fn dpop_nonce_current(facts: &Facts<'_>) -> Result<(), Deny> {
    let Some(request) = &facts.request else {
        return Ok(());
    };
    if request.possession.scheme != Scheme::Dpop || request.possession.nonce != NonceCheck::Missing
    {
        return Ok(());
    }
    match request.possession.fresh_nonce {
        Some(nonce) => Err(Deny::use_dpop_nonce(
            &request.rules.dpop.algorithms,
            Arc::clone(nonce),
        )),
        // Nonces required without a secret to make them: configuration refuses this; fail
        // closed all the same.
        None => Err(Deny::new(
            DenyReason::InternalError,
            "no DPoP nonce can be issued",
        )),
    }
}

fn not_replayed(facts: &Facts<'_>) -> Result<(), Deny> {
    let Some(request) = &facts.request else {
        return Ok(());
    };
    if request.rules.binding.pin_first_workload
        && let Some(pinned) = facts.state.pinned
        && !request.caller.is(pinned)
    {
        return Err(replayed());
    }
    Ok(())
}

fn binding_claim_matches(facts: &Facts<'_>) -> Result<(), Deny> {
    let Some(request) = &facts.request else {
        return Ok(());
    };
    if request.rules.binding.claim.is_none() {
        return Ok(());
    }
    match (&facts.token.binding_claim, request.caller.spiffe_id) {
        (Some(claimed), Some(id)) if **claimed == *id.as_str() => Ok(()),
        (Some(_), _) => Err(Deny::new(
            DenyReason::WorkloadMismatch,
            "token is bound to another workload",
        )),
        (None, _) if request.rules.binding.require_claim => Err(Deny::new(
            DenyReason::WorkloadMismatch,
            "token lacks the workload binding claim",
        )),
        (None, _) => Ok(()),
    }
}

fn workload_allowed(facts: &Facts<'_>) -> Result<(), Deny> {
    let Some(request) = &facts.request else {
        return Ok(());
    };
    if !request
        .rules
        .route
        .admits_workload(request.caller.spiffe_id)
    {
        return Err(workload_not_allowed());
    }
    Ok(())
}

fn scopes_granted(facts: &Facts<'_>) -> Result<(), Deny> {
    let Some(request) = &facts.request else {
        return Ok(());
    };
    let requirements = request.rules.requirements;
    if !requirements
        .scopes
        .iter()
        .all(|scope| facts.token.scopes.contains(scope))
    {
        return Err(Deny::insufficient_scope(&requirements.scope_challenge));
    }
    Ok(())
}

/// An `auth_time` later than `now + skew` is refused whether or not a route sets a
/// `max_auth_age`: the age of an authentication that has not happened yet reads as zero, so
/// such a token would pass every `max_auth_age` (and every SSF assurance-level cut-off) for as
/// long as it lives. The rule `authenticated_in_the_past` of [`RULES`].
fn check_auth_time_not_in_future(
    token: &VerifiedToken,
    now: UnixTime,
    skew: Duration,
) -> Result<(), Deny> {
    if token
        .auth_time
        .is_some_and(|auth_time| auth_time > now.plus(skew))
    {
        return Err(Deny::new(
            DenyReason::NotYetValid,
            "user authentication time is in the future (auth_time)",
        ));
    }
    Ok(())
}

/// A session is idle when no request was allowed for `idle_timeout`. One never allowed here is
/// judged from its `iat`, except during the first `idle_timeout` after start-up, when a restart
/// has forgotten every history and unseen sessions are adopted instead.
fn check_idle(
    issued_at: UnixTime,
    last_allowed: Option<UnixTime>,
    idle_timeout: Duration,
    clock: Clock,
) -> Result<(), Deny> {
    let idle = match last_allowed {
        Some(last) => clock.now.since(last) > idle_timeout,
        None => {
            let in_start_up_grace = clock.now.since(clock.started_at) <= idle_timeout;
            !in_start_up_grace && clock.now.since(issued_at) > idle_timeout
        }
    };
    if idle {
        Err(Deny::new(
            DenyReason::SessionIdle,
            "session has been idle longer than allowed",
        ))
    } else {
        Ok(())
    }
}

mod explain;

pub use explain::session_denials;

#[cfg(test)]
mod tests;
