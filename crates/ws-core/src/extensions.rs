//! The extension hook (RFC 6455 §9): a negotiated per-message extension transforms
//! payloads and owns RSV bits. permessage-deflate (RFC 7692) plugs in here.

use crate::error::ProtocolError;
use crate::frame::OpCode;
use bytes::BytesMut;

/// A negotiated per-message extension, such as permessage-deflate.
///
/// The protocol calls [`Extension::encode`] on every outgoing text or binary message, and
/// routes the frames of every incoming message whose first frame carries one of
/// [`Extension::rsv_bits`] through [`Extension::decode`]. A frame with an RSV bit that no
/// extension claims fails the connection with 1002.
pub trait Extension: Send + 'static {
    /// The RSV bits this extension may set on the first frame of a message (e.g.
    /// [`RSV1`](crate::frame::RSV1)).
    fn rsv_bits(&self) -> u8;

    /// Encodes an outgoing message payload into `out`, returning the RSV bits to set on
    /// its first frame, or `None` to send the payload untransformed (e.g. under a size
    /// threshold), in which case `out` must be left empty.
    fn encode(&mut self, opcode: OpCode, payload: &[u8], out: &mut BytesMut) -> Result<Option<u8>, ProtocolError>;

    /// Decodes one frame of an incoming message whose first frame carried `rsv`, appending
    /// the output to `out`; `fin` marks the message's last frame. The output may not grow
    /// `out` past `limit` bytes: past it, fail with
    /// [`ProtocolError::MessageTooBig`].
    fn decode(&mut self, rsv: u8, payload: &[u8], fin: bool, out: &mut BytesMut, limit: usize) -> Result<(), ProtocolError>;
}
