//! Token introspection (RFC 7662) over HTTP: the server's [`Introspector`] for opaque tokens.
//!
//! It only transports: what an answer means is read by the policy's verifier
//! ([`sessiongate_token::IntrospectionRules`]) in the check use case. What it owns is what
//! bounds the transport, so a flood of opaque tokens cannot become a flood of requests to the
//! issuer or a pile of waiting checks:
//! - **single flight**: concurrent checks of one token share one request (keyed by the
//!   token's session key), which runs on the server's runtime and finishes even if the check
//!   that started it gives up;
//! - **bounded concurrency**: at most `max_concurrent` requests in flight; a check waits for
//!   a slot within its `timeout`;
//! - **timeouts**: `timeout` covers the wait for a slot, the connection and the answer;
//! - **size**: an answer larger than [`MAX_ANSWER_BYTES`] is refused unread;
//! - no redirects (as for key URLs); client authentication by `client_secret_basic`,
//!   `private_key_jwt` (a fresh one-minute assertion per request) or `tls_client_auth` (a
//!   client certificate; `ca_file` adds trust anchors for the endpoint's certificate);
//! - signed answers (RFC 9701) asked for with `Accept: application/token-introspection+jwt`
//!   when configured (the policy's verifier then accepts no other).
//!
//! The token goes in the request body and nowhere else: errors and logs name the endpoint,
//! never the token. Every failure (unreachable, timeout, a status other than 200, too large)
//! is [`IntrospectionUnavailable`]: the check denies the new token 503 and asks again next
//! time, while cached sessions keep working until their cache time ends.
//!
//! Which tokens are negative-cached, and for how long, is the gate's business (its recent
//! rejections); a per-caller budget pays for every miss before this is reached.

pub mod settings;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sessiongate_check::introspection::{
    IntrospectionFuture, IntrospectionResult, IntrospectionUnavailable, Introspector,
};
use sessiongate_check::session::SessionKey;
use tokio::sync::{Semaphore, watch};

use crate::http_answer::{bounded_body, error_chain};
use crate::metrics::IntrospectionMetrics;
use settings::ClientAuth;
pub use settings::IntrospectionSettings;

/// Largest introspection answer read (64 KiB). Real ones are a few hundred bytes.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Longest a connection to the endpoint may take to establish (within `timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What `application/x-www-form-urlencoded` leaves as is (and what RFC 6749 appendix B's
/// encoding of the client credentials leaves as is): `A-Z a-z 0-9 - . _ *`. Everything else is
/// percent-encoded.
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'*');

/// The introspection client of the one issuer that introspects opaque tokens.
#[derive(Clone)]
pub struct HttpIntrospector {
    inner: Arc<Inner>,
}

struct Inner {
    settings: IntrospectionSettings,
    /// How each request proves sessiongate's identity.
    authentication: Authentication,
    client: reqwest::Client,
    permits: Semaphore,
    /// The request in flight per token, which later checks of the same token wait on.
    in_flight: Mutex<HashMap<SessionKey, watch::Receiver<Option<IntrospectionResult>>>>,
    /// Where requests run: the check that starts one may be polled on a thread of no runtime
    /// (an Envoy worker, in the in-process module).
    runtime: tokio::runtime::Handle,
    metrics: IntrospectionMetrics,
}

impl HttpIntrospector {
    /// A client for `settings`, running its requests on `runtime`, counting in `metrics`
    /// (whose series for the issuer are declared at 0 here).
    pub fn new(
        settings: IntrospectionSettings,
        runtime: tokio::runtime::Handle,
        metrics: IntrospectionMetrics,
    ) -> HttpIntrospector {
        let mut client = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sessiongate/", env!("CARGO_PKG_VERSION")));
        // Both were checked to parse when the config was loaded.
        if let ClientAuth::TlsClientAuth { identity_pem } = &settings.client.auth {
            client = client.identity(
                reqwest::Identity::from_pem(identity_pem).expect("checked at config load"),
            );
        }
        for certificate in settings.ca_pem.iter().flat_map(|pem| {
            reqwest::Certificate::from_pem_bundle(pem).expect("checked at config load")
        }) {
            client = client.add_root_certificate(certificate);
        }
        let client = client
            .build()
            .expect("the HTTP client's TLS backend initialises");
        metrics.declare(&settings.issuer);
        HttpIntrospector {
            inner: Arc::new(Inner {
                authentication: Authentication::of(&settings),
                client,
                permits: Semaphore::new(settings.max_concurrent),
                in_flight: Mutex::new(HashMap::new()),
                runtime,
                metrics,
                settings,
            }),
        }
    }
}

impl Introspector for HttpIntrospector {
    fn introspect(&self, key: SessionKey, token: &str) -> IntrospectionFuture {
        let mut in_flight = self
            .inner
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(running) = in_flight.get(&key) {
            return Box::pin(outcome_of(running.clone()));
        }
        let (done, running) = watch::channel(None);
        in_flight.insert(key, running.clone());
        drop(in_flight);
        let inner = Arc::clone(&self.inner);
        let token = token.to_owned();
        self.inner.runtime.spawn(async move {
            let result = inner.post(&token).await;
            inner.metrics.count(&inner.settings.issuer, &result);
            // Answer the waiters before leaving the map, so a check arriving in between
            // still shares this answer rather than starting another request.
            let _ = done.send(Some(result));
            inner
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
        });
        Box::pin(outcome_of(running))
    }
}

/// The answer of the request `running` watches.
async fn outcome_of(
    mut running: watch::Receiver<Option<IntrospectionResult>>,
) -> IntrospectionResult {
    match running.wait_for(Option::is_some).await {
        Ok(answer) => answer
            .clone()
            .expect("wait_for returns once the answer is there"),
        Err(_) => Err(IntrospectionUnavailable(
            "the introspection request was dropped".into(),
        )),
    }
}

impl Inner {
    /// One bounded exchange: a slot, then the POST and its answer, all within `timeout`.
    async fn post(&self, token: &str) -> IntrospectionResult {
        let timeout = self.settings.timeout;
        match tokio::time::timeout(timeout, self.post_unbounded(token)).await {
            Ok(result) => result,
            Err(_) => Err(IntrospectionUnavailable(format!(
                "{} did not answer within {timeout:?}",
                self.settings.endpoint
            ))),
        }
    }

    async fn post_unbounded(&self, token: &str) -> IntrospectionResult {
        let endpoint = &self.settings.endpoint;
        let failed = |message: String| IntrospectionUnavailable(format!("{endpoint}: {message}"));
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| failed("closed".into()))?;
        let mut body = format!(
            "token={}&token_type_hint=access_token",
            utf8_percent_encode(token, FORM)
        );
        let mut request = self.client.post(endpoint.clone());
        match &self.authentication {
            Authentication::Basic(authorization) => {
                request = request.header(reqwest::header::AUTHORIZATION, authorization);
            }
            Authentication::ClientId => {
                let client_id = &self.settings.client.client_id;
                body.push_str(&format!(
                    "&client_id={}",
                    utf8_percent_encode(client_id, FORM)
                ));
            }
            Authentication::Assertion {
                key,
                algorithm,
                audience,
            } => {
                let client_id = &self.settings.client.client_id;
                let assertion = client_assertion(client_id, audience, key, *algorithm)
                    .map_err(|e| failed(format!("cannot sign the client assertion: {e}")))?;
                body.push_str(&format!(
                    "&client_id={}&client_assertion_type={}&client_assertion={}",
                    utf8_percent_encode(client_id, FORM),
                    utf8_percent_encode(ASSERTION_TYPE, FORM),
                    utf8_percent_encode(&assertion, FORM)
                ));
            }
        }
        let accept = if self.settings.signed_responses() {
            "application/token-introspection+jwt"
        } else {
            "application/json"
        };
        let response = request
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, accept)
            .body(body)
            .send()
            .await
            // reqwest's errors name the URL, never the body.
            .map_err(|e| failed(error_chain(&e)))?;
        let answer = bounded_body(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|problem| failed(format!("answer: {problem}")))?;
        Ok(answer.into())
    }
}

/// `client_assertion_type` of a JWT client assertion (RFC 7523 section 2.2).
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long a client assertion is valid: long enough for one request, short enough that a
/// captured one is soon useless.
const ASSERTION_LIFETIME_SECS: u64 = 60;

/// sessiongate's proof of identity at the endpoint, prepared once.
enum Authentication {
    /// `Basic base64(urlencode(client_id) ":" urlencode(secret))` (RFC 6749 2.3.1).
    Basic(String),
    /// Mutual TLS: only the `client_id` parameter (RFC 8705).
    ClientId,
    /// A fresh JWT assertion per request, signed with `key` (RFC 7523).
    Assertion {
        key: jsonwebtoken::EncodingKey,
        algorithm: jsonwebtoken::Algorithm,
        /// The issuer and the endpoint: who the assertion is for.
        audience: [String; 2],
    },
}

impl Authentication {
    fn of(settings: &IntrospectionSettings) -> Authentication {
        match &settings.client.auth {
            ClientAuth::SecretBasic { secret } => {
                let credentials = format!(
                    "{}:{}",
                    utf8_percent_encode(&settings.client.client_id, FORM),
                    utf8_percent_encode(secret, FORM)
                );
                Authentication::Basic(format!("Basic {}", STANDARD.encode(credentials)))
            }
            // The certificate is presented by the TLS connection; RFC 8705 section 2 asks
            // for the client id in the request.
            ClientAuth::TlsClientAuth { .. } => Authentication::ClientId,
            ClientAuth::PrivateKeyJwt { key_pem, algorithm } => {
                let (key, algorithm) = settings::assertion_key(key_pem, *algorithm)
                    .expect("the key was checked when the config was loaded");
                Authentication::Assertion {
                    key,
                    algorithm,
                    audience: [
                        settings.issuer.to_string(),
                        settings.endpoint.as_str().to_owned(),
                    ],
                }
            }
        }
    }
}

/// A client assertion for one request: `iss` and `sub` the client id, `aud` the issuer and
/// the endpoint, a minute's lifetime and a `jti` never used before by this process.
fn client_assertion(
    client_id: &str,
    audience: &[String; 2],
    key: &jsonwebtoken::EncodingKey,
    algorithm: jsonwebtoken::Algorithm,
) -> Result<String, jsonwebtoken::errors::Error> {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let jti = format!(
        "{:x}-{:x}-{:x}",
        now.as_nanos(),
        std::process::id(),
        SERIAL.fetch_add(1, Ordering::Relaxed)
    );
    let claims = serde_json::json!({
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now.as_secs(),
        "exp": now.as_secs() + ASSERTION_LIFETIME_SECS,
        "jti": jti,
    });
    jsonwebtoken::encode(&jsonwebtoken::Header::new(algorithm), &claims, key)
}

impl std::fmt::Debug for HttpIntrospector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpIntrospector")
            .field("settings", &self.inner.settings)
            .finish()
    }
}
