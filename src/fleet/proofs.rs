//! The fleet's memory of used DPoP proofs in Redis: `<prefix>dpop:<replay key>`.
//!
//! One round trip per DPoP request: `SET key <claim id> NX GET PX <ttl>` records the proof if
//! no replica has, and returns what was there in the same command, so two replicas racing with
//! one proof agree on a single first use. The claim id is random per claim: a command resent
//! after a lost connection finds its own id and still counts as the first use, where a bare
//! `SET NX` would call the legitimate request a replay. The key expires when the proof's `iat`
//! would refuse it anyway, so keys stay bounded by the proof rate times the proof lifetime.
//!
//! [`RedisProofReplay`] is the check crate's [`ProofReplayStore`]; without a fleet, proofs are
//! remembered per process ([`LocalProofReplay`](sessiongate_check::replay::LocalProofReplay)).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::keys::Keys;
use super::link::RedisLink;
use sessiongate_check::replay::{ProofReplayStore, ReplayError, ReplayFuture};

/// Used proofs in the shared Redis.
#[derive(Debug)]
pub struct RedisProofReplay {
    link: Arc<RedisLink>,
    keys: Keys,
}

impl RedisProofReplay {
    /// Proofs on `link` under `keys`.
    pub fn new(link: Arc<RedisLink>, keys: Keys) -> RedisProofReplay {
        RedisProofReplay { link, keys }
    }

    async fn set_if_absent(&self, key: [u8; 32], ttl: Duration) -> Result<bool, ReplayError> {
        let mut claim = [0u8; 16];
        aws_lc_rs::rand::fill(&mut claim)
            .map_err(|_| ReplayError::Unavailable("no randomness for a claim id".into()))?;
        let claim = URL_SAFE_NO_PAD.encode(claim);
        // Resent after a lost connection, it finds our own claim id if the first attempt
        // recorded the proof: still the first use.
        let previous = self
            .link
            .claim_first(self.keys.proof(&URL_SAFE_NO_PAD.encode(key)), &claim, ttl)
            .await
            .map_err(|error| ReplayError::Unavailable(error.to_string()))?;
        Ok(previous.is_none_or(|stored| stored == claim))
    }
}

impl ProofReplayStore for RedisProofReplay {
    fn claim(&self, key: [u8; 32], ttl: Duration) -> ReplayFuture<'_> {
        Box::pin(self.set_if_absent(key, ttl))
    }
}
