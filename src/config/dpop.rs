//! The `dpop` section (RFC 9449 proofs at the resource server) compiled into the policy's
//! [`DpopPolicy`], from the section and the nonce secret the loader read.

use std::sync::Arc;
use std::time::Duration;

use super::InvalidSetting;
use super::schema::DpopSection;
use crate::files::NamedFile;
use sessiongate_check::policy::DpopPolicy;
use sessiongate_core::dpop::validate_origin;
use sessiongate_token::{NonceIssuer, SigningAlgorithm};

/// Largest `dpop.nonce.secret_file` read (4 KiB): a secret, not a document.
pub const MAX_NONCE_SECRET_BYTES: u64 = 4096;
/// Shortest nonce secret accepted: 32 bytes, the HMAC-SHA256 key size.
const MIN_NONCE_SECRET_BYTES: usize = 32;
/// Longest `dpop.proof_lifetime`: proofs are meant to be single-use and short-lived, and the
/// replay store must remember each one this long.
const MAX_PROOF_LIFETIME: Duration = Duration::from_secs(300);
/// Most live proofs `dpop.replay.max_entries` may allow (about 100 bytes each).
const MAX_REPLAY_ENTRIES: usize = 50_000_000;

/// The compiled `dpop` section.
#[derive(Debug)]
pub struct DpopSettings {
    /// What the policy holds.
    pub policy: DpopPolicy,
    /// Most live proofs this replica remembers (`dpop.replay.max_entries`; not used with Redis).
    pub replay_entries: usize,
}

impl DpopSettings {
    /// Converts `section`; `secret` is `dpop.nonce.secret_file` as the loader read it.
    pub fn from_section(
        section: &DpopSection,
        secret: Option<&NamedFile>,
    ) -> Result<DpopSettings, InvalidSetting> {
        let algorithms = match &section.algorithms {
            None => SigningAlgorithm::ALL.to_vec(),
            Some(names) if names.is_empty() => {
                return Err(InvalidSetting::new(
                    "dpop.algorithms",
                    "an empty list would refuse every proof; remove the key for the default",
                ));
            }
            Some(names) => names
                .iter()
                .enumerate()
                .map(|(index, name)| {
                    SigningAlgorithm::from_jose(name).ok_or_else(|| {
                        InvalidSetting::new(
                            format!("dpop.algorithms[{index}]"),
                            format!(
                                "`{name}` is not an asymmetric algorithm sessiongate verifies ({})",
                                SigningAlgorithm::ALL.map(|alg| alg.jose_name()).join(", ")
                            ),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let lifetime = section.proof_lifetime.unwrap_or(Duration::from_secs(5));
        if lifetime.is_zero() || lifetime > MAX_PROOF_LIFETIME {
            return Err(InvalidSetting::new(
                "dpop.proof_lifetime",
                "must be between 1s and 5m",
            ));
        }
        let mut policy = DpopPolicy::new(&algorithms, lifetime);
        if let Some(origin) = &section.origin {
            validate_origin(origin).map_err(|problem| {
                InvalidSetting::new("dpop.origin", format!("`{origin}`: {problem}"))
            })?;
            policy.rules.origin = Some(origin.as_str().into());
        }
        if let Some(nonce) = &section.nonce {
            if nonce.rotate_every < Duration::from_secs(1) {
                return Err(InvalidSetting::new(
                    "dpop.nonce.rotate_every",
                    "must be at least 1s",
                ));
            }
            let secret = secret_bytes(secret)?;
            policy.nonces = Some(Arc::new(NonceIssuer::new(&secret, nonce.rotate_every)));
        }
        let replay_entries = section.replay.max_entries.unwrap_or(1_000_000);
        if replay_entries == 0 || replay_entries > MAX_REPLAY_ENTRIES {
            return Err(InvalidSetting::new(
                "dpop.replay.max_entries",
                format!("must be between 1 and {MAX_REPLAY_ENTRIES}"),
            ));
        }
        Ok(DpopSettings {
            policy,
            replay_entries,
        })
    }
}

/// The nonce secret: the file's bytes, surrounding white space trimmed, at least 32 bytes.
fn secret_bytes(file: Option<&NamedFile>) -> Result<Vec<u8>, InvalidSetting> {
    const KEY: &str = "dpop.nonce.secret_file";
    let Some(file) = file else {
        return Err(InvalidSetting::new(KEY, "is required"));
    };
    let bytes = file.bytes.as_ref().map_err(|error| {
        InvalidSetting::new(KEY, format!("cannot read {}: {error}", file.path.display()))
    })?;
    let trimmed = bytes.trim_ascii();
    if trimmed.len() < MIN_NONCE_SECRET_BYTES {
        return Err(InvalidSetting::new(
            KEY,
            format!(
                "{} holds {} bytes; a nonce secret needs at least {MIN_NONCE_SECRET_BYTES} (e.g. `openssl rand -base64 48`)",
                file.path.display(),
                trimmed.len()
            ),
        ));
    }
    Ok(trimmed.to_vec())
}
