//! End-to-end: DPoP (RFC 9449) through a real Envoy 1.40 and the sessiongate binary, with
//! mTLS SPIFFE clients, access tokens signed by the fixture issuer's keys and proofs signed
//! by freshly generated client keys (P-256 and Ed25519).
//!
//! - a sound proof is accepted, with the `DPoP` scheme in any case;
//! - every check of a proof fails alone: `typ`, `alg` (off the allow-list, or not fitting the
//!   key), a private or symmetric `jwk`, the signature, `htm`, `htu` (path, host, scheme),
//!   `iat` (too old, in the future), `ath` (wrong, absent), a missing `jti`, no proof, two
//!   proofs; each is 401 `invalid_dpop_proof` with a `DPoP` challenge naming the algorithms;
//! - the token's `cnf.jkt` must name the proof's key (`dpop_key_mismatch`);
//! - a proof is accepted once (`dpop_proof_replayed`); a DPoP-bound token presented as
//!   `Bearer` is refused (`dpop_downgrade`); a route requiring DPoP refuses a bearer token
//!   (`proof_of_possession_required`);
//! - a route requiring nonces answers `use_dpop_nonce` with a `DPoP-Nonce` that then works;
//! - a route with its own public origin (`dpop_origin`) accepts proofs naming that origin and
//!   refuses proofs naming the `:authority` Envoy saw;
//! - two replicas sharing a real Redis: a proof used at one is a replay at the other, Redis
//!   holds one expiring key per proof, a nonce issued by one is accepted by the other, and a
//!   replica that cannot reach Redis refuses proofs 503 (fails closed).

mod support;

use std::sync::Mutex;

use serde_json::{Value, json};
use sessiongate_token::testing::DpopClient;
use support::redis::RedisServer;
use support::reply::Reply;
use support::tokens::token;
use support::{SendExt as _, Stack, Workload, admin, run};
use tokio::sync::OnceCell;

use Workload::Frontend;

/// The accepted proof algorithms, as every challenge names them.
const ALGS: &str = r#"algs="ES256 EdDSA""#;

/// A nonce secret every replica of a test shares (at least 32 bytes).
const NONCE_SECRET: &str = "e2e-dpop-nonce-secret-of-at-least-32-bytes";

/// The public origin of the `storefront` route, which Envoy never sees in `:authority`.
const STOREFRONT_ORIGIN: &str = "https://shop.example.test";

/// The e2e policy plus DPoP: two algorithms, nonces, a route requiring DPoP, one requiring
/// nonces and one served under its own public origin; `extra` is added to the `dpop` section
/// (e.g. `origin`).
fn dpop_yaml(extra: &str) -> String {
    format!(
        "{}  - name: dpop-only\n    path_prefix: /dpop-only\n    proof_of_possession: dpop\n\
         \x20 - name: nonce\n    path_prefix: /nonce\n    dpop_nonce: true\n\
         \x20 - name: storefront\n    path_prefix: /storefront\n    \
         dpop_origin: {STOREFRONT_ORIGIN}\n\
         dpop:\n  algorithms: [ES256, EdDSA]\n  proof_lifetime: 5s\n  nonce:\n    \
         secret_file: nonce.secret\n    rotate_every: 5m\n{extra}",
        support::policy::sessiongate_yaml(None)
    )
}

fn prepared_dir() -> tempfile::TempDir {
    let dir = admin::prepared_dir();
    std::fs::write(dir.path().join("nonce.secret"), NONCE_SECRET).expect("write nonce.secret");
    dir
}

/// One stack for the single-replica tests.
async fn stack() -> &'static Stack {
    static SHARED: OnceCell<Stack> = OnceCell::const_new();
    SHARED
        .get_or_init(|| async { Stack::start_in(prepared_dir(), &dpop_yaml("")).await })
        .await
}

/// An access token bound to `client`'s key.
fn bound_token(client: &DpopClient, subject: &str) -> String {
    token()
        .sub(subject)
        .claim("cnf", json!({"jkt": client.jkt()}))
        .sign()
}

/// GET `path` at `stack` with `Authorization: <scheme> <jwt>` and the `proofs` given.
async fn get(stack: &Stack, path: &str, scheme: &str, jwt: &str, proofs: &[&str]) -> Reply {
    let mut request = stack
        .get(Frontend, path)
        .header("authorization", format!("{scheme} {jwt}"));
    for proof in proofs {
        request = request.header("dpop", *proof);
    }
    request.reply().await
}

fn now() -> i64 {
    support::tokens::now()
}

#[test]
fn a_sound_proof_is_accepted_with_either_key_type_and_any_scheme_case() {
    run(async {
        let stack = stack().await;
        for (client, scheme) in [
            (DpopClient::es256(), "DPoP"),
            (DpopClient::ed25519(), "dpop"),
        ] {
            let jwt = bound_token(&client, "dpop-sound");
            let url = stack.url("/orders/1");
            let proof = client.proof("GET", &url, &jwt);
            get(stack, "/orders/1", scheme, &jwt, &[&proof])
                .await
                .assert_allowed();
            // The query is not part of htu.
            let proof = client.proof("GET", &url, &jwt);
            get(stack, "/orders/1?verbose=1", scheme, &jwt, &[&proof])
                .await
                .assert_allowed();
        }
    });
}

/// One alteration of a sound proof: what it changes in the header and claims.
type Alteration = (&'static str, fn(&mut Value, &mut Value, &str));

#[test]
fn every_check_of_a_proof_fails_alone() {
    run(async {
        let stack = stack().await;
        let client = DpopClient::es256();
        let jwt = bound_token(&client, "dpop-altered");
        let url = stack.url("/orders/1");
        let alterations: [Alteration; 16] = [
            ("typ", |h, _, _| h["typ"] = json!("JWT")),
            ("no typ", |h, _, _| {
                h.as_object_mut().unwrap().remove("typ");
            }),
            ("alg off the allow-list", |h, _, _| {
                h["alg"] = json!("ES384")
            }),
            ("alg none", |h, _, _| h["alg"] = json!("none")),
            ("alg not fitting the key", |h, _, _| {
                h["alg"] = json!("EdDSA")
            }),
            ("private jwk", |h, _, _| h["jwk"]["d"] = json!("c2VjcmV0")),
            ("symmetric jwk", |h, _, _| {
                h["jwk"] = json!({"kty": "oct", "k": "c2VjcmV0"})
            }),
            ("another key's jwk", |h, _, _| {
                h["jwk"] = DpopClient::es256().jwk().clone()
            }),
            ("htm", |_, c, _| c["htm"] = json!("POST")),
            ("htu path", |_, c, url| {
                c["htu"] = json!(url.replace("/orders/1", "/orders/2"))
            }),
            ("htu host", |_, c, url| {
                c["htu"] = json!(url.replace("localhost", "127.0.0.1"))
            }),
            ("htu scheme", |_, c, url| {
                c["htu"] = json!(url.replace("https:", "http:"))
            }),
            ("iat too old", |_, c, _| c["iat"] = json!(now() - 60)),
            ("iat in the future", |_, c, _| c["iat"] = json!(now() + 60)),
            ("ath of another token", |_, c, _| {
                c["ath"] = json!("47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU")
            }),
            ("no jti", |_, c, _| {
                c.as_object_mut().unwrap().remove("jti");
            }),
        ];
        for (what, alter) in alterations {
            let (mut header, mut claims) = client.parts("GET", &url, &jwt);
            alter(&mut header, &mut claims, &url);
            let proof = client.sign(&header, &claims);
            let reply = get(stack, "/orders/1", "DPoP", &jwt, &[&proof]).await;
            assert!(
                reply.status == 401 && reply.reason() == Some("invalid_dpop_proof"),
                "{what}: {reply}"
            );
            reply
                .assert_challenge_starts_with(r#"DPoP error="invalid_dpop_proof""#)
                .assert_challenge_contains(ALGS);
        }
        // No ath at all, a signature that does not verify, no proof, two proofs.
        let (header, mut claims) = client.parts("GET", &url, &jwt);
        claims.as_object_mut().unwrap().remove("ath");
        let no_ath = client.sign(&header, &claims);
        // A signature byte changed (well inside the signature, not its padding bits).
        let bad_signature = {
            let mut bytes = client.proof("GET", &url, &jwt).into_bytes();
            let at = bytes.len() - 10;
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            String::from_utf8(bytes).unwrap()
        };
        let (one, two) = (
            client.proof("GET", &url, &jwt),
            client.proof("GET", &url, &jwt),
        );
        for (what, proofs) in [
            ("no ath", vec![no_ath.as_str()]),
            ("bad signature", vec![bad_signature.as_str()]),
            ("no proof", vec![]),
            ("two proofs", vec![one.as_str(), two.as_str()]),
        ] {
            let reply = get(stack, "/orders/1", "DPoP", &jwt, &proofs).await;
            assert!(
                reply.status == 401 && reply.reason() == Some("invalid_dpop_proof"),
                "{what}: {reply}"
            );
        }
        // The sound proof still works: nothing above was a replay of it.
        get(stack, "/orders/1", "DPoP", &jwt, &[&one])
            .await
            .assert_allowed();
    });
}

#[test]
fn the_token_must_be_bound_to_the_proofs_key() {
    run(async {
        let stack = stack().await;
        let (owner, thief) = (DpopClient::es256(), DpopClient::es256());
        let jwt = bound_token(&owner, "dpop-stolen");
        let proof = thief.proof("GET", &stack.url("/orders/1"), &jwt);
        get(stack, "/orders/1", "DPoP", &jwt, &[&proof])
            .await
            .assert_denied(401, "dpop_key_mismatch")
            .assert_challenge_starts_with(r#"DPoP error="invalid_token""#);
        let unbound = token().sub("dpop-unbound").sign();
        let proof = thief.proof("GET", &stack.url("/orders/1"), &unbound);
        get(stack, "/orders/1", "DPoP", &unbound, &[&proof])
            .await
            .assert_denied(401, "dpop_key_mismatch");
    });
}

#[test]
fn a_proof_is_accepted_once() {
    run(async {
        let stack = stack().await;
        let client = DpopClient::es256();
        let jwt = bound_token(&client, "dpop-replay");
        let proof = client.proof("GET", &stack.url("/orders/1"), &jwt);
        get(stack, "/orders/1", "DPoP", &jwt, &[&proof])
            .await
            .assert_allowed();
        get(stack, "/orders/1", "DPoP", &jwt, &[&proof])
            .await
            .assert_denied(401, "dpop_proof_replayed")
            .assert_challenge_starts_with(r#"DPoP error="invalid_dpop_proof""#);
        let fresh = client.proof("GET", &stack.url("/orders/1"), &jwt);
        get(stack, "/orders/1", "DPoP", &jwt, &[&fresh])
            .await
            .assert_allowed();
    });
}

#[test]
fn a_dpop_bound_token_presented_as_bearer_is_refused() {
    run(async {
        let stack = stack().await;
        let client = DpopClient::es256();
        let jwt = bound_token(&client, "dpop-downgrade");
        let proof = client.proof("GET", &stack.url("/orders/1"), &jwt);
        get(stack, "/orders/1", "Bearer", &jwt, &[&proof])
            .await
            .assert_denied(401, "dpop_downgrade")
            .assert_challenge_starts_with(r#"DPoP error="invalid_token""#)
            .assert_challenge_contains(ALGS);
        get(stack, "/orders/1", "Bearer", &jwt, &[])
            .await
            .assert_denied(401, "dpop_downgrade");
    });
}

#[test]
fn a_route_requiring_dpop_refuses_a_bearer_token() {
    run(async {
        let stack = stack().await;
        let bearer = token().sub("dpop-required-bearer").sign();
        get(stack, "/dpop-only/x", "Bearer", &bearer, &[])
            .await
            .assert_denied(401, "proof_of_possession_required")
            .assert_challenge_contains(ALGS);
        let client = DpopClient::ed25519();
        let jwt = bound_token(&client, "dpop-required");
        let proof = client.proof("GET", &stack.url("/dpop-only/x"), &jwt);
        get(stack, "/dpop-only/x", "DPoP", &jwt, &[&proof])
            .await
            .assert_allowed();
    });
}

/// The `DPoP-Nonce` header of a reply.
fn nonce_of(reply: &Reply) -> String {
    reply
        .headers
        .get("dpop-nonce")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_else(|| panic!("no DPoP-Nonce: {reply}"))
        .to_owned()
}

/// A proof for GET `url` carrying `nonce`.
fn proof_with_nonce(client: &DpopClient, url: &str, jwt: &str, nonce: &str) -> String {
    let (header, mut claims) = client.parts("GET", url, jwt);
    claims["nonce"] = json!(nonce);
    client.sign(&header, &claims)
}

#[test]
fn a_route_requiring_nonces_hands_one_out_and_accepts_it() {
    run(async {
        let stack = stack().await;
        let client = DpopClient::es256();
        let jwt = bound_token(&client, "dpop-nonce");
        let url = stack.url("/nonce/1");
        let first = get(
            stack,
            "/nonce/1",
            "DPoP",
            &jwt,
            &[&client.proof("GET", &url, &jwt)],
        )
        .await;
        first
            .assert_denied(401, "use_dpop_nonce")
            .assert_challenge_starts_with(r#"DPoP error="use_dpop_nonce""#);
        let nonce = nonce_of(&first);
        let made_up = proof_with_nonce(&client, &url, &jwt, "made-up");
        get(stack, "/nonce/1", "DPoP", &jwt, &[&made_up])
            .await
            .assert_denied(401, "use_dpop_nonce");
        let proof = proof_with_nonce(&client, &url, &jwt, &nonce);
        get(stack, "/nonce/1", "DPoP", &jwt, &[&proof])
            .await
            .assert_allowed();
    });
}

#[test]
fn a_route_with_its_own_origin_judges_htu_against_it() {
    run(async {
        let stack = stack().await;
        let client = DpopClient::es256();
        let jwt = bound_token(&client, "dpop-route-origin");
        // What clients addressed, in front of the proxy that Envoy sits behind.
        let public = format!("{STOREFRONT_ORIGIN}/storefront/1");
        let proof = client.proof("GET", &public, &jwt);
        get(stack, "/storefront/1", "DPoP", &jwt, &[&proof])
            .await
            .assert_allowed();
        // A proof naming Envoy's own `:authority` is not for the route's public origin.
        let own = client.proof("GET", &stack.url("/storefront/1"), &jwt);
        get(stack, "/storefront/1", "DPoP", &jwt, &[&own])
            .await
            .assert_denied(401, "invalid_dpop_proof")
            .assert_challenge_contains(ALGS);
        // Other routes keep judging htu against what Envoy saw.
        let elsewhere = client.proof("GET", &format!("{STOREFRONT_ORIGIN}/orders/1"), &jwt);
        get(stack, "/orders/1", "DPoP", &jwt, &[&elsewhere])
            .await
            .assert_denied(401, "invalid_dpop_proof");
    });
}

/// One fleet at a time: each starts two Envoys, two sessiongates and a Redis.
static SERIAL: Mutex<()> = Mutex::new(());

/// A replica of a fleet sharing `redis_url`, whose clients address the public origin
/// `https://api.example.test` (Envoy sits behind another proxy as far as htu goes).
async fn replica(redis_url: &str) -> Stack {
    let yaml = format!(
        "{}  origin: https://api.example.test\n\
         revocation:\n  backend: redis\n  url: \"{redis_url}\"\n  key_prefix: \"e2e:\"\n  timeout: 500ms\n",
        dpop_yaml("")
    );
    Stack::start_in(prepared_dir(), &yaml).await
}

#[test]
fn a_proof_used_at_one_replica_is_a_replay_at_another() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    run(async {
        let redis = RedisServer::start().await;
        let (one, two) = (replica(&redis.url()).await, replica(&redis.url()).await);
        let client = DpopClient::es256();
        let jwt = bound_token(&client, "dpop-fleet");
        let public = "https://api.example.test/orders/1";
        let proof = client.proof("GET", public, &jwt);
        get(&one, "/orders/1", "DPoP", &jwt, &[&proof])
            .await
            .assert_allowed();
        get(&two, "/orders/1", "DPoP", &jwt, &[&proof])
            .await
            .assert_denied(401, "dpop_proof_replayed");
        let fresh = client.proof("GET", public, &jwt);
        get(&two, "/orders/1", "DPoP", &jwt, &[&fresh])
            .await
            .assert_allowed();
        // One key per proof, expiring once its iat refuses it anyway (5 s + 2 × 30 s skew).
        let keys: Vec<String> = redis.query(redis::cmd("KEYS").arg("e2e:dpop:*")).await;
        assert_eq!(keys.len(), 2, "{keys:?}");
        for key in &keys {
            let ttl_ms: i64 = redis.query(redis::cmd("PTTL").arg(key)).await;
            assert!(ttl_ms > 0 && ttl_ms <= 65_000, "{key}: {ttl_ms}");
        }
        // A proof for the replica's own address is not for the public origin.
        let own = client.proof("GET", &one.url("/orders/1"), &jwt);
        get(&one, "/orders/1", "DPoP", &jwt, &[&own])
            .await
            .assert_denied(401, "invalid_dpop_proof");
        // A nonce handed out by one replica is accepted by the other.
        let nonce_url = "https://api.example.test/nonce/1";
        let asked = get(
            &one,
            "/nonce/1",
            "DPoP",
            &jwt,
            &[&client.proof("GET", nonce_url, &jwt)],
        )
        .await;
        asked.assert_denied(401, "use_dpop_nonce");
        let proof = proof_with_nonce(&client, nonce_url, &jwt, &nonce_of(&asked));
        get(&two, "/nonce/1", "DPoP", &jwt, &[&proof])
            .await
            .assert_allowed();
    });
}

#[test]
fn a_replica_that_cannot_record_a_proof_fails_closed() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    run(async {
        let mut redis = RedisServer::start().await;
        let stack = replica(&redis.url()).await;
        let client = DpopClient::es256();
        let jwt = bound_token(&client, "dpop-redis-down");
        let public = "https://api.example.test/orders/1";
        let warm = client.proof("GET", public, &jwt);
        get(&stack, "/orders/1", "DPoP", &jwt, &[&warm])
            .await
            .assert_allowed();
        redis.stop().await;
        let proof = client.proof("GET", public, &jwt);
        get(&stack, "/orders/1", "DPoP", &jwt, &[&proof])
            .await
            .assert_denied(503, "internal_error");
    });
}
