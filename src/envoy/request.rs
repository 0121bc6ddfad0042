//! `CheckRequest` → [`RequestFacts`], borrowing from the protobuf message (its lean form,
//! [`super::wire`]).

use super::wire::{CheckRequest, HttpRequest, map_get};
use crate::deny::{Deny, DenyReason};
use crate::request::{
    AuthorizationValues, PeerFacts, RequestFacts, host_without_port, path_without_query,
};

/// Envoy's per-route `context_extensions` key that selects a sessiongate route by `policy`.
pub const POLICY_CONTEXT_KEY: &str = "sessiongate.policy";

/// The HTTP part of a `CheckRequest`, or the `bad_request` denial when Envoy sent none (a
/// network-filter ext_authz, or a misconfigured client).
pub fn http_request(check: &CheckRequest) -> Result<&HttpRequest, Deny> {
    check
        .attributes
        .as_ref()
        .and_then(|attributes| attributes.request.as_ref())
        .and_then(|request| request.http.as_ref())
        .ok_or_else(|| {
            Deny::new(
                DenyReason::BadRequest,
                "check request has no HTTP attributes",
            )
        })
}

/// The facts of `check`. Headers come from `headers`, or from `header_map` when Envoy is
/// configured with `encode_raw_headers`.
pub fn facts<'a>(check: &'a CheckRequest, http: &'a HttpRequest) -> RequestFacts<'a> {
    let attributes = check.attributes.as_ref();
    let source = attributes.and_then(|a| a.source.as_ref());
    let address = source
        .and_then(|peer| peer.address.as_ref())
        .and_then(|address| address.socket_address.as_ref())
        .map(|socket| socket.address.as_str());
    let path = if http.path.is_empty() {
        header(http, ":path").unwrap_or("")
    } else {
        &http.path
    };
    let authority = if http.host.is_empty() {
        header(http, ":authority").unwrap_or("")
    } else {
        &http.host
    };
    let method = if http.method.is_empty() {
        header(http, ":method").unwrap_or("")
    } else {
        &http.method
    };
    RequestFacts {
        method,
        path: path_without_query(path),
        host: host_without_port(authority),
        policy: attributes.and_then(|a| map_get(&a.context_extensions, POLICY_CONTEXT_KEY)),
        authorization: authorization(http),
        peer: PeerFacts {
            principal: source.map_or("", |peer| peer.principal.as_str()),
            certificate: source.map_or("", |peer| peer.certificate.as_str()),
            address,
        },
    }
}

/// The names of every request header, lower case, whichever encoding Envoy used.
pub fn header_names(http: &HttpRequest) -> impl Iterator<Item = &str> {
    let raw = http
        .header_map
        .as_ref()
        .map(|map| map.headers.as_slice())
        .unwrap_or_default();
    http.headers
        .iter()
        .map(|entry| entry.key.as_str())
        .chain(raw.iter().map(|h| h.key.as_str()))
}

/// The value of header `name` (lower case), whichever encoding Envoy used.
pub fn header<'a>(http: &'a HttpRequest, name: &str) -> Option<&'a str> {
    if let Some(value) = map_get(&http.headers, name) {
        return Some(value);
    }
    let map = http.header_map.as_ref()?;
    let header = map
        .headers
        .iter()
        .find(|h| h.key.eq_ignore_ascii_case(name))?;
    if header.raw_value.is_empty() {
        Some(&header.value)
    } else {
        std::str::from_utf8(&header.raw_value).ok()
    }
}

fn authorization(http: &HttpRequest) -> AuthorizationValues<'_> {
    if let Some(value) = map_get(&http.headers, "authorization") {
        return AuthorizationValues::One(value);
    }
    let Some(map) = http.header_map.as_ref() else {
        return AuthorizationValues::Absent;
    };
    let mut found = map
        .headers
        .iter()
        .filter(|h| h.key.eq_ignore_ascii_case("authorization"));
    match (found.next(), found.next()) {
        (None, _) => AuthorizationValues::Absent,
        (Some(_), Some(_)) => AuthorizationValues::Several,
        (Some(one), None) if one.raw_value.is_empty() => AuthorizationValues::One(&one.value),
        // Non-UTF-8 bytes can never be a token68 credential: an unreadable value is several
        // credentials' worth of wrong, and fails as a bad request.
        (Some(one), None) => std::str::from_utf8(&one.raw_value)
            .map_or(AuthorizationValues::Several, AuthorizationValues::One),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn fixture(name: &str) -> CheckRequest {
        let path = format!("{}/tests/fixtures/envoy/{name}", env!("CARGO_MANIFEST_DIR"));
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let full = crate::envoy::request::tests_support::check_request_from_json(&json);
        CheckRequest::decode(full.encode_to_vec().as_slice()).unwrap()
    }

    #[test]
    fn reads_the_facts_envoy_1_40_sends() {
        let check = fixture("check_request_mtls.json");
        let http = http_request(&check).unwrap();
        let facts = facts(&check, http);
        assert_eq!(facts.method, "GET");
        assert_eq!(facts.path, "/orders/42");
        assert_eq!(facts.host, "localhost");
        assert_eq!(facts.policy, None);
        assert_eq!(
            facts.authorization,
            AuthorizationValues::One("Bearer allow")
        );
        assert_eq!(
            facts.peer.principal,
            "spiffe://cluster.local/ns/shop/sa/frontend"
        );
        assert!(
            facts
                .peer
                .certificate
                .starts_with("-----BEGIN%20CERTIFICATE-----")
        );
        assert_eq!(facts.peer.address, Some("127.0.0.1"));
    }

    #[test]
    fn a_request_without_http_attributes_is_a_bad_request() {
        let deny = http_request(&CheckRequest::default()).unwrap_err();
        assert_eq!(deny.reason, DenyReason::BadRequest);
    }
}

/// Builds `CheckRequest`s from the JSON form Envoy's captures use (test support only).
#[cfg(test)]
pub(crate) mod tests_support {
    use envoy_types::ext_authz::v3::pb::CheckRequest;
    use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address};
    use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
        HttpRequest, Peer, Request,
    };
    use serde_json::Value;

    /// The subset of a JSON `CheckRequest` the adapter reads.
    pub fn check_request_from_json(json: &Value) -> CheckRequest {
        let attributes = &json["attributes"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let source = &attributes["source"];
        let http = &attributes["request"]["http"];
        CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(Peer {
                    address: Some(Address {
                        address: Some(address::Address::SocketAddress(SocketAddress {
                            address: text(&source["address"]["socketAddress"]["address"]),
                            ..Default::default()
                        })),
                    }),
                    principal: text(&source["principal"]),
                    certificate: text(&source["certificate"]),
                    ..Default::default()
                }),
                request: Some(Request {
                    http: Some(HttpRequest {
                        method: text(&http["method"]),
                        path: text(&http["path"]),
                        host: text(&http["host"]),
                        headers: http["headers"]
                            .as_object()
                            .map(|h| h.iter().map(|(k, v)| (k.clone(), text(v))).collect())
                            .unwrap_or_default(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }
}
