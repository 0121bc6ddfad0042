//! The admin API: withdraw trust from live sessions and ask what the sidecar knows about one.
//!
//! It has its own listener (`admin.listen`), never the ext_authz port, so a network policy can
//! keep Envoy's port open to the mesh and the admin port to operators only. Every gRPC call needs
//! the admin bearer credential ([`credential`]). The gRPC service is served as an axum router,
//! so plain HTTP endpoints (the Shared Signals push endpoint) share the port.
//!
//! # Layout
//! - [`proto`]: the generated `sessiongate.admin.v1` types, client and server trait.
//! - [`convert`]: proto ⇄ domain conversion and input validation, at the edge.
//! - [`credential`]: the admin token (from the bytes the config loader read, or the environment)
//!   and checking it in constant time.
//! - [`settings`]: the `admin` section, converted (listener address, credential).
//! - [`service`]: the `Admin` service over the gate and the revocations.
//! - [`server`]: the listener.
//! - [`client`]: the CLI's side (`sessiongate admin …`).

pub mod client;
pub mod convert;
pub mod credential;
pub mod server;
pub mod service;
pub mod settings;

/// Generated from `proto/sessiongate/admin/v1/admin.proto` by `build.rs`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("sessiongate.admin.v1");
}

pub use credential::{AdminCredential, CredentialError};
pub use server::{AdminState, serve};
