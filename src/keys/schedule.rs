//! When to fetch an issuer's keys again, when to give up on the last good set, and how often a
//! token naming an unknown key may force a fetch. Pure: every instant is an argument, so the
//! rules are tested exactly, without a runtime.

use std::time::Duration;

use tokio::time::Instant;

/// Longest `max-age` honoured before clamping; anything beyond is treated as this (a year), so an
/// absurd header cannot overflow instant arithmetic.
const MAX_AGE_CEILING: Duration = Duration::from_secs(365 * 24 * 3600);

/// An issuer's refresh bounds, from `issuers[].keys_refresh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshBounds {
    /// Floor of the refresh interval (a short `max-age` cannot make us hammer the issuer), the
    /// retry interval after a failure, and the least time between two unknown-`kid` refreshes.
    pub min_interval: Duration,
    /// Ceiling of the refresh interval (a long `max-age` cannot hide a rotation for days), and
    /// the interval when the source gives no `max-age`.
    pub max_interval: Duration,
    /// How long the last good set is used while the source fails; past it the issuer fails
    /// closed.
    pub max_stale: Duration,
}

impl Default for RefreshBounds {
    fn default() -> Self {
        RefreshBounds {
            min_interval: Duration::from_secs(60),
            max_interval: Duration::from_secs(3600),
            max_stale: Duration::from_secs(6 * 3600),
        }
    }
}

impl RefreshBounds {
    /// How long to wait after a successful fetch whose response allowed caching for `max_age`.
    pub fn interval_after_success(&self, max_age: Option<Duration>) -> Duration {
        match max_age {
            Some(age) => age
                .min(MAX_AGE_CEILING)
                .clamp(self.min_interval, self.max_interval),
            None => self.max_interval,
        }
    }
}

/// The `max-age` of a `Cache-Control` header value, if it sets one a cache may use.
///
/// `no-store` and `no-cache` mean "do not reuse without asking", so they read as `max-age=0`
/// (which the bounds then raise to `min_interval`). A malformed `max-age` is ignored rather than
/// guessed at (RFC 9111 section 4.2.1); only the first `max-age` counts.
pub fn cache_control_max_age(value: &str) -> Option<Duration> {
    let mut max_age = None;
    for directive in value.split(',') {
        let directive = directive.trim();
        let (name, argument) = match directive.split_once('=') {
            Some((name, argument)) => (name.trim(), Some(argument.trim().trim_matches('"'))),
            None => (directive, None),
        };
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return Some(Duration::ZERO);
        }
        if name.eq_ignore_ascii_case("max-age") && max_age.is_none() {
            max_age = argument
                .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                // More digits than a u64 holds is "a very long time".
                .map(|digits| digits.parse::<u64>().unwrap_or(u64::MAX))
                .map(Duration::from_secs);
        }
    }
    max_age
}

/// One issuer's refresh state: when the last good set arrived, when to fetch next, and whether
/// it is past `max_stale`.
#[derive(Debug, Clone)]
pub struct Schedule {
    bounds: RefreshBounds,
    last_good: Instant,
    next_fetch: Instant,
    stale: bool,
}

impl Schedule {
    /// A schedule for keys fetched successfully at `now` with this `max_age`.
    pub fn new(bounds: RefreshBounds, now: Instant, max_age: Option<Duration>) -> Schedule {
        Schedule {
            bounds,
            last_good: now,
            next_fetch: now + bounds.interval_after_success(max_age),
            stale: false,
        }
    }

    /// A fetch succeeded: fresh again, next fetch per the response's `max_age`.
    pub fn succeeded(&mut self, now: Instant, max_age: Option<Duration>) {
        self.last_good = now;
        self.stale = false;
        self.next_fetch = now + self.bounds.interval_after_success(max_age);
    }

    /// A fetch failed: retry after `min_interval`.
    pub fn failed(&mut self, now: Instant) {
        self.next_fetch = now + self.bounds.min_interval;
    }

    /// When the last good set stops being good enough.
    pub fn stale_at(&self) -> Instant {
        self.last_good + self.bounds.max_stale
    }

    /// Whether, at `now`, the last good set is older than `max_stale`.
    pub fn is_stale(&self, now: Instant) -> bool {
        now >= self.stale_at()
    }

    /// True exactly once per outage: the first time it is asked at or after `stale_at`.
    pub fn newly_stale(&mut self, now: Instant) -> bool {
        let became = !self.stale && self.is_stale(now);
        self.stale |= became;
        became
    }

    /// Whether a fetch is due at `now`.
    pub fn fetch_due(&self, now: Instant) -> bool {
        now >= self.next_fetch
    }

    /// When the refresh task must wake next: the next fetch, or the moment the set goes stale if
    /// that comes first (so failing closed is not delayed until the next retry).
    pub fn wake_at(&self) -> Instant {
        if self.stale {
            self.next_fetch
        } else {
            self.next_fetch.min(self.stale_at())
        }
    }
}

/// What a request that met an unknown `kid` may do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownKeyTrigger {
    /// Start a fetch now, and wait for it.
    Start,
    /// A fetch started moments ago: wait for that one.
    Join,
    /// A fetch was forced less than `min_interval` ago: answer with what we have.
    Refused,
}

/// Rate limit for unknown-`kid` refreshes: at most one per `min_interval` per issuer, so tokens
/// with invented `kid`s cannot make sessiongate hammer the issuer. Requests arriving while the
/// forced fetch is still within `join_window` wait for it instead of being refused.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnknownKeyLimiter {
    last_start: Option<Instant>,
}

impl UnknownKeyLimiter {
    /// Decides what a request meeting an unknown `kid` at `now` does.
    pub fn admit(
        &mut self,
        now: Instant,
        min_interval: Duration,
        join_window: Duration,
    ) -> UnknownKeyTrigger {
        match self.last_start {
            Some(start) if now < start + join_window => UnknownKeyTrigger::Join,
            Some(start) if now < start + min_interval => UnknownKeyTrigger::Refused,
            _ => {
                self.last_start = Some(now);
                UnknownKeyTrigger::Start
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn bounds() -> RefreshBounds {
        RefreshBounds {
            min_interval: secs(60),
            max_interval: secs(3600),
            max_stale: secs(7200),
        }
    }

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(cache_control_max_age("max-age=300"), Some(secs(300)));
        assert_eq!(
            cache_control_max_age("public, max-age=600, must-revalidate"),
            Some(secs(600))
        );
        assert_eq!(cache_control_max_age("Max-Age = \"42\""), Some(secs(42)));
        assert_eq!(cache_control_max_age("public"), None);
        assert_eq!(cache_control_max_age(""), None);
    }

    #[test]
    fn a_malformed_max_age_is_ignored() {
        for value in [
            "max-age=",
            "max-age=-1",
            "max-age=1.5",
            "max-age=abc",
            "max-age",
        ] {
            assert_eq!(cache_control_max_age(value), None, "{value}");
        }
    }

    #[test]
    fn only_the_first_max_age_counts() {
        assert_eq!(
            cache_control_max_age("max-age=10, max-age=9999"),
            Some(secs(10))
        );
    }

    #[test]
    fn no_store_and_no_cache_mean_refetch_as_soon_as_allowed() {
        assert_eq!(
            cache_control_max_age("no-store, max-age=600"),
            Some(Duration::ZERO)
        );
        assert_eq!(cache_control_max_age("no-cache"), Some(Duration::ZERO));
    }

    #[test]
    fn a_huge_max_age_does_not_overflow() {
        let age = cache_control_max_age("max-age=99999999999999999999999").unwrap();
        assert_eq!(bounds().interval_after_success(Some(age)), secs(3600));
    }

    #[test]
    fn max_age_is_clamped_to_the_configured_bounds() {
        let b = bounds();
        assert_eq!(b.interval_after_success(Some(secs(5))), secs(60));
        assert_eq!(b.interval_after_success(Some(secs(900))), secs(900));
        assert_eq!(b.interval_after_success(Some(secs(86_400))), secs(3600));
        assert_eq!(b.interval_after_success(None), secs(3600), "no max-age");
    }

    #[test]
    fn a_failure_retries_after_min_interval() {
        let t0 = Instant::now();
        let mut schedule = Schedule::new(bounds(), t0, Some(secs(900)));
        assert!(!schedule.fetch_due(t0 + secs(899)));
        assert!(schedule.fetch_due(t0 + secs(900)));
        schedule.failed(t0 + secs(900));
        assert_eq!(schedule.wake_at(), t0 + secs(960));
    }

    #[test]
    fn the_last_good_set_is_kept_until_max_stale_then_fails_closed_once() {
        let t0 = Instant::now();
        let mut schedule = Schedule::new(bounds(), t0, None);
        schedule.failed(t0 + secs(3600));
        assert!(!schedule.newly_stale(t0 + secs(7199)));
        assert!(!schedule.is_stale(t0 + secs(7199)));
        assert!(schedule.newly_stale(t0 + secs(7200)));
        assert!(schedule.is_stale(t0 + secs(7200)));
        assert!(
            !schedule.newly_stale(t0 + secs(7300)),
            "the transition is reported once"
        );
        schedule.succeeded(t0 + secs(7300), None);
        assert!(!schedule.is_stale(t0 + secs(7300)));
        assert!(!schedule.newly_stale(t0 + secs(7300)));
    }

    #[test]
    fn the_task_wakes_when_the_set_goes_stale_if_that_is_before_the_retry() {
        let t0 = Instant::now();
        let b = RefreshBounds {
            min_interval: secs(60),
            max_interval: secs(60),
            max_stale: secs(90),
        };
        let mut schedule = Schedule::new(b, t0, None);
        schedule.failed(t0 + secs(60));
        assert_eq!(
            schedule.wake_at(),
            t0 + secs(90),
            "stale before retry at 120"
        );
        assert!(schedule.newly_stale(t0 + secs(90)));
        assert_eq!(
            schedule.wake_at(),
            t0 + secs(120),
            "once stale, only retries"
        );
    }

    #[test]
    fn unknown_kid_refreshes_are_limited_to_one_per_min_interval() {
        let t0 = Instant::now();
        let (min, join) = (secs(60), Duration::from_millis(500));
        let mut limiter = UnknownKeyLimiter::default();
        assert_eq!(limiter.admit(t0, min, join), UnknownKeyTrigger::Start);
        assert_eq!(
            limiter.admit(t0 + Duration::from_millis(100), min, join),
            UnknownKeyTrigger::Join,
            "a request during the forced fetch waits for it"
        );
        assert_eq!(
            limiter.admit(t0 + secs(1), min, join),
            UnknownKeyTrigger::Refused
        );
        assert_eq!(
            limiter.admit(t0 + secs(59), min, join),
            UnknownKeyTrigger::Refused
        );
        assert_eq!(
            limiter.admit(t0 + secs(60), min, join),
            UnknownKeyTrigger::Start
        );
    }
}
