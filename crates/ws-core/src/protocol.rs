//! The connection state machine, sans I/O (RFC 6455 §5-§7).
//!
//! Bytes in, messages out: [`Protocol::read`] parses frames from a buffer the caller
//! filled, and returns one message at a time. Messages in, bytes out: [`Protocol::send`]
//! and [`Protocol::close`] encode frames into [`Protocol::out`], which the caller writes to
//! the peer and then reports with [`Protocol::written`]. Pongs to pings, the reply to a
//! Close, keepalive pings, and the Close that fails a connection on a protocol violation are
//! queued there too.
//!
//! Time is an input like bytes, as in quinn-proto: the caller says when input arrived
//! ([`Protocol::received`]), asks when the next deadline is due ([`Protocol::poll_timeout`])
//! and, once it is, hands the time in ([`Protocol::handle_timeout`]). The keepalive (ping
//! after [`Options::ping_interval`] of silence, give up after [`Options::pong_timeout`]),
//! the close timeout and the matching of pongs to pings all live here. No clock, no socket,
//! no runtime: every rule is testable, and fuzzable, on plain buffers and instants.
//!
//! ```
//! use bytes::BytesMut;
//! use std::time::Instant;
//! use wsdriver::protocol::{Options, Protocol, Role};
//! use wsdriver::Message;
//!
//! let mut server = Protocol::new(Role::Server, Options::default());
//! server.open(Instant::now());
//! // RFC 6455 §5.7: a masked "Hello" from a client.
//! let mut input = BytesMut::from(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58][..]);
//! assert_eq!(server.read(&mut input).unwrap(), Some(Message::text("Hello")));
//! server.send(Message::text("Hello")).unwrap();
//! assert_eq!(server.out().to_vec(), [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
//! server.written(7);
//! assert!(server.out().is_empty());
//! ```

use crate::close::{CloseCode, CloseFrame};
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
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

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

/// The limits and timers of one connection: what the state machine needs, and nothing of
/// the handshake or the server around it. [`Config`](crate::Config) converts into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// The largest frame payload accepted; a larger frame fails the connection with 1009.
    pub max_frame_size: usize,
    /// The largest message accepted, all its fragments together (1009 beyond it).
    pub max_message_size: usize,
    /// Queued bytes beyond which a peer's pings are no longer each answered: only the
    /// latest pong waits until the queue drains below it (RFC 6455 §5.5.3).
    pub write_buffer_high_water: usize,
    /// How long the close handshake, and the end of the transport after it, may take.
    pub close_timeout: Duration,
    /// Ping after this long without input from the peer; `None`: no keepalive.
    pub ping_interval: Option<Duration>,
    /// How long to wait for any input after a keepalive ping before giving up.
    pub pong_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_frame_size: 64 << 20,
            max_message_size: 64 << 20,
            write_buffer_high_water: 1 << 20,
            close_timeout: Duration::from_secs(5),
            ping_interval: Some(Duration::from_secs(30)),
            pong_timeout: Duration::from_secs(30),
        }
    }
}

/// Where the connection is in its life: one value instead of a flag per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The opening handshake is still under way: sends are queued.
    Connecting,
    /// Messages flow both ways.
    Open,
    /// This end sent a Close and waits for the peer's, until the close deadline.
    CloseSent,
    /// Both Closes were exchanged, or this end failed the connection: what remains is to
    /// flush and end the transport (a server closes it, a client waits for the server to,
    /// §7.1.1), until the close deadline.
    Closed,
    /// The transport ended; nothing more happens.
    Ended,
}

/// Durations in whole milliseconds: an open connection's size matters, and no timer here
/// needs more than 49 days or less than a millisecond.
#[derive(Debug, Clone, Copy)]
struct Timing {
    close: u32,
    ping: Option<NonZeroU32>,
    pong: u32,
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

fn ms(n: u32) -> Duration {
    Duration::from_millis(u64::from(n))
}

/// A deadline this close is treated as due: timers round to the millisecond, and waking
/// a little early must not mean sleeping again for a few microseconds.
const SLACK: Duration = Duration::from_millis(1);

/// User pings awaiting their pong, beyond which the oldest is forgotten (a later pong
/// still answers it: a pong answers every ping sent before the one it matches).
const MAX_PENDING_PINGS: usize = 64;

/// The frame being received: its header, and how much of its payload has been unmasked
/// and checked in place.
#[derive(Debug, Clone, Copy)]
struct InFrame {
    header: FrameHeader,
    header_len: u8,
    /// Whether this frame's payload is text to validate as it arrives.
    validate: bool,
    checked: u64,
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

/// What few connections ever need, in one box: an idle connection's size matters.
#[derive(Debug, Default)]
struct Rare {
    /// Messages sent while connecting, encoded on open, and their bytes.
    queued: VecDeque<Message>,
    queued_len: usize,
    /// User pings awaiting their pong: sequence number and payload.
    pings: VecDeque<(u64, Bytes)>,
    /// The last user ping's sequence number, and the last one answered.
    ping_seq: u64,
    ping_acked: u64,
    /// The latest ping received while the write queue was over its high-water mark.
    pending_pong: Option<Bytes>,
    /// The reason that goes with [`Protocol::close_status`].
    reason: Utf8Bytes,
    /// A violation found while failures are deferred, waiting for
    /// [`Protocol::fail_deferred`].
    deferred: Option<ProtocolError>,
}

/// The sans-IO state machine of one WebSocket connection.
pub struct Protocol {
    role: Role,
    phase: Phase,
    /// This end failed the connection on a protocol violation.
    failed: bool,
    /// Violations wait for [`Protocol::fail_deferred`] instead of failing at once.
    defer_failures: bool,
    /// The close deadline starts at the next [`Protocol::handle_timeout`]: set when a
    /// Close was sent or the connection failed without the time at hand.
    unanchored: bool,
    /// The code the connection closed with, once known (reason in `rare`).
    close_code: Option<CloseCode>,
    timing: Timing,
    frame: Option<InFrame>,
    /// Boxed, like `rare`: only fragmented or compressed messages need it.
    partial: Option<Box<Partial>>,
    utf8: Utf8Validator,
    max_frame_size: usize,
    max_message_size: usize,
    high_water: usize,
    extension: Option<Box<dyn Extension>>,
    out: WriteBuf,
    rare: Option<Box<Rare>>,
    /// When input last arrived (or the connection opened).
    last_input: Instant,
    /// While open: when the pong timeout of an unanswered keepalive ping expires. While
    /// closing or closed: the close deadline.
    deadline: Option<Instant>,
}

impl std::fmt::Debug for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protocol")
            .field("role", &self.role)
            .field("phase", &self.phase)
            .field("out", &self.out.len())
            .finish_non_exhaustive()
    }
}

impl Protocol {
    /// A connection in the [`ReadyState::Connecting`] state, with these limits and timers.
    pub fn new(role: Role, options: impl Into<Options>) -> Self {
        let options = options.into();
        Self {
            role,
            phase: Phase::Connecting,
            failed: false,
            defer_failures: false,
            unanchored: false,
            close_code: None,
            timing: Timing {
                close: millis(options.close_timeout),
                ping: options.ping_interval.and_then(|d| NonZeroU32::new(millis(d).max(1))),
                pong: millis(options.pong_timeout),
            },
            frame: None,
            partial: None,
            utf8: Utf8Validator::default(),
            max_frame_size: options.max_frame_size,
            max_message_size: options.max_message_size,
            high_water: options.write_buffer_high_water,
            extension: None,
            out: WriteBuf::default(),
            rare: None,
            last_input: Instant::now(),
            deadline: None,
        }
    }

    /// Installs the extension negotiated in the handshake. Call before [`Protocol::open`].
    pub fn set_extension(&mut self, extension: Box<dyn Extension>) {
        self.extension = Some(extension);
    }

    /// The handshake completed at `now`: the connection is open, the keepalive starts, and
    /// messages queued while it was connecting are encoded, in order.
    pub fn open(&mut self, now: Instant) {
        if self.phase != Phase::Connecting {
            return;
        }
        self.phase = Phase::Open;
        self.last_input = now;
        let Some(rare) = self.rare.as_mut() else { return };
        rare.queued_len = 0;
        for message in std::mem::take(&mut rare.queued) {
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
        match self.phase {
            Phase::Connecting => ReadyState::Connecting,
            Phase::Open => ReadyState::Open,
            Phase::CloseSent => ReadyState::Closing,
            Phase::Closed | Phase::Ended => ReadyState::Closed,
        }
    }

    /// Whether the connection failed on a protocol violation.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Whether the transport has ended: nothing more will be read or written.
    pub fn is_ended(&self) -> bool {
        self.phase == Phase::Ended
    }

    /// Whether the close handshake is over (or the connection failed) and only the end of
    /// the transport remains: a server shuts its write side down once [`Protocol::out`] is
    /// written; a client reads until the server closes (RFC 6455 §7.1.1).
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether input from the peer is still wanted: while connecting it is kept for
    /// later, once the connection is closed it is only drained (client) or not read at
    /// all (server).
    pub fn wants_input(&self) -> bool {
        if self.has_deferred_failure() {
            return false;
        }
        match self.phase {
            Phase::Connecting | Phase::Open | Phase::CloseSent => true,
            Phase::Closed => self.role == Role::Client,
            Phase::Ended => false,
        }
    }

    /// The code and reason the connection closed with, once known: the peer's Close
    /// (1005 when it had no code), the code a protocol violation failed it with, or 1006
    /// when the transport ended without a Close or a timer expired.
    pub fn close_status(&self) -> Option<(CloseCode, &Utf8Bytes)> {
        static EMPTY: Utf8Bytes = Utf8Bytes::new();
        let reason = self.rare.as_ref().map_or(&EMPTY, |r| &r.reason);
        self.close_code.map(|code| (code, reason))
    }

    fn set_close_status(&mut self, code: CloseCode, reason: Utf8Bytes) {
        if self.close_code.is_none() {
            self.close_code = Some(code);
            if !reason.is_empty() {
                self.rare().reason = reason;
            }
        }
    }

    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// Encoded bytes waiting to be written to the peer; report what was written with
    /// [`Protocol::written`].
    pub fn out(&mut self) -> &mut WriteBuf {
        &mut self.out
    }

    /// The first `n` bytes of [`Protocol::out`] were written. A pong held back while the
    /// queue was over its high-water mark is queued once it drains below it.
    pub fn written(&mut self, n: usize) {
        self.out.advance(n);
        if self.out.len() < self.high_water {
            if let Some(pong) = self.rare.as_mut().and_then(|r| r.pending_pong.take()) {
                self.write_frame(OpCode::Pong, 0, &pong);
            }
        }
    }

    /// Bytes waiting to go out, including messages queued while connecting.
    pub fn buffered(&self) -> usize {
        self.out.len() + self.rare.as_ref().map_or(0, |r| r.queued_len)
    }

    /// Whether [`Protocol::buffered`] reached [`Options::write_buffer_high_water`]: a
    /// sender should wait (backpressure).
    pub fn is_backlogged(&self) -> bool {
        self.buffered() >= self.high_water
    }

    /// Parses frames from the front of `input`, consuming them, until one yields a message;
    /// `Ok(None)` means `input` holds no further complete message.
    ///
    /// Pings are answered (their pong queued), pongs matched to the pings they answer,
    /// and a Close answered and recorded as the close status, before they are returned.
    /// A partial frame stays in `input`, but its payload is unmasked and, for text,
    /// validated as it arrives, so invalid UTF-8 fails the connection before the frame
    /// ends. A violation fails the connection: a Close with the matching code is queued,
    /// the state becomes [`ReadyState::Closed`], the error is returned, and any later input
    /// is discarded.
    #[inline]
    pub fn read(&mut self, input: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        if matches!(self.phase, Phase::Open | Phase::CloseSent) {
            match self.read_small(input) {
                Some(Ok(message)) => return Ok(Some(message)),
                Some(Err(error)) => return self.fail_reading(input, error),
                None => {}
            }
        }
        self.read_general(input)
    }

    /// Everything [`Protocol::read_small`] leaves: kept out of line, so that the small
    /// path carries none of its weight.
    #[inline(never)]
    fn read_general(&mut self, input: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        if !matches!(self.phase, Phase::Open | Phase::CloseSent) || self.has_deferred_failure() {
            input.clear();
            return Ok(None);
        }
        self.read_inner(input).or_else(|e| self.fail_reading(input, e))
    }

    #[cold]
    fn fail_reading(&mut self, input: &mut BytesMut, error: ProtocolError) -> Result<Option<Message>, ProtocolError> {
        input.clear();
        if self.defer_failures {
            self.rare().deferred = Some(error);
            return Ok(None);
        }
        Err(self.fail(error))
    }

    /// With `defer` on, a violation [`Protocol::read`] finds does not fail the connection
    /// at once: reading stops (`read` returns `Ok(None)`, [`Protocol::wants_input`] is
    /// false) and the failure waits for [`Protocol::fail_deferred`]. A driver that reads
    /// ahead of its application uses it so that the messages received before the
    /// violation are answered before the Close (what the Autobahn suite calls strict).
    pub fn defer_failures(&mut self, defer: bool) {
        self.defer_failures = defer;
    }

    /// Whether a violation waits for [`Protocol::fail_deferred`].
    pub fn has_deferred_failure(&self) -> bool {
        self.rare.as_ref().is_some_and(|r| r.deferred.is_some())
    }

    /// Fails the connection on the violation that waited, if any: its Close is queued,
    /// and the error returned.
    pub fn fail_deferred(&mut self) -> Option<ProtocolError> {
        let error = self.rare.as_mut()?.deferred.take()?;
        Some(self.fail(error))
    }

    /// The common case, told from the first bytes: a whole, final, unfragmented text or
    /// binary frame with a 7- or 16-bit length (under 64 KiB), with no message in
    /// progress. `None` leaves anything else, valid or not, to the general path, untouched.
    #[inline]
    fn read_small(&mut self, input: &mut BytesMut) -> Option<Result<Message, ProtocolError>> {
        if self.frame.is_some() || self.partial.is_some() {
            return None;
        }
        let [first, second, ..] = input[..] else { return None };
        // FIN, no RSV bit, text or binary.
        let text = match first {
            0x81 => true,
            0x82 => false,
            _ => return None,
        };
        let masked = second & 0x80 != 0;
        let (len, at) = match second & 0x7F {
            126 => match input.get(2..4) {
                Some(&[high, low]) => (usize::from(u16::from_be_bytes([high, low])), 4),
                _ => return None,
            },
            127 => return None,
            len => (usize::from(len), 2),
        };
        if masked != (self.role == Role::Server) || len > self.max_frame_size || len > self.max_message_size {
            return None;
        }
        let head = if masked { at + 4 } else { at };
        let total = head + len;
        if input.len() < total {
            return None;
        }
        if masked {
            let key = [input[at], input[at + 1], input[at + 2], input[at + 3]];
            apply_mask(&mut input[head..total], key, 0);
        }
        if text && !crate::utf8::is_valid(&input[head..total]) {
            return Some(Err(ProtocolError::InvalidUtf8));
        }
        // Advancing the frozen bytes past the header is a pointer bump; a BytesMut's is not.
        let mut payload = input.split_to(total).freeze();
        payload.advance(head);
        Some(Ok(if text { Message::Text(Utf8Bytes::from_validated(payload)) } else { Message::Binary(payload) }))
    }

    /// How many more bytes the frame being received needs (0 between frames): a hint for
    /// how much to read next.
    pub fn pending_frame_bytes(&self, input: &[u8]) -> usize {
        self.frame.map_or(0, |f| {
            let total = u64::from(f.header_len) + f.header.payload_len;
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
                    let total = header_len + header.payload_len as usize; // bounded by max_frame_size
                    if input.len() >= total {
                        // The whole frame is here, the usual case for small messages:
                        // unmask and check it in one go, and hand its payload out as is.
                        let mut bytes = input.split_to(total);
                        let payload = &mut bytes[header_len..];
                        if let Some(key) = header.mask {
                            apply_mask(payload, key, 0);
                        }
                        if f.validate {
                            self.utf8.feed(payload).map_err(|_| ProtocolError::InvalidUtf8)?;
                        }
                        bytes.advance(header_len);
                        match self.end_frame(header, bytes)? {
                            Some(message) => return Ok(Some(message)),
                            None => continue,
                        }
                    }
                    self.frame = Some(f);
                    f
                }
            };
            let header_len = usize::from(frame.header_len);
            let payload_len = frame.header.payload_len as usize; // bounded by max_frame_size
            let available = (input.len() - header_len).min(payload_len);
            let checked = frame.checked as usize;
            if available > checked {
                let span = &mut input[header_len + checked..header_len + available];
                if let Some(key) = frame.header.mask {
                    apply_mask(span, key, checked);
                }
                if frame.validate {
                    self.utf8.feed(span).map_err(|_| ProtocolError::InvalidUtf8)?;
                }
                if let Some(f) = self.frame.as_mut() {
                    f.checked = available as u64;
                }
            }
            if available < payload_len {
                return Ok(None);
            }
            input.advance(header_len);
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
        if header.rsv != 0 {
            let allowed = match &self.extension {
                Some(ext) if matches!(header.opcode, OpCode::Text | OpCode::Binary) => ext.rsv_bits(),
                _ => 0,
            };
            if header.rsv & !allowed != 0 {
                return Err(ProtocolError::ReservedBits(header.rsv & !allowed));
            }
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
        // A header is at most 14 bytes.
        Ok(InFrame { header, header_len: header_len as u8, validate, checked: 0 })
    }

    /// Acts on a whole frame, whose payload is unmasked (and, for plain text, validated).
    fn end_frame(&mut self, header: FrameHeader, payload: BytesMut) -> Result<Option<Message>, ProtocolError> {
        match header.opcode {
            OpCode::Text | OpCode::Binary if header.fin && header.rsv == 0 => {
                if header.opcode == OpCode::Text {
                    self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                    return Ok(Some(Message::Text(Utf8Bytes::from_validated(payload.freeze()))));
                }
                Ok(Some(Message::Binary(payload.freeze())))
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
                if self.phase == Phase::Open {
                    if self.out.len() >= self.high_water {
                        // §5.5.3: only the latest ping needs its pong; a peer that pings
                        // while never reading must not grow the queue.
                        self.rare().pending_pong = Some(payload.clone());
                    } else {
                        self.write_frame(OpCode::Pong, 0, &payload);
                    }
                }
                Ok(Some(Message::Ping(payload)))
            }
            OpCode::Pong => {
                let payload = payload.freeze();
                self.match_pong(&payload);
                Ok(Some(Message::Pong(payload)))
            }
            OpCode::Close => {
                let frame = CloseFrame::parse(payload.freeze())?;
                let reason = frame.as_ref().map(|f| f.reason.clone()).unwrap_or_default();
                self.set_close_status(CloseFrame::code_of(frame.as_ref()), reason);
                if self.phase == Phase::Open {
                    // §5.5.1: reply, echoing the status code.
                    let reply = frame.as_ref().map(|f| CloseFrame { code: f.code, reason: Utf8Bytes::new() });
                    self.write_close(reply.as_ref());
                    self.deadline = Some(self.last_input + ms(self.timing.close));
                } else if self.deadline.is_none() {
                    self.unanchored = true;
                }
                self.phase = Phase::Closed;
                Ok(Some(Message::Close(frame)))
            }
        }
    }

    /// A pong answers the oldest ping with its payload, and every ping sent before it.
    fn match_pong(&mut self, payload: &Bytes) {
        let Some(rare) = self.rare.as_mut() else { return };
        if let Some(i) = rare.pings.iter().position(|(_, p)| p == payload) {
            rare.ping_acked = rare.pings[i].0;
            rare.pings.drain(..=i);
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
            return Ok(Message::Text(Utf8Bytes::from_validated(partial.buf.freeze())));
        }
        Ok(Message::Binary(partial.buf.freeze()))
    }

    /// Fails the connection: queue a Close with the error's code, stop reading.
    fn fail(&mut self, error: ProtocolError) -> ProtocolError {
        tracing::debug!(%error, "failing websocket connection");
        if self.phase == Phase::Open {
            let frame = CloseFrame { code: error.close_code(), reason: Utf8Bytes::new() };
            self.write_close(Some(&frame));
        }
        self.set_close_status(error.close_code(), Utf8Bytes::new());
        self.failed = true;
        self.frame = None;
        self.partial = None;
        self.phase = Phase::Closed;
        self.deadline = Some(self.last_input + ms(self.timing.close));
        self.unanchored = false;
        error
    }

    /// Queues a message: text and binary as data frames, ping and pong as control frames,
    /// close as [`Protocol::close`]. While connecting, messages are queued and encoded on
    /// open.
    #[inline]
    pub fn send(&mut self, message: Message) -> Result<(), Error> {
        // The common case, inline: a data message on an open server connection without
        // an extension. Everything else goes through the general path.
        if self.phase == Phase::Open && self.role == Role::Server && self.extension.is_none() {
            match message {
                Message::Text(text) => self.out.put_frame(0x81, text.as_bytes()),
                Message::Binary(data) => self.out.put_frame(0x82, &data),
                message => return self.send_general(message),
            }
            return Ok(());
        }
        self.send_general(message)
    }

    #[inline(never)]
    fn send_general(&mut self, message: Message) -> Result<(), Error> {
        match message {
            Message::Text(t) => self.send_data(OpCode::Text, t.into_bytes()),
            Message::Binary(b) => self.send_data(OpCode::Binary, b),
            Message::Close(frame) => self.close(frame),
            Message::Ping(p) | Message::Pong(p) if p.len() > MAX_CONTROL_PAYLOAD => {
                Err(Error::InvalidArgument(ProtocolError::ControlFrameTooLong))
            }
            Message::Ping(p) => self.send_control(OpCode::Ping, p),
            Message::Pong(p) => self.send_control(OpCode::Pong, p),
        }
    }

    fn writable(&self) -> Result<(), Error> {
        if matches!(self.phase, Phase::Open | Phase::Connecting) { Ok(()) } else { Err(Error::Closed) }
    }

    /// While connecting, a message waits for [`Protocol::open`].
    fn queue_while_connecting(&mut self, message: Message) {
        let rare = self.rare();
        rare.queued_len += message.len();
        rare.queued.push_back(message);
    }

    fn send_data(&mut self, opcode: OpCode, payload: Bytes) -> Result<(), Error> {
        self.writable()?;
        if self.phase == Phase::Connecting {
            let message = if opcode == OpCode::Text { Message::Text(Utf8Bytes::from_validated(payload)) } else { Message::Binary(payload) };
            self.queue_while_connecting(message);
            return Ok(());
        }
        if let Some(ext) = self.extension.as_mut() {
            let mut encoded = BytesMut::new();
            match ext.encode(opcode, &payload, &mut encoded) {
                Ok(Some(rsv)) => {
                    self.write_frame(opcode, rsv, &encoded.freeze());
                    return Ok(());
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "extension failed to encode; sending the message as is"),
            }
        }
        self.write_frame(opcode, 0, &payload);
        Ok(())
    }

    fn send_control(&mut self, opcode: OpCode, payload: Bytes) -> Result<(), Error> {
        self.writable()?;
        if self.phase == Phase::Connecting {
            self.queue_while_connecting(if opcode == OpCode::Ping { Message::Ping(payload) } else { Message::Pong(payload) });
        } else {
            self.write_frame(opcode, 0, &payload);
        }
        Ok(())
    }

    /// Sends a ping whose pong [`Protocol::ping_answered`] reports, returning its sequence
    /// number.
    pub fn ping(&mut self, payload: Bytes) -> Result<u64, Error> {
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(Error::InvalidArgument(ProtocolError::ControlFrameTooLong));
        }
        self.send_control(OpCode::Ping, payload.clone())?;
        let rare = self.rare();
        rare.ping_seq += 1;
        if rare.pings.len() == MAX_PENDING_PINGS {
            rare.pings.pop_front();
        }
        let seq = rare.ping_seq;
        rare.pings.push_back((seq, payload));
        Ok(seq)
    }

    /// Whether the pong of the ping [`Protocol::ping`] numbered `seq` arrived (or that of
    /// a later one, which answers it too).
    pub fn ping_answered(&self, seq: u64) -> bool {
        self.rare.as_ref().is_some_and(|r| r.ping_acked >= seq)
    }

    /// Queues a message encoded once for many connections: a server queues the shared
    /// frame bytes as they are; a client, which must mask, encodes the message itself.
    pub fn send_prepared(&mut self, prepared: &PreparedMessage) -> Result<(), Error> {
        if self.role == Role::Client || self.phase == Phase::Connecting {
            return self.send(prepared.message().clone());
        }
        self.writable()?;
        self.out.put_bytes(prepared.frame());
        Ok(())
    }

    /// Starts the close handshake (RFC 6455 §7.1.2) with an optional code and reason; the
    /// close timeout starts at the next [`Protocol::handle_timeout`]. Sending anything
    /// after it fails with [`Error::Closed`].
    pub fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        if let Some(f) = &frame {
            CloseFrame::new(f.code, f.reason.clone()).map_err(Error::InvalidArgument)?;
        }
        self.writable()?;
        if self.phase == Phase::Connecting {
            // What was queued goes out first, then the Close.
            let at = self.last_input;
            self.open(at);
        }
        self.write_close(frame.as_ref());
        self.phase = Phase::CloseSent;
        self.deadline = None;
        self.unanchored = true;
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
    }

    /// Encodes one whole frame into `out`; client frames are masked with a fresh key.
    fn write_frame(&mut self, opcode: OpCode, rsv: u8, payload: &Bytes) {
        let head = 0x80 | rsv | opcode.as_u8();
        match self.role {
            Role::Server => self.out.put_frame(head, payload),
            Role::Client => {
                let key = rand::random::<[u8; 4]>();
                let header = FrameHeader { fin: true, rsv, opcode, mask: Some(key), payload_len: payload.len() as u64 };
                let mut bytes = [0u8; MAX_HEADER_LEN];
                let n = header.encode(&mut bytes);
                self.out.put_slice(&bytes[..n]);
                self.out.put_with(payload.len(), |dst| {
                    dst.copy_from_slice(payload);
                    apply_mask(dst, key, 0);
                });
            }
        }
    }

    /// Input arrived from the peer at `now`: it is alive, whatever the input is.
    pub fn received(&mut self, now: Instant) {
        self.last_input = now;
        if self.phase == Phase::Open {
            self.deadline = None;
        }
    }

    /// When [`Protocol::handle_timeout`] must next be called, if ever: the keepalive's
    /// next ping or its pong timeout, or the close deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Open => self.deadline.or_else(|| self.timing.ping.map(|i| self.last_input + ms(i.get()))),
            // An unanchored deadline is due at once: handle_timeout starts it.
            Phase::CloseSent | Phase::Closed if self.unanchored => Some(self.last_input),
            Phase::CloseSent | Phase::Closed => self.deadline,
            Phase::Connecting | Phase::Ended => None,
        }
    }

    /// Acts on the time: sends a keepalive ping after [`Options::ping_interval`] without
    /// input, and ends the connection when its pong timeout or the close deadline passes.
    ///
    /// An error means the connection ended at once, without (the rest of) a close
    /// handshake: [`Error::KeepaliveTimeout`] or [`Error::CloseTimeout`]; the caller drops
    /// the transport. A close handshake that completed but whose transport did not end in
    /// time ends too, without an error.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        if self.unanchored {
            self.unanchored = false;
            self.deadline = Some(now + ms(self.timing.close));
        }
        let Some(due) = self.poll_timeout() else { return Ok(()) };
        if now + SLACK < due {
            return Ok(());
        }
        match self.phase {
            Phase::Open if self.deadline.is_some() => {
                self.end();
                Err(Error::KeepaliveTimeout)
            }
            Phase::Open => {
                // Control frames go out whatever the write queue holds: a peer that
                // stopped reading must still be detected.
                self.write_frame(OpCode::Ping, 0, &Bytes::new());
                self.deadline = Some(now + ms(self.timing.pong));
                Ok(())
            }
            Phase::CloseSent => {
                self.end();
                Err(Error::CloseTimeout)
            }
            Phase::Closed => {
                self.end();
                Ok(())
            }
            Phase::Connecting | Phase::Ended => Ok(()),
        }
    }

    /// The transport ended (EOF, an I/O error, or the caller dropped it): the connection
    /// is over. Without a Close exchanged, the close status is 1006; everything queued is
    /// dropped.
    pub fn end(&mut self) {
        self.set_close_status(CloseCode::ABNORMAL, Utf8Bytes::new());
        self.phase = Phase::Ended;
        self.deadline = None;
        self.unanchored = false;
        self.frame = None;
        self.partial = None;
        self.out.clear();
        if let Some(rare) = self.rare.as_mut() {
            rare.queued = VecDeque::new();
            rare.queued_len = 0;
            rare.pings = VecDeque::new();
            rare.pending_pong = None;
        }
    }
}

#[cfg(test)]
mod tests;
