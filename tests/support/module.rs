//! The in-process mode: Envoy loading sessiongate as a dynamic module (`libsessiongate_envoy.so`,
//! the `sessiongate-envoy-module` crate), built by the test run itself so it is never stale.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The folder holding `libsessiongate_envoy.so`, built on first use (debug profile, as the
/// tests): what `ENVOY_DYNAMIC_MODULES_SEARCH_PATH` points at.
pub fn library_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let output = Command::new(cargo)
            .args(["build", "-p", "sessiongate-envoy-module"])
            .args(["--message-format", "json-render-diagnostics"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo build of the module runs");
        assert!(
            output.status.success(),
            "building the module failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let library = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|message| message["reason"] == "compiler-artifact")
            .flat_map(|message| message["filenames"].as_array().cloned().unwrap_or_default())
            .filter_map(|name| name.as_str().map(PathBuf::from))
            .find(|path| path.ends_with("libsessiongate_envoy.so"))
            .expect("cargo reported libsessiongate_envoy.so");
        library.parent().expect("the library's folder").to_owned()
    })
    .clone()
}

/// Starts Envoy with the module configured by `sessiongate_config` (in `dir`) and waits for it
/// to exit, as it must when the module refuses its config; returns what Envoy logged.
pub async fn envoy_refusing(dir: &std::path::Path, sessiongate_config: &std::path::Path) -> String {
    let tls = super::pki::Pki::shared().write_server_files(dir);
    let unused: std::net::SocketAddr = "127.0.0.1:9".parse().expect("an address");
    let config = super::envoy_config::EnvoyConfig {
        tls: &tls,
        sessiongate: unused,
        upstream: unused,
        ext_authz: Default::default(),
        module: Some(sessiongate_config),
    };
    let envoy_yaml = dir.join("envoy.yaml");
    std::fs::write(&envoy_yaml, config.render()).expect("write envoy.yaml");
    let run = tokio::process::Command::new(super::envoy::binary())
        .arg("-c")
        .arg(&envoy_yaml)
        .args(["--use-dynamic-base-id", "-l", "info", "--concurrency", "1"])
        .env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", library_dir())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), run)
        .await
        .expect("Envoy exits when the module refuses its config")
        .expect("Envoy runs");
    assert!(
        !output.status.success(),
        "Envoy started on a config the module refused"
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
