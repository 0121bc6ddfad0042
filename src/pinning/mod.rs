//! Pinning sessions fleet-wide: [`RedisPins`] records each new session's first workload in the
//! shared Redis (the [`PinStore`](sessiongate_check::pinning::PinStore) trait and the
//! per-process [`LocalPins`](sessiongate_check::pinning::LocalPins) are the check crate's).

mod redis;

pub use self::redis::RedisPins;
