//! One ext_authz connection: its place under the listener's cap, and the deadline for its
//! HTTP/2 handshake.
//!
//! HTTP/2 has no handshake timeout of its own: a connection that never sends the client
//! preface was held until the process stopped. [`Bounded`] watches the bytes HTTP/2 reads
//! until the preface (24 bytes) and the client's first SETTINGS frame have arrived; if they
//! have not by `limits.handshake_timeout`, the next read fails and the server drops the
//! connection. From then on it only forwards (one branch per read, no timer): Envoy keeps its
//! connections open for as long as it runs, with or without checks in flight, and that must
//! stay possible.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::connections::Slot;

/// The HTTP/2 client connection preface (RFC 9113 section 3.4) is this long.
const PREFACE: usize = 24;
/// An HTTP/2 frame header is this long; the first frame after the preface is SETTINGS.
const FRAME_HEADER: usize = 9;

/// A connection under the cap that must open HTTP/2 within a deadline.
#[derive(Debug)]
pub struct Bounded<T> {
    io: T,
    /// Until the handshake is over.
    handshake: Option<Handshake>,
    /// The place under the cap, given back when the connection is dropped.
    slot: Slot,
}

#[derive(Debug)]
struct Handshake {
    opening: Opening,
    deadline: Pin<Box<Sleep>>,
}

impl<T> Bounded<T> {
    /// `io`, holding `slot`, which must send the HTTP/2 preface and SETTINGS within `timeout`.
    /// Call within a tokio runtime (the deadline is a timer).
    pub fn new(io: T, slot: Slot, timeout: Duration) -> Bounded<T> {
        Bounded {
            io,
            handshake: Some(Handshake {
                opening: Opening::default(),
                deadline: Box::pin(tokio::time::sleep(timeout)),
            }),
            slot,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Bounded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        let Some(handshake) = &mut this.handshake else {
            return polled;
        };
        if let Poll::Ready(Ok(())) = polled
            && handshake.opening.saw(&buf.filled()[before..])
        {
            this.handshake = None;
            return polled;
        }
        // Still opening: past the deadline the connection ends, whether bytes trickle in or
        // none come (polling the timer here also wakes this read when it fires).
        if handshake.deadline.as_mut().poll(cx).is_ready() {
            this.slot.timed_out();
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no HTTP/2 preface and SETTINGS within limits.handshake_timeout",
            )));
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Bounded<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl Connected for Bounded<TcpStream> {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}

/// How far a connection got through the preface and its first frame (whose content HTTP/2
/// itself checks: a wrong preface or first frame fails the connection at once).
#[derive(Debug, Default)]
struct Opening {
    seen: usize,
    /// The first frame's header, as far as it arrived.
    header: [u8; FRAME_HEADER],
}

impl Opening {
    /// Takes the next bytes read; whether the preface and the whole first frame have arrived.
    fn saw(&mut self, bytes: &[u8]) -> bool {
        let start = self.seen;
        let end = start + bytes.len();
        let (from, to) = (start.max(PREFACE), end.min(PREFACE + FRAME_HEADER));
        if from < to {
            self.header[from - PREFACE..to - PREFACE]
                .copy_from_slice(&bytes[from - start..to - start]);
        }
        self.seen = end;
        if self.seen < PREFACE + FRAME_HEADER {
            return false;
        }
        let [a, b, c, ..] = self.header;
        let length = u32::from_be_bytes([0, a, b, c]) as usize;
        self.seen >= PREFACE + FRAME_HEADER + length
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The preface and an empty SETTINGS frame, as a client opens.
    fn opening(settings: &[u8]) -> Vec<u8> {
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        let length = (settings.len() as u32).to_be_bytes();
        bytes.extend_from_slice(&[length[1], length[2], length[3], 0x4, 0, 0, 0, 0, 0]);
        bytes.extend_from_slice(settings);
        bytes
    }

    #[test]
    fn the_handshake_is_over_once_the_preface_and_the_first_frame_arrived() {
        let settings = [0, 3, 0, 0, 0, 100];
        let bytes = opening(&settings);
        for at in 0..bytes.len() {
            let mut progress = Opening::default();
            assert!(!progress.saw(&bytes[..at]), "{at}");
            assert!(progress.saw(&bytes[at..]), "{at}");
        }
        let mut byte_by_byte = Opening::default();
        let done: Vec<bool> = bytes.iter().map(|b| byte_by_byte.saw(&[*b])).collect();
        assert_eq!(done.iter().position(|d| *d), Some(bytes.len() - 1));
        assert!(Opening::default().saw(&opening(&[])));
    }
}
