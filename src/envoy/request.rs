//! `CheckRequest` → [`RequestFacts`], borrowing from the protobuf message (its lean form,
//! [`super::wire`]).

use super::wire::{CheckRequest, HttpRequest, Text, map_get, text};
use sessiongate_core::deny::{Deny, DenyReason};
use sessiongate_core::request::{
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
///
/// A field the decision reads (method, path, host, policy, the peer, every header name: they
/// select the route, the caller and the spoofed headers to remove) must be UTF-8, or the
/// request is a `bad_request` naming the field: guessing what unreadable bytes mean could
/// select another route than Envoy's upstream serves. Header values sessiongate only forwards
/// or ignores are never looked at, so their bytes cannot decide anything.
pub fn facts<'a>(check: &'a CheckRequest, http: &'a HttpRequest) -> Result<RequestFacts<'a>, Deny> {
    let attributes = check.attributes.as_ref();
    let source = attributes.and_then(|a| a.source.as_ref());
    let address = source
        .and_then(|peer| peer.address.as_ref())
        .and_then(|address| address.socket_address())
        .map(|socket| field(&socket.address, "source.address"))
        .transpose()?;
    let path = pseudo_header(http, &http.path, "request.http.path", ":path")?;
    let authority = pseudo_header(http, &http.host, "request.http.host", ":authority")?;
    let method = pseudo_header(http, &http.method, "request.http.method", ":method")?;
    let authorization = authorization(http);
    // The `DPoP` header and `:scheme` are read only for a `DPoP` credential, so a bearer
    // request costs no more than before.
    let (dpop, scheme) = if presents_dpop(authorization) {
        (
            credential_header(http, "dpop"),
            pseudo_header(http, &http.scheme, "request.http.scheme", ":scheme")?,
        )
    } else {
        (AuthorizationValues::Absent, "")
    };
    let policy = attributes
        .and_then(|a| map_get(&a.context_extensions, POLICY_CONTEXT_KEY))
        .map(|value| field(value, "context_extensions[sessiongate.policy]"))
        .transpose()?;
    if header_keys(http).any(|key| text(key).is_none()) {
        return Err(not_utf8("a request header name"));
    }
    let principal = source
        .map(|peer| field(&peer.principal, "source.principal"))
        .transpose()?;
    let certificate = source
        .map(|peer| field(&peer.certificate, "source.certificate"))
        .transpose()?;
    Ok(RequestFacts {
        method,
        path: path_without_query(path),
        host: host_without_port(authority),
        authority,
        scheme,
        policy,
        authorization,
        dpop,
        peer: PeerFacts {
            principal: principal.unwrap_or_default(),
            certificate: certificate.unwrap_or_default(),
            // Envoy's CheckRequest carries the PEM, hashed (and cached) by the gate.
            certificate_digest: None,
            address,
        },
    })
}

/// `value` of the `CheckRequest` field `name`, which must be UTF-8.
fn field<'a>(value: &'a Text, name: &'static str) -> Result<&'a str, Deny> {
    text(value).ok_or_else(|| not_utf8(name))
}

/// The `bad_request` denial for a field the decision reads that is not UTF-8.
fn not_utf8(name: &str) -> Deny {
    Deny::new(
        DenyReason::BadRequest,
        format!("CheckRequest field {name} is not UTF-8"),
    )
}

/// The request's `value` (field `name`), else its pseudo-header `header`, else empty.
fn pseudo_header<'a>(
    http: &'a HttpRequest,
    value: &'a Text,
    name: &'static str,
    header: &'static str,
) -> Result<&'a str, Deny> {
    if !value.is_empty() {
        return field(value, name);
    }
    match header_value(http, header) {
        None => Ok(""),
        Some(bytes) => std::str::from_utf8(bytes).map_err(|_| not_utf8(header)),
    }
}

/// The name of every request header, whichever encoding Envoy used.
fn header_keys(http: &HttpRequest) -> impl Iterator<Item = &Text> {
    let raw = http
        .header_map
        .as_ref()
        .map(|map| map.headers.as_slice())
        .unwrap_or_default();
    http.headers
        .iter()
        .map(|entry| &entry.key)
        .chain(raw.iter().map(|h| &h.key))
}

/// The names of every request header, lower case, whichever encoding Envoy used. [`facts`]
/// refuses a request with a name that is not UTF-8, so none is left out once it succeeded.
pub fn header_names(http: &HttpRequest) -> impl Iterator<Item = &str> {
    header_keys(http).filter_map(text)
}

/// The bytes of header `name` (lower case), whichever encoding Envoy used.
fn header_value<'a>(http: &'a HttpRequest, name: &str) -> Option<&'a [u8]> {
    if let Some(value) = map_get(&http.headers, name) {
        return Some(value);
    }
    let map = http.header_map.as_ref()?;
    let header = map
        .headers
        .iter()
        .find(|h| h.key.eq_ignore_ascii_case(name.as_bytes()))?;
    Some(if header.raw_value.is_empty() {
        &header.value
    } else {
        &header.raw_value
    })
}

/// The value of header `name` (lower case), whichever encoding Envoy used; `None` when it is
/// absent or not UTF-8 (for headers that only inform, such as trace context).
pub fn header<'a>(http: &'a HttpRequest, name: &str) -> Option<&'a str> {
    header_value(http, name).and_then(|value| std::str::from_utf8(value).ok())
}

/// Bytes that are not UTF-8 can never be a token68 credential: a bad request.
fn credential(value: &[u8]) -> AuthorizationValues<'_> {
    std::str::from_utf8(value).map_or(AuthorizationValues::NotUtf8, AuthorizationValues::One)
}

/// Whether the `Authorization` value names the `DPoP` scheme (case-insensitive, RFC 9449
/// section 7.1); the credential parser checks the rest.
fn presents_dpop(authorization: AuthorizationValues<'_>) -> bool {
    matches!(authorization, AuthorizationValues::One(value)
        if value.get(..5).is_some_and(|scheme| scheme.eq_ignore_ascii_case("dpop ")))
}

fn authorization(http: &HttpRequest) -> AuthorizationValues<'_> {
    credential_header(http, "authorization")
}

/// Every value of the credential header `name` (lower case): one, several or none.
fn credential_header<'a>(http: &'a HttpRequest, name: &str) -> AuthorizationValues<'a> {
    if let Some(value) = map_get(&http.headers, name) {
        return credential(value);
    }
    let Some(map) = http.header_map.as_ref() else {
        return AuthorizationValues::Absent;
    };
    let mut found = map
        .headers
        .iter()
        .filter(|h| h.key.eq_ignore_ascii_case(name.as_bytes()));
    match (found.next(), found.next()) {
        (None, _) => AuthorizationValues::Absent,
        (Some(_), Some(_)) => AuthorizationValues::Several,
        (Some(one), None) if one.raw_value.is_empty() => credential(&one.value),
        (Some(one), None) => credential(&one.raw_value),
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
        CheckRequest::decode(prost::bytes::Bytes::from(full.encode_to_vec())).unwrap()
    }

    #[test]
    fn reads_the_facts_envoy_1_40_sends() {
        let check = fixture("check_request_mtls.json");
        let http = http_request(&check).unwrap();
        let facts = facts(&check, http).unwrap();
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
