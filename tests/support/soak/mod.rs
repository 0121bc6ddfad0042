//! The soak's parts (`tests/soak.rs` includes this folder; no other test binary does).
//!
//! # Layout
//! - [`fleet`]: Redis and the replicas, and how a change is made and seen applied.
//! - [`model`]: the oracle, pure: what every answer must be.
//! - [`load`]: the request mix, the session pool, judging each answer.
//! - [`samples`]: resident memory and file descriptors from `/proc`; the level-off check.
//! - [`plot`]: the SVG of the samples.
//! - [`report`]: CSV, JSON and markdown of a run.

pub mod fleet;
pub mod load;
pub mod model;
pub mod plot;
pub mod report;
pub mod samples;
