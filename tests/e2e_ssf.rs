//! End-to-end: Shared Signals (CAEP) events pushed to sessiongate's admin listener cut the
//! affected sessions on their next request through the real Envoy, and only those.
//!
//! Each test mints sessions for subjects of its own, shows them allowed, pushes a SET signed
//! with the transmitter's fixture key, and asserts what the next requests get; an unaffected
//! session (another subject, or a newer login) keeps working. SETs that must be refused are
//! shown to change nothing. One stack (Envoy + sessiongate with `admin`, `revocation` and `ssf`
//! sections) is shared by the whole binary.
//!
//! Needs Envoy: `scripts/install-envoy.sh` (or `SESSIONGATE_ENVOY=/path/to/envoy`).

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use support::reply::Reply;
use support::ssf::{self, caep, iss_sub, push, push_as, set, unique};
use support::tokens::{Alg, ES256_ONLY_ISSUER, ISSUER, now, token};
use support::{SendExt as _, Stack, Workload, run};
use tokio::sync::OnceCell;

const INVALID_TOKEN: &str = r#"Bearer error="invalid_token""#;
const INSUFFICIENT_AUTH: &str = r#"Bearer error="insufficient_user_authentication""#;

async fn stack() -> &'static Stack {
    static SHARED: OnceCell<Stack> = OnceCell::const_new();
    SHARED
        .get_or_init(|| async {
            let dir = tempfile::tempdir().expect("stack temp dir");
            ssf::prepare_dir(dir.path());
            Stack::start_in(dir, &ssf::sessiongate_yaml()).await
        })
        .await
}

fn admin(stack: &Stack) -> SocketAddr {
    stack
        .sessiongate
        .as_ref()
        .and_then(|s| s.admin_addr)
        .expect("sessiongate reports its admin listener")
}

async fn call(stack: &Stack, jwt: &str) -> Reply {
    stack
        .get(Workload::Frontend, "/orders/1")
        .bearer_auth(jwt)
        .reply()
        .await
}

/// A session of `sub`, issued `age` seconds ago, shown to be allowed.
async fn allowed_session(stack: &Stack, sub: &str, age: i64) -> String {
    let jwt = token().sub(sub).iat_age(age).sign();
    call(stack, &jwt).await.assert_allowed();
    jwt
}

async fn assert_revoked(stack: &Stack, jwt: &str) {
    call(stack, jwt)
        .await
        .assert_denied(401, "revoked")
        .assert_challenge_starts_with(INVALID_TOKEN);
}

// ----- each event kind cuts the affected sessions -----------------------------------------

#[test]
fn session_revoked_denies_the_subjects_sessions_and_spares_others() {
    run(async {
        let stack = stack().await;
        let (alice, bob) = (unique("alice"), unique("bob"));
        let victim = allowed_session(stack, &alice, 5).await;
        let bystander = allowed_session(stack, &bob, 5).await;

        push(
            admin(stack),
            set(iss_sub(&alice), &caep("session-revoked"), json!({})).sign(),
        )
        .await
        .assert_accepted();

        assert_revoked(stack, &victim).await;
        call(stack, &bystander).await.assert_allowed();
    });
}

#[test]
fn session_revoked_for_one_sid_spares_the_users_other_sessions() {
    run(async {
        let stack = stack().await;
        let user = unique("sid-user");
        let (sid, other_sid) = (unique("sid"), unique("sid"));
        let victim = token().sub(&user).claim("sid", sid.as_str()).sign();
        let sibling = token().sub(&user).claim("sid", other_sid.as_str()).sign();
        call(stack, &victim).await.assert_allowed();
        call(stack, &sibling).await.assert_allowed();

        let subject = json!({
            "format": "complex",
            "user": iss_sub(&user),
            "session": {"format": "opaque", "id": sid},
        });
        push(
            admin(stack),
            set(subject, &caep("session-revoked"), json!({})).sign(),
        )
        .await
        .assert_accepted();

        assert_revoked(stack, &victim).await;
        call(stack, &sibling).await.assert_allowed();
    });
}

#[test]
fn credential_change_revokes_tokens_issued_before_it_not_after() {
    run(async {
        let stack = stack().await;
        let (user, bystander) = (unique("cred"), unique("cred-other"));
        let old = allowed_session(stack, &user, 30).await;
        let other = allowed_session(stack, &bystander, 30).await;

        let event = json!({"change_type": "update", "credential_type": "password", "event_timestamp": now() - 10});
        push(
            admin(stack),
            set(iss_sub(&user), &caep("credential-change"), event).sign(),
        )
        .await
        .assert_accepted();

        assert_revoked(stack, &old).await;
        call(stack, &other).await.assert_allowed();
        // Signed in again after the change: a new session is fine.
        let renewed = token().sub(&user).sign();
        call(stack, &renewed).await.assert_allowed();
    });
}

#[test]
fn token_claims_change_of_an_opaque_subject_revokes_its_tokens() {
    run(async {
        let stack = stack().await;
        let (user, bystander) = (unique("claims"), unique("claims-other"));
        let victim = allowed_session(stack, &user, 5).await;
        let other = allowed_session(stack, &bystander, 5).await;

        // `opaque` names a `sub` of the transmitter, which is the token issuer here.
        let event = json!({"claims": {"role": "guest"}});
        push(
            admin(stack),
            set(
                json!({"format": "opaque", "id": user}),
                &caep("token-claims-change"),
                event,
            )
            .sign(),
        )
        .await
        .assert_accepted();

        assert_revoked(stack, &victim).await;
        call(stack, &other).await.assert_allowed();
    });
}

#[test]
fn assurance_level_change_asks_old_logins_to_reauthenticate() {
    run(async {
        let stack = stack().await;
        let (user, bystander) = (unique("aal"), unique("aal-other"));
        let old_login = token().sub(&user).auth_age(60).sign();
        let other = token().sub(&bystander).auth_age(60).sign();
        call(stack, &old_login).await.assert_allowed();
        call(stack, &other).await.assert_allowed();

        let event = json!({
            "namespace": "NIST-AAL", "current_level": "nist-aal2", "previous_level": "nist-aal1",
            "change_direction": "increase", "event_timestamp": now() - 5,
        });
        push(
            admin(stack),
            set(iss_sub(&user), &caep("assurance-level-change"), event).sign(),
        )
        .await
        .assert_accepted();

        call(stack, &old_login)
            .await
            .assert_denied(401, "auth_too_old")
            .assert_challenge_starts_with(INSUFFICIENT_AUTH);
        call(stack, &other).await.assert_allowed();
        // The user authenticated again after the change: allowed.
        let stepped_up = token().sub(&user).auth_age(0).sign();
        call(stack, &stepped_up).await.assert_allowed();
    });
}

#[test]
fn device_compliance_change_to_not_compliant_revokes_the_users_sessions_by_email() {
    run(async {
        let stack = stack().await;
        let user = unique("device");
        let email = format!("{user}@Example.test");
        let victim = token()
            .sub(&user)
            .claim("email", email.to_ascii_lowercase())
            .sign();
        let other = token()
            .sub(&unique("device-other"))
            .claim("email", "someone-else@example.test")
            .sign();
        call(stack, &victim).await.assert_allowed();
        call(stack, &other).await.assert_allowed();

        let subject = json!({"format": "complex", "user": {"format": "email", "email": email}, "device": {"format": "opaque", "id": "laptop-7"}});
        // Back to compliant: nothing happens.
        push(
            admin(stack),
            set(
                subject.clone(),
                &caep("device-compliance-change"),
                json!({"previous_status": "not-compliant", "current_status": "compliant"}),
            )
            .sign(),
        )
        .await
        .assert_accepted();
        call(stack, &victim).await.assert_allowed();

        push(
            admin(stack),
            set(
                subject,
                &caep("device-compliance-change"),
                json!({"previous_status": "compliant", "current_status": "not-compliant"}),
            )
            .sign(),
        )
        .await
        .assert_accepted();
        assert_revoked(stack, &victim).await;
        call(stack, &other).await.assert_allowed();
    });
}

#[test]
fn a_jwt_id_subject_revokes_that_token_only() {
    run(async {
        let stack = stack().await;
        let user = unique("jti-user");
        let (jti, other_jti) = (unique("tok"), unique("tok"));
        let victim = token().sub(&user).jti(&jti).sign();
        let sibling = token().sub(&user).jti(&other_jti).sign();
        call(stack, &victim).await.assert_allowed();
        call(stack, &sibling).await.assert_allowed();

        push(
            admin(stack),
            set(
                json!({"format": "jwt_id", "iss": ISSUER, "jti": jti}),
                &caep("token-claims-change"),
                json!({"claims": {}}),
            )
            .sign(),
        )
        .await
        .assert_accepted();

        assert_revoked(stack, &victim).await;
        call(stack, &sibling).await.assert_allowed();
    });
}

#[test]
fn unknown_event_types_are_accepted_and_change_nothing() {
    run(async {
        let stack = stack().await;
        let user = unique("unknown-event");
        let session = allowed_session(stack, &user, 5).await;
        push(
            admin(stack),
            set(
                iss_sub(&user),
                "https://schemas.openid.net/secevent/risc/event-type/account-purged",
                json!({}),
            )
            .sign(),
        )
        .await
        .assert_accepted();
        call(stack, &session).await.assert_allowed();
    });
}

// ----- a transmitter acts only on its own issuers ------------------------------------------

/// A session of `sub` at the second trusted issuer, which the transmitter does not act for
/// (the transmitter is [`ISSUER`], and its `issuers` default to that one issuer).
async fn allowed_session_at_other_issuer(stack: &Stack, sub: &str) -> String {
    let jwt = token()
        .iss(ES256_ONLY_ISSUER)
        .alg(Alg::Es256)
        .sub(sub)
        .sign();
    call(stack, &jwt).await.assert_allowed();
    jwt
}

#[test]
fn a_transmitter_naming_another_issuers_user_is_refused_and_that_session_lives_on() {
    run(async {
        let stack = stack().await;
        let user = unique("other-idp-user");
        let theirs = allowed_session_at_other_issuer(stack, &user).await;
        let ours = allowed_session(stack, &user, 5).await;

        let reply = push(
            admin(stack),
            set(
                json!({"format": "iss_sub", "iss": ES256_ONLY_ISSUER, "sub": user}),
                &caep("session-revoked"),
                json!({}),
            )
            .sign(),
        )
        .await;
        reply.assert_refused("access_denied");
        assert!(reply.body.contains(ES256_ONLY_ISSUER), "{reply:?}");

        call(stack, &theirs).await.assert_allowed();
        // Nothing of the refused SET was applied, not even to the transmitter's own issuer.
        call(stack, &ours).await.assert_allowed();
    });
}

#[test]
fn an_email_subject_revokes_only_sessions_of_the_transmitters_issuers() {
    run(async {
        let stack = stack().await;
        let user = unique("shared-email");
        let email = format!("{user}@example.test");
        let ours = token().sub(&user).claim("email", email.as_str()).sign();
        let theirs = token()
            .iss(ES256_ONLY_ISSUER)
            .alg(Alg::Es256)
            .sub(&user)
            .claim("email", email.as_str())
            .sign();
        call(stack, &ours).await.assert_allowed();
        call(stack, &theirs).await.assert_allowed();

        push(
            admin(stack),
            set(
                json!({"format": "email", "email": email}),
                &caep("credential-change"),
                json!({}),
            )
            .sign(),
        )
        .await
        .assert_accepted();

        assert_revoked(stack, &ours).await;
        call(stack, &theirs).await.assert_allowed();
    });
}

// ----- refused and replayed SETs change nothing -------------------------------------------

#[test]
fn bad_sets_are_refused_with_the_rfc_8935_error_and_change_nothing() {
    run(async {
        let stack = stack().await;
        let user = unique("refused");
        let session = allowed_session(stack, &user, 5).await;
        let revoke = || set(iss_sub(&user), &caep("session-revoked"), json!({}));
        let admin = admin(stack);

        for (name, reply, err) in [
            (
                "malformed",
                push(admin, "not.a-set".into()).await,
                "invalid_request",
            ),
            (
                "unsigned",
                push(admin, revoke().unsigned()).await,
                "authentication_failed",
            ),
            (
                "wrongly signed",
                push(admin, revoke().untrusted_key().sign()).await,
                "authentication_failed",
            ),
            (
                "unknown kid",
                push(admin, revoke().kid("rotated-away").sign()).await,
                "invalid_key",
            ),
            (
                "expired (iat an hour ago)",
                push(admin, revoke().claim("iat", now() - 3600).sign()).await,
                "invalid_request",
            ),
            (
                "no jti",
                push(admin, revoke().without("jti").sign()).await,
                "invalid_request",
            ),
            (
                "foreign issuer",
                push(admin, revoke().claim("iss", "https://evil.example").sign()).await,
                "invalid_issuer",
            ),
            (
                "other audience",
                push(admin, revoke().claim("aud", "someone-else").sign()).await,
                "invalid_audience",
            ),
            (
                "unsupported subject format",
                push(
                    admin,
                    revoke()
                        .claim(
                            "sub_id",
                            json!({"format": "phone_number", "phone_number": "+15550100"}),
                        )
                        .sign(),
                )
                .await,
                "invalid_request",
            ),
            (
                "wrong media type",
                push_as(admin, "application/json", revoke().sign()).await,
                "invalid_request",
            ),
        ] {
            assert!(
                reply.status == 400 && reply.err().as_deref() == Some(err),
                "{name}: expected 400 `{err}`, got {reply:?}"
            );
            call(stack, &session).await.assert_allowed();
        }
        // A correct SET still works afterwards: refusals did not poison its jti or the store.
        push(admin, revoke().sign()).await.assert_accepted();
        assert_revoked(stack, &session).await;
    });
}

#[test]
fn a_replayed_jti_is_acknowledged_and_ignored() {
    run(async {
        let stack = stack().await;
        let user = unique("replay");
        let session = allowed_session(stack, &user, 5).await;
        let jti = unique("replayed-jti");

        // First delivery: an event that changes nothing.
        let harmless = set(
            iss_sub(&user),
            "https://schemas.openid.net/secevent/ssf/event-type/verification",
            json!({"state": "x"}),
        )
        .jti(&jti)
        .sign();
        push(admin(stack), harmless.clone()).await.assert_accepted();
        // The same SET again, and then a revocation reusing its jti: both replays, ignored.
        push(admin(stack), harmless).await.assert_accepted();
        push(
            admin(stack),
            set(iss_sub(&user), &caep("session-revoked"), json!({}))
                .jti(&jti)
                .sign(),
        )
        .await
        .assert_accepted();

        call(stack, &session).await.assert_allowed();
    });
}

// ----- how fast ---------------------------------------------------------------------------

/// The README's figure: from the push's 202 to the first request through Envoy coming back
/// denied. The property asserted is that the *first* request after the 202 is denied, every
/// time; the timings are printed (`--nocapture`).
#[test]
fn the_first_request_after_the_202_is_denied() {
    run(async {
        let stack = stack().await;
        let runs: usize = std::env::var("SSF_LATENCY_RUNS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(20);
        let (mut took, mut pushes) = (Vec::new(), Vec::new());
        let (mut allowed, mut other_denials) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let user = unique("latency");
            let session = allowed_session(stack, &user, 5).await;
            // Baseline: the same session's round trip while still allowed (cached, as after).
            let before = Instant::now();
            call(stack, &session).await.assert_allowed();
            allowed.push(before.elapsed());
            // Baseline: a denial that has nothing to do with SSF (a garbage token).
            let before = Instant::now();
            call(stack, "not-a-token")
                .await
                .assert_denied(401, "malformed_token");
            other_denials.push(before.elapsed());
            let set = set(iss_sub(&user), &caep("session-revoked"), json!({})).sign();
            let sent = Instant::now();
            push(admin(stack), set).await.assert_accepted();
            let acknowledged = Instant::now();
            let reply = call(stack, &session).await;
            took.push(acknowledged.elapsed());
            pushes.push(acknowledged - sent);
            reply.assert_denied(401, "revoked");
        }
        let (median, max) = median_max(&mut took);
        let (push_median, push_max) = median_max(&mut pushes);
        let (allowed_median, allowed_max) = median_max(&mut allowed);
        let (denial_median, denial_max) = median_max(&mut other_denials);
        eprintln!(
            "SSF {runs} runs: 202 -> first denied request through Envoy: median {median:?}, \
             max {max:?}; an allowed request's round trip: median {allowed_median:?}, max \
             {allowed_max:?}; any other denial's round trip: median {denial_median:?}, max \
             {denial_max:?}; POST -> 202 (durable store included): median {push_median:?}, \
             max {push_max:?}"
        );
        assert!(max < Duration::from_secs(2), "{took:?}");
    });
}

fn median_max(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    (samples[samples.len() / 2], samples[samples.len() - 1])
}

// ----- bounded verification work (own stack: a budget of 2 SETs per sending address) --------

/// Whoever can reach the push endpoint can make sessiongate verify signatures: per sending
/// address, forged SETs beyond the budget are answered 429 with `Retry-After` without being
/// verified, while the transmitter, sending from another address, is served.
#[test]
fn a_source_over_its_set_verification_budget_gets_429_and_the_transmitter_is_served() {
    run(async {
        let dir = tempfile::tempdir().expect("stack temp dir");
        ssf::prepare_dir(dir.path());
        let yaml = format!(
            "{}limits:\n  ssf_verifications:\n    per_source: 1\n    per_source_burst: 2\n",
            ssf::sessiongate_yaml()
        );
        let stack = Stack::start_in(dir, &yaml).await;
        let user = unique("push-budget");
        let session = allowed_session(&stack, &user, 5).await;
        // The attacker pushes from 127.0.0.2 (any loopback address reaches the listener).
        let attacker = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
            .build()
            .unwrap();
        let forged: Vec<String> = (0..3)
            .map(|_| {
                set(iss_sub(&user), &caep("session-revoked"), json!({}))
                    .untrusted_key()
                    .sign()
            })
            .collect();
        let url = format!("http://{}{}", admin(&stack), ssf::PUSH_PATH);
        let mut answers = Vec::new();
        for set in forged {
            let response = attacker
                .post(&url)
                .header("content-type", "application/secevent+jwt")
                .body(set)
                .send()
                .await
                .unwrap();
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            answers.push((response.status().as_u16(), retry_after));
        }
        assert_eq!(
            answers,
            [(400, None), (400, None), (429, Some("1".to_owned()))],
            "two forgeries verified and refused, the third not verified"
        );
        call(&stack, &session).await.assert_allowed();
        // The transmitter (from 127.0.0.1) has a budget of its own.
        push(
            admin(&stack),
            set(iss_sub(&user), &caep("session-revoked"), json!({})).sign(),
        )
        .await
        .assert_accepted();
        assert_revoked(&stack, &session).await;
    });
}
