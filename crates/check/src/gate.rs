//! The gate: the synchronous part of a check, from request facts to an [`Outcome`], around the
//! core's pure decision. [`crate::check::CheckUseCase`] runs it and does what must wait (a key
//! refresh, a pin claim); adapters call that, not the gate.
//!
//! It owns what the decision must not touch: the current policy (swappable), the key ring, the
//! session cache and the thumbprint cache. It performs the side effects the decision asks for:
//! verifying a token once per session, recording allowed requests and pinning sessions.
//!
//! Verification is the one unit of work a caller can make expensive at will (any new bytes are
//! a new token), so a token the cache does not hold is first looked up among recent rejections
//! ([`RecentRejections`]: the same bad bytes are never verified twice) and then charged to its
//! caller's and the process' [`VerificationBudget`]; a cached session touches neither.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use crate::budget::{BudgetLimits, CallerKey, VerificationBudget};
use crate::introspection::IntrospectionResult;
use crate::pinning::PinError;
use crate::policy::Policy;
use crate::rejections::{RecentRejections, RejectionMemory};
use crate::replay::{ReplayClaim, ReplayError};
use crate::revocations::RevocationsInForce;
use crate::session::{Session, SessionCache, SessionKey};
use crate::thumbprints::ThumbprintCache;
use sessiongate_core::decision::{self, Admission, Clock, Possession, Rules, SessionState};
use sessiongate_core::deny::{Deny, DenyReason};
use sessiongate_core::dpop::{DpopProof, NonceCheck, RequestTarget};
use sessiongate_core::request::RequestFacts;
use sessiongate_core::revocation::RevocationCheck;
use sessiongate_core::time::UnixTime;
use sessiongate_core::token::{Confirmation, Scheme};
use sessiongate_core::workload::{Caller, PinnedWorkload, SpiffeId};
use sessiongate_token::{KeyRing, access_token_hash};

/// Distinct peer certificates whose thumbprints are kept.
const THUMBPRINT_CACHE_CAPACITY: u64 = 10_000;

/// The result of one check, with what the response needs to tell the upstream.
#[derive(Debug)]
pub struct Outcome {
    /// The route that matched, if any.
    pub route: Option<Arc<str>>,
    /// Allowed (`Ok`) or denied.
    pub verdict: Result<(), Deny>,
    /// The session the request belongs to, when a token was verified.
    pub session: Option<(SessionKey, Arc<Session>)>,
    /// Set when the request is allowed so far but its session must first be pinned: the
    /// check use case records the pin through a [`crate::pinning::PinStore`] and finishes with
    /// [`Gate::settle_pin`]; an outcome it returns never carries one.
    pub pin: Option<PinClaim>,
    /// Set when the request is allowed so far but carried a DPoP proof that must first be
    /// recorded as used: the check use case records it through a
    /// [`crate::replay::ProofReplayStore`] and finishes with [`Gate::settle_replay`] (before
    /// any pin claim); an outcome it returns never carries one.
    pub replay: Option<ReplayClaim>,
    /// Set when the token is opaque, not cached, and an issuer introspects opaque tokens: the
    /// check use case asks its [`crate::introspection::Introspector`] and finishes with
    /// [`Gate::check_introspected`]. Until then the verdict is a 503 denial, so an adapter
    /// that cannot introspect fails closed; an outcome the use case returns never carries it.
    pub introspection: Option<SessionKey>,
    /// Whether a denial is only reported, not enforced: decided by the same policy the verdict
    /// came from, so a reload that lands while the pin is being recorded never judges a
    /// request by one generation and enforces another's `dry_run`.
    pub dry_run: bool,
}

impl Outcome {
    /// An answer with no session behind it: a public route's allow, or a denial before (or
    /// instead of) a session, with nothing left to record.
    fn sessionless(route: Option<Arc<str>>, verdict: Result<(), Deny>) -> Outcome {
        Outcome {
            route,
            verdict,
            session: None,
            pin: None,
            replay: None,
            introspection: None,
            dry_run: false,
        }
    }
}

/// A fresh session to be pinned to the workload that presented it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinClaim {
    /// The caller's strongest identity.
    pub identity: PinnedWorkload,
    /// How long the pin must last: the session's remaining lifetime (until `exp` plus skew,
    /// as long as it can be cached), at least a second.
    pub ttl: std::time::Duration,
}

/// What the cache knows about one session, for the admin API's `ExplainSession`.
#[derive(Debug)]
pub struct SessionReport {
    /// The session's key (its short form is the public handle).
    pub key: SessionKey,
    /// The cached session.
    pub session: Arc<Session>,
    /// Every session-wide reason it would be denied now (see [`decision::session_denials`]).
    pub denials: Vec<Deny>,
}

/// Why a token the cache does not hold has no session yet.
enum FirstSight {
    /// Refused (remembered rejection, budget, verification).
    Denied(Deny),
    /// An opaque token: its issuer's introspection endpoint must be asked first.
    Introspect,
}

/// Everything a check reads, shared by all requests.
pub struct Gate {
    policy: ArcSwap<Policy>,
    keys: Arc<KeyRing>,
    sessions: SessionCache,
    thumbprints: ThumbprintCache,
    started_at: UnixTime,
    verifications: AtomicU64,
    revocations: Option<Arc<RevocationsInForce>>,
    /// Caps how many new tokens each caller, and everyone, can have verified per second.
    budget: VerificationBudget,
    /// Tokens rejected lately, so their bytes are not verified again.
    rejections: RecentRejections,
    /// Caps how many DPoP proofs each caller, and everyone, can have verified per second. A
    /// proof is verified on every request (cached session or not), so it has a bucket of its
    /// own with the same limits as new tokens: a DPoP client's proofs never starve its new
    /// tokens, nor the other way round.
    proof_budget: VerificationBudget,
}

impl Gate {
    /// A gate judging by `policy` with `keys`, caching sessions in `sessions`.
    pub fn new(
        policy: Policy,
        keys: Arc<KeyRing>,
        sessions: SessionCache,
        started_at: UnixTime,
    ) -> Gate {
        Gate {
            policy: ArcSwap::from_pointee(policy),
            keys,
            sessions,
            thumbprints: ThumbprintCache::new(THUMBPRINT_CACHE_CAPACITY),
            started_at,
            verifications: AtomicU64::new(0),
            revocations: None,
            budget: VerificationBudget::new(BudgetLimits::default()),
            rejections: RecentRejections::new(RejectionMemory::default()),
            proof_budget: VerificationBudget::new(BudgetLimits::default()),
        }
    }

    /// Limits verifications of new tokens as `limits` say (`limits.verifications`).
    pub fn with_verification_budget(mut self, limits: BudgetLimits) -> Gate {
        self.budget = VerificationBudget::new(limits);
        self.proof_budget = VerificationBudget::new(limits);
        self
    }

    /// Remembers rejected tokens as `memory` says (`limits.rejected_tokens`).
    pub fn with_rejection_memory(mut self, memory: RejectionMemory) -> Gate {
        self.rejections = RecentRejections::new(memory);
        self
    }

    /// Judges sessions against `revocations` too, and keeps their retention horizon at least as
    /// wide as every policy this gate runs (see [`RevocationsInForce::widen_horizon`]).
    pub fn with_revocations(mut self, revocations: Arc<RevocationsInForce>) -> Gate {
        revocations.widen_horizon(self.policy.load().revocation_horizon());
        self.revocations = Some(revocations);
        self
    }

    /// The current policy (for introspection and for sizing the revocation horizon).
    pub fn policy(&self) -> arc_swap::Guard<Arc<Policy>> {
        self.policy.load()
    }

    /// Installs a new policy; the next request (and every cached session) is judged by it.
    /// When what verification checks changed (issuers, audiences, algorithms, claim mapping),
    /// cached sessions were verified under rules that no longer hold, so they are dropped and
    /// re-verified on their next request. A policy that accepts older tokens widens the
    /// revocations' retention before it takes effect, so no entry is forgotten while a token it
    /// matches is accepted.
    pub fn replace_policy(&self, policy: Policy) {
        let verification_changed = self.policy.load().verifier != policy.verifier;
        if let Some(revocations) = &self.revocations {
            revocations.widen_horizon(policy.revocation_horizon());
        }
        self.policy.store(Arc::new(policy));
        if verification_changed {
            self.sessions.clear();
            self.rejections.clear();
        }
    }

    /// How many signatures were verified since start (once per new session, ideally).
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// The session cache (for introspection).
    pub fn sessions(&self) -> &SessionCache {
        &self.sessions
    }

    /// What the cache knows about the session of `token` and why it would be denied at `now`;
    /// `None` when it is not cached. Never verifies or caches the token. A workload revocation
    /// is judged against the workload the session is pinned to, since no request names one.
    pub fn explain(&self, token: &str, now: UnixTime) -> Option<SessionReport> {
        let key = SessionKey::of_token(token);
        let session = self.sessions.peek(&key, now)?;
        let policy = self.policy.load();
        let pinned_spiffe_id = match session.pinned() {
            Some(PinnedWorkload::Spiffe(id)) => Some(&**id),
            _ => None,
        };
        let state = self.state_of(&session, pinned_spiffe_id);
        let clock = Clock {
            now,
            started_at: self.started_at,
        };
        let denials = decision::session_denials(
            &session.token,
            state,
            &policy.session,
            policy.longest_token_age(),
            clock,
        );
        Some(SessionReport {
            key,
            session,
            denials,
        })
    }

    /// Judges one request at `now`, under one policy generation from start to finish (the
    /// answer's dry-run mode included).
    pub fn check(&self, request: &RequestFacts<'_>, now: UnixTime) -> Outcome {
        let policy = self.policy.load();
        let mut outcome = self.judge(&policy, request, now, None);
        outcome.dry_run = policy.dry_run.covers(outcome.route.as_deref());
        outcome
    }

    /// Judges one request at `now` whose opaque token the issuer's introspection endpoint
    /// described (`answer`, asked for by an [`Outcome::introspection`] of [`Gate::check`]):
    /// an active answer becomes the cached session (unless a concurrent request cached one
    /// first), an inactive or unacceptable one is remembered as a rejection, and no answer is
    /// a 503 for this token only (cached sessions keep their rules). Under the policy current
    /// now, which reads the answer.
    pub fn check_introspected(
        &self,
        request: &RequestFacts<'_>,
        answer: IntrospectionResult,
        now: UnixTime,
    ) -> Outcome {
        let policy = self.policy.load();
        let mut outcome = self.judge(&policy, request, now, Some(answer));
        outcome.dry_run = policy.dry_run.covers(outcome.route.as_deref());
        outcome
    }

    /// The verdict of `policy` on one request (enforced; [`Gate::check`] settles dry-run),
    /// with the introspection `answer` for its token when one was awaited.
    fn judge(
        &self,
        policy: &Policy,
        request: &RequestFacts<'_>,
        now: UnixTime,
        answer: Option<IntrospectionResult>,
    ) -> Outcome {
        let (route, requirements, token, scheme) = match decision::admit(&policy.routes, request) {
            Ok(Admission::Public(route)) => {
                return Outcome::sessionless(Some(Arc::clone(&route.name)), Ok(()));
            }
            Ok(Admission::Bearer {
                route,
                requirements,
                token,
                scheme,
            }) => (route, requirements, token, scheme),
            Err(deny) => {
                let route = policy.routes.find(request).map(|r| Arc::clone(&r.name));
                return Outcome::sessionless(route, Err(deny));
            }
        };
        let route_name = Some(Arc::clone(&route.name));
        // A proof is verified before the token: a bad proof never costs a token verification.
        let proof = match scheme {
            Scheme::Bearer => None,
            Scheme::Dpop => match self.verify_proof(policy, request, now) {
                Ok(proof) => Some(proof),
                Err(deny) => {
                    return Outcome::sessionless(route_name, Err(deny));
                }
            },
        };
        let key = SessionKey::of_token(token);
        let session = match self.sessions.get(&key, now) {
            Some(session) => session,
            None => {
                let first = match answer {
                    Some(answer) => self
                        .introspected(policy, key, answer, now)
                        .map_err(FirstSight::Denied),
                    None => self.first_sight(policy, token, key, request, now),
                };
                match first {
                    Ok(session) => session,
                    Err(FirstSight::Denied(deny)) => {
                        return Outcome::sessionless(route_name, Err(deny));
                    }
                    Err(FirstSight::Introspect) => {
                        let unanswered = Deny::new(
                            DenyReason::InternalError,
                            "the opaque token could not be introspected; try again later",
                        );
                        return Outcome {
                            introspection: Some(key),
                            ..Outcome::sessionless(route_name, Err(unanswered))
                        };
                    }
                }
            }
        };
        let caller = self.caller(request, &session, policy.binding.pin_first_workload);
        let rules = Rules {
            route,
            requirements,
            session: &policy.session,
            binding: &policy.binding,
            dpop: &policy.dpop.rules,
        };
        let (nonce, fresh_nonce) = match (&proof, &policy.dpop.nonces) {
            (Some(proof), Some(nonces)) if requirements.dpop_nonce => {
                match nonces.check(proof.nonce.as_deref(), now) {
                    NonceCheck::Current => (NonceCheck::Current, None),
                    other => (other, Some(nonces.current(now))),
                }
            }
            (Some(_), None) if requirements.dpop_nonce => (NonceCheck::Missing, None),
            _ => (NonceCheck::NotRequired, None),
        };
        let possession = match &proof {
            None => Possession::bearer(),
            Some(proof) => Possession {
                scheme,
                proof: Some(proof),
                token_hash: Some(access_token_hash(token)),
                target: RequestTarget {
                    method: request.method,
                    scheme: request.scheme,
                    authority: request.authority,
                    path: request.path,
                },
                nonce,
                fresh_nonce: fresh_nonce.as_ref(),
            },
        };
        let clock = Clock {
            now,
            started_at: self.started_at,
        };
        let state = self.state_of(&session, caller.spiffe_id.map(|id| id.as_str()));
        let verdict = decision::decide(&session.token, state, &caller, possession, rules, clock);
        // decide() already compared the caller with an existing pin; a fresh session is
        // pinned by the caller of this function, then settled.
        let pin =
            if verdict.is_ok() && policy.binding.pin_first_workload && session.pinned().is_none() {
                caller.pin_identity().map(|identity| PinClaim {
                    identity,
                    ttl: session
                        .token
                        .expires_at
                        .plus(policy.session.clock_skew)
                        .since(now)
                        .max(std::time::Duration::from_secs(1)),
                })
            } else {
                None
            };
        let replay = match &proof {
            Some(proof) if verdict.is_ok() => Some(ReplayClaim {
                key: proof.replay_key,
                ttl: policy.dpop.replay_ttl(policy.session.clock_skew),
            }),
            _ => None,
        };
        if verdict.is_ok() && pin.is_none() && replay.is_none() {
            session.record_allowed(now);
        }
        Outcome {
            route: route_name,
            verdict,
            session: Some((key, session)),
            pin,
            replay,
            introspection: None,
            dry_run: false,
        }
    }

    /// The request's one DPoP proof, verified; its verification is paid from the caller's
    /// proof budget.
    fn verify_proof(
        &self,
        policy: &Policy,
        request: &RequestFacts<'_>,
        now: UnixTime,
    ) -> Result<DpopProof, Deny> {
        self.proof_budget
            .try_spend(&self.caller_key(request), now)
            .map_err(|throttled| {
                Deny::verification_throttled(throttled.retry_after, throttled.per_caller)
            })?;
        policy
            .dpop
            .verifier
            .verify_header(request.dpop)
            .map_err(|error| decision::proof_rejected(error.0, &policy.dpop.rules))
    }

    /// Finishes an outcome whose DPoP proof had to be recorded, given whether this was its
    /// first use (`first`, from the [`crate::replay::ProofReplayStore`]): a proof seen before is
    /// `dpop_proof_replayed`, and one whose first use cannot be established is 503
    /// `internal_error` (failing closed, as pins do: a replica cut off Redis must not accept
    /// proofs another replica saw). A denied outcome claims no pin.
    pub fn settle_replay(
        &self,
        mut outcome: Outcome,
        first: Result<bool, ReplayError>,
        now: UnixTime,
    ) -> Outcome {
        if outcome.replay.take().is_none() {
            return outcome;
        }
        let verdict = match first {
            Ok(true) => Ok(()),
            Ok(false) => Err(decision::proof_replayed(&self.policy.load().dpop.rules)),
            Err(error) => {
                tracing::error!(%error, "cannot record a DPoP proof; denying it (fail closed)");
                Err(Deny::new(
                    DenyReason::InternalError,
                    "the DPoP proof's first use cannot be recorded; try again later",
                ))
            }
        };
        match verdict {
            Ok(()) => {
                if outcome.pin.is_none()
                    && let Some((_, session)) = &outcome.session
                {
                    session.record_allowed(now);
                }
            }
            Err(deny) => {
                outcome.pin = None;
                outcome.verdict = Err(deny);
            }
        }
        outcome
    }

    /// Finishes an outcome whose session needed a pin, given who owns the session now
    /// (`owner`, from the [`crate::pinning::PinStore`]): allowed when the claim won (or the
    /// same workload won it elsewhere), `session_replayed` when another workload owns it, and
    /// 503 `internal_error` when the owner cannot be established. Failing closed there is
    /// deliberate: falling back to a local pin would let whoever can cut a replica off Redis
    /// replay a stolen token at that replica. Only new sessions are affected; sessions pinned
    /// before keep their cached owner.
    pub fn settle_pin(
        &self,
        mut outcome: Outcome,
        owner: Result<PinnedWorkload, PinError>,
        now: UnixTime,
    ) -> Outcome {
        let (Some(claim), Some((_, session))) = (outcome.pin.take(), &outcome.session) else {
            return outcome;
        };
        outcome.verdict = match owner {
            Ok(owner) => {
                // First wins locally too: concurrent claims on this replica settle alike.
                if *session.pin(owner) == claim.identity {
                    session.record_allowed(now);
                    Ok(())
                } else {
                    Err(decision::replayed())
                }
            }
            Err(error) => {
                tracing::error!(%error, "cannot pin a new session; denying it (fail closed)");
                Err(Deny::new(
                    DenyReason::InternalError,
                    "the session's workload binding cannot be recorded; try again later",
                ))
            }
        };
        outcome
    }

    /// What is known about `session` besides its token, for a request by (or, for explain, a
    /// session pinned to) the workload `spiffe_id`: its history, its revocation status and
    /// whether its issuer's keys are stale. One place for requests and `ExplainSession`, so
    /// the two cannot judge by different facts.
    fn state_of<'s>(&self, session: &'s Session, spiffe_id: Option<&str>) -> SessionState<'s> {
        let revocation = self
            .revocations
            .as_ref()
            .map_or(RevocationCheck::Clear, |revocations| {
                revocations.current().check(&session.token, spiffe_id)
            });
        SessionState {
            last_allowed: session.last_allowed(),
            pinned: session.pinned(),
            revocation,
            keys_stale: self.keys.is_suspended(&session.token.issuer),
        }
    }

    /// A token the cache does not hold: a recent rejection is answered again without
    /// verifying; otherwise the caller's budget pays for one verification, whose success
    /// becomes a session and whose failure is remembered. An opaque token, when an issuer
    /// introspects them, is paid for the same way and then left to the introspection (an
    /// `active: false` answer is remembered like any rejection, so a flood of random or
    /// revoked opaque tokens costs one endpoint call per token and memory period).
    fn first_sight(
        &self,
        policy: &Policy,
        token: &str,
        key: SessionKey,
        request: &RequestFacts<'_>,
        now: UnixTime,
    ) -> Result<Arc<Session>, FirstSight> {
        let key_generation = self.keys.generation();
        if let Some(error) = self.rejections.recall(&key, key_generation) {
            return Err(FirstSight::Denied(decision::token_rejected(&error)));
        }
        self.budget
            .try_spend(&self.caller_key(request), now)
            .map_err(|throttled| {
                FirstSight::Denied(Deny::verification_throttled(
                    throttled.retry_after,
                    throttled.per_caller,
                ))
            })?;
        if policy.verifier.introspection().is_some() && sessiongate_token::is_opaque(token) {
            return Err(FirstSight::Introspect);
        }
        self.verifications.fetch_add(1, Ordering::Relaxed);
        match policy.verifier.verify(token, &self.keys) {
            Ok(verified) => Ok(self
                .sessions
                .insert_or_get(key, Session::new(verified, now), now)),
            Err(error) => {
                let deny = decision::token_rejected(&error);
                self.rejections.remember(key, error, key_generation);
                Err(FirstSight::Denied(deny))
            }
        }
    }

    /// The session an introspection `answer` makes of the opaque token with `key`, read under
    /// `policy`; an answer that does not admit the token is remembered as a rejection, and no
    /// answer at all is a 503 that is not remembered (the next request asks again).
    fn introspected(
        &self,
        policy: &Policy,
        key: SessionKey,
        answer: IntrospectionResult,
        now: UnixTime,
    ) -> Result<Arc<Session>, Deny> {
        let body = answer.map_err(|unavailable| {
            tracing::warn!(error = %unavailable, "an opaque token could not be introspected; denying it (fail closed)");
            Deny::new(
                DenyReason::InternalError,
                "the issuer's introspection endpoint did not answer; try again later",
            )
        })?;
        let key_generation = self.keys.generation();
        match policy.verifier.read_introspection(&body, &self.keys, now) {
            Ok(answer) => {
                let mut session = Session::introspected(answer.token, now, answer.recheck_at);
                if let Some(earlier) = self.sessions.held(&key) {
                    session = session.renewing(&earlier);
                }
                Ok(self.sessions.insert_or_get(key, session, now))
            }
            Err(error) => {
                let deny = decision::token_rejected(&error);
                self.rejections.remember(key, error, key_generation);
                Err(deny)
            }
        }
    }

    /// Whom a verification is charged to: the caller's strongest identity (the thumbprint is
    /// computed only for a caller without a SPIFFE ID).
    fn caller_key(&self, request: &RequestFacts<'_>) -> CallerKey {
        self.identify(request, |has_spiffe_id| !has_spiffe_id)
            .identity()
            .into()
    }

    /// The caller's identity; the certificate is only thumbprinted when a rule needs it.
    fn caller<'r>(
        &self,
        request: &RequestFacts<'r>,
        session: &Session,
        pinning: bool,
    ) -> Caller<'r> {
        let bound = matches!(
            session.token.confirmation,
            Confirmation::Certificate(_) | Confirmation::Unsupported
        );
        self.identify(request, |has_spiffe_id| {
            bound || (pinning && !has_spiffe_id)
        })
    }

    /// The caller of `request`, with its certificate thumbprinted only when `needs_thumbprint`
    /// says so (given whether the caller has a SPIFFE ID).
    fn identify<'r>(
        &self,
        request: &RequestFacts<'r>,
        needs_thumbprint: impl FnOnce(bool) -> bool,
    ) -> Caller<'r> {
        let spiffe_id = SpiffeId::parse(request.peer.principal);
        let thumbprint = if needs_thumbprint(spiffe_id.is_some()) {
            request
                .peer
                .certificate_digest
                .or_else(|| self.thumbprints.thumbprint(request.peer.certificate))
        } else {
            None
        };
        Caller {
            spiffe_id,
            thumbprint,
            address: request.peer.address,
        }
    }
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("sessions", &self.sessions)
            .field("keys", &self.keys)
            .field("started_at", &self.started_at)
            .finish()
    }
}

/// The gate's fixtures are the check use case's tests' too.
#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use sessiongate_core::deny::DenyReason;
    use sessiongate_core::policy::{BindingRules, SessionRules};
    use sessiongate_core::request::{AuthorizationValues, PeerFacts};
    use sessiongate_core::route::{
        Route, RouteAccess, RouteConditions, RouteTable, SessionRequirements,
    };
    use sessiongate_token::testing::{ISSUER, mint_es256, ring};
    use sessiongate_token::{ClaimRules, IssuerRules, SigningAlgorithm, TokenVerifier, TypRule};

    pub(crate) const FRONTEND: &str = "spiffe://cluster.local/ns/shop/sa/frontend";
    const BATCH: &str = "spiffe://cluster.local/ns/shop/sa/batch";

    pub(crate) fn policy(scopes: &[&str], audience: &str) -> Policy {
        Policy {
            routes: RouteTable::new(vec![Route {
                name: "orders".into(),
                conditions: RouteConditions::default(),
                access: RouteAccess::Session(SessionRequirements {
                    scopes: scopes.iter().map(|s| Box::from(*s)).collect(),
                    scope_challenge: scopes.join(" ").into(),
                    max_token_age: Duration::from_secs(900),
                    max_auth_age: None,
                    proof_of_possession: None,
                    dpop_nonce: false,
                    dpop_origin: None,
                }),
                workloads: None,
            }]),
            verifier: TokenVerifier::new(
                [IssuerRules {
                    issuer: ISSUER.into(),
                    audiences: vec![audience.into()].into(),
                    algorithms: vec![SigningAlgorithm::Es256].into(),
                    typ: TypRule::AccessTokenOrJwt,
                }],
                ClaimRules {
                    scope_claim: "scope".into(),
                    binding_claim: None,
                },
            ),
            session: SessionRules {
                idle_timeout: None,
                clock_skew: Duration::from_secs(30),
            },
            binding: BindingRules {
                pin_first_workload: true,
                ..Default::default()
            },
            dry_run: Default::default(),
            dpop: Default::default(),
        }
    }

    pub(crate) fn gate() -> Gate {
        let sessions = SessionCache::new(100, Duration::from_secs(30));
        Gate::new(
            policy(&["orders:read"], "shop-api"),
            Arc::new(ring()),
            sessions,
            UnixTime::now(),
        )
    }

    pub(crate) fn token(now: UnixTime) -> String {
        let iat = now.as_secs();
        mint_es256(
            &json!({"iss": ISSUER, "aud": "shop-api", "sub": "alice", "iat": iat, "exp": iat + 600,
            "scope": "orders:read"}),
        )
    }

    pub(crate) fn request<'a>(authorization: &'a str, principal: &'a str) -> RequestFacts<'a> {
        RequestFacts {
            method: "GET",
            path: "/orders",
            authorization: AuthorizationValues::One(authorization),
            peer: PeerFacts {
                principal,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// One check with pins kept in the session cache (the [`crate::pinning::LocalPins`]
    /// behaviour), settled at once.
    fn check(gate: &Gate, request: &RequestFacts<'_>, now: UnixTime) -> Outcome {
        let outcome = gate.check(request, now);
        let Some(claim) = outcome.pin.clone() else {
            return outcome;
        };
        let owner = outcome
            .session
            .as_ref()
            .unwrap()
            .1
            .pin(claim.identity)
            .clone();
        gate.settle_pin(outcome, Ok(owner), now)
    }

    /// The README promises that a request in flight finishes under the policy it started with:
    /// a reload landing while a new session's pin is recorded (the one await of a check) must
    /// not turn an enforced denial into a dry-run one, nor the reverse. (Before, the adapter
    /// read `dry_run` from the policy again after the await.)
    #[test]
    fn dry_run_is_settled_with_the_verdict_by_the_policy_the_request_started_with() {
        let gate = gate();
        let now = UnixTime::now();
        let header = format!("Bearer {}", token(now));
        let outcome = gate.check(&request(&header, FRONTEND), now);
        assert!(outcome.pin.is_some(), "a fresh session waits for its pin");
        assert!(!outcome.dry_run, "the starting policy enforces");

        let mut in_dry_run = policy(&["orders:read"], "shop-api");
        in_dry_run.dry_run = sessiongate_core::dry_run::DryRun {
            everywhere: true,
            routes: Box::default(),
        };
        gate.replace_policy(in_dry_run);
        let settled = gate.settle_pin(
            outcome,
            Err(crate::pinning::PinError::Unavailable("Redis down".into())),
            now,
        );
        assert_eq!(reason(&settled), Some(DenyReason::InternalError));
        assert!(!settled.dry_run, "still enforced: judged before the reload");

        let later = gate.check(&request(&header, BATCH), now);
        assert!(later.dry_run, "the next request runs under the new policy");
    }

    #[test]
    fn a_fresh_session_is_allowed_only_once_its_pin_is_settled() {
        let gate = gate();
        let now = UnixTime::now();
        let header = format!("Bearer {}", token(now));
        let outcome = gate.check(&request(&header, FRONTEND), now);
        let claim = outcome.pin.clone().expect("a fresh session needs a pin");
        assert_eq!(claim.identity, PinnedWorkload::Spiffe(FRONTEND.into()));
        assert!(
            claim.ttl > Duration::from_secs(600),
            "until exp plus skew: {claim:?}"
        );
        let session = Arc::clone(&outcome.session.as_ref().unwrap().1);
        assert_eq!(
            session.last_allowed(),
            None,
            "not recorded before the pin is settled"
        );

        let elsewhere = PinnedWorkload::Spiffe(BATCH.into());
        let settled = gate.settle_pin(outcome, Ok(elsewhere.clone()), now);
        assert_eq!(reason(&settled), Some(DenyReason::SessionReplayed));
        assert_eq!(
            session.pinned(),
            Some(&elsewhere),
            "the fleet's owner is cached"
        );
        assert!(
            gate.check(&request(&header, BATCH), now).pin.is_none(),
            "no second round trip for a session whose owner is known"
        );
    }

    #[test]
    fn a_new_session_whose_pin_cannot_be_recorded_is_denied_503() {
        let gate = gate();
        let now = UnixTime::now();
        let header = format!("Bearer {}", token(now));
        let outcome = gate.check(&request(&header, FRONTEND), now);
        let settled = gate.settle_pin(
            outcome,
            Err(PinError::Unavailable("redis down".into())),
            now,
        );
        assert_eq!(reason(&settled), Some(DenyReason::InternalError));
        assert!(
            gate.check(&request(&header, FRONTEND), now).pin.is_some(),
            "still unpinned: the next request tries again"
        );
    }

    fn reason(outcome: &Outcome) -> Option<DenyReason> {
        outcome.verdict.as_ref().err().map(|deny| deny.reason)
    }

    #[test]
    fn a_signature_is_verified_once_per_session() {
        let gate = gate();
        let now = UnixTime::now();
        let header = format!("Bearer {}", token(now));
        for _ in 0..3 {
            assert_eq!(
                reason(&check(&gate, &request(&header, FRONTEND), now)),
                None
            );
        }
        assert_eq!(gate.verifications(), 1);
    }

    #[test]
    fn a_re_encoded_ecdsa_token_is_the_same_session_with_the_same_pin() {
        let gate = gate();
        let now = UnixTime::now();
        let stolen = token(now);
        // The thief's re-encoding: `s` replaced by `n − s`, which verifies and needs no key.
        let twin = sessiongate_token::testing::ecdsa_twin(&stolen, &sessiongate_token::P256_ORDER);
        assert_ne!(stolen, twin);
        let owner = check(&gate, &request(&format!("Bearer {stolen}"), FRONTEND), now);
        assert_eq!(reason(&owner), None);
        let thief = check(&gate, &request(&format!("Bearer {twin}"), BATCH), now);
        assert_eq!(reason(&thief), Some(DenyReason::SessionReplayed));
        assert_eq!(
            thief.session.as_ref().unwrap().0,
            owner.session.as_ref().unwrap().0,
            "one session, one x-sessiongate-session handle"
        );
        let again = check(&gate, &request(&format!("Bearer {twin}"), FRONTEND), now);
        assert_eq!(
            reason(&again),
            None,
            "the owner may present either encoding"
        );
        assert_eq!(gate.verifications(), 1, "the twin rode on one verification");
        assert_eq!(gate.sessions().len(), 1);
    }

    #[test]
    fn only_verified_tokens_enter_the_cache() {
        let gate = gate();
        let now = UnixTime::now();
        let forged = format!("{}x", token(now));
        let outcome = check(&gate, &request(&format!("Bearer {forged}"), FRONTEND), now);
        assert_eq!(reason(&outcome), Some(DenyReason::BadSignature));
        assert!(
            gate.sessions()
                .get(&SessionKey::of_token(&forged), now)
                .is_none()
        );
    }

    #[test]
    fn the_same_bad_bytes_are_verified_once() {
        let gate = gate();
        let now = UnixTime::now();
        let forged = format!("Bearer {}x", token(now));
        for _ in 0..5 {
            let outcome = check(&gate, &request(&forged, FRONTEND), now);
            assert_eq!(reason(&outcome), Some(DenyReason::BadSignature));
        }
        assert_eq!(gate.verifications(), 1, "the rejection is remembered");
    }

    #[test]
    fn a_remembered_rejection_is_judged_again_once_keys_change() {
        let gate = gate();
        let now = UnixTime::now();
        let forged = format!("Bearer {}x", token(now));
        check(&gate, &request(&forged, FRONTEND), now);
        gate.keys.replace(
            ISSUER,
            sessiongate_token::KeySet::from_jwks_json(&sessiongate_token::testing::jwks())
                .unwrap()
                .keys,
        );
        let outcome = check(&gate, &request(&forged, FRONTEND), now);
        assert_eq!(reason(&outcome), Some(DenyReason::BadSignature));
        assert_eq!(gate.verifications(), 2, "a rotation may make it good");
    }

    fn throttled_gate(per_caller: u32, total: u32) -> Gate {
        let rate = |n| crate::budget::Rate {
            per_second: 1,
            burst: n,
        };
        gate().with_verification_budget(BudgetLimits {
            per_caller: rate(per_caller),
            total: rate(total),
            callers: 100,
        })
    }

    /// A new token with a bad signature: different bytes each time, so nothing is remembered.
    fn fresh_forgery(n: u32, now: UnixTime) -> String {
        let iat = now.as_secs();
        let jwt = mint_es256(
            &json!({"iss": ISSUER, "aud": "shop-api", "sub": format!("u{n}"),
            "iat": iat, "exp": iat + 600, "scope": "orders:read"}),
        );
        format!("Bearer {jwt}x")
    }

    #[test]
    fn a_caller_over_its_verification_budget_is_answered_503_without_verifying() {
        let gate = throttled_gate(3, 100);
        let now = UnixTime::now();
        for n in 0..3 {
            let outcome = check(&gate, &request(&fresh_forgery(n, now), BATCH), now);
            assert_eq!(reason(&outcome), Some(DenyReason::BadSignature));
        }
        let outcome = check(&gate, &request(&fresh_forgery(3, now), BATCH), now);
        assert_eq!(reason(&outcome), Some(DenyReason::VerificationThrottled));
        let deny = outcome.verdict.unwrap_err();
        assert_eq!(deny.reason.http_status(), 503);
        assert_eq!(deny.retry_after(), Some(1));
        assert_eq!(gate.verifications(), 3);
        // Another caller has a budget of its own, and a valid token of it is verified.
        let header = format!("Bearer {}", token(now));
        assert_eq!(
            reason(&check(&gate, &request(&header, FRONTEND), now)),
            None
        );
    }

    #[test]
    fn cached_sessions_never_touch_the_verification_budget() {
        let gate = throttled_gate(1, 1);
        let now = UnixTime::now();
        let header = format!("Bearer {}", token(now));
        assert_eq!(
            reason(&check(&gate, &request(&header, FRONTEND), now)),
            None
        );
        let outcome = check(&gate, &request(&fresh_forgery(0, now), FRONTEND), now);
        assert_eq!(reason(&outcome), Some(DenyReason::VerificationThrottled));
        for _ in 0..10 {
            assert_eq!(
                reason(&check(&gate, &request(&header, FRONTEND), now)),
                None
            );
        }
    }

    #[test]
    fn the_total_budget_caps_every_caller_together() {
        let gate = throttled_gate(10, 2);
        let now = UnixTime::now();
        check(&gate, &request(&fresh_forgery(0, now), FRONTEND), now);
        check(&gate, &request(&fresh_forgery(1, now), BATCH), now);
        let header = format!("Bearer {}", token(now));
        let outcome = check(&gate, &request(&header, FRONTEND), now);
        assert_eq!(reason(&outcome), Some(DenyReason::VerificationThrottled));
        assert_eq!(
            outcome.verdict.unwrap_err().description,
            "too many new tokens; retry later"
        );
    }

    #[test]
    fn a_narrowed_policy_applies_to_cached_sessions_at_once() {
        let gate = gate();
        let now = UnixTime::now();
        let header = format!("Bearer {}", token(now));
        assert_eq!(
            reason(&check(&gate, &request(&header, FRONTEND), now)),
            None
        );
        gate.replace_policy(policy(&["orders:read", "orders:write"], "shop-api"));
        assert_eq!(
            reason(&check(&gate, &request(&header, FRONTEND), now)),
            Some(DenyReason::InsufficientScope)
        );
        assert_eq!(
            gate.verifications(),
            1,
            "same verification rules keep the cached session"
        );
    }

    #[test]
    fn changed_verification_rules_re_verify_cached_sessions() {
        let gate = gate();
        let now = UnixTime::now();
        let header = format!("Bearer {}", token(now));
        assert_eq!(
            reason(&check(&gate, &request(&header, FRONTEND), now)),
            None
        );
        gate.replace_policy(policy(&["orders:read"], "billing-api"));
        assert_eq!(
            reason(&check(&gate, &request(&header, FRONTEND), now)),
            Some(DenyReason::WrongAudience)
        );
    }

    #[test]
    fn a_session_is_pinned_on_its_first_allowed_request_only() {
        let gate = gate();
        let now = UnixTime::now();
        let header = format!("Bearer {}", token(now));
        gate.replace_policy(policy(&["admin"], "shop-api"));
        assert_eq!(
            reason(&check(&gate, &request(&header, BATCH), now)),
            Some(DenyReason::InsufficientScope)
        );
        gate.replace_policy(policy(&["orders:read"], "shop-api"));
        assert_eq!(
            reason(&check(&gate, &request(&header, FRONTEND), now)),
            None,
            "a denial did not pin batch"
        );
        assert_eq!(
            reason(&check(&gate, &request(&header, BATCH), now)),
            Some(DenyReason::SessionReplayed)
        );
        assert_eq!(
            reason(&check(&gate, &request(&header, FRONTEND), now)),
            None
        );
    }

    #[test]
    fn explain_reports_a_cached_session_and_why_it_would_be_denied() {
        let revocations = Arc::new(RevocationsInForce::new(
            sessiongate_core::revocation::RevocationSet::default(),
            Duration::from_secs(930),
        ));
        let gate = gate().with_revocations(Arc::clone(&revocations));
        let now = UnixTime::now();
        let jwt = token(now);
        assert!(gate.explain(&jwt, now).is_none(), "never seen: not found");
        assert_eq!(gate.verifications(), 0, "explaining never verifies a token");
        let header = format!("Bearer {jwt}");
        assert_eq!(
            reason(&check(&gate, &request(&header, FRONTEND), now)),
            None
        );
        let report = gate.explain(&jwt, now).unwrap();
        assert!(report.denials.is_empty(), "{:?}", report.denials);
        assert_eq!(
            report.session.last_allowed(),
            Some(now.max(UnixTime::from_millis(1)))
        );

        revocations.apply(sessiongate_core::revocation::Revocation {
            selector: sessiongate_core::revocation::Selector::Subject {
                issuer: ISSUER.into(),
                sub: "alice".into(),
            },
            issued_before: now,
            effect: sessiongate_core::revocation::Effect::Revoke,
            recorded_at: now,
            origin: "test".into(),
            reason: "".into(),
            issuers: None,
            retain_until: None,
        });
        let report = gate.explain(&jwt, now).unwrap();
        let reasons: Vec<DenyReason> = report.denials.iter().map(|d| d.reason).collect();
        assert_eq!(reasons, [DenyReason::Revoked]);
        assert_eq!(
            reason(&check(&gate, &request(&header, FRONTEND), now)),
            Some(DenyReason::Revoked)
        );
    }

    #[test]
    fn concurrent_first_requests_share_one_session_and_one_pin() {
        let gate = Arc::new(gate());
        let now = UnixTime::now();
        let header = Arc::new(format!("Bearer {}", token(now)));
        let callers = [
            FRONTEND, BATCH, FRONTEND, BATCH, FRONTEND, BATCH, FRONTEND, BATCH,
        ];
        let outcomes: Vec<(&str, Option<DenyReason>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = callers
                .iter()
                .map(|caller| {
                    let (gate, header) = (Arc::clone(&gate), Arc::clone(&header));
                    scope.spawn(move || {
                        (
                            *caller,
                            reason(&check(&gate, &request(&header, caller), now)),
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: std::collections::HashSet<&str> = outcomes
            .iter()
            .filter(|(_, r)| r.is_none())
            .map(|(caller, _)| *caller)
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "exactly one workload owns the session: {outcomes:?}"
        );
        for (caller, outcome) in &outcomes {
            if !winners.contains(caller) {
                assert_eq!(*outcome, Some(DenyReason::SessionReplayed));
            }
        }
    }
}
