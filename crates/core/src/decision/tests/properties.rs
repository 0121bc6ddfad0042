//! Properties of [`decide`]: an allow never survives any single rule turning false.
//!
//! Each case draws a session, request and policy that `decide` allows (times, skew, token and
//! authentication ages, idleness, certificate binding, pins, binding claim, workloads, scopes),
//! then turns exactly one rule false by changing only what that rule reads, and expects that
//! rule's reason. With two rules false, the earlier one in `decide`'s order is the answer.
//! Few cases per run (the suite runs in CI on 2 cores); each run draws new ones.

use proptest::prelude::*;
use proptest::sample::select;

use super::*;

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
            (cnf, binding_claim, require_claim, pin, pinned, workloads),
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
            Rule::BindingClaimNamesCaller | Rule::BindingClaimPresentWhenRequired => "binding",
            _ => "own",
        }
    }

    /// Makes this rule false in `case`, changing only what it reads.
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
        let mut case = allowed.case();
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
        let mut case = allowed.case();
        first.turn_false(&mut case, &allowed);
        second.turn_false(&mut case, &allowed);
        let position = |rule| RULES.iter().position(|r| *r == rule).unwrap();
        let earlier = if position(first) < position(second) { first } else { second };
        prop_assert_eq!(case.decide().map_err(|deny| deny.reason), Err(earlier.reason()));
    }
}
