//! Support shared by the integration tests (`mod support;`).
//!
//! # Layout
//! - [`runtime`]: one tokio runtime per test binary, so shared servers outlive single tests.
//! - [`pki`]: CA, Envoy's server certificate and the workloads' client certificates.
//! - [`tokens`]: minting valid tokens from the fixture keys, and forging invalid ones.
//! - [`echo`]: the upstream that reports the headers it received.
//! - [`process`]: child processes that die with the test binary.
//! - [`sessiongate`]: the real binary on an ephemeral port.
//! - [`envoy_config`] / [`envoy`]: the Envoy 1.40 bootstrap, and running it.
//! - [`policy`]: the sessiongate config the end-to-end tests exercise.
//! - [`jwks_server`]: an identity provider's JWKS and discovery endpoints, changeable.
//! - [`introspection_server`]: an identity provider's token introspection endpoint
//!   (RFC 7662) that checks client credentials, can revoke, fail, hang, and counts calls.
//! - [`client`]: mTLS clients, one per workload.
//! - [`reply`]: what came back, and the assertions on it.
//! - [`stack`]: all of the above wired together.
//! - [`ssf`]: a Shared Signals transmitter: minting SETs and pushing them to the admin listener.
//! - [`admin`]: an admin listener and revocation log for a stack, and an admin client.
//! - [`redis`]: a real `redis-server` (optionally TLS-only and with a password) that can be
//!   stopped, killed, frozen and restarted; a proxy to cut one replica off from it; and one
//!   that loses a chosen command or silences the connections open at a moment (`Sever`).
//!
//! Every test binary uses a different subset, hence the `dead_code` allowance.
#![allow(dead_code, unused_imports)]

pub mod admin;
pub mod client;
pub mod echo;
pub mod envoy;
pub mod envoy_config;
pub mod introspection_server;
pub mod jwks_server;
pub mod module;
pub mod pki;
pub mod policy;
pub mod process;
pub mod redis;
pub mod reply;
pub mod runtime;
pub mod sessiongate;
pub mod ssf;
pub mod stack;
pub mod tokens;

pub use pki::Workload;
pub use reply::SendExt;
pub use runtime::run;
pub use stack::Stack;

/// Replaces `path`'s content atomically (write beside it, then rename), as a deployment tool
/// would; a reader never sees a half-written file.
pub fn replace_file(path: &std::path::Path, content: &str) {
    let temporary = path.with_extension("tmp-write");
    std::fs::write(&temporary, content).expect("write temporary file");
    std::fs::rename(&temporary, path).expect("rename over the file");
}
