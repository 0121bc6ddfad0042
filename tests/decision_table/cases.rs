//! The decision table through a real Envoy 1.40, shared by both modes: `tests/e2e_envoy.rs`
//! (Envoy's ext_authz filter calling the sessiongate binary) and `tests/e2e_module.rs` (Envoy
//! loading sessiongate as a dynamic module). Each binary supplies `shared_stack`, `own_stack`
//! and `own_stack_in` for its mode; every case asserts the same status, reason, challenge and
//! upstream headers in both, which is what "identical answers" means.
//!
//! One test per row of the decision table that Envoy can produce, named after the rule,
//! asserting the HTTP status, the `reason` in the JSON body and the `WWW-Authenticate` challenge
//! where the table gives one. Plus header spoofing, a workload replaying another's token, the
//! route Envoy selects per route (`context_extensions` / the module's per-route config), and the
//! verification budget.

use std::time::Duration;

use crate::support::policy::{
    CLOCK_SKEW_SECS, MAX_AUTH_AGE_SECS, MAX_TOKEN_AGE_SECS, ORDERS_WRITE_MAX_TOKEN_AGE_SECS,
};
use crate::support::tokens::{self, Alg, ES256_ONLY_ISSUER, Signer, token};
use crate::support::{SendExt as _, Stack, Workload, run};
use tokio::sync::OnceCell;

use Workload::{Batch, Frontend, NonSpiffe};

const INVALID_TOKEN: &str = r#"Bearer error="invalid_token""#;

// ----- allow ------------------------------------------------------------------------------

/// An allowed request reaches the upstream with exactly one value of each identity header, and
/// the session header is a short handle that does not leak the token.
async fn assert_allowed_with_identity(alg: Alg) {
    let stack = crate::shared_stack().await;
    let sub = format!("user-{alg:?}");
    let jwt = token()
        .alg(alg)
        .sub(&sub)
        .scope("orders:read profile")
        .sign();

    let reply = stack
        .get(Frontend, "/orders/42")
        .bearer_auth(&jwt)
        .reply()
        .await;

    reply.assert_allowed();
    assert_eq!(reply.upstream_single("x-sessiongate-subject"), sub);
    let mut scopes: Vec<String> = reply
        .upstream_single("x-sessiongate-scopes")
        .split(' ')
        .map(str::to_owned)
        .collect();
    scopes.sort();
    assert_eq!(scopes, ["orders:read", "profile"]);
    assert_eq!(
        reply.upstream_single("x-sessiongate-workload"),
        Frontend.principal()
    );
    let session = reply.upstream_single("x-sessiongate-session");
    assert!(
        !session.is_empty() && session.len() <= 128,
        "session handle should be a short hash, got {session:?}"
    );
    assert!(
        !session.contains(&jwt) && !jwt.split('.').any(|part| session.contains(part)),
        "the session header must never carry the token: {session:?}"
    );
    // The token itself still reaches the upstream untouched in Authorization.
    assert_eq!(
        reply.upstream_single("authorization"),
        format!("Bearer {jwt}")
    );
}

#[test]
fn allow_rs256_forwards_identity_headers() {
    run(assert_allowed_with_identity(Alg::Rs256));
}

#[test]
fn allow_es256_forwards_identity_headers() {
    run(assert_allowed_with_identity(Alg::Es256));
}

#[test]
fn allow_eddsa_forwards_identity_headers() {
    run(assert_allowed_with_identity(Alg::EdDsa));
}

#[test]
fn public_route_needs_no_token() {
    run(async {
        let stack = crate::shared_stack().await;
        stack
            .get(Frontend, "/healthz")
            .reply()
            .await
            .assert_allowed();
    });
}

// ----- the Authorization header -----------------------------------------------------------

#[test]
fn missing_token() {
    run(async {
        let stack = crate::shared_stack().await;
        stack
            .get(Frontend, "/orders/1")
            .reply()
            .await
            .assert_denied(401, "missing_token")
            .assert_challenge(r#"Bearer realm="sessiongate""#);
    });
}

#[test]
fn bad_request_two_bearer_credentials() {
    run(async {
        let stack = crate::shared_stack().await;
        let first = token().sign();
        let second = token().sign();

        // Two credentials in one header value…
        stack
            .get(Frontend, "/orders/1")
            .header("authorization", format!("Bearer {first}, Bearer {second}"))
            .reply()
            .await
            .assert_denied(400, "bad_request")
            .assert_challenge_starts_with(r#"Bearer error="invalid_request""#);

        // …and two Authorization headers, which Envoy hands to ext_authz joined by a comma.
        stack
            .get(Frontend, "/orders/1")
            .header("authorization", format!("Bearer {first}"))
            .header("authorization", format!("Bearer {second}"))
            .reply()
            .await
            .assert_denied(400, "bad_request")
            .assert_challenge_starts_with(r#"Bearer error="invalid_request""#);
    });
}

#[test]
fn bad_request_basic_credential() {
    run(async {
        let stack = crate::shared_stack().await;
        stack
            .get(Frontend, "/orders/1")
            .basic_auth("alice", Some("secret"))
            .reply()
            .await
            .assert_denied(400, "bad_request")
            .assert_challenge_starts_with(r#"Bearer error="invalid_request""#);
    });
}

#[test]
fn bad_request_authorization_over_8_kib() {
    run(async {
        let stack = crate::shared_stack().await;
        // "Bearer " + token = 8193 bytes: one byte over the limit.
        let oversized = format!("Bearer {}", "a".repeat(8193 - "Bearer ".len()));
        assert_eq!(oversized.len(), 8193);
        stack
            .get(Frontend, "/orders/1")
            .header("authorization", oversized)
            .reply()
            .await
            .assert_denied(400, "bad_request")
            .assert_challenge_starts_with(r#"Bearer error="invalid_request""#);

        // Exactly 8192 bytes is within the limit: judged as a (malformed) token instead.
        let at_limit = format!("Bearer {}", "a".repeat(8192 - "Bearer ".len()));
        stack
            .get(Frontend, "/orders/1")
            .header("authorization", at_limit)
            .reply()
            .await
            .assert_denied(401, "malformed_token")
            .assert_challenge_starts_with(INVALID_TOKEN);
    });
}

// ----- token validity ---------------------------------------------------------------------

#[test]
fn malformed_token() {
    run(async {
        let stack = crate::shared_stack().await;
        for garbage in ["not-a-jwt", "aaaa.bbbb.cccc", "eyJhbGciOiJSUzI1NiJ9.e30"] {
            stack
                .get(Frontend, "/orders/1")
                .bearer_auth(garbage)
                .reply()
                .await
                .assert_denied(401, "malformed_token")
                .assert_challenge_starts_with(INVALID_TOKEN);
        }
    });
}

#[test]
fn null_claims_and_header_members_are_malformed_not_absent() {
    run(async {
        let stack = crate::shared_stack().await;
        // `"iat": null` was "no iat" (token_too_old), the others were simply ignored.
        for claim in ["iat", "nbf", "sub", "jti", "scope", "auth_time", "cnf"] {
            let jwt = token().claim(claim, serde_json::Value::Null).sign();
            let reply = stack
                .get(Frontend, "/orders/1")
                .bearer_auth(&jwt)
                .reply()
                .await;
            reply
                .assert_denied(401, "malformed_token")
                .assert_challenge_starts_with(INVALID_TOKEN)
                .assert_challenge_contains(claim);
        }
        let claims = serde_json::Value::Object(token().claims().clone()).to_string();
        for (header, member) in [
            (r#"{"alg":"RS256","kid":null}"#, "kid"),
            (r#"{"alg":"RS256","kid":"test-rs256","typ":null}"#, "typ"),
            (r#"{"alg":"RS256","kid":"test-rs256","crit":null}"#, "crit"),
        ] {
            let jwt = tokens::sign_raw(Alg::Rs256, header, &claims);
            stack
                .get(Frontend, "/orders/1")
                .bearer_auth(&jwt)
                .reply()
                .await
                .assert_denied(401, "malformed_token")
                .assert_challenge_contains(member);
        }
    });
}

#[test]
fn a_member_named_twice_is_malformed_not_last_one_wins() {
    run(async {
        let stack = crate::shared_stack().await;
        let claims = serde_json::Value::Object(token().claims().clone()).to_string();
        let header = r#"{"alg":"RS256","typ":"at+jwt","kid":"test-rs256"}"#;
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(tokens::sign_raw(Alg::Rs256, header, &claims))
            .reply()
            .await
            .assert_allowed();
        // Another reader keeping the first `sub` would see alice; keeping the last, admin.
        let two_subjects = claims.replacen(r#""sub":"alice""#, r#""sub":"alice","sub":"admin""#, 1);
        assert_ne!(two_subjects, claims);
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(tokens::sign_raw(Alg::Rs256, header, &two_subjects))
            .reply()
            .await
            .assert_denied(401, "malformed_token")
            .assert_challenge_contains("claims name a member twice");
        let two_kids = r#"{"alg":"RS256","typ":"at+jwt","kid":"nope","kid":"test-rs256"}"#;
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(tokens::sign_raw(Alg::Rs256, two_kids, &claims))
            .reply()
            .await
            .assert_denied(401, "malformed_token")
            .assert_challenge_contains("header names a member twice");
    });
}

#[test]
fn bad_signature() {
    run(async {
        let stack = crate::shared_stack().await;
        for alg in [Alg::Rs256, Alg::Es256, Alg::EdDsa] {
            // Same kid as the published key, signed by an impostor's key.
            let forged = token().alg(alg).signer(Signer::Untrusted).sign();
            stack
                .get(Frontend, "/orders/1")
                .bearer_auth(&forged)
                .reply()
                .await
                .assert_denied(401, "bad_signature")
                .assert_challenge_starts_with(INVALID_TOKEN);
        }
    });
}

#[test]
fn unknown_issuer() {
    run(async {
        let stack = crate::shared_stack().await;
        let jwt = token().iss("https://evil.example.test").sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_denied(401, "unknown_issuer")
            .assert_challenge_starts_with(INVALID_TOKEN);
    });
}

#[test]
fn unknown_key() {
    run(async {
        let stack = crate::shared_stack().await;
        let jwt = token().kid("rotated-away").sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_denied(401, "unknown_key")
            .assert_challenge_starts_with(INVALID_TOKEN);
    });
}

#[test]
fn wrong_audience() {
    run(async {
        let stack = crate::shared_stack().await;
        let jwt = token().aud("billing-api").sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_denied(401, "wrong_audience")
            .assert_challenge_starts_with(INVALID_TOKEN);
    });
}

#[test]
fn one_kid_shared_by_an_ec_and_an_okp_key_verifies_es256_and_eddsa() {
    run(async {
        // RFC 7517 section 4.5: keys of different types may share a kid (a migration).
        let dir = tempfile::tempdir().expect("stack temp dir");
        let mut jwks: serde_json::Value =
            serde_json::from_slice(&std::fs::read(tokens::jwks_path()).unwrap()).unwrap();
        for key in jwks["keys"].as_array_mut().unwrap() {
            if key["kty"] == "EC" || key["kty"] == "OKP" {
                key["kid"] = serde_json::json!("migrating");
            }
        }
        std::fs::write(dir.path().join("shared-kid.json"), jwks.to_string()).unwrap();
        let yaml = crate::support::policy::with_first_issuer_keys(
            &crate::support::policy::sessiongate_yaml(None),
            "    jwks_file: \"shared-kid.json\"\n",
        );
        let stack = crate::own_stack_in(dir, &yaml).await;
        for alg in [Alg::Es256, Alg::EdDsa] {
            let jwt = token().alg(alg).kid("migrating").sign();
            stack
                .get(Frontend, "/orders/1")
                .bearer_auth(&jwt)
                .reply()
                .await
                .assert_allowed();
        }
        // No key under that kid fits RS256: still the algorithm's fault.
        let jwt = token().alg(Alg::Rs256).kid("migrating").sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_denied(401, "disallowed_algorithm");
    });
}

#[test]
fn disallowed_algorithm_none() {
    run(async {
        let stack = crate::shared_stack().await;
        let unsigned = token().unsigned();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&unsigned)
            .reply()
            .await
            .assert_denied(401, "disallowed_algorithm")
            .assert_challenge_starts_with(INVALID_TOKEN);
    });
}

#[test]
fn disallowed_algorithm_hs256_keyed_with_rsa_public_key() {
    run(async {
        let stack = crate::shared_stack().await;
        let confused = token().hs256_with_rsa_public_key();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&confused)
            .reply()
            .await
            .assert_denied(401, "disallowed_algorithm")
            .assert_challenge_starts_with(INVALID_TOKEN);
    });
}

#[test]
fn disallowed_algorithm_not_in_issuers_allow_list() {
    run(async {
        let stack = crate::shared_stack().await;
        // Correctly signed RS256, but this issuer allows ES256 only.
        let jwt = token().alg(Alg::Rs256).iss(ES256_ONLY_ISSUER).sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_denied(401, "disallowed_algorithm")
            .assert_challenge_starts_with(INVALID_TOKEN);

        // The same issuer's ES256 tokens are fine: the allow-list, not the issuer, said no.
        let allowed = token().alg(Alg::Es256).iss(ES256_ONLY_ISSUER).sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&allowed)
            .reply()
            .await
            .assert_allowed();
    });
}

#[test]
fn expired() {
    run(async {
        let stack = crate::shared_stack().await;
        let jwt = token().iat_age(300).exp_in(-(CLOCK_SKEW_SECS + 60)).sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_denied(401, "expired")
            .assert_challenge_starts_with(INVALID_TOKEN);
    });
}

#[test]
fn not_yet_valid() {
    run(async {
        let stack = crate::shared_stack().await;
        let jwt = token().nbf_in(CLOCK_SKEW_SECS + 300).sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_denied(401, "not_yet_valid")
            .assert_challenge_starts_with(INVALID_TOKEN);
    });
}

#[test]
fn not_yet_valid_when_the_user_authenticated_in_the_future() {
    run(async {
        let stack = crate::shared_stack().await;
        // An hour ahead: its age would read as zero, passing max_auth_age for as long as it lives.
        let jwt = token().auth_age(-3600).sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_denied(401, "not_yet_valid")
            .assert_challenge_starts_with(INVALID_TOKEN)
            .assert_challenge_contains("auth_time");
    });
}

// ----- session freshness ------------------------------------------------------------------

#[test]
fn token_too_old_global_max_token_age() {
    run(async {
        let stack = crate::shared_stack().await;
        // GET /orders uses the global 15m limit.
        let jwt = token()
            .iat_age(MAX_TOKEN_AGE_SECS + CLOCK_SKEW_SECS + 120)
            .exp_in(600)
            .sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_denied(401, "token_too_old")
            .assert_challenge_starts_with(INVALID_TOKEN);
    });
}

#[test]
fn token_too_old_route_override() {
    run(async {
        let stack = crate::shared_stack().await;
        // Five minutes old: within the global 15m, beyond orders-write's 2m.
        let age = ORDERS_WRITE_MAX_TOKEN_AGE_SECS + CLOCK_SKEW_SECS + 150;
        assert!(age + CLOCK_SKEW_SECS < MAX_TOKEN_AGE_SECS);
        let jwt = token()
            .scope("orders:read orders:write")
            .iat_age(age)
            .sign();

        stack
            .post(Frontend, "/orders")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_denied(401, "token_too_old")
            .assert_challenge_starts_with(INVALID_TOKEN);

        // The very same session is still fine where the global limit applies.
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_allowed();
    });
}

#[test]
fn token_without_iat_is_too_old() {
    run(async {
        let stack = crate::shared_stack().await;
        let jwt = token().without("iat").sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_denied(401, "token_too_old")
            .assert_challenge_starts_with(INVALID_TOKEN);
    });
}

#[test]
fn token_without_exp_is_rejected() {
    run(async {
        let stack = crate::shared_stack().await;
        // Issue 2 requires `exp` but names no reason of its own: any invalid_token deny will do.
        let jwt = token().without("exp").sign();
        let reply = stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await;
        assert!(
            reply.status == 401 && !reply.reached_upstream() && reply.reason().is_some(),
            "a token without exp must be denied with 401, got {reply}"
        );
        reply.assert_challenge_starts_with(INVALID_TOKEN);
    });
}

#[test]
fn auth_too_old() {
    run(async {
        let stack = crate::shared_stack().await;
        let nine_hours = 9 * 3600;
        let jwt = token().auth_age(nine_hours).sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_denied(401, "auth_too_old")
            .assert_challenge_starts_with(r#"Bearer error="insufficient_user_authentication""#)
            .assert_challenge_contains(&format!(r#"max_age="{MAX_AUTH_AGE_SECS}""#));

        // A recent login passes.
        let fresh = token().auth_age(600).sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&fresh)
            .reply()
            .await
            .assert_allowed();
    });
}

// ----- idle sessions (own stack: idle_timeout 2s) ------------------------------------------

const IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// The idle-timeout stack, shared by the two idle tests.
async fn idle_stack() -> &'static Stack {
    static IDLE: OnceCell<Stack> = OnceCell::const_new();
    IDLE.get_or_init(|| async {
        crate::own_stack(&crate::support::policy::sessiongate_yaml(Some("2s"))).await
    })
    .await
}

#[test]
fn session_idle_after_inactivity() {
    run(async {
        let stack = idle_stack().await;
        let jwt = token().sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_allowed();

        // Waiting out the idle timeout is the scenario itself.
        tokio::time::sleep(IDLE_TIMEOUT + Duration::from_millis(1500)).await;

        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_denied(401, "session_idle")
            .assert_challenge_starts_with(INVALID_TOKEN);
    });
}

#[test]
fn session_idle_when_first_seen_long_after_iat() {
    run(async {
        let stack = idle_stack().await;
        // Right after start-up, unseen tokens are adopted (a restart emptied the cache); wait
        // until that grace window of one idle_timeout has passed.
        let started = stack.gate_started();
        let grace_over = started + IDLE_TIMEOUT + Duration::from_millis(1000);
        tokio::time::sleep_until(grace_over.into()).await;

        // Issued a minute ago (beyond idle timeout and clock skew), never seen: idle.
        let jwt = token().iat_age(CLOCK_SKEW_SECS + 30).sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_denied(401, "session_idle")
            .assert_challenge_starts_with(INVALID_TOKEN);

        // A fresh token on the same stack is fine: the rule is about the session, not the stack.
        let fresh = token().sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&fresh)
            .reply()
            .await
            .assert_allowed();
    });
}

// ----- scope ------------------------------------------------------------------------------

#[test]
fn insufficient_scope() {
    run(async {
        let stack = crate::shared_stack().await;
        let jwt = token().scope("orders:read").sign();
        stack
            .post(Frontend, "/orders")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_denied(403, "insufficient_scope")
            .assert_challenge(r#"Bearer error="insufficient_scope", scope="orders:write""#);
    });
}

#[test]
fn orders_write_allowed_for_frontend_with_scope() {
    run(async {
        let stack = crate::shared_stack().await;
        let jwt = token().scope("orders:write").sign();
        stack
            .post(Frontend, "/orders")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_allowed();
    });
}

#[test]
fn admin_route_selected_by_context_extensions_requires_admin_scope() {
    run(async {
        let stack = crate::shared_stack().await;
        // sessiongate has no path rule for /admin: only Envoy's per-route
        // `sessiongate.policy: admin` context extension selects the `by-envoy-route` policy.
        let reader = token().scope("orders:read").sign();
        stack
            .get(Frontend, "/admin/users")
            .bearer_auth(&reader)
            .reply()
            .await
            .assert_denied(403, "insufficient_scope")
            .assert_challenge(r#"Bearer error="insufficient_scope", scope="admin""#);

        let admin = token().scope("admin").sign();
        stack
            .get(Frontend, "/admin/users")
            .bearer_auth(&admin)
            .reply()
            .await
            .assert_allowed();
    });
}

// ----- binding to the workload ------------------------------------------------------------

#[test]
fn cnf_mismatch() {
    run(async {
        let stack = crate::shared_stack().await;
        let pki = crate::support::pki::Pki::shared();
        // Bound to batch's certificate, presented over frontend's connection.
        let jwt = token()
            .cnf_thumbprint(&pki.client(Batch).thumbprint())
            .sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_denied(401, "cnf_mismatch")
            .assert_challenge_starts_with(INVALID_TOKEN);
    });
}

#[test]
fn cnf_matching_peer_certificate_is_allowed() {
    run(async {
        let stack = crate::shared_stack().await;
        let pki = crate::support::pki::Pki::shared();
        let jwt = token()
            .cnf_thumbprint(&pki.client(Frontend).thumbprint())
            .sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_allowed();
    });
}

#[test]
fn cnf_with_the_peer_certificate_and_another_method_fails_closed() {
    run(async {
        let stack = crate::shared_stack().await;
        let pki = crate::support::pki::Pki::shared();
        // The right certificate, and a DPoP key sessiongate cannot check: not bound "enough".
        let jwt = token()
            .claim(
                "cnf",
                serde_json::json!({
                    "x5t#S256": pki.client(Frontend).thumbprint(),
                    "jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
                }),
            )
            .sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_denied(401, "cnf_mismatch")
            .assert_challenge_starts_with(INVALID_TOKEN);
    });
}

#[test]
fn workload_mismatch() {
    run(async {
        let stack = crate::shared_stack().await;
        let jwt = token().client_id(Batch.principal()).sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_denied(403, "workload_mismatch")
            .assert_no_challenge();

        // The workload the claim names is let through.
        let own = token().client_id(Frontend.principal()).sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&own)
            .reply()
            .await
            .assert_allowed();
    });
}

#[test]
fn workload_not_allowed() {
    run(async {
        let stack = crate::shared_stack().await;
        // orders-write admits frontend only.
        let jwt = token().scope("orders:write").sign();
        stack
            .post(Batch, "/orders")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_denied(403, "workload_not_allowed")
            .assert_no_challenge();
    });
}

#[test]
fn session_replayed_by_another_workload() {
    run(async {
        let stack = crate::shared_stack().await;
        let jwt = token().sign();
        // Frontend's first allowed request pins the session to frontend…
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_allowed();
        // …so batch presenting the same token is a replay…
        stack
            .get(Batch, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_denied(401, "session_replayed")
            .assert_challenge_starts_with(INVALID_TOKEN);
        // …and the replay did not steal the session from its owner.
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_allowed();
    });
}

/// A thief re-encodes a stolen ES256 token without any key (`s` becomes `n − s`, which still
/// verifies): it is the same session, so the pin holds and the upstream sees the same handle.
#[test]
fn session_replayed_with_a_re_encoded_ecdsa_signature() {
    run(async {
        let stack = crate::shared_stack().await;
        let jwt = token().alg(Alg::Es256).sub("re-encoded").sign();
        let twin = tokens::ecdsa_twin(&jwt);
        let owner = stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await;
        owner.assert_allowed();
        stack
            .get(Batch, "/orders/1")
            .bearer_auth(&twin)
            .reply()
            .await
            .assert_denied(401, "session_replayed");
        let same = stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&twin)
            .reply()
            .await;
        same.assert_allowed();
        assert_eq!(
            same.upstream_single("x-sessiongate-session"),
            owner.upstream_single("x-sessiongate-session"),
            "one session whatever the encoding"
        );
    });
}

#[test]
fn denied_request_does_not_pin_the_session() {
    run(async {
        let stack = crate::shared_stack().await;
        // Batch's first use is denied (not an allowed writer), so nothing is pinned…
        let jwt = token().scope("orders:read orders:write").sign();
        stack
            .post(Batch, "/orders")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_denied(403, "workload_not_allowed");
        // …and frontend's first allowed request is what pins it.
        stack
            .post(Frontend, "/orders")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_allowed();
        stack
            .get(Batch, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_denied(401, "session_replayed");
    });
}

#[test]
fn session_without_spiffe_id_is_pinned_to_the_certificate() {
    run(async {
        let stack = crate::shared_stack().await;
        // No URI SAN, so no workload identity: the session is pinned to the certificate itself…
        let jwt = token().sign();
        stack
            .get(NonSpiffe, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_allowed();
        // …and a SPIFFE workload presenting the same token is still a replay.
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_denied(401, "session_replayed")
            .assert_challenge_starts_with(INVALID_TOKEN);
    });
}

#[test]
fn non_spiffe_certificate_never_matches_workloads() {
    run(async {
        let stack = crate::shared_stack().await;
        // `/reports` admits every workload of `cluster.local`; a SPIFFE workload gets in…
        let jwt = token().sign();
        stack
            .get(Frontend, "/reports/daily")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_allowed();
        // …a certificate without a URI SAN (principal = subject DN) never does.
        let jwt = token().sign();
        stack
            .get(NonSpiffe, "/reports/daily")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_denied(403, "workload_not_allowed")
            .assert_no_challenge();
    });
}

#[test]
fn non_spiffe_principal_never_matches_binding_claim() {
    run(async {
        let stack = crate::shared_stack().await;
        // The claim equals the DN Envoy reports for this caller, but a DN is not a workload.
        let jwt = token().client_id(NonSpiffe.principal()).sign();
        stack
            .get(NonSpiffe, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_denied(403, "workload_mismatch")
            .assert_no_challenge();
    });
}

// ----- routes -----------------------------------------------------------------------------

#[test]
fn no_route() {
    run(async {
        let stack = crate::shared_stack().await;
        let jwt = token().sign();
        stack
            .get(Frontend, "/inventory/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_denied(403, "no_route")
            .assert_no_challenge();
        // Route matching comes first: no token needed to learn there is no route.
        stack
            .get(Frontend, "/inventory/1")
            .reply()
            .await
            .assert_denied(403, "no_route");
    });
}

// ----- header spoofing --------------------------------------------------------------------

#[test]
fn spoofed_identity_headers_are_overwritten_and_removed() {
    run(async {
        let stack = crate::shared_stack().await;
        let jwt = token().sub("alice").scope("orders:read").sign();
        let reply = stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .header("x-sessiongate-subject", "root")
            .header("x-sessiongate-scopes", "admin orders:write")
            .header("x-sessiongate-workload", Batch.principal())
            .header("x-sessiongate-session", "forged")
            .header("x-sessiongate-anything", "injected")
            .reply()
            .await;

        reply.assert_allowed();
        assert_eq!(reply.upstream_single("x-sessiongate-subject"), "alice");
        assert_eq!(reply.upstream_single("x-sessiongate-scopes"), "orders:read");
        assert_eq!(
            reply.upstream_single("x-sessiongate-workload"),
            Frontend.principal()
        );
        assert_ne!(reply.upstream_single("x-sessiongate-session"), "forged");
        assert!(
            reply.upstream_header("x-sessiongate-anything").is_empty(),
            "client-sent x-sessiongate-anything must be removed: {reply}"
        );
    });
}

#[test]
fn spoofed_headers_are_removed_on_public_route() {
    run(async {
        let stack = crate::shared_stack().await;
        let reply = stack
            .get(Frontend, "/healthz")
            .header("x-sessiongate-subject", "root")
            .header("x-sessiongate-anything", "injected")
            .reply()
            .await;

        reply.assert_allowed();
        assert!(
            reply.upstream_header("x-sessiongate-subject").is_empty(),
            "no token, so no subject; the client's must not pass: {reply}"
        );
        assert!(
            reply.upstream_header("x-sessiongate-anything").is_empty(),
            "client-sent x-sessiongate-anything must be removed: {reply}"
        );
        for name in reply.upstream_sessiongate_headers() {
            for value in reply.upstream_header(&name) {
                assert!(
                    value != "root" && value != "injected",
                    "spoofed value reached the upstream in {name}: {reply}"
                );
            }
        }
    });
}

// ----- bounded verification work (own stack: a budget of 3 new tokens per caller) ----------

/// A caller that keeps presenting new tokens with bad signatures spends its verification
/// budget and is answered 503 `verification_throttled` with `Retry-After`, without verifying;
/// the same bad bytes again are answered from memory; cached sessions never wait.
#[test]
fn verification_budget_spent_is_503_with_retry_after() {
    run(async {
        let yaml = format!(
            "{}limits:\n  verifications:\n    per_caller: 1\n    per_caller_burst: 3\n",
            crate::support::policy::sessiongate_yaml(None)
        );
        let stack = crate::own_stack(&yaml).await;
        let jwt = token().sub("cached-before-the-flood").sign();
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_allowed();
        let forged: Vec<String> = (0..4)
            .map(|n| {
                token()
                    .signer(Signer::Untrusted)
                    .sub(&format!("forged-{n}"))
                    .sign()
            })
            .collect();
        for jwt in &forged[..3] {
            stack
                .get(Batch, "/orders/1")
                .bearer_auth(jwt)
                .reply()
                .await
                .assert_denied(401, "bad_signature");
        }
        let throttled = stack
            .get(Batch, "/orders/1")
            .bearer_auth(&forged[3])
            .reply()
            .await;
        throttled
            .assert_denied(503, "verification_throttled")
            .assert_no_challenge();
        assert_eq!(
            throttled
                .headers
                .get("retry-after")
                .map(|v| v.to_str().unwrap()),
            Some("1"),
            "{throttled}"
        );
        // The first forgery's bytes again: remembered, so answered without any budget.
        stack
            .get(Batch, "/orders/1")
            .bearer_auth(&forged[0])
            .reply()
            .await
            .assert_denied(401, "bad_signature");
        // The cached session never touches the budget.
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_allowed();
    });
}

// ----- DPoP (RFC 9449) ----------------------------------------------------------------------

/// The `algs` of every DPoP challenge under the default `dpop.algorithms`.
const DEFAULT_DPOP_ALGS: &str = r#"algs="RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA""#;

/// An access token bound (`cnf.jkt`) to `client`'s key.
fn dpop_bound(client: &sessiongate_token::testing::DpopClient, subject: &str) -> String {
    token()
        .sub(subject)
        .claim("cnf", serde_json::json!({"jkt": client.jkt()}))
        .sign()
}

/// GET /orders/1 as the frontend with `jwt` as a DPoP credential and `proof` as its proof.
async fn get_with_dpop(stack: &Stack, jwt: &str, proof: String) -> crate::support::reply::Reply {
    stack
        .get(Frontend, "/orders/1")
        .header("authorization", format!("DPoP {jwt}"))
        .header("dpop", proof)
        .reply()
        .await
}

#[test]
fn dpop_sound_proof_is_allowed_once() {
    run(async {
        let stack = crate::shared_stack().await;
        let client = sessiongate_token::testing::DpopClient::es256();
        let jwt = dpop_bound(&client, "table-dpop");
        let proof = client.proof("GET", &stack.url("/orders/1"), &jwt);
        let reply = get_with_dpop(stack, &jwt, proof.clone()).await;
        reply.assert_allowed();
        assert_eq!(reply.upstream_single("x-sessiongate-subject"), "table-dpop");
        get_with_dpop(stack, &jwt, proof)
            .await
            .assert_denied(401, "dpop_proof_replayed")
            .assert_challenge_starts_with(r#"DPoP error="invalid_dpop_proof""#)
            .assert_challenge_contains(DEFAULT_DPOP_ALGS);
    });
}

#[test]
fn invalid_dpop_proof_for_another_method() {
    run(async {
        let stack = crate::shared_stack().await;
        let client = sessiongate_token::testing::DpopClient::ed25519();
        let jwt = dpop_bound(&client, "table-dpop-htm");
        let proof = client.proof("POST", &stack.url("/orders/1"), &jwt);
        get_with_dpop(stack, &jwt, proof)
            .await
            .assert_denied(401, "invalid_dpop_proof")
            .assert_challenge_starts_with(r#"DPoP error="invalid_dpop_proof""#)
            .assert_challenge_contains(DEFAULT_DPOP_ALGS);
    });
}

#[test]
fn dpop_key_mismatch() {
    run(async {
        let stack = crate::shared_stack().await;
        let owner = sessiongate_token::testing::DpopClient::es256();
        let thief = sessiongate_token::testing::DpopClient::es256();
        let jwt = dpop_bound(&owner, "table-dpop-stolen");
        let proof = thief.proof("GET", &stack.url("/orders/1"), &jwt);
        get_with_dpop(stack, &jwt, proof)
            .await
            .assert_denied(401, "dpop_key_mismatch")
            .assert_challenge_starts_with(r#"DPoP error="invalid_token""#);
    });
}

#[test]
fn dpop_downgrade() {
    run(async {
        let stack = crate::shared_stack().await;
        let client = sessiongate_token::testing::DpopClient::es256();
        let jwt = dpop_bound(&client, "table-dpop-downgrade");
        stack
            .get(Frontend, "/orders/1")
            .bearer_auth(&jwt)
            .reply()
            .await
            .assert_denied(401, "dpop_downgrade")
            .assert_challenge_starts_with(r#"DPoP error="invalid_token""#)
            .assert_challenge_contains(DEFAULT_DPOP_ALGS);
    });
}
