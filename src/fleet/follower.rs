//! Fan-out: each replica follows the revocation stream and applies every new entry to its local
//! mirror, so the hot path never waits on Redis.
//!
//! The follower blocks in `XREAD` after the last entry id it applied. When the connection fails
//! (Redis stopped, network partition: a blocking read that outlives its deadline counts too), it
//! reports the store unreachable, logs it once, and reconnects with capped exponential back-off;
//! after reconnecting it first reads everything after its last id (catch-up), then replaces the
//! writers' shared connection and checks it answers ([`RedisLink::renew`]), and only then
//! reports the store reachable again: SERVING promises that the next `Revoke` and the next pin
//! work. Meanwhile the mirror keeps enforcing everything known.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::streams::StreamReadReply;

use super::entry::EntryId;
use super::keys::Keys;
use super::link::RedisLink;
use super::revocations::{PAGE, decode_entry};
use crate::health::Readiness;
use crate::revocation::{Revocations, StoreError};

/// How long one `XREAD` blocks on an idle stream. The reply deadline is this plus the link's
/// timeout, so a partition that swallows packets is noticed within their sum.
const BLOCK: Duration = Duration::from_secs(2);

/// First and longest pause between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Follows `keys`' stream through `link` after `after`, applying entries to `revocations` and
/// reporting reachability to `readiness`. Runs until its task is aborted.
pub struct Follower {
    /// The link to Redis (the follower opens its own connection on it).
    pub link: Arc<RedisLink>,
    /// Where the stream is.
    pub keys: Keys,
    /// The last entry already applied (from the start-up load).
    pub after: EntryId,
    /// The local mirror.
    pub revocations: Arc<Revocations>,
    /// Where reachability is reported.
    pub readiness: Readiness,
}

/// Aborts the follower when dropped, so a stopped server leaves no task reading Redis.
pub struct FollowerTask(tokio::task::JoinHandle<()>);

impl Drop for FollowerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Follower {
    /// Starts following on its own task, until the returned handle is dropped.
    pub fn start(self) -> FollowerTask {
        FollowerTask(tokio::spawn(self.run()))
    }

    /// Follows forever (see the module docs).
    async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        let mut reachable = true;
        loop {
            let Err(error) = self.connect_and_follow(&mut reachable, &mut backoff).await;
            if reachable {
                reachable = false;
                self.readiness.set_store_reachable(false);
                tracing::error!(
                    %error,
                    known = self.revocations.current().len(),
                    "Redis unreachable: enforcing the revocations already known; \
                     new revocations are refused until it is back"
                );
            } else {
                tracing::debug!(%error, "Redis still unreachable");
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Connects, catches up, then follows until the connection fails.
    async fn connect_and_follow(
        &mut self,
        reachable: &mut bool,
        backoff: &mut Duration,
    ) -> Result<std::convert::Infallible, StoreError> {
        let mut connection = self.link.dedicated(BLOCK + self.link.timeout()).await?;
        let mut caught_up = 0;
        loop {
            let applied = self.read(&mut connection, None).await?;
            caught_up += applied;
            if applied < PAGE {
                break;
            }
        }
        *backoff = BACKOFF_MIN;
        if !*reachable {
            // The writers' shared connection may be dead too (a restarted Redis closed it):
            // replace it and see it answer before saying Redis is back.
            self.link.renew().await?;
            *reachable = true;
            self.readiness.set_store_reachable(true);
            tracing::info!(
                caught_up,
                known = self.revocations.current().len(),
                "Redis reachable again; caught up with the revocations made meanwhile"
            );
        }
        loop {
            self.read(&mut connection, Some(BLOCK)).await?;
        }
    }

    /// One `XREAD` after the last applied id (blocking for `block` when given); applies what
    /// it returns and answers how many entries it read.
    async fn read(
        &mut self,
        connection: &mut MultiplexedConnection,
        block: Option<Duration>,
    ) -> Result<usize, StoreError> {
        let mut xread = redis::cmd("XREAD");
        xread.arg("COUNT").arg(PAGE);
        if let Some(block) = block {
            xread.arg("BLOCK").arg(block.as_millis() as u64);
        }
        xread
            .arg("STREAMS")
            .arg(self.keys.stream())
            .arg(self.after.to_string());
        let reply: Option<StreamReadReply> = xread
            .query_async(connection)
            .await
            .map_err(|e| self.link.unavailable(&e))?;
        let entries = reply
            .into_iter()
            .flat_map(|reply| reply.keys)
            .flat_map(|key| key.ids);
        let mut read = 0;
        for raw in entries {
            read += 1;
            let (id, revocation) = decode_entry(self.keys.stream(), &raw)?;
            self.after = id;
            match revocation {
                Ok(revocation) => self.revocations.apply(revocation),
                // Skipping is the lesser harm here: stopping would hold back every later
                // revocation too. The entry is still in Redis for a newer replica to read.
                Err(error) => tracing::error!(%error, "revocation entry skipped: unreadable"),
            }
        }
        Ok(read)
    }
}
