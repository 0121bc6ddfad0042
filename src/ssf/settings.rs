//! The `ssf` section: the push endpoint and its trusted transmitters, converted from the config
//! section and the transmitters' JWKS files the loader read.

use std::sync::Arc;

use crate::config::InvalidSetting;
use crate::config::schema::{SsfSection, TransmitterSection};
use crate::files::NamedFile;
use crate::keys::settings::jwks_file;
use crate::keys::{KeyOrigin, key_url};

/// One trusted Shared Signals transmitter.
#[derive(Debug, Clone)]
pub struct TransmitterSettings {
    /// Its `iss`.
    pub issuer: String,
    /// The configured token issuers whose sessions its events may act on: `issuers` as
    /// configured, else the issuer whose identifier is the transmitter's own. Never empty.
    pub issuers: Vec<Arc<str>>,
    /// Where its signing keys come from (a file or a `jwks_uri`), fetched when the receiver
    /// starts.
    pub keys: KeyOrigin,
    /// The `aud` its SETs must carry.
    pub audience: String,
}

/// The Shared Signals receiver's settings.
#[derive(Debug, Clone)]
pub struct SsfSettings {
    /// HTTP path of the push endpoint on the admin listener.
    pub push_path: String,
    /// Trusted transmitters.
    pub transmitters: Vec<TransmitterSettings>,
}

impl SsfSettings {
    /// Converts the `ssf` section. The push endpoint is served on the admin listener, so
    /// `has_admin` must hold; `trusted` are the configured token issuers; `jwks` holds, for
    /// each transmitter in order, its `jwks_file` as the loader read it (checked now, so
    /// `check-config` refuses a broken one; the receiver reads it again when it starts).
    pub fn from_section(
        ssf: &SsfSection,
        has_admin: bool,
        trusted: &[Arc<str>],
        jwks: &[Option<NamedFile>],
    ) -> Result<SsfSettings, InvalidSetting> {
        if !has_admin {
            return Err(InvalidSetting::new(
                "ssf",
                "the push endpoint is served on the admin listener: configure `admin` too",
            ));
        }
        if !ssf.push_path.starts_with('/') {
            return Err(InvalidSetting::new(
                "ssf.push_path",
                format!("`{}` must start with /", ssf.push_path),
            ));
        }
        if ssf.transmitters.is_empty() {
            return Err(InvalidSetting::new(
                "ssf.transmitters",
                "list at least one transmitter",
            ));
        }
        let mut transmitters = Vec::new();
        for (index, transmitter) in ssf.transmitters.iter().enumerate() {
            let key = format!("ssf.transmitters[{index}]");
            if transmitter.issuer.is_empty() {
                return Err(InvalidSetting::new(
                    format!("{key}.issuer"),
                    "must not be empty",
                ));
            }
            if transmitter.audience.is_empty() {
                return Err(InvalidSetting::new(
                    format!("{key}.audience"),
                    "must not be empty",
                ));
            }
            let keys = match (&transmitter.jwks_file, &transmitter.jwks_uri) {
                (Some(_), None) => {
                    let file_key = format!("{key}.jwks_file");
                    // The loader reads every `jwks_file`; were one missing, refuse.
                    let file = jwks.get(index).and_then(Option::as_ref).ok_or_else(|| {
                        InvalidSetting::new(&file_key, "was not read by the loader")
                    })?;
                    let (origin, _) = jwks_file(file)
                        .map_err(|e| InvalidSetting::new(&file_key, e.to_string()))?;
                    origin
                }
                (None, Some(uri)) if uri.starts_with("https://") || uri.starts_with("http://") => {
                    let url = key_url(uri).map_err(|e| {
                        InvalidSetting::new(format!("{key}.jwks_uri"), e.to_string())
                    })?;
                    KeyOrigin::Uri(url)
                }
                (None, Some(uri)) => {
                    return Err(InvalidSetting::new(
                        format!("{key}.jwks_uri"),
                        format!("`{uri}` is not an http(s) URL"),
                    ));
                }
                _ => {
                    return Err(InvalidSetting::new(
                        key,
                        "set exactly one of jwks_file and jwks_uri",
                    ));
                }
            };
            let issuers = transmitter_issuers(&key, transmitter, trusted)?;
            transmitters.push(TransmitterSettings {
                issuer: transmitter.issuer.clone(),
                issuers,
                keys,
                audience: transmitter.audience.clone(),
            });
        }
        Ok(SsfSettings {
            push_path: ssf.push_path.clone(),
            transmitters,
        })
    }
}

/// The token issuers a transmitter may act on. Each listed one must be configured; without
/// a list, the configured issuer with the transmitter's own identifier. A transmitter with
/// neither is refused rather than left acting on nothing: it would acknowledge (202) every
/// event while cutting no session, and its identity provider would believe users logged
/// out who are not.
fn transmitter_issuers(
    key: &str,
    transmitter: &TransmitterSection,
    trusted: &[Arc<str>],
) -> Result<Vec<Arc<str>>, InvalidSetting> {
    let configured = |issuer: &str| trusted.iter().find(|own| ***own == *issuer).cloned();
    let Some(listed) = &transmitter.issuers else {
        return configured(&transmitter.issuer)
            .map(|own| vec![own])
            .ok_or_else(|| {
                InvalidSetting::new(
                    format!("{key}.issuers"),
                    format!(
                        "`{}` is not a configured issuer, so this transmitter would act on no \
                         session: list the issuers[].issuer values it speaks for",
                        transmitter.issuer
                    ),
                )
            });
    };
    if listed.is_empty() {
        return Err(InvalidSetting::new(
            format!("{key}.issuers"),
            "an empty list would act on no session; list the issuers[].issuer values \
             this transmitter speaks for",
        ));
    }
    let mut issuers: Vec<Arc<str>> = Vec::with_capacity(listed.len());
    for (index, issuer) in listed.iter().enumerate() {
        let entry = format!("{key}.issuers[{index}]");
        let own = configured(issuer).ok_or_else(|| {
            InvalidSetting::new(
                &entry,
                format!("`{issuer}` is not a configured issuer (issuers[].issuer)"),
            )
        })?;
        if issuers.contains(&own) {
            return Err(InvalidSetting::new(
                &entry,
                format!("`{issuer}` is listed twice"),
            ));
        }
        issuers.push(own);
    }
    Ok(issuers)
}
