//! Who is calling: the peer workload as Envoy's mTLS handshake established it.
//!
//! Envoy reports the first URI SAN of the client certificate as `source.principal` without
//! checking that it is a SPIFFE ID (and the subject DN when there is no URI SAN), so sessiongate
//! parses it itself: only a well-formed `spiffe://` ID ever matches a `workloads` entry or a
//! binding claim.

mod certificate;
mod spiffe;

use std::sync::Arc;

use crate::intern::intern;

pub use certificate::{MAX_CERTIFICATE_TEXT, Thumbprint, ThumbprintError};
pub use spiffe::{SpiffeId, WorkloadPattern, WorkloadPatternError};

/// The identity a session is pinned to on its first allowed request.
///
/// The strongest identity the peer has wins: a SPIFFE ID survives certificate rotation, a
/// certificate thumbprint at least ties the session to one key pair, and the source IP is the
/// last resort for plaintext callers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinnedWorkload {
    /// The caller's validated SPIFFE ID (interned: many sessions, few workloads).
    Spiffe(Arc<str>),
    /// SHA-256 of the caller's leaf certificate, for certificates without a SPIFFE ID. Boxed,
    /// so the usual SPIFFE pin keeps every cached session 24 bytes smaller.
    Certificate(Box<Thumbprint>),
    /// The caller's source IP (without port: ports change per connection); interned.
    Address(Arc<str>),
}

impl std::fmt::Display for PinnedWorkload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PinnedWorkload::Spiffe(id) => f.write_str(id),
            PinnedWorkload::Certificate(thumbprint) => write!(f, "x5t#S256:{thumbprint}"),
            PinnedWorkload::Address(address) => write!(f, "ip:{address}"),
        }
    }
}

/// The peer of one request, as far as the decision needs it.
///
/// The thumbprint is only computed when a rule needs it (a `cnf` claim, or pinning a peer
/// without a SPIFFE ID), so the common cached path never touches the certificate.
#[derive(Clone, Debug, Default)]
pub struct Caller<'a> {
    /// The peer's SPIFFE ID, when `source.principal` is a valid one.
    pub spiffe_id: Option<SpiffeId<'a>>,
    /// SHA-256 of the peer's leaf certificate, when presented and needed.
    pub thumbprint: Option<Thumbprint>,
    /// The peer's source IP, when Envoy reported a socket address.
    pub address: Option<&'a str>,
}

/// The strongest identity a caller shows, borrowed from the request: a SPIFFE ID, else its
/// certificate's thumbprint, else its source IP. One rule, shared by pinning (which keeps it,
/// see [`PinnedWorkload`]) and by verification budgets (which charge it, before any token is
/// verified, so nothing is interned for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallerIdentity<'a> {
    /// A validated SPIFFE ID.
    Spiffe(&'a str),
    /// SHA-256 of the leaf certificate, for certificates without a SPIFFE ID.
    Certificate(Thumbprint),
    /// The source IP, for callers without a certificate.
    Address(&'a str),
}

impl Caller<'_> {
    /// The strongest identity this caller shows, if it has any.
    pub fn identity(&self) -> Option<CallerIdentity<'_>> {
        if let Some(id) = &self.spiffe_id {
            return Some(CallerIdentity::Spiffe(id.as_str()));
        }
        if let Some(thumbprint) = self.thumbprint {
            return Some(CallerIdentity::Certificate(thumbprint));
        }
        self.address
            .filter(|address| !address.is_empty())
            .map(CallerIdentity::Address)
    }

    /// The identity this caller would pin a session to, if it has any.
    pub fn pin_identity(&self) -> Option<PinnedWorkload> {
        self.identity().map(|identity| match identity {
            CallerIdentity::Spiffe(id) => PinnedWorkload::Spiffe(intern(id)),
            CallerIdentity::Certificate(thumbprint) => {
                PinnedWorkload::Certificate(Box::new(thumbprint))
            }
            CallerIdentity::Address(address) => PinnedWorkload::Address(intern(address)),
        })
    }

    /// Whether this caller is the workload `pinned` names.
    pub fn is(&self, pinned: &PinnedWorkload) -> bool {
        match pinned {
            PinnedWorkload::Spiffe(id) => self.spiffe_id.is_some_and(|own| own.as_str() == &**id),
            PinnedWorkload::Certificate(thumbprint) => self.thumbprint == Some(**thumbprint),
            PinnedWorkload::Address(address) => self.address == Some(&**address),
        }
    }
}
