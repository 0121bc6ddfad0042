//! One replica's connection to Redis: connected lazily, re-connected after a failure, and
//! bounded in time so a dead or partitioned Redis turns into a prompt error, never a hang.
//!
//! Writers (revocations, pins) share one multiplexed connection; the fan-out follower opens its
//! own ([`RedisLink::dedicated`]) because its blocking `XREAD` would hold up every command
//! queued behind it.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, ErrorKind, FromRedisValue, RedisError, TlsCertificates,
};
use tokio::time::Instant;

use super::super::StoreError;

/// After a failed connection attempt, further calls fail at once for this long instead of each
/// waiting for its own attempt: during an outage, new sessions are refused in microseconds.
const FAIL_FAST: Duration = Duration::from_millis(250);

/// A lazily (re)connected link to one Redis.
pub struct RedisLink {
    client: Client,
    /// `redis host:port/db` without credentials, for logs and errors.
    described: String,
    /// Bound on connecting and on each command's reply.
    timeout: Duration,
    /// The shared connection, if one is believed healthy, and when to try again after a
    /// failure. A tokio `Mutex` because connecting awaits while holding it (one attempt at a
    /// time, not one per waiting request).
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    connection: Option<MultiplexedConnection>,
    retry_at: Option<Instant>,
}

impl RedisLink {
    /// A link to `url` (`redis://` or `rediss://`, credentials allowed); connects on first use.
    /// With `tls_ca` (PEM), Redis' certificate must chain to it instead of to the system trust
    /// store: platform teams often run Redis with a private CA.
    pub fn new(
        url: &str,
        tls_ca: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<RedisLink, RedisError> {
        let client = match tls_ca {
            Some(pem) => Client::build_with_tls(
                url,
                TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.to_vec()),
                },
            )?,
            None => Client::open(url)?,
        };
        let info = client.get_connection_info();
        let scheme = match info.addr {
            redis::ConnectionAddr::TcpTls { .. } => "rediss",
            _ => "redis",
        };
        let described = format!("{scheme}://{}/{}", info.addr, info.redis.db);
        Ok(RedisLink {
            client,
            described,
            timeout,
            state: tokio::sync::Mutex::new(State::default()),
        })
    }

    /// Where it points, without credentials.
    pub fn describe(&self) -> &str {
        &self.described
    }

    /// The bound on connecting and on each reply.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `command` on the shared connection. A connection-level failure drops the
    /// connection, so the next call reconnects.
    pub async fn query<T: FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, StoreError> {
        let mut connection = self.shared().await?;
        match command.query_async(&mut connection).await {
            Ok(value) => Ok(value),
            Err(error) => {
                if is_link_failure(&error) {
                    self.state.lock().await.connection = None;
                }
                Err(self.unavailable(&error))
            }
        }
    }

    /// A connection of its own whose replies may take up to `response_timeout` (for blocking
    /// reads).
    pub async fn dedicated(
        &self,
        response_timeout: Duration,
    ) -> Result<MultiplexedConnection, StoreError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(response_timeout);
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.unavailable(&e))
    }

    /// A `StoreError` naming this Redis, and what to fix when the cause is the configuration.
    pub fn unavailable(&self, error: &RedisError) -> StoreError {
        let hint = match misconfiguration(error) {
            Some(hint) => format!(" ({hint})"),
            None => String::new(),
        };
        StoreError::Unavailable(format!("{}: {error}{hint}", self.described))
    }

    async fn shared(&self) -> Result<MultiplexedConnection, StoreError> {
        let mut state = self.state.lock().await;
        if let Some(connection) = &state.connection {
            return Ok(connection.clone());
        }
        if state.retry_at.is_some_and(|at| Instant::now() < at) {
            return Err(StoreError::Unavailable(format!(
                "{}: unreachable (last attempt failed; retrying shortly)",
                self.described
            )));
        }
        match self.dedicated(self.timeout).await {
            Ok(connection) => {
                state.retry_at = None;
                state.connection = Some(connection.clone());
                Ok(connection)
            }
            Err(error) => {
                state.retry_at = Some(Instant::now() + FAIL_FAST);
                Err(error)
            }
        }
    }
}

/// What an operator must change when `error` is not an outage but a refusal that will repeat
/// until the configuration changes. Never repeats the URL: it may hold the password.
fn misconfiguration(error: &RedisError) -> Option<&'static str> {
    if error.kind() == ErrorKind::AuthenticationFailed {
        return Some("Redis refused the credentials in revocation.url");
    }
    if error.code() == Some("NOAUTH") {
        return Some(
            "Redis requires a password: put it in revocation.url, rediss://:PASSWORD@host",
        );
    }
    let text = error.to_string();
    if text.contains("UnknownIssuer") || text.contains("invalid peer certificate") {
        return Some(
            "Redis' TLS certificate is not trusted: set revocation.tls_ca_file to the CA that \
             signed it",
        );
    }
    None
}

/// Whether `error` means the connection itself is gone (rather than a command being refused).
pub fn is_link_failure(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("redis", &self.described)
            .finish()
    }
}
