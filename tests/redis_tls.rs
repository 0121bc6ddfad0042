//! The Redis backend over TLS with a password, against a real `redis-server` that speaks only
//! TLS (certificate from a private CA made for the test) and demands a password:
//!
//! - with `rediss://:<password>@…` and `revocation.tls_ca_file`, a revocation made at one
//!   replica's admin API is written to Redis and reaches a second replica;
//! - a wrong password, a missing password and an untrusted certificate each keep the replica
//!   from serving, with a log line that says what to fix and never shows a password.
//!
//! No Envoy: what is under test is the link to Redis, not the ext_authz path (the fleet tests
//! cover that over plain TCP).

mod support;

use std::time::{Duration, Instant};

use sessiongate::admin::proto;
use support::redis::{RedisServer, Security};
use support::sessiongate::{self as gate, Sessiongate};
use support::tokens::ISSUER;
use support::{admin, run};

const PASSWORD: &str = "tls-test-redis-password-7f3a";
const WRONG_PASSWORD: &str = "not-the-redis-password-91c2";

/// Where the replicas' config points `revocation.tls_ca_file`, relative to the config file.
const CA_FILE: &str = "redis-ca.pem";

/// How long a misconfigured replica may take to log why it cannot reach Redis.
const LOG_TIMEOUT: Duration = Duration::from_secs(30);

async fn secured_redis() -> RedisServer {
    RedisServer::start_with(Security {
        password: Some(PASSWORD.into()),
        tls: true,
    })
    .await
}

/// A replica's folder (admin token, and the Redis CA unless `trust_ca` is false) and config.
fn replica(redis: &RedisServer, url: &str, trust_ca: bool) -> (tempfile::TempDir, String) {
    let dir = admin::prepared_dir();
    let mut yaml = format!(
        "{}\nadmin:\n  listen: \"127.0.0.1:0\"\n  token_file: \"admin.token\"\n\
         revocation:\n  backend: redis\n  url: \"{url}\"\n  key_prefix: \"tls:\"\n",
        support::policy::sessiongate_yaml(None)
    );
    if trust_ca {
        let ca = redis.ca_pem().expect("a TLS redis");
        std::fs::write(dir.path().join(CA_FILE), ca).expect("write the Redis CA");
        yaml.push_str(&format!("  tls_ca_file: \"{CA_FILE}\"\n"));
    }
    (dir, yaml)
}

/// Asserts that nothing `sessiongate` printed contains a password.
fn assert_no_password(output: &str) {
    for password in [PASSWORD, WRONG_PASSWORD] {
        assert!(
            !output.contains(password),
            "a Redis password was logged\n{output}"
        );
    }
}

/// Starts a replica that cannot get to Redis and returns the first log line containing
/// `expected` (its ext_authz and admin listeners must never report `listening`; the ops
/// listener does, at once, for liveness), plus everything it printed.
async fn refused(dir: &std::path::Path, yaml: &str, expected: &str) -> (String, String) {
    let (mut process, mut lines, _) = gate::spawn(dir, yaml);
    let found = tokio::time::timeout(LOG_TIMEOUT, async {
        while let Some(line) = lines.recv().await {
            assert!(
                !line.contains("\"listening\"") || line.contains(r#""listener":"http""#),
                "served without its revocations: {line}"
            );
            if line.contains(expected) {
                return Some(line);
            }
        }
        None
    })
    .await;
    let output = process.output();
    process.kill_hard().await;
    match found {
        Ok(Some(line)) => (line, output),
        Ok(None) => panic!("sessiongate exited without logging {expected:?}\n{output}"),
        Err(_) => panic!("sessiongate did not log {expected:?} within {LOG_TIMEOUT:?}\n{output}"),
    }
}

#[test]
fn a_revocation_travels_over_tls_with_a_password_to_redis_and_the_other_replica() {
    run(async {
        let redis = secured_redis().await;
        let url = redis.url();
        assert!(url.starts_with("rediss://:"), "{url}");
        let (dir_a, yaml_a) = replica(&redis, &url, true);
        let (dir_b, yaml_b) = replica(&redis, &url, true);
        // `start` returns once the replica listens, i.e. once it has read the whole stream
        // through TLS and AUTH.
        let a = Sessiongate::start(dir_a.path(), &yaml_a).await;
        let b = Sessiongate::start(dir_b.path(), &yaml_b).await;

        let mut client_a = admin::client(a.admin_addr.expect("admin")).await;
        admin::revoke(&mut client_a, admin::subject(ISSUER, "tls-user"), None).await;

        // In Redis: read back over TLS with the password.
        let entries: redis::streams::StreamRangeReply = redis
            .query(
                redis::cmd("XRANGE")
                    .arg("tls:revocations")
                    .arg("-")
                    .arg("+"),
            )
            .await;
        assert_eq!(entries.ids.len(), 1, "one stream entry");
        let written: String = entries.ids[0].get("revocation").expect("revocation field");
        assert!(written.contains("tls-user"), "{written}");

        // At the other replica, through its follower's own TLS connection.
        let mut client_b = admin::client(b.admin_addr.expect("admin")).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let listed = client_b
                .list_revocations(proto::ListRevocationsRequest {})
                .await
                .expect("ListRevocations at B")
                .into_inner()
                .revocations;
            let subject = Some(proto::Selector {
                kind: Some(admin::subject(ISSUER, "tls-user")),
            });
            if listed.iter().any(|r| r.selector == subject) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "replica B never received the revocation\n{}",
                b.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        assert_no_password(&a.output());
        assert_no_password(&b.output());
    });
}

#[test]
fn a_wrong_password_keeps_the_replica_waiting_and_says_so_without_logging_it() {
    run(async {
        let redis = secured_redis().await;
        let (dir, yaml) = replica(&redis, &redis.url_with_password(Some(WRONG_PASSWORD)), true);
        let (line, output) = refused(
            dir.path(),
            &yaml,
            "Redis refused the credentials in revocation.url",
        )
        .await;
        assert!(line.contains("Redis unreachable"), "{line}");
        assert_no_password(&output);
    });
}

#[test]
fn a_missing_password_is_named() {
    run(async {
        let redis = secured_redis().await;
        let (dir, yaml) = replica(&redis, &redis.url_with_password(None), true);
        let (_, output) = refused(dir.path(), &yaml, "Redis requires a password").await;
        assert_no_password(&output);
    });
}

#[test]
fn a_certificate_from_an_untrusted_ca_is_refused_and_tls_ca_file_is_named() {
    run(async {
        let redis = secured_redis().await;
        let (dir, yaml) = replica(&redis, &redis.url(), false);
        let (_, output) = refused(dir.path(), &yaml, "revocation.tls_ca_file").await;
        assert_no_password(&output);
    });
}
