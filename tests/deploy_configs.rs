//! Every deployment artefact in the repository is checked the way its consumer would check it:
//! each Envoy configuration with `envoy --mode validate`, each Kubernetes manifest against the
//! Kubernetes API schemas (offline), and the mesh custom resources (Istio, Envoy Gateway),
//! whose schemas no offline package ships, structurally: kind, required fields, and that they
//! point at the provider and Service the other manifests define.
//!
//! Needs Envoy (`scripts/install-envoy.sh`) and `kubernetes-validate`
//! (`scripts/install-k8s-validate.sh`, into the git-ignored `.venv-tools/`). Both are located
//! like the e2e tests locate Envoy; a missing tool fails loudly rather than skipping.
//!
//! Each validator is also shown a deliberately broken input, so a validator that silently
//! accepts everything cannot make these tests pass.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize as _;
use serde_json::Value;
use support::envoy_config::EnvoyConfig;
use support::pki::Pki;

/// Kubernetes versions the manifests are checked against: an older one still widely run and
/// the newest the schema package bundles.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

/// Custom resources the Kubernetes schemas do not know; checked by [`check_custom_resource`].
const CUSTOM_KINDS: [(&str, &str); 4] = [
    ("install.istio.io/v1alpha1", "IstioOperator"),
    ("security.istio.io/v1", "AuthorizationPolicy"),
    ("gateway.envoyproxy.io/v1alpha1", "SecurityPolicy"),
    ("gateway.networking.k8s.io/v1beta1", "ReferenceGrant"),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `*.yaml` under `k8s/`, sorted.
fn manifests() -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read k8s/") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&repo().join("k8s"), &mut found);
    found.sort();
    assert!(!found.is_empty(), "no manifests under k8s/");
    found
}

/// The documents of a multi-document YAML file.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("read manifest");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: not valid YAML: {e}", path.display()))
        })
        .filter(|doc| !doc.is_null())
        .collect()
}

fn assert_envoy_accepts(config: &Path, cwd: &Path, what: &str) {
    let output = support::envoy::validate(config, cwd);
    assert!(
        output.status.success(),
        "envoy --mode validate {what} failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `examples/envoy.yaml` names its certificates relative to `examples/`, so it is validated
/// with `examples/` as the working directory, which is also where `scripts/demo.sh` runs Envoy.
#[test]
fn the_example_envoy_config_is_valid() {
    assert_envoy_accepts(
        Path::new("envoy.yaml"),
        &repo().join("examples"),
        "examples/envoy.yaml",
    );
}

/// The Envoy bootstrap the end-to-end tests run, rendered with real certificates.
#[test]
fn the_envoy_config_the_tests_render_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let tls = Pki::shared().write_server_files(dir.path());
    let rendered = EnvoyConfig {
        tls: &tls,
        sessiongate: "127.0.0.1:9191".parse().unwrap(),
        upstream: "127.0.0.1:8080".parse().unwrap(),
        ext_authz: Default::default(),
    }
    .render();
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, rendered).unwrap();
    assert_envoy_accepts(&path, dir.path(), "the rendered test config");
}

/// Every ConfigMap key `envoy.yaml` under `k8s/`. Its certificates come from a Secret mounted at
/// `/etc/envoy/tls` (`tls.crt`, `tls.key`, `ca.crt`, as cert-manager writes them); the test
/// mounts demo certificates of the same names in a temporary folder instead.
#[test]
fn every_envoy_config_in_the_kubernetes_manifests_is_valid() {
    let mut checked = 0;
    for manifest in manifests() {
        for doc in documents(&manifest) {
            let Some(envoy_yaml) = doc.pointer("/data/envoy.yaml").and_then(Value::as_str) else {
                continue;
            };
            let dir = tempfile::tempdir().unwrap();
            let certs = repo().join("examples/certs");
            for (from, to) in [
                ("server.pem", "tls.crt"),
                ("server-key.pem", "tls.key"),
                ("ca.pem", "ca.crt"),
            ] {
                std::fs::copy(certs.join(from), dir.path().join(to)).unwrap();
            }
            let mounted =
                envoy_yaml.replace("/etc/envoy/tls/", &format!("{}/", dir.path().display()));
            assert_ne!(
                mounted,
                envoy_yaml,
                "{}: expected certificates under /etc/envoy/tls/",
                manifest.display()
            );
            let path = dir.path().join("envoy.yaml");
            std::fs::write(&path, mounted).unwrap();
            assert_envoy_accepts(
                &path,
                dir.path(),
                &format!("{} (ConfigMap data envoy.yaml)", manifest.display()),
            );
            checked += 1;
        }
    }
    assert!(checked >= 1, "no Envoy config found in k8s/ ConfigMaps");
}

/// Every ConfigMap key `sessiongate.yaml` under `k8s/` passes `sessiongate check-config`. The
/// admin token comes from a Secret mounted at `/var/run/secrets/sessiongate`; the test mounts a
/// token file of its own there instead.
#[test]
fn every_sessiongate_config_in_the_kubernetes_manifests_is_valid() {
    let mut checked = 0;
    for manifest in manifests() {
        for doc in documents(&manifest) {
            let Some(config) = doc
                .pointer("/data/sessiongate.yaml")
                .and_then(Value::as_str)
            else {
                continue;
            };
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(
                dir.path().join("admin-token"),
                "k8s-test-admin-token-0123456789",
            )
            .unwrap();
            let mounted = config.replace(
                "/var/run/secrets/sessiongate/",
                &format!("{}/", dir.path().display()),
            );
            let path = dir.path().join("sessiongate.yaml");
            std::fs::write(&path, mounted).unwrap();
            let output = Command::new(support::sessiongate::binary())
                .arg("check-config")
                .arg(&path)
                .output()
                .expect("run sessiongate check-config");
            assert!(
                output.status.success(),
                "{}: sessiongate check-config failed: {}",
                manifest.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "expected the sidecar and shared sessiongate configs"
    );
}

#[test]
fn envoy_validation_rejects_a_broken_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("envoy.yaml");
    // A misspelt field of the ext_authz filter: Envoy must refuse it, not ignore it.
    let example = std::fs::read_to_string(repo().join("examples/envoy.yaml")).unwrap();
    let broken = example.replacen("failure_mode_allow: false", "failure_mode_alow: false", 1);
    assert_ne!(broken, example);
    std::fs::write(&path, broken).unwrap();
    let output = support::envoy::validate(&path, &repo().join("examples"));
    assert!(
        !output.status.success(),
        "Envoy accepted a config with an unknown field"
    );
}

/// The `kubernetes-validate` binary: `$SESSIONGATE_K8S_VALIDATE`, else the project venv.
fn kubernetes_validate() -> PathBuf {
    let path = std::env::var_os("SESSIONGATE_K8S_VALIDATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv-tools/bin/kubernetes-validate"));
    assert!(
        path.is_file(),
        "kubernetes-validate not found at {}: run scripts/install-k8s-validate.sh",
        path.display()
    );
    path
}

/// Runs `kubernetes-validate --strict` (unknown fields are errors) on `files` for `version`;
/// returns whether it passed and what it printed.
fn validate_manifests(files: &[PathBuf], version: &str) -> (bool, String) {
    let output = Command::new(kubernetes_validate())
        .args(["--strict", "--kubernetes-version", version])
        .args(files)
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn kubernetes_manifests_match_the_kubernetes_schemas() {
    let files = manifests();
    for version in KUBERNETES_VERSIONS {
        let (passed, report) = validate_manifests(&files, version);
        assert!(passed, "manifests fail Kubernetes {version}:\n{report}");
        // Only the known custom resources may lack a schema: a core kind with a misspelt
        // apiVersion would otherwise slip through as "no schema".
        for line in report
            .lines()
            .filter(|l| l.contains("Couldn't find schema"))
        {
            assert!(
                CUSTOM_KINDS
                    .iter()
                    .any(|(api, kind)| line
                        .contains(&format!("kind {kind} with api version {api} "))),
                "unexpected kind without a schema: {line}"
            );
        }
        let validated = report
            .lines()
            .filter(|l| l.contains(" passed for resource "))
            .count();
        let core_documents = files
            .iter()
            .flat_map(|f| documents(f))
            .filter(|doc| !is_custom(doc))
            .count();
        assert_eq!(
            validated, core_documents,
            "every core resource is validated:\n{report}"
        );
    }
}

#[test]
fn the_schema_check_rejects_a_broken_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yaml");
    // Well-formed YAML, wrong types and an unknown field: what a hand edit typically breaks.
    std::fs::write(
        &path,
        r#"apiVersion: apps/v1
kind: Deployment
metadata: { name: broken }
spec:
  replicas: "two"
  selector: { matchLabels: { app: x } }
  template:
    metadata: { labels: { app: x } }
    spec:
      containers:
        - name: x
          image: x
          securityContext: { runAsNonRoot: true, readOnlyRootFilesytem: true }
"#,
    )
    .unwrap();
    let (passed, report) = validate_manifests(&[path], KUBERNETES_VERSIONS[1]);
    assert!(!passed, "a broken Deployment passed:\n{report}");
    assert!(report.contains("spec.replicas"), "{report}");
}

fn is_custom(doc: &Value) -> bool {
    let api = doc["apiVersion"].as_str().unwrap_or_default();
    let kind = doc["kind"].as_str().unwrap_or_default();
    CUSTOM_KINDS.contains(&(api, kind))
}

/// The structural check of a custom resource: what its controller needs to act on it and
/// what must agree with the rest of `k8s/` (provider name, the sessiongate Service and port).
fn check_custom_resource(doc: &Value) -> Result<(), String> {
    let field = |pointer: &str| -> Result<&Value, String> {
        doc.pointer(pointer)
            .filter(|v| !v.is_null())
            .ok_or_else(|| format!("missing {pointer}"))
    };
    let text = |pointer: &str| -> Result<&str, String> {
        field(pointer)?
            .as_str()
            .ok_or_else(|| format!("{pointer} is not a string"))
    };
    text("/metadata/name")?;
    text("/metadata/namespace")?;
    match doc["kind"].as_str().unwrap_or_default() {
        "IstioOperator" => {
            let providers = field("/spec/meshConfig/extensionProviders")?
                .as_array()
                .ok_or("extensionProviders is not a list")?;
            let provider = providers
                .iter()
                .find(|p| p["name"] == "sessiongate")
                .ok_or("no extension provider named sessiongate")?;
            let grpc = &provider["envoyExtAuthzGrpc"];
            if grpc["service"] != "sessiongate.sessiongate.svc.cluster.local"
                || grpc["port"] != 9191
            {
                return Err(format!(
                    "provider must call the sessiongate Service on 9191: {grpc}"
                ));
            }
            if grpc["failOpen"] != false {
                return Err("the provider must fail closed (failOpen: false)".into());
            }
        }
        "AuthorizationPolicy" => {
            if text("/spec/action")? != "CUSTOM" {
                return Err("action must be CUSTOM to delegate to an extension provider".into());
            }
            if text("/spec/provider/name")? != "sessiongate" {
                return Err("provider.name must be the mesh extension provider sessiongate".into());
            }
            field("/spec/selector/matchLabels")?;
        }
        "SecurityPolicy" => {
            field("/spec/targetRefs/0/kind")?;
            text("/spec/targetRefs/0/name")?;
            let backend = field("/spec/extAuth/grpc/backendRefs/0")?;
            if backend["name"] != "sessiongate" || backend["port"] != 9191 {
                return Err(format!(
                    "extAuth must call the sessiongate Service on 9191: {backend}"
                ));
            }
            if doc.pointer("/spec/extAuth/failOpen") == Some(&Value::Bool(true)) {
                return Err("extAuth must fail closed".into());
            }
        }
        "ReferenceGrant" => {
            text("/spec/from/0/kind")?;
            text("/spec/to/0/kind")?;
        }
        other => return Err(format!("no structural check for kind {other}")),
    }
    Ok(())
}

#[test]
fn mesh_custom_resources_have_what_their_controllers_need() {
    let mut kinds = Vec::new();
    for manifest in manifests() {
        for doc in documents(&manifest).into_iter().filter(is_custom) {
            if let Err(problem) = check_custom_resource(&doc) {
                panic!(
                    "{}: {} {}: {problem}",
                    manifest.display(),
                    doc["kind"],
                    doc["metadata"]["name"]
                );
            }
            kinds.push(doc["kind"].as_str().unwrap().to_owned());
        }
    }
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds.len(),
        CUSTOM_KINDS.len(),
        "each custom kind has an example: {kinds:?}"
    );
}

#[test]
fn the_structural_check_rejects_broken_custom_resources() {
    let policy = documents(&repo().join("k8s/istio/authorizationpolicy.yaml")).remove(0);
    let mut allow = policy.clone();
    allow["spec"]["action"] = "ALLOW".into();
    assert!(
        check_custom_resource(&allow)
            .unwrap_err()
            .contains("CUSTOM")
    );
    let mut unnamed = policy;
    unnamed["spec"]["provider"] = Value::Null;
    assert!(
        check_custom_resource(&unnamed)
            .unwrap_err()
            .contains("provider")
    );
    let gateway = documents(&repo().join("k8s/envoy-gateway/securitypolicy.yaml")).remove(0);
    let mut fail_open = gateway;
    fail_open["spec"]["extAuth"]["failOpen"] = true.into();
    assert!(
        check_custom_resource(&fail_open)
            .unwrap_err()
            .contains("fail closed")
    );
}

/// The shipped Prometheus alert rules (`docs/prometheus/alerts.yaml`) load in Prometheus
/// (`promtool check rules`) and pass their unit tests (`promtool test rules`), among them that
/// the rejected-reload alert fires on the FIRST rejected reload when the series exists at 0
/// from start-up (and would not if it were born with that reload).
#[test]
fn the_shipped_alert_rules_load_and_fire_on_the_first_event() {
    let dir = repo().join("docs/prometheus");
    for args in [
        ["check", "rules", "alerts.yaml"],
        ["test", "rules", "alerts.test.yaml"],
    ] {
        let output = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| {
                panic!("promtool is needed ({e}); scripts/test.sh installs it (apt-get install prometheus)")
            });
        assert!(
            output.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
