//! Errors: protocol violations by the peer, handshake failures, and I/O.

use crate::close::CloseCode;
use crate::handshake::HandshakeError;
use std::io;

/// A violation of RFC 6455 by the peer, or a configured limit it exceeded. Each maps to the
/// close code the connection fails with ([`ProtocolError::close_code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// An opcode reserved for future use (§5.2).
    #[error("reserved opcode {0:#x}")]
    ReservedOpCode(u8),
    /// An RSV bit set that no negotiated extension defines (§5.2).
    #[error("reserved bits {0:#04x} set without a negotiated extension")]
    ReservedBits(u8),
    /// A control frame with FIN clear (§5.5).
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// A control frame payload over 125 bytes (§5.5).
    #[error("control frame payload over 125 bytes")]
    ControlFrameTooLong,
    /// A 64-bit payload length with its most significant bit set (§5.2).
    #[error("payload length with the most significant bit set")]
    InvalidLength,
    /// A client frame without a mask, seen by a server (§5.1).
    #[error("unmasked frame from a client")]
    UnmaskedFrame,
    /// A server frame with a mask, seen by a client (§5.1).
    #[error("masked frame from a server")]
    MaskedFrame,
    /// A continuation frame with no message in progress (§5.4).
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is in progress (§5.4).
    #[error("new data frame before the fragmented message finished")]
    ExpectedContinuation,
    /// Text, or a close reason, that is not valid UTF-8 (§8.1).
    #[error("invalid utf-8 in text")]
    InvalidUtf8,
    /// A Close payload of one byte (§5.5.1).
    #[error("close frame payload of one byte")]
    InvalidClosePayload,
    /// A close code that may not be sent (§7.4).
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// A close reason over 123 bytes.
    #[error("close reason over 123 bytes")]
    CloseReasonTooLong,
    /// A frame larger than the configured maximum frame size.
    #[error("frame of {size} bytes exceeds the limit of {limit}")]
    FrameTooBig {
        /// The announced payload length.
        size: u64,
        /// The configured limit.
        limit: usize,
    },
    /// A message larger than the configured maximum message size.
    #[error("message of at least {size} bytes exceeds the limit of {limit}")]
    MessageTooBig {
        /// The size reached so far.
        size: u64,
        /// The configured limit.
        limit: usize,
    },
    /// A data frame after the peer's Close (§5.5.1).
    #[error("data after close")]
    DataAfterClose,
    /// An extension rejected the payload (e.g. a corrupt deflate stream).
    #[error("extension error: {0}")]
    Extension(String),
}

impl ProtocolError {
    /// The close code a connection failed by this error is closed with.
    ///
    /// ```
    /// use wsdriver::{CloseCode, ProtocolError};
    /// assert_eq!(ProtocolError::InvalidUtf8.close_code(), CloseCode::INVALID_PAYLOAD);
    /// assert_eq!(ProtocolError::MessageTooBig { size: 2, limit: 1 }.close_code(), CloseCode::MESSAGE_TOO_BIG);
    /// assert_eq!(ProtocolError::UnmaskedFrame.close_code(), CloseCode::PROTOCOL_ERROR);
    /// ```
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::InvalidUtf8 | Self::Extension(_) => CloseCode::INVALID_PAYLOAD,
            Self::FrameTooBig { .. } | Self::MessageTooBig { .. } => CloseCode::MESSAGE_TOO_BIG,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

/// The error type of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer violated the protocol; the connection was failed with the matching code.
    #[error("protocol violation: {0}")]
    Protocol(#[from] ProtocolError),
    /// The opening handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// An I/O error on the underlying stream.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The connection is closing or closed: nothing more can be sent.
    #[error("connection closed")]
    Closed,
    /// The peer closed the stream without a Close frame (reported as code 1006).
    #[error("connection reset without a close frame")]
    ConnectionReset,
    /// The peer did not complete the close handshake within the close timeout.
    #[error("close handshake timed out")]
    CloseTimeout,
    /// The peer did not answer a keepalive ping within the pong timeout.
    #[error("no pong within the keepalive timeout")]
    KeepaliveTimeout,
    /// A non-waiting send found the write buffer at its high-water mark.
    #[error("write buffer full")]
    Full,
    /// A client URL that cannot be connected to (not `ws://` or `wss://`, no host).
    #[error("invalid url: {0}")]
    InvalidUrl(String),
    /// The TLS configuration could not be built.
    #[error("tls: {0}")]
    Tls(String),
    /// An argument the application passed is invalid (a close code that may not be sent,
    /// a control payload over 125 bytes).
    #[error("invalid argument: {0}")]
    InvalidArgument(ProtocolError),
    /// The client's proxy did not open the way to the server.
    #[cfg(feature = "client")]
    #[error("proxy: {0}")]
    Proxy(#[from] crate::client::ProxyError),
}

impl Error {
    /// The close code this error closes the connection with, where it closes one.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Self::Protocol(e) => Some(e.close_code()),
            Self::ConnectionReset | Self::Io(_) | Self::CloseTimeout | Self::KeepaliveTimeout => Some(CloseCode::ABNORMAL),
            _ => None,
        }
    }
}

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
