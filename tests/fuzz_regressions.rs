//! Replays every committed fuzz input through the fuzz targets' own bodies
//! ([`sessiongate::fuzzing`]): the seed corpus (`fuzz/seeds/<target>/`) and every input that
//! once crashed a target (`fuzz/regressions/<target>/`). This is the fuzzing CI runs: fast,
//! deterministic, no `cargo fuzz`. `scripts/fuzz.sh` does the fuzzing itself.
//!
//! Seeds named `accepted-*` must also make it all the way through (a verified token, a loaded
//! config, a replayed log...), so a change that stops the seeds reaching the deep code fails
//! here rather than silently making the fuzzing shallow.
//!
//! `cargo test --test fuzz_regressions -- --ignored write_seed_corpus` rewrites the seeds from
//! the fixtures (signing the tokens and SETs with the fixture keys).

use std::path::{Path, PathBuf};

use sessiongate::fuzzing;

type Target = fn(&[u8]) -> bool;

const TARGETS: &[(&str, Target)] = &[
    ("check_request", fuzzing::check_request),
    ("token", fuzzing::token),
    ("security_event", fuzzing::security_event),
    ("config", fuzzing::config),
    ("revocation_log", fuzzing::revocation_log),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Every file directly in `dir`, sorted (none if `dir` does not exist).
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str, run: Target) {
    let seeds = inputs(&fuzz_dir().join("seeds").join(target));
    assert!(!seeds.is_empty(), "{target} has no seed corpus");
    assert!(
        seeds.iter().any(|seed| is_accepted_seed(seed)),
        "{target} has no seed that reaches the deep code"
    );
    for seed in &seeds {
        let accepted = run(&std::fs::read(seed).unwrap());
        if is_accepted_seed(seed) {
            assert!(
                accepted,
                "{} no longer gets all the way through",
                seed.display()
            );
        }
    }
    for crash in inputs(&fuzz_dir().join("regressions").join(target)) {
        run(&std::fs::read(&crash).unwrap());
    }
}

fn is_accepted_seed(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|name| name.to_string_lossy().starts_with("accepted-"))
}

#[test]
fn check_request_inputs_replay() {
    replay("check_request", fuzzing::check_request);
}

#[test]
fn token_inputs_replay() {
    replay("token", fuzzing::token);
}

#[test]
fn security_event_inputs_replay() {
    replay("security_event", fuzzing::security_event);
}

#[test]
fn config_inputs_replay() {
    replay("config", fuzzing::config);
}

#[test]
fn revocation_log_inputs_replay() {
    replay("revocation_log", fuzzing::revocation_log);
}

#[test]
fn every_target_has_a_fuzz_target_and_a_seed_folder() {
    for (target, _) in TARGETS {
        let source = fuzz_dir().join("fuzz_targets").join(format!("{target}.rs"));
        assert!(source.is_file(), "{} is missing", source.display());
        assert!(
            fuzz_dir().join("seeds").join(target).is_dir(),
            "{target} seeds"
        );
    }
}

// ---- writing the seed corpus ----

#[test]
#[ignore = "rewrites fuzz/seeds/ from the fixtures; run by hand after changing them"]
fn write_seed_corpus() {
    let seeds = fuzz_dir().join("seeds");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = seeds.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    let with_mode = |mode: u8, rest: &[u8]| [&[mode][..], rest].concat();

    for (header, claims) in fuzzing::SIGNED_TOKENS {
        let (name, token) = signed(header, claims);
        write(
            "token",
            &format!("accepted-{name}"),
            &with_mode(0, format!("Bearer {token}").as_bytes()),
        );
    }
    let harness_claims = r#"{"iss":"https://fuzzing.sessiongate.invalid","aud":"shop-api","sub":"dave","jti":"j-1","sid":"s-1","email":"Dave@Example.TEST","client_id":"spiffe://cluster.local/ns/shop/sa/batch","iat":1800000000,"nbf":1800000000,"auth_time":1799990000,"exp":1800000600,"scope":"a b:c","cnf":{"x5t#S256":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"}}"#;
    write(
        "token",
        "accepted-harness-claims",
        &with_mode(1, harness_claims.as_bytes()),
    );
    write(
        "token",
        "accepted-harness-header-and-claims",
        &with_mode(
            1,
            &[
                br#"{"alg":"EdDSA","kid":"fuzzing-eddsa","typ":"JWT","crit":null}"#.as_slice(),
                &[0xff],
                br#"{"iss":"https://fuzzing.sessiongate.invalid","aud":["x","shop-api"],"exp":1.8e9,"scope":["a","b"]}"#,
            ]
            .concat(),
        ),
    );
    write(
        "token",
        "two-credentials",
        &with_mode(0, b"Bearer a.b.c, Bearer d.e.f"),
    );

    for (header, claims) in fuzzing::SIGNED_SETS {
        let (_, set) = signed(header, claims);
        let jti = serde_json::from_str::<serde_json::Value>(claims).unwrap()["jti"]
            .as_str()
            .unwrap()
            .to_owned();
        write(
            "security_event",
            &format!("accepted-{jti}"),
            &with_mode(0, set.as_bytes()),
        );
    }
    let harness_set = format!(
        r#"{{"iss":"https://fuzzing-transmitter.sessiongate.invalid","aud":"sessiongate","iat":{now},"jti":"h-1","sub_id":{{"format":"complex","user":{{"format":"iss_sub","iss":"https://idp.example.test","sub":"erin"}},"session":{{"format":"opaque","id":"sess-9"}}}},"events":{{"https://schemas.openid.net/secevent/caep/event-type/session-revoked":{{}},"https://schemas.openid.net/secevent/caep/event-type/device-compliance-change":{{"current_status":"not-compliant","previous_status":"compliant","event_timestamp":{later}}}}}}}"#,
        now = fuzzing::SET_NOW,
        later = fuzzing::SET_NOW + 3600,
    );
    write(
        "security_event",
        "accepted-harness-claims",
        &with_mode(1, harness_set.as_bytes()),
    );

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, json) in [
        (
            "accepted-envoy-1.40-mtls",
            root.join("tests/fixtures/envoy/check_request_mtls.json"),
        ),
        (
            "accepted-envoy-1.40-egress",
            root.join("../shared/fixtures/check_request_via_egress.json"),
        ),
    ] {
        let json = std::fs::read_to_string(&json).unwrap();
        write(
            "check_request",
            name,
            &check_request_bytes(&serde_json::from_str(&json).unwrap()),
        );
    }

    write(
        "config",
        "accepted-example",
        &std::fs::read(root.join("examples/sessiongate.yaml")).unwrap(),
    );
    write(
        "config",
        "unknown-key",
        b"listen:\n  grpc: 127.0.0.1:9191\n  grcp: 1\n",
    );

    // Revocation logs: [count, text length, text..., mode, mode's bytes...].
    write(
        "revocation_log",
        "accepted-crash-mid-append",
        &[&[3, 5][..], b"a\"b\xc3\xa9", &[0, 40, 0, 0, 0]].concat(),
    );
    write(
        "revocation_log",
        "accepted-crash-zero-filled",
        &[&[5, 0][..], &[2, 0, 0, 90, 0]].concat(),
    );
    write(
        "revocation_log",
        "flipped-bytes",
        &[&[4, 3][..], b"x\\y", &[1, 20, 0, 0x10, 200, 0, 0x01]].concat(),
    );
}

/// `header.payload.signature` with the fixture private key the header's `kid` names.
fn signed(header: &str, claims: &str) -> (String, String) {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{Algorithm, EncodingKey};

    let parsed: serde_json::Value = serde_json::from_str(header).unwrap();
    let kid = parsed["kid"].as_str().unwrap();
    let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys");
    let pem = |file: &str| std::fs::read(keys.join(file)).unwrap();
    let (algorithm, key) = match kid {
        "test-rs256" => (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&pem("rs256.pem")).unwrap(),
        ),
        "test-es256" => (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&pem("es256.pem")).unwrap(),
        ),
        "test-eddsa" => (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(&pem("eddsa.pem")).unwrap(),
        ),
        "transmitter-es256" => (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&pem("transmitter-es256.pem")).unwrap(),
        ),
        other => panic!("no fixture key {other}"),
    };
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, algorithm).unwrap();
    (kid.to_owned(), format!("{input}.{signature}"))
}

/// The protobuf bytes of a `CheckRequest` captured from Envoy as JSON (the fields sessiongate
/// reads, and the ones around them it must skip).
fn check_request_bytes(json: &serde_json::Value) -> Vec<u8> {
    use envoy_types::ext_authz::v3::pb::CheckRequest;
    use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address};
    use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
        HttpRequest, Peer, Request, TlsSession,
    };
    use prost::Message;
    use serde_json::Value;

    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let peer = |p: &Value| {
        Peer {
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: text(&p["address"]["socketAddress"]["address"]),
                port_specifier: p["address"]["socketAddress"]["portValue"].as_u64().map(
                    |port| {
                        envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(
                            port as u32,
                        )
                    },
                ),
                ..Default::default()
            })),
        }),
        principal: text(&p["principal"]),
        certificate: text(&p["certificate"]),
        ..Default::default()
    }
    };
    let attributes = &json["attributes"];
    let http = &attributes["request"]["http"];
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(peer(&attributes["source"])),
            destination: Some(peer(&attributes["destination"])),
            request: Some(Request {
                http: Some(HttpRequest {
                    id: text(&http["id"]),
                    method: text(&http["method"]),
                    headers: http["headers"]
                        .as_object()
                        .map(|h| h.iter().map(|(k, v)| (k.clone(), text(v))).collect())
                        .unwrap_or_default(),
                    path: text(&http["path"]),
                    host: text(&http["host"]),
                    scheme: text(&http["scheme"]),
                    protocol: text(&http["protocol"]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            context_extensions: [("sessiongate.policy".to_owned(), "admin".to_owned())].into(),
            tls_session: Some(TlsSession {
                sni: text(&attributes["tlsSession"]["sni"]),
            }),
            ..Default::default()
        }),
    }
    .encode_to_vec()
}
