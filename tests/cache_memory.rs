//! Measures what a cached session costs in memory, for `docs/operations.md` ("Sizing the
//! cache"). Not part of the normal run (it takes a while and measures rather than asserts
//! much); run it with
//!
//!   cargo test --release --test cache_memory -- --ignored --nocapture
//!
//! It builds the real gate from the test policy, then judges `SESSIONS` requests, each with a
//! fresh EdDSA token of realistic size (sub, jti, sid, client_id, email, scopes), so each
//! becomes one cached session; the process's resident set size is read from
//! `/proc/self/status` before and after. Tokens are dropped right after their check, so what
//! grows is the cache (the cache's entry, the `Session` and its verified claims).

mod support;

use sessiongate::{app, config};
use sessiongate_core::request::{AuthorizationValues, PeerFacts, RequestFacts};
use sessiongate_core::time::UnixTime;
use support::policy::sessiongate_yaml;
use support::tokens::{self, Alg, token};
use support::{Workload, run};

const SESSIONS: usize = 100_000;

/// Resident set size in KiB (Linux).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

#[test]
#[ignore = "a measurement; run with --ignored --nocapture (ideally --release)"]
fn memory_per_cached_session() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(tokens::jwks_path(), dir.path().join("jwks.json")).unwrap();
        let file = dir.path().join("sessiongate.yaml");
        // The test policy caches at most 10,000 sessions; raise it past the sample size.
        // Every request is a new token: lift the verification budget that bounds attackers.
        let yaml = sessiongate_yaml(None)
            .replace("cache_capacity: 10000", "cache_capacity: 200000")
            + "limits:\n  verifications: {per_caller: 10000000, per_caller_burst: 10000000, \
               total: 10000000, total_burst: 10000000}\n";
        std::fs::write(&file, yaml).unwrap();
        let gate = app::build_gate(config::load(&file).unwrap()).await.unwrap();
        let principal = Workload::Frontend.principal();
        let check = |n: usize| {
            let jwt = token()
                .alg(Alg::EdDsa)
                .sub(&format!("user-{n:08}@example.com"))
                .claim("sid", format!("sid-{n:016x}"))
                .claim("email", format!("user-{n:08}@example.com"))
                .claim("client_id", principal)
                .scope("orders:read orders:write profile")
                .sign();
            let header = format!("Bearer {jwt}");
            let facts = RequestFacts {
                method: "GET",
                path: "/orders/1",
                host: "shop.example",
                policy: None,
                authorization: AuthorizationValues::One(&header),
                peer: PeerFacts {
                    principal,
                    ..PeerFacts::default()
                },
                ..RequestFacts::default()
            };
            let outcome = gate.check(&facts, UnixTime::now());
            assert!(outcome.verdict.is_ok(), "{:?}", outcome.verdict);
        };
        // Warm up allocator, key ring and cache structures before the baseline.
        for n in 0..1_000 {
            check(n);
        }
        let before = rss_kib();
        let started = std::time::Instant::now();
        for n in 1_000..1_000 + SESSIONS {
            check(n);
        }
        let elapsed = started.elapsed();
        let after = rss_kib();
        let per_session = (after - before) as f64 * 1024.0 / SESSIONS as f64;
        println!(
            "{SESSIONS} sessions: RSS {before} KiB -> {after} KiB (+{} KiB), {per_session:.0} bytes per \
             cached session; {:.1} µs per session to mint a token and judge it",
            after - before,
            elapsed.as_secs_f64() * 1e6 / SESSIONS as f64
        );
        assert!(per_session > 0.0);
    });
}
