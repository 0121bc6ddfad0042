//! What an outcome tells the client and the upstream, whichever adapter carries it: the
//! identity headers of an allow, the header of a dry-run denial, the local reply of a denial.
//!
//! Both adapters (the ext_authz `CheckResponse`, the in-process module's header and local-reply
//! calls) build their answers from these, so every row of the README's decision table reads the
//! same in either mode: status, `WWW-Authenticate`, JSON body, reason and `x-sessiongate-*`.

use std::borrow::Cow;

use sessiongate_core::deny::Deny;
use sessiongate_core::dry_run;
use sessiongate_core::workload::SpiffeId;

use crate::gate::Outcome;

/// Prefix of every header sessiongate owns; clients may never set one.
pub const HEADER_PREFIX: &str = "x-sessiongate-";
/// The verified `sub`.
pub const SUBJECT_HEADER: &str = "x-sessiongate-subject";
/// The granted scopes, space-separated.
pub const SCOPES_HEADER: &str = "x-sessiongate-scopes";
/// The caller's SPIFFE ID.
pub const WORKLOAD_HEADER: &str = "x-sessiongate-workload";
/// A short hash identifying the session (never the token).
pub const SESSION_HEADER: &str = "x-sessiongate-session";

/// The headers an allowed `outcome` sets on the upstream request (overwriting any the client
/// sent): subject, scopes, session handle and, for a SPIFFE caller (`principal`), the workload.
/// None for a public route (no session). Values are borrowed from the outcome where they can
/// be (every request of a cached session builds them: the in-process module hands them to
/// Envoy without copying); only the session handle is made here.
pub fn identity_headers<'a>(
    outcome: &'a Outcome,
    principal: &'a str,
) -> Vec<(&'static str, Cow<'a, str>)> {
    let mut headers = Vec::with_capacity(4);
    if let Some((key, session)) = &outcome.session {
        let token = &session.token;
        if let Some(subject) = token.subject() {
            headers.push((SUBJECT_HEADER, header_safe(subject)));
        }
        headers.push((SCOPES_HEADER, Cow::Borrowed(token.scopes.as_str())));
        headers.push((SESSION_HEADER, Cow::Owned(key.short().as_str().to_owned())));
        if let Some(id) = SpiffeId::parse(principal) {
            headers.push((WORKLOAD_HEADER, Cow::Borrowed(id.as_str())));
        }
    }
    headers
}

/// The header a would-be denial on a dry-run route sets instead of the identity headers (the
/// upstream must not take a request sessiongate would refuse for an authenticated one).
pub fn dry_run_header(deny: &Deny) -> (&'static str, String) {
    (dry_run::HEADER, dry_run::header_value(deny.reason.as_str()))
}

/// Whether the client header `name` is one sessiongate owns: removed on every allow, unless
/// sessiongate sets it. Compares bytes, so an adapter can ask before (or without) reading the
/// name as text: every header of every request is asked about.
pub fn is_owned_header(name: impl AsRef<[u8]>) -> bool {
    name.as_ref()
        .get(..HEADER_PREFIX.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(HEADER_PREFIX.as_bytes()))
}

/// The fresh server nonce of a `use_dpop_nonce` denial (RFC 9449 section 8).
pub const DPOP_NONCE_HEADER: &str = "dpop-nonce";

/// A denial as the client receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The HTTP status (401, 403, 400, 429, 503).
    pub status: u16,
    /// `content-type`, `cache-control`, and `www-authenticate` / `retry-after` / `dpop-nonce`
    /// when they apply.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body naming the reason.
    pub body: String,
}

/// The local reply for `deny`.
pub fn denial(deny: &Deny) -> Denial {
    let mut headers = vec![
        ("content-type", "application/json".to_owned()),
        ("cache-control", "no-store".to_owned()),
    ];
    if let Some(challenge) = deny.www_authenticate() {
        headers.push(("www-authenticate", challenge));
    }
    if let Some(seconds) = deny.retry_after() {
        headers.push(("retry-after", seconds.to_string()));
    }
    if let Some(nonce) = deny.dpop_nonce() {
        headers.push((DPOP_NONCE_HEADER, nonce.to_owned()));
    }
    Denial {
        status: deny.reason.http_status(),
        headers,
        body: deny.body(),
    }
}

/// Percent-encodes anything outside printable ASCII (and `%` itself), so a claim can never
/// inject a header line or an invalid header value.
fn header_safe(value: &str) -> Cow<'_, str> {
    let safe = |b: u8| (0x20..0x7f).contains(&b) && b != b'%';
    if value.bytes().all(safe) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for b in value.bytes() {
        if safe(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sessiongate_core::deny::DenyReason;

    #[test]
    fn header_values_cannot_carry_control_characters() {
        assert_eq!(header_safe("alice"), "alice");
        assert_eq!(header_safe("a\r\nx-evil: 1"), "a%0D%0Ax-evil: 1");
        assert_eq!(header_safe("100%"), "100%25");
        assert_eq!(header_safe("zoë"), "zo%C3%AB");
    }

    #[test]
    fn owned_headers_are_recognised_whatever_their_case() {
        assert!(is_owned_header("x-sessiongate-subject"));
        assert!(is_owned_header("X-SessionGate-Anything"));
        assert!(!is_owned_header("x-session"));
        assert!(!is_owned_header("authorization"));
    }

    #[test]
    fn every_denial_carries_its_status_a_json_body_and_no_store() {
        for reason in DenyReason::ALL {
            let reply = denial(&Deny::new(reason, "x"));
            assert_eq!(reply.status, reason.http_status(), "{reason}");
            assert!(
                reply
                    .headers
                    .contains(&("cache-control", "no-store".to_owned()))
            );
            let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
            assert_eq!(body["reason"], reason.as_str());
        }
    }
}
