//! sessiongate: an Envoy external-authorization sidecar that re-checks every request's session.
//!
//! A session that began legitimately can outlive the conditions that made it safe: the token
//! is old, the user authenticated long ago, the scope was narrowed, or the token now travels
//! with another workload. sessiongate judges each proxied request against those conditions,
//! so such "session trust debt" is denied on the next request rather than at token expiry.
//!
//! # Crates
//!
//! This package is the server: it reads configuration, talks to Envoy, Redis, identity
//! providers and operators, and hands every check to the workspace's libraries:
//! - `sessiongate-core`: **why a request is allowed or denied**, pure (request facts, routes,
//!   session rules, revocations, deny reasons, the ordered rules);
//! - `sessiongate-token`: verifying tokens against issuers' keys (JWS, JWKS, the key ring);
//! - `sessiongate-check`: the check use case every adapter calls (session cache, one
//!   verification per session, pinning, dry-run), behind traits for what must wait.
//!
//! See `docs/architecture.md` for the path of one Check through them.
//!
//! # Layout of this crate
//!
//! - [`envoy`]: the ext_authz v3 gRPC adapter: translates, never decides.
//! - [`keys`]: where keys come from (one [`keys::KeyOrigin`] for issuers and SSF transmitters:
//!   files, `jwks_uri`, discovery) and keeping issuers' keys current (refresh; outages).
//! - [`introspection`]: asking an issuer about its opaque tokens (RFC 7662) over HTTP, with
//!   single flight, bounded concurrency, timeouts and size; its settings.
//! - [`revocation`]: the revocation store trait, the handle applying revocations, the file log,
//!   the `revocation` section's settings.
//! - [`fleet`]: the Redis fleet: every replica shares revocations and pins through one Redis.
//! - [`stores`]: opening the configured stores (the file log, or the fleet).
//! - [`ssf`]: the Shared Signals receiver: CAEP events pushed by identity providers.
//! - [`admin`]: the admin gRPC API (revoke, list, explain) on its own listener, and its CLI client.
//! - [`config`]: YAML configuration, validated with errors naming file and key. Its loader is
//!   the only code that reads the files a config names ([`files`]: bounded); `keys`, `admin`,
//!   `revocation` and `ssf` each convert their own section (`settings` modules) from those bytes.
//! - [`reload`]: hot reload of the config file (file watch, SIGHUP).
//! - [`health`]: readiness (loading, issuers' keys); [`grpc_health`]: served as
//!   `grpc.health.v1`, Watch streams ended on stop; [`watch`]: Kubernetes-proof file watching.
//! - [`metrics`]: Prometheus metrics with bounded labels; [`ops`]: `/metrics`, `/healthz`,
//!   `/readyz` on the ops HTTP listener; [`decision_log`]: one line per judged check.
//! - [`telemetry`]: OpenTelemetry spans of Checks, continuing W3C / B3 trace context.
//! - [`connections`]: each listener's cap on concurrent connections; [`http_server`]: the
//!   admin and ops listeners' server, with that cap and header, body and idle timeouts.
//! - [`app`]: wiring and the server's life cycle; [`port`]: ports bound at start-up that accept
//!   only once the state is loaded; [`logging`]: log output; [`shutdown`]: the stop signal.
//! - [`fuzzing`]: the fuzz targets' invariants (`fuzz/`), replayed by the normal tests.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod app;
pub mod config;
pub mod connections;
pub mod decision_log;
pub mod envoy;
pub mod files;
pub mod fleet;
pub mod fuzzing;
pub mod grpc_health;
pub mod health;
pub mod http_answer;
pub mod http_server;
pub mod introspection;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod port;
pub mod reload;
pub mod revocation;
pub mod shutdown;
pub mod ssf;
pub mod stores;
pub mod telemetry;
pub mod watch;
