//! The oracle: a pure model of what sessiongate must answer, built only from what the soak
//! itself did (the tokens it minted, the policy it wrote, the keys it published, the
//! revocations it had acknowledged), never from what sessiongate answered.
//!
//! Every trust change is an [`Event`] with the instant the soak *started* it and, per replica,
//! the instant it was *applied* there (a revocation: when `Revoke` or the SSF push returned
//! success at its origin, plus [`PROPAGATION_BOUND`] at the other replica; a reload: when the
//! replica's `sessiongate_config_generation` moved; a key change: when the replica logged
//! `keys changed`). A request judged at replica `r` over `[sent, answered]`:
//! - sees for certain every event applied at `r` before it was sent (the *base* state);
//! - may or may not see an event started before it was answered but not applied at `r` before
//!   it was sent (*pending*): every combination of pending events is an acceptable state, and
//!   the request counts as "in transition" when they disagree;
//! - is judged at both ends of its interval (token age moves while it is in flight), with
//!   [`CLOCK_TOLERANCE_MS`] either side for second-granular claims.
//!
//! A refused revocation (Redis down, a broken connection) was never acknowledged, yet may have
//! been written: it stays pending forever, so its sessions may be allowed or `revoked`.
//! During a [`Fault`] the documented fail-closed answers are acceptable too (never an allow).

use std::time::Instant;

use crate::support::Workload;

/// Replicas in the fleet: one revokes, the other must enforce.
pub const REPLICAS: usize = 2;
/// How reports name them.
pub const REPLICA_NAMES: [&str; REPLICAS] = ["a", "b"];
/// How long after its acknowledgement at one replica a revocation may take to reach the other:
/// the README's promise for the fleet (p99 within 100 ms; measured p99 ~4 ms).
pub const PROPAGATION_BOUND: std::time::Duration = std::time::Duration::from_millis(100);
/// Claims are whole seconds while sessiongate's clock is not: both ends of a request are also
/// judged this much further out.
pub const CLOCK_TOLERANCE_MS: i64 = 1_000;
/// `session.clock_skew` of the soak config.
pub const CLOCK_SKEW_MS: i64 = 30_000;
/// The policies the soak reloads between: the base policy, one that narrows every route's
/// `max_token_age` to 60 s (so revocations may be forgotten sooner, and must be remembered
/// again when it widens), and one whose `orders-read` route also needs `orders:audit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Base,
    NarrowAge,
    NarrowScope,
}

impl Variant {
    /// `session.max_token_age`, seconds.
    pub fn max_token_age_secs(self) -> i64 {
        match self {
            Variant::NarrowAge => 60,
            Variant::Base | Variant::NarrowScope => 15 * 60,
        }
    }

    /// The `orders-write` route's `max_token_age`, seconds.
    pub fn write_max_token_age_secs(self) -> i64 {
        match self {
            Variant::NarrowAge => 60,
            Variant::Base | Variant::NarrowScope => 2 * 60,
        }
    }

    /// The longest token age any route accepts: a revocation may be forgotten this long (plus
    /// skew) after its cut-off.
    pub fn longest_token_age_secs(self) -> i64 {
        self.max_token_age_secs()
            .max(self.write_max_token_age_secs())
    }

    /// The scopes `orders-read` requires.
    pub fn read_scopes(self) -> &'static [&'static str] {
        match self {
            Variant::NarrowScope => &["orders:read", "orders:audit"],
            Variant::Base | Variant::NarrowAge => &["orders:read"],
        }
    }
}

/// What the soak minted into a token (or forged).
#[derive(Clone, Debug)]
pub struct TokenFacts {
    pub sub: String,
    /// Unix seconds.
    pub iat: i64,
    pub exp: i64,
    pub kid: &'static str,
    pub scopes: Vec<&'static str>,
    /// `false`: signed by an impostor key under a published `kid`.
    pub trusted_signer: bool,
}

/// The sessiongate route a request targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `GET /orders/1`: `orders-read`.
    OrdersRead,
    /// `POST /orders/1`: `orders-write` (`orders:write`, frontend only, 2 min max age).
    OrdersWrite,
    /// `GET /nowhere`: no route matches.
    Unrouted,
}

/// One request as the soak built it.
#[derive(Clone, Debug)]
pub struct RequestFacts {
    pub replica: usize,
    pub caller: Workload,
    pub target: Target,
    pub token: Option<TokenFacts>,
    /// The workload the session was pinned to before the request was sent (the soak saw a
    /// request of its owner allowed), if any.
    pub pinned_to: Option<Workload>,
}

/// An answer: allowed through to the upstream, or denied with a status and a `reason` (none
/// when Envoy answered by itself, e.g. 503 with sessiongate down).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Allow,
    Deny(u16, Option<String>),
}

impl Outcome {
    fn deny(status: u16, reason: &str) -> Outcome {
        Outcome::Deny(status, Some(reason.to_owned()))
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Allow => write!(f, "allow"),
            Outcome::Deny(status, Some(reason)) => write!(f, "{status} {reason}"),
            Outcome::Deny(status, None) => write!(f, "{status} (no reason)"),
        }
    }
}

/// A revocation as the soak asked for it: `sub` of the issuer, tokens issued at or before the
/// cut-off.
#[derive(Clone, Debug)]
pub struct Revocation {
    pub sub: String,
    pub issued_before_ms: i64,
}

/// What the policy, the keys and the revocations say at one replica at one moment.
#[derive(Clone, Debug)]
pub struct State {
    pub variant: Variant,
    pub trusted_kids: Vec<&'static str>,
    pub revocations: Vec<Revocation>,
}

impl State {
    fn apply(&mut self, change: &Change) {
        match change {
            Change::Revoke(revocation) => self.revocations.push(revocation.clone()),
            Change::Reload(variant) => self.variant = *variant,
            Change::Keys(kids) => self.trusted_kids = kids.clone(),
        }
    }

    /// This state without the revocations the current policy lets sessiongate forget at
    /// `now_ms`: no token they match passes the age rule of any route any more.
    fn forgetting(&self, now_ms: i64) -> State {
        let horizon_ms = self.variant.longest_token_age_secs() * 1000 + CLOCK_SKEW_MS;
        State {
            revocations: self
                .revocations
                .iter()
                .filter(|r| r.issued_before_ms + horizon_ms >= now_ms)
                .cloned()
                .collect(),
            ..self.clone()
        }
    }

    pub fn is_revoked(&self, token: &TokenFacts) -> bool {
        self.revocations
            .iter()
            .any(|r| r.sub == token.sub && token.iat * 1000 <= r.issued_before_ms)
    }

    /// The answer sessiongate must give at `now_ms` (Unix ms), in its documented rule order:
    /// route, credential, verification, retired key, revocation, expiry, age, pin, workloads,
    /// scope.
    pub fn decide(&self, request: &RequestFacts, now_ms: i64) -> Outcome {
        let (max_age_secs, scopes, frontend_only): (i64, &[&str], bool) = match request.target {
            Target::Unrouted => return Outcome::deny(403, "no_route"),
            Target::OrdersRead => (
                self.variant.max_token_age_secs(),
                self.variant.read_scopes(),
                false,
            ),
            Target::OrdersWrite => (
                self.variant.write_max_token_age_secs(),
                &["orders:write"],
                true,
            ),
        };
        let Some(token) = &request.token else {
            return Outcome::deny(401, "missing_token");
        };
        if !self.trusted_kids.contains(&token.kid) {
            return Outcome::deny(401, "unknown_key");
        }
        if !token.trusted_signer {
            return Outcome::deny(401, "bad_signature");
        }
        if self.is_revoked(token) {
            return Outcome::deny(401, "revoked");
        }
        if now_ms > token.exp * 1000 + CLOCK_SKEW_MS {
            return Outcome::deny(401, "expired");
        }
        if now_ms - token.iat * 1000 > max_age_secs * 1000 {
            return Outcome::deny(401, "token_too_old");
        }
        if request
            .pinned_to
            .is_some_and(|owner| owner != request.caller)
        {
            return Outcome::deny(401, "session_replayed");
        }
        if frontend_only && request.caller != Workload::Frontend {
            return Outcome::deny(403, "workload_not_allowed");
        }
        if !scopes.iter().all(|s| token.scopes.contains(s)) {
            return Outcome::deny(403, "insufficient_scope");
        }
        Outcome::Allow
    }
}

/// A trust change the soak made.
#[derive(Clone, Debug)]
pub enum Change {
    Revoke(Revocation),
    Reload(Variant),
    Keys(Vec<&'static str>),
}

#[derive(Clone, Debug)]
pub struct Event {
    pub change: Change,
    pub started: Instant,
    /// Per replica: when it was applied there; `None` while not (yet, or ever: refused).
    pub applied: [Option<Instant>; REPLICAS],
}

/// A declared fault: while it lasts, fail-closed answers are acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Redis stopped and not yet caught up with by every replica: new sessions 503
    /// `internal_error`.
    RedisDown,
    /// This replica killed with SIGKILL and not yet listening again: Envoy's own 503.
    ReplicaDown(usize),
}

#[derive(Clone, Copy, Debug)]
pub struct Fault {
    pub kind: FaultKind,
    pub started: Instant,
    pub ended: Option<Instant>,
}

impl Fault {
    fn overlaps(&self, sent: Instant, answered: Instant) -> bool {
        self.started < answered && self.ended.is_none_or(|end| end > sent)
    }

    /// The extra answer this fault makes acceptable at `replica`.
    fn allows(&self, replica: usize) -> Option<Outcome> {
        match self.kind {
            FaultKind::RedisDown => Some(Outcome::deny(503, "internal_error")),
            FaultKind::ReplicaDown(down) if down == replica => Some(Outcome::Deny(503, None)),
            FaultKind::ReplicaDown(_) => None,
        }
    }
}

/// Everything the soak changed, in order.
pub struct Timeline {
    pub initial: State,
    pub events: Vec<Event>,
    pub faults: Vec<Fault>,
}

/// What the model accepts for one request.
#[derive(Clone, Debug)]
pub struct Judgement {
    /// Acceptable answers from the policy, keys and revocations (sorted, distinct).
    pub expected: Vec<Outcome>,
    /// The pending changes make a difference: more than one answer is expected.
    pub in_transition: bool,
    /// Denials the documentation also allows, never an allow: for a replay, the first rule
    /// after the pin that fails (a replica that has not cached the session asks Redis for the
    /// owner only before an allow); for a revoked session past the revocation's horizon under
    /// the current policy, the age rule's (the revocation may have been pruned).
    pub alternatives: Vec<Outcome>,
    /// Answers acceptable only because a fault overlapped the request.
    pub fault_allowed: Vec<Outcome>,
    /// A revocation of this session was applied at this replica before the request was sent.
    pub revoked_before_sent: bool,
}

impl Judgement {
    pub fn accepts(&self, got: &Outcome) -> bool {
        self.expected.contains(got)
            || self.alternatives.contains(got)
            || self.fault_allowed.contains(got)
    }

    pub fn in_fault(&self) -> bool {
        !self.fault_allowed.is_empty()
    }

    /// Every acceptable answer, for a report.
    pub fn describe(&self) -> String {
        let list = |outcomes: &[Outcome]| {
            outcomes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" | ")
        };
        let mut text = list(&self.expected);
        if !self.alternatives.is_empty() {
            text.push_str(&format!(" (or, documented: {})", list(&self.alternatives)));
        }
        if self.in_fault() {
            text.push_str(&format!(" (or in fault: {})", list(&self.fault_allowed)));
        }
        text
    }
}

/// Most pending events combined exhaustively; beyond, only none, each alone, and all.
const MAX_EXHAUSTIVE_PENDING: usize = 6;

impl Timeline {
    pub fn new(initial: State) -> Timeline {
        Timeline {
            initial,
            events: Vec::new(),
            faults: Vec::new(),
        }
    }

    /// Judges `request`, sent at `sent` (`sent_ms` Unix) and answered at `answered`.
    pub fn judge(
        &self,
        request: &RequestFacts,
        (sent, sent_ms): (Instant, i64),
        (answered, answered_ms): (Instant, i64),
    ) -> Judgement {
        let r = request.replica;
        let relevant = |event: &Event| match &event.change {
            Change::Revoke(revocation) => request
                .token
                .as_ref()
                .is_some_and(|token| token.sub == revocation.sub),
            Change::Reload(_) | Change::Keys(_) => true,
        };
        let is_base = |event: &Event| event.applied[r].is_some_and(|at| at <= sent);
        let pending: Vec<usize> = self
            .events
            .iter()
            .enumerate()
            .filter(|(_, e)| relevant(e) && !is_base(e) && e.started < answered)
            .map(|(i, _)| i)
            .collect();
        let masks: Vec<u64> = if pending.len() <= MAX_EXHAUSTIVE_PENDING {
            (0..1u64 << pending.len()).collect()
        } else {
            let all = (1u64 << pending.len().min(63)) - 1;
            std::iter::once(0)
                .chain((0..pending.len()).map(|i| 1 << i))
                .chain(std::iter::once(all))
                .collect()
        };
        let mut expected = Vec::new();
        let mut alternatives = Vec::new();
        let mut base_state = None;
        for mask in masks {
            let mut state = self.initial.clone();
            for (i, event) in self.events.iter().enumerate() {
                let chosen = match pending.iter().position(|&p| p == i) {
                    Some(bit) => mask & (1 << bit) != 0,
                    None => is_base(event),
                };
                if chosen {
                    state.apply(&event.change);
                }
            }
            for now_ms in [
                sent_ms - CLOCK_TOLERANCE_MS,
                answered_ms + CLOCK_TOLERANCE_MS,
            ] {
                let outcome = state.decide(request, now_ms);
                // A revocation past its horizon may have been pruned: the age rule answers.
                let pruned = state.forgetting(now_ms).decide(request, now_ms);
                if pruned != outcome {
                    alternatives.push(pruned);
                }
                if outcome == Outcome::deny(401, "session_replayed") {
                    // A replica that has not seen the session learns its owner from Redis only
                    // when the request would otherwise be allowed: a later rule's denial is
                    // what such a replica answers.
                    let unpinned = RequestFacts {
                        pinned_to: None,
                        ..request.clone()
                    };
                    let later = state.decide(&unpinned, now_ms);
                    if later != Outcome::Allow {
                        alternatives.push(later);
                    }
                }
                expected.push(outcome);
            }
            if mask == 0 {
                base_state = Some(state);
            }
        }
        expected.sort();
        expected.dedup();
        let in_transition = expected.len() > 1;
        alternatives.retain(|o| !expected.contains(o));
        alternatives.sort();
        alternatives.dedup();
        let mut fault_allowed: Vec<Outcome> = self
            .faults
            .iter()
            .filter(|f| f.overlaps(sent, answered))
            .filter_map(|f| f.allows(r))
            .filter(|o| !expected.contains(o) && !alternatives.contains(o))
            .collect();
        fault_allowed.sort();
        fault_allowed.dedup();
        let revoked_before_sent = match (&request.token, base_state) {
            (Some(token), Some(state)) => state.is_revoked(token),
            _ => false,
        };
        Judgement {
            expected,
            in_transition,
            alternatives,
            fault_allowed,
            revoked_before_sent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn token(sub: &str, iat: i64) -> TokenFacts {
        TokenFacts {
            sub: sub.into(),
            iat,
            exp: iat + 150,
            kid: "k1",
            scopes: vec!["orders:read"],
            trusted_signer: true,
        }
    }

    fn read(token: TokenFacts) -> RequestFacts {
        RequestFacts {
            replica: 1,
            caller: Workload::Frontend,
            target: Target::OrdersRead,
            token: Some(token),
            pinned_to: None,
        }
    }

    fn timeline() -> Timeline {
        Timeline::new(State {
            variant: Variant::Base,
            trusted_kids: vec!["k1"],
            revocations: vec![],
        })
    }

    #[test]
    fn a_revocation_applied_before_the_request_is_exact_and_one_in_flight_is_either() {
        let t0 = Instant::now();
        let now_ms = 1_000_000_000;
        let mut timeline = timeline();
        timeline.events.push(Event {
            change: Change::Revoke(Revocation {
                sub: "u".into(),
                issued_before_ms: now_ms,
            }),
            started: t0,
            applied: [Some(t0), Some(t0 + Duration::from_millis(100))],
        });
        let request = read(token("u", now_ms / 1000 - 10));
        let after = timeline.judge(
            &request,
            (t0 + Duration::from_millis(200), now_ms),
            (t0 + Duration::from_millis(210), now_ms),
        );
        assert_eq!(after.expected, vec![Outcome::deny(401, "revoked")]);
        assert!(after.revoked_before_sent);
        let during = timeline.judge(
            &request,
            (t0 + Duration::from_millis(50), now_ms),
            (t0 + Duration::from_millis(60), now_ms),
        );
        assert_eq!(
            during.expected,
            vec![Outcome::Allow, Outcome::deny(401, "revoked")]
        );
        let other = read(token("v", now_ms / 1000 - 10));
        let unrelated = timeline.judge(
            &other,
            (t0 + Duration::from_millis(50), now_ms),
            (t0 + Duration::from_millis(60), now_ms),
        );
        assert_eq!(unrelated.expected, vec![Outcome::Allow]);
    }

    #[test]
    fn a_fault_never_makes_an_allow_acceptable() {
        let t0 = Instant::now();
        let mut timeline = timeline();
        timeline.faults.push(Fault {
            kind: FaultKind::RedisDown,
            started: t0,
            ended: None,
        });
        let mut request = read(token("u", 1_000_000));
        request.target = Target::OrdersWrite;
        let answered = t0 + Duration::from_millis(5);
        let judgement = timeline.judge(&request, (t0, 1_000_001_000), (answered, 1_000_001_005));
        assert!(!judgement.accepts(&Outcome::Allow));
        assert!(judgement.accepts(&Outcome::deny(503, "internal_error")));
    }

    #[test]
    fn a_revocation_past_its_horizon_may_be_pruned_under_a_narrow_policy_but_never_under_a_wide_one()
     {
        let t0 = Instant::now();
        let cutoff_ms = 1_000_000_000;
        let revoked = read(token("u", cutoff_ms / 1000 - 5));
        let at = |variant| {
            let mut timeline = timeline();
            timeline.initial.variant = variant;
            timeline.initial.revocations.push(Revocation {
                sub: "u".into(),
                issued_before_ms: cutoff_ms,
            });
            // 100 s after the cut-off: past the narrow horizon (60 s + 30 s skew).
            let now = cutoff_ms + 100_000;
            timeline.judge(&revoked, (t0, now), (t0 + Duration::from_millis(5), now))
        };
        let narrow = at(Variant::NarrowAge);
        assert_eq!(narrow.expected, vec![Outcome::deny(401, "revoked")]);
        assert_eq!(
            narrow.alternatives,
            vec![Outcome::deny(401, "token_too_old")]
        );
        let wide = at(Variant::Base);
        assert_eq!(wide.expected, vec![Outcome::deny(401, "revoked")]);
        assert!(wide.alternatives.is_empty(), "{wide:?}");
        assert!(!wide.accepts(&Outcome::Allow));
    }
}
