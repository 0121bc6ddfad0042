//! The sessiongate configuration the end-to-end tests run against.
//!
//! It mirrors `examples/sessiongate.yaml` (the deployment issue 2 describes) with the test
//! issuers, plus what only tests need: an ES256-only issuer (for "valid algorithm, not allowed
//! here") and a `/reports` route open to every workload of the trust domain, which a caller
//! without a SPIFFE ID must still not reach.

use super::pki::Workload;
use super::tokens::{AUDIENCE, ES256_ONLY_ISSUER, ISSUER};

/// Seconds in `session.max_auth_age`; the step-up challenge must carry this as `max_age`.
pub const MAX_AUTH_AGE_SECS: u64 = 8 * 3600;
/// Seconds in `session.max_token_age` (global).
pub const MAX_TOKEN_AGE_SECS: i64 = 15 * 60;
/// Seconds in the `orders-write` route's `max_token_age` override.
pub const ORDERS_WRITE_MAX_TOKEN_AGE_SECS: i64 = 2 * 60;
/// Seconds of `session.clock_skew`; time-rule tests step well past it.
pub const CLOCK_SKEW_SECS: i64 = 30;

/// Renders the config; `idle_timeout` (e.g. `"2s"`) enables the idle-session rule.
pub fn sessiongate_yaml(idle_timeout: Option<&str>) -> String {
    let idle = idle_timeout
        .map(|t| format!("  idle_timeout: {t}\n"))
        .unwrap_or_default();
    let frontend = Workload::Frontend.principal();
    format!(
        r#"# Rendered by tests/support/policy.rs.
listen:
  grpc: "127.0.0.1:0"
  http: "127.0.0.1:0"

issuers:
  - issuer: "{ISSUER}"
    audiences: ["{AUDIENCE}"]
    jwks_file: "jwks.json"
    algorithms: ["RS256", "ES256", "EdDSA"]
  - issuer: "{ES256_ONLY_ISSUER}"
    audiences: ["{AUDIENCE}"]
    jwks_file: "jwks.json"
    algorithms: ["ES256"]

session:
  max_token_age: 15m
  max_auth_age: 8h
{idle}  clock_skew: 30s
  cache_capacity: 10000
  scope_claim: scope

binding:
  claim: client_id
  pin_first_workload: true

routes:
  - name: health
    path_prefix: /healthz
    public: true
  - name: orders-write
    methods: [POST, PUT, DELETE]
    path_prefix: /orders
    scopes: ["orders:write"]
    max_token_age: 2m
    workloads: ["{frontend}"]
  - name: orders-read
    methods: [GET, HEAD]
    path_prefix: /orders
    scopes: ["orders:read"]
  - name: reports
    path_prefix: /reports
    workloads: ["spiffe://cluster.local/*"]
  - name: by-envoy-route
    policy: admin
    scopes: ["admin"]
"#
    )
}

/// `yaml` (from [`sessiongate_yaml`]) with the first issuer's `jwks_file` line replaced by
/// `keys`, e.g. `jwks_uri: "http://127.0.0.1:8080/jwks"` plus a `keys_refresh` block (indented
/// four spaces, as an issuer's keys are).
pub fn with_first_issuer_keys(yaml: &str, keys: &str) -> String {
    yaml.replacen("    jwks_file: \"jwks.json\"\n", keys, 1)
}

/// The sessiongate config with the `orders-read` route in dry-run.
pub fn orders_read_in_dry_run(yaml: &str) -> String {
    let route = "  - name: orders-read\n    methods: [GET, HEAD]\n    path_prefix: /orders\n";
    assert!(yaml.contains(route), "the test policy changed");
    yaml.replacen(route, &format!("{route}    dry_run: true\n"), 1)
}
