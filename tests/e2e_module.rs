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

// ----- trust changes reach the module ------------------------------------------------------

use std::time::{Duration, Instant};

use support::jwks_server::{JwksServer, fixture_jwks};
use support::policy::with_first_issuer_keys;
use support::reply::Reply;
use support::tokens::{Alg, token};
use support::{SendExt as _, Workload, admin, replace_file, run};

use Workload::Frontend;

/// How long a trust change may take to reach the module before a test gives up.
const REACH: Duration = Duration::from_secs(10);

/// Sends GET `/orders/1` with `jwt` as the frontend until `done` holds for the reply (the
/// change it waits for has reached the module), at most [`REACH`]; returns that reply.
async fn first_reply_where(stack: &Stack, jwt: &str, done: impl Fn(&Reply) -> bool) -> Reply {
    let deadline = Instant::now() + REACH;
    loop {
        let reply = stack
            .get(Frontend, "/orders/1")
            .bearer_auth(jwt)
            .reply()
            .await;
        if done(&reply) {
            return reply;
        }
        assert!(
            Instant::now() < deadline,
            "the change never reached the module: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A free loopback port for a listener the module binds itself (its admin API).
fn free_port() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("reserve a port");
    listener.local_addr().expect("reserved address")
}

#[test]
fn a_revocation_through_the_modules_admin_api_denies_the_next_request() {
    run(async {
        let address = free_port();
        let yaml = admin::on_admin_port(&admin::with_admin(&sessiongate_yaml(None)), address);
        let stack = Stack::start_module_in(admin::prepared_dir(), &yaml).await;
        let jwt = token().sub("module-revoked").sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_allowed();

        let mut client = admin::client(address).await;
        admin::revoke(
            &mut client,
            admin::subject(support::tokens::ISSUER, "module-revoked"),
            None,
        )
        .await;
        let acknowledged = Instant::now();
        let reply = stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await;
        eprintln!(
            "figure: Revoke acknowledged -> the next request through the module answered: {:?}",
            acknowledged.elapsed()
        );
        reply.assert_denied(401, "revoked");
    });
}

#[test]
fn a_rotated_jwks_file_reaches_the_module() {
    run(async {
        let keys_dir = tempfile::tempdir().unwrap();
        let jwks = keys_dir.path().join("rotating.json");
        std::fs::write(&jwks, fixture_jwks(&["test-rs256", "test-es256"])).unwrap();
        let yaml = with_first_issuer_keys(
            &sessiongate_yaml(None),
            &format!("    jwks_file: \"{}\"\n", jwks.display()),
        );
        let stack = Stack::start_module(&yaml).await;
        let old_key = token().alg(Alg::Rs256).sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&old_key)
            .reply()
            .await
            .assert_allowed();

        replace_file(&jwks, &fixture_jwks(&["test-es256", "test-eddsa"]));
        first_reply_where(&stack, &old_key, |reply| reply.status != 200)
            .await
            .assert_denied(401, "unknown_key");
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(token().alg(Alg::EdDsa).sign())
            .reply()
            .await
            .assert_allowed();
    });
}

#[test]
fn a_narrowed_route_scope_reaches_the_module_by_hot_reload() {
    run(async {
        let yaml = sessiongate_yaml(None);
        let stack = Stack::start_module(&yaml).await;
        let cached = token().scope("orders:read").sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&cached)
            .reply()
            .await
            .assert_allowed();

        let narrowed = yaml.replacen(
            "scopes: [\"orders:read\"]",
            "scopes: [\"orders:read\", \"orders:history\"]",
            1,
        );
        assert_ne!(narrowed, yaml, "the policy names the read scope");
        replace_file(&stack.dir().join("sessiongate.yaml"), &narrowed);
        first_reply_where(&stack, &cached, |reply| reply.status != 200)
            .await
            .assert_denied(403, "insufficient_scope");
    });
}

#[test]
fn keys_stale_past_max_stale_fail_closed_in_the_module() {
    run(async {
        let server = JwksServer::start(&["test-rs256"]).await;
        let yaml = with_first_issuer_keys(
            &sessiongate_yaml(None),
            &server.issuer_keys_yaml("min_interval: 1s, max_interval: 1s, max_stale: 3s"),
        );
        let stack = Stack::start_module(&yaml).await;
        let cached = token().sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&cached)
            .reply()
            .await
            .assert_allowed();

        server.set_down(true);
        let down = Instant::now();
        first_reply_where(&stack, &cached, |reply| reply.status != 200)
            .await
            .assert_denied(503, "internal_error");
        assert!(
            down.elapsed() >= Duration::from_secs(2),
            "not before max_stale"
        );

        server.set_down(false);
        first_reply_where(&stack, &cached, |reply| reply.status == 200).await;
    });
}

#[test]
fn an_invalid_config_stops_envoy_with_the_message_check_config_gives() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let broken =
            sessiongate_yaml(None).replacen("max_token_age: 15m", "max_token_age: soon", 1);
        let config = dir.path().join("sessiongate.yaml");
        std::fs::write(&config, &broken).unwrap();
        std::fs::copy(support::tokens::jwks_path(), dir.path().join("jwks.json")).unwrap();
        let check_config = std::process::Command::new(support::sessiongate::binary())
            .arg("check-config")
            .arg(&config)
            .output()
            .expect("sessiongate check-config runs");
        assert!(!check_config.status.success());
        let message = String::from_utf8_lossy(&check_config.stderr)
            .trim()
            .to_owned();
        assert!(message.contains("max_token_age"), "{message}");

        let output = support::module::envoy_refusing(dir.path(), &config).await;
        assert!(
            output.contains(&message),
            "Envoy's log does not carry check-config's message `{message}`:\n{output}"
        );
    });
}

// ----- operations -----------------------------------------------------------------------------

/// The value of the first Prometheus sample on Envoy's admin `/stats/prometheus` whose line
/// starts with `series` (a metric name and its labels), or 0 when Envoy has none yet.
async fn envoy_sample(stack: &Stack, series: &str) -> u64 {
    let text = reqwest::get(format!("http://{}/stats/prometheus", stack.envoy.admin))
        .await
        .and_then(reqwest::Response::error_for_status)
        .expect("GET /stats/prometheus")
        .text()
        .await
        .expect("stats text");
    text.lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .map_or(0, |value| value.parse().expect("a sample value"))
}

/// Envoy's sample for `series` once it is at least `expected`, waiting at most [`REACH`]: the
/// module hands its counts to Envoy once a second.
async fn envoy_sample_reaching(stack: &Stack, series: &str, expected: u64) -> u64 {
    let deadline = Instant::now() + REACH;
    loop {
        let value = envoy_sample(stack, series).await;
        if value >= expected {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{series} stayed at {value}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn decisions_are_counted_in_envoys_own_stats_by_decision_reason_and_route() {
    run(async {
        let stack = Stack::start_module(&sessiongate_yaml(None)).await;
        // Not the route and reason of the start-up probe (GET /orders/1 without a token, whose
        // count may still be on its way to Envoy).
        let denied = r#"envoy_dynamicmodulescustom_checks{decision="deny",reason="missing_token",route="orders-write"}"#;
        let allowed = r#"envoy_dynamicmodulescustom_checks{decision="allow",reason="none",route="orders-read"}"#;
        let (denied_before, allowed_before) = (
            envoy_sample(&stack, denied).await,
            envoy_sample(&stack, allowed).await,
        );
        for _ in 0..2 {
            stack
                .post(Frontend, "/orders")
                .reply()
                .await
                .assert_denied(401, "missing_token");
        }
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(token().sign())
            .reply()
            .await
            .assert_allowed();
        // Exactly: nothing is counted twice.
        assert_eq!(
            envoy_sample_reaching(&stack, denied, denied_before + 2).await,
            denied_before + 2
        );
        assert_eq!(
            envoy_sample_reaching(&stack, allowed, allowed_before + 1).await,
            allowed_before + 1
        );
    });
}

#[test]
fn a_revocation_at_a_sidecar_of_the_redis_fleet_reaches_the_module() {
    run(async {
        let redis = support::redis::RedisServer::start().await;
        let fleet = format!(
            "revocation:\n  backend: redis\n  url: \"{}\"\n  key_prefix: \"e2e:\"\n",
            redis.url()
        );
        let sidecar_yaml = format!(
            "{}\nadmin:\n  listen: \"127.0.0.1:0\"\n  token_file: \"admin.token\"\n{fleet}",
            sessiongate_yaml(None)
        );
        let sidecar = Stack::start_in(admin::prepared_dir(), &sidecar_yaml).await;
        let module = Stack::start_module(&format!("{}\n{fleet}", sessiongate_yaml(None))).await;
        let jwt = token().sub("fleet-revoked").sign();
        module
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_allowed();

        let admin_addr = sidecar
            .sessiongate
            .as_ref()
            .and_then(|sessiongate| sessiongate.admin_addr)
            .expect("the sidecar's admin API");
        let mut client = admin::client(admin_addr).await;
        admin::revoke(
            &mut client,
            admin::subject(support::tokens::ISSUER, "fleet-revoked"),
            None,
        )
        .await;
        let acknowledged = Instant::now();
        first_reply_where(&module, &jwt, |reply| reply.status != 200)
            .await
            .assert_denied(401, "revoked");
        eprintln!(
            "figure: Revoke acknowledged at a sidecar -> first denial through the module: {:?}",
            acknowledged.elapsed()
        );
        // Pins are the fleet's too: the session pinned at the module is a replay at the sidecar.
        let pinned = token().sub("fleet-pinned").sign();
        module
            .get(Frontend, "/orders/1")
            .bearer_auth(&pinned)
            .reply()
            .await
            .assert_allowed();
        sidecar
            .get(support::Workload::Batch, "/orders/1")
            .bearer_auth(&pinned)
            .reply()
            .await
            .assert_denied(401, "session_replayed");
    });
}

#[test]
fn a_route_in_dry_run_lets_a_would_be_denial_through_with_the_dry_run_header() {
    run(async {
        let yaml = support::policy::orders_read_in_dry_run(&sessiongate_yaml(None));
        let stack = Stack::start_module(&yaml).await;
        let reply = stack
            .get(Frontend, "/orders/1")
            .header("x-sessiongate-dry-run", "allow")
            .header("x-sessiongate-subject", "mallory")
            .reply()
            .await;
        reply.assert_allowed();
        assert_eq!(
            reply.upstream_single("x-sessiongate-dry-run"),
            "deny:missing_token"
        );
        assert_eq!(
            reply.upstream_sessiongate_headers(),
            ["x-sessiongate-dry-run"],
            "no identity for a would-be denial, spoofed headers removed: {reply}"
        );
        let counted = r#"envoy_dynamicmodulescustom_checks{decision="dry_run_deny",reason="missing_token",route="orders-read"}"#;
        envoy_sample_reaching(&stack, counted, 1).await;
        // Routes not in dry-run are enforced.
        stack
            .post(Frontend, "/orders")
            .reply()
            .await
            .assert_denied(401, "missing_token");
    });
}

#[test]
fn a_denial_is_logged_and_described_in_the_dynamic_metadata_for_access_logs_and_traces() {
    run(async {
        let stack = Stack::start_module(&sessiongate_yaml(None)).await;
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(token().iat_age(3600).sign())
            .reply()
            .await
            .assert_denied(401, "token_too_old");
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(token().sign())
            .reply()
            .await
            .assert_allowed();
        // Envoy writes the access log when each request ends, asynchronously: wait for both.
        let log = stack.dir().join("access.log");
        let deadline = Instant::now() + REACH;
        let lines = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if lines.iter().any(|line| line.starts_with("200 ")) {
                break lines;
            }
            assert!(Instant::now() < deadline, "no access log lines: {text:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(
            lines.contains(&"401 deny token_too_old orders-read".to_owned()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"200 - - -".to_owned()),
            "an allow writes no metadata: {lines:?}"
        );
        // And the decision log's line, as the sidecar writes it, on Envoy's stdout.
        let deadline = Instant::now() + REACH;
        while !stack.envoy.output().lines().any(|line| {
            line.contains(r#""decision":"deny""#) && line.contains(r#""reason":"token_too_old""#)
        }) {
            assert!(
                Instant::now() < deadline,
                "no decision-log line on Envoy's stdout:\n{}",
                stack.envoy.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

#[test]
fn a_shared_signals_session_revoked_event_pushed_to_the_module_denies_the_session() {
    run(async {
        let address = free_port();
        let yaml = admin::on_admin_port(&support::ssf::sessiongate_yaml(), address);
        let dir = tempfile::tempdir().unwrap();
        support::ssf::prepare_dir(dir.path());
        let stack = Stack::start_module_in(dir, &yaml).await;
        let user = support::ssf::unique("module-ssf");
        let jwt = token().sub(&user).iat_age(5).sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_allowed();

        let event = support::ssf::set(
            support::ssf::iss_sub(&user),
            &support::ssf::caep("session-revoked"),
            serde_json::json!({}),
        );
        support::ssf::push(address, event.sign())
            .await
            .assert_accepted();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_denied(401, "revoked");
    });
}

/// DPoP in the module with the Redis fleet: the proof's replay claim waits on Redis (the
/// module's resume path), and a proof used through the module is a replay at a sidecar of the
/// same fleet, and the other way round.
#[test]
fn a_dpop_proof_used_through_the_module_is_a_replay_at_a_sidecar_of_the_fleet() {
    run(async {
        let redis = support::redis::RedisServer::start().await;
        let shared = format!(
            "dpop:\n  origin: https://api.example.test\n\
             revocation:\n  backend: redis\n  url: \"{}\"\n  key_prefix: \"e2e:\"\n",
            redis.url()
        );
        let sidecar = Stack::start_in(
            admin::prepared_dir(),
            &format!("{}\n{shared}", sessiongate_yaml(None)),
        )
        .await;
        let module = Stack::start_module(&format!("{}\n{shared}", sessiongate_yaml(None))).await;
        let client = sessiongate_token::testing::DpopClient::es256();
        let jwt = token()
            .sub("module-dpop-fleet")
            .claim("cnf", serde_json::json!({"jkt": client.jkt()}))
            .sign();
        let url = "https://api.example.test/orders/1";
        let send = |stack: &'static str, proof: String| {
            let target = if stack == "module" { &module } else { &sidecar };
            target
                .get(Frontend, "/orders/1")
                .header("authorization", format!("DPoP {jwt}"))
                .header("dpop", proof)
                .reply()
        };
        let proof = client.proof("GET", url, &jwt);
        send("module", proof.clone()).await.assert_allowed();
        send("sidecar", proof)
            .await
            .assert_denied(401, "dpop_proof_replayed");
        let proof = client.proof("GET", url, &jwt);
        send("sidecar", proof.clone()).await.assert_allowed();
        send("module", proof)
            .await
            .assert_denied(401, "dpop_proof_replayed");
    });
}
