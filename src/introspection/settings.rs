//! `issuers[].introspection`, converted: the endpoint and the client credentials the
//! [`super::HttpIntrospector`] uses, and the answer rules the policy's verifier applies.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use sessiongate_token::IntrospectionRules;

use crate::config::InvalidSetting;
use crate::config::schema::{ClientAuthSection, IntrospectionSection};
use crate::files::NamedFile;
use crate::keys::key_url;

/// Largest client secret file read (4 KiB): a secret is tens of bytes.
pub const MAX_SECRET_FILE_BYTES: u64 = 4096;

/// Shortest `cache_ttl` accepted: below a second every request of a busy session would go to
/// the endpoint.
const MIN_CACHE_TTL: Duration = Duration::from_secs(1);

/// Longest `cache_ttl` accepted (1 h): the cache time is how long a revoked opaque token stays
/// accepted here, so it is bounded like the other delays a revocation may take.
const MAX_CACHE_TTL: Duration = Duration::from_secs(3600);

/// Longest `timeout` accepted: a check waits this long at most, and Envoy's own ext_authz
/// timeout is usually shorter still.
const MAX_TIMEOUT: Duration = Duration::from_secs(30);

/// Where and how one issuer's opaque tokens are introspected.
#[derive(Clone, PartialEq, Eq)]
pub struct IntrospectionSettings {
    /// The issuer the endpoint speaks for.
    pub issuer: Arc<str>,
    /// The endpoint (`https://`, or `http://` to loopback).
    pub endpoint: Url,
    /// How sessiongate authenticates to it.
    pub client: ClientCredentials,
    /// Longest one introspection may take, waiting for a free slot included.
    pub timeout: Duration,
    /// Most requests in flight at once.
    pub max_concurrent: usize,
}

/// sessiongate's credentials at the introspection endpoint (`client_secret_basic`).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    /// The client id.
    pub client_id: String,
    /// The client secret (never printed: see the `Debug` impl).
    pub secret: String,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl fmt::Debug for IntrospectionSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionSettings")
            .field("issuer", &self.issuer)
            .field("endpoint", &self.endpoint.as_str())
            .field("client", &self.client)
            .field("timeout", &self.timeout)
            .field("max_concurrent", &self.max_concurrent)
            .finish()
    }
}

impl IntrospectionSettings {
    /// Converts `<key>.introspection` (`key` is the issuer's, `issuers[0]`) of the issuer
    /// `issuer` with `audiences`, given the secret file the loader read: the transport's
    /// settings, and the rules its answers are read by.
    pub fn from_section(
        key: &str,
        issuer: &Arc<str>,
        audiences: &[Box<str>],
        section: &IntrospectionSection,
        secret: Option<&NamedFile>,
    ) -> Result<(IntrospectionSettings, IntrospectionRules), InvalidSetting> {
        let key = format!("{key}.introspection");
        let endpoint = key_url(&section.endpoint)
            .map_err(|e| InvalidSetting::new(format!("{key}.endpoint"), e.to_string()))?;
        if section.client_id.is_empty() {
            return Err(InvalidSetting::new(
                format!("{key}.client_id"),
                "must not be empty",
            ));
        }
        let ClientAuthSection::ClientSecretBasic { .. } = &section.client_auth;
        let secret_key = format!("{key}.client_auth.secret_file");
        let secret = secret.ok_or_else(|| InvalidSetting::new(&secret_key, "was not read"))?;
        let bytes = secret.bytes.as_ref().map_err(|e| {
            InvalidSetting::new(
                &secret_key,
                format!("cannot read {}: {e}", secret.path.display()),
            )
        })?;
        let text = std::str::from_utf8(bytes)
            .map_err(|_| InvalidSetting::new(&secret_key, "the secret is not UTF-8 text"))?
            .trim();
        if text.is_empty() {
            return Err(InvalidSetting::new(
                &secret_key,
                format!("{} holds no secret", secret.path.display()),
            ));
        }
        if !(MIN_CACHE_TTL..=MAX_CACHE_TTL).contains(&section.cache_ttl) {
            return Err(InvalidSetting::new(
                format!("{key}.cache_ttl"),
                "must be between 1s and 1h: it is how long a revoked opaque token stays accepted",
            ));
        }
        if section.timeout.is_zero() || section.timeout > MAX_TIMEOUT {
            return Err(InvalidSetting::new(
                format!("{key}.timeout"),
                "must be more than 0s and at most 30s",
            ));
        }
        if section.max_concurrent == 0 {
            return Err(InvalidSetting::new(
                format!("{key}.max_concurrent"),
                "must be at least 1",
            ));
        }
        let settings = IntrospectionSettings {
            issuer: Arc::clone(issuer),
            endpoint,
            client: ClientCredentials {
                client_id: section.client_id.clone(),
                secret: text.to_owned(),
            },
            timeout: section.timeout,
            max_concurrent: section.max_concurrent as usize,
        };
        let rules = IntrospectionRules {
            issuer: Arc::clone(issuer),
            audiences: audiences.into(),
            cache_ttl: section.cache_ttl,
        };
        Ok((settings, rules))
    }
}
