//! Close codes and reasons (RFC 6455 §5.5.1, §7.4).

use crate::error::ProtocolError;
use crate::utf8::Utf8Bytes;
use bytes::{Buf, Bytes};
use std::fmt;

/// A close status code (RFC 6455 §7.4).
///
/// ```
/// use wsdriver::CloseCode;
/// assert!(CloseCode::NORMAL.is_valid());
/// assert!(CloseCode::from(4000).is_valid());        // private use
/// assert!(!CloseCode::NO_STATUS_RECEIVED.is_valid()); // never on the wire
/// assert_eq!(u16::from(CloseCode::MESSAGE_TOO_BIG), 1009);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: the purpose of the connection was fulfilled.
    pub const NORMAL: Self = Self(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: a protocol error.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1005: no status code was present (reported locally, never sent).
    pub const NO_STATUS_RECEIVED: Self = Self(1005);
    /// 1006: the connection closed without a Close frame (reported locally, never sent).
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: data inconsistent with the message type, such as invalid UTF-8 in text.
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: a message too big to process.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: Self = Self(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013: try again later (overload).
    pub const TRY_AGAIN_LATER: Self = Self(1013);
    /// 1014: a gateway received an invalid response.
    pub const BAD_GATEWAY: Self = Self(1014);

    /// Whether the code may appear in a Close frame, sent or received: 1000-1003,
    /// 1007-1014 (registered with IANA), and 3000-4999 (libraries and private use).
    /// 1005, 1006 and 1015 are reserved for local reporting.
    pub fn is_valid(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        Self(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.0
    }
}

impl PartialEq<u16> for CloseCode {
    fn eq(&self, other: &u16) -> bool {
        self.0 == *other
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CloseCode({})", self.0)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The longest reason that fits a control frame beside its 2-byte code.
pub const MAX_REASON_LEN: usize = 123;

/// The code and reason of a Close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The reason: UTF-8, at most 123 bytes.
    pub reason: Utf8Bytes,
}

impl CloseFrame {
    /// A close frame with `code` and `reason`, checking both can be sent.
    ///
    /// ```
    /// use wsdriver::{CloseCode, CloseFrame};
    /// assert!(CloseFrame::new(CloseCode::NORMAL, "bye").is_ok());
    /// assert!(CloseFrame::new(CloseCode::ABNORMAL, "").is_err());
    /// assert!(CloseFrame::new(CloseCode::NORMAL, "x".repeat(124)).is_err());
    /// ```
    pub fn new(code: impl Into<CloseCode>, reason: impl Into<Utf8Bytes>) -> Result<Self, ProtocolError> {
        let code = code.into();
        let reason = reason.into();
        if !code.is_valid() {
            return Err(ProtocolError::InvalidCloseCode(code.0));
        }
        if reason.len() > MAX_REASON_LEN {
            return Err(ProtocolError::CloseReasonTooLong);
        }
        Ok(Self { code, reason })
    }

    /// Parses the payload of a received Close frame (§5.5.1): empty, or a valid code
    /// followed by a UTF-8 reason.
    pub fn parse(mut payload: Bytes) -> Result<Option<Self>, ProtocolError> {
        match payload.len() {
            0 => Ok(None),
            1 => Err(ProtocolError::InvalidClosePayload),
            _ => {
                let code = CloseCode(payload.get_u16());
                if !code.is_valid() {
                    return Err(ProtocolError::InvalidCloseCode(code.0));
                }
                let reason = Utf8Bytes::try_from(payload).map_err(|_| ProtocolError::InvalidUtf8)?;
                Ok(Some(Self { code, reason }))
            }
        }
    }

    /// The code reported to the application for a received Close frame, 1005 when it
    /// carried none.
    pub fn code_of(frame: Option<&Self>) -> CloseCode {
        frame.map_or(CloseCode::NO_STATUS_RECEIVED, |f| f.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_validity() {
        for valid in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999] {
            assert!(CloseCode(valid).is_valid(), "{valid}");
        }
        // The invalid codes Autobahn sends in its case 7.9.x, and a few more.
        for invalid in [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
            assert!(!CloseCode(invalid).is_valid(), "{invalid}");
        }
    }

    #[test]
    fn parse_payloads() {
        assert_eq!(CloseFrame::parse(Bytes::new()), Ok(None));
        assert_eq!(CloseFrame::parse(Bytes::from_static(&[3])), Err(ProtocolError::InvalidClosePayload));
        assert_eq!(
            CloseFrame::parse(Bytes::from_static(&[0x03, 0xE8, b'o', b'k'])),
            Ok(Some(CloseFrame { code: CloseCode::NORMAL, reason: "ok".into() }))
        );
        assert_eq!(CloseFrame::parse(Bytes::from_static(&[0x03, 0xED])), Err(ProtocolError::InvalidCloseCode(1005)));
        assert_eq!(CloseFrame::parse(Bytes::from_static(&[0x03, 0xE8, 0xff])), Err(ProtocolError::InvalidUtf8));
    }
}
