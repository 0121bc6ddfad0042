//! Verifying a DPoP proof (RFC 9449 section 4.3): the JWS in a request's `DPoP` header.
//!
//! A proof changes on every request, so unlike an access token it is verified every time; this
//! module checks what the proof says about itself (one JWS, `typ: dpop+jwt`, an allowed
//! asymmetric `alg`, a *public* `jwk` that fits it, a valid signature, well-typed claims) and
//! hands the claims on as a [`DpopProof`]. Whether those claims fit the request and the token
//! (`htm`, `htu`, `iat`, `ath`, `cnf.jkt`, nonce) is judged by the core's decision rules, and
//! whether the `jti` was seen before by the check use case's replay store.
//!
//! The proof's key is parsed by the same JWK code as issuers' keys (curves, RSA sizes), for the
//! proof's one algorithm only.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use sessiongate_core::dpop::{DpopProof, MAX_PROOF_LEN};
use sessiongate_core::request::AuthorizationValues;
use sessiongate_core::time::UnixTime;
use sessiongate_core::workload::Thumbprint;

use crate::algorithm::SigningAlgorithm;
use crate::claims::JoseHeader;
use crate::jws::CompactJws;
use crate::keys::parse_jwk_for;

/// Longest `jti` accepted: RFC 9449 asks for 96 bits of randomness; 256 bytes leaves room for
/// any encoding without letting a caller make the replay store hash kilobytes.
const MAX_JTI_LEN: usize = 256;

/// JWK members that only a private (or symmetric) key has: a proof carrying one is refused,
/// since the client has just published its secret (RFC 9449 section 4.2, `jwk`).
const PRIVATE_KEY_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];

/// Why a proof is refused. The text is the `error_description`: fixed, never proof content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProofError(pub &'static str);

/// Verifies DPoP proofs with the algorithms `dpop.algorithms` allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProofVerifier {
    algorithms: Box<[SigningAlgorithm]>,
}

impl ProofVerifier {
    /// A verifier accepting proofs signed with `algorithms` (all asymmetric by construction:
    /// [`SigningAlgorithm`] has no `none` or HMAC).
    pub fn new(algorithms: impl Into<Box<[SigningAlgorithm]>>) -> ProofVerifier {
        ProofVerifier {
            algorithms: algorithms.into(),
        }
    }

    /// The accepted algorithms.
    pub fn algorithms(&self) -> &[SigningAlgorithm] {
        &self.algorithms
    }

    /// The one proof of a request's `DPoP` header values, verified.
    pub fn verify_header(&self, values: AuthorizationValues<'_>) -> Result<DpopProof, ProofError> {
        match values {
            AuthorizationValues::One(proof) => self.verify(proof),
            AuthorizationValues::Absent => Err(ProofError("a DPoP proof is required")),
            AuthorizationValues::Several => Err(ProofError("exactly one DPoP proof is allowed")),
            AuthorizationValues::NotUtf8 => Err(ProofError("DPoP proof is not a JWS")),
        }
    }

    /// Checks `proof`'s structure, type, algorithm, key and signature, and reads its claims.
    pub fn verify(&self, proof: &str) -> Result<DpopProof, ProofError> {
        if proof.len() > MAX_PROOF_LEN {
            return Err(ProofError("DPoP proof exceeds 8192 bytes"));
        }
        if proof.contains(',') {
            // Envoy joins a repeated header with commas; a JWS never holds one.
            return Err(ProofError("exactly one DPoP proof is allowed"));
        }
        let jws = CompactJws::split(proof).map_err(|_| ProofError("DPoP proof is not a JWS"))?;
        let mut header = jws
            .header_object()
            .map_err(|_| ProofError("DPoP proof header is not a JSON object"))?;
        let jwk = header.remove("jwk");
        let header = JoseHeader::from_members(header)
            .map_err(|_| ProofError("DPoP proof header is malformed"))?;
        if !header
            .typ
            .as_deref()
            .is_some_and(|typ| typ.eq_ignore_ascii_case("dpop+jwt"))
        {
            return Err(ProofError("DPoP proof typ is not dpop+jwt"));
        }
        if header.critical {
            return Err(ProofError("DPoP proof has a crit header"));
        }
        let algorithm = header
            .algorithm()
            .ok()
            .filter(|alg| self.algorithms.contains(alg))
            .ok_or(ProofError("DPoP proof alg is not an allowed algorithm"))?;
        let key = public_key(jwk, algorithm)?;
        if !jws.signed_by(&key.0, algorithm) {
            return Err(ProofError("DPoP proof signature does not verify"));
        }
        let claims = jws
            .claims()
            .map_err(|_| ProofError("DPoP proof claims are not a JSON object"))?;
        proof_claims(&claims, Thumbprint(*key.0.thumbprint()))
    }
}

/// The SHA-256 of an access token as presented, which a proof's `ath` must name.
pub fn access_token_hash(token: &str) -> Thumbprint {
    Thumbprint(Sha256::digest(token.as_bytes()).into())
}

/// A proof's key, public and fitting its algorithm.
struct ProofKey(crate::keys::VerificationKey);

fn public_key(jwk: Option<Value>, algorithm: SigningAlgorithm) -> Result<ProofKey, ProofError> {
    let Some(Value::Object(members)) = jwk else {
        return Err(ProofError("DPoP proof header has no jwk object"));
    };
    if members.get("kty").and_then(Value::as_str) == Some("oct") || members.contains_key("k") {
        return Err(ProofError("DPoP proof jwk is a symmetric key"));
    }
    if PRIVATE_KEY_MEMBERS
        .iter()
        .any(|member| members.contains_key(*member))
    {
        return Err(ProofError("DPoP proof jwk is a private key"));
    }
    let key = parse_jwk_for(Value::Object(members), Some(algorithm))
        .map_err(|_| ProofError("DPoP proof jwk is not a usable public key"))?;
    if !key.accepts(algorithm) {
        return Err(ProofError("DPoP proof alg does not fit its jwk"));
    }
    Ok(ProofKey(key))
}

/// The proof's claims: `jti`, `htm`, `htu` and `iat` required and typed; `ath` and `nonce`
/// strings when present.
fn proof_claims(claims: &Map<String, Value>, key: Thumbprint) -> Result<DpopProof, ProofError> {
    let text = |name: &str, problem: &'static str| match claims.get(name) {
        Some(Value::String(value)) if !value.is_empty() => Ok(value.as_str()),
        _ => Err(ProofError(problem)),
    };
    let optional = |name: &str, problem: &'static str| match claims.get(name) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.as_str())),
        Some(_) => Err(ProofError(problem)),
    };
    let jti = text("jti", "DPoP proof has no jti")?;
    if jti.len() > MAX_JTI_LEN {
        return Err(ProofError("DPoP proof jti is too long"));
    }
    let method = text("htm", "DPoP proof has no htm")?;
    let target = text("htu", "DPoP proof has no htu")?;
    let issued_at = claims
        .get("iat")
        .and_then(Value::as_f64)
        .ok_or(ProofError("DPoP proof has no numeric iat"))?;
    let token_hash =
        optional("ath", "DPoP proof ath is not a string")?.and_then(Thumbprint::from_base64url);
    let nonce = optional("nonce", "DPoP proof nonce is not a string")?;
    let mut replay = Sha256::new();
    replay.update(key.0);
    replay.update(jti.as_bytes());
    Ok(DpopProof {
        key,
        method: method.into(),
        target: target.into(),
        issued_at: UnixTime::from_numeric_date(issued_at),
        token_hash,
        replay_key: replay.finalize().into(),
        nonce: nonce.map(Into::into),
    })
}

#[cfg(test)]
mod tests;
