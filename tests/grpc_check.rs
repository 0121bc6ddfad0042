//! `Check` over real gRPC against the in-process server (started by `app::run`, as the binary
//! starts it): what Envoy would receive, including the cases Envoy itself cannot produce (a
//! request without HTTP attributes).

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;

use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use sessiongate::{app, config};
use support::policy::sessiongate_yaml;
use support::tokens::{self, token};
use tokio::sync::oneshot;

const FRONTEND: &str = "spiffe://cluster.local/ns/shop/sa/frontend";

/// A server on 127.0.0.1:0 that stops when dropped.
struct Server {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    stopped: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(tokens::jwks_path(), dir.path().join("jwks.json")).unwrap();
        let file = dir.path().join("sessiongate.yaml");
        std::fs::write(&file, sessiongate_yaml(None)).unwrap();
        let loaded = config::load(&file).unwrap();
        let listeners = app::Listeners::bind(&loaded).await.unwrap();
        let address = listeners.grpc_addr();
        let (stop, stop_rx) = oneshot::channel();
        let stopped = tokio::spawn(app::run(loaded, listeners, None, async {
            let _ = stop_rx.await;
        }));
        // The port accepts once keys and revocations are loaded (until then it is bound, not
        // listening): that is the event a check can be sent after.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while tokio::net::TcpStream::connect(address).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "never listening");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Server {
            address,
            stop: Some(stop),
            stopped: Some(stopped),
            _dir: dir,
        }
    }

    async fn client(&self) -> AuthorizationClient<tonic::transport::Channel> {
        AuthorizationClient::connect(format!("http://{}", self.address))
            .await
            .unwrap()
    }

    async fn check(&self, request: CheckRequest) -> CheckResponse {
        self.client()
            .await
            .check(request)
            .await
            .expect("Check never fails as a call")
            .into_inner()
    }

    /// Stops the server and waits for it to exit.
    async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.take().unwrap().send(()).unwrap();
        self.stopped.take().unwrap().await.unwrap()
    }
}

/// A CheckRequest as Envoy 1.40 sends it for an mTLS client (see tests/fixtures/envoy/).
fn check_request(method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let mut all: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.insert(":path".into(), path.into());
    all.insert(":method".into(), method.into());
    all.insert(":authority".into(), "localhost:18443".into());
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        address: "127.0.0.1".into(),
                        ..Default::default()
                    })),
                }),
                principal: FRONTEND.into(),
                ..Default::default()
            }),
            request: Some(Request {
                http: Some(HttpRequest {
                    method: method.into(),
                    path: path.into(),
                    host: "localhost:18443".into(),
                    headers: all,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fn denied(response: &CheckResponse) -> (i32, u32, String, serde_json::Value) {
    let status = response.status.as_ref().expect("status is always set").code;
    let Some(HttpResponse::DeniedResponse(denied)) = &response.http_response else {
        panic!("expected a denied response, got {response:?}");
    };
    let www_authenticate = denied
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .find(|h| h.key == "www-authenticate")
        .map(|h| h.value.clone())
        .unwrap_or_default();
    let body = serde_json::from_str(&denied.body).expect("JSON body");
    (
        status,
        denied.status.as_ref().unwrap().code as u32,
        www_authenticate,
        body,
    )
}

#[tokio::test]
async fn a_request_without_http_attributes_is_a_400_denial_not_an_error() {
    let server = Server::start().await;
    let response = server.check(CheckRequest::default()).await;
    let (grpc, http, _, body) = denied(&response);
    assert_eq!(grpc, 3, "INVALID_ARGUMENT");
    assert_eq!(http, 400);
    assert_eq!(body["reason"], "bad_request");
}

#[tokio::test]
async fn a_denial_sets_a_non_ok_status_and_an_explicit_denied_response() {
    let server = Server::start().await;
    let response = server.check(check_request("GET", "/orders/1", &[])).await;
    let (grpc, http, challenge, body) = denied(&response);
    assert_eq!(grpc, 16, "UNAUTHENTICATED");
    assert_eq!(http, 401);
    assert_eq!(challenge, r#"Bearer realm="sessiongate""#);
    assert_eq!(body["reason"], "missing_token");

    let response = server.check(check_request("GET", "/nowhere", &[])).await;
    let (grpc, http, _, body) = denied(&response);
    assert_eq!(grpc, 7, "PERMISSION_DENIED");
    assert_eq!(http, 403);
    assert_eq!(body["reason"], "no_route");
}

#[tokio::test]
#[allow(deprecated)] // `append` is the flag Envoy 1.40 honours on ok responses.
async fn an_allow_overwrites_identity_headers_and_removes_spoofed_ones() {
    let server = Server::start().await;
    let jwt = token().scope("orders:read orders:list").sign();
    let bearer = format!("Bearer {jwt}");
    let request = check_request(
        "GET",
        "/orders/42?verbose=1",
        &[
            ("authorization", &bearer),
            ("x-sessiongate-subject", "mallory"),
            ("x-sessiongate-role", "admin"),
        ],
    );
    let response = server.check(request).await;
    assert_eq!(response.status.as_ref().unwrap().code, 0);
    let Some(HttpResponse::OkResponse(ok)) = &response.http_response else {
        panic!("{response:?}")
    };
    let set: HashMap<&str, (&str, Option<bool>)> = ok
        .headers
        .iter()
        .map(|h| {
            let header = h.header.as_ref().unwrap();
            (
                header.key.as_str(),
                (header.value.as_str(), h.append.as_ref().map(|a| a.value)),
            )
        })
        .collect();
    assert_eq!(set["x-sessiongate-subject"], ("alice", Some(false)));
    assert_eq!(
        set["x-sessiongate-scopes"],
        ("orders:read orders:list", Some(false))
    );
    assert_eq!(set["x-sessiongate-workload"], (FRONTEND, Some(false)));
    let (session, append) = set["x-sessiongate-session"];
    assert_eq!(append, Some(false));
    assert_eq!(session.len(), 16);
    assert!(!jwt.contains(session));
    assert_eq!(ok.headers_to_remove, vec!["x-sessiongate-role".to_owned()]);
}

#[tokio::test]
async fn every_request_is_judged_even_for_a_cached_session() {
    let server = Server::start().await;
    let bearer = format!("Bearer {}", token().scope("orders:read").sign());
    let read = server
        .check(check_request(
            "GET",
            "/orders/1",
            &[("authorization", &bearer)],
        ))
        .await;
    assert_eq!(read.status.unwrap().code, 0);
    let write = server
        .check(check_request(
            "POST",
            "/orders",
            &[("authorization", &bearer)],
        ))
        .await;
    let (_, http, challenge, body) = denied(&write);
    assert_eq!(http, 403);
    assert_eq!(body["reason"], "insufficient_scope");
    assert_eq!(
        challenge,
        r#"Bearer error="insufficient_scope", scope="orders:write""#
    );
}

#[tokio::test]
async fn the_server_stops_cleanly_on_request() {
    let server = Server::start().await;
    let address = server.address;
    server.stop().await.expect("clean stop");
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "listener closed"
    );
}

// ----- an answer to every call -------------------------------------------------------------
//
// Whatever reaches the Check method gets a CheckResponse (gRPC OK carrying the decision), never
// a failed call: Envoy applies `failure_mode_allow` to failed calls, and an operator who set it
// would let these requests through. These cases need bytes a typed client cannot send, so they
// go over a plain HTTP/2 connection.

/// What came back for a raw call: the gRPC status and, when there was one, the CheckResponse.
#[derive(Debug)]
struct RawAnswer {
    grpc_status: Option<String>,
    response: Option<CheckResponse>,
}

/// Sends `body` as the whole request body of a `Check` call over a new HTTP/2 connection,
/// adding `headers` to the usual gRPC ones.
async fn raw_check(address: SocketAddr, body: Vec<u8>, headers: &[(&str, &str)]) -> RawAnswer {
    use http_body_util::{BodyExt as _, Full};
    use prost::Message as _;

    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let mut request = hyper::Request::post(format!(
        "http://{address}/envoy.service.auth.v3.Authorization/Check"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(hyper::body::Bytes::from(body)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200, "gRPC answers are HTTP 200");
    let head = response.headers().clone();
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let field = |name: &str| {
        trailers
            .get(name)
            .or_else(|| head.get(name))
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let bytes = collected.to_bytes();
    let response = (bytes.len() >= 5).then(|| {
        let length = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
        assert_eq!(bytes.len(), 5 + length, "one whole message");
        CheckResponse::decode(&bytes[5..]).unwrap()
    });
    RawAnswer {
        grpc_status: field("grpc-status"),
        response,
    }
}

/// `message` framed as one uncompressed gRPC message.
fn framed(message: &[u8]) -> Vec<u8> {
    let mut body = vec![0];
    body.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    body.extend_from_slice(message);
    body
}

/// `encoded` with every occurrence of `from` replaced by `to` (same length, so every length
/// prefix stays right): how invalid UTF-8 gets into a protobuf `string` field.
fn replaced(encoded: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at: Vec<usize> = encoded
        .windows(from.len())
        .enumerate()
        .filter(|(_, window)| *window == from)
        .map(|(at, _)| at)
        .collect();
    assert!(!at.is_empty(), "nothing to replace");
    let mut out = encoded.to_vec();
    for at in at {
        out[at..at + to.len()].copy_from_slice(to);
    }
    out
}

/// The answer is a gRPC OK carrying a denial with this HTTP status, reason, and a description
/// containing `description`.
fn assert_answered(answer: &RawAnswer, http: u32, reason: &str, description: &str) {
    assert_eq!(
        answer.grpc_status.as_deref(),
        Some("0"),
        "the call itself succeeds: {answer:?}"
    );
    let response = answer.response.as_ref().expect("a CheckResponse");
    let (_, status, _, body) = denied(response);
    assert_eq!(status, http, "{body}");
    assert_eq!(body["reason"], reason, "{body}");
    let text = body["error_description"].as_str().unwrap();
    assert!(
        text.contains(description),
        "description {text:?} should contain {description:?}"
    );
}

/// A token-less CheckRequest carrying a 1.5 MB body, as Envoy's `with_request_body` adds it
/// (`attributes.request.http.body`).
fn oversized_check_request() -> Vec<u8> {
    use prost::Message as _;
    let mut check = check_request("POST", "/orders", &[]);
    let http = check
        .attributes
        .as_mut()
        .unwrap()
        .request
        .as_mut()
        .unwrap()
        .http
        .as_mut()
        .unwrap();
    http.body = "a".repeat(1_500_000);
    check.encode_to_vec()
}

#[tokio::test]
async fn an_oversized_check_request_is_a_400_answer_not_a_failed_call() {
    let server = Server::start().await;
    let message = oversized_check_request();
    let answer = raw_check(server.address, framed(&message), &[]).await;
    assert_answered(
        &answer,
        400,
        "bad_request",
        &format!(
            "CheckRequest of {} bytes exceeds limits.max_check_request_bytes (1048576)",
            message.len()
        ),
    );
    // The connection still serves the next check.
    let response = server.check(check_request("GET", "/healthz", &[])).await;
    assert_eq!(response.status.unwrap().code, 0);
}

#[tokio::test]
async fn non_utf8_in_a_field_sessiongate_does_not_read_is_judged_normally() {
    use prost::Message as _;
    let server = Server::start().await;
    let bearer = format!("Bearer {}", token().scope("orders:read").sign());
    let mut check = check_request(
        "GET",
        "/orders/1",
        &[("authorization", &bearer), ("user-agent", "caf\u{e9}")],
    );
    check
        .attributes
        .as_mut()
        .unwrap()
        .request
        .as_mut()
        .unwrap()
        .http
        .as_mut()
        .unwrap()
        .protocol = "HTTP/\u{e9}".into();
    // `é` is C3 A9 in UTF-8; C3 C3 is no UTF-8 at all (Latin-1 bytes, as an HTTP/1 client may
    // send them in a header value, which Envoy passes on as they are).
    let message = replaced(
        &check.encode_to_vec(),
        "caf\u{e9}".as_bytes(),
        b"caf\xc3\xc3",
    );
    let message = replaced(&message, "HTTP/\u{e9}".as_bytes(), b"HTTP/\xe9\xe9");
    let answer = raw_check(server.address, framed(&message), &[]).await;
    assert_eq!(answer.grpc_status.as_deref(), Some("0"), "{answer:?}");
    let response = answer.response.expect("a CheckResponse");
    assert_eq!(response.status.unwrap().code, 0, "allowed");
    assert!(matches!(
        response.http_response,
        Some(HttpResponse::OkResponse(_))
    ));
}

#[tokio::test]
async fn non_utf8_in_a_field_sessiongate_reads_is_a_400_answer() {
    use prost::Message as _;
    let server = Server::start().await;
    let bearer = format!("Bearer {}", token().scope("orders:read").sign());
    let check = check_request("GET", "/orders/1", &[("authorization", &bearer)]);
    let encoded = check.encode_to_vec();

    // The credential: no token68 credential has a byte outside ASCII.
    let tail = &bearer.as_bytes()[bearer.len() - 16..];
    let mut broken = tail.to_vec();
    broken[14..].copy_from_slice(b"\xff\xfe");
    let message = replaced(&encoded, tail, &broken);
    let answer = raw_check(server.address, framed(&message), &[]).await;
    assert_answered(
        &answer,
        400,
        "bad_request",
        "authorization header is not UTF-8",
    );

    // The path routes the request: an unreadable one cannot be routed.
    let message = replaced(&encoded, b"/orders/1", b"/orders/\xff");
    let answer = raw_check(server.address, framed(&message), &[]).await;
    assert_answered(
        &answer,
        400,
        "bad_request",
        "request.http.path is not UTF-8",
    );
}

#[tokio::test]
async fn bytes_that_are_not_a_check_request_are_a_400_answer() {
    let server = Server::start().await;
    // A field number 0 (tag byte 0x00) is never valid protobuf.
    let answer = raw_check(server.address, framed(b"\x00\x01garbage"), &[]).await;
    assert_answered(&answer, 400, "bad_request", "not a protobuf CheckRequest");

    // A body that is not even one whole gRPC message.
    let answer = raw_check(server.address, b"\x00\x00\x00".to_vec(), &[]).await;
    assert_answered(&answer, 400, "bad_request", "gRPC message");

    // No message at all.
    let answer = raw_check(server.address, Vec::new(), &[]).await;
    assert_answered(&answer, 400, "bad_request", "no CheckRequest");
}

#[tokio::test]
async fn a_compressed_check_request_is_a_400_answer() {
    let server = Server::start().await;
    // The compressed flag set, with gzip named as the encoding: sessiongate decompresses
    // nothing (Envoy never compresses ext_authz calls).
    let mut body = framed(b"\x1f\x8b\x08\x00");
    body[0] = 1;
    let answer = raw_check(server.address, body, &[("grpc-encoding", "gzip")]).await;
    assert_answered(&answer, 400, "bad_request", "compressed");
}
