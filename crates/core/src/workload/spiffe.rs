//! SPIFFE IDs and the `workloads` allow-list patterns that match them.

use std::fmt;

/// A syntactically valid SPIFFE ID (`spiffe://trust-domain/path`), borrowed from the request.
///
/// Validation follows the SPIFFE ID standard: lowercase trust domain of `[a-z0-9._-]`, path
/// segments of `[A-Za-z0-9._-]`, no empty, `.` or `..` segments, no query, fragment, port or
/// user info. Anything else is not a workload identity, whatever Envoy put in `principal`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpiffeId<'a>(&'a str);

/// Upper bound on an ID's length, from the SPIFFE standard (2048 bytes for the whole URI).
const MAX_SPIFFE_ID_LEN: usize = 2048;

impl<'a> SpiffeId<'a> {
    /// Parses `text` as a SPIFFE ID, or returns `None` when it is not one.
    ///
    /// Runs on every request (the caller's principal), so it is one pass over the bytes.
    pub fn parse(text: &'a str) -> Option<SpiffeId<'a>> {
        if text.len() > MAX_SPIFFE_ID_LEN {
            return None;
        }
        let rest = text.strip_prefix("spiffe://")?.as_bytes();
        let slash = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
        let (trust_domain, path) = rest.split_at(slash);
        let domain_ok = !trust_domain.is_empty()
            && trust_domain
                .iter()
                .all(|&b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_'));
        if !domain_ok || !valid_path(path) {
            return None;
        }
        Some(SpiffeId(text))
    }

    /// The whole ID as text.
    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

impl fmt::Display for SpiffeId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// `path` is empty or `/segment(/segment)*`, every segment non-empty, not `.` or `..`, of
/// `[A-Za-z0-9._-]`.
fn valid_path(path: &[u8]) -> bool {
    let Some((&b'/', segments)) = path.split_first() else {
        return path.is_empty();
    };
    let mut start = 0;
    for (at, &b) in segments.iter().enumerate() {
        if b == b'/' {
            if !valid_segment(&segments[start..at]) {
                return false;
            }
            start = at + 1;
        } else if !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')) {
            return false;
        }
    }
    valid_segment(&segments[start..])
}

fn valid_segment(segment: &[u8]) -> bool {
    !matches!(segment, b"" | b"." | b"..")
}

/// One entry of a route's `workloads` list: an exact SPIFFE ID, or a SPIFFE ID followed by
/// `/*`, which admits every ID below it.
///
/// A prefix always ends at a `/`, so it never crosses a trust-domain or path-segment boundary:
/// a bare text prefix `spiffe://cluster.local*` would also admit `spiffe://cluster.localhost/…`,
/// another trust domain, and `spiffe://td/ns/shop*` the namespace `shopping`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkloadPattern {
    /// Matches exactly this SPIFFE ID.
    Exact(Box<str>),
    /// Matches every SPIFFE ID starting with this text: a valid SPIFFE ID and a `/` (the
    /// entry with its `*` removed).
    Below(Box<str>),
}

/// Why a `workloads` entry was rejected at config load.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WorkloadPatternError {
    /// The entry is not a SPIFFE ID (nor a SPIFFE ID followed by `/*`).
    #[error("`{0}` is not a SPIFFE ID (spiffe://trust-domain/path), nor one followed by `/*`")]
    NotSpiffe(String),
    /// A `*` that does not follow a `/`: the prefix would run across a trust-domain or
    /// path-segment boundary.
    #[error(
        "`{entry}`: a `*` must follow a `/` (a prefix ending mid-name also admits longer names, \
         e.g. another trust domain or namespace); write `{below}` for every ID below {id}, or \
         list exact SPIFFE IDs"
    )]
    UnboundedPrefix {
        /// The entry as configured.
        entry: String,
        /// What to write instead: the entry's SPIFFE ID followed by `/*`.
        below: String,
        /// That SPIFFE ID.
        id: String,
    },
}

impl WorkloadPattern {
    /// Parses a config entry: an exact SPIFFE ID, or a SPIFFE ID followed by `/*`. A prefix
    /// must name at least a trust domain, so `*` alone or `spiffe://*` are refused, and it must
    /// end at a `/`, so `spiffe://cluster.local*` and `spiffe://td/ns/shop*` are refused with
    /// what to write instead.
    pub fn parse(entry: &str) -> Result<WorkloadPattern, WorkloadPatternError> {
        let not_spiffe = || WorkloadPatternError::NotSpiffe(entry.to_owned());
        let Some(prefix) = entry.strip_suffix('*') else {
            SpiffeId::parse(entry).ok_or_else(not_spiffe)?;
            return Ok(WorkloadPattern::Exact(entry.into()));
        };
        match prefix.strip_suffix('/') {
            Some(id) => {
                SpiffeId::parse(id).ok_or_else(not_spiffe)?;
                Ok(WorkloadPattern::Below(prefix.into()))
            }
            None => {
                let id = SpiffeId::parse(prefix).ok_or_else(not_spiffe)?;
                Err(WorkloadPatternError::UnboundedPrefix {
                    entry: entry.to_owned(),
                    below: format!("{id}/*"),
                    id: id.to_string(),
                })
            }
        }
    }

    /// Whether `id` is admitted by this pattern.
    pub fn matches(&self, id: SpiffeId<'_>) -> bool {
        match self {
            WorkloadPattern::Exact(exact) => id.as_str() == &**exact,
            WorkloadPattern::Below(prefix) => id.as_str().starts_with(&**prefix),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_well_formed_ids() {
        for id in [
            "spiffe://cluster.local/ns/shop/sa/frontend",
            "spiffe://example.org",
            "spiffe://trust_domain-1.example/a.b/c-d_e",
            "spiffe://example.org/.well-known/..x",
        ] {
            assert!(SpiffeId::parse(id).is_some(), "{id}");
        }
    }

    #[test]
    fn rejects_what_envoy_may_pass_as_principal() {
        for text in [
            "",
            "CN=frontend,O=shop",
            "https://cluster.local/ns/shop",
            "spiffe://",
            "spiffe:///path",
            "spiffe://Cluster.Local/ns",
            "spiffe://cluster.local/",
            "spiffe://cluster.local//ns",
            "spiffe://cluster.local/ns/../admin",
            "spiffe://cluster.local/ns/./x",
            "spiffe://cluster.local/ns/..",
            "spiffe://cluster.local/ns/.",
            "spiffe://cluster.local/ns/",
            "spiffe://cluster.local:8443/ns",
            "spiffe://user@cluster.local/ns",
            "spiffe://cluster.local/ns?x=1",
            "spiffe://cluster.local/ns#frag",
            "spiffe://cluster.local/n s",
        ] {
            assert!(SpiffeId::parse(text).is_none(), "{text:?}");
        }
        let long = format!("spiffe://a/{}", "x".repeat(3000));
        assert!(SpiffeId::parse(&long).is_none());
    }

    #[test]
    fn exact_pattern_matches_only_that_id() {
        let pattern = WorkloadPattern::parse("spiffe://cluster.local/ns/shop/sa/frontend").unwrap();
        let frontend = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/frontend").unwrap();
        let longer = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/frontend2").unwrap();
        assert!(pattern.matches(frontend));
        assert!(!pattern.matches(longer));
    }

    #[test]
    fn star_suffix_is_a_prefix_match() {
        let pattern = WorkloadPattern::parse("spiffe://cluster.local/ns/shop/*").unwrap();
        let inside = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/batch").unwrap();
        let outside = SpiffeId::parse("spiffe://cluster.local/ns/shopping/sa/x").unwrap();
        assert!(pattern.matches(inside));
        assert!(!pattern.matches(outside));
    }

    #[test]
    fn patterns_must_name_a_trust_domain() {
        for entry in [
            "*",
            "spiffe://*",
            "spiffe:///*",
            "frontend",
            "spiffe://Upper/x",
            "spiffe://td//*",
            "spiffe://td/ns/*/sa/x",
        ] {
            assert_eq!(
                WorkloadPattern::parse(entry),
                Err(WorkloadPatternError::NotSpiffe(entry.into())),
                "{entry}"
            );
        }
    }

    #[test]
    fn a_trust_domain_prefix_does_not_reach_into_another_trust_domain() {
        let pattern = WorkloadPattern::parse("spiffe://cluster.local/*").unwrap();
        let inside = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/batch").unwrap();
        let other_domain = SpiffeId::parse("spiffe://cluster.localhost/ns/shop/sa/batch").unwrap();
        assert!(pattern.matches(inside));
        assert!(!pattern.matches(other_domain));
    }

    #[test]
    fn a_star_not_after_a_slash_is_refused_with_what_to_write_instead() {
        for (entry, below) in [
            ("spiffe://cluster.local*", "spiffe://cluster.local/*"),
            ("spiffe://td/ns/shop*", "spiffe://td/ns/shop/*"),
            (
                "spiffe://td/ns/shop/sa/front*",
                "spiffe://td/ns/shop/sa/front/*",
            ),
        ] {
            let refused = WorkloadPattern::parse(entry).unwrap_err();
            assert_eq!(
                refused,
                WorkloadPatternError::UnboundedPrefix {
                    entry: entry.into(),
                    below: below.into(),
                    id: below.trim_end_matches("/*").into(),
                }
            );
            let message = refused.to_string();
            assert!(
                message.contains("must follow a `/`")
                    && message.contains(&format!("write `{below}`")),
                "{message}"
            );
        }
    }
}
