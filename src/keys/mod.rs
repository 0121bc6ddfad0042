//! Keeping issuers' keys current: where they come from, when they are fetched again, and what
//! happens when a source fails.
//!
//! # Layout
//!
//! - [`source`]: [`KeyOrigin`], the one shape of a key source (`jwks_file`, `jwks_uri`, OIDC
//!   discovery) for token issuers and Shared Signals transmitters alike, and [`source::fetch`],
//!   the one way to load it: bounded time and size, a file read on a blocking thread.
//! - [`settings`]: an issuer's key settings converted from its config section (and its JWKS
//!   file's bytes, as the config loader read them); the JWKS file check transmitters share.
//! - [`schedule`]: **the rules**, pure: refresh intervals from `Cache-Control`, the unknown-`kid`
//!   rate limit, and when the last good set is too old to trust.
//! - [`refresh`]: one background task per issuer that applies those rules, the
//!   [`KeyManager`] that starts and replaces them on reload, and the [`KeyRefresher`] handle the
//!   ext_authz service uses when a token names a key the issuer's set lacks.
//!
//! Keys are installed only through [`sessiongate_token::KeyRing::replace`], so a key that leaves its
//! issuer's set retires at once, and every cached session verified with it is denied
//! `unknown_key` on its next request.

pub mod refresh;
pub mod schedule;
pub mod settings;
pub mod source;

pub use refresh::{KeyLoadError, KeyManager, KeyRefresher, UNKNOWN_KEY_WAIT};
pub use schedule::{RefreshBounds, cache_control_max_age};
pub use source::{KeyFetchError, KeyOrigin, discovery_url, key_url};
