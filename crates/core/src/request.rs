//! The facts of one request that the decision reads, borrowed from Envoy's `CheckRequest`.
//!
//! This type is the boundary between the Envoy adapter and the pure decision: the adapter fills
//! it without copying strings, the decision never sees protobuf types.

use crate::workload::Thumbprint;

/// Every value of a credential header (`Authorization`, `DPoP`), without allocating for the
/// usual zero or one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthorizationValues<'a> {
    /// No `Authorization` header.
    #[default]
    Absent,
    /// Exactly one value.
    One(&'a str),
    /// The header appeared more than once.
    Several,
    /// The value's bytes are not UTF-8, so not a credential of any scheme.
    NotUtf8,
}

/// The TLS peer as Envoy reports it.
#[derive(Clone, Copy, Debug, Default)]
pub struct PeerFacts<'a> {
    /// `source.principal`: the first URI SAN of the client certificate, or its subject DN, or
    /// empty. Not validated by Envoy.
    pub principal: &'a str,
    /// `source.certificate`: the client leaf as URL-encoded PEM, or empty.
    pub certificate: &'a str,
    /// The client leaf's SHA-256 thumbprint, when the adapter has it directly (Envoy's
    /// connection attributes, in-process) rather than as PEM; preferred over `certificate`.
    pub certificate_digest: Option<Thumbprint>,
    /// The peer's IP address (no port), if Envoy reported a socket address.
    pub address: Option<&'a str>,
}

/// What the decision needs to know about one HTTP request.
#[derive(Clone, Debug, Default)]
pub struct RequestFacts<'a> {
    /// HTTP method, upper case as sent.
    pub method: &'a str,
    /// Path without query or fragment.
    pub path: &'a str,
    /// `:authority` without the port.
    pub host: &'a str,
    /// `:authority` as sent, port included (a DPoP proof's `htu` names it).
    pub authority: &'a str,
    /// `:scheme` (`https`, `http`), as Envoy saw it.
    pub scheme: &'a str,
    /// Envoy's per-route `context_extensions["sessiongate.policy"]`, if set.
    pub policy: Option<&'a str>,
    /// The `Authorization` header value(s).
    pub authorization: AuthorizationValues<'a>,
    /// The `DPoP` header value(s) (RFC 9449): read only when the `Authorization` scheme is
    /// `DPoP`, so a bearer request never pays for it.
    pub dpop: AuthorizationValues<'a>,
    /// The mTLS peer.
    pub peer: PeerFacts<'a>,
}

/// The path without its query string or fragment.
pub fn path_without_query(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or(path)
}

/// The host of an `:authority`, without port (IPv6 literals keep their brackets).
pub fn host_without_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_fragment_are_not_part_of_the_path() {
        assert_eq!(path_without_query("/orders/42?verbose=1"), "/orders/42");
        assert_eq!(path_without_query("/a#frag"), "/a");
        assert_eq!(path_without_query("/plain"), "/plain");
        assert_eq!(path_without_query(""), "");
    }

    #[test]
    fn ports_are_not_part_of_the_host() {
        assert_eq!(host_without_port("localhost:18443"), "localhost");
        assert_eq!(host_without_port("shop.example"), "shop.example");
        assert_eq!(host_without_port("[::1]:8080"), "[::1]");
        assert_eq!(host_without_port("[::1]"), "[::1]");
        assert_eq!(host_without_port("127.0.0.1:80"), "127.0.0.1");
    }
}
