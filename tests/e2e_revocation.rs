//! End-to-end: revocation through the admin API, judged by the real Envoy 1.40 in front of the
//! real sessiongate binary.
//!
//! For each selector (subject, `jti`, `sid`, `client_id`, workload, issuer-wide watermark): a
//! session that was allowed is denied on its very next request (401, `revoked`,
//! `invalid_token`) while an unaffected session keeps working. A revocation survives `kill -9`
//! right after the acknowledgement; a corrupt log stops start-up; bad admin credentials are
//! refused. `ack_to_deny_latency` measures the README's figure.
//!
//! Selectors here act process-wide, so tests sharing the stack keep out of each other's way:
//! only the workload test uses the `batch` workload, only the watermark test uses the
//! ES256-only issuer, and every other test uses its own subject, `jti`, `sid` or `client_id`.

mod support;

use std::time::{Duration, Instant};

use sessiongate::admin::proto::{self, selector::Kind};
use support::tokens::{Alg, ES256_ONLY_ISSUER, ISSUER, token};
use support::{SendExt as _, Stack, Workload, admin, run};
use tokio::sync::OnceCell;

use Workload::{Batch, Frontend};

const INVALID_TOKEN: &str = r#"Bearer error="invalid_token""#;

/// The stack these tests share: the e2e policy plus an admin listener and a revocation log.
async fn stack() -> &'static Stack {
    static SHARED: OnceCell<Stack> = OnceCell::const_new();
    SHARED
        .get_or_init(|| async {
            let yaml = admin::with_admin(&support::policy::sessiongate_yaml(None));
            Stack::start_in(admin::prepared_dir(), &yaml).await
        })
        .await
}

fn admin_addr(stack: &Stack) -> std::net::SocketAddr {
    stack
        .sessiongate
        .as_ref()
        .and_then(|s| s.admin_addr)
        .expect("the stack has an admin listener")
}

/// GET /orders/1 as `workload` with `jwt`.
async fn order(stack: &Stack, workload: Workload, jwt: &str) -> support::reply::Reply {
    stack
        .get(workload, "/orders/1")
        .bearer_auth(jwt)
        .reply()
        .await
}

fn assert_revoked(reply: &support::reply::Reply) {
    reply
        .assert_denied(401, "revoked")
        .assert_challenge_starts_with(INVALID_TOKEN);
}

/// The scenario every selector must pass: both sessions allowed; revoke; the victim's next
/// request is denied as revoked, the bystander's still allowed.
async fn revoking_denies_only_the_matching_session(
    kind: Kind,
    victim: (Workload, String),
    bystander: (Workload, String),
) {
    let stack = stack().await;
    order(stack, victim.0, &victim.1).await.assert_allowed();
    order(stack, bystander.0, &bystander.1)
        .await
        .assert_allowed();

    let mut client = admin::client(admin_addr(stack)).await;
    admin::revoke(&mut client, kind, None).await;

    assert_revoked(&order(stack, victim.0, &victim.1).await);
    order(stack, bystander.0, &bystander.1)
        .await
        .assert_allowed();
}

#[test]
fn revoke_by_subject() {
    run(revoking_denies_only_the_matching_session(
        admin::subject(ISSUER, "revoked-by-sub"),
        (Frontend, token().sub("revoked-by-sub").sign()),
        (Frontend, token().sub("spared-by-sub").sign()),
    ));
}

#[test]
fn revoke_by_jti() {
    let victim = token().sub("jti-user").jti("revoked-jti-1").sign();
    run(revoking_denies_only_the_matching_session(
        Kind::TokenId(proto::TokenId {
            issuer: ISSUER.into(),
            jti: "revoked-jti-1".into(),
        }),
        (Frontend, victim),
        // Same subject, another token: only the one token is revoked.
        (Frontend, token().sub("jti-user").sign()),
    ));
}

#[test]
fn revoke_by_sid() {
    run(revoking_denies_only_the_matching_session(
        Kind::OidcSession(proto::OidcSession {
            issuer: ISSUER.into(),
            sid: "revoked-sid".into(),
        }),
        (
            Frontend,
            token().sub("sid-user").claim("sid", "revoked-sid").sign(),
        ),
        (
            Frontend,
            token().sub("sid-user").claim("sid", "other-sid").sign(),
        ),
    ));
}

#[test]
fn revoke_by_client_id() {
    // The e2e policy binds `client_id` to the caller's SPIFFE ID, so a client's tokens travel
    // with that workload; the bystander is the frontend's token without a client_id.
    run(revoking_denies_only_the_matching_session(
        Kind::ClientId(Frontend.principal().into()),
        (
            Frontend,
            token()
                .sub("client-user")
                .client_id(Frontend.principal())
                .sign(),
        ),
        (Frontend, token().sub("client-user").sign()),
    ));
}

#[test]
fn revoke_by_workload() {
    run(revoking_denies_only_the_matching_session(
        Kind::Workload(Batch.principal().into()),
        (Batch, token().sub("workload-user").sign()),
        (Frontend, token().sub("workload-user").sign()),
    ));
}

#[test]
fn revoke_issuer_wide_watermark_spares_tokens_issued_after_it() {
    run(async {
        let stack = stack().await;
        let old = token().alg(Alg::Es256).iss(ES256_ONLY_ISSUER).sign();
        let other_issuer = token().sub("watermark-bystander").sign();
        order(stack, Frontend, &old).await.assert_allowed();
        order(stack, Frontend, &other_issuer).await.assert_allowed();

        let mut client = admin::client(admin_addr(stack)).await;
        let revocation = admin::revoke(
            &mut client,
            Kind::Issuer(proto::Issuer {
                issuer: ES256_ONLY_ISSUER.into(),
            }),
            None,
        )
        .await;

        assert_revoked(&order(stack, Frontend, &old).await);
        order(stack, Frontend, &other_issuer).await.assert_allowed();
        // A token the issuer signs after the watermark is fine: users can sign in again.
        let after_secs = revocation.issued_before_unix_ms / 1000 + 1;
        let fresh = token()
            .alg(Alg::Es256)
            .iss(ES256_ONLY_ISSUER)
            .claim("iat", after_secs)
            .sign();
        order(stack, Frontend, &fresh).await.assert_allowed();
    });
}

#[test]
fn explain_shows_the_session_and_that_it_is_revoked() {
    run(async {
        let stack = stack().await;
        let jwt = token()
            .sub("explained-user")
            .claim("sid", "explained-sid")
            .scope("orders:read profile")
            .sign();
        order(stack, Frontend, &jwt).await.assert_allowed();
        let mut client = admin::client(admin_addr(stack)).await;
        let explain = |client: &mut sessiongate::admin::client::Client, token: String| {
            let mut client = client.clone();
            async move {
                client
                    .explain_session(proto::ExplainSessionRequest { token })
                    .await
                    .unwrap()
                    .into_inner()
            }
        };
        let answer = explain(&mut client, jwt.clone()).await;
        assert!(answer.found);
        assert_eq!(answer.subject, "explained-user");
        assert_eq!(answer.sid, "explained-sid");
        assert_eq!(answer.issuer, ISSUER);
        assert_eq!(answer.pinned_workload, Frontend.principal());
        assert_eq!(answer.key_id, Alg::Rs256.kid());
        assert!(answer.scopes.contains(&"profile".to_owned()));
        assert!(answer.last_allowed_unix_ms.is_some());
        assert!(answer.would_be_denied.is_empty(), "{answer:?}");
        assert!(
            !format!("{answer:?}").contains(&jwt),
            "never echoes the token"
        );

        admin::revoke(&mut client, admin::subject(ISSUER, "explained-user"), None).await;
        let answer = explain(&mut client, jwt).await;
        let reasons: Vec<&str> = answer
            .would_be_denied
            .iter()
            .map(|d| d.reason.as_str())
            .collect();
        assert_eq!(reasons, ["revoked"]);

        let unseen = explain(&mut client, token().sign()).await;
        assert!(!unseen.found);
    });
}

#[test]
fn bad_admin_credentials_are_refused_and_change_nothing() {
    run(async {
        let stack = stack().await;
        let jwt = token().sub("credential-user").sign();
        order(stack, Frontend, &jwt).await.assert_allowed();
        for wrong in ["", "e2e-admin-token-but-wrong-0123"] {
            let mut client = admin::client_with(admin_addr(stack), wrong).await;
            let status = client
                .revoke(proto::RevokeRequest {
                    selector: Some(proto::Selector {
                        kind: Some(admin::subject(ISSUER, "credential-user")),
                    }),
                    issued_before_unix_ms: None,
                    reason: String::new(),
                })
                .await
                .unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{wrong:?}");
            let status = client
                .list_revocations(proto::ListRevocationsRequest {})
                .await
                .unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{wrong:?}");
        }
        order(stack, Frontend, &jwt).await.assert_allowed();
        let output = stack.output();
        assert!(
            !output.contains("e2e-admin-token-but-wrong") && !output.contains(admin::TOKEN),
            "admin tokens must never be logged"
        );
    });
}

#[test]
fn a_revocation_survives_kill_9_right_after_the_acknowledgement() {
    run(async {
        let yaml = admin::with_admin(&support::policy::sessiongate_yaml(None));
        let mut stack = Stack::start_in(admin::prepared_dir(), &yaml).await;
        let victim = token().sub("durable-user").sign();
        let bystander = token().sub("durable-bystander").sign();
        order(&stack, Frontend, &victim).await.assert_allowed();
        order(&stack, Frontend, &bystander).await.assert_allowed();

        let first = stack.sessiongate.as_mut().expect("sessiongate");
        let (grpc, admin_at) = (first.grpc_addr, first.admin_addr.expect("admin"));
        let mut client = admin::client(admin_at).await;
        admin::revoke(&mut client, admin::subject(ISSUER, "durable-user"), None).await;
        first.kill_hard().await;

        // A new process on the same ports and the same revocation log; Envoy is untouched.
        stack
            .restart_sessiongate(&admin::on_ports(&yaml, grpc, admin_at))
            .await;

        assert_revoked(&stack.get_once_back(Frontend, "/orders/1", &victim).await);
        order(&stack, Frontend, &bystander).await.assert_allowed();
        let listed = admin::list(admin_at).await;
        assert_eq!(listed.len(), 1, "{listed:?}");
    });
}

/// Issue 11: retention is fixed when a revocation is recorded, not recomputed from whatever
/// policy runs later. Narrow `max_token_age` (here across a restart, which drops what the
/// current policy calls expired), widen it again by a hot reload: the revoked token, still
/// young enough for the wide policy, must stay revoked until the `forget_after` that `Revoke`
/// answered.
#[test]
fn a_revocation_outlives_a_policy_that_narrows_and_widens_again() {
    run(async {
        let wide = admin::with_admin(&support::policy::sessiongate_yaml(None));
        let mut stack = Stack::start_in(admin::prepared_dir(), &wide).await;
        // Ten minutes old: accepted by the 15-minute policy, not by a 1-minute one.
        let victim = token().sub("narrowed-user").iat_age(10 * 60).sign();
        let witness = token().sub("narrowed-witness").iat_age(10 * 60).sign();
        order(&stack, Frontend, &victim).await.assert_allowed();

        let first = stack.sessiongate.as_ref().expect("sessiongate");
        let (grpc, admin_at) = (first.grpc_addr, first.admin_addr.expect("admin"));
        let mut client = admin::client(admin_at).await;
        let cut_off_ms = u64::try_from(support::tokens::now() - 9 * 60).unwrap() * 1000;
        let recorded = admin::revoke(
            &mut client,
            admin::subject(ISSUER, "narrowed-user"),
            Some(cut_off_ms),
        )
        .await;
        let promised_ms = cut_off_ms
            + u64::try_from(support::policy::MAX_TOKEN_AGE_SECS + support::policy::CLOCK_SKEW_SECS)
                .unwrap()
                * 1000;
        assert_eq!(recorded.forget_after_unix_ms, promised_ms, "{recorded:?}");
        assert_revoked(&order(&stack, Frontend, &victim).await);
        stack.kill_sessiongate().await;

        // Restarted with every max_token_age at most 2 minutes: the cut-off (9 minutes ago) is
        // past that horizon, so a horizon recomputed from this policy would forget the entry.
        let narrow = wide.replace("max_token_age: 15m", "max_token_age: 1m");
        assert_ne!(narrow, wide);
        let narrow_on_ports = admin::on_ports(&narrow, grpc, admin_at);
        stack.restart_sessiongate(&narrow_on_ports).await;
        stack
            .get_once_back(Frontend, "/orders/1", &witness)
            .await
            .assert_denied(401, "token_too_old");

        // Widened again by a hot reload: the witness (same age, not revoked) shows when it
        // applied; the victim must still be revoked.
        std::fs::write(
            stack.dir().join("sessiongate.yaml"),
            admin::on_ports(&wide, grpc, admin_at),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while order(&stack, Frontend, &witness).await.status != 200 {
            assert!(
                Instant::now() < deadline,
                "the widening reload never applied\n{}",
                stack.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_revoked(&order(&stack, Frontend, &victim).await);
        let listed = admin::list(admin_at).await;
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].forget_after_unix_ms, promised_ms);
    });
}

#[test]
fn a_corrupt_revocation_log_stops_start_up_with_a_clear_message() {
    let dir = admin::prepared_dir();
    std::fs::copy(support::tokens::jwks_path(), dir.path().join("jwks.json")).unwrap();
    let config = dir.path().join("sessiongate.yaml");
    std::fs::write(
        &config,
        admin::with_admin(&support::policy::sessiongate_yaml(None)),
    )
    .unwrap();
    let log = dir.path().join(admin::REVOCATION_PATH);
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    // A valid header, then a record whose checksums cannot match.
    let mut bytes = b"SGREVL\x00\x01".to_vec();
    bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, b'{', b'}']);
    std::fs::write(&log, &bytes).unwrap();

    let output = std::process::Command::new(support::sessiongate::binary())
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("SESSIONGATE_ADMIN_TOKEN")
        .output()
        .expect("run sessiongate");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("revocation store is corrupt")
            && stderr.contains(&log.display().to_string())
            && stderr.contains("byte offset 8"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&log).unwrap(),
        bytes,
        "a corrupt log is left as it was"
    );
}

/// The README's figure: time from the admin API's acknowledgement of `Revoke` to the first
/// denied request through Envoy, over 50 revocations of 50 live sessions. Every first request
/// after the acknowledgement must already be denied. Run with `--nocapture` to see the figure.
#[test]
fn ack_to_deny_latency() {
    run(async {
        const ROUNDS: usize = 50;
        let stack = stack().await;
        let mut client = admin::client(admin_addr(stack)).await;
        let (mut ack_to_deny, mut revoke_calls, mut allowed) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let sub = format!("latency-{round}");
            let jwt = token().sub(&sub).sign();
            order(stack, Frontend, &jwt).await.assert_allowed();
            // The same request while the session is still good: the round trip to compare with.
            let sent = Instant::now();
            order(stack, Frontend, &jwt).await.assert_allowed();
            allowed.push(sent.elapsed());
            let asked = Instant::now();
            admin::revoke(&mut client, admin::subject(ISSUER, &sub), None).await;
            let acknowledged = Instant::now();
            let reply = order(stack, Frontend, &jwt).await;
            let denied = Instant::now();
            assert_revoked(&reply);
            revoke_calls.push(acknowledged - asked);
            ack_to_deny.push(denied - acknowledged);
        }
        let summary = |mut samples: Vec<Duration>| {
            samples.sort();
            (samples[samples.len() / 2], *samples.last().unwrap())
        };
        let (median, max) = summary(ack_to_deny);
        let (revoke_median, revoke_max) = summary(revoke_calls);
        let (allowed_median, allowed_max) = summary(allowed);
        println!(
            "ack_to_deny over {ROUNDS} revocations: median {median:?}, max {max:?} \
             (an allowed request of the same session before: median {allowed_median:?}, max \
             {allowed_max:?}; Revoke call incl. fsync: median {revoke_median:?}, max \
             {revoke_max:?}); the first request after every acknowledgement was denied"
        );
    });
}
