//! Micro-benchmarks of one check's parts (issue 6): what a cached session costs, what first
//! sight of a session costs per algorithm (next to the crypto library's own verification of
//! the same signature), the protobuf work at the edge, and the certificate thumbprint.
//!
//! ```text
//! cargo bench --bench hot_path                 # everything, about two minutes
//! cargo bench --bench hot_path -- verify       # one group
//! ```
//!
//! Figures and what limits them: BENCHMARKS.md.

mod support;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use envoy_types::ext_authz::v3::pb::CheckRequest;
use prost::Message;
use sessiongate::envoy::wire::CheckRequest as LeanCheckRequest;
use sessiongate::envoy::{request, response};
use sessiongate::revocation::RevocationCheck;
use sessiongate::{app, config};
use sessiongate_check::gate::Gate;
use sessiongate_check::session::SessionKey;
use sessiongate_check::thumbprints::ThumbprintCache;
use sessiongate_core::decision::{self, Admission, Clock, Possession, Rules, SessionState};
use sessiongate_core::request::AuthorizationValues;
use sessiongate_core::time::UnixTime;
use sessiongate_core::workload::{Caller, SpiffeId, Thumbprint};
use sessiongate_token::{KeyRing, KeySet};
use support::{Alg, FRONTEND, ISSUER, Minter};

/// The gate of the example policy, with the example keys, built as `serve` builds it.
fn gate(dir: &std::path::Path) -> Arc<Gate> {
    let file = support::write_config(dir, "127.0.0.1:0", "127.0.0.1:0", 100_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async { app::build_gate(config::load(&file).unwrap()).await.unwrap() })
}

fn cached_session(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let gate = gate(dir.path());
    let token = Minter::new().token(Alg::Es256, 1);
    let full = support::check_request(&format!("Bearer {token}"), &support::frontend_certificate());
    support::allow_and_pin(&gate, &full);
    let check = support::lean(&full);
    let http = request::http_request(&check).unwrap();
    let facts = request::facts(&check, http).unwrap();

    let mut group = c.benchmark_group("cached");
    group.bench_function("gate_check", |b| {
        b.iter(|| {
            let outcome = gate.check(black_box(&facts), UnixTime::now());
            debug_assert!(outcome.verdict.is_ok());
            outcome
        })
    });

    // decide() alone, on the same session, route and caller.
    let policy = gate.policy();
    let Ok(Admission::Bearer {
        route,
        requirements,
        token: bearer,
        ..
    }) = decision::admit(&policy.routes, &facts)
    else {
        panic!("the benchmark request needs a session route");
    };
    let session = gate
        .sessions()
        .peek(&SessionKey::of_token(bearer), UnixTime::now())
        .expect("warmed session");
    let caller = Caller {
        spiffe_id: SpiffeId::parse(FRONTEND),
        thumbprint: None,
        address: Some("127.0.0.1"),
    };
    let rules = Rules {
        route,
        requirements,
        session: &policy.session,
        binding: &policy.binding,
        dpop: &policy.dpop.rules,
    };
    group.bench_function("decide", |b| {
        b.iter(|| {
            let state = SessionState {
                last_allowed: session.last_allowed(),
                pinned: session.pinned(),
                revocation: RevocationCheck::Clear,
                keys_stale: false,
            };
            let clock = Clock {
                now: UnixTime::now(),
                started_at: UnixTime::from_secs(0),
            };
            decision::decide(
                black_box(&session.token),
                state,
                &caller,
                Possession::bearer(),
                rules,
                clock,
            )
        })
    });
    // The session key of an ES256 token with a low `s` (the plain SHA-256 of its bytes) and
    // with a high one (hashed as its low-S twin, after reading `alg`): about half of the ES256
    // tokens of an identity provider that does not normalise `s` are high-S.
    let minter = Minter::new();
    let plain = |token: &str| -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(token.as_bytes()).into()
    };
    let (mut low, mut high) = (None, None);
    for n in 2.. {
        let token = minter.token(Alg::Es256, n);
        if sessiongate_token::canonical_digest(&token) == plain(&token) {
            low.get_or_insert(token);
        } else {
            high.get_or_insert(token);
        }
        if low.is_some() && high.is_some() {
            break;
        }
    }
    let (low, high) = (low.unwrap(), high.unwrap());
    group.bench_function("session_key_sha256", |b| {
        b.iter(|| SessionKey::of_token(black_box(&low)))
    });
    group.bench_function("session_key_high_s", |b| {
        b.iter(|| SessionKey::of_token(black_box(&high)))
    });
    // What keying by the token's exact bytes cost (before canonical identities).
    group.bench_function("token_sha256_only", |b| b.iter(|| plain(black_box(&low))));
    group.finish();
}

fn first_sight(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let gate = gate(dir.path());
    let policy = gate.policy();
    let jwks = std::fs::read(support::examples_dir().join("jwks.json")).unwrap();
    let ring = KeyRing::new();
    ring.replace(ISSUER, KeySet::from_jwks_json(&jwks).unwrap().keys);
    let minter = Minter::new();

    let mut group = c.benchmark_group("verify");
    for alg in Alg::ALL {
        let token = minter.token(alg, 7);
        // First sight as the verifier does it: split, decode header and claims, pick the key,
        // check the signature, extract the claims a session keeps.
        group.bench_function(format!("token_{}", alg.name()), |b| {
            b.iter(|| policy.verifier.verify(black_box(&token), &ring).unwrap())
        });
        // The crypto library alone on the same signature, message and parsed key: the limit.
        let (key, message, signature) = alg.raw_verification(&token);
        let parsed = key.parsed_for(alg.signing()).unwrap();
        group.bench_function(format!("crypto_{}", alg.name()), |b| {
            b.iter(|| {
                parsed
                    .verify_sig(black_box(message.as_bytes()), black_box(&signature))
                    .unwrap()
            })
        });
    }
    group.finish();
}

/// DPoP (RFC 9449): a request of a cached session that carries a proof costs one proof
/// verification more than a bearer request of a cached session; next to both, the proof
/// verification alone and the crypto library's own ES256 verification of the same signature
/// (the floor). One run, so the ratios hold on a noisy machine.
fn dpop(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let gate = gate(dir.path());
    let minter = Minter::new();
    let certificate = support::frontend_certificate();

    let bearer_token = minter.token(Alg::Es256, 11);
    let bearer = support::check_request(&format!("Bearer {bearer_token}"), &certificate);
    support::allow_and_pin(&gate, &bearer);
    let bearer = support::lean(&bearer);
    let bearer_facts = request::facts(&bearer, request::http_request(&bearer).unwrap()).unwrap();

    let client = sessiongate_token::testing::DpopClient::es256();
    let dpop_token = minter.token_with(
        Alg::Es256,
        12,
        serde_json::json!({"cnf": {"jkt": client.jkt()}}),
    );
    let htu = "https://localhost:10443/orders/42";
    let dpop = support::lean(&support::check_request(
        &format!("DPoP {dpop_token}"),
        &certificate,
    ));
    let proof = client.proof("GET", htu, &dpop_token);
    let mut dpop_facts = request::facts(&dpop, request::http_request(&dpop).unwrap()).unwrap();
    dpop_facts.dpop = AuthorizationValues::One(&proof);
    let first = gate.check(&dpop_facts, UnixTime::now());
    assert!(first.verdict.is_ok(), "{:?}", first.verdict);
    let first = gate.settle_replay(first, Ok(true), UnixTime::now());
    let owner = first.pin.clone().map(|claim| claim.identity);
    if let (Some(owner), Some((_, session))) = (owner, &first.session) {
        session.pin(owner);
    }

    let mut group = c.benchmark_group("dpop");
    group.bench_function("bearer_gate_check", |b| {
        b.iter(|| {
            let outcome = gate.check(black_box(&bearer_facts), UnixTime::now());
            debug_assert!(outcome.verdict.is_ok());
            outcome
        })
    });
    // The replay claim is the use case's next step (a map insert, or a Redis round trip), not
    // the gate's: the same proof can be judged again here.
    group.bench_function("dpop_gate_check", |b| {
        b.iter(|| {
            let outcome = gate.check(black_box(&dpop_facts), UnixTime::now());
            assert!(outcome.verdict.is_ok(), "{:?}", outcome.verdict);
            outcome
        })
    });
    let verifier = &gate.policy().dpop.verifier;
    group.bench_function("proof_verify_es256", |b| {
        b.iter(|| verifier.verify(black_box(&proof)).unwrap())
    });
    let (signing_input, signature) = proof.rsplit_once('.').unwrap();
    let signature = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature)
            .unwrap()
    };
    let point = {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut point = vec![0x04];
        point.extend(engine.decode(client.jwk()["x"].as_str().unwrap()).unwrap());
        point.extend(engine.decode(client.jwk()["y"].as_str().unwrap()).unwrap());
        point
    };
    let key = aws_lc_rs::signature::ParsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        &point,
    )
    .unwrap();
    group.bench_function("crypto_es256", |b| {
        b.iter(|| {
            key.verify_sig(black_box(signing_input.as_bytes()), black_box(&signature))
                .unwrap()
        })
    });
    group.finish();
}

fn edge(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let gate = gate(dir.path());
    let token = Minter::new().token(Alg::Es256, 3);
    let full = support::check_request(&format!("Bearer {token}"), &support::frontend_certificate());
    support::allow_and_pin(&gate, &full);
    // The server decodes from the HTTP/2 frame's buffer, whose string fields it views, not copies.
    let wire = prost::bytes::Bytes::from(full.encode_to_vec());
    let check = support::lean(&full);

    let mut group = c.benchmark_group("envoy");
    // What sessiongate's server decodes: the fields it reads.
    group.bench_function("decode_check_request", |b| {
        b.iter(|| LeanCheckRequest::decode(black_box(wire.clone())).unwrap())
    });
    // The whole message, as a generated server (and the do-nothing one) decodes it.
    group.bench_function("decode_check_request_full", |b| {
        b.iter(|| CheckRequest::decode(black_box(&wire[..])).unwrap())
    });
    let http = request::http_request(&check).unwrap();
    let facts = request::facts(&check, http).unwrap();
    let outcome = gate.check(&facts, UnixTime::now());
    group.bench_function("build_check_response", |b| {
        b.iter(|| {
            response::check_response(
                black_box(&outcome),
                facts.peer.principal,
                request::header_names(http),
            )
        })
    });
    let answer =
        response::check_response(&outcome, facts.peer.principal, request::header_names(http));
    let mut buffer = Vec::with_capacity(answer.encoded_len());
    group.bench_function("encode_check_response", |b| {
        b.iter(|| {
            buffer.clear();
            black_box(&answer).encode(&mut buffer).unwrap();
        })
    });
    group.finish();

    let certificate = support::frontend_certificate();
    let mut group = c.benchmark_group("certificate");
    group.bench_function("thumbprint_cold", |b| {
        b.iter(|| Thumbprint::of_url_encoded_pem(black_box(&certificate)).unwrap())
    });
    let cache = ThumbprintCache::new(16);
    cache.thumbprint(&certificate).unwrap();
    group.bench_function("thumbprint_cached", |b| {
        b.iter(|| cache.thumbprint(black_box(&certificate)).unwrap())
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
    targets = cached_session, first_sight, dpop, edge
}
criterion_main!(benches);
