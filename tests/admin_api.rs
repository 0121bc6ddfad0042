//! gRPC integration tests of the admin API against the real binary (no Envoy needed): every call
//! needs the admin credential, operator mistakes are refused with a message that says what to
//! fix, a revocation shows up in the list, and the `sessiongate admin` CLI drives it all.

mod support;

use std::process::Command;

use sessiongate::admin::proto::{self, selector::Kind};
use support::sessiongate::{Sessiongate, binary};
use support::tokens::ISSUER;
use support::{admin, run};
use tokio::sync::OnceCell;

/// One sessiongate with an admin listener, shared by the tests of this binary.
async fn server() -> &'static (Sessiongate, tempfile::TempDir) {
    static SHARED: OnceCell<(Sessiongate, tempfile::TempDir)> = OnceCell::const_new();
    SHARED
        .get_or_init(|| async {
            let dir = admin::prepared_dir();
            let yaml = admin::with_admin(&support::policy::sessiongate_yaml(None));
            (Sessiongate::start(dir.path(), &yaml).await, dir)
        })
        .await
}

async fn admin_addr() -> std::net::SocketAddr {
    server().await.0.admin_addr.expect("admin listener")
}

fn request(kind: Option<Kind>, issued_before_ms: Option<u64>) -> proto::RevokeRequest {
    proto::RevokeRequest {
        selector: Some(proto::Selector { kind }),
        issued_before_unix_ms: issued_before_ms,
        reason: "integration test".into(),
    }
}

#[test]
fn calls_without_the_admin_credential_are_unauthenticated() {
    run(async {
        let addr = admin_addr().await;
        for token in ["", "not-the-admin-token-but-long-enough"] {
            let mut client = admin::client_with(addr, token).await;
            let status = client
                .revoke(request(Some(admin::subject(ISSUER, "nobody")), None))
                .await
                .unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{token:?}");
            let status = client
                .explain_session(proto::ExplainSessionRequest { token: "x".into() })
                .await
                .unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{token:?}");
        }
        let listed = admin::client(addr)
            .await
            .list_revocations(proto::ListRevocationsRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(
            !listed
                .revocations
                .iter()
                .any(|r| format!("{r:?}").contains("nobody")),
            "a refused call changed nothing"
        );
    });
}

#[test]
fn invalid_selectors_are_refused_with_a_specific_message() {
    run(async {
        let mut client = admin::client(admin_addr().await).await;
        let cases: Vec<(proto::RevokeRequest, &str)> = vec![
            (
                proto::RevokeRequest {
                    selector: None,
                    ..request(None, None)
                },
                "selector is required",
            ),
            (request(None, None), "selector is required"),
            (
                request(Some(admin::subject(ISSUER, "")), None),
                "subject.sub must not be empty",
            ),
            (
                request(Some(Kind::Workload("https://not-spiffe".into())), None),
                "workload `https://not-spiffe` is not a SPIFFE ID",
            ),
            (
                request(Some(admin::subject("https://unknown.test", "a")), None),
                "issuer `https://unknown.test` is not a configured issuer",
            ),
            (
                // The e2e config trusts two issuers, so the issuer cannot be guessed.
                request(Some(admin::subject("", "a")), None),
                "subject.issuer is required: this sessiongate trusts 2 issuers",
            ),
            (
                request(Some(Kind::ClientId(String::new())), None),
                "client_id must not be empty",
            ),
            (
                request(
                    Some(admin::subject(ISSUER, "a")),
                    Some(u64::try_from(support::tokens::now() + 3600).unwrap() * 1000),
                ),
                "issued_before lies",
            ),
        ];
        for (request, expected) in cases {
            let status = client.revoke(request.clone()).await.unwrap_err();
            assert_eq!(
                status.code(),
                tonic::Code::InvalidArgument,
                "{request:?}: {status:?}"
            );
            assert!(
                status.message().contains(expected),
                "{request:?}: expected `{expected}` in `{}`",
                status.message()
            );
        }
    });
}

#[test]
fn a_revocation_is_listed_with_its_cutoff_and_forget_time() {
    run(async {
        let mut client = admin::client(admin_addr().await).await;
        let recorded =
            admin::revoke(&mut client, admin::subject(ISSUER, "listed-user"), None).await;
        assert_eq!(recorded.origin, "admin");
        assert_eq!(recorded.reason, "e2e");
        assert!(recorded.forget_after_unix_ms > recorded.issued_before_unix_ms);
        let listed = client
            .list_revocations(proto::ListRevocationsRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(listed.revocations.contains(&recorded), "{listed:?}");
    });
}

fn cli(args: &[&str], token: &str) -> std::process::Output {
    let addr = run(admin_addr());
    Command::new(binary())
        .arg("admin")
        .args(["--admin-addr", &addr.to_string()])
        .args(args)
        .env("SESSIONGATE_ADMIN_TOKEN", token)
        .output()
        .expect("run sessiongate admin")
}

#[test]
fn the_cli_revokes_lists_and_explains() {
    let revoked = cli(
        &[
            "revoke",
            "--sub",
            "cli-user",
            "--iss",
            ISSUER,
            "--issued-before",
            "5m ago",
            "--reason",
            "laptop stolen",
        ],
        admin::TOKEN,
    );
    let stdout = String::from_utf8_lossy(&revoked.stdout);
    assert!(revoked.status.success(), "{revoked:?}");
    assert!(
        stdout.contains("revoked: sub cli-user") && stdout.contains("laptop stolen"),
        "{stdout}"
    );

    let listed = cli(&["list"], admin::TOKEN);
    assert!(listed.status.success(), "{listed:?}");
    assert!(String::from_utf8_lossy(&listed.stdout).contains("sub cli-user"));

    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, support::tokens::token().sign()).unwrap();
    let explained = cli(
        &["explain", "--token-file", token_file.to_str().unwrap()],
        admin::TOKEN,
    );
    assert!(explained.status.success(), "{explained:?}");
    assert!(String::from_utf8_lossy(&explained.stdout).contains("not found"));
}

#[test]
fn the_cli_reports_refusals_and_bad_input() {
    let refused = cli(&["list"], "wrong-token-wrong-token");
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("refused"));

    let ambiguous = cli(&["revoke", "--sub", "x"], admin::TOKEN);
    assert_eq!(ambiguous.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&ambiguous.stderr).contains("trusts 2 issuers"),
        "{ambiguous:?}"
    );

    let bad_time = cli(
        &[
            "revoke",
            "--sub",
            "x",
            "--iss",
            ISSUER,
            "--issued-before",
            "soon",
        ],
        admin::TOKEN,
    );
    assert_eq!(bad_time.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_time.stderr).contains("RFC 3339"));
}

#[test]
fn an_admin_section_without_a_token_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(support::tokens::jwks_path(), dir.path().join("jwks.json")).unwrap();
    let config = dir.path().join("sessiongate.yaml");
    let yaml = support::policy::sessiongate_yaml(None) + "\nadmin:\n  listen: \"127.0.0.1:0\"\n";
    std::fs::write(&config, yaml).unwrap();
    let output = Command::new(binary())
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("SESSIONGATE_ADMIN_TOKEN")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "a config error: {stderr}");
    assert!(stderr.contains("admin.token_file"), "{stderr}");
    assert!(stderr.contains("no admin token"), "{stderr}");
}
