//! Stopping the servers: one stop signal for the whole process, and a drain with a time limit.
//!
//! Every listener (ext_authz, admin) stops accepting on the same signal, then gets a bounded
//! grace period for in-flight calls, so a SIGTERM never hangs on a client that keeps its
//! connection open (Envoy holds HTTP/2 connections indefinitely).

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// The process-wide stop signal; cheap to clone, any number of waiters.
#[derive(Clone, Debug)]
pub struct StopSignal(watch::Receiver<bool>);

impl StopSignal {
    /// A signal that fires when `shutdown` completes.
    pub fn new(shutdown: impl Future<Output = ()> + Send + 'static) -> StopSignal {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = tx.send(true);
        });
        StopSignal(rx)
    }

    /// Whether the signal has fired: from then on the process is going away, so it is no longer
    /// ready for new work (`/readyz`).
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once the signal has fired (at once if it already has).
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }
}

/// Runs `server`, which must itself stop accepting when `stop` fires, and returns its result;
/// or `None` when it had not finished `grace` after the signal (its remaining connections are
/// then dropped with it).
pub async fn drain<T>(
    server: impl Future<Output = T>,
    stop: &StopSignal,
    grace: Duration,
    listener: &'static str,
) -> Option<T> {
    let deadline = stop.stopped();
    tokio::select! {
        result = server => Some(result),
        _ = async {
            deadline.await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(listener, "drain grace of {grace:?} elapsed; closing remaining connections");
            None
        }
    }
}
