//! The gate: runs one check from request facts to an [`Outcome`], around the pure decision.
//!
//! It owns what the decision must not touch: the current policy (swappable), the key ring, the
//! session cache and the thumbprint cache. It performs the side effects the decision asks for:
//! verifying a token once per session, recording allowed requests and pinning sessions.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::decision::{self, Admission, Clock, Rules, SessionHistory};
use crate::deny::Deny;
use crate::policy::Policy;
use crate::request::RequestFacts;
use crate::session::{Session, SessionCache, SessionKey};
use crate::time::UnixTime;
use crate::token::{Confirmation, KeyRing};
use crate::workload::{Caller, SpiffeId, ThumbprintCache};

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
}

/// Everything a check reads, shared by all requests.
pub struct Gate {
    policy: ArcSwap<Policy>,
    keys: Arc<KeyRing>,
    sessions: SessionCache,
    thumbprints: ThumbprintCache,
    started_at: UnixTime,
}

impl Gate {
    /// A gate judging by `policy` with `keys`, caching sessions in `sessions`.
    pub fn new(policy: Policy, keys: Arc<KeyRing>, sessions: SessionCache, started_at: UnixTime) -> Gate {
        Gate {
            policy: ArcSwap::from_pointee(policy),
            keys,
            sessions,
            thumbprints: ThumbprintCache::new(THUMBPRINT_CACHE_CAPACITY),
            started_at,
        }
    }

    /// Installs a new policy; the next request (and every cached session) is judged by it.
    /// Sessions extracted under different claim rules are dropped and re-verified.
    pub fn replace_policy(&self, policy: Policy) {
        let previous = self.policy.swap(Arc::new(policy));
        if previous.verifier.claim_rules() != self.policy.load().verifier.claim_rules() {
            self.sessions.clear();
        }
    }

    /// The session cache (for introspection).
    pub fn sessions(&self) -> &SessionCache {
        &self.sessions
    }

    /// Judges one request at `now`.
    pub fn check(&self, request: &RequestFacts<'_>, now: UnixTime) -> Outcome {
        let policy = self.policy.load();
        let (route, requirements, token) = match decision::admit(&policy.routes, request) {
            Ok(Admission::Public(route)) => {
                return Outcome { route: Some(Arc::clone(&route.name)), verdict: Ok(()), session: None };
            }
            Ok(Admission::Bearer { route, requirements, token }) => (route, requirements, token),
            Err(deny) => {
                let route = policy.routes.find(request).map(|r| Arc::clone(&r.name));
                return Outcome { route, verdict: Err(deny), session: None };
            }
        };
        let route_name = Some(Arc::clone(&route.name));
        let key = SessionKey::of_token(token);
        let session = match self.sessions.get(&key) {
            Some(session) => session,
            None => match policy.verifier.verify(token, &self.keys) {
                Ok(verified) => self.sessions.insert_or_get(key, Session::new(verified, now)),
                Err(error) => {
                    return Outcome { route: route_name, verdict: Err(decision::token_rejected(&error)), session: None };
                }
            },
        };
        let caller = self.caller(request, &session, policy.binding.pin_first_workload);
        let rules = Rules { route, requirements, session: &policy.session, binding: &policy.binding };
        let clock = Clock { now, started_at: self.started_at };
        let history = SessionHistory { last_allowed: session.last_allowed(), pinned: session.pinned() };
        let mut verdict = decision::decide(&session.token, history, &caller, rules, clock);
        if verdict.is_ok() && policy.binding.pin_first_workload {
            verdict = self.pin(&session, &caller);
        }
        if verdict.is_ok() {
            session.record_allowed(now);
        }
        Outcome { route: route_name, verdict, session: Some((key, session)) }
    }

    /// The caller's identity; the certificate is only thumbprinted when a rule needs it.
    fn caller<'r>(&self, request: &RequestFacts<'r>, session: &Session, pinning: bool) -> Caller<'r> {
        let spiffe_id = SpiffeId::parse(request.peer.principal);
        let needs_thumbprint = !matches!(session.token.confirmation, Confirmation::None)
            || (pinning && spiffe_id.is_none());
        let thumbprint = if needs_thumbprint {
            self.thumbprints.thumbprint(request.peer.certificate)
        } else {
            None
        };
        Caller { spiffe_id, thumbprint, address: request.peer.address }
    }

    /// Pins a fresh session to `caller`; if another workload won the race, this is a replay.
    fn pin(&self, session: &Session, caller: &Caller<'_>) -> Result<(), Deny> {
        if session.pinned().is_some() {
            return Ok(()); // decide() already compared the caller with the pin.
        }
        match caller.pin_identity() {
            Some(identity) => {
                let owner = session.pin(identity);
                if caller.is(owner) { Ok(()) } else { Err(decision::replayed()) }
            }
            None => Ok(()),
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
