//! One `Check` call as gRPC frames it: a length-prefixed CheckRequest in, a length-prefixed
//! CheckResponse and `grpc-status: 0` out.
//!
//! tonic's codec answers what it cannot decode with a gRPC error: a request over the size
//! limit (`OUT_OF_RANGE`), bytes that are not protobuf or not UTF-8 in a `string` field
//! (`INTERNAL`), a compressed message (`UNIMPLEMENTED`). Envoy applies `failure_mode_allow` to
//! a failed call, so with it set each of these let the request through, however large or
//! broken. Here every call reaches an answer: the body is read into one message or into a
//! [`BadMessage`] that the service turns into a `bad_request` denial.
//!
//! What must stay true:
//! - the reader never buffers more than `max_bytes` of a message, and reads the declared
//!   length from the 5-byte prefix before any of it: an oversized message is discarded frame
//!   by frame as it arrives (its flow-control credit is returned, so the sender can finish)
//!   and answered once its body ended, which is what Envoy waits for before it reads an
//!   answer;
//! - reading is bounded in time: once the body stalls, `body_timeout` ends it;
//! - a message that arrived in one HTTP/2 DATA frame (every Envoy request under the frame
//!   size) is decoded from that frame's buffer, without a copy; the timer is only created
//!   when a body stalls.

use std::future::poll_fn;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::CheckResponse;
use hyper::body::{Body, Frame};
use prost::Message as _;
use prost::bytes::{Bytes, BytesMut};
use tonic::codegen::http;

/// Bytes of the gRPC message prefix: a compressed flag and a big-endian length.
const PREFIX: usize = 5;

/// How much of a call sessiongate reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageLimits {
    /// Largest CheckRequest read (`limits.max_check_request_bytes`).
    pub max_bytes: usize,
    /// How long a body that stalled may take to end (`limits.body_timeout`).
    pub body_timeout: Duration,
}

impl Default for MessageLimits {
    /// 1 MiB: a CheckRequest carries the headers (Envoy caps them at 60 KiB by default) and,
    /// with `with_request_body`, up to `max_request_bytes` of body. 10 s for a stalled body:
    /// Envoy sends a whole message at once and gives up on a Check long before.
    fn default() -> Self {
        MessageLimits {
            max_bytes: 1024 * 1024,
            body_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a call's body is not one CheckRequest sessiongate reads. Each is the caller's doing,
/// answered `bad_request` with this description.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadMessage {
    /// The body ended before any byte.
    #[error("the call carries no CheckRequest")]
    Empty,
    /// The first byte is no gRPC compressed flag.
    #[error("the call's body is not a gRPC message")]
    NotGrpc,
    /// The compressed flag is set.
    #[error(
        "the CheckRequest is compressed; sessiongate reads uncompressed messages only (Envoy \
         never compresses ext_authz calls)"
    )]
    Compressed,
    /// The declared length exceeds the limit.
    #[error("CheckRequest of {length} bytes exceeds limits.max_check_request_bytes ({limit})")]
    TooLarge {
        /// What the prefix declared.
        length: usize,
        /// `limits.max_check_request_bytes`.
        limit: usize,
    },
    /// The body ended inside the message.
    #[error("the call ended inside its gRPC message ({received} of {expected} bytes)")]
    Truncated {
        /// Bytes of prefix and message that arrived.
        received: usize,
        /// Bytes the prefix announced (or the prefix itself).
        expected: usize,
    },
    /// More data followed the message: a unary call carries exactly one.
    #[error("the call carries data after its CheckRequest")]
    Trailing,
    /// The body stalled for longer than `limits.body_timeout`.
    #[error("the call's body did not arrive within limits.body_timeout ({0:?})")]
    TimedOut(Duration),
    /// The body could not be read (the stream was reset or the connection failed).
    #[error("the call's body could not be read")]
    Unreadable,
    /// The message is not a protobuf CheckRequest.
    #[error("the message is not a protobuf CheckRequest: {0}")]
    NotProtobuf(prost::DecodeError),
}

/// Reads one gRPC message out of body chunks as they arrive, never holding more than the
/// limit. Pure: [`read_message`] feeds it.
#[derive(Debug)]
pub struct MessageReader {
    limit: usize,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Reading the 5-byte prefix.
    Prefix { bytes: [u8; PREFIX], filled: usize },
    /// Reading `length` bytes of message, of which `parts` holds what arrived (empty until a
    /// message spans more than one chunk).
    Message { length: usize, parts: BytesMut },
    /// The whole message.
    Done(Bytes),
    /// Refused: the rest of the body is dropped as it arrives.
    Discarding(BadMessage),
}

impl MessageReader {
    /// A reader accepting messages of at most `limit` bytes.
    pub fn new(limit: usize) -> MessageReader {
        MessageReader {
            limit,
            state: State::Prefix {
                bytes: [0; PREFIX],
                filled: 0,
            },
        }
    }

    /// Takes the next chunk of the body.
    pub fn push(&mut self, mut chunk: Bytes) {
        while !chunk.is_empty() {
            self.state = match std::mem::replace(&mut self.state, State::Done(Bytes::new())) {
                State::Prefix { mut bytes, filled } => {
                    let taken = (PREFIX - filled).min(chunk.len());
                    bytes[filled..filled + taken].copy_from_slice(&chunk[..taken]);
                    let _ = chunk.split_to(taken);
                    if filled + taken < PREFIX {
                        State::Prefix {
                            bytes,
                            filled: filled + taken,
                        }
                    } else {
                        self.after_prefix(bytes)
                    }
                }
                State::Message { length, mut parts } => {
                    let wanted = length - parts.len();
                    if parts.is_empty() && chunk.len() >= wanted {
                        // The whole message in one chunk: a view of it, no copy.
                        State::Done(chunk.split_to(wanted))
                    } else {
                        let taken = wanted.min(chunk.len());
                        parts.extend_from_slice(&chunk.split_to(taken));
                        if parts.len() == length {
                            State::Done(parts.freeze())
                        } else {
                            State::Message { length, parts }
                        }
                    }
                }
                State::Done(_) => State::Discarding(BadMessage::Trailing),
                State::Discarding(refusal) => {
                    chunk.clear();
                    State::Discarding(refusal)
                }
            };
        }
        // A zero-length message is whole as soon as its prefix is.
        if let State::Message { length: 0, .. } = self.state {
            self.state = State::Done(Bytes::new());
        }
    }

    fn after_prefix(&self, prefix: [u8; PREFIX]) -> State {
        let length = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        match prefix[0] {
            0 if length > self.limit => State::Discarding(BadMessage::TooLarge {
                length,
                limit: self.limit,
            }),
            0 => State::Message {
                length,
                parts: BytesMut::new(),
            },
            1 => State::Discarding(BadMessage::Compressed),
            _ => State::Discarding(BadMessage::NotGrpc),
        }
    }

    /// The body ended: the message, or why there is none.
    pub fn finish(self) -> Result<Bytes, BadMessage> {
        match self.state {
            State::Prefix { filled: 0, .. } => Err(BadMessage::Empty),
            State::Prefix { filled, .. } => Err(BadMessage::Truncated {
                received: filled,
                expected: PREFIX,
            }),
            State::Message { length, parts } => Err(BadMessage::Truncated {
                received: PREFIX + parts.len(),
                expected: PREFIX + length,
            }),
            State::Done(message) => Ok(message),
            State::Discarding(refusal) => Err(refusal),
        }
    }

    /// The body stalled past `timeout`: why the call is refused (an earlier refusal wins).
    fn timed_out(self, timeout: Duration) -> BadMessage {
        match self.state {
            State::Discarding(refusal) => refusal,
            _ => BadMessage::TimedOut(timeout),
        }
    }
}

/// Reads the one message of a call's `body` within `limits`.
pub async fn read_message<B>(body: B, limits: MessageLimits) -> Result<Bytes, BadMessage>
where
    B: Body<Data = Bytes>,
    B::Error: Into<tonic::codegen::StdError>,
{
    let mut body = pin!(body);
    let mut deadline = pin!(None::<tokio::time::Sleep>);
    let mut reader = MessageReader::new(limits.max_bytes);
    while !body.is_end_stream() {
        let next = poll_fn(|cx| {
            if let Poll::Ready(frame) = body.as_mut().poll_frame(cx) {
                return Poll::Ready(Some(frame));
            }
            if deadline.is_none() {
                deadline.set(Some(tokio::time::sleep(limits.body_timeout)));
            }
            match deadline.as_mut().as_pin_mut().map(|sleep| sleep.poll(cx)) {
                Some(Poll::Ready(())) => Poll::Ready(None),
                _ => Poll::Pending,
            }
        })
        .await;
        match next {
            None => return Err(reader.timed_out(limits.body_timeout)),
            Some(None) => break,
            Some(Some(Err(error))) => {
                let error: tonic::codegen::StdError = error.into();
                tracing::debug!(%error, "reading a Check call's body failed");
                return Err(BadMessage::Unreadable);
            }
            Some(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    reader.push(data);
                }
            }
        }
    }
    reader.finish()
}

/// The HTTP response of a call answered with `response`: the message in one DATA frame, then
/// `grpc-status: 0` (a denial is an OK call carrying a denying CheckResponse).
pub fn ok_response(response: &CheckResponse) -> http::Response<tonic::body::Body> {
    let length = response.encoded_len();
    let mut framed = Vec::with_capacity(PREFIX + length);
    framed.push(0);
    // A CheckResponse is a few hundred bytes; u32 always holds its length.
    framed.extend_from_slice(&u32::try_from(length).unwrap_or(u32::MAX).to_be_bytes());
    response.encode_raw(&mut framed);
    let body = UnaryBody {
        message: Some(Bytes::from(framed)),
        trailers_sent: false,
    };
    let mut http = http::Response::new(tonic::body::Body::new(body));
    http.headers_mut().insert(
        http::header::CONTENT_TYPE,
        tonic::metadata::GRPC_CONTENT_TYPE,
    );
    http
}

/// One message, then the OK trailers.
struct UnaryBody {
    message: Option<Bytes>,
    trailers_sent: bool,
}

impl Body for UnaryBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(message) = self.message.take() {
            return Poll::Ready(Some(Ok(Frame::data(message))));
        }
        if self.trailers_sent {
            return Poll::Ready(None);
        }
        self.trailers_sent = true;
        let mut trailers = http::HeaderMap::with_capacity(1);
        trailers.insert(
            tonic::Status::GRPC_STATUS,
            http::HeaderValue::from_static("0"),
        );
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.message.is_none() && self.trailers_sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(flag: u8, message: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    fn read(chunks: &[&[u8]], limit: usize) -> Result<Bytes, BadMessage> {
        let mut reader = MessageReader::new(limit);
        for chunk in chunks {
            reader.push(Bytes::copy_from_slice(chunk));
        }
        reader.finish()
    }

    #[test]
    fn a_message_in_one_chunk_is_a_view_of_that_chunk() {
        let body = Bytes::from(framed(0, b"hello"));
        let mut reader = MessageReader::new(16);
        reader.push(body.clone());
        let message = reader.finish().unwrap();
        assert_eq!(&message[..], b"hello");
        assert_eq!(message.as_ptr(), body[PREFIX..].as_ptr(), "not copied");
    }

    #[test]
    fn a_message_split_anywhere_reads_whole() {
        let body = framed(0, b"hello world");
        for at in 0..body.len() {
            for second in at..body.len() {
                let chunks = [&body[..at], &body[at..second], &body[second..]];
                assert_eq!(
                    &read(&chunks, 64).unwrap()[..],
                    b"hello world",
                    "{at} {second}"
                );
            }
        }
    }

    #[test]
    fn a_message_over_the_limit_is_refused_from_its_prefix_and_never_buffered() {
        let mut reader = MessageReader::new(4);
        reader.push(Bytes::from(framed(0, b"hello")[..PREFIX].to_vec()));
        assert!(matches!(reader.state, State::Discarding(_)));
        reader.push(Bytes::from_static(b"hello"));
        assert_eq!(
            reader.finish(),
            Err(BadMessage::TooLarge {
                length: 5,
                limit: 4
            })
        );
        // Exactly at the limit is read.
        assert_eq!(&read(&[&framed(0, b"hell")], 4).unwrap()[..], b"hell");
    }

    #[test]
    fn what_is_not_one_uncompressed_message_is_refused() {
        assert_eq!(read(&[], 64), Err(BadMessage::Empty));
        assert_eq!(read(&[b""], 64), Err(BadMessage::Empty));
        assert_eq!(
            read(&[b"\x00\x00\x00"], 64),
            Err(BadMessage::Truncated {
                received: 3,
                expected: 5
            })
        );
        assert_eq!(
            read(&[&framed(0, b"hello")[..8]], 64),
            Err(BadMessage::Truncated {
                received: 8,
                expected: 10
            })
        );
        assert_eq!(read(&[&framed(1, b"x")], 64), Err(BadMessage::Compressed));
        assert_eq!(read(&[&framed(7, b"x")], 64), Err(BadMessage::NotGrpc));
        let two = [framed(0, b"a"), framed(0, b"b")].concat();
        assert_eq!(read(&[&two], 64), Err(BadMessage::Trailing));
        assert_eq!(
            read(&[&framed(0, b"a"), b"b"], 64),
            Err(BadMessage::Trailing)
        );
    }

    #[test]
    fn an_empty_message_is_a_message() {
        assert_eq!(read(&[&framed(0, b"")], 64).unwrap().len(), 0);
    }

    #[tokio::test]
    async fn a_stalled_body_ends_after_the_body_timeout() {
        let timeout = Duration::from_millis(200);
        let limits = MessageLimits {
            max_bytes: 64,
            body_timeout: timeout,
        };
        // A prefix announcing 10 bytes, then nothing: the stream never ends.
        let (mut sender, body) = stalled_body();
        sender(Bytes::from_static(b"\x00\x00\x00\x00\x0a"));
        let started = tokio::time::Instant::now();
        let outcome = read_message(body, limits).await;
        assert_eq!(outcome, Err(BadMessage::TimedOut(timeout)));
        let took = started.elapsed();
        assert!(took >= timeout && took < timeout * 10, "{took:?}");
    }

    /// A body that yields what is sent into it and never ends.
    fn stalled_body() -> (impl FnMut(Bytes), impl Body<Data = Bytes, Error = String>) {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let body = ChannelBody(receiver);
        (move |chunk| sender.send(chunk).unwrap(), body)
    }

    struct ChannelBody(tokio::sync::mpsc::UnboundedReceiver<Bytes>);

    impl Body for ChannelBody {
        type Data = Bytes;
        type Error = String;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, String>>> {
            match self.0.poll_recv(cx) {
                Poll::Ready(Some(chunk)) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
                // The sender is dropped with the test, not before: the body stays open.
                Poll::Ready(None) | Poll::Pending => Poll::Pending,
            }
        }
    }
}
