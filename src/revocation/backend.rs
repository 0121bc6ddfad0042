//! Opening the configured revocation backend: the live revocations, where new sessions are
//! pinned, and for Redis the follower that keeps this replica's mirror current.

use std::sync::Arc;
use std::time::Duration;

use super::redis::entry::Keys;
use super::redis::follower::Follower;
use super::redis::link::{RedisLink, Retry};
use super::settings::{RedisSettings, RevocationBackend};
use super::{FileStore, RedisStore, Revocations, StoreError};
use crate::health::Readiness;
use crate::pinning::RedisPins;
use sessiongate_check::pinning::{LocalPins, PinStore};
use sessiongate_core::time::UnixTime;

/// Longest pause between attempts to reach Redis at start-up.
const START_RETRY_MAX: Duration = Duration::from_secs(2);

/// An opened backend.
pub struct Backend {
    /// The live revocations (the local mirror, for Redis).
    pub revocations: Arc<Revocations>,
    /// Where new sessions are pinned.
    pub pins: Arc<dyn PinStore>,
    /// The fan-out follower's task, for Redis; aborted when this is dropped.
    pub follower: Option<FollowerTask>,
}

/// Aborts the follower when dropped, so a stopped server leaves no task reading Redis.
pub struct FollowerTask(tokio::task::JoinHandle<()>);

impl Drop for FollowerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Opens `backend` and loads every live revocation (older than `horizon` past its cut-off:
/// dropped). A corrupt store is an error. Redis is waited for: a replica that cannot read the
/// fleet's revocations must not judge requests, so it keeps retrying (and logging) and only
/// returns, to start serving, once the whole stream is loaded.
pub async fn open(
    backend: &RevocationBackend,
    horizon: Duration,
    readiness: &Readiness,
) -> Result<Backend, StoreError> {
    match backend {
        RevocationBackend::File(path) => {
            let store = FileStore::open(path)?;
            let revocations = Revocations::open(Box::new(store), horizon, UnixTime::now()).await?;
            Ok(Backend {
                revocations: Arc::new(revocations),
                pins: Arc::new(LocalPins),
                follower: None,
            })
        }
        RevocationBackend::Redis(settings) => open_redis(settings, horizon, readiness).await,
    }
}

async fn open_redis(
    settings: &RedisSettings,
    horizon: Duration,
    readiness: &Readiness,
) -> Result<Backend, StoreError> {
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
    Ok(Backend {
        revocations,
        pins: Arc::new(RedisPins::new(link, keys)),
        follower: Some(FollowerTask(tokio::spawn(follower.run()))),
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
