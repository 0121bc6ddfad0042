//! One request through the module: Envoy's headers and connection attributes become request
//! facts, the check use case judges them, and the outcome becomes Envoy calls: a local reply for
//! a denial, identity headers for the upstream on an allow. It translates; it never decides.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use sessiongate_check::answer;
use sessiongate_check::check::{Progress, Step, Waited};
use sessiongate_check::gate::Outcome;
use sessiongate_core::deny::{Deny, DenyReason};
use sessiongate_core::request::{
    AuthorizationValues, PeerFacts, RequestFacts, host_without_port, path_without_query,
};
use sessiongate_core::time::UnixTime;
use sessiongate_core::workload::Thumbprint;

use crate::abi::{FilterConfigEnvoyPtr, Scheduler, Stream, Values, attribute, headers_status};
use crate::instance::Instance;
use crate::stats::Stats;

/// The event a paused request's scheduler posts when what it waited for is done.
const WAIT_DONE: u64 = 1;

/// What an Envoy filter config (a `DynamicModuleFilter`) judges with.
#[derive(Debug)]
pub struct FilterConfig {
    /// The running sessiongate for the configured file.
    pub instance: Arc<Instance>,
    /// Decisions in Envoy's own stats.
    pub stats: Stats,
    /// Envoy's side of this filter config, for flushing counts on its main thread.
    pub envoy: EnvoyConfig,
}

/// Envoy's filter-config pointer, kept so the last counts can be flushed when Envoy destroys
/// the config.
#[derive(Debug)]
pub struct EnvoyConfig(pub FilterConfigEnvoyPtr);

// SAFETY: the pointer is only handed back to Envoy in main-thread config hooks
// (`config_destroy`); workers never dereference it.
unsafe impl Send for EnvoyConfig {}
// SAFETY: as above.
unsafe impl Sync for EnvoyConfig {}

/// A per-route config (`DynamicModuleFilterPerRoute`): the sessiongate policy (route name) the
/// route selects, as `context_extensions["sessiongate.policy"]` does for ext_authz.
#[derive(Debug)]
pub struct RoutePolicy(pub Box<str>);

/// One request's state across hooks.
pub struct Filter {
    config: Arc<FilterConfig>,
    /// When Envoy created the filter, as the request's headers arrived (the check's latency is
    /// measured from there).
    started: Instant,
    /// A paused check: the step to resume at, and where the background thread puts what it
    /// waited for (allocated only when a request pauses: once per new session at most).
    paused: Option<(Step, Arc<Mutex<Option<Waited>>>)>,
    /// Kept while paused, so the background thread can wake this stream's worker.
    scheduler: Option<Arc<Scheduler>>,
}

impl Filter {
    /// A filter for one new request under `config`.
    pub fn new(config: Arc<FilterConfig>) -> Filter {
        Filter {
            config,
            started: Instant::now(),
            paused: None,
            scheduler: None,
        }
    }

    /// The request's headers arrived: judge it. Returns the hook's status.
    pub fn on_request_headers(&mut self, stream: &mut Stream<'_>) -> u32 {
        let instance = Arc::clone(&self.config.instance);
        let Some(loaded) = instance.loaded() else {
            let deny = Deny::new(
                DenyReason::InternalError,
                "sessiongate is still loading its keys and revocations; try again later",
            );
            return self.refuse(stream, &deny);
        };
        let progress = {
            let facts = facts(stream);
            loaded.check.begin(&facts)
        };
        self.proceed(stream, progress)
    }

    /// What a paused request waited for is done (on the stream's worker thread): resume.
    pub fn on_scheduled(&mut self, stream: &mut Stream<'_>) {
        self.scheduler = None;
        let Some((step, slot)) = self.paused.take() else {
            return;
        };
        let Some(waited) = slot.lock().unwrap_or_else(PoisonError::into_inner).take() else {
            return;
        };
        let instance = Arc::clone(&self.config.instance);
        let Some(loaded) = instance.loaded() else {
            return;
        };
        let progress = {
            let facts = facts(stream);
            loaded.check.resume(step, waited, &facts)
        };
        if self.proceed(stream, progress) == headers_status::CONTINUE {
            stream.continue_decoding();
        }
    }

    /// Answers, or pauses the request until what the check waits for is done.
    fn proceed(
        &mut self,
        stream: &mut Stream<'_>,
        mut progress: Result<Progress, sessiongate_check::check::CheckPanicked>,
    ) -> u32 {
        let instance = Arc::clone(&self.config.instance);
        loop {
            let waiting = match progress {
                Err(_) => {
                    let deny = Deny::new(DenyReason::InternalError, "check panicked");
                    return self.refuse(stream, &deny);
                }
                Ok(Progress::Answered(outcome)) => return self.answer(stream, &outcome),
                Ok(Progress::Waiting(waiting)) => waiting,
            };
            let (step, mut future) = waiting.into_parts();
            if let Some(waited) = instance.try_now(&mut future) {
                let Some(loaded) = instance.loaded() else {
                    return self.refuse(stream, &Deny::new(DenyReason::InternalError, "unloaded"));
                };
                let facts = facts(stream);
                progress = loaded.check.resume(step, waited, &facts);
                continue;
            }
            let scheduler = Arc::new(stream.scheduler());
            let slot = Arc::new(Mutex::new(None));
            let (filled, wake) = (Arc::clone(&slot), Arc::clone(&scheduler));
            instance.spawn_wait(future, move |waited| {
                *filled.lock().unwrap_or_else(PoisonError::into_inner) = Some(waited);
                wake.commit(WAIT_DONE);
            });
            self.paused = Some((step, slot));
            self.scheduler = Some(scheduler);
            return headers_status::STOP_ALL_ITERATION_AND_BUFFER;
        }
    }

    /// Denies a request that could not be judged (loading, a panic), fail closed, counted.
    fn refuse(&self, stream: &mut Stream<'_>, deny: &Deny) -> u32 {
        describe_denial(stream, deny, false, None);
        let latency = self.started.elapsed();
        if let Some(loaded) = self.config.instance.loaded() {
            loaded.reporter.refused(deny, latency);
        }
        self.config
            .stats
            .record(stream, Err(deny), false, None, latency);
        send_denial(stream, deny);
        headers_status::STOP_ITERATION
    }

    /// Carries out `outcome`: a local reply for an enforced denial; otherwise the upstream gets
    /// the identity headers (or, for a dry-run denial, the dry-run header) and never a client's
    /// own `x-sessiongate-*` header.
    fn answer(&self, stream: &mut Stream<'_>, outcome: &Outcome) -> u32 {
        let Some(loaded) = self.config.instance.loaded() else {
            return self.refuse(stream, &Deny::new(DenyReason::InternalError, "unloaded"));
        };
        let latency = self.started.elapsed();
        // Everything read from Envoy's buffers is used before the first header is set (a
        // setter invalidates them): the report, the headers to set, the client's own
        // `x-sessiongate-*` headers to remove. The caller's URI SAN is copied, since the
        // workload header carries it past the first setter.
        let principal = stream
            .attribute(attribute::URI_SAN_PEER_CERTIFICATE)
            .unwrap_or_default()
            .to_owned();
        let principal = principal.as_str();
        let (set, spoofed) = {
            loaded.reporter.judged(
                outcome,
                principal,
                outcome.dry_run,
                UnixTime::now(),
                latency,
            );
            let set = match &outcome.verdict {
                Err(_) if !outcome.dry_run => None,
                Err(deny) => {
                    let (name, value) = answer::dry_run_header(deny);
                    Some(vec![(name, Cow::Owned(value))])
                }
                Ok(()) => Some(answer::identity_headers(outcome, principal)),
            };
            (set, stream.owned_request_headers())
        };
        self.config.stats.record(
            stream,
            outcome.verdict.as_ref().map(|_| ()),
            outcome.dry_run,
            outcome.route.as_ref(),
            latency,
        );
        if let Err(deny) = &outcome.verdict {
            describe_denial(stream, deny, outcome.dry_run, outcome.route.as_deref());
        }
        let Some(set) = set else {
            if let Err(deny) = &outcome.verdict {
                send_denial(stream, deny);
            }
            return headers_status::STOP_ITERATION;
        };
        for name in &spoofed {
            if !set.iter().any(|(own, _)| own.eq_ignore_ascii_case(name)) {
                stream.remove_request_header(name);
            }
        }
        for (name, value) in &set {
            // A header the client sent is replaced; one it did not (every honest request) is
            // only added, which spares Envoy a scan of the header map per header.
            if spoofed.iter().any(|sent| sent.eq_ignore_ascii_case(name)) {
                stream.set_request_header(name, value);
            } else {
                stream.add_request_header(name, value);
            }
        }
        headers_status::CONTINUE
    }
}

/// The request's dynamic metadata namespace sessiongate writes its denials to.
pub const METADATA_NAMESPACE: &str = "sessiongate";

/// Tells Envoy's access logs and tracers why the request was denied (or would have been, in
/// dry-run): `sessiongate.decision` (`deny` or `dry_run_deny`), `.reason` and `.route` in the
/// request's dynamic metadata. Only denials: a cached allow, the hot path, pays nothing.
fn describe_denial(stream: &mut Stream<'_>, deny: &Deny, dry_run: bool, route: Option<&str>) {
    let decision = if dry_run { "dry_run_deny" } else { "deny" };
    stream.set_metadata(METADATA_NAMESPACE, "decision", decision);
    stream.set_metadata(METADATA_NAMESPACE, "reason", deny.reason.as_str());
    stream.set_metadata(METADATA_NAMESPACE, "route", route.unwrap_or("none"));
}

/// The local reply for `deny`: the same status, headers and JSON body as the ext_authz mode.
pub(crate) fn send_denial(stream: &mut Stream<'_>, deny: &Deny) {
    let reply = answer::denial(deny);
    let headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    stream.send_response(reply.status, &headers, &reply.body, "sessiongate_denied");
}

/// The facts of the request `stream` carries, borrowed from Envoy's buffers.
fn facts<'s>(stream: &'s Stream<'_>) -> RequestFacts<'s> {
    let authorization = credential_header(stream, "authorization");
    // The `DPoP` header and `:scheme` are read only for a `DPoP` credential (RFC 9449 section
    // 7.1, scheme case-insensitive), so a bearer request costs no more than before.
    let presents_dpop = matches!(authorization, AuthorizationValues::One(value)
        if value.get(..5).is_some_and(|scheme| scheme.eq_ignore_ascii_case("dpop ")));
    let (dpop, scheme) = if presents_dpop {
        (
            credential_header(stream, "dpop"),
            stream.request_header(":scheme").unwrap_or_default(),
        )
    } else {
        (AuthorizationValues::Absent, "")
    };
    let authority = stream.request_header(":authority").unwrap_or_default();
    let route = stream.route_config();
    // SAFETY: a non-null per-route config is a `RoutePolicy` this module created, alive while
    // the route is (and so during this hook).
    let policy = (!route.is_null()).then(|| unsafe { &*route.cast::<RoutePolicy>() });
    RequestFacts {
        method: stream.request_header(":method").unwrap_or_default(),
        path: path_without_query(stream.request_header(":path").unwrap_or_default()),
        host: host_without_port(authority),
        authority,
        scheme,
        policy: policy.map(|policy| &*policy.0),
        authorization,
        dpop,
        peer: PeerFacts {
            principal: stream
                .attribute(attribute::URI_SAN_PEER_CERTIFICATE)
                .unwrap_or_default(),
            certificate: "",
            certificate_digest: stream
                .attribute(attribute::SHA256_PEER_CERTIFICATE_DIGEST)
                .and_then(Thumbprint::from_hex),
            address: stream
                .attribute(attribute::SOURCE_ADDRESS)
                .map(address_without_port),
        },
    }
}

/// Every value of the credential header `name`: one, several or none.
fn credential_header<'s>(stream: &'s Stream<'_>, name: &str) -> AuthorizationValues<'s> {
    match stream.request_header_values(name) {
        Values::None => AuthorizationValues::Absent,
        Values::Several => AuthorizationValues::Several,
        Values::One(bytes) => match std::str::from_utf8(bytes) {
            Ok(value) => AuthorizationValues::One(value),
            Err(_) => AuthorizationValues::NotUtf8,
        },
    }
}

/// `ip:port` or `[ip6]:port` → the IP, as ext_authz reports the peer's address.
fn address_without_port(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match address.rsplit_once(':') {
        Some((ip, port)) if !ip.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => ip,
        _ => address,
    }
}
