//! End-to-end: opaque tokens introspected (RFC 7662) at a real HTTP endpoint, judged by the
//! real sessiongate binary behind the real Envoy 1.40, callers with mTLS SPIFFE certificates.
//!
//! The test identity provider ([`support::introspection_server`]) checks sessiongate's client
//! credentials and counts the introspection requests, so caching and single flight are
//! asserted by call counts. Each test runs its own provider and stack: they change the
//! provider's behaviour (revoke, fail, hang, slow down).

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::introspection_server::{
    CLIENT_ID, CLIENT_SECRET, ClientAuth, IntrospectionServer, Mode, Signing, assertion_key_file,
};
use support::reply::Reply;
use support::tokens::AUDIENCE;
use support::{SendExt as _, Stack, Workload, run};

use Workload::Frontend;

/// `cache_ttl` of the introspecting issuer: how long a revoked opaque token stays accepted.
const CACHE_TTL: Duration = Duration::from_secs(1);

/// The e2e policy with an issuer whose opaque tokens `idp` introspects. Its `timeout` is
/// shorter than Envoy's ext_authz timeout (1 s), so a hanging endpoint is sessiongate's 503
/// with a reason, not Envoy's bare one.
fn introspecting_yaml(idp: &IntrospectionServer) -> String {
    introspecting_yaml_with(
        idp,
        r#"{ method: client_secret_basic, secret_file: "introspection-secret" }"#,
        "",
    )
}

/// [`introspecting_yaml`] with another `client_auth`, and `extra` lines (indented four
/// spaces) in the issuer and six in its `introspection`, e.g. keys and `signed_responses`.
fn introspecting_yaml_with(idp: &IntrospectionServer, client_auth: &str, extra: &str) -> String {
    let issuer = format!(
        r#"issuers:
  - issuer: "{issuer}"
    audiences: ["{AUDIENCE}"]
{extra}    introspection:
      endpoint: "{endpoint}"
      client_id: "{CLIENT_ID}"
      client_auth: {client_auth}
      signed_responses: {signed}
      cache_ttl: {ttl}s
      timeout: 500ms
      max_concurrent: 4
"#,
        issuer = support::introspection_server::OPAQUE_ISSUER,
        endpoint = idp.endpoint(),
        ttl = CACHE_TTL.as_secs(),
        signed = !extra.is_empty(),
    );
    let yaml = support::policy::sessiongate_yaml(None);
    assert!(yaml.contains("issuers:\n"), "the test policy changed");
    yaml.replacen("issuers:\n", &issuer, 1)
}

/// A provider and a stack trusting it, the client secret written beside the config.
async fn start() -> (IntrospectionServer, Stack) {
    let idp = IntrospectionServer::start().await;
    let dir = tempfile::tempdir().expect("stack dir");
    std::fs::write(dir.path().join("introspection-secret"), CLIENT_SECRET).expect("secret");
    let stack = Stack::start_in(dir, &introspecting_yaml(&idp)).await;
    (idp, stack)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// What the provider says about a token for `alice` reading orders, minted now.
fn claims() -> Value {
    let now = now();
    json!({"aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 600,
           "scope": "orders:read", "client_id": Frontend.principal()})
}

async fn order(stack: &Stack, token: &str) -> Reply {
    stack
        .get(Frontend, "/orders/1")
        .bearer_auth(token)
        .reply()
        .await
}

/// Sends GET /orders/1 with `token` until the reply satisfies `done` (bounded).
async fn order_until(stack: &Stack, token: &str, done: impl Fn(&Reply) -> bool) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let reply = order(stack, token).await;
        if done(&reply) || Instant::now() > deadline {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn an_active_opaque_token_is_allowed_and_introspected_once() {
    run(async {
        let (idp, stack) = start().await;
        let token = idp.issue(claims());
        let reply = order(&stack, &token).await;
        reply.assert_allowed();
        assert_eq!(
            reply.body["headers"]["x-sessiongate-subject"][0].as_str(),
            Some("alice"),
            "the upstream learns what the issuer said: {reply}"
        );
        order(&stack, &token).await.assert_allowed();
        assert_eq!(
            idp.calls(),
            1,
            "the second request is served from the session cache"
        );
        assert_eq!(idp.refused_clients(), 0, "sessiongate authenticated itself");
    });
}

#[test]
fn an_unknown_opaque_token_is_denied_revoked_and_not_asked_about_twice() {
    run(async {
        let (idp, stack) = start().await;
        let unknown = support::introspection_server::opaque_token();
        order(&stack, &unknown).await.assert_denied(401, "revoked");
        order(&stack, &unknown).await.assert_denied(401, "revoked");
        assert_eq!(idp.calls(), 1, "an inactive answer is remembered");
    });
}

#[test]
fn the_same_rules_apply_to_an_introspected_token_as_to_a_jwt() {
    run(async {
        let (idp, stack) = start().await;
        let mut narrow = claims();
        narrow["scope"] = json!("profile");
        let token = idp.issue(narrow);
        order(&stack, &token)
            .await
            .assert_denied(403, "insufficient_scope");
        let mut old = claims();
        old["iat"] = json!(now() - 3600);
        let token = idp.issue(old);
        order(&stack, &token)
            .await
            .assert_denied(401, "token_too_old");
        let mut elsewhere = claims();
        elsewhere["aud"] = json!("billing-api");
        let token = idp.issue(elsewhere);
        order(&stack, &token)
            .await
            .assert_denied(401, "wrong_audience");
    });
}

#[test]
fn active_false_revokes_a_cached_session_once_its_cache_time_is_over() {
    run(async {
        let (idp, stack) = start().await;
        let token = idp.issue(claims());
        order(&stack, &token).await.assert_allowed();
        idp.revoke(&token);
        let revoked_at = Instant::now();
        let reply = order_until(&stack, &token, |reply| reply.status != 200).await;
        reply.assert_denied(401, "revoked");
        assert!(
            revoked_at.elapsed() < CACHE_TTL + Duration::from_secs(5),
            "revocation took {:?}",
            revoked_at.elapsed()
        );
        assert_eq!(idp.calls(), 2, "introspected again once, after cache_ttl");
    });
}

/// The sidecar's `sessiongate_introspections_total` sample for `result`, if exposed.
async fn introspections(stack: &Stack, result: &str) -> Option<u64> {
    let sessiongate = stack.sessiongate.as_ref().expect("stack runs sessiongate");
    let text = reqwest::get(format!("http://{}/metrics", sessiongate.http_addr))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics text");
    let series = format!(
        "sessiongate_introspections_total{{issuer=\"{}\",result=\"{result}\"}} ",
        support::introspection_server::OPAQUE_ISSUER
    );
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map(|value| value.trim().parse().expect("a counter value"))
}

#[test]
fn while_the_endpoint_fails_cached_sessions_work_and_new_opaque_tokens_get_503() {
    run(async {
        let (idp, stack) = start().await;
        assert_eq!(
            introspections(&stack, "unavailable").await,
            Some(0),
            "the failure series exists at 0 from start-up"
        );
        let cached = idp.issue(claims());
        order(&stack, &cached).await.assert_allowed();
        idp.set_mode(Mode::Fail);
        order(&stack, &cached).await.assert_allowed();
        let new = idp.issue(claims());
        order(&stack, &new)
            .await
            .assert_denied(503, "internal_error");
        assert_eq!(introspections(&stack, "unavailable").await, Some(1));
        idp.set_mode(Mode::Answer);
        order(&stack, &new).await.assert_allowed();
        assert_eq!(introspections(&stack, "answered").await, Some(2));
    });
}

#[test]
fn a_hanging_endpoint_is_given_up_on_after_its_timeout_with_503() {
    run(async {
        let (idp, stack) = start().await;
        idp.set_mode(Mode::Hang);
        let token = idp.issue(claims());
        let started = Instant::now();
        order(&stack, &token)
            .await
            .assert_denied(503, "internal_error");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "the 500ms timeout bounds the wait: took {:?}",
            started.elapsed()
        );
    });
}

#[test]
fn concurrent_first_requests_of_one_token_share_one_introspection() {
    run(async {
        let (idp, stack) = start().await;
        idp.set_mode(Mode::Slow(Duration::from_millis(300)));
        let token = idp.issue(claims());
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (client, url) = (stack.client(Frontend).clone(), stack.url("/orders/1"));
            let token = token.clone();
            requests.spawn(async move { client.get(url).bearer_auth(token).reply().await });
        }
        while let Some(reply) = requests.join_next().await {
            reply.expect("request task").assert_allowed();
        }
        assert_eq!(idp.calls(), 1, "one request for eight concurrent checks");
    });
}

#[test]
fn wrong_client_credentials_fail_closed_with_503() {
    run(async {
        let idp = IntrospectionServer::start().await;
        let dir = tempfile::tempdir().expect("stack dir");
        std::fs::write(dir.path().join("introspection-secret"), "not-the-secret").expect("secret");
        let stack = Stack::start_in(dir, &introspecting_yaml(&idp)).await;
        let token = idp.issue(claims());
        order(&stack, &token)
            .await
            .assert_denied(503, "internal_error");
        assert_eq!(idp.refused_clients(), 1);
    });
}

/// The in-process mode: Envoy runs sessiongate as a dynamic module; a check waiting for the
/// introspection answer pauses its request and resumes on Envoy's worker.
#[test]
fn the_in_process_module_introspects_opaque_tokens_alike() {
    run(async {
        let idp = IntrospectionServer::start().await;
        let dir = tempfile::tempdir().expect("stack dir");
        std::fs::write(dir.path().join("introspection-secret"), CLIENT_SECRET).expect("secret");
        let stack = Stack::start_module_in(dir, &introspecting_yaml(&idp)).await;

        let token = idp.issue(claims());
        order(&stack, &token).await.assert_allowed();
        order(&stack, &token).await.assert_allowed();
        assert_eq!(
            idp.calls(),
            1,
            "the second request is served from the session cache"
        );

        let unknown = support::introspection_server::opaque_token();
        order(&stack, &unknown).await.assert_denied(401, "revoked");

        idp.set_mode(Mode::Fail);
        order(&stack, &token).await.assert_allowed();
        let new = idp.issue(claims());
        order(&stack, &new)
            .await
            .assert_denied(503, "internal_error");

        idp.set_mode(Mode::Answer);
        idp.revoke(&token);
        order_until(&stack, &token, |reply| reply.status != 200)
            .await
            .assert_denied(401, "revoked");
    });
}

#[test]
fn private_key_jwt_authenticates_each_request_with_a_fresh_assertion() {
    run(async {
        let idp = IntrospectionServer::start().await;
        idp.set_client_auth(ClientAuth::PrivateKeyJwt);
        let dir = tempfile::tempdir().expect("stack dir");
        std::fs::copy(assertion_key_file(), dir.path().join("client.pem")).expect("client key");
        let yaml = introspecting_yaml_with(
            &idp,
            r#"{ method: private_key_jwt, key_file: "client.pem", alg: ES256 }"#,
            "",
        );
        let stack = Stack::start_in(dir, &yaml).await;
        for _ in 0..2 {
            let token = idp.issue(claims());
            order(&stack, &token).await.assert_allowed();
        }
        assert_eq!(idp.calls(), 2);
        assert_eq!(
            idp.refused_clients(),
            0,
            "every assertion verified, none replayed"
        );
    });
}

#[test]
fn signed_answers_are_checked_with_the_issuers_keys() {
    run(async {
        let idp = IntrospectionServer::start().await;
        idp.set_signing(Signing::Trusted);
        let dir = tempfile::tempdir().expect("stack dir");
        std::fs::write(dir.path().join("introspection-secret"), CLIENT_SECRET).expect("secret");
        let keys = "    jwks_file: \"jwks.json\"\n    algorithms: [\"ES256\"]\n";
        let yaml = introspecting_yaml_with(
            &idp,
            r#"{ method: client_secret_basic, secret_file: "introspection-secret" }"#,
            keys,
        );
        let stack = Stack::start_in(dir, &yaml).await;
        let token = idp.issue(claims());
        order(&stack, &token).await.assert_allowed();

        idp.set_signing(Signing::Untrusted);
        let forged = idp.issue(claims());
        order(&stack, &forged)
            .await
            .assert_denied(401, "bad_signature");

        idp.set_signing(Signing::Never);
        let unsigned = idp.issue(claims());
        order(&stack, &unsigned)
            .await
            .assert_denied(401, "malformed_token");
    });
}

#[test]
fn tls_client_auth_presents_the_client_certificate() {
    run(async {
        let idp = IntrospectionServer::start_mtls().await;
        let pki = support::pki::Pki::shared();
        let dir = tempfile::tempdir().expect("stack dir");
        let client = pki.client(Workload::Batch);
        std::fs::write(dir.path().join("client.pem"), &client.cert_pem).expect("client cert");
        std::fs::write(dir.path().join("client-key.pem"), &client.key_pem).expect("client key");
        std::fs::write(dir.path().join("idp-ca.pem"), &pki.ca_pem).expect("CA");
        let yaml = introspecting_yaml_with(
            &idp,
            r#"{ method: tls_client_auth, certificate_file: "client.pem", key_file: "client-key.pem" }
      ca_file: "idp-ca.pem""#,
            "",
        );
        let stack = Stack::start_in(dir, &yaml).await;
        let token = idp.issue(claims());
        order(&stack, &token).await.assert_allowed();
        assert_eq!(idp.calls(), 1);
        assert_eq!(idp.refused_clients(), 0);
    });
}

#[test]
fn at_most_max_concurrent_introspections_are_in_flight() {
    run(async {
        let idp = IntrospectionServer::start().await;
        idp.set_mode(Mode::Slow(Duration::from_millis(100)));
        let dir = tempfile::tempdir().expect("stack dir");
        std::fs::write(dir.path().join("introspection-secret"), CLIENT_SECRET).expect("secret");
        let yaml = introspecting_yaml(&idp).replace("max_concurrent: 4", "max_concurrent: 1");
        let stack = Stack::start_in(dir, &yaml).await;
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..3 {
            let (client, url) = (stack.client(Frontend).clone(), stack.url("/orders/1"));
            let token = idp.issue(claims());
            requests.spawn(async move { client.get(url).bearer_auth(token).reply().await });
        }
        while let Some(reply) = requests.join_next().await {
            reply.expect("request task").assert_allowed();
        }
        assert_eq!(idp.calls(), 3, "three tokens, three introspections");
        assert_eq!(idp.max_in_flight(), 1, "one at a time, as configured");
    });
}
