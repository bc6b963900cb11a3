//! The outgoing byte queue: encoded frames waiting to be written, drained with vectored
//! writes so a batch of frames goes out in one system call.
//!
//! Headers and small payloads are copied into one contiguous tail; large payloads are kept
//! as shared [`Bytes`] chunks (never copied), which lets one encoded broadcast frame be
//! queued on many connections.

use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::IoSlice;

/// Payloads at least this long are queued by reference instead of copied.
pub(crate) const SHARE_THRESHOLD: usize = 4096;

/// Capacity an empty tail starts with at least: a batch of small frames fits without
/// growing it step by step from a few bytes (one reallocation, and copy, per doubling).
/// The tail goes back to the thread's pool as soon as everything queued is written, so a
/// connection that is not writing holds none, and the next batch, of this connection or
/// another, takes it back at the size batches needed.
const START_CAPACITY: usize = 4 << 10;

/// Shared payloads queued by reference, boxed: only large payloads are, and every
/// connection carries the field.
#[allow(clippy::box_collection)]
type Chunks = Box<VecDeque<Bytes>>;

/// Bytes queued for writing, in order: `chunks` first, then `tail`.
#[derive(Debug, Default)]
pub struct WriteBuf {
    chunks: Option<Chunks>,
    tail: BytesMut,
    len: usize,
}

impl WriteBuf {
    /// Total bytes queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a copy of `data`.
    pub fn put_slice(&mut self, data: &[u8]) {
        self.reserve(data.len());
        self.tail.extend_from_slice(data);
        self.len += data.len();
    }

    /// Makes room for `n` more bytes in the tail, taking a released tail from the pool.
    #[inline]
    fn reserve(&mut self, n: usize) {
        if self.tail.capacity() - self.tail.len() < n {
            self.grow(n);
        }
    }

    #[inline(never)]
    fn grow(&mut self, n: usize) {
        if self.tail.capacity() == 0 {
            self.tail = crate::pool::write_buffer(n.max(START_CAPACITY));
        } else {
            self.tail.reserve(n);
        }
    }

    /// Appends `data` by reference (copying it if it is small).
    pub fn put_bytes(&mut self, data: &Bytes) {
        if data.len() < SHARE_THRESHOLD {
            return self.put_slice(data);
        }
        if !self.tail.is_empty() {
            let tail = self.tail.split().freeze();
            self.chunks.get_or_insert_with(Box::default).push_back(tail);
        }
        self.len += data.len();
        self.chunks.get_or_insert_with(Box::default).push_back(data.clone());
    }

    /// Appends an unmasked frame: its first header byte (FIN, RSV bits, opcode), the
    /// payload length in its shortest encoding (RFC 6455 §5.2), and the payload as
    /// [`put_bytes`] queues it (a small frame is one copy into room made once).
    ///
    /// [`put_bytes`]: Self::put_bytes
    #[inline]
    pub fn put_frame(&mut self, first: u8, payload: &Bytes) {
        let len = payload.len();
        if len <= 125 {
            self.reserve(2 + len);
            self.tail.extend_from_slice(&[first, len as u8]);
            self.tail.extend_from_slice(payload);
            self.len += 2 + len;
        } else {
            self.put_longer_frame(first, payload);
        }
    }

    #[inline(never)]
    fn put_longer_frame(&mut self, first: u8, payload: &Bytes) {
        let len = payload.len();
        if len < SHARE_THRESHOLD {
            self.reserve(4 + len);
            self.tail.extend_from_slice(&[first, 126, (len >> 8) as u8, len as u8]);
            self.tail.extend_from_slice(payload);
            self.len += 4 + len;
        } else {
            let mut head = [first, 126, 0, 0, 0, 0, 0, 0, 0, 0];
            let n = if len <= 0xFFFF {
                head[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                4
            } else {
                head[1] = 127;
                head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
                10
            };
            self.put_slice(&head[..n]);
            self.put_bytes(payload);
        }
    }

    /// Appends `n` bytes produced in place by `fill` (used to mask client payloads while
    /// copying them).
    pub fn put_with(&mut self, n: usize, fill: impl FnOnce(&mut [u8])) {
        self.reserve(n);
        let start = self.tail.len();
        self.tail.resize(start + n, 0);
        fill(&mut self.tail[start..]);
        self.len += n;
    }

    /// Fills `dst` with the queued bytes in order, returning how many slices were used.
    pub fn io_slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for chunk in self.chunks.iter().flat_map(|c| c.iter()).map(|c| &c[..]).chain(std::iter::once(&self.tail[..])) {
            if n == dst.len() {
                break;
            }
            if !chunk.is_empty() {
                dst[n] = IoSlice::new(chunk);
                n += 1;
            }
        }
        n
    }

    /// Drops the first `n` bytes, which were written.
    pub fn advance(&mut self, mut n: usize) {
        debug_assert!(n <= self.len);
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.as_mut().and_then(|c| c.front_mut()) else {
                if n < self.tail.len() {
                    self.tail.advance(n);
                } else {
                    // All written: emptied in place, so the tail keeps its whole room
                    // (advancing would leave it behind the consumed bytes).
                    self.tail.clear();
                }
                break;
            };
            if n < front.len() {
                front.advance(n);
                return;
            }
            n -= front.len();
            if let Some(chunks) = self.chunks.as_mut() {
                chunks.pop_front();
            }
        }
        self.release_if_empty();
    }

    /// Drops everything queued and releases its memory.
    pub fn clear(&mut self) {
        self.tail.clear();
        self.chunks = None;
        self.len = 0;
        self.release_if_empty();
    }

    /// Releases all memory once nothing is queued (an idle connection keeps none).
    pub fn release_if_empty(&mut self) {
        if self.len == 0 {
            crate::pool::recycle_write_buffer(std::mem::take(&mut self.tail));
            self.chunks = None;
        }
    }

    /// Copies out everything queued (tests and the fuzzers).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len);
        for c in self.chunks.iter().flat_map(|c| c.iter()) {
            v.extend_from_slice(c);
        }
        v.extend_from_slice(&self.tail);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_across_shared_and_copied() {
        let mut w = WriteBuf::default();
        w.put_slice(b"ab");
        let big = Bytes::from(vec![7u8; SHARE_THRESHOLD]);
        w.put_bytes(&big);
        w.put_slice(b"cd");
        let mut expected = b"ab".to_vec();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"cd");
        assert_eq!(w.to_vec(), expected);
        let mut slices = [IoSlice::new(&[]); 8];
        assert_eq!(w.io_slices(&mut slices), 3);
        w.advance(3);
        assert_eq!(w.to_vec(), expected[3..]);
        w.advance(w.len() - 1);
        assert_eq!(w.to_vec(), b"d");
        w.advance(1);
        assert!(w.is_empty());
        assert_eq!((w.tail.capacity(), w.chunks.is_none()), (0, true), "drained: memory released");
    }

    #[test]
    fn frames_small_copied_large_shared() {
        let mut w = WriteBuf::default();
        w.put_frame(0x81, &Bytes::from_static(b"hi"));
        let big = Bytes::from(vec![9u8; SHARE_THRESHOLD]);
        w.put_frame(0x82, &big);
        w.put_frame(0x81, &Bytes::from_static(b"!"));
        let mut slices = [IoSlice::new(&[]); 8];
        let n = w.io_slices(&mut slices);
        assert_eq!(n, 3, "header of the large frame rides with the small one before it");
        assert_eq!(&slices[0][..], [0x81, 2, b'h', b'i', 0x82, 126, 0x10, 0]);
        assert_eq!(slices[1].as_ptr(), big.as_ptr(), "the large payload is queued by reference");
        assert_eq!(&slices[2][..], [0x81, 1, b'!']);
        assert_eq!(w.len(), 8 + SHARE_THRESHOLD + 3);
    }

    #[test]
    fn a_drained_tail_is_taken_back_by_the_next_batch_with_all_its_room() {
        let mut w = WriteBuf::default();
        w.put_slice(&[1; 20_000]);
        let (tail, room) = (w.tail.as_ptr(), w.tail.capacity());
        w.advance(w.len());
        assert_eq!(w.tail.capacity(), 0, "drained: released");
        w.put_slice(b"next batch");
        assert_eq!(w.tail.as_ptr(), tail, "the pool's tail, no new allocation");
        assert_eq!(w.tail.capacity(), room, "and all of its room");
        assert_eq!(w.to_vec(), b"next batch");
    }
}
