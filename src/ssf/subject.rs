//! Subject identifiers (RFC 9493) → what sessiongate can match a token by.
//!
//! A transmitter names the subject of an event in one of several formats; sessiongate can act on
//! those that correspond to something a token carries (`iss` + `sub`, `email`, `sid`, `jti`).
//! A format it cannot match is refused rather than ignored: acknowledging an event that was not
//! acted on would tell the transmitter the user's sessions were cut when they were not.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::SetError;
use crate::revocation::Selector;

/// What one subject identifier names, as selectors; a complex identifier may name several
/// facets, and each event picks the one it is about (see [`super::events`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    /// The user: [`Selector::Subject`] or [`Selector::Email`].
    pub user: Option<Selector>,
    /// One OIDC session: [`Selector::Session`].
    pub session: Option<Selector>,
    /// One token: [`Selector::TokenId`].
    pub token: Option<Selector>,
}

/// Parses a subject identifier. `transmitter` is the issuer `opaque` identifiers belong to: an
/// opaque `sub` or `sid` means nothing outside the issuer that minted it, and the transmitter
/// is the identity provider that did.
pub fn parse(identifier: &Value, transmitter: &Arc<str>) -> Result<Subject, SetError> {
    let Value::Object(id) = identifier else {
        return Err(SetError::invalid("subject identifier is not a JSON object"));
    };
    match format(id)? {
        Some("complex") => complex(id, transmitter),
        // Early CAEP drafts sent complex subjects without a format.
        None if ["user", "session"].iter().any(|m| id.contains_key(*m)) => complex(id, transmitter),
        Some("jwt_id") => Ok(Subject {
            token: Some(Selector::TokenId {
                issuer: member(id, "iss")?.into(),
                jti: member(id, "jti")?.into(),
            }),
            ..Subject::default()
        }),
        _ => Ok(Subject {
            user: Some(user(id, transmitter)?),
            ..Subject::default()
        }),
    }
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
fn user(id: &Map<String, Value>, transmitter: &Arc<str>) -> Result<Selector, SetError> {
    match format(id)? {
        Some("iss_sub") => Ok(Selector::Subject {
            issuer: member(id, "iss")?.into(),
            sub: member(id, "sub")?.into(),
        }),
        Some("opaque") => Ok(Selector::Subject {
            issuer: Arc::clone(transmitter),
            sub: member(id, "id")?.into(),
        }),
        Some("email") => Ok(Selector::Email {
            email: member(id, "email")?.to_ascii_lowercase().into(),
        }),
        Some(other) => Err(unsupported(other)),
        None => Err(SetError::invalid("subject identifier has no format")),
    }
}

/// A simple identifier naming a session: `opaque` (a `sid` of the transmitter) or `iss_sub`
/// (the `sid` as `sub`, scoped to `iss`).
fn session(id: &Map<String, Value>, transmitter: &Arc<str>) -> Result<Selector, SetError> {
    match format(id)? {
        Some("opaque") => Ok(Selector::Session {
            issuer: Arc::clone(transmitter),
            sid: member(id, "id")?.into(),
        }),
        Some("iss_sub") => Ok(Selector::Session {
            issuer: member(id, "iss")?.into(),
            sid: member(id, "sub")?.into(),
        }),
        Some(other) => Err(unsupported(other)),
        None => Err(SetError::invalid("session identifier has no format")),
    }
}

/// RFC 9493 section 3.2.7: members `user`, `session`, `device`, `application`, `tenant`,
/// `org_unit`, `group`. sessiongate acts on the first two; the others narrow the subject to
/// facets tokens do not carry, so an identifier with neither is refused.
fn complex(id: &Map<String, Value>, transmitter: &Arc<str>) -> Result<Subject, SetError> {
    let facet = |name: &str| match id.get(name) {
        None => Ok(None),
        Some(Value::Object(member)) => Ok(Some(member)),
        Some(_) => Err(SetError::invalid(format!(
            "complex subject member `{name}` is not an object"
        ))),
    };
    let subject = Subject {
        user: facet("user")?.map(|u| user(u, transmitter)).transpose()?,
        session: facet("session")?
            .map(|s| session(s, transmitter))
            .transpose()?,
        token: None,
    };
    if subject.user.is_none() && subject.session.is_none() {
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

    const TRANSMITTER: &str = "https://transmitter.example.test";

    fn parse(value: Value) -> Result<Subject, SetError> {
        super::parse(&value, &Arc::from(TRANSMITTER))
    }

    fn user_subject(issuer: &str, sub: &str) -> Selector {
        Selector::Subject {
            issuer: issuer.into(),
            sub: sub.into(),
        }
    }

    #[test]
    fn iss_sub_names_the_user_of_that_issuer() {
        let got = parse(json!({"format": "iss_sub", "iss": "https://idp", "sub": "alice"}));
        assert_eq!(
            got.unwrap(),
            Subject {
                user: Some(user_subject("https://idp", "alice")),
                ..Subject::default()
            }
        );
    }

    #[test]
    fn opaque_names_a_user_of_the_transmitter() {
        let got = parse(json!({"format": "opaque", "id": "alice"})).unwrap();
        assert_eq!(got.user, Some(user_subject(TRANSMITTER, "alice")));
    }

    #[test]
    fn email_names_the_address_lowercased() {
        let got = parse(json!({"format": "email", "email": "Alice@Example.COM"})).unwrap();
        assert_eq!(
            got.user,
            Some(Selector::Email {
                email: "alice@example.com".into()
            })
        );
    }

    #[test]
    fn jwt_id_names_one_token() {
        let got = parse(json!({"format": "jwt_id", "iss": "https://idp", "jti": "t1"})).unwrap();
        assert_eq!(
            got,
            Subject {
                token: Some(Selector::TokenId {
                    issuer: "https://idp".into(),
                    jti: "t1".into()
                }),
                ..Subject::default()
            }
        );
    }

    #[test]
    fn complex_names_user_and_session() {
        let got = parse(json!({
            "format": "complex",
            "user": {"format": "iss_sub", "iss": "https://idp", "sub": "alice"},
            "session": {"format": "opaque", "id": "s-42"},
            "device": {"format": "opaque", "id": "laptop"}
        }))
        .unwrap();
        assert_eq!(got.user, Some(user_subject("https://idp", "alice")));
        assert_eq!(
            got.session,
            Some(Selector::Session {
                issuer: TRANSMITTER.into(),
                sid: "s-42".into()
            })
        );
        let session_only = parse(json!({
            "format": "complex",
            "session": {"format": "iss_sub", "iss": "https://idp", "sub": "s-7"}
        }))
        .unwrap();
        assert_eq!(
            session_only.session,
            Some(Selector::Session {
                issuer: "https://idp".into(),
                sid: "s-7".into()
            })
        );
        assert_eq!(session_only.user, None);
    }

    #[test]
    fn legacy_subjects_without_format_or_with_subject_type_are_understood() {
        let got = parse(json!({"user": {"subject_type": "email", "email": "a@b.c"}})).unwrap();
        assert_eq!(
            got.user,
            Some(Selector::Email {
                email: "a@b.c".into()
            })
        );
        let got = parse(json!({"subject_type": "iss_sub", "iss": "https://idp", "sub": "bob"}));
        assert_eq!(got.unwrap().user, Some(user_subject("https://idp", "bob")));
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
