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
/// Released again as soon as everything queued is written, so a connection that is not
/// writing holds none.
const START_CAPACITY: usize = 4 << 10;
/// The most an empty tail starts with, when the batches before it needed more.
const MAX_START_CAPACITY: usize = 64 << 10;
/// `copied` once a write did not take everything: the peer is not keeping up, and what
/// piled up meanwhile says nothing about one batch, so the next tail starts small.
const SLOW: u32 = u32::MAX;

/// Bytes queued for writing, in order: `chunks` first, then `tail`.
#[derive(Debug, Default)]
pub struct WriteBuf {
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
    len: usize,
    /// Bytes copied into the tail since it was last released, or [`SLOW`] once a write
    /// left some of them queued.
    copied: u32,
    /// What the tail starts with next time, from what the last batch needed (0: the
    /// minimum), so a steady stream of batches allocates once per batch, never regrows.
    start: u32,
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
        self.copied(data.len());
    }

    /// Counts `n` bytes just copied into the tail.
    fn copied(&mut self, n: usize) {
        self.len += n;
        self.copied = self.copied.saturating_add(n as u32);
    }

    /// Makes room for `n` more bytes in the tail, starting a released tail with what the
    /// last batch needed, at least [`START_CAPACITY`].
    fn reserve(&mut self, n: usize) {
        if self.tail.capacity() == 0 {
            self.tail.reserve(n.max(self.start as usize).max(START_CAPACITY));
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
            self.chunks.push_back(self.tail.split().freeze());
        }
        self.len += data.len();
        self.chunks.push_back(data.clone());
    }

    /// Appends an unmasked frame: its first header byte (FIN, RSV bits, opcode), the
    /// payload length in its shortest encoding (RFC 6455 §5.2), and the payload as
    /// [`put_bytes`] queues it (a small frame is one copy into room made once).
    ///
    /// [`put_bytes`]: Self::put_bytes
    pub fn put_frame(&mut self, first: u8, payload: &Bytes) {
        let len = payload.len();
        if len < SHARE_THRESHOLD {
            // Below the threshold the length fits the 7-bit or the 16-bit form.
            let head: &[u8] = if len <= 125 { &[first, len as u8] } else { &[first, 126, (len >> 8) as u8, len as u8] };
            self.reserve(head.len() + len);
            self.tail.extend_from_slice(head);
            self.tail.extend_from_slice(payload);
            self.copied(head.len() + len);
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
        self.copied(n);
    }

    /// Fills `dst` with the queued bytes in order, returning how many slices were used.
    pub fn io_slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for chunk in self.chunks.iter().map(|c| &c[..]).chain(std::iter::once(&self.tail[..])) {
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
        if self.len != 0 {
            self.copied = SLOW;
        }
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                self.tail.advance(n);
                break;
            };
            if n < front.len() {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.chunks.pop_front();
        }
        self.release_if_empty();
    }

    /// Drops everything queued and releases its memory.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Releases all memory once nothing is queued (an idle connection keeps none).
    pub fn release_if_empty(&mut self) {
        if self.len == 0 {
            if self.copied != 0 {
                let needed = if self.copied == SLOW { 0 } else { (self.copied as usize).min(MAX_START_CAPACITY) };
                self.start = if needed > START_CAPACITY { needed.next_power_of_two() as u32 } else { 0 };
                self.copied = 0;
            }
            self.tail = BytesMut::new();
            self.chunks = VecDeque::new();
        }
    }

    /// Copies out everything queued (tests and the fuzzers).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len);
        for c in &self.chunks {
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
        assert_eq!((w.tail.capacity(), w.chunks.capacity()), (0, 0), "drained: memory released");
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

    /// Queues `n` binary frames of 1,000 bytes (1,004 with their headers).
    fn put_kib_frames(w: &mut WriteBuf, n: usize) {
        let frame = Bytes::from(vec![1u8; 1000]);
        for _ in 0..n {
            w.put_frame(0x82, &frame);
        }
    }

    #[test]
    fn a_released_tail_starts_with_what_the_last_batch_needed() {
        let mut w = WriteBuf::default();
        put_kib_frames(&mut w, 20);
        w.advance(w.len());
        assert_eq!(w.tail.capacity(), 0, "drained: memory released");
        put_kib_frames(&mut w, 1);
        assert_eq!(w.tail.capacity(), 32 << 10, "20 x 1004 bytes: the next batch starts at 32 KiB");
        w.advance(w.len());
        w.put_slice(b"x");
        assert_eq!(w.tail.capacity(), START_CAPACITY, "a small batch: back to the minimum");
        let huge = vec![0u8; 1 << 20];
        w.put_slice(&huge);
        w.advance(w.len());
        w.put_slice(b"x");
        assert_eq!(w.tail.capacity(), MAX_START_CAPACITY, "never more than the maximum");
    }

    #[test]
    fn a_tail_that_a_write_left_behind_starts_small_next_time() {
        let mut w = WriteBuf::default();
        put_kib_frames(&mut w, 20);
        w.advance(1000); // the socket took only part of it
        put_kib_frames(&mut w, 20);
        w.advance(w.len());
        w.put_slice(b"x");
        assert_eq!(w.tail.capacity(), START_CAPACITY, "a slow peer's backlog is not a batch size");
    }
}
