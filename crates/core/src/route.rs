//! Routes: which rules apply to a request. First match wins; no match is a denial.

use std::sync::Arc;
use std::time::Duration;

use crate::dpop::PossessionRequirement;
use crate::request::RequestFacts;
use crate::workload::{SpiffeId, WorkloadPattern};

/// What a request must match for a route to apply. Every condition present must hold; a route
/// with none matches everything.
#[derive(Clone, Debug, Default)]
pub struct RouteConditions {
    /// Allowed methods (upper case); empty means any.
    pub methods: Box<[Box<str>]>,
    /// Exact path (without query).
    pub path: Option<Box<str>>,
    /// Plain string prefix of the path (without query).
    pub path_prefix: Option<Box<str>>,
    /// Hosts (lower case, without port); empty means any.
    pub hosts: Box<[Box<str>]>,
    /// Required value of Envoy's `context_extensions["sessiongate.policy"]`.
    pub policy: Option<Box<str>>,
}

impl RouteConditions {
    /// Whether `request` satisfies every condition.
    pub fn matches(&self, request: &RequestFacts<'_>) -> bool {
        (self.methods.is_empty() || self.methods.iter().any(|m| **m == *request.method))
            && self.path.as_deref().is_none_or(|path| path == request.path)
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|prefix| request.path.starts_with(prefix))
            && (self.hosts.is_empty()
                || self
                    .hosts
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(request.host)))
            && self
                .policy
                .as_deref()
                .is_none_or(|policy| request.policy == Some(policy))
    }
}

/// What a session must satisfy on a non-public route. Global defaults are already folded in.
#[derive(Clone, Debug)]
pub struct SessionRequirements {
    /// Scopes that must all be granted.
    pub scopes: Box<[Box<str>]>,
    /// The same scopes space-separated, for the `insufficient_scope` challenge.
    pub scope_challenge: Arc<str>,
    /// Deny when `now - iat` exceeds this.
    pub max_token_age: Duration,
    /// Deny when `now - auth_time` exceeds this (tokens without `auth_time` are exempt).
    pub max_auth_age: Option<Duration>,
    /// The proof of possession the route demands (`proof_of_possession`); `None`: any token.
    pub proof_of_possession: Option<PossessionRequirement>,
    /// DPoP proofs must carry a current server nonce (`dpop_nonce`).
    pub dpop_nonce: bool,
    /// The public origin a DPoP proof's `htu` names on this route (`dpop_origin`), overriding
    /// the policy's `dpop.origin`: routes served under different public names behind one proxy.
    pub dpop_origin: Option<Box<str>>,
}

/// Who may use a route.
#[derive(Clone, Debug)]
pub enum RouteAccess {
    /// No token needed.
    Public,
    /// A valid session meeting these requirements.
    Session(SessionRequirements),
}

/// One configured route.
#[derive(Clone, Debug)]
pub struct Route {
    /// The route's name, for logs and metrics.
    pub name: Arc<str>,
    /// When the route applies.
    pub conditions: RouteConditions,
    /// What the caller must present.
    pub access: RouteAccess,
    /// Callers allowed on this route (SPIFFE IDs or prefixes); `None` means any caller.
    pub workloads: Option<Box<[WorkloadPattern]>>,
}

impl Route {
    /// Whether a caller with `spiffe_id` is on the route's `workloads` list. A caller without
    /// a valid SPIFFE ID is never on a list.
    pub fn admits_workload(&self, spiffe_id: Option<SpiffeId<'_>>) -> bool {
        match &self.workloads {
            None => true,
            Some(patterns) => spiffe_id.is_some_and(|id| patterns.iter().any(|p| p.matches(id))),
        }
    }
}

/// The ordered routes.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    routes: Box<[Route]>,
}

impl RouteTable {
    /// A table trying `routes` in order.
    pub fn new(routes: Vec<Route>) -> RouteTable {
        RouteTable {
            routes: routes.into(),
        }
    }

    /// The first route matching `request`.
    pub fn find(&self, request: &RequestFacts<'_>) -> Option<&Route> {
        self.routes
            .iter()
            .find(|route| route.conditions.matches(request))
    }

    /// All routes, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether there are no routes (everything is `no_route`).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(
        method: &'a str,
        path: &'a str,
        host: &'a str,
        policy: Option<&'a str>,
    ) -> RequestFacts<'a> {
        RequestFacts {
            method,
            path,
            host,
            policy,
            ..Default::default()
        }
    }

    fn route(name: &str, conditions: RouteConditions) -> Route {
        Route {
            name: name.into(),
            conditions,
            access: RouteAccess::Public,
            workloads: None,
        }
    }

    fn strs(items: &[&str]) -> Box<[Box<str>]> {
        items.iter().map(|s| Box::from(*s)).collect()
    }

    #[test]
    fn a_route_without_conditions_matches_everything() {
        let all = RouteConditions::default();
        assert!(all.matches(&request("PATCH", "/anything", "x", None)));
    }

    #[test]
    fn method_must_be_listed() {
        let c = RouteConditions {
            methods: strs(&["POST", "PUT"]),
            ..Default::default()
        };
        assert!(c.matches(&request("POST", "/", "h", None)));
        assert!(!c.matches(&request("GET", "/", "h", None)));
        assert!(
            !c.matches(&request("post", "/", "h", None)),
            "methods are case-sensitive"
        );
    }

    #[test]
    fn path_prefix_is_a_plain_string_prefix() {
        let c = RouteConditions {
            path_prefix: Some("/orders".into()),
            ..Default::default()
        };
        assert!(c.matches(&request("GET", "/orders", "h", None)));
        assert!(c.matches(&request("GET", "/orders/42", "h", None)));
        assert!(c.matches(&request("GET", "/ordersX", "h", None)));
        assert!(!c.matches(&request("GET", "/order", "h", None)));
        assert!(!c.matches(&request("GET", "/api/orders", "h", None)));
    }

    #[test]
    fn path_is_exact() {
        let c = RouteConditions {
            path: Some("/healthz".into()),
            ..Default::default()
        };
        assert!(c.matches(&request("GET", "/healthz", "h", None)));
        assert!(!c.matches(&request("GET", "/healthz/x", "h", None)));
    }

    #[test]
    fn hosts_match_case_insensitively() {
        let c = RouteConditions {
            hosts: strs(&["shop.example"]),
            ..Default::default()
        };
        assert!(c.matches(&request("GET", "/", "Shop.Example", None)));
        assert!(!c.matches(&request("GET", "/", "evil.example", None)));
    }

    #[test]
    fn policy_matches_envoys_context_extension() {
        let c = RouteConditions {
            policy: Some("admin".into()),
            ..Default::default()
        };
        assert!(c.matches(&request("GET", "/x", "h", Some("admin"))));
        assert!(!c.matches(&request("GET", "/x", "h", Some("other"))));
        assert!(!c.matches(&request("GET", "/x", "h", None)));
    }

    #[test]
    fn all_conditions_must_hold() {
        let c = RouteConditions {
            methods: strs(&["POST"]),
            path_prefix: Some("/orders".into()),
            hosts: strs(&["shop"]),
            ..Default::default()
        };
        assert!(c.matches(&request("POST", "/orders/1", "shop", None)));
        assert!(!c.matches(&request("POST", "/orders/1", "other", None)));
        assert!(!c.matches(&request("GET", "/orders/1", "shop", None)));
    }

    #[test]
    fn first_match_wins_and_no_match_is_none() {
        let table = RouteTable::new(vec![
            route(
                "health",
                RouteConditions {
                    path_prefix: Some("/healthz".into()),
                    ..Default::default()
                },
            ),
            route(
                "orders",
                RouteConditions {
                    path_prefix: Some("/orders".into()),
                    ..Default::default()
                },
            ),
            route(
                "also-orders",
                RouteConditions {
                    path_prefix: Some("/orders".into()),
                    ..Default::default()
                },
            ),
        ]);
        assert_eq!(
            &*table
                .find(&request("GET", "/orders/1", "h", None))
                .unwrap()
                .name,
            "orders"
        );
        assert!(table.find(&request("GET", "/other", "h", None)).is_none());
    }

    #[test]
    fn workloads_list_admits_only_spiffe_callers_on_it() {
        let mut r = route("w", RouteConditions::default());
        assert!(r.admits_workload(None), "no list admits anyone");
        r.workloads = Some(
            vec![WorkloadPattern::parse("spiffe://cluster.local/ns/shop/sa/frontend").unwrap()]
                .into(),
        );
        assert!(r.admits_workload(SpiffeId::parse(
            "spiffe://cluster.local/ns/shop/sa/frontend"
        )));
        assert!(!r.admits_workload(SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/batch")));
        assert!(!r.admits_workload(None));
    }
}
