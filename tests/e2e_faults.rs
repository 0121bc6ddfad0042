//! End-to-end: the embedded revocation log under the faults of its disk, judged by the real
//! Envoy 1.40 in front of the real sessiongate binary (the README's fault table).
//!
//! - **Disk full**: the revocation log on a tiny tmpfs, filled up. A refused `Revoke` says
//!   "not recorded" and is truly not recorded: the partial record the full disk left is cut off,
//!   so the next acknowledged append does not land after garbage (which the next start-up would
//!   read as corruption in the middle of the log and refuse). Checks keep being answered, earlier
//!   revocations keep applying, and once space is back revocations are recorded again.
//! - **SIGKILL mid-append**: sessiongate killed with SIGKILL while revocations stream in; the next
//!   start-up succeeds (a torn tail is moved aside, never reported as corruption) and every
//!   acknowledged revocation is enforced.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use sessiongate::admin::client::Client;
use sessiongate::admin::proto;
use support::tokens::{ISSUER, token};
use support::{SendExt as _, Stack, Workload, admin, run};

use Workload::Frontend;

/// GET /orders/1 as the frontend with `jwt`.
async fn order(stack: &Stack, jwt: &str) -> support::reply::Reply {
    stack
        .get(Frontend, "/orders/1")
        .bearer_auth(jwt)
        .reply()
        .await
}

/// A token of `sub` issued a minute ago: before every revocation here, whose cut-off is the
/// moment of the call.
fn issued_before_the_revocations(sub: &str) -> String {
    token().sub(sub).iat_age(60).sign()
}

fn assert_revoked(reply: &support::reply::Reply) {
    reply
        .assert_denied(401, "revoked")
        .assert_challenge_starts_with(r#"Bearer error="invalid_token""#);
}

async fn revoke(client: &mut Client, sub: &str) -> Result<(), tonic::Status> {
    client
        .revoke(proto::RevokeRequest {
            selector: Some(proto::Selector {
                kind: Some(admin::subject(ISSUER, sub)),
            }),
            issued_before_unix_ms: None,
            // Long enough that a few records cross a 4 KiB page of the tmpfs.
            reason: format!("fault test {}", "x".repeat(200)),
        })
        .await
        .map(|_| ())
}

/// A tmpfs of `size` mounted at `at`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts one, or `None` when this process may not mount (not root).
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let uid = Command::new("id").arg("-u").output().expect("run id -u");
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return None;
        }
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount tmpfs at {} failed", at.display());
        Some(Tmpfs(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem holding `dir` with one file, until it is full.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write as _;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = [0u8; 4096];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) if error.raw_os_error() == Some(28) => break, // ENOSPC
            Err(error) => panic!("filling {}: {error}", path.display()),
        }
    }
    path
}

#[test]
fn a_full_disk_refuses_revocations_truthfully_and_corrupts_nothing() {
    let dir = admin::prepared_dir();
    let Some(_tmpfs) = Tmpfs::mount(&dir.path().join("state"), "64k") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    run(async {
        let yaml = admin::with_admin(&support::policy::sessiongate_yaml(None));
        let mut stack = Stack::start_in(dir, &yaml).await;
        let first = stack.sessiongate.as_ref().expect("sessiongate");
        let (grpc, admin_at) = (first.grpc_addr, first.admin_addr.expect("admin"));
        let mut client = admin::client(admin_at).await;

        revoke(&mut client, "before-full")
            .await
            .expect("room for one");
        let filler = fill(&stack.dir().join("state"));

        // Appends fill the log's last page, then one is refused part-way through a record.
        let mut recorded = vec!["before-full".to_owned()];
        let refused = loop {
            let sub = format!("while-full-{}", recorded.len());
            match revoke(&mut client, &sub).await {
                Ok(()) => recorded.push(sub),
                Err(status) => break (sub, status),
            }
            assert!(recorded.len() < 64, "the disk never filled up");
        };
        let (refused_sub, status) = refused;
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(
            status.message().contains("revocation not recorded")
                && status.message().contains("No space left on device")
                && status.message().contains(admin::REVOCATION_PATH),
            "{status:?}"
        );

        // Checks go on: acknowledged revocations apply, the refused one does not.
        for sub in &recorded {
            assert_revoked(&order(&stack, &issued_before_the_revocations(sub)).await);
        }
        let refused_token = issued_before_the_revocations(&refused_sub);
        order(&stack, &refused_token).await.assert_allowed();

        // Space back: revocations are recorded again.
        std::fs::remove_file(&filler).unwrap();
        revoke(&mut client, "after-full")
            .await
            .expect("recorded once there is room");
        recorded.push("after-full".into());

        // A restart reads the log back whole: nothing corrupt, nothing lost, nothing invented.
        stack.kill_sessiongate().await;
        stack
            .restart_sessiongate(&admin::on_ports(&yaml, grpc, admin_at))
            .await;
        stack
            .get_once_back(Frontend, "/orders/1", &refused_token)
            .await
            .assert_allowed();
        for sub in &recorded {
            assert_revoked(&order(&stack, &issued_before_the_revocations(sub)).await);
        }
        let listed = admin::list(admin_at).await;
        assert_eq!(listed.len(), recorded.len(), "{listed:?}");
    });
}

#[test]
fn sigkill_while_revocations_stream_in_loses_no_acknowledged_one() {
    run(async {
        let yaml = admin::with_admin(&support::policy::sessiongate_yaml(None));
        let mut stack = Stack::start_in(admin::prepared_dir(), &yaml).await;
        let first = stack.sessiongate.as_ref().expect("sessiongate");
        let (grpc, admin_at) = (first.grpc_addr, first.admin_addr.expect("admin"));
        let on_ports = admin::on_ports(&yaml, grpc, admin_at);
        let mut acknowledged = Vec::new();

        for round in 0..3 {
            // Four writers revoke as fast as the log syncs; the kill lands among their appends.
            let (sender, mut received) = tokio::sync::mpsc::unbounded_channel();
            let writers: Vec<_> = (0..4)
                .map(|writer| {
                    let sender = sender.clone();
                    tokio::spawn(async move {
                        let mut client = admin::client(admin_at).await;
                        for n in 0.. {
                            let sub = format!("streamed-{round}-{writer}-{n}");
                            if revoke(&mut client, &sub).await.is_err() {
                                break;
                            }
                            if sender.send(sub).is_err() {
                                break;
                            }
                        }
                    })
                })
                .collect();
            drop(sender);
            // Kill once some appends were acknowledged in this round.
            for _ in 0..20 {
                acknowledged.push(received.recv().await.expect("a writer acknowledged"));
            }
            stack.kill_sessiongate().await;
            for writer in writers {
                writer.await.unwrap();
            }
            while let Ok(sub) = received.try_recv() {
                acknowledged.push(sub);
            }
            stack.restart_sessiongate(&on_ports).await;
        }

        let bystander = token().sub("streamed-bystander").sign();
        stack
            .get_once_back(Frontend, "/orders/1", &bystander)
            .await
            .assert_allowed();
        for sub in &acknowledged {
            assert_revoked(&order(&stack, &issued_before_the_revocations(sub)).await);
        }
        let listed = admin::list(admin_at).await;
        assert!(
            listed.len() >= acknowledged.len(),
            "{} listed, {} acknowledged",
            listed.len(),
            acknowledged.len()
        );
    });
}
