//! One tokio runtime for the whole test binary.
//!
//! `#[tokio::test]` gives each test its own runtime, which dies with the test, and takes with it
//! every task spawned on it: a shared echo upstream would stop answering, and pooled connections
//! would be left bound to a dead reactor. Tests are therefore plain `#[test]`s that
//! [`run`] their body on this runtime, whose background tasks live as long as the binary.

use std::future::Future;
use std::sync::LazyLock;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("test runtime")
});

/// Runs a test body to completion on the shared runtime (callable from many test threads).
pub fn run<F: Future>(body: F) -> F::Output {
    RUNTIME.block_on(body)
}
