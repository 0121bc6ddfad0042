//! The asymmetric JWS algorithms sessiongate verifies, and nothing else.
//!
//! `none` and the HMAC family are absent on purpose: a resource server that holds only public
//! keys must never treat a public key as an HMAC secret (algorithm confusion), and an unsigned
//! token is never a credential.

use std::fmt;

use aws_lc_rs::signature as crypto;

/// A signature algorithm an issuer may be allowed to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// Ed25519.
    EdDsa,
}

/// The kind of public key an algorithm needs; a key is usable only for its own family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyFamily {
    /// RSA, for RS* and PS*.
    Rsa,
    /// EC on P-256, for ES256.
    P256,
    /// EC on P-384, for ES384.
    P384,
    /// OKP on Ed25519, for EdDSA.
    Ed25519,
}

impl SigningAlgorithm {
    /// Every supported algorithm, for error messages and defaults.
    pub const ALL: [SigningAlgorithm; 9] = [
        SigningAlgorithm::Rs256,
        SigningAlgorithm::Rs384,
        SigningAlgorithm::Rs512,
        SigningAlgorithm::Ps256,
        SigningAlgorithm::Ps384,
        SigningAlgorithm::Ps512,
        SigningAlgorithm::Es256,
        SigningAlgorithm::Es384,
        SigningAlgorithm::EdDsa,
    ];

    /// Parses a JOSE `alg` name; `None` for `none`, HMAC and anything unknown.
    pub fn from_jose(name: &str) -> Option<SigningAlgorithm> {
        SigningAlgorithm::ALL
            .into_iter()
            .find(|alg| alg.jose_name() == name)
    }

    /// The JOSE `alg` name.
    pub fn jose_name(self) -> &'static str {
        match self {
            SigningAlgorithm::Rs256 => "RS256",
            SigningAlgorithm::Rs384 => "RS384",
            SigningAlgorithm::Rs512 => "RS512",
            SigningAlgorithm::Ps256 => "PS256",
            SigningAlgorithm::Ps384 => "PS384",
            SigningAlgorithm::Ps512 => "PS512",
            SigningAlgorithm::Es256 => "ES256",
            SigningAlgorithm::Es384 => "ES384",
            SigningAlgorithm::EdDsa => "EdDSA",
        }
    }

    /// The key family this algorithm verifies with.
    pub fn key_family(self) -> KeyFamily {
        match self {
            SigningAlgorithm::Rs256
            | SigningAlgorithm::Rs384
            | SigningAlgorithm::Rs512
            | SigningAlgorithm::Ps256
            | SigningAlgorithm::Ps384
            | SigningAlgorithm::Ps512 => KeyFamily::Rsa,
            SigningAlgorithm::Es256 => KeyFamily::P256,
            SigningAlgorithm::Es384 => KeyFamily::P384,
            SigningAlgorithm::EdDsa => KeyFamily::Ed25519,
        }
    }

    /// How the crypto library verifies this algorithm (RSA takes its key as components).
    pub(crate) fn verification(self) -> Verification {
        match self {
            SigningAlgorithm::Rs256 => Verification::Rsa(&crypto::RSA_PKCS1_2048_8192_SHA256),
            SigningAlgorithm::Rs384 => Verification::Rsa(&crypto::RSA_PKCS1_2048_8192_SHA384),
            SigningAlgorithm::Rs512 => Verification::Rsa(&crypto::RSA_PKCS1_2048_8192_SHA512),
            SigningAlgorithm::Ps256 => Verification::Rsa(&crypto::RSA_PSS_2048_8192_SHA256),
            SigningAlgorithm::Ps384 => Verification::Rsa(&crypto::RSA_PSS_2048_8192_SHA384),
            SigningAlgorithm::Ps512 => Verification::Rsa(&crypto::RSA_PSS_2048_8192_SHA512),
            SigningAlgorithm::Es256 => Verification::Other(&crypto::ECDSA_P256_SHA256_FIXED),
            SigningAlgorithm::Es384 => Verification::Other(&crypto::ECDSA_P384_SHA384_FIXED),
            SigningAlgorithm::EdDsa => Verification::Other(&crypto::ED25519),
        }
    }
}

/// How the crypto library (aws-lc-rs) verifies one [`SigningAlgorithm`]: RSA keys are built
/// from their modulus and exponent with these parameters, the others parsed from their bytes.
/// RSA keys below 2048 bits are refused by the parameters as well as at JWKS load.
pub(crate) enum Verification {
    Rsa(&'static crypto::RsaParameters),
    Other(&'static dyn crypto::VerificationAlgorithm),
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.jose_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_and_unsigned_algorithms_do_not_exist_here() {
        for name in [
            "none", "None", "HS256", "HS384", "HS512", "rs256", "ES512", "",
        ] {
            assert_eq!(SigningAlgorithm::from_jose(name), None, "{name}");
        }
    }

    #[test]
    fn names_round_trip() {
        for alg in SigningAlgorithm::ALL {
            assert_eq!(SigningAlgorithm::from_jose(alg.jose_name()), Some(alg));
        }
    }
}
