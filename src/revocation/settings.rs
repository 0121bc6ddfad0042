//! The `revocation` section: which store holds revocations (the file log or a shared Redis),
//! converted from the config section and the CA file the loader read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::InvalidSetting;
use crate::config::schema::RevocationSection;
use crate::files::NamedFile;

/// Default `revocation.path` for the file backend.
const DEFAULT_REVOCATION_PATH: &str = "state/revocations";
/// How a certificate starts in a PEM file (`revocation.tls_ca_file`).
const CERTIFICATE_PEM: &[u8] = b"-----BEGIN CERTIFICATE-----";
/// Default `revocation.key_prefix` for the Redis backend.
const DEFAULT_KEY_PREFIX: &str = "sessiongate:";
/// Default `revocation.timeout` for the Redis backend: long enough for a loaded Redis across a
/// zone, short enough that an admin call or a new session is refused promptly when it is gone.
const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest `revocation.tls_ca_file` read: a CA bundle is a few KiB, a whole system store
/// about 200 KiB.
pub const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;

/// Where revocations are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationBackend {
    /// The embedded, durable append-only log at this path.
    File(PathBuf),
    /// A Redis shared by the fleet (revocations and, with pinning, pins).
    Redis(RedisSettings),
}

/// The Redis backend's settings.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// The connection URL (may hold a password: never logged, see the `Debug` impl).
    pub url: String,
    /// Prefix of every key.
    pub key_prefix: String,
    /// Bound on connecting and on each command.
    pub timeout: Duration,
    /// Redis replicas that must confirm a write (`WAIT`) before it is acknowledged.
    pub wait_replicas: u32,
    /// For `rediss://`: the private CA Redis' certificate is checked against, instead of the
    /// system trust store.
    pub tls_ca: Option<RedisCa>,
}

/// `revocation.tls_ca_file`, read and checked at load, so what is validated is what is used.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisCa {
    /// Where it was read from (for messages).
    pub file: PathBuf,
    /// Its PEM text: one or more `CERTIFICATE` blocks.
    pub pem: Vec<u8>,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only compared across reloads and never logged, but a password must not leak through
        // a stray `{:?}` either: show the URL's digest instead.
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.url.as_bytes());
        f.debug_struct("RedisSettings")
            .field("url_sha256", &format!("{:x}", digest))
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("wait_replicas", &self.wait_replicas)
            // The digest, not just the path: a reload notices a replaced CA (restart required).
            .field(
                "tls_ca",
                &self.tls_ca.as_ref().map(|ca| {
                    (
                        ca.file.display().to_string(),
                        format!("{:x}", sha2::Sha256::digest(&ca.pem)),
                    )
                }),
            )
            .finish()
    }
}

impl RevocationBackend {
    /// Converts the `revocation` section: a relative `path` is resolved against `base` (the
    /// config file's directory); `tls_ca_file` is judged from `ca`, as the loader read it.
    pub fn from_section(
        section: &RevocationSection,
        base: &Path,
        ca: Option<&NamedFile>,
    ) -> Result<RevocationBackend, InvalidSetting> {
        let only_for = |key: &str, set: bool, backend: &str| {
            if set {
                Err(InvalidSetting::new(
                    format!("revocation.{key}"),
                    format!("only applies to backend {backend}"),
                ))
            } else {
                Ok(())
            }
        };
        match section.backend.as_str() {
            "file" => {
                only_for("url", section.url.is_some(), "redis")?;
                only_for("key_prefix", section.key_prefix.is_some(), "redis")?;
                only_for("timeout", section.timeout.is_some(), "redis")?;
                only_for("wait_replicas", section.wait_replicas.is_some(), "redis")?;
                only_for("tls_ca_file", section.tls_ca_file.is_some(), "redis")?;
                let path = section
                    .path
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_REVOCATION_PATH));
                if path.as_os_str().is_empty() {
                    return Err(InvalidSetting::new("revocation.path", "must not be empty"));
                }
                Ok(RevocationBackend::File(base.join(path)))
            }
            "redis" => {
                only_for("path", section.path.is_some(), "file")?;
                let url = section.url.clone().ok_or_else(|| {
                    InvalidSetting::new(
                        "revocation.url",
                        "required for backend redis, e.g. redis://127.0.0.1:6379/0",
                    )
                })?;
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    return Err(InvalidSetting::new(
                        "revocation.url",
                        "must start with redis:// or rediss:// (TLS)",
                    ));
                }
                if let Err(error) = redis::Client::open(url.as_str()) {
                    // The URL may hold a password: describe the problem, never echo the value.
                    return Err(InvalidSetting::new(
                        "revocation.url",
                        format!("not a Redis URL: {}", error.detail().unwrap_or("malformed")),
                    ));
                }
                let key_prefix = section
                    .key_prefix
                    .clone()
                    .unwrap_or_else(|| DEFAULT_KEY_PREFIX.to_owned());
                if key_prefix.len() > 64
                    || key_prefix
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(InvalidSetting::new(
                        "revocation.key_prefix",
                        "at most 64 characters, without spaces or control characters",
                    ));
                }
                let timeout = section.timeout.unwrap_or(DEFAULT_REDIS_TIMEOUT);
                if timeout < Duration::from_millis(10) || timeout > Duration::from_secs(60) {
                    return Err(InvalidSetting::new(
                        "revocation.timeout",
                        "must be between 10ms and 60s",
                    ));
                }
                let tls_ca = match ca {
                    Some(file) => Some(redis_ca(&url, file)?),
                    None => None,
                };
                Ok(RevocationBackend::Redis(RedisSettings {
                    url,
                    key_prefix,
                    timeout,
                    wait_replicas: section.wait_replicas.unwrap_or(0),
                    tls_ca,
                }))
            }
            other => Err(InvalidSetting::new(
                "revocation.backend",
                format!("`{other}` is not a backend; supported: file, redis"),
            )),
        }
    }
}

/// Checks that the Redis client accepts `revocation.tls_ca_file` (as the loader read it) as
/// trust anchors for `url`, which must be `rediss://`: the CA would otherwise be ignored.
fn redis_ca(url: &str, ca: &NamedFile) -> Result<RedisCa, InvalidSetting> {
    const KEY: &str = "revocation.tls_ca_file";
    if !url.starts_with("rediss://") {
        return Err(InvalidSetting::new(
            KEY,
            "only applies to a rediss:// (TLS) revocation.url",
        ));
    }
    let file = &ca.path;
    let pem = ca
        .bytes
        .as_ref()
        .map_err(|e| InvalidSetting::new(KEY, format!("cannot read {}: {e}", file.display())))?;
    if !pem
        .windows(CERTIFICATE_PEM.len())
        .any(|w| w == CERTIFICATE_PEM)
    {
        return Err(InvalidSetting::new(
            KEY,
            format!("{} holds no PEM certificate", file.display()),
        ));
    }
    let certificates = redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem.clone()),
    };
    // The error is about the PEM, never the URL (which may hold a password).
    redis::Client::build_with_tls(url, certificates).map_err(|e| {
        InvalidSetting::new(
            KEY,
            format!("{}: not usable as a CA certificate: {e}", file.display()),
        )
    })?;
    Ok(RedisCa {
        file: file.clone(),
        pem: pem.clone(),
    })
}
