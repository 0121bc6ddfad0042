//! A Shared Signals transmitter, as the end-to-end tests play it: minting Security Event Tokens
//! with the transmitter's fixture key (never the token issuer's), and pushing them to
//! sessiongate's admin listener over plain HTTP, as RFC 8935 describes.
//!
//! The transmitter's `iss` is the token issuer's, as when an identity provider both issues the
//! tokens and transmits events about them; that is what makes `opaque` subjects meaningful.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

use super::policy;
use super::tokens::{ISSUER, keys_dir, now};

/// The transmitter's `iss`: the token issuer itself.
pub const TRANSMITTER: &str = ISSUER;
/// The `aud` sessiongate is configured to expect.
pub const AUDIENCE: &str = "sessiongate";
/// The push endpoint's path.
pub const PUSH_PATH: &str = "/ssf/events";
/// The media type of a pushed SET.
pub const SET_MEDIA_TYPE: &str = "application/secevent+jwt";

const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";

/// The CAEP event type URI of `name` (`session-revoked`, …).
pub fn caep(name: &str) -> String {
    format!("{CAEP}{name}")
}

/// [`policy::sessiongate_yaml`] plus the admin listener, the file revocation store and the
/// receiver trusting [`TRANSMITTER`]'s `transmitter-jwks.json` (see [`prepare_dir`]).
pub fn sessiongate_yaml() -> String {
    format!(
        r#"{}
admin:
  listen: "127.0.0.1:0"
  token_file: "admin.token"

revocation:
  backend: file
  path: "state/revocations"

ssf:
  push_path: "{PUSH_PATH}"
  transmitters:
    - issuer: "{TRANSMITTER}"
      jwks_file: "transmitter-jwks.json"
      audience: "{AUDIENCE}"
"#,
        policy::sessiongate_yaml(None)
    )
}

/// Puts what [`sessiongate_yaml`] refers to into `dir`: the transmitter's JWKS and an admin
/// credential.
pub fn prepare_dir(dir: &Path) {
    std::fs::copy(
        keys_dir().join("transmitter-jwks.json"),
        dir.join("transmitter-jwks.json"),
    )
    .expect("copy transmitter-jwks.json");
    std::fs::write(
        dir.join("admin.token"),
        "e2e-ssf-admin-token-0123456789abcdef\n",
    )
    .expect("write admin.token");
}

/// A `jti` no other SET of this test binary uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// `sub_id` naming `sub` of the token issuer (RFC 9493 `iss_sub`).
pub fn iss_sub(sub: &str) -> Value {
    json!({"format": "iss_sub", "iss": ISSUER, "sub": sub})
}

/// A SET under construction: by default valid, issued now, unique `jti`, no events yet.
#[derive(Clone, Debug)]
pub struct SetBuilder {
    typ: Option<String>,
    kid: String,
    key_file: String,
    claims: Map<String, Value>,
}

/// Starts a SET about `sub_id` carrying one event.
pub fn set(sub_id: Value, event_type: &str, payload: Value) -> SetBuilder {
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(TRANSMITTER));
    claims.insert("aud".into(), json!(AUDIENCE));
    claims.insert("iat".into(), json!(now()));
    claims.insert("jti".into(), json!(unique("set")));
    claims.insert("sub_id".into(), sub_id);
    claims.insert("events".into(), json!({ event_type: payload }));
    SetBuilder {
        typ: Some("secevent+jwt".into()),
        kid: "transmitter-es256".into(),
        key_file: "transmitter-es256.pem".into(),
        claims,
    }
}

impl SetBuilder {
    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.claims.insert(name.into(), value.into());
        self
    }

    pub fn without(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    pub fn jti(self, jti: &str) -> Self {
        self.claim("jti", jti)
    }

    pub fn kid(mut self, kid: &str) -> Self {
        self.kid = kid.into();
        self
    }

    /// Signs with a key the transmitter never published, under its `kid`.
    pub fn untrusted_key(mut self) -> Self {
        self.key_file = "untrusted-transmitter-es256.pem".into();
        self
    }

    pub fn sign(&self) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = self.typ.clone();
        let path = keys_dir().join(&self.key_file);
        let pem = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let key = EncodingKey::from_ec_pem(&pem).expect("transmitter key");
        jsonwebtoken::encode(&header, &self.claims, &key).expect("sign SET")
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
}

/// What the push endpoint answered.
#[derive(Debug)]
pub struct PushReply {
    pub status: u16,
    pub body: String,
}

impl PushReply {
    /// The RFC 8935 `err` code of a 400.
    pub fn err(&self) -> Option<String> {
        let json: Value = serde_json::from_str(&self.body).ok()?;
        json.get("err")?.as_str().map(str::to_owned)
    }

    pub fn assert_accepted(&self) -> &Self {
        assert_eq!(self.status, 202, "expected 202 Accepted, got {self:?}");
        assert!(
            self.body.is_empty(),
            "202 must have an empty body: {self:?}"
        );
        self
    }

    pub fn assert_refused(&self, err: &str) -> &Self {
        assert!(
            self.status == 400 && self.err().as_deref() == Some(err),
            "expected 400 with err `{err}`, got {self:?}"
        );
        self
    }
}

/// POSTs `body` to the push endpoint on `admin` with `content_type`.
pub async fn push_as(admin: SocketAddr, content_type: &str, body: String) -> PushReply {
    static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(reqwest::Client::new);
    let response = CLIENT
        .post(format!("http://{admin}{PUSH_PATH}"))
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .header(reqwest::header::ACCEPT, "application/json")
        .body(body)
        .send()
        .await
        .expect("push SET");
    PushReply {
        status: response.status().as_u16(),
        body: response.text().await.expect("read push reply"),
    }
}

/// POSTs the compact `set` as `application/secevent+jwt`.
pub async fn push(admin: SocketAddr, set: String) -> PushReply {
    push_as(admin, SET_MEDIA_TYPE, set).await
}
