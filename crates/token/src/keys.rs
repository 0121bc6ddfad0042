//! Issuers' public keys: parsing a JWKS, and the key ring the verifier reads.
//!
//! Keys change underneath cached sessions (rotation, removal after a compromise), so every
//! [`VerificationKey`] carries a `retired` flag: when a new key set for an issuer no longer holds
//! a key, the ring retires it, and every cached session verified with it is denied on its next
//! request with one atomic load, without re-verifying anything.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use aws_lc_rs::signature::{ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use sessiongate_core::token::TokenError;
use sha2::{Digest, Sha256};

use crate::jws::CompactJws;

use sessiongate_core::token::KeyHandle;

use super::algorithm::{KeyFamily, SigningAlgorithm, Verification};

/// Smallest RSA modulus accepted, in bytes (2048 bits), per NIST SP 800-131A.
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// A public key an issuer signs with.
pub struct VerificationKey {
    /// The JWK `kid` (or the RFC 7638 thumbprint for keys published without one) and the
    /// `retired` flag, shared with every session this key verified.
    handle: KeyHandle,
    family: KeyFamily,
    /// The JWK's `alg`, when it pins the key to one algorithm.
    declared_algorithm: Option<SigningAlgorithm>,
    /// RFC 7638 thumbprint: identifies the key material, whatever its `kid`.
    thumbprint: [u8; 32],
    /// The key parsed once for each algorithm it accepts: verifying with an unparsed key
    /// re-builds it every time (for RSA, a third of the verification's cost).
    parsed: Vec<(SigningAlgorithm, ParsedPublicKey)>,
}

impl VerificationKey {
    /// The key's id as tokens name it in `kid`.
    pub fn id(&self) -> &Arc<str> {
        self.handle.id()
    }

    /// What a session verified with this key keeps of it.
    pub fn handle(&self) -> &KeyHandle {
        &self.handle
    }

    /// Whether this key may verify `algorithm`: same family, and the JWK's own `alg` (if any)
    /// agrees. This is the algorithm-confusion guard.
    pub fn accepts(&self, algorithm: SigningAlgorithm) -> bool {
        algorithm.key_family() == self.family
            && self
                .declared_algorithm
                .is_none_or(|declared| declared == algorithm)
    }

    /// The key as the crypto library verifies `algorithm` with it, parsed once; `None` when
    /// the key does not accept `algorithm`. Public so that benchmarks can compare a whole
    /// verification with the library's own rate on the very same key object.
    pub fn parsed_for(&self, algorithm: SigningAlgorithm) -> Option<&ParsedPublicKey> {
        self.parsed
            .iter()
            .find(|(accepted, _)| *accepted == algorithm)
            .map(|(_, key)| key)
    }

    /// The key's RFC 7638 SHA-256 thumbprint (what a DPoP-bound token's `cnf.jkt` names).
    pub fn thumbprint(&self) -> &[u8; 32] {
        &self.thumbprint
    }

    /// True once the issuer stopped publishing this key: sessions verified with it are dead.
    pub fn is_retired(&self) -> bool {
        self.handle.is_retired()
    }

    fn retire(&self) {
        self.handle.retire();
    }
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey")
            .field("id", self.id())
            .field("family", &self.family)
            .field("declared_algorithm", &self.declared_algorithm)
            .field("retired", &self.is_retired())
            .finish()
    }
}

/// One issuer's current keys.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Arc<VerificationKey>>,
}

/// Why a JWKS document could not be used at all.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The document is not a JSON object with a `keys` array.
    #[error("not a JWKS document: {0}")]
    NotJwks(String),
    /// No key in the document is usable for signature verification.
    #[error("no usable signing key ({})", .skipped.join("; "))]
    NoUsableKey {
        /// Why each key was skipped.
        skipped: Vec<String>,
    },
}

/// A parsed JWKS, with the reason each unusable key was skipped (for logs).
#[derive(Debug)]
pub struct ParsedJwks {
    /// The usable keys.
    pub keys: KeySet,
    /// One line per skipped key, naming it and why.
    pub skipped: Vec<String>,
}

#[derive(Deserialize)]
struct JwksDocument {
    keys: Vec<serde_json::Value>,
}

/// The JWK members sessiongate reads; everything else is ignored, as RFC 7517 requires.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

impl KeySet {
    /// Parses a JWKS document, keeping every key usable for verification.
    pub fn from_jwks_json(json: &[u8]) -> Result<ParsedJwks, JwksError> {
        let document: JwksDocument =
            serde_json::from_slice(json).map_err(|e| JwksError::NotJwks(e.to_string()))?;
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for (index, value) in document.keys.into_iter().enumerate() {
            match parse_jwk(value) {
                Ok(key) => keys.push(Arc::new(key)),
                Err(why) => skipped.push(format!("keys[{index}]: {why}")),
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey { skipped });
        }
        Ok(ParsedJwks {
            keys: KeySet { keys },
            skipped,
        })
    }

    /// The key a token names by `kid` and `algorithm`; without a `kid`, the only key that
    /// accepts `algorithm` (several candidates would be a guess, so that is no key at all).
    ///
    /// A `kid` is unique only per key type (RFC 7517 section 4.5): during a migration an issuer
    /// may publish an EC and an OKP key under one `kid`. So among the keys with that `kid` the
    /// one that accepts `algorithm` is chosen; when none does, the first key with the `kid` is
    /// returned anyway, so that the caller's [`VerificationKey::accepts`] check names the
    /// algorithm that does not fit the key rather than calling the key unknown.
    pub fn find(
        &self,
        kid: Option<&str>,
        algorithm: SigningAlgorithm,
    ) -> Option<&Arc<VerificationKey>> {
        match kid {
            Some(kid) => {
                let mut named = self.keys.iter().filter(|key| &**key.id() == kid);
                let first = named.next()?;
                if first.accepts(algorithm) {
                    return Some(first);
                }
                Some(named.find(|key| key.accepts(algorithm)).unwrap_or(first))
            }
            None => {
                let mut candidates = self.keys.iter().filter(|key| key.accepts(algorithm));
                let only = candidates.next()?;
                candidates.next().is_none().then_some(only)
            }
        }
    }

    /// The keys' ids (`kid`s), for logging what a refresh changed.
    pub fn ids(&self) -> impl Iterator<Item = &Arc<str>> {
        self.keys.iter().map(|key| key.id())
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// This set, with each key `old` also holds replaced by `old`'s instance of it.
    fn carrying_over(&self, old: &KeySet) -> KeySet {
        let keys = self
            .keys
            .iter()
            .map(|key| {
                old.keys
                    .iter()
                    .find(|own| own.id() == key.id() && own.thumbprint == key.thumbprint)
                    .filter(|own| !own.is_retired())
                    .unwrap_or(key)
                    .clone()
            })
            .collect();
        KeySet { keys }
    }

    fn holds(&self, key: &VerificationKey) -> bool {
        self.keys
            .iter()
            .any(|own| own.id() == key.id() && own.thumbprint == key.thumbprint)
    }
}

fn parse_jwk(value: serde_json::Value) -> Result<VerificationKey, String> {
    parse_jwk_for(value, None)
}

/// A JWK as a [`VerificationKey`], parsed for `only` that algorithm when given (a DPoP proof's
/// key verifies one signature with the proof's `alg`; parsing an RSA key for all six RSA
/// algorithms would cost five parses for nothing), else for every algorithm it accepts.
pub(crate) fn parse_jwk_for(
    value: serde_json::Value,
    only: Option<SigningAlgorithm>,
) -> Result<VerificationKey, String> {
    let jwk: Jwk = serde_json::from_value(value).map_err(|e| format!("not a JWK: {e}"))?;
    let name = jwk.kid.as_deref().unwrap_or("(no kid)").to_owned();
    if let Some(usage) = jwk.usage.as_deref()
        && usage != "sig"
    {
        return Err(format!("key {name}: use is `{usage}`, not `sig`"));
    }
    let declared_algorithm = match jwk.alg.as_deref() {
        None => None,
        Some(alg) => Some(
            SigningAlgorithm::from_jose(alg)
                .ok_or_else(|| format!("key {name}: algorithm `{alg}` is not supported"))?,
        ),
    };
    fn member<'v>(value: &'v Option<String>, member: &str, name: &str) -> Result<&'v str, String> {
        value
            .as_deref()
            .ok_or_else(|| format!("key {name}: missing `{member}`"))
    }
    let base64url = |value: &str, member: &str| {
        URL_SAFE_NO_PAD
            .decode(value)
            .map_err(|_| format!("key {name}: `{member}` is not base64url"))
    };
    let (family, material, canonical) = match jwk.kty.as_str() {
        "RSA" => {
            let (n, e) = (member(&jwk.n, "n", &name)?, member(&jwk.e, "e", &name)?);
            let modulus = base64url(n, "n")?;
            let significant = modulus.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return Err(format!(
                    "key {name}: RSA modulus of {} bits is below 2048",
                    significant * 8
                ));
            }
            (
                KeyFamily::Rsa,
                KeyMaterial::Rsa {
                    modulus,
                    exponent: base64url(e, "e")?,
                },
                format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
            )
        }
        "EC" => {
            let crv = member(&jwk.crv, "crv", &name)?;
            let family = match crv {
                "P-256" => KeyFamily::P256,
                "P-384" => KeyFamily::P384,
                other => return Err(format!("key {name}: curve `{other}` is not supported")),
            };
            let (x, y) = (member(&jwk.x, "x", &name)?, member(&jwk.y, "y", &name)?);
            // SEC 1 uncompressed point: 0x04, x, y.
            let mut point = vec![0x04];
            point.extend(base64url(x, "x")?);
            point.extend(base64url(y, "y")?);
            let canonical = format!(r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#);
            (family, KeyMaterial::Raw(point), canonical)
        }
        "OKP" => {
            let crv = member(&jwk.crv, "crv", &name)?;
            if crv != "Ed25519" {
                return Err(format!("key {name}: curve `{crv}` is not supported"));
            }
            let x = member(&jwk.x, "x", &name)?;
            (
                KeyFamily::Ed25519,
                KeyMaterial::Raw(base64url(x, "x")?),
                format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
            )
        }
        "oct" => return Err(format!("key {name}: symmetric keys are never accepted")),
        other => return Err(format!("key {name}: key type `{other}` is not supported")),
    };
    if let Some(alg) = declared_algorithm
        && alg.key_family() != family
    {
        return Err(format!(
            "key {name}: `alg` {alg} does not fit a {family:?} key"
        ));
    }
    let parsed = SigningAlgorithm::ALL
        .into_iter()
        .filter(|algorithm| {
            algorithm.key_family() == family
                && declared_algorithm.is_none_or(|d| d == *algorithm)
                && only.is_none_or(|only| only == *algorithm)
        })
        .map(|algorithm| {
            material
                .parse(algorithm)
                .map(|key| (algorithm, key))
                .map_err(|problem| {
                    format!("key {name}: not a valid {family:?} public key ({problem})")
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let thumbprint: [u8; 32] = Sha256::digest(canonical.as_bytes()).into();
    let id: Arc<str> = match jwk.kid {
        Some(kid) => kid.into(),
        None => URL_SAFE_NO_PAD.encode(thumbprint).into(),
    };
    Ok(VerificationKey {
        handle: KeyHandle::new(id),
        family,
        declared_algorithm,
        thumbprint,
        parsed,
    })
}

/// A JWK's public key bytes, as the crypto library takes them.
enum KeyMaterial {
    /// Big-endian modulus and exponent.
    Rsa { modulus: Vec<u8>, exponent: Vec<u8> },
    /// An EC point (uncompressed) or an Ed25519 public key.
    Raw(Vec<u8>),
}

impl KeyMaterial {
    /// The key parsed for verifying `algorithm`; the library rejects malformed keys and
    /// points off the curve here, once, instead of on every verification.
    fn parse(&self, algorithm: SigningAlgorithm) -> Result<ParsedPublicKey, String> {
        let rejected = |e: aws_lc_rs::error::KeyRejected| e.to_string();
        match (self, algorithm.verification()) {
            (KeyMaterial::Rsa { modulus, exponent }, Verification::Rsa(params)) => {
                RsaPublicKeyComponents {
                    n: modulus,
                    e: exponent,
                }
                .to_parsed_public_key(params)
                .map_err(rejected)
            }
            (KeyMaterial::Raw(bytes), Verification::Other(algorithm)) => {
                ParsedPublicKey::new(algorithm, bytes).map_err(rejected)
            }
            _ => Err("key type and algorithm disagree".into()),
        }
    }
}

/// Every configured issuer's current key set, swappable while requests read it.
#[derive(Default)]
pub struct KeyRing {
    sets: ArcSwap<HashMap<Arc<str>, Arc<KeySet>>>,
    /// Issuers whose keys could not be refreshed for longer than they may be trusted: their
    /// tokens are denied until a refresh succeeds. Reversible, unlike retiring a key, because
    /// an outage says nothing against the keys themselves. Almost always empty.
    suspended: ArcSwap<HashSet<Arc<str>>>,
    /// Bumped whenever a key set is installed or removed: a verdict reached against one
    /// generation of keys (e.g. a remembered rejection) may not hold for the next.
    generation: AtomicU64,
}

impl KeyRing {
    /// An empty ring; issuers without keys reject every token as `unknown_key`.
    pub fn new() -> KeyRing {
        KeyRing::default()
    }

    /// Which installation of keys is current: changes whenever any issuer's set is replaced
    /// or removed.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current keys of `issuer`.
    pub fn keys_of(&self, issuer: &str) -> Option<Arc<KeySet>> {
        self.sets.load().get(issuer).cloned()
    }

    /// The key of `issuer` that signed `jws` (named by `kid`, for `algorithm`), once its
    /// signature verifies: the one signature check every issuer-signed JWS gets (access tokens
    /// and signed introspection answers alike), so the key lookup, the algorithm-fits-key
    /// guard against confusion and the verification are never written twice.
    pub(crate) fn key_that_signed(
        &self,
        issuer: &str,
        jws: &CompactJws<'_>,
        kid: Option<&str>,
        algorithm: SigningAlgorithm,
    ) -> Result<Arc<VerificationKey>, TokenError> {
        let key_set = self.keys_of(issuer).ok_or(TokenError::UnknownKey)?;
        let key = key_set.find(kid, algorithm).ok_or(TokenError::UnknownKey)?;
        if !key.accepts(algorithm) {
            return Err(TokenError::DisallowedAlgorithm(
                "algorithm does not match the signing key",
            ));
        }
        if !jws.signed_by(key, algorithm) {
            return Err(TokenError::BadSignature);
        }
        Ok(Arc::clone(key))
    }

    /// Installs `keys` as `issuer`'s key set and retires every key of the previous set that the
    /// new one no longer holds (same `kid` and same key material), which denies the sessions
    /// verified with it.
    ///
    /// A key the new set still holds keeps its identity (the previous [`VerificationKey`] is
    /// carried over), so a key that survives many refreshes and is removed later retires the
    /// sessions verified with it at any point, not only those since the last refresh.
    pub fn replace(&self, issuer: &str, keys: KeySet) {
        let mut installed = Arc::new(KeySet::default());
        let previous = self.sets.rcu(|current| {
            let merged = match current.get(issuer) {
                Some(old) => keys.carrying_over(old),
                None => KeySet {
                    keys: keys.keys.clone(),
                },
            };
            installed = Arc::new(merged);
            let mut next = HashMap::clone(current);
            next.insert(Arc::from(issuer), Arc::clone(&installed));
            next
        });
        if let Some(old) = previous.get(issuer) {
            for key in old.keys.iter().filter(|key| !installed.holds(key)) {
                key.retire();
            }
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Denies `issuer`'s tokens, cached sessions included, until [`KeyRing::resume`]: its keys
    /// are too old to trust. The keys are kept, so a recovered source revives the sessions.
    pub fn suspend(&self, issuer: &str) {
        self.suspended.rcu(|current| {
            let mut next = HashSet::clone(current);
            next.insert(Arc::from(issuer));
            next
        });
    }

    /// Trusts `issuer`'s keys again after a successful refresh.
    pub fn resume(&self, issuer: &str) {
        if !self.is_suspended(issuer) {
            return;
        }
        self.suspended.rcu(|current| {
            let mut next = HashSet::clone(current);
            next.remove(issuer);
            next
        });
    }

    /// Whether `issuer`'s tokens are denied because its keys are stale. One atomic load when no
    /// issuer is suspended, which is the normal case.
    pub fn is_suspended(&self, issuer: &str) -> bool {
        let suspended = self.suspended.load();
        !suspended.is_empty() && suspended.contains(issuer)
    }

    /// Forgets `issuer` (removed from the configuration). Its keys are not retired: its tokens
    /// are `unknown_issuer` now anyway.
    pub fn remove(&self, issuer: &str) {
        self.sets.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.remove(issuer);
            next
        });
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.resume(issuer);
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sets = self.sets.load();
        f.debug_map()
            .entries(sets.iter().map(|(issuer, keys)| (issuer, keys.len())))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_jwks() -> Vec<u8> {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/keys/jwks.json"
        ))
        .unwrap()
    }

    #[test]
    fn parses_rsa_ec_and_okp_keys() {
        let parsed = KeySet::from_jwks_json(&fixture_jwks()).unwrap();
        assert_eq!(parsed.keys.len(), 3);
        assert!(parsed.skipped.is_empty());
        let rsa = parsed
            .keys
            .find(Some("test-rs256"), SigningAlgorithm::Rs256)
            .unwrap();
        assert!(rsa.accepts(SigningAlgorithm::Rs256));
        assert!(!rsa.accepts(SigningAlgorithm::Ps256), "the JWK pins RS256");
        assert!(!rsa.accepts(SigningAlgorithm::Es256));
        let ec = parsed
            .keys
            .find(Some("test-es256"), SigningAlgorithm::Es256)
            .unwrap();
        assert!(ec.accepts(SigningAlgorithm::Es256));
        assert!(!ec.accepts(SigningAlgorithm::Es384));
    }

    #[test]
    fn symmetric_weak_and_encryption_keys_are_skipped() {
        let small_n = URL_SAFE_NO_PAD.encode([0xc5u8; 128]);
        let json = format!(
            r#"{{"keys":[
              {{"kty":"oct","kid":"hmac","k":"c2VjcmV0"}},
              {{"kty":"RSA","kid":"small","n":"{small_n}","e":"AQAB"}},
              {{"kty":"EC","kid":"enc","use":"enc","crv":"P-256","x":"AA","y":"AA"}},
              {{"kty":"EC","kid":"k1","crv":"secp256k1","x":"AA","y":"AA"}},
              {{"kty":"OKP","kid":"ed","alg":"RS256","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}}
            ]}}"#
        );
        let err = KeySet::from_jwks_json(json.as_bytes()).unwrap_err();
        let JwksError::NoUsableKey { skipped } = err else {
            panic!("{err}")
        };
        assert_eq!(skipped.len(), 5);
        assert!(skipped[0].contains("symmetric"), "{}", skipped[0]);
        assert!(skipped[1].contains("below 2048"), "{}", skipped[1]);
        assert!(skipped[2].contains("`enc`"), "{}", skipped[2]);
        assert!(skipped[3].contains("secp256k1"), "{}", skipped[3]);
        assert!(skipped[4].contains("does not fit"), "{}", skipped[4]);
    }

    #[test]
    fn a_point_off_the_curve_is_skipped_at_load_not_at_verification() {
        let coordinate = URL_SAFE_NO_PAD.encode([0x01u8; 32]);
        let json = format!(
            r#"{{"keys":[{{"kty":"EC","kid":"bent","crv":"P-256","x":"{coordinate}","y":"{coordinate}"}}]}}"#
        );
        let JwksError::NoUsableKey { skipped } =
            KeySet::from_jwks_json(json.as_bytes()).unwrap_err()
        else {
            panic!("an invalid point must not load")
        };
        assert!(
            skipped[0].contains("key bent: not a valid P256 public key"),
            "{}",
            skipped[0]
        );
    }

    #[test]
    fn a_key_is_parsed_for_exactly_the_algorithms_it_accepts() {
        let keys = KeySet::from_jwks_json(&fixture_jwks()).unwrap().keys;
        for key in &keys.keys {
            for algorithm in SigningAlgorithm::ALL {
                assert_eq!(
                    key.parsed_for(algorithm).is_some(),
                    key.accepts(algorithm),
                    "{} {algorithm}",
                    key.id()
                );
            }
        }
    }

    #[test]
    fn a_missing_kid_resolves_only_when_one_key_fits() {
        let parsed = KeySet::from_jwks_json(&fixture_jwks()).unwrap();
        assert!(parsed.keys.find(None, SigningAlgorithm::EdDsa).is_some());
        assert!(parsed.keys.find(None, SigningAlgorithm::Es384).is_none());
        assert!(
            parsed
                .keys
                .find(Some("nope"), SigningAlgorithm::Rs256)
                .is_none()
        );
    }

    #[test]
    fn a_kid_shared_across_key_types_is_resolved_by_the_algorithms_family() {
        let mut document: serde_json::Value = serde_json::from_slice(&fixture_jwks()).unwrap();
        for key in document["keys"].as_array_mut().unwrap() {
            key["kid"] = serde_json::json!("shared");
        }
        let keys = KeySet::from_jwks_json(document.to_string().as_bytes())
            .unwrap()
            .keys;
        for algorithm in [
            SigningAlgorithm::Rs256,
            SigningAlgorithm::Es256,
            SigningAlgorithm::EdDsa,
        ] {
            let key = keys.find(Some("shared"), algorithm).unwrap();
            assert!(key.accepts(algorithm), "{algorithm}: {key:?}");
        }
        // No key fits: a key with the kid is still found, for the caller to refuse the algorithm.
        let unfit = keys.find(Some("shared"), SigningAlgorithm::Es384).unwrap();
        assert!(!unfit.accepts(SigningAlgorithm::Es384));
    }

    #[test]
    fn replacing_a_set_retires_only_the_keys_that_left() {
        let ring = KeyRing::new();
        let first = KeySet::from_jwks_json(&fixture_jwks()).unwrap().keys;
        let kept_then_dropped: Vec<_> = first.keys.clone();
        ring.replace("https://idp", first);

        let mut document: serde_json::Value = serde_json::from_slice(&fixture_jwks()).unwrap();
        document["keys"]
            .as_array_mut()
            .unwrap()
            .retain(|k| k["kid"] != "test-es256");
        let second = KeySet::from_jwks_json(document.to_string().as_bytes())
            .unwrap()
            .keys;
        ring.replace("https://idp", second);

        for key in &kept_then_dropped {
            assert_eq!(key.is_retired(), &**key.id() == "test-es256", "{key:?}");
        }
        assert_eq!(ring.keys_of("https://idp").unwrap().len(), 2);
        assert!(ring.keys_of("https://other").is_none());
    }

    #[test]
    fn a_key_kept_across_refreshes_retires_its_oldest_sessions_when_it_leaves() {
        let ring = KeyRing::new();
        ring.replace(
            "https://idp",
            KeySet::from_jwks_json(&fixture_jwks()).unwrap().keys,
        );
        let first = ring.keys_of("https://idp").unwrap();
        let verified_early = first
            .find(Some("test-es256"), SigningAlgorithm::Es256)
            .unwrap()
            .clone();
        // An unchanged refresh keeps the very same key instance.
        ring.replace(
            "https://idp",
            KeySet::from_jwks_json(&fixture_jwks()).unwrap().keys,
        );
        let again = ring.keys_of("https://idp").unwrap();
        assert!(Arc::ptr_eq(
            &verified_early,
            again
                .find(Some("test-es256"), SigningAlgorithm::Es256)
                .unwrap()
        ));
        let mut document: serde_json::Value = serde_json::from_slice(&fixture_jwks()).unwrap();
        document["keys"]
            .as_array_mut()
            .unwrap()
            .retain(|k| k["kid"] != "test-es256");
        ring.replace(
            "https://idp",
            KeySet::from_jwks_json(document.to_string().as_bytes())
                .unwrap()
                .keys,
        );
        assert!(verified_early.is_retired());
    }

    #[test]
    fn a_suspended_issuer_is_resumed_with_its_keys_intact() {
        let ring = KeyRing::new();
        ring.replace(
            "https://idp",
            KeySet::from_jwks_json(&fixture_jwks()).unwrap().keys,
        );
        assert!(!ring.is_suspended("https://idp"));
        ring.suspend("https://idp");
        assert!(ring.is_suspended("https://idp"));
        assert!(!ring.is_suspended("https://other"));
        ring.resume("https://idp");
        assert!(!ring.is_suspended("https://idp"));
        assert_eq!(ring.keys_of("https://idp").unwrap().len(), 3);
    }

    #[test]
    fn garbage_is_not_a_jwks() {
        assert!(matches!(
            KeySet::from_jwks_json(b"[]"),
            Err(JwksError::NotJwks(_))
        ));
        assert!(matches!(
            KeySet::from_jwks_json(b"{\"keys\":[]}"),
            Err(JwksError::NoUsableKey { .. })
        ));
    }
}
