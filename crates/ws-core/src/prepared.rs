//! [`PreparedMessage`]: a data message encoded once, as a server frame, and shared by
//! every connection it is sent to.

use crate::frame::{FrameHeader, MAX_HEADER_LEN, OpCode};
use crate::message::Message;
use crate::utf8::Utf8Bytes;
use bytes::{Bytes, BytesMut};

/// A text or binary message encoded once as an unmasked frame (RFC 6455 §5.2), for
/// sending the same message to many connections: each server connection queues the
/// shared frame bytes (a reference count, no copy for frames of 4 KiB and more), instead
/// of encoding the message again.
///
/// Prepared frames are never compressed, even on a connection that negotiated
/// permessage-deflate: compression state is per connection, and RSV1 is set per message
/// (RFC 7692 §6), so an uncompressed frame is always valid there. A client connection,
/// which must mask every frame with a fresh key (§5.3), sends the message normally.
///
/// ```
/// use wsdriver::{Config, Message, PreparedMessage, Role, WebSocket};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), wsdriver::Error> {
/// let prepared = PreparedMessage::text("to everyone");
/// assert_eq!(prepared.frame(), &b"\x81\x0bto everyone"[..]);
///
/// let (a, b) = tokio::io::duplex(1024);
/// let server = WebSocket::from_raw(a, Role::Server, &Config::default());
/// let mut client = WebSocket::from_raw(b, Role::Client, &Config::default());
/// server.connection().try_send_prepared(&prepared)?;
/// assert_eq!(client.recv().await.transpose()?, Some(Message::text("to everyone")));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PreparedMessage {
    message: Message,
    frame: Bytes,
}

impl PreparedMessage {
    /// Encodes a text message.
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        let text = text.into();
        let frame = encode(OpCode::Text, text.as_bytes());
        Self { message: Message::Text(text), frame }
    }

    /// Encodes a binary message.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        let frame = encode(OpCode::Binary, &data);
        Self { message: Message::Binary(data), frame }
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The encoded frame: header and payload.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }

    /// The payload length in bytes.
    pub fn len(&self) -> usize {
        self.message.len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.message.is_empty()
    }
}

/// Only data messages can be prepared; anything else is handed back.
impl TryFrom<Message> for PreparedMessage {
    type Error = Message;

    fn try_from(message: Message) -> Result<Self, Message> {
        match message {
            Message::Text(t) => Ok(Self::text(t)),
            Message::Binary(b) => Ok(Self::binary(b)),
            other => Err(other),
        }
    }
}

fn encode(opcode: OpCode, payload: &[u8]) -> Bytes {
    let header = FrameHeader { fin: true, rsv: 0, opcode, mask: None, payload_len: payload.len() as u64 };
    let mut head = [0u8; MAX_HEADER_LEN];
    let n = header.encode(&mut head);
    let mut frame = BytesMut::with_capacity(n + payload.len());
    frame.extend_from_slice(&head[..n]);
    frame.extend_from_slice(payload);
    frame.freeze()
}

impl From<&str> for PreparedMessage {
    fn from(text: &str) -> Self {
        Self::text(text)
    }
}

impl From<String> for PreparedMessage {
    fn from(text: String) -> Self {
        Self::text(text)
    }
}

impl From<Utf8Bytes> for PreparedMessage {
    fn from(text: Utf8Bytes) -> Self {
        Self::text(text)
    }
}

impl From<Bytes> for PreparedMessage {
    fn from(data: Bytes) -> Self {
        Self::binary(data)
    }
}

impl From<Vec<u8>> for PreparedMessage {
    fn from(data: Vec<u8>) -> Self {
        Self::binary(data)
    }
}
