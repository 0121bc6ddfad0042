//! The fleet's revocation store: a Redis Stream every replica writes to and follows.
//!
//! # Design
//!
//! - **Durable write**: [`RedisStore::append`] is one `XADD` to `<prefix>revocations`
//!   (pipelined with `WAIT` for replicas on the same connection, since `WAIT` covers only its
//!   own connection's writes); it returns `Ok` only once Redis answered, so an acknowledged
//!   revocation is in Redis (how durable Redis itself is, is its persistence configuration:
//!   `appendonly yes`, `appendfsync always` for no loss on power failure). A write sent without
//!   a reply is [`StoreError::Unconfirmed`], not "unavailable": Redis may still apply it.
//! - **Idempotent write**: when the connection drops with the `XADD` in flight, it is sent
//!   again on a fresh connection ([`Retry::Idempotent`]). If both landed, the stream holds
//!   two equal entries; the mirror ignores an entry equal to one it holds, and loading drops
//!   the duplicate, so it is applied, listed and counted once.
//! - **Fan-out**: every replica runs a [`follower`](super::follower) that blocks in `XREAD`
//!   after the last entry id it applied and applies each new entry to its local mirror with
//!   [`Revocations::apply`](crate::revocation::Revocations::apply). The hot path reads only
//!   the mirror.
//! - **Exactly once locally**: the replica that wrote an entry applies it when the write is
//!   acknowledged (so its own next request is denied at once) and then sees it again in the
//!   stream; the mirror ignores an entry equal to one it holds, so the echo changes nothing.
//! - **Catch-up**: the stream keeps every entry until compaction trims it, and entry ids are
//!   ordered, so a follower that reconnects reads everything after its last id: nothing written
//!   while it was cut off is lost. At start-up [`RevocationStore::load`] reads the whole stream
//!   and records where the follower must begin.
//! - **Compaction** trims entries recorded well before the oldest live one (`XTRIM MINID`),
//!   with a margin for clocks that disagree.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::streams::StreamRangeReply;

use super::entry::{self, EntryId};
use super::keys::Keys;
use super::link::{LinkError, RedisLink, Retry};
use crate::revocation::{Revocation, RevocationStore, StoreError, StoreFuture};
use sessiongate_core::time::UnixTime;

/// Entries read per round trip when loading or catching up.
pub const PAGE: usize = 1000;

/// Compaction keeps entries recorded up to this long before the oldest live one: entry ids
/// carry Redis' clock, `recorded_at` the writing replica's, and the two may disagree.
const COMPACTION_MARGIN: Duration = Duration::from_secs(600);

/// The Redis-backed store (see the module docs).
pub struct RedisStore {
    link: Arc<RedisLink>,
    keys: Keys,
    /// Replicas of Redis that must hold a write before it is acknowledged (`WAIT`); 0: none.
    wait_replicas: u32,
    /// The id of the last entry [`RevocationStore::load`] read: the follower starts after it.
    /// Shared, because the store is boxed away into `Revocations` before the follower starts.
    /// A std `Mutex`: set once per load, never held across an await.
    loaded_up_to: Arc<Mutex<EntryId>>,
}

impl RedisStore {
    /// A store on `link` under `keys`.
    pub fn new(link: Arc<RedisLink>, keys: Keys, wait_replicas: u32) -> RedisStore {
        RedisStore {
            link,
            keys,
            wait_replicas,
            loaded_up_to: Arc::new(Mutex::new(EntryId::START)),
        }
    }

    /// Where the follower must start (after the last entry the load read), readable after the
    /// store was handed over.
    pub fn loaded_up_to(&self) -> Arc<Mutex<EntryId>> {
        Arc::clone(&self.loaded_up_to)
    }

    /// Reads entries after `after` (at most [`PAGE`]) with their ids, oldest first.
    pub async fn read_after(
        &self,
        after: EntryId,
    ) -> Result<Vec<(EntryId, Revocation)>, StoreError> {
        let reply: StreamRangeReply = self
            .link
            .query(
                redis::cmd("XRANGE")
                    .arg(self.keys.stream())
                    .arg(format!("({after}"))
                    .arg("+")
                    .arg("COUNT")
                    .arg(PAGE),
                Retry::Idempotent,
            )
            .await?;
        decode_entries(self.keys.stream(), reply.ids)
    }

    async fn load_all(&self) -> Result<Vec<Revocation>, StoreError> {
        let mut all = Vec::new();
        // The JSON of each revocation kept: a write retried after a lost connection may have
        // landed twice (see the module docs), and the copy must not be listed twice.
        let mut seen = HashSet::new();
        let mut cursor = EntryId::START;
        loop {
            let page = self.read_after(cursor).await?;
            let done = page.len() < PAGE;
            for (id, revocation) in page {
                cursor = id;
                let json = serde_json::to_string(&revocation).expect("a revocation serialises");
                if seen.insert(json) {
                    all.push(revocation);
                }
            }
            if done {
                break;
            }
        }
        *self.loaded_up_to.lock().expect("loaded_up_to lock") = cursor;
        Ok(all)
    }

    async fn add(&self, revocation: &Revocation) -> Result<(), StoreError> {
        let mut xadd = redis::cmd("XADD");
        xadd.arg(self.keys.stream()).arg("*");
        for (field, value) in entry::encode(revocation) {
            xadd.arg(field).arg(value);
        }
        if self.wait_replicas == 0 {
            // Sent twice at most, and a duplicate entry is ignored (see the module docs).
            let _id: String = self.link.query(&xadd, Retry::Idempotent).await?;
            return Ok(());
        }
        // `WAIT` counts the replicas holding its own connection's writes: it must travel with
        // the `XADD`, and the pair is resent together or not at all. It waits three quarters of
        // the reply bound, so its count arrives before the link stops waiting for it.
        let timeout_ms = u64::try_from(self.link.timeout().as_millis()).unwrap_or(u64::MAX);
        let mut pair = redis::pipe();
        pair.add_command(xadd)
            .cmd("WAIT")
            .arg(self.wait_replicas)
            .arg((timeout_ms - timeout_ms / 4).max(1));
        let (_id, acknowledged): (String, u32) = self
            .link
            .query(&pair, Retry::Idempotent)
            .await
            .map_err(|error| match error {
                // Either command's error comes back alone: if it was `WAIT`'s, the `XADD` ran.
                LinkError::Refused(why) => StoreError::Unconfirmed(why),
                other => other.into(),
            })?;
        if acknowledged < self.wait_replicas {
            return Err(StoreError::Unconfirmed(format!(
                "{}: only {acknowledged} of {} Redis replicas confirmed the write in time (it is \
                 on the primary, so it applies unless the primary fails over before a replica \
                 copies it)",
                self.link.describe(),
                self.wait_replicas
            )));
        }
        Ok(())
    }

    async fn trim(&self, live: &[Revocation]) -> Result<(), StoreError> {
        let oldest = live
            .iter()
            .map(|r| r.recorded_at)
            .min()
            .unwrap_or_else(UnixTime::now);
        let keep_from = oldest.as_millis().saturating_sub(
            u64::try_from(COMPACTION_MARGIN.as_millis()).expect("margin fits in u64"),
        );
        let _trimmed: u64 = self
            .link
            .query(
                redis::cmd("XTRIM")
                    .arg(self.keys.stream())
                    .arg("MINID")
                    .arg(keep_from),
                Retry::Idempotent,
            )
            .await?;
        Ok(())
    }
}

/// Decodes stream entries; one that is not a revocation is corruption (never skipped at load:
/// a revocation silently dropped would re-admit sessions).
pub fn decode_entries(
    stream: &str,
    ids: Vec<redis::streams::StreamId>,
) -> Result<Vec<(EntryId, Revocation)>, StoreError> {
    ids.iter()
        .map(|raw| {
            let (id, revocation) = decode_entry(stream, raw)?;
            Ok((id, revocation?))
        })
        .collect()
}

/// Decodes one stream entry: its id (which must parse: Redis wrote it) and its revocation.
pub fn decode_entry(
    stream: &str,
    raw: &redis::streams::StreamId,
) -> Result<(EntryId, Result<Revocation, StoreError>), StoreError> {
    let id = EntryId::parse(&raw.id).ok_or_else(|| {
        StoreError::Corrupt(format!("{stream}: entry id {:?} is malformed", raw.id))
    })?;
    let fields: HashMap<String, String> = raw
        .map
        .iter()
        .filter_map(|(k, v)| {
            redis::from_redis_value::<String>(v)
                .ok()
                .map(|v| (k.clone(), v))
        })
        .collect();
    let revocation =
        entry::decode(&raw.id, &fields).map_err(|e| StoreError::Corrupt(format!("{stream}: {e}")));
    Ok((id, revocation))
}

impl RevocationStore for RedisStore {
    fn describe(&self) -> String {
        format!(
            "redis {} stream {}",
            self.link.describe(),
            self.keys.stream()
        )
    }

    fn load(&self) -> StoreFuture<'_, Vec<Revocation>> {
        Box::pin(self.load_all())
    }

    fn append<'a>(&'a self, revocation: &'a Revocation) -> StoreFuture<'a, ()> {
        Box::pin(self.add(revocation))
    }

    fn compact<'a>(&'a self, live: &'a [Revocation]) -> StoreFuture<'a, ()> {
        Box::pin(self.trim(live))
    }
}
