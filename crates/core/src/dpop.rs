//! DPoP (RFC 9449) at the resource server: what a verified proof says, what a route demands,
//! and how a proof's `htu` is compared with the request.
//!
//! The proof's signature and key are checked in `sessiongate-token` (it has the crypto); what a
//! verified proof says is a [`DpopProof`], and the rules that judge it against the token and
//! the request (`cnf.jkt`, `ath`, `htm`, `htu`, `iat`, nonce, downgrade, required proof of
//! possession) are rules of [`crate::decision`] like any other. The nonce's HMAC and the
//! replay store are the check use case's: the decision reads their verdicts as facts
//! ([`NonceCheck`]), so it stays pure.

use std::sync::Arc;
use std::time::Duration;

use crate::request::{host_without_port, path_without_query};
use crate::time::UnixTime;
use crate::workload::Thumbprint;

/// Longest `DPoP` header value accepted (8 KiB): a proof with an EC key is about 600 bytes and
/// one with an RSA-4096 key about 1.5 KiB; the bound keeps decoding hostile input cheap.
pub const MAX_PROOF_LEN: usize = 8192;

/// The proof of possession a route demands of the token (`routes[].proof_of_possession`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PossessionRequirement {
    /// A DPoP-bound token (`cnf.jkt`) with a valid proof.
    Dpop,
    /// A certificate-bound token (`cnf.x5t#S256`, RFC 8705) presented over that certificate.
    Mtls,
    /// Either of the two.
    Either,
}

impl PossessionRequirement {
    /// Whether a DPoP-bound token satisfies the requirement.
    pub fn accepts_dpop(self) -> bool {
        matches!(
            self,
            PossessionRequirement::Dpop | PossessionRequirement::Either
        )
    }

    /// Whether a certificate-bound token satisfies the requirement.
    pub fn accepts_mtls(self) -> bool {
        matches!(
            self,
            PossessionRequirement::Mtls | PossessionRequirement::Either
        )
    }
}

/// What a verified DPoP proof says, as the rules read it. Built by `sessiongate-token` only
/// after the proof's `typ`, `alg`, public `jwk` and signature were checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpopProof {
    /// RFC 7638 SHA-256 thumbprint of the proof's `jwk`: what `cnf.jkt` must name.
    pub key: Thumbprint,
    /// `htm`, the HTTP method the proof is for.
    pub method: Box<str>,
    /// `htu`, the HTTP URI the proof is for.
    pub target: Box<str>,
    /// `iat`.
    pub issued_at: UnixTime,
    /// `ath`, the SHA-256 of the access token it accompanies (decoded); `None` when absent or
    /// not a base64url SHA-256 value (both fail the `ath` rule).
    pub token_hash: Option<Thumbprint>,
    /// SHA-256 over the proof's key thumbprint and its `jti`: the replay store's key. Keyed by
    /// the key too, so one client's `jti`s can never collide with another's.
    pub replay_key: [u8; 32],
    /// `nonce`, if any (compared by the check use case, which holds the nonce secret).
    pub nonce: Option<Box<str>>,
}

/// The nonce rule's input, as the check use case found it (it holds the fleet's secret).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NonceCheck {
    /// The route does not ask for nonces.
    #[default]
    NotRequired,
    /// The proof carries a nonce issued for the current or the previous period.
    Current,
    /// The route asks for a nonce and the proof has none, or one that is stale or not ours.
    Missing,
}

/// The policy's DPoP settings (`dpop`), as the rules read them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpopRules {
    /// The accepted proof algorithms, space-separated, for the `algs` challenge parameter.
    pub algorithms: Arc<str>,
    /// How long after its `iat` a proof is accepted (`dpop.proof_lifetime`); `session.clock_skew`
    /// is added on both sides.
    pub proof_lifetime: Duration,
    /// The public origin clients address (`dpop.origin`, `scheme://host[:port]`), when Envoy
    /// sits behind another proxy and its own `:scheme`/`:authority` are not what clients saw.
    pub origin: Option<Box<str>>,
}

impl Default for DpopRules {
    fn default() -> DpopRules {
        DpopRules {
            algorithms: "ES256 ES384 EdDSA PS256 PS384 PS512 RS256 RS384 RS512".into(),
            proof_lifetime: Duration::from_secs(5),
            origin: None,
        }
    }
}

/// What the request itself says that a proof must match, borrowed from [`crate::request::RequestFacts`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestTarget<'a> {
    /// The HTTP method.
    pub method: &'a str,
    /// `:scheme` as Envoy saw it.
    pub scheme: &'a str,
    /// `:authority` as Envoy saw it (port included).
    pub authority: &'a str,
    /// The path, without query.
    pub path: &'a str,
}

/// An origin, split and normalised for comparison: lower-case scheme and host, explicit port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Origin<'a> {
    scheme: &'a str,
    host: &'a str,
    port: u16,
}

impl<'a> Origin<'a> {
    /// `scheme` and `authority` (host, optional port); `None` for an unknown scheme without a
    /// port, userinfo, or a port that is not a number.
    fn of(scheme: &'a str, authority: &'a str) -> Option<Origin<'a>> {
        if authority.is_empty() || authority.contains('@') {
            return None;
        }
        let host = host_without_port(authority);
        let port = match &authority[host.len()..] {
            "" => default_port(scheme)?,
            with_colon => with_colon.strip_prefix(':')?.parse().ok()?,
        };
        Some(Origin { scheme, host, port })
    }

    fn same_as(&self, other: &Origin<'_>) -> bool {
        self.scheme.eq_ignore_ascii_case(other.scheme)
            && self.host.eq_ignore_ascii_case(other.host)
            && self.port == other.port
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    if scheme.eq_ignore_ascii_case("https") {
        Some(443)
    } else if scheme.eq_ignore_ascii_case("http") {
        Some(80)
    } else {
        None
    }
}

/// `scheme://authority` split; `None` when `text` is not an absolute http(s) URI.
fn split_uri(text: &str) -> Option<(Origin<'_>, &str)> {
    let (scheme, rest) = text.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    Some((Origin::of(scheme, authority)?, path_without_query(path)))
}

/// An empty path is `/` (RFC 3986 section 6.2.3).
fn or_root(path: &str) -> &str {
    if path.is_empty() { "/" } else { path }
}

/// Checks a configured `dpop.origin`: `http` or `https`, a host, an optional port, nothing
/// else (no path, query or userinfo).
pub fn validate_origin(text: &str) -> Result<(), &'static str> {
    let (origin, path) = split_uri(text).ok_or("not an origin like https://api.example.com")?;
    if default_port(origin.scheme).is_none() {
        return Err("the scheme must be http or https");
    }
    if !path.is_empty() || text.contains(['?', '#']) {
        return Err("an origin has no path, query or fragment");
    }
    Ok(())
}

/// Whether a proof's `htu` names the request (RFC 9449 section 4.3, checks 8–9).
///
/// The request's origin is `origin` (the configured public origin) when set, else its own
/// `:scheme` and `:authority`. Compared after normalising as RFC 3986 section 6.2.2–6.2.3 allows
/// without decoding: scheme and host case-insensitively, an absent port as the scheme's default
/// (443, 80), an empty path as `/`; the query and fragment of `htu` are ignored. The path is
/// compared byte for byte (no percent-decoding or dot-segment removal: a client sends the
/// path it signed).
pub fn target_matches(htu: &str, request: &RequestTarget<'_>, origin: Option<&str>) -> bool {
    let Some((proof_origin, proof_path)) = split_uri(htu) else {
        return false;
    };
    let request_origin = match origin {
        Some(configured) => split_uri(configured).map(|(origin, _)| origin),
        None => Origin::of(request.scheme, request.authority),
    };
    let Some(request_origin) = request_origin else {
        return false;
    };
    proof_origin.same_as(&request_origin) && or_root(proof_path) == or_root(request.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(scheme: &'a str, authority: &'a str, path: &'a str) -> RequestTarget<'a> {
        RequestTarget {
            method: "GET",
            scheme,
            authority,
            path,
        }
    }

    #[test]
    fn htu_matches_the_request_after_normalising_case_and_default_ports() {
        let req = request("https", "api.example.com", "/orders/1");
        for htu in [
            "https://api.example.com/orders/1",
            "HTTPS://API.example.COM/orders/1",
            "https://api.example.com:443/orders/1",
            "https://api.example.com/orders/1?x=1",
            "https://api.example.com/orders/1#frag",
        ] {
            assert!(target_matches(htu, &req, None), "{htu}");
        }
        let ported = request("http", "localhost:8080", "/");
        assert!(target_matches("http://localhost:8080", &ported, None));
        assert!(target_matches("http://LOCALHOST:8080/", &ported, None));
    }

    #[test]
    fn htu_naming_another_request_does_not_match() {
        let req = request("https", "api.example.com", "/orders/1");
        for htu in [
            "http://api.example.com/orders/1",
            "https://api.example.com:8443/orders/1",
            "https://other.example.com/orders/1",
            "https://api.example.com/orders/2",
            "https://api.example.com/Orders/1",
            "https://api.example.com/orders/1/",
            "https://user@api.example.com/orders/1",
            "api.example.com/orders/1",
            "",
        ] {
            assert!(!target_matches(htu, &req, None), "{htu}");
        }
    }

    #[test]
    fn a_configured_origin_replaces_the_requests_own() {
        let req = request("http", "sessiongate-internal:10000", "/orders");
        let origin = Some("https://api.example.com");
        assert!(target_matches(
            "https://api.example.com/orders",
            &req,
            origin
        ));
        assert!(!target_matches(
            "http://sessiongate-internal:10000/orders",
            &req,
            origin
        ));
    }

    #[test]
    fn configured_origins_are_validated() {
        assert_eq!(validate_origin("https://api.example.com"), Ok(()));
        assert_eq!(validate_origin("http://localhost:8080"), Ok(()));
        assert!(validate_origin("https://api.example.com/path").is_err());
        assert!(validate_origin("ftp://x").is_err());
        assert!(validate_origin("api.example.com").is_err());
        assert!(validate_origin("https://a?b").is_err());
    }
}
