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
const CUSTOM_KINDS: [(&str, &str); 6] = [
    ("install.istio.io/v1alpha1", "IstioOperator"),
    ("security.istio.io/v1", "AuthorizationPolicy"),
    ("gateway.envoyproxy.io/v1alpha1", "SecurityPolicy"),
    ("gateway.envoyproxy.io/v1alpha1", "EnvoyProxy"),
    ("gateway.envoyproxy.io/v1alpha1", "EnvoyExtensionPolicy"),
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
    assert_validated(&support::envoy::validate(config, cwd), what);
}

fn assert_validated(output: &std::process::Output, what: &str) {
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

/// `examples/envoy-module.yaml`, the in-process mode: validation loads the module (built by
/// the test run, found through `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`) and runs its config hook,
/// which loads the sessiongate config the filter names (`examples/sessiongate.yaml`).
#[test]
fn the_example_module_envoy_config_is_valid() {
    let module = support::module::library_dir();
    let output = support::envoy::validate_with_env(
        Path::new("envoy-module.yaml"),
        &repo().join("examples"),
        &[("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", &module)],
    );
    assert_validated(&output, "examples/envoy-module.yaml");
}

/// Validating the module's config is not a formality: Envoy refuses it when the sessiongate
/// config it names is missing, with the module's message naming the file, and when the
/// library is not on the search path.
#[test]
fn envoy_validation_of_the_module_config_loads_the_module_and_its_config() {
    let module = support::module::library_dir();
    let example = std::fs::read_to_string(repo().join("examples/envoy-module.yaml")).unwrap();
    let missing = example.replacen("value: sessiongate.yaml", "value: missing.yaml", 1);
    assert_ne!(missing, example);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("envoy-module.yaml");
    std::fs::write(&path, missing).unwrap();
    let output = support::envoy::validate_with_env(
        &path,
        &repo().join("examples"),
        &[("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", &module)],
    );
    let printed = String::from_utf8_lossy(&output.stderr) + String::from_utf8_lossy(&output.stdout);
    assert!(
        !output.status.success(),
        "accepted a missing sessiongate config:\n{printed}"
    );
    assert!(
        printed.contains("sessiongate missing.yaml: error: missing.yaml: cannot read"),
        "{printed}"
    );
    let output = support::envoy::validate_with_env(
        Path::new("envoy-module.yaml"),
        &repo().join("examples"),
        &[("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", dir.path())],
    );
    let printed = String::from_utf8_lossy(&output.stderr) + String::from_utf8_lossy(&output.stdout);
    assert!(
        !output.status.success(),
        "accepted a missing module:\n{printed}"
    );
    assert!(printed.contains("libsessiongate_envoy.so"), "{printed}");
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
        module: None,
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
            let mut mounted =
                envoy_yaml.replace("/etc/envoy/tls/", &format!("{}/", dir.path().display()));
            assert_ne!(
                mounted,
                envoy_yaml,
                "{}: expected certificates under /etc/envoy/tls/",
                manifest.display()
            );
            let mut env = Vec::new();
            if mounted.contains("dynamic_modules.v3.DynamicModuleFilter") {
                // The in-process mode: validation loads the module, which loads the sessiongate
                // config the filter names, mounted from the folder's ConfigMap.
                let folder = manifest.parent().unwrap();
                std::fs::write(
                    dir.path().join("sessiongate.yaml"),
                    sessiongate_config_in(folder),
                )
                .unwrap();
                let with_config = mounted.replace(
                    "/etc/sessiongate/sessiongate.yaml",
                    &dir.path().join("sessiongate.yaml").display().to_string(),
                );
                assert_ne!(
                    with_config,
                    mounted,
                    "{}: expected the sessiongate config at /etc/sessiongate/sessiongate.yaml",
                    manifest.display()
                );
                mounted = with_config;
                env.push((
                    "ENVOY_DYNAMIC_MODULES_SEARCH_PATH",
                    support::module::library_dir(),
                ));
            }
            let path = dir.path().join("envoy.yaml");
            std::fs::write(&path, mounted).unwrap();
            let env: Vec<(&str, &Path)> = env.iter().map(|(k, v)| (*k, v.as_path())).collect();
            assert_validated(
                &support::envoy::validate_with_env(&path, dir.path(), &env),
                &format!("{} (ConfigMap data envoy.yaml)", manifest.display()),
            );
            checked += 1;
        }
    }
    assert!(checked >= 1, "no Envoy config found in k8s/ ConfigMaps");
}

/// The one sessiongate config (a ConfigMap key `sessiongate.yaml`) among the manifests of
/// `folder`: what its Envoy loads in the in-process mode.
fn sessiongate_config_in(folder: &Path) -> String {
    let configs: Vec<String> = manifests()
        .iter()
        .filter(|manifest| manifest.parent() == Some(folder))
        .flat_map(|manifest| documents(manifest))
        .filter_map(|doc| Some(doc.pointer("/data/sessiongate.yaml")?.as_str()?.to_owned()))
        .collect();
    assert_eq!(
        configs.len(),
        1,
        "{}: expected one sessiongate config",
        folder.display()
    );
    configs.into_iter().next().unwrap()
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
        "EnvoyProxy" => {
            let modules = field("/spec/dynamicModules")?
                .as_array()
                .ok_or("dynamicModules is not a list")?;
            let module = modules
                .iter()
                .find(|m| m["name"] == "sessiongate")
                .ok_or("no dynamic module named sessiongate")?;
            if module["doNotClose"] != true {
                return Err("the sessiongate module must set doNotClose: true".into());
            }
            let path = module
                .pointer("/source/local/path")
                .and_then(Value::as_str)
                .ok_or("the sessiongate module needs source.local.path")?;
            let dir = path
                .strip_suffix("/libsessiongate_envoy.so")
                .ok_or_else(|| format!("{path} is not a libsessiongate_envoy.so"))?;
            let deployment = field("/spec/provider/kubernetes/envoyDeployment")?;
            let installs = deployment["initContainers"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["args"] == serde_json::json!(["install-module", dir]));
            if !installs {
                return Err(format!("no init container runs `install-module {dir}`"));
            }
            let image = deployment["container"]["image"]
                .as_str()
                .unwrap_or_default();
            if !image.contains("v1.40.") {
                return Err(format!(
                    "the module is built for Envoy 1.40; the proxy image is `{image}`"
                ));
            }
        }
        "EnvoyExtensionPolicy" => {
            field("/spec/targetRefs/0/kind")?;
            text("/spec/targetRefs/0/name")?;
            if text("/spec/dynamicModule/0/name")? != "sessiongate" {
                return Err("dynamicModule must name the module the EnvoyProxy registers".into());
            }
            text("/spec/dynamicModule/0/config")?;
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
    let proxy = documents(&repo().join("k8s/envoy-gateway-module/dynamic-module.yaml")).remove(0);
    let mut closable = proxy.clone();
    closable["spec"]["dynamicModules"][0]["doNotClose"] = false.into();
    assert!(
        check_custom_resource(&closable)
            .unwrap_err()
            .contains("doNotClose")
    );
    let mut old_envoy = proxy;
    old_envoy["spec"]["provider"]["kubernetes"]["envoyDeployment"]["container"]["image"] =
        "docker.io/envoyproxy/envoy:distroless-v1.39.0".into();
    assert!(
        check_custom_resource(&old_envoy)
            .unwrap_err()
            .contains("Envoy 1.40")
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

/// Secrets a shipped manifest mounts that cannot be shipped as a placeholder, and why: the
/// workload's mTLS certificate must be issued for it (k8s/README.md, "Before applying").
const ISSUED_SECRETS: [(&str, &str); 1] = [(
    "shop-tls",
    "the workload's mTLS certificate (cert-manager or a SPIFFE CSI driver)",
)];

/// The workloads (Deployments, StatefulSets) among `docs`, with the folder they were found in.
fn workloads(folder: &[Value]) -> impl Iterator<Item = &Value> {
    folder.iter().filter(|doc| {
        matches!(
            doc["kind"].as_str(),
            Some("Deployment" | "StatefulSet" | "DaemonSet")
        )
    })
}

/// Every shipped folder of `k8s/` with the documents of all its manifests.
fn folders() -> Vec<(PathBuf, Vec<Value>)> {
    let mut folders: Vec<(PathBuf, Vec<Value>)> = Vec::new();
    for manifest in manifests() {
        let folder = manifest.parent().expect("a folder").to_path_buf();
        let docs = documents(&manifest);
        match folders.iter_mut().find(|(path, _)| *path == folder) {
            Some((_, all)) => all.extend(docs),
            None => folders.push((folder, docs)),
        }
    }
    folders
}

/// The Secrets and ConfigMaps a workload's pods mount (volumes, projected volumes) or read
/// (`envFrom`, `valueFrom`) that are not `optional: true`: (kind, name).
fn required_references(workload: &Value) -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    let spec = &workload["spec"]["template"]["spec"];
    let mut add = |kind: &'static str, reference: &Value, name_key: &str| {
        if reference["optional"].as_bool() != Some(true)
            && let Some(name) = reference[name_key].as_str()
        {
            found.push((kind, name.to_owned()));
        }
    };
    for volume in spec["volumes"].as_array().into_iter().flatten() {
        add("Secret", &volume["secret"], "secretName");
        add("ConfigMap", &volume["configMap"], "name");
        for source in volume["projected"]["sources"]
            .as_array()
            .into_iter()
            .flatten()
        {
            add("Secret", &source["secret"], "name");
            add("ConfigMap", &source["configMap"], "name");
        }
    }
    let containers = ["containers", "initContainers"]
        .iter()
        .flat_map(|key| spec[*key].as_array().into_iter().flatten());
    for container in containers {
        for from in container["envFrom"].as_array().into_iter().flatten() {
            add("Secret", &from["secretRef"], "name");
            add("ConfigMap", &from["configMapRef"], "name");
        }
        for env in container["env"].as_array().into_iter().flatten() {
            add("Secret", &env["valueFrom"]["secretKeyRef"], "name");
            add("ConfigMap", &env["valueFrom"]["configMapKeyRef"], "name");
        }
    }
    found
}

/// Issue 11, point 6: applied as-is, a folder's pods start: every Secret and ConfigMap they
/// mount or read is shipped in the same folder and namespace (a placeholder Secret says what
/// to replace), or is optional, or is an issued certificate listed in [`ISSUED_SECRETS`].
#[test]
fn every_secret_and_config_map_a_workload_needs_is_shipped_beside_it() {
    let mut checked = 0;
    for (folder, docs) in folders() {
        for workload in workloads(&docs) {
            let namespace = workload["metadata"]["namespace"].as_str();
            for (kind, name) in required_references(workload) {
                checked += 1;
                if kind == "Secret" && ISSUED_SECRETS.iter().any(|(issued, _)| *issued == name) {
                    continue;
                }
                let shipped = docs.iter().any(|doc| {
                    doc["kind"].as_str() == Some(kind)
                        && doc["metadata"]["name"].as_str() == Some(&name)
                        && doc["metadata"]["namespace"].as_str() == namespace
                });
                assert!(
                    shipped,
                    "{}: {} {} mounts the {kind} `{name}`, which no manifest in that folder \
                     ships (in namespace {namespace:?}) and which is not optional: applied \
                     as-is, its pods never start",
                    folder.display(),
                    workload["kind"].as_str().unwrap_or_default(),
                    workload["metadata"]["name"].as_str().unwrap_or_default(),
                );
            }
        }
    }
    assert!(checked >= 5, "the shipped workloads mount their configs");
}

/// The `revocation.backend` of a sessiongate config (`file` when not set).
fn revocation_backend(config: &str) -> String {
    let config: Value = serde_yaml_ng::from_str(config).expect("a sessiongate config is YAML");
    config["revocation"]["backend"]
        .as_str()
        .unwrap_or("file")
        .to_owned()
}

/// Issue 11, point 6: with `revocation.backend: file` every replica keeps its own revocations,
/// so a revocation sent to one pod leaves the others admitting the session. A shipped workload
/// that mounts such a config runs one replica; more need the Redis backend.
#[test]
fn no_shipped_workload_runs_several_replicas_on_the_file_revocation_backend() {
    let mut checked = 0;
    for (folder, docs) in folders() {
        for workload in workloads(&docs) {
            let replicas = workload["spec"]["replicas"].as_u64().unwrap_or(1);
            for (kind, name) in required_references(workload) {
                let Some(config) = docs
                    .iter()
                    .filter(|doc| kind == "ConfigMap" && doc["kind"].as_str() == Some(kind))
                    .filter(|doc| doc["metadata"]["name"].as_str() == Some(&name))
                    .find_map(|doc| doc.pointer("/data/sessiongate.yaml")?.as_str())
                else {
                    continue;
                };
                checked += 1;
                let backend = revocation_backend(config);
                assert!(
                    replicas <= 1 || backend == "redis",
                    "{}: {} {} runs {replicas} replicas on the ConfigMap `{name}` with \
                     revocation.backend: {backend}: a revocation would reach one pod only \
                     (use 1 replica, or the redis backend)",
                    folder.display(),
                    workload["kind"].as_str().unwrap_or_default(),
                    workload["metadata"]["name"].as_str().unwrap_or_default(),
                );
            }
        }
    }
    assert!(checked >= 2, "the sidecar and shared sessiongate workloads");
}
