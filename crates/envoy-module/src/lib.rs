//! sessiongate inside Envoy: the same check use case as the ext_authz server, run on Envoy's
//! worker threads by the HTTP filter `envoy.filters.http.dynamic_modules`, with no network hop
//! per request.
//!
//! Envoy `dlopen`s `libsessiongate_envoy.so` and calls the hooks in [`hooks`]; the module calls
//! back through the ABI declared in [`abi`]. The filter config names a sessiongate YAML file
//! (the same format, validated by the same loader, refused with the same message); a per-route
//! config names a policy, as `context_extensions["sessiongate.policy"]` does for ext_authz.
//!
//! - [`instance`]: one running sessiongate per config file and Envoy process, shared by every
//!   worker (one session cache), with its background work on a thread of its own;
//! - [`filter`]: one request: Envoy's headers and connection attributes → request facts, the
//!   check use case, and its outcome → a local reply or upstream headers;
//! - [`stats`]: decisions in Envoy's own stats, counted in the module and flushed once a second.
//!
//! Unsafe code is confined to [`abi`] (the FFI) and [`hooks`] (the exported functions); every
//! hook catches panics, since one crossing `extern "C"` would abort Envoy.

#![warn(missing_docs)]

pub mod abi;
pub mod filter;
pub mod hooks;
pub mod instance;
pub mod stats;
