//! Bounded connections: how many each listener (ext_authz `grpc`, `admin`, ops `http`) holds at
//! once.
//!
//! A listener admits a new connection only while fewer than its cap
//! (`limits.max_connections.<listener>`) are open; beyond it the connection is closed as soon
//! as it is accepted, counted in `sessiongate_connections_refused_total` and logged at most
//! once per [`LOG_INTERVAL`]. What must stay true: the accept loop never waits for a place (a
//! full listener keeps accepting and closing, so the backlog never fills with connections
//! nobody will serve), and a refusal never touches the connections already held (Envoy's
//! pooled ones keep being served). A connection's place is its [`Slot`], given back when the
//! connection is dropped, on whichever thread served it.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::ConnectionMetrics;

/// Least time between two log lines about refused connections of one listener: a flood of
/// refusals must not become a flood of log lines.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// One listener's cap on concurrent connections; cheap to clone.
#[derive(Clone, Debug)]
pub struct ConnectionCap(Arc<Cap>);

#[derive(Debug)]
struct Cap {
    listener: &'static str,
    max: usize,
    open: AtomicUsize,
    metrics: ConnectionMetrics,
    /// Refusals not yet reported in a log line.
    unlogged: AtomicU64,
    /// When the last refusal line was written.
    logged: Mutex<Option<Instant>>,
}

impl ConnectionCap {
    /// A cap of `max` connections for `listener` (`grpc`, `admin` or `http`), counted into
    /// `metrics`.
    pub fn new(listener: &'static str, max: usize, metrics: ConnectionMetrics) -> ConnectionCap {
        metrics.declare(listener);
        ConnectionCap(Arc::new(Cap {
            listener,
            max,
            open: AtomicUsize::new(0),
            metrics,
            unlogged: AtomicU64::new(0),
            logged: Mutex::new(None),
        }))
    }

    /// A place for a connection just accepted, or `None` when the listener holds its cap
    /// already (the refusal is counted and logged; the caller closes the connection).
    pub fn admit(&self) -> Option<Slot> {
        let cap = &self.0;
        let admitted = cap
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < cap.max).then_some(open + 1)
            })
            .is_ok();
        if admitted {
            cap.metrics.opened(cap.listener);
            Some(Slot(Arc::clone(cap)))
        } else {
            cap.metrics.refused(cap.listener);
            self.log_refusal();
            None
        }
    }

    /// Connections held now.
    pub fn open(&self) -> usize {
        self.0.open.load(Ordering::Acquire)
    }

    /// The listener's name, as metrics and logs show it.
    pub fn listener(&self) -> &'static str {
        self.0.listener
    }

    fn log_refusal(&self) {
        let cap = &self.0;
        cap.unlogged.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut logged = cap.logged.lock().unwrap_or_else(|e| e.into_inner());
        if logged.is_some_and(|at| now.duration_since(at) < LOG_INTERVAL) {
            return;
        }
        *logged = Some(now);
        let refused = cap.unlogged.swap(0, Ordering::Relaxed);
        tracing::warn!(
            listener = cap.listener,
            max_connections = cap.max,
            refused,
            "connection cap reached; closing new connections (limits.max_connections.{})",
            cap.listener
        );
    }
}

/// A connection's place under its listener's cap, given back on drop.
#[derive(Debug)]
pub struct Slot(Arc<Cap>);

impl Slot {
    /// The connection is being closed because its caller stalled (counted per listener).
    pub fn timed_out(&self) {
        self.0.metrics.timed_out(self.0.listener);
        tracing::debug!(
            listener = self.0.listener,
            "closing a connection whose caller stalled"
        );
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.closed(self.0.listener);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_listener_refuses_until_a_place_is_given_back() {
        let cap = ConnectionCap::new("grpc", 2, ConnectionMetrics::default());
        let first = cap.admit().expect("first");
        let _second = cap.admit().expect("second");
        assert!(cap.admit().is_none(), "the third is over the cap");
        assert_eq!(cap.open(), 2);
        drop(first);
        assert_eq!(cap.open(), 1);
        assert!(cap.admit().is_some(), "a place was given back");
    }
}
