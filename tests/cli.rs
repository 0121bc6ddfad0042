//! The command line as an operator uses it: exit codes, messages, and a clean stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

const BINARY: &str = env!("CARGO_BIN_EXE_sessiongate");
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sessiongate.yaml");

fn sessiongate(args: &[&str]) -> std::process::Output {
    Command::new(BINARY)
        .args(args)
        .env_remove("SESSIONGATE_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn check_config_accepts_the_shipped_example() {
    let out = sessiongate(&["check-config", EXAMPLE]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

#[test]
fn check_config_names_file_key_and_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(EXAMPLE)
        .unwrap()
        .replace("max_token_age: 2m", "max_token_age: soon");
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, text).unwrap();
    std::fs::copy(
        Path::new(EXAMPLE).with_file_name("jwks.json"),
        dir.path().join("jwks.json"),
    )
    .unwrap();
    let out = sessiongate(&["check-config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&*file.to_string_lossy()), "{stderr}");
    assert!(stderr.contains("routes[1].max_token_age"), "{stderr}");
    assert!(stderr.contains("not a duration"), "{stderr}");
}

#[test]
fn check_config_refuses_a_workload_prefix_that_crosses_a_trust_domain() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(EXAMPLE).unwrap().replace(
        r#"workloads: ["spiffe://cluster.local/ns/shop/sa/frontend"]"#,
        r#"workloads: ["spiffe://cluster.local*"]"#,
    );
    let file = dir.path().join("prefix.yaml");
    std::fs::write(&file, text).unwrap();
    std::fs::copy(
        Path::new(EXAMPLE).with_file_name("jwks.json"),
        dir.path().join("jwks.json"),
    )
    .unwrap();
    let out = sessiongate(&["check-config", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("routes[1].workloads[0]"), "{stderr}");
    assert!(
        stderr.contains("write `spiffe://cluster.local/*`"),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_an_invalid_config_with_exit_2() {
    let out = sessiongate(&["serve", "--config", "/nonexistent/sessiongate.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/sessiongate.yaml"));
}

#[test]
fn serve_refuses_zero_threads_with_exit_2() {
    let out = sessiongate(&["serve", "--config", EXAMPLE, "--threads", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--threads"));
}

#[test]
fn version_and_help() {
    let out = sessiongate(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("sessiongate "));
    let out = sessiongate(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("serve") && help.contains("check-config"),
        "{help}"
    );
}

/// Writes the shipped example, on ephemeral ports and followed by `extra` YAML, with its JWKS
/// into `dir`; returns the config's path.
fn example_on_ephemeral_ports(dir: &Path, extra: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(EXAMPLE)
        .unwrap()
        .replace("127.0.0.1:9191", "127.0.0.1:0")
        .replace("127.0.0.1:9192", "127.0.0.1:0")
        + extra;
    let file = dir.join("sessiongate.yaml");
    std::fs::write(&file, text).unwrap();
    std::fs::copy(
        Path::new(EXAMPLE).with_file_name("jwks.json"),
        dir.join("jwks.json"),
    )
    .unwrap();
    file
}

#[test]
fn sigterm_drains_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let file = example_on_ephemeral_ports(dir.path(), "");
    let mut child = Command::new(BINARY)
        .args([
            "--log-format",
            "json",
            "serve",
            "--config",
            file.to_str().unwrap(),
        ])
        .env("SESSIONGATE_CONFIG", "/ignored-because-the-flag-wins")
        .env("SESSIONGATE_THREADS", "3")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let listening = lines.by_ref().map(Result::unwrap).find(|line| {
        line.contains(r#""message":"listening""#) && line.contains(r#""listener":"grpc""#)
    });
    let listening = listening.expect("never listened");
    assert!(listening.contains(r#""threads":3"#), "{listening}");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(
        rest.iter()
            .any(|line| line.contains(r#""message":"stopped""#)),
        "{rest:?}"
    );
}

/// A config naming a device as a key file (or as itself) is refused at once instead of read
/// forever: `/dev/zero` never ends.
#[test]
fn check_config_refuses_a_device_as_a_key_file_instead_of_reading_it_forever() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(EXAMPLE)
        .unwrap()
        .replace(r#"jwks_file: "jwks.json""#, r#"jwks_file: "/dev/zero""#);
    let file = dir.path().join("device.yaml");
    std::fs::write(&file, text).unwrap();
    for config in [file.to_str().unwrap(), "/dev/zero"] {
        let mut child = Command::new(BINARY)
            .args(["check-config", config])
            .env_remove("SESSIONGATE_CONFIG")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (done, exited) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text).unwrap();
            let _ = done.send(text);
        });
        let Ok(stderr) = exited.recv_timeout(std::time::Duration::from_secs(30)) else {
            child.kill().unwrap();
            panic!("check-config {config} still reading after 30 s");
        };
        assert_eq!(child.wait().unwrap().code(), Some(2), "{stderr}");
        assert!(stderr.contains("not a regular file"), "{stderr}");
    }
}

/// Issue 11, point 6: a config error names the config file, the key once, and the problem
/// (it read `admin.token_file: admin.token_file: cannot read …`).
#[test]
fn check_config_names_an_unreadable_admin_token_file_and_its_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = example_on_ephemeral_ports(
        dir.path(),
        "\nadmin:\n  listen: \"127.0.0.1:9193\"\n  token_file: \"missing.token\"\n",
    );
    let out = sessiongate(&["check-config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let token = dir.path().join("missing.token");
    let expected = format!(
        "error: {}: admin.token_file: cannot read {}: ",
        file.display(),
        token.display()
    );
    assert!(
        stderr.starts_with(&expected),
        "expected `{expected}…`, got: {stderr}"
    );
    assert_eq!(stderr.matches("admin.token_file").count(), 1, "{stderr}");
}

/// A replica waiting for Redis at start-up (it never serves without every revocation) still
/// stops at once on SIGTERM, exit 0, instead of ignoring the signal until Redis answers: a
/// rollout or a scale-down must not hang on a pod that never became ready.
#[test]
fn sigterm_while_waiting_for_redis_exits_0_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: Redis is down for the whole test.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let file = example_on_ephemeral_ports(
        dir.path(),
        &format!("\nrevocation:\n  backend: redis\n  url: \"redis://{closed}/0\"\n"),
    );
    let mut child = Command::new(BINARY)
        .args([
            "--log-format",
            "json",
            "serve",
            "--config",
            file.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let waiting = lines
        .by_ref()
        .map(Result::unwrap)
        .find(|line| line.contains("Redis unreachable"));
    assert!(waiting.is_some(), "never waited for Redis");
    let signalled = std::time::Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = signalled + std::time::Duration::from_secs(5);
    let exited = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("still waiting for Redis 5 s after SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert_eq!(exited.code(), Some(0), "{rest:?}");
    assert!(
        !rest
            .iter()
            .any(|line| line.contains(r#""listener":"grpc""#)),
        "never listened on the ext_authz port: {rest:?}"
    );
}

/// `install-module` is how an init container hands the Envoy module to Envoy (the image has no
/// `cp`): the library arrives whole under the name Envoy loads, and nothing else is left.
#[test]
fn install_module_copies_the_library_under_the_name_envoy_loads() {
    let source = tempfile::tempdir().unwrap();
    let from = source.path().join("built.so");
    std::fs::write(&from, b"\x7fELF not really a library").unwrap();
    let shared = tempfile::tempdir().unwrap();
    let out = sessiongate(&[
        "install-module",
        shared.path().to_str().unwrap(),
        "--from",
        from.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let installed = shared.path().join("libsessiongate_envoy.so");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        b"\x7fELF not really a library"
    );
    let left: Vec<_> = std::fs::read_dir(shared.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(left, ["libsessiongate_envoy.so"]);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("{}: installed", installed.display()))
    );
}

#[test]
fn install_module_names_a_missing_library_and_exits_1() {
    let shared = tempfile::tempdir().unwrap();
    let out = sessiongate(&[
        "install-module",
        shared.path().to_str().unwrap(),
        "--from",
        "/nonexistent/libsessiongate_envoy.so",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot copy /nonexistent/libsessiongate_envoy.so to "),
        "{stderr}"
    );
    assert!(!shared.path().join("libsessiongate_envoy.so").exists());
}
