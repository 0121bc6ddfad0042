//! Opening the configured stores: the live revocations, where new sessions are pinned and used
//! DPoP proofs remembered, and for
//! a fleet the follower that keeps this replica's mirror current.
//!
//! The one place that knows both kinds of store: the file log with per-process pins
//! ([`crate::revocation::file`], [`LocalPins`]), or the Redis fleet ([`crate::fleet`]).

use std::sync::Arc;
use std::time::Duration;

use crate::fleet::{self, FollowerTask};
use crate::health::Readiness;
use crate::revocation::file::FileStore;
use crate::revocation::settings::RevocationBackend;
use crate::revocation::{Revocations, StoreError};
use sessiongate_check::pinning::{LocalPins, PinStore};
use sessiongate_check::replay::{LocalProofReplay, ProofReplayStore};
use sessiongate_core::time::UnixTime;

/// The opened stores.
pub struct Stores {
    /// The live revocations (the local mirror, for Redis).
    pub revocations: Arc<Revocations>,
    /// Where new sessions are pinned.
    pub pins: Arc<dyn PinStore>,
    /// Where used DPoP proofs are remembered.
    pub proofs: Arc<dyn ProofReplayStore>,
    /// The fan-out follower's task, for Redis; aborted when this is dropped.
    pub follower: Option<FollowerTask>,
}

/// Opens `backend` and loads every live revocation (older than `horizon` past its cut-off:
/// dropped). A corrupt store is an error. Redis is waited for: a replica that cannot read the
/// fleet's revocations must not judge requests, so it keeps retrying (and logging) and only
/// returns, to start serving, once the whole stream is loaded ([`fleet::open`]).
pub async fn open(
    backend: &RevocationBackend,
    horizon: Duration,
    replay_entries: usize,
    readiness: &Readiness,
) -> Result<Stores, StoreError> {
    match backend {
        RevocationBackend::File(path) => {
            let store = FileStore::open(path)?;
            let revocations = Revocations::open(Box::new(store), horizon, UnixTime::now()).await?;
            Ok(Stores {
                revocations: Arc::new(revocations),
                pins: Arc::new(LocalPins),
                proofs: Arc::new(LocalProofReplay::new(replay_entries)),
                follower: None,
            })
        }
        RevocationBackend::Redis(settings) => {
            let fleet = fleet::open(settings, horizon, readiness).await?;
            Ok(Stores {
                revocations: fleet.revocations,
                pins: fleet.pins,
                proofs: fleet.proofs,
                follower: Some(fleet.follower),
            })
        }
    }
}
