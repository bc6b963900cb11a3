//! Incremental UTF-8 validation (RFC 6455 §8.1).
//!
//! A text message may be split across frames, and a frame across reads, at any byte, even
//! inside a character. [`Utf8Validator`] accepts the payload piece by piece and reports an
//! invalid sequence as soon as the bytes that make it invalid arrive, so the connection can
//! fail with 1007 before the rest of the message is received.

use bytes::Bytes;
use std::fmt;
use std::ops::Deref;

/// The outcome of feeding bytes that are not valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

/// Validates a UTF-8 stream fed in arbitrary pieces.
///
/// ```
/// use wsdriver::utf8::Utf8Validator;
/// let mut v = Utf8Validator::default();
/// let euro = "€".as_bytes(); // three bytes
/// assert!(v.feed(&euro[..1]).is_ok());
/// assert!(v.feed(&euro[1..]).is_ok());
/// assert!(v.finish().is_ok());
/// assert!(v.feed(&[0xff]).is_err()); // never valid: fails at once
/// ```
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    /// The bytes of a character cut at the end of the previous piece.
    partial: [u8; 4],
    partial_len: u8,
}

/// Inputs shorter than this take the ASCII fast path first.
const SHORT_INPUT: usize = 128;

/// Whether `bytes`, a whole text, is valid UTF-8. Short ASCII (most small text messages)
/// is checked a word at a time, without simdutf8's set-up for inputs too short for its
/// vector loop.
#[inline]
pub(crate) fn is_valid(bytes: &[u8]) -> bool {
    (bytes.len() < SHORT_INPUT && bytes.is_ascii()) || simdutf8::basic::from_utf8(bytes).is_ok()
}

impl Utf8Validator {
    /// Validates the next piece of the stream.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<(), InvalidUtf8> {
        if self.partial_len > 0 {
            // Complete the cut character one byte at a time; at most three more bytes.
            while self.partial_len < 4 && !input.is_empty() {
                self.partial[self.partial_len as usize] = input[0];
                self.partial_len += 1;
                input = &input[1..];
                match simdutf8::compat::from_utf8(&self.partial[..self.partial_len as usize]) {
                    Ok(_) => {
                        self.partial_len = 0;
                        break;
                    }
                    Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
                    Err(_) => {} // still incomplete
                }
            }
            if self.partial_len > 0 {
                return if input.is_empty() { Ok(()) } else { Err(InvalidUtf8) };
            }
        }
        // Short ASCII (most small text messages) is checked a word at a time, without
        // simdutf8's set-up for inputs too short for its vector loop.
        if input.len() < SHORT_INPUT && input.is_ascii() {
            return Ok(());
        }
        match simdutf8::compat::from_utf8(input) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                // A valid prefix of a character at the very end: keep it for the next piece.
                let tail = &input[e.valid_up_to()..];
                self.partial[..tail.len()].copy_from_slice(tail);
                self.partial_len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// Ends the stream: fails if it stopped inside a character.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.partial_len == 0;
        self.partial_len = 0;
        if complete { Ok(()) } else { Err(InvalidUtf8) }
    }

    /// Whether no character is cut at the current position.
    pub fn is_complete(&self) -> bool {
        self.partial_len == 0
    }
}

/// Immutable, cheaply cloneable bytes that are guaranteed to be valid UTF-8: the payload of
/// a text message, shared without copying.
///
/// ```
/// use wsdriver::Utf8Bytes;
/// let text = Utf8Bytes::from("héllo");
/// assert_eq!(text.as_str(), "héllo");
/// assert!(Utf8Bytes::try_from(bytes::Bytes::from_static(&[0xc3])).is_err());
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// An empty string.
    pub const fn new() -> Self {
        Self(Bytes::new())
    }

    /// A string from a `'static` str, without allocating.
    pub const fn from_static(s: &'static str) -> Self {
        Self(Bytes::from_static(s.as_bytes()))
    }

    /// Wraps bytes already checked to be UTF-8 by the caller (the protocol validates text
    /// incrementally as it arrives and must not pay for it twice).
    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        debug_assert!(simdutf8::basic::from_utf8(&bytes).is_ok());
        Self(bytes)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        #[allow(unsafe_code)]
        // SAFETY: every constructor either validates the bytes or receives bytes the
        // protocol already validated; the bytes are immutable afterwards.
        unsafe {
            std::str::from_utf8_unchecked(&self.0)
        }
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Unwraps the underlying bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Utf8Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(s: &str) -> Self {
        Self(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<&String> for Utf8Bytes {
    fn from(s: &String) -> Self {
        Self::from(s.as_str())
    }
}

impl TryFrom<Bytes> for Utf8Bytes {
    type Error = InvalidUtf8;
    fn try_from(bytes: Bytes) -> Result<Self, InvalidUtf8> {
        simdutf8::basic::from_utf8(&bytes).map_err(|_| InvalidUtf8)?;
        Ok(Self(bytes))
    }
}

impl TryFrom<Vec<u8>> for Utf8Bytes {
    type Error = InvalidUtf8;
    fn try_from(bytes: Vec<u8>) -> Result<Self, InvalidUtf8> {
        Self::try_from(Bytes::from(bytes))
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn feed_split(data: &[u8], cuts: &[usize]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::default();
        let mut start = 0;
        for &cut in cuts {
            let cut = cut.clamp(start, data.len());
            v.feed(&data[start..cut])?;
            start = cut;
        }
        v.feed(&data[start..])?;
        v.finish()
    }

    #[test]
    fn fails_fast_inside_a_piece() {
        let mut v = Utf8Validator::default();
        assert!(v.feed(b"hello ").is_ok());
        assert_eq!(v.feed(&[0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80]), Err(InvalidUtf8));
    }

    #[test]
    fn fails_on_first_impossible_byte_of_a_cut_character() {
        let mut v = Utf8Validator::default();
        assert!(v.feed(&[0xf4]).is_ok());
        // 0xf4 0x90 would encode a code point above U+10FFFF: invalid on the second byte.
        assert_eq!(v.feed(&[0x90]), Err(InvalidUtf8));
    }

    #[test]
    fn truncated_at_end_is_invalid() {
        let mut v = Utf8Validator::default();
        assert!(v.feed(&[0xe2, 0x82]).is_ok());
        assert_eq!(v.finish(), Err(InvalidUtf8));
    }

    proptest! {
        #[test]
        fn agrees_with_std_for_any_split(data in proptest::collection::vec(any::<u8>(), 0..64),
                                          cuts in proptest::collection::vec(0usize..64, 0..6)) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            prop_assert_eq!(feed_split(&data, &cuts).is_ok(), std::str::from_utf8(&data).is_ok());
        }

        #[test]
        fn valid_text_passes_any_split(s in "\\PC{0,40}", cuts in proptest::collection::vec(0usize..160, 0..6)) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            prop_assert!(feed_split(s.as_bytes(), &cuts).is_ok());
        }
    }
}
