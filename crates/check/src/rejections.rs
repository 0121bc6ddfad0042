//! Recently rejected tokens, so the same bad bytes are never verified twice.
//!
//! Only verified tokens enter the session cache, so without this a client replaying one token
//! with a bad signature (and a known `kid`) would buy a full signature verification with every
//! request. A rejection is remembered under the token's canonical identity (the session key:
//! every re-encoding of the token shares it) for a short time, in a bounded cache, together
//! with the generation of the key ring it was judged against: once keys change (a rotation may
//! make a "bad" signature good), the memory no longer applies. A change of what verification
//! checks (issuers, audiences, algorithms) clears it through [`RecentRejections::clear`].
//!
//! moka, because this cache sees only the cache-miss path (never a cached session's request)
//! and needs a TTL and a size bound more than the last few hundred bytes per entry that made
//! the session cache hand-written.

use std::time::Duration;

use crate::session::SessionKey;
use sessiongate_core::token::TokenError;

/// How long and how many rejections are remembered (`limits.rejected_tokens`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RejectionMemory {
    /// How long a rejection is remembered; zero remembers none.
    pub ttl: Duration,
    /// Most rejections remembered at once.
    pub capacity: u64,
}

impl Default for RejectionMemory {
    /// 30 s, 100,000 tokens (a few tens of MiB at most, reached only under attack).
    fn default() -> RejectionMemory {
        RejectionMemory {
            ttl: Duration::from_secs(30),
            capacity: 100_000,
        }
    }
}

#[derive(Clone, Debug)]
struct Remembered {
    error: TokenError,
    key_generation: u64,
}

/// The memory of recent rejections; shared by every connection.
pub struct RecentRejections {
    /// `None` when `ttl` is zero.
    cache: Option<moka::sync::Cache<SessionKey, Remembered>>,
}

impl RecentRejections {
    /// A memory as `settings` say.
    pub fn new(settings: RejectionMemory) -> RecentRejections {
        let cache = (!settings.ttl.is_zero() && settings.capacity > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(settings.capacity)
                .time_to_live(settings.ttl)
                .build()
        });
        RecentRejections { cache }
    }

    /// Why the token with `key` was rejected, if that was decided against the keys of
    /// `key_generation` and not too long ago.
    pub fn recall(&self, key: &SessionKey, key_generation: u64) -> Option<TokenError> {
        let remembered = self.cache.as_ref()?.get(key)?;
        (remembered.key_generation == key_generation).then_some(remembered.error)
    }

    /// Remembers that the token with `key` was rejected for `error` against the keys of
    /// `key_generation`.
    pub fn remember(&self, key: SessionKey, error: TokenError, key_generation: u64) {
        if let Some(cache) = &self.cache {
            cache.insert(
                key,
                Remembered {
                    error,
                    key_generation,
                },
            );
        }
    }

    /// Forgets every rejection (what verification checks has changed).
    pub fn clear(&self) {
        if let Some(cache) = &self.cache {
            cache.invalidate_all();
        }
    }
}

impl std::fmt::Debug for RecentRejections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecentRejections")
            .field("entries", &self.cache.as_ref().map(|c| c.entry_count()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SessionKey {
        SessionKey::of_token(&format!("token-{n}"))
    }

    #[test]
    fn a_rejection_is_recalled_only_against_the_same_keys() {
        let memory = RecentRejections::new(RejectionMemory::default());
        assert_eq!(memory.recall(&key(1), 7), None);
        memory.remember(key(1), TokenError::BadSignature, 7);
        assert_eq!(memory.recall(&key(1), 7), Some(TokenError::BadSignature));
        assert_eq!(memory.recall(&key(1), 8), None, "keys changed since");
        assert_eq!(memory.recall(&key(2), 7), None);
        memory.clear();
        assert_eq!(memory.recall(&key(1), 7), None);
    }

    #[test]
    fn a_zero_ttl_remembers_nothing() {
        let memory = RecentRejections::new(RejectionMemory {
            ttl: Duration::ZERO,
            capacity: 10,
        });
        memory.remember(key(1), TokenError::BadSignature, 0);
        assert_eq!(memory.recall(&key(1), 0), None);
    }
}
