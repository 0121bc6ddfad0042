//! The load: client tasks at a steady rate, each request one of the [`Class`]es, sent through a
//! replica's Envoy and judged against the model the moment it is answered.
//!
//! The [`Pool`] holds the sessions the soak minted (their claims, who owns them, whether an
//! allowed request already pinned them); the schedule marks subjects revoked and keys retired
//! in it so the classes keep finding sessions of each kind. Which class a request was picked
//! for never decides what it must get: the model does, from the token's facts and the timeline.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::fleet::Front;
use super::model::{Outcome, REPLICA_NAMES, RequestFacts, Target, Timeline, TokenFacts};
use crate::support::Workload;
use crate::support::reply::Reply;
use crate::support::tokens::{Alg, Signer, token};

/// A session's lifetime (`exp − iat`): short, so the session cache reaches its steady state
/// (entries leave at `exp` + skew) within a few minutes of a run.
pub const TOKEN_LIFETIME_SECS: i64 = 150;
/// A pooled session is no longer picked this close to its `exp`.
const RETIRE_BEFORE_EXP_SECS: i64 = 20;
/// Most sessions kept in the pool.
const POOL_CAPACITY: usize = 400;
/// Sessions per subject before a new subject is started.
const TOKENS_PER_SUBJECT: usize = 3;

/// What a request is meant to exercise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// A pooled session, again, from its owner.
    Cached,
    /// A freshly minted session (joins the pool).
    New,
    /// A pooled session on `POST /orders` (needs `orders:write`, frontend only, 2 min age).
    OutOfScope,
    /// Issued 20 minutes ago: older than any variant's `max_token_age`.
    TooOld,
    /// A pinned session presented by the other workload.
    Replay,
    /// A published `kid`, an impostor's key.
    BadSignature,
    /// No `Authorization` at all.
    NoToken,
    /// A path no route matches.
    Unrouted,
    /// A session of a subject whose revocation was acknowledged.
    Revoked,
    /// A session signed with a key since removed from the JWKS.
    RetiredKey,
}

impl Class {
    pub const ALL: [Class; 10] = [
        Class::Cached,
        Class::New,
        Class::OutOfScope,
        Class::TooOld,
        Class::Replay,
        Class::BadSignature,
        Class::NoToken,
        Class::Unrouted,
        Class::Revoked,
        Class::RetiredKey,
    ];

    /// Relative frequency in the mix.
    fn weight(self) -> u32 {
        match self {
            Class::Cached => 40,
            Class::New => 14,
            Class::OutOfScope => 7,
            Class::TooOld => 4,
            Class::Replay => 7,
            Class::BadSignature => 5,
            Class::NoToken => 3,
            Class::Unrouted => 2,
            Class::Revoked => 12,
            Class::RetiredKey => 6,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Class::Cached => "cached",
            Class::New => "new",
            Class::OutOfScope => "out_of_scope",
            Class::TooOld => "too_old",
            Class::Replay => "replay",
            Class::BadSignature => "bad_signature",
            Class::NoToken => "no_token",
            Class::Unrouted => "unrouted",
            Class::Revoked => "revoked",
            Class::RetiredKey => "retired_key",
        }
    }
}

/// A small deterministic generator (xorshift64*), so a run can be repeated from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

fn alg_of(kid: &str) -> Alg {
    match kid {
        "test-rs256" => Alg::Rs256,
        "test-es256" => Alg::Es256,
        "test-eddsa" => Alg::EdDsa,
        other => panic!("no fixture key {other}"),
    }
}

/// Signs `facts` (a trusted or an impostor key, as they say).
pub fn mint(facts: &TokenFacts) -> String {
    token()
        .alg(alg_of(facts.kid))
        .signer(if facts.trusted_signer {
            Signer::Trusted
        } else {
            Signer::Untrusted
        })
        .sub(&facts.sub)
        .claim("iat", facts.iat)
        .claim("exp", facts.exp)
        .scope(&facts.scopes.join(" "))
        .sign()
}

struct Session {
    id: u64,
    facts: TokenFacts,
    jwt: String,
    owner: Workload,
    pinned: bool,
}

/// The sessions the soak minted, and what the schedule did to their subjects and keys.
pub struct Pool {
    sessions: Vec<Session>,
    next_id: u64,
    next_subject: u64,
    /// The subject new sessions go to, and how many it has.
    open_subject: (String, usize),
    /// Subjects a revocation was attempted for: no session is minted for them again.
    closed: HashSet<String>,
    /// Subjects whose revocation was acknowledged.
    revoked: HashSet<String>,
    /// The kids published; each new session is signed with one of them, as an identity
    /// provider in the middle of a rotation does.
    published: Vec<&'static str>,
}

impl Pool {
    pub fn new(published: &[&'static str]) -> Pool {
        Pool {
            sessions: Vec::new(),
            next_id: 0,
            next_subject: 1,
            open_subject: ("soak-u0".into(), 0),
            closed: HashSet::new(),
            revoked: HashSet::new(),
            published: published.to_vec(),
        }
    }

    /// A subject with live sessions and no revocation, for the schedule to revoke.
    pub fn subject_to_revoke(&mut self, rng: &mut Rng) -> Option<String> {
        let now = unix_ms() / 1000;
        let candidates: Vec<&str> = self
            .sessions
            .iter()
            .filter(|s| !self.closed.contains(&s.facts.sub) && usable(s, now))
            .map(|s| s.facts.sub.as_str())
            .collect();
        let sub = candidates.get(rng.below(candidates.len()))?.to_string();
        self.closed.insert(sub.clone());
        if self.open_subject.0 == sub {
            self.rotate_subject();
        }
        Some(sub)
    }

    pub fn mark_revoked(&mut self, sub: &str) {
        self.revoked.insert(sub.to_owned());
    }

    /// The JWKS now publishes `kids`.
    pub fn set_keys(&mut self, kids: &[&'static str]) {
        self.published = kids.to_vec();
    }

    /// Drops the sessions signed with `kid` before it is published again: a replica that cached
    /// one still holds the retired key (`unknown_key`), one that did not verifies it afresh
    /// (allowed), so neither answer would be wrong and the soak does not ask.
    pub fn forget_kid(&mut self, kid: &str) {
        self.sessions.retain(|s| s.facts.kid != kid);
    }

    fn rotate_subject(&mut self) {
        self.open_subject = (format!("soak-u{}", self.next_subject), 0);
        self.next_subject += 1;
    }

    fn fresh_facts(&mut self, rng: &mut Rng, age_secs: i64) -> TokenFacts {
        if self.open_subject.1 >= TOKENS_PER_SUBJECT {
            self.rotate_subject();
        }
        self.open_subject.1 += 1;
        let iat = unix_ms() / 1000 - age_secs;
        let scopes = match rng.below(3) {
            0 => vec!["orders:read", "orders:audit"],
            1 => vec!["orders:read", "orders:write"],
            _ => vec!["orders:read"],
        };
        TokenFacts {
            sub: self.open_subject.0.clone(),
            iat,
            exp: iat + TOKEN_LIFETIME_SECS,
            kid: self.published[rng.below(self.published.len())],
            scopes,
            trusted_signer: true,
        }
    }

    /// Builds the next request of `class` (or of `Cached`/`New` when the pool has no session of
    /// that kind yet). The token is minted outside the lock by the caller when `mint` is set.
    fn pick(&mut self, class: Class, rng: &mut Rng) -> Picked {
        let now = unix_ms() / 1000;
        self.sessions
            .retain(|s| s.facts.exp - RETIRE_BEFORE_EXP_SECS > now);
        let choose = |pool: &Pool, rng: &mut Rng, keep: &dyn Fn(&Session) -> bool| {
            let matching: Vec<usize> = (0..pool.sessions.len())
                .filter(|&i| keep(&pool.sessions[i]))
                .collect();
            matching.get(rng.below(matching.len())).copied()
        };
        let live = |pool: &Pool, s: &Session| {
            !pool.closed.contains(&s.facts.sub) && pool.published.contains(&s.facts.kid)
        };
        let other = |w: Workload| match w {
            Workload::Frontend => Workload::Batch,
            _ => Workload::Frontend,
        };
        let existing = |pool: &Pool, i: usize, class: Class, caller: Workload, target: Target| {
            let s: &Session = &pool.sessions[i];
            Picked {
                class,
                caller,
                target,
                facts: Some(s.facts.clone()),
                jwt: Some(s.jwt.clone()),
                session: Some(s.id),
                pinned_to: s.pinned.then_some(s.owner),
                mint: false,
            }
        };
        let fresh = |facts: TokenFacts, class: Class, caller: Workload| Picked {
            class,
            caller,
            target: Target::OrdersRead,
            facts: Some(facts),
            jwt: None,
            session: None,
            pinned_to: None,
            mint: true,
        };
        match class {
            Class::Cached | Class::OutOfScope => match choose(self, rng, &|s| live(self, s)) {
                Some(i) => {
                    let target = if class == Class::Cached {
                        Target::OrdersRead
                    } else {
                        Target::OrdersWrite
                    };
                    existing(self, i, class, self.sessions[i].owner, target)
                }
                None => self.pick(Class::New, rng),
            },
            Class::Replay => match choose(self, rng, &|s| live(self, s) && s.pinned) {
                Some(i) => existing(
                    self,
                    i,
                    class,
                    other(self.sessions[i].owner),
                    Target::OrdersRead,
                ),
                None => self.pick(Class::Cached, rng),
            },
            Class::Revoked => match choose(self, rng, &|s| self.revoked.contains(&s.facts.sub)) {
                Some(i) => existing(self, i, class, self.sessions[i].owner, Target::OrdersRead),
                None => self.pick(Class::Cached, rng),
            },
            Class::RetiredKey => {
                match choose(self, rng, &|s| !self.published.contains(&s.facts.kid)) {
                    Some(i) => existing(self, i, class, self.sessions[i].owner, Target::OrdersRead),
                    None => self.pick(Class::Cached, rng),
                }
            }
            Class::New => {
                let age = rng.below(40) as i64;
                let facts = self.fresh_facts(rng, age);
                let caller = if rng.below(2) == 0 {
                    Workload::Frontend
                } else {
                    Workload::Batch
                };
                fresh(facts, class, caller)
            }
            Class::TooOld => {
                let mut facts = self.fresh_facts(rng, 20 * 60);
                facts.exp = unix_ms() / 1000 + 120;
                fresh(facts, class, Workload::Frontend)
            }
            Class::BadSignature => {
                let mut facts = self.fresh_facts(rng, 0);
                facts.trusted_signer = false;
                fresh(facts, class, Workload::Frontend)
            }
            Class::NoToken | Class::Unrouted => Picked {
                class,
                caller: Workload::Frontend,
                target: if class == Class::NoToken {
                    Target::OrdersRead
                } else {
                    Target::Unrouted
                },
                facts: None,
                jwt: None,
                session: None,
                pinned_to: None,
                mint: false,
            },
        }
    }

    fn adopt(&mut self, facts: TokenFacts, jwt: String, owner: Workload) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        if self.sessions.len() >= POOL_CAPACITY {
            self.sessions.remove(0);
        }
        self.sessions.push(Session {
            id,
            facts,
            jwt,
            owner,
            pinned: false,
        });
        id
    }

    fn mark_pinned(&mut self, id: u64) {
        if let Some(s) = self.sessions.iter_mut().find(|s| s.id == id) {
            s.pinned = true;
        }
    }
}

fn usable(s: &Session, now: i64) -> bool {
    s.facts.exp - RETIRE_BEFORE_EXP_SECS > now
}

struct Picked {
    class: Class,
    caller: Workload,
    target: Target,
    facts: Option<TokenFacts>,
    jwt: Option<String>,
    session: Option<u64>,
    pinned_to: Option<Workload>,
    mint: bool,
}

/// Counts per class.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Counts {
    pub requests: u64,
    /// Matched the one answer the model allows.
    pub exact: u64,
    /// Matched, overlapping a trust change whose old and new state disagree.
    pub in_transition: u64,
    /// Matched a denial the documentation also allows (see `Judgement::alternatives`).
    pub alternative: u64,
    /// Matched only through a fault's fail-closed answer.
    pub fail_closed_in_fault: u64,
    pub wrong: u64,
}

/// One wrong answer, for the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Wrong {
    pub request: u64,
    pub at_s: f64,
    pub replica: usize,
    pub class: &'static str,
    pub expected: String,
    pub got: String,
    /// The denial's `error_description`, if any: what sessiongate said went wrong.
    pub detail: String,
    pub revocation_lost: bool,
}

/// One line: request, time, replica, class, what the model accepted, what came back, and
/// sessiongate's own description; the log and the report print the same.
impl std::fmt::Display for Wrong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "request {} at {:.3} s, replica {}, class {}: expected {}, got {} (`{}`){}",
            self.request,
            self.at_s,
            REPLICA_NAMES[self.replica],
            self.class,
            self.expected,
            self.got,
            self.detail,
            if self.revocation_lost {
                " (REVOCATION LOST)"
            } else {
                ""
            }
        )
    }
}

/// What every task adds to.
#[derive(Default)]
pub struct Tally {
    pub by_class: BTreeMap<&'static str, Counts>,
    pub answers: BTreeMap<String, u64>,
    pub wrong: Vec<Wrong>,
    pub revocations_lost: u64,
    pub transport_errors: u64,
    next_request: u64,
}

/// The shared state of one run.
pub struct Run {
    pub started: Instant,
    pub fronts: Vec<Front>,
    pub pool: Mutex<Pool>,
    pub timeline: Mutex<Timeline>,
    pub tally: Mutex<Tally>,
}

/// One load task: `rate` requests per second until `end`.
pub async fn drive(run: Arc<Run>, rate: f64, end: Instant, seed: u64) {
    let mut rng = Rng::new(seed);
    let total: u32 = Class::ALL.iter().map(|c| c.weight()).sum();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < end {
        tick.tick().await;
        let mut roll = (rng.next() % u64::from(total)) as u32;
        let class = Class::ALL
            .into_iter()
            .find(|c| {
                if roll < c.weight() {
                    true
                } else {
                    roll -= c.weight();
                    false
                }
            })
            .expect("a class");
        let replica = rng.below(run.fronts.len());
        one_request(&run, class, replica, &mut rng).await;
    }
}

async fn one_request(run: &Run, class: Class, replica: usize, rng: &mut Rng) {
    let mut picked = run.pool.lock().expect("pool").pick(class, rng);
    if picked.mint {
        let facts = picked.facts.as_ref().expect("facts to mint");
        picked.jwt = Some(mint(facts));
    }
    let (method, path) = match picked.target {
        Target::OrdersRead => (reqwest::Method::GET, "/orders/1"),
        Target::OrdersWrite => (reqwest::Method::POST, "/orders/1"),
        Target::Unrouted => (reqwest::Method::GET, "/nowhere"),
    };
    let mut request = run.fronts[replica].request(picked.caller, method, path);
    if let Some(jwt) = &picked.jwt {
        request = request.bearer_auth(jwt);
    }
    let sent = (Instant::now(), unix_ms());
    let result = request.send().await;
    let reply = match result {
        Ok(response) => Some(Reply::read(response).await),
        Err(_) => None,
    };
    let answered = (Instant::now(), unix_ms());
    let facts = RequestFacts {
        replica,
        caller: picked.caller,
        target: picked.target,
        token: picked.facts.clone(),
        pinned_to: picked.pinned_to,
    };
    let got = reply.as_ref().map(|reply| {
        if reply.status == 200 && reply.reached_upstream() {
            Outcome::Allow
        } else {
            Outcome::Deny(reply.status, reply.reason().map(str::to_owned))
        }
    });
    let judgement = run
        .timeline
        .lock()
        .expect("timeline")
        .judge(&facts, sent, answered);

    // A new session joins the pool whatever it got; an allow from its owner pins it.
    if picked.class == Class::New || picked.session.is_some() {
        let mut pool = run.pool.lock().expect("pool");
        let id = match picked.session {
            Some(id) => id,
            None => pool.adopt(
                picked.facts.clone().expect("facts"),
                picked.jwt.clone().expect("jwt"),
                picked.caller,
            ),
        };
        if got == Some(Outcome::Allow) && picked.pinned_to.is_none_or(|o| o == picked.caller) {
            pool.mark_pinned(id);
        }
    }

    let mut tally = run.tally.lock().expect("tally");
    tally.next_request += 1;
    let id = tally.next_request;
    let counts = tally.by_class.entry(picked.class.name()).or_default();
    counts.requests += 1;
    let Some(got) = got else {
        counts.wrong += 1;
        tally.transport_errors += 1;
        let at_s = sent.0.duration_since(run.started).as_secs_f64();
        tally.wrong.push(Wrong {
            request: id,
            at_s,
            replica,
            class: picked.class.name(),
            expected: judgement.describe(),
            got: "transport error".into(),
            detail: String::new(),
            revocation_lost: false,
        });
        return;
    };
    if judgement.expected.contains(&got) {
        if judgement.in_transition {
            counts.in_transition += 1;
        } else {
            counts.exact += 1;
        }
    } else if judgement.alternatives.contains(&got) {
        counts.alternative += 1;
    } else if judgement.accepts(&got) {
        counts.fail_closed_in_fault += 1;
    } else {
        counts.wrong += 1;
        let revocation_lost = got == Outcome::Allow && judgement.revoked_before_sent;
        if revocation_lost {
            tally.revocations_lost += 1;
        }
        let at_s = sent.0.duration_since(run.started).as_secs_f64();
        let wrong = Wrong {
            request: id,
            at_s,
            replica,
            class: picked.class.name(),
            expected: judgement.describe(),
            got: got.to_string(),
            detail: reply
                .as_ref()
                .and_then(|r| r.body.get("error_description"))
                .and_then(|d| d.as_str())
                .unwrap_or_default()
                .to_owned(),
            revocation_lost,
        };
        eprintln!("soak: WRONG {wrong}");
        tally.wrong.push(wrong);
    }
    *tally.answers.entry(got.to_string()).or_default() += 1;
}
