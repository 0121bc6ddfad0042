//! A listener's port held from start-up, but accepting only once the process can answer.
//!
//! At start-up sessiongate must fail fast on a port that is taken (before waiting for keys or
//! for Redis, which can take minutes), yet must not accept a connection before its state (keys,
//! every revocation) is loaded: a port that accepts is what a Kubernetes `tcpSocket` probe, a
//! load balancer or Envoy takes as "up", and a connection accepted then would wait unanswered.
//! A socket that is bound but not listening does both: the port is ours (a second process
//! gets `EADDRINUSE` at once), and a connection attempt is refused (RST), not queued.
//! [`tokio::net::TcpListener::bind`] binds and listens in one call, so the two steps are taken
//! apart here with [`TcpSocket`].

use std::net::SocketAddr;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpSocket};

/// Pending connections the kernel queues once listening (as `TcpListener::bind`'s).
const BACKLOG: u32 = 1024;

/// A bound, not yet listening, TCP port of one listener.
#[derive(Debug)]
pub struct ReservedPort {
    socket: TcpSocket,
    /// `grpc`, `admin`: named in errors and in the `listening` log event.
    listener: &'static str,
    address: SocketAddr,
}

impl ReservedPort {
    /// Binds `address` for `listener` without listening. Fails, naming the listener and the
    /// address, when the address is taken or cannot be bound.
    pub fn bind(listener: &'static str, address: SocketAddr) -> anyhow::Result<ReservedPort> {
        let bound = (|| {
            let socket = if address.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            // As `TcpListener::bind`: a restarted process may bind while the previous one's
            // connections linger in TIME_WAIT. A port another socket listens on stays refused.
            socket.set_reuseaddr(true)?;
            socket.bind(address)?;
            let address = socket.local_addr()?;
            Ok::<_, std::io::Error>((socket, address))
        })();
        let (socket, address) =
            bound.with_context(|| format!("binding the {listener} listener to {address}"))?;
        Ok(ReservedPort {
            socket,
            listener,
            address,
        })
    }

    /// The bound address (the port the kernel chose, for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Starts accepting connections. Fails, naming the listener, when another socket started
    /// listening on the same address meanwhile.
    pub fn listen(self) -> anyhow::Result<TcpListener> {
        let (listener, address) = (self.listener, self.address);
        self.socket
            .listen(BACKLOG)
            .with_context(|| format!("listening on the {listener} address {address}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reserved_port_refuses_connections_until_it_listens() {
        let port = ReservedPort::bind("grpc", "127.0.0.1:0".parse().unwrap()).unwrap();
        let address = port.local_addr();
        assert_ne!(address.port(), 0);
        let refused = tokio::net::TcpStream::connect(address).await.unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

        let listener = port.listen().unwrap();
        let (connected, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(address), listener.accept());
        connected.unwrap();
        accepted.unwrap();
    }

    #[tokio::test]
    async fn a_taken_port_is_refused_at_bind_naming_the_listener() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = taken.local_addr().unwrap();
        let error = ReservedPort::bind("admin", address).unwrap_err();
        assert_eq!(
            format!("{error}"),
            format!("binding the admin listener to {address}")
        );
    }
}
