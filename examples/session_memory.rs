//! Resident memory of the session cache: fills the real gate (example policy, example keys) with
//! `N` verified sessions and reads the process's resident set size before and after.
//!
//! ```text
//! cargo run --release --example session_memory -- 1000000
//! ```
//!
//! Each session is a distinct, realistic EdDSA token (`sub`, `jti`, `sid`, `email`, `client_id`,
//! three scopes, about 520 bytes) judged by `Gate::check` exactly as a first request is: verified,
//! cached, pinned to the frontend workload and recorded as allowed. Tokens are minted and dropped
//! in batches on every core, so what grows is the cache: its entry (key and pointer), the
//! `Session` and its verified claims. Prints one JSON line (MiB for all sessions, bytes per session).

#[path = "../benches/support/mod.rs"]
mod support;

use std::time::Instant;

use sessiongate::{app, config};
use sessiongate_check::gate::Gate;
use support::{Alg, Minter};

/// Resident set size in KiB (Linux).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("read /proc/self/status")
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

fn check(gate: &Gate, minter: &Minter, certificate: &str, n: u64) {
    let token = minter.token(Alg::EdDsa, n);
    let request = support::check_request(&format!("Bearer {token}"), certificate);
    support::allow_and_pin(gate, &request);
}

fn main() -> anyhow::Result<()> {
    let sessions: u64 = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let file = support::write_config(dir.path(), "127.0.0.1:0", "127.0.0.1:0", sessions + 10_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let gate = runtime.block_on(async { app::build_gate(config::load(&file)?).await })?;
    let minter = Minter::new();
    let certificate = support::frontend_certificate();
    // Warm allocator, key ring and cache structures before the baseline.
    for n in 0..2_000 {
        check(&gate, &minter, &certificate, n);
    }
    let before = rss_kib();
    let started = Instant::now();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (gate, minter, certificate) = (&gate, &minter, &certificate);
            scope.spawn(move || {
                let mut n = 10_000 + t;
                while n < 10_000 + sessions {
                    check(gate, minter, certificate, n);
                    n += threads;
                }
            });
        }
    });
    let after = rss_kib();
    let cached = gate.sessions().len();
    let grown = after.saturating_sub(before) * 1024;
    println!(
        "{{\"sessions\":{sessions},\"session_struct_bytes\":{},\"cached\":{cached},\"rss_before_mib\":{:.1},\"rss_after_mib\":{:.1},\"grown_mib\":{:.1},\"bytes_per_session\":{:.0},\"seconds\":{:.1}}}",
        std::mem::size_of::<sessiongate_check::session::Session>(),
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        grown as f64 / (1024.0 * 1024.0),
        grown as f64 / sessions as f64,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
