//! Where a session's first workload is recorded: pinning, fleet-wide or per replica.
//!
//! With `binding.pin_first_workload`, the first workload allowed for a session owns it; any
//! other workload presenting the same token is a replay. The gate decides *that* a fresh session
//! needs a pin (and for whom); a [`PinStore`] records it and answers who owns the session, and
//! the gate then finalises the verdict ([`crate::gate::Gate::settle_pin`]). Keeping the store
//! behind this small async trait keeps the decision pure and the gate synchronous.
//!
//! - [`LocalPins`]: the session cache of this process is the record (one replica).
//! - the server's Redis fleet: one `SET NX GET` per new session in the shared Redis, so a token
//!   pinned at one replica is a replay at every other.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::session::{Session, SessionKey};
use sessiongate_core::workload::PinnedWorkload;

/// A boxed future, so pin stores can be used as trait objects.
pub type PinFuture<'a> =
    Pin<Box<dyn Future<Output = Result<PinnedWorkload, PinError>> + Send + 'a>>;

/// Records the first workload of a session.
pub trait PinStore: std::fmt::Debug + Send + Sync + 'static {
    /// Pins the session `key` (cached here as `session`) to `identity` unless it is pinned
    /// already, for at most `ttl` (the session's remaining lifetime); answers the workload that
    /// owns it now, which is `identity` exactly when this claim won.
    fn claim<'a>(
        &'a self,
        key: &'a SessionKey,
        session: &'a Session,
        identity: PinnedWorkload,
        ttl: Duration,
    ) -> PinFuture<'a>;
}

/// Why the owner of a session could not be established.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// The shared store cannot be reached.
    #[error("pin store unavailable: {0}")]
    Unavailable(String),
    /// The store holds something that is not a pin.
    #[error("pin store holds an unreadable pin: {0}")]
    Unreadable(String),
}

/// Pins kept in this process's session cache: first wins, per replica.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalPins;

impl PinStore for LocalPins {
    fn claim<'a>(
        &'a self,
        _key: &'a SessionKey,
        session: &'a Session,
        identity: PinnedWorkload,
        _ttl: Duration,
    ) -> PinFuture<'a> {
        Box::pin(async move { Ok(session.pin(identity).clone()) })
    }
}
