//! sessiongate's core: **why a request is allowed or denied**, with no I/O.
//!
//! Everything here is pure data and pure functions: the clock, the verified token, the
//! session's state and the revocations are arguments, so every rule is unit-tested exactly and
//! the same answer comes out whichever adapter (the ext_authz server, the in-process module)
//! asked. This crate's dependency tree holds no async runtime, RPC, HTTP, Redis or telemetry
//! library; a test in the server package checks that on every run.
//!
//! # Layout
//!
//! - [`decision`]: **the rules**, one ordered list that `decide` stops at and `explain`
//!   collects.
//! - [`deny`]: deny reasons, HTTP statuses and RFC 6750 / RFC 9470 challenges.
//! - [`dpop`]: DPoP proofs (RFC 9449) as the rules read them, and the `htu` comparison.
//! - [`request`]: the facts of one request, independent of Envoy's types.
//! - [`route`], [`policy`], [`dry_run`]: the compiled configuration the rules read.
//! - [`token`]: what a verified token says (verification itself is `sessiongate-token`).
//! - [`workload`]: SPIFFE IDs, allow-list patterns, certificate thumbprints, pinning identity.
//! - [`revocation`]: revocations and the immutable index the decision reads.
//! - [`intern`]: the bounded table of strings many sessions share; [`time`]: wall-clock
//!   instants passed into the decision.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod decision;
pub mod deny;
pub mod dpop;
pub mod dry_run;
pub mod intern;
pub mod policy;
pub mod request;
pub mod revocation;
pub mod route;
pub mod time;
pub mod token;
pub mod workload;
