//! End-to-end, through a real Envoy: the ops listener (`/metrics`, `/healthz`, `/readyz`) and
//! dry-run rollout.
//!
//! Metrics are scraped as Prometheus would, checked with a real exposition parser
//! (`promtool check metrics`, from Debian's `prometheus` package, which `scripts/test.sh`
//! installs), and counted: each test runs its own stack, so a counter moves by exactly the
//! requests the test sent.

mod support;

use std::collections::HashMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::jwks_server::JwksServer;
use support::policy::{sessiongate_yaml, with_first_issuer_keys};
use support::tokens::{ISSUER, token};
use support::{SendExt as _, Stack, Workload, run};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use Workload::Frontend;

/// Longest wait for a state the sidecar is expected to reach; generous for a busy machine.
const WAIT: Duration = Duration::from_secs(20);

// ----- helpers ----------------------------------------------------------------------------

fn ops_url(stack: &Stack, path: &str) -> String {
    let sessiongate = stack.sessiongate.as_ref().expect("stack runs sessiongate");
    format!("http://{}{path}", sessiongate.http_addr)
}

async fn get(stack: &Stack, path: &str) -> (u16, String) {
    let response = reqwest::get(ops_url(stack, path))
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.expect("ops body"))
}

/// Every sample of a scrape, keyed `name{labels}` exactly as exposed.
struct Scrape {
    text: String,
    samples: HashMap<String, f64>,
}

impl Scrape {
    /// The sample's value; a series not exposed (yet) counts as 0.
    fn value(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }
}

/// Scrapes `/metrics` as a plain scraper (classic text format) and checks it with `promtool`.
async fn scrape(stack: &Stack) -> Scrape {
    let (status, text) = get(stack, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    promtool_check(&text);
    let samples = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect();
    Scrape { text, samples }
}

/// `promtool check metrics`: parses the exposition and lints names, types and help.
fn promtool_check(text: &str) {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) => panic!(
            "promtool is needed to check /metrics ({error}); scripts/test.sh installs it \
             (apt-get install prometheus)"
        ),
    };
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool ran");
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n--- scraped ---\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn decisions(decision: &str, reason: &str, route: &str, dry_run: bool) -> String {
    format!(
        r#"sessiongate_decisions_total{{decision="{decision}",reason="{reason}",route="{route}",dry_run="{dry_run}"}}"#
    )
}

/// Polls `/readyz` until it answers `status`; returns its JSON body.
async fn wait_for_readyz(stack: &Stack, status: u16) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (got, body) = get(stack, "/readyz").await;
        if got == status {
            return serde_json::from_str(&body).expect("/readyz answers JSON");
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never answered {status} (last: {got} {body})\n{}",
            stack.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ----- metrics ----------------------------------------------------------------------------

/// The shipped alert rules (`docs/prometheus/alerts.yaml`).
fn alert_rules() -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/prometheus/alerts.yaml");
    let text = std::fs::read_to_string(path).expect("read the alert rules");
    let rules: Value = serde_yaml_ng::from_str(&text).expect("the alert rules are YAML");
    let groups = rules["groups"].as_array().expect("groups");
    groups
        .iter()
        .flat_map(|group| group["rules"].as_array().expect("rules").iter())
        .map(|rule| {
            let name = rule["alert"].as_str().expect("an alert name").to_owned();
            (name, rule["expr"].as_str().expect("an expr").to_owned())
        })
        .collect()
}

/// Every `sessiongate_…` series selector in a PromQL expression: the metric name and its
/// equality matchers (`{decision="deny",reason="unknown_key"}`).
fn selectors(expr: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("sessiongate_") {
        rest = &rest[at..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let name = rest[..end].to_owned();
        rest = &rest[end..];
        let mut matchers = Vec::new();
        if let Some(inner) = rest.strip_prefix('{') {
            let close = inner.find('}').expect("a closed selector");
            for matcher in inner[..close].split(',').filter(|m| !m.trim().is_empty()) {
                let (label, value) = matcher.split_once('=').expect("an equality matcher");
                assert!(!label.ends_with('!'), "only equality matchers: {expr}");
                matchers.push((
                    label.trim().to_owned(),
                    value.trim().trim_matches('"').to_owned(),
                ));
            }
            rest = &inner[close..];
        }
        found.push((name, matchers));
    }
    found
}

/// `name{a="x",b="y"}` as exposed: the name and its labels.
fn parse_series(series: &str) -> (&str, HashMap<&str, &str>) {
    let Some((name, labels)) = series.split_once('{') else {
        return (series, HashMap::new());
    };
    let labels = labels.strip_suffix('}').expect("labels end with }");
    let mut parsed = HashMap::new();
    let mut rest = labels;
    while let Some((label, value)) = rest.split_once("=\"") {
        let end = value.find('"').expect("a quoted label value");
        parsed.insert(label.trim_start_matches(','), &value[..end]);
        rest = &value[end + 1..];
    }
    (name, parsed)
}

/// Issue 11, point 5: every series an alert selects exists from the first scrape, a counter at
/// 0, so `increase()` and `rate()` see its first event. The list is read from the shipped alert
/// rules, so an alert added on a series that appears late fails here.
/// A route a reload adds is declared at 0 like one present at start-up: an alert on its first
/// denial must not miss it.
#[test]
fn a_route_added_by_a_reload_has_its_series_at_0() {
    run(async {
        let stack = Stack::start(&sessiongate_yaml(None)).await;
        let series = r#"sessiongate_decisions_total{decision="deny",reason="revoked",route="added-by-reload",dry_run="false"}"#;
        assert_eq!(scrape(&stack).await.samples.get(series), None);
        let sessiongate = stack.sessiongate.as_ref().expect("sessiongate");
        let yaml = std::fs::read_to_string(&sessiongate.config_path).unwrap();
        let added = yaml.replace(
            "routes:\n",
            "routes:\n  - name: added-by-reload\n    path_prefix: /added\n",
        );
        assert_ne!(added, yaml);
        std::fs::write(&sessiongate.config_path, added).unwrap();
        let deadline = Instant::now() + WAIT;
        let scraped = loop {
            let scraped = scrape(&stack).await;
            if scraped.samples.get("sessiongate_config_generation") == Some(&1.0) {
                break scraped;
            }
            assert!(
                Instant::now() < deadline,
                "the reload never applied\n{}",
                stack.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(scraped.samples.get(series), Some(&0.0), "{}", scraped.text);
    });
}

#[test]
fn every_series_the_shipped_alerts_select_exists_at_0_from_start_up() {
    run(async {
        let stack = Stack::start(&sessiongate_yaml(None)).await;
        let scraped = scrape(&stack).await;
        let samples: Vec<(&str, HashMap<&str, &str>, f64)> = scraped
            .samples
            .iter()
            .map(|(series, value)| {
                let (name, labels) = parse_series(series);
                (name, labels, *value)
            })
            .collect();
        // The two the issue names, exactly.
        for series in [
            r#"sessiongate_config_reloads_total{result="rejected"}"#.to_owned(),
            format!(r#"sessiongate_key_refreshes_total{{issuer="{ISSUER}",result="failure"}}"#),
            format!(
                r#"sessiongate_key_refreshes_total{{issuer="{}",result="failure"}}"#,
                support::tokens::ES256_ONLY_ISSUER
            ),
        ] {
            assert_eq!(
                scraped.samples.get(&series),
                Some(&0.0),
                "{series} at start-up\n{}",
                scraped.text
            );
        }
        let rules = alert_rules();
        assert!(rules.len() >= 8, "the shipped alerts: {rules:?}");
        let mut checked = Vec::new();
        for (alert, expr) in &rules {
            for (name, matchers) in selectors(expr) {
                let matching: Vec<f64> = samples
                    .iter()
                    .filter(|(sample, labels, _)| {
                        *sample == name
                            && matchers.iter().all(|(label, value)| {
                                labels.get(label.as_str()) == Some(&value.as_str())
                            })
                    })
                    .map(|(_, _, value)| *value)
                    .collect();
                assert!(
                    !matching.is_empty(),
                    "alert {alert}: no series {name}{matchers:?} at start-up, so its first \
                     event is invisible to `{expr}`\n{}",
                    scraped.text
                );
                if name.ends_with("_total") || name.ends_with("_bucket") {
                    assert!(
                        matching.iter().all(|value| *value == 0.0),
                        "alert {alert}: {name}{matchers:?} is not 0 at start-up: {matching:?}"
                    );
                }
                checked.push(name);
            }
        }
        eprintln!("series checked at start-up: {checked:?}");
    });
}

#[test]
fn metrics_count_every_decision_by_reason_and_route_and_parse_with_promtool() {
    run(async {
        let stack = Stack::start(&sessiongate_yaml(None)).await;
        let before = scrape(&stack).await;
        assert_eq!(
            before.value(&decisions("allow", "none", "orders-read", false)),
            0.0
        );
        assert!(
            before
                .samples
                .contains_key(&decisions("allow", "none", "orders-read", false)),
            "configured routes are exposed before their first request:\n{}",
            before.text
        );

        for _ in 0..3 {
            stack
                .get(Frontend, "/orders/1")
                .reply()
                .await
                .assert_denied(401, "missing_token");
        }
        let session = token().sign();
        for _ in 0..2 {
            stack
                .get(Frontend, "/orders/1")
                .bearer_auth(&session)
                .reply()
                .await
                .assert_allowed();
        }
        stack
            .post(Frontend, "/orders")
            .bearer_auth(token().sign())
            .reply()
            .await
            .assert_denied(403, "insufficient_scope");
        stack
            .get(Frontend, "/nowhere")
            .bearer_auth(&session)
            .reply()
            .await
            .assert_denied(403, "no_route");

        let after = scrape(&stack).await;
        let delta = |series: &str| after.value(series) - before.value(series);
        assert_eq!(
            delta(&decisions("deny", "missing_token", "orders-read", false)),
            3.0
        );
        assert_eq!(
            delta(&decisions("allow", "none", "orders-read", false)),
            2.0
        );
        assert_eq!(
            delta(&decisions(
                "deny",
                "insufficient_scope",
                "orders-write",
                false
            )),
            1.0
        );
        assert_eq!(delta(&decisions("deny", "no_route", "-", false)), 1.0);
        assert_eq!(
            delta(r#"sessiongate_check_duration_seconds_count{decision="deny"}"#),
            5.0
        );
        assert_eq!(
            delta(r#"sessiongate_check_duration_seconds_count{decision="allow"}"#),
            2.0
        );
        assert_eq!(
            delta(r#"sessiongate_session_age_seconds_count{route="orders-read"}"#),
            2.0,
            "each allowed request records its session's age"
        );
        assert_eq!(
            delta(r#"sessiongate_session_age_seconds_bucket{le="60.0",route="orders-read"}"#),
            2.0,
            "a token minted now is under a minute old"
        );
        assert_eq!(
            delta("sessiongate_signature_verifications_total"),
            2.0,
            "one per new session: the allowed one and the under-scoped one"
        );
        assert_eq!(
            delta("sessiongate_session_cache_hits_total"),
            1.0,
            "the second allow found the cached session (no_route is decided before any lookup)"
        );
        assert_eq!(delta("sessiongate_session_cache_misses_total"), 2.0);
        assert_eq!(after.value("sessiongate_ready"), 1.0);
        assert_eq!(
            after.value(&format!(
                r#"sessiongate_key_refreshes_total{{issuer="{ISSUER}",result="success"}}"#
            )),
            1.0,
            "the start-up load"
        );
        for forbidden in ["alice", "orders/1", "eyJ"] {
            assert!(
                !after.text.contains(forbidden),
                "no subject, path or token in labels: `{forbidden}`"
            );
        }
    });
}

// ----- dry-run ----------------------------------------------------------------------------

#[test]
fn a_route_in_dry_run_lets_a_would_be_denial_through_telling_the_upstream_why() {
    run(async {
        let stack = Stack::start(&support::policy::orders_read_in_dry_run(&sessiongate_yaml(
            None,
        )))
        .await;
        let reply = stack
            .get(Frontend, "/orders/1")
            .header("x-sessiongate-dry-run", "allow")
            .header("x-sessiongate-subject", "mallory")
            .reply()
            .await;
        reply.assert_allowed();
        assert_eq!(
            reply.upstream_single("x-sessiongate-dry-run"),
            "deny:missing_token",
            "a client-sent value is overwritten"
        );
        assert_eq!(
            reply.upstream_sessiongate_headers(),
            ["x-sessiongate-dry-run"],
            "no identity for a would-be denial, spoofed headers removed: {reply}"
        );

        let stale = token().iat_age(3600).sign();
        let reply = stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&stale)
            .reply()
            .await;
        reply.assert_allowed();
        assert_eq!(
            reply.upstream_single("x-sessiongate-dry-run"),
            "deny:token_too_old"
        );

        let fresh = stack
            .get(Frontend, "/orders/1")
            .bearer_auth(token().sign())
            .reply()
            .await;
        fresh.assert_allowed();
        assert!(
            fresh.upstream_header("x-sessiongate-dry-run").is_empty(),
            "an allow needs no dry-run note"
        );
        assert_eq!(fresh.upstream_single("x-sessiongate-subject"), "alice");

        // Routes not in dry-run are enforced.
        stack
            .post(Frontend, "/orders")
            .reply()
            .await
            .assert_denied(401, "missing_token");

        let metrics = scrape(&stack).await;
        assert_eq!(
            metrics.value(&decisions("deny", "missing_token", "orders-read", true)),
            1.0
        );
        assert_eq!(
            metrics.value(&decisions("deny", "token_too_old", "orders-read", true)),
            1.0
        );
        assert_eq!(
            metrics.value(&decisions("allow", "none", "orders-read", true)),
            1.0
        );
        assert_eq!(
            metrics.value(&decisions("deny", "missing_token", "orders-write", false)),
            1.0
        );
        let log = stack.output();
        assert!(
            log.lines()
                .any(|line| line.contains(r#""reason":"token_too_old""#)
                    && line.contains(r#""dry_run":true"#)
                    && line.contains(r#""enforced":false"#)
                    && line.contains(r#""subject":"alice""#)),
            "the decision log records the would-be denial\n{log}"
        );
        assert!(
            !log.contains(&stale),
            "the decision log never carries the token"
        );
    });
}

#[test]
fn a_reload_switches_a_route_to_dry_run_and_readiness_holds_throughout() {
    run(async {
        let yaml = sessiongate_yaml(None);
        let stack = Stack::start(&yaml).await;
        stack
            .get(Frontend, "/orders/1")
            .reply()
            .await
            .assert_denied(401, "missing_token");
        let config = stack
            .sessiongate
            .as_ref()
            .expect("stack runs sessiongate")
            .config_path
            .clone();
        let temporary = config.with_extension("tmp-write");
        std::fs::write(&temporary, support::policy::orders_read_in_dry_run(&yaml))
            .expect("write config");
        std::fs::rename(&temporary, &config).expect("replace config");

        let deadline = Instant::now() + WAIT;
        loop {
            let (status, body) = get(&stack, "/readyz").await;
            assert_eq!(status, 200, "ready across a reload: {body}");
            let body: Value = serde_json::from_str(&body).expect("JSON");
            if body["config_generation"] == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "no reload\n{}", stack.output());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let reply = stack.get(Frontend, "/orders/1").reply().await;
        reply.assert_allowed();
        assert_eq!(
            reply.upstream_single("x-sessiongate-dry-run"),
            "deny:missing_token"
        );
        let metrics = scrape(&stack).await;
        assert_eq!(metrics.value("sessiongate_config_generation"), 1.0);
        assert_eq!(
            metrics.value(r#"sessiongate_config_reloads_total{result="applied"}"#),
            1.0
        );
    });
}

// ----- health -----------------------------------------------------------------------------

#[test]
fn healthz_and_readyz_answer_200_on_a_healthy_sidecar() {
    run(async {
        let stack = Stack::start(&sessiongate_yaml(None)).await;
        let (status, _) = get(&stack, "/healthz").await;
        assert_eq!(status, 200);
        let ready = wait_for_readyz(&stack, 200).await;
        assert_eq!(ready["ready"], true);
        assert_eq!(ready["stopping"], false);
        assert_eq!(ready["keys_stale"], serde_json::json!([]));
        assert_eq!(ready["revocation_store"], "up");
    });
}

#[test]
fn readyz_is_503_while_an_issuers_keys_are_stale_and_names_the_issuer() {
    run(async {
        let server = JwksServer::start(&["test-rs256"]).await;
        let yaml = with_first_issuer_keys(
            &sessiongate_yaml(None),
            &format!(
                "    jwks_uri: \"{}\"\n    keys_refresh: {{ min_interval: 1s, max_interval: 1s, max_stale: 3s }}\n",
                server.jwks_uri()
            ),
        );
        let stack = Stack::start(&yaml).await;
        wait_for_readyz(&stack, 200).await;

        server.set_down(true);
        let down = Instant::now();
        let report = wait_for_readyz(&stack, 503).await;
        eprintln!(
            "figure: key source down -> /readyz 503: {:?} (max_stale 3 s)",
            down.elapsed()
        );
        assert_eq!(report["ready"], false);
        assert_eq!(report["keys_stale"], serde_json::json!([ISSUER]));
        let (status, _) = get(&stack, "/healthz").await;
        assert_eq!(status, 200, "stale keys never fail liveness");
        let metrics = scrape(&stack).await;
        assert_eq!(
            metrics.value(&format!(r#"sessiongate_keys_stale{{issuer="{ISSUER}"}}"#)),
            1.0
        );
        assert!(
            metrics.value(&format!(
                r#"sessiongate_key_refreshes_total{{issuer="{ISSUER}",result="failure"}}"#
            )) >= 1.0
        );
        assert_eq!(metrics.value("sessiongate_ready"), 0.0);

        server.set_down(false);
        let report = wait_for_readyz(&stack, 200).await;
        assert_eq!(report["keys_stale"], serde_json::json!([]));
    });
}

/// Opens a `Check` call on the ext_authz port whose request body never arrives: a call in
/// flight that the drain must wait for (up to `shutdown_grace`, or `limits.body_timeout`).
/// Dropping the returned sender ends the body.
async fn stalled_check(
    address: std::net::SocketAddr,
) -> tokio::sync::mpsc::Sender<
    Result<hyper::body::Frame<hyper::body::Bytes>, std::convert::Infallible>,
> {
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect to the gRPC port");
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    let (body, frames) = tokio::sync::mpsc::channel(1);
    let request = hyper::Request::post(format!(
        "http://{address}/envoy.service.auth.v3.Authorization/Check"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(http_body_util::StreamBody::new(
        tokio_stream::wrappers::ReceiverStream::new(frames),
    ))
    .expect("request");
    let mut stalled = sender.clone();
    tokio::spawn(async move {
        let _ = stalled.send_request(request).await;
    });
    // Half a gRPC frame header: the call has started, its message has not arrived.
    body.send(Ok(hyper::body::Frame::data(
        hyper::body::Bytes::from_static(&[0, 0]),
    )))
    .await
    .expect("send the first bytes");
    // The server reads one connection's frames in order: once a health Check sent after the
    // stalled call is answered, the stalled call is in flight at the server (not merely
    // queued in a socket), so a stop must wait for it.
    let (probe_body, probe_frames) = tokio::sync::mpsc::channel(1);
    probe_body
        .send(Ok(hyper::body::Frame::data(
            hyper::body::Bytes::from_static(&[0, 0, 0, 0, 0]),
        )))
        .await
        .expect("queue the probe");
    drop(probe_body);
    let probe = hyper::Request::post(format!("http://{address}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::StreamBody::new(
            tokio_stream::wrappers::ReceiverStream::new(probe_frames),
        ))
        .expect("probe request");
    let answered = sender
        .send_request(probe)
        .await
        .expect("health Check answered");
    assert_eq!(answered.status(), 200);
    body
}

/// Polls until the process exited; how long that took since `since`.
async fn wait_for_exit(stack: &Stack, since: Instant, within: Duration) -> Duration {
    let sessiongate = stack.sessiongate.as_ref().expect("stack runs sessiongate");
    while !sessiongate.exited() {
        assert!(
            since.elapsed() < within,
            "still running {within:?} after SIGTERM\n{}",
            stack.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    since.elapsed()
}

#[test]
fn readyz_is_503_as_soon_as_sigterm_arrives_while_in_flight_calls_drain() {
    run(async {
        let yaml = format!("{}\nshutdown_grace: 3s\n", sessiongate_yaml(None));
        let stack = Stack::start(&yaml).await;
        let sessiongate = stack.sessiongate.as_ref().expect("stack runs sessiongate");
        wait_for_readyz(&stack, 200).await;
        // An in-flight call the drain must wait for: a Check whose body has not arrived.
        let _held = stalled_check(sessiongate.grpc_addr).await;

        sessiongate.signal("TERM");
        let signalled = Instant::now();
        let report = wait_for_readyz(&stack, 503).await;
        eprintln!("figure: SIGTERM -> /readyz 503: {:?}", signalled.elapsed());
        assert_eq!(report["stopping"], true);
        assert_eq!(report["ready"], false);
        let (status, _) = get(&stack, "/healthz").await;
        assert_eq!(status, 200, "alive while draining");

        let took = wait_for_exit(&stack, signalled, WAIT).await;
        eprintln!("figure: SIGTERM -> exit with a call in flight: {took:?} (shutdown_grace 3 s)");
        assert!(
            took >= Duration::from_secs(2),
            "the in-flight call was given its grace: {took:?}"
        );
        assert!(
            took < Duration::from_secs(8),
            "the configured grace bounds the drain: {took:?}"
        );
    });
}

/// Issue 11, point 4: an open `grpc.health.v1.Health/Watch` stream (a health checker) does not
/// hold SIGTERM for `shutdown_grace`: on stop the watcher is sent NOT_SERVING, its stream ends,
/// and with no Check in flight the process exits at once.
#[test]
fn a_health_watch_stream_sees_not_serving_and_ends_and_does_not_delay_sigterm() {
    run(async {
        let yaml = format!("{}\nshutdown_grace: 30s\n", sessiongate_yaml(None));
        let stack = Stack::start(&yaml).await;
        let sessiongate = stack.sessiongate.as_ref().expect("stack runs sessiongate");
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{}", sessiongate.grpc_addr))
                .expect("endpoint")
                .connect()
                .await
                .expect("connect to the gRPC port");
        let mut watch = HealthClient::new(channel)
            .watch(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("Watch")
            .into_inner();
        let first = watch
            .message()
            .await
            .expect("first status")
            .expect("a status");
        assert_eq!(first.status, ServingStatus::Serving as i32);

        sessiongate.signal("TERM");
        let signalled = Instant::now();
        let took = wait_for_exit(&stack, signalled, Duration::from_secs(5)).await;
        eprintln!(
            "figure: SIGTERM -> exit with a Watch stream open: {took:?} (shutdown_grace 30 s)"
        );
        let last = watch.message().await.expect("the stream ends cleanly");
        assert_eq!(
            last.map(|status| status.status),
            Some(ServingStatus::NotServing as i32),
            "the watcher is told NOT_SERVING"
        );
        assert!(
            watch
                .message()
                .await
                .expect("ends with status OK")
                .is_none(),
            "then the stream ends"
        );
    });
}

/// A flood of bad requests is not a flood of log lines: within one second at most
/// `telemetry.log_denied_per_second` lines per reason are written, while the metrics count
/// every denial; the next line written says how many were dropped.
#[test]
fn denial_lines_are_limited_per_reason_and_metrics_count_every_denial() {
    run(async {
        let yaml = format!(
            "{}telemetry:\n  log_denied_per_second: 3\n",
            sessiongate_yaml(None)
        );
        let stack = Stack::start(&yaml).await;
        for _ in 0..20 {
            stack
                .get(Workload::Frontend, "/orders/1")
                .reply()
                .await
                .assert_denied(401, "missing_token");
        }
        let metrics = scrape(&stack).await;
        assert_eq!(
            metrics.value(&decisions("deny", "missing_token", "orders-read", false)),
            20.0
        );
        let lines = |log: &str| {
            log.lines()
                .filter(|line| line.contains(r#""reason":"missing_token""#))
                .count()
        };
        let log = stack.output();
        // Twenty requests fall into one second, or straddle two: three lines each at most.
        assert!(
            (3..=6).contains(&lines(&log)),
            "{} denial lines for 20 denials\n{log}",
            lines(&log)
        );
    });
}
