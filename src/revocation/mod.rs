//! Revocation stores: where revocations are kept, and the handle that applies them.
//!
//! The model (what a revocation is, whom it matches, when it can be forgotten) is the core's
//! [`sessiongate_core::revocation`], re-exported here; this module persists it.
//!
//! A [`Revocation`] names which sessions it kills with a [`Selector`] and a cut-off: it applies
//! to tokens *issued at or before* `issued_before` (by default, the moment of revocation). So
//! "revoke alice" kills every session alice has now, and alice can sign in again; and every
//! entry can be forgotten once no token it could match can still pass the age rule
//! ([`Revocation::forget_after`]), which bounds the set's growth. That moment is fixed when the
//! entry is recorded and only ever extended, never recomputed from a narrower policy.
//!
//! [`RevocationSet`] is the in-memory index the decision reads; it is pure and immutable
//! (replaced whole through [`Revocations`] when an entry is added). Persistence sits behind
//! [`RevocationStore`], so the embedded file log ([`file`](mod@file)) and a fleet's shared Redis stream
//! ([`crate::fleet`]) slot in alike; [`crate::stores`] opens the configured one.

pub mod file;
pub mod settings;
mod store;

pub use file::FileStore;
pub use sessiongate_core::revocation::*;
pub use store::{RevocationStore, Revocations, StoreError, StoreFuture};
