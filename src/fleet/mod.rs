//! The Redis fleet: every replica shares revocations and pins through one Redis.
//!
//! A replica of a fleet writes each revocation to a Redis Stream and follows that stream, so a
//! revocation made at any replica is enforced at all of them, from a local mirror the hot path
//! reads without waiting on Redis; and it pins each new session's first workload in Redis, so a
//! token replayed from another workload is caught whichever replica it reaches. Everything
//! sessiongate knows about Redis (the connection, the key names, the stream's entry format)
//! is in this module, and only [`open`] and what it returns are visible outside it.
//!
//! # Layout
//! - [`link`]: the connection, replaced after failures (a write lost with it is resent once
//!   when idempotent), bounded in time; its errors say whether Redis may have run a command.
//! - `keys`: the key names under the configured prefix (pure).
//! - `entry`: how a revocation is written as a stream entry (pure).
//! - `revocations`: the stream as a [`RevocationStore`](crate::revocation::RevocationStore):
//!   durable and idempotent writes, loading, compaction.
//! - `follower`: the fan-out task applying every new entry to the local mirror.
//! - `pins`: fleet-wide pins (`SET NX GET`), the check crate's [`PinStore`].
//! - `proofs`: fleet-wide memory of used DPoP proofs (`SET NX GET PX`), the check crate's
//!   [`ProofReplayStore`].

mod entry;
mod follower;
mod keys;
pub mod link;
mod pins;
mod proofs;
mod revocations;

use std::sync::Arc;
use std::time::Duration;

use self::follower::Follower;
pub use self::follower::FollowerTask;
use self::keys::Keys;
use self::link::{RedisLink, Retry};
use self::pins::RedisPins;
use self::proofs::RedisProofReplay;
use self::revocations::RedisStore;
use crate::health::Readiness;
use crate::revocation::settings::RedisSettings;
use crate::revocation::{Revocations, StoreError};
use sessiongate_check::pinning::PinStore;
use sessiongate_check::replay::ProofReplayStore;
use sessiongate_core::time::UnixTime;

/// Longest pause between attempts to reach Redis at start-up.
const START_RETRY_MAX: Duration = Duration::from_secs(2);

/// This replica, joined to its fleet: what the server needs from Redis.
pub struct Fleet {
    /// The local mirror of the fleet's revocations; appends go to Redis first.
    pub revocations: Arc<Revocations>,
    /// Pins in Redis, shared by every replica.
    pub pins: Arc<dyn PinStore>,
    /// Used DPoP proofs in Redis, shared by every replica.
    pub proofs: Arc<dyn ProofReplayStore>,
    /// Keeps the mirror current; stops following when dropped.
    pub follower: FollowerTask,
}

/// Connects to the Redis `settings` name and loads every live revocation (older than `horizon`
/// past its cut-off: dropped), then starts following the stream. A corrupt stream is an error.
/// Redis is waited for: a replica that cannot read the fleet's revocations must not judge
/// requests, so it keeps retrying (and logging, and reporting the store unreachable to
/// `readiness`) and only returns, to start serving, once the whole stream is loaded.
pub async fn open(
    settings: &RedisSettings,
    horizon: Duration,
    readiness: &Readiness,
) -> Result<Fleet, StoreError> {
    let link = Arc::new(
        RedisLink::new(
            &settings.url,
            settings.tls_ca.as_ref().map(|ca| ca.pem.as_slice()),
            settings.timeout,
        )
        .map_err(|e| StoreError::Unavailable(format!("revocation.url: {e}")))?,
    );
    let keys = Keys::new(&settings.key_prefix);
    let mut pause = Duration::from_millis(100);
    let (revocations, after) = loop {
        let store = RedisStore::new(Arc::clone(&link), keys.clone(), settings.wait_replicas);
        let cursor = store.loaded_up_to();
        match Revocations::open(Box::new(store), horizon, UnixTime::now()).await {
            Ok(revocations) => {
                let after = *cursor.lock().expect("cursor lock");
                break (revocations, after);
            }
            // A read that got no answer changed nothing: wait and read again.
            Err(StoreError::Unavailable(error) | StoreError::Unconfirmed(error)) => {
                readiness.set_store_reachable(false);
                tracing::warn!(
                    %error,
                    "Redis unreachable; waiting to load every revocation before serving"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(START_RETRY_MAX);
            }
            Err(corrupt) => return Err(corrupt),
        }
    };
    readiness.set_store_reachable(true);
    warn_unless_persistent(&link).await;
    let revocations = Arc::new(revocations);
    let follower = Follower {
        link: Arc::clone(&link),
        keys: keys.clone(),
        after,
        revocations: Arc::clone(&revocations),
        readiness: readiness.clone(),
    };
    Ok(Fleet {
        revocations,
        pins: Arc::new(RedisPins::new(Arc::clone(&link), keys.clone())),
        proofs: Arc::new(RedisProofReplay::new(link, keys)),
        follower: follower.start(),
    })
}

/// An acknowledged revocation is only as durable as Redis' persistence: say so at start-up when
/// Redis runs without its append-only file. (Managed Redis may refuse `CONFIG`: then nothing is
/// said.)
async fn warn_unless_persistent(link: &RedisLink) {
    let reply: Result<Vec<String>, _> = link
        .query(
            redis::cmd("CONFIG").arg("GET").arg("appendonly"),
            Retry::Idempotent,
        )
        .await;
    if let Ok(pair) = reply
        && pair.get(1).is_some_and(|value| value == "no")
    {
        tracing::warn!(
            redis = link.describe(),
            "Redis runs with appendonly no: revocations acknowledged since its last snapshot \
             are lost if Redis restarts; set appendonly yes (appendfsync always or everysec)"
        );
    }
}
