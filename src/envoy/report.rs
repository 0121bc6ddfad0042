//! Reporting one check: its metrics and its decision-log line, from the gate's [`Outcome`].
//!
//! Kept beside the adapter rather than in the gate, so the gate and the decision never see a
//! metrics type or a logger: the adapter knows the latency, the dry-run mode and the caller's
//! principal, which is everything a report adds to the outcome.

use std::sync::Arc;
use std::time::Duration;

use crate::decision_log::{DecisionLog, Entry};
use crate::metrics::CheckMetrics;
use sessiongate_check::gate::Outcome;
use sessiongate_core::deny::Deny;
use sessiongate_core::time::UnixTime;

/// Records every check in metrics and the decision log; cheap to clone.
#[derive(Clone, Debug)]
pub struct CheckReporter {
    /// None where nobody could scrape them (the in-process module counts in Envoy's stats).
    metrics: Option<CheckMetrics>,
    log: Arc<DecisionLog>,
}

impl Default for CheckReporter {
    /// Metrics nobody scrapes, and no sampled allows: what tests and embedders get by default.
    fn default() -> Self {
        CheckReporter::new(crate::metrics::Metrics::new().checks, DecisionLog::new(0.0))
    }
}

impl CheckReporter {
    /// Reports into `metrics` and `log`.
    pub fn new(metrics: CheckMetrics, log: DecisionLog) -> CheckReporter {
        CheckReporter {
            metrics: Some(metrics),
            log: Arc::new(log),
        }
    }

    /// A reporter that only writes the decision log: for the in-process module, whose
    /// decisions are counted in Envoy's own stats and which serves no `/metrics`. Recording
    /// series nobody can scrape would cost every request atomic writes to counters shared by
    /// all of Envoy's workers.
    pub fn log_only(log: DecisionLog) -> CheckReporter {
        CheckReporter {
            metrics: None,
            log: Arc::new(log),
        }
    }

    /// A check the gate judged. `principal` is Envoy's `source.principal` of the caller.
    pub fn judged(
        &self,
        outcome: &Outcome,
        principal: &str,
        dry_run: bool,
        now: UnixTime,
        latency: Duration,
    ) {
        let session_hash = outcome.session.as_ref().map(|(key, _)| key.short());
        let token = outcome.session.as_ref().map(|(_, session)| &session.token);
        match &outcome.verdict {
            Ok(()) => {
                if let Some(metrics) = &self.metrics {
                    let age = token.and_then(|t| t.issued_at).map(|iat| now.since(iat));
                    metrics.allow(outcome.route.as_ref(), dry_run, latency, age);
                }
            }
            Err(deny) => {
                if let Some(metrics) = &self.metrics {
                    metrics.deny(outcome.route.as_ref(), deny.reason, dry_run, latency);
                }
            }
        }
        self.log.record(&Entry {
            route: outcome.route.as_deref(),
            verdict: outcome.verdict.as_ref().map(|_| ()),
            dry_run,
            subject: token.and_then(|t| t.subject()),
            workload: (!principal.is_empty()).then_some(principal),
            session: session_hash.as_ref().map(|s| s.as_str()),
            latency,
        });
    }

    /// A check denied before the gate could judge it (unusable request, internal failure).
    pub fn refused(&self, deny: &Deny, latency: Duration) {
        if let Some(metrics) = &self.metrics {
            metrics.deny(None, deny.reason, false, latency);
        }
        self.log.record(&Entry {
            route: None,
            verdict: Err(deny),
            dry_run: false,
            subject: None,
            workload: None,
            session: None,
            latency,
        });
    }
}
