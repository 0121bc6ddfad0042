//! What an opaque token costs (issue 14): a check whose introspected session is cached, against
//! a check that must ask the issuer (a miss: single-flight bookkeeping, one POST to a loopback
//! endpoint over a pooled HTTP/1.1 connection, reading the answer, caching the session).
//!
//! ```text
//! cargo bench --bench introspection
//! ```
//!
//! The endpoint is a minimal hyper server on the same runtime that answers every token
//! `active: true`: the miss figure is sessiongate's side of an introspection plus a loopback
//! round trip, a floor for a real identity provider, whose own time adds to it.
//! Figures: BENCHMARKS.md.

mod support;

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sessiongate::app;
use sessiongate::envoy::request;
use sessiongate_check::check::CheckUseCase;
use sessiongate_core::time::UnixTime;

const OPAQUE_ISSUER: &str = "https://opaque.example.test";

/// Serves `POST /introspect`, answering every token active for the frontend workload.
async fn endpoint() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = service_fn(|_request| async {
                    let now = support::unix_now();
                    let answer = serde_json::json!({"active": true, "iss": OPAQUE_ISSUER,
                        "aud": support::AUDIENCE, "sub": "alice", "iat": now, "exp": now + 600,
                        "auth_time": now, "scope": support::SCOPES,
                        "client_id": support::FRONTEND, "jti": "bench"});
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(
                        answer.to_string(),
                    ))))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn introspection(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let addr = runtime.block_on(endpoint());
    std::fs::write(dir.path().join("secret"), "bench-secret").unwrap();
    let file = support::write_config(dir.path(), "127.0.0.1:0", "127.0.0.1:0", 1_000_000);
    let yaml = std::fs::read_to_string(&file).unwrap().replacen(
        "issuers:\n",
        &format!(
            "issuers:\n  - issuer: \"{OPAQUE_ISSUER}\"\n    audiences: [\"{}\"]\n    \
             introspection:\n      endpoint: \"http://{addr}/introspect\"\n      \
             client_id: sessiongate\n      \
             client_auth: {{ method: client_secret_basic, secret_file: secret }}\n",
            support::AUDIENCE
        ),
        1,
    );
    std::fs::write(&file, yaml).unwrap();
    let config = sessiongate::config::load(&file).unwrap();
    let started = runtime.block_on(app::start(config)).unwrap();
    let introspector = started
        .introspector
        .clone()
        .expect("an introspecting issuer");
    let check = CheckUseCase::new(Arc::clone(&started.gate)).with_introspector(introspector);
    let certificate = support::frontend_certificate();
    let serial = AtomicU64::new(0);
    let fresh = || {
        let token = format!(
            "opaque-bench-{:020}",
            serial.fetch_add(1, Ordering::Relaxed)
        );
        support::lean(&support::check_request(
            &format!("Bearer {token}"),
            &certificate,
        ))
    };

    let cached = fresh();
    let http = request::http_request(&cached).unwrap();
    let facts = request::facts(&cached, http).unwrap();
    let first = runtime.block_on(check.run(&facts)).unwrap();
    assert_eq!(
        first.verdict,
        Ok(()),
        "the endpoint's answer admits the token"
    );

    let mut group = c.benchmark_group("introspection");
    group.bench_function("cached_hit", |b| {
        b.iter(|| {
            let outcome = started.gate.check(black_box(&facts), UnixTime::now());
            debug_assert!(outcome.verdict.is_ok() && outcome.introspection.is_none());
            outcome
        })
    });
    group.bench_function("miss_loopback", |b| {
        b.iter_batched(
            fresh,
            |check_request| {
                let http = request::http_request(&check_request).unwrap();
                let facts = request::facts(&check_request, http).unwrap();
                let outcome = runtime.block_on(check.run(black_box(&facts))).unwrap();
                debug_assert!(outcome.verdict.is_ok());
                outcome.verdict.is_ok()
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn settings() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
        .configure_from_args()
}

criterion_group! {
    name = benches;
    config = settings();
    targets = introspection
}
criterion_main!(benches);
