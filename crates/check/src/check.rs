//! **The check use case**: one request, from its facts to the final answer, in one place.
//!
//! Every adapter (the ext_authz gRPC server, the in-process Envoy module) calls
//! [`CheckUseCase::run`] and only translates what comes back. The steps, in order:
//! 1. load the policy once and judge the request with the [`Gate`] (session cache or one
//!    verification, then the core's decision), synchronously;
//! 2. when a new token names a key its issuer's set lacks, ask the [`KeyRefresh`] for a prompt
//!    refresh and, if it installed keys, judge the request once more;
//! 3. when a new opaque token must be introspected, ask the [`Introspector`] and judge the
//!    request with its answer ([`Gate::check_introspected`]);
//! 4. when an allowed request carried a DPoP proof, record its first use through the
//!    [`ProofReplayStore`] and settle the verdict ([`Gate::settle_replay`]); then, when a fresh
//!    session must be pinned, claim the pin through the [`PinStore`] and settle the verdict
//!    ([`Gate::settle_pin`]);
//! 5. the outcome carries whether a denial is only reported (dry-run), settled in step 1 by the
//!    policy the request was judged under.
//!
//! Only steps 2, 3 and 4 wait, and what they wait for is a trait the adapter supplies, so this
//! crate needs no async runtime. An adapter with an executor awaits [`CheckUseCase::run`]; one
//! that must not block its thread (an Envoy worker, in the in-process module) drives the same
//! steps itself: [`CheckUseCase::begin`] judges synchronously and either answers or hands back
//! a [`Waiting`] whose future owns everything it needs (`'static`), to run wherever the adapter
//! likes, and [`CheckUseCase::resume`] continues with its result.

use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;

use sessiongate_core::deny::DenyReason;
use sessiongate_core::request::RequestFacts;
use sessiongate_core::time::UnixTime;
use sessiongate_core::token::access_token;

use crate::gate::{Gate, Outcome};
use crate::introspection::{IntrospectionResult, Introspector};
use sessiongate_core::workload::PinnedWorkload;

use crate::pinning::{LocalPins, PinError, PinStore};
use crate::replay::{LocalProofReplay, ProofReplayStore, ReplayError};

/// A boxed future, so key refreshers can be trait objects.
pub type RefreshFuture<'a> = Pin<Box<dyn Future<Output = bool> + Send + 'a>>;

/// Fetches an issuer's keys again when a new token names a key its set lacks: the issuer may
/// have rotated since the last refresh.
pub trait KeyRefresh: Send + Sync + 'static {
    /// Refreshes the keys of `token`'s issuer if its rate limit allows, waiting briefly;
    /// `true` when new keys were installed, so judging the request again may now succeed.
    fn refresh_for_unknown_key<'a>(&'a self, token: &'a str) -> RefreshFuture<'a>;
}

/// The check could not be judged at all: the gate panicked. Adapters answer it as a 503
/// denial, never as a failed call (which `failure_mode_allow` may turn into an allow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckPanicked;

/// One request's check end to end, shared by every adapter.
#[derive(Clone)]
pub struct CheckUseCase {
    gate: Arc<Gate>,
    /// Asked for a prompt key refresh on an unknown `kid`; none: no retry.
    keys: Option<Arc<dyn KeyRefresh>>,
    /// Records the first workload of each new session (`binding.pin_first_workload`).
    pins: Arc<dyn PinStore>,
    /// Records each DPoP proof's first use.
    replay: Arc<dyn ProofReplayStore>,
    /// Asks the issuer about an opaque token not cached; none: such tokens are denied 503.
    introspector: Option<Arc<dyn Introspector>>,
}

impl CheckUseCase {
    /// Checks with `gate`, pinning sessions in its own cache and never refreshing keys.
    pub fn new(gate: Arc<Gate>) -> CheckUseCase {
        CheckUseCase {
            gate,
            keys: None,
            pins: Arc::new(LocalPins),
            replay: Arc::new(LocalProofReplay::default()),
            introspector: None,
        }
    }

    /// Records DPoP proofs in `replay` (e.g. Redis, fleet-wide, or a local store of another
    /// size) instead of the default local store.
    pub fn with_proof_replay(mut self, replay: Arc<dyn ProofReplayStore>) -> CheckUseCase {
        self.replay = replay;
        self
    }

    /// On an unknown `kid`, asks `keys` for a refresh and judges the request once more.
    pub fn with_key_refresh(mut self, keys: Arc<dyn KeyRefresh>) -> CheckUseCase {
        self.keys = Some(keys);
        self
    }

    /// Pins new sessions in `pins` (e.g. Redis, fleet-wide) instead of this process's cache.
    pub fn with_pin_store(mut self, pins: Arc<dyn PinStore>) -> CheckUseCase {
        self.pins = pins;
        self
    }

    /// Asks `introspector` about opaque tokens the cache does not hold (RFC 7662).
    pub fn with_introspector(mut self, introspector: Arc<dyn Introspector>) -> CheckUseCase {
        self.introspector = Some(introspector);
        self
    }

    /// The gate this use case judges with (for the admin API's explain and for metrics).
    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// The final outcome of one request: allowed or denied, under one policy generation, with
    /// the pin claimed and dry-run settled.
    pub async fn run(&self, request: &RequestFacts<'_>) -> Result<Outcome, CheckPanicked> {
        let mut progress = self.begin(request)?;
        loop {
            match progress {
                Progress::Answered(outcome) => return Ok(outcome),
                Progress::Waiting(waiting) => {
                    let (step, future) = waiting.into_parts();
                    let waited = future.await;
                    progress = self.resume(step, waited, request)?;
                }
            }
        }
    }

    /// Judges `request` synchronously: the final outcome, or what must be waited for first.
    pub fn begin(&self, request: &RequestFacts<'_>) -> Result<Progress, CheckPanicked> {
        let mut outcome = self.judge(request)?;
        if let Some(key) = outcome.introspection.take() {
            // The outcome's 503 stands when nothing can introspect (fail closed).
            if let Some(introspector) = &self.introspector
                && let Ok(Some((_, token))) = access_token(request.authorization)
            {
                let future = introspector.introspect(key, token);
                return Ok(Progress::Waiting(Waiting {
                    step: Step(StepKind::Introspection { outcome }),
                    future: Box::pin(async move { Waited::Introspected(future.await) }),
                }));
            }
            return Ok(Progress::Answered(outcome));
        }
        if let Some(keys) = &self.keys
            && worth_a_key_refresh(&outcome)
            && let Ok(Some((_, token))) = access_token(request.authorization)
        {
            let (keys, token) = (Arc::clone(keys), token.to_owned());
            return Ok(Progress::Waiting(Waiting {
                step: Step(StepKind::KeyRefresh { outcome }),
                future: Box::pin(async move {
                    Waited::KeysRefreshed(keys.refresh_for_unknown_key(&token).await)
                }),
            }));
        }
        Ok(self.after_judging(outcome))
    }

    /// Continues a check after what it waited for (`waited`, from the future of the
    /// [`Waiting`] that `step` came with). `request` is the same request again: after a key
    /// refresh it is judged once more, under the policy current then.
    pub fn resume(
        &self,
        step: Step,
        waited: Waited,
        request: &RequestFacts<'_>,
    ) -> Result<Progress, CheckPanicked> {
        match (step, waited) {
            (Step(StepKind::KeyRefresh { .. }), Waited::KeysRefreshed(true)) => {
                Ok(self.after_judging(self.judge(request)?))
            }
            (Step(StepKind::KeyRefresh { outcome }), _) => Ok(self.after_judging(outcome)),
            (Step(StepKind::Introspection { .. }), Waited::Introspected(answer)) => {
                let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                    self.gate
                        .check_introspected(request, answer, UnixTime::now())
                }))
                .map_err(|_| CheckPanicked)?;
                Ok(self.after_judging(outcome))
            }
            // Not a pairing `begin` produces: the outcome's 503 stands (fail closed).
            (Step(StepKind::Introspection { outcome }), _) => Ok(Progress::Answered(outcome)),
            (Step(StepKind::ReplayClaim { outcome }), Waited::ProofFirstUse(first)) => {
                Ok(self.after_judging(self.gate.settle_replay(outcome, first, UnixTime::now())))
            }
            (Step(StepKind::ReplayClaim { outcome }), _) => {
                // Not a pairing `begin` or `resume` produces; fail closed rather than allow.
                Ok(Progress::Answered(self.gate.settle_replay(
                    outcome,
                    Err(ReplayError::Unavailable(
                        "the proof's replay claim was not awaited".into(),
                    )),
                    UnixTime::now(),
                )))
            }
            (Step(StepKind::PinClaim { outcome }), Waited::PinOwner(owner)) => Ok(
                Progress::Answered(self.gate.settle_pin(outcome, owner, UnixTime::now())),
            ),
            (Step(StepKind::PinClaim { outcome }), _) => {
                // Not a pairing `begin` or `resume` produces; fail closed rather than allow.
                Ok(Progress::Answered(self.gate.settle_pin(
                    outcome,
                    Err(PinError::Unavailable(
                        "the pin claim was not awaited".into(),
                    )),
                    UnixTime::now(),
                )))
            }
        }
    }

    /// An outcome that may still need its DPoP proof recorded or its session pinned: the claim
    /// to wait for (the proof's first), or the answer.
    fn after_judging(&self, outcome: Outcome) -> Progress {
        if let Some(claim) = outcome.replay {
            let replay = Arc::clone(&self.replay);
            return Progress::Waiting(Waiting {
                step: Step(StepKind::ReplayClaim { outcome }),
                future: Box::pin(async move {
                    Waited::ProofFirstUse(replay.claim(claim.key, claim.ttl).await)
                }),
            });
        }
        let (Some(claim), Some((key, session))) = (&outcome.pin, &outcome.session) else {
            return Progress::Answered(outcome);
        };
        let pins = Arc::clone(&self.pins);
        let (key, session) = (*key, Arc::clone(session));
        let (identity, ttl) = (claim.identity.clone(), claim.ttl);
        Progress::Waiting(Waiting {
            step: Step(StepKind::PinClaim { outcome }),
            future: Box::pin(async move {
                Waited::PinOwner(pins.claim(&key, &session, identity, ttl).await)
            }),
        })
    }

    /// Runs the gate at the current time; a panic is [`CheckPanicked`].
    fn judge(&self, request: &RequestFacts<'_>) -> Result<Outcome, CheckPanicked> {
        panic::catch_unwind(AssertUnwindSafe(|| {
            self.gate.check(request, UnixTime::now())
        }))
        .map_err(|_| CheckPanicked)
    }
}

/// Where a check stands after a synchronous step.
#[derive(Debug)]
pub enum Progress {
    /// The final outcome.
    Answered(Outcome),
    /// Something must be awaited first (a key refresh, a pin claim).
    Waiting(Waiting),
}

/// A check paused on something that waits: what it waits for, as a future that owns all it
/// needs, and the step to [`CheckUseCase::resume`] with its result.
pub struct Waiting {
    step: Step,
    future: WaitFuture,
}

impl Waiting {
    /// The step to resume with, and the future to await (on any thread) for its input.
    pub fn into_parts(self) -> (Step, WaitFuture) {
        (self.step, self.future)
    }
}

impl std::fmt::Debug for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiting").field("step", &self.step).finish()
    }
}

/// What a [`Waiting`] check awaits; `Send + 'static`, so an adapter may run it on another
/// thread than the one the request lives on.
pub type WaitFuture = Pin<Box<dyn Future<Output = Waited> + Send + 'static>>;

/// The step a paused check resumes at (opaque: only [`CheckUseCase::resume`] reads it).
#[derive(Debug)]
pub struct Step(StepKind);

#[derive(Debug)]
enum StepKind {
    /// An `unknown_key` denial, until the key refresh says whether to judge again.
    KeyRefresh { outcome: Outcome },
    /// An allow pending the session's pin.
    PinClaim { outcome: Outcome },
    /// An allow pending the record of its DPoP proof's first use.
    ReplayClaim { outcome: Outcome },
    /// A new opaque token, until its issuer's introspection endpoint answers (the outcome is
    /// the 503 to give if the answer never comes).
    Introspection { outcome: Outcome },
}

/// What a [`WaitFuture`] produced.
#[derive(Debug)]
pub enum Waited {
    /// The key refresh finished; `true` when it installed keys.
    KeysRefreshed(bool),
    /// Who owns the session now (the pin claim's answer).
    PinOwner(Result<PinnedWorkload, PinError>),
    /// Whether the DPoP proof was used for the first time (the replay claim's answer).
    ProofFirstUse(Result<bool, ReplayError>),
    /// The issuer's introspection endpoint's answer about a new opaque token.
    Introspected(IntrospectionResult),
}

/// The new token's `kid` is not in its issuer's set (not a cached session whose key was
/// retired: that one is gone for good).
fn worth_a_key_refresh(outcome: &Outcome) -> bool {
    outcome.session.is_none()
        && matches!(&outcome.verdict, Err(deny) if deny.reason == DenyReason::UnknownKey)
}

impl std::fmt::Debug for CheckUseCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckUseCase")
            .field("gate", &self.gate)
            .field("key_refresh", &self.keys.is_some())
            .field("pins", &self.pins)
            .field("replay", &self.replay)
            .field("introspector", &self.introspector.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Waker};

    use sessiongate_token::testing::{ISSUER, jwks};
    use sessiongate_token::{KeyRing, KeySet};

    use super::*;
    use crate::gate::tests::{FRONTEND, policy, request, token};
    use crate::session::SessionCache;

    /// Runs a future that never waits (every trait here answers at once): no runtime needed.
    pub(super) fn now_or_never<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        match future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(output) => output,
            Poll::Pending => panic!("the check waited on something that never answers"),
        }
    }

    /// A refresher that installs `keys` (the issuer's rotated set) in `ring` when asked.
    struct Rotation {
        ring: Arc<KeyRing>,
        keys: Option<Vec<u8>>,
        asked: AtomicUsize,
    }

    impl KeyRefresh for Rotation {
        fn refresh_for_unknown_key<'a>(&'a self, _token: &'a str) -> RefreshFuture<'a> {
            self.asked.fetch_add(1, Ordering::Relaxed);
            let installed = self.keys.as_ref().is_some_and(|jwks| {
                let keys = KeySet::from_jwks_json(jwks).unwrap().keys;
                self.ring.replace(ISSUER, keys);
                true
            });
            Box::pin(async move { installed })
        }
    }

    /// A gate whose key ring holds no key of the fixture issuer yet (it rotated since), and a
    /// use case that asks a [`Rotation`] installing `keys` on an unknown key.
    fn rotated(keys: Option<Vec<u8>>) -> (CheckUseCase, Arc<Rotation>) {
        let ring = Arc::new(KeyRing::new());
        ring.replace(ISSUER, KeySet::default());
        let gate = Gate::new(
            policy(&["orders:read"], "shop-api"),
            Arc::clone(&ring),
            SessionCache::new(100, std::time::Duration::from_secs(30)),
            UnixTime::now(),
        );
        let rotation = Arc::new(Rotation {
            ring,
            keys,
            asked: AtomicUsize::new(0),
        });
        let check = CheckUseCase::new(Arc::new(gate)).with_key_refresh(rotation.clone());
        (check, rotation)
    }

    #[test]
    fn an_unknown_key_is_refreshed_once_and_the_request_judged_again() {
        let (check, rotation) = rotated(Some(jwks()));
        let header = format!("Bearer {}", token(UnixTime::now()));
        let outcome = now_or_never(check.run(&request(&header, FRONTEND))).unwrap();
        assert_eq!(outcome.verdict, Ok(()));
        assert!(outcome.pin.is_none(), "the pin was claimed and settled");
        assert_eq!(rotation.asked.load(Ordering::Relaxed), 1);

        let again = now_or_never(check.run(&request(&header, FRONTEND))).unwrap();
        assert_eq!(again.verdict, Ok(()));
        assert_eq!(
            rotation.asked.load(Ordering::Relaxed),
            1,
            "a cached session never asks again"
        );
    }

    #[test]
    fn a_refresh_that_installs_nothing_leaves_the_unknown_key_denial() {
        let (check, rotation) = rotated(None);
        let header = format!("Bearer {}", token(UnixTime::now()));
        let outcome = now_or_never(check.run(&request(&header, FRONTEND))).unwrap();
        assert_eq!(outcome.verdict.unwrap_err().reason, DenyReason::UnknownKey);
        assert_eq!(rotation.asked.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn without_a_refresher_an_unknown_key_is_denied_at_once() {
        let (rotating, rotation) = rotated(Some(jwks()));
        let check = CheckUseCase::new(Arc::clone(rotating.gate()));
        let header = format!("Bearer {}", token(UnixTime::now()));
        let outcome = now_or_never(check.run(&request(&header, FRONTEND))).unwrap();
        assert_eq!(outcome.verdict.unwrap_err().reason, DenyReason::UnknownKey);
        assert_eq!(rotation.asked.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_second_workload_presenting_a_pinned_session_is_a_replay() {
        let (check, _) = rotated(Some(jwks()));
        let header = format!("Bearer {}", token(UnixTime::now()));
        let first = now_or_never(check.run(&request(&header, FRONTEND))).unwrap();
        assert_eq!(first.verdict, Ok(()));
        let batch = "spiffe://cluster.local/ns/shop/sa/batch";
        let replay = now_or_never(check.run(&request(&header, batch))).unwrap();
        assert_eq!(
            replay.verdict.unwrap_err().reason,
            DenyReason::SessionReplayed
        );
    }

    /// A DPoP-bound token for `client`, and a request presenting it with `proof`.
    fn dpop_token(client: &sessiongate_token::testing::DpopClient) -> String {
        let iat = UnixTime::now().as_secs();
        sessiongate_token::testing::mint_es256(&serde_json::json!({
            "iss": ISSUER, "aud": "shop-api", "sub": "alice", "iat": iat, "exp": iat + 600,
            "scope": "orders:read", "cnf": {"jkt": client.jkt()}}))
    }

    fn dpop_request<'a>(authorization: &'a str, proof: &'a str) -> RequestFacts<'a> {
        let mut facts = request(authorization, FRONTEND);
        facts.scheme = "https";
        facts.authority = "api.example.com";
        facts.dpop = sessiongate_core::request::AuthorizationValues::One(proof);
        facts
    }

    #[test]
    fn a_dpop_proof_is_accepted_once() {
        let (check, _) = rotated(Some(jwks()));
        let client = sessiongate_token::testing::DpopClient::es256();
        let token = dpop_token(&client);
        let header = format!("DPoP {token}");
        let proof = client.proof("GET", "https://api.example.com/orders", &token);
        let first = now_or_never(check.run(&dpop_request(&header, &proof))).unwrap();
        assert_eq!(first.verdict, Ok(()));
        assert!(first.replay.is_none(), "the proof was recorded and settled");
        let again = now_or_never(check.run(&dpop_request(&header, &proof))).unwrap();
        assert_eq!(
            again.verdict.unwrap_err().reason,
            DenyReason::DpopProofReplayed
        );
        let fresh = client.proof("GET", "https://api.example.com/orders", &token);
        let next = now_or_never(check.run(&dpop_request(&header, &fresh))).unwrap();
        assert_eq!(next.verdict, Ok(()), "a new proof of the same session");
    }

    /// A replay store that cannot be reached.
    #[derive(Debug)]
    struct Unreachable;

    impl ProofReplayStore for Unreachable {
        fn claim(
            &self,
            _key: [u8; 32],
            _ttl: std::time::Duration,
        ) -> crate::replay::ReplayFuture<'_> {
            Box::pin(async { Err(ReplayError::Unavailable("down".into())) })
        }
    }

    #[test]
    fn a_proof_whose_first_use_cannot_be_recorded_fails_closed() {
        let (check, _) = rotated(Some(jwks()));
        let check = check.with_proof_replay(Arc::new(Unreachable));
        let client = sessiongate_token::testing::DpopClient::es256();
        let token = dpop_token(&client);
        let header = format!("DPoP {token}");
        let proof = client.proof("GET", "https://api.example.com/orders", &token);
        let outcome = now_or_never(check.run(&dpop_request(&header, &proof))).unwrap();
        let deny = outcome.verdict.unwrap_err();
        assert_eq!(deny.reason, DenyReason::InternalError);
        assert_eq!(deny.reason.http_status(), 503);
    }
}

#[cfg(test)]
mod introspection_tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use sessiongate_token::IntrospectionRules;
    use sessiongate_token::testing::{ISSUER, ring};

    use super::*;
    use crate::gate::tests::{FRONTEND, policy, request};
    use crate::introspection::{IntrospectionFuture, IntrospectionUnavailable};
    use crate::session::{SessionCache, SessionKey};

    const OPAQUE: &str = "Bearer 2YotnFZFEjr1zCsicMWpAA";

    /// An endpoint that answers every token with `answer` and counts the calls.
    struct Endpoint {
        answer: Mutex<IntrospectionResult>,
        calls: AtomicUsize,
    }

    impl Introspector for Endpoint {
        fn introspect(&self, _key: SessionKey, _token: &str) -> IntrospectionFuture {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let answer = self.answer.lock().unwrap().clone();
            Box::pin(async move { answer })
        }
    }

    fn active_answer() -> IntrospectionResult {
        let iat = UnixTime::now().as_secs();
        let body = serde_json::json!({"active": true, "iss": ISSUER, "aud": "shop-api",
            "sub": "alice", "iat": iat, "exp": iat + 600, "scope": "orders:read"});
        Ok(body.to_string().into_bytes().into())
    }

    fn introspecting(answer: IntrospectionResult) -> (CheckUseCase, Arc<Endpoint>) {
        let mut policy = policy(&["orders:read"], "shop-api");
        policy.verifier = policy.verifier.with_introspection(IntrospectionRules {
            issuer: ISSUER.into(),
            audiences: vec!["shop-api".into()].into(),
            cache_ttl: Duration::from_secs(60),
            signed: None,
        });
        let gate = Gate::new(
            policy,
            Arc::new(ring()),
            SessionCache::new(100, Duration::from_secs(30)),
            UnixTime::now(),
        );
        let endpoint = Arc::new(Endpoint {
            answer: Mutex::new(answer),
            calls: AtomicUsize::new(0),
        });
        let check = CheckUseCase::new(Arc::new(gate)).with_introspector(endpoint.clone());
        (check, endpoint)
    }

    #[test]
    fn an_opaque_token_is_introspected_once_then_served_from_the_session_cache() {
        let (check, endpoint) = introspecting(active_answer());
        let first = now_or_never(check.run(&request(OPAQUE, FRONTEND))).unwrap();
        assert_eq!(first.verdict, Ok(()));
        let again = now_or_never(check.run(&request(OPAQUE, FRONTEND))).unwrap();
        assert_eq!(again.verdict, Ok(()));
        assert_eq!(endpoint.calls.load(Ordering::Relaxed), 1);
        assert!(again.session.unwrap().1.recheck_at.is_some());
    }

    #[test]
    fn an_inactive_opaque_token_is_revoked_and_remembered() {
        let inactive = Ok(br#"{"active":false}"#.to_vec().into());
        let (check, endpoint) = introspecting(inactive);
        for _ in 0..2 {
            let outcome = now_or_never(check.run(&request(OPAQUE, FRONTEND))).unwrap();
            assert_eq!(outcome.verdict.unwrap_err().reason, DenyReason::Revoked);
        }
        assert_eq!(endpoint.calls.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn an_unreachable_endpoint_fails_closed_and_is_asked_again_next_time() {
        let down = Err(IntrospectionUnavailable("connection refused".into()));
        let (check, endpoint) = introspecting(down);
        let outcome = now_or_never(check.run(&request(OPAQUE, FRONTEND))).unwrap();
        let deny = outcome.verdict.unwrap_err();
        assert_eq!(deny.reason, DenyReason::InternalError);
        assert_eq!(deny.reason.http_status(), 503);
        *endpoint.answer.lock().unwrap() = active_answer();
        let back = now_or_never(check.run(&request(OPAQUE, FRONTEND))).unwrap();
        assert_eq!(back.verdict, Ok(()));
        assert_eq!(endpoint.calls.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn without_an_introspector_an_opaque_token_is_denied_503() {
        let (introspecting, _) = introspecting(active_answer());
        let check = CheckUseCase::new(Arc::clone(introspecting.gate()));
        let outcome = now_or_never(check.run(&request(OPAQUE, FRONTEND))).unwrap();
        assert_eq!(
            outcome.verdict.unwrap_err().reason,
            DenyReason::InternalError
        );
    }

    #[test]
    fn without_introspection_an_opaque_token_is_malformed_as_before() {
        let (check, _) = introspecting(active_answer());
        let plain = CheckUseCase::new(Arc::new(Gate::new(
            policy(&["orders:read"], "shop-api"),
            Arc::new(ring()),
            SessionCache::new(100, Duration::from_secs(30)),
            UnixTime::now(),
        )));
        drop(check);
        let outcome = now_or_never(plain.run(&request(OPAQUE, FRONTEND))).unwrap();
        assert_eq!(
            outcome.verdict.unwrap_err().reason,
            DenyReason::MalformedToken
        );
    }

    fn now_or_never<F: Future>(future: F) -> F::Output {
        super::tests::now_or_never(future)
    }
}

#[cfg(test)]
mod renewal_tests {
    use std::time::Duration;

    use sessiongate_core::workload::PinnedWorkload;
    use sessiongate_token::IntrospectionRules;
    use sessiongate_token::testing::{ISSUER, ring};

    use super::*;
    use crate::gate::tests::{FRONTEND, policy, request};
    use crate::session::SessionCache;

    const OPAQUE: &str = "Bearer 2YotnFZFEjr1zCsicMWpAA";
    const BATCH: &str = "spiffe://cluster.local/ns/shop/sa/batch";

    #[test]
    fn a_renewed_introspection_keeps_the_sessions_pin() {
        let mut policy = policy(&["orders:read"], "shop-api");
        policy.verifier = policy.verifier.with_introspection(IntrospectionRules {
            issuer: ISSUER.into(),
            audiences: vec!["shop-api".into()].into(),
            cache_ttl: Duration::from_secs(60),
            signed: None,
        });
        let start = UnixTime::now();
        let gate = Gate::new(
            policy,
            Arc::new(ring()),
            SessionCache::new(100, Duration::from_secs(30)),
            start,
        );
        let iat = start.as_secs();
        let answer: IntrospectionResult = Ok(serde_json::json!({"active": true, "iss": ISSUER,
            "aud": "shop-api", "sub": "alice", "iat": iat, "exp": iat + 600,
            "scope": "orders:read"})
        .to_string()
        .into_bytes()
        .into());

        let asked = gate.check(&request(OPAQUE, FRONTEND), start);
        assert!(asked.introspection.is_some());
        let judged = gate.check_introspected(&request(OPAQUE, FRONTEND), answer.clone(), start);
        let owner = PinnedWorkload::Spiffe(FRONTEND.into());
        let first = gate.settle_pin(judged, Ok(owner), start);
        assert_eq!(first.verdict, Ok(()));

        let later = start.plus(Duration::from_secs(61));
        let stale = gate.check(&request(OPAQUE, BATCH), later);
        assert!(stale.introspection.is_some(), "asked again after cache_ttl");
        let renewed = gate.check_introspected(&request(OPAQUE, BATCH), answer, later);
        assert_eq!(
            renewed.verdict.unwrap_err().reason,
            DenyReason::SessionReplayed,
            "the renewed session is still pinned to the first workload"
        );
    }
}
