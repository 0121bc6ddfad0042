//! Minting access tokens the way an identity provider would, plus the forged ones an attacker
//! would send.
//!
//! Every token gets a fresh `jti` unless a test sets one: the session cache keys on it, and the
//! tests share one sessiongate, so two tests must never present "the same" session by accident
//! (RS256 and EdDSA signatures are deterministic, so equal claims would mean equal tokens).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

/// The issuer the e2e sessiongate config trusts with all three algorithms.
pub const ISSUER: &str = "https://idp.sessiongate.test";
/// A second trusted issuer whose allow-list holds ES256 only, so a correctly signed RS256 token
/// from it is a disallowed (not a bad) algorithm.
pub const ES256_ONLY_ISSUER: &str = "https://es256-only.sessiongate.test";
pub const AUDIENCE: &str = "orders-api";

/// The asymmetric algorithms the fixture keys cover (`tests/fixtures/keys/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    Rs256,
    Es256,
    EdDsa,
}

impl Alg {
    fn jwt(self) -> Algorithm {
        match self {
            Alg::Rs256 => Algorithm::RS256,
            Alg::Es256 => Algorithm::ES256,
            Alg::EdDsa => Algorithm::EdDSA,
        }
    }

    fn file_stem(self) -> &'static str {
        match self {
            Alg::Rs256 => "rs256",
            Alg::Es256 => "es256",
            Alg::EdDsa => "eddsa",
        }
    }

    /// The kid under which `jwks.json` publishes this algorithm's key.
    pub fn kid(self) -> &'static str {
        match self {
            Alg::Rs256 => "test-rs256",
            Alg::Es256 => "test-es256",
            Alg::EdDsa => "test-eddsa",
        }
    }
}

/// Which private key signs: the published one, or an impostor with the same kid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signer {
    Trusted,
    Untrusted,
}

pub fn keys_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys")
}

/// The JWKS that publishes the trusted keys; harnesses copy it next to their config.
pub fn jwks_path() -> PathBuf {
    keys_dir().join("jwks.json")
}

/// Seconds since the epoch, the unit of JWT NumericDate claims.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

fn unique_jti() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!(
        "e2e-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A token under construction. Defaults describe a valid, fresh session for [`ISSUER`]:
/// `sub` alice, scope `orders:read`, issued now, valid for 10 minutes, RS256 with a trusted key.
#[derive(Clone, Debug)]
pub struct TokenBuilder {
    alg: Alg,
    signer: Signer,
    kid: Option<String>,
    typ: Option<String>,
    claims: Map<String, Value>,
}

/// Starts a valid token; adjust it with the builder methods, then [`TokenBuilder::sign`].
pub fn token() -> TokenBuilder {
    let now = now();
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(ISSUER));
    claims.insert("aud".into(), json!(AUDIENCE));
    claims.insert("sub".into(), json!("alice"));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + 600));
    claims.insert("jti".into(), json!(unique_jti()));
    claims.insert("scope".into(), json!("orders:read"));
    TokenBuilder {
        alg: Alg::Rs256,
        signer: Signer::Trusted,
        kid: None,
        typ: Some("at+jwt".into()),
        claims,
    }
}

impl TokenBuilder {
    pub fn alg(mut self, alg: Alg) -> Self {
        self.alg = alg;
        self
    }

    pub fn signer(mut self, signer: Signer) -> Self {
        self.signer = signer;
        self
    }

    /// Overrides the header's kid (default: the kid the JWKS publishes for the algorithm).
    pub fn kid(mut self, kid: &str) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// Sets any claim to any JSON value.
    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.claims.insert(name.into(), value.into());
        self
    }

    /// Drops a claim, e.g. to send a token without `iat`.
    pub fn without(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    pub fn iss(self, issuer: &str) -> Self {
        self.claim("iss", issuer)
    }

    pub fn aud(self, audience: &str) -> Self {
        self.claim("aud", audience)
    }

    pub fn sub(self, subject: &str) -> Self {
        self.claim("sub", subject)
    }

    /// Space-separated, as in RFC 8693 / RFC 9068's `scope` claim.
    pub fn scope(self, scope: &str) -> Self {
        self.claim("scope", scope)
    }

    pub fn jti(self, jti: &str) -> Self {
        self.claim("jti", jti)
    }

    pub fn client_id(self, client_id: &str) -> Self {
        self.claim("client_id", client_id)
    }

    /// Issued `seconds` ago.
    pub fn iat_age(self, seconds: i64) -> Self {
        self.claim("iat", now() - seconds)
    }

    /// Expires `seconds` from now (negative: already expired).
    pub fn exp_in(self, seconds: i64) -> Self {
        self.claim("exp", now() + seconds)
    }

    /// Not valid before `seconds` from now.
    pub fn nbf_in(self, seconds: i64) -> Self {
        self.claim("nbf", now() + seconds)
    }

    /// The user last authenticated `seconds` ago (OIDC `auth_time`).
    pub fn auth_age(self, seconds: i64) -> Self {
        self.claim("auth_time", now() - seconds)
    }

    /// Binds the token to a client certificate (RFC 8705 `cnf.x5t#S256`).
    pub fn cnf_thumbprint(self, thumbprint: &str) -> Self {
        self.claim("cnf", json!({ "x5t#S256": thumbprint }))
    }

    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// Signs with the chosen algorithm and key.
    pub fn sign(&self) -> String {
        let mut header = Header::new(self.alg.jwt());
        header.kid = Some(self.kid.clone().unwrap_or_else(|| self.alg.kid().into()));
        header.typ = self.typ.clone();
        let prefix = match self.signer {
            Signer::Trusted => "",
            Signer::Untrusted => "untrusted-",
        };
        let path = keys_dir().join(format!("{prefix}{}.pem", self.alg.file_stem()));
        let pem = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let key = match self.alg {
            Alg::Rs256 => EncodingKey::from_rsa_pem(&pem),
            Alg::Es256 => EncodingKey::from_ec_pem(&pem),
            Alg::EdDsa => EncodingKey::from_ed_pem(&pem),
        }
        .unwrap_or_else(|e| panic!("load {}: {e}", path.display()));
        jsonwebtoken::encode(&header, &self.claims, &key).expect("sign token")
    }

    /// `alg: none` with an empty signature: the classic "unsigned token" attack.
    pub fn unsigned(&self) -> String {
        let header = json!({ "alg": "none", "typ": "JWT", "kid": self.alg.kid() });
        format!(
            "{}.{}.",
            encode_part(&header),
            encode_part(&Value::Object(self.claims.clone()))
        )
    }

    /// HS256 keyed with the RSA *public* key (SPKI PEM, as a JWKS consumer could render it):
    /// the algorithm-confusion attack against verifiers that let the token pick the algorithm.
    pub fn hs256_with_rsa_public_key(&self) -> String {
        let path = keys_dir().join("rs256.pem");
        let pem = std::fs::read_to_string(&path).expect("read rs256.pem");
        let public_pem = rcgen::KeyPair::from_pem(&pem)
            .expect("parse RSA key")
            .public_key_pem();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(Alg::Rs256.kid().into());
        let key = EncodingKey::from_secret(public_pem.as_bytes());
        jsonwebtoken::encode(&header, &self.claims, &key).expect("sign HS256")
    }
}

/// A token over exactly these header and claims JSON texts, signed with the trusted `alg` key:
/// for what a JSON serialiser will not write (duplicate members, `"kid": null`).
pub fn sign_raw(alg: Alg, header_json: &str, claims_json: &str) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header_json),
        URL_SAFE_NO_PAD.encode(claims_json)
    );
    let path = keys_dir().join(format!("{}.pem", alg.file_stem()));
    let pem = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let key = match alg {
        Alg::Rs256 => EncodingKey::from_rsa_pem(&pem),
        Alg::Es256 => EncodingKey::from_ec_pem(&pem),
        Alg::EdDsa => EncodingKey::from_ed_pem(&pem),
    }
    .unwrap_or_else(|e| panic!("load {}: {e}", path.display()));
    let signature =
        jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, alg.jwt()).expect("sign token");
    format!("{signing_input}.{signature}")
}

fn encode_part(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("serialize JSON"))
}

/// The order `n` of the P-256 group, big-endian.
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// A thief's re-encoding of a stolen ES256 token, made without any key: the signature's `s`
/// replaced by `n − s`, which verifies as well as the original.
pub fn ecdsa_twin(es256_token: &str) -> String {
    let (signing_input, signature) = es256_token.rsplit_once('.').expect("a compact JWS");
    let mut signature = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
    assert_eq!(signature.len(), 64, "an ES256 signature");
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut digit = i16::from(P256_ORDER[i]) - i16::from(signature[32 + i]) - borrow;
        borrow = i16::from(digit < 0);
        if digit < 0 {
            digit += 256;
        }
        signature[32 + i] = digit as u8;
    }
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}
