//! The real parts: one `redis-server` (append-only) and two replicas, each a sessiongate behind
//! its own Envoy 1.40 (mTLS clients with SPIFFE certificates), sharing revocations and pins
//! through Redis, and one JWKS file for the token issuer that both watch.
//!
//! Adapters only: the soak's schedule decides what to change, the model what must follow; here
//! is how a change is made and how its application is observed (the replica's own metric or
//! log event, polled with a deadline, never a sleep).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use tempfile::TempDir;

use sessiongate::admin::proto;

use super::model::Variant;
use crate::support::jwks_server::fixture_jwks;
use crate::support::redis::RedisServer;
use crate::support::sessiongate::Sessiongate;
use crate::support::ssf;
use crate::support::tokens::ISSUER;
use crate::support::{Stack, Workload, admin, policy};

/// Longest wait for a replica to report a change applied or a fault over.
const APPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// The soak's sessiongate config for `variant`: the end-to-end policy with the token issuer's
/// keys in the shared `jwks` file, the variant's age and scope, denial log lines limited (so
/// the events the soak waits for stay in the captured output), the admin listener, Redis, and
/// the SSF receiver.
pub fn config(variant: Variant, jwks: &Path, redis_url: &str) -> String {
    let base = policy::with_first_issuer_keys(
        &policy::sessiongate_yaml(None),
        &format!("    jwks_file: \"{}\"\n", jwks.display()),
    );
    let read_scopes = variant
        .read_scopes()
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let policy = base
        .replacen(
            "  max_token_age: 15m\n",
            &format!("  max_token_age: {}s\n", variant.max_token_age_secs()),
            1,
        )
        .replacen(
            "    max_token_age: 2m\n",
            &format!(
                "    max_token_age: {}s\n",
                variant.write_max_token_age_secs()
            ),
            1,
        )
        .replacen(
            "    scopes: [\"orders:read\"]\n",
            &format!("    scopes: [{read_scopes}]\n"),
            1,
        );
    format!(
        r#"{policy}
telemetry:
  log_denied_per_second: 1

admin:
  listen: "127.0.0.1:0"
  token_file: "admin.token"

revocation:
  backend: redis
  url: "{redis_url}"
  key_prefix: "soak:"
  timeout: 500ms

ssf:
  push_path: "{push}"
  transmitters:
    - issuer: "{transmitter}"
      jwks_file: "transmitter-jwks.json"
      audience: "{audience}"
"#,
        push = ssf::PUSH_PATH,
        transmitter = ssf::TRANSMITTER,
        audience = ssf::AUDIENCE,
    )
}

/// How a load task reaches one replica: its Envoy and a client per workload.
#[derive(Clone)]
pub struct Front {
    base: String,
    frontend: reqwest::Client,
    batch: reqwest::Client,
}

impl Front {
    pub fn request(
        &self,
        workload: Workload,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let client = match workload {
            Workload::Frontend => &self.frontend,
            Workload::Batch => &self.batch,
            Workload::NonSpiffe => panic!("the soak sends as SPIFFE workloads only"),
        };
        client.request(method, format!("{}{path}", self.base))
    }
}

pub struct Replica {
    pub stack: Stack,
    /// The gRPC and admin ports Envoy and the soak know; fixed after the first restart.
    ports: Option<(SocketAddr, SocketAddr)>,
}

impl Replica {
    pub fn sessiongate(&self) -> &Sessiongate {
        self.stack
            .sessiongate
            .as_ref()
            .expect("a running sessiongate")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.sessiongate().admin_addr.expect("an admin listener")
    }

    pub fn front(&self) -> Front {
        Front {
            base: self.stack.url(""),
            frontend: self.stack.client(Workload::Frontend).clone(),
            batch: self.stack.client(Workload::Batch).clone(),
        }
    }

    fn render(&self, yaml: &str) -> String {
        match self.ports {
            Some((grpc, admin_at)) => admin::on_ports(yaml, grpc, admin_at),
            None => yaml.to_owned(),
        }
    }

    /// Replaces the config file atomically (write beside, rename), as a deployment tool would;
    /// the replica's file watcher reloads it.
    pub fn write_config(&self, yaml: &str) {
        replace_file(&self.sessiongate().config_path, &self.render(yaml));
    }

    /// `kill -9`, then a new process on the same ports and config folder; returns once it is
    /// listening (it loads every revocation from Redis first).
    pub async fn kill_and_restart(&mut self, yaml: &str) {
        let sessiongate = self.stack.sessiongate.as_mut().expect("a sessiongate");
        let ports = (
            sessiongate.grpc_addr,
            sessiongate.admin_addr.expect("admin"),
        );
        sessiongate.kill_hard().await;
        self.ports = Some(ports);
        let restarted = Sessiongate::start(self.stack.dir(), &self.render(yaml)).await;
        self.stack.sessiongate = Some(restarted);
    }

    /// One sample of `/metrics` (classic text format) by exact series name, labels included.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .ok()?
            .get(format!("http://{}/metrics", self.sessiongate().http_addr))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
    }

    /// Waits until `series` satisfies `wanted`; panics with the replica's output at the deadline.
    pub async fn await_metric(&self, series: &str, wanted: impl Fn(f64) -> bool) -> Instant {
        let deadline = Instant::now() + APPLY_TIMEOUT;
        loop {
            if self.metric(series).await.is_some_and(&wanted) {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "{series} never reached the wanted value within {APPLY_TIMEOUT:?}\n{}",
                self.stack.output()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the replica's `keys changed` log event, logged at or after `since`, whose
    /// `field` (`added` / `removed`) names `kid`.
    pub async fn await_keys_changed(&self, since: SystemTime, field: &str, kid: &str) -> Instant {
        let deadline = Instant::now() + APPLY_TIMEOUT;
        loop {
            let seen = self.sessiongate().output().lines().any(|line| {
                let Ok(event) = serde_json::from_str::<Value>(line) else {
                    return false;
                };
                let fields = &event["fields"];
                fields["message"] == "keys changed"
                    && fields[field]
                        .as_str()
                        .is_some_and(|kids| kids.contains(kid))
                    && event["timestamp"]
                        .as_str()
                        .and_then(|t| humantime::parse_rfc3339(t).ok())
                        .is_some_and(|logged| logged >= since)
            });
            if seen {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "no `keys changed` event with {field} {kid} within {APPLY_TIMEOUT:?}\n{}",
                self.stack.output()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// How to find this replica's sessiongate and Envoy processes (see [`pid_of`]), which
    /// stays true across a restart: the program and its config file.
    pub fn processes(&self, name: &str) -> Vec<Process> {
        vec![
            Process {
                label: format!("sessiongate-{name}"),
                program: crate::support::sessiongate::binary(),
                arg: self.sessiongate().config_path.clone(),
            },
            Process {
                label: format!("envoy-{name}"),
                program: crate::support::envoy::binary(),
                arg: self.stack.dir().join("envoy.yaml"),
            },
        ]
    }
}

/// A process to sample, named by its program and one of its arguments.
#[derive(Clone, Debug)]
pub struct Process {
    pub label: String,
    pub program: PathBuf,
    pub arg: PathBuf,
}

impl Process {
    pub fn pid(&self) -> Option<u32> {
        pid_of(&self.program, &self.arg)
    }
}

/// The process whose `argv[0]` is `program` and which has `arg` among its arguments (not the
/// `sh` watchdog that started it).
fn pid_of(program: &Path, arg: &Path) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let ours = *args.first()? == program.as_os_str().as_encoded_bytes()
            && args.contains(&arg.as_os_str().as_encoded_bytes());
        ours.then_some(pid)
    })
}

/// Replaces `path`'s content atomically; a reader never sees a half-written file.
pub fn replace_file(path: &Path, content: &str) {
    let temporary = path.with_extension("soak-tmp");
    std::fs::write(&temporary, content).expect("write temporary file");
    std::fs::rename(&temporary, path).expect("rename over the file");
}

pub struct Fleet {
    pub redis: RedisServer,
    pub replicas: Vec<Replica>,
    /// The token issuer's JWKS, watched by every replica.
    pub jwks: PathBuf,
    _keys: TempDir,
}

impl Fleet {
    /// Redis, then the replicas on `variant` with `kids` published.
    pub async fn start(replicas: usize, variant: Variant, kids: &[&str]) -> Fleet {
        let redis = RedisServer::start().await;
        let keys = tempfile::tempdir().expect("keys dir");
        let jwks = keys.path().join("issuer-jwks.json");
        std::fs::write(&jwks, fixture_jwks(kids)).expect("write the issuer's JWKS");
        let yaml = config(variant, &jwks, &redis.url());
        let mut started = Vec::new();
        for _ in 0..replicas {
            let dir = admin::prepared_dir();
            std::fs::copy(
                crate::support::tokens::keys_dir().join("transmitter-jwks.json"),
                dir.path().join("transmitter-jwks.json"),
            )
            .expect("copy transmitter-jwks.json");
            started.push(Replica {
                stack: Stack::start_in(dir, &yaml).await,
                ports: None,
            });
        }
        Fleet {
            redis,
            replicas: started,
            jwks,
            _keys: keys,
        }
    }

    pub fn config(&self, variant: Variant) -> String {
        config(variant, &self.jwks, &self.redis.url())
    }

    /// Publishes exactly `kids` in the issuer's JWKS.
    pub fn publish_keys(&self, kids: &[&str]) {
        replace_file(&self.jwks, &fixture_jwks(kids));
    }
}

/// `Revoke` of `sub`'s tokens issued at or before `issued_before_ms`, at `replica`.
pub async fn revoke_subject(
    replica: &Replica,
    sub: &str,
    issued_before_ms: i64,
) -> Result<(), String> {
    let mut client = admin::client(replica.admin_addr()).await;
    client
        .revoke(proto::RevokeRequest {
            selector: Some(proto::Selector {
                kind: Some(admin::subject(ISSUER, sub)),
            }),
            issued_before_unix_ms: Some(issued_before_ms as u64),
            reason: "soak".into(),
        })
        .await
        .map(|_| ())
        .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
}

/// A CAEP `session-revoked` SET about `sub`, with `event_timestamp` `at_secs`, pushed to
/// `replica`'s SSF endpoint.
pub async fn push_session_revoked(
    replica: &Replica,
    sub: &str,
    at_secs: i64,
) -> Result<(), String> {
    let set = ssf::set(
        ssf::iss_sub(sub),
        &ssf::caep("session-revoked"),
        serde_json::json!({ "event_timestamp": at_secs }),
    )
    .sign();
    let reply = ssf::push(replica.admin_addr(), set).await;
    if reply.status == 202 {
        Ok(())
    } else {
        Err(format!("{} {}", reply.status, reply.body))
    }
}
