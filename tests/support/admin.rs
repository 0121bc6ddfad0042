//! The admin side of a test stack: a sessiongate config with an admin listener and a durable
//! revocation log, the credential, and an authenticated gRPC client.

use std::net::SocketAddr;
use std::path::Path;

use sessiongate::admin::client::{self, Client};
use sessiongate::admin::proto;
use tempfile::TempDir;

/// The admin token the test stacks use (written to `admin.token` beside the config).
pub const TOKEN: &str = "e2e-admin-token-not-a-secret-0123";

/// Where the revocation log lives, relative to the config's folder.
pub const REVOCATION_PATH: &str = "state/revocations";

/// `yaml` plus an admin listener on an ephemeral port (credential in `admin.token`) and the
/// file revocation store at [`REVOCATION_PATH`].
pub fn with_admin(yaml: &str) -> String {
    format!(
        "{yaml}\nadmin:\n  listen: \"127.0.0.1:0\"\n  token_file: \"admin.token\"\n\
         revocation:\n  backend: file\n  path: \"{REVOCATION_PATH}\"\n"
    )
}

/// `yaml` (from [`with_admin`]) listening on fixed ports: a restarted sessiongate takes over the
/// ports Envoy already points at.
pub fn on_ports(yaml: &str, grpc: SocketAddr, admin: SocketAddr) -> String {
    on_admin_port(
        &yaml.replacen("grpc: \"127.0.0.1:0\"", &format!("grpc: \"{grpc}\""), 1),
        admin,
    )
}

/// `yaml` with its admin listener on the fixed `admin` address, for a server whose bound ports
/// the test cannot read back (the module inside Envoy).
pub fn on_admin_port(yaml: &str, admin: SocketAddr) -> String {
    yaml.replacen(
        "listen: \"127.0.0.1:0\"\n  token_file",
        &format!("listen: \"{admin}\"\n  token_file"),
        1,
    )
}

/// A folder for a stack, holding the admin token file.
pub fn prepared_dir() -> TempDir {
    let dir = tempfile::tempdir().expect("stack temp dir");
    write_token(dir.path());
    dir
}

/// Writes [`TOKEN`] to `dir/admin.token`.
pub fn write_token(dir: &Path) {
    std::fs::write(dir.join("admin.token"), format!("{TOKEN}\n")).expect("write admin.token");
}

/// A client presenting `token`.
pub async fn client_with(addr: SocketAddr, token: &str) -> Client {
    client::connect(&addr.to_string(), token)
        .await
        .unwrap_or_else(|e| panic!("connect to the admin API at {addr}: {e}"))
}

/// A client presenting the right token.
pub async fn client(addr: SocketAddr) -> Client {
    client_with(addr, TOKEN).await
}

pub fn subject(issuer: &str, sub: &str) -> proto::selector::Kind {
    proto::selector::Kind::Subject(proto::Subject {
        issuer: issuer.into(),
        sub: sub.into(),
    })
}

/// Revokes `kind` with the cut-off `issued_before_ms` (default: the server's now); panics
/// unless the server acknowledged it.
pub async fn revoke(
    client: &mut Client,
    kind: proto::selector::Kind,
    issued_before_ms: Option<u64>,
) -> proto::Revocation {
    client
        .revoke(proto::RevokeRequest {
            selector: Some(proto::Selector { kind: Some(kind) }),
            issued_before_unix_ms: issued_before_ms,
            reason: "e2e".into(),
        })
        .await
        .unwrap_or_else(|status| panic!("Revoke refused: {status:?}"))
        .into_inner()
        .revocation
        .expect("Revoke answers the recorded revocation")
}

/// Every revocation the server at `addr` lists; panics if it refuses.
pub async fn list(addr: SocketAddr) -> Vec<proto::Revocation> {
    client(addr)
        .await
        .list_revocations(proto::ListRevocationsRequest {})
        .await
        .unwrap_or_else(|status| panic!("ListRevocations refused: {status:?}"))
        .into_inner()
        .revocations
}
