//! Peer certificates' thumbprints, cached per distinct certificate text.
//!
//! Decoding Envoy's URL-encoded PEM and hashing the DER costs a few microseconds, and a mesh
//! peer presents the same certificate on thousands of requests.

use std::fmt;

use sessiongate_core::workload::{MAX_CERTIFICATE_TEXT, Thumbprint};

/// Thumbprints of recently seen peer certificates, keyed by Envoy's encoded text.
///
/// Bounded, so a peer cycling certificates cannot grow it without limit.
pub struct ThumbprintCache {
    entries: moka::sync::Cache<Box<str>, Thumbprint>,
}

impl ThumbprintCache {
    /// A cache for at most `capacity` distinct certificates.
    pub fn new(capacity: u64) -> ThumbprintCache {
        ThumbprintCache {
            entries: moka::sync::Cache::new(capacity),
        }
    }

    /// Thumbprint of `encoded`, or `None` when it is empty, oversized or unreadable.
    pub fn thumbprint(&self, encoded: &str) -> Option<Thumbprint> {
        if encoded.is_empty() || encoded.len() > MAX_CERTIFICATE_TEXT {
            return None;
        }
        if let Some(hit) = self.entries.get(encoded) {
            return Some(hit);
        }
        let thumbprint = Thumbprint::of_peer_certificate(encoded)?;
        self.entries.insert(encoded.into(), thumbprint);
        Some(thumbprint)
    }
}

impl fmt::Debug for ThumbprintCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThumbprintCache")
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}
