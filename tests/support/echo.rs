//! The upstream behind Envoy: answers every request with 200 and a JSON picture of what arrived.
//!
//! Tests read the picture to see what sessiongate made Envoy forward (identity headers set,
//! spoofed ones gone). Header values are lists so a duplicated header, e.g. a spoofed value kept
//! next to the real one, is visible rather than merged away.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

/// Serves on `127.0.0.1:0` in a background task of the current runtime; returns the address.
pub async fn spawn() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind echo upstream");
    let addr = listener.local_addr().expect("echo upstream address");
    tokio::spawn(serve(listener));
    addr
}

/// Accepts connections until the runtime stops; one task per connection.
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            // A client hanging up mid-request is not the upstream's problem to report.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(echo))
                .await;
        });
    }
}

async fn echo(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in request.headers() {
        headers
            .entry(name.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let body = json!({
        "method": request.method().as_str(),
        "path": request.uri().to_string(),
        "headers": headers,
    });
    Ok(Response::builder()
        .header("content-type", "application/json")
        .header("x-echo", "1")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid echo response"))
}
