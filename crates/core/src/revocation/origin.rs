//! Who added a revocation, as a bounded kind for counting: the free-text origin (`admin`,
//! `ssf:<issuer>`) names transmitters, which must not become unbounded metric labels.

use std::sync::atomic::{AtomicU64, Ordering};

/// The kind of a revocation's origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OriginKind {
    /// The admin API (`sessiongate admin revoke`).
    Admin,
    /// A Shared Signals (CAEP) event.
    Ssf,
    /// Anything else.
    Other,
}

impl OriginKind {
    /// Every kind, for metrics.
    pub const ALL: [OriginKind; 3] = [OriginKind::Admin, OriginKind::Ssf, OriginKind::Other];

    /// The kind of `origin` (`admin`, `ssf:<issuer>`, …).
    pub fn of(origin: &str) -> OriginKind {
        match origin.split(':').next() {
            Some("admin") => OriginKind::Admin,
            Some("ssf") => OriginKind::Ssf,
            _ => OriginKind::Other,
        }
    }

    /// The stable label value.
    pub fn as_str(self) -> &'static str {
        match self {
            OriginKind::Admin => "admin",
            OriginKind::Ssf => "ssf",
            OriginKind::Other => "other",
        }
    }
}

/// Revocations added through this process, per origin kind.
#[derive(Debug, Default)]
pub struct AddedByOrigin([AtomicU64; 3]);

impl AddedByOrigin {
    /// Counts one revocation from `origin`.
    pub fn record(&self, origin: &str) {
        self.0[OriginKind::of(origin) as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// How many came from `kind`.
    pub fn get(&self, kind: OriginKind) -> u64 {
        self.0[kind as usize].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_fold_into_a_bounded_set_of_kinds() {
        assert_eq!(OriginKind::of("admin"), OriginKind::Admin);
        assert_eq!(OriginKind::of("ssf:https://idp.example"), OriginKind::Ssf);
        assert_eq!(OriginKind::of("test"), OriginKind::Other);
        assert_eq!(OriginKind::of(""), OriginKind::Other);
        let added = AddedByOrigin::default();
        added.record("ssf:a");
        added.record("ssf:b");
        assert_eq!(added.get(OriginKind::Ssf), 2);
        assert_eq!(added.get(OriginKind::Admin), 0);
    }
}
