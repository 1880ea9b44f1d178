//! MLLP, HL7's Minimal Lower Layer Protocol (HL7 v2 Implementation Guide appendix C, which IHE
//! PCD TF-2 appendix I and ITI TF-2x C.2.1 refer to): each message is framed as `0x0B`,
//! the message, `0x1C 0x0D`. One connection carries many messages in sequence, each answered
//! by its acknowledgement before the next is sent.
//!
//! [`MllpCodec`] is the framing for `tokio_util::codec`; [`MllpConnection`] sends a message and
//! waits for its acknowledgement, or receives and replies, over any `AsyncRead + AsyncWrite`
//! stream (a `TcpStream`, or a TLS stream the caller wraps it in).

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Decoder, Encoder, Framed};

use crate::message::{Limits, Message, ParseError};

/// Start of block.
pub const START: u8 = 0x0B;
/// End of block, followed by [`CR`].
pub const END: u8 = 0x1C;
/// Carriage return, the last byte of a frame.
pub const CR: u8 = 0x0D;

/// What can go wrong on an MLLP connection. After any of these but `Parse`/`UnexpectedAck`
/// the stream is in an unknown state: close the connection (and say so in the log).
#[derive(Debug, thiserror::Error)]
pub enum MllpError {
    /// Reading or writing the stream.
    #[error("MLLP connection: {0}")]
    Io(#[from] std::io::Error),
    /// A byte other than 0x0B where a frame must start (the peer does not speak MLLP, or the
    /// stream lost its place).
    #[error("MLLP framing error: byte 0x{found:02X} where a frame must start with 0x0B")]
    Framing {
        /// The offending byte.
        found: u8,
    },
    /// A frame larger than the limit (found before it was read whole: nothing is buffered past
    /// the limit).
    #[error("MLLP frame exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// The limit.
        limit: usize,
    },
    /// A message to send contains a framing byte (0x0B or 0x1C): never true for an encoded
    /// [`Message`], whose values have control characters escaped.
    #[error("a message to send contains an MLLP framing byte")]
    FramingByteInMessage,
    /// The peer closed the connection in the middle of a frame.
    #[error("MLLP connection closed in the middle of a frame ({0} bytes read)")]
    Truncated(usize),
    /// The peer closed the connection before answering.
    #[error("MLLP connection closed by the peer")]
    Closed,
    /// No acknowledgement within the time allowed.
    #[error("no acknowledgement within {0:?}")]
    Timeout(Duration),
    /// A frame that is not a readable HL7 message.
    #[error("received frame: {0}")]
    Parse(#[from] ParseError),
    /// An acknowledgement whose MSA-2 is not the control id just sent.
    #[error("acknowledgement for message {got:?}, expected {expected:?}")]
    UnexpectedAck {
        /// MSH-10 of the message sent.
        expected: String,
        /// MSA-2 of the reply.
        got: Option<String>,
    },
}

/// Whether `address` is where an MLLP peer can be reached: `host:port` with a host and a
/// port from 1 to 65535 (an IPv6 host in brackets). The one check of every MLLP address a
/// hospital sets (its alert manager, its EMR).
pub fn check_address(address: &str) -> Result<(), String> {
    let port = address.rsplit_once(':').and_then(|(host, port)| (!host.is_empty()).then_some(port));
    if port.is_some_and(|p| p.parse::<u16>().is_ok_and(|p| p > 0)) {
        Ok(())
    } else {
        Err("must be host:port, e.g. mllp.hospital.example:2575".into())
    }
}

/// The MLLP framing: decodes frames into their payloads, encodes payloads into frames.
#[derive(Debug, Clone)]
pub struct MllpCodec {
    max_frame: usize,
    /// How far the current frame was already searched for its end, so a frame arriving in many
    /// reads is scanned once.
    scanned: usize,
}

impl MllpCodec {
    /// A codec refusing frames with more than `max_frame` payload bytes.
    pub fn new(max_frame: usize) -> Self {
        Self { max_frame, scanned: 0 }
    }
}

impl Default for MllpCodec {
    /// Frames up to [`Limits::default`]'s message size.
    fn default() -> Self {
        Self::new(Limits::default().max_message_bytes)
    }
}

impl Decoder for MllpCodec {
    type Item = Bytes;
    type Error = MllpError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, MllpError> {
        let Some(&first) = src.first() else { return Ok(None) };
        if first != START {
            return Err(MllpError::Framing { found: first });
        }
        // Search from one byte before where the last search stopped (an END may have been the
        // last byte then, its CR not yet arrived).
        let from = self.scanned.saturating_sub(1).max(1);
        let end = src[from..].windows(2).position(|w| w == [END, CR]).map(|p| p + from);
        match end {
            Some(end) => {
                self.scanned = 0;
                if end - 1 > self.max_frame {
                    return Err(MllpError::FrameTooLarge { limit: self.max_frame });
                }
                let mut frame = src.split_to(end + 2);
                frame.advance(1);
                frame.truncate(frame.len() - 2);
                Ok(Some(frame.freeze()))
            }
            None => {
                self.scanned = src.len();
                // START + payload + a possible trailing END.
                if src.len() > self.max_frame + 2 {
                    return Err(MllpError::FrameTooLarge { limit: self.max_frame });
                }
                src.reserve((self.max_frame + 3).saturating_sub(src.len()).min(8 << 10));
                Ok(None)
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, MllpError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(MllpError::Truncated(src.len())),
        }
    }
}

impl Encoder<&[u8]> for MllpCodec {
    type Error = MllpError;

    fn encode(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), MllpError> {
        if payload.len() > self.max_frame {
            return Err(MllpError::FrameTooLarge { limit: self.max_frame });
        }
        if payload.iter().any(|b| *b == START || *b == END) {
            return Err(MllpError::FramingByteInMessage);
        }
        dst.reserve(payload.len() + 3);
        dst.put_u8(START);
        dst.put_slice(payload);
        dst.put_slice(&[END, CR]);
        Ok(())
    }
}

impl Encoder<&str> for MllpCodec {
    type Error = MllpError;

    fn encode(&mut self, payload: &str, dst: &mut BytesMut) -> Result<(), MllpError> {
        Encoder::<&[u8]>::encode(self, payload.as_bytes(), dst)
    }
}

/// One MLLP connection, either side: send a message and wait for its acknowledgement, or
/// receive messages and reply to each.
#[derive(Debug)]
pub struct MllpConnection<S> {
    framed: Framed<S, MllpCodec>,
    limits: Limits,
}

impl<S: AsyncRead + AsyncWrite + Unpin> MllpConnection<S> {
    /// A connection over `stream`; frames and messages bounded by `limits`.
    pub fn new(stream: S, limits: Limits) -> Self {
        Self { framed: Framed::new(stream, MllpCodec::new(limits.max_message_bytes)), limits }
    }

    /// Sends `message` and waits up to `timeout` for the acknowledgement, which must name the
    /// message's MSH-10 in MSA-2. On a timeout, drop the connection: a late acknowledgement
    /// would otherwise be taken for the next message's.
    pub async fn send_and_await_ack(&mut self, message: &Message, timeout: Duration) -> Result<Message, MllpError> {
        self.send(message).await?;
        let reply = tokio::time::timeout(timeout, self.receive())
            .await
            .map_err(|_| MllpError::Timeout(timeout))??
            .ok_or(MllpError::Closed)?;
        let expected = message.control_id().unwrap_or_default();
        let got = reply.get("MSA", 0, 2, 1);
        if got != Some(expected) {
            return Err(MllpError::UnexpectedAck { expected: expected.to_owned(), got: got.map(str::to_owned) });
        }
        Ok(reply)
    }

    /// Sends one message (a reply, or a message whose acknowledgement the caller awaits itself).
    pub async fn send(&mut self, message: &Message) -> Result<(), MllpError> {
        self.framed.send(message.encode().as_str()).await
    }

    /// The next message; `None` when the peer closed the connection between frames. A frame
    /// that is not HL7 is [`MllpError::Parse`]: the connection stays usable (answer it with a
    /// negative acknowledgement built from the error).
    pub async fn receive(&mut self) -> Result<Option<Message>, MllpError> {
        match self.framed.next().await {
            None => Ok(None),
            Some(frame) => Ok(Some(Message::parse_bytes(&frame?, &self.limits)?)),
        }
    }

    /// The stream, e.g. to shut it down.
    pub fn into_inner(self) -> S {
        self.framed.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_mllp_address_is_host_and_port() {
        for ok in ["emr.example:2575", "10.0.0.7:1", "[::1]:2575"] {
            assert!(check_address(ok).is_ok(), "{ok}");
        }
        for bad in ["emr.example", ":2575", "emr.example:0", "emr.example:65536", "emr.example:x", ""] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        [&[START][..], payload, &[END, CR]].concat()
    }

    fn decode_all(codec: &mut MllpCodec, chunks: &[&[u8]]) -> Result<Vec<Bytes>, MllpError> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(f) = codec.decode(&mut buf)? {
                out.push(f);
            }
        }
        if let Some(f) = codec.decode_eof(&mut buf)? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn joined_frames_come_apart() {
        let bytes = [frame(b"MSH|one"), frame(b"MSH|two")].concat();
        let frames = decode_all(&mut MllpCodec::default(), &[&bytes]).unwrap();
        assert_eq!(frames, [&b"MSH|one"[..], &b"MSH|two"[..]]);
    }

    #[test]
    fn a_frame_split_anywhere_comes_together() {
        let bytes = [frame(b"MSH|abc\rPID|1"), frame(b"x")].concat();
        for a in 0..bytes.len() {
            for b in a..bytes.len() {
                let frames = decode_all(&mut MllpCodec::default(), &[&bytes[..a], &bytes[a..b], &bytes[b..]]).unwrap();
                assert_eq!(frames, [&b"MSH|abc\rPID|1"[..], &b"x"[..]], "split at {a}, {b}");
            }
        }
    }

    #[test]
    fn garbage_before_a_frame_is_a_framing_error() {
        let bytes = [b"GET / HTTP/1.1\r\n".to_vec(), frame(b"MSH|x")].concat();
        assert!(matches!(decode_all(&mut MllpCodec::default(), &[&bytes]), Err(MllpError::Framing { found: b'G' })));
        let after = [frame(b"MSH|x"), b"\n".to_vec()].concat();
        assert!(matches!(decode_all(&mut MllpCodec::default(), &[&after]), Err(MllpError::Framing { found: b'\n' })));
    }

    #[test]
    fn oversize_frames_are_refused_before_they_are_read_whole() {
        let mut codec = MllpCodec::new(10);
        assert_eq!(decode_all(&mut codec, &[&frame(b"0123456789")]).unwrap().len(), 1);
        let mut codec = MllpCodec::new(10);
        let mut buf = BytesMut::from(&[START][..]);
        buf.extend_from_slice(&[b'x'; 12]);
        assert!(matches!(codec.decode(&mut buf), Err(MllpError::FrameTooLarge { limit: 10 })));
        let mut out = BytesMut::new();
        assert!(matches!(
            Encoder::<&[u8]>::encode(&mut MllpCodec::new(3), &b"abcd"[..], &mut out),
            Err(MllpError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn truncated_frames_and_framing_bytes_are_errors() {
        assert!(matches!(decode_all(&mut MllpCodec::default(), &[&[START, b'M', END]]), Err(MllpError::Truncated(3))));
        let mut out = BytesMut::new();
        let mut codec = MllpCodec::default();
        assert!(matches!(codec.encode(&[b'a', END][..], &mut out), Err(MllpError::FramingByteInMessage)));
        codec.encode("MSH|ok", &mut out).unwrap();
        assert_eq!(&out[..], &frame(b"MSH|ok")[..]);
    }

    #[tokio::test]
    async fn a_message_and_its_acknowledgement_over_a_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (b, _) = listener.accept().await.unwrap();
        let mut client = MllpConnection::new(a, Limits::default());
        let mut server = MllpConnection::new(b, Limits::default());
        let msg = Message::parse("MSH|^~\\&|A||B||20240101||ORU^R40^ORU_R40|c-1|P|2.6\r", &Limits::default()).unwrap();
        let peer = tokio::spawn(async move {
            let got = server.receive().await.unwrap().unwrap();
            let ack =
                format!("MSH|^~\\&|B||A||20240101||ACK^R40^ACK|a-1|P|2.6\rMSA|AA|{}\r", got.control_id().unwrap());
            server.send(&Message::parse(&ack, &Limits::default()).unwrap()).await.unwrap();
            let wrong = "MSH|^~\\&|B||A||20240101||ACK^R40^ACK|a-2|P|2.6\rMSA|AA|other\r";
            server.receive().await.unwrap().unwrap();
            server.send(&Message::parse(wrong, &Limits::default()).unwrap()).await.unwrap();
            server.receive().await.unwrap();
            server
        });
        let reply = client.send_and_await_ack(&msg, Duration::from_secs(5)).await.unwrap();
        assert_eq!(reply.get("MSA", 0, 1, 1), Some("AA"));
        let err = client.send_and_await_ack(&msg, Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(err, MllpError::UnexpectedAck { got: Some(ref g), .. } if g == "other"), "{err}");
        let err = client.send_and_await_ack(&msg, Duration::from_millis(50)).await.unwrap_err();
        assert!(matches!(err, MllpError::Timeout(_)), "{err}");
        drop(client);
        let _ = peer.await.unwrap();
    }
}
