//! The Envoy ext_authz v3 adapter: translates, never decides.
//!
//! [`request`] turns a `CheckRequest` into [`crate::request::RequestFacts`]; [`response`] turns
//! the gate's [`crate::gate::Outcome`] into a `CheckResponse`; [`service`] is the tonic service
//! that glues them to the [`crate::gate::Gate`].

pub mod report;
pub mod request;
pub mod response;
pub mod service;

pub use service::AuthorizationService;
