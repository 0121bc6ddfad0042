//! Configuration: read once, validated whole, compiled into the [`Policy`] and server settings.
//!
//! Every error names the file, the key (as a path such as `routes[2].max_token_age`) and what
//! is wrong, so an operator can fix it without reading code. Loading is all-or-nothing: a
//! config that fails any check is never partly applied.

mod schema;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use schema::ConfigFile;
use schema::{IssuerSection, RouteSection, TransmitterSection};

use crate::keys::source::{KeyFetchError, MAX_DOCUMENT_BYTES, parse_jwks};
use crate::keys::{KeyOrigin, RefreshBounds};
use sessiongate_check::budget::{BudgetLimits, Rate};
use sessiongate_check::policy::Policy;
use sessiongate_check::rejections::RejectionMemory;
use sessiongate_core::dry_run::DryRun;
use sessiongate_core::policy::{BindingRules, SessionRules};
use sessiongate_core::route::{
    Route, RouteAccess, RouteConditions, RouteTable, SessionRequirements,
};
use sessiongate_core::workload::WorkloadPattern;
use sessiongate_token::{ClaimRules, IssuerRules, SigningAlgorithm, TokenVerifier, TypRule};

/// Largest accepted `session.cache_capacity`; beyond it a typo (an extra zero or three) would
/// let the cache grow past any pod's memory limit.
pub const MAX_CACHE_CAPACITY: u64 = 50_000_000;

/// Largest config file read (1 MiB); a bigger one is a mistake, not a policy.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// A configuration problem, always naming file, key and problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {message}")]
    Unreadable {
        /// The config file.
        file: PathBuf,
        /// Why.
        message: String,
    },
    /// A key has a wrong or inconsistent value.
    #[error("{file}: {key}: {problem}")]
    Invalid {
        /// The config file.
        file: PathBuf,
        /// The offending key, as a path (`routes[1].scopes[0]`).
        key: String,
        /// What is wrong with it.
        problem: String,
    },
}

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

/// The admin listener's settings.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Where the admin API (and the SSF push endpoint) listens.
    pub listen: SocketAddr,
    /// File holding the admin bearer credential; `None` means `SESSIONGATE_ADMIN_TOKEN`.
    pub token_file: Option<PathBuf>,
}

/// Default `revocation.path` for the file backend.
const DEFAULT_REVOCATION_PATH: &str = "state/revocations";
/// How a certificate starts in a PEM file (`revocation.tls_ca_file`).
const CERTIFICATE_PEM: &[u8] = b"-----BEGIN CERTIFICATE-----";
/// Default `revocation.key_prefix` for the Redis backend.
const DEFAULT_KEY_PREFIX: &str = "sessiongate:";
/// Default `revocation.timeout` for the Redis backend: long enough for a loaded Redis across a
/// zone, short enough that an admin call or a new session is refused promptly when it is gone.
const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_secs(1);

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

/// Where and how traces are exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// The OTLP/gRPC collector; `None` turns tracing off (no span is even created).
    pub otlp_endpoint: Option<String>,
    /// `service.name` resource attribute of every span.
    pub service_name: String,
}

/// The ops listener, shutdown and decision log settings, bound at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct OpsSettings {
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub http_listen: SocketAddr,
    /// How long in-flight checks may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Fraction of allowed checks written to the decision log (denials always are).
    pub log_allowed_sample_rate: f64,
    /// Most denial lines written per second for each reason (0: every denial).
    pub log_denied_per_second: u64,
}

/// Bounds on what callers can make sessiongate hold, bound at start-up (`limits`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSettings {
    /// Largest CheckRequest read; a larger one is answered `bad_request` without being
    /// buffered.
    pub max_check_request_bytes: usize,
    /// How long a new connection may take to open: the HTTP/2 preface and SETTINGS on the
    /// ext_authz listener, each request's headers on the admin and ops listeners (whose
    /// connections also close after this long without a request in flight).
    pub handshake_timeout: Duration,
    /// How long a request body (a CheckRequest, a SET, an admin call) may stall.
    pub body_timeout: Duration,
    /// Most connections each listener holds at once.
    pub max_connections: MaxConnections,
}

/// `limits.max_connections`: beyond its cap, a listener closes a new connection at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxConnections {
    /// The ext_authz listener. Envoy opens a connection or a few per worker (more when a
    /// connection's concurrent streams run out); a shared sessiongate serves many Envoys.
    pub grpc: usize,
    /// The admin listener: operators, the CLI, Shared Signals transmitters.
    pub admin: usize,
    /// The ops listener: probes and scrapers.
    pub http: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        let message = crate::envoy::grpc::MessageLimits::default();
        LimitSettings {
            max_check_request_bytes: message.max_bytes,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            body_timeout: message.body_timeout,
            max_connections: MaxConnections {
                grpc: 1024,
                admin: 64,
                http: 64,
            },
        }
    }
}

impl LimitSettings {
    /// How much of each Check call is read.
    pub fn check_messages(&self) -> crate::envoy::grpc::MessageLimits {
        crate::envoy::grpc::MessageLimits {
            max_bytes: self.max_check_request_bytes,
            body_timeout: self.body_timeout,
        }
    }
}

/// Default `limits.handshake_timeout`: a client on loopback or in the cluster opens in
/// milliseconds; a connection still silent after 10 s is not a client worth a slot.
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Accepted range of `limits.max_check_request_bytes`: at least Envoy's default header limit
/// (60 KiB) with room, at most what a body-carrying check could sensibly need.
const CHECK_REQUEST_BYTES_RANGE: std::ops::RangeInclusive<u64> = 64 * 1024..=64 * 1024 * 1024;
/// Accepted range of `limits.handshake_timeout` and `limits.body_timeout`.
const LIMIT_TIMEOUT_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(300);
/// Largest accepted `limits.max_connections.*`.
const MAX_CONNECTIONS_CAP: u64 = 1_000_000;

/// Longest accepted `shutdown_grace`.
pub const MAX_SHUTDOWN_GRACE: Duration = Duration::from_secs(300);

/// `service.name` when `telemetry.service_name` is not set.
pub const DEFAULT_SERVICE_NAME: &str = "sessiongate";

/// A loaded, valid configuration.
#[derive(Debug)]
pub struct Config {
    /// The file it came from.
    pub file: PathBuf,
    /// Where the ext_authz gRPC server listens.
    pub grpc_listen: SocketAddr,
    /// Most sessions cached at once.
    pub cache_capacity: u64,
    /// Tolerated clock skew (also extends cache entries past `exp`).
    pub clock_skew: Duration,
    /// Key sources, one per issuer.
    pub keys: Vec<IssuerKeys>,
    /// The compiled policy.
    pub policy: Policy,
    /// The admin listener, if configured.
    pub admin: Option<AdminSettings>,
    /// Where revocations are stored.
    pub revocation: RevocationBackend,
    /// The Shared Signals receiver, if configured.
    pub ssf: Option<SsfSettings>,
    /// Trace export.
    pub telemetry: TelemetrySettings,
    /// The ops listener, shutdown grace and decision log sampling.
    pub ops: OpsSettings,
    /// Bounds on request sizes, stalls and connections.
    pub limits: LimitSettings,
    /// How much verification work new tokens may cause (`limits.verifications`,
    /// `limits.rejected_tokens`).
    pub verification: VerificationSettings,
}

/// Bounds on signature verification, the one unit of work any caller can make us do at will.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerificationSettings {
    /// Verifications per second, per caller and in all.
    pub budget: BudgetLimits,
    /// Recently rejected tokens, never verified again while remembered.
    pub rejections: RejectionMemory,
    /// Signatures of pushed Security Event Tokens verified per second, per sending address
    /// and in all.
    pub ssf: BudgetLimits,
}

impl Default for VerificationSettings {
    fn default() -> VerificationSettings {
        VerificationSettings {
            budget: BudgetLimits::default(),
            rejections: RejectionMemory::default(),
            ssf: crate::ssf::PUSH_BUDGET,
        }
    }
}

/// Highest `limits.verifications` rate or burst: beyond it the budget bounds nothing.
const MAX_VERIFICATION_RATE: u32 = 10_000_000;
/// Most callers `limits.verifications.callers` may track (about 100 bytes each).
const MAX_TRACKED_CALLERS: usize = 1_000_000;
/// Longest `limits.rejected_tokens.ttl`: a rejection is remembered so a flood of the same bytes
/// is cheap, not to outlive a key rotation that a refresh could miss.
const MAX_REJECTION_TTL: Duration = Duration::from_secs(600);
/// Largest `revocation.tls_ca_file` read: a CA bundle is a few KiB, a whole system store
/// about 200 KiB.
const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;

/// Most rejections `limits.rejected_tokens.capacity` may remember.
const MAX_REJECTION_CAPACITY: u64 = 10_000_000;

/// Reads, validates and compiles the configuration at `file`. JWKS files are read and checked
/// too, so `check-config` catches a broken key file before a rollout does.
pub fn load(file: &Path) -> Result<Config, ConfigError> {
    let unreadable = |message: String| ConfigError::Unreadable {
        file: file.to_owned(),
        message,
    };
    let text = crate::files::read_bounded_text(file, MAX_CONFIG_BYTES)
        .map_err(|e| unreadable(e.to_string()))?;
    let raw = parse(file, &text)?;
    let base = file.parent().unwrap_or(Path::new("."));
    Compiler { file, base }.compile(raw)
}

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

struct Compiler<'a> {
    file: &'a Path,
    base: &'a Path,
}

impl Compiler<'_> {
    /// The admin credential's error as a config error: the key named once, by this error
    /// (the credential's own message names it too, for the CLI, where it stands alone).
    fn credential_invalid(
        &self,
        error: crate::admin::CredentialError,
        token_file: Option<&Path>,
    ) -> ConfigError {
        use crate::admin::CredentialError;
        use crate::admin::credential::{MIN_TOKEN_LEN, TOKEN_ENV};
        match error {
            CredentialError::Unreadable { file, message } => self.invalid(
                "admin.token_file",
                format!("cannot read {}: {message}", file.display()),
            ),
            CredentialError::Missing => self.invalid(
                "admin.token_file",
                format!(
                    "no admin token: set admin.token_file or the {TOKEN_ENV} environment variable"
                ),
            ),
            CredentialError::TooShort { .. } => {
                let origin =
                    token_file.map_or(TOKEN_ENV.to_owned(), |file| file.display().to_string());
                self.invalid(
                    "admin.token_file",
                    format!(
                        "the admin token in {origin} must be at least {MIN_TOKEN_LEN} bytes long"
                    ),
                )
            }
        }
    }

    fn invalid(&self, key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            key: key.into(),
            problem: problem.into(),
        }
    }

    fn compile(&self, raw: ConfigFile) -> Result<Config, ConfigError> {
        let grpc_listen: SocketAddr = raw.listen.grpc.parse().map_err(|_| {
            self.invalid(
                "listen.grpc",
                format!(
                    "`{}` is not an address like 127.0.0.1:9191",
                    raw.listen.grpc
                ),
            )
        })?;
        let session = &raw.session;
        if session.cache_capacity == 0 || session.cache_capacity > MAX_CACHE_CAPACITY {
            return Err(self.invalid(
                "session.cache_capacity",
                format!(
                    "must be between 1 and {MAX_CACHE_CAPACITY}, got {}",
                    session.cache_capacity
                ),
            ));
        }
        self.positive("session.max_token_age", session.max_token_age)?;
        if let Some(age) = session.max_auth_age {
            self.positive("session.max_auth_age", age)?;
        }
        if let Some(idle) = session.idle_timeout {
            self.positive("session.idle_timeout", idle)?;
        }
        if session.clock_skew > Duration::from_secs(300) {
            return Err(self.invalid(
                "session.clock_skew",
                "more than 5m would accept long-expired tokens",
            ));
        }
        if !is_claim_name(&session.scope_claim) {
            return Err(self.invalid("session.scope_claim", "must be a non-empty claim name"));
        }
        if let Some(claim) = &raw.binding.claim
            && !is_claim_name(claim)
        {
            return Err(self.invalid("binding.claim", "must be a non-empty claim name"));
        }
        if raw.binding.require_claim && raw.binding.claim.is_none() {
            return Err(self.invalid(
                "binding.require_claim",
                "needs binding.claim to name the claim",
            ));
        }
        if raw.issuers.is_empty() {
            return Err(self.invalid("issuers", "at least one issuer is required"));
        }
        let mut issuer_rules = Vec::new();
        let mut keys = Vec::new();
        let mut seen = HashSet::new();
        for (index, issuer) in raw.issuers.iter().enumerate() {
            let key = format!("issuers[{index}]");
            if !seen.insert(issuer.issuer.as_str()) {
                return Err(self.invalid(
                    format!("{key}.issuer"),
                    format!("`{}` is listed twice", issuer.issuer),
                ));
            }
            let (rules, source, config_key) = self.issuer(&key, issuer)?;
            keys.push(IssuerKeys {
                issuer: Arc::clone(&rules.issuer),
                source,
                refresh: self.keys_refresh(&key, issuer)?,
                config_key,
            });
            issuer_rules.push(rules);
        }
        let routes = self.routes(&raw)?;
        let admin = self.admin(&raw, grpc_listen)?;
        let revocation = self.revocation(&raw)?;
        let trusted: Vec<Arc<str>> = issuer_rules
            .iter()
            .map(|rules| Arc::clone(&rules.issuer))
            .collect();
        let ssf = self.ssf(&raw, admin.is_some(), &trusted)?;
        let telemetry = self.telemetry(&raw)?;
        let ops = self.ops(&raw, grpc_listen, admin.as_ref())?;
        let verification = self.verification(&raw)?;
        let limits = self.limits(&raw)?;
        let dry_run = DryRun {
            everywhere: raw.dry_run,
            routes: raw
                .routes
                .iter()
                .filter(|route| route.dry_run)
                .map(|route| Arc::from(route.name.as_str()))
                .collect(),
        };
        let claims = ClaimRules {
            scope_claim: raw.session.scope_claim.as_str().into(),
            binding_claim: raw.binding.claim.as_deref().map(Into::into),
        };
        Ok(Config {
            file: self.file.to_owned(),
            grpc_listen,
            cache_capacity: session.cache_capacity,
            clock_skew: session.clock_skew,
            keys,
            policy: Policy {
                routes,
                verifier: TokenVerifier::new(issuer_rules, claims),
                session: SessionRules {
                    idle_timeout: session.idle_timeout,
                    clock_skew: session.clock_skew,
                },
                binding: BindingRules {
                    claim: raw.binding.claim.as_deref().map(Into::into),
                    require_claim: raw.binding.require_claim,
                    pin_first_workload: raw.binding.pin_first_workload,
                },
                dry_run,
            },
            admin,
            revocation,
            ssf,
            telemetry,
            ops,
            limits,
            verification,
        })
    }

    /// `limits.verifications` and `limits.rejected_tokens`, defaults where unset.
    fn verification(&self, raw: &ConfigFile) -> Result<VerificationSettings, ConfigError> {
        let section = &raw.limits.verifications;
        let defaults = BudgetLimits::default();
        let count = |key: &str, value: Option<u32>, default: u32| match value {
            None => Ok(default),
            Some(n) if (1..=MAX_VERIFICATION_RATE).contains(&n) => Ok(n),
            Some(n) => Err(self.invalid(
                format!("limits.{key}"),
                format!("must be between 1 and {MAX_VERIFICATION_RATE}, got {n}"),
            )),
        };
        let callers = match section.callers {
            None => defaults.callers,
            Some(n) if (1..=MAX_TRACKED_CALLERS).contains(&n) => n,
            Some(n) => {
                return Err(self.invalid(
                    "limits.verifications.callers",
                    format!("must be between 1 and {MAX_TRACKED_CALLERS}, got {n}"),
                ));
            }
        };
        let budget = BudgetLimits {
            per_caller: Rate {
                per_second: count(
                    "verifications.per_caller",
                    section.per_caller,
                    defaults.per_caller.per_second,
                )?,
                burst: count(
                    "verifications.per_caller_burst",
                    section.per_caller_burst,
                    defaults.per_caller.burst,
                )?,
            },
            total: Rate {
                per_second: count(
                    "verifications.total",
                    section.total,
                    defaults.total.per_second,
                )?,
                burst: count(
                    "verifications.total_burst",
                    section.total_burst,
                    defaults.total.burst,
                )?,
            },
            callers,
        };
        let rejected = &raw.limits.rejected_tokens;
        let memory = RejectionMemory::default();
        let ttl = rejected.ttl.unwrap_or(memory.ttl);
        if ttl > MAX_REJECTION_TTL {
            return Err(self.invalid(
                "limits.rejected_tokens.ttl",
                "more than 10m would outlive key rotations a refresh could miss",
            ));
        }
        let capacity = rejected.capacity.unwrap_or(memory.capacity);
        if capacity > MAX_REJECTION_CAPACITY {
            return Err(self.invalid(
                "limits.rejected_tokens.capacity",
                format!("must be at most {MAX_REJECTION_CAPACITY}, got {capacity}"),
            ));
        }
        let push = &raw.limits.ssf_verifications;
        let push_defaults = crate::ssf::PUSH_BUDGET;
        let ssf = BudgetLimits {
            per_caller: Rate {
                per_second: count(
                    "ssf_verifications.per_source",
                    push.per_source,
                    push_defaults.per_caller.per_second,
                )?,
                burst: count(
                    "ssf_verifications.per_source_burst",
                    push.per_source_burst,
                    push_defaults.per_caller.burst,
                )?,
            },
            total: Rate {
                per_second: count(
                    "ssf_verifications.total",
                    push.total,
                    push_defaults.total.per_second,
                )?,
                burst: count(
                    "ssf_verifications.total_burst",
                    push.total_burst,
                    push_defaults.total.burst,
                )?,
            },
            callers: push_defaults.callers,
        };
        Ok(VerificationSettings {
            budget,
            rejections: RejectionMemory { ttl, capacity },
            ssf,
        })
    }

    /// Each bound is optional; a set one must lie in its range.
    fn limits(&self, raw: &ConfigFile) -> Result<LimitSettings, ConfigError> {
        let section = &raw.limits;
        let mut limits = LimitSettings::default();
        if let Some(bytes) = section.max_check_request_bytes {
            if !CHECK_REQUEST_BYTES_RANGE.contains(&bytes) {
                return Err(self.invalid(
                    "limits.max_check_request_bytes",
                    format!(
                        "must be between {} and {} bytes, got {bytes}",
                        CHECK_REQUEST_BYTES_RANGE.start(),
                        CHECK_REQUEST_BYTES_RANGE.end()
                    ),
                ));
            }
            limits.max_check_request_bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        }
        for (key, value, target) in [
            (
                "limits.handshake_timeout",
                section.handshake_timeout,
                &mut limits.handshake_timeout,
            ),
            (
                "limits.body_timeout",
                section.body_timeout,
                &mut limits.body_timeout,
            ),
        ] {
            if let Some(value) = value {
                if !LIMIT_TIMEOUT_RANGE.contains(&value) {
                    return Err(self.invalid(key, "must be between 100ms and 5m"));
                }
                *target = value;
            }
        }
        let caps = &section.max_connections;
        for (key, value, target) in [
            (
                "limits.max_connections.grpc",
                caps.grpc,
                &mut limits.max_connections.grpc,
            ),
            (
                "limits.max_connections.admin",
                caps.admin,
                &mut limits.max_connections.admin,
            ),
            (
                "limits.max_connections.http",
                caps.http,
                &mut limits.max_connections.http,
            ),
        ] {
            if let Some(value) = value {
                if !(1..=MAX_CONNECTIONS_CAP).contains(&value) {
                    return Err(self.invalid(
                        key,
                        format!("must be between 1 and {MAX_CONNECTIONS_CAP}, got {value}"),
                    ));
                }
                *target = usize::try_from(value).unwrap_or(usize::MAX);
            }
        }
        Ok(limits)
    }

    /// The ops listener never shares a port with the ext_authz or admin listener (port 0
    /// picks distinct free ports, so it may repeat).
    fn ops(
        &self,
        raw: &ConfigFile,
        grpc_listen: SocketAddr,
        admin: Option<&AdminSettings>,
    ) -> Result<OpsSettings, ConfigError> {
        let http_listen: SocketAddr = raw.listen.http.parse().map_err(|_| {
            self.invalid(
                "listen.http",
                format!(
                    "`{}` is not an address like 127.0.0.1:9192",
                    raw.listen.http
                ),
            )
        })?;
        let clashes = |other: SocketAddr| other.port() != 0 && other.port() == http_listen.port();
        if clashes(grpc_listen) {
            return Err(self.invalid(
                "listen.http",
                "must differ from listen.grpc: the ops listener never shares the ext_authz port",
            ));
        }
        if admin.is_some_and(|admin| clashes(admin.listen)) {
            return Err(self.invalid(
                "listen.http",
                "must differ from admin.listen: probes and scrapers must not reach the admin API",
            ));
        }
        if raw.shutdown_grace > MAX_SHUTDOWN_GRACE {
            return Err(self.invalid(
                "shutdown_grace",
                "at most 5m; Kubernetes' terminationGracePeriodSeconds must exceed it anyway",
            ));
        }
        let rate = raw.telemetry.log_allowed_sample_rate.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&rate) {
            return Err(self.invalid(
                "telemetry.log_allowed_sample_rate",
                format!("`{rate}` is not a fraction between 0 and 1 (e.g. 0.01)"),
            ));
        }
        let log_denied_per_second = raw
            .telemetry
            .log_denied_per_second
            .unwrap_or(crate::decision_log::DEFAULT_DENIED_LINES_PER_SECOND);
        Ok(OpsSettings {
            http_listen,
            shutdown_grace: raw.shutdown_grace,
            log_allowed_sample_rate: rate,
            log_denied_per_second,
        })
    }

    /// The collector must be an absolute `http://host:port` URL: tonic would otherwise fail
    /// only at the first export, long after the rollout looked healthy. Plaintext only: the
    /// exporter is built without TLS, since the usual target is a collector agent on the node
    /// or in the pod; `https` is refused here rather than failing at start.
    fn telemetry(&self, raw: &ConfigFile) -> Result<TelemetrySettings, ConfigError> {
        let section = &raw.telemetry;
        if let Some(endpoint) = &section.otlp_endpoint {
            let uri: axum::http::Uri = endpoint.parse().map_err(|_| {
                self.invalid(
                    "telemetry.otlp_endpoint",
                    format!("`{endpoint}` is not a URL like http://otel-collector:4317"),
                )
            })?;
            if uri.scheme_str() == Some("https") {
                return Err(self.invalid(
                    "telemetry.otlp_endpoint",
                    format!(
                        "`{endpoint}`: https is not supported; export to a collector agent on \
                         the node or in the pod over http://"
                    ),
                ));
            }
            if uri.scheme_str() != Some("http") || uri.host().is_none_or(str::is_empty) {
                return Err(self.invalid(
                    "telemetry.otlp_endpoint",
                    format!("`{endpoint}` must be http://host:port"),
                ));
            }
        }
        let service_name = match section.service_name.as_deref() {
            None => DEFAULT_SERVICE_NAME.to_owned(),
            Some("") => {
                return Err(self.invalid("telemetry.service_name", "must not be empty"));
            }
            Some(name) => name.to_owned(),
        };
        Ok(TelemetrySettings {
            otlp_endpoint: section.otlp_endpoint.clone(),
            service_name,
        })
    }

    fn admin(
        &self,
        raw: &ConfigFile,
        grpc_listen: SocketAddr,
    ) -> Result<Option<AdminSettings>, ConfigError> {
        let Some(admin) = &raw.admin else {
            return Ok(None);
        };
        let listen: SocketAddr = admin.listen.parse().map_err(|_| {
            self.invalid(
                "admin.listen",
                format!("`{}` is not an address like 127.0.0.1:9193", admin.listen),
            )
        })?;
        if listen == grpc_listen && listen.port() != 0 {
            return Err(self.invalid(
                "admin.listen",
                "must differ from listen.grpc: the admin API never shares the ext_authz port",
            ));
        }
        let token_file = admin.token_file.as_ref().map(|path| self.base.join(path));
        // The credential is read again when the listener starts; checking it here makes a
        // missing or short token a config error (exit 2) that `check-config` catches too.
        crate::admin::AdminCredential::load(token_file.as_deref())
            .map_err(|error| self.credential_invalid(error, token_file.as_deref()))?;
        Ok(Some(AdminSettings { listen, token_file }))
    }

    fn revocation(&self, raw: &ConfigFile) -> Result<RevocationBackend, ConfigError> {
        let section = &raw.revocation;
        let only_for = |key: &str, set: bool, backend: &str| {
            if set {
                Err(self.invalid(
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
                    return Err(self.invalid("revocation.path", "must not be empty"));
                }
                Ok(RevocationBackend::File(self.base.join(path)))
            }
            "redis" => {
                only_for("path", section.path.is_some(), "file")?;
                let url = section.url.clone().ok_or_else(|| {
                    self.invalid(
                        "revocation.url",
                        "required for backend redis, e.g. redis://127.0.0.1:6379/0",
                    )
                })?;
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    return Err(self.invalid(
                        "revocation.url",
                        "must start with redis:// or rediss:// (TLS)",
                    ));
                }
                if let Err(error) = redis::Client::open(url.as_str()) {
                    // The URL may hold a password: describe the problem, never echo the value.
                    return Err(self.invalid(
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
                    return Err(self.invalid(
                        "revocation.key_prefix",
                        "at most 64 characters, without spaces or control characters",
                    ));
                }
                let timeout = section.timeout.unwrap_or(DEFAULT_REDIS_TIMEOUT);
                if timeout < Duration::from_millis(10) || timeout > Duration::from_secs(60) {
                    return Err(self.invalid("revocation.timeout", "must be between 10ms and 60s"));
                }
                let tls_ca = match &section.tls_ca_file {
                    Some(path) => Some(self.redis_ca(&url, path)?),
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
            other => Err(self.invalid(
                "revocation.backend",
                format!("`{other}` is not a backend; supported: file, redis"),
            )),
        }
    }

    /// Reads `revocation.tls_ca_file` and checks that the Redis client accepts it as trust
    /// anchors for `url` (which must be `rediss://`: the CA would otherwise be ignored).
    fn redis_ca(&self, url: &str, path: &Path) -> Result<RedisCa, ConfigError> {
        const KEY: &str = "revocation.tls_ca_file";
        if !url.starts_with("rediss://") {
            return Err(self.invalid(KEY, "only applies to a rediss:// (TLS) revocation.url"));
        }
        let file = self.base.join(path);
        let pem = crate::files::read_bounded(&file, MAX_CA_FILE_BYTES)
            .map_err(|e| self.invalid(KEY, format!("cannot read {}: {e}", file.display())))?;
        if !pem
            .windows(CERTIFICATE_PEM.len())
            .any(|w| w == CERTIFICATE_PEM)
        {
            return Err(self.invalid(KEY, format!("{} holds no PEM certificate", file.display())));
        }
        let certificates = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone()),
        };
        // The error is about the PEM, never the URL (which may hold a password).
        redis::Client::build_with_tls(url, certificates).map_err(|e| {
            self.invalid(
                KEY,
                format!("{}: not usable as a CA certificate: {e}", file.display()),
            )
        })?;
        Ok(RedisCa { file, pem })
    }

    /// The token issuers a transmitter may act on. Each listed one must be configured; without
    /// a list, the configured issuer with the transmitter's own identifier. A transmitter with
    /// neither is refused rather than left acting on nothing: it would acknowledge (202) every
    /// event while cutting no session, and its identity provider would believe users logged
    /// out who are not.
    fn transmitter_issuers(
        &self,
        key: &str,
        transmitter: &TransmitterSection,
        trusted: &[Arc<str>],
    ) -> Result<Vec<Arc<str>>, ConfigError> {
        let configured = |issuer: &str| trusted.iter().find(|own| ***own == *issuer).cloned();
        let Some(listed) = &transmitter.issuers else {
            return configured(&transmitter.issuer)
                .map(|own| vec![own])
                .ok_or_else(|| {
                    self.invalid(
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
            return Err(self.invalid(
                format!("{key}.issuers"),
                "an empty list would act on no session; list the issuers[].issuer values \
                 this transmitter speaks for",
            ));
        }
        let mut issuers: Vec<Arc<str>> = Vec::with_capacity(listed.len());
        for (index, issuer) in listed.iter().enumerate() {
            let entry = format!("{key}.issuers[{index}]");
            let own = configured(issuer).ok_or_else(|| {
                self.invalid(
                    &entry,
                    format!("`{issuer}` is not a configured issuer (issuers[].issuer)"),
                )
            })?;
            if issuers.contains(&own) {
                return Err(self.invalid(&entry, format!("`{issuer}` is listed twice")));
            }
            issuers.push(own);
        }
        Ok(issuers)
    }

    fn ssf(
        &self,
        raw: &ConfigFile,
        has_admin: bool,
        trusted: &[Arc<str>],
    ) -> Result<Option<SsfSettings>, ConfigError> {
        let Some(ssf) = &raw.ssf else { return Ok(None) };
        if !has_admin {
            return Err(self.invalid(
                "ssf",
                "the push endpoint is served on the admin listener: configure `admin` too",
            ));
        }
        if !ssf.push_path.starts_with('/') {
            return Err(self.invalid(
                "ssf.push_path",
                format!("`{}` must start with /", ssf.push_path),
            ));
        }
        if ssf.transmitters.is_empty() {
            return Err(self.invalid("ssf.transmitters", "list at least one transmitter"));
        }
        let mut transmitters = Vec::new();
        for (index, transmitter) in ssf.transmitters.iter().enumerate() {
            let key = format!("ssf.transmitters[{index}]");
            if transmitter.issuer.is_empty() {
                return Err(self.invalid(format!("{key}.issuer"), "must not be empty"));
            }
            if transmitter.audience.is_empty() {
                return Err(self.invalid(format!("{key}.audience"), "must not be empty"));
            }
            let keys = match (&transmitter.jwks_file, &transmitter.jwks_uri) {
                (Some(file), None) => {
                    let origin = KeyOrigin::File(self.base.join(file));
                    self.jwks_file(&origin)
                        .map_err(|e| self.invalid(format!("{key}.jwks_file"), e.to_string()))?;
                    origin
                }
                (None, Some(uri)) if uri.starts_with("https://") || uri.starts_with("http://") => {
                    let url = crate::keys::key_url(uri)
                        .map_err(|e| self.invalid(format!("{key}.jwks_uri"), e.to_string()))?;
                    KeyOrigin::Uri(url)
                }
                (None, Some(uri)) => {
                    return Err(self.invalid(
                        format!("{key}.jwks_uri"),
                        format!("`{uri}` is not an http(s) URL"),
                    ));
                }
                _ => return Err(self.invalid(key, "set exactly one of jwks_file and jwks_uri")),
            };
            let issuers = self.transmitter_issuers(&key, transmitter, trusted)?;
            transmitters.push(TransmitterSettings {
                issuer: transmitter.issuer.clone(),
                issuers,
                keys,
                audience: transmitter.audience.clone(),
            });
        }
        Ok(Some(SsfSettings {
            push_path: ssf.push_path.clone(),
            transmitters,
        }))
    }

    fn positive(&self, key: &str, value: Duration) -> Result<(), ConfigError> {
        if value.is_zero() {
            Err(self.invalid(key, "must be greater than zero"))
        } else {
            Ok(())
        }
    }

    fn issuer(
        &self,
        key: &str,
        issuer: &IssuerSection,
    ) -> Result<(IssuerRules, KeyOrigin, String), ConfigError> {
        if issuer.issuer.is_empty() {
            return Err(self.invalid(format!("{key}.issuer"), "must not be empty"));
        }
        if issuer.audiences.is_empty() || issuer.audiences.iter().any(String::is_empty) {
            return Err(self.invalid(
                format!("{key}.audiences"),
                "list at least one non-empty audience",
            ));
        }
        if issuer.algorithms.is_empty() {
            return Err(self.invalid(format!("{key}.algorithms"), "list at least one algorithm"));
        }
        let mut algorithms = Vec::new();
        for (index, name) in issuer.algorithms.iter().enumerate() {
            let algorithm = SigningAlgorithm::from_jose(name).ok_or_else(|| {
                let supported: Vec<&str> = SigningAlgorithm::ALL
                    .iter()
                    .map(|a| a.jose_name())
                    .collect();
                let why = if name.eq_ignore_ascii_case("none") || name.starts_with("HS") {
                    "unsigned and symmetric algorithms are never accepted".to_owned()
                } else {
                    "is not supported".to_owned()
                };
                self.invalid(
                    format!("{key}.algorithms[{index}]"),
                    format!("`{name}` {why}; supported: {}", supported.join(", ")),
                )
            })?;
            algorithms.push(algorithm);
        }
        let (source, config_key) = self.key_origin(key, issuer)?;
        let typ = match issuer.require_typ.as_deref() {
            None => TypRule::AccessTokenOrJwt,
            Some("") => return Err(self.invalid(format!("{key}.require_typ"), "must not be empty")),
            Some(typ) => TypRule::Exactly(typ.into()),
        };
        let rules = IssuerRules {
            issuer: issuer.issuer.as_str().into(),
            audiences: issuer.audiences.iter().map(|a| a.as_str().into()).collect(),
            algorithms: algorithms.into(),
            typ,
        };
        Ok((rules, source, config_key))
    }

    /// Exactly one of `jwks_file` (read and checked now), `jwks_uri` or `discovery: true`
    /// (checked for a safe URL; fetched when the server starts or reloads).
    fn key_origin(
        &self,
        key: &str,
        issuer: &IssuerSection,
    ) -> Result<(KeyOrigin, String), ConfigError> {
        let set: Vec<&str> = [
            issuer.jwks_file.is_some().then_some("jwks_file"),
            issuer.jwks_uri.is_some().then_some("jwks_uri"),
            issuer.discovery.then_some("discovery"),
        ]
        .into_iter()
        .flatten()
        .collect();
        match set.as_slice() {
            [] => Err(self.invalid(
                format!("{key}.jwks_file"),
                "is required (the issuer's public keys): set one of jwks_file, jwks_uri or \
                 discovery: true",
            )),
            [_, second, ..] => Err(self.invalid(
                format!("{key}.{second}"),
                "set exactly one of jwks_file, jwks_uri and discovery",
            )),
            ["jwks_file"] => {
                let config_key = format!("{key}.jwks_file");
                let path = self
                    .base
                    .join(issuer.jwks_file.as_deref().unwrap_or(Path::new("")));
                let origin = KeyOrigin::File(path);
                let parsed = self
                    .jwks_file(&origin)
                    .map_err(|e| self.invalid(&config_key, e.to_string()))?;
                for skipped in &parsed.skipped {
                    tracing::warn!(file = %self.file.display(), key = %config_key, "skipping {skipped}");
                }
                Ok((origin, config_key))
            }
            ["jwks_uri"] => {
                let config_key = format!("{key}.jwks_uri");
                let url = crate::keys::key_url(issuer.jwks_uri.as_deref().unwrap_or_default())
                    .map_err(|e| self.invalid(&config_key, e.to_string()))?;
                Ok((KeyOrigin::Uri(url), config_key))
            }
            _ => {
                let config_key = format!("{key}.discovery");
                crate::keys::discovery_url(&issuer.issuer).map_err(|e| {
                    self.invalid(
                        &config_key,
                        format!(
                            "the issuer is where discovery looks, so it must be a safe URL: {e}"
                        ),
                    )
                })?;
                Ok((
                    KeyOrigin::Discovery {
                        issuer: issuer.issuer.clone(),
                    },
                    config_key,
                ))
            }
        }
    }

    /// Reads and parses a JWKS file, so a broken one is a config error.
    fn jwks_file(
        &self,
        origin: &KeyOrigin,
    ) -> Result<sessiongate_token::ParsedJwks, KeyFetchError> {
        let KeyOrigin::File(path) = origin else {
            unreachable!("only files are read while loading")
        };
        let bytes = crate::files::read_bounded(path, MAX_DOCUMENT_BYTES as u64)
            .map_err(|e| KeyFetchError::unreachable(origin, e))?;
        parse_jwks(origin, &bytes)
    }

    fn keys_refresh(
        &self,
        key: &str,
        issuer: &IssuerSection,
    ) -> Result<RefreshBounds, ConfigError> {
        let section = &issuer.keys_refresh;
        let key = format!("{key}.keys_refresh");
        if section.min_interval < std::time::Duration::from_secs(1) {
            return Err(self.invalid(
                format!("{key}.min_interval"),
                "must be at least 1s: it is also the least time between two fetches",
            ));
        }
        if section.max_interval < section.min_interval {
            return Err(self.invalid(
                format!("{key}.max_interval"),
                "must not be less than min_interval",
            ));
        }
        if section.max_stale <= section.max_interval {
            return Err(self.invalid(
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

    fn routes(&self, raw: &ConfigFile) -> Result<RouteTable, ConfigError> {
        let mut names = HashSet::new();
        let mut routes = Vec::new();
        for (index, section) in raw.routes.iter().enumerate() {
            let key = format!("routes[{index}]");
            if section.name.is_empty() {
                return Err(self.invalid(format!("{key}.name"), "must not be empty"));
            }
            if !names.insert(section.name.as_str()) {
                return Err(self.invalid(
                    format!("{key}.name"),
                    format!("`{}` is used by an earlier route", section.name),
                ));
            }
            routes.push(self.route(&key, section, raw)?);
        }
        Ok(RouteTable::new(routes))
    }

    fn route(
        &self,
        key: &str,
        section: &RouteSection,
        raw: &ConfigFile,
    ) -> Result<Route, ConfigError> {
        let conditions = self.conditions(key, section)?;
        let access = if section.public {
            for (field, set) in [
                ("scopes", !section.scopes.is_empty()),
                ("max_token_age", section.max_token_age.is_some()),
                ("max_auth_age", section.max_auth_age.is_some()),
            ] {
                if set {
                    return Err(self.invalid(
                        format!("{key}.{field}"),
                        "a public route takes no token, so this would never apply",
                    ));
                }
            }
            RouteAccess::Public
        } else {
            for (index, scope) in section.scopes.iter().enumerate() {
                let valid = !scope.is_empty()
                    && scope
                        .bytes()
                        .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E));
                if !valid {
                    return Err(self.invalid(
                        format!("{key}.scopes[{index}]"),
                        format!("`{scope}` is not a valid OAuth scope"),
                    ));
                }
            }
            let max_token_age = section.max_token_age.unwrap_or(raw.session.max_token_age);
            self.positive(&format!("{key}.max_token_age"), max_token_age)?;
            let max_auth_age = section.max_auth_age.or(raw.session.max_auth_age);
            if let Some(age) = section.max_auth_age {
                self.positive(&format!("{key}.max_auth_age"), age)?;
            }
            RouteAccess::Session(SessionRequirements {
                scopes: section.scopes.iter().map(|s| s.as_str().into()).collect(),
                scope_challenge: section.scopes.join(" ").into(),
                max_token_age,
                max_auth_age,
            })
        };
        let workloads = match &section.workloads {
            None => None,
            Some(list) if list.is_empty() => {
                return Err(self.invalid(
                    format!("{key}.workloads"),
                    "an empty list would deny every caller; remove the key to allow any",
                ));
            }
            Some(list) => Some(
                list.iter()
                    .enumerate()
                    .map(|(index, entry)| {
                        WorkloadPattern::parse(entry).map_err(|e| {
                            self.invalid(format!("{key}.workloads[{index}]"), e.to_string())
                        })
                    })
                    .collect::<Result<Box<[_]>, _>>()?,
            ),
        };
        Ok(Route {
            name: section.name.as_str().into(),
            conditions,
            access,
            workloads,
        })
    }

    fn conditions(
        &self,
        key: &str,
        section: &RouteSection,
    ) -> Result<RouteConditions, ConfigError> {
        let mut methods = Vec::new();
        for (index, method) in section.methods.iter().flatten().enumerate() {
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(self.invalid(
                    format!("{key}.methods[{index}]"),
                    format!("`{method}` is not an upper-case HTTP method"),
                ));
            }
            methods.push(method.as_str().into());
        }
        if section.methods.as_ref().is_some_and(Vec::is_empty) {
            return Err(self.invalid(
                format!("{key}.methods"),
                "an empty list matches nothing; remove the key to match any method",
            ));
        }
        for (field, value) in [
            ("path", &section.path),
            ("path_prefix", &section.path_prefix),
        ] {
            if let Some(path) = value
                && !path.starts_with('/')
            {
                return Err(self.invalid(
                    format!("{key}.{field}"),
                    format!("`{path}` must start with /"),
                ));
            }
        }
        let mut hosts = Vec::new();
        for (index, host) in section.hosts.iter().flatten().enumerate() {
            if host.is_empty() || host.contains(':') && !host.starts_with('[') {
                return Err(self.invalid(
                    format!("{key}.hosts[{index}]"),
                    format!("`{host}` must be a host name without port"),
                ));
            }
            hosts.push(host.to_ascii_lowercase().into());
        }
        if section.hosts.as_ref().is_some_and(Vec::is_empty) {
            return Err(self.invalid(
                format!("{key}.hosts"),
                "an empty list matches nothing; remove the key to match any host",
            ));
        }
        if section.policy.as_ref().is_some_and(String::is_empty) {
            return Err(self.invalid(format!("{key}.policy"), "must not be empty"));
        }
        Ok(RouteConditions {
            methods: methods.into(),
            path: section.path.as_deref().map(Into::into),
            path_prefix: section.path_prefix.as_deref().map(Into::into),
            hosts: hosts.into(),
            policy: section.policy.as_deref().map(Into::into),
        })
    }
}

fn is_claim_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests;
