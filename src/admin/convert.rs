//! Proto messages ⇄ domain types. Validation of operator input happens here, once, with a
//! message specific enough to fix the request: every error becomes `INVALID_ARGUMENT`.

use std::sync::Arc;
use std::time::Duration;

use super::proto;
use crate::revocation::{Effect, Revocation, Selector};
use sessiongate_core::time::UnixTime;
use sessiongate_core::workload::SpiffeId;

/// Longest accepted selector value or reason: identifiers are short, and records must stay far
/// below the store's record size limit.
pub const MAX_FIELD_LEN: usize = 1024;

/// Why a request's selector or fields are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    /// No selector, or an empty `oneof`.
    #[error(
        "selector is required (one of token_id, oidc_session, subject, client_id, workload, issuer, email)"
    )]
    MissingSelector,
    /// A required field is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// A field is longer than [`MAX_FIELD_LEN`].
    #[error("{0} is longer than {MAX_FIELD_LEN} bytes")]
    TooLong(&'static str),
    /// `workload` is not a SPIFFE ID.
    #[error("workload `{0}` is not a SPIFFE ID (spiffe://trust-domain/path)")]
    NotSpiffeId(String),
    /// An issuer was left empty while the server trusts several (or none).
    #[error("{field} is required: this sessiongate trusts {count} issuers ({list})")]
    IssuerRequired {
        /// Which field.
        field: &'static str,
        /// How many issuers are trusted.
        count: usize,
        /// Them, comma-separated.
        list: String,
    },
    /// An issuer this sessiongate does not trust: no token of it could ever be allowed.
    #[error("issuer `{0}` is not a configured issuer")]
    UnknownIssuer(String),
    /// The cut-off is in the future beyond the clock skew.
    #[error("issued_before lies {0:?} in the future, beyond the clock skew")]
    FutureCutoff(Duration),
}

fn required(field: &'static str, value: String) -> Result<Box<str>, InvalidInput> {
    if value.is_empty() {
        return Err(InvalidInput::Empty(field));
    }
    if value.len() > MAX_FIELD_LEN {
        return Err(InvalidInput::TooLong(field));
    }
    Ok(value.into())
}

/// Validates a selector. Issuers must already be filled in (see [`fill_issuer`]).
impl TryFrom<proto::Selector> for Selector {
    type Error = InvalidInput;

    fn try_from(selector: proto::Selector) -> Result<Selector, InvalidInput> {
        use proto::selector::Kind;
        let issuer = |field, value| required(field, value).map(Arc::<str>::from);
        Ok(match selector.kind.ok_or(InvalidInput::MissingSelector)? {
            Kind::TokenId(t) => Selector::TokenId {
                issuer: issuer("token_id.issuer", t.issuer)?,
                jti: required("token_id.jti", t.jti)?,
            },
            Kind::OidcSession(s) => Selector::Session {
                issuer: issuer("oidc_session.issuer", s.issuer)?,
                sid: required("oidc_session.sid", s.sid)?,
            },
            Kind::Subject(s) => Selector::Subject {
                issuer: issuer("subject.issuer", s.issuer)?,
                sub: required("subject.sub", s.sub)?,
            },
            Kind::ClientId(client_id) => Selector::Client {
                client_id: required("client_id", client_id)?,
            },
            Kind::Workload(id) => {
                let id = required("workload", id)?;
                if SpiffeId::parse(&id).is_none() {
                    return Err(InvalidInput::NotSpiffeId(id.into()));
                }
                Selector::Workload { spiffe_id: id }
            }
            Kind::Issuer(i) => Selector::Issuer {
                issuer: issuer("issuer.issuer", i.issuer)?,
            },
            Kind::Email(email) => Selector::Email {
                email: required("email", email)?.to_ascii_lowercase().into(),
            },
        })
    }
}

/// Fills an empty issuer field with the only trusted issuer, and checks a given one is trusted.
/// `trusted` is the current policy's issuers.
pub fn fill_issuer(
    selector: &mut proto::Selector,
    trusted: &[Arc<str>],
) -> Result<(), InvalidInput> {
    use proto::selector::Kind;
    let (field, issuer) = match selector.kind.as_mut() {
        Some(Kind::TokenId(t)) => ("token_id.issuer", &mut t.issuer),
        Some(Kind::OidcSession(s)) => ("oidc_session.issuer", &mut s.issuer),
        Some(Kind::Subject(s)) => ("subject.issuer", &mut s.issuer),
        Some(Kind::Issuer(i)) => ("issuer.issuer", &mut i.issuer),
        _ => return Ok(()),
    };
    if issuer.is_empty() {
        match trusted {
            [only] => *issuer = only.to_string(),
            _ => {
                return Err(InvalidInput::IssuerRequired {
                    field,
                    count: trusted.len(),
                    list: trusted.join(", "),
                });
            }
        }
    } else if !trusted.iter().any(|t| **t == **issuer) {
        return Err(InvalidInput::UnknownIssuer(issuer.clone()));
    }
    Ok(())
}

/// The cut-off of a revocation requested at `now`: the given instant, or `now`; never further in
/// the future than the clock skew (a cut-off in the future would also kill tokens not yet
/// issued, which is a watermark nobody can sign in past).
pub fn cutoff(
    requested_ms: Option<u64>,
    now: UnixTime,
    skew: Duration,
) -> Result<UnixTime, InvalidInput> {
    let Some(ms) = requested_ms else {
        return Ok(now);
    };
    let requested = UnixTime::from_millis(ms);
    if requested > now.plus(skew) {
        return Err(InvalidInput::FutureCutoff(requested.since(now)));
    }
    Ok(requested)
}

/// A validated reason text.
pub fn reason(text: String) -> Result<Box<str>, InvalidInput> {
    if text.len() > MAX_FIELD_LEN {
        return Err(InvalidInput::TooLong("reason"));
    }
    Ok(text.into())
}

impl From<&Selector> for proto::Selector {
    fn from(selector: &Selector) -> proto::Selector {
        use proto::selector::Kind;
        let kind = match selector {
            Selector::TokenId { issuer, jti } => Kind::TokenId(proto::TokenId {
                issuer: issuer.to_string(),
                jti: jti.to_string(),
            }),
            Selector::Session { issuer, sid } => Kind::OidcSession(proto::OidcSession {
                issuer: issuer.to_string(),
                sid: sid.to_string(),
            }),
            Selector::Subject { issuer, sub } => Kind::Subject(proto::Subject {
                issuer: issuer.to_string(),
                sub: sub.to_string(),
            }),
            Selector::Client { client_id } => Kind::ClientId(client_id.to_string()),
            Selector::Workload { spiffe_id } => Kind::Workload(spiffe_id.to_string()),
            Selector::Email { email } => Kind::Email(email.to_string()),
            Selector::Issuer { issuer } => Kind::Issuer(proto::Issuer {
                issuer: issuer.to_string(),
            }),
        };
        proto::Selector { kind: Some(kind) }
    }
}

/// A revocation for the API; `horizon` is the retention horizon now in force (see
/// [`Revocation::forget_after`]).
pub fn revocation_to_proto(revocation: &Revocation, horizon: Duration) -> proto::Revocation {
    proto::Revocation {
        selector: Some((&revocation.selector).into()),
        issued_before_unix_ms: revocation.issued_before.as_millis(),
        effect: match revocation.effect {
            Effect::Revoke => proto::Effect::Revoke,
            Effect::RequireReauthentication => proto::Effect::RequireReauthentication,
        } as i32,
        recorded_at_unix_ms: revocation.recorded_at.as_millis(),
        origin: revocation.origin.to_string(),
        reason: revocation.reason.to_string(),
        forget_after_unix_ms: revocation.forget_after(horizon).as_millis(),
        issuers: revocation
            .issuers
            .iter()
            .flatten()
            .map(|issuer| issuer.to_string())
            .collect(),
    }
}

/// A selector in one line for humans (CLI output, logs): `subject https://idp alice`.
pub fn describe_selector(selector: &proto::Selector) -> String {
    use proto::selector::Kind;
    match &selector.kind {
        Some(Kind::TokenId(t)) => format!("jti {} (iss {})", t.jti, t.issuer),
        Some(Kind::OidcSession(s)) => format!("sid {} (iss {})", s.sid, s.issuer),
        Some(Kind::Subject(s)) => format!("sub {} (iss {})", s.sub, s.issuer),
        Some(Kind::ClientId(c)) => format!("client_id {c}"),
        Some(Kind::Workload(w)) => format!("workload {w}"),
        Some(Kind::Issuer(i)) => format!("issuer {} (every token)", i.issuer),
        Some(Kind::Email(e)) => format!("email {e}"),
        None => "(no selector)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::selector::Kind;

    fn selector(kind: Kind) -> proto::Selector {
        proto::Selector { kind: Some(kind) }
    }

    fn trusted(issuers: &[&str]) -> Vec<Arc<str>> {
        issuers.iter().map(|i| Arc::from(*i)).collect()
    }

    #[test]
    fn every_selector_round_trips() {
        let all = [
            Selector::TokenId {
                issuer: "https://idp".into(),
                jti: "j".into(),
            },
            Selector::Session {
                issuer: "https://idp".into(),
                sid: "s".into(),
            },
            Selector::Subject {
                issuer: "https://idp".into(),
                sub: "alice".into(),
            },
            Selector::Client {
                client_id: "shop".into(),
            },
            Selector::Workload {
                spiffe_id: "spiffe://cluster.local/ns/a/sa/b".into(),
            },
            Selector::Email {
                email: "alice@example.test".into(),
            },
            Selector::Issuer {
                issuer: "https://idp".into(),
            },
        ];
        for domain in all {
            let wire = proto::Selector::from(&domain);
            assert_eq!(Selector::try_from(wire).unwrap(), domain);
        }
    }

    #[test]
    fn empty_fields_are_named() {
        let error = Selector::try_from(selector(Kind::Subject(proto::Subject {
            issuer: "https://idp".into(),
            sub: "".into(),
        })))
        .unwrap_err();
        assert_eq!(error.to_string(), "subject.sub must not be empty");
        assert_eq!(
            Selector::try_from(proto::Selector { kind: None }).unwrap_err(),
            InvalidInput::MissingSelector
        );
    }

    #[test]
    fn a_workload_must_be_a_spiffe_id() {
        let error =
            Selector::try_from(selector(Kind::Workload("https://not-spiffe".into()))).unwrap_err();
        assert_eq!(
            error.to_string(),
            "workload `https://not-spiffe` is not a SPIFFE ID (spiffe://trust-domain/path)"
        );
    }

    #[test]
    fn an_omitted_issuer_defaults_only_when_one_is_trusted() {
        let mut wire = selector(Kind::Subject(proto::Subject {
            issuer: "".into(),
            sub: "a".into(),
        }));
        fill_issuer(&mut wire, &trusted(&["https://idp"])).unwrap();
        assert_eq!(
            Selector::try_from(wire.clone()).unwrap(),
            Selector::Subject {
                issuer: "https://idp".into(),
                sub: "a".into()
            }
        );
        let mut wire = selector(Kind::Subject(proto::Subject {
            issuer: "".into(),
            sub: "a".into(),
        }));
        let error = fill_issuer(&mut wire, &trusted(&["https://a", "https://b"])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "subject.issuer is required: this sessiongate trusts 2 issuers (https://a, https://b)"
        );
    }

    #[test]
    fn an_untrusted_issuer_is_refused() {
        let mut wire = selector(Kind::Issuer(proto::Issuer {
            issuer: "https://evil".into(),
        }));
        assert_eq!(
            fill_issuer(&mut wire, &trusted(&["https://idp"])).unwrap_err(),
            InvalidInput::UnknownIssuer("https://evil".into())
        );
    }

    #[test]
    fn the_cutoff_defaults_to_now_and_may_not_lie_in_the_future() {
        let now = UnixTime::from_secs(1_000);
        let skew = Duration::from_secs(30);
        assert_eq!(cutoff(None, now, skew).unwrap(), now);
        assert_eq!(
            cutoff(Some(1_020_000), now, skew).unwrap(),
            UnixTime::from_secs(1_020)
        );
        assert_eq!(
            cutoff(Some(1_060_000), now, skew).unwrap_err(),
            InvalidInput::FutureCutoff(Duration::from_secs(60))
        );
    }
}
