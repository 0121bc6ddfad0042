//! Key sources as the server reads them: the [`KeySource`] trait, its errors, and a JWKS file.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use sessiongate_token::{JwksError, KeySet, ParsedJwks};

/// Where an issuer's keys come from.
///
/// A file today; a `jwks_uri` or OIDC discovery later. The server loads every source at start-up
/// and installs the result in the [`KeyRing`]; refreshing sources re-install on change.
pub trait KeySource: Send + Sync + 'static {
    /// Where the keys come from, for logs and errors ("file /etc/sessiongate/jwks.json").
    fn describe(&self) -> String;

    /// Loads the current key set.
    fn load(&self)
    -> Pin<Box<dyn Future<Output = Result<ParsedJwks, KeySourceError>> + Send + '_>>;
}

/// Why a key source could not produce keys.
#[derive(Debug, thiserror::Error)]
pub enum KeySourceError {
    /// The source could not be read.
    #[error("cannot read {origin}: {message}")]
    Unreachable {
        /// The source, as [`KeySource::describe`] gives it.
        origin: String,
        /// What went wrong.
        message: String,
    },
    /// The source was read but holds no usable JWKS.
    #[error("{origin}: {source}")]
    Invalid {
        /// The source, as [`KeySource::describe`] gives it.
        origin: String,
        /// What is wrong with the document.
        source: JwksError,
    },
}

/// A JWKS document on the local filesystem (a mounted ConfigMap or Secret, in Kubernetes).
#[derive(Debug, Clone)]
pub struct JwksFile {
    path: PathBuf,
}

impl JwksFile {
    /// A source reading `path`.
    pub fn new(path: PathBuf) -> JwksFile {
        JwksFile { path }
    }

    /// Reads and parses the file synchronously (config validation uses this).
    pub fn load_now(&self) -> Result<ParsedJwks, KeySourceError> {
        let bytes =
            crate::files::read_bounded(&self.path, super::source::MAX_DOCUMENT_BYTES as u64)
                .map_err(|e| KeySourceError::Unreachable {
                    origin: self.describe(),
                    message: e.to_string(),
                })?;
        KeySet::from_jwks_json(&bytes).map_err(|source| KeySourceError::Invalid {
            origin: self.describe(),
            source,
        })
    }
}

impl KeySource for JwksFile {
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn load(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<ParsedJwks, KeySourceError>> + Send + '_>> {
        Box::pin(async move { self.load_now() })
    }
}
