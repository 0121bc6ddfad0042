//! The loader: the only code that reads the files a configuration names.
//!
//! It reads the config file, parses it, then reads every file the config names (each within a
//! bound that fits what it holds: see [`crate::files`]) and hands their bytes, or why they
//! could not be read, to the compilation, where the subsystem owning each setting judges them
//! in its own order of checks. Subsystems never touch the disk while converting their section.

use std::path::Path;

use super::dpop::MAX_NONCE_SECRET_BYTES;
use super::schema::{ConfigFile, parse};
use super::{Compiler, Config, ConfigError, MAX_CONFIG_BYTES};
use crate::admin::credential::MAX_TOKEN_FILE_BYTES;
use crate::files::NamedFile;
use crate::introspection::settings::MAX_SECRET_FILE_BYTES;
use crate::keys::source::MAX_DOCUMENT_BYTES;
use crate::revocation::settings::MAX_CA_FILE_BYTES;

/// Reads, validates and compiles the configuration at `file`. The files it names (JWKS files,
/// the admin token, the Redis CA, the DPoP nonce secret) are read and checked too, so `check-config` catches a broken
/// one before a rollout does.
pub fn load(file: &Path) -> Result<Config, ConfigError> {
    let unreadable = |message: String| ConfigError::Unreadable {
        file: file.to_owned(),
        message,
    };
    let text = crate::files::read_bounded_text(file, MAX_CONFIG_BYTES)
        .map_err(|e| unreadable(e.to_string()))?;
    let raw = parse(file, &text)?;
    let base = file.parent().unwrap_or(Path::new("."));
    let files = NamedFiles::read(&raw, base);
    Compiler { file, base }.compile(raw, files)
}

/// Every file the configuration names, read, relative paths resolved against the config
/// file's directory. A file is read whenever its key is set, even where another key makes it
/// moot (the conversion then reports that key, as before any file was read).
#[derive(Debug)]
pub(super) struct NamedFiles {
    /// `issuers[i].jwks_file`, index for index.
    pub issuer_jwks: Vec<Option<NamedFile>>,
    /// `ssf.transmitters[i].jwks_file`, index for index (empty without `ssf`).
    pub transmitter_jwks: Vec<Option<NamedFile>>,
    /// The files of `issuers[i].introspection`, index for index.
    pub introspection: Vec<IntrospectionFiles>,
    /// `admin.token_file`.
    pub admin_token: Option<NamedFile>,
    /// `revocation.tls_ca_file`.
    pub redis_ca: Option<NamedFile>,
    /// `dpop.nonce.secret_file`.
    pub dpop_nonce_secret: Option<NamedFile>,
}

/// The files one issuer's `introspection` names.
#[derive(Debug, Default)]
pub(super) struct IntrospectionFiles {
    /// `client_auth.secret_file` or `client_auth.key_file`.
    pub credential: Option<NamedFile>,
    /// `client_auth.certificate_file` (`tls_client_auth`).
    pub certificate: Option<NamedFile>,
    /// `ca_file`.
    pub ca: Option<NamedFile>,
}

impl NamedFiles {
    fn read(raw: &ConfigFile, base: &Path) -> NamedFiles {
        let read = |path: Option<&Path>, limit: u64| {
            path.map(|path| NamedFile::read(base.join(path), limit))
        };
        let jwks = |path: Option<&Path>| read(path, MAX_DOCUMENT_BYTES as u64);
        NamedFiles {
            issuer_jwks: raw
                .issuers
                .iter()
                .map(|issuer| jwks(issuer.jwks_file.as_deref()))
                .collect(),
            introspection: raw
                .issuers
                .iter()
                .map(|issuer| {
                    let section = issuer.introspection.as_ref();
                    let auth = section.map(|section| &section.client_auth);
                    IntrospectionFiles {
                        credential: read(auth.map(|auth| auth.file()), MAX_SECRET_FILE_BYTES),
                        certificate: read(
                            auth.and_then(|auth| auth.certificate_file()),
                            MAX_CA_FILE_BYTES,
                        ),
                        ca: read(
                            section.and_then(|section| section.ca_file.as_deref()),
                            MAX_CA_FILE_BYTES,
                        ),
                    }
                })
                .collect(),
            transmitter_jwks: raw
                .ssf
                .iter()
                .flat_map(|ssf| &ssf.transmitters)
                .map(|transmitter| jwks(transmitter.jwks_file.as_deref()))
                .collect(),
            admin_token: read(
                raw.admin
                    .as_ref()
                    .and_then(|admin| admin.token_file.as_deref()),
                MAX_TOKEN_FILE_BYTES,
            ),
            redis_ca: read(raw.revocation.tls_ca_file.as_deref(), MAX_CA_FILE_BYTES),
            dpop_nonce_secret: read(
                raw.dpop
                    .nonce
                    .as_ref()
                    .map(|nonce| nonce.secret_file.as_path()),
                MAX_NONCE_SECRET_BYTES,
            ),
        }
    }
}
