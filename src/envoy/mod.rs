//! The Envoy ext_authz v3 adapter: translates, never decides.
//!
//! [`wire`] is the part of a `CheckRequest` sessiongate decodes; [`request`] turns it into
//! [`sessiongate_core::request::RequestFacts`]; [`response`] turns the gate's [`sessiongate_check::gate::Outcome`] into
//! a `CheckResponse`; [`service`] glues them to the [`sessiongate_check::gate::Gate`], [`server`] serves
//! it over gRPC (one message in and out of each call, bounded: [`grpc`]), and [`threads`] runs
//! each connection on one thread, under the listener's cap and a handshake deadline
//! ([`connection`]).

pub mod connection;
pub mod grpc;
pub mod report;
pub mod request;
pub mod response;
pub mod server;
pub mod service;
pub mod threads;
pub mod wire;

pub use server::CheckServer;
pub use service::AuthorizationService;
