//! OpenID Shared Signals (SSF 1.0 / CAEP 1.0) receiver: identity providers push Security Event
//! Tokens (RFC 8417) and sessiongate turns them into revocations that bite on the next request.
//!
//! An identity provider learns things sessiongate cannot see: a session was ended, a password
//! changed, a device fell out of compliance. Pushed as signed events (RFC 8935), they become
//! [`crate::revocation::Revocation`]s, stored durably before the push is acknowledged.
//!
//! # Layout
//!
//! - [`verify`]: SET verification (signature, `typ`, `iss`, `aud`, `iat`, `jti`); pure.
//! - [`subject`]: RFC 9493 subject identifiers → revocation selectors; pure.
//! - [`events`]: CAEP events → revocations; pure.
//! - [`replay`]: the recently seen `jti`s per transmitter.
//! - [`receiver`]: the steps in order, and the store.
//! - `push`: the RFC 8935 HTTP endpoint (axum), mapping outcomes to 202 / 400 / 503.
//! - [`settings`]: the `ssf` section, converted; a transmitter's keys are a
//!   [`crate::keys::KeyOrigin`], fetched when the receiver starts.
//! - [`SetError`]: refusals, as RFC 8935 error codes.

mod error;
pub mod events;
mod push;
pub mod receiver;
pub mod replay;
pub mod settings;
pub mod subject;
pub mod verify;

#[cfg(test)]
mod testing;

pub use error::SetError;
pub use push::{MAX_SET_BYTES, router};
pub use receiver::{PUSH_BUDGET, Receipt, ReceiveError, SsfReceiver, SsfSetupError};
pub use verify::{PrecheckedSet, SecurityEvent, SetVerifier, Transmitter};
