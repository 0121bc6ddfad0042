//! Reading the access token out of the `Authorization` header (RFC 6750 section 2.1, and the
//! `DPoP` scheme of RFC 9449 section 7.1).
//!
//! This runs before any cryptography, on attacker-controlled input, so it is strict and bounded:
//! exactly one `Bearer` or `DPoP` credential (scheme case-insensitive) of token68 characters,
//! at most [`MAX_AUTHORIZATION_LEN`] bytes.

use crate::request::AuthorizationValues;

/// Longest `Authorization` value accepted (8 KiB). Real access tokens are 1-2 KiB; the bound keeps
/// hashing, decoding and JSON parsing of hostile input cheap.
pub const MAX_AUTHORIZATION_LEN: usize = 8192;

/// Why the `Authorization` header is not one well-formed bearer credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The value is longer than [`MAX_AUTHORIZATION_LEN`].
    #[error("authorization header exceeds 8192 bytes")]
    TooLong,
    /// The request carries more than one credential (repeated header or a comma-joined list).
    #[error("more than one credential in the authorization header")]
    Multiple,
    /// The scheme is neither `Bearer` nor `DPoP` (or, for [`bearer_token`], not `Bearer`).
    #[error("authorization scheme is not Bearer or DPoP")]
    NotBearer,
    /// The value after `Bearer` is empty or has characters outside the token68 syntax.
    #[error("bearer credential is not a token68 value")]
    Malformed,
    /// The value's bytes are not UTF-8 (no credential ever is).
    #[error("authorization header is not UTF-8")]
    NotUtf8,
}

/// The `Authorization` scheme an access token was presented with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `Bearer` (RFC 6750): whoever holds the token may use it.
    Bearer,
    /// `DPoP` (RFC 9449): the request carries a proof of possession of the token's key.
    Dpop,
}

/// Extracts the bearer token from the request's `Authorization` values: the access token of a
/// `Bearer` credential; a `DPoP` one is [`CredentialError::NotBearer`] (see [`access_token`]).
pub fn bearer_token(values: AuthorizationValues<'_>) -> Result<Option<&str>, CredentialError> {
    match access_token(values)? {
        None => Ok(None),
        Some((Scheme::Bearer, token)) => Ok(Some(token)),
        Some((Scheme::Dpop, _)) => Err(CredentialError::NotBearer),
    }
}

/// Extracts the access token and its scheme (`Bearer` or `DPoP`) from the request's
/// `Authorization` values.
///
/// Envoy joins a repeated header's values with commas (or, with raw header maps, sends them
/// separately), so both forms count as several credentials. No header means no credential at
/// all (`Ok(None)`), which the decision turns into `missing_token`.
pub fn access_token(
    values: AuthorizationValues<'_>,
) -> Result<Option<(Scheme, &str)>, CredentialError> {
    let value = match values {
        AuthorizationValues::Absent => return Ok(None),
        AuthorizationValues::One(value) => value,
        AuthorizationValues::Several => return Err(CredentialError::Multiple),
        AuthorizationValues::NotUtf8 => return Err(CredentialError::NotUtf8),
    };
    if value.len() > MAX_AUTHORIZATION_LEN {
        return Err(CredentialError::TooLong);
    }
    let (scheme, rest) = value.split_once(' ').ok_or(CredentialError::Malformed)?;
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Err(if value.contains(',') {
            CredentialError::Multiple
        } else {
            CredentialError::NotBearer
        });
    };
    let token = rest.trim_start_matches(' ');
    if is_token68(token) {
        Ok(Some((scheme, token)))
    } else if token.contains(',') {
        // A token68 value never holds a comma, so this only names the kind of failure: a
        // comma-joined list is several credentials, not one malformed one.
        Err(CredentialError::Multiple)
    } else {
        Err(CredentialError::Malformed)
    }
}

/// `token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="` (RFC 7235).
///
/// Runs on every request over the whole token (600+ bytes for a typical JWT), so the body is
/// checked in fixed-size chunks without a branch per byte, which the compiler turns into SIMD
/// compares; a chunk with a bad byte ends the scan.
fn is_token68(token: &str) -> bool {
    const CHUNK: usize = 32;
    let body = token.trim_end_matches('=').as_bytes();
    !body.is_empty()
        && body
            .chunks(CHUNK)
            .all(|chunk| chunk.iter().fold(true, |ok, &b| ok & is_token68_byte(b)))
}

/// One byte of a token68 body, branch-free (see [`is_token68`]).
fn is_token68_byte(b: u8) -> bool {
    // `b | 0x20` folds ASCII upper case onto lower case and maps no other byte into a..=z.
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let digit = b.wrapping_sub(b'0') < 10;
    letter
        | digit
        | (b == b'-')
        | (b == b'.')
        | (b == b'_')
        | (b == b'~')
        | (b == b'+')
        | (b == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(value: &str) -> Result<Option<&str>, CredentialError> {
        bearer_token(AuthorizationValues::One(value))
    }

    #[test]
    fn no_header_is_no_credential() {
        assert_eq!(bearer_token(AuthorizationValues::Absent), Ok(None));
    }

    #[test]
    fn one_bearer_credential_is_read() {
        assert_eq!(one("Bearer abc.def.ghi"), Ok(Some("abc.def.ghi")));
        assert_eq!(one("bearer abc"), Ok(Some("abc")));
        assert_eq!(one("BEARER  abc=="), Ok(Some("abc==")));
    }

    #[test]
    fn other_schemes_are_bad_requests() {
        assert_eq!(one("Basic dXNlcjpwYXNz"), Err(CredentialError::NotBearer));
        assert_eq!(one("DPoP abc"), Err(CredentialError::NotBearer));
        assert_eq!(one("Bearer"), Err(CredentialError::Malformed));
        assert_eq!(one(""), Err(CredentialError::Malformed));
    }

    #[test]
    fn the_dpop_scheme_is_read_next_to_bearer_whatever_its_case() {
        for value in ["DPoP abc.def.ghi", "dpop abc.def.ghi", "DPOP  abc.def.ghi"] {
            assert_eq!(
                access_token(AuthorizationValues::One(value)),
                Ok(Some((Scheme::Dpop, "abc.def.ghi"))),
                "{value}"
            );
        }
        assert_eq!(
            access_token(AuthorizationValues::One("Bearer abc")),
            Ok(Some((Scheme::Bearer, "abc")))
        );
        assert_eq!(
            access_token(AuthorizationValues::One("DPoP a,DPoP b")),
            Err(CredentialError::Multiple)
        );
        assert_eq!(
            access_token(AuthorizationValues::One("DPoP a b")),
            Err(CredentialError::Malformed)
        );
    }

    #[test]
    fn two_credentials_are_bad_requests() {
        assert_eq!(
            bearer_token(AuthorizationValues::Several),
            Err(CredentialError::Multiple)
        );
        assert_eq!(one("Bearer a,Bearer b"), Err(CredentialError::Multiple));
        assert_eq!(one("Bearer a, Bearer b"), Err(CredentialError::Multiple));
        assert_eq!(one("Basic x, Bearer b"), Err(CredentialError::Multiple));
    }

    #[test]
    fn bad_token_syntax_is_a_bad_request() {
        for value in [
            "Bearer a b",
            "Bearer a\"b",
            "Bearer ==",
            "Bearer a=b",
            "Bearer é",
        ] {
            assert_eq!(one(value), Err(CredentialError::Malformed), "{value}");
        }
    }

    #[test]
    fn token68_bytes_are_exactly_the_rfc_7235_set() {
        for b in 0..=u8::MAX {
            let expected =
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
            assert_eq!(is_token68_byte(b), expected, "byte {b:#04x}");
        }
    }

    #[test]
    fn a_bad_byte_anywhere_in_a_long_token_is_malformed() {
        let token = "a".repeat(100);
        for at in [0, 31, 32, 33, 63, 64, 99] {
            let mut bad = token.clone().into_bytes();
            bad[at] = b'"';
            let bad = String::from_utf8(bad).unwrap();
            assert_eq!(
                one(&format!("Bearer {bad}")),
                Err(CredentialError::Malformed),
                "{at}"
            );
        }
        assert_eq!(
            one(&format!("Bearer {token}==")),
            Ok(Some(format!("{token}==").as_str()))
        );
    }

    #[test]
    fn values_over_8_kib_are_refused_before_parsing() {
        let exactly = format!("Bearer {}", "a".repeat(MAX_AUTHORIZATION_LEN - 7));
        assert_eq!(exactly.len(), MAX_AUTHORIZATION_LEN);
        assert!(one(&exactly).unwrap().is_some());
        let over = format!("{exactly}a");
        assert_eq!(one(&over), Err(CredentialError::TooLong));
    }
}
