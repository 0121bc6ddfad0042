//! `Check` over real gRPC against the in-process server: what Envoy would receive, including the
//! cases Envoy itself cannot produce (a request without HTTP attributes).

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
        let listener = app::bind(loaded.grpc_listen).await.unwrap();
        let address = listener.local_addr().unwrap();
        let gate = app::build_gate(loaded).await.unwrap();
        let (stop, stop_rx) = oneshot::channel();
        let stopped = tokio::spawn(app::serve(listener, gate, async {
            let _ = stop_rx.await;
        }));
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
