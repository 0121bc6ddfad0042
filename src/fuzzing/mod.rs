//! The fuzz targets' bodies: one function per target, each taking the fuzzer's bytes and
//! panicking when an invariant fails.
//!
//! They live in the library, not in `fuzz/`, so that the `cargo fuzz` targets are one line each
//! and the normal `cargo test` run replays every committed seed and every crash input through
//! exactly the same code (`tests/fuzz_regressions.rs`). Each asserts what must hold for *any*
//! input, not just "no panic":
//!
//! - [`check_request`]: the `CheckRequest` wire decoder never panics, the facts it yields are
//!   bounded by the input, and they are what the full `envoy-types` message reads.
//! - [`token`]: the credential, JWS and claims parsers; the verifier accepts only bytes that
//!   were signed (or a re-encoding of their signature), and an accepted claim set is read as
//!   its JSON says.
//! - [`security_event`]: the same for Security Event Tokens, and their interpretation into
//!   revocations.
//! - [`config`]: the loader returns a configuration or an error naming file and key.
//! - [`revocation_log`]: a log written by the real [`crate::revocation::FileStore`], then
//!   damaged, is replayed whole, or as the store's documented torn-tail rule says, or refused;
//!   never silently short.
//!
//! Each function returns whether the input made it all the way through (verified, loaded,
//! replayed), so the replay test can check that the seed corpus still reaches the deep code.
//! None of this runs in the server; the keys involved are test fixtures and a fuzzing-only
//! key, trusted by nothing but these harnesses.

mod check_request;
mod config;
mod revocation_log;
mod security_event;
mod signing;
mod token;

pub use check_request::check_request;
pub use config::config;
pub use revocation_log::revocation_log;
pub use security_event::{SET_NOW, SIGNED_SETS, security_event};
pub use token::{SIGNED_TOKENS, token};

/// A directory for one input's scratch files, removed when dropped (also when an invariant
/// panics in a test). In memory when the system has `/dev/shm`: the revocation log is
/// `fsync`ed on every append, which costs nothing on tmpfs.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(target: &str) -> Scratch {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let shm = std::path::Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_owned()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!(
            "sessiongate-fuzz-{target}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        // A directory left by an earlier process with the same id (which crashed) is stale.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the fuzzing scratch directory");
        Scratch(dir)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
