//! Where keys come from (a file, a `jwks_uri`, OIDC discovery) and fetching them, with every
//! input bounded: time, size, redirects, and what an issuer's documents may say.
//!
//! One shape for every key set the server trusts: token issuers (refreshed by
//! [`super::refresh`]) and Shared Signals transmitters (fetched once when the receiver starts)
//! both name a [`KeyOrigin`] and load it with [`fetch`]. A file is read on a blocking thread,
//! never on the async runtime.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use super::schedule::cache_control_max_age;
use crate::http_answer::{bounded_body, error_chain};
use sessiongate_token::{JwksError, KeySet, ParsedJwks};

/// Largest JWKS or discovery document read (1 MiB). Real ones are a few KiB; a bigger body is a
/// misconfiguration or an attack, and is refused before it is parsed.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Longest one HTTP exchange may take, connection included. A refresh never blocks requests,
/// but a hung source must not hold the refresh task (and the unknown-`kid` waiters) forever.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest a TCP/TLS connection may take to establish.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The well-known path of an OpenID Provider's metadata (OpenID Connect Discovery 1.0, 4).
const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// Where a key set comes from, as configured; an issuer's is compared on reload to decide
/// whether to reload its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    /// A JWKS file (an issuer's is watched for changes).
    File(PathBuf),
    /// A JWKS URL.
    Uri(Url),
    /// The issuer's OIDC discovery document names the JWKS URL; its `issuer` must equal this.
    Discovery {
        /// The configured issuer, which is also where the discovery document lives.
        issuer: String,
    },
}

impl KeyOrigin {
    /// For logs and errors: "file /etc/…", "https://…", "discovery https://…".
    pub fn describe(&self) -> String {
        match self {
            KeyOrigin::File(path) => format!("file {}", path.display()),
            KeyOrigin::Uri(url) => url.to_string(),
            KeyOrigin::Discovery { issuer } => format!("discovery {}", discovery_url_text(issuer)),
        }
    }
}

/// Why a key set could not be had from its origin.
#[derive(Debug, thiserror::Error)]
pub enum KeyFetchError {
    /// The origin could not be read (a file, an HTTP exchange, a discovery document).
    #[error("cannot read {origin}: {message}")]
    Unreachable {
        /// The origin, as [`KeyOrigin::describe`] gives it (or the URL that failed).
        origin: String,
        /// What went wrong.
        message: String,
    },
    /// The origin was read but holds no usable JWKS.
    #[error("{origin}: {source}")]
    Invalid {
        /// The origin, as [`KeyOrigin::describe`] gives it (or the URL that served it).
        origin: String,
        /// What is wrong with the document.
        source: JwksError,
    },
}

impl KeyFetchError {
    /// `origin` could not be read, because of `message`.
    pub fn unreachable(origin: &KeyOrigin, message: impl std::fmt::Display) -> KeyFetchError {
        KeyFetchError::Unreachable {
            origin: origin.describe(),
            message: message.to_string(),
        }
    }
}

/// Parses the JWKS document `bytes`, read from `origin`. The config loader uses it on the
/// bytes it read, so `check-config` refuses a broken key file; [`fetch`] on what it fetched.
pub fn parse_jwks(origin: &KeyOrigin, bytes: &[u8]) -> Result<ParsedJwks, KeyFetchError> {
    KeySet::from_jwks_json(bytes).map_err(|source| KeyFetchError::Invalid {
        origin: origin.describe(),
        source,
    })
}

/// Why a URL is not acceptable as a key source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not an absolute URL.
    #[error("`{0}` is not a URL")]
    NotAUrl(String),
    /// `http://` to a host other than the loopback interface, or another scheme.
    #[error(
        "`{0}` must use https (plain http is accepted only for 127.0.0.1, [::1] and localhost)"
    )]
    Insecure(String),
    /// Userinfo or a fragment, which have no place in a key URL.
    #[error("`{0}` must not carry a user name, password or #fragment")]
    Extras(String),
}

/// Parses a key URL: `https://`, or `http://` to the loopback interface only (a local identity
/// provider, or tests). Keys fetched over plain http from elsewhere could be swapped in transit.
pub fn key_url(text: &str) -> Result<Url, UrlError> {
    let url = Url::parse(text).map_err(|_| UrlError::NotAUrl(text.to_owned()))?;
    let loopback = url.host_str().is_some_and(|host| {
        host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err(UrlError::Insecure(text.to_owned())),
    }
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err(UrlError::Extras(text.to_owned()));
    }
    Ok(url)
}

/// `<issuer>/.well-known/openid-configuration`, the issuer's trailing `/` removed first as the
/// discovery spec requires.
fn discovery_url_text(issuer: &str) -> String {
    format!("{}{DISCOVERY_PATH}", issuer.trim_end_matches('/'))
}

/// The discovery document's URL for `issuer` (validated like any key URL).
pub fn discovery_url(issuer: &str) -> Result<Url, UrlError> {
    key_url(&discovery_url_text(issuer))
}

/// Why a discovery document cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// Not JSON, or `issuer` / `jwks_uri` missing or not strings.
    #[error("not an OpenID Provider metadata document: {0}")]
    NotMetadata(String),
    /// The document speaks for another issuer (OpenID Connect Discovery 1.0, 4.3: it MUST be
    /// identical), which could make us trust someone else's keys.
    #[error("document names issuer `{found}`, not the configured `{expected}`")]
    IssuerMismatch {
        /// The configured issuer.
        expected: String,
        /// The document's `issuer`.
        found: String,
    },
    /// `jwks_uri` is not an acceptable key URL.
    #[error("jwks_uri: {0}")]
    JwksUri(UrlError),
}

#[derive(Deserialize)]
struct ProviderMetadata {
    issuer: String,
    jwks_uri: String,
}

/// Reads the JWKS URL from an OpenID Provider metadata document for `expected_issuer`.
pub fn jwks_uri_from_discovery(
    document: &[u8],
    expected_issuer: &str,
) -> Result<Url, DiscoveryError> {
    let metadata: ProviderMetadata =
        serde_json::from_slice(document).map_err(|e| DiscoveryError::NotMetadata(e.to_string()))?;
    if metadata.issuer != expected_issuer {
        return Err(DiscoveryError::IssuerMismatch {
            expected: expected_issuer.to_owned(),
            found: metadata.issuer,
        });
    }
    key_url(&metadata.jwks_uri).map_err(DiscoveryError::JwksUri)
}

/// A fetched key set, and how long its source said it may be cached.
#[derive(Debug)]
pub struct Fetched {
    /// The parsed keys.
    pub jwks: ParsedJwks,
    /// `Cache-Control: max-age` of the JWKS response (files have none).
    pub max_age: Option<Duration>,
}

/// The HTTP client key sources share: rustls, bounded time, no redirects (a redirect could
/// downgrade https to http or point somewhere the operator never configured).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(FETCH_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("sessiongate/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client's TLS backend initialises")
}

/// Fetches the current keys from `origin`: a file is read (bounded, on a blocking thread), a
/// URL fetched, a discovery document followed to its `jwks_uri`.
pub async fn fetch(origin: &KeyOrigin, client: &reqwest::Client) -> Result<Fetched, KeyFetchError> {
    match origin {
        KeyOrigin::File(path) => {
            let path = path.clone();
            let bytes = tokio::task::spawn_blocking(move || {
                crate::files::read_bounded(&path, MAX_DOCUMENT_BYTES as u64)
            })
            .await
            .map_err(|e| KeyFetchError::unreachable(origin, e))?
            .map_err(|e| KeyFetchError::unreachable(origin, e))?;
            Ok(Fetched {
                jwks: parse_jwks(origin, &bytes)?,
                max_age: None,
            })
        }
        KeyOrigin::Uri(url) => fetch_jwks(client, url).await,
        KeyOrigin::Discovery { issuer } => {
            let url = discovery_url(issuer).map_err(|e| KeyFetchError::unreachable(origin, e))?;
            let (document, _) = get(client, &url).await?;
            let jwks_uri = jwks_uri_from_discovery(&document, issuer)
                .map_err(|e| KeyFetchError::unreachable(origin, e))?;
            fetch_jwks(client, &jwks_uri).await
        }
    }
}

async fn fetch_jwks(client: &reqwest::Client, url: &Url) -> Result<Fetched, KeyFetchError> {
    let (body, max_age) = get(client, url).await?;
    let jwks = KeySet::from_jwks_json(&body).map_err(|source| KeyFetchError::Invalid {
        origin: url.to_string(),
        source,
    })?;
    Ok(Fetched { jwks, max_age })
}

/// GETs `url`: a 200 with a body of at most [`MAX_DOCUMENT_BYTES`], and its `max-age`.
async fn get(
    client: &reqwest::Client,
    url: &Url,
) -> Result<(Vec<u8>, Option<Duration>), KeyFetchError> {
    let failed = |message: String| KeyFetchError::Unreachable {
        origin: url.to_string(),
        message,
    };
    let response = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| failed(error_chain(&e)))?;
    let max_age = response
        .headers()
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|value| value.to_str().ok())
        .and_then(cache_control_max_age);
    let body = bounded_body(response, MAX_DOCUMENT_BYTES)
        .await
        .map_err(failed)?;
    Ok((body, max_age))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "https://idp.example.test";

    #[test]
    fn key_urls_must_be_https_except_on_loopback() {
        assert!(key_url("https://idp.example.test/jwks").is_ok());
        assert!(key_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(key_url("http://localhost/jwks").is_ok());
        assert!(key_url("http://[::1]:9/jwks").is_ok());
        for insecure in [
            "http://idp.example.test/jwks",
            "ftp://x/jwks",
            "file:///etc/jwks",
        ] {
            assert!(
                matches!(key_url(insecure), Err(UrlError::Insecure(_))),
                "{insecure}"
            );
        }
        assert!(matches!(key_url("jwks.json"), Err(UrlError::NotAUrl(_))));
        assert!(matches!(
            key_url("https://user:pw@idp.example.test/jwks"),
            Err(UrlError::Extras(_))
        ));
    }

    #[test]
    fn the_discovery_url_drops_the_issuers_trailing_slash() {
        assert_eq!(
            discovery_url("https://idp.example.test/tenant/")
                .unwrap()
                .as_str(),
            "https://idp.example.test/tenant/.well-known/openid-configuration"
        );
    }

    #[test]
    fn discovery_reads_jwks_uri_for_the_same_issuer() {
        let document = br#"{"issuer":"https://idp.example.test","jwks_uri":"https://idp.example.test/keys","extra":1}"#;
        assert_eq!(
            jwks_uri_from_discovery(document, ISSUER).unwrap().as_str(),
            "https://idp.example.test/keys"
        );
    }

    #[test]
    fn discovery_for_another_issuer_is_refused() {
        let document = br#"{"issuer":"https://evil.example.test","jwks_uri":"https://evil.example.test/keys"}"#;
        assert!(matches!(
            jwks_uri_from_discovery(document, ISSUER),
            Err(DiscoveryError::IssuerMismatch { .. })
        ));
        // Exactly equal: not a prefix, not case-folded, not slash-normalised.
        let document =
            br#"{"issuer":"https://idp.example.test/","jwks_uri":"https://idp.example.test/keys"}"#;
        assert!(matches!(
            jwks_uri_from_discovery(document, ISSUER),
            Err(DiscoveryError::IssuerMismatch { .. })
        ));
    }

    #[test]
    fn discovery_without_jwks_uri_or_with_an_insecure_one_is_refused() {
        assert!(matches!(
            jwks_uri_from_discovery(br#"{"issuer":"https://idp.example.test"}"#, ISSUER),
            Err(DiscoveryError::NotMetadata(_))
        ));
        assert!(matches!(
            jwks_uri_from_discovery(b"<html>", ISSUER),
            Err(DiscoveryError::NotMetadata(_))
        ));
        let document =
            br#"{"issuer":"https://idp.example.test","jwks_uri":"http://idp.example.test/keys"}"#;
        assert!(matches!(
            jwks_uri_from_discovery(document, ISSUER),
            Err(DiscoveryError::JwksUri(UrlError::Insecure(_)))
        ));
    }
}
