//! The fleet's pins in Redis: `<prefix>pin:<session hash>` holds the owning workload.
//!
//! One round trip per new session: `SET key me NX GET PX <remaining lifetime>` sets the pin if
//! absent and returns the previous value in the same command (Redis 7.0 or later), so two
//! replicas racing for one session agree on a single owner. Repeated requests never reach
//! Redis: the owner is cached in the local session record. The key expires with the session,
//! so pins do not accumulate.
//!
//! [`RedisPins`] is the check crate's [`PinStore`]; without a fleet, pins stay in each
//! process's session cache ([`LocalPins`](sessiongate_check::pinning::LocalPins)).

use std::sync::Arc;
use std::time::Duration;

use super::keys::Keys;
use super::link::RedisLink;
use sessiongate_check::pinning::{PinError, PinFuture, PinStore};
use sessiongate_check::session::{Session, SessionKey};
use sessiongate_core::workload::{PinnedWorkload, Thumbprint};

/// Pins in the shared Redis.
#[derive(Debug)]
pub struct RedisPins {
    link: Arc<RedisLink>,
    keys: Keys,
}

impl RedisPins {
    /// Pins on `link` under `keys`.
    pub fn new(link: Arc<RedisLink>, keys: Keys) -> RedisPins {
        RedisPins { link, keys }
    }

    async fn set_if_absent(
        &self,
        key: &SessionKey,
        identity: PinnedWorkload,
        ttl: Duration,
    ) -> Result<PinnedWorkload, PinError> {
        // Sent again after a lost connection, it answers as the first would have: if the first
        // set the pin, the second returns it (our own identity: the claim won); if not, it
        // claims now. The expiry is only set when the pin is.
        let previous = self
            .link
            .claim_first(self.keys.pin(&key.full()), &encode(&identity), ttl)
            .await
            .map_err(|error| PinError::Unavailable(error.to_string()))?;
        match previous {
            None => Ok(identity),
            Some(stored) => decode(&stored).ok_or_else(|| {
                PinError::Unreadable(format!("{}: {stored:?}", self.link.describe()))
            }),
        }
    }
}

impl PinStore for RedisPins {
    fn claim<'a>(
        &'a self,
        key: &'a SessionKey,
        _session: &'a Session,
        identity: PinnedWorkload,
        ttl: Duration,
    ) -> PinFuture<'a> {
        Box::pin(self.set_if_absent(key, identity, ttl))
    }
}

/// The stored form of a pin: `spiffe:<id>`, `x5t:<base64url SHA-256>` or `ip:<address>`.
pub fn encode(workload: &PinnedWorkload) -> String {
    match workload {
        PinnedWorkload::Spiffe(id) => format!("spiffe:{id}"),
        PinnedWorkload::Certificate(thumbprint) => format!("x5t:{thumbprint}"),
        PinnedWorkload::Address(address) => format!("ip:{address}"),
    }
}

/// Reads the stored form back; `None` for anything else.
pub fn decode(stored: &str) -> Option<PinnedWorkload> {
    let (kind, value) = stored.split_once(':')?;
    if value.is_empty() {
        return None;
    }
    match kind {
        "spiffe" => Some(PinnedWorkload::Spiffe(value.into())),
        "x5t" => {
            Thumbprint::from_base64url(value).map(|t| PinnedWorkload::Certificate(Box::new(t)))
        }
        "ip" => Some(PinnedWorkload::Address(value.into())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_pin_round_trips() {
        for pin in [
            PinnedWorkload::Spiffe("spiffe://cluster.local/ns/shop/sa/frontend".into()),
            PinnedWorkload::Certificate(Box::new(Thumbprint([7; 32]))),
            PinnedWorkload::Address("10.0.0.7".into()),
            PinnedWorkload::Address("::1".into()),
        ] {
            assert_eq!(decode(&encode(&pin)), Some(pin));
        }
    }

    #[test]
    fn anything_else_is_not_a_pin() {
        for stored in ["", "spiffe:", "frontend", "x5t:short", "mac:aa:bb"] {
            assert_eq!(decode(stored), None, "{stored}");
        }
    }
}
