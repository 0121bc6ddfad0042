//! sessiongate's check use case: one request from its facts to the final answer.
//!
//! [`check::CheckUseCase`] is the one place a check happens, whichever adapter asked: it loads
//! the policy once, looks the session up or verifies its token (once per session), asks the
//! core's decision, refreshes keys on an unknown `kid`, claims the pin of a new session, and
//! settles dry-run. What must wait (a key refresh, a pin claim in Redis) sits behind the
//! small traits [`check::KeyRefresh`] and [`pinning::PinStore`] that the adapter supplies, so
//! this crate, like the core, needs no async runtime and does no I/O of its own.
//!
//! # Layout
//!
//! - [`check`]: the use case; [`gate`]: its synchronous part (cache, verification, decision);
//!   [`answer`]: what an outcome tells the client and the upstream, for every adapter.
//! - [`policy`]: the compiled policy a check runs under, swapped whole on reload.
//! - [`session`]: verified sessions and their bounded cache.
//! - [`pinning`]: where a new session's first workload is recorded; [`replay`]: where DPoP
//!   proofs are remembered, so each is accepted once.
//! - [`introspection`]: asking an issuer about an opaque token (RFC 7662), the trait the
//!   server supplies.
//! - [`revocations`]: the revocation set in force, kept current by the server's stores.
//! - [`budget`]: how many verifications each caller may cause; [`rejections`]: recently
//!   rejected tokens, never verified twice; [`thumbprints`]: peer certificates' thumbprints.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod answer;
pub mod budget;
pub mod check;
pub mod gate;
pub mod introspection;
pub mod pinning;
pub mod policy;
pub mod rejections;
pub mod replay;
pub mod revocations;
pub mod session;
pub mod thumbprints;
