//! The frame header: decode and encode (RFC 6455 §5.2).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! |     Extended payload length continued, if payload len == 127  |
//! + - - - - - - - - - - - - - - - +-------------------------------+
//! |                               |Masking-key, if MASK set to 1  |
//! +-------------------------------+-------------------------------+
//! ```
//!
//! Decoding checks only what the header alone can tell (reserved opcodes, control frame
//! rules, the 63-bit length limit); whether RSV bits or masking are allowed depends on the
//! connection and is checked by the protocol.

use crate::error::ProtocolError;

/// The largest header: 2 bytes, an 8-byte extended length and a 4-byte masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload of a control frame (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame opcode (RFC 6455 §5.2, §11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OpCode {
    /// A continuation of a fragmented message.
    Continuation,
    /// The first frame of a text message.
    Text,
    /// The first frame of a binary message.
    Binary,
    /// Close (§5.5.1).
    Close,
    /// Ping (§5.5.2).
    Ping,
    /// Pong (§5.5.3).
    Pong,
}

impl OpCode {
    /// The opcode for its 4-bit value; `None` for the reserved values 0x3-0x7 and 0xB-0xF.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    /// The 4-bit value.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Close, Ping and Pong are control frames (§5.5).
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// RSV1, the bit permessage-deflate uses (RFC 7692 §6).
pub const RSV1: u8 = 0x40;
/// RSV2.
pub const RSV2: u8 = 0x20;
/// RSV3.
pub const RSV3: u8 = 0x10;

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The final fragment of a message.
    pub fin: bool,
    /// The RSV1-3 bits, in their wire positions (`RSV1 | RSV2 | RSV3`).
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, when the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
}

impl FrameHeader {
    /// Decodes a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not yet hold the whole header, otherwise the header
    /// and its length in bytes.
    ///
    /// ```
    /// use wsdriver::frame::{FrameHeader, OpCode};
    /// // RFC 6455 §5.7: an unmasked "Hello".
    /// let (h, len) = FrameHeader::decode(&[0x81, 0x05, b'H']).unwrap().unwrap();
    /// assert_eq!((h.fin, h.opcode, h.payload_len, h.mask, len), (true, OpCode::Text, 5, None, 2));
    /// assert!(FrameHeader::decode(&[0x81]).unwrap().is_none());
    /// ```
    pub fn decode(buf: &[u8]) -> Result<Option<(Self, usize)>, ProtocolError> {
        let [b0, b1, ..] = *buf else { return Ok(None) };
        let fin = b0 & 0x80 != 0;
        let rsv = b0 & (RSV1 | RSV2 | RSV3);
        let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(ProtocolError::ReservedOpCode(b0 & 0x0F))?;
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7F;
        if opcode.is_control() {
            if !fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if len7 > MAX_CONTROL_PAYLOAD as u8 {
                return Err(ProtocolError::ControlFrameTooLong);
            }
        }
        let (payload_len, mut pos) = match len7 {
            126 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => {
                    let mut be = [0u8; 8];
                    be.copy_from_slice(b);
                    let len = u64::from_be_bytes(be);
                    // §5.2: the most significant bit MUST be 0.
                    if len >> 63 != 0 {
                        return Err(ProtocolError::InvalidLength);
                    }
                    (len, 10)
                }
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        let mask = if masked {
            let Some(k) = buf.get(pos..pos + 4) else { return Ok(None) };
            pos += 4;
            Some([k[0], k[1], k[2], k[3]])
        } else {
            None
        };
        Ok(Some((Self { fin, rsv, opcode, mask, payload_len }, pos)))
    }

    /// The encoded length of this header.
    pub fn encoded_len(&self) -> usize {
        let len = match self.payload_len {
            0..=125 => 2,
            126..=0xFFFF => 4,
            _ => 10,
        };
        len + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Encodes the header into `out`, returning the number of bytes written. Lengths use
    /// the minimal encoding (§5.2).
    ///
    /// ```
    /// use wsdriver::frame::{FrameHeader, OpCode};
    /// let h = FrameHeader { fin: true, rsv: 0, opcode: OpCode::Binary, mask: None, payload_len: 256 };
    /// let mut out = [0u8; 14];
    /// let n = h.encode(&mut out);
    /// assert_eq!(&out[..n], &[0x82, 0x7E, 0x01, 0x00]); // RFC 6455 §5.7, 256 bytes
    /// ```
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        out[0] = (u8::from(self.fin) << 7) | self.rsv | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut pos = match self.payload_len {
            n @ 0..=125 => {
                out[1] = mask_bit | n as u8;
                2
            }
            n @ 126..=0xFFFF => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                4
            }
            n => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&n.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            out[pos..pos + 4].copy_from_slice(&key);
            pos += 4;
        }
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::apply_mask;
    use proptest::prelude::*;

    fn decode_all(buf: &[u8]) -> (FrameHeader, usize) {
        FrameHeader::decode(buf).unwrap().unwrap()
    }

    // The example frames of RFC 6455 §5.7.
    #[test]
    fn rfc_single_frame_unmasked_text() {
        let buf = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let (h, n) = decode_all(&buf);
        assert_eq!((h.fin, h.opcode, h.mask, h.payload_len), (true, OpCode::Text, None, 5));
        assert_eq!(&buf[n..], b"Hello");
    }

    #[test]
    fn rfc_single_frame_masked_text() {
        let mut buf = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let (h, n) = decode_all(&buf);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        apply_mask(&mut buf[n..], h.mask.unwrap(), 0);
        assert_eq!(&buf[n..], b"Hello");
    }

    #[test]
    fn rfc_fragmented_unmasked_text() {
        let first = [0x01, 0x03, 0x48, 0x65, 0x6c];
        let second = [0x80, 0x02, 0x6c, 0x6f];
        let (h1, _) = decode_all(&first);
        let (h2, _) = decode_all(&second);
        assert_eq!((h1.fin, h1.opcode), (false, OpCode::Text));
        assert_eq!((h2.fin, h2.opcode), (true, OpCode::Continuation));
    }

    #[test]
    fn rfc_ping_and_pong() {
        let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let pong = [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        assert_eq!(decode_all(&ping).0.opcode, OpCode::Ping);
        let (h, _) = decode_all(&pong);
        assert_eq!((h.opcode, h.payload_len, h.mask.is_some()), (OpCode::Pong, 5, true));
    }

    #[test]
    fn rfc_binary_lengths() {
        assert_eq!(
            decode_all(&[0x82, 0x7E, 0x01, 0x00]),
            (FrameHeader { fin: true, rsv: 0, opcode: OpCode::Binary, mask: None, payload_len: 256 }, 4)
        );
        let (h, n) = decode_all(&[0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0, 0]);
        assert_eq!((h.payload_len, n), (65536, 10));
    }

    #[test]
    fn header_rules() {
        assert_eq!(FrameHeader::decode(&[0x83, 0]), Err(ProtocolError::ReservedOpCode(3)));
        assert_eq!(FrameHeader::decode(&[0x8B, 0]), Err(ProtocolError::ReservedOpCode(0xB)));
        assert_eq!(FrameHeader::decode(&[0x09, 0]), Err(ProtocolError::FragmentedControlFrame));
        assert_eq!(FrameHeader::decode(&[0x89, 126, 0, 126]), Err(ProtocolError::ControlFrameTooLong));
        assert_eq!(FrameHeader::decode(&[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0]), Err(ProtocolError::InvalidLength));
        assert_eq!(decode_all(&[0xF2, 0]).0.rsv, RSV1 | RSV2 | RSV3);
    }

    #[test]
    fn partial_headers_need_more() {
        let full = [0x82, 0xFF, 0, 0, 0, 0, 0, 0x01, 0, 0, 1, 2, 3, 4];
        for n in 0..full.len() {
            assert_eq!(FrameHeader::decode(&full[..n]), Ok(None), "prefix of {n} bytes");
        }
        assert_eq!(decode_all(&full).1, 14);
    }

    fn any_header() -> impl Strategy<Value = FrameHeader> {
        let opcode = prop_oneof![
            Just(OpCode::Continuation),
            Just(OpCode::Text),
            Just(OpCode::Binary),
            Just(OpCode::Close),
            Just(OpCode::Ping),
            Just(OpCode::Pong)
        ];
        (opcode, any::<bool>(), 0u8..8, any::<Option<[u8; 4]>>(), any::<u64>()).prop_map(|(opcode, fin, rsv, mask, len)| {
            let (fin, payload_len) = if opcode.is_control() { (true, len % 126) } else { (fin, len >> 1) };
            FrameHeader { fin, rsv: rsv << 4, opcode, mask, payload_len }
        })
    }

    proptest! {
        #[test]
        fn encode_then_decode(h in any_header()) {
            let mut out = [0u8; MAX_HEADER_LEN];
            let n = h.encode(&mut out);
            prop_assert_eq!(n, h.encoded_len());
            prop_assert_eq!(FrameHeader::decode(&out[..n]), Ok(Some((h, n))));
            // Any shorter prefix asks for more bytes rather than misparsing.
            for k in 0..n {
                prop_assert_eq!(FrameHeader::decode(&out[..k]), Ok(None));
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..20)) {
            let _ = FrameHeader::decode(&bytes);
        }
    }
}
