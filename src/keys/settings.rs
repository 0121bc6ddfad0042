//! The key settings of `issuers[]` (and the JWKS file check the SSF transmitters share):
//! where an issuer's keys come from and how they are refreshed, converted from the config
//! section and the files the loader read.

use std::sync::Arc;

use super::schedule::RefreshBounds;
use super::source::{KeyFetchError, KeyOrigin, discovery_url, key_url, parse_jwks};
use crate::config::InvalidSetting;
use crate::config::schema::{IssuerSection, KeysRefreshSection};
use crate::files::NamedFile;
use sessiongate_token::ParsedJwks;

/// An issuer's key source as configured.
#[derive(Debug, Clone)]
pub struct IssuerKeys {
    /// The issuer the keys belong to.
    pub issuer: Arc<str>,
    /// Where they come from.
    pub source: KeyOrigin,
    /// Refresh interval bounds and how long stale keys are trusted.
    pub refresh: RefreshBounds,
    /// The config key naming the source (`issuers[0].jwks_uri`), for errors at reload.
    pub config_key: String,
}

/// An issuer's key origin, checked: a file's keys parse, a URL is safe to fetch.
#[derive(Debug)]
pub struct CheckedOrigin {
    /// Where the keys come from.
    pub origin: KeyOrigin,
    /// The config key naming it (`issuers[0].jwks_file`).
    pub config_key: String,
    /// For a file: why each unusable key in it was skipped (the loader logs them).
    pub skipped: Vec<String>,
}

/// The keys in a JWKS file the loader read: its origin and parsed keys, or why it cannot be
/// used ("cannot read file …", "file …: no usable signing key …").
pub fn jwks_file(file: &NamedFile) -> Result<(KeyOrigin, ParsedJwks), KeyFetchError> {
    let origin = KeyOrigin::File(file.path.clone());
    let bytes = file
        .bytes
        .as_ref()
        .map_err(|e| KeyFetchError::unreachable(&origin, e))?;
    let parsed = parse_jwks(&origin, bytes)?;
    Ok((origin, parsed))
}

/// Exactly one of `jwks_file` (whose bytes the loader read as `jwks`: parsed now, so
/// `check-config` refuses a broken key file), `jwks_uri` or `discovery: true` (checked for a
/// safe URL; fetched when the server starts or reloads). `key` is the issuer's (`issuers[0]`).
pub fn key_origin(
    key: &str,
    issuer: &IssuerSection,
    jwks: Option<&NamedFile>,
) -> Result<CheckedOrigin, InvalidSetting> {
    let set: Vec<&str> = [
        issuer.jwks_file.is_some().then_some("jwks_file"),
        issuer.jwks_uri.is_some().then_some("jwks_uri"),
        issuer.discovery.then_some("discovery"),
    ]
    .into_iter()
    .flatten()
    .collect();
    match (set.as_slice(), jwks) {
        ([], _) => Err(InvalidSetting::new(
            format!("{key}.jwks_file"),
            "is required (the issuer's public keys): set one of jwks_file, jwks_uri or \
             discovery: true",
        )),
        ([_, second, ..], _) => Err(InvalidSetting::new(
            format!("{key}.{second}"),
            "set exactly one of jwks_file, jwks_uri and discovery",
        )),
        (["jwks_file"], Some(file)) => {
            let config_key = format!("{key}.jwks_file");
            let (origin, parsed) =
                jwks_file(file).map_err(|e| InvalidSetting::new(&config_key, e.to_string()))?;
            Ok(CheckedOrigin {
                origin,
                config_key,
                skipped: parsed.skipped,
            })
        }
        // The loader reads every `jwks_file` it finds; were one missing, refuse rather than
        // trust an issuer whose keys nobody checked.
        (["jwks_file"], None) => Err(InvalidSetting::new(
            format!("{key}.jwks_file"),
            "was not read by the loader",
        )),
        (["jwks_uri"], _) => {
            let config_key = format!("{key}.jwks_uri");
            let url = key_url(issuer.jwks_uri.as_deref().unwrap_or_default())
                .map_err(|e| InvalidSetting::new(&config_key, e.to_string()))?;
            Ok(CheckedOrigin {
                origin: KeyOrigin::Uri(url),
                config_key,
                skipped: Vec::new(),
            })
        }
        _ => {
            let config_key = format!("{key}.discovery");
            discovery_url(&issuer.issuer).map_err(|e| {
                InvalidSetting::new(
                    &config_key,
                    format!("the issuer is where discovery looks, so it must be a safe URL: {e}"),
                )
            })?;
            Ok(CheckedOrigin {
                origin: KeyOrigin::Discovery {
                    issuer: issuer.issuer.clone(),
                },
                config_key,
                skipped: Vec::new(),
            })
        }
    }
}

/// `<key>.keys_refresh` (`key` is the issuer's, `issuers[0]`): at least a second between
/// fetches, and keys that cannot go stale between two regular refreshes.
pub fn refresh_bounds(
    key: &str,
    section: &KeysRefreshSection,
) -> Result<RefreshBounds, InvalidSetting> {
    let key = format!("{key}.keys_refresh");
    if section.min_interval < std::time::Duration::from_secs(1) {
        return Err(InvalidSetting::new(
            format!("{key}.min_interval"),
            "must be at least 1s: it is also the least time between two fetches",
        ));
    }
    if section.max_interval < section.min_interval {
        return Err(InvalidSetting::new(
            format!("{key}.max_interval"),
            "must not be less than min_interval",
        ));
    }
    if section.max_stale <= section.max_interval {
        return Err(InvalidSetting::new(
            format!("{key}.max_stale"),
            "must exceed max_interval, or keys would go stale between two regular refreshes",
        ));
    }
    Ok(RefreshBounds {
        min_interval: section.min_interval,
        max_interval: section.max_interval,
        max_stale: section.max_stale,
    })
}
