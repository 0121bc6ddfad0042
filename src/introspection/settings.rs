//! `issuers[].introspection`, converted: the endpoint and the client credentials the
//! [`super::HttpIntrospector`] uses, and the answer rules the policy's verifier applies
//! (signed answers, RFC 9701, are checked with the issuer's own keys and algorithms).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use sessiongate_token::{IntrospectionRules, IssuerRules, SignedAnswers, SigningAlgorithm};
use sha2::Digest;

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
    /// Ask for signed answers (RFC 9701); the rules then accept no other.
    signed_responses: bool,
    /// Extra CA certificates (PEM) trusted for the endpoint, besides the system's.
    pub ca_pem: Option<Vec<u8>>,
}

/// sessiongate's credentials at the introspection endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    /// The client id.
    pub client_id: String,
    /// How it proves it.
    pub auth: ClientAuth,
}

/// How sessiongate authenticates to the endpoint. The secret and the key are never printed
/// (see the `Debug` impl); their SHA-256 is, so a reload that changes them is told apart.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic` (RFC 6749 2.3.1).
    SecretBasic {
        /// The client secret.
        secret: String,
    },
    /// `private_key_jwt` (RFC 7523 section 2.2): a short-lived JWT assertion per request.
    PrivateKeyJwt {
        /// The PEM private key, checked to parse for `algorithm` at load.
        key_pem: Vec<u8>,
        /// The assertion's algorithm.
        algorithm: SigningAlgorithm,
    },
    /// `tls_client_auth` (RFC 8705 section 2.1): the TLS connection presents a certificate.
    TlsClientAuth {
        /// The PEM certificate chain followed by its private key, checked to parse at load.
        identity_pem: Vec<u8>,
    },
}

/// The bytes of the files an `introspection` section names, as the loader read them.
#[derive(Debug, Clone, Copy, Default)]
pub struct IntrospectionFileBytes<'a> {
    /// `client_auth.secret_file` or `client_auth.key_file`.
    pub credential: Option<&'a NamedFile>,
    /// `client_auth.certificate_file`.
    pub certificate: Option<&'a NamedFile>,
    /// `ca_file`.
    pub ca: Option<&'a NamedFile>,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (method, material): (&str, &[u8]) = match &self.auth {
            ClientAuth::SecretBasic { secret } => ("client_secret_basic", secret.as_bytes()),
            ClientAuth::PrivateKeyJwt { key_pem, .. } => ("private_key_jwt", key_pem),
            ClientAuth::TlsClientAuth { identity_pem } => ("tls_client_auth", identity_pem),
        };
        let digest = sha2::Sha256::digest(material);
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .field("method", &method)
            .field(
                "material_sha256_prefix",
                &format!(
                    "{:02x}{:02x}{:02x}{:02x}",
                    digest[0], digest[1], digest[2], digest[3]
                ),
            )
            .finish()
    }
}

/// The private key in `pem` for `algorithm`, as the assertion signer uses it.
pub fn assertion_key(
    pem: &[u8],
    algorithm: SigningAlgorithm,
) -> Result<(jsonwebtoken::EncodingKey, jsonwebtoken::Algorithm), String> {
    use jsonwebtoken::{Algorithm, EncodingKey};
    let (algorithm, key) = match algorithm {
        SigningAlgorithm::Rs256 => (Algorithm::RS256, EncodingKey::from_rsa_pem(pem)),
        SigningAlgorithm::Rs384 => (Algorithm::RS384, EncodingKey::from_rsa_pem(pem)),
        SigningAlgorithm::Rs512 => (Algorithm::RS512, EncodingKey::from_rsa_pem(pem)),
        SigningAlgorithm::Ps256 => (Algorithm::PS256, EncodingKey::from_rsa_pem(pem)),
        SigningAlgorithm::Ps384 => (Algorithm::PS384, EncodingKey::from_rsa_pem(pem)),
        SigningAlgorithm::Ps512 => (Algorithm::PS512, EncodingKey::from_rsa_pem(pem)),
        SigningAlgorithm::Es256 => (Algorithm::ES256, EncodingKey::from_ec_pem(pem)),
        SigningAlgorithm::Es384 => (Algorithm::ES384, EncodingKey::from_ec_pem(pem)),
        SigningAlgorithm::EdDsa => (Algorithm::EdDSA, EncodingKey::from_ed_pem(pem)),
    };
    key.map(|key| (key, algorithm)).map_err(|e| {
        format!(
            "not a PEM private key for {}: {e}",
            algorithm_name(algorithm)
        )
    })
}

fn algorithm_name(algorithm: jsonwebtoken::Algorithm) -> String {
    format!("{algorithm:?}")
}

impl fmt::Debug for IntrospectionSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionSettings")
            .field("issuer", &self.issuer)
            .field("endpoint", &self.endpoint.as_str())
            .field("client", &self.client)
            .field("timeout", &self.timeout)
            .field("max_concurrent", &self.max_concurrent)
            .field("signed_responses", &self.signed_responses)
            .field("ca_file", &self.ca_pem.as_ref().map(|pem| pem.len()))
            .finish()
    }
}

impl IntrospectionSettings {
    /// Converts `<key>.introspection` (`key` is the issuer's, `issuers[0]`) of the issuer
    /// `issuer` (whose keys are configured when `has_keys`), given the secret or key file the
    /// loader read: the transport's settings, and the rules its answers are read by.
    pub fn from_section(
        key: &str,
        issuer: &IssuerRules,
        has_keys: bool,
        section: &IntrospectionSection,
        files: IntrospectionFileBytes<'_>,
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
        let auth = client_auth(&key, &section.client_auth, files)?;
        let ca_pem = match (&section.ca_file, files.ca) {
            (None, _) => None,
            (Some(_), file) => {
                let ca_key = format!("{key}.ca_file");
                let bytes = file_bytes(&ca_key, file)?;
                reqwest::Certificate::from_pem_bundle(bytes)
                    .ok()
                    .filter(|certificates| !certificates.is_empty())
                    .ok_or_else(|| InvalidSetting::new(&ca_key, "holds no PEM CA certificate"))?;
                Some(bytes.clone())
            }
        };
        if section.signed_responses && !has_keys {
            return Err(InvalidSetting::new(
                format!("{key}.signed_responses"),
                "needs the issuer's keys (jwks_file, jwks_uri or discovery) to check signatures",
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
            issuer: Arc::clone(&issuer.issuer),
            endpoint,
            client: ClientCredentials {
                client_id: section.client_id.clone(),
                auth,
            },
            timeout: section.timeout,
            max_concurrent: section.max_concurrent as usize,
            signed_responses: section.signed_responses,
            ca_pem,
        };
        let rules = IntrospectionRules {
            issuer: Arc::clone(&issuer.issuer),
            audiences: issuer.audiences.clone(),
            cache_ttl: section.cache_ttl,
            signed: section.signed_responses.then(|| SignedAnswers {
                audience: section.client_id.as_str().into(),
                algorithms: issuer.algorithms.clone(),
            }),
        };
        Ok((settings, rules))
    }

    /// Whether answers are asked for, and must be, signed (RFC 9701).
    pub fn signed_responses(&self) -> bool {
        self.signed_responses
    }
}

/// The bytes of `file`, named by `key`, or why there are none.
fn file_bytes<'f>(key: &str, file: Option<&'f NamedFile>) -> Result<&'f Vec<u8>, InvalidSetting> {
    let file = file.ok_or_else(|| InvalidSetting::new(key, "was not read"))?;
    file.bytes
        .as_ref()
        .map_err(|e| InvalidSetting::new(key, format!("cannot read {}: {e}", file.path.display())))
}

/// `<key>.client_auth`, with the files it names as the loader read them.
fn client_auth(
    key: &str,
    section: &ClientAuthSection,
    files: IntrospectionFileBytes<'_>,
) -> Result<ClientAuth, InvalidSetting> {
    let file_key = match section {
        ClientAuthSection::ClientSecretBasic { .. } => format!("{key}.client_auth.secret_file"),
        ClientAuthSection::PrivateKeyJwt { .. } | ClientAuthSection::TlsClientAuth { .. } => {
            format!("{key}.client_auth.key_file")
        }
    };
    let bytes = file_bytes(&file_key, files.credential)?;
    let file = files.credential.expect("read, since its bytes are");
    match section {
        ClientAuthSection::ClientSecretBasic { .. } => {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| InvalidSetting::new(&file_key, "the secret is not UTF-8 text"))?
                .trim();
            if text.is_empty() {
                return Err(InvalidSetting::new(
                    &file_key,
                    format!("{} holds no secret", file.path.display()),
                ));
            }
            Ok(ClientAuth::SecretBasic {
                secret: text.to_owned(),
            })
        }
        ClientAuthSection::PrivateKeyJwt { alg, .. } => {
            let algorithm = SigningAlgorithm::from_jose(alg).ok_or_else(|| {
                InvalidSetting::new(
                    format!("{key}.client_auth.alg"),
                    format!("`{alg}` is not a supported asymmetric JWS algorithm"),
                )
            })?;
            assertion_key(bytes, algorithm).map_err(|e| {
                InvalidSetting::new(&file_key, format!("{}: {e}", file.path.display()))
            })?;
            Ok(ClientAuth::PrivateKeyJwt {
                key_pem: bytes.clone(),
                algorithm,
            })
        }
        ClientAuthSection::TlsClientAuth { .. } => {
            let certificate_key = format!("{key}.client_auth.certificate_file");
            let mut identity_pem = file_bytes(&certificate_key, files.certificate)?.clone();
            identity_pem.push(b'\n');
            identity_pem.extend_from_slice(bytes);
            reqwest::Identity::from_pem(&identity_pem).map_err(|e| {
                InvalidSetting::new(
                    &certificate_key,
                    format!("with key_file, not a PEM certificate and private key: {e}"),
                )
            })?;
            Ok(ClientAuth::TlsClientAuth { identity_pem })
        }
    }
}
