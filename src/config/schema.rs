//! The configuration file's shape, exactly as operators write it (YAML), and [`parse`], which
//! names the key at which a document does not fit it.
//!
//! Every struct refuses unknown keys: a misspelt `max_token_age` silently ignored would leave a
//! route less protected than its author believes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::ConfigError;

/// Parses YAML text into the file schema, naming the key at which parsing failed.
pub fn parse(file: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let key = key_path(error.path());
        let mut problem = error.into_inner().to_string();
        // The YAML library prefixes its own (shorter) path; the full key is reported already.
        if let Some((prefix, rest)) = problem.split_once(": ")
            && !prefix.contains(' ')
            && key.starts_with(prefix)
        {
            problem = rest.to_owned();
        }
        ConfigError::Invalid {
            file: file.to_owned(),
            key,
            problem,
        }
    })
}

/// The key at which parsing failed, written as `serde_path_to_error` writes it
/// (`routes[2].scopes[0]`), except that a key which is empty, blank or holds a separator is
/// quoted (`issuers[0]." "`): unquoted, the error would name no key, or a misleading path. The
/// document itself is `(top level)`.
fn key_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let needs_quotes = |name: &str| {
        name.is_empty()
            || name
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '[' | ']' | '"'))
    };
    let mut key = String::new();
    for segment in path.iter() {
        if !key.is_empty() && !matches!(segment, Segment::Seq { .. }) {
            key.push('.');
        }
        match segment {
            Segment::Map { key: name } | Segment::Enum { variant: name } if needs_quotes(name) => {
                key.push_str(&format!("{name:?}"));
            }
            other => key.push_str(&other.to_string()),
        }
    }
    if key.is_empty() {
        "(top level)".to_owned()
    } else {
        key
    }
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Listener addresses.
    #[serde(default)]
    pub listen: ListenSection,
    /// Trusted token issuers.
    pub issuers: Vec<IssuerSection>,
    /// Session-wide rules.
    #[serde(default)]
    pub session: SessionSection,
    /// Workload binding.
    #[serde(default)]
    pub binding: BindingSection,
    /// Ordered routes; first match wins.
    pub routes: Vec<RouteSection>,
    /// The admin API listener (revocations, introspection, SSF push).
    pub admin: Option<AdminSection>,
    /// Where revocations are stored.
    #[serde(default)]
    pub revocation: RevocationSection,
    /// OpenID Shared Signals receiver.
    pub ssf: Option<SsfSection>,
    /// Traces (and other observability settings that do not fit a listener).
    #[serde(default)]
    pub telemetry: TelemetrySection,
    /// Judge and report every request, enforce no denial (see `routes[].dry_run`).
    #[serde(default)]
    pub dry_run: bool,
    /// How long in-flight checks may take to finish after SIGTERM.
    #[serde(default = "default_shutdown_grace", deserialize_with = "duration")]
    pub shutdown_grace: Duration,
    /// Bounds on the work and resources a caller can cause: verifications, bytes, time,
    /// connections.
    #[serde(default)]
    pub limits: LimitsSection,
    /// DPoP proofs (RFC 9449): algorithms, lifetime, public origin, nonces, replay memory.
    #[serde(default)]
    pub dpop: DpopSection,
}

/// `dpop`. Every key is optional: DPoP-bound tokens work without the section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpopSection {
    /// Accepted proof algorithms (JOSE names; asymmetric only). Default: all supported.
    pub algorithms: Option<Vec<String>>,
    /// How long after its `iat` a proof is accepted (plus `session.clock_skew`). Default 5s.
    #[serde(default, deserialize_with = "optional_duration")]
    pub proof_lifetime: Option<Duration>,
    /// The origin clients address (`https://api.example.com`), when Envoy is behind a proxy.
    pub origin: Option<String>,
    /// Server nonces, for routes with `dpop_nonce: true`.
    pub nonce: Option<DpopNonceSection>,
    /// This replica's memory of used proofs.
    #[serde(default)]
    pub replay: DpopReplaySection,
}

/// `dpop.nonce`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpopNonceSection {
    /// File holding the secret every replica shares (at least 32 bytes).
    pub secret_file: PathBuf,
    /// How often the nonce changes; a nonce is accepted for its period and the next.
    #[serde(default = "default_nonce_rotation", deserialize_with = "duration")]
    pub rotate_every: Duration,
}

fn default_nonce_rotation() -> Duration {
    Duration::from_secs(300)
}

/// `dpop.replay`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpopReplaySection {
    /// Most live proofs remembered (default 1,000,000); a full store refuses new proofs (503).
    pub max_entries: Option<usize>,
}

/// `limits`. Every key is optional (defaults in `config::LimitSettings` and
/// `config::VerificationSettings`): the defaults are meant for production, and later bounds can
/// join the section without breaking existing files.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Largest CheckRequest read; a larger one is answered `bad_request`.
    pub max_check_request_bytes: Option<u64>,
    /// How long a new connection may take to open (HTTP/2 handshake, request headers).
    #[serde(default, deserialize_with = "optional_duration")]
    pub handshake_timeout: Option<Duration>,
    /// How long a request body that stalled may take to arrive.
    #[serde(default, deserialize_with = "optional_duration")]
    pub body_timeout: Option<Duration>,
    /// Most connections each listener holds at once.
    #[serde(default)]
    pub max_connections: MaxConnectionsSection,
    /// Verification budgets for new tokens.
    #[serde(default)]
    pub verifications: VerificationLimitsSection,
    /// The memory of recently rejected tokens.
    #[serde(default)]
    pub rejected_tokens: RejectedTokensSection,
    /// Verification budgets of the SSF push endpoint.
    #[serde(default)]
    pub ssf_verifications: SsfVerificationLimitsSection,
}

/// `limits.max_connections`, per listener.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaxConnectionsSection {
    /// The ext_authz listener (`listen.grpc`).
    pub grpc: Option<u64>,
    /// The admin listener (`admin.listen`).
    pub admin: Option<u64>,
    /// The ops listener (`listen.http`).
    pub http: Option<u64>,
}

/// `limits.ssf_verifications`: SETs verified per second, per sending address and in all.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsfVerificationLimitsSection {
    /// Per sending address, per second.
    pub per_source: Option<u32>,
    /// Per sending address, at once after a pause.
    pub per_source_burst: Option<u32>,
    /// All sources together, per second.
    pub total: Option<u32>,
    /// All sources together, at once after a pause.
    pub total_burst: Option<u32>,
}

/// `limits.verifications`: new tokens verified per second, per caller and in all.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationLimitsSection {
    /// Per caller, per second.
    pub per_caller: Option<u32>,
    /// Per caller, at once after a pause.
    pub per_caller_burst: Option<u32>,
    /// All callers together, per second.
    pub total: Option<u32>,
    /// All callers together, at once after a pause.
    pub total_burst: Option<u32>,
    /// Most callers tracked with a budget of their own.
    pub callers: Option<usize>,
}

/// `limits.rejected_tokens`: how long and how many rejections are remembered.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectedTokensSection {
    /// How long a rejection is remembered (`0s`: never).
    #[serde(default, deserialize_with = "optional_duration")]
    pub ttl: Option<Duration>,
    /// Most rejections remembered.
    pub capacity: Option<u64>,
}

fn default_shutdown_grace() -> Duration {
    Duration::from_secs(10)
}

/// `telemetry`. Every key is optional, so other observability settings can join the section
/// without breaking existing files.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySection {
    /// OTLP/gRPC collector (`http://host:4317` or `https://…`); without it no spans are made.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: Option<String>,
    /// Fraction of allowed checks written to the decision log (denials always are).
    pub log_allowed_sample_rate: Option<f64>,
    /// Most denial lines per second and reason (0: every denial).
    pub log_denied_per_second: Option<u64>,
}

/// `admin`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Admin listener (`host:port`); never the ext_authz port.
    #[serde(default = "default_admin_listen")]
    pub listen: String,
    /// File holding the admin bearer credential (else `SESSIONGATE_ADMIN_TOKEN`).
    pub token_file: Option<PathBuf>,
}

fn default_admin_listen() -> String {
    "127.0.0.1:9193".to_owned()
}

/// `revocation`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationSection {
    /// `file` (embedded, the default) or `redis` (shared by a fleet).
    #[serde(default = "default_revocation_backend")]
    pub backend: String,
    /// `file`: where the log is kept (relative to the config file's folder). Optional so that
    /// setting it for another backend can be reported instead of ignored.
    pub path: Option<PathBuf>,
    /// `redis`: `redis://[user:password@]host:port/db` or `rediss://…` (TLS).
    pub url: Option<String>,
    /// `redis`: prefix of every key, so several meshes can share one Redis.
    pub key_prefix: Option<String>,
    /// `redis`: bound on connecting and on each command.
    #[serde(default, deserialize_with = "optional_duration")]
    pub timeout: Option<Duration>,
    /// `redis`: Redis replicas that must confirm a revocation before it is acknowledged.
    pub wait_replicas: Option<u32>,
    /// `redis` with `rediss://`: PEM file of the CA(s) Redis' certificate must chain to, instead
    /// of the system trust store (relative to the config file's folder).
    pub tls_ca_file: Option<PathBuf>,
}

impl Default for RevocationSection {
    fn default() -> Self {
        RevocationSection {
            backend: default_revocation_backend(),
            path: None,
            url: None,
            key_prefix: None,
            timeout: None,
            wait_replicas: None,
            tls_ca_file: None,
        }
    }
}

fn default_revocation_backend() -> String {
    "file".to_owned()
}

/// `ssf`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsfSection {
    /// HTTP path of the RFC 8935 push endpoint on the admin listener.
    #[serde(default = "default_push_path")]
    pub push_path: String,
    /// Transmitters whose Security Event Tokens are accepted.
    pub transmitters: Vec<TransmitterSection>,
}

fn default_push_path() -> String {
    "/ssf/events".to_owned()
}

/// One entry of `ssf.transmitters`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransmitterSection {
    /// The transmitter's `iss`.
    pub issuer: String,
    /// Its signing keys (JWKS file, relative to the config file's folder).
    pub jwks_file: Option<PathBuf>,
    /// Its signing keys (JWKS URL).
    pub jwks_uri: Option<String>,
    /// The `aud` its SETs must carry.
    pub audience: String,
    /// The configured token issuers (`issuers[].issuer`) whose sessions its events may act on;
    /// default: the one whose identifier is `issuer`.
    pub issuers: Option<Vec<String>>,
}

/// `listen`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSection {
    /// The ext_authz gRPC listener (`host:port`; port 0 picks a free one).
    #[serde(default = "default_grpc_listen")]
    pub grpc: String,
    /// The ops HTTP listener: `/metrics`, `/healthz`, `/readyz`.
    #[serde(default = "default_http_listen")]
    pub http: String,
}

impl Default for ListenSection {
    fn default() -> Self {
        ListenSection {
            grpc: default_grpc_listen(),
            http: default_http_listen(),
        }
    }
}

fn default_http_listen() -> String {
    "127.0.0.1:9192".to_owned()
}

fn default_grpc_listen() -> String {
    "127.0.0.1:9191".to_owned()
}

/// One entry of `issuers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSection {
    /// Exact `iss` value.
    pub issuer: String,
    /// Accepted audiences; `aud` must contain one.
    pub audiences: Vec<String>,
    /// JWKS file (relative to the config file's folder).
    pub jwks_file: Option<PathBuf>,
    /// JWKS URL (`https://`; `http://` only to loopback).
    pub jwks_uri: Option<String>,
    /// Find the JWKS URL in `<issuer>/.well-known/openid-configuration`.
    #[serde(default)]
    pub discovery: bool,
    /// How often keys are refreshed and how long the last good set outlives a failing source.
    #[serde(default)]
    pub keys_refresh: KeysRefreshSection,
    /// Allowed signature algorithms.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Required JOSE `typ` (e.g. `at+jwt`).
    pub require_typ: Option<String>,
    /// The issuer's token introspection endpoint (RFC 7662), for its opaque tokens.
    pub introspection: Option<IntrospectionSection>,
}

/// `issuers[].introspection`: where and how opaque tokens are introspected.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionSection {
    /// The endpoint URL (`https://`; `http://` only to loopback).
    pub endpoint: String,
    /// The client id sessiongate authenticates as.
    pub client_id: String,
    /// How sessiongate authenticates to the endpoint.
    pub client_auth: ClientAuthSection,
    /// Longest an active answer is trusted before the token is introspected again.
    #[serde(
        default = "default_introspection_cache_ttl",
        deserialize_with = "duration"
    )]
    pub cache_ttl: Duration,
    /// Longest one introspection may take, waiting for a free slot included.
    #[serde(
        default = "default_introspection_timeout",
        deserialize_with = "duration"
    )]
    pub timeout: Duration,
    /// Most introspection requests in flight at once.
    #[serde(default = "default_introspection_max_concurrent")]
    pub max_concurrent: u32,
    /// Ask for answers signed by the issuer (RFC 9701) and accept no other.
    #[serde(default)]
    pub signed_responses: bool,
    /// PEM CA certificates trusted for the endpoint's TLS certificate besides the system's
    /// (relative to the config file's folder).
    pub ca_file: Option<PathBuf>,
}

/// `issuers[].introspection.client_auth`, by `method`.
#[derive(Debug, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientAuthSection {
    /// HTTP Basic with the client id and the secret in `secret_file` (RFC 6749 2.3.1).
    ClientSecretBasic {
        /// The file holding the client secret (relative to the config file's folder).
        secret_file: PathBuf,
    },
    /// A JWT client assertion signed with the private key in `key_file` (RFC 7523).
    PrivateKeyJwt {
        /// The PEM private key file (relative to the config file's folder).
        key_file: PathBuf,
        /// Its JWS algorithm (`RS256`, `PS256`, `ES256`, `EdDSA`, …).
        alg: String,
    },
    /// Mutual TLS with a client certificate (RFC 8705 section 2.1).
    TlsClientAuth {
        /// The PEM client certificate (chain) file.
        certificate_file: PathBuf,
        /// The PEM private key file of the certificate.
        key_file: PathBuf,
    },
}

impl ClientAuthSection {
    /// The file the method reads (the secret, or the private key).
    pub fn file(&self) -> &std::path::Path {
        match self {
            ClientAuthSection::ClientSecretBasic { secret_file } => secret_file,
            ClientAuthSection::PrivateKeyJwt { key_file, .. } => key_file,
            ClientAuthSection::TlsClientAuth { key_file, .. } => key_file,
        }
    }

    /// The client certificate file, for `tls_client_auth`.
    pub fn certificate_file(&self) -> Option<&std::path::Path> {
        match self {
            ClientAuthSection::TlsClientAuth {
                certificate_file, ..
            } => Some(certificate_file),
            _ => None,
        }
    }
}

fn default_introspection_cache_ttl() -> Duration {
    Duration::from_secs(5 * 60)
}

fn default_introspection_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_introspection_max_concurrent() -> u32 {
    32
}

/// `issuers[].keys_refresh`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysRefreshSection {
    /// Floor for `Cache-Control: max-age`, retry interval, unknown-`kid` rate limit.
    #[serde(default = "default_min_interval", deserialize_with = "duration")]
    pub min_interval: Duration,
    /// Ceiling for `Cache-Control: max-age`; the interval when there is none.
    #[serde(default = "default_max_interval", deserialize_with = "duration")]
    pub max_interval: Duration,
    /// How long the last good keys are used while the source fails.
    #[serde(default = "default_max_stale", deserialize_with = "duration")]
    pub max_stale: Duration,
}

impl Default for KeysRefreshSection {
    fn default() -> Self {
        KeysRefreshSection {
            min_interval: default_min_interval(),
            max_interval: default_max_interval(),
            max_stale: default_max_stale(),
        }
    }
}

fn default_min_interval() -> Duration {
    crate::keys::RefreshBounds::default().min_interval
}

fn default_max_interval() -> Duration {
    crate::keys::RefreshBounds::default().max_interval
}

fn default_max_stale() -> Duration {
    crate::keys::RefreshBounds::default().max_stale
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".to_owned(), "ES256".to_owned(), "EdDSA".to_owned()]
}

/// `session`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSection {
    /// Longest accepted `now - iat`.
    #[serde(default = "default_max_token_age", deserialize_with = "duration")]
    pub max_token_age: Duration,
    /// Longest accepted `now - auth_time`.
    #[serde(default, deserialize_with = "optional_duration")]
    pub max_auth_age: Option<Duration>,
    /// Longest gap between allowed requests of one session.
    #[serde(default, deserialize_with = "optional_duration")]
    pub idle_timeout: Option<Duration>,
    /// Tolerated clock difference with issuers.
    #[serde(default = "default_clock_skew", deserialize_with = "duration")]
    pub clock_skew: Duration,
    /// Most sessions cached at once.
    #[serde(default = "default_cache_capacity")]
    pub cache_capacity: u64,
    /// Claim holding the granted scopes.
    #[serde(default = "default_scope_claim")]
    pub scope_claim: String,
}

impl Default for SessionSection {
    fn default() -> Self {
        SessionSection {
            max_token_age: default_max_token_age(),
            max_auth_age: None,
            idle_timeout: None,
            clock_skew: default_clock_skew(),
            cache_capacity: default_cache_capacity(),
            scope_claim: default_scope_claim(),
        }
    }
}

fn default_max_token_age() -> Duration {
    Duration::from_secs(15 * 60)
}

fn default_clock_skew() -> Duration {
    Duration::from_secs(30)
}

fn default_cache_capacity() -> u64 {
    100_000
}

fn default_scope_claim() -> String {
    "scope".to_owned()
}

/// `binding`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingSection {
    /// Claim that must equal the caller's SPIFFE ID.
    pub claim: Option<String>,
    /// Deny tokens lacking `claim`.
    #[serde(default)]
    pub require_claim: bool,
    /// Pin sessions to their first workload.
    #[serde(default)]
    pub pin_first_workload: bool,
}

/// One entry of `routes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// Unique name.
    pub name: String,
    /// Methods matched (any if absent).
    pub methods: Option<Vec<String>>,
    /// Path prefix matched.
    pub path_prefix: Option<String>,
    /// Exact path matched.
    pub path: Option<String>,
    /// Hosts matched (any if absent).
    pub hosts: Option<Vec<String>>,
    /// Envoy `context_extensions["sessiongate.policy"]` matched.
    pub policy: Option<String>,
    /// No token needed.
    #[serde(default)]
    pub public: bool,
    /// Scopes required.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Overrides `session.max_token_age`.
    #[serde(default, deserialize_with = "optional_duration")]
    pub max_token_age: Option<Duration>,
    /// Overrides `session.max_auth_age`.
    #[serde(default, deserialize_with = "optional_duration")]
    pub max_auth_age: Option<Duration>,
    /// Callers allowed (SPIFFE IDs, `*` suffix for prefixes).
    pub workloads: Option<Vec<String>>,
    /// Judge and report this route's requests, enforce no denial.
    #[serde(default)]
    pub dry_run: bool,
    /// Proof of possession required of the token: `dpop`, `mtls` or `either`.
    pub proof_of_possession: Option<String>,
    /// DPoP proofs must carry a current server nonce (needs `dpop.nonce`).
    #[serde(default)]
    pub dpop_nonce: bool,
    /// The public origin DPoP proofs name on this route (overrides `dpop.origin`).
    pub dpop_origin: Option<String>,
}

fn parse_duration<E: serde::de::Error>(text: &str) -> Result<Duration, E> {
    humantime::parse_duration(text).map_err(|e| {
        E::custom(format!(
            "`{text}` is not a duration ({e}); write e.g. 30s, 15m, 8h"
        ))
    })
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    parse_duration(&String::deserialize(deserializer)?)
}

fn optional_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    Option::<String>::deserialize(deserializer)?
        .map(|text| parse_duration(&text))
        .transpose()
}
