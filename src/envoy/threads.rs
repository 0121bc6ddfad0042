//! Serving each ext_authz connection wholly on one thread, the way Envoy runs its own workers.
//!
//! Envoy keeps a few long-lived HTTP/2 connections to sessiongate (one per Envoy worker) and
//! multiplexes every Check over them. On a work-stealing runtime the connection's driver and
//! its per-call tasks end up on different threads, and every call then crosses threads several
//! times: HTTP/2's per-connection state lock is contended, threads park and wake through futexes
//! (measured on a cached check: a quarter of the server's CPU, against none on one thread).
//! Here each accepted connection is handed, round robin, to one of `threads` single-threaded
//! runtimes and stays there: no lock is contended, no cross-thread wakeups, and the connections
//! still spread over every core. A signature verification runs on the thread of the connection
//! that needed it.
//!
//! Everything else (admin, ops, key refresh, Redis) stays on the process's main runtime; the
//! connection threads reach it through the same channels and locks as before.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::{Stream, StreamExt as _};

use super::connection::Bounded;
use super::server::SingleBufferWrites;
use crate::connections::{ConnectionCap, Slot};
use crate::shutdown::StopSignal;

/// One ext_authz connection as a thread serves it.
pub type Connection = SingleBufferWrites<Bounded<TcpStream>>;

/// The connections one thread serves, ready for `Server::serve_with_incoming_shutdown`.
pub type Connections = Pin<Box<dyn Stream<Item = io::Result<Connection>> + Send>>;

/// What bounds the listener's connections.
#[derive(Clone, Debug)]
pub struct ConnectionBounds {
    /// Most connections held at once (`limits.max_connections.grpc`); beyond, a new one is
    /// closed at once.
    pub cap: ConnectionCap,
    /// How long a new connection has to send the HTTP/2 preface and SETTINGS
    /// (`limits.handshake_timeout`).
    pub handshake_timeout: Duration,
}

/// How long to wait before accepting again after `accept` failed (e.g. out of file
/// descriptors), so a persistent failure does not spin a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How many connection threads to run by default: one per CPU this process may use (its
/// cgroup quota included).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Accepts on `listener` until `stop` fires, serving each connection within `bounds` on one of
/// `threads` threads with `serve` (called once per thread, on that thread, with its
/// connections and the stop signal). Returns when every thread's server has returned; the
/// first error, if any.
pub async fn serve_on_threads<F, Fut>(
    listener: TcpListener,
    threads: usize,
    bounds: ConnectionBounds,
    stop: StopSignal,
    serve: F,
) -> anyhow::Result<()>
where
    F: Fn(Connections, StopSignal) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), tonic::transport::Error>> + 'static,
{
    let serve = Arc::new(serve);
    let mut handoffs = Vec::new();
    let mut finished = Vec::new();
    for index in 0..threads.max(1) {
        let (handoff, accepted) = mpsc::unbounded_channel::<(std::net::TcpStream, Slot)>();
        let (done, finish) = oneshot::channel();
        let (serve, stop) = (Arc::clone(&serve), stop.clone());
        let handshake_timeout = bounds.handshake_timeout;
        std::thread::Builder::new()
            .name(format!("sessiongate-conn-{index}"))
            .spawn(move || {
                let _ = done.send(serve_thread(accepted, handshake_timeout, stop, &*serve));
            })
            .context("starting a connection thread")?;
        handoffs.push(handoff);
        finished.push(finish);
    }
    let stopped = stop.stopped();
    tokio::pin!(stopped);
    let mut next = 0;
    loop {
        let accepted = tokio::select! {
            () = &mut stopped => break,
            accepted = listener.accept() => accepted,
        };
        // Over the cap the connection is closed at once (dropped): the loop never waits.
        let accepted = accepted.map(|(stream, _)| bounds.cap.admit().map(|slot| (stream, slot)));
        let (stream, slot) = match accepted {
            Ok(Some(admitted)) => admitted,
            Ok(None) => continue,
            Err(error) => {
                tracing::warn!(%error, "accepting a gRPC connection failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Nagle's algorithm off: a denial is several small HTTP/2 frames, and with Nagle on,
        // Envoy's delayed ACK held the last one back ~40 ms.
        let stream = match stream.set_nodelay(true).and_then(|()| stream.into_std()) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "accepting a gRPC connection failed");
                continue;
            }
        };
        if handoffs[next].send((stream, slot)).is_err() {
            anyhow::bail!("connection thread {next} stopped unexpectedly");
        }
        next = (next + 1) % handoffs.len();
    }
    drop(listener);
    let mut outcome = Ok(());
    for finish in finished {
        let result = finish
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("a connection thread panicked")));
        if outcome.is_ok() {
            outcome = result;
        }
    }
    // The hand-off channels stay open until every server has drained on the stop signal.
    drop(handoffs);
    outcome
}

/// One connection thread: a single-threaded runtime serving what `accepted` hands it.
fn serve_thread<F, Fut>(
    accepted: mpsc::UnboundedReceiver<(std::net::TcpStream, Slot)>,
    handshake_timeout: Duration,
    stop: StopSignal,
    serve: &F,
) -> anyhow::Result<()>
where
    F: Fn(Connections, StopSignal) -> Fut,
    Fut: Future<Output = Result<(), tonic::transport::Error>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a connection thread's runtime")?;
    runtime.block_on(async {
        // Registered with this thread's reactor, so its I/O never wakes another thread.
        let connections = UnboundedReceiverStream::new(accepted).map(move |(stream, slot)| {
            TcpStream::from_std(stream).map(|stream| {
                SingleBufferWrites::new(Bounded::new(stream, slot, handshake_timeout))
            })
        });
        serve(Box::pin(connections), stop)
            .await
            .context("gRPC server failed")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connections are dealt round robin, each stays on the thread that took it, and the
    /// whole server returns once the stop signal has ended every thread's server.
    #[tokio::test]
    async fn connections_are_dealt_round_robin_and_served_on_their_thread() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (fire, fired) = oneshot::channel::<()>();
        let stop = StopSignal::new(async {
            let _ = fired.await;
        });
        let (seen, mut seen_by) = mpsc::unbounded_channel::<String>();
        let bounds = ConnectionBounds {
            cap: ConnectionCap::new("grpc", 16, Default::default()),
            handshake_timeout: Duration::from_secs(10),
        };
        let server = tokio::spawn(serve_on_threads(
            listener,
            2,
            bounds,
            stop,
            move |mut connections, stop| {
                let seen = seen.clone();
                async move {
                    let stopped = stop.stopped();
                    tokio::pin!(stopped);
                    loop {
                        tokio::select! {
                            () = &mut stopped => return Ok(()),
                            Some(connection) = connections.next() => {
                                assert!(connection.is_ok());
                                let thread = std::thread::current();
                                seen.send(thread.name().unwrap_or("?").to_owned()).unwrap();
                            }
                        }
                    }
                }
            },
        ));
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(TcpStream::connect(address).await.unwrap());
        }
        let mut threads = Vec::new();
        for _ in 0..4 {
            threads.push(seen_by.recv().await.unwrap());
        }
        threads.sort();
        assert_eq!(
            threads,
            [
                "sessiongate-conn-0",
                "sessiongate-conn-0",
                "sessiongate-conn-1",
                "sessiongate-conn-1"
            ]
        );
        fire.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
