//! Config loading: the shipped example is valid, and every mistake names file, key and problem.

use std::path::{Path, PathBuf};

use super::*;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sessiongate.yaml");

/// Writes `yaml` beside a copy of the fixture JWKS and loads it.
fn load_yaml(yaml: &str) -> (Result<Config, ConfigError>, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("jwks.json"),
        sessiongate_token::testing::jwks(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("admin.token"),
        "a-test-admin-token-of-32-bytes!!\n",
    )
    .unwrap();
    let file = dir.path().join("sessiongate.yaml");
    std::fs::write(&file, yaml).unwrap();
    (load(&file), file, dir)
}

const MINIMAL: &str = r#"
issuers:
  - issuer: "https://idp.example.test"
    audiences: ["shop-api"]
    jwks_file: jwks.json
routes:
  - name: all
"#;

/// Asserts that `yaml` fails at `key` with a problem containing `problem`.
fn assert_invalid(yaml: &str, key: &str, problem: &str) {
    let (result, file, _dir) = load_yaml(yaml);
    match result {
        Err(ConfigError::Invalid {
            file: named,
            key: got_key,
            problem: got,
        }) => {
            assert_eq!(named, file);
            assert_eq!(got_key, key, "problem was: {got}");
            assert!(
                got.contains(problem),
                "{got:?} does not contain {problem:?}"
            );
        }
        other => panic!("expected an error at {key}, got {other:?}"),
    }
}

fn with_route(route: &str) -> String {
    format!(
        "{}  - name: extra\n{route}",
        MINIMAL.replace("  - name: all\n", "")
    )
}

#[test]
fn the_shipped_example_is_valid() {
    let config = load(Path::new(EXAMPLE)).unwrap();
    assert_eq!(config.policy.routes.len(), 4);
    assert_eq!(config.grpc_listen.to_string(), "127.0.0.1:9191");
    assert!(config.policy.binding.pin_first_workload);
    let orders_write = config
        .policy
        .routes
        .iter()
        .find(|r| &*r.name == "orders-write")
        .unwrap();
    let RouteAccess::Session(requirements) = &orders_write.access else {
        panic!("public")
    };
    assert_eq!(requirements.max_token_age, Duration::from_secs(120));
    assert_eq!(
        requirements.max_auth_age,
        Some(Duration::from_secs(8 * 3600))
    );
}

#[test]
fn defaults_fill_what_is_left_out() {
    let (config, _, _dir) = load_yaml(MINIMAL);
    let config = config.unwrap();
    assert_eq!(config.cache_capacity, 100_000);
    assert_eq!(config.clock_skew, Duration::from_secs(30));
    assert_eq!(config.policy.session.idle_timeout, None);
    let RouteAccess::Session(requirements) = &config.policy.routes.iter().next().unwrap().access
    else {
        panic!()
    };
    assert_eq!(requirements.max_token_age, Duration::from_secs(900));
}

#[test]
fn relative_paths_resolve_against_the_config_folder() {
    let (config, _, dir) = load_yaml(MINIMAL);
    let config = config.unwrap();
    assert!(
        config.keys[0]
            .source
            .describe()
            .contains(&dir.path().join("jwks.json").display().to_string())
    );
}

#[test]
fn unknown_keys_are_errors() {
    assert_invalid(
        &format!("{MINIMAL}extra: 1\n"),
        "extra",
        "unknown field `extra`",
    );
    assert_invalid(
        &MINIMAL.replace("audiences", "audience"),
        "issuers[0].audience",
        "unknown field",
    );
    assert_invalid(
        &with_route("    max_tokn_age: 2m\n"),
        "routes[0].max_tokn_age",
        "unknown field",
    );
}

#[test]
fn a_blank_or_odd_key_is_quoted_in_the_error() {
    // Found by fuzzing (fuzz/regressions/config/): the error named no key at all, or a blank.
    assert_invalid(&format!("{MINIMAL}\"\": 1\n"), "\"\"", "unknown field ``");
    assert_invalid(
        &MINIMAL.replace("    audiences:", "    \"\": 1\n    audiences:"),
        "issuers[0].\"\"",
        "unknown field ``",
    );
    assert_invalid(&format!("{MINIMAL}' ': 1\n"), "\" \"", "unknown field ` `");
    assert_invalid(
        &format!("{MINIMAL}session:\n  'a.b': 1\n"),
        "session.\"a.b\"",
        "unknown field",
    );
}

#[test]
fn durations_must_parse() {
    assert_invalid(
        &format!("{MINIMAL}session:\n  max_token_age: soon\n"),
        "session.max_token_age",
        "not a duration",
    );
    assert_invalid(
        &format!("{MINIMAL}session:\n  idle_timeout: 0s\n"),
        "session.idle_timeout",
        "greater than zero",
    );
    assert_invalid(
        &format!("{MINIMAL}session:\n  clock_skew: 1h\n"),
        "session.clock_skew",
        "5m",
    );
}

#[test]
fn cache_capacity_is_bounded() {
    assert_invalid(
        &format!("{MINIMAL}session:\n  cache_capacity: 0\n"),
        "session.cache_capacity",
        "between 1 and",
    );
    assert_invalid(
        &format!("{MINIMAL}session:\n  cache_capacity: 999999999999\n"),
        "session.cache_capacity",
        "between 1 and",
    );
}

#[test]
fn symmetric_and_unsigned_algorithms_are_refused() {
    for alg in ["none", "HS256"] {
        let yaml = MINIMAL.replace(
            "jwks_file: jwks.json",
            &format!("jwks_file: jwks.json\n    algorithms: [ES256, {alg}]"),
        );
        assert_invalid(&yaml, "issuers[0].algorithms[1]", "never accepted");
    }
    let yaml = MINIMAL.replace(
        "jwks_file: jwks.json",
        "jwks_file: jwks.json\n    algorithms: [ES512]",
    );
    assert_invalid(&yaml, "issuers[0].algorithms[0]", "not supported");
}

#[test]
fn issuers_need_audiences_and_readable_keys() {
    assert_invalid(
        &MINIMAL.replace(r#"["shop-api"]"#, "[]"),
        "issuers[0].audiences",
        "at least one",
    );
    assert_invalid(
        &MINIMAL.replace("jwks.json", "missing.json"),
        "issuers[0].jwks_file",
        "cannot read",
    );
    assert_invalid(
        &MINIMAL.replace("    jwks_file: jwks.json\n", ""),
        "issuers[0].jwks_file",
        "required",
    );
    assert_invalid(
        "issuers: []\nroutes: []\n",
        "issuers",
        "at least one issuer",
    );
}

#[test]
fn a_broken_jwks_names_the_issuer_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("jwks.json"),
        r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#,
    )
    .unwrap();
    let file = dir.path().join("c.yaml");
    std::fs::write(&file, MINIMAL).unwrap();
    match load(&file) {
        Err(ConfigError::Invalid { key, problem, .. }) => {
            assert_eq!(key, "issuers[0].jwks_file");
            assert!(problem.contains("symmetric"), "{problem}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn routes_are_checked() {
    assert_invalid(
        &format!("{MINIMAL}  - name: all\n"),
        "routes[1].name",
        "earlier route",
    );
    assert_invalid(
        &with_route("    path_prefix: orders\n"),
        "routes[0].path_prefix",
        "must start with /",
    );
    assert_invalid(
        &with_route("    methods: [get]\n"),
        "routes[0].methods[0]",
        "upper-case",
    );
    assert_invalid(
        &with_route("    methods: []\n"),
        "routes[0].methods",
        "matches nothing",
    );
    assert_invalid(
        &with_route("    hosts: [\"shop:80\"]\n"),
        "routes[0].hosts[0]",
        "without port",
    );
    assert_invalid(
        &with_route("    scopes: [\"a b\"]\n"),
        "routes[0].scopes[0]",
        "not a valid OAuth scope",
    );
    assert_invalid(
        &with_route("    public: true\n    scopes: [a]\n"),
        "routes[0].scopes",
        "public route",
    );
    assert_invalid(
        &with_route("    workloads: [frontend]\n"),
        "routes[0].workloads[0]",
        "not a SPIFFE ID",
    );
    assert_invalid(
        &with_route("    workloads: [\"spiffe://cluster.local*\"]\n"),
        "routes[0].workloads[0]",
        "a `*` must follow a `/` (a prefix ending mid-name also admits longer names, e.g. another trust domain or namespace); write `spiffe://cluster.local/*`",
    );
    assert_invalid(
        &with_route(
            "    workloads: [\"spiffe://cluster.local/ns/a\", \"spiffe://cluster.local/ns/shop*\"]\n",
        ),
        "routes[0].workloads[1]",
        "write `spiffe://cluster.local/ns/shop/*`",
    );
    assert_invalid(
        &with_route("    workloads: []\n"),
        "routes[0].workloads",
        "deny every caller",
    );
    assert_invalid(
        &with_route("    max_token_age: 0s\n"),
        "routes[0].max_token_age",
        "greater than zero",
    );
}

#[test]
fn binding_is_checked() {
    assert_invalid(
        &format!("{MINIMAL}binding:\n  require_claim: true\n"),
        "binding.require_claim",
        "binding.claim",
    );
    assert_invalid(
        &format!("{MINIMAL}binding:\n  claim: \"\"\n"),
        "binding.claim",
        "claim name",
    );
}

#[test]
fn listen_address_must_parse() {
    assert_invalid(
        &format!("{MINIMAL}listen:\n  grpc: localhost\n"),
        "listen.grpc",
        "not an address",
    );
}

#[test]
fn yaml_syntax_errors_are_reported() {
    let (result, _, _dir) = load_yaml("issuers: [\n");
    assert!(
        matches!(result, Err(ConfigError::Invalid { .. })),
        "{result:?}"
    );
}

#[test]
fn a_missing_file_is_unreadable() {
    assert!(matches!(
        load(Path::new("/nonexistent/sessiongate.yaml")),
        Err(ConfigError::Unreadable { .. })
    ));
}

#[test]
fn admin_never_shares_the_ext_authz_port() {
    let yaml =
        format!("{MINIMAL}listen:\n  grpc: 127.0.0.1:9191\nadmin:\n  listen: 127.0.0.1:9191\n");
    assert_invalid(&yaml, "admin.listen", "must differ from listen.grpc");
}

#[test]
fn revocation_backend_is_checked() {
    let (config, _, dir) = load_yaml(MINIMAL);
    assert_eq!(
        config.unwrap().revocation,
        RevocationBackend::File(dir.path().join("state/revocations"))
    );
    assert_invalid(
        &format!("{MINIMAL}revocation:\n  backend: etcd\n"),
        "revocation.backend",
        "not a backend",
    );
}

#[test]
fn the_redis_backend_is_configured_and_checked() {
    let redis = |rest: &str| format!("{MINIMAL}revocation:\n  backend: redis\n{rest}");
    let (config, _, _dir) = load_yaml(&redis(
        "  url: \"rediss://:s3cret@redis.internal:6380/2\"\n  key_prefix: \"mesh-a:\"\n  \
         timeout: 250ms\n  wait_replicas: 1\n",
    ));
    let RevocationBackend::Redis(settings) = config.unwrap().revocation else {
        panic!("not redis")
    };
    assert_eq!(settings.url, "rediss://:s3cret@redis.internal:6380/2");
    assert_eq!(settings.key_prefix, "mesh-a:");
    assert_eq!(settings.timeout, Duration::from_millis(250));
    assert_eq!(settings.wait_replicas, 1);
    assert!(
        !format!("{settings:?}").contains("s3cret"),
        "the password never appears in debug output"
    );
    let (config, _, _dir) = load_yaml(&redis("  url: \"redis://127.0.0.1:6379/0\"\n"));
    let RevocationBackend::Redis(defaults) = config.unwrap().revocation else {
        panic!("not redis")
    };
    assert_eq!(defaults.key_prefix, "sessiongate:");
    assert_eq!(defaults.timeout, Duration::from_secs(1));
    assert_eq!(defaults.wait_replicas, 0);

    assert_invalid(&redis(""), "revocation.url", "required for backend redis");
    assert_invalid(
        &redis("  url: \"http://127.0.0.1:6379\"\n"),
        "revocation.url",
        "must start with redis://",
    );
    assert_invalid(
        &redis("  url: \"redis://127.0.0.1:6379/0\"\n  path: \"state/x\"\n"),
        "revocation.path",
        "only applies to backend file",
    );
    assert_invalid(
        &redis("  url: \"redis://127.0.0.1:6379/0\"\n  key_prefix: \"a b\"\n"),
        "revocation.key_prefix",
        "without spaces",
    );
    assert_invalid(
        &redis("  url: \"redis://127.0.0.1:6379/0\"\n  timeout: 0s\n"),
        "revocation.timeout",
        "between 10ms and 60s",
    );
    assert_invalid(
        &format!("{MINIMAL}revocation:\n  url: \"redis://127.0.0.1:6379/0\"\n"),
        "revocation.url",
        "only applies to backend redis",
    );
}

#[test]
fn a_private_redis_ca_is_read_beside_the_config_and_checked() {
    let redis = |url: &str, ca: &str| {
        format!(
            "{MINIMAL}revocation:\n  backend: redis\n  url: \"{url}\"\n  tls_ca_file: \"{ca}\"\n"
        )
    };
    let tls = "rediss://:s3cret@redis.internal:6380/0";
    let ca = rcgen::generate_simple_self_signed(vec!["redis.internal".into()])
        .unwrap()
        .cert
        .pem();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("jwks.json"),
        sessiongate_token::testing::jwks(),
    )
    .unwrap();
    std::fs::write(dir.path().join("redis-ca.pem"), &ca).unwrap();
    let file = dir.path().join("sessiongate.yaml");
    std::fs::write(&file, redis(tls, "redis-ca.pem")).unwrap();
    let RevocationBackend::Redis(settings) = load(&file).unwrap().revocation else {
        panic!("not redis")
    };
    let loaded = settings.tls_ca.as_ref().expect("the CA");
    assert_eq!(loaded.file, dir.path().join("redis-ca.pem"));
    assert_eq!(loaded.pem, ca.as_bytes());
    assert!(!format!("{settings:?}").contains("s3cret"));

    assert_invalid(
        &redis(tls, "missing.pem"),
        "revocation.tls_ca_file",
        "cannot read",
    );
    assert_invalid(
        &redis(tls, "jwks.json"),
        "revocation.tls_ca_file",
        "holds no PEM certificate",
    );
    assert_invalid(
        &redis("redis://127.0.0.1:6379/0", "jwks.json"),
        "revocation.tls_ca_file",
        "only applies to a rediss://",
    );
    assert_invalid(
        &format!("{MINIMAL}revocation:\n  tls_ca_file: \"ca.pem\"\n"),
        "revocation.tls_ca_file",
        "only applies to backend redis",
    );
}

#[test]
fn ssf_needs_the_admin_listener_and_transmitter_keys() {
    let transmitter = "ssf:\n  transmitters:\n    - issuer: https://idp.example.test\n      audience: sessiongate\n      jwks_file: jwks.json\n";
    assert_invalid(
        &format!("{MINIMAL}{transmitter}"),
        "ssf",
        "configure `admin`",
    );
    let with_admin =
        format!("{MINIMAL}admin:\n  listen: 127.0.0.1:0\n  token_file: admin.token\n{transmitter}");
    let (config, _, _dir) = load_yaml(&with_admin);
    let ssf = config.unwrap().ssf.unwrap();
    assert_eq!(ssf.push_path, "/ssf/events");
    assert_eq!(ssf.transmitters.len(), 1);
    let both = with_admin.replace(
        "      jwks_file: jwks.json",
        "      jwks_file: jwks.json\n      jwks_uri: https://idp/jwks",
    );
    assert_invalid(&both, "ssf.transmitters[0]", "exactly one");
}

/// [`MINIMAL`] with a second issuer, the admin listener and one transmitter whose entry ends
/// with `extra` (e.g. an `issuers` list, indented six spaces).
fn with_transmitter(issuer: &str, extra: &str) -> String {
    let two_issuers = MINIMAL.replace(
        "routes:",
        "  - issuer: \"https://b.example.test\"\n    audiences: [\"shop-api\"]\n    jwks_file: jwks.json\nroutes:",
    );
    format!(
        "{two_issuers}admin:\n  listen: 127.0.0.1:0\n  token_file: admin.token\nssf:\n  transmitters:\n    - issuer: \"{issuer}\"\n      audience: sessiongate\n      jwks_file: jwks.json\n{extra}"
    )
}

/// The loader reads a transmitter's `jwks_file`, so `check-config` names an unreadable or
/// broken one by its key, though the receiver loads the keys only when it starts.
#[test]
fn an_unreadable_or_broken_transmitter_jwks_file_is_named_by_its_key() {
    let missing = with_transmitter("https://b.example.test", "").replace(
        "      jwks_file: jwks.json\n",
        "      jwks_file: missing.json\n",
    );
    assert_invalid(
        &missing,
        "ssf.transmitters[0].jwks_file",
        "cannot read file ",
    );
    let (result, file, _dir) = load_yaml(&missing);
    let problem = result.unwrap_err().to_string();
    let expected = file.with_file_name("missing.json");
    assert!(
        problem.contains(&format!("{}: ", expected.display())),
        "{problem}"
    );
    assert_invalid(
        &with_transmitter("https://b.example.test", "").replace(
            "      jwks_file: jwks.json\n",
            "      jwks_file: sessiongate.yaml\n",
        ),
        "ssf.transmitters[0].jwks_file",
        "sessiongate.yaml: ",
    );
}

/// A transmitter's `jwks_uri` is held to the issuers' rule (https, or http on loopback), and
/// refused by `check-config`, not first when the receiver starts.
#[test]
fn a_transmitter_jwks_uri_must_be_https_except_on_loopback() {
    let with_uri = |uri: &str| {
        with_transmitter("https://b.example.test", "").replace(
            "      jwks_file: jwks.json\n",
            &format!("      jwks_uri: \"{uri}\"\n"),
        )
    };
    assert_invalid(
        &with_uri("http://idp.example.test/keys"),
        "ssf.transmitters[0].jwks_uri",
        "must use https (plain http is accepted only for 127.0.0.1, [::1] and localhost)",
    );
    assert_invalid(
        &with_uri("ftp://idp.example.test/keys"),
        "ssf.transmitters[0].jwks_uri",
        "`ftp://idp.example.test/keys` is not an http(s) URL",
    );
    let (config, _, _dir) = load_yaml(&with_uri("http://127.0.0.1:9/keys"));
    assert_eq!(
        config.unwrap().ssf.unwrap().transmitters[0].keys,
        crate::keys::KeyOrigin::Uri("http://127.0.0.1:9/keys".parse().unwrap())
    );
}

#[test]
fn a_transmitter_acts_by_default_on_the_issuer_with_its_own_identifier() {
    let (config, _, _dir) = load_yaml(&with_transmitter("https://b.example.test", ""));
    let transmitter = &config.unwrap().ssf.unwrap().transmitters[0];
    assert_eq!(transmitter.issuers, [Arc::from("https://b.example.test")]);
}

#[test]
fn a_transmitter_acts_on_the_configured_issuers_it_lists() {
    let listed = "      issuers: [\"https://b.example.test\", \"https://idp.example.test\"]\n";
    let (config, _, _dir) = load_yaml(&with_transmitter("https://ssf.example.test", listed));
    let transmitter = &config.unwrap().ssf.unwrap().transmitters[0];
    assert_eq!(
        transmitter.issuers,
        [
            Arc::from("https://b.example.test"),
            Arc::from("https://idp.example.test")
        ]
    );
}

#[test]
fn a_transmitter_scope_names_configured_issuers_only() {
    assert_invalid(
        &with_transmitter("https://ssf.example.test", ""),
        "ssf.transmitters[0].issuers",
        "`https://ssf.example.test` is not a configured issuer, so this transmitter would act on no session",
    );
    assert_invalid(
        &with_transmitter(
            "https://b.example.test",
            "      issuers: [\"https://b.example.test\", \"https://c.example.test\"]\n",
        ),
        "ssf.transmitters[0].issuers[1]",
        "`https://c.example.test` is not a configured issuer",
    );
    assert_invalid(
        &with_transmitter("https://b.example.test", "      issuers: []\n"),
        "ssf.transmitters[0].issuers",
        "empty list",
    );
    assert_invalid(
        &with_transmitter(
            "https://b.example.test",
            "      issuers: [\"https://b.example.test\", \"https://b.example.test\"]\n",
        ),
        "ssf.transmitters[0].issuers[1]",
        "listed twice",
    );
}

#[test]
fn an_issuer_takes_exactly_one_key_source() {
    let uri = MINIMAL.replace(
        "jwks_file: jwks.json",
        "jwks_uri: https://idp.example.test/keys",
    );
    let config = load_yaml(&uri).0.unwrap();
    assert_eq!(
        config.keys[0].source,
        crate::keys::KeyOrigin::Uri("https://idp.example.test/keys".parse().unwrap())
    );
    assert_eq!(config.keys[0].config_key, "issuers[0].jwks_uri");
    assert_invalid(
        &MINIMAL.replace(
            "jwks_file: jwks.json",
            "jwks_file: jwks.json\n    jwks_uri: https://idp.example.test/keys",
        ),
        "issuers[0].jwks_uri",
        "exactly one of jwks_file, jwks_uri and discovery",
    );
    assert_invalid(
        &MINIMAL.replace(
            "jwks_file: jwks.json",
            "jwks_file: jwks.json\n    discovery: true",
        ),
        "issuers[0].discovery",
        "exactly one",
    );
}

#[test]
fn key_urls_must_be_https_except_on_loopback() {
    assert_invalid(
        &MINIMAL.replace(
            "jwks_file: jwks.json",
            "jwks_uri: http://idp.example.test/keys",
        ),
        "issuers[0].jwks_uri",
        "must use https",
    );
    assert!(
        load_yaml(&MINIMAL.replace(
            "jwks_file: jwks.json",
            "jwks_uri: http://127.0.0.1:8080/keys"
        ))
        .0
        .is_ok()
    );
}

#[test]
fn discovery_looks_under_the_issuer() {
    let config = load_yaml(&MINIMAL.replace("jwks_file: jwks.json", "discovery: true"))
        .0
        .unwrap();
    assert!(matches!(
        &config.keys[0].source,
        crate::keys::KeyOrigin::Discovery { issuer } if issuer == &*config.keys[0].issuer
    ));
    let (result, _, _) = load_yaml(
        &MINIMAL
            .replace("jwks_file: jwks.json", "discovery: true")
            .replace("https://idp.example.test", "http://idp.example.test"),
    );
    match result {
        Err(ConfigError::Invalid { key, problem, .. }) => {
            assert_eq!(key, "issuers[0].discovery");
            assert!(problem.contains("https"), "{problem}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn refresh_bounds_default_and_are_checked() {
    let config = load_yaml(MINIMAL).0.unwrap();
    assert_eq!(
        config.keys[0].refresh,
        crate::keys::RefreshBounds::default()
    );
    let with = |bounds: &str| {
        MINIMAL.replace(
            "jwks_file: jwks.json",
            &format!("jwks_file: jwks.json\n    keys_refresh: {{ {bounds} }}"),
        )
    };
    let config = load_yaml(&with("min_interval: 30s, max_interval: 10m, max_stale: 2h"))
        .0
        .unwrap();
    assert_eq!(
        config.keys[0].refresh,
        crate::keys::RefreshBounds {
            min_interval: Duration::from_secs(30),
            max_interval: Duration::from_secs(600),
            max_stale: Duration::from_secs(7200),
        }
    );
    assert_invalid(
        &with("min_interval: 0s"),
        "issuers[0].keys_refresh.min_interval",
        "at least 1s",
    );
    assert_invalid(
        &with("min_interval: 10m, max_interval: 1m"),
        "issuers[0].keys_refresh.max_interval",
        "less than min_interval",
    );
    assert_invalid(
        &with("max_interval: 1h, max_stale: 1h"),
        "issuers[0].keys_refresh.max_stale",
        "must exceed max_interval",
    );
    assert_invalid(
        &with("max_stale: soon"),
        "issuers[0].keys_refresh.max_stale",
        "is not a duration",
    );
}

#[test]
fn the_admin_listener_needs_a_credential() {
    let yaml = format!("{MINIMAL}admin:\n  listen: 127.0.0.1:0\n  token_file: missing.token\n");
    assert_invalid(&yaml, "admin.token_file", "missing.token");
}

#[test]
fn telemetry_endpoint_must_be_an_http_url() {
    let (config, _, _dir) = load_yaml(MINIMAL);
    let telemetry = config.unwrap().telemetry;
    assert_eq!(telemetry.otlp_endpoint, None, "tracing is off by default");
    assert_eq!(telemetry.service_name, "sessiongate");
    let (config, _, _dir) = load_yaml(&format!(
        "{MINIMAL}telemetry:\n  otlp_endpoint: http://otel-collector:4317\n  service_name: shop-gate\n"
    ));
    let telemetry = config.unwrap().telemetry;
    assert_eq!(
        telemetry.otlp_endpoint.as_deref(),
        Some("http://otel-collector:4317")
    );
    assert_eq!(telemetry.service_name, "shop-gate");
    for bad in ["otel-collector:4317", "grpc://collector:4317", "http://"] {
        assert_invalid(
            &format!("{MINIMAL}telemetry:\n  otlp_endpoint: \"{bad}\"\n"),
            "telemetry.otlp_endpoint",
            "http://",
        );
    }
    assert_invalid(
        &format!("{MINIMAL}telemetry:\n  otlp_endpoint: https://collector:4317\n"),
        "telemetry.otlp_endpoint",
        "https is not supported",
    );
    assert_invalid(
        &format!("{MINIMAL}telemetry:\n  service_name: \"\"\n"),
        "telemetry.service_name",
        "must not be empty",
    );
}

#[test]
fn the_ops_listener_defaults_and_never_shares_a_port() {
    let (config, _, _dir) = load_yaml(MINIMAL);
    let ops = config.unwrap().ops;
    assert_eq!(ops.http_listen, "127.0.0.1:9192".parse().unwrap());
    assert_eq!(ops.shutdown_grace, Duration::from_secs(10));
    assert_eq!(ops.log_allowed_sample_rate, 0.0);
    assert_invalid(
        &format!("{MINIMAL}listen:\n  http: nowhere\n"),
        "listen.http",
        "not an address",
    );
    assert_invalid(
        &format!("{MINIMAL}listen:\n  grpc: 127.0.0.1:9191\n  http: 127.0.0.1:9191\n"),
        "listen.http",
        "ext_authz port",
    );
    assert_invalid(
        &format!(
            "{MINIMAL}listen:\n  http: 127.0.0.1:9193\nadmin:\n  listen: 127.0.0.1:9193\n  token_file: admin.token\n"
        ),
        "listen.http",
        "admin API",
    );
    let (config, _, _dir) = load_yaml(&format!(
        "{MINIMAL}listen:\n  grpc: 127.0.0.1:0\n  http: 127.0.0.1:0\n"
    ));
    assert!(config.is_ok(), "port 0 picks distinct free ports");
}

#[test]
fn shutdown_grace_and_the_allow_sample_rate_are_bounded() {
    let (config, _, _dir) = load_yaml(&format!(
        "{MINIMAL}shutdown_grace: 25s\ntelemetry:\n  log_allowed_sample_rate: 0.01\n"
    ));
    let ops = config.unwrap().ops;
    assert_eq!(ops.shutdown_grace, Duration::from_secs(25));
    assert_eq!(ops.log_allowed_sample_rate, 0.01);
    assert_eq!(ops.log_denied_per_second, 100, "the default");
    let (config, _, _dir) = load_yaml(&format!(
        "{MINIMAL}telemetry:\n  log_denied_per_second: 0\n"
    ));
    assert_eq!(config.unwrap().ops.log_denied_per_second, 0);
    assert_invalid(
        &format!("{MINIMAL}shutdown_grace: 1h\n"),
        "shutdown_grace",
        "at most 5m",
    );
    assert_invalid(
        &format!("{MINIMAL}shutdown_grace: soon\n"),
        "shutdown_grace",
        "not a duration",
    );
    assert_invalid(
        &format!("{MINIMAL}telemetry:\n  log_allowed_sample_rate: 2\n"),
        "telemetry.log_allowed_sample_rate",
        "between 0 and 1",
    );
}

#[test]
fn dry_run_applies_globally_or_to_named_routes() {
    let (config, _, _dir) = load_yaml(MINIMAL);
    assert_eq!(
        config.unwrap().policy.dry_run,
        sessiongate_core::dry_run::DryRun::off()
    );
    let (config, _, _dir) = load_yaml(&with_route("    dry_run: true\n"));
    let dry_run = config.unwrap().policy.dry_run;
    assert!(dry_run.covers(Some("extra")));
    assert!(!dry_run.covers(None));
    let (config, _, _dir) = load_yaml(&format!("{MINIMAL}dry_run: true\n"));
    assert!(config.unwrap().policy.dry_run.covers(None));
}

#[test]
fn verification_limits_default_and_are_checked() {
    let (config, _, _dir) = load_yaml(MINIMAL);
    assert_eq!(
        config.unwrap().verification,
        VerificationSettings::default()
    );
    let example = load(Path::new(EXAMPLE)).unwrap();
    assert_eq!(
        example.verification,
        VerificationSettings::default(),
        "the example spells out the defaults"
    );
    let (config, _, _dir) = load_yaml(&format!(
        "{MINIMAL}limits:\n  verifications: {{per_caller: 7, total_burst: 9, callers: 3}}\n  \
         rejected_tokens: {{ttl: 0s, capacity: 5}}\n  ssf_verifications: {{per_source: 2}}\n"
    ));
    let verification = config.unwrap().verification;
    assert_eq!(verification.budget.per_caller.per_second, 7);
    assert_eq!(verification.budget.per_caller.burst, 1000);
    assert_eq!(verification.budget.total.burst, 9);
    assert_eq!(verification.budget.callers, 3);
    assert_eq!(verification.rejections.ttl, Duration::ZERO);
    assert_eq!(verification.rejections.capacity, 5);
    assert_eq!(verification.ssf.per_caller.per_second, 2);
    assert_eq!(verification.ssf.per_caller.burst, 1000);
    assert_invalid(
        &format!("{MINIMAL}limits:\n  verifications:\n    per_caller: 0\n"),
        "limits.verifications.per_caller",
        "must be between 1 and",
    );
    assert_invalid(
        &format!("{MINIMAL}limits:\n  verifications:\n    total_burst: 20000000\n"),
        "limits.verifications.total_burst",
        "got 20000000",
    );
    assert_invalid(
        &format!("{MINIMAL}limits:\n  verifications:\n    callers: 0\n"),
        "limits.verifications.callers",
        "must be between 1 and",
    );
    assert_invalid(
        &format!("{MINIMAL}limits:\n  ssf_verifications:\n    total: 0\n"),
        "limits.ssf_verifications.total",
        "must be between 1 and",
    );
    assert_invalid(
        &format!("{MINIMAL}limits:\n  rejected_tokens:\n    ttl: 1h\n"),
        "limits.rejected_tokens.ttl",
        "more than 10m",
    );
    let (result, _, _dir) = load_yaml(&format!("{MINIMAL}limits:\n  verification: {{}}\n"));
    let error = result.unwrap_err().to_string();
    assert!(
        error.contains("unknown field `verification`"),
        "a misspelt section is an error: {error}"
    );
}

#[test]
fn limits_default_and_are_read() {
    let (config, _, _dir) = load_yaml(MINIMAL);
    let limits = config.unwrap().limits;
    assert_eq!(limits, LimitSettings::default());
    assert_eq!(limits.max_check_request_bytes, 1024 * 1024);
    assert_eq!(limits.handshake_timeout, Duration::from_secs(10));
    assert_eq!(limits.body_timeout, Duration::from_secs(10));
    assert_eq!(
        limits.max_connections,
        MaxConnections {
            grpc: 1024,
            admin: 64,
            http: 64
        }
    );

    let (config, _, _dir) = load_yaml(&format!(
        "{MINIMAL}limits:\n  max_check_request_bytes: 2097152\n  handshake_timeout: 2s\n  \
         body_timeout: 500ms\n  max_connections:\n    grpc: 16\n    admin: 2\n    http: 3\n"
    ));
    let limits = config.unwrap().limits;
    assert_eq!(limits.max_check_request_bytes, 2 * 1024 * 1024);
    assert_eq!(limits.handshake_timeout, Duration::from_secs(2));
    assert_eq!(limits.body_timeout, Duration::from_millis(500));
    assert_eq!(
        limits.max_connections,
        MaxConnections {
            grpc: 16,
            admin: 2,
            http: 3
        }
    );
}

#[test]
fn limits_are_bounded_and_named() {
    for (yaml, key, problem) in [
        (
            "  max_check_request_bytes: 1024\n",
            "limits.max_check_request_bytes",
            "between 65536 and 67108864 bytes, got 1024",
        ),
        (
            "  handshake_timeout: 10ms\n",
            "limits.handshake_timeout",
            "between 100ms and 5m",
        ),
        (
            "  body_timeout: 1h\n",
            "limits.body_timeout",
            "between 100ms and 5m",
        ),
        (
            "  body_timeout: later\n",
            "limits.body_timeout",
            "not a duration",
        ),
        (
            "  max_connections:\n    grpc: 0\n",
            "limits.max_connections.grpc",
            "between 1 and 1000000, got 0",
        ),
        (
            "  max_connections:\n    admin: 2000000\n",
            "limits.max_connections.admin",
            "between 1 and 1000000",
        ),
        (
            "  max_connections:\n    ops: 4\n",
            "limits.max_connections.ops",
            "unknown field `ops`",
        ),
    ] {
        assert_invalid(&format!("{MINIMAL}limits:\n{yaml}"), key, problem);
    }
}

#[test]
fn dpop_defaults_accept_every_supported_algorithm_for_five_seconds() {
    let (config, _, _dir) = load_yaml(MINIMAL);
    let dpop = &config.unwrap().policy.dpop;
    assert_eq!(dpop.rules.proof_lifetime, Duration::from_secs(5));
    assert_eq!(
        &*dpop.rules.algorithms,
        "RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA"
    );
    assert!(dpop.nonces.is_none());
    assert_eq!(dpop.rules.origin, None);
}

#[test]
fn the_dpop_section_is_read() {
    let yaml = format!(
        "{MINIMAL}dpop:\n  algorithms: [ES256, EdDSA]\n  proof_lifetime: 10s\n  origin: https://api.example.com\n  nonce:\n    secret_file: nonce.secret\n    rotate_every: 1m\n  replay:\n    max_entries: 5000\n"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("jwks.json"),
        sessiongate_token::testing::jwks(),
    )
    .unwrap();
    std::fs::write(dir.path().join("nonce.secret"), "x".repeat(40)).unwrap();
    let file = dir.path().join("sessiongate.yaml");
    std::fs::write(&file, yaml).unwrap();
    let config = load(&file).unwrap();
    let dpop = &config.policy.dpop;
    assert_eq!(&*dpop.rules.algorithms, "ES256 EdDSA");
    assert_eq!(dpop.rules.proof_lifetime, Duration::from_secs(10));
    assert_eq!(
        dpop.rules.origin.as_deref(),
        Some("https://api.example.com")
    );
    assert!(dpop.nonces.is_some());
    assert_eq!(config.dpop_replay_entries, 5000);
}

#[test]
fn dpop_mistakes_name_the_key() {
    assert_invalid(
        &format!("{MINIMAL}dpop:\n  algorithms: [HS256]\n"),
        "dpop.algorithms[0]",
        "not an asymmetric algorithm",
    );
    assert_invalid(
        &format!("{MINIMAL}dpop:\n  algorithms: []\n"),
        "dpop.algorithms",
        "empty list",
    );
    assert_invalid(
        &format!("{MINIMAL}dpop:\n  proof_lifetime: 1h\n"),
        "dpop.proof_lifetime",
        "between 1s and 5m",
    );
    assert_invalid(
        &format!("{MINIMAL}dpop:\n  origin: https://api.example.com/v1\n"),
        "dpop.origin",
        "no path",
    );
    assert_invalid(
        &format!("{MINIMAL}dpop:\n  nonce:\n    secret_file: missing.secret\n"),
        "dpop.nonce.secret_file",
        "cannot read",
    );
    assert_invalid(
        &format!("{MINIMAL}dpop:\n  nonce:\n    secret_file: admin.token\n    rotate_every: 1ms\n"),
        "dpop.nonce.rotate_every",
        "at least 1s",
    );
    assert_invalid(
        &format!("{MINIMAL}dpop:\n  replay:\n    max_entries: 0\n"),
        "dpop.replay.max_entries",
        "between 1 and",
    );
    assert_invalid(
        &with_route("    proof_of_possession: tls\n"),
        "routes[0].proof_of_possession",
        "not one of dpop, mtls, either",
    );
    assert_invalid(
        &with_route("    dpop_origin: https://a.example/x\n"),
        "routes[0].dpop_origin",
        "no path",
    );
    assert_invalid(
        &with_route("    dpop_nonce: true\n"),
        "routes[0].dpop_nonce",
        "needs dpop.nonce",
    );
    assert_invalid(
        &with_route("    public: true\n    proof_of_possession: dpop\n"),
        "routes[0].proof_of_possession",
        "public route",
    );
}

#[test]
fn a_short_nonce_secret_is_refused() {
    // admin.token holds 32 bytes plus a newline: exactly enough.
    let (ok, _, _dir) = load_yaml(&format!(
        "{MINIMAL}dpop:\n  nonce:\n    secret_file: admin.token\n"
    ));
    assert!(ok.is_ok());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("jwks.json"),
        sessiongate_token::testing::jwks(),
    )
    .unwrap();
    std::fs::write(dir.path().join("short.secret"), "short\n").unwrap();
    let file = dir.path().join("sessiongate.yaml");
    std::fs::write(
        &file,
        format!("{MINIMAL}dpop:\n  nonce:\n    secret_file: short.secret\n"),
    )
    .unwrap();
    match load(&file) {
        Err(ConfigError::Invalid { key, problem, .. }) => {
            assert_eq!(key, "dpop.nonce.secret_file");
            assert!(problem.contains("at least 32"), "{problem}");
        }
        other => panic!("{other:?}"),
    }
}

/// `MINIMAL` plus a keyless issuer introspecting opaque tokens with `introspection` (indented
/// six spaces), its secret file `secret` written beside the config.
fn with_introspection(introspection: &str) -> String {
    MINIMAL.replace(
        "routes:\n",
        &format!(
            "  - issuer: \"https://opaque.example.test\"\n    audiences: [\"shop-api\"]\n    \
             introspection:\n{introspection}routes:\n"
        ),
    )
}

const INTROSPECTION: &str = "      endpoint: \"https://opaque.example.test/introspect\"\n      \
     client_id: sessiongate\n      client_auth: { method: client_secret_basic, secret_file: \
     jwks.json }\n";

#[test]
fn an_introspecting_issuer_needs_no_keys_and_its_rules_reach_the_verifier() {
    let (result, _file, _dir) = load_yaml(&with_introspection(INTROSPECTION));
    let config = result.unwrap();
    let introspection = config.introspection.expect("introspection settings");
    assert_eq!(&*introspection.issuer, "https://opaque.example.test");
    assert_eq!(introspection.timeout, Duration::from_secs(2));
    assert_eq!(introspection.max_concurrent, 32);
    assert!(
        !format!("{introspection:?}").contains("keys"),
        "the secret (here a JWKS file's text) is never printed"
    );
    assert_eq!(config.keys.len(), 1, "the keyless issuer has no key source");
    let rules = config.policy.verifier.introspection().expect("rules");
    assert_eq!(rules.cache_ttl, Duration::from_secs(300));
}

#[test]
fn introspection_settings_are_checked() {
    assert_invalid(
        &with_introspection(&INTROSPECTION.replace("https://opaque", "http://opaque")),
        "issuers[1].introspection.endpoint",
        "must use https",
    );
    assert_invalid(
        &with_introspection(&INTROSPECTION.replace("secret_file: jwks.json", "secret_file: nope")),
        "issuers[1].introspection.client_auth.secret_file",
        "cannot read",
    );
    assert_invalid(
        &with_introspection(&format!("{INTROSPECTION}      cache_ttl: 2h\n")),
        "issuers[1].introspection.cache_ttl",
        "between 1s and 1h",
    );
    assert_invalid(
        &with_introspection(&format!("{INTROSPECTION}      max_concurrent: 0\n")),
        "issuers[1].introspection.max_concurrent",
        "at least 1",
    );
    assert_invalid(
        &with_introspection(&format!("{INTROSPECTION}      signed_responses: true\n")),
        "issuers[1].introspection.signed_responses",
        "needs the issuer's keys",
    );
    let private_key_jwt = INTROSPECTION.replace(
        "{ method: client_secret_basic, secret_file: jwks.json }",
        "{ method: private_key_jwt, key_file: jwks.json, alg: ES256 }",
    );
    assert_invalid(
        &with_introspection(&private_key_jwt),
        "issuers[1].introspection.client_auth.key_file",
        "not a PEM private key",
    );
    assert_invalid(
        &with_introspection(&private_key_jwt.replace("alg: ES256", "alg: HS256")),
        "issuers[1].introspection.client_auth.alg",
        "not a supported asymmetric",
    );
    let mtls = INTROSPECTION.replace(
        "{ method: client_secret_basic, secret_file: jwks.json }",
        "{ method: tls_client_auth, certificate_file: jwks.json, key_file: jwks.json }",
    );
    assert_invalid(
        &with_introspection(&mtls),
        "issuers[1].introspection.client_auth.certificate_file",
        "not a PEM certificate and private key",
    );
    assert_invalid(
        &with_introspection(&format!("{INTROSPECTION}      ca_file: jwks.json\n")),
        "issuers[1].introspection.ca_file",
        "holds no PEM CA certificate",
    );
    let twice = with_introspection(INTROSPECTION).replace(
        "    jwks_file: jwks.json\n",
        &format!("    jwks_file: jwks.json\n    introspection:\n{INTROSPECTION}"),
    );
    assert_invalid(
        &twice,
        "issuers[1].introspection",
        "only one issuer may introspect",
    );
}
