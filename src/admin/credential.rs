//! The admin bearer credential: where it comes from and how a call's credential is checked.
//!
//! The token comes from `admin.token_file` (read by the config loader, which hands over its
//! bytes: see [`token`]) or, without one, the environment variable [`TOKEN_ENV`]. Calls are checked by comparing SHA-256 digests in constant time, so
//! neither the content nor the length of the real token leaks through response timing. The token
//! never appears in logs or errors.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::{Request, Status};

use crate::files::NamedFile;
use crate::logging::LinesPerSecond;
use sessiongate_core::time::UnixTime;

/// The environment variable holding the admin token when no `admin.token_file` is configured
/// (and the CLI's default).
pub const TOKEN_ENV: &str = "SESSIONGATE_ADMIN_TOKEN";

/// Largest admin token file read: a token is a line of text, and 64 KiB is far more than any,
/// and bounds a mistake.
pub const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;

/// Shortest accepted admin token: 16 bytes is the floor below which guessing becomes plausible.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why the admin credential cannot be had; the admin listener refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The token file cannot be read.
    #[error("admin.token_file: cannot read {}: {message}", file.display())]
    Unreadable {
        /// The file.
        file: PathBuf,
        /// Why.
        message: String,
    },
    /// Neither a token file nor the environment variable.
    #[error("admin: no admin token: set admin.token_file or the {TOKEN_ENV} environment variable")]
    Missing,
    /// The token is too short.
    #[error("{origin}: the admin token must be at least {MIN_TOKEN_LEN} bytes long")]
    TooShort {
        /// Where it came from (file or variable).
        origin: String,
    },
}

/// The credential every admin call must present.
#[derive(Clone)]
pub struct AdminCredential {
    digest: [u8; 32],
}

impl std::fmt::Debug for AdminCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminCredential(..)")
    }
}

impl AdminCredential {
    /// The credential from `token_file`, else from [`TOKEN_ENV`]. Surrounding whitespace (a
    /// trailing newline) is not part of the token.
    pub fn load(token_file: Option<&Path>) -> Result<AdminCredential, CredentialError> {
        let (source, token) = read_token(token_file)?;
        AdminCredential::new(&token).ok_or(CredentialError::TooShort { origin: source })
    }

    /// The credential from `file` as the config loader read it, else from [`TOKEN_ENV`].
    pub fn from_file(file: Option<&NamedFile>) -> Result<AdminCredential, CredentialError> {
        let (source, token) = token(file)?;
        AdminCredential::new(&token).ok_or(CredentialError::TooShort { origin: source })
    }

    /// A credential for `token`; `None` when it is shorter than [`MIN_TOKEN_LEN`].
    pub fn new(token: &str) -> Option<AdminCredential> {
        (token.len() >= MIN_TOKEN_LEN).then(|| AdminCredential {
            digest: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// Whether `presented` is the admin token, in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest.ct_eq(&self.digest).into()
    }

    /// The gRPC interceptor: `authorization: Bearer <token>` or `UNAUTHENTICATED`.
    pub fn check<T>(&self, request: Request<T>) -> Result<Request<T>, Status> {
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
        let (why, answer) = match presented {
            Some(token) if self.matches(token) => return Ok(request),
            Some(_) => ("wrong credential", "wrong admin credential"),
            None => (
                "no bearer credential",
                "admin credential required: authorization: Bearer <admin token>",
            ),
        };
        // Anyone who can reach the port can be refused: at most 10 lines a second.
        static LINES: LinesPerSecond = LinesPerSecond::new();
        if let Some(dropped) = LINES.admit(10, UnixTime::now().as_secs()) {
            let suppressed = (dropped > 0).then_some(dropped);
            tracing::warn!(listener = "admin", suppressed, "admin call refused: {why}");
        }
        Err(Status::unauthenticated(answer))
    }
}

/// Reads the token and names where it came from (the CLI's `--token-file`, or the variable).
pub fn read_token(token_file: Option<&Path>) -> Result<(String, String), CredentialError> {
    let file = token_file.map(|file| NamedFile::read(file.to_owned(), MAX_TOKEN_FILE_BYTES));
    token(file.as_ref())
}

/// The token in `file` (as read, within [`MAX_TOKEN_FILE_BYTES`]), else in [`TOKEN_ENV`], and
/// where it came from. The config loader reads `admin.token_file`; this only judges the bytes.
pub fn token(file: Option<&NamedFile>) -> Result<(String, String), CredentialError> {
    match file {
        Some(NamedFile { path, bytes }) => {
            let unreadable = |message: String| CredentialError::Unreadable {
                file: path.clone(),
                message,
            };
            let bytes = bytes.as_ref().map_err(|e| unreadable(e.to_string()))?;
            let text =
                std::str::from_utf8(bytes).map_err(|_| unreadable("not UTF-8 text".to_owned()))?;
            Ok((
                format!("admin.token_file {}", path.display()),
                text.trim().to_owned(),
            ))
        }
        None => match std::env::var(TOKEN_ENV) {
            Ok(token) if !token.trim().is_empty() => {
                Ok((TOKEN_ENV.into(), token.trim().to_owned()))
            }
            _ => Err(CredentialError::Missing),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "correct-horse-battery-staple";

    fn call(authorization: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert("authorization", value.parse().unwrap());
        }
        request
    }

    #[test]
    fn only_the_right_bearer_token_passes() {
        let credential = AdminCredential::new(TOKEN).unwrap();
        assert!(
            credential
                .check(call(Some(&format!("Bearer {TOKEN}"))))
                .is_ok()
        );
        for wrong in [
            None,
            Some("Bearer wrong-token-of-some-length"),
            Some(&format!("Basic {TOKEN}")),
            Some(TOKEN),
            Some("Bearer "),
        ] {
            let status = credential.check(call(wrong)).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{wrong:?}");
            assert!(!status.message().contains(TOKEN));
        }
    }

    #[test]
    fn short_tokens_are_refused() {
        assert!(AdminCredential::new("fifteen-bytes!!").is_none());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin.token");
        std::fs::write(&file, "short\n").unwrap();
        let error = AdminCredential::load(Some(&file)).unwrap_err();
        assert!(error.to_string().contains("at least 16 bytes"), "{error}");
    }

    #[test]
    fn a_token_file_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin.token");
        std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
        assert!(AdminCredential::load(Some(&file)).unwrap().matches(TOKEN));
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = AdminCredential::load(Some(Path::new("/nonexistent/admin.token"))).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/admin.token"),
            "{error}"
        );
    }
}
