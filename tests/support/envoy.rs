//! Runs a real Envoy 1.40 and finds out, from Envoy itself, when and where it listens.
//!
//! The binary comes from `$SESSIONGATE_ENVOY` or `<repo>/.envoy/bin/envoy` (put there by
//! `scripts/install-envoy.sh`). A missing Envoy fails the test loudly: an end-to-end suite that
//! silently skips would report green without having proven anything.
//!
//! Start-up: Envoy writes its admin address to `--admin-address-path` once the admin listener is
//! bound; we then poll `/ready` (short interval, overall deadline) until the listeners are
//! serving, and read the HTTPS listener's ephemeral port from `/listeners?format=json`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use super::process::ChildProcess;

const START_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// The Envoy binary to test against; panics with the fix when there is none.
pub fn binary() -> PathBuf {
    let path = match std::env::var_os("SESSIONGATE_ENVOY") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(".envoy/bin/envoy"),
    };
    assert!(
        path.is_file(),
        "Envoy not found at {}: run scripts/install-envoy.sh (or set SESSIONGATE_ENVOY to an \
         Envoy 1.40 binary)",
        path.display()
    );
    path
}

/// Checks a config the way Envoy would load it, without serving. Relative file names in the
/// config resolve against `cwd`, as they would for a real run started there.
pub fn validate(config: &Path, cwd: &Path) -> Output {
    validate_with_env(config, cwd, &[])
}

/// [`validate`] with extra environment variables (the module's search path: validation loads
/// the dynamic module and runs its config hook, so the sessiongate config it names is loaded
/// too). Without cargo's `LD_LIBRARY_PATH` (which holds `target/debug`), where Envoy's last
/// resort, a plain `dlopen`, would otherwise find the module whatever the search path says.
pub fn validate_with_env(config: &Path, cwd: &Path, env: &[(&str, &Path)]) -> Output {
    std::process::Command::new(binary())
        .env_remove("LD_LIBRARY_PATH")
        .envs(env.iter().copied())
        .args([
            "--mode",
            "validate",
            "-l",
            "warning",
            "--disable-hot-restart",
            "-c",
        ])
        .arg(config)
        .current_dir(cwd)
        .output()
        .expect("run envoy --mode validate")
}

pub struct Envoy {
    /// The downstream HTTPS (mTLS) listener.
    pub listener: SocketAddr,
    pub admin: SocketAddr,
    process: ChildProcess,
}

impl Envoy {
    /// Writes `config_yaml` to `dir/envoy.yaml` and runs Envoy on it until it is ready.
    pub async fn start(dir: &Path, config_yaml: &str) -> Envoy {
        Envoy::start_with_env(dir, config_yaml, &[]).await
    }

    /// [`Envoy::start`] with extra environment variables (the module's search path).
    pub async fn start_with_env(dir: &Path, config_yaml: &str, env: &[(&str, &str)]) -> Envoy {
        let config_path = dir.join("envoy.yaml");
        let admin_path = dir.join("envoy-admin-address");
        std::fs::write(&config_path, config_yaml).expect("write envoy.yaml");
        let _ = std::fs::remove_file(&admin_path);

        let (process, _lines) = ChildProcess::spawn(
            "envoy",
            &binary(),
            [
                "-c".as_ref(),
                config_path.as_os_str(),
                "--admin-address-path".as_ref(),
                admin_path.as_os_str(),
                // One worker is plenty for tests and leaves the second core to everything else.
                "--concurrency".as_ref(),
                "1".as_ref(),
                "-l".as_ref(),
                "warning".as_ref(),
                // Parallel test binaries each run Envoys; a fixed base id would make them clash
                // over hot-restart shared memory.
                "--use-dynamic-base-id".as_ref(),
            ],
            dir,
            env,
        );

        let deadline = Instant::now() + START_TIMEOUT;
        let admin = loop {
            if let Some(addr) = std::fs::read_to_string(&admin_path)
                .ok()
                .and_then(|text| text.trim().parse::<SocketAddr>().ok())
            {
                break addr;
            }
            if process.exited() {
                panic!("Envoy exited during start-up\n{}", process.output());
            }
            if Instant::now() > deadline {
                panic!("Envoy never wrote its admin address\n{}", process.output());
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        };

        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("admin client");
        loop {
            let ready = http.get(format!("http://{admin}/ready")).send().await;
            if matches!(&ready, Ok(response) if response.status().is_success()) {
                break;
            }
            if process.exited() {
                panic!("Envoy exited during start-up\n{}", process.output());
            }
            if Instant::now() > deadline {
                panic!(
                    "Envoy not ready within {START_TIMEOUT:?}\n{}",
                    process.output()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }

        let listeners: serde_json::Value = http
            .get(format!("http://{admin}/listeners?format=json"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .expect("GET /listeners")
            .json()
            .await
            .expect("listeners JSON");
        let listener = https_listener_addr(&listeners).unwrap_or_else(|| {
            panic!(
                "no `https` listener in /listeners: {listeners}\n{}",
                process.output()
            )
        });

        Envoy {
            listener,
            admin,
            process,
        }
    }

    /// Envoy's recent log lines, to attach to a failing assertion.
    pub fn output(&self) -> String {
        self.process.output()
    }
}

/// `{"listener_statuses":[{"name":"https","local_address":{"socket_address":{…}}}]}`
fn https_listener_addr(listeners: &serde_json::Value) -> Option<SocketAddr> {
    let status = listeners
        .get("listener_statuses")?
        .as_array()?
        .iter()
        .find(|status| status.get("name").and_then(|n| n.as_str()) == Some("https"))?;
    let socket = status.get("local_address")?.get("socket_address")?;
    let ip = socket.get("address")?.as_str()?;
    let port = socket.get("port_value")?.as_u64()?;
    format!("{ip}:{port}").parse().ok()
}
