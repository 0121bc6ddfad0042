//! Prometheus metrics: what sessiongate decided, how fast, and the state behind its decisions.
//!
//! Two kinds of sources feed one registry:
//! - **events** recorded as they happen, through handles with domain verbs: [`CheckMetrics`]
//!   (`allow`, `deny`) from the ext_authz adapter, [`KeyMetrics`] from the key refresh tasks,
//!   [`ConfigMetrics`] from the reloader;
//! - **state read at scrape time** by a collector ([`Metrics::registry`]): the session cache's
//!   counters, signature verifications, live revocations, readiness. Those modules keep plain
//!   atomics and know nothing of this crate's metrics library, and the decision stays pure.
//!
//! What must stay true: every label set is bounded. Routes come from the configuration (plus
//! `-` for "no route"), reasons from [`DenyReason::ALL`], issuers from the configuration,
//! revocation origins from [`OriginKind::ALL`]. No subject, token, workload or path is ever a
//! label. The hot path builds its label set from `&'static str`s and one `Arc<str>` clone: no
//! allocation per request. An allow (the common case) does not even build a label set: its
//! series are resolved once per route and kept (see [`CheckMetrics::allow`]).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel as _, EncodeLabelSet, EncodeMetric as _, LabelSetEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::health::Readiness;
use crate::revocation::{OriginKind, Revocations};
use sessiongate_check::gate::Gate;
use sessiongate_core::deny::DenyReason;

/// Check latency buckets (seconds): a cached session is judged in microseconds, a new one
/// costs a signature verification (sub-millisecond to a few ms), an unknown `kid` may wait up
/// to 500 ms for a key refresh.
const CHECK_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// Session age buckets (seconds), from a fresh token to a day-old one: the "session trust
/// debt" a route carries is how far into this range its allowed requests reach.
const SESSION_AGE_BUCKETS: [f64; 14] = [
    10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0,
    43200.0, 86400.0,
];

/// The route label of a request no route matched.
pub const NO_ROUTE: &str = "-";
/// The reason label of an allowed request.
pub const NO_REASON: &str = "none";

fn label(encoder: &mut LabelSetEncoder, key: &'static str, value: &str) -> std::fmt::Result {
    (key, value).encode(encoder.encode_label())
}

/// Labels of `sessiongate_decisions_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct DecisionLabels {
    decision: &'static str,
    reason: &'static str,
    route: Arc<str>,
    dry_run: bool,
}

impl EncodeLabelSet for DecisionLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        label(encoder, "decision", self.decision)?;
        label(encoder, "reason", self.reason)?;
        label(encoder, "route", &self.route)?;
        label(
            encoder,
            "dry_run",
            if self.dry_run { "true" } else { "false" },
        )
    }
}

/// Labels of the histograms split by decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct DecisionOnly {
    decision: &'static str,
}

impl EncodeLabelSet for DecisionOnly {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        label(encoder, "decision", self.decision)
    }
}

/// One label carrying a configured name (a route, an issuer).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Named {
    key: &'static str,
    value: Arc<str>,
}

impl EncodeLabelSet for Named {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        label(encoder, self.key, &self.value)
    }
}

/// An issuer and a result.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct IssuerResult {
    issuer: Arc<str>,
    result: &'static str,
}

impl EncodeLabelSet for IssuerResult {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        label(encoder, "issuer", &self.issuer)?;
        label(encoder, "result", self.result)
    }
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn check_histogram() -> Histogram {
    Histogram::new(CHECK_BUCKETS)
}

fn session_age_histogram() -> Histogram {
    Histogram::new(SESSION_AGE_BUCKETS)
}

/// Every metric handle of one process; cheap to clone (the families are shared).
#[derive(Clone, Debug)]
pub struct Metrics {
    /// Decisions and their latency, recorded by the ext_authz adapter.
    pub checks: CheckMetrics,
    /// Key refreshes per issuer.
    pub keys: KeyMetrics,
    /// Introspection requests for opaque tokens.
    pub introspections: IntrospectionMetrics,
    /// Config generation and reload outcomes.
    pub config: ConfigMetrics,
    /// Connections each listener holds, refused over its cap, and closed for stalling.
    pub connections: ConnectionMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Fresh, unregistered handles: record into them at once, register them with
    /// [`Metrics::registry`] once the state they sit beside exists.
    pub fn new() -> Metrics {
        Metrics {
            checks: CheckMetrics::new(),
            keys: KeyMetrics::default(),
            introspections: IntrospectionMetrics::default(),
            config: ConfigMetrics::default(),
            connections: ConnectionMetrics::default(),
        }
    }

    /// The registry `/metrics` encodes: every handle, plus a collector reading `state` on each
    /// scrape.
    pub fn registry(&self, state: StateSources) -> Registry {
        let mut registry = Registry::default();
        let checks = &self.checks.inner;
        registry.register(
            "sessiongate_decisions",
            "Check decisions by decision, deny reason, route and whether the route is in dry-run (a dry-run deny was allowed)",
            checks.decisions.clone(),
        );
        registry.register(
            "sessiongate_check_duration_seconds",
            "Time from receiving a Check to answering it, by decision",
            checks.duration.clone(),
        );
        registry.register(
            "sessiongate_session_age_seconds",
            "Token age (now - iat) of allowed requests, per route: the session trust debt a route carries",
            checks.session_age.clone(),
        );
        registry.register(
            "sessiongate_key_refreshes",
            "Key set fetches per issuer, by result (success, failure)",
            self.keys.refreshes.clone(),
        );
        registry.register(
            "sessiongate_keys_stale",
            "1 while an issuer's keys are older than max_stale (its tokens are denied), else 0",
            self.keys.stale.clone(),
        );
        registry.register(
            "sessiongate_introspections",
            "Introspection requests for opaque tokens per issuer, by result (answered: the endpoint answered 200 within bounds, whatever it said; unavailable: no usable answer, the token was denied 503)",
            self.introspections.requests.clone(),
        );
        registry.register(
            "sessiongate_config_generation",
            "Generation of the running config: 0 at start, +1 per applied reload",
            self.config.generation.clone(),
        );
        registry.register(
            "sessiongate_config_reloads",
            "Config reload attempts by result (applied, rejected)",
            self.config.reloads.clone(),
        );
        registry.register(
            "sessiongate_connections_open",
            "Connections each listener (grpc, admin, http) holds now",
            self.connections.open.clone(),
        );
        registry.register(
            "sessiongate_connections_refused",
            "New connections a listener closed at once because it held limits.max_connections.<listener>",
            self.connections.refused.clone(),
        );
        registry.register(
            "sessiongate_connections_timed_out",
            "Connections a listener closed because the caller stalled: no HTTP/2 handshake or request headers within limits.handshake_timeout, or idle",
            self.connections.timed_out.clone(),
        );
        registry.register_collector(Box::new(state));
        registry
    }
}

/// Decisions, their latency and the age of allowed sessions.
#[derive(Clone, Debug)]
pub struct CheckMetrics {
    inner: Arc<CheckFamilies>,
}

#[derive(Debug)]
struct CheckFamilies {
    decisions: Family<DecisionLabels, Counter>,
    duration: Histograms<DecisionOnly>,
    session_age: Histograms<Named>,
    /// The route label for "no route", shared so recording never allocates.
    no_route: Arc<str>,
    /// The series of allows, per route and dry-run mode, resolved from the families on a
    /// route's first allow. Looking a series up in a [`Family`] hashes the whole label set
    /// under a lock every request; this is a lock-free scan of a handful of entries. Read
    /// through an `ArcSwap`, so concurrent checks touch no shared reference count.
    allows: ArcSwap<Vec<AllowSeries>>,
    /// `duration{decision="allow"}`, resolved on the first allow.
    allow_duration: OnceLock<Histogram>,
    /// `duration{decision="deny"}`, resolved on the first deny.
    deny_duration: OnceLock<Histogram>,
}

/// Most [`AllowSeries`] kept: far more routes than any config has (a config reload that renames
/// routes adds entries; past this, allows fall back to the families' own lookup).
const MAX_ALLOW_SERIES: usize = 1024;

/// The series one route's allows record into. Handles share their value with the series in the
/// families (which `/metrics` encodes); what must stay true is that no code removes a series
/// of these families, or a kept handle would count into a series nobody exports.
#[derive(Clone, Debug)]
struct AllowSeries {
    route: Arc<str>,
    dry_run: bool,
    decisions: Counter,
    /// Created on the route's first allow that has a session age (never, on a public route),
    /// as the family would: a route without one exports no age series.
    session_age: OnceLock<Histogram>,
}

impl CheckMetrics {
    fn new() -> CheckMetrics {
        CheckMetrics {
            inner: Arc::new(CheckFamilies {
                decisions: Family::default(),
                duration: Family::new_with_constructor(check_histogram),
                session_age: Family::new_with_constructor(session_age_histogram),
                no_route: Arc::from(NO_ROUTE),
                allows: ArcSwap::from_pointee(Vec::new()),
                allow_duration: OnceLock::new(),
                deny_duration: OnceLock::new(),
            }),
        }
    }

    /// Creates, at zero, the series an alert or a dashboard reads before the first request:
    /// each configured route's allows and its denials for every reason (in the route's dry-run
    /// mode), the "no route" denials, and both latency histograms. A counter that appears only
    /// with its first increment hides that increment from `rate()` and `increase()`, so an alert
    /// like `rate(sessiongate_decisions_total{reason="unknown_key"}[5m]) > 0` would miss the first
    /// event. Called at start-up and for every applied reload, so a route a reload adds (or
    /// moves into dry-run) is declared too. Bounded: (route names ever configured + 1) ×
    /// reasons series; the operator's config, not a caller, decides how many.
    pub fn declare_policy(&self, policy: &sessiongate_check::policy::Policy) {
        self.declare_routes(
            policy
                .routes
                .iter()
                .map(|route| (&route.name, policy.dry_run.covers(Some(&route.name)))),
        );
    }

    /// Declares `routes` (name, whether dry-run covers it) at 0; see [`CheckMetrics::declare_policy`].
    pub fn declare_routes<'a>(&self, routes: impl IntoIterator<Item = (&'a Arc<str>, bool)>) {
        for (route, dry_run) in routes {
            let _ = self.inner.decisions.get_or_create(&DecisionLabels {
                decision: "allow",
                reason: NO_REASON,
                route: Arc::clone(route),
                dry_run,
            });
            for reason in DenyReason::ALL {
                self.declare_deny(route, reason, dry_run);
            }
        }
        // Requests no route matched, or that could not be read, are enforced (never dry-run).
        let no_route = &self.inner.no_route;
        for reason in [DenyReason::NoRoute, DenyReason::BadRequest] {
            self.declare_deny(no_route, reason, false);
        }
        let _ = self.duration(&self.inner.allow_duration, "allow");
        let _ = self.duration(&self.inner.deny_duration, "deny");
    }

    fn declare_deny(&self, route: &Arc<str>, reason: DenyReason, dry_run: bool) {
        let _ = self.inner.decisions.get_or_create(&DecisionLabels {
            decision: "deny",
            reason: reason.as_str(),
            route: Arc::clone(route),
            dry_run,
        });
    }

    fn route(&self, route: Option<&Arc<str>>) -> Arc<str> {
        Arc::clone(route.unwrap_or(&self.inner.no_route))
    }

    /// An allowed request on `route`, answered after `latency`; `session_age` is `now - iat`
    /// of its token (none on a public route).
    pub fn allow(
        &self,
        route: Option<&Arc<str>>,
        dry_run: bool,
        latency: Duration,
        session_age: Option<Duration>,
    ) {
        let route = route.unwrap_or(&self.inner.no_route);
        let kept = self.inner.allows.load();
        match kept.iter().find(|series| series.is(route, dry_run)) {
            Some(series) => series.record(&self.inner, session_age),
            None => {
                drop(kept);
                self.keep_allow_series(route, dry_run)
                    .record(&self.inner, session_age);
            }
        }
        self.duration(&self.inner.allow_duration, "allow")
            .observe(latency.as_secs_f64());
    }

    /// Resolves the series of `route`'s allows and keeps them (unless the list is full).
    fn keep_allow_series(&self, route: &Arc<str>, dry_run: bool) -> AllowSeries {
        let series = AllowSeries::resolve(&self.inner, route, dry_run);
        if self.inner.allows.load().len() >= MAX_ALLOW_SERIES {
            return series; // full: no copy of the list per allow
        }
        self.inner.allows.rcu(|kept| {
            let mut kept = Vec::clone(kept);
            if kept.len() < MAX_ALLOW_SERIES && !kept.iter().any(|s| s.is(route, dry_run)) {
                kept.push(series.clone());
            }
            kept
        });
        series
    }

    /// A denied request (or, with `dry_run`, one that would have been denied and was allowed).
    pub fn deny(
        &self,
        route: Option<&Arc<str>>,
        reason: DenyReason,
        dry_run: bool,
        latency: Duration,
    ) {
        let route = self.route(route);
        self.inner
            .decisions
            .get_or_create(&DecisionLabels {
                decision: "deny",
                reason: reason.as_str(),
                route,
                dry_run,
            })
            .inc();
        self.duration(&self.inner.deny_duration, "deny")
            .observe(latency.as_secs_f64());
    }

    /// The latency histogram of `decision`, kept in `slot` once resolved.
    fn duration<'s>(&self, slot: &'s OnceLock<Histogram>, decision: &'static str) -> &'s Histogram {
        slot.get_or_init(|| {
            self.inner
                .duration
                .get_or_create_owned(&DecisionOnly { decision })
        })
    }
}

impl AllowSeries {
    /// The series of allows on `route`, created in the families if they are new.
    fn resolve(families: &CheckFamilies, route: &Arc<str>, dry_run: bool) -> AllowSeries {
        AllowSeries {
            route: Arc::clone(route),
            dry_run,
            decisions: families.decisions.get_or_create_owned(&DecisionLabels {
                decision: "allow",
                reason: NO_REASON,
                route: Arc::clone(route),
                dry_run,
            }),
            session_age: OnceLock::new(),
        }
    }

    /// Whether these are the series of `route` (compared by pointer first: the gate hands out
    /// the configured route's own `Arc`) in this dry-run mode.
    fn is(&self, route: &Arc<str>, dry_run: bool) -> bool {
        self.dry_run == dry_run && (Arc::ptr_eq(&self.route, route) || *self.route == **route)
    }

    fn record(&self, families: &CheckFamilies, session_age: Option<Duration>) {
        if let Some(age) = session_age {
            self.session_age
                .get_or_init(|| {
                    families.session_age.get_or_create_owned(&Named {
                        key: "route",
                        value: Arc::clone(&self.route),
                    })
                })
                .observe(age.as_secs_f64());
        }
        self.decisions.inc();
    }
}

/// Key set fetches and staleness, per configured issuer.
#[derive(Clone, Debug, Default)]
pub struct KeyMetrics {
    refreshes: Family<IssuerResult, Counter>,
    stale: Family<Named, Gauge>,
}

impl KeyMetrics {
    /// A fetch of `issuer`'s keys succeeded (at start-up, on schedule, on reload or for an
    /// unknown `kid`).
    pub fn refreshed(&self, issuer: &Arc<str>) {
        self.count(issuer, "success");
    }

    /// A fetch of `issuer`'s keys failed; the last good keys stay in use up to `max_stale`.
    pub fn refresh_failed(&self, issuer: &Arc<str>) {
        self.count(issuer, "failure");
    }

    /// Whether `issuer`'s keys are past `max_stale` (its tokens are denied).
    pub fn set_stale(&self, issuer: &Arc<str>, stale: bool) {
        self.stale
            .get_or_create(&Named {
                key: "issuer",
                value: Arc::clone(issuer),
            })
            .set(i64::from(stale));
    }

    /// `issuer` left the configuration: its series go with it.
    pub fn forget(&self, issuer: &Arc<str>) {
        self.stale.remove(&Named {
            key: "issuer",
            value: Arc::clone(issuer),
        });
        for result in ["success", "failure"] {
            self.refreshes.remove(&IssuerResult {
                issuer: Arc::clone(issuer),
                result,
            });
        }
    }

    /// Counts one fetch of `issuer`'s keys. Both results' series exist from the issuer's first
    /// fetch (made at start-up, or when a reload adds it): `increase(…{result="failure"}[15m])`
    /// must see the first failure, so that series must be there, at 0, before it.
    fn count(&self, issuer: &Arc<str>, result: &'static str) {
        for declared in ["success", "failure"] {
            let series = self.refreshes.get_or_create(&IssuerResult {
                issuer: Arc::clone(issuer),
                result: declared,
            });
            if declared == result {
                series.inc();
            }
        }
    }
}

/// Introspection requests (RFC 7662) per issuer, by transport result.
#[derive(Clone, Debug, Default)]
pub struct IntrospectionMetrics {
    requests: Family<IssuerResult, Counter>,
}

impl IntrospectionMetrics {
    /// Declares `issuer`'s series at 0, so the first failure is an increase alerts can see.
    pub fn declare(&self, issuer: &Arc<str>) {
        for result in ["answered", "unavailable"] {
            let _declared = self.requests.get_or_create(&IssuerResult {
                issuer: Arc::clone(issuer),
                result,
            });
        }
    }

    /// Counts one request to `issuer`'s endpoint by its `result`.
    pub fn count(
        &self,
        issuer: &Arc<str>,
        result: &sessiongate_check::introspection::IntrospectionResult,
    ) {
        let result = if result.is_ok() {
            "answered"
        } else {
            "unavailable"
        };
        self.requests
            .get_or_create(&IssuerResult {
                issuer: Arc::clone(issuer),
                result,
            })
            .inc();
    }
}

/// Labels naming a listener: `grpc`, `admin` or `http` (a fixed set).
type ListenerLabel = [(&'static str, &'static str); 1];

/// Connections per listener (see [`crate::connections`]).
#[derive(Clone, Debug, Default)]
pub struct ConnectionMetrics {
    open: Family<ListenerLabel, Gauge>,
    refused: Family<ListenerLabel, Counter>,
    timed_out: Family<ListenerLabel, Counter>,
}

impl ConnectionMetrics {
    /// Makes `listener`'s series exist (at 0) before its first connection.
    pub fn declare(&self, listener: &'static str) {
        let label = [("listener", listener)];
        let _ = self.open.get_or_create(&label);
        let _ = self.refused.get_or_create(&label);
        let _ = self.timed_out.get_or_create(&label);
    }

    /// `listener` admitted a connection.
    pub fn opened(&self, listener: &'static str) {
        self.open.get_or_create(&[("listener", listener)]).inc();
    }

    /// A connection of `listener` ended.
    pub fn closed(&self, listener: &'static str) {
        self.open.get_or_create(&[("listener", listener)]).dec();
    }

    /// `listener` closed a new connection at once: it held its cap.
    pub fn refused(&self, listener: &'static str) {
        self.refused.get_or_create(&[("listener", listener)]).inc();
    }

    /// `listener` closed a connection whose caller stalled.
    pub fn timed_out(&self, listener: &'static str) {
        self.timed_out
            .get_or_create(&[("listener", listener)])
            .inc();
    }
}

/// The running config's generation and reload outcomes.
#[derive(Clone, Debug)]
pub struct ConfigMetrics {
    generation: Gauge,
    reloads: Family<[(&'static str, &'static str); 1], Counter>,
}

impl Default for ConfigMetrics {
    /// Both reload outcomes exist at 0 from start-up: the README's
    /// `increase(sessiongate_config_reloads_total{result="rejected"}[10m]) > 0` must fire on the
    /// first rejected reload, which a series born at 1 would hide.
    fn default() -> Self {
        let metrics = ConfigMetrics {
            generation: Gauge::default(),
            reloads: Family::default(),
        };
        for result in ["applied", "rejected"] {
            let _ = metrics.reloads.get_or_create(&[("result", result)]);
        }
        metrics
    }
}

impl ConfigMetrics {
    /// A new config is running as `generation`.
    pub fn applied(&self, generation: u64) {
        self.generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
        self.reloads.get_or_create(&[("result", "applied")]).inc();
    }

    /// A new config was refused; the running one stays.
    pub fn rejected(&self) {
        self.reloads.get_or_create(&[("result", "rejected")]).inc();
    }

    /// The running generation.
    pub fn generation(&self) -> u64 {
        u64::try_from(self.generation.get()).unwrap_or_default()
    }
}

/// What the collector reads on each scrape: readiness from start-up, the gate and the
/// revocations once loaded ([`StateSources::loaded`]). `/metrics` is served while a replica
/// still loads its state (waiting for Redis, say), so that `sessiongate_ready` reads 0 then and
/// every series an alert reads exists from the first scrape; until loaded, the gate's and the
/// revocations' series read 0.
#[derive(Clone, Debug)]
pub struct StateSources {
    readiness: Readiness,
    loaded: Arc<OnceLock<LoadedState>>,
}

/// The state read once loaded.
#[derive(Debug)]
struct LoadedState {
    gate: Arc<Gate>,
    revocations: Arc<Revocations>,
}

impl StateSources {
    /// Sources with only `readiness` known so far.
    pub fn new(readiness: Readiness) -> StateSources {
        StateSources {
            readiness,
            loaded: Arc::new(OnceLock::new()),
        }
    }

    /// The gate (session cache, verifications) and the live revocations are loaded; scrapes
    /// read them from now on. Only the first call counts.
    pub fn loaded(&self, gate: Arc<Gate>, revocations: Arc<Revocations>) {
        let _ = self.loaded.set(LoadedState { gate, revocations });
    }
}

impl Collector for StateSources {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let loaded = self.loaded.get();
        // Entries, hits, misses, size evictions, expiries.
        let [entries, hits, misses, evicted, expired] = loaded.map_or([0; 5], |state| {
            let sessions = state.gate.sessions();
            let stats = sessions.stats();
            [
                sessions.len(),
                stats.hits(),
                stats.misses(),
                stats.evicted(),
                stats.expired(),
            ]
        });
        gauge(
            &mut encoder,
            "sessiongate_session_cache_entries",
            "Sessions in the cache (approximate).",
            entries,
        )?;
        counter(
            &mut encoder,
            "sessiongate_session_cache_hits",
            "Checks whose session was cached (no signature verification).",
            hits,
        )?;
        counter(
            &mut encoder,
            "sessiongate_session_cache_misses",
            "Checks whose token was not cached (verified, then cached if valid).",
            misses,
        )?;
        let mut evictions = encoder.encode_descriptor(
            "sessiongate_session_cache_evictions",
            "Sessions leaving the cache on their own: size (capacity reached) or expired (token expired).",
            None,
            MetricType::Counter,
        )?;
        for (cause, count) in [("size", evicted), ("expired", expired)] {
            ConstCounter::new(count).encode(evictions.encode_family(&[("cause", cause)])?)?;
        }
        counter(
            &mut encoder,
            "sessiongate_signature_verifications",
            "Token signatures verified (once per new session, ideally).",
            loaded.map_or(0, |state| state.gate.verifications()),
        )?;
        gauge(
            &mut encoder,
            "sessiongate_revocations_live",
            "Revocations currently enforced.",
            loaded.map_or(0, |state| state.revocations.current().len() as u64),
        )?;
        let mut added = encoder.encode_descriptor(
            "sessiongate_revocations_added",
            "Revocations recorded through this replica, by origin (admin API, Shared Signals, other).",
            None,
            MetricType::Counter,
        )?;
        for kind in OriginKind::ALL {
            ConstCounter::new(loaded.map_or(0, |state| state.revocations.added(kind)))
                .encode(added.encode_family(&[("origin", kind.as_str())])?)?;
        }
        gauge(
            &mut encoder,
            "sessiongate_ready",
            "1 while this replica is ready to judge requests (state loaded, every issuer's keys fresh), else 0.",
            u64::from(self.readiness.is_ready()),
        )?;
        gauge(
            &mut encoder,
            "sessiongate_revocation_store_up",
            "1 while the revocation store is reachable and caught up with, else 0.",
            u64::from(self.readiness.is_store_reachable()),
        )?;
        let mut info = encoder.encode_descriptor(
            "sessiongate_build_info",
            "Always 1; the version as a label.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(1i64)
            .encode(info.encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?)?;
        Ok(())
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &'static str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &'static str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// The registry in the OpenMetrics text format (what Prometheus asks for first).
pub fn encode(registry: &Registry) -> String {
    let mut text = String::with_capacity(16 * 1024);
    prometheus_client::encoding::text::encode(&mut text, registry)
        .expect("writing to a String cannot fail");
    text
}

/// The registry in the classic Prometheus text format (0.0.4), for scrapers and tools that do
/// not ask for OpenMetrics (`curl`, `promtool check metrics`).
///
/// The two formats differ, for what is exported here, only in that OpenMetrics names a counter
/// family without its `_total` suffix (`# TYPE x counter`, sample `x_total`) while the classic
/// format names the family as its samples, and in the `# EOF` and `# UNIT` lines. So counter
/// families are renamed and those lines dropped; samples are untouched.
pub fn encode_classic(registry: &Registry) -> String {
    classic_text(&encode(registry))
}

fn classic_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len() + 32 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|prefix| Some((prefix, line.strip_prefix(prefix)?)));
        match descriptor {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                text.push_str(prefix);
                text.push_str(name);
                if counters.contains(name) {
                    text.push_str("_total");
                }
                text.push(' ');
                text.push_str(tail);
            }
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(metrics: &Metrics) -> String {
        let mut registry = Registry::default();
        registry.register(
            "sessiongate_decisions",
            "d",
            metrics.checks.inner.decisions.clone(),
        );
        registry.register(
            "sessiongate_session_age_seconds",
            "a",
            metrics.checks.inner.session_age.clone(),
        );
        encode(&registry)
    }

    fn label_values(text: &str, label: &str) -> std::collections::BTreeSet<String> {
        let needle = format!("{label}=\"");
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let start = line.find(&needle)? + needle.len();
                let end = start + line[start..].find('"')?;
                Some(line[start..end].to_owned())
            })
            .collect()
    }

    #[test]
    fn reasons_are_the_stable_deny_reason_names_and_none_for_allows() {
        let metrics = Metrics::new();
        let route: Arc<str> = "orders".into();
        for reason in DenyReason::ALL {
            metrics
                .checks
                .deny(Some(&route), reason, false, Duration::ZERO);
        }
        metrics
            .checks
            .allow(Some(&route), false, Duration::ZERO, None);
        let mut expected: std::collections::BTreeSet<String> = DenyReason::ALL
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect();
        expected.insert(NO_REASON.to_owned());
        assert_eq!(label_values(&encoded(&metrics), "reason"), expected);
    }

    #[test]
    fn routes_are_configured_names_or_a_dash_for_no_route() {
        let metrics = Metrics::new();
        let orders: Arc<str> = "orders".into();
        metrics.checks.declare_routes([(&orders, false)]);
        metrics
            .checks
            .deny(None, DenyReason::NoRoute, false, Duration::ZERO);
        metrics.checks.allow(
            Some(&orders),
            false,
            Duration::ZERO,
            Some(Duration::from_secs(42)),
        );
        let text = encoded(&metrics);
        assert_eq!(
            label_values(&text, "route"),
            ["-", "orders"].map(String::from).into()
        );
        assert!(
            text.contains(
                r#"sessiongate_decisions_total{decision="deny",reason="no_route",route="-",dry_run="false"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"sessiongate_decisions_total{decision="allow",reason="none",route="orders",dry_run="false"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"sessiongate_session_age_seconds_bucket{le="60.0",route="orders"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn a_dry_run_deny_is_counted_apart_from_enforced_ones() {
        let metrics = Metrics::new();
        let route: Arc<str> = "orders".into();
        metrics
            .checks
            .deny(Some(&route), DenyReason::Expired, true, Duration::ZERO);
        let text = encoded(&metrics);
        assert!(
            text.contains(
                r#"sessiongate_decisions_total{decision="deny",reason="expired",route="orders",dry_run="true"} 1"#
            ),
            "{text}"
        );
        assert!(!text.contains(r#"dry_run="false""#), "{text}");
    }

    #[test]
    fn the_classic_format_names_counter_families_as_their_samples() {
        let metrics = Metrics::new();
        metrics
            .checks
            .deny(None, DenyReason::NoRoute, false, Duration::ZERO);
        let mut registry = Registry::default();
        registry.register(
            "sessiongate_decisions",
            "Decisions",
            metrics.checks.inner.decisions.clone(),
        );
        registry.register(
            "sessiongate_check_duration_seconds",
            "Latency",
            metrics.checks.inner.duration.clone(),
        );
        let text = encode_classic(&registry);
        assert!(
            text.contains("# HELP sessiongate_decisions_total Decisions."),
            "{text}"
        );
        assert!(
            text.contains("# TYPE sessiongate_decisions_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE sessiongate_check_duration_seconds histogram\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        assert!(
            text.contains(
                r#"sessiongate_check_duration_seconds_bucket{le="+Inf",decision="deny"} 1"#
            ),
            "{text}"
        );
    }

    #[test]
    fn a_removed_issuer_takes_its_series_with_it() {
        let keys = KeyMetrics::default();
        let issuer: Arc<str> = "https://idp".into();
        keys.refreshed(&issuer);
        keys.set_stale(&issuer, true);
        keys.forget(&issuer);
        let mut registry = Registry::default();
        registry.register("r", "r", keys.refreshes.clone());
        registry.register("s", "s", keys.stale.clone());
        assert!(!encode(&registry).contains("idp"));
    }
}
