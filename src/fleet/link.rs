//! One replica's connection to Redis: connected lazily, replaced after a failure, and bounded in
//! time so a dead or partitioned Redis turns into a prompt error, never a hang.
//!
//! Writers (revocations, pins) share one multiplexed connection; the fan-out follower opens its
//! own ([`RedisLink::dedicated`]) because its blocking `XREAD` would hold up every command
//! queued behind it.
//!
//! # A dead connection costs no command
//!
//! - The shared connection's I/O task is ours, so a connection Redis closed (restart, crash,
//!   failover) is seen to be closed *before* a command is sent on it, and replaced.
//! - A command whose connection drops while it is in flight (broken pipe, reset, EOF) is sent
//!   once more on a fresh connection when its caller declared it [`Retry::Idempotent`]. A
//!   timeout is never retried: Redis may be slow rather than gone, and the bound must hold.
//! - After an outage the follower calls [`RedisLink::renew`] before reporting Redis reachable,
//!   so `sessiongate.revocations` SERVING means the writers' connection answers too.
//!
//! # What a failure says
//!
//! A [`LinkError`] states what is known about the command: never sent ([`LinkError::NotSent`]),
//! refused by Redis ([`LinkError::Refused`]), or sent without a reply
//! ([`LinkError::Unanswered`]): then Redis may have run it, or may still (a frozen Redis runs
//! what it had buffered when it resumes). Callers must not report the last case as "not done".

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{Client, ErrorKind, FromRedisValue, RedisError, RedisResult, TlsCertificates};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::revocation::StoreError;

/// After a failed connection attempt, further calls fail at once for this long instead of each
/// waiting for its own attempt: during an outage, new sessions are refused in microseconds.
const FAIL_FAST: Duration = Duration::from_millis(250);

/// Whether a command may be sent a second time, on a fresh connection, after its connection
/// dropped while it was in flight (so Redis may or may not have run it). Each call site states
/// it, because only the caller knows what running the command twice would do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Running it twice leaves Redis, and the answer, as running it once would (reads, `SET NX
    /// GET` of the caller's own value, `XADD` of a revocation whose duplicate is ignored).
    Idempotent,
    /// Sent at most once: a second run would do more than the first (e.g. a counter, or a
    /// `WAIT` whose meaning depends on the connection's earlier writes).
    Never,
}

/// A command or a pipeline of commands, sent as one unit on one connection.
#[derive(Clone, Copy)]
pub enum Request<'a> {
    /// One command.
    Command(&'a redis::Cmd),
    /// Several, written together and answered in order on the same connection.
    Pipeline(&'a redis::Pipeline),
}

impl<'a> From<&'a redis::Cmd> for Request<'a> {
    fn from(command: &'a redis::Cmd) -> Request<'a> {
        Request::Command(command)
    }
}

impl<'a> From<&'a mut redis::Cmd> for Request<'a> {
    fn from(command: &'a mut redis::Cmd) -> Request<'a> {
        Request::Command(command)
    }
}

impl<'a> From<&'a redis::Pipeline> for Request<'a> {
    fn from(pipeline: &'a redis::Pipeline) -> Request<'a> {
        Request::Pipeline(pipeline)
    }
}

impl Request<'_> {
    async fn send<T: FromRedisValue>(
        self,
        connection: &mut MultiplexedConnection,
    ) -> RedisResult<T> {
        match self {
            Request::Command(command) => command.query_async(connection).await,
            Request::Pipeline(pipeline) => pipeline.query_async(connection).await,
        }
    }
}

/// Why a command did not succeed, and what that says about whether Redis ran it.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// It never left this process: no connection could be made (or one just failed and the
    /// link is failing fast). Redis did not run it.
    #[error("{0}")]
    NotSent(String),
    /// Redis answered with an error. For a single command: Redis did not run it.
    #[error("{0}")]
    Refused(String),
    /// It was sent but no reply came (timeout, or the connection was lost, also on the one
    /// retry): Redis may have run it, or may still run it.
    #[error("{0}")]
    Unanswered(String),
}

impl From<LinkError> for StoreError {
    /// For a write: only an unanswered command may still take effect.
    fn from(error: LinkError) -> StoreError {
        match error {
            LinkError::NotSent(why) | LinkError::Refused(why) => StoreError::Unavailable(why),
            LinkError::Unanswered(why) => StoreError::Unconfirmed(why),
        }
    }
}

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
    live: Option<Shared>,
    retry_at: Option<Instant>,
    /// Counts connections made, so a failure discards only the connection it happened on, not
    /// a fresh one another caller already put in its place.
    generation: u64,
}

/// The shared connection and the task doing its I/O.
struct Shared {
    connection: MultiplexedConnection,
    /// Ends when the connection does (Redis closed it, or a read or write failed): a finished
    /// task is a dead connection, replaced before anything is sent on it.
    io: JoinHandle<()>,
    generation: u64,
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

    /// `SET key value NX GET PX ttl`: records `value` under `key` for `ttl` unless a value is
    /// there already, and answers what was there (`None`: this call recorded it). The one
    /// first-writer-wins claim of the fleet (session pins, DPoP proofs). Safe to resend after
    /// a lost connection: a resend finds the caller's own value if the first attempt landed.
    pub async fn claim_first(
        &self,
        key: String,
        value: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<String>, LinkError> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.query(
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("NX")
                .arg("GET")
                .arg("PX")
                .arg(ttl_ms),
            Retry::Idempotent,
        )
        .await
    }

    /// Runs `request` on the shared connection. A connection found closed is replaced before
    /// sending; a connection that drops with the request in flight is discarded, and with
    /// [`Retry::Idempotent`] the request is sent once more on a fresh one. Each step is bounded
    /// by the link's timeout, so a call takes at most three of them (send, reconnect, resend).
    pub async fn query<'r, T: FromRedisValue>(
        &self,
        request: impl Into<Request<'r>>,
        retry: Retry,
    ) -> Result<T, LinkError> {
        let request = request.into();
        let (mut connection, generation) = self.shared().await?;
        let first = match request.send(&mut connection).await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if !is_link_failure(&first) {
            return Err(LinkError::Refused(self.explain(&first)));
        }
        self.discard(generation).await;
        if retry == Retry::Never || !first.is_connection_dropped() {
            return Err(LinkError::Unanswered(self.explain(&first)));
        }
        tracing::debug!(
            redis = self.described,
            error = %first,
            "Redis connection lost with a command in flight; sending it once more on a fresh \
             connection"
        );
        let (mut connection, generation) = self.shared().await.map_err(|reconnect| {
            LinkError::Unanswered(format!(
                "{}; reconnecting to send it again: {reconnect}",
                self.explain(&first)
            ))
        })?;
        match request.send(&mut connection).await {
            Ok(value) => Ok(value),
            Err(again) => {
                if is_link_failure(&again) {
                    self.discard(generation).await;
                }
                Err(LinkError::Unanswered(format!(
                    "{}; sent again on a fresh connection: {again}",
                    self.explain(&first)
                )))
            }
        }
    }

    /// Replaces the shared connection with a fresh one and checks that it answers `PING`.
    /// Called when Redis is back after an outage, before recovery is reported: the old
    /// connection may be half-dead in ways only the next command would discover.
    pub async fn renew(&self) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        state.live = None;
        state.retry_at = None;
        let (mut connection, _) = self.connect(&mut state).await.map_err(StoreError::from)?;
        let pong: Result<String, RedisError> =
            redis::cmd("PING").query_async(&mut connection).await;
        match pong {
            Ok(_) => Ok(()),
            Err(error) => {
                state.live = None;
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
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(self.timeout)
            .set_response_timeout(response_timeout);
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.unavailable(&e))
    }

    /// A `StoreError` naming this Redis, and what to fix when the cause is the configuration.
    pub fn unavailable(&self, error: &RedisError) -> StoreError {
        StoreError::Unavailable(self.explain(error))
    }

    /// `error`, naming this Redis and what to fix when the cause is the configuration.
    fn explain(&self, error: &RedisError) -> String {
        let hint = match misconfiguration(error) {
            Some(hint) => format!(" ({hint})"),
            None => String::new(),
        };
        format!("{}: {error}{hint}", self.described)
    }

    /// The shared connection (and its generation), connecting when there is none or the one
    /// held has closed.
    async fn shared(&self) -> Result<(MultiplexedConnection, u64), LinkError> {
        let mut state = self.state.lock().await;
        if let Some(live) = &state.live {
            if !live.io.is_finished() {
                return Ok((live.connection.clone(), live.generation));
            }
            tracing::debug!(
                redis = self.described,
                "Redis closed the shared connection; replacing it before use"
            );
            state.live = None;
        }
        if state.retry_at.is_some_and(|at| Instant::now() < at) {
            return Err(LinkError::NotSent(format!(
                "{}: unreachable (last attempt failed; retrying shortly)",
                self.described
            )));
        }
        self.connect(&mut state).await
    }

    /// Connects (within the timeout) and installs the connection as the shared one.
    async fn connect(&self, state: &mut State) -> Result<(MultiplexedConnection, u64), LinkError> {
        let attempt = tokio::time::timeout(
            self.timeout,
            self.client
                .create_multiplexed_tokio_connection_with_response_timeout(self.timeout),
        )
        .await
        .unwrap_or_else(|_elapsed| {
            Err(RedisError::from(std::io::Error::from(
                std::io::ErrorKind::TimedOut,
            )))
        });
        match attempt {
            Ok((connection, io)) => {
                state.retry_at = None;
                state.generation += 1;
                state.live = Some(Shared {
                    connection: connection.clone(),
                    io: tokio::spawn(io),
                    generation: state.generation,
                });
                Ok((connection, state.generation))
            }
            Err(error) => {
                state.retry_at = Some(Instant::now() + FAIL_FAST);
                Err(LinkError::NotSent(self.explain(&error)))
            }
        }
    }

    /// Forgets the shared connection if it is still the one of `generation`.
    async fn discard(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if state.live.as_ref().map(|live| live.generation) == Some(generation) {
            state.live = None;
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

/// Whether `error` means the connection itself failed (rather than Redis refusing a command).
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
