//! The load generator of `scripts/bench-load.sh`: closed-loop load over loopback, a latency
//! histogram, and a check of **every** response (a fast error is not a fast answer).
//!
//! ```text
//! load token --alg ES256 > token                         # one realistic token (example keys)
//! load grpc  --target 127.0.0.1:9191 --token-file token  # ext_authz Check straight at a server
//!            [--expect-identity]                         #   …and demand sessiongate's headers
//!            [--fresh-tokens 40000 --alg ES256]          #   a new session on every request
//! load https --target 127.0.0.1:10443 --token-file token # GET /orders/42 through Envoy, mTLS
//!            [--expect-body x-sessiongate-subject]       #   …and demand what the upstream saw
//!            [--fresh-tokens 20000 --alg ES256]          #   a new session on every request
//! load verify-rate --alg ES256                           # the crypto library's own rate
//! load flood --target 127.0.0.1:9191 --forgeries fresh  # an attacker: bad signatures, its
//!            [--forgeries same]                          #   own SPIFFE ID; expects denials
//! ```
//!
//! gRPC: HTTP/2 over `--connections` connections, `--streams` concurrent calls on each; a call
//! counts as OK only with `grpc-status: 0` in the trailers and a `CheckResponse` whose status is
//! OK with an `ok_response`. HTTPS: HTTP/1.1 keep-alive over `--connections` connections,
//! presenting `examples/certs/frontend.pem`; OK is a 200. Any other answer is an error and makes
//! the run exit 1. Each run prints one JSON line on stdout (requests/s, p50, p90, p99, max).

#[path = "../benches/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use envoy_types::ext_authz::v3::pb::{CheckResponse, HttpResponse};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use support::{Alg, Minter};

#[derive(Parser)]
#[command(about = "Closed-loop load generator for the sessiongate benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Load {
    /// `host:port` to load.
    #[arg(long)]
    target: String,
    /// Connections to open.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Measured time (seconds); ignored with `--fresh-tokens`, which ends when they run out.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Unmeasured warm-up before it (seconds).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Client worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// The bearer token to send (file holding it).
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
    /// Label for the JSON line.
    #[arg(long, default_value = "run")]
    label: String,
}

#[derive(Subcommand)]
enum Command {
    /// Print one benchmark token.
    Token {
        #[arg(long, default_value = "ES256")]
        alg: String,
    },
    /// ext_authz `Check` calls over h2c.
    Grpc {
        #[command(flatten)]
        load: Load,
        /// Concurrent calls per connection.
        #[arg(long, default_value_t = 4)]
        streams: usize,
        /// Demand sessiongate's identity headers in every allow.
        #[arg(long)]
        expect_identity: bool,
        /// Send this many never-seen tokens, one per request (the uncached case); the run ends
        /// when they are used up.
        #[arg(long)]
        fresh_tokens: Option<usize>,
        /// Algorithm of the fresh tokens.
        #[arg(long, default_value = "ES256")]
        alg: String,
    },
    /// `GET /orders/42` over HTTPS with the frontend's client certificate.
    Https {
        #[command(flatten)]
        load: Load,
        /// Demand this text in every response body (the echo upstream lists its headers).
        #[arg(long)]
        expect_body: Option<String>,
        /// A never-seen token on every request, minted up front (a new session each time:
        /// measures first sight through Envoy); the run ends when they run out.
        #[arg(long)]
        fresh_tokens: Option<usize>,
        /// Algorithm of the fresh tokens.
        #[arg(long, default_value = "ES256")]
        alg: String,
    },
    /// An attacker's flood: ES256 tokens with a known `kid` and a bad signature, as the caller
    /// `spiffe://cluster.local/ns/evil/sa/attacker`. Every answer must be a denial with
    /// `bad_signature` or `verification_throttled` (`missing_token` with `--forgeries none`);
    /// anything else is an error.
    Flood {
        #[command(flatten)]
        load: Load,
        /// Concurrent calls per connection.
        #[arg(long, default_value_t = 16)]
        streams: usize,
        /// `same`: one forged token over and over; `fresh`: new bytes on every request; `none`:
        /// no token at all (the cheapest denial, as a control).
        #[arg(long, default_value = "fresh")]
        forgeries: String,
    },
    /// Signature verifications per second by the crypto library alone, on all threads.
    VerifyRate {
        #[arg(long, default_value = "ES256")]
        alg: String,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long, default_value_t = 3.0)]
        duration: f64,
        #[arg(long, default_value = "verify-raw")]
        label: String,
    },
}

/// What every worker records.
struct Tally {
    histogram: std::sync::Mutex<Histogram<u64>>,
    ok: AtomicU64,
    errors: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Tally {
    fn new() -> Arc<Tally> {
        Arc::new(Tally {
            histogram: std::sync::Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).unwrap()),
            ok: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: std::sync::Mutex::new(None),
        })
    }

    fn error(&self, what: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap();
        if first.is_none() {
            *first = Some(what);
        }
    }
}

/// When measuring starts and stops, shared by the workers.
struct Window {
    measure_from: Instant,
    stop_at: Option<Instant>,
    stopped: AtomicBool,
}

impl Window {
    fn new(load: &Load, bounded: bool) -> Arc<Window> {
        let measure_from = Instant::now() + Duration::from_secs_f64(load.warmup);
        Arc::new(Window {
            measure_from,
            stop_at: (!bounded).then(|| measure_from + Duration::from_secs_f64(load.duration)),
            stopped: AtomicBool::new(false),
        })
    }

    fn running(&self) -> bool {
        !self.stopped.load(Ordering::Relaxed) && self.stop_at.is_none_or(|at| Instant::now() < at)
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Token { alg } => {
            println!("{}", Minter::new().token(parse_alg(&alg)?, 1));
            Ok(())
        }
        Command::VerifyRate {
            alg,
            threads,
            duration,
            label,
        } => verify_rate(&label, parse_alg(&alg)?, threads, duration),
        Command::Grpc {
            load,
            streams,
            expect_identity,
            fresh_tokens,
            alg,
        } => {
            let bodies = match fresh_tokens {
                Some(n) => Bodies::Fresh(mint_bodies(parse_alg(&alg)?, n), AtomicUsize::new(0)),
                None => Bodies::Same(grpc_body(&read_token(&load)?)),
            };
            let expect = if expect_identity {
                Expect::Identity
            } else {
                Expect::Allow
            };
            let tally = runtime(load.threads)?.block_on(grpc(
                load.clone(),
                streams,
                expect,
                Arc::new(bodies),
            ))?;
            report(&load.label, &tally)
        }
        Command::Flood {
            load,
            streams,
            forgeries,
        } => {
            let bodies = forged_bodies(&forgeries)?;
            let tally = runtime(load.threads)?.block_on(grpc(
                load.clone(),
                streams,
                Expect::Denial,
                Arc::new(bodies),
            ))?;
            report(&load.label, &tally)
        }
        Command::Https {
            load,
            expect_body,
            fresh_tokens,
            alg,
        } => {
            let authorizations = match fresh_tokens {
                Some(n) => Authorizations::Fresh(
                    mint_tokens(parse_alg(&alg)?, n)
                        .into_iter()
                        .map(|token| format!("Bearer {token}"))
                        .collect(),
                    AtomicUsize::new(0),
                ),
                None => Authorizations::Same(format!("Bearer {}", read_token(&load)?)),
            };
            let tally = runtime(load.threads)?.block_on(https(
                load.clone(),
                Arc::new(authorizations),
                expect_body,
            ))?;
            report(&load.label, &tally)
        }
    }
}

fn parse_alg(text: &str) -> anyhow::Result<Alg> {
    Alg::parse(text).ok_or_else(|| anyhow::anyhow!("unknown algorithm {text}"))
}

fn read_token(load: &Load) -> anyhow::Result<String> {
    let path = load
        .token_file
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("--token-file is required"))?;
    Ok(std::fs::read_to_string(path)?.trim().to_owned())
}

fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?)
}

/// A gRPC-framed `CheckRequest` as Envoy would send it for `token`.
fn grpc_body(token: &str) -> Bytes {
    let check =
        support::check_request(&format!("Bearer {token}"), &support::frontend_certificate());
    frame(&check)
}

/// `check` as one gRPC message.
fn frame(check: &envoy_types::ext_authz::v3::pb::CheckRequest) -> Bytes {
    let message = check.encode_to_vec();
    let mut framed = Vec::with_capacity(message.len() + 5);
    framed.push(0);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    Bytes::from(framed)
}

/// `n` requests with never-seen tokens, minted on every core before the run.
fn mint_bodies(alg: Alg, n: usize) -> Vec<Bytes> {
    mint_tokens(alg, n)
        .iter()
        .map(|token| grpc_body(token))
        .collect()
}

/// `n` distinct tokens, minted on every core.
fn mint_tokens(alg: Alg, n: usize) -> Vec<String> {
    let started = Instant::now();
    let minter = Minter::new();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let tokens: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let minter = &minter;
                scope.spawn(move || {
                    (t..n)
                        .step_by(threads)
                        .map(|i| minter.token(alg, 1_000_000 + i as u64))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    eprintln!(
        "minted {n} {} tokens in {:.1}s",
        alg.name(),
        started.elapsed().as_secs_f64()
    );
    tokens
}

/// The attacker's caller identity in flood requests.
const ATTACKER: &str = "spiffe://cluster.local/ns/evil/sa/attacker";

/// Flood requests: a real ES256 token of the example issuer whose signature's first
/// characters are overwritten, so the `kid` is known and the signature is bad.
fn forged_bodies(forgeries: &str) -> anyhow::Result<Bodies> {
    let token = Minter::new().token(Alg::Es256, 1);
    let signature_at = token.rfind('.').expect("a compact JWS") + 1;
    let mut forged = token.clone().into_bytes();
    forged[signature_at..signature_at + 8].copy_from_slice(b"AAAAAAAA");
    let forged = String::from_utf8(forged).expect("ASCII");
    let authorization = if forgeries == "none" {
        String::new()
    } else {
        format!("Bearer {forged}")
    };
    let mut check = support::check_request(&authorization, &support::frontend_certificate());
    if forgeries == "none"
        && let Some(http) = check
            .attributes
            .as_mut()
            .and_then(|a| a.request.as_mut())
            .and_then(|r| r.http.as_mut())
    {
        http.headers.remove("authorization");
    }
    if let Some(source) = check.attributes.as_mut().and_then(|a| a.source.as_mut()) {
        source.principal = ATTACKER.into();
    }
    let body = frame(&check);
    match forgeries {
        "same" | "none" => Ok(Bodies::Same(body)),
        "fresh" => {
            let at = body
                .windows(forged.len())
                .position(|window| window == forged.as_bytes())
                .expect("the token is in the request")
                + signature_at;
            Ok(Bodies::Forged(body.to_vec(), at, AtomicU64::new(0)))
        }
        other => anyhow::bail!("--forgeries is `same`, `fresh` or `none`, not `{other}`"),
    }
}

enum Bodies {
    Same(Bytes),
    Fresh(Vec<Bytes>, AtomicUsize),
    /// A template and where 8 characters of its signature go: a counter makes every request's
    /// bytes new.
    Forged(Vec<u8>, usize, AtomicU64),
}

impl Bodies {
    fn next(&self) -> Option<Bytes> {
        match self {
            Bodies::Same(body) => Some(body.clone()),
            Bodies::Fresh(bodies, next) => {
                bodies.get(next.fetch_add(1, Ordering::Relaxed)).cloned()
            }
            Bodies::Forged(template, at, next) => {
                const ALPHABET: &[u8; 64] =
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                let mut n = next.fetch_add(1, Ordering::Relaxed);
                let mut body = template.clone();
                for byte in &mut body[*at..*at + 8] {
                    *byte = ALPHABET[(n % 64) as usize];
                    n /= 64;
                }
                Some(Bytes::from(body))
            }
        }
    }
}

/// What a gRPC run demands of every answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// An allow.
    Allow,
    /// An allow carrying sessiongate's identity headers.
    Identity,
    /// A flood's denial: `bad_signature` or `verification_throttled`.
    Denial,
}

async fn grpc(
    load: Load,
    streams: usize,
    expect: Expect,
    bodies: Arc<Bodies>,
) -> anyhow::Result<(Arc<Tally>, Duration)> {
    let fresh = matches!(*bodies, Bodies::Fresh(..));
    let tally = Tally::new();
    // Fresh tokens: no warm-up (each token is used once), and the run ends when they do.
    let load = Load {
        warmup: if fresh { 0.0 } else { load.warmup },
        ..load
    };
    let window = Window::new(&load, fresh);
    let uri: hyper::Uri = format!(
        "http://{}/envoy.service.auth.v3.Authorization/Check",
        load.target
    )
    .parse()?;
    let mut tasks = Vec::new();
    for _ in 0..load.connections {
        let stream = tokio::net::TcpStream::connect(&load.target).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await?;
        tokio::spawn(connection);
        for _ in 0..streams {
            let mut sender = sender.clone();
            let (tally, window, bodies, uri) = (
                Arc::clone(&tally),
                Arc::clone(&window),
                Arc::clone(&bodies),
                uri.clone(),
            );
            tasks.push(tokio::spawn(async move {
                while window.running() {
                    let Some(body) = bodies.next() else {
                        window.stopped.store(true, Ordering::Relaxed);
                        break;
                    };
                    let request = hyper::Request::post(uri.clone())
                        .header("content-type", "application/grpc")
                        .header("te", "trailers")
                        .body(Full::new(body))
                        .expect("valid request");
                    let started = Instant::now();
                    let answer = match sender.ready().await {
                        Ok(()) => call(&mut sender, request, expect).await,
                        Err(error) => Err(format!("connection: {error}")),
                    };
                    record(&tally, &window, started, answer);
                }
            }));
        }
    }
    let began = Instant::now();
    for task in tasks {
        task.await?;
    }
    let measured = if fresh {
        began.elapsed()
    } else {
        Duration::from_secs_f64(load.duration)
    };
    Ok((tally, measured))
}

async fn call(
    sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    request: hyper::Request<Full<Bytes>>,
    expect: Expect,
) -> Result<(), String> {
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("send: {e}"))?;
    if response.status() != 200 {
        return Err(format!("HTTP {}", response.status()));
    }
    let collected = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    let status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .map(|v| v.as_bytes().to_vec());
    if status.as_deref() != Some(b"0") {
        return Err(format!("grpc-status {status:?}"));
    }
    let bytes = collected.to_bytes();
    let message = bytes.get(5..).ok_or("short gRPC frame")?;
    let answer = CheckResponse::decode(message).map_err(|e| format!("decode: {e}"))?;
    if expect == Expect::Denial {
        let reason = answer.status.map(|s| s.message).unwrap_or_default();
        return match reason.as_str() {
            "bad_signature" | "verification_throttled" | "missing_token" => Ok(()),
            other => Err(format!("flood answered `{other}`")),
        };
    }
    if answer.status.as_ref().map(|s| s.code) != Some(0) {
        return Err(format!("denied: {:?}", answer.status));
    }
    let Some(HttpResponse::OkResponse(ok)) = answer.http_response else {
        return Err("no ok_response".into());
    };
    if expect == Expect::Identity
        && !ok.headers.iter().any(|h| {
            h.header
                .as_ref()
                .is_some_and(|h| h.key == "x-sessiongate-subject")
        })
    {
        return Err("allow without x-sessiongate-subject".into());
    }
    Ok(())
}

/// The `Authorization` values an HTTPS run sends.
enum Authorizations {
    /// One token, its session cached after the first request.
    Same(String),
    /// A new token on every request, until they run out.
    Fresh(Vec<String>, AtomicUsize),
}

impl Authorizations {
    fn next(&self) -> Option<&str> {
        match self {
            Authorizations::Same(value) => Some(value),
            Authorizations::Fresh(values, next) => values
                .get(next.fetch_add(1, Ordering::Relaxed))
                .map(String::as_str),
        }
    }
}

async fn https(
    load: Load,
    authorizations: Arc<Authorizations>,
    expect_body: Option<String>,
) -> anyhow::Result<(Arc<Tally>, Duration)> {
    let fresh = matches!(*authorizations, Authorizations::Fresh(..));
    // Fresh tokens: no warm-up (each token is used once), and the run ends when they do.
    let load = Load {
        warmup: if fresh { 0.0 } else { load.warmup },
        ..load
    };
    let certs = support::examples_dir().join("certs");
    let ca = std::fs::read(certs.join("ca.pem"))?;
    let mut identity = std::fs::read(certs.join("frontend.pem"))?;
    identity.extend(std::fs::read(certs.join("frontend-key.pem"))?);
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
        .identity(reqwest::Identity::from_pem(&identity)?)
        .resolve("localhost", load.target.parse()?)
        .no_proxy()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(load.connections)
        .timeout(Duration::from_secs(10))
        .build()?;
    let port = load.target.rsplit(':').next().unwrap_or("443");
    let url = format!("https://localhost:{port}/orders/42");
    let tally = Tally::new();
    let window = Window::new(&load, fresh);
    let expect_body = Arc::new(expect_body);
    let mut tasks = Vec::new();
    for _ in 0..load.connections {
        let (client, url, authorizations, tally, window, expect_body) = (
            client.clone(),
            url.clone(),
            Arc::clone(&authorizations),
            Arc::clone(&tally),
            Arc::clone(&window),
            Arc::clone(&expect_body),
        );
        tasks.push(tokio::spawn(async move {
            while window.running() {
                let Some(authorization) = authorizations.next() else {
                    window.stopped.store(true, Ordering::Relaxed);
                    break;
                };
                let started = Instant::now();
                let answer = async {
                    let response = client
                        .get(&url)
                        .header("authorization", authorization)
                        .header("accept", "application/json")
                        .send()
                        .await
                        .map_err(|e| format!("send: {e}"))?;
                    let status = response.status();
                    let body = response.text().await.map_err(|e| format!("body: {e}"))?;
                    if status != 200 {
                        return Err(format!("HTTP {status}: {body}"));
                    }
                    match expect_body.as_deref() {
                        Some(text) if !body.contains(text) => {
                            Err(format!("body lacks {text}: {body}"))
                        }
                        _ => Ok(()),
                    }
                }
                .await;
                record(&tally, &window, started, answer);
            }
        }));
    }
    let began = Instant::now();
    for task in tasks {
        task.await?;
    }
    let measured = if fresh {
        began.elapsed()
    } else {
        Duration::from_secs_f64(load.duration)
    };
    Ok((tally, measured))
}

fn record(tally: &Tally, window: &Window, started: Instant, answer: Result<(), String>) {
    if started < window.measure_from {
        if let Err(error) = answer {
            tally.error(error);
        }
        return;
    }
    match answer {
        Ok(()) => {
            let micros = started.elapsed().as_micros().max(1) as u64;
            tally.histogram.lock().unwrap().saturating_record(micros);
            tally.ok.fetch_add(1, Ordering::Relaxed);
        }
        Err(error) => tally.error(error),
    }
}

fn report(label: &str, (tally, measured): &(Arc<Tally>, Duration)) -> anyhow::Result<()> {
    let histogram = tally.histogram.lock().unwrap();
    let ok = tally.ok.load(Ordering::Relaxed);
    let errors = tally.errors.load(Ordering::Relaxed);
    let rps = ok as f64 / measured.as_secs_f64();
    println!(
        "{{\"label\":\"{label}\",\"ok\":{ok},\"errors\":{errors},\"seconds\":{:.3},\"rps\":{rps:.0},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"max_us\":{}}}",
        measured.as_secs_f64(),
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.9),
        histogram.value_at_quantile(0.99),
        histogram.max(),
    );
    if errors > 0 {
        let first = tally.first_error.lock().unwrap();
        anyhow::bail!("{label}: {errors} responses were not OK; first: {first:?}");
    }
    if ok == 0 {
        anyhow::bail!("{label}: no request completed");
    }
    Ok(())
}

/// Verifications per second of one signature by the crypto library sessiongate uses (aws-lc-rs,
/// on the key parsed once, as sessiongate keeps it) on `threads` threads: the ceiling for new
/// sessions.
fn verify_rate(label: &str, alg: Alg, threads: usize, duration: f64) -> anyhow::Result<()> {
    let token = Minter::new().token(alg, 1);
    let (key, message, signature) = alg.raw_verification(&token);
    let parsed = key
        .parsed_for(alg.signing())
        .ok_or_else(|| anyhow::anyhow!("key {} does not verify {}", alg.kid(), alg.name()))?;
    let deadline = Instant::now() + Duration::from_secs_f64(duration);
    let total: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        for _ in 0..16 {
                            parsed
                                .verify_sig(message.as_bytes(), &signature)
                                .expect("the example signature verifies");
                        }
                        n += 16;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    println!(
        "{{\"label\":\"{label}\",\"alg\":\"{}\",\"threads\":{threads},\"rps\":{:.0}}}",
        alg.name(),
        total as f64 / duration
    );
    Ok(())
}
