//! How one revocation is written as an entry of the fleet's stream, pure.
//!
//! Kept apart from any I/O so the wire format is tested without a server, and so every process
//! of a fleet (whatever its version) agrees on one documented shape (the stream's name is in
//! [`super::keys`]):
//!
//! ```text
//! v          = "1"  (format version)
//! revocation = the revocation as JSON (same as the file log)
//! ```
//!
//! Entry ids are Redis' own (`<ms>-<seq>`), so the stream's order is the order in which Redis
//! accepted the writes, and a replica that knows the last id it applied can catch up losslessly.

use std::collections::HashMap;

use crate::revocation::Revocation;

/// The entry field holding the format version.
pub const VERSION_FIELD: &str = "v";
/// The only format version written and understood.
pub const VERSION: &str = "1";
/// The entry field holding the revocation.
pub const REVOCATION_FIELD: &str = "revocation";

/// The field/value pairs of the stream entry for `revocation`.
pub fn encode(revocation: &Revocation) -> [(&'static str, String); 2] {
    let json = serde_json::to_string(revocation).expect("a revocation always serialises");
    [
        (VERSION_FIELD, VERSION.to_owned()),
        (REVOCATION_FIELD, json),
    ]
}

/// Why a stream entry is not a revocation this version understands.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    /// No `v` field, or a version this build does not know (written by a newer sessiongate).
    #[error("entry {id}: unsupported format version {version:?}")]
    Version {
        /// The entry id.
        id: String,
        /// What the entry says, if anything.
        version: Option<String>,
    },
    /// The `revocation` field is missing or is not a revocation.
    #[error("entry {id}: not a revocation: {problem}")]
    Body {
        /// The entry id.
        id: String,
        /// What is wrong.
        problem: String,
    },
}

/// The revocation in entry `id` with fields `fields` (as the stream reply's text values).
pub fn decode(id: &str, fields: &HashMap<String, String>) -> Result<Revocation, EntryError> {
    match fields.get(VERSION_FIELD).map(String::as_str) {
        Some(VERSION) => {}
        other => {
            return Err(EntryError::Version {
                id: id.to_owned(),
                version: other.map(str::to_owned),
            });
        }
    }
    let body = fields
        .get(REVOCATION_FIELD)
        .ok_or_else(|| EntryError::Body {
            id: id.to_owned(),
            problem: format!("no `{REVOCATION_FIELD}` field"),
        })?;
    serde_json::from_str(body).map_err(|e| EntryError::Body {
        id: id.to_owned(),
        problem: e.to_string(),
    })
}

/// A stream entry id (`<ms>-<seq>`), compared numerically: the string order is wrong once the
/// millisecond part gains a digit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct EntryId {
    /// Milliseconds (Redis' clock when the entry was added).
    pub millis: u64,
    /// Sequence within that millisecond.
    pub seq: u64,
}

impl EntryId {
    /// Before every entry: reading after it reads the whole stream.
    pub const START: EntryId = EntryId { millis: 0, seq: 0 };

    /// Parses `<ms>-<seq>`.
    pub fn parse(text: &str) -> Option<EntryId> {
        let (millis, seq) = text.split_once('-')?;
        Some(EntryId {
            millis: millis.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.millis, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::{Effect, Selector};
    use sessiongate_core::time::UnixTime;

    fn revocation() -> Revocation {
        Revocation {
            selector: Selector::Subject {
                issuer: "https://idp".into(),
                sub: "alice".into(),
            },
            issued_before: UnixTime::from_millis(1_700_000_000_123),
            effect: Effect::RequireReauthentication,
            recorded_at: UnixTime::from_millis(1_700_000_000_456),
            origin: "ssf:https://idp".into(),
            reason: "laptop \"stolen\"\n".into(),
            issuers: Some(vec!["https://idp".into(), "https://idp/tenant-b".into()].into()),
            retain_until: None,
        }
    }

    fn fields(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn an_entry_round_trips_every_field() {
        let written: HashMap<String, String> = encode(&revocation())
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(written["v"], "1");
        assert_eq!(decode("1-0", &written), Ok(revocation()));
    }

    #[test]
    fn an_entry_written_before_issuer_scopes_existed_loads_unscoped() {
        // Byte for byte what the previous version wrote (format 1, no `issuers` member).
        let old = r#"{"selector":{"kind":"email","email":"alice@example.com"},"issued_before":1000000,"effect":"revoke","recorded_at":1000000,"origin":"ssf:https://idp","reason":"credential-change"}"#;
        let decoded = decode("3-0", &fields(&[("v", "1"), ("revocation", old)])).unwrap();
        assert_eq!(
            decoded.selector,
            Selector::Email {
                email: "alice@example.com".into()
            }
        );
        assert_eq!(decoded.issuers, None, "no scope: any issuer, as before");
        assert_eq!(
            encode(&decoded)[1].1,
            old,
            "unscoped entries are written as before"
        );
    }

    #[test]
    fn an_unknown_version_is_refused_not_guessed() {
        let body = encode(&revocation())[1].1.clone();
        for version in [None, Some("2"), Some("")] {
            let mut entry = fields(&[("revocation", &body)]);
            if let Some(v) = version {
                entry.insert("v".into(), v.into());
            }
            assert_eq!(
                decode("5-1", &entry),
                Err(EntryError::Version {
                    id: "5-1".into(),
                    version: version.map(str::to_owned)
                })
            );
        }
    }

    #[test]
    fn a_damaged_body_names_the_entry() {
        let error = decode("7-0", &fields(&[("v", "1"), ("revocation", "{")])).unwrap_err();
        assert!(
            error.to_string().starts_with("entry 7-0: not a revocation"),
            "{error}"
        );
        let error = decode("7-1", &fields(&[("v", "1")])).unwrap_err();
        assert!(
            error.to_string().contains("no `revocation` field"),
            "{error}"
        );
    }

    #[test]
    fn entry_ids_order_numerically() {
        let early = EntryId::parse("999-5").unwrap();
        let late = EntryId::parse("1000-0").unwrap();
        assert!(early < late, "string order would say otherwise");
        assert_eq!(late.to_string(), "1000-0");
        assert!(EntryId::START < early);
        for bad in ["", "12", "a-1", "1-b", "-1"] {
            assert_eq!(EntryId::parse(bad), None, "{bad}");
        }
    }
}
