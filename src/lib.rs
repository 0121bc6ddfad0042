//! sessiongate: an Envoy external-authorization sidecar that re-checks every request's session.
//!
//! A session that began legitimately can outlive the conditions that made it safe: the token
//! is old, the user authenticated long ago, the scope was narrowed, or the token now travels
//! with another workload. sessiongate judges each proxied request against those conditions,
//! so such "session trust debt" is denied on the next request rather than at token expiry.
//!
//! # Layout
//!
//! - [`decision`]: **the rules**, pure: why a request is allowed or denied.
//! - [`deny`]: deny reasons, HTTP statuses and RFC 6750 / RFC 9470 challenges.
//! - [`route`], [`policy`]: compiled configuration the rules read.
//! - [`request`]: the facts of one request, independent of Envoy's types.
//! - [`token`]: bearer credential parsing, JWT verification, issuers' keys.
//! - [`keys`]: keeping issuers' keys current (files, `jwks_uri`, discovery; refresh; outages).
//! - [`session`]: verified sessions and their bounded TTL cache; [`intern`]: the bounded table
//!   of strings many sessions share (scopes, client ids, SPIFFE IDs).
//! - [`revocation`]: revocations, their index and the stores behind them (file; Redis for fleets).
//! - [`pinning`]: where a session's first workload is recorded (this process, or Redis fleet-wide).
//! - [`ssf`]: the Shared Signals receiver: CAEP events pushed by identity providers.
//! - [`workload`]: SPIFFE IDs, allow-list patterns, certificate thumbprints, pinning identity.
//! - [`gate`]: one check end to end: cache, verification, decision, pinning;
//!   [`budget`]: how many verifications each caller may cause; [`rejections`]: recently
//!   rejected tokens, never verified twice.
//! - [`envoy`]: the thin ext_authz v3 gRPC adapter.
//! - [`admin`]: the admin gRPC API (revoke, list, explain) on its own listener, and its CLI client.
//! - [`config`]: YAML configuration, validated with errors naming file and key; [`files`]:
//!   reading the files it names, bounded.
//! - [`reload`]: hot reload of the config file (file watch, SIGHUP).
//! - [`health`]: readiness (loading, issuers' keys); [`grpc_health`]: served as
//!   `grpc.health.v1`, Watch streams ended on stop; [`watch`]: Kubernetes-proof file watching.
//! - [`metrics`]: Prometheus metrics with bounded labels; [`ops`]: `/metrics`, `/healthz`,
//!   `/readyz` on the ops HTTP listener; [`decision_log`]: one line per judged check.
//! - [`dry_run`]: report denials without enforcing them, for rollouts.
//! - [`telemetry`]: OpenTelemetry spans of Checks, continuing W3C / B3 trace context.
//! - [`connections`]: each listener's cap on concurrent connections; [`http_server`]: the
//!   admin and ops listeners' server, with that cap and header, body and idle timeouts.
//! - [`app`]: wiring and the server's life cycle; [`port`]: ports bound at start-up that accept
//!   only once the state is loaded; [`logging`]: log output.
//! - [`time`]: wall-clock instants passed into the decision.
//! - [`fuzzing`]: the fuzz targets' invariants (`fuzz/`), replayed by the normal tests.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod app;
pub mod budget;
pub mod config;
pub mod connections;
pub mod decision;
pub mod decision_log;
pub mod deny;
pub mod dry_run;
pub mod envoy;
pub mod files;
pub mod fuzzing;
pub mod gate;
pub mod grpc_health;
pub mod health;
pub mod http_server;
pub mod intern;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod pinning;
pub mod policy;
pub mod port;
pub mod rejections;
pub mod reload;
pub mod request;
pub mod revocation;
pub mod route;
pub mod session;
pub mod shutdown;
pub mod ssf;
pub mod telemetry;
pub mod time;
pub mod token;
pub mod watch;
pub mod workload;

#[cfg(test)]
mod testing;
