//! [`Outcome`] → `CheckResponse`.
//!
//! Two Envoy facts shape this file (verified against Envoy's source):
//! - a `CheckResponse` whose `status` is unset reads as code 0 and *allows* the request, so
//!   every response sets its status explicitly, and a denial is a non-zero status plus an
//!   explicit `denied_response`;
//! - for `OkHttpResponse.headers` Envoy 1.40 honours only the deprecated `append` flag, so the
//!   identity headers are set with `append: false` (overwrite, defeating a spoofed value), and
//!   `headers_to_remove` lists only the client's *other* `x-sessiongate-*` headers (removal runs
//!   after the sets, so listing the four would delete what was just set).

use envoy_types::ext_authz::v3::pb::{
    CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue, HeaderValueOption,
    HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::BoolValue;
use envoy_types::pb::google::rpc;

use sessiongate_check::answer;
use sessiongate_check::gate::Outcome;
use sessiongate_core::deny::{Deny, DenyReason};

pub use sessiongate_check::answer::{
    HEADER_PREFIX, SCOPES_HEADER, SESSION_HEADER, SUBJECT_HEADER, WORKLOAD_HEADER,
};

/// gRPC status codes (google.rpc.Code) used in `CheckResponse.status`.
mod code {
    pub const OK: i32 = 0;
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const PERMISSION_DENIED: i32 = 7;
    pub const UNAVAILABLE: i32 = 14;
    pub const UNAUTHENTICATED: i32 = 16;
}

/// The response for `outcome`. `client_headers` are the request's header names, from which
/// spoofed `x-sessiongate-*` headers are found; `principal` is the peer's `source.principal`.
pub fn check_response<'a>(
    outcome: &Outcome,
    principal: &str,
    client_headers: impl Iterator<Item = &'a str>,
) -> CheckResponse {
    match &outcome.verdict {
        Ok(()) => allowed(outcome, principal, client_headers),
        Err(deny) => denied(deny),
    }
}

/// An allow: identity headers for the upstream, spoofed headers removed.
fn allowed<'a>(
    outcome: &Outcome,
    principal: &str,
    client_headers: impl Iterator<Item = &'a str>,
) -> CheckResponse {
    let headers = answer::identity_headers(outcome, principal)
        .into_iter()
        .map(|(name, value)| overwrite(name, value.into_owned()))
        .collect();
    ok_with(headers, client_headers)
}

/// A would-be denial on a dry-run route: allowed, telling the upstream what would have
/// happened in [`sessiongate_core::dry_run::HEADER`], without identity headers (the upstream must not take a
/// request sessiongate would refuse for an authenticated one), spoofed headers removed.
pub fn dry_run_denial<'a>(
    deny: &Deny,
    client_headers: impl Iterator<Item = &'a str>,
) -> CheckResponse {
    let (name, value) = answer::dry_run_header(deny);
    ok_with(vec![overwrite(name, value)], client_headers)
}

/// An OK response setting `headers` (overwriting client values) and removing every other
/// `x-sessiongate-*` header the client sent. Removal runs after the sets in Envoy, so the
/// headers set here must not be listed for removal.
fn ok_with<'a>(
    headers: Vec<HeaderValueOption>,
    client_headers: impl Iterator<Item = &'a str>,
) -> CheckResponse {
    let is_set = |name: &str| {
        headers.iter().any(|h| {
            h.header
                .as_ref()
                .is_some_and(|h| h.key.eq_ignore_ascii_case(name))
        })
    };
    let headers_to_remove = client_headers
        .filter(|name| answer::is_owned_header(name) && !is_set(name))
        .map(str::to_owned)
        .collect();
    CheckResponse {
        status: Some(rpc::Status {
            code: code::OK,
            ..Default::default()
        }),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers,
            headers_to_remove,
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// A denial: an explicit non-OK status and the HTTP response the client gets.
pub fn denied(deny: &Deny) -> CheckResponse {
    let grpc_code = match deny.reason.http_status() {
        401 => code::UNAUTHENTICATED,
        403 => code::PERMISSION_DENIED,
        400 => code::INVALID_ARGUMENT,
        _ => code::UNAVAILABLE,
    };
    let reply = answer::denial(deny);
    let headers = reply
        .headers
        .into_iter()
        .map(|(name, value)| overwrite(name, value))
        .collect();
    CheckResponse {
        status: Some(rpc::Status {
            code: grpc_code,
            message: deny.reason.as_str().to_owned(),
            ..Default::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(reply.status),
            }),
            headers,
            body: reply.body,
        })),
        ..Default::default()
    }
}

/// The response when sessiongate itself cannot judge the request; still a denial (fail
/// closed), never a gRPC error that `failure_mode_allow` could turn into an allow.
pub fn internal_error(description: &'static str) -> CheckResponse {
    denied(&Deny::new(DenyReason::InternalError, description))
}

#[allow(deprecated)] // `append` is deprecated but is the flag Envoy 1.40 honours for ok responses.
fn overwrite(key: &str, value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_owned(),
            value,
            ..Default::default()
        }),
        append: Some(BoolValue { value: false }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_always_has_a_non_ok_status_and_a_denied_response() {
        for reason in DenyReason::ALL {
            let response = denied(&Deny::new(reason, "x"));
            let status = response.status.expect("status is always set");
            assert_ne!(status.code, code::OK, "{reason}");
            let Some(HttpResponse::DeniedResponse(denied)) = response.http_response else {
                panic!("{reason}: no denied response");
            };
            assert_eq!(denied.status.unwrap().code, i32::from(reason.http_status()));
            let body: serde_json::Value = serde_json::from_str(&denied.body).unwrap();
            assert_eq!(body["reason"], reason.as_str());
        }
    }

    #[test]
    fn grpc_status_follows_the_http_decision() {
        let code_of = |reason| denied(&Deny::new(reason, "x")).status.unwrap().code;
        assert_eq!(code_of(DenyReason::Expired), code::UNAUTHENTICATED);
        assert_eq!(code_of(DenyReason::NoRoute), code::PERMISSION_DENIED);
        assert_eq!(code_of(DenyReason::BadRequest), code::INVALID_ARGUMENT);
        assert_eq!(code_of(DenyReason::InternalError), code::UNAVAILABLE);
    }

    #[test]
    fn a_dry_run_denial_allows_with_the_reason_and_no_identity() {
        let names = ["x-sessiongate-dry-run", "X-Sessiongate-Subject", "accept"];
        let response = dry_run_denial(&Deny::new(DenyReason::MissingToken, "x"), names.into_iter());
        assert_eq!(response.status.unwrap().code, code::OK);
        let Some(HttpResponse::OkResponse(ok)) = response.http_response else {
            panic!("not ok")
        };
        let set: Vec<(&str, &str)> = ok
            .headers
            .iter()
            .filter_map(|h| h.header.as_ref())
            .map(|h| (h.key.as_str(), h.value.as_str()))
            .collect();
        assert_eq!(set, [("x-sessiongate-dry-run", "deny:missing_token")]);
        #[allow(deprecated)]
        let overwrites = ok.headers[0].append.as_ref().map(|b| b.value) == Some(false);
        assert!(
            overwrites,
            "a client-sent value is overwritten, never appended to"
        );
        assert_eq!(
            ok.headers_to_remove,
            vec!["X-Sessiongate-Subject"],
            "the spoofed identity header is removed; the set one is not"
        );
    }

    #[test]
    fn a_public_allow_removes_every_client_sessiongate_header() {
        let outcome = Outcome {
            route: Some("health".into()),
            verdict: Ok(()),
            session: None,
            pin: None,
            replay: None,
            introspection: None,
            dry_run: false,
        };
        let names = [
            "x-sessiongate-subject",
            "X-Sessiongate-Evil",
            "accept",
            "x-session",
        ];
        let response = check_response(&outcome, "", names.into_iter());
        assert_eq!(response.status.unwrap().code, code::OK);
        let Some(HttpResponse::OkResponse(ok)) = response.http_response else {
            panic!("not ok")
        };
        assert!(ok.headers.is_empty());
        assert_eq!(
            ok.headers_to_remove,
            vec!["x-sessiongate-subject", "X-Sessiongate-Evil"]
        );
    }
}
