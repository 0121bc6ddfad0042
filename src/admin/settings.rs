//! The `admin` section: where the admin API listens and the credential it requires, converted
//! from the config section and the token file the loader read.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::credential::{AdminCredential, CredentialError, MIN_TOKEN_LEN, TOKEN_ENV};
use crate::config::InvalidSetting;
use crate::config::schema::AdminSection;
use crate::files::NamedFile;

/// The admin listener's settings.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Where the admin API (and the SSF push endpoint) listens.
    pub listen: SocketAddr,
    /// File holding the admin bearer credential; `None` means `SESSIONGATE_ADMIN_TOKEN`.
    pub token_file: Option<PathBuf>,
    /// The credential read at load: what was validated is what the listener requires, and
    /// the file is not read again on the async runtime.
    pub credential: AdminCredential,
}

impl AdminSettings {
    /// Converts the `admin` section: `listen` never shares the ext_authz port (`grpc_listen`),
    /// and a missing, unreadable or short token (`token`: `admin.token_file` as the loader
    /// read it, else the environment variable) is a config error that `check-config` catches.
    pub fn from_section(
        admin: &AdminSection,
        grpc_listen: SocketAddr,
        token: Option<&NamedFile>,
    ) -> Result<AdminSettings, InvalidSetting> {
        let listen: SocketAddr = admin.listen.parse().map_err(|_| {
            InvalidSetting::new(
                "admin.listen",
                format!("`{}` is not an address like 127.0.0.1:9193", admin.listen),
            )
        })?;
        if listen == grpc_listen && listen.port() != 0 {
            return Err(InvalidSetting::new(
                "admin.listen",
                "must differ from listen.grpc: the admin API never shares the ext_authz port",
            ));
        }
        let credential = AdminCredential::from_file(token)
            .map_err(|error| credential_invalid(error, token.map(|file| &file.path)))?;
        Ok(AdminSettings {
            listen,
            token_file: token.map(|file| file.path.clone()),
            credential,
        })
    }
}

/// The admin credential's error as a config error: the key named once, by this error (the
/// credential's own message names it too, for the CLI, where it stands alone).
fn credential_invalid(error: CredentialError, token_file: Option<&PathBuf>) -> InvalidSetting {
    match error {
        CredentialError::Unreadable { file, message } => InvalidSetting::new(
            "admin.token_file",
            format!("cannot read {}: {message}", file.display()),
        ),
        CredentialError::Missing => InvalidSetting::new(
            "admin.token_file",
            format!("no admin token: set admin.token_file or the {TOKEN_ENV} environment variable"),
        ),
        CredentialError::TooShort { .. } => {
            let origin = token_file.map_or(TOKEN_ENV.to_owned(), |file| file.display().to_string());
            InvalidSetting::new(
                "admin.token_file",
                format!("the admin token in {origin} must be at least {MIN_TOKEN_LEN} bytes long"),
            )
        }
    }
}
