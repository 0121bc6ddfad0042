//! The decision log: one structured line per denied check, and a sample of allowed ones.
//!
//! Each line answers "who was denied where, and why" without a trip to the metrics: route,
//! reason, subject, workload, the session's short hash, latency and whether the route is in
//! dry-run. It never carries the token (the session hash identifies it without revealing it).
//!
//! Allowed checks are sampled (`telemetry.log_allowed_sample_rate`, default 0): at a high request
//! rate one line per allow is a log bill, not an insight. Sampling is 1 in N by count, not
//! random, so a rate of 1 logs every allow and tests are deterministic; unsampled allows are
//! still written at `debug`.
//!
//! Denials are written one line each, up to `telemetry.log_denied_per_second` lines per second
//! for each reason (default 100): a flood of bad requests (which anyone can send) must not turn
//! into a flood of log lines, with their CPU, disk and log-pipeline bill. Lines beyond it are
//! dropped and counted: the next line written for that reason says how many in `suppressed`.
//! Metrics count every denial whatever the log writes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::logging::LinesPerSecond;
use sessiongate_core::deny::{Deny, DenyReason};
use sessiongate_core::time::UnixTime;

/// Default `telemetry.log_denied_per_second`.
pub const DEFAULT_DENIED_LINES_PER_SECOND: u64 = 100;

/// What one line says; borrowed from the check, so writing it costs no allocation.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// The matched route's name (`-` when none matched).
    pub route: Option<&'a str>,
    /// Allowed, or why not.
    pub verdict: Result<(), &'a Deny>,
    /// The route is in dry-run: a denial here was reported, not enforced.
    pub dry_run: bool,
    /// The token's `sub`, once verified.
    pub subject: Option<&'a str>,
    /// The caller's SPIFFE ID (or Envoy's principal), when it presented one.
    pub workload: Option<&'a str>,
    /// The session's short hash (never the token).
    pub session: Option<&'a str>,
    /// Time from receiving the check to answering it.
    pub latency: Duration,
}

/// Writes decision lines; shared by every check.
#[derive(Debug)]
pub struct DecisionLog {
    /// Log one allow in this many; 0 logs none (at `info`).
    allowed_every: u64,
    allowed_seen: AtomicU64,
    /// Most denial lines per second and reason; 0: no limit.
    denied_per_second: u64,
    /// One window per [`DenyReason`] (indexed by its discriminant).
    denied: [LinesPerSecond; DenyReason::ALL.len()],
}

impl DecisionLog {
    /// A log writing every denial and a `sample_rate` fraction (0…1) of allows.
    pub fn new(sample_rate: f64) -> DecisionLog {
        let allowed_every = if sample_rate > 0.0 {
            (1.0 / sample_rate.min(1.0)).round() as u64
        } else {
            0
        };
        DecisionLog {
            allowed_every,
            allowed_seen: AtomicU64::new(0),
            denied_per_second: DEFAULT_DENIED_LINES_PER_SECOND,
            denied: Default::default(),
        }
    }

    /// Writes at most `lines` denial lines per second for each reason (0: every denial).
    pub fn with_denied_per_second(mut self, lines: u64) -> DecisionLog {
        self.denied_per_second = lines;
        self
    }

    /// Whether this allow is one of the sampled ones.
    fn sample_allow(&self) -> bool {
        self.allowed_every != 0
            && self
                .allowed_seen
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(self.allowed_every)
    }

    /// Writes the line for `entry` (an allow only when sampled).
    pub fn record(&self, entry: &Entry<'_>) {
        let route = entry.route.unwrap_or("-");
        let subject = entry.subject.unwrap_or("-");
        let workload = entry.workload.unwrap_or("-");
        let session = entry.session.unwrap_or("-");
        let latency_us = u64::try_from(entry.latency.as_micros()).unwrap_or(u64::MAX);
        let dry_run = entry.dry_run;
        match entry.verdict {
            Ok(()) if self.sample_allow() => tracing::info!(
                decision = "allow",
                route,
                subject,
                workload,
                session,
                latency_us,
                dry_run,
                "allowed"
            ),
            Ok(()) => tracing::debug!(
                decision = "allow",
                route,
                subject,
                workload,
                session,
                latency_us,
                dry_run,
                "allowed"
            ),
            Err(deny) => {
                let window = &self.denied[deny.reason as usize];
                let Some(dropped) = window.admit(self.denied_per_second, UnixTime::now().as_secs())
                else {
                    return;
                };
                // Recorded only when lines were dropped (tracing leaves out a `None`).
                let suppressed = (dropped > 0).then_some(dropped);
                tracing::info!(
                    decision = "deny",
                    route,
                    reason = deny.reason.as_str(),
                    subject,
                    workload,
                    session,
                    latency_us,
                    dry_run,
                    enforced = !dry_run,
                    suppressed,
                    "{}",
                    deny.description
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampled(log: &DecisionLog, allows: usize) -> usize {
        (0..allows).filter(|_| log.sample_allow()).count()
    }

    #[test]
    fn denial_lines_are_limited_per_reason() {
        let log = DecisionLog::new(0.0).with_denied_per_second(1);
        assert_eq!(log.denied.len(), DenyReason::ALL.len());
        for (index, reason) in DenyReason::ALL.into_iter().enumerate() {
            assert_eq!(
                reason as usize, index,
                "windows are indexed by discriminant"
            );
        }
    }

    #[test]
    fn allows_are_sampled_one_in_n() {
        assert_eq!(sampled(&DecisionLog::new(0.0), 1000), 0);
        assert_eq!(sampled(&DecisionLog::new(1.0), 1000), 1000);
        assert_eq!(sampled(&DecisionLog::new(0.01), 1000), 10);
        assert_eq!(sampled(&DecisionLog::new(0.25), 1000), 250);
    }
}
