//! End-to-end: a fleet of sessiongate replicas, each behind its own real Envoy 1.40, sharing
//! revocations and workload pins through one real `redis-server`.
//!
//! - a revocation made at one replica is enforced at the others within 100 ms (p99; the test
//!   prints p50/p99/max, the README's figure);
//! - a replica restarted while revocations were made loads all of them before it serves;
//! - Redis stopped mid-test: every replica keeps judging and enforcing what it knows, Revoke is
//!   refused `UNAVAILABLE`, new sessions fail closed (503), the `sessiongate.revocations` health
//!   service says NOT_SERVING; Redis restarted: all of it recovers by itself;
//! - a replica cut off from Redis (while the others are not) catches up on what was revoked
//!   meanwhile: nothing is lost;
//! - a token pinned to one workload at one replica is a replay (`session_replayed`) at another;
//! - Redis crashed (SIGKILL) and back, or a middlebox silently dropping open connections: once
//!   `sessiongate.revocations` is SERVING again the first `Revoke` and the first new session
//!   work (the writers' connection was replaced before recovery was reported);
//! - Redis frozen (SIGSTOP): a `Revoke` it does not answer in time is "not confirmed; it may
//!   still apply", and it does apply once Redis resumes; one never sent is "not recorded";
//! - a write whose connection drops in flight is sent again on a fresh connection; a revocation
//!   that thereby lands twice is listed once;
//! - with `wait_replicas`, a revocation no Redis replica confirmed is "not confirmed", and applies.
//!
//! Each test runs its own fleet (3 Envoys, 3 sessiongates, 1 Redis) and they run one at a time,
//! so the latency figures are not measured on a machine busy with another fleet.

mod support;

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sessiongate::admin::proto;
use sessiongate::app::REVOCATION_STORE_HEALTH;
use support::redis::{Cut, RedisServer, Sever, SeverWhen};
use support::sessiongate::Sessiongate;
use support::tokens::{self, Alg, ISSUER, token};
use support::{SendExt as _, Stack, Workload, admin, run};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use Workload::{Batch, Frontend};

/// One fleet at a time (see the module docs).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `revocation.timeout` of every fleet in this file.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// The e2e policy with an admin listener and the Redis backend at `url`.
fn fleet_yaml(url: &str) -> String {
    format!(
        "{}\nadmin:\n  listen: \"127.0.0.1:0\"\n  token_file: \"admin.token\"\n\
         revocation:\n  backend: redis\n  url: \"{url}\"\n  key_prefix: \"e2e:\"\n  timeout: 500ms\n",
        support::policy::sessiongate_yaml(None)
    )
}

struct Replica {
    stack: Stack,
    yaml: String,
}

impl Replica {
    async fn start(redis_url: &str) -> Replica {
        Replica::start_with(fleet_yaml(redis_url)).await
    }

    async fn start_with(yaml: String) -> Replica {
        let stack = Stack::start_in(admin::prepared_dir(), &yaml).await;
        Replica { stack, yaml }
    }

    fn sessiongate(&self) -> &Sessiongate {
        self.stack.sessiongate.as_ref().expect("a sessiongate")
    }

    fn admin_addr(&self) -> SocketAddr {
        self.sessiongate().admin_addr.expect("an admin listener")
    }

    async fn order(&self, workload: Workload, jwt: &str) -> support::reply::Reply {
        self.stack
            .get(workload, "/orders/1")
            .bearer_auth(jwt)
            .reply()
            .await
    }

    /// The gRPC health status of `service` on the ext_authz port.
    async fn health(&self, service: &str) -> i32 {
        let channel = tonic::transport::Endpoint::from_shared(format!(
            "http://{}",
            self.sessiongate().grpc_addr
        ))
        .expect("health endpoint")
        .connect()
        .await
        .expect("connect to the health service");
        let mut client = HealthClient::new(channel);
        client
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check")
            .into_inner()
            .status
    }

    /// Waits until the revocation store's health is `status`.
    async fn await_store(&self, status: ServingStatus) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.health(REVOCATION_STORE_HEALTH).await != status as i32 {
            assert!(
                Instant::now() < deadline,
                "{REVOCATION_STORE_HEALTH} never became {status:?}\n{}",
                self.stack.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The value of `sessiongate_revocation_store_up` on the ops listener's `/metrics`.
    async fn store_up(&self) -> String {
        let metrics = reqwest::get(format!("http://{}/metrics", self.sessiongate().http_addr))
            .await
            .expect("scrape /metrics")
            .text()
            .await
            .expect("read /metrics");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("sessiongate_revocation_store_up "))
            .unwrap_or_else(|| panic!("no sessiongate_revocation_store_up in\n{metrics}"))
            .to_owned()
    }

    /// Restarts this replica's sessiongate (after `kill -9`) on the same ports, Envoy untouched.
    async fn restart(&mut self) {
        let sessiongate = self.stack.sessiongate.as_mut().expect("a sessiongate");
        let (grpc, admin_at) = (
            sessiongate.grpc_addr,
            sessiongate.admin_addr.expect("admin"),
        );
        sessiongate.kill_hard().await;
        let restarted = Sessiongate::start(
            self.stack.dir(),
            &admin::on_ports(&self.yaml, grpc, admin_at),
        )
        .await;
        self.stack.sessiongate = Some(restarted);
    }
}

async fn revoke_subject(replica: &Replica, sub: &str) -> Result<(), tonic::Status> {
    let mut client = admin::client(replica.admin_addr()).await;
    client
        .revoke(proto::RevokeRequest {
            selector: Some(proto::Selector {
                kind: Some(admin::subject(ISSUER, sub)),
            }),
            issued_before_unix_ms: None,
            reason: "e2e fleet".into(),
        })
        .await
        .map(|_| ())
}

async fn three_replicas(redis_url: &str) -> Vec<Replica> {
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Replica::start(redis_url).await);
    }
    replicas
}

fn assert_revoked(reply: &support::reply::Reply) {
    reply
        .assert_denied(401, "revoked")
        .assert_challenge_starts_with(r#"Bearer error="invalid_token""#);
}

/// Sends requests on `jwt` at `replica` until one is denied as revoked; the time from `since`.
async fn time_until_revoked(replica: &Replica, jwt: &str, since: Instant) -> Duration {
    let deadline = since + Duration::from_secs(5);
    loop {
        let reply = replica.order(Frontend, jwt).await;
        if reply.reason() == Some("revoked") {
            return since.elapsed();
        }
        reply.assert_allowed();
        assert!(Instant::now() < deadline, "never revoked at this replica");
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[test]
fn a_revocation_at_one_replica_is_enforced_by_every_other_within_100ms() {
    let _serial = serial();
    run(async {
        let redis = RedisServer::start().await;
        let fleet = three_replicas(&redis.url()).await;
        let runs: usize = std::env::var("FLEET_PROPAGATION_RUNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(30);
        let mut samples = Vec::new();
        for run in 0..runs {
            let sub = format!("propagation-{run}");
            let jwt = token().sub(&sub).sign();
            for replica in &fleet {
                replica.order(Frontend, &jwt).await.assert_allowed();
            }
            // Revoke at replica A (rotating), measure at the two others, concurrently.
            let (a, b, c) = (
                &fleet[run % 3],
                &fleet[(run + 1) % 3],
                &fleet[(run + 2) % 3],
            );
            revoke_subject(a, &sub).await.expect("Revoke acknowledged");
            let acked = Instant::now();
            let (at_b, at_c) = tokio::join!(
                time_until_revoked(b, &jwt, acked),
                time_until_revoked(c, &jwt, acked)
            );
            samples.extend([at_b, at_c]);
            assert_revoked(&a.order(Frontend, &jwt).await);
        }
        samples.sort();
        let (p50, p99, max) = (
            percentile(&samples, 0.50),
            percentile(&samples, 0.99),
            *samples.last().unwrap(),
        );
        println!(
            "propagation (ack at A -> first denied response at B or C, through Envoy): \
             {} samples, p50 {p50:?}, p99 {p99:?}, max {max:?}",
            samples.len()
        );
        assert!(
            p99 < Duration::from_millis(100),
            "p99 {p99:?} over 100 ms: {samples:?}"
        );
    });
}

#[test]
fn a_restarted_replica_loads_every_revocation_before_it_serves() {
    let _serial = serial();
    run(async {
        let redis = RedisServer::start().await;
        let mut fleet = three_replicas(&redis.url()).await;
        let early = token().sub("restart-early").sign();
        let meanwhile = token().sub("restart-meanwhile").sign();
        let bystander = token().sub("restart-bystander").sign();
        revoke_subject(&fleet[0], "restart-early").await.unwrap();

        let (grpc, admin_at) = {
            let sessiongate = fleet[2].stack.sessiongate.as_mut().unwrap();
            sessiongate.kill_hard().await;
            (sessiongate.grpc_addr, sessiongate.admin_addr.unwrap())
        };
        revoke_subject(&fleet[0], "restart-meanwhile")
            .await
            .unwrap();
        // Bring it back on the same ports and Envoy.
        let restarted = Sessiongate::start(
            fleet[2].stack.dir(),
            &admin::on_ports(&fleet[2].yaml, grpc, admin_at),
        )
        .await;
        fleet[2].stack.sessiongate = Some(restarted);

        // Its very first answers already know both revocations.
        assert_eq!(
            fleet[2].health("").await,
            ServingStatus::Serving as i32,
            "ready once listening"
        );
        assert_eq!(
            fleet[2].health(REVOCATION_STORE_HEALTH).await,
            ServingStatus::Serving as i32
        );
        assert_revoked(&fleet[2].order(Frontend, &early).await);
        assert_revoked(&fleet[2].order(Frontend, &meanwhile).await);
        fleet[2].order(Frontend, &bystander).await.assert_allowed();

        // And a restart of a running replica keeps working too.
        fleet[1].restart().await;
        assert_revoked(&fleet[1].order(Frontend, &meanwhile).await);
    });
}

/// Waits for the first line of `lines` containing every one of `needles`.
async fn await_line(
    lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    needles: &[&str],
    output: impl Fn() -> String,
) -> String {
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.recv().await {
            if needles.iter().all(|needle| line.contains(needle)) {
                return Some(line);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(line)) => line,
        Ok(None) => panic!("exited before logging {needles:?}\n{}", output()),
        Err(_) => panic!("never logged {needles:?}\n{}", output()),
    }
}

/// Issue 11, point 4: a replica waiting for Redis at start-up accepts no connection on its
/// ext_authz or admin port (a `tcpSocket` probe or Envoy must not take it for ready), while its
/// ops port answers `/healthz` 200 and `/readyz` 503 `loading`; once Redis answers it loads
/// every revocation, opens its ports, and its first Check through Envoy already enforces them.
#[test]
fn a_replica_waiting_for_redis_accepts_no_connection_until_every_revocation_is_loaded() {
    let _serial = serial();
    run(async {
        let mut redis = RedisServer::start().await;
        let replica = Replica::start(&redis.url()).await;
        let revoked = token().sub("waiting-revoked").sign();
        let bystander = token().sub("waiting-bystander").sign();
        revoke_subject(&replica, "waiting-revoked").await.unwrap();
        let (grpc, admin_at) = (replica.sessiongate().grpc_addr, replica.admin_addr());
        redis.stop().await;

        // A new sessiongate on the ports this replica's Envoy points at, Redis down.
        let mut old = replica;
        old.stack.sessiongate.as_mut().unwrap().kill_hard().await;
        let yaml = admin::on_ports(&old.yaml, grpc, admin_at);
        let (process, mut lines, _) = support::sessiongate::spawn(old.stack.dir(), &yaml);
        let output = || process.output();
        await_line(&mut lines, &["Redis unreachable"], output).await;

        for (port, address) in [("ext_authz", grpc), ("admin", admin_at)] {
            let connected = tokio::net::TcpStream::connect(address).await;
            assert_eq!(
                connected.as_ref().map_err(std::io::Error::kind).err(),
                Some(std::io::ErrorKind::ConnectionRefused),
                "the {port} port accepted a connection while revocations were not loaded: \
                 {connected:?}\n{}",
                output()
            );
        }
        // The ops listener serves from start-up (it logged `listening` before Redis failed).
        let http = output()
            .lines()
            .find(|line| line.contains(r#""listener":"http""#) && line.contains("listening"))
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .unwrap_or_else(|| panic!("the ops listener is not serving\n{}", output()));
        let http = http["fields"]["addr"].as_str().unwrap().to_owned();
        let alive = reqwest::get(format!("http://{http}/healthz"))
            .await
            .unwrap();
        assert_eq!(alive.status(), 200, "alive while waiting for Redis");
        let ready = reqwest::get(format!("http://{http}/readyz")).await.unwrap();
        assert_eq!(ready.status(), 503);
        let report: serde_json::Value = ready.json().await.unwrap();
        assert_eq!(report["loading"], true, "{report}");
        assert_eq!(report["ready"], false, "{report}");
        let metrics = reqwest::get(format!("http://{http}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(metrics.contains("\nsessiongate_ready 0\n"), "{metrics}");
        // Envoy cannot reach it either: fail closed.
        let reply = old.order(Frontend, &bystander).await;
        assert!(
            reply.status == 503 && !reply.reached_upstream(),
            "Envoy must fail closed while sessiongate loads, got {reply}"
        );

        redis.restart().await;
        await_line(&mut lines, &[r#""listener":"grpc""#, "listening"], output).await;
        assert_revoked(&old.order(Frontend, &revoked).await);
        old.order(Frontend, &bystander).await.assert_allowed();
        let ready = reqwest::get(format!("http://{http}/readyz")).await.unwrap();
        assert_eq!(ready.status(), 200);
        drop(process);
    });
}

#[test]
fn redis_stopped_and_restarted_mid_test() {
    let _serial = serial();
    run(async {
        let mut redis = RedisServer::start().await;
        let fleet = three_replicas(&redis.url()).await;
        let known_good = token().sub("outage-good").sign();
        let known_revoked = token().sub("outage-revoked").sign();
        let after = token().sub("outage-after").sign();
        for replica in &fleet {
            replica.order(Frontend, &known_good).await.assert_allowed();
            replica.order(Frontend, &after).await.assert_allowed();
        }
        revoke_subject(&fleet[0], "outage-revoked").await.unwrap();

        redis.stop().await;
        for replica in &fleet {
            replica.await_store(ServingStatus::NotServing).await;
            assert_eq!(replica.store_up().await, "0");
            assert_eq!(
                replica.health("").await,
                ServingStatus::Serving as i32,
                "a Redis outage never takes the replica out of rotation"
            );
        }
        for replica in &fleet {
            replica.order(Frontend, &known_good).await.assert_allowed();
            assert_revoked(&replica.order(Frontend, &known_revoked).await);
        }
        // A new session cannot be pinned fleet-wide: fail closed, 503.
        let fresh = token().sub("outage-fresh").sign();
        let asked = Instant::now();
        let denied = fleet[1].order(Frontend, &fresh).await;
        let session_waited = asked.elapsed();
        denied.assert_denied(503, "internal_error");
        // Revoke is refused, clearly, rather than acknowledged and lost.
        let refused = revoke_subject(&fleet[0], "outage-after")
            .await
            .expect_err("no revocation is acknowledged while Redis is down");
        assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
        assert!(
            refused
                .message()
                .starts_with("revocation not recorded: revocation store unavailable: "),
            "{refused:?}"
        );
        println!(
            "Redis down: Revoke refused: {:?}; a new session answered after {session_waited:?}: \
             {} {}",
            refused.message(),
            denied.status,
            denied.body
        );

        redis.restart().await;
        for replica in &fleet {
            replica.await_store(ServingStatus::Serving).await;
            assert_eq!(replica.store_up().await, "1");
        }
        fleet[1].order(Frontend, &fresh).await.assert_allowed();
        revoke_subject(&fleet[0], "outage-after").await.unwrap();
        for replica in &fleet[1..] {
            let deadline = Instant::now() + Duration::from_secs(2);
            while replica.order(Frontend, &after).await.reason() != Some("revoked") {
                assert!(Instant::now() < deadline, "not enforced after recovery");
            }
        }
        // Nothing acknowledged before the outage was lost by Redis (append-only file).
        let entries: u64 = redis.query(redis::cmd("XLEN").arg("e2e:revocations")).await;
        assert_eq!(entries, 2);
    });
}

#[test]
fn a_replica_cut_off_from_redis_catches_up_on_everything_revoked_meanwhile() {
    let _serial = serial();
    run(async {
        let redis = RedisServer::start().await;
        let mut cut = Cut::start(redis.addr()).await;
        let a = Replica::start(&redis.url()).await;
        let c = Replica::start(&cut.url()).await;
        let victim = token().sub("partition-victim").sign();
        a.order(Frontend, &victim).await.assert_allowed();
        c.order(Frontend, &victim).await.assert_allowed();

        cut.cut();
        c.await_store(ServingStatus::NotServing).await;
        revoke_subject(&a, "partition-victim").await.unwrap();
        assert_revoked(&a.order(Frontend, &victim).await);
        // C cannot know yet; what it already knew it still enforces.
        c.order(Frontend, &victim).await.assert_allowed();

        cut.restore().await;
        c.await_store(ServingStatus::Serving).await;
        assert_revoked(&c.order(Frontend, &victim).await);
    });
}

#[test]
fn a_token_pinned_at_one_replica_is_a_replay_at_another() {
    let _serial = serial();
    run(async {
        let redis = RedisServer::start().await;
        let fleet = three_replicas(&redis.url()).await;
        let jwt = token().sub("pinned-fleet").sign();
        fleet[0].order(Frontend, &jwt).await.assert_allowed();
        fleet[1]
            .order(Batch, &jwt)
            .await
            .assert_denied(401, "session_replayed")
            .assert_challenge_starts_with(r#"Bearer error="invalid_token""#);
        fleet[1].order(Frontend, &jwt).await.assert_allowed();
        fleet[2]
            .order(Batch, &jwt)
            .await
            .assert_denied(401, "session_replayed");
        // Exactly one pin key, expiring with the session.
        let keys: Vec<String> = redis.query(redis::cmd("KEYS").arg("e2e:pin:*")).await;
        assert_eq!(keys.len(), 1, "{keys:?}");
        let ttl_ms: i64 = redis.query(redis::cmd("PTTL").arg(&keys[0])).await;
        assert!(ttl_ms > 0 && ttl_ms <= 24 * 3_600_000, "{ttl_ms}");
    });
}

/// The Redis pin is keyed on the token's canonical identity: a keyless re-encoding of a stolen
/// ES256 token (`s` becomes `n − s`) presented at another replica is the same pinned session.
#[test]
fn a_re_encoded_token_is_a_replay_at_another_replica() {
    let _serial = serial();
    run(async {
        let redis = RedisServer::start().await;
        let fleet = three_replicas(&redis.url()).await;
        let jwt = token().alg(Alg::Es256).sub("re-encoded-fleet").sign();
        let twin = tokens::ecdsa_twin(&jwt);
        fleet[0].order(Frontend, &jwt).await.assert_allowed();
        fleet[1]
            .order(Batch, &twin)
            .await
            .assert_denied(401, "session_replayed");
        fleet[2].order(Frontend, &twin).await.assert_allowed();
        let keys: Vec<String> = redis.query(redis::cmd("KEYS").arg("e2e:pin:*")).await;
        assert_eq!(keys.len(), 1, "one pin for both encodings: {keys:?}");
    });
}

#[test]
fn memory_one_revocation_and_one_pin_cost_in_redis() {
    let _serial = serial();
    run(async {
        let redis = RedisServer::start().await;
        let replica = Replica::start(&redis.url()).await;
        let count = 1000;
        for i in 0..count {
            revoke_subject(&replica, &format!("memory-user-{i:04}"))
                .await
                .unwrap();
        }
        let stream_bytes: u64 = redis
            .query(
                redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg("e2e:revocations")
                    .arg("SAMPLES")
                    .arg(0),
            )
            .await;
        let entry: redis::streams::StreamRangeReply = redis
            .query(
                redis::cmd("XRANGE")
                    .arg("e2e:revocations")
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(1),
            )
            .await;
        let json_len = entry.ids[0]
            .map
            .get("revocation")
            .map(|v| redis::from_redis_value::<String>(v).unwrap().len())
            .unwrap();
        for (i, workload) in [Frontend].iter().enumerate() {
            let jwt = token().sub(&format!("memory-pin-{i}")).sign();
            replica.order(*workload, &jwt).await.assert_allowed();
        }
        let keys: Vec<String> = redis.query(redis::cmd("KEYS").arg("e2e:pin:*")).await;
        let pin_bytes: u64 = redis
            .query(redis::cmd("MEMORY").arg("USAGE").arg(&keys[0]))
            .await;
        println!(
            "redis memory: {count} revocations in the stream = {stream_bytes} bytes \
             ({} bytes per revocation; its JSON is {json_len} bytes); one pin key = {pin_bytes} bytes",
            stream_bytes / count
        );
        assert!(
            stream_bytes / count < 1024,
            "a revocation should cost well under 1 KiB"
        );
    });
}

/// Redis crashes (SIGKILL: its connections die without a word) and comes back on the same port.
/// Once a replica reports the store up again, the writers' connection works too: the first
/// `Revoke` is acknowledged and the first new session is pinned (200), at every replica, with
/// no "broken pipe" from a connection that died with the old Redis.
#[test]
fn after_redis_crashes_and_returns_the_first_revoke_and_the_first_new_session_succeed() {
    let _serial = serial();
    run(async {
        let mut redis = RedisServer::start().await;
        let fleet = [
            Replica::start(&redis.url()).await,
            Replica::start(&redis.url()).await,
        ];
        // Each replica's shared connection carries a pin before the crash.
        let warm = token().sub("crash-warm").sign();
        for replica in &fleet {
            replica.order(Frontend, &warm).await.assert_allowed();
        }

        redis.kill_hard().await;
        for replica in &fleet {
            replica.await_store(ServingStatus::NotServing).await;
            assert_eq!(replica.store_up().await, "0");
        }
        redis.restart().await;
        for replica in &fleet {
            replica.await_store(ServingStatus::Serving).await;
            assert_eq!(replica.store_up().await, "1");
        }

        // Replica 0's first command after recovery is a Revoke; replica 1's is a new session.
        // Then the other way round, so each kind of write works at each replica.
        let fresh = [
            token().sub("crash-fresh-0").sign(),
            token().sub("crash-fresh-1").sign(),
        ];
        revoke_subject(&fleet[0], "crash-revoked-0")
            .await
            .expect("the first Revoke after recovery is acknowledged");
        fleet[1].order(Frontend, &fresh[1]).await.assert_allowed();
        fleet[0].order(Frontend, &fresh[0]).await.assert_allowed();
        revoke_subject(&fleet[1], "crash-revoked-1")
            .await
            .expect("Revoke acknowledged");
        // The pins are in Redis: each fresh session is a replay from another workload at the
        // other replica.
        fleet[0]
            .order(Batch, &fresh[1])
            .await
            .assert_denied(401, "session_replayed");
        fleet[1]
            .order(Batch, &fresh[0])
            .await
            .assert_denied(401, "session_replayed");
    });
}

/// Redis frozen (SIGSTOP: connections stay open, nothing is answered): a `Revoke` waits
/// `revocation.timeout`, then is answered `UNAVAILABLE` "not confirmed ... it may still apply",
/// because the `XADD` sits in Redis' socket buffer; when Redis resumes it runs, and the
/// revocation is enforced fleet-wide, as the answer warned. Meanwhile a new session waits the
/// same bounded time and is refused 503, and a session pinned before keeps working.
#[test]
fn a_revoke_redis_does_not_answer_in_time_is_not_confirmed_and_may_still_apply() {
    let _serial = serial();
    run(async {
        let redis = RedisServer::start().await;
        let fleet = [
            Replica::start(&redis.url()).await,
            Replica::start(&redis.url()).await,
        ];
        let victim = token().sub("frozen-victim").sign();
        let spared = token().sub("frozen-spared").sign();
        for replica in &fleet {
            replica.order(Frontend, &victim).await.assert_allowed();
            replica.order(Frontend, &spared).await.assert_allowed();
        }

        redis.freeze();
        let asked = Instant::now();
        let refused = revoke_subject(&fleet[0], "frozen-victim")
            .await
            .expect_err("nothing is acknowledged while Redis does not answer");
        let revoke_waited = asked.elapsed();
        assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
        assert!(
            refused.message().starts_with("revocation not confirmed: ")
                && refused
                    .message()
                    .ends_with("; it may still apply (check with list before retrying)"),
            "{refused:?}"
        );
        assert!(
            revoke_waited >= REDIS_TIMEOUT && revoke_waited < REDIS_TIMEOUT * 3,
            "Revoke answered after {revoke_waited:?}"
        );

        let fresh = token().sub("frozen-fresh").sign();
        let asked = Instant::now();
        let denied = fleet[1].order(Frontend, &fresh).await;
        let session_waited = asked.elapsed();
        denied.assert_denied(503, "internal_error");
        assert!(
            session_waited < REDIS_TIMEOUT * 3,
            "a new session waited {session_waited:?}"
        );
        fleet[1].order(Frontend, &victim).await.assert_allowed();
        // The timed-out connection was dropped; a new one cannot be set up with a frozen Redis
        // (its handshake is not answered), so the next XADD is never sent: "not recorded".
        let asked = Instant::now();
        let not_sent = revoke_subject(&fleet[0], "frozen-spared")
            .await
            .expect_err("nothing is acknowledged while Redis does not answer");
        let second_waited = asked.elapsed();
        assert!(
            not_sent
                .message()
                .starts_with("revocation not recorded: revocation store unavailable: "),
            "{not_sent:?}"
        );
        println!(
            "Redis frozen: Revoke answered after {revoke_waited:?}: {:?}; a new session \
             answered after {session_waited:?}: {} {}; a second Revoke answered after \
             {second_waited:?}: {:?}",
            refused.message(),
            denied.status,
            denied.body,
            not_sent.message()
        );

        redis.thaw();
        for replica in &fleet {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let reply = replica.order(Frontend, &victim).await;
                if reply.reason() == Some("revoked") {
                    assert_revoked(&reply);
                    break;
                }
                reply.assert_allowed();
                assert!(
                    Instant::now() < deadline,
                    "the unconfirmed revocation never applied\n{}",
                    replica.stack.output()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            replica.order(Frontend, &spared).await.assert_allowed();
        }
        let entries: u64 = redis.query(redis::cmd("XLEN").arg("e2e:revocations")).await;
        assert_eq!(entries, 1, "only the unconfirmed revocation reached Redis");
    });
}

/// The revocations `replica` lists, by subject.
async fn listed_subjects(replica: &Replica) -> Vec<String> {
    let mut client = admin::client(replica.admin_addr()).await;
    client
        .list_revocations(proto::ListRevocationsRequest {})
        .await
        .expect("ListRevocations")
        .into_inner()
        .revocations
        .into_iter()
        .filter_map(|revocation| match revocation.selector?.kind? {
            proto::selector::Kind::Subject(subject) => Some(subject.sub),
            _ => None,
        })
        .collect()
}

/// The shared connection drops with a write in flight that never reached Redis: the write is
/// sent once more on a fresh connection, and the caller never sees the failure (a Revoke is
/// acknowledged, a new session is pinned and allowed).
#[test]
fn a_write_lost_with_its_connection_is_sent_again_on_a_fresh_one() {
    let _serial = serial();
    run(async {
        let redis = RedisServer::start().await;
        let sever = Sever::start(redis.addr()).await;
        let replica = Replica::start(&sever.url()).await;

        sever.arm("XADD", SeverWhen::BeforeRedis);
        revoke_subject(&replica, "lost-in-flight")
            .await
            .expect("Revoke acknowledged after one resend");
        assert!(sever.fired(), "the XADD went through the severing proxy");
        let entries: u64 = redis.query(redis::cmd("XLEN").arg("e2e:revocations")).await;
        assert_eq!(entries, 1, "the first XADD never reached Redis");

        sever.arm("e2e:pin:", SeverWhen::BeforeRedis);
        let fresh = token().sub("lost-pin").sign();
        replica.order(Frontend, &fresh).await.assert_allowed();
        assert!(
            sever.fired(),
            "the pin's SET went through the severing proxy"
        );
        replica
            .order(Batch, &fresh)
            .await
            .assert_denied(401, "session_replayed");
        let pins: Vec<String> = redis.query(redis::cmd("KEYS").arg("e2e:pin:*")).await;
        assert_eq!(pins.len(), 1, "{pins:?}");
    });
}

/// The shared connection drops after Redis ran a revocation's `XADD` but before its reply
/// arrived: the resend lands a second, equal entry. The revocation is acknowledged, and listed
/// once: at the writer, at another replica (the follower ignores the equal echo), and after a
/// restart (loading drops the duplicate).
#[test]
fn a_revocation_resent_after_its_reply_was_lost_is_listed_once() {
    let _serial = serial();
    run(async {
        let redis = RedisServer::start().await;
        let sever = Sever::start(redis.addr()).await;
        let mut writer = Replica::start(&sever.url()).await;
        let other = Replica::start(&redis.url()).await;
        let victim = token().sub("twice").sign();
        other.order(Frontend, &victim).await.assert_allowed();

        sever.arm("XADD", SeverWhen::AfterReply);
        revoke_subject(&writer, "twice")
            .await
            .expect("Revoke acknowledged after one resend");
        assert!(sever.fired(), "the XADD went through the severing proxy");
        let entries: u64 = redis.query(redis::cmd("XLEN").arg("e2e:revocations")).await;
        assert_eq!(entries, 2, "Redis ran both the lost XADD and its resend");

        let deadline = Instant::now() + Duration::from_secs(5);
        while other.order(Frontend, &victim).await.reason() != Some("revoked") {
            assert!(
                Instant::now() < deadline,
                "never revoked at the other replica"
            );
        }
        assert_eq!(listed_subjects(&writer).await, ["twice"]);
        assert_eq!(listed_subjects(&other).await, ["twice"]);
        writer.restart().await;
        assert_eq!(listed_subjects(&writer).await, ["twice"], "loaded once");
        assert_revoked(&writer.order(Frontend, &victim).await);
    });
}

/// A middlebox between a replica and Redis forgets its flows: the replica's open connections go
/// silent (never closed), new ones work. The follower's blocking read times out (store down),
/// reconnects and catches up; before it reports the store up again it replaces the writers'
/// silent connection too, so the first `Revoke` after SERVING is acknowledged, not left
/// waiting for a reply that never comes.
#[test]
fn recovery_is_reported_only_once_the_writers_connection_answers() {
    let _serial = serial();
    run(async {
        let redis = RedisServer::start().await;
        let sever = Sever::start(redis.addr()).await;
        let replica = Replica::start(&sever.url()).await;
        let warm = token().sub("silent-warm").sign();
        replica.order(Frontend, &warm).await.assert_allowed();

        sever.stall_open_connections();
        replica.await_store(ServingStatus::NotServing).await;
        replica.await_store(ServingStatus::Serving).await;
        assert_eq!(replica.store_up().await, "1");

        revoke_subject(&replica, "silent-warm")
            .await
            .expect("the first Revoke after recovery is acknowledged");
        assert_revoked(&replica.order(Frontend, &warm).await);
        let fresh = token().sub("silent-fresh").sign();
        replica.order(Frontend, &fresh).await.assert_allowed();
    });
}

/// With `wait_replicas: 1`, a revocation is acknowledged once a Redis replica holds it. With the
/// Redis replica gone, `WAIT` counts 0: the revocation is on the primary, so it is answered
/// "not confirmed; it may still apply", and it does apply (the followers read the primary).
#[test]
fn a_revocation_no_redis_replica_confirmed_is_not_confirmed_and_applies() {
    let _serial = serial();
    run(async {
        let redis = RedisServer::start().await;
        let mut copy = RedisServer::start_replica_of(&redis).await;
        // A wider reply bound than the other tests': the confirmed case must not depend on a
        // loaded machine answering `WAIT` within 375 ms.
        let yaml = fleet_yaml(&redis.url()).replace("timeout: 500ms", "timeout: 2s");
        let replica = Replica::start_with(format!("{yaml}  wait_replicas: 1\n")).await;
        let victim = token().sub("waited-victim").sign();
        replica.order(Frontend, &victim).await.assert_allowed();
        revoke_subject(&replica, "waited-first")
            .await
            .expect("acknowledged once the Redis replica holds it");

        copy.stop().await;
        redis.await_replicas(0).await;
        let unconfirmed = revoke_subject(&replica, "waited-victim")
            .await
            .expect_err("no Redis replica can confirm it");
        assert_eq!(unconfirmed.code(), tonic::Code::Unavailable);
        assert!(
            unconfirmed
                .message()
                .starts_with("revocation not confirmed: ")
                && unconfirmed
                    .message()
                    .contains("only 0 of 1 Redis replicas confirmed the write in time"),
            "{unconfirmed:?}"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let reply = replica.order(Frontend, &victim).await;
            if reply.reason() == Some("revoked") {
                break;
            }
            reply.assert_allowed();
            assert!(
                Instant::now() < deadline,
                "the revocation on the primary never applied"
            );
        }
    });
}
