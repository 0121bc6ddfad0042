//! A real `redis-server` (the Debian package; `scripts/test.sh` installs it) on a loopback port
//! of its own, with an append-only file in a temporary folder, that a test can stop and start
//! again on the same port and data, kill (`SIGKILL`) or freeze (`SIGSTOP`); a proxy that cuts
//! one replica off from it; and a proxy that loses one command on its way ([`Sever`]).
//!
//! A server can also demand a password (`--requirepass`) and speak only TLS (`--port 0
//! --tls-port`), with a certificate from a CA generated for it alone (so a client trusts it
//! only if it was given that CA), as managed Redis does.
//!
//! Readiness is learnt by asking (`PING` until `PONG`, with a deadline), never by sleeping.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::pki::Pki;
use super::process::ChildProcess;

/// How long `redis-server` may take to answer `PING` after start.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// `SESSIONGATE_REDIS_SERVER`, else `redis-server` on the PATH or in /usr/bin.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SESSIONGATE_REDIS_SERVER") {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
        .expect("redis-server not found: run scripts/test.sh (it installs the Debian package)")
}

/// A free loopback port (`redis-server` cannot be told to pick one itself).
pub fn free_port() -> u16 {
    let listener = StdListener::bind("127.0.0.1:0").expect("reserve a port");
    listener.local_addr().expect("reserved address").port()
}

/// How a test Redis is secured; the default is the open, plain-TCP server of the fleet tests.
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// `--requirepass`: every connection must authenticate with this password.
    pub password: Option<String>,
    /// TLS only (`--port 0 --tls-port`), with a server certificate for `127.0.0.1` and
    /// `localhost` from a fresh CA; client certificates are not asked for.
    pub tls: bool,
}

pub struct RedisServer {
    /// The one port it listens on: plain TCP, or TLS with [`Security::tls`].
    pub port: u16,
    dir: TempDir,
    process: Option<ChildProcess>,
    password: Option<String>,
    /// `--replicaof 127.0.0.1 <port>`: a replica of the server on that port.
    primary: Option<u16>,
    /// With TLS: the PEM of the CA its certificate chains to.
    ca_pem: Option<String>,
}

impl RedisServer {
    /// Starts a fresh open server and waits until it answers.
    pub async fn start() -> RedisServer {
        RedisServer::start_with(Security::default()).await
    }

    /// Starts a fresh server secured as `security` says and waits until it answers.
    pub async fn start_with(security: Security) -> RedisServer {
        let dir = tempfile::tempdir().expect("redis temp dir");
        let ca_pem = security.tls.then(|| {
            let pki = Pki::generate();
            pki.write_server_files(dir.path());
            pki.ca_pem
        });
        let mut server = RedisServer {
            port: free_port(),
            dir,
            process: None,
            password: security.password,
            primary: None,
            ca_pem,
        };
        server.launch().await;
        server
    }

    /// A replica of the open server `primary`, returned once `primary` counts it as in sync.
    pub async fn start_replica_of(primary: &RedisServer) -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().expect("redis temp dir"),
            process: None,
            password: None,
            primary: Some(primary.port),
            ca_pem: None,
        };
        server.launch().await;
        primary.await_replicas(1).await;
        // `state=online` is the primary's view; the replica may still be loading what it was
        // sent. A write the replica acknowledges (`WAIT`) is the event that says it copies
        // writes now, so a test's first `WAIT` is not racing the end of the initial sync.
        // One connection for both: `WAIT` counts the copies of its own connection's writes.
        let mut connection = primary
            .client()
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test redis");
        let (copies,): (u64,) = redis::pipe()
            .cmd("SET")
            .arg("test:replica-in-sync")
            .arg(1)
            .ignore()
            .cmd("WAIT")
            .arg(1)
            .arg(START_TIMEOUT.as_millis() as u64)
            .query_async(&mut connection)
            .await
            .expect("SET and WAIT on the primary");
        assert_eq!(copies, 1, "the replica never acknowledged a write");
        server
    }

    /// Waits until this server has `count` replicas online and in sync (`INFO replication`).
    pub async fn await_replicas(&self, count: usize) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let info: String = self.query(redis::cmd("INFO").arg("replication")).await;
            let online = info
                .lines()
                .filter(|line| line.starts_with("slave") && line.contains("state=online"))
                .count();
            if online == count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never {count} replicas online:\n{info}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `redis://127.0.0.1:<port>/0`, or `rediss://:<password>@…` as the server is secured.
    pub fn url(&self) -> String {
        self.url_with_password(self.password.as_deref())
    }

    /// [`Self::url`] with `password` (or none) in place of the right one.
    pub fn url_with_password(&self, password: Option<&str>) -> String {
        let scheme = if self.ca_pem.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let credentials = password.map(|p| format!(":{p}@")).unwrap_or_default();
        format!("{scheme}://{credentials}127.0.0.1:{}/0", self.port)
    }

    /// With TLS: the CA (PEM) a client must trust.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// A client of this server: with its password and, over TLS, trusting its CA.
    pub fn client(&self) -> redis::Client {
        match &self.ca_pem {
            Some(ca) => redis::Client::build_with_tls(
                self.url(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.as_bytes().to_vec()),
                },
            ),
            None => redis::Client::open(self.url()),
        }
        .expect("a client for the test redis")
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// SIGTERM (Redis writes its append-only file and exits) and wait until it is gone.
    pub async fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop(Duration::from_secs(10));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(self.addr()).await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "redis-server still answers after stop"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: a crash, no chance to close connections cleanly or write anything; waits until
    /// it is gone.
    pub async fn kill_hard(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill_hard().await;
        }
    }

    /// SIGSTOP: the process is frozen, its sockets stay open and the kernel keeps accepting
    /// connections and buffering commands, none of which is answered until [`Self::thaw`].
    pub fn freeze(&self) {
        self.process
            .as_ref()
            .expect("a running redis")
            .signal("STOP");
    }

    /// SIGCONT: resumes a frozen server; it then runs what was buffered meanwhile.
    pub fn thaw(&self) {
        self.process
            .as_ref()
            .expect("a running redis")
            .signal("CONT");
    }

    /// Starts it again on the same port and data.
    pub async fn restart(&mut self) {
        self.launch().await;
    }

    /// Runs one command on a fresh connection.
    pub async fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> T {
        let mut connection = self
            .client()
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test redis");
        command
            .query_async(&mut connection)
            .await
            .expect("redis command")
    }

    async fn launch(&mut self) {
        let dir = self.dir.path().to_owned();
        let port = self.port.to_string();
        let mut args: Vec<String> = [
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            // A replica started by a test is in sync at once, not after the 5 s default.
            "--repl-diskless-sync-delay",
            "0",
            "--dir",
            dir.to_str().expect("utf-8 temp dir"),
        ]
        .map(String::from)
        .into();
        if self.ca_pem.is_some() {
            // The files `Pki::write_server_files` wrote into the same folder.
            args.extend(
                [
                    "--port",
                    "0",
                    "--tls-port",
                    &port,
                    "--tls-cert-file",
                    "server.pem",
                    "--tls-key-file",
                    "server-key.pem",
                    "--tls-ca-cert-file",
                    "ca.pem",
                    "--tls-auth-clients",
                    "no",
                ]
                .map(String::from),
            );
        } else {
            args.extend(["--port".to_owned(), port]);
        }
        if let Some(primary) = self.primary {
            args.extend([
                "--replicaof".to_owned(),
                "127.0.0.1".to_owned(),
                primary.to_string(),
            ]);
        }
        if let Some(password) = &self.password {
            args.extend(["--requirepass".to_owned(), password.clone()]);
        }
        let (process, _lines) = ChildProcess::spawn("redis-server", &binary(), &args, &dir, &[]);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(mut connection) = self.client().get_multiplexed_async_connection().await
                && let Ok(pong) = redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
                && pong == "PONG"
            {
                break;
            }
            assert!(
                !process.exited(),
                "redis-server exited at start\n{}",
                process.output()
            );
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING within {START_TIMEOUT:?}\n{}",
                process.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.process = Some(process);
    }
}

/// A TCP proxy in front of Redis for one replica: [`Cut::cut`] drops its connections and refuses
/// new ones (the replica is partitioned from Redis while the others are not); [`Cut::restore`]
/// listens again on the same port.
pub struct Cut {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl Cut {
    pub async fn start(upstream: SocketAddr) -> Cut {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        Cut {
            addr,
            upstream,
            task: Some(tokio::spawn(serve(listener, upstream))),
        }
    }

    /// `redis://<proxy>/0`.
    pub fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    pub fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    pub async fn restore(&mut self) {
        let listener = TcpListener::bind(self.addr).await.expect("re-bind proxy");
        self.task = Some(tokio::spawn(serve(listener, self.upstream)));
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Accepts and pipes; aborting this task drops the listener and every piped connection (the
/// pipes are owned by a `JoinSet` inside it).
async fn serve(listener: TcpListener, upstream: SocketAddr) {
    let mut pipes = tokio::task::JoinSet::new();
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            return;
        };
        pipes.spawn(async move {
            if let Ok(mut server) = TcpStream::connect(upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        });
    }
}

/// When [`Sever`] closes the connection carrying the command it waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeverWhen {
    /// Before forwarding it: Redis never sees the command.
    BeforeRedis,
    /// After Redis answered it, without relaying the answer: Redis ran it, the client cannot
    /// know.
    AfterReply,
}

/// The armed marker and when to sever; `None` once it fired.
type Plan = Arc<Mutex<Option<(Vec<u8>, SeverWhen)>>>;

/// A TCP proxy in front of Redis that loses one command: once armed with [`Sever::arm`], the
/// first connection to send bytes containing a marker is closed (both ways) at the chosen
/// moment; every other connection and every later command passes through. Lets a test drop
/// the shared connection exactly while a given write is in flight.
///
/// [`Sever::stall_open_connections`] models a middlebox (NAT, load balancer, failover address)
/// that forgot its flows: the connections open now go silent, never closed, while new ones work.
pub struct Sever {
    pub addr: SocketAddr,
    plan: Plan,
    /// Connections accepted before the current epoch relay nothing more.
    epoch: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Sever {
    pub async fn start(upstream: SocketAddr) -> Sever {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let plan = Arc::new(Mutex::new(None));
        let epoch = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(serve_severing(
            listener,
            upstream,
            Arc::clone(&plan),
            Arc::clone(&epoch),
        ));
        Sever {
            addr,
            plan,
            epoch,
            task,
        }
    }

    /// `redis://<proxy>/0`.
    pub fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// Closes the next connection that sends `marker` (e.g. `XADD`), at `when`.
    pub fn arm(&self, marker: &str, when: SeverWhen) {
        *self.plan.lock().expect("plan lock") = Some((marker.as_bytes().to_vec(), when));
    }

    /// Every connection open now stops relaying (both ways) but stays open; new ones work.
    pub fn stall_open_connections(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether the armed command has come by (and its connection was closed).
    pub fn fired(&self) -> bool {
        self.plan.lock().expect("plan lock").is_none()
    }
}

impl Drop for Sever {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_severing(
    listener: TcpListener,
    upstream: SocketAddr,
    plan: Plan,
    epoch: Arc<AtomicU64>,
) {
    let mut pipes = tokio::task::JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        pipes.spawn(pipe_severing(
            client,
            upstream,
            Arc::clone(&plan),
            Arc::clone(&epoch),
        ));
    }
}

/// Relays both ways; returning closes both sockets. Once the epoch moves on, whatever arrives
/// next is held forever, with both sockets open.
async fn pipe_severing(
    mut client: TcpStream,
    upstream: SocketAddr,
    plan: Plan,
    epoch: Arc<AtomicU64>,
) {
    let born = epoch.load(Ordering::SeqCst);
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let stalled = || epoch.load(Ordering::SeqCst) != born;
    let (mut from_client, mut to_client) = client.split();
    let (mut from_server, mut to_server) = server.split();
    let (mut up, mut down) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        tokio::select! {
            read = from_client.read(&mut up) => {
                let Ok(n @ 1..) = read else { return };
                if stalled() {
                    return std::future::pending().await;
                }
                let chunk = &up[..n];
                let hit = {
                    let mut plan = plan.lock().expect("plan lock");
                    let hit = plan.as_ref().and_then(|(marker, when)| {
                        chunk.windows(marker.len()).any(|w| w == marker.as_slice()).then_some(*when)
                    });
                    if hit.is_some() {
                        *plan = None;
                    }
                    hit
                };
                match hit {
                    Some(SeverWhen::BeforeRedis) => return,
                    Some(SeverWhen::AfterReply) => {
                        if to_server.write_all(chunk).await.is_ok() {
                            let _ = from_server.read(&mut down).await;
                        }
                        return;
                    }
                    None => {
                        if to_server.write_all(chunk).await.is_err() {
                            return;
                        }
                    }
                }
            }
            read = from_server.read(&mut down) => {
                let Ok(n @ 1..) = read else { return };
                if stalled() {
                    return std::future::pending().await;
                }
                if to_client.write_all(&down[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
