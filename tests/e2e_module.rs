//! The in-process mode: Envoy 1.40 loading sessiongate as a dynamic module, with downstream
//! mTLS, real keys and certificates, and an upstream that echoes what it received.

mod support;

use support::policy::sessiongate_yaml;
use support::tokens::token;
use support::{SendExt as _, Stack, Workload, run};

use Workload::{Batch, Frontend};

#[test]
fn an_allowed_request_reaches_the_upstream_with_identity_headers() {
    run(async {
        let stack = Stack::start_module(&sessiongate_yaml(None)).await;
        let jwt = token().sub("module-alice").scope("orders:read").sign();
        let reply = stack
            .get(Frontend, "/orders/42")
            .bearer_auth(&jwt)
            .reply()
            .await;
        reply.assert_allowed();
        assert_eq!(
            reply.upstream_single("x-sessiongate-subject"),
            "module-alice"
        );
        assert_eq!(
            reply.upstream_single("x-sessiongate-workload"),
            Frontend.principal()
        );

        let replay = stack
            .get(Batch, "/orders/42")
            .bearer_auth(&jwt)
            .reply()
            .await;
        replay.assert_denied(401, "session_replayed");
    });
}
