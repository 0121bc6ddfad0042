//! Properties of [`decide`]: an allow never survives any single rule turning false.
//!
//! Each case draws a session, request and policy that `decide` allows (times, skew, token and
//! authentication ages, idleness, certificate binding, DPoP binding with a sound proof, required
//! proof of possession, nonces, pins, binding claim, workloads, scopes), then turns exactly one
//! rule false by changing only what that rule reads, and expects that rule's reason. With two
//! rules false, the earlier one in `decide`'s order is the answer. When a DPoP rule is to be
//! turned false, the drawn request is a DPoP one (see [`Allowed::case_for`]).
//! Few cases per run (the suite runs in CI on 2 cores); each run draws new ones.

use proptest::prelude::*;
use proptest::sample::select;

use super::*;
use crate::dpop::PossessionRequirement;

/// The drawn facts of an allowed request, in seconds relative to `now`.
#[derive(Clone, Debug)]
struct Allowed {
    skew: u64,
    /// `now - iat`, at least 1 s, so an age limit below it exists.
    age: u64,
    /// `max_token_age - age`.
    age_margin: u64,
    /// `exp - now + skew`: from the last instant within skew to two hours ahead.
    exp_ahead: u64,
    /// `now + skew - nbf`, if the token has `nbf`.
    nbf_behind: Option<u64>,
    /// `max_auth_age` and `now - auth_time` (at most the former), each optional.
    max_auth_age: Option<u64>,
    auth_age: Option<u64>,
    /// `idle_timeout` and `now - last_allowed` (at most the former), if idleness is judged.
    idle: Option<(u64, Option<u64>)>,
    /// The certificate the token is bound to (the caller's), if any.
    cnf: Option<[u8; 32]>,
    /// The token is DPoP-bound instead (the caller may still present a certificate), presented
    /// with the sound proof drawn in `dpop`.
    dpop_bound: bool,
    dpop: Dpop,
    /// The route requires proof of possession: `Some(true)` the token's own kind (`dpop` or
    /// `mtls`), `Some(false)` `either`. Ignored for an unbound token.
    pop_required: Option<bool>,
    /// Binding claim configured (the token names the caller), and whether it is required.
    binding_claim: bool,
    require_claim: bool,
    /// Pinning on, and whether the session is already pinned (to this caller).
    pin: bool,
    pinned: bool,
    /// A `workloads` list on the route (which names the caller).
    workloads: bool,
    /// Granted scopes (subset of a small alphabet), and which of them the route requires.
    granted: Vec<&'static str>,
    required: Vec<&'static str>,
}

const SCOPES: &[&str] = &["orders:read", "orders:write", "admin", "a", "b:c"];

/// A public origin clients address, and the ways Envoy may spell it in `:authority`.
#[derive(Debug)]
struct PublicOrigin {
    scheme: &'static str,
    host: &'static str,
    port: u16,
    authorities: &'static [&'static str],
}

impl PublicOrigin {
    fn default_port(&self) -> bool {
        self.port == if self.scheme == "https" { 443 } else { 80 }
    }

    /// `scheme://host[:port]`, the port written when it is not the default or `explicit_port`.
    fn spelled(&self, upper_scheme: bool, upper_host: bool, explicit_port: bool) -> String {
        let scheme = if upper_scheme {
            self.scheme.to_ascii_uppercase()
        } else {
            self.scheme.to_owned()
        };
        let host = if upper_host {
            self.host.to_ascii_uppercase()
        } else {
            self.host.to_owned()
        };
        if explicit_port || !self.default_port() {
            format!("{scheme}://{host}:{}", self.port)
        } else {
            format!("{scheme}://{host}")
        }
    }
}

const ORIGINS: &[PublicOrigin] = &[
    PublicOrigin {
        scheme: "https",
        host: "api.example.com",
        port: 443,
        authorities: &["api.example.com", "api.example.com:443", "API.Example.com"],
    },
    PublicOrigin {
        scheme: "http",
        host: "shop.internal",
        port: 80,
        authorities: &["shop.internal", "shop.internal:80"],
    },
    PublicOrigin {
        scheme: "http",
        host: "localhost",
        port: 8080,
        authorities: &["localhost:8080"],
    },
    PublicOrigin {
        scheme: "https",
        host: "orders.example.com",
        port: 8443,
        authorities: &["orders.example.com:8443", "ORDERS.example.com:8443"],
    },
];

const PATHS: &[&str] = &["/", "/orders", "/orders/1", "/a/b%2Fc"];
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"];

/// What Envoy sees when a proxy in front of it rewrote the origin.
const ENVOY_SCHEME: &str = "http";
const ENVOY_AUTHORITY: &str = "sessiongate-internal:10000";

/// Where the origin a proof's `htu` must name comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OriginFrom {
    /// The request's own `:scheme` and `:authority`.
    Request,
    /// The policy's `dpop.origin` (Envoy sees `ENVOY_AUTHORITY`).
    Policy,
    /// The route's `dpop_origin`, over a policy origin naming another host.
    Route,
}

/// A sound DPoP request: the proof's key, `ath`, `htm`, `htu`, `iat` and nonce all match.
#[derive(Clone, Debug)]
struct Dpop {
    key: [u8; 32],
    token_hash: [u8; 32],
    method: &'static str,
    origin: &'static PublicOrigin,
    /// Which of the origin's `authorities` Envoy saw (when the origin is the request's).
    authority: proptest::sample::Index,
    origin_from: OriginFrom,
    path: &'static str,
    /// How `htu` spells the same URI: scheme and host case, a default port written out, `/`
    /// as the empty path, and a query or fragment (all ignored by the comparison).
    upper_scheme: bool,
    upper_host: bool,
    explicit_port: bool,
    empty_root: bool,
    suffix: &'static str,
    /// `dpop.proof_lifetime`, seconds.
    lifetime: u64,
    /// Where `iat` sits in `[now - lifetime - skew, now + skew]`, from the newest end.
    iat_pick: u64,
    /// The route asks for nonces and the proof carries a current one.
    nonce: bool,
    /// Which way a rule with several ways to fail is turned false.
    variant: proptest::sample::Index,
}

fn dpop() -> impl Strategy<Value = Dpop> {
    let proof = (
        any::<[u8; 32]>(),
        any::<[u8; 32]>(),
        select(METHODS),
        select(ORIGINS.iter().collect::<Vec<_>>()),
        any::<proptest::sample::Index>(),
        select(vec![
            OriginFrom::Request,
            OriginFrom::Policy,
            OriginFrom::Route,
        ]),
        select(PATHS),
    );
    let spelling = (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        select(vec!["", "?q=1", "#frag", "?a=b#c"]),
    );
    let time = (
        1u64..=300,
        prop_oneof![Just(0), Just(u64::MAX), any::<u64>()],
        any::<bool>(),
        any::<proptest::sample::Index>(),
    );
    (proof, spelling, time).prop_map(
        |(
            (key, token_hash, method, origin, authority, origin_from, path),
            (upper_scheme, upper_host, explicit_port, empty_root, suffix),
            (lifetime, iat_pick, nonce, variant),
        )| Dpop {
            key,
            token_hash,
            method,
            origin,
            authority,
            origin_from,
            path,
            upper_scheme,
            upper_host,
            explicit_port,
            empty_root,
            suffix,
            lifetime,
            iat_pick,
            nonce,
            variant,
        },
    )
}

fn allowed() -> impl Strategy<Value = Allowed> {
    let times = (
        0u64..=300,
        1u64..=7200,
        0u64..=3600,
        0u64..=7200,
        proptest::option::of(0u64..=3600),
    );
    let auth = (
        proptest::option::of(1u64..=86_400),
        proptest::option::of(0u64..=86_400),
        proptest::option::of((1u64..=3600, proptest::option::of(0u64..=3600))),
    );
    let binding = (
        proptest::option::of(any::<[u8; 32]>()),
        any::<bool>(),
        dpop(),
        proptest::option::of(any::<bool>()),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    );
    let scopes = proptest::sample::subsequence(SCOPES, 0..=SCOPES.len()).prop_flat_map(|granted| {
        let n = granted.len();
        (
            Just(granted.clone()),
            proptest::sample::subsequence(granted, 0..=n),
        )
    });
    (times, auth, binding, scopes).prop_map(
        |(
            (skew, age, age_margin, exp_ahead, nbf_behind),
            (max_auth_age, auth_age, idle),
            (
                cnf,
                dpop_bound,
                dpop,
                pop_required,
                binding_claim,
                require_claim,
                pin,
                pinned,
                workloads,
            ),
            (granted, required),
        )| Allowed {
            skew,
            age,
            age_margin,
            exp_ahead,
            nbf_behind,
            // An authentication age within the limit, when both are drawn.
            auth_age: match (max_auth_age, auth_age) {
                (Some(max), Some(auth)) => Some(auth % (max + 1)),
                (_, auth) => auth,
            },
            max_auth_age,
            idle: idle.map(|(timeout, last)| (timeout, last.map(|l| l % (timeout + 1)))),
            cnf,
            dpop_bound,
            dpop,
            pop_required,
            binding_claim,
            require_claim,
            pin,
            pinned,
            workloads,
            granted,
            required,
        },
    )
}

const NOW: u64 = T0 + 100_000;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn before_now(s: u64) -> UnixTime {
    UnixTime::from_secs(NOW - s)
}

impl Allowed {
    /// The allowed case, made a DPoP one when any of `rules` judges DPoP proofs.
    fn case_for(&self, rules: &[Rule]) -> Case {
        let mut allowed = self.clone();
        allowed.dpop_bound |= rules.iter().any(|rule| rule.needs_dpop());
        allowed.case()
    }

    fn case(&self) -> Case {
        let mut case = Case::new();
        case.now = UnixTime::from_secs(NOW);
        case.session.clock_skew = secs(self.skew);
        case.token.issued_at = Some(before_now(self.age));
        case.token.expires_at = UnixTime::from_secs(NOW + self.exp_ahead).minus_secs(self.skew);
        case.token.not_before = self
            .nbf_behind
            .map(|behind| UnixTime::from_secs(NOW + self.skew).minus_secs(behind));
        case.token.auth_time = self.auth_age.map(before_now);
        case.requirements().max_token_age = secs(self.age + self.age_margin);
        case.requirements().max_auth_age = self.max_auth_age.map(secs);
        if let Some((timeout, last)) = self.idle {
            case.session.idle_timeout = Some(secs(timeout));
            case.last_allowed = last.map(before_now);
            // A session never allowed here is adopted during the start-up grace.
            case.started_at = before_now(timeout / 2);
        }
        if let Some(thumbprint) = self.cnf {
            case.token.confirmation = Confirmation::Certificate(Box::new(Thumbprint(thumbprint)));
            case.caller.thumbprint = Some(Thumbprint(thumbprint));
        }
        if self.dpop_bound {
            self.dpop.present(&mut case, self.skew);
        }
        let bound = &case.token.confirmation;
        let own_kind = match bound {
            Confirmation::DpopKey(_) => Some(PossessionRequirement::Dpop),
            Confirmation::Certificate(_) => Some(PossessionRequirement::Mtls),
            _ => None,
        };
        case.requirements().proof_of_possession = match (own_kind, self.pop_required) {
            (Some(own), Some(true)) => Some(own),
            (Some(_), Some(false)) => Some(PossessionRequirement::Either),
            _ => None,
        };
        if self.binding_claim {
            case.binding.claim = Some("client_id".into());
            case.binding.require_claim = self.require_claim;
            case.token.binding_claim = Some(FRONTEND.into());
        }
        case.binding.pin_first_workload = self.pin;
        if self.pinned {
            case.pinned = Some(PinnedWorkload::Spiffe(FRONTEND.into()));
        }
        if self.workloads {
            case.route.workloads = Some(
                vec![
                    WorkloadPattern::parse("spiffe://cluster.local/ns/billing/sa/api").unwrap(),
                    WorkloadPattern::parse(FRONTEND).unwrap(),
                ]
                .into(),
            );
        }
        case.token.scopes = Scopes::from_list(self.granted.iter().copied());
        let requirements = case.requirements();
        requirements.scopes = self.required.iter().map(|s| Box::from(*s)).collect();
        requirements.scope_challenge = self.required.join(" ").into();
        case
    }
}

impl Dpop {
    /// Binds the token to the proof's key and presents it with `DPoP` and a sound proof.
    fn present(&self, case: &mut Case, skew: u64) {
        let origin = self.origin;
        case.token.confirmation = Confirmation::DpopKey(Box::new(Thumbprint(self.key)));
        case.scheme = Scheme::Dpop;
        case.token_hash = Some(Thumbprint(self.token_hash));
        case.dpop.proof_lifetime = secs(self.lifetime);
        let configured = origin
            .spelled(false, false, self.explicit_port)
            .into_boxed_str();
        case.target = match self.origin_from {
            OriginFrom::Request => RequestTarget {
                method: self.method,
                scheme: origin.scheme,
                authority: origin.authorities[self.authority.index(origin.authorities.len())],
                path: self.path,
            },
            OriginFrom::Policy | OriginFrom::Route => RequestTarget {
                method: self.method,
                scheme: ENVOY_SCHEME,
                authority: ENVOY_AUTHORITY,
                path: self.path,
            },
        };
        match self.origin_from {
            OriginFrom::Request => {}
            OriginFrom::Policy => case.dpop.origin = Some(configured),
            OriginFrom::Route => {
                case.dpop.origin = Some("https://gateway.example.net".into());
                case.requirements().dpop_origin = Some(configured);
            }
        }
        let path = if self.empty_root && self.path == "/" {
            ""
        } else {
            self.path
        };
        let htu = format!(
            "{}{path}{}",
            origin.spelled(self.upper_scheme, self.upper_host, self.explicit_port),
            self.suffix
        );
        // Anywhere in `[now - lifetime - skew, now + skew]`, both ends included.
        let window = (self.lifetime + 2 * skew) * 1000;
        let behind = if self.iat_pick == u64::MAX {
            window
        } else {
            self.iat_pick % (window + 1)
        };
        let issued_at = UnixTime::from_millis(case.now.as_millis() + skew * 1000 - behind);
        case.proof = Some(DpopProof {
            key: Thumbprint(self.key),
            method: self.method.into(),
            target: htu.into(),
            issued_at,
            token_hash: Some(Thumbprint(self.token_hash)),
            replay_key: [1; 32],
            nonce: self.nonce.then(|| "current".into()),
        });
        if self.nonce {
            case.requirements().dpop_nonce = true;
            case.nonce = NonceCheck::Current;
            case.fresh_nonce = Some("fresh".into());
        }
    }

    /// A URI that names another resource than the request: another path, port, host or
    /// scheme, or (behind a configured origin) the origin Envoy itself saw.
    fn other_target(&self) -> String {
        let origin = self.origin;
        let own = origin.spelled(false, false, true);
        let choices = [
            format!("{own}{}x", self.path),
            format!("{own}/other{}", self.path),
            format!(
                "{}://{}:{}{}",
                origin.scheme,
                origin.host,
                origin.port + 1,
                self.path
            ),
            format!(
                "{}://x{}:{}{}",
                origin.scheme, origin.host, origin.port, self.path
            ),
            format!(
                "{}://{}:{}{}",
                if origin.scheme == "https" {
                    "http"
                } else {
                    "https"
                },
                origin.host,
                origin.port,
                self.path
            ),
            match self.origin_from {
                OriginFrom::Request => format!("{own}{}/", self.path),
                OriginFrom::Policy | OriginFrom::Route => {
                    format!("{ENVOY_SCHEME}://{ENVOY_AUTHORITY}{}", self.path)
                }
            },
        ];
        self.variant.get(&choices).clone()
    }
}

trait MinusSecs {
    fn minus_secs(self, s: u64) -> UnixTime;
}

impl MinusSecs for UnixTime {
    fn minus_secs(self, s: u64) -> UnixTime {
        UnixTime::from_millis(self.as_millis() - s * 1000)
    }
}

/// Every rule of [`decide`], in the order it judges them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    KeyStillPublished,
    KeysFresh,
    NotRevoked,
    NoReauthenticationDemanded,
    NotExpired,
    NotBeforeReached,
    HasIssuedAt,
    NotIssuedInTheFuture,
    YoungEnough,
    AuthenticatedRecently,
    NotIdle,
    CertificateMatchesCnf,
    CnfMethodSupported,
    NotDowngraded,
    PossessionProven,
    DpopKeyBound,
    DpopAthMatches,
    DpopHtmMatches,
    DpopHtuMatches,
    DpopProofNotInTheFuture,
    DpopProofNotTooOld,
    DpopNonceCurrent,
    NotPinnedElsewhere,
    BindingClaimNamesCaller,
    BindingClaimPresentWhenRequired,
    WorkloadAllowed,
    ScopesGranted,
}

const RULES: &[Rule] = &[
    Rule::KeyStillPublished,
    Rule::KeysFresh,
    Rule::NotRevoked,
    Rule::NoReauthenticationDemanded,
    Rule::NotExpired,
    Rule::NotBeforeReached,
    Rule::HasIssuedAt,
    Rule::NotIssuedInTheFuture,
    Rule::YoungEnough,
    Rule::AuthenticatedRecently,
    Rule::NotIdle,
    Rule::CertificateMatchesCnf,
    Rule::CnfMethodSupported,
    Rule::NotDowngraded,
    Rule::PossessionProven,
    Rule::DpopKeyBound,
    Rule::DpopAthMatches,
    Rule::DpopHtmMatches,
    Rule::DpopHtuMatches,
    Rule::DpopProofNotInTheFuture,
    Rule::DpopProofNotTooOld,
    Rule::DpopNonceCurrent,
    Rule::NotPinnedElsewhere,
    Rule::BindingClaimNamesCaller,
    Rule::BindingClaimPresentWhenRequired,
    Rule::WorkloadAllowed,
    Rule::ScopesGranted,
];

impl Rule {
    /// The reason a denial by this rule carries.
    fn reason(self) -> DenyReason {
        match self {
            Rule::KeyStillPublished => DenyReason::UnknownKey,
            Rule::KeysFresh => DenyReason::InternalError,
            Rule::NotRevoked => DenyReason::Revoked,
            Rule::NoReauthenticationDemanded | Rule::AuthenticatedRecently => {
                DenyReason::AuthTooOld
            }
            Rule::NotExpired => DenyReason::Expired,
            Rule::NotBeforeReached | Rule::NotIssuedInTheFuture => DenyReason::NotYetValid,
            Rule::HasIssuedAt | Rule::YoungEnough => DenyReason::TokenTooOld,
            Rule::NotIdle => DenyReason::SessionIdle,
            Rule::CertificateMatchesCnf | Rule::CnfMethodSupported => DenyReason::CnfMismatch,
            Rule::NotDowngraded => DenyReason::DpopDowngrade,
            Rule::PossessionProven => DenyReason::ProofOfPossessionRequired,
            Rule::DpopKeyBound => DenyReason::DpopKeyMismatch,
            Rule::DpopAthMatches
            | Rule::DpopHtmMatches
            | Rule::DpopHtuMatches
            | Rule::DpopProofNotInTheFuture
            | Rule::DpopProofNotTooOld => DenyReason::InvalidDpopProof,
            Rule::DpopNonceCurrent => DenyReason::UseDpopNonce,
            Rule::NotPinnedElsewhere => DenyReason::SessionReplayed,
            Rule::BindingClaimNamesCaller | Rule::BindingClaimPresentWhenRequired => {
                DenyReason::WorkloadMismatch
            }
            Rule::WorkloadAllowed => DenyReason::WorkloadNotAllowed,
            Rule::ScopesGranted => DenyReason::InsufficientScope,
        }
    }

    /// The facts this rule reads; two rules that write the same facts cannot both be broken.
    fn facts(self) -> &'static str {
        match self {
            Rule::NotRevoked | Rule::NoReauthenticationDemanded => "revocation",
            Rule::HasIssuedAt | Rule::NotIssuedInTheFuture => "iat",
            Rule::CertificateMatchesCnf | Rule::CnfMethodSupported => "cnf",
            Rule::DpopProofNotInTheFuture | Rule::DpopProofNotTooOld => "proof iat",
            Rule::BindingClaimNamesCaller | Rule::BindingClaimPresentWhenRequired => "binding",
            _ => "own",
        }
    }

    /// Whether turning this rule false needs a DPoP request to start from.
    fn needs_dpop(self) -> bool {
        matches!(
            self,
            Rule::NotDowngraded
                | Rule::DpopKeyBound
                | Rule::DpopAthMatches
                | Rule::DpopHtmMatches
                | Rule::DpopHtuMatches
                | Rule::DpopProofNotInTheFuture
                | Rule::DpopProofNotTooOld
                | Rule::DpopNonceCurrent
        )
    }

    /// Makes this rule false in `case`, changing only what it reads. A proof rule leaves a
    /// proof already taken away (by `NotDowngraded`, an earlier rule) alone.
    fn turn_false(self, case: &mut Case, allowed: &Allowed) {
        let now = case.now;
        let skew = allowed.skew;
        match self {
            Rule::KeyStillPublished => {
                // A handle of its own: the case's token shares its handle with other cases.
                case.token.key = KeyHandle::new("test-es256".into());
                case.token.key.retire();
            }
            Rule::KeysFresh => case.keys_stale = true,
            Rule::NotRevoked => case.revocation = RevocationCheck::Revoked,
            Rule::NoReauthenticationDemanded => {
                case.revocation = RevocationCheck::ReauthenticationRequired;
            }
            Rule::NotExpired => {
                case.token.expires_at = now.minus_secs(skew + 1);
            }
            Rule::NotBeforeReached => {
                case.token.not_before = Some(now.plus(secs(skew + 1)));
            }
            Rule::HasIssuedAt => case.token.issued_at = None,
            Rule::NotIssuedInTheFuture => {
                case.token.issued_at = Some(now.plus(secs(skew + 1)));
            }
            Rule::YoungEnough => case.requirements().max_token_age = secs(allowed.age - 1),
            Rule::AuthenticatedRecently => {
                let max = allowed.max_auth_age.unwrap_or(3600);
                case.requirements().max_auth_age = Some(secs(max));
                case.token.auth_time = Some(now.minus_secs(max + 1));
            }
            Rule::NotIdle => {
                let timeout = allowed.idle.map_or(600, |(timeout, _)| timeout);
                case.session.idle_timeout = Some(secs(timeout));
                case.last_allowed = Some(now.minus_secs(timeout + 1));
            }
            Rule::CertificateMatchesCnf => {
                let mut other = allowed.cnf.unwrap_or([7; 32]);
                other[0] ^= 1;
                case.token.confirmation = Confirmation::Certificate(Box::new(Thumbprint(other)));
            }
            Rule::CnfMethodSupported => case.token.confirmation = Confirmation::Unsupported,
            Rule::NotDowngraded => {
                case.scheme = Scheme::Bearer;
                case.proof = None;
                case.token_hash = None;
            }
            Rule::PossessionProven => {
                let presented = (&case.token.confirmation, case.scheme);
                case.requirements().proof_of_possession = Some(match presented {
                    (Confirmation::DpopKey(_), Scheme::Dpop) => PossessionRequirement::Mtls,
                    (Confirmation::Certificate(_), _) => PossessionRequirement::Dpop,
                    // A bearer token meets none of them.
                    _ => *allowed.dpop.variant.get(&[
                        PossessionRequirement::Dpop,
                        PossessionRequirement::Mtls,
                        PossessionRequirement::Either,
                    ]),
                });
            }
            Rule::DpopKeyBound => {
                if let Some(proof) = &mut case.proof {
                    proof.key.0[0] ^= 1;
                }
            }
            Rule::DpopAthMatches => {
                if let Some(proof) = &mut case.proof {
                    // Another token's hash, or none (absent or not a SHA-256 value).
                    let mut other = allowed.dpop.token_hash;
                    other[31] ^= 0x80;
                    proof.token_hash = *allowed.dpop.variant.get(&[Some(Thumbprint(other)), None]);
                }
            }
            Rule::DpopHtmMatches => {
                if let Some(proof) = &mut case.proof {
                    // Another method, or the same one in lower case (methods are case-sensitive).
                    let mut others: Vec<String> = METHODS
                        .iter()
                        .filter(|m| **m != allowed.dpop.method)
                        .map(|m| (*m).to_owned())
                        .collect();
                    others.push(allowed.dpop.method.to_ascii_lowercase());
                    proof.method = allowed.dpop.variant.get(&others).as_str().into();
                }
            }
            Rule::DpopHtuMatches => {
                if let Some(proof) = &mut case.proof {
                    proof.target = allowed.dpop.other_target().into();
                }
            }
            Rule::DpopProofNotInTheFuture => {
                if let Some(proof) = &mut case.proof {
                    let ahead = 1 + allowed.dpop.iat_pick % 3_600_000;
                    proof.issued_at = UnixTime::from_millis(now.as_millis() + skew * 1000 + ahead);
                }
            }
            Rule::DpopProofNotTooOld => {
                if let Some(proof) = &mut case.proof {
                    let limit = (allowed.dpop.lifetime + skew) * 1000;
                    let beyond = 1 + allowed.dpop.iat_pick % 3_600_000;
                    proof.issued_at = UnixTime::from_millis(now.as_millis() - limit - beyond);
                }
            }
            Rule::DpopNonceCurrent => {
                // Missing and stale nonces are one fact to the decision (the check use case
                // compares the nonce); the proof's own says which.
                case.requirements().dpop_nonce = true;
                case.nonce = NonceCheck::Missing;
                case.fresh_nonce = Some("fresh".into());
                if let Some(proof) = &mut case.proof {
                    proof.nonce = allowed.dpop.nonce.then(|| "stale".into());
                }
            }
            Rule::NotPinnedElsewhere => {
                case.binding.pin_first_workload = true;
                case.pinned = Some(PinnedWorkload::Spiffe(BATCH.into()));
            }
            Rule::BindingClaimNamesCaller => {
                case.binding.claim = Some("client_id".into());
                case.token.binding_claim = Some(BATCH.into());
            }
            Rule::BindingClaimPresentWhenRequired => {
                case.binding.claim = Some("client_id".into());
                case.binding.require_claim = true;
                case.token.binding_claim = None;
            }
            Rule::WorkloadAllowed => {
                case.route.workloads = Some(vec![WorkloadPattern::parse(BATCH).unwrap()].into());
            }
            Rule::ScopesGranted => {
                let requirements = case.requirements();
                let mut scopes = requirements.scopes.to_vec();
                scopes.push("never-granted".into());
                requirements.scopes = scopes.into();
            }
        }
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn an_allow_never_survives_any_single_rule_turning_false(
        allowed in allowed(),
        rule in select(RULES),
    ) {
        let mut case = allowed.case_for(&[rule]);
        prop_assert_eq!(case.decide(), Ok(()));
        rule.turn_false(&mut case, &allowed);
        prop_assert_eq!(case.decide().map_err(|deny| deny.reason), Err(rule.reason()));
    }

    #[test]
    fn with_two_rules_false_the_earlier_one_answers(
        allowed in allowed(),
        first in select(RULES),
        second in select(RULES),
    ) {
        // Two rules that write the same facts cannot both be made false.
        prop_assume!(first != second && (first.facts() == "own" || first.facts() != second.facts()));
        let mut case = allowed.case_for(&[first, second]);
        prop_assert_eq!(case.decide(), Ok(()));
        first.turn_false(&mut case, &allowed);
        second.turn_false(&mut case, &allowed);
        let position = |rule| RULES.iter().position(|r| *r == rule).unwrap();
        let earlier = if position(first) < position(second) { first } else { second };
        prop_assert_eq!(case.decide().map_err(|deny| deny.reason), Err(earlier.reason()));
    }
}
