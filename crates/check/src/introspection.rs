//! Asking an issuer what an opaque token is (RFC 7662 introspection): the one trait the check
//! use case waits on for it, which the server supplies.
//!
//! The use case only hands the token over and gets the endpoint's answer back as bytes; what
//! the answer means is decided by the token crate's
//! [`IntrospectionRules`](sessiongate_token::IntrospectionRules) under the policy the request
//! is judged by, never by the adapter. The adapter owns the transport and everything that
//! bounds it: client authentication, one request per token at a time (single flight), how
//! many run at once, timeouts and the answer's size.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::session::SessionKey;

/// The endpoint's answer (a JSON document of bounded size), or why there is none.
pub type IntrospectionResult = Result<Arc<[u8]>, IntrospectionUnavailable>;

/// What an [`Introspector`] hands back: `Send + 'static`, so it may run on any thread.
pub type IntrospectionFuture = Pin<Box<dyn Future<Output = IntrospectionResult> + Send + 'static>>;

/// Posts an opaque token to its issuer's introspection endpoint.
pub trait Introspector: Send + Sync + 'static {
    /// The endpoint's answer about `token`, whose session key is `key` (for sharing one
    /// request among concurrent checks of the same token). The token goes to the endpoint and
    /// nowhere else: never into a log, a metric or an error.
    fn introspect(&self, key: SessionKey, token: &str) -> IntrospectionFuture;
}

/// The endpoint could not answer: unreachable, failing, too slow, or busy beyond its bound.
/// A token not cached is then denied 503 (fail closed); cached sessions are not affected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the introspection endpoint did not answer: {0}")]
pub struct IntrospectionUnavailable(pub String);
