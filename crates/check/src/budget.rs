//! Verification budgets: how many signatures one caller, and all callers together, may make
//! sessiongate verify per second.
//!
//! A cached session costs a hash lookup; a token sessiongate has not seen costs a signature
//! verification (20–70 µs). Anyone who can reach the ext_authz port, or send requests through
//! Envoy, can present new tokens at will, each with a different (bad) signature, and so buy
//! verifications with nothing but bandwidth. The budget caps that: each caller has a token
//! bucket, and so does the process; a verification takes one token from both, and a request
//! that finds either empty is answered at once (503 `verification_throttled` with
//! `Retry-After`), without verifying. Cached sessions never touch the budget, so a flood of new
//! tokens cannot slow them.
//!
//! Written here rather than taken from a rate-limiting crate because the map of callers must
//! stay bounded against an attacker who can mint callers (source addresses): it holds at most
//! `callers` buckets; a full bucket is the same as none, so full buckets are swept out (at most
//! once a second) to make room, and while every tracked caller is busy, callers without a
//! bucket share one overflow bucket with the per-caller rate.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use sessiongate_core::time::UnixTime;
use sessiongate_core::workload::{CallerIdentity, Thumbprint};

/// Tokens in thousandths, so refills of a fraction of a token per millisecond stay exact.
const MILLI: u64 = 1000;

/// How often, at most, full buckets are swept out of a full caller map.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// A rate and the burst allowed above it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Tokens added per second (at least 1).
    pub per_second: u32,
    /// Most tokens held (at least 1): how many verifications can happen at once after a pause.
    pub burst: u32,
}

/// The budgets configured under `limits.verifications`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetLimits {
    /// Each caller's rate.
    pub per_caller: Rate,
    /// Everyone's together.
    pub total: Rate,
    /// Most callers tracked at once (memory bound).
    pub callers: usize,
}

impl Default for BudgetLimits {
    /// 500/s per caller (burst 1,000) and 5,000/s in all (burst 10,000), 10,000 callers: at the
    /// slowest accepted algorithm (ES256, ~70 µs) one caller can take at most ~3.5% of a core.
    fn default() -> BudgetLimits {
        BudgetLimits {
            per_caller: Rate {
                per_second: 500,
                burst: 1000,
            },
            total: Rate {
                per_second: 5000,
                burst: 10_000,
            },
            callers: 10_000,
        }
    }
}

/// Who asks for a verification: the caller's strongest identity
/// ([`sessiongate_core::workload::Caller::identity`], the rule pinning uses), owned so a bucket can keep it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CallerKey {
    /// The caller's SPIFFE ID.
    Spiffe(Box<str>),
    /// The SHA-256 of the caller's certificate, when it carries no SPIFFE ID.
    Certificate(Thumbprint),
    /// The caller's IP address, without a certificate.
    Address(Box<str>),
    /// Nothing identifies the caller (no certificate, no address): all such share one budget.
    Unknown,
}

impl From<Option<CallerIdentity<'_>>> for CallerKey {
    fn from(identity: Option<CallerIdentity<'_>>) -> CallerKey {
        match identity {
            Some(CallerIdentity::Spiffe(id)) => CallerKey::Spiffe(id.into()),
            Some(CallerIdentity::Certificate(thumbprint)) => CallerKey::Certificate(thumbprint),
            Some(CallerIdentity::Address(address)) => CallerKey::Address(address.into()),
            None => CallerKey::Unknown,
        }
    }
}

/// Why a verification was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttled {
    /// When the budget that ran out has a token again.
    pub retry_after: Duration,
    /// Whether it was the caller's own budget (`false`: the process-wide one).
    pub per_caller: bool,
}

/// The per-caller and total budgets; shared by every connection.
#[derive(Debug)]
pub struct VerificationBudget {
    limits: BudgetLimits,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    callers: HashMap<CallerKey, Bucket>,
    /// Shared by callers that found the map full.
    overflow: Bucket,
    total: Bucket,
    last_sweep: Option<UnixTime>,
}

impl VerificationBudget {
    /// Budgets as `limits` say, every bucket full.
    pub fn new(limits: BudgetLimits) -> VerificationBudget {
        VerificationBudget {
            limits,
            state: Mutex::new(State {
                callers: HashMap::new(),
                overflow: Bucket::full(limits.per_caller),
                total: Bucket::full(limits.total),
                last_sweep: None,
            }),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> BudgetLimits {
        self.limits
    }

    /// Takes one verification from `caller`'s budget and the total at `now`; refuses (taking
    /// nothing) when either is empty.
    pub fn try_spend(&self, caller: &CallerKey, now: UnixTime) -> Result<(), Throttled> {
        let limits = self.limits;
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let state = &mut *state;
        state.total.refill(limits.total, now);
        let tracked = state.callers.contains_key(caller) || {
            if state.callers.len() >= limits.callers {
                state.sweep(limits.per_caller, now);
            }
            state.callers.len() < limits.callers && {
                state
                    .callers
                    .insert(caller.clone(), Bucket::full(limits.per_caller));
                true
            }
        };
        let own = match state.callers.get_mut(caller) {
            Some(bucket) if tracked => bucket,
            _ => &mut state.overflow,
        };
        own.refill(limits.per_caller, now);
        if let Some(retry_after) = own.wait_for_one(limits.per_caller) {
            return Err(Throttled {
                retry_after,
                per_caller: true,
            });
        }
        if let Some(retry_after) = state.total.wait_for_one(limits.total) {
            return Err(Throttled {
                retry_after,
                per_caller: false,
            });
        }
        own.take_one();
        state.total.take_one();
        Ok(())
    }

    /// How many callers have a bucket of their own now.
    pub fn tracked_callers(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .callers
            .len()
    }
}

impl State {
    /// Drops the buckets that are full at `now` (callers that have been quiet long enough are
    /// indistinguishable from new ones), at most once per [`SWEEP_INTERVAL`] so that a full map
    /// of busy callers costs one scan per interval, not one per request.
    fn sweep(&mut self, rate: Rate, now: UnixTime) {
        if self
            .last_sweep
            .is_some_and(|last| now.since(last) < SWEEP_INTERVAL && now >= last)
        {
            return;
        }
        self.last_sweep = Some(now);
        self.callers.retain(|_, bucket| {
            bucket.refill(rate, now);
            !bucket.is_full(rate)
        });
    }
}

/// A token bucket, in thousandths of a token.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    milli_tokens: u64,
    refilled_at: Option<UnixTime>,
}

impl Bucket {
    fn full(rate: Rate) -> Bucket {
        Bucket {
            milli_tokens: u64::from(rate.burst) * MILLI,
            refilled_at: None,
        }
    }

    /// Adds what `rate` earned since the last refill (nothing if the clock went backwards).
    fn refill(&mut self, rate: Rate, now: UnixTime) {
        let elapsed_ms = match self.refilled_at {
            Some(last) if now > last => now.since(last).as_millis() as u64,
            Some(_) => 0,
            None => u64::MAX,
        };
        // `per_second` tokens a second are `per_second` thousandths a millisecond.
        let earned = elapsed_ms.saturating_mul(u64::from(rate.per_second));
        self.milli_tokens = self
            .milli_tokens
            .saturating_add(earned)
            .min(u64::from(rate.burst) * MILLI);
        if self.refilled_at.is_none_or(|last| now > last) {
            self.refilled_at = Some(now);
        }
    }

    fn is_full(&self, rate: Rate) -> bool {
        self.milli_tokens >= u64::from(rate.burst) * MILLI
    }

    /// `None` when a token is there; else how long until one is.
    fn wait_for_one(&self, rate: Rate) -> Option<Duration> {
        let missing = MILLI.checked_sub(self.milli_tokens).filter(|&m| m > 0)?;
        let per_second = u64::from(rate.per_second.max(1));
        Some(Duration::from_millis(missing.div_ceil(per_second)))
    }

    fn take_one(&mut self) {
        self.milli_tokens -= MILLI;
    }
}

#[cfg(test)]
mod tests;
