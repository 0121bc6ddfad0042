//! The whole chain a request travels in production, wired on loopback:
//! mTLS client → Envoy (ext_authz) → sessiongate, and on allow → echo upstream.
//!
//! Starting Envoy and sessiongate costs about a second, so the tests share one stack per test
//! binary ([`Stack::shared`]); only scenarios that need a different sessiongate config (the idle
//! timeout) or a broken one start their own.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};

use tempfile::TempDir;
use tokio::sync::OnceCell;

use super::client::mtls_client;
use super::echo;
use super::envoy::Envoy;
use super::envoy_config::{EnvoyConfig, ExtAuthzOptions};
use super::pki::{Pki, Workload};
use super::policy;
use super::sessiongate::Sessiongate;

pub struct Stack {
    pub envoy: Envoy,
    /// `None` for [`Stack::without_sessiongate`].
    pub sessiongate: Option<Sessiongate>,
    pub upstream: SocketAddr,
    /// In-process mode: when the module was seen judging requests (its gate started before).
    module_loaded: Option<std::time::Instant>,
    clients: HashMap<Workload, reqwest::Client>,
    /// Holds the configs, certificates and JWKS the processes read; removed on drop.
    _dir: TempDir,
}

impl Stack {
    /// The stack most tests share: [`policy::sessiongate_yaml`] without an idle timeout.
    pub async fn shared() -> &'static Stack {
        static SHARED: OnceCell<Stack> = OnceCell::const_new();
        SHARED
            .get_or_init(|| async { Stack::start(&policy::sessiongate_yaml(None)).await })
            .await
    }

    /// A fresh stack with its own sessiongate config.
    pub async fn start(sessiongate_yaml: &str) -> Stack {
        Stack::start_in(
            tempfile::tempdir().expect("stack temp dir"),
            sessiongate_yaml,
        )
        .await
    }

    /// A fresh stack whose processes run in `dir`, which the caller may have prepared (an admin
    /// token file, a revocation log).
    pub async fn start_in(dir: TempDir, sessiongate_yaml: &str) -> Stack {
        Stack::start_with_ext_authz(dir, sessiongate_yaml, ExtAuthzOptions::default()).await
    }

    /// A fresh stack whose Envoy runs its ext_authz filter with `ext_authz`.
    pub async fn start_with_ext_authz(
        dir: TempDir,
        sessiongate_yaml: &str,
        ext_authz: ExtAuthzOptions,
    ) -> Stack {
        let upstream = echo::spawn().await;
        let sessiongate = Sessiongate::start(dir.path(), sessiongate_yaml).await;
        let envoy = start_envoy(dir.path(), sessiongate.grpc_addr, upstream, ext_authz).await;
        Stack::assemble(envoy, Some(sessiongate), upstream, dir)
    }

    /// Envoy whose ext_authz cluster points at a port nobody listens on: proves Envoy fails
    /// closed (`failure_mode_allow: false`, `status_on_error: 503`) when sessiongate is down.
    pub async fn without_sessiongate() -> Stack {
        let dir = tempfile::tempdir().expect("stack temp dir");
        let upstream = echo::spawn().await;
        let dead = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("reserve a port");
            listener.local_addr().expect("reserved address")
        };
        let envoy = start_envoy(dir.path(), dead, upstream, ExtAuthzOptions::default()).await;
        Stack::assemble(envoy, None, upstream, dir)
    }

    /// A fresh stack in the in-process mode: Envoy loads sessiongate as a dynamic module
    /// configured with `sessiongate_yaml`; no sessiongate process. Returns once the module has
    /// loaded its keys and revocations (until then it denies everything 503).
    pub async fn start_module(sessiongate_yaml: &str) -> Stack {
        Stack::start_module_in(
            tempfile::tempdir().expect("stack temp dir"),
            sessiongate_yaml,
        )
        .await
    }

    /// [`Stack::start_module`] in `dir`, which the caller may have prepared.
    pub async fn start_module_in(dir: TempDir, sessiongate_yaml: &str) -> Stack {
        let upstream = echo::spawn().await;
        let config = dir.path().join("sessiongate.yaml");
        std::fs::write(&config, sessiongate_yaml).expect("write sessiongate.yaml");
        std::fs::copy(super::tokens::jwks_path(), dir.path().join("jwks.json"))
            .expect("copy jwks.json");
        let tls = Pki::shared().write_server_files(dir.path());
        let unused = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("reserve a port");
            listener.local_addr().expect("reserved address")
        };
        let envoy_config = EnvoyConfig {
            tls: &tls,
            sessiongate: unused,
            upstream,
            ext_authz: ExtAuthzOptions::default(),
            module: Some(&config),
        };
        let search_path = super::module::library_dir();
        let envoy = Envoy::start_with_env(
            dir.path(),
            &envoy_config.render(),
            &[(
                "ENVOY_DYNAMIC_MODULES_SEARCH_PATH",
                search_path.to_str().expect("UTF-8 path"),
            )],
        )
        .await;
        let mut stack = Stack::assemble(envoy, None, upstream, dir);
        stack.await_module_loaded().await;
        stack.module_loaded = Some(std::time::Instant::now());
        stack
    }

    /// Waits until the module answers a request without a token with its verdict, rather
    /// than the 503 it gives while loading.
    async fn await_module_loaded(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let status = self
                .get(Workload::Frontend, "/orders/1")
                .send()
                .await
                .map(|response| response.status().as_u16());
            if matches!(status, Ok(status) if status != 503) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the module never loaded (last answer {status:?})\n{}",
                self.envoy.output()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    fn assemble(
        envoy: Envoy,
        sessiongate: Option<Sessiongate>,
        upstream: SocketAddr,
        dir: TempDir,
    ) -> Stack {
        let pki = Pki::shared();
        let clients = Workload::ALL
            .into_iter()
            .map(|w| (w, mtls_client(pki, w, envoy.listener)))
            .collect();
        Stack {
            envoy,
            sessiongate,
            upstream,
            module_loaded: None,
            clients,
            _dir: dir,
        }
    }

    /// No earlier than the gate's start (the sidecar's, or the module's once loaded): rules that
    /// forgive sessions for a while after a start are timed from here.
    pub fn gate_started(&self) -> std::time::Instant {
        match (&self.sessiongate, self.module_loaded) {
            (Some(sessiongate), _) => sessiongate.started,
            (None, Some(loaded)) => loaded,
            (None, None) => panic!("this stack runs no sessiongate"),
        }
    }

    /// The folder holding the configs and whatever sessiongate writes (its revocation log).
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// `https://localhost:<port><path>`; the clients resolve `localhost` to Envoy.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.envoy.listener.port())
    }

    pub fn client(&self, workload: Workload) -> &reqwest::Client {
        &self.clients[&workload]
    }

    pub fn get(&self, workload: Workload, path: &str) -> reqwest::RequestBuilder {
        self.client(workload).get(self.url(path))
    }

    pub fn post(&self, workload: Workload, path: &str) -> reqwest::RequestBuilder {
        self.client(workload).post(self.url(path))
    }

    /// GET `path` as `workload` with `jwt`, sent again while Envoy answers 503 because
    /// sessiongate is not listening (yet): the first answer once it is back, after a restart.
    pub async fn get_once_back(
        &self,
        workload: Workload,
        path: &str,
        jwt: &str,
    ) -> super::reply::Reply {
        use super::reply::SendExt as _;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let reply = self.get(workload, path).bearer_auth(jwt).reply().await;
            if reply.status != 503 || std::time::Instant::now() > deadline {
                return reply;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// `kill -9` of this stack's sessiongate (Envoy stays up and answers 503 meanwhile).
    pub async fn kill_sessiongate(&mut self) {
        self.sessiongate
            .as_mut()
            .expect("the stack runs sessiongate")
            .kill_hard()
            .await;
    }

    /// Starts a new sessiongate with `config_yaml` in this stack's folder (its revocation log,
    /// its config file), after the previous one was killed or stopped: a restart.
    pub async fn restart_sessiongate(&mut self, config_yaml: &str) {
        self.sessiongate = Some(Sessiongate::start(self.dir(), config_yaml).await);
    }

    /// Recent Envoy and sessiongate output, for a test that wants to explain a failure.
    pub fn output(&self) -> String {
        let sessiongate = self
            .sessiongate
            .as_ref()
            .map(Sessiongate::output)
            .unwrap_or_default();
        format!("{}\n{sessiongate}", self.envoy.output())
    }
}

async fn start_envoy(
    dir: &std::path::Path,
    sessiongate: SocketAddr,
    upstream: SocketAddr,
    ext_authz: ExtAuthzOptions,
) -> Envoy {
    let tls = Pki::shared().write_server_files(dir);
    let config = EnvoyConfig {
        tls: &tls,
        sessiongate,
        upstream,
        ext_authz,
        module: None,
    };
    Envoy::start(dir, &config.render()).await
}
