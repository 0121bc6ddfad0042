//! sessiongate's decisions in Envoy's own stats: `checks{decision, reason, route}` and
//! `check_duration_us`, under the module's `metrics_namespace` (`dynamicmodulescustom` unless
//! set). Bounded labels: the decisions, the deny reasons, the configured routes.
//!
//! **Why the counts are kept here and flushed once a second.** Incrementing a labelled counter
//! through the ABI makes Envoy resolve the label values to a stat on every call (symbol-table
//! lookups under a lock): 4.6k instructions per request under callgrind, more than the whole
//! decision. So a worker only adds one to a count in module memory (a short lock and a hash of
//! three short strings), and once a second the background thread asks Envoy, through the filter
//! config's scheduler, to call [`Stats::flush`] on its main thread, where the sums go to Envoy in
//! one increment per label set. Counts reach Envoy's stats within a second of the decision; the
//! last ones are flushed when Envoy destroys the filter config. The histogram records each
//! check's own latency, so it is still recorded per request (0.5k instructions).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use sessiongate_core::deny::Deny;

use crate::abi::{
    ConfigScheduler, FilterConfigEnvoyPtr, Metric, MetricKind, Stream, define_metric,
    increment_in_config,
};
use crate::instance::Instance;

/// How often counts kept in the module are handed to Envoy.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The config-scheduler event that flushes the counts.
pub const FLUSH_COUNTS: u64 = 1;

/// One filter config's metrics in Envoy's stats, and the counts not yet handed over.
#[derive(Debug, Default)]
pub struct Stats {
    checks: Option<Metric>,
    duration: Option<Metric>,
    pending: Arc<Pending>,
}

/// Checks counted since the last flush, by label set, in one shard per worker thread (up to
/// [`SHARDS`]): each worker locks a mutex no other worker touches, so counting takes no cache
/// line from another core.
#[derive(Debug, Default)]
struct Pending([Mutex<HashMap<CheckLabels, u64>>; SHARDS]);

/// How many shards [`Pending`] has; threads beyond share them round robin.
const SHARDS: usize = 16;

/// The shard of the calling thread, given out round robin at its first count.
fn shard_of_this_thread() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|shard| *shard)
}

/// The labels of one `checks` series.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CheckLabels {
    decision: &'static str,
    reason: &'static str,
    route: Option<Arc<str>>,
}

impl Stats {
    /// Defines the metrics in the filter config Envoy is creating.
    ///
    /// # Safety
    /// `config` is the filter config Envoy passed to the running `on_http_filter_config_new`.
    pub unsafe fn define(config: FilterConfigEnvoyPtr) -> Stats {
        let labels = ["decision", "reason", "route"];
        // SAFETY: the caller's guarantee, passed on.
        unsafe {
            Stats {
                checks: define_metric(config, MetricKind::Counter, "checks", &labels),
                duration: define_metric(config, MetricKind::Histogram, "check_duration_us", &[]),
                pending: Arc::default(),
            }
        }
    }

    /// Asks Envoy every [`FLUSH_EVERY`], on `instance`'s background thread, to flush this
    /// config's counts on its main thread; stops once the stats are dropped (their config is
    /// destroyed).
    pub fn flush_periodically(&self, instance: &Instance, scheduler: ConfigScheduler) {
        let pending: Weak<Pending> = Arc::downgrade(&self.pending);
        instance.spawn(async move {
            let mut ticks = tokio::time::interval(FLUSH_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(pending) = pending.upgrade() else {
                    return;
                };
                if !pending.is_empty() {
                    scheduler.commit(FLUSH_COUNTS);
                }
            }
        });
    }

    /// Counts one check: `verdict` under `route`, answered after `latency`. A dry-run denial
    /// counts as `dry_run_deny`.
    pub fn record(
        &self,
        stream: &Stream<'_>,
        verdict: Result<(), &Deny>,
        dry_run: bool,
        route: Option<&Arc<str>>,
        latency: Duration,
    ) {
        if self.checks.is_some() {
            let (decision, reason) = match verdict {
                Ok(()) => ("allow", "none"),
                Err(deny) if dry_run => ("dry_run_deny", deny.reason.as_str()),
                Err(deny) => ("deny", deny.reason.as_str()),
            };
            self.pending.add(CheckLabels {
                decision,
                reason,
                route: route.cloned(),
            });
        }
        if let Some(duration) = self.duration {
            stream.record(
                duration,
                u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
            );
        }
    }

    /// Hands every count kept so far to Envoy.
    ///
    /// # Safety
    /// `config` is this stats' live filter config and the call is made on Envoy's main thread
    /// (`on_http_filter_config_scheduled`, `on_http_filter_config_destroy`).
    pub unsafe fn flush(&self, config: FilterConfigEnvoyPtr) {
        let Some(checks) = self.checks else {
            return;
        };
        for (labels, count) in self.pending.take() {
            let route = labels.route.as_deref().unwrap_or("none");
            // SAFETY: the caller's guarantee.
            unsafe {
                increment_in_config(
                    config,
                    checks,
                    &[labels.decision, labels.reason, route],
                    count,
                );
            }
        }
    }
}

impl Pending {
    fn add(&self, labels: CheckLabels) {
        *self.0[shard_of_this_thread()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(labels)
            .or_insert(0) += 1;
    }

    /// Every count kept so far, summed over the shards, leaving them empty.
    fn take(&self) -> HashMap<CheckLabels, u64> {
        let mut all: HashMap<CheckLabels, u64> = HashMap::new();
        for shard in &self.0 {
            let taken = std::mem::take(&mut *shard.lock().unwrap_or_else(PoisonError::into_inner));
            for (labels, count) in taken {
                *all.entry(labels).or_insert(0) += count;
            }
        }
        all
    }

    fn is_empty(&self) -> bool {
        self.0.iter().all(|shard| {
            shard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_summed_per_label_set_and_handed_over_once() {
        let pending = Pending::default();
        let route: Arc<str> = Arc::from("orders-read");
        for _ in 0..3 {
            pending.add(CheckLabels {
                decision: "allow",
                reason: "none",
                route: Some(Arc::clone(&route)),
            });
        }
        pending.add(CheckLabels {
            decision: "deny",
            reason: "missing_token",
            route: Some(Arc::from("orders-read")),
        });
        pending.add(CheckLabels {
            decision: "deny",
            reason: "no_route",
            route: None,
        });
        let mut taken: Vec<_> = pending
            .take()
            .into_iter()
            .map(|(labels, count)| (labels.decision, labels.reason, labels.route, count))
            .collect();
        taken.sort();
        assert_eq!(
            taken,
            [
                ("allow", "none", Some(Arc::clone(&route)), 3),
                ("deny", "missing_token", Some(Arc::clone(&route)), 1),
                ("deny", "no_route", None, 1),
            ]
        );
        assert!(pending.is_empty(), "a flush hands each count over once");
    }

    #[test]
    fn counts_from_several_worker_threads_are_summed() {
        let pending = Arc::new(Pending::default());
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let pending = Arc::clone(&pending);
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        pending.add(CheckLabels {
                            decision: "allow",
                            reason: "none",
                            route: None,
                        });
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("a worker");
        }
        let taken = pending.take();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken.values().copied().sum::<u64>(), 400);
    }
}
