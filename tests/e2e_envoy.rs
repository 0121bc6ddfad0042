//! End-to-end: real Envoy 1.40 with downstream mTLS, its ext_authz filter calling the real
//! sessiongate binary, real keys and certificates, and an upstream that echoes what it received.
//!
//! The decision table itself is `tests/decision_table/cases.rs`, run here and, through Envoy
//! loading the dynamic module, in `tests/e2e_module.rs`. What only the ext_authz mode has is
//! here: failing closed when the sidecar is unreachable, and an explicit answer to every call
//! even with `failure_mode_allow`. (The example Envoy config is validated in
//! `tests/deploy_configs.rs`, with every other deployment artefact.)
//!
//! Needs Envoy: `scripts/install-envoy.sh` (or `SESSIONGATE_ENVOY=/path/to/envoy`). Most tests
//! share one stack; the idle-timeout tests start their own because that needs another config.

mod support;

#[path = "decision_table/cases.rs"]
mod cases;

use support::tokens::{self, token};
use support::{SendExt as _, Stack, Workload, run};
use tokio::sync::OnceCell;

use Workload::Frontend;

/// The stack most cases share: [`support::policy::sessiongate_yaml`] without an idle timeout.
async fn shared_stack() -> &'static Stack {
    Stack::shared().await
}

/// A stack of its own for a case that needs another sessiongate config.
async fn own_stack(sessiongate_yaml: &str) -> Stack {
    Stack::start(sessiongate_yaml).await
}

/// [`own_stack`] in a folder the case prepared.
async fn own_stack_in(dir: tempfile::TempDir, sessiongate_yaml: &str) -> Stack {
    Stack::start_in(dir, sessiongate_yaml).await
}

// ----- failing closed, and the example ---------------------------------------------------

#[test]
fn sidecar_unreachable_fails_closed_with_503() {
    run(async {
        let stack = Stack::without_sessiongate().await;
        let jwt = tokens::token().sign();
        let reply = stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await;
        assert!(
            reply.status == 503 && !reply.reached_upstream(),
            "Envoy must fail closed with 503 when sessiongate is unreachable, got {reply}"
        );
    });
}

// ----- an answer to every call, even with failure_mode_allow (own stack) -------------------

/// Envoy with `failure_mode_allow: true` and `with_request_body`: every failed Check call is
/// let through, so only an explicit answer to every call keeps these requests out.
async fn fail_open_stack() -> &'static Stack {
    static FAIL_OPEN: OnceCell<Stack> = OnceCell::const_new();
    FAIL_OPEN
        .get_or_init(|| async {
            Stack::start_with_ext_authz(
                tempfile::tempdir().expect("stack temp dir"),
                &support::policy::sessiongate_yaml(None),
                support::envoy_config::ExtAuthzOptions {
                    failure_mode_allow: true,
                    max_request_bytes: Some(2_000_000),
                },
            )
            .await
        })
        .await
}

#[test]
fn an_oversized_check_request_is_denied_bad_request_even_with_failure_mode_allow() {
    run(async {
        let stack = fail_open_stack().await;
        // 1.5 MB of body puts the CheckRequest over sessiongate's 1 MiB bound.
        let reply = stack
            .post(Frontend, "/orders")
            .body(vec![b'a'; 1_500_000])
            .reply()
            .await;
        reply.assert_denied(400, "bad_request");
        let description = reply.body["error_description"].as_str().unwrap_or_default();
        assert!(
            description.contains("exceeds limits.max_check_request_bytes"),
            "{reply}"
        );
        // A small body is judged as usual on the same stack.
        stack
            .post(Frontend, "/orders")
            .body("{}")
            .reply()
            .await
            .assert_denied(401, "missing_token");
    });
}

/// Envoy 1.40 itself replaces bytes that are not UTF-8 in header values and in the body with
/// `!` before they reach a CheckRequest's `string` fields (runtime guard
/// `service_sanitize_non_utf8_strings`); sessiongate's own handling of such bytes is tested in
/// `tests/grpc_check.rs`. Either way such a request is judged, never let through as a failed
/// call.
#[test]
fn a_header_value_or_body_that_is_not_utf8_is_judged_even_with_failure_mode_allow() {
    run(async {
        let stack = fail_open_stack().await;
        // A Latin-1 header value and a binary body.
        let latin1 = reqwest::header::HeaderValue::from_bytes(b"caf\xe9").unwrap();
        let binary: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        stack
            .post(Frontend, "/orders")
            .header("user-agent", latin1.clone())
            .body(binary)
            .reply()
            .await
            .assert_denied(401, "missing_token");
        let jwt = token().scope("orders:read").sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .header("x-note", latin1)
            .reply()
            .await
            .assert_allowed();
        // In the credential itself it can never be a token: a bad request.
        let mut credential = format!("Bearer {jwt}").into_bytes();
        credential.push(0xe9);
        stack
            .get(Frontend, "/orders/1")
            .header(
                "authorization",
                reqwest::header::HeaderValue::from_bytes(&credential).unwrap(),
            )
            .reply()
            .await
            .assert_denied(400, "bad_request");
    });
}
