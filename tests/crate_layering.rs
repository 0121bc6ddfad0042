//! The workspace's layering, read from `cargo tree`: the core decides without any I/O library,
//! and neither it nor the check use case drags in an async runtime, RPC, HTTP, Redis or
//! OpenTelemetry, so an in-process adapter (an Envoy dynamic module) can link them alone.

use std::collections::BTreeSet;
use std::process::Command;

/// Crates that do I/O or run it: none may appear under the core or the check use case.
const RUNTIME_AND_IO: &[&str] = &[
    "tokio",
    "mio",
    "tonic",
    "prost",
    "hyper",
    "h2",
    "http",
    "axum",
    "reqwest",
    "redis",
    "rustls",
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry-otlp",
    "tracing-subscriber",
    "notify",
];

/// The packages in `package`'s normal (non-dev, non-build) dependency tree.
fn dependencies(package: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args(["--format", "{p}", "-p", package])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("cargo tree prints UTF-8")
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn assert_none_of(package: &str, forbidden: &[&str]) {
    let tree = dependencies(package);
    assert!(
        tree.contains(package),
        "{package} is in its own tree: {tree:?}"
    );
    let found: Vec<&&str> = forbidden
        .iter()
        .filter(|name| tree.contains(**name))
        .collect();
    assert!(found.is_empty(), "{package} depends on {found:?}");
}

#[test]
fn the_core_has_no_runtime_io_crypto_or_cache_in_its_tree() {
    let mut forbidden = RUNTIME_AND_IO.to_vec();
    // Nor verification, key material or caches: those are the token crate's and the check's.
    forbidden.extend([
        "aws-lc-rs",
        "jsonwebtoken",
        "moka",
        "arc-swap",
        "tracing",
        "sessiongate-token",
        "sessiongate-check",
    ]);
    assert_none_of("sessiongate-core", &forbidden);
}

#[test]
fn token_verification_has_no_runtime_or_io_and_knows_nothing_of_checks() {
    let mut forbidden = RUNTIME_AND_IO.to_vec();
    forbidden.push("sessiongate-check");
    assert_none_of("sessiongate-token", &forbidden);
}

#[test]
fn the_check_use_case_has_no_runtime_or_io() {
    assert_none_of("sessiongate-check", RUNTIME_AND_IO);
}

/// The list is not vacuous: the server's own tree holds what the others must not.
#[test]
fn the_server_tree_holds_the_runtime_the_libraries_must_not() {
    let tree = dependencies("sessiongate");
    for name in [
        "tokio",
        "tonic",
        "redis",
        "hyper",
        "opentelemetry",
        "sessiongate-check",
    ] {
        assert!(
            tree.contains(name),
            "sessiongate depends on {name}: {tree:?}"
        );
    }
}
