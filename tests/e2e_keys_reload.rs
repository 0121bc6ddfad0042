//! End-to-end, through a real Envoy: keys that change and configuration that changes.
//!
//! Each test starts its own stack (its own sessiongate config) and changes something under the
//! running sidecar: the JWKS file, the keys at a `jwks_uri`, the key source's availability, the
//! config file (in place, through a Kubernetes ConfigMap symlink swap, on SIGHUP, invalid).
//! Tests wait for the sidecar's own events (its JSON log lines: `keys changed`,
//! `config reloaded` with its generation, `config rejected`, `readiness changed`) or for the
//! gRPC health status, never for a fixed sleep.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::jwks_server::{JwksServer, fixture_jwks};
use support::policy::{sessiongate_yaml, with_first_issuer_keys};
use support::replace_file;
use support::tokens::{Alg, token};
use support::{SendExt as _, Stack, Workload, run};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use Workload::Frontend;

/// Longest wait for an event the sidecar is expected to produce; generous for a busy machine.
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

// ----- helpers ----------------------------------------------------------------------------

fn sessiongate(stack: &Stack) -> &support::sessiongate::Sessiongate {
    stack.sessiongate.as_ref().expect("stack runs sessiongate")
}

/// The sidecar's JSON log events seen so far (its last few hundred lines).
fn events(stack: &Stack) -> Vec<Value> {
    sessiongate(stack)
        .output()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .collect()
}

fn field<'v>(event: &'v Value, name: &str) -> Option<&'v Value> {
    event.get("fields")?.get(name)
}

fn message(event: &Value) -> &str {
    field(event, "message")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Waits until a log event with this message satisfies `matches`; returns it. A bounded poll
/// of the captured output (there is no other channel to the child's log).
async fn wait_for_event(stack: &Stack, wanted: &str, matches: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        if let Some(event) = events(stack)
            .into_iter()
            .find(|event| message(event) == wanted && matches(event))
        {
            return event;
        }
        assert!(
            Instant::now() < deadline,
            "no `{wanted}` event within {EVENT_TIMEOUT:?}\n{}",
            stack.output()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_for_generation(stack: &Stack, generation: u64) -> Value {
    wait_for_event(stack, "config reloaded", |event| {
        field(event, "generation").and_then(Value::as_u64) == Some(generation)
    })
    .await
}

fn config_path(stack: &Stack) -> PathBuf {
    sessiongate(stack).config_path.clone()
}

/// The sessiongate process itself (not its watchdog shell): the one whose argv[0] is the binary
/// and whose command line names this stack's config file.
fn sessiongate_pid(stack: &Stack) -> String {
    let binary = support::sessiongate::binary();
    let config = config_path(stack);
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|entry| {
            let pid = entry.ok()?.file_name().into_string().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_ours = args.first()? == &binary.as_os_str().as_encoded_bytes()
                && args
                    .iter()
                    .any(|a| *a == config.as_os_str().as_encoded_bytes());
            is_ours.then_some(pid)
        })
        .next()
        .expect("the sessiongate process")
}

fn send_sighup(stack: &Stack) {
    let pid = sessiongate_pid(stack);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -HUP {pid}");
}

async fn health_client(stack: &Stack) -> HealthClient<tonic::transport::Channel> {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", sessiongate(stack).grpc_addr))
            .expect("health endpoint")
            .connect()
            .await
            .expect("connect to the health service");
    HealthClient::new(channel)
}

async fn health(stack: &Stack) -> ServingStatus {
    let response = health_client(stack)
        .await
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("grpc.health.v1 Check");
    response.into_inner().status()
}

/// Follows the health service's `Watch` stream until it reports `wanted`.
async fn wait_for_health(stack: &Stack, wanted: ServingStatus) {
    let mut stream = health_client(stack)
        .await
        .watch(HealthCheckRequest {
            service: "envoy.service.auth.v3.Authorization".into(),
        })
        .await
        .expect("grpc.health.v1 Watch")
        .into_inner();
    let reached = tokio::time::timeout(EVENT_TIMEOUT, async {
        while let Some(update) = stream.message().await.expect("health stream") {
            if update.status() == wanted {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(reached, Ok(true)),
        "health never reported {wanted:?}\n{}",
        stack.output()
    );
}

// ----- (a) a rotated JWKS file ------------------------------------------------------------

#[test]
fn a_rotated_jwks_file_denies_the_removed_keys_session_and_admits_the_new_key() {
    run(async {
        let keys_dir = tempfile::tempdir().unwrap();
        let jwks = keys_dir.path().join("rotating.json");
        std::fs::write(&jwks, fixture_jwks(&["test-rs256", "test-es256"])).unwrap();
        let yaml = with_first_issuer_keys(
            &sessiongate_yaml(None),
            &format!("    jwks_file: \"{}\"\n", jwks.display()),
        );
        let stack = Stack::start(&yaml).await;
        let old_key = token().alg(Alg::Rs256).sign();
        let new_key = token().alg(Alg::EdDsa).sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&old_key)
            .reply()
            .await
            .assert_allowed();

        let rotated = Instant::now();
        replace_file(&jwks, &fixture_jwks(&["test-es256", "test-eddsa"]));
        wait_for_event(&stack, "keys changed", |event| {
            field(event, "removed").is_some_and(|r| r.to_string().contains("test-rs256"))
        })
        .await;
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&old_key)
            .reply()
            .await
            .assert_denied(401, "unknown_key")
            .assert_challenge_starts_with(r#"Bearer error="invalid_token""#);
        eprintln!(
            "figure: JWKS file replaced -> first unknown_key denial: {:?}",
            rotated.elapsed()
        );
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&new_key)
            .reply()
            .await
            .assert_allowed();
    });
}

// ----- (b) jwks_uri: unknown kid, removal, outage -----------------------------------------

#[test]
fn an_unknown_kid_refreshes_the_keys_and_a_key_removed_at_the_uri_denies_its_session() {
    run(async {
        let server = JwksServer::start(&["test-rs256"]).await;
        // A long max-age: only an unknown kid can make the sidecar look again soon.
        server.set_cache_control(Some("public, max-age=3600"));
        let yaml = with_first_issuer_keys(
            &sessiongate_yaml(None),
            &server.issuer_keys_yaml("min_interval: 1s, max_interval: 1h, max_stale: 2h"),
        );
        let stack = Stack::start(&yaml).await;
        let old_key = token().alg(Alg::Rs256).sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&old_key)
            .reply()
            .await
            .assert_allowed();
        let fetched_at_start = server.jwks_requests();

        // The issuer rotates in a new key; a token signed with it arrives at once.
        server.set_keys(&["test-rs256", "test-eddsa"]);
        // From the next fetch on, the sidecar may look again after 1 s (max-age clamped up to
        // min_interval): that is how the removal below is seen without another unknown kid.
        server.set_cache_control(Some("max-age=0"));
        let started = Instant::now();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(token().alg(Alg::EdDsa).sign())
            .reply()
            .await
            .assert_allowed();
        eprintln!(
            "figure: first request with a new kid, refresh included: {:?}",
            started.elapsed()
        );
        assert_eq!(
            server.jwks_requests(),
            fetched_at_start + 1,
            "one forced fetch"
        );
        wait_for_event(
            &stack,
            "token names an unknown key; refreshing the issuer's keys",
            |_| true,
        )
        .await;

        // A flood of invented kids costs the issuer at most one fetch per min_interval.
        let before_flood = server.jwks_requests();
        for _ in 0..5 {
            stack
                .get(Frontend, "/orders/1")
                .bearer_auth(token().alg(Alg::EdDsa).kid("invented").sign())
                .reply()
                .await
                .assert_denied(401, "unknown_key");
        }
        assert!(server.jwks_requests() <= before_flood + 2, "rate limit");

        // The old key leaves the set: its cached session is denied after the next refresh.
        let removed = Instant::now();
        server.set_keys(&["test-eddsa"]);
        wait_for_event(&stack, "keys changed", |event| {
            field(event, "removed").is_some_and(|r| r.to_string().contains("test-rs256"))
        })
        .await;
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&old_key)
            .reply()
            .await
            .assert_denied(401, "unknown_key");
        eprintln!(
            "figure: key removed at the jwks_uri -> first unknown_key denial: {:?} \
             (refresh interval 1 s)",
            removed.elapsed()
        );
    });
}

#[test]
fn an_unreachable_source_keeps_the_last_good_keys_until_max_stale_then_fails_closed() {
    run(async {
        let server = JwksServer::start(&["test-rs256"]).await;
        let yaml = with_first_issuer_keys(
            &sessiongate_yaml(None),
            &server.issuer_keys_yaml("min_interval: 1s, max_interval: 1s, max_stale: 4s"),
        );
        let stack = Stack::start(&yaml).await;
        let cached = token().sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&cached)
            .reply()
            .await
            .assert_allowed();
        assert_eq!(health(&stack).await, ServingStatus::Serving);

        server.set_down(true);
        let down = Instant::now();
        wait_for_event(
            &stack,
            "key refresh failed; keeping the last good keys",
            |_| true,
        )
        .await;
        // Within max_stale, the last good set serves cached and new sessions alike.
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&cached)
            .reply()
            .await
            .assert_allowed();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(token().sign())
            .reply()
            .await
            .assert_allowed();
        assert_eq!(health(&stack).await, ServingStatus::Serving);

        wait_for_health(&stack, ServingStatus::NotServing).await;
        eprintln!(
            "figure: source down -> NOT_SERVING: {:?} (max_stale 4 s)",
            down.elapsed()
        );
        assert!(
            down.elapsed() >= Duration::from_secs(3),
            "not before max_stale"
        );
        for jwt in [cached.clone(), token().sign()] {
            stack
                .get(Frontend, "/orders/1")
                .bearer_auth(jwt)
                .reply()
                .await
                .assert_denied(503, "internal_error");
        }

        // The source comes back: the issuer is trusted again, the cached session revives.
        server.set_down(false);
        wait_for_health(&stack, ServingStatus::Serving).await;
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&cached)
            .reply()
            .await
            .assert_allowed();
    });
}

#[test]
fn discovery_finds_the_jwks_uri_in_the_issuers_metadata() {
    run(async {
        let server = JwksServer::start(&["test-es256"]).await;
        let issuer = server.issuer();
        let yaml = with_first_issuer_keys(&sessiongate_yaml(None), "    discovery: true\n")
            .replacen(support::tokens::ISSUER, &issuer, 1);
        let stack = Stack::start(&yaml).await;
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(token().alg(Alg::Es256).iss(&issuer).sign())
            .reply()
            .await
            .assert_allowed();
        assert_eq!(server.jwks_requests(), 1);
    });
}

// ----- (c)–(f) hot reload -----------------------------------------------------------------

const READ_SCOPE: &str = r#"scopes: ["orders:read"]"#;
const NARROWED_SCOPE: &str = r#"scopes: ["orders:read", "orders:history"]"#;

/// Turns the stack's config file into a Kubernetes ConfigMap mount: `sessiongate.yaml` →
/// `..data/sessiongate.yaml`, `..data` → `..<version>`. Returns a function that publishes a
/// new version the way the kubelet does (new directory, `..data` swapped by rename).
fn as_configmap(config: &Path) -> impl Fn(&str) + use<> {
    let dir = config.parent().unwrap().to_owned();
    let name = config.file_name().unwrap().to_owned();
    let file_name = name.clone();
    let publish = move |version: usize, content: &str| {
        let versioned = dir.join(format!("..2026_01_01_00_00_{version:02}"));
        std::fs::create_dir(&versioned).unwrap();
        std::fs::write(versioned.join(&file_name), content).unwrap();
        let temporary = dir.join("..data_tmp");
        std::os::unix::fs::symlink(versioned.file_name().unwrap(), &temporary).unwrap();
        std::fs::rename(&temporary, dir.join("..data")).unwrap();
    };
    let current = std::fs::read_to_string(config).unwrap();
    publish(0, &current);
    let link = config.with_extension("link-tmp");
    std::os::unix::fs::symlink(Path::new("..data").join(&name), &link).unwrap();
    std::fs::rename(&link, config).unwrap();
    let version = std::sync::atomic::AtomicUsize::new(1);
    move |content: &str| publish(version.fetch_add(1, Ordering::Relaxed), content)
}

#[test]
fn a_narrowed_route_scope_denies_the_cached_session_on_its_next_request() {
    run(async {
        let yaml = sessiongate_yaml(None);
        assert!(yaml.contains(READ_SCOPE));
        let stack = Stack::start(&yaml).await;
        let publish = as_configmap(&config_path(&stack));
        let cached = token().scope("orders:read").sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&cached)
            .reply()
            .await
            .assert_allowed();

        let published = Instant::now();
        publish(&yaml.replace(READ_SCOPE, NARROWED_SCOPE));
        wait_for_generation(&stack, 1).await;
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&cached)
            .reply()
            .await
            .assert_denied(403, "insufficient_scope")
            .assert_challenge(
                r#"Bearer error="insufficient_scope", scope="orders:read orders:history""#,
            );
        eprintln!(
            "figure: ConfigMap swap -> first insufficient_scope denial: {:?}",
            published.elapsed()
        );
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(token().scope("orders:read orders:history").sign())
            .reply()
            .await
            .assert_allowed();
    });
}

#[test]
fn sighup_reloads_the_config() {
    run(async {
        let stack = Stack::start(&sessiongate_yaml(None)).await;
        send_sighup(&stack);
        let event = wait_for_generation(&stack, 1).await;
        assert_eq!(
            field(&event, "trigger").and_then(Value::as_str),
            Some("SIGHUP")
        );
        send_sighup(&stack);
        wait_for_generation(&stack, 2).await;
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(token().sign())
            .reply()
            .await
            .assert_allowed();
    });
}

#[test]
fn an_invalid_config_is_rejected_naming_the_key_and_the_running_policy_stays() {
    run(async {
        let yaml = sessiongate_yaml(None);
        let stack = Stack::start(&yaml).await;
        let cached = token().sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&cached)
            .reply()
            .await
            .assert_allowed();

        // Narrowed *and* broken: nothing of it may apply.
        let broken = yaml
            .replace(READ_SCOPE, NARROWED_SCOPE)
            .replace(r#"scopes: ["orders:write"]"#, r#"scopes: ["orders write"]"#);
        replace_file(&config_path(&stack), &broken);
        let event = wait_for_event(&stack, "config rejected; the running policy stays", |_| {
            true
        })
        .await;
        assert_eq!(
            field(&event, "key").and_then(Value::as_str),
            Some("routes[1].scopes[0]"),
            "{event}"
        );
        assert!(
            field(&event, "problem")
                .and_then(Value::as_str)
                .is_some_and(|p| p.contains("is not a valid OAuth scope")),
            "{event}"
        );
        assert!(
            field(&event, "file")
                .and_then(Value::as_str)
                .is_some_and(|f| f.ends_with("sessiongate.yaml")),
            "{event}"
        );
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&cached)
            .reply()
            .await
            .assert_allowed();
        assert_eq!(health(&stack).await, ServingStatus::Serving);

        // Fixed: now it applies.
        replace_file(
            &config_path(&stack),
            &yaml.replace(READ_SCOPE, NARROWED_SCOPE),
        );
        wait_for_generation(&stack, 1).await;
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&cached)
            .reply()
            .await
            .assert_denied(403, "insufficient_scope");
    });
}

#[test]
fn no_request_is_dropped_across_reloads() {
    run(async {
        let yaml = sessiongate_yaml(None);
        let variant = yaml.replace("max_auth_age: 8h", "max_auth_age: 9h");
        assert_ne!(yaml, variant);
        let stack = Arc::new(Stack::start(&yaml).await);
        let stop = Arc::new(AtomicBool::new(false));
        let mut clients = Vec::new();
        for client in 0..2 {
            let (stack, stop) = (Arc::clone(&stack), Arc::clone(&stop));
            clients.push(tokio::spawn(async move {
                let cached = token().sign();
                let (mut sent, mut failures) = (0u32, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    // Mostly a cached session; every fourth request a new token, verified.
                    let jwt = if sent % 4 == 3 {
                        token().sign()
                    } else {
                        cached.clone()
                    };
                    let result = stack
                        .get(Frontend, "/orders/1")
                        .bearer_auth(jwt)
                        .send()
                        .await;
                    match result {
                        Ok(response) if response.status() == 200 => {}
                        Ok(response) => failures.push(format!(
                            "client {client}: HTTP {} {}",
                            response.status(),
                            response.text().await.unwrap_or_default()
                        )),
                        Err(error) => failures.push(format!("client {client}: {error}")),
                    }
                    sent += 1;
                }
                (sent, failures)
            }));
        }
        let config = config_path(&stack);
        let mut running_variant = false;
        for generation in 1..=10u64 {
            if generation % 3 == 0 {
                send_sighup(&stack);
            } else {
                running_variant = !running_variant;
                replace_file(&config, if running_variant { &variant } else { &yaml });
            }
            wait_for_generation(&stack, generation).await;
        }
        stop.store(true, Ordering::Relaxed);
        let (mut total, mut failures) = (0, Vec::new());
        for client in clients {
            let (sent, failed) = client.await.unwrap();
            total += sent;
            failures.extend(failed);
        }
        eprintln!(
            "figure: {total} requests across 10 reloads, {} not allowed",
            failures.len()
        );
        assert!(failures.is_empty(), "{failures:#?}\n{}", stack.output());
        assert!(total >= 20, "requests kept flowing: only {total}");
    });
}
