//! What the benchmarks share: the example deployment's keys, certificate and policy, realistic
//! tokens, and the `CheckRequest` Envoy 1.40 sends for them.
//!
//! Used by `benches/hot_path.rs` and, through `#[path]`, by the load generator
//! (`examples/load.rs`) and the memory measurement (`examples/session_memory.rs`), so every
//! figure in BENCHMARKS.md is taken with the same token shape and the same client certificate.
//! Everything comes from `examples/` (demo keys and certificates, never production material).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address, socket_address};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use serde_json::json;

/// The example issuer (`examples/sessiongate.yaml`, keys in `examples/keys/`).
pub const ISSUER: &str = "https://idp.example.test";
/// The example audience.
pub const AUDIENCE: &str = "shop-api";
/// The SPIFFE ID in `examples/certs/frontend.pem`, as Envoy reports it in `source.principal`.
pub const FRONTEND: &str = "spiffe://cluster.local/ns/shop/sa/frontend";
/// The scopes every benchmark token carries; `orders-read` needs `orders:read`.
pub const SCOPES: &str = "orders:read orders:write profile";

/// `<repo>/examples`.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// The signing algorithms the benchmarks cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alg {
    Rs256,
    Es256,
    EdDsa,
}

impl Alg {
    pub const ALL: [Alg; 3] = [Alg::Rs256, Alg::Es256, Alg::EdDsa];

    pub fn parse(text: &str) -> Option<Alg> {
        match text.to_ascii_uppercase().as_str() {
            "RS256" => Some(Alg::Rs256),
            "ES256" => Some(Alg::Es256),
            "EDDSA" => Some(Alg::EdDsa),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
        }
    }

    pub fn jwt(self) -> Algorithm {
        match self {
            Alg::Rs256 => Algorithm::RS256,
            Alg::Es256 => Algorithm::ES256,
            Alg::EdDsa => Algorithm::EdDSA,
        }
    }

    /// The kid `examples/jwks.json` publishes this algorithm's key under.
    /// The algorithm as sessiongate names it.
    pub fn signing(self) -> sessiongate_token::SigningAlgorithm {
        use sessiongate_token::SigningAlgorithm;
        match self {
            Alg::Rs256 => SigningAlgorithm::Rs256,
            Alg::Es256 => SigningAlgorithm::Es256,
            Alg::EdDsa => SigningAlgorithm::EdDsa,
        }
    }

    /// The crypto library's own view of this algorithm's example key and a signature of it:
    /// the parsed key (as sessiongate keeps it), the signed message and the signature bytes,
    /// so a benchmark can time the library alone.
    pub fn raw_verification(
        self,
        token: &str,
    ) -> (
        std::sync::Arc<sessiongate_token::VerificationKey>,
        String,
        Vec<u8>,
    ) {
        let jwks = std::fs::read(examples_dir().join("jwks.json")).expect("example JWKS");
        let keys = sessiongate_token::KeySet::from_jwks_json(&jwks)
            .expect("example JWKS")
            .keys;
        let key = keys
            .find(Some(self.kid()), self.signing())
            .expect("the example key of this algorithm")
            .clone();
        let (message, signature) = token.rsplit_once('.').expect("a compact JWS");
        let signature =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, signature)
                .expect("base64url signature");
        (key, message.to_owned(), signature)
    }

    pub fn kid(self) -> &'static str {
        match self {
            Alg::Rs256 => "example-rs256",
            Alg::Es256 => "example-es256",
            Alg::EdDsa => "example-eddsa",
        }
    }

    fn key_file(self) -> &'static str {
        match self {
            Alg::Rs256 => "rs256.pem",
            Alg::Es256 => "es256.pem",
            Alg::EdDsa => "eddsa.pem",
        }
    }
}

/// Signs tokens with the example keys, each key parsed once.
pub struct Minter {
    keys: HashMap<Alg, EncodingKey>,
}

impl Default for Minter {
    fn default() -> Self {
        Minter::new()
    }
}

impl Minter {
    pub fn new() -> Minter {
        let keys = Alg::ALL
            .into_iter()
            .map(|alg| {
                let path = examples_dir().join("keys").join(alg.key_file());
                let pem =
                    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
                let key = match alg {
                    Alg::Rs256 => EncodingKey::from_rsa_pem(&pem),
                    Alg::Es256 => EncodingKey::from_ec_pem(&pem),
                    Alg::EdDsa => EncodingKey::from_ed_pem(&pem),
                }
                .unwrap_or_else(|e| panic!("load {}: {e}", path.display()));
                (alg, key)
            })
            .collect();
        Minter { keys }
    }

    /// A realistic access token for session number `n`: RFC 9068 claims, an OIDC `sid`, an
    /// email and the frontend's `client_id`, valid for 10 minutes from now. About 600 bytes
    /// for ES256, like a typical IdP's access token.
    pub fn token(&self, alg: Alg, n: u64) -> String {
        self.token_with(alg, n, json!({}))
    }

    /// [`Minter::token`] with the members of `extra` added (e.g. `{"cnf": {"jkt": …}}`).
    pub fn token_with(&self, alg: Alg, n: u64, extra: serde_json::Value) -> String {
        let now = unix_now();
        let mut claims = json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": format!("user-{n:08}@example.com"),
            "iat": now,
            "exp": now + 600,
            "auth_time": now - 60,
            "jti": format!("bench-{}-{n:016x}", std::process::id()),
            "sid": format!("sid-{n:016x}"),
            "email": format!("user-{n:08}@example.com"),
            "client_id": FRONTEND,
            "scope": SCOPES,
        });
        if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
            claims.extend(extra.clone());
        }
        let mut header = Header::new(alg.jwt());
        header.kid = Some(alg.kid().into());
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&header, &claims, &self.keys[&alg]).expect("sign token")
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A sessiongate config for the benchmarks: the example policy (idle timeout, auth age, pinning,
/// binding claim, four routes), listening on `grpc`, caching up to `cache_capacity` sessions.
/// Expects `jwks.json` beside it (see [`write_config`]).
pub fn config_yaml(grpc: &str, http: &str, cache_capacity: u64) -> String {
    let example = std::fs::read_to_string(examples_dir().join("sessiongate.yaml"))
        .expect("read examples/sessiongate.yaml");
    example
        .replace("grpc: \"127.0.0.1:9191\"", &format!("grpc: \"{grpc}\""))
        .replace("http: \"127.0.0.1:9192\"", &format!("http: \"{http}\""))
        .replace(
            "cache_capacity: 100000",
            &format!("cache_capacity: {cache_capacity}"),
        )
        // Benchmarks measure how fast new tokens are verified, not the budget that bounds
        // them for an attacker.
        .replace("per_caller: 500 ", "per_caller: 10000000 ")
        .replace("per_caller_burst: 1000", "per_caller_burst: 10000000")
        .replace("total: 5000 ", "total: 10000000 ")
        .replace("total_burst: 10000", "total_burst: 10000000")
}

/// Writes [`config_yaml`] and the example JWKS into `dir`; returns the config's path.
pub fn write_config(dir: &Path, grpc: &str, http: &str, cache_capacity: u64) -> PathBuf {
    std::fs::copy(examples_dir().join("jwks.json"), dir.join("jwks.json")).expect("copy JWKS");
    let path = dir.join("sessiongate.yaml");
    std::fs::write(&path, config_yaml(grpc, http, cache_capacity)).expect("write config");
    path
}

/// What Envoy leaves unescaped when it URL-encodes the peer certificate.
const ENVOY_CERT_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `examples/certs/frontend.pem` as Envoy sends it in `source.certificate` (URL-encoded PEM).
pub fn frontend_certificate() -> String {
    let pem = std::fs::read_to_string(examples_dir().join("certs/frontend.pem"))
        .expect("read examples/certs/frontend.pem");
    percent_encoding::utf8_percent_encode(&pem, ENVOY_CERT_ESCAPES).to_string()
}

/// The `CheckRequest` Envoy 1.40's ext_authz filter sends for `GET /orders/42` from the
/// frontend workload over mTLS with `include_peer_certificate: true`: a dozen headers, the
/// peer's principal and URL-encoded certificate, addresses.
pub fn check_request(authorization: &str, certificate: &str) -> CheckRequest {
    let socket = |port: u32| Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: "127.0.0.1".into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    };
    let headers: HashMap<String, String> = [
        (":authority", "localhost:10443"),
        (":method", "GET"),
        (":path", "/orders/42"),
        (":scheme", "https"),
        ("accept", "application/json"),
        ("user-agent", "shop-frontend/1.4 (reqwest)"),
        ("x-forwarded-proto", "https"),
        ("x-request-id", "0d0c6c55-58b3-4c5e-9d52-7f6f4b4fd0a1"),
        ("x-envoy-expected-rq-timeout-ms", "15000"),
        ("authorization", authorization),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(socket(51234)),
                principal: FRONTEND.into(),
                certificate: certificate.into(),
                ..Default::default()
            }),
            destination: Some(Peer {
                address: Some(socket(10443)),
                principal: "localhost".into(),
                ..Default::default()
            }),
            request: Some(Request {
                http: Some(HttpRequest {
                    id: "12139178244151924406".into(),
                    method: "GET".into(),
                    headers,
                    path: "/orders/42".into(),
                    host: "localhost:10443".into(),
                    scheme: "https".into(),
                    protocol: "HTTP/1.1".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// `check` as sessiongate's server decodes it (the fields it reads, [`sessiongate::envoy::wire`]).
pub fn lean(check: &CheckRequest) -> sessiongate::envoy::wire::CheckRequest {
    prost::Message::decode(prost::bytes::Bytes::from(prost::Message::encode_to_vec(
        check,
    )))
    .unwrap()
}

/// Judges `check` and settles a fresh session's pin the way the local pin store does (the first
/// workload wins, in the session itself), asserting the request was allowed.
pub fn allow_and_pin(gate: &sessiongate_check::gate::Gate, check: &CheckRequest) {
    let check = &lean(check);
    let http = sessiongate::envoy::request::http_request(check).unwrap();
    let facts = sessiongate::envoy::request::facts(check, http).unwrap();
    let now = sessiongate_core::time::UnixTime::now();
    let outcome = gate.check(&facts, now);
    let outcome = match outcome.pin.clone() {
        Some(claim) => {
            let session = &outcome.session.as_ref().unwrap().1;
            let owner = session.pin(claim.identity).clone();
            gate.settle_pin(outcome, Ok(owner), now)
        }
        None => outcome,
    };
    assert!(outcome.verdict.is_ok(), "{:?}", outcome.verdict);
}
