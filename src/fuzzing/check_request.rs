//! The `check_request` target: Envoy's `CheckRequest` bytes through the lean wire decoder
//! ([`crate::envoy::wire`]) to the [`sessiongate_core::request::RequestFacts`] the decision reads.
//!
//! Invariants: decoding never panics; every fact is a slice of a decoded field, so no fact is
//! longer than the input and there are no more header entries than input bytes; the bearer
//! credential is read without panicking; a request is refused (not UTF-8 where read) only when
//! the full message refuses its bytes too; and when the full `envoy-types` message decodes the
//! same bytes, the lean one decodes them too and yields the same facts (the promise in
//! [`crate::envoy::wire`]: a value Envoy sends is read exactly as the full message reads it,
//! and so are bytes Envoy never sends, such as an `Address` carrying two members of its
//! `oneof`, which this target found reading differently).

use envoy_types::ext_authz::v3::pb as full;
use prost::Message;

use crate::envoy::request::{facts, header_names, http_request};
use crate::envoy::wire::CheckRequest;
use sessiongate_core::request::{AuthorizationValues, RequestFacts};
use sessiongate_core::token::bearer_token;

/// The `check_request` target (see the module docs). Returns whether the bytes decoded to a
/// request with HTTP attributes.
pub fn check_request(data: &[u8]) -> bool {
    let lean = CheckRequest::decode(data);
    let complete = full::CheckRequest::decode(data);
    if complete.is_ok() {
        assert!(
            lean.is_ok(),
            "the full message decodes bytes the lean one refuses: {lean:?}"
        );
    }
    let Ok(lean) = lean else {
        return false;
    };
    let Ok(http) = http_request(&lean) else {
        return false;
    };
    let read = match facts(&lean, http) {
        Ok(read) => read,
        Err(refused) => {
            // Only a field sessiongate reads that is not UTF-8 is refused; the full message
            // would have refused those bytes as a whole.
            assert!(
                complete.is_err(),
                "facts refused what the full message reads: {refused:?}"
            );
            return false;
        }
    };
    assert_bounded(&read, data.len());
    let names = header_names(http).count();
    assert!(
        names <= data.len(),
        "{names} headers from {} bytes",
        data.len()
    );
    let _ = bearer_token(read.authorization);

    if let Ok(complete) = complete {
        // What the full message keeps, re-encoded: prost writes only what it decoded (the last
        // of repeated map keys, the last member of a `oneof`).
        let canonical = CheckRequest::decode(complete.encode_to_vec().as_slice())
            .expect("the lean decoder reads what the full message writes");
        let canonical_http = http_request(&canonical)
            .expect("the full message kept the HTTP attributes the lean one read");
        let canonical_facts = facts(&canonical, canonical_http)
            .expect("the full message's strings are UTF-8, so every fact reads");
        assert_same_facts(&read, &canonical_facts);
    }
    true
}

fn assert_bounded(read: &RequestFacts<'_>, input: usize) {
    let mut fields = vec![
        ("method", read.method),
        ("path", read.path),
        ("host", read.host),
        ("principal", read.peer.principal),
        ("certificate", read.peer.certificate),
    ];
    fields.extend(read.policy.map(|policy| ("policy", policy)));
    fields.extend(read.peer.address.map(|address| ("address", address)));
    if let AuthorizationValues::One(value) = read.authorization {
        fields.push(("authorization", value));
    }
    for (name, value) in fields {
        assert!(
            value.len() <= input,
            "{name} is {} bytes, from {input} bytes of input",
            value.len()
        );
    }
}

fn assert_same_facts(lean: &RequestFacts<'_>, full: &RequestFacts<'_>) {
    assert_eq!(lean.method, full.method, "method");
    assert_eq!(lean.path, full.path, "path");
    assert_eq!(lean.host, full.host, "host");
    assert_eq!(lean.policy, full.policy, "policy");
    assert_eq!(lean.authorization, full.authorization, "authorization");
    assert_eq!(lean.peer.principal, full.peer.principal, "principal");
    assert_eq!(lean.peer.certificate, full.peer.certificate, "certificate");
    assert_eq!(lean.peer.address, full.peer.address, "address");
}
