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
