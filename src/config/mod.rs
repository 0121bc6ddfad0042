//! Configuration: read once, validated whole, compiled into the [`Policy`] and server settings.
//!
//! Every error names the file, the key (as a path such as `routes[2].max_token_age`) and what
//! is wrong, so an operator can fix it without reading code. Loading is all-or-nothing: a
//! config that fails any check is never partly applied.
//!
//! # Layout
//!
//! - [`schema`]: the file's shape (YAML) and [`parse`], naming the key where parsing failed.
//! - [`load`]: the loader, the only code that reads files the config names (JWKS files, the
//!   admin token, the Redis CA), through [`crate::files`]; it hands their bytes on.
//! - this module: the assembly into a [`Config`], and the sections no subsystem owns (listeners,
//!   session, binding, issuers' token rules, routes, telemetry, ops, limits).
//! - each subsystem converts its own section, from the bytes the loader read, reporting an
//!   [`InvalidSetting`] (key and problem) to which the assembly adds the file:
//!   [`crate::keys::settings`] (issuers' key origins and refresh), [`crate::admin::settings`],
//!   [`crate::revocation::settings`], [`crate::ssf::settings`].

pub mod dpop;
mod invalid;
mod load;
pub mod schema;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use invalid::InvalidSetting;
pub use load::load;
pub use schema::{ConfigFile, parse};
use schema::{IssuerSection, RouteSection};

use crate::admin::settings::AdminSettings;
use crate::files::NamedFile;
use crate::introspection::settings::{IntrospectionFileBytes, IntrospectionSettings};
use crate::keys::settings::{self as key_settings, IssuerKeys};
use crate::revocation::settings::RevocationBackend;
use crate::ssf::settings::SsfSettings;
use load::NamedFiles;
use sessiongate_check::budget::{BudgetLimits, Rate};
use sessiongate_check::policy::Policy;
use sessiongate_check::rejections::RejectionMemory;
use sessiongate_core::dpop::PossessionRequirement;
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
    /// Most live DPoP proofs this replica remembers (`dpop.replay.max_entries`).
    pub dpop_replay_entries: usize,
    /// The admin listener, if configured.
    pub admin: Option<AdminSettings>,
    /// Where revocations are stored.
    pub revocation: RevocationBackend,
    /// The Shared Signals receiver, if configured.
    pub ssf: Option<SsfSettings>,
    /// The one issuer's introspection endpoint for opaque tokens, if configured.
    pub introspection: Option<IntrospectionSettings>,
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
/// Most rejections `limits.rejected_tokens.capacity` may remember.
const MAX_REJECTION_CAPACITY: u64 = 10_000_000;

/// Compiles a parsed file, and the files it names as the loader read them, into a [`Config`].
struct Compiler<'a> {
    /// The config file, named in every error.
    file: &'a Path,
    /// Its directory, against which relative paths are resolved.
    base: &'a Path,
}

impl Compiler<'_> {
    /// A subsystem's [`InvalidSetting`], naming the file.
    fn in_file(&self, invalid: InvalidSetting) -> ConfigError {
        self.invalid(invalid.key, invalid.problem)
    }

    fn invalid(&self, key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            key: key.into(),
            problem: problem.into(),
        }
    }

    fn compile(&self, raw: ConfigFile, files: NamedFiles) -> Result<Config, ConfigError> {
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
        let mut introspection = None;
        let mut seen = HashSet::new();
        for (index, issuer) in raw.issuers.iter().enumerate() {
            let key = format!("issuers[{index}]");
            if !seen.insert(issuer.issuer.as_str()) {
                return Err(self.invalid(
                    format!("{key}.issuer"),
                    format!("`{}` is listed twice", issuer.issuer),
                ));
            }
            let jwks = files.issuer_jwks.get(index).and_then(Option::as_ref);
            let (rules, origin) = self.issuer(&key, issuer, jwks)?;
            if let Some(origin) = origin {
                keys.push(IssuerKeys {
                    issuer: Arc::clone(&rules.issuer),
                    source: origin.origin,
                    refresh: key_settings::refresh_bounds(&key, &issuer.keys_refresh)
                        .map_err(|e| self.in_file(e))?,
                    config_key: origin.config_key,
                });
            }
            if let Some(section) = &issuer.introspection {
                // An opaque token names no issuer, so only one issuer can be asked about it.
                if introspection.is_some() {
                    return Err(self.invalid(
                        format!("{key}.introspection"),
                        "only one issuer may introspect opaque tokens (they name no issuer)",
                    ));
                }
                let named = files.introspection.get(index);
                let file = |pick: fn(&load::IntrospectionFiles) -> &Option<NamedFile>| {
                    named.and_then(|files| pick(files).as_ref())
                };
                introspection = Some(
                    IntrospectionSettings::from_section(
                        &key,
                        &rules,
                        keys.last()
                            .is_some_and(|keys: &IssuerKeys| keys.issuer == rules.issuer),
                        section,
                        IntrospectionFileBytes {
                            credential: file(|files| &files.credential),
                            certificate: file(|files| &files.certificate),
                            ca: file(|files| &files.ca),
                        },
                    )
                    .map_err(|e| self.in_file(e))?,
                );
            }
            issuer_rules.push(rules);
        }
        let routes = self.routes(&raw)?;
        let admin = raw
            .admin
            .as_ref()
            .map(|section| {
                AdminSettings::from_section(section, grpc_listen, files.admin_token.as_ref())
            })
            .transpose()
            .map_err(|e| self.in_file(e))?;
        let revocation =
            RevocationBackend::from_section(&raw.revocation, self.base, files.redis_ca.as_ref())
                .map_err(|e| self.in_file(e))?;
        let trusted: Vec<Arc<str>> = issuer_rules
            .iter()
            .map(|rules| Arc::clone(&rules.issuer))
            .collect();
        let ssf = raw
            .ssf
            .as_ref()
            .map(|section| {
                SsfSettings::from_section(
                    section,
                    admin.is_some(),
                    &trusted,
                    &files.transmitter_jwks,
                )
            })
            .transpose()
            .map_err(|e| self.in_file(e))?;
        let dpop = dpop::DpopSettings::from_section(&raw.dpop, files.dpop_nonce_secret.as_ref())
            .map_err(|e| self.in_file(e))?;
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
                verifier: match &introspection {
                    Some((_, rules)) => {
                        TokenVerifier::new(issuer_rules, claims).with_introspection(rules.clone())
                    }
                    None => TokenVerifier::new(issuer_rules, claims),
                },
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
                dpop: dpop.policy,
            },
            dpop_replay_entries: dpop.replay_entries,
            admin,
            revocation,
            ssf,
            introspection: introspection.map(|(settings, _)| settings),
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

    fn positive(&self, key: &str, value: Duration) -> Result<(), ConfigError> {
        if value.is_zero() {
            Err(self.invalid(key, "must be greater than zero"))
        } else {
            Ok(())
        }
    }

    /// An issuer's token rules, and its key origin (converted by [`crate::keys::settings`],
    /// from `jwks`, its `jwks_file` as the loader read it).
    fn issuer(
        &self,
        key: &str,
        issuer: &IssuerSection,
        jwks: Option<&crate::files::NamedFile>,
    ) -> Result<(IssuerRules, Option<key_settings::CheckedOrigin>), ConfigError> {
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
        // An issuer that only introspects opaque tokens needs no keys.
        let keyless = issuer.introspection.is_some()
            && issuer.jwks_file.is_none()
            && issuer.jwks_uri.is_none()
            && !issuer.discovery;
        let origin = if keyless {
            None
        } else {
            let origin =
                key_settings::key_origin(key, issuer, jwks).map_err(|e| self.in_file(e))?;
            for skipped in &origin.skipped {
                tracing::warn!(file = %self.file.display(), key = %origin.config_key, "skipping {skipped}");
            }
            Some(origin)
        };
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
        Ok((rules, origin))
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
                ("proof_of_possession", section.proof_of_possession.is_some()),
                ("dpop_nonce", section.dpop_nonce),
                ("dpop_origin", section.dpop_origin.is_some()),
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
            let proof_of_possession = match section.proof_of_possession.as_deref() {
                None => None,
                Some("dpop") => Some(PossessionRequirement::Dpop),
                Some("mtls") => Some(PossessionRequirement::Mtls),
                Some("either") => Some(PossessionRequirement::Either),
                Some(other) => {
                    return Err(self.invalid(
                        format!("{key}.proof_of_possession"),
                        format!("`{other}` is not one of dpop, mtls, either"),
                    ));
                }
            };
            if section.dpop_nonce && raw.dpop.nonce.is_none() {
                return Err(self.invalid(
                    format!("{key}.dpop_nonce"),
                    "needs dpop.nonce (the fleet's nonce secret) to issue nonces",
                ));
            }
            if let Some(origin) = &section.dpop_origin {
                sessiongate_core::dpop::validate_origin(origin).map_err(|problem| {
                    self.invalid(
                        format!("{key}.dpop_origin"),
                        format!("`{origin}`: {problem}"),
                    )
                })?;
            }
            RouteAccess::Session(SessionRequirements {
                scopes: section.scopes.iter().map(|s| s.as_str().into()).collect(),
                scope_challenge: section.scopes.join(" ").into(),
                max_token_age,
                max_auth_age,
                proof_of_possession,
                dpop_nonce: section.dpop_nonce,
                dpop_origin: section.dpop_origin.as_deref().map(Into::into),
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
