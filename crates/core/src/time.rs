//! Wall-clock time as the decision sees it.
//!
//! Token claims (`iat`, `exp`, `auth_time`) are wall-clock instants, so the decision works in wall
//! time, not in a monotonic clock. The clock is read once per request, in the adapter, and passed
//! down as a value: that keeps [`crate::decision`] pure and lets tests set "now" exactly.

use std::num::NonZeroU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An instant in milliseconds since the Unix epoch.
///
/// Milliseconds rather than the seconds JWTs use, because idle timeouts and session bookkeeping
/// are measured between requests, and sub-second timeouts are useful in tests.
///
/// Stored as milliseconds plus one in a `NonZeroU64`, so that `Option<UnixTime>` (a token's
/// `iat`, `nbf`, `auth_time`) is eight bytes, not sixteen: every cached session holds three.
/// The cost is one representable instant at the far end: times saturate at
/// [`UnixTime::MAX`], `u64::MAX - 1` milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(NonZeroU64);

impl UnixTime {
    /// The epoch itself; also what a pre-1970 (negative) claim clamps to.
    pub const EPOCH: UnixTime = UnixTime::from_millis(0);

    /// The latest representable instant: arithmetic and absurd claims saturate here.
    pub const MAX: UnixTime = UnixTime::from_millis(u64::MAX);

    /// Reads the system clock. Only the adapter and the server wiring call this.
    pub fn now() -> UnixTime {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        UnixTime::from_millis(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
    }

    /// From a JWT NumericDate (seconds, possibly fractional). Negative or non-finite values clamp
    /// to the epoch; absurdly large ones saturate, so arithmetic on them can never overflow.
    pub fn from_numeric_date(seconds: f64) -> UnixTime {
        if !seconds.is_finite() || seconds <= 0.0 {
            return UnixTime::EPOCH;
        }
        let millis = (seconds * 1000.0).floor();
        if millis >= u64::MAX as f64 {
            UnixTime::MAX
        } else {
            UnixTime::from_millis(millis as u64)
        }
    }

    /// From whole seconds since the epoch.
    pub const fn from_secs(seconds: u64) -> UnixTime {
        UnixTime::from_millis(seconds.saturating_mul(1000))
    }

    /// From milliseconds since the epoch (saturating at [`UnixTime::MAX`]).
    pub const fn from_millis(millis: u64) -> UnixTime {
        match NonZeroU64::new(millis.saturating_add(1)) {
            Some(stored) => UnixTime(stored),
            None => unreachable!(), // a saturating `+ 1` is never zero
        }
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0.get() - 1
    }

    /// Whole seconds since the epoch.
    pub const fn as_secs(self) -> u64 {
        self.as_millis() / 1000
    }

    /// How long after `earlier` this instant is; zero when `earlier` is in the future, so a
    /// slightly fast issuer clock never produces a negative age.
    pub fn since(self, earlier: UnixTime) -> Duration {
        Duration::from_millis(self.as_millis().saturating_sub(earlier.as_millis()))
    }

    /// This instant moved forward by `duration`, saturating.
    pub fn plus(self, duration: Duration) -> UnixTime {
        let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        UnixTime::from_millis(self.as_millis().saturating_add(millis))
    }
}

/// Serialised as milliseconds since the epoch (durable revocation records, admin API).
impl serde::Serialize for UnixTime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.as_millis())
    }
}

impl<'de> serde::Deserialize<'de> for UnixTime {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        u64::deserialize(deserializer).map(UnixTime::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_dates_clamp_instead_of_overflowing() {
        assert_eq!(UnixTime::from_numeric_date(-5.0), UnixTime::EPOCH);
        assert_eq!(UnixTime::from_numeric_date(f64::NAN), UnixTime::EPOCH);
        assert_eq!(UnixTime::from_numeric_date(1e300), UnixTime::MAX);
        assert_eq!(UnixTime::MAX.as_millis(), u64::MAX - 1);
        assert_eq!(UnixTime::from_numeric_date(12.3456).as_millis(), 12_345);
    }

    #[test]
    fn age_of_a_future_instant_is_zero() {
        let now = UnixTime::from_secs(100);
        assert_eq!(now.since(UnixTime::from_secs(160)), Duration::ZERO);
        assert_eq!(now.since(UnixTime::from_secs(40)), Duration::from_secs(60));
    }

    #[test]
    fn an_optional_instant_costs_no_more_than_an_instant() {
        assert_eq!(std::mem::size_of::<Option<UnixTime>>(), 8);
    }

    #[test]
    fn millis_round_trip_and_order_is_kept() {
        for millis in [0, 1, 999, 1_700_000_000_000, u64::MAX - 1] {
            assert_eq!(UnixTime::from_millis(millis).as_millis(), millis);
        }
        assert!(UnixTime::EPOCH < UnixTime::from_millis(1));
        assert!(UnixTime::from_secs(5) < UnixTime::MAX);
        assert_eq!(UnixTime::MAX.plus(Duration::from_secs(1)), UnixTime::MAX);
        assert_eq!(UnixTime::from_millis(u64::MAX), UnixTime::MAX);
    }
}
