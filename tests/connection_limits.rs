//! Bounded connections, measured against the real binary: every listener (ext_authz `grpc`,
//! `admin` with the SSF push endpoint, ops `http`) closes a connection whose caller stalls (no
//! HTTP/2 preface, half a preface, half the request headers, half a body, nothing at all)
//! within the configured time, and closes the connection over its cap at once while the ones
//! it holds keep working.
//!
//! Each test runs its own sessiongate (the caps are per process). Close times are printed
//! (`--nocapture`) next to the configured bound.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use support::run;
use support::sessiongate::Sessiongate;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// `limits.handshake_timeout` and `limits.body_timeout` of the timeout tests.
const STALL: Duration = Duration::from_millis(500);
/// How much later than configured a close may come on a busy 2-core machine.
const SLACK: Duration = Duration::from_millis(1500);

/// The SSF config (admin listener and push endpoint) with `limits` appended.
fn config(limits: &str) -> String {
    format!("{}\nlimits:\n{limits}", support::ssf::sessiongate_yaml())
}

async fn start(limits: &str) -> (Sessiongate, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    support::ssf::prepare_dir(dir.path());
    let sessiongate = Sessiongate::start(dir.path(), &config(limits)).await;
    (sessiongate, dir)
}

/// Stall bounds of half a second, caps out of reach.
async fn start_stalling() -> (Sessiongate, tempfile::TempDir) {
    start("  handshake_timeout: 500ms\n  body_timeout: 500ms\n").await
}

/// Waits until the server closes `stream` (EOF or reset), reading and discarding whatever it
/// sends first; fails when it is still open `within` after `since`. Returns when it closed,
/// measured from `since`.
async fn closed(stream: &mut TcpStream, since: Instant, within: Duration) -> Duration {
    let mut buf = [0; 4096];
    let outcome = tokio::time::timeout_at((since + within).into(), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return since.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await;
    outcome.unwrap_or_else(|_| panic!("still open {within:?} after it stalled"))
}

/// Opens a connection to `address` and sends `bytes` (possibly none), then stalls; asserts the
/// server closes it after at least `configured` and at most `configured` + [`SLACK`].
async fn assert_stall_closed(what: &str, address: SocketAddr, bytes: &[u8], configured: Duration) {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let since = Instant::now();
    stream.write_all(bytes).await.unwrap();
    let took = closed(&mut stream, since, configured + SLACK).await;
    println!("{what}: configured {configured:?}, closed after {took:?}");
    assert!(took >= configured, "{what}: closed early, after {took:?}");
}

/// A plain HTTP/2 connection to the ext_authz listener.
async fn h2_connect(address: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(address).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    sender
}

/// Sends an empty CheckRequest (no HTTP attributes: answered `bad_request`) on `sender`;
/// returns the call's gRPC status.
async fn check(
    sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    address: SocketAddr,
) -> String {
    let request = hyper::Request::post(format!(
        "http://{address}/envoy.service.auth.v3.Authorization/Check"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
    .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    trailers["grpc-status"].to_str().unwrap().to_owned()
}

/// Sends one HTTP/1.1 request on `stream`, reads the whole answer (which must have a
/// `content-length`) and returns its status line.
async fn http1_status(stream: &mut TcpStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "answered");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .expect("content-length");
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.unwrap();
    head.lines().next().unwrap().to_owned()
}

/// The HTTP/2 client connection preface and an empty SETTINGS frame.
const H2_OPENING: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

// ----- the ext_authz listener -------------------------------------------------------------

#[test]
fn grpc_a_connection_that_does_not_open_http2_is_closed_after_the_handshake_timeout() {
    run(async {
        let (sessiongate, _dir) = start_stalling().await;
        let address = sessiongate.grpc_addr;
        assert_stall_closed("grpc, nothing sent", address, b"", STALL).await;
        assert_stall_closed(
            "grpc, half a preface",
            address,
            b"PRI * HTTP/2.0\r\n",
            STALL,
        )
        .await;
        assert_stall_closed(
            "grpc, preface without SETTINGS",
            address,
            &H2_OPENING[..24],
            STALL,
        )
        .await;
    });
}

#[test]
fn grpc_an_open_http2_connection_outlives_the_handshake_timeout() {
    run(async {
        let (sessiongate, _dir) = start_stalling().await;
        let address = sessiongate.grpc_addr;
        let mut sender = h2_connect(address).await;
        assert_eq!(check(&mut sender, address).await, "0");
        // Envoy keeps its connections between checks; the deadline was for opening only.
        tokio::time::sleep(STALL * 3).await;
        assert_eq!(check(&mut sender, address).await, "0");
    });
}

#[test]
fn grpc_the_connection_over_the_cap_is_closed_at_once_and_the_others_keep_working() {
    run(async {
        let (sessiongate, _dir) = start("  max_connections:\n    grpc: 2\n").await;
        let address = sessiongate.grpc_addr;
        let mut first = h2_connect(address).await;
        let mut second = h2_connect(address).await;
        assert_eq!(check(&mut first, address).await, "0");
        assert_eq!(check(&mut second, address).await, "0");

        let mut third = TcpStream::connect(address).await.unwrap();
        let since = Instant::now();
        third.write_all(H2_OPENING).await.unwrap();
        let took = closed(&mut third, since, Duration::from_secs(2)).await;
        println!("grpc, over the cap of 2: closed after {took:?}");

        assert_eq!(check(&mut first, address).await, "0");
        assert_eq!(check(&mut second, address).await, "0");
        let metrics = scrape(sessiongate.http_addr).await;
        assert!(
            metrics.contains("sessiongate_connections_refused_total{listener=\"grpc\"} 1\n"),
            "{metrics}"
        );
        assert!(
            metrics.contains("sessiongate_connections_open{listener=\"grpc\"} 2\n"),
            "{metrics}"
        );
    });
}

#[test]
fn grpc_a_check_request_over_the_configured_size_is_a_400_answer() {
    run(async {
        let (sessiongate, _dir) = start("  max_check_request_bytes: 65536\n").await;
        let address = sessiongate.grpc_addr;
        let mut sender = h2_connect(address).await;
        // A prefix announcing 65537 bytes of message, and the bytes.
        let mut body = vec![0, 0, 1, 0, 1];
        body.resize(5 + 65537, b'a');
        let request = hyper::Request::post(format!(
            "http://{address}/envoy.service.auth.v3.Authorization/Check"
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let collected = response.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap_or_default();
        assert_eq!(trailers["grpc-status"], "0", "an answer, not a failed call");
        let message = collected.to_bytes();
        let text = String::from_utf8_lossy(&message);
        assert!(
            text.contains(
                "CheckRequest of 65537 bytes exceeds limits.max_check_request_bytes (65536)"
            ),
            "{text}"
        );
        assert!(text.contains("bad_request"), "{text}");
    });
}

// ----- the admin listener (admin gRPC and the SSF push endpoint) ----------------------------

#[test]
fn admin_stalled_connections_are_closed_after_the_handshake_timeout() {
    run(async {
        let (sessiongate, _dir) = start_stalling().await;
        let address = sessiongate.admin_addr.unwrap();
        assert_stall_closed("admin, nothing sent", address, b"", STALL).await;
        assert_stall_closed(
            "admin, half the request headers",
            address,
            b"POST /ssf/events HTTP/1.1\r\nHost: sessiongate\r\n",
            STALL,
        )
        .await;
        // HTTP/2 has no header timeout: an idle connection is asked to go away (GOAWAY) and
        // dropped when it has not, each after the handshake timeout.
        assert_stall_closed("admin, HTTP/2 preface only", address, H2_OPENING, STALL * 2).await;
        assert_stall_closed(
            "admin, half an HTTP/2 header block",
            address,
            // A HEADERS frame announcing 16 bytes of block, of which none follows.
            &[H2_OPENING, b"\x00\x00\x10\x01\x04\x00\x00\x00\x01"].concat(),
            STALL * 2,
        )
        .await;
    });
}

#[test]
fn admin_a_stalled_ssf_push_body_is_refused_after_the_body_timeout() {
    run(async {
        let (sessiongate, _dir) = start_stalling().await;
        let address = sessiongate.admin_addr.unwrap();
        let mut stream = TcpStream::connect(address).await.unwrap();
        let since = Instant::now();
        let status = tokio::time::timeout(
            STALL + SLACK,
            http1_status(
                &mut stream,
                "POST /ssf/events HTTP/1.1\r\nHost: sessiongate\r\n\
                 Content-Type: application/secevent+jwt\r\nContent-Length: 100\r\n\r\neyJhbGciOi",
            ),
        )
        .await
        .expect("answered once the body timeout passed");
        let answered = since.elapsed();
        println!(
            "admin, half an SSF body: configured {STALL:?}, answered {status:?} after {answered:?}"
        );
        assert_eq!(status, "HTTP/1.1 400 Bad Request");
        assert!(
            answered >= STALL && answered < STALL + SLACK,
            "{answered:?}"
        );
        let took = closed(&mut stream, since, STALL * 2 + SLACK).await;
        println!("admin, half an SSF body: connection closed after {took:?}");
    });
}

#[test]
fn admin_the_connection_over_the_cap_is_closed_at_once_and_the_others_keep_working() {
    run(async {
        let (sessiongate, _dir) = start("  max_connections:\n    admin: 2\n").await;
        let address = sessiongate.admin_addr.unwrap();
        let mut first = TcpStream::connect(address).await.unwrap();
        let mut second = TcpStream::connect(address).await.unwrap();
        let wrong_type = "POST /ssf/events HTTP/1.1\r\nHost: sessiongate\r\n\
                          Content-Type: text/plain\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            http1_status(&mut first, wrong_type).await,
            "HTTP/1.1 400 Bad Request"
        );

        let mut third = TcpStream::connect(address).await.unwrap();
        let since = Instant::now();
        let took = closed(&mut third, since, Duration::from_secs(2)).await;
        println!("admin, over the cap of 2: closed after {took:?}");

        assert!(
            http1_status(&mut second, wrong_type)
                .await
                .starts_with("HTTP/1.1 400"),
            "the second connection still works"
        );
        let metrics = scrape(sessiongate.http_addr).await;
        assert!(
            metrics.contains("sessiongate_connections_refused_total{listener=\"admin\"} 1\n"),
            "{metrics}"
        );
    });
}

// ----- the ops listener ---------------------------------------------------------------------

#[test]
fn ops_stalled_connections_are_closed_after_the_handshake_timeout() {
    run(async {
        let (sessiongate, _dir) = start_stalling().await;
        let address = sessiongate.http_addr;
        assert_stall_closed("http, nothing sent", address, b"", STALL).await;
        assert_stall_closed(
            "http, half the request headers",
            address,
            b"GET /metrics HTTP/1.1\r\nHost: sessiongate\r\n",
            STALL,
        )
        .await;
        assert_stall_closed("http, HTTP/2 preface only", address, H2_OPENING, STALL * 2).await;

        // A keep-alive connection is closed once idle that long after its last answer.
        let mut stream = TcpStream::connect(address).await.unwrap();
        let status = http1_status(
            &mut stream,
            "GET /healthz HTTP/1.1\r\nHost: sessiongate\r\n\r\n",
        )
        .await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        let since = Instant::now();
        let took = closed(&mut stream, since, STALL + SLACK).await;
        println!("http, idle keep-alive: configured {STALL:?}, closed after {took:?}");
    });
}

#[test]
fn ops_the_connection_over_the_cap_is_closed_at_once_and_the_others_keep_working() {
    run(async {
        let (sessiongate, _dir) = start("  max_connections:\n    http: 2\n").await;
        let address = sessiongate.http_addr;
        let mut first = TcpStream::connect(address).await.unwrap();
        let mut second = TcpStream::connect(address).await.unwrap();
        let healthz = "GET /healthz HTTP/1.1\r\nHost: sessiongate\r\n\r\n";
        assert_eq!(http1_status(&mut first, healthz).await, "HTTP/1.1 200 OK");

        let mut third = TcpStream::connect(address).await.unwrap();
        let since = Instant::now();
        let took = closed(&mut third, since, Duration::from_secs(2)).await;
        println!("http, over the cap of 2: closed after {took:?}");

        assert_eq!(http1_status(&mut second, healthz).await, "HTTP/1.1 200 OK");
        let metrics = "GET /metrics HTTP/1.1\r\nHost: sessiongate\r\n\r\n";
        assert_eq!(http1_status(&mut first, metrics).await, "HTTP/1.1 200 OK");
    });
}

/// The ops listener's `/metrics`, in the classic text format.
async fn scrape(address: SocketAddr) -> String {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
