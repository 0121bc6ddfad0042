//! An identity provider's key endpoints, on `127.0.0.1:0`, that a test can change and break.
//!
//! Serves `/jwks` (the JWKS, with an optional `Cache-Control`) and
//! `/.well-known/openid-configuration` (discovery metadata naming this server as the issuer and
//! `/jwks` as `jwks_uri`). [`JwksServer::set_keys`] publishes another subset of the fixture
//! keys; [`JwksServer::set_down`] makes every endpoint answer 503, like an unreachable IdP
//! behind a load balancer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::tokens;

struct State {
    jwks: String,
    cache_control: Option<String>,
    down: bool,
    jwks_requests: u64,
}

pub struct JwksServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

/// The fixture JWKS restricted to the keys named by `kids`.
pub fn fixture_jwks(kids: &[&str]) -> String {
    let mut document: Value =
        serde_json::from_slice(&std::fs::read(tokens::jwks_path()).expect("read fixture JWKS"))
            .expect("fixture JWKS is JSON");
    document["keys"]
        .as_array_mut()
        .expect("keys array")
        .retain(|key| kids.contains(&key["kid"].as_str().unwrap_or_default()));
    assert_eq!(
        document["keys"].as_array().map(Vec::len),
        Some(kids.len()),
        "unknown fixture kid in {kids:?}"
    );
    document.to_string()
}

impl JwksServer {
    /// Serves the fixture keys named by `kids` in a background task of the current runtime.
    pub async fn start(kids: &[&str]) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind JWKS server");
        let addr = listener.local_addr().expect("JWKS server address");
        let state = Arc::new(Mutex::new(State {
            jwks: fixture_jwks(kids),
            cache_control: None,
            down: false,
            jwks_requests: 0,
        }));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(answer(&state, addr, &request)) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        JwksServer { addr, state, task }
    }

    /// `http://127.0.0.1:<port>`: the issuer, for discovery.
    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The JWKS URL.
    pub fn jwks_uri(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    /// Publishes the fixture keys named by `kids` from now on.
    /// The issuer's key lines of a sessiongate config taking its keys from this server, with
    /// `refresh` as its `keys_refresh` (for [`super::policy::with_first_issuer_keys`]).
    pub fn issuer_keys_yaml(&self, refresh: &str) -> String {
        format!(
            "    jwks_uri: \"{}\"\n    keys_refresh: {{ {refresh} }}\n",
            self.jwks_uri()
        )
    }

    pub fn set_keys(&self, kids: &[&str]) {
        self.state.lock().unwrap().jwks = fixture_jwks(kids);
    }

    /// Sends this `Cache-Control` with the JWKS (or none).
    pub fn set_cache_control(&self, value: Option<&str>) {
        self.state.lock().unwrap().cache_control = value.map(str::to_owned);
    }

    /// Answers 503 to everything while `down`.
    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    /// How many JWKS requests arrived so far.
    pub fn jwks_requests(&self) -> u64 {
        self.state.lock().unwrap().jwks_requests
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(
    state: &Mutex<State>,
    addr: SocketAddr,
    request: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let mut state = state.lock().unwrap();
    if state.down {
        return respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "down for maintenance".into(),
            None,
        );
    }
    match request.uri().path() {
        "/jwks" => {
            state.jwks_requests += 1;
            respond(
                StatusCode::OK,
                state.jwks.clone(),
                state.cache_control.clone(),
            )
        }
        "/.well-known/openid-configuration" => {
            let issuer = format!("http://{addr}");
            let metadata = json!({
                "issuer": issuer,
                "jwks_uri": format!("{issuer}/jwks"),
                "response_types_supported": ["code"],
            });
            respond(StatusCode::OK, metadata.to_string(), None)
        }
        _ => respond(StatusCode::NOT_FOUND, "not found".into(), None),
    }
}

fn respond(
    status: StatusCode,
    body: String,
    cache_control: Option<String>,
) -> Response<Full<Bytes>> {
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if let Some(value) = cache_control {
        response = response.header("cache-control", value);
    }
    response
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}
