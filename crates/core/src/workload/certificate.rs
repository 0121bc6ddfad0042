//! The RFC 8705 certificate thumbprint (`x5t#S256`) of the peer's leaf certificate.
//!
//! Envoy sends the leaf as URL-encoded PEM in `source.certificate`. Decoding it and hashing the
//! DER costs a few microseconds, and a mesh peer presents the same certificate on thousands of
//! requests, so the check use case caches thumbprints per distinct certificate text.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

/// SHA-256 over a certificate's DER encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Thumbprint(pub [u8; 32]);

impl Thumbprint {
    /// Thumbprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Thumbprint {
        Thumbprint(Sha256::digest(der).into())
    }

    /// Parses the 64 hex digits (either case, no separators) Envoy reports as a connection's
    /// peer-certificate digest.
    pub fn from_hex(text: &str) -> Option<Thumbprint> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let digit = |b: u8| match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Some(Thumbprint(out))
    }

    /// Parses the base64url form used in a `cnf.x5t#S256` claim.
    pub fn from_base64url(text: &str) -> Option<Thumbprint> {
        let bytes = URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()?;
        Some(Thumbprint(bytes.try_into().ok()?))
    }

    /// Thumbprint of the leaf in Envoy's URL-encoded PEM.
    pub fn of_url_encoded_pem(encoded: &str) -> Result<Thumbprint, ThumbprintError> {
        let pem = percent_encoding::percent_decode_str(encoded)
            .decode_utf8()
            .map_err(|_| ThumbprintError::NotPem)?;
        Ok(Thumbprint::of_der(&first_certificate_der(&pem)?))
    }

    /// Thumbprint of the peer certificate Envoy sent (`source.certificate`), or `None` when
    /// it is empty, longer than [`MAX_CERTIFICATE_TEXT`] or unreadable: such a caller has no
    /// certificate as far as `cnf` binding is concerned, which fails closed.
    pub fn of_peer_certificate(encoded: &str) -> Option<Thumbprint> {
        if encoded.is_empty() || encoded.len() > MAX_CERTIFICATE_TEXT {
            return None;
        }
        Thumbprint::of_url_encoded_pem(encoded).ok()
    }
}

impl fmt::Display for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Thumbprint({self})")
    }
}

/// Why the peer certificate could not be thumbprinted; the request then has no certificate as
/// far as `cnf` binding is concerned, which fails closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ThumbprintError {
    /// No `-----BEGIN CERTIFICATE-----` block could be read.
    #[error("peer certificate is not PEM")]
    NotPem,
    /// The PEM body is not valid base64.
    #[error("peer certificate PEM body is not base64")]
    BadBase64,
}

fn first_certificate_der(pem: &str) -> Result<Vec<u8>, ThumbprintError> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = pem.find(BEGIN).ok_or(ThumbprintError::NotPem)? + BEGIN.len();
    let len = pem[start..].find(END).ok_or(ThumbprintError::NotPem)?;
    let body: String = pem[start..start + len]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD
        .decode(body)
        .map_err(|_| ThumbprintError::BadBase64)
}

/// Longest certificate text accepted. Envoy's leaf PEMs are 1-3 KiB; anything far beyond is not
/// a single leaf and is not worth hashing.
pub const MAX_CERTIFICATE_TEXT: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    /// The certificate from a CheckRequest captured from Envoy 1.40 (shared/fixtures).
    const ENVOY_CERT: &str = "-----BEGIN%20CERTIFICATE-----%0AMIICLDCCAdKgAwIBAgIUcYoHoYvlRCj2CU3JjdOTP1so4ncwCgYIKoZIzj0EAwIw%0AUDEhMB8GA1UECgwYYXV0aHotc2lkZWNhciBhY2NlcHRhbmNlMRMwEQYDVQQLDAph%0AY2NlcHRhbmNlMRYwFAYDVQQDDA1hY2NlcHRhbmNlLWNhMB4XDTI2MTEyMzA1MzUx%0ANVoXDTI5MDIyNTA1MzUxNVowSzEhMB8GA1UECgwYYXV0aHotc2lkZWNhciBhY2Nl%0AcHRhbmNlMRMwEQYDVQQLDAphY2NlcHRhbmNlMREwDwYDVQQDDAhmcm9udGVuZDBZ%0AMBMGByqGSM49AgEGCCqGSM49AwEHA0IABGFM7NA%2FcsdE1Hxb1dVW39NuB%2Bv%2BBxea%0AMzVj2vhHRXRTrSwBcKqA7D%2Bb938KnS%2F%2FfCwOoDQhHojVZcVMU0GhKBejgY4wgYsw%0ADAYDVR0TAQH%2FBAIwADAOBgNVHQ8BAf8EBAMCA4gwEwYDVR0lBAwwCgYIKwYBBQUH%0AAwIwHwYDVR0jBBgwFoAUXMwr%2FT9dy3NfS0YvjjBS%2BGAUBnQwNQYDVR0RBC4wLIYq%0Ac3BpZmZlOi8vY2x1c3Rlci5sb2NhbC9ucy9zaG9wL3NhL2Zyb250ZW5kMAoGCCqG%0ASM49BAMCA0gAMEUCIQC%2BIvNRwyAkRZfwauMX%2FGVzVGfFkscZpIBCmLa5v9TxlgIg%0ACtI%2FXDWKzK7y0tmtZHhDYvvQYYEaVkiO8Z6xZEnC%2Fnc%3D%0A-----END%20CERTIFICATE-----%0A";

    #[test]
    fn thumbprint_is_sha256_of_the_der() {
        let pem = percent_encoding::percent_decode_str(ENVOY_CERT)
            .decode_utf8()
            .unwrap();
        let der = first_certificate_der(&pem).unwrap();
        assert_eq!(der[0], 0x30, "DER starts with a SEQUENCE");
        let expected = Thumbprint(Sha256::digest(&der).into());
        assert_eq!(
            Thumbprint::of_url_encoded_pem(ENVOY_CERT).unwrap(),
            expected
        );
    }

    #[test]
    fn envoys_hex_digest_is_the_same_thumbprint_as_the_pem() {
        let thumbprint = Thumbprint::of_url_encoded_pem(ENVOY_CERT).unwrap();
        let hex: String = thumbprint.0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(Thumbprint::from_hex(&hex), Some(thumbprint));
        assert_eq!(Thumbprint::from_hex(&hex.to_uppercase()), Some(thumbprint));
        assert_eq!(Thumbprint::from_hex(&hex[1..]), None);
        assert_eq!(Thumbprint::from_hex(&format!("{}zz", &hex[2..])), None);
    }

    #[test]
    fn cnf_form_round_trips() {
        let thumbprint = Thumbprint::of_url_encoded_pem(ENVOY_CERT).unwrap();
        let text = thumbprint.to_string();
        assert_eq!(text.len(), 43);
        assert_eq!(Thumbprint::from_base64url(&text), Some(thumbprint));
        assert_eq!(Thumbprint::from_base64url("c2hvcnQ"), None);
    }

    #[test]
    fn unreadable_certificates_have_no_thumbprint() {
        let of = Thumbprint::of_peer_certificate;
        assert_eq!(of(""), None);
        assert_eq!(of("not-a-pem"), None);
        let bad_body = "-----BEGIN%20CERTIFICATE-----%0A!!!%0A-----END%20CERTIFICATE-----";
        assert_eq!(of(bad_body), None);
        assert_eq!(of(&"A".repeat(MAX_CERTIFICATE_TEXT + 1)), None);
        assert_eq!(
            of(ENVOY_CERT),
            Thumbprint::of_url_encoded_pem(ENVOY_CERT).ok()
        );
        assert!(of(ENVOY_CERT).is_some());
    }
}
