//! Subject identifiers (RFC 9493) → what sessiongate can match a token by.
//!
//! A transmitter names the subject of an event in one of several formats; sessiongate can act on
//! those that correspond to something a token carries (`iss` + `sub`, `email`, `sid`, `jti`).
//! A format it cannot match is refused rather than ignored: acknowledging an event that was not
//! acted on would tell the transmitter the user's sessions were cut when they were not.
//!
//! A transmitter may act only on the token issuers it is configured for (`acts_for`): a
//! subject naming another issuer is refused as `access_denied`, and one that names no issuer
//! (`opaque`) is read as a subject of each of them. (An `email` names no issuer either; the
//! revocation it becomes is scoped to `acts_for`, see [`super::events`].)

use std::sync::Arc;

use serde_json::{Map, Value};

use super::SetError;
use crate::revocation::Selector;

/// What one subject identifier names, as selectors; a complex identifier may name several
/// facets, and each event picks the one it is about (see [`super::events`]). A facet is a list
/// because an `opaque` identifier names its subject at each issuer the transmitter acts for;
/// an empty list means the identifier does not name that facet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    /// The user: [`Selector::Subject`]s or a [`Selector::Email`].
    pub user: Vec<Selector>,
    /// One OIDC session: [`Selector::Session`]s.
    pub session: Vec<Selector>,
    /// One token: a [`Selector::TokenId`].
    pub token: Vec<Selector>,
}

/// Parses a subject identifier from a transmitter acting for the token issuers `acts_for`.
/// `opaque` identifiers are meaningful only to the identity provider that minted them, which
/// is what the transmitter speaks for: they name the subject at each issuer of `acts_for`.
pub fn parse(identifier: &Value, acts_for: &[Arc<str>]) -> Result<Subject, SetError> {
    let Value::Object(id) = identifier else {
        return Err(SetError::invalid("subject identifier is not a JSON object"));
    };
    match format(id)? {
        Some("complex") => complex(id, acts_for),
        // Early CAEP drafts sent complex subjects without a format.
        None if ["user", "session"].iter().any(|m| id.contains_key(*m)) => complex(id, acts_for),
        Some("jwt_id") => Ok(Subject {
            token: vec![Selector::TokenId {
                issuer: allowed(member(id, "iss")?, acts_for)?,
                jti: member(id, "jti")?.into(),
            }],
            ..Subject::default()
        }),
        _ => Ok(Subject {
            user: user(id, acts_for)?,
            ..Subject::default()
        }),
    }
}

/// The configured issuer `issuer`, when the transmitter may act on it; `access_denied`
/// otherwise, so that one identity provider cannot revoke another's users.
fn allowed(issuer: &str, acts_for: &[Arc<str>]) -> Result<Arc<str>, SetError> {
    acts_for
        .iter()
        .find(|own| ***own == *issuer)
        .cloned()
        .ok_or_else(|| {
            SetError::AccessDenied(format!(
                "the subject names issuer `{issuer}`, which this transmitter may not act on \
                 (ssf.transmitters[].issuers)"
            ))
        })
}

/// The `format` member (`subject_type` in drafts before RFC 9493).
fn format(id: &Map<String, Value>) -> Result<Option<&str>, SetError> {
    match id.get("format").or_else(|| id.get("subject_type")) {
        None => Ok(None),
        Some(Value::String(format)) => Ok(Some(format)),
        Some(_) => Err(SetError::invalid("subject format is not a string")),
    }
}

fn member<'a>(id: &'a Map<String, Value>, name: &str) -> Result<&'a str, SetError> {
    match id.get(name) {
        Some(Value::String(value)) if !value.is_empty() => Ok(value),
        _ => Err(SetError::invalid(format!(
            "subject identifier needs a non-empty string `{name}`"
        ))),
    }
}

/// A simple identifier naming a user.
fn user(id: &Map<String, Value>, acts_for: &[Arc<str>]) -> Result<Vec<Selector>, SetError> {
    match format(id)? {
        Some("iss_sub") => Ok(vec![Selector::Subject {
            issuer: allowed(member(id, "iss")?, acts_for)?,
            sub: member(id, "sub")?.into(),
        }]),
        Some("opaque") => {
            let sub = member(id, "id")?;
            Ok(acts_for
                .iter()
                .map(|issuer| Selector::Subject {
                    issuer: Arc::clone(issuer),
                    sub: sub.into(),
                })
                .collect())
        }
        Some("email") => Ok(vec![Selector::Email {
            email: member(id, "email")?.to_ascii_lowercase().into(),
        }]),
        Some(other) => Err(unsupported(other)),
        None => Err(SetError::invalid("subject identifier has no format")),
    }
}

/// A simple identifier naming a session: `opaque` (a `sid` at each issuer the transmitter acts
/// for) or `iss_sub` (the `sid` as `sub`, scoped to `iss`).
fn session(id: &Map<String, Value>, acts_for: &[Arc<str>]) -> Result<Vec<Selector>, SetError> {
    match format(id)? {
        Some("opaque") => {
            let sid = member(id, "id")?;
            Ok(acts_for
                .iter()
                .map(|issuer| Selector::Session {
                    issuer: Arc::clone(issuer),
                    sid: sid.into(),
                })
                .collect())
        }
        Some("iss_sub") => Ok(vec![Selector::Session {
            issuer: allowed(member(id, "iss")?, acts_for)?,
            sid: member(id, "sub")?.into(),
        }]),
        Some(other) => Err(unsupported(other)),
        None => Err(SetError::invalid("session identifier has no format")),
    }
}

/// RFC 9493 section 3.2.7: members `user`, `session`, `device`, `application`, `tenant`,
/// `org_unit`, `group`. sessiongate acts on the first two; the others narrow the subject to
/// facets tokens do not carry, so an identifier with neither is refused.
fn complex(id: &Map<String, Value>, acts_for: &[Arc<str>]) -> Result<Subject, SetError> {
    let facet = |name: &str| match id.get(name) {
        None => Ok(None),
        Some(Value::Object(member)) => Ok(Some(member)),
        Some(_) => Err(SetError::invalid(format!(
            "complex subject member `{name}` is not an object"
        ))),
    };
    let subject = Subject {
        user: match facet("user")? {
            Some(member) => user(member, acts_for)?,
            None => Vec::new(),
        },
        session: match facet("session")? {
            Some(member) => session(member, acts_for)?,
            None => Vec::new(),
        },
        token: Vec::new(),
    };
    if subject.user.is_empty() && subject.session.is_empty() {
        return Err(SetError::invalid(
            "complex subject names no user or session sessiongate can match",
        ));
    }
    Ok(subject)
}

fn unsupported(format: &str) -> SetError {
    SetError::invalid(format!("subject format `{format}` is not supported"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The issuers the transmitter of these tests acts for.
    const IDP: &str = "https://idp";
    const IDP_TENANT: &str = "https://idp/tenant-b";

    fn parse(value: Value) -> Result<Subject, SetError> {
        super::parse(&value, &[Arc::from(IDP), Arc::from(IDP_TENANT)])
    }

    fn user_subject(issuer: &str, sub: &str) -> Selector {
        Selector::Subject {
            issuer: issuer.into(),
            sub: sub.into(),
        }
    }

    #[test]
    fn iss_sub_names_the_user_of_that_issuer() {
        let got = parse(json!({"format": "iss_sub", "iss": IDP, "sub": "alice"}));
        assert_eq!(
            got.unwrap(),
            Subject {
                user: vec![user_subject(IDP, "alice")],
                ..Subject::default()
            }
        );
    }

    #[test]
    fn opaque_names_the_user_at_each_issuer_the_transmitter_acts_for() {
        let got = parse(json!({"format": "opaque", "id": "alice"})).unwrap();
        assert_eq!(
            got.user,
            vec![
                user_subject(IDP, "alice"),
                user_subject(IDP_TENANT, "alice")
            ]
        );
    }

    #[test]
    fn email_names_the_address_lowercased() {
        let got = parse(json!({"format": "email", "email": "Alice@Example.COM"})).unwrap();
        assert_eq!(
            got.user,
            vec![Selector::Email {
                email: "alice@example.com".into()
            }]
        );
    }

    #[test]
    fn jwt_id_names_one_token() {
        let got = parse(json!({"format": "jwt_id", "iss": IDP, "jti": "t1"})).unwrap();
        assert_eq!(
            got,
            Subject {
                token: vec![Selector::TokenId {
                    issuer: IDP.into(),
                    jti: "t1".into()
                }],
                ..Subject::default()
            }
        );
    }

    #[test]
    fn complex_names_user_and_session() {
        let got = parse(json!({
            "format": "complex",
            "user": {"format": "iss_sub", "iss": IDP, "sub": "alice"},
            "session": {"format": "opaque", "id": "s-42"},
            "device": {"format": "opaque", "id": "laptop"}
        }))
        .unwrap();
        assert_eq!(got.user, vec![user_subject(IDP, "alice")]);
        assert_eq!(
            got.session,
            [IDP, IDP_TENANT].map(|issuer| Selector::Session {
                issuer: issuer.into(),
                sid: "s-42".into()
            })
        );
        let session_only = parse(json!({
            "format": "complex",
            "session": {"format": "iss_sub", "iss": IDP_TENANT, "sub": "s-7"}
        }))
        .unwrap();
        assert_eq!(
            session_only.session,
            vec![Selector::Session {
                issuer: IDP_TENANT.into(),
                sid: "s-7".into()
            }]
        );
        assert_eq!(session_only.user, vec![]);
    }

    #[test]
    fn legacy_subjects_without_format_or_with_subject_type_are_understood() {
        let got = parse(json!({"user": {"subject_type": "email", "email": "a@b.c"}})).unwrap();
        assert_eq!(
            got.user,
            vec![Selector::Email {
                email: "a@b.c".into()
            }]
        );
        let got = parse(json!({"subject_type": "iss_sub", "iss": IDP, "sub": "bob"}));
        assert_eq!(got.unwrap().user, vec![user_subject(IDP, "bob")]);
    }

    #[test]
    fn a_subject_of_an_issuer_the_transmitter_does_not_act_for_is_access_denied() {
        let other = "https://other-idp";
        for id in [
            json!({"format": "iss_sub", "iss": other, "sub": "alice"}),
            json!({"format": "jwt_id", "iss": other, "jti": "t1"}),
            json!({"format": "complex", "user": {"format": "iss_sub", "iss": other, "sub": "a"}}),
            json!({
                "format": "complex",
                "user": {"format": "iss_sub", "iss": IDP, "sub": "alice"},
                "session": {"format": "iss_sub", "iss": other, "sub": "s-1"}
            }),
            // A prefix of an allowed issuer is another issuer.
            json!({"format": "iss_sub", "iss": "https://idp/tenant", "sub": "alice"}),
        ] {
            let err = parse(id.clone()).unwrap_err();
            assert_eq!(err.code(), "access_denied", "{id}");
            assert!(err.to_string().contains("may not act on"), "{id}: {err}");
        }
    }

    #[test]
    fn unsupported_or_incomplete_identifiers_are_invalid_requests() {
        for id in [
            json!("alice"),
            json!({}),
            json!({"format": "phone_number", "phone_number": "+12065550100"}),
            json!({"format": "account", "uri": "acct:alice@example.com"}),
            json!({"format": "did", "url": "did:example:123"}),
            json!({"format": "uri", "uri": "https://example.com/alice"}),
            json!({"format": "aliases", "identifiers": []}),
            json!({"format": 7}),
            json!({"format": "iss_sub", "iss": "https://idp"}),
            json!({"format": "iss_sub", "iss": "https://idp", "sub": ""}),
            json!({"format": "opaque"}),
            json!({"format": "email", "email": 3}),
            json!({"format": "jwt_id", "jti": "t1"}),
            json!({"format": "complex", "device": {"format": "opaque", "id": "laptop"}}),
            json!({"format": "complex", "user": "alice"}),
            json!({"format": "complex", "user": {"format": "jwt_id", "iss": "i", "jti": "j"}}),
            json!({"format": "complex", "session": {"format": "email", "email": "a@b.c"}}),
        ] {
            let err = parse(id.clone()).unwrap_err();
            assert_eq!(err.code(), "invalid_request", "{id}");
        }
    }
}
