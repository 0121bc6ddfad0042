//! What came back through Envoy, and the assertions the end-to-end tests make on it.
//!
//! A deny is Envoy relaying sessiongate's `denied_response` (status, `www-authenticate`, JSON
//! body with a `reason`); an allow is the echo upstream's picture of the forwarded request. Each
//! assertion prints the whole reply when it fails, so a failing case explains itself.

use std::fmt;

use serde_json::Value;

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    /// Parsed JSON body, or `Value::String` with the raw text if it was not JSON.
    pub body: Value,
}

impl Reply {
    pub async fn read(response: reqwest::Response) -> Reply {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("read response body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            headers,
            body,
        }
    }

    /// True when the echo upstream produced this reply, i.e. Envoy let the request through.
    pub fn reached_upstream(&self) -> bool {
        self.headers.contains_key("x-echo")
    }

    pub fn www_authenticate(&self) -> Option<&str> {
        self.headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
    }

    pub fn reason(&self) -> Option<&str> {
        self.body.get("reason").and_then(Value::as_str)
    }

    /// The request was allowed and reached the upstream.
    pub fn assert_allowed(&self) -> &Self {
        assert!(
            self.status == 200 && self.reached_upstream(),
            "expected the request to be allowed through to the upstream, got {self}"
        );
        self
    }

    /// Denied with this status and reason, and not forwarded.
    pub fn assert_denied(&self, status: u16, reason: &str) -> &Self {
        assert!(
            self.status == status && self.reason() == Some(reason) && !self.reached_upstream(),
            "expected a {status} deny with reason `{reason}`, got {self}"
        );
        self
    }

    /// The `www-authenticate` challenge is exactly `expected`.
    pub fn assert_challenge(&self, expected: &str) -> &Self {
        assert_eq!(
            self.www_authenticate(),
            Some(expected),
            "unexpected www-authenticate in {self}"
        );
        self
    }

    /// The `www-authenticate` challenge starts with `prefix` (the rest is a description).
    pub fn assert_challenge_starts_with(&self, prefix: &str) -> &Self {
        assert!(
            self.www_authenticate()
                .is_some_and(|c| c.starts_with(prefix)),
            "expected www-authenticate starting with `{prefix}`, got {self}"
        );
        self
    }

    /// The challenge contains `part`, e.g. a `max_age="28800"` parameter.
    pub fn assert_challenge_contains(&self, part: &str) -> &Self {
        assert!(
            self.www_authenticate().is_some_and(|c| c.contains(part)),
            "expected www-authenticate containing `{part}`, got {self}"
        );
        self
    }

    /// No challenge: the caller is authenticated but not permitted (plain 403s).
    pub fn assert_no_challenge(&self) -> &Self {
        assert!(
            self.www_authenticate().is_none(),
            "expected no www-authenticate, got {self}"
        );
        self
    }

    /// Every value the upstream received for `name` (lower-case).
    pub fn upstream_header(&self, name: &str) -> Vec<String> {
        self.body
            .get("headers")
            .and_then(|h| h.get(name))
            .and_then(Value::as_array)
            .map(|values| {
                values
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The one value the upstream received for `name`; fails on none or several.
    pub fn upstream_single(&self, name: &str) -> String {
        let values = self.upstream_header(name);
        assert_eq!(
            values.len(),
            1,
            "expected exactly one `{name}` at the upstream, got {values:?} in {self}"
        );
        values.into_iter().next().expect("one value")
    }

    /// Names of all `x-sessiongate-*` headers the upstream received.
    pub fn upstream_sessiongate_headers(&self) -> Vec<String> {
        self.body
            .get("headers")
            .and_then(Value::as_object)
            .map(|headers| {
                headers
                    .keys()
                    .filter(|name| name.starts_with("x-sessiongate-"))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "HTTP {}", self.status)?;
        for (name, value) in &self.headers {
            writeln!(f, "{name}: {}", String::from_utf8_lossy(value.as_bytes()))?;
        }
        write!(f, "\n{}", self.body)
    }
}

/// `request.reply().await`: send through Envoy and read the [`Reply`]. A transport error (TLS
/// handshake refused, connection reset) fails the test with the error chain.
pub trait SendExt {
    async fn reply(self) -> Reply;
}

impl SendExt for reqwest::RequestBuilder {
    async fn reply(self) -> Reply {
        match self.send().await {
            Ok(response) => Reply::read(response).await,
            Err(error) => {
                let mut message = error.to_string();
                let mut source = std::error::Error::source(&error);
                while let Some(cause) = source {
                    message.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                panic!("request failed: {message}")
            }
        }
    }
}
