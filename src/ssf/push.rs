//! The RFC 8935 push endpoint: `POST <push_path>` with one `application/secevent+jwt` body.
//!
//! Thin: it checks the HTTP envelope (media type, size), hands the SET to the
//! [`SsfReceiver`], and maps the outcome onto RFC 8935 section 2: `202 Accepted` with an empty
//! body once the revocations are durable (replays included), `400` with `{"err", "description"}`
//! for a refused SET, `503` when the store is down, so the transmitter retries (its body says
//! whether the revocations were certainly not stored, or sent without confirmation and may
//! still apply).
//!
//! There is no HTTP authentication on this route: a SET authenticates itself by its signature,
//! which is what RFC 8935 leaves to the receiver, and what a transmitter can always provide.
//! So every check but the signature runs first, and signatures are verified within a budget
//! per sending address ([`super::receiver::PUSH_BUDGET`]): a source over it gets `429` with
//! `Retry-After`, and a transmitter retries.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::{Receipt, ReceiveError, SetError, SsfReceiver};
use crate::logging::LinesPerSecond;
use crate::revocation::StoreError;
use sessiongate_check::budget::CallerKey;
use sessiongate_core::time::UnixTime;

/// Largest SET accepted. A CAEP SET is well under 2 KiB; 64 KiB leaves room for complex subjects
/// and several events while bounding what an unauthenticated sender can make us buffer.
pub const MAX_SET_BYTES: usize = 64 * 1024;

/// The media type of a pushed SET (RFC 8935 section 2).
const SET_MEDIA_TYPE: &str = "application/secevent+jwt";

/// The push endpoint at `push_path`, to be merged into the admin listener's router.
pub fn router(receiver: Arc<SsfReceiver>, push_path: &str) -> Router {
    Router::new()
        .route(push_path, post(push))
        .layer(DefaultBodyLimit::max(MAX_SET_BYTES))
        .with_state(receiver)
}

async fn push(
    State(receiver): State<Arc<SsfReceiver>>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // The admin listener records each connection's peer; without it (a router served some
    // other way) all senders share one budget.
    let source = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(CallerKey::Unknown, |ConnectInfo(peer)| {
            CallerKey::Address(peer.ip().to_string().into())
        });
    if !is_set_media_type(headers.get(header::CONTENT_TYPE)) {
        return refuse(&SetError::invalid(format!(
            "Content-Type must be {SET_MEDIA_TYPE}"
        )));
    }
    let Ok(body) = body else {
        return refuse(&SetError::invalid(format!(
            "body is unreadable or larger than {MAX_SET_BYTES} bytes"
        )));
    };
    let Ok(set) = std::str::from_utf8(&body) else {
        return refuse(&SetError::invalid("body is not UTF-8"));
    };
    match receiver
        .receive_from(set.trim(), &source, UnixTime::now())
        .await
    {
        Ok(Receipt::Applied { .. } | Receipt::Replayed) => StatusCode::ACCEPTED.into_response(),
        Err(ReceiveError::Refused(error)) => refuse(&error),
        Err(ReceiveError::Store(error)) => {
            // 503 either way: the transmitter retries, and applying a revocation again is
            // harmless. The body says whether this attempt may still take effect.
            let body = match error {
                StoreError::Unconfirmed(_) => {
                    tracing::error!(%error, "SET not acknowledged: revocations not confirmed by the store; they may still apply");
                    "revocation store did not confirm; the revocations may still apply; retry\n"
                }
                StoreError::Unavailable(_) | StoreError::Corrupt(_) => {
                    tracing::error!(%error, "SET not acknowledged: revocations could not be stored");
                    "revocation store unavailable; retry\n"
                }
            };
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, HeaderValue::from_static("1"))],
                body,
            )
                .into_response()
        }
        Err(ReceiveError::Throttled(throttled)) => {
            let seconds = throttled.retry_after.as_millis().div_ceil(1000).max(1);
            tracing::debug!(source = ?source, "SET not verified: the source's verification budget is spent");
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, HeaderValue::from(seconds as u64))],
                "too many SETs to verify; retry later\n",
            )
                .into_response()
        }
    }
}

/// `application/secevent+jwt`, parameters allowed, case-insensitive (RFC 9110 section 8.3.1).
fn is_set_media_type(value: Option<&HeaderValue>) -> bool {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(SET_MEDIA_TYPE))
}

/// At most this many "SET refused" lines a second: anyone who can reach the endpoint can
/// send SETs that are refused.
const REFUSED_LINES_PER_SECOND: u64 = 10;

/// RFC 8935 section 2.3: 400 with a JSON body naming the error.
fn refuse(error: &SetError) -> Response {
    static LINES: LinesPerSecond = LinesPerSecond::new();
    if let Some(dropped) = LINES.admit(REFUSED_LINES_PER_SECOND, UnixTime::now().as_secs()) {
        let suppressed = (dropped > 0).then_some(dropped);
        tracing::warn!(err = error.code(), description = %error, suppressed, "SET refused");
    }
    let body = serde_json::json!({ "err": error.code(), "description": error.to_string() });
    (
        StatusCode::BAD_REQUEST,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::revocation::Revocations;
    use crate::ssf::testing::{MemoryStore, Set, transmitter};

    const PATH: &str = "/ssf/events";

    async fn app() -> (Router, Arc<Revocations>) {
        app_with(|receiver| receiver).await
    }

    /// The push endpoint over a receiver set up by `setup`, and the revocations it feeds.
    async fn app_with(
        setup: impl FnOnce(SsfReceiver) -> SsfReceiver,
    ) -> (Router, Arc<Revocations>) {
        let revocations = Arc::new(
            Revocations::open(
                Box::new(MemoryStore::default()),
                Duration::from_secs(3600),
                UnixTime::now(),
            )
            .await
            .unwrap(),
        );
        let receiver = SsfReceiver::with_transmitters(vec![transmitter()], revocations.clone());
        (router(Arc::new(setup(receiver)), PATH), revocations)
    }

    async fn post(
        app: &Router,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> (StatusCode, String) {
        let mut request = Request::post(PATH);
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let response = app
            .clone()
            .oneshot(request.body(body.into()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    fn err_of(body: &str) -> String {
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(json["description"].is_string(), "{body}");
        json["err"].as_str().unwrap().to_owned()
    }

    fn fresh_set() -> Set {
        Set::at(UnixTime::now().as_secs())
    }

    #[tokio::test]
    async fn an_accepted_set_is_202_with_an_empty_body() {
        let (app, revocations) = app().await;
        let (status, body) = post(&app, Some(SET_MEDIA_TYPE), fresh_set().sign()).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert!(body.is_empty());
        assert_eq!(revocations.current().len(), 1);
    }

    #[tokio::test]
    async fn a_replay_is_202_and_changes_nothing() {
        let (app, revocations) = app().await;
        let set = fresh_set().sign();
        post(&app, Some(SET_MEDIA_TYPE), set.clone()).await;
        let (status, _) = post(&app, Some(SET_MEDIA_TYPE), set).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(revocations.current().len(), 1);
    }

    #[tokio::test]
    async fn another_media_type_is_an_invalid_request() {
        let (app, revocations) = app().await;
        for content_type in [None, Some("application/json"), Some("application/jwt")] {
            let (status, body) = post(&app, content_type, fresh_set().sign()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{content_type:?}");
            assert_eq!(err_of(&body), "invalid_request");
        }
        let (status, _) = post(
            &app,
            Some("Application/SecEvent+JWT; charset=utf-8"),
            fresh_set().sign(),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(revocations.current().len(), 1);
    }

    #[tokio::test]
    async fn an_oversized_body_is_an_invalid_request() {
        let (app, _) = app().await;
        let (status, body) = post(&app, Some(SET_MEDIA_TYPE), "a".repeat(MAX_SET_BYTES + 1)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(err_of(&body), "invalid_request");
    }

    #[tokio::test]
    async fn refusals_carry_the_rfc_8935_error_code() {
        let (app, revocations) = app().await;
        for (set, expected) in [
            ("not a jwt".to_owned(), "invalid_request"),
            (fresh_set().unsigned(), "authentication_failed"),
            (
                fresh_set().signed_by_untrusted_key(),
                "authentication_failed",
            ),
            (fresh_set().kid("nope").sign(), "invalid_key"),
            (
                fresh_set().claim("iss", "https://evil.example").sign(),
                "invalid_issuer",
            ),
            (fresh_set().claim("aud", "other").sign(), "invalid_audience"),
            (
                Set::at(UnixTime::now().as_secs() - 3600).sign(),
                "invalid_request",
            ),
        ] {
            let (status, body) = post(&app, Some(SET_MEDIA_TYPE), set).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{expected}: {body}");
            assert_eq!(err_of(&body), expected);
        }
        assert!(
            revocations.current().is_empty(),
            "refused SETs change nothing"
        );
    }

    async fn post_from(app: &Router, source: &str, body: String) -> (StatusCode, HeaderMap) {
        let mut request = Request::post(PATH)
            .header(header::CONTENT_TYPE, SET_MEDIA_TYPE)
            .body(Body::from(body))
            .unwrap();
        let peer: SocketAddr = source.parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(peer));
        let response = app.clone().oneshot(request).await.unwrap();
        (response.status(), response.headers().clone())
    }

    #[tokio::test]
    async fn a_source_over_its_verification_budget_gets_429_and_others_do_not() {
        let one = sessiongate_check::budget::Rate {
            per_second: 1,
            burst: 2,
        };
        let (app, revocations) = app_with(|receiver| {
            receiver.with_budget(sessiongate_check::budget::BudgetLimits {
                per_caller: one,
                total: sessiongate_check::budget::Rate {
                    per_second: 100,
                    burst: 100,
                },
                callers: 10,
            })
        })
        .await;
        let attacker = "192.0.2.66:40000";
        for _ in 0..2 {
            let (status, _) =
                post_from(&app, attacker, fresh_set().signed_by_untrusted_key()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "verified, refused");
        }
        let (status, headers) =
            post_from(&app, attacker, fresh_set().signed_by_untrusted_key()).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers[header::RETRY_AFTER], "1");
        // A SET that fails a cheap check is refused as before: no signature, no budget.
        let stale = Set::at(UnixTime::now().as_secs() - 3600).signed_by_untrusted_key();
        assert_eq!(
            post_from(&app, attacker, stale).await.0,
            StatusCode::BAD_REQUEST
        );
        // The real transmitter pushes from elsewhere, with a budget of its own.
        let (status, _) = post_from(&app, "198.51.100.7:443", fresh_set().sign()).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        assert_eq!(revocations.current().len(), 1);
    }

    /// The push endpoint over a store failing as `fail` sets it up.
    async fn app_over_failing(fail: impl FnOnce(&MemoryStore)) -> Router {
        let store = MemoryStore::default();
        fail(&store);
        let revocations = Arc::new(
            Revocations::open(Box::new(store), Duration::from_secs(3600), UnixTime::now())
                .await
                .unwrap(),
        );
        let receiver = SsfReceiver::with_transmitters(vec![transmitter()], revocations);
        router(Arc::new(receiver), PATH)
    }

    #[tokio::test]
    async fn a_store_failure_is_503_not_acknowledged() {
        let app = app_over_failing(|store| {
            store
                .failing
                .store(true, std::sync::atomic::Ordering::SeqCst)
        })
        .await;
        let (status, body) = post(&app, Some(SET_MEDIA_TYPE), fresh_set().sign()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "revocation store unavailable; retry\n");
    }

    #[tokio::test]
    async fn an_unconfirmed_store_write_is_503_saying_it_may_still_apply() {
        let app = app_over_failing(|store| {
            store
                .unconfirmed
                .store(true, std::sync::atomic::Ordering::SeqCst)
        })
        .await;
        let (status, body) = post(&app, Some(SET_MEDIA_TYPE), fresh_set().sign()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            "revocation store did not confirm; the revocations may still apply; retry\n"
        );
    }
}
