//! Fixtures for the receiver's unit tests: the fixture transmitter, SET minting, and stores.

use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

use super::events::SESSION_REVOKED;
use super::verify::{SetVerifier, Transmitter};
use crate::revocation::{Revocation, RevocationStore, StoreError};
use sessiongate_token::KeySet;

/// The fixture transmitter's `iss`.
pub const TRANSMITTER: &str = "https://transmitter.example.test";
/// The audience the fixture transmitter addresses.
pub const AUDIENCE: &str = "sessiongate";
/// The issuer of the access tokens the fixture SETs talk about.
pub const TOKEN_ISSUER: &str = "https://idp.example.test";
const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/keys");

fn key_file(name: &str) -> Vec<u8> {
    std::fs::read(format!("{KEYS}/{name}")).unwrap()
}

/// Another token issuer, which the fixture transmitter may not act on.
pub const OTHER_ISSUER: &str = "https://other-idp.example.test";

/// The fixture transmitter with its published keys, acting on [`TOKEN_ISSUER`]'s sessions.
pub fn transmitter() -> Transmitter {
    transmitter_for(&[TOKEN_ISSUER])
}

/// The fixture transmitter, acting on the sessions of `issuers`.
pub fn transmitter_for(issuers: &[&str]) -> Transmitter {
    let keys = KeySet::from_jwks_json(&key_file("transmitter-jwks.json"))
        .unwrap()
        .keys;
    Transmitter::new(
        TRANSMITTER,
        AUDIENCE,
        keys,
        issuers.iter().map(|issuer| Arc::from(*issuer)),
    )
}

/// A verifier trusting only the fixture transmitter.
pub fn verifier() -> SetVerifier {
    SetVerifier::new([transmitter()])
}

/// A SET under construction; by default a valid `session-revoked` for alice of
/// [`TOKEN_ISSUER`], `jti` `set-1`.
#[derive(Clone, Debug)]
pub struct Set {
    typ: Option<String>,
    kid: String,
    claims: Map<String, Value>,
}

impl Set {
    /// A valid SET issued at `iat` (seconds).
    pub fn at(iat: u64) -> Set {
        let claims = json!({
            "iss": TRANSMITTER,
            "aud": AUDIENCE,
            "iat": iat,
            "jti": "set-1",
            "sub_id": {"format": "iss_sub", "iss": TOKEN_ISSUER, "sub": "alice"},
            "events": {SESSION_REVOKED: {"event_timestamp": iat}},
        });
        Set {
            typ: Some("secevent+jwt".into()),
            kid: "transmitter-es256".into(),
            claims: claims.as_object().unwrap().clone(),
        }
    }

    /// Sets the header's `typ` (`None`: no `typ`).
    pub fn typ(mut self, typ: Option<&str>) -> Set {
        self.typ = typ.map(Into::into);
        self
    }

    /// Sets the header's `kid`.
    pub fn kid(mut self, kid: &str) -> Set {
        self.kid = kid.into();
        self
    }

    /// Sets a claim.
    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Set {
        self.claims.insert(name.into(), value.into());
        self
    }

    /// Drops a claim.
    pub fn without(mut self, name: &str) -> Set {
        self.claims.remove(name);
        self
    }

    /// The claim set as it stands.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// One event, replacing the default.
    pub fn event(self, event_type: &str, payload: Value) -> Set {
        self.claim("events", json!({ event_type: payload }))
    }

    fn header(&self, alg: Algorithm) -> Header {
        let mut header = Header::new(alg);
        header.kid = Some(self.kid.clone());
        header.typ = self.typ.clone();
        header
    }

    fn sign_with(&self, file: &str) -> String {
        let key = EncodingKey::from_ec_pem(&key_file(file)).unwrap();
        jsonwebtoken::encode(&self.header(Algorithm::ES256), &self.claims, &key).unwrap()
    }

    /// Signed by the transmitter's published key.
    pub fn sign(&self) -> String {
        self.sign_with("transmitter-es256.pem")
    }

    /// Signed by the transmitter's published key over exactly `claims_json`, for what a JSON
    /// serialiser will not write (a member named twice).
    pub fn sign_claims_text(&self, claims_json: &str) -> String {
        let header = serde_json::to_vec(&self.header(Algorithm::ES256)).unwrap();
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims_json)
        );
        let key = EncodingKey::from_ec_pem(&key_file("transmitter-es256.pem")).unwrap();
        let signature =
            jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, Algorithm::ES256).unwrap();
        format!("{signing_input}.{signature}")
    }

    /// Signed by a key the transmitter never published, under its `kid`.
    pub fn signed_by_untrusted_key(&self) -> String {
        self.sign_with("untrusted-transmitter-es256.pem")
    }

    /// `alg: none`, empty signature.
    pub fn unsigned(&self) -> String {
        let header = json!({"alg": "none", "typ": "secevent+jwt", "kid": self.kid});
        let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.",
            part(&header),
            part(&Value::Object(self.claims.clone()))
        )
    }

    /// HS256 keyed with the published JWKS, the algorithm-confusion attack.
    pub fn hs256(&self) -> String {
        let key = EncodingKey::from_secret(&key_file("transmitter-jwks.json"));
        jsonwebtoken::encode(&self.header(Algorithm::HS256), &self.claims, &key).unwrap()
    }
}

/// The store trait's boxed future, spelt out.
type StoreFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A store in memory, which can be told to fail.
#[derive(Default)]
pub struct MemoryStore {
    /// Everything appended.
    pub appended: Arc<Mutex<Vec<Revocation>>>,
    /// When set, appends fail as if the disk were full.
    pub failing: Arc<std::sync::atomic::AtomicBool>,
    /// When set, appends fail as a write sent to Redis without a reply does: unconfirmed.
    pub unconfirmed: Arc<std::sync::atomic::AtomicBool>,
}

impl RevocationStore for MemoryStore {
    fn describe(&self) -> String {
        "memory".into()
    }

    fn load(&self) -> StoreFuture<'_, Vec<Revocation>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn append<'a>(&'a self, revocation: &'a Revocation) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(StoreError::Unavailable("disk full".into()));
            }
            if self.unconfirmed.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(StoreError::Unconfirmed("timed out".into()));
            }
            self.appended.lock().unwrap().push(revocation.clone());
            Ok(())
        })
    }
}
