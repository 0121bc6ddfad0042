//! Runs the real `sessiongate serve` binary on an ephemeral port.
//!
//! The port is learnt from the binary's own `listening` log event (JSON logs), never by sleeping
//! and hoping: `listen.grpc: 127.0.0.1:0` lets many instances run side by side.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::process::ChildProcess;
use super::tokens;

/// How long start-up may take before the test fails; generous because the machine may be busy
/// compiling or running other test binaries.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Sessiongate {
    pub grpc_addr: SocketAddr,
    /// The admin listener, when the config has an `admin` section.
    pub admin_addr: Option<SocketAddr>,
    /// The ops HTTP listener (`/metrics`, `/healthz`, `/readyz`).
    pub http_addr: SocketAddr,
    /// When the binary reported it was listening: the idle-timeout start-up grace window
    /// (issue 2, section 6) is measured from about here.
    pub started: Instant,
    pub config_path: PathBuf,
    process: ChildProcess,
}

/// The path of the binary cargo built for this test run.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sessiongate"))
}

impl Sessiongate {
    /// Writes `config_yaml` to `dir/sessiongate.yaml`, copies the fixture JWKS beside it as
    /// `jwks.json` (the config refers to it relatively), starts the binary and waits for its
    /// `listening` event.
    pub async fn start(dir: &Path, config_yaml: &str) -> Sessiongate {
        let (process, mut lines, config_path) = spawn(dir, config_yaml);

        // Start-up is over once every listener reported (admin only with an admin section).
        let expects_admin = config_yaml.lines().any(|line| line.starts_with("admin:"));
        let found = tokio::time::timeout(START_TIMEOUT, async {
            let (mut grpc, mut admin, mut http) = (None, None, None);
            while let Some(line) = lines.recv().await {
                match listening_addr(&line) {
                    Some(("grpc", addr)) => grpc = Some(addr),
                    Some(("admin", addr)) => admin = Some(addr),
                    Some(("http", addr)) => http = Some(addr),
                    _ => {}
                }
                if let (Some(grpc), Some(http)) = (grpc, http)
                    && (admin.is_some() || !expects_admin)
                {
                    return Some((grpc, admin, http));
                }
            }
            None
        })
        .await;
        let (grpc_addr, admin_addr, http_addr) = match found {
            Ok(Some(addrs)) => addrs,
            Ok(None) => panic!("sessiongate exited before listening\n{}", process.output()),
            Err(_) => panic!(
                "sessiongate did not report `listening` within {START_TIMEOUT:?}\n{}",
                process.output()
            ),
        };
        Sessiongate {
            grpc_addr,
            admin_addr,
            http_addr,
            started: Instant::now(),
            config_path,
            process,
        }
    }

    /// The binary's recent log lines, to attach to a failing assertion.
    pub fn output(&self) -> String {
        self.process.output()
    }

    /// Sends `signal` (e.g. `TERM`, `HUP`) to the sessiongate process itself (not its
    /// watchdog): the one running the binary with this stack's config file.
    pub fn signal(&self, signal: &str) {
        let binary = binary();
        let pid = std::fs::read_dir("/proc")
            .expect("read /proc")
            .filter_map(|entry| {
                let pid = entry.ok()?.file_name().into_string().ok()?;
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                let is_ours = args.first()? == &binary.as_os_str().as_encoded_bytes()
                    && args
                        .iter()
                        .any(|a| *a == self.config_path.as_os_str().as_encoded_bytes());
                is_ours.then_some(pid)
            })
            .next()
            .expect("the sessiongate process");
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Whether the process has exited.
    pub fn exited(&self) -> bool {
        self.process.exited()
    }

    /// `kill -9`: no drain, no flush, no destructor; waits until the process is gone.
    pub async fn kill_hard(&mut self) {
        self.process.kill_hard().await;
    }
}

/// Writes `config_yaml` and the JWKS into `dir` (as [`Sessiongate::start`] does) and starts the
/// binary with JSON logs, without waiting for anything: for tests of a sessiongate that must
/// not get as far as listening. Returns its log lines and the config's path.
pub fn spawn(
    dir: &Path,
    config_yaml: &str,
) -> (
    ChildProcess,
    tokio::sync::mpsc::UnboundedReceiver<String>,
    PathBuf,
) {
    let config_path = dir.join("sessiongate.yaml");
    std::fs::write(&config_path, config_yaml).expect("write sessiongate.yaml");
    std::fs::copy(tokens::jwks_path(), dir.join("jwks.json")).expect("copy jwks.json");
    let (process, lines) = ChildProcess::spawn(
        "sessiongate",
        &binary(),
        [
            "serve".as_ref(),
            "--config".as_ref(),
            config_path.as_os_str(),
            "--log-format".as_ref(),
            "json".as_ref(),
        ],
        dir,
        // Pin the log level so a developer's RUST_LOG cannot hide the `listening` event.
        &[("RUST_LOG", "info")],
    );
    (process, lines, config_path)
}

/// Recognises `{"fields":{"message":"listening","listener":"grpc","addr":"…"},…}` (or
/// `"listener":"admin"`, `"listener":"http"`).
fn listening_addr(line: &str) -> Option<(&'static str, SocketAddr)> {
    let event: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = event.get("fields")?;
    if fields.get("message")?.as_str()? != "listening" {
        return None;
    }
    let listener = match fields.get("listener")?.as_str()? {
        "grpc" => "grpc",
        "admin" => "admin",
        "http" => "http",
        _ => return None,
    };
    Some((listener, fields.get("addr")?.as_str()?.parse().ok()?))
}
