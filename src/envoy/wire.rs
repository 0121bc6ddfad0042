//! The part of Envoy's `CheckRequest` that sessiongate reads, as it arrives on the wire.
//!
//! Decoding is the largest share of a cached check's CPU. Envoy's full message (the
//! `envoy-types` one) carries much that sessiongate never looks at (the destination peer,
//! timestamps, request id, scheme, protocol, metadata), and it decodes the request headers into
//! a `HashMap`, hashing every header name with SipHash on every request just to look up two or
//! three of them. These messages keep the same field numbers, so they decode the same bytes,
//! but declare only the fields the adapter reads: protobuf skips the rest without allocating,
//! and the header map is read as its wire form, a list of entries, searched linearly (a
//! request has a dozen headers).
//!
//! What must stay true: each field here has the number and type of the field of the same name
//! in `envoy/service/auth/v3/attribute_context.proto` and `envoy/config/core/v3/*.proto`, so a
//! value Envoy sends is read exactly as the full message would read it (the tests decode full
//! messages as these). Where the full message keeps the *last* of repeated map keys, lookups
//! here search from the end.

/// `envoy.service.auth.v3.CheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckRequest {
    /// `attributes = 1`.
    #[prost(message, optional, tag = "1")]
    pub attributes: Option<AttributeContext>,
}

/// `envoy.service.auth.v3.AttributeContext`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeContext {
    /// `source = 1`: the downstream peer.
    #[prost(message, optional, tag = "1")]
    pub source: Option<Peer>,
    /// `request = 4`.
    #[prost(message, optional, tag = "4")]
    pub request: Option<Request>,
    /// `context_extensions = 10` (`map<string, string>`).
    #[prost(message, repeated, tag = "10")]
    pub context_extensions: Vec<Entry>,
}

/// `envoy.service.auth.v3.AttributeContext.Peer`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Peer {
    /// `address = 1`.
    #[prost(message, optional, tag = "1")]
    pub address: Option<Address>,
    /// `principal = 4`.
    #[prost(string, tag = "4")]
    pub principal: String,
    /// `certificate = 5`: the URL-encoded PEM leaf.
    #[prost(string, tag = "5")]
    pub certificate: String,
}

/// `envoy.config.core.v3.Address`, of which only the `socket_address` member of its `oneof`
/// is read (a pipe or an internal address is no IP address).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Address {
    /// `socket_address = 1`.
    #[prost(message, optional, tag = "1")]
    pub socket_address: Option<SocketAddress>,
}

/// `envoy.config.core.v3.SocketAddress`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SocketAddress {
    /// `address = 2`.
    #[prost(string, tag = "2")]
    pub address: String,
}

/// `envoy.service.auth.v3.AttributeContext.Request`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    /// `http = 2`.
    #[prost(message, optional, tag = "2")]
    pub http: Option<HttpRequest>,
}

/// `envoy.service.auth.v3.AttributeContext.HttpRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpRequest {
    /// `method = 2`.
    #[prost(string, tag = "2")]
    pub method: String,
    /// `headers = 3` (`map<string, string>`, lower-case names).
    #[prost(message, repeated, tag = "3")]
    pub headers: Vec<Entry>,
    /// `path = 4`.
    #[prost(string, tag = "4")]
    pub path: String,
    /// `host = 5`.
    #[prost(string, tag = "5")]
    pub host: String,
    /// `header_map = 13`: the headers, when Envoy is configured with `encode_raw_headers`.
    #[prost(message, optional, tag = "13")]
    pub header_map: Option<HeaderMap>,
}

/// One entry of a protobuf `map<string, string>`: the map's wire form.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    /// `key = 1`.
    #[prost(string, tag = "1")]
    pub key: String,
    /// `value = 2`.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `envoy.config.core.v3.HeaderMap`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderMap {
    /// `headers = 1`.
    #[prost(message, repeated, tag = "1")]
    pub headers: Vec<HeaderValue>,
}

/// `envoy.config.core.v3.HeaderValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderValue {
    /// `key = 1`.
    #[prost(string, tag = "1")]
    pub key: String,
    /// `value = 2`.
    #[prost(string, tag = "2")]
    pub value: String,
    /// `raw_value = 3`: used instead of `value` when set.
    #[prost(bytes = "vec", tag = "3")]
    pub raw_value: Vec<u8>,
}

/// The value of `key` in a decoded `map<string, string>`: the last entry wins, as when the map
/// is decoded into a hash map.
pub fn map_get<'a>(entries: &'a [Entry], key: &str) -> Option<&'a str> {
    entries
        .iter()
        .rev()
        .find(|entry| entry.key == key)
        .map(|entry| entry.value.as_str())
}

#[cfg(test)]
mod tests {
    use envoy_types::ext_authz::v3::pb as full;
    use prost::Message;

    use super::*;

    #[test]
    fn reads_what_the_full_message_carries() {
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!(
                "{}/tests/fixtures/envoy/check_request_mtls.json",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        )
        .unwrap();
        let mut check = crate::envoy::request::tests_support::check_request_from_json(&json);
        let attributes = check.attributes.as_mut().unwrap();
        attributes
            .context_extensions
            .insert("sessiongate.policy".into(), "admin".into());
        let http = attributes.request.as_mut().unwrap().http.as_mut().unwrap();
        http.header_map = Some(envoy_types::pb::envoy::config::core::v3::HeaderMap {
            headers: vec![envoy_types::pb::envoy::config::core::v3::HeaderValue {
                key: "x-raw".into(),
                raw_value: b"raw".to_vec(),
                ..Default::default()
            }],
        });
        let lean = CheckRequest::decode(check.encode_to_vec().as_slice()).unwrap();

        let attributes = lean.attributes.unwrap();
        let full_attributes = check.attributes.unwrap();
        let (source, full_source) = (attributes.source.unwrap(), full_attributes.source.unwrap());
        assert_eq!(source.principal, full_source.principal);
        assert_eq!(source.certificate, full_source.certificate);
        let Some(full::Address::SocketAddress(socket)) =
            full_source.address.and_then(|address| address.address)
        else {
            panic!("fixture has a socket address")
        };
        assert_eq!(
            source.address.unwrap().socket_address.unwrap().address,
            socket.address
        );
        assert_eq!(
            map_get(&attributes.context_extensions, "sessiongate.policy"),
            Some("admin")
        );
        let http = attributes.request.unwrap().http.unwrap();
        let full_http = full_attributes.request.unwrap().http.unwrap();
        assert_eq!(http.method, full_http.method);
        assert_eq!(http.path, full_http.path);
        assert_eq!(http.host, full_http.host);
        assert_eq!(http.headers.len(), full_http.headers.len());
        for (name, value) in &full_http.headers {
            assert_eq!(map_get(&http.headers, name), Some(value.as_str()), "{name}");
        }
        let raw = &http.header_map.unwrap().headers[0];
        assert_eq!(
            (raw.key.as_str(), raw.raw_value.as_slice()),
            ("x-raw", &b"raw"[..])
        );
    }

    #[test]
    fn a_repeated_map_key_reads_as_its_last_value() {
        let entries = [("a", "1"), ("b", "2"), ("a", "3")].map(|(key, value)| Entry {
            key: key.into(),
            value: value.into(),
        });
        assert_eq!(map_get(&entries, "a"), Some("3"));
        assert_eq!(map_get(&entries, "c"), None);
    }
}
