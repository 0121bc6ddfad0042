//! What one trusted issuer's tokens must look like.

use std::sync::Arc;

use super::algorithm::SigningAlgorithm;

/// Which JOSE `typ` header values an issuer's access tokens may carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypRule {
    /// `at+jwt` (RFC 9068), `JWT`, or no `typ`: what identity providers issue in practice.
    /// Other types (`dpop+jwt`, `secevent+jwt`, `logout+jwt`, ID tokens typed as such) are
    /// refused, so a token minted for another purpose is never accepted as an access token.
    AccessTokenOrJwt,
    /// Exactly this type (compared case-insensitively, `application/` prefix optional).
    Exactly(Box<str>),
}

impl TypRule {
    /// Whether a token whose header has `typ` (if any) is acceptable.
    pub fn accepts(&self, typ: Option<&str>) -> bool {
        let typ = typ.map(|t| {
            t.get(..12)
                .filter(|prefix| prefix.eq_ignore_ascii_case("application/"))
                .map_or(t, |_| &t[12..])
        });
        match self {
            TypRule::AccessTokenOrJwt => match typ {
                None => true,
                Some(t) => t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("jwt"),
            },
            TypRule::Exactly(required) => typ.is_some_and(|t| t.eq_ignore_ascii_case(required)),
        }
    }
}

/// The verification rules of one issuer, compiled from config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerRules {
    /// The exact `iss` value.
    pub issuer: Arc<str>,
    /// `aud` must contain at least one of these.
    pub audiences: Box<[Box<str>]>,
    /// The allow-list of signature algorithms.
    pub algorithms: Box<[SigningAlgorithm]>,
    /// Accepted `typ` header values.
    pub typ: TypRule,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_typ_rule_takes_access_tokens_and_plain_jwts() {
        let rule = TypRule::AccessTokenOrJwt;
        for typ in [
            None,
            Some("at+jwt"),
            Some("JWT"),
            Some("application/at+jwt"),
            Some("AT+JWT"),
        ] {
            assert!(rule.accepts(typ), "{typ:?}");
        }
        for typ in ["dpop+jwt", "secevent+jwt", "logout+jwt", "", "application/"] {
            assert!(!rule.accepts(Some(typ)), "{typ:?}");
        }
    }

    #[test]
    fn required_typ_must_be_present_and_equal() {
        let rule = TypRule::Exactly("at+jwt".into());
        assert!(rule.accepts(Some("at+jwt")));
        assert!(rule.accepts(Some("application/AT+JWT")));
        assert!(!rule.accepts(Some("JWT")));
        assert!(!rule.accepts(None));
    }
}
