//! The connection state machine, sans I/O (RFC 6455 §5-§7).
//!
//! Bytes in, messages out: [`Protocol::read`] parses frames from a buffer the caller
//! filled, and returns one message at a time. Messages in, bytes out: [`Protocol::send`]
//! and [`Protocol::close`] encode frames into [`Protocol::out`], which the caller writes to
//! the peer. Pongs to pings, the reply to a Close, and the Close that fails a connection on a
//! protocol violation are queued there too. No clock, no socket, no runtime: every rule is
//! testable, and fuzzable, on plain buffers.
//!
//! ```
//! use bytes::BytesMut;
//! use ws_core::protocol::{Protocol, Role};
//! use ws_core::{Config, Message};
//!
//! let mut server = Protocol::new(Role::Server, &Config::default());
//! server.open();
//! // RFC 6455 §5.7: a masked "Hello" from a client.
//! let mut input = BytesMut::from(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58][..]);
//! assert_eq!(server.read(&mut input).unwrap(), Some(Message::text("Hello")));
//! server.send(Message::text("Hello")).unwrap();
//! assert_eq!(server.out().to_vec(), [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
//! ```

use crate::close::CloseFrame;
use crate::config::Config;
use crate::error::{Error, ProtocolError};
use crate::extensions::Extension;
use crate::frame::{FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, OpCode};
use crate::mask::apply_mask;
use crate::message::Message;
use crate::prepared::PreparedMessage;
use crate::utf8::{Utf8Bytes, Utf8Validator};
use crate::write_buf::WriteBuf;
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;

/// Which end of the connection this is: it decides masking (RFC 6455 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepts connections; receives masked frames, sends unmasked ones.
    Server,
    /// Opens connections; masks every frame it sends with a fresh random key.
    Client,
}

/// The ready state of a connection, as the WebSocket API defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReadyState {
    /// The opening handshake has not completed; sends are queued.
    Connecting = 0,
    /// Messages flow both ways.
    Open = 1,
    /// A Close was sent; waiting for the peer's.
    Closing = 2,
    /// Both Closes were exchanged, or the connection failed.
    Closed = 3,
}

/// The frame being received: its header, and how much of its payload has been unmasked
/// and checked in place.
#[derive(Debug, Clone, Copy)]
struct InFrame {
    header: FrameHeader,
    header_len: usize,
    checked: usize,
    /// Whether this frame's payload is text to validate as it arrives.
    validate: bool,
}

/// A fragmented message being reassembled.
#[derive(Debug)]
struct Partial {
    opcode: OpCode,
    /// The RSV bits of its first frame, handed to the extension.
    rsv: u8,
    buf: BytesMut,
    /// Payload bytes received so far, before any extension decoding.
    received: u64,
}

/// Messages sent while connecting, and their bytes.
#[derive(Debug, Default)]
struct Queued {
    messages: VecDeque<Message>,
    len: usize,
}

/// The sans-IO state machine of one WebSocket connection.
pub struct Protocol {
    role: Role,
    state: ReadyState,
    max_frame_size: usize,
    max_message_size: usize,
    frame: Option<InFrame>,
    /// Boxed, like `queued`: rare (fragmented or compressed messages), and every open
    /// connection carries the field.
    partial: Option<Box<Partial>>,
    utf8: Utf8Validator,
    close_sent: bool,
    close_received: bool,
    failed: bool,
    extension: Option<Box<dyn Extension>>,
    out: WriteBuf,
    /// Messages sent while connecting, encoded on open.
    queued: Option<Box<Queued>>,
}

impl std::fmt::Debug for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protocol")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("out", &self.out.len())
            .finish_non_exhaustive()
    }
}

impl Protocol {
    /// A connection in the [`ReadyState::Connecting`] state, with the config's limits.
    pub fn new(role: Role, config: &Config) -> Self {
        Self {
            role,
            state: ReadyState::Connecting,
            max_frame_size: config.max_frame_size,
            max_message_size: config.max_message_size,
            frame: None,
            partial: None,
            utf8: Utf8Validator::default(),
            close_sent: false,
            close_received: false,
            failed: false,
            extension: None,
            out: WriteBuf::default(),
            queued: None,
        }
    }

    /// Installs the extension negotiated in the handshake. Call before [`Protocol::open`].
    pub fn set_extension(&mut self, extension: Box<dyn Extension>) {
        self.extension = Some(extension);
    }

    /// The handshake completed: the connection is open, and messages queued while it was
    /// connecting are encoded, in order.
    pub fn open(&mut self) {
        if self.state != ReadyState::Connecting {
            return;
        }
        self.state = ReadyState::Open;
        for message in self.queued.take().map(|q| q.messages).unwrap_or_default() {
            // Queued messages were checked when they were sent.
            let _ = self.send(message);
        }
    }

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The ready state.
    pub fn ready_state(&self) -> ReadyState {
        self.state
    }

    /// Whether the connection failed on a protocol violation.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Whether a Close frame was received from the peer.
    pub fn close_received(&self) -> bool {
        self.close_received
    }

    /// Encoded bytes waiting to be written to the peer.
    pub fn out(&mut self) -> &mut WriteBuf {
        &mut self.out
    }

    /// Bytes waiting to go out, including messages queued while connecting.
    pub fn buffered(&self) -> usize {
        self.out.len() + self.queued.as_ref().map_or(0, |q| q.len)
    }

    /// Parses frames from the front of `input`, consuming them, until one yields a message;
    /// `Ok(None)` means `input` holds no further complete message.
    ///
    /// A partial frame stays in `input`, but its payload is unmasked and, for text,
    /// validated as it arrives, so invalid UTF-8 fails the connection before the frame
    /// ends. A violation fails the connection: a Close with the matching code is queued,
    /// the state becomes [`ReadyState::Closed`], the error is returned, and any later input
    /// is discarded.
    pub fn read(&mut self, input: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        if self.failed || self.close_received {
            input.clear();
            return Ok(None);
        }
        match self.read_inner(input) {
            Ok(m) => Ok(m),
            Err(e) => {
                input.clear();
                Err(self.fail(e))
            }
        }
    }

    /// Whether `input` holds at least one whole frame not yet processed: the caller has
    /// more work queued, and may hold its writes until that work is done.
    pub fn has_buffered_frame(&self, input: &[u8]) -> bool {
        let total = match self.frame {
            Some(f) => f.header_len as u64 + f.header.payload_len,
            None => match FrameHeader::decode(input) {
                Ok(Some((h, len))) => len as u64 + h.payload_len,
                Ok(None) => return false,
                Err(_) => return true,
            },
        };
        input.len() as u64 >= total
    }

    /// How many more bytes the frame being received needs (0 between frames): a hint for
    /// how much to read next.
    pub fn pending_frame_bytes(&self, input: &[u8]) -> usize {
        self.frame.map_or(0, |f| {
            let total = f.header_len as u64 + f.header.payload_len;
            total.saturating_sub(input.len() as u64) as usize
        })
    }

    fn read_inner(&mut self, input: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        loop {
            let frame = match self.frame {
                Some(f) => f,
                None => {
                    let Some((header, header_len)) = FrameHeader::decode(input)? else {
                        return Ok(None);
                    };
                    let f = self.begin_frame(header, header_len)?;
                    self.frame = Some(f);
                    f
                }
            };
            let payload_len = frame.header.payload_len as usize; // bounded by max_frame_size
            let available = (input.len() - frame.header_len).min(payload_len);
            if available > frame.checked {
                let start = frame.header_len + frame.checked;
                let end = frame.header_len + available;
                if let Some(key) = frame.header.mask {
                    apply_mask(&mut input[start..end], key, frame.checked);
                }
                if frame.validate {
                    self.utf8.feed(&input[start..end]).map_err(|_| ProtocolError::InvalidUtf8)?;
                }
                if let Some(f) = self.frame.as_mut() {
                    f.checked = available;
                }
            }
            if available < payload_len {
                return Ok(None);
            }
            input.advance(frame.header_len);
            let payload = input.split_to(payload_len);
            self.frame = None;
            if let Some(message) = self.end_frame(frame.header, payload)? {
                return Ok(Some(message));
            }
        }
    }

    /// Checks a header against the connection's state and limits.
    fn begin_frame(&mut self, header: FrameHeader, header_len: usize) -> Result<InFrame, ProtocolError> {
        match (self.role, header.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        let starts_message = matches!(header.opcode, OpCode::Text | OpCode::Binary);
        let allowed_rsv = match &self.extension {
            Some(ext) if starts_message => ext.rsv_bits(),
            _ => 0,
        };
        if header.rsv & !allowed_rsv != 0 {
            return Err(ProtocolError::ReservedBits(header.rsv & !allowed_rsv));
        }
        if header.payload_len > self.max_frame_size as u64 {
            return Err(ProtocolError::FrameTooBig { size: header.payload_len, limit: self.max_frame_size });
        }
        let mut validate = false;
        match header.opcode {
            OpCode::Continuation => {
                let partial = self.partial.as_ref().ok_or(ProtocolError::UnexpectedContinuation)?;
                let size = partial.received + header.payload_len;
                if size > self.max_message_size as u64 {
                    return Err(ProtocolError::MessageTooBig { size, limit: self.max_message_size });
                }
                validate = partial.opcode == OpCode::Text && partial.rsv == 0;
            }
            OpCode::Text | OpCode::Binary => {
                if self.partial.is_some() {
                    return Err(ProtocolError::ExpectedContinuation);
                }
                if header.payload_len > self.max_message_size as u64 {
                    return Err(ProtocolError::MessageTooBig { size: header.payload_len, limit: self.max_message_size });
                }
                if header.opcode == OpCode::Text && header.rsv == 0 {
                    self.utf8 = Utf8Validator::default();
                    validate = true;
                }
            }
            _ => {}
        }
        Ok(InFrame { header, header_len, checked: 0, validate })
    }

    /// Acts on a whole frame, whose payload is unmasked (and, for plain text, validated).
    fn end_frame(&mut self, header: FrameHeader, payload: BytesMut) -> Result<Option<Message>, ProtocolError> {
        match header.opcode {
            OpCode::Text | OpCode::Binary if header.fin && header.rsv == 0 => {
                self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                Ok(Some(data_message(header.opcode, payload.freeze())))
            }
            OpCode::Text | OpCode::Binary => {
                let received = payload.len() as u64;
                let mut partial = Box::new(Partial { opcode: header.opcode, rsv: header.rsv, buf: BytesMut::new(), received });
                if header.rsv == 0 {
                    partial.buf = payload;
                } else {
                    self.decode_into(&mut partial, &payload, header.fin)?;
                }
                self.partial = Some(partial);
                if header.fin { self.finish_message().map(Some) } else { Ok(None) }
            }
            OpCode::Continuation => {
                let Some(mut partial) = self.partial.take() else {
                    return Err(ProtocolError::UnexpectedContinuation);
                };
                partial.received += payload.len() as u64;
                if partial.rsv == 0 {
                    partial.buf.extend_from_slice(&payload);
                } else {
                    self.decode_into(&mut partial, &payload, header.fin)?;
                }
                self.partial = Some(partial);
                if header.fin { self.finish_message().map(Some) } else { Ok(None) }
            }
            OpCode::Ping => {
                let payload = payload.freeze();
                if !self.close_sent {
                    self.write_frame(OpCode::Pong, 0, &payload);
                }
                Ok(Some(Message::Ping(payload)))
            }
            OpCode::Pong => Ok(Some(Message::Pong(payload.freeze()))),
            OpCode::Close => {
                let frame = CloseFrame::parse(payload.freeze())?;
                self.close_received = true;
                if !self.close_sent {
                    // §5.5.1: reply, echoing the status code.
                    let reply = frame.as_ref().map(|f| CloseFrame { code: f.code, reason: Utf8Bytes::new() });
                    self.write_close(reply.as_ref());
                }
                self.state = ReadyState::Closed;
                Ok(Some(Message::Close(frame)))
            }
        }
    }

    /// Runs a frame of an extension-encoded message through the extension.
    fn decode_into(&mut self, partial: &mut Partial, payload: &[u8], fin: bool) -> Result<(), ProtocolError> {
        let ext = self.extension.as_mut().ok_or(ProtocolError::ReservedBits(partial.rsv))?;
        let before = partial.buf.len();
        ext.decode(partial.rsv, payload, fin, &mut partial.buf, self.max_message_size)?;
        if partial.buf.len() > self.max_message_size {
            return Err(ProtocolError::MessageTooBig { size: partial.buf.len() as u64, limit: self.max_message_size });
        }
        if partial.opcode == OpCode::Text {
            if before == 0 {
                self.utf8 = Utf8Validator::default();
            }
            self.utf8.feed(&partial.buf[before..]).map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        Ok(())
    }

    fn finish_message(&mut self) -> Result<Message, ProtocolError> {
        let Some(partial) = self.partial.take() else {
            return Err(ProtocolError::UnexpectedContinuation);
        };
        if partial.opcode == OpCode::Text {
            self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        Ok(data_message(partial.opcode, partial.buf.freeze()))
    }

    /// Fails the connection: queue a Close with the error's code, stop reading.
    fn fail(&mut self, error: ProtocolError) -> ProtocolError {
        tracing::debug!(%error, "failing websocket connection");
        if !self.close_sent {
            let frame = CloseFrame { code: error.close_code(), reason: Utf8Bytes::new() };
            self.write_close(Some(&frame));
        }
        self.failed = true;
        self.frame = None;
        self.partial = None;
        self.state = ReadyState::Closed;
        error
    }

    /// Queues a message: text and binary as data frames, ping and pong as control frames,
    /// close as [`Protocol::close`]. While connecting, messages are queued and encoded on
    /// open.
    pub fn send(&mut self, message: Message) -> Result<(), Error> {
        if let Message::Close(frame) = message {
            return self.close(frame);
        }
        if self.close_sent || self.state == ReadyState::Closed {
            return Err(Error::Closed);
        }
        if matches!(&message, Message::Ping(p) | Message::Pong(p) if p.len() > MAX_CONTROL_PAYLOAD) {
            return Err(Error::InvalidArgument(ProtocolError::ControlFrameTooLong));
        }
        if self.state == ReadyState::Connecting {
            let queued = self.queued.get_or_insert_with(Box::default);
            queued.len += message.len();
            queued.messages.push_back(message);
            return Ok(());
        }
        match message {
            Message::Text(t) => self.send_data(OpCode::Text, t.into_bytes()),
            Message::Binary(b) => self.send_data(OpCode::Binary, b),
            Message::Ping(p) => self.write_frame(OpCode::Ping, 0, &p),
            Message::Pong(p) => self.write_frame(OpCode::Pong, 0, &p),
            Message::Close(_) => {}
        }
        Ok(())
    }

    /// Queues a message encoded once for many connections: a server queues the shared
    /// frame bytes as they are; a client, which must mask, encodes the message itself.
    pub fn send_prepared(&mut self, prepared: &PreparedMessage) -> Result<(), Error> {
        if self.role == Role::Client || self.state == ReadyState::Connecting {
            return self.send(prepared.message().clone());
        }
        if self.close_sent || self.state == ReadyState::Closed {
            return Err(Error::Closed);
        }
        self.out.put_bytes(prepared.frame());
        Ok(())
    }

    fn send_data(&mut self, opcode: OpCode, payload: Bytes) {
        if let Some(ext) = self.extension.as_mut() {
            let mut encoded = BytesMut::new();
            match ext.encode(opcode, &payload, &mut encoded) {
                Ok(Some(rsv)) => return self.write_frame(opcode, rsv, &encoded.freeze()),
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "extension failed to encode; sending the message as is"),
            }
        }
        self.write_frame(opcode, 0, &payload);
    }

    /// Starts the close handshake (RFC 6455 §7.1.2) with an optional code and reason.
    /// Sending anything after it fails with [`Error::Closed`].
    pub fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        if let Some(f) = &frame {
            CloseFrame::new(f.code, f.reason.clone()).map_err(Error::InvalidArgument)?;
        }
        if self.close_sent || self.state == ReadyState::Closed {
            return Err(Error::Closed);
        }
        if self.state == ReadyState::Connecting {
            // What was queued goes out first, then the Close.
            self.open();
        }
        self.write_close(frame.as_ref());
        self.state = if self.close_received { ReadyState::Closed } else { ReadyState::Closing };
        Ok(())
    }

    fn write_close(&mut self, frame: Option<&CloseFrame>) {
        let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
        let len = match frame {
            None => 0,
            Some(f) => {
                let reason = f.reason.as_bytes();
                let n = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
                payload[..2].copy_from_slice(&u16::from(f.code).to_be_bytes());
                payload[2..2 + n].copy_from_slice(&reason[..n]);
                2 + n
            }
        };
        self.write_frame(OpCode::Close, 0, &Bytes::copy_from_slice(&payload[..len]));
        self.close_sent = true;
    }

    /// Encodes one whole frame into `out`; client frames are masked with a fresh key.
    fn write_frame(&mut self, opcode: OpCode, rsv: u8, payload: &Bytes) {
        let mask = match self.role {
            Role::Client => Some(rand::random::<[u8; 4]>()),
            Role::Server => None,
        };
        let header = FrameHeader { fin: true, rsv, opcode, mask, payload_len: payload.len() as u64 };
        let mut head = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut head);
        match mask {
            Some(key) => {
                self.out.put_slice(&head[..n]);
                self.out.put_with(payload.len(), |dst| {
                    dst.copy_from_slice(payload);
                    apply_mask(dst, key, 0);
                })
            }
            None => self.out.put_frame(&head[..n], payload),
        }
    }

    /// Records that the transport ended without a Close exchange (code 1006).
    pub fn transport_closed(&mut self) {
        self.state = ReadyState::Closed;
    }
}

fn data_message(opcode: OpCode, payload: Bytes) -> Message {
    if opcode == OpCode::Text { Message::Text(Utf8Bytes::from_validated(payload)) } else { Message::Binary(payload) }
}

#[cfg(test)]
mod tests;
