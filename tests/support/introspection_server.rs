//! An identity provider's token introspection endpoint (RFC 7662), on `127.0.0.1:0`, that a
//! test can change, break and count.
//!
//! Serves `POST /introspect` with a form body `token=…`: it checks the client's HTTP Basic
//! credentials (RFC 6749 2.3.1; wrong ones get 401), and answers `{"active": true, …claims}`
//! for a token it issued ([`IntrospectionServer::issue`]) and `{"active": false}` for any other
//! or one it revoked ([`IntrospectionServer::revoke`]). It can be told to fail (503, like an
//! IdP down behind a load balancer), to hang (accept and never answer), or to answer only after
//! a delay (so concurrent checks of one token overlap). It can instead require a
//! `private_key_jwt` client assertion (RFC 7523), and sign its answers (RFC 9701) with the
//! fixture issuer key, or forge them with another. Every introspection request is counted,
//! so tests assert caching and single flight by call counts, not by timing.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

/// The issuer the endpoint speaks for (its answers' `iss`).
pub const OPAQUE_ISSUER: &str = "https://opaque-idp.sessiongate.test";
/// The client id and secret sessiongate authenticates with.
pub const CLIENT_ID: &str = "sessiongate";
pub const CLIENT_SECRET: &str = "s3cret:with/odd&chars";

/// How the endpoint behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Answer,
    /// 503 to every request.
    Fail,
    /// Accept the request, never answer.
    Hang,
    /// Answer after this delay.
    Slow(Duration),
}

/// How the endpoint expects sessiongate to authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with [`CLIENT_ID`] and [`CLIENT_SECRET`].
    SecretBasic,
    /// A JWT client assertion (RFC 7523) signed by the key of [`assertion_key_file`], checked
    /// against its public JWK; every `jti` once.
    PrivateKeyJwt,
    /// Mutual TLS (RFC 8705): the server of [`IntrospectionServer::start_mtls`] accepts only
    /// connections presenting a certificate of the test CA; the request names [`CLIENT_ID`].
    MutualTls,
}

/// How answers are signed, when sessiongate asks for `application/token-introspection+jwt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signing {
    /// Plain JSON whatever the client asks.
    Never,
    /// Signed with the fixture issuer's ES256 key (`kid` `test-es256`), as RFC 9701 says.
    Trusted,
    /// Signed with a key the issuer never published (a forgery).
    Untrusted,
}

/// The private key sessiongate signs its client assertions with (the fixture transmitter key,
/// ES256), and the public JWK set the endpoint checks them against.
pub fn assertion_key_file() -> std::path::PathBuf {
    super::tokens::keys_dir().join("transmitter-es256.pem")
}

struct State {
    issued: HashMap<String, Map<String, Value>>,
    revoked: HashSet<String>,
    mode: Mode,
    /// Introspection requests being answered now, and the most at once so far.
    in_flight: u64,
    max_in_flight: u64,
    client_auth: ClientAuth,
    signing: Signing,
    assertion_ids: HashSet<String>,
}

pub struct IntrospectionServer {
    pub addr: SocketAddr,
    tls: bool,
    state: Arc<Mutex<State>>,
    calls: Arc<AtomicU64>,
    refused_clients: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl IntrospectionServer {
    /// Serves plain HTTP in a background task of the current runtime.
    pub async fn start() -> IntrospectionServer {
        IntrospectionServer::serve(None).await
    }

    /// Serves HTTPS with the test PKI's `localhost` certificate, requiring a client certificate
    /// issued by the test CA ([`super::pki::Pki`]), and expects `tls_client_auth`.
    pub async fn start_mtls() -> IntrospectionServer {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let pki = super::pki::Pki::shared();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).expect("CA PEM"))
            .expect("CA certificate");
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&provider),
        )
        .build()
        .expect("client verifier");
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(pki.server.cert_pem.as_bytes()).expect("cert")],
                PrivateKeyDer::from_pem_slice(pki.server.key_pem.as_bytes()).expect("key"),
            )
            .expect("server TLS config");
        let server =
            IntrospectionServer::serve(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
                .await;
        server.set_client_auth(ClientAuth::MutualTls);
        server
    }

    async fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> IntrospectionServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind introspection server");
        let addr = listener.local_addr().expect("introspection server address");
        let tls_enabled = tls.is_some();
        let state = Arc::new(Mutex::new(State {
            issued: HashMap::new(),
            revoked: HashSet::new(),
            mode: Mode::Answer,
            in_flight: 0,
            max_in_flight: 0,
            client_auth: ClientAuth::SecretBasic,
            signing: Signing::Never,
            assertion_ids: HashSet::new(),
        }));
        let calls = Arc::new(AtomicU64::new(0));
        let refused_clients = Arc::new(AtomicU64::new(0));
        let (shared, counted, refused) = (
            Arc::clone(&state),
            Arc::clone(&calls),
            Arc::clone(&refused_clients),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (state, calls, refused) = (
                    Arc::clone(&shared),
                    Arc::clone(&counted),
                    Arc::clone(&refused),
                );
                let tls = tls.clone();
                tokio::spawn(async move {
                    let refusals = Arc::clone(&refused);
                    let service = service_fn(move |request| {
                        let (state, calls, refused) =
                            (Arc::clone(&state), Arc::clone(&calls), Arc::clone(&refused));
                        async move {
                            Ok::<_, Infallible>(answer(&state, &calls, &refused, request).await)
                        }
                    });
                    match tls {
                        None => {
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                        Some(tls) => {
                            // A client without a certificate of the test CA fails here.
                            let Ok(stream) = tls.accept(stream).await else {
                                refusals.fetch_add(1, Ordering::SeqCst);
                                return;
                            };
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        IntrospectionServer {
            addr,
            tls: tls_enabled,
            state,
            calls,
            refused_clients,
            task,
        }
    }

    /// The endpoint URL (`https://localhost:…` for [`IntrospectionServer::start_mtls`]).
    pub fn endpoint(&self) -> String {
        if self.tls {
            format!("https://localhost:{}/introspect", self.addr.port())
        } else {
            format!("http://{}/introspect", self.addr)
        }
    }

    /// Issues a fresh opaque token (random, 32 bytes base64url) whose introspection answer
    /// carries `claims` beside `active: true` and `iss`; returns it.
    pub fn issue(&self, claims: Value) -> String {
        let token = opaque_token();
        let mut answer = match claims {
            Value::Object(map) => map,
            _ => panic!("claims must be an object"),
        };
        answer.insert("active".into(), json!(true));
        answer
            .entry("iss".to_owned())
            .or_insert(json!(OPAQUE_ISSUER));
        self.state
            .lock()
            .unwrap()
            .issued
            .insert(token.clone(), answer);
        token
    }

    /// From now on, `token` is inactive.
    pub fn revoke(&self, token: &str) {
        self.state.lock().unwrap().revoked.insert(token.to_owned());
    }

    pub fn set_client_auth(&self, client_auth: ClientAuth) {
        self.state.lock().unwrap().client_auth = client_auth;
    }

    pub fn set_signing(&self, signing: Signing) {
        self.state.lock().unwrap().signing = signing;
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    /// Introspection requests that reached the endpoint with valid client credentials.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// The most introspection requests that were being answered at once.
    pub fn max_in_flight(&self) -> u64 {
        self.state.lock().unwrap().max_in_flight
    }

    /// Requests refused for bad or missing client credentials.
    pub fn refused_clients(&self) -> u64 {
        self.refused_clients.load(Ordering::SeqCst)
    }
}

impl Drop for IntrospectionServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A random opaque token, as an authorization server would issue it.
pub fn opaque_token() -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let bytes: [u8; 32] = std::array::from_fn(|_| rand_byte());
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rand_byte() -> u8 {
    use std::hash::{BuildHasher, RandomState};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    (RandomState::new().hash_one(n) & 0xff) as u8
}

async fn answer(
    state: &Mutex<State>,
    calls: &AtomicU64,
    refused: &AtomicU64,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if request.method() != hyper::Method::POST || request.uri().path() != "/introspect" {
        return respond(StatusCode::NOT_FOUND, json!({"error": "not_found"}));
    }
    let expected = format!(
        "Basic {}",
        STANDARD.encode(format!(
            "{}:{}",
            form_encode(CLIENT_ID),
            form_encode(CLIENT_SECRET)
        ))
    );
    let basic = request
        .headers()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        == Some(expected.as_str());
    let wants_jwt = request
        .headers()
        .get("accept")
        .and_then(|value| value.to_str().ok())
        == Some("application/token-introspection+jwt");
    let form_typed = request
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        == Some("application/x-www-form-urlencoded");
    let body = request
        .into_body()
        .collect()
        .await
        .map(|body| body.to_bytes())
        .unwrap_or_default();
    let client_auth = state.lock().unwrap().client_auth;
    let authorized = match client_auth {
        ClientAuth::SecretBasic => basic,
        ClientAuth::PrivateKeyJwt => assertion_is_valid(state, &body),
        ClientAuth::MutualTls => form_field(&body, "client_id").as_deref() == Some(CLIENT_ID),
    };
    if !authorized {
        refused.fetch_add(1, Ordering::SeqCst);
        return respond(StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"}));
    }
    let Some(token) = form_field(&body, "token").filter(|_| form_typed) else {
        return respond(StatusCode::BAD_REQUEST, json!({"error": "invalid_request"}));
    };
    calls.fetch_add(1, Ordering::SeqCst);
    let mode = {
        let mut state = state.lock().unwrap();
        state.in_flight += 1;
        state.max_in_flight = state.max_in_flight.max(state.in_flight);
        state.mode
    };
    let response = respond_as(state, token, wants_jwt, mode).await;
    state.lock().unwrap().in_flight -= 1;
    response
}

/// The answer about `token` in `mode` (signed when asked for and configured).
async fn respond_as(
    state: &Mutex<State>,
    token: String,
    wants_jwt: bool,
    mode: Mode,
) -> Response<Full<Bytes>> {
    match mode {
        Mode::Answer => {}
        Mode::Fail => {
            return respond(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "temporarily_unavailable"}),
            );
        }
        Mode::Hang => std::future::pending::<()>().await,
        Mode::Slow(delay) => tokio::time::sleep(delay).await,
    }
    let state = state.lock().unwrap();
    let answer = match state.issued.get(&token) {
        Some(claims) if !state.revoked.contains(&token) => Value::Object(claims.clone()),
        _ => json!({"active": false}),
    };
    let key_file = match state.signing {
        Signing::Trusted if wants_jwt => "es256.pem",
        Signing::Untrusted if wants_jwt => "untrusted-es256.pem",
        _ => return respond(StatusCode::OK, answer),
    };
    // RFC 9701 section 5: the answer inside a JWT naming the issuer and the client.
    let envelope = json!({"iss": OPAQUE_ISSUER, "aud": CLIENT_ID,
                          "iat": super::tokens::now(), "token_introspection": answer});
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("test-es256".into());
    header.typ = Some("token-introspection+jwt".into());
    let pem = std::fs::read(super::tokens::keys_dir().join(key_file)).expect("fixture key");
    let key = jsonwebtoken::EncodingKey::from_ec_pem(&pem).expect("fixture EC key");
    let jwt = jsonwebtoken::encode(&header, &envelope, &key).expect("sign the answer");
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/token-introspection+jwt")
        .body(Full::new(Bytes::from(jwt)))
        .expect("valid response")
}

/// A `private_key_jwt` request: `client_id`, the assertion type, and an assertion signed by the
/// client's key, for this client, to this issuer, unexpired, its `jti` never seen before.
fn assertion_is_valid(state: &Mutex<State>, body: &[u8]) -> bool {
    let field = |name| form_field(body, name);
    if field("client_id").as_deref() != Some(CLIENT_ID)
        || field("client_assertion_type").as_deref()
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    {
        return false;
    }
    let Some(assertion) = field("client_assertion") else {
        return false;
    };
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(
        &std::fs::read(super::tokens::keys_dir().join("transmitter-jwks.json"))
            .expect("fixture transmitter JWKS"),
    )
    .expect("a JWK set");
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwks.keys[0]).expect("a public key");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[OPAQUE_ISSUER]);
    validation.set_issuer(&[CLIENT_ID]);
    validation.sub = Some(CLIENT_ID.into());
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    let Ok(decoded) = jsonwebtoken::decode::<Value>(&assertion, &key, &validation) else {
        return false;
    };
    let Some(jti) = decoded.claims["jti"].as_str() else {
        return false;
    };
    state.lock().unwrap().assertion_ids.insert(jti.to_owned())
}

/// `application/x-www-form-urlencoded` encoding (RFC 6749 appendix B).
fn form_encode(text: &str) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                encoded.push(byte as char)
            }
            b' ' => encoded.push('+'),
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}

/// The value of `name` in a form body, decoded.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let body = std::str::from_utf8(body).ok()?;
    body.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| form_decode(value))?
    })
}

fn form_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::new();
    let mut input = text.bytes();
    while let Some(byte) = input.next() {
        match byte {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = [input.next()?, input.next()?];
                bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            _ => bytes.push(byte),
        }
    }
    String::from_utf8(bytes).ok()
}

fn respond(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid response")
}
