//! The in-process mode end to end: Envoy 1.40 loading sessiongate as a dynamic module
//! (`libsessiongate_envoy.so`, built by the test run), downstream mTLS, real keys and
//! certificates, and an upstream that echoes what it received.
//!
//! The whole decision table (`tests/decision_table/cases.rs`) runs here exactly as it runs
//! through ext_authz in `tests/e2e_envoy.rs`: same statuses, reasons, challenges and headers.

mod support;

#[path = "decision_table/cases.rs"]
mod cases;

use support::Stack;
use support::policy::sessiongate_yaml;
use tokio::sync::OnceCell;

/// The stack most cases share: [`sessiongate_yaml`] without an idle timeout, in the module.
async fn shared_stack() -> &'static Stack {
    static SHARED: OnceCell<Stack> = OnceCell::const_new();
    SHARED
        .get_or_init(|| async { Stack::start_module(&sessiongate_yaml(None)).await })
        .await
}

/// A module stack of its own for a case that needs another sessiongate config.
async fn own_stack(sessiongate_yaml: &str) -> Stack {
    Stack::start_module(sessiongate_yaml).await
}

/// [`own_stack`] in a folder the case prepared.
async fn own_stack_in(dir: tempfile::TempDir, sessiongate_yaml: &str) -> Stack {
    Stack::start_module_in(dir, sessiongate_yaml).await
}
