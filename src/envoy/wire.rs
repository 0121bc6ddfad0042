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
//! Every protobuf `string` is decoded as [`Text`], its bytes as they arrived, and checked for
//! UTF-8 only where it is read ([`text`]). A `string` decoder fails the whole message on one
//! invalid byte, and a failed message used to be a failed call, which Envoy's
//! `failure_mode_allow` turns into an allow: bytes in a field sessiongate never reads (a header
//! it does not look at, the request body) must not decide anything. Decoded from the
//! [`Bytes`] of the HTTP/2 frame, a [`Text`] is a view of that buffer, not a copy.
//!
//! What must stay true: each field here has the number and wire type of the field of the same
//! name in `envoy/service/auth/v3/attribute_context.proto` and `envoy/config/core/v3/*.proto`
//! (`string` and `bytes` share a wire type), so a value Envoy sends is read exactly as the full
//! message would read it (the tests decode full messages as these). Where the full message
//! keeps the *last* of repeated map keys, lookups here search from the end.

use prost::bytes::Bytes;

/// A protobuf `string` as it arrived: UTF-8 from any sender that follows the schema, but not
/// trusted to be; read it with [`text`].
pub type Text = Bytes;

/// `field` as text, or `None` when its bytes are not UTF-8.
pub fn text(field: &Text) -> Option<&str> {
    std::str::from_utf8(field).ok()
}

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
    #[prost(bytes = "bytes", tag = "4")]
    pub principal: Text,
    /// `certificate = 5`: the URL-encoded PEM leaf.
    #[prost(bytes = "bytes", tag = "5")]
    pub certificate: Text,
}

/// `envoy.config.core.v3.Address`, of which only the `socket_address` member of its `oneof`
/// is read (a pipe or an internal address is no IP address). The other members are declared,
/// unread, so that the `oneof` reads as the full message reads it: the last member on the wire
/// wins (a socket address followed by a pipe is a pipe, not an IP address).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Address {
    /// `oneof address`.
    #[prost(oneof = "AddressMember", tags = "1, 2, 3")]
    pub member: Option<AddressMember>,
}

impl Address {
    /// The socket address, when that is the member the message carries.
    pub fn socket_address(&self) -> Option<&SocketAddress> {
        match &self.member {
            Some(AddressMember::SocketAddress(socket)) => Some(socket),
            _ => None,
        }
    }
}

/// The members of `Address.address`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum AddressMember {
    /// `socket_address = 1`.
    #[prost(message, tag = "1")]
    SocketAddress(SocketAddress),
    /// `pipe = 2` (not read).
    #[prost(message, tag = "2")]
    Pipe(Unread),
    /// `envoy_internal_address = 3` (not read).
    #[prost(message, tag = "3")]
    EnvoyInternalAddress(Unread),
}

/// A message whose fields sessiongate does not read: all of them are skipped.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Unread {}

/// `envoy.config.core.v3.SocketAddress`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SocketAddress {
    /// `address = 2`.
    #[prost(bytes = "bytes", tag = "2")]
    pub address: Text,
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
    #[prost(bytes = "bytes", tag = "2")]
    pub method: Text,
    /// `headers = 3` (`map<string, string>`, lower-case names).
    #[prost(message, repeated, tag = "3")]
    pub headers: Vec<Entry>,
    /// `path = 4`.
    #[prost(bytes = "bytes", tag = "4")]
    pub path: Text,
    /// `host = 5`.
    #[prost(bytes = "bytes", tag = "5")]
    pub host: Text,
    /// `scheme = 6` (`https`, `http`): a DPoP proof's `htu` names it.
    #[prost(bytes = "bytes", tag = "6")]
    pub scheme: Text,
    /// `header_map = 13`: the headers, when Envoy is configured with `encode_raw_headers`.
    #[prost(message, optional, tag = "13")]
    pub header_map: Option<HeaderMap>,
}

/// One entry of a protobuf `map<string, string>`: the map's wire form.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    /// `key = 1`.
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Text,
    /// `value = 2`.
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Text,
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
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Text,
    /// `value = 2`.
    #[prost(bytes = "bytes", tag = "2")]
    pub value: Text,
    /// `raw_value = 3`: used instead of `value` when set.
    #[prost(bytes = "bytes", tag = "3")]
    pub raw_value: Bytes,
}

/// The value of `key` in a decoded `map<string, string>`: the last entry wins, as when the map
/// is decoded into a hash map.
pub fn map_get<'a>(entries: &'a [Entry], key: &str) -> Option<&'a Text> {
    entries
        .iter()
        .rev()
        .find(|entry| entry.key == key.as_bytes())
        .map(|entry| &entry.value)
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
        let lean = CheckRequest::decode(Bytes::from(check.encode_to_vec())).unwrap();

        let attributes = lean.attributes.unwrap();
        let full_attributes = check.attributes.unwrap();
        let (source, full_source) = (attributes.source.unwrap(), full_attributes.source.unwrap());
        assert_eq!(
            text(&source.principal),
            Some(full_source.principal.as_str())
        );
        assert_eq!(
            text(&source.certificate),
            Some(full_source.certificate.as_str())
        );
        let Some(full::Address::SocketAddress(socket)) =
            full_source.address.and_then(|address| address.address)
        else {
            panic!("fixture has a socket address")
        };
        assert_eq!(
            text(&source.address.unwrap().socket_address().unwrap().address),
            Some(socket.address.as_str())
        );
        assert_eq!(
            map_get(&attributes.context_extensions, "sessiongate.policy").and_then(text),
            Some("admin")
        );
        let http = attributes.request.unwrap().http.unwrap();
        let full_http = full_attributes.request.unwrap().http.unwrap();
        assert_eq!(text(&http.method), Some(full_http.method.as_str()));
        assert_eq!(text(&http.path), Some(full_http.path.as_str()));
        assert_eq!(text(&http.host), Some(full_http.host.as_str()));
        assert_eq!(http.headers.len(), full_http.headers.len());
        for (name, value) in &full_http.headers {
            assert_eq!(
                map_get(&http.headers, name).and_then(text),
                Some(value.as_str()),
                "{name}"
            );
        }
        let raw = &http.header_map.unwrap().headers[0];
        assert_eq!(
            (&raw.key[..], &raw.raw_value[..]),
            (&b"x-raw"[..], &b"raw"[..])
        );
    }

    #[test]
    fn a_repeated_map_key_reads_as_its_last_value() {
        let entries = [("a", "1"), ("b", "2"), ("a", "3")].map(|(key, value)| Entry {
            key: Bytes::from_static(key.as_bytes()),
            value: Bytes::from_static(value.as_bytes()),
        });
        assert_eq!(map_get(&entries, "a").and_then(text), Some("3"));
        assert_eq!(map_get(&entries, "c"), None);
    }

    #[test]
    fn bytes_that_are_not_utf8_decode_and_read_as_no_text() {
        // A header whose value is Latin-1 `é` (0xE9), as `string` fields never hold it.
        let mut check = Vec::new();
        let entry = [&[0x0a, 0x01, b'x', 0x12, 0x01][..], &[0xe9]].concat();
        let http = [&[0x1a, entry.len() as u8][..], &entry].concat();
        let request = [&[0x12, http.len() as u8][..], &http].concat();
        let attributes = [&[0x22, request.len() as u8][..], &request].concat();
        check.extend_from_slice(&[0x0a, attributes.len() as u8]);
        check.extend_from_slice(&attributes);

        let lean = CheckRequest::decode(Bytes::from(check)).unwrap();
        let http = lean.attributes.unwrap().request.unwrap().http.unwrap();
        let value = map_get(&http.headers, "x").unwrap();
        assert_eq!(&value[..], b"\xe9");
        assert_eq!(text(value), None);
    }
}
