//! The admin and ops listeners' server: axum routes over HTTP/1.1 and HTTP/2, every
//! connection bounded.
//!
//! `axum::serve` gives hyper no timer, so hyper's header read timeout never applies, and
//! nothing bounds a request body: a caller sending headers or a body a byte at a time held a
//! connection (and, under a cap, a place) as long as it liked. Here, per connection:
//! - its place under the listener's [`ConnectionCap`] (over the cap it is closed at once);
//! - its peer address, as axum's `ConnectInfo<SocketAddr>`, in every request's extensions;
//! - HTTP/1: each request's headers must arrive within `handshake_timeout` of the connection
//!   being ready for them (hyper's `header_read_timeout`, which also ends a keep-alive
//!   connection idle that long);
//! - any connection with no request in flight for `handshake_timeout` is asked to close, and
//!   dropped `handshake_timeout` later if it has not: HTTP/2 has no header timeout, and a
//!   connection that sent only its preface, or half a header block, has no request in flight;
//! - a request body must arrive within `body_timeout` of first stalling ([`TimedBody`]); a
//!   handler reading it then gets an error and answers (the SSF push endpoint: 400);
//! - on stop: no new connection, every open one is asked to close, and those still open
//!   `grace` later are dropped.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ConnectInfo;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Sleep;

use crate::connections::{ConnectionCap, Slot};
use crate::shutdown::StopSignal;

/// How long to wait before accepting again after `accept` failed (e.g. out of file
/// descriptors), so a persistent failure does not spin a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What bounds one listener's connections.
#[derive(Clone, Debug)]
pub struct HttpBounds {
    /// Most connections held at once (`limits.max_connections.<listener>`).
    pub cap: ConnectionCap,
    /// Request headers' deadline and the longest idle time (`limits.handshake_timeout`).
    pub handshake_timeout: Duration,
    /// How long a request body may stall (`limits.body_timeout`).
    pub body_timeout: Duration,
}

/// Serves `router` on `listener` within `bounds` until `stop` fires, then lets open
/// connections finish for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    bounds: HttpBounds,
    stop: StopSignal,
    grace: Duration,
) -> io::Result<()> {
    let name = bounds.cap.listener();
    let mut connections = JoinSet::new();
    let stopped = stop.stopped();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(listener = name, %error, "accepting a connection failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                // Over the cap the connection is closed at once (dropped): the loop never waits.
                let Some(slot) = bounds.cap.admit() else { continue };
                // Small responses must not wait for a delayed ACK.
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(listener = name, %error, "could not disable Nagle");
                }
                connections.spawn(serve_connection(
                    stream,
                    peer,
                    slot,
                    router.clone(),
                    bounds.clone(),
                    stop.clone(),
                ));
            }
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            listener = name,
            "drain grace of {grace:?} elapsed; closing remaining connections"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Serves one connection until it ends, stalls, idles or `stop` fires.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    router: axum::Router,
    bounds: HttpBounds,
    stop: StopSignal,
) {
    let (in_flight, mut idle) = watch::channel(0_usize);
    let in_flight = Arc::new(in_flight);
    let body_timeout = bounds.body_timeout;
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let busy = InFlight::begin(&in_flight);
        let mut request = request.map(|body| TimedBody::new(body, body_timeout));
        // Handlers may ask who is calling (`ConnectInfo`, as `axum::serve` provides it): the
        // SSF push endpoint budgets signature verifications per sending address.
        request.extensions_mut().insert(ConnectInfo(peer));
        let call = tower::Service::call(&mut router.clone(), request);
        async move {
            let response = call.await;
            drop(busy);
            Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(bounds.handshake_timeout);
    builder.http2().timer(TokioTimer::new());
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        served = connection.as_mut() => {
            if let Err(error) = served {
                let stalled = error
                    .downcast_ref::<hyper::Error>()
                    .is_some_and(hyper::Error::is_timeout);
                if stalled {
                    slot.timed_out();
                } else {
                    tracing::debug!(listener = bounds.cap.listener(), %error, "connection failed");
                }
            }
            return;
        }
        () = idle_for(&mut idle, bounds.handshake_timeout) => slot.timed_out(),
        () = stop.stopped() => {}
    }
    connection.as_mut().graceful_shutdown();
    // A caller that does not let go is dropped.
    let _ = tokio::time::timeout(bounds.handshake_timeout, connection).await;
}

/// Completes once no request has been in flight for `timeout`.
async fn idle_for(in_flight: &mut watch::Receiver<usize>, timeout: Duration) {
    loop {
        if in_flight.wait_for(|count| *count == 0).await.is_err() {
            return;
        }
        let busy = tokio::time::timeout(timeout, in_flight.wait_for(|count| *count > 0)).await;
        if busy.is_err() {
            return;
        }
    }
}

/// One request in flight on its connection, until dropped.
struct InFlight(Arc<watch::Sender<usize>>);

impl InFlight {
    fn begin(count: &Arc<watch::Sender<usize>>) -> InFlight {
        count.send_modify(|count| *count += 1);
        InFlight(Arc::clone(count))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|count| *count -= 1);
    }
}

/// A request body that fails once it has stalled for longer than its timeout, so a handler
/// reading it answers instead of waiting for a caller that sends a byte now and then. The
/// clock starts at the first stall (a body that arrives at once never starts a timer) and is
/// not reset by later progress: the whole rest of the body must arrive within the timeout.
#[derive(Debug)]
pub struct TimedBody<B> {
    body: B,
    timeout: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<B> TimedBody<B> {
    /// `body`, bounded by `timeout`.
    pub fn new(body: B, timeout: Duration) -> TimedBody<B> {
        TimedBody {
            body,
            timeout,
            deadline: None,
        }
    }
}

/// The error of a [`TimedBody`] that stalled too long.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within limits.body_timeout ({0:?})")]
pub struct BodyTimedOut(pub Duration);

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let timeout = this.timeout;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimedOut(timeout).into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
