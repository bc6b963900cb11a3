//! Bounded pipes between two tasks on one actix worker. The writer adds until `CAPACITY`
//! bytes wait, then waits itself (backpressure); the reader takes what waits. An idle pipe
//! holds no buffer, which is what keeps an idle connection small.
//!
//! Two buffers: [`Chunks`] carries the request payload's `Bytes` in as they come, without
//! copying them, to be copied once into the driver's read buffer; [`Outgoing`] gathers the
//! driver's writes, taken all at once as one chunk of the response body.

use bytes::{Buf, Bytes};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use tokio::io::ReadBuf;

/// Bytes that may wait in one direction before the writer waits (backpressure).
pub(crate) const CAPACITY: usize = 64 << 10;

/// What a queued chunk costs beside its bytes, so that a peer's trickle of tiny chunks
/// cannot grow the queue past a bound either (about 1,000 entries of one byte each).
const CHUNK_OVERHEAD: usize = 64;

/// What waits in a pipe.
pub(crate) trait Buffer: Default {
    /// How much of the pipe's capacity it takes.
    fn charge(&self) -> usize;
}

/// The driver's writes waiting for the response body, in a buffer from this thread's
/// [`POOL`].
#[derive(Default)]
pub(crate) struct Outgoing(Vec<u8>);

impl Buffer for Outgoing {
    fn charge(&self) -> usize {
        self.0.len()
    }
}

impl Outgoing {
    /// Everything waiting, as one chunk of the response body; the buffer goes back to the
    /// pool when actix is done with it (actix copies each chunk into its own write buffer
    /// and drops it at once).
    pub(crate) fn take(&mut self) -> Bytes {
        Bytes::from_owner(Pooled(std::mem::take(&mut self.0)))
    }

    /// Appends the front of `data`, at most [`MAX_WRITE`], growing the buffer once; returns
    /// how much (a partial write: the driver writes the rest once the body has taken this).
    pub(crate) fn append(&mut self, data: &[IoSlice<'_>]) -> usize {
        let buf = &mut self.0;
        let n = data.iter().map(|d| d.len()).sum::<usize>().min(MAX_WRITE);
        if buf.capacity() == 0 {
            *buf = pooled(n);
        }
        buf.reserve(n);
        let mut left = n;
        for d in data {
            let take = d.len().min(left);
            buf.extend_from_slice(&d[..take]);
            left -= take;
            if left == 0 {
                break;
            }
        }
        n
    }
}

/// Buffers kept per thread for the outgoing pipes, at most this many bytes in all. Every
/// batch of writes fills one and actix frees it a moment later: allocated and freed
/// through malloc each time, they would make glibc trim and re-fault its per-thread heap
/// about twice per batch.
const POOL_BYTES: usize = 1 << 20;

/// The smallest buffer the pool hands out, so that most batches find one that fits.
const POOLED_MIN: usize = 16 << 10;

/// Buffers, and the bytes they hold in all.
#[derive(Default)]
struct Pool {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::default();
}

/// A buffer that goes back to its thread's pool when dropped.
struct Pooled(Vec<u8>);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.0);
        buf.clear();
        // `try_with`: a chunk dropped while its thread exits is simply freed.
        let _ = POOL.try_with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.bytes + buf.capacity() <= POOL_BYTES {
                pool.bytes += buf.capacity();
                pool.buffers.push(buf);
            }
        });
    }
}

/// A buffer with room for `n` bytes: a pooled one if one is large enough.
fn pooled(n: usize) -> Vec<u8> {
    POOL.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        let i = pool.buffers.iter().rposition(|b| b.capacity() >= n)?;
        let buf = pool.buffers.swap_remove(i);
        pool.bytes -= buf.capacity();
        Some(buf)
    })
    .ok()
    .flatten()
    .unwrap_or_else(|| Vec::with_capacity(n.max(POOLED_MIN)))
}

/// Chunks received and not yet read, in order.
#[derive(Default)]
pub(crate) struct Chunks {
    queue: VecDeque<Bytes>,
    charge: usize,
}

impl Buffer for Chunks {
    fn charge(&self) -> usize {
        self.charge
    }
}

impl Chunks {
    pub(crate) fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.charge += chunk.len() + CHUNK_OVERHEAD;
            self.queue.push_back(chunk);
        }
    }

    /// Copies as much as fits into `buf`, front first.
    pub(crate) fn read_into(&mut self, buf: &mut ReadBuf<'_>) {
        while buf.remaining() > 0 {
            let Some(front) = self.queue.front_mut() else { break };
            let n = front.len().min(buf.remaining());
            buf.put_slice(&front[..n]);
            self.charge -= n;
            if n == front.len() {
                self.charge -= CHUNK_OVERHEAD;
                self.queue.pop_front();
            } else {
                front.advance(n);
            }
        }
        if self.queue.is_empty() {
            // Release the deque's storage along with the last chunk.
            *self = Self::default();
        }
    }
}

/// The most one write adds to a pipe: a message larger than this goes out as several
/// chunks of the response body, so neither the pipe nor actix's write buffer ever holds
/// more than `CAPACITY + MAX_WRITE`, however large the message. (Large enough that a
/// 64 KiB message and its header go out in one chunk, not as 64 KiB and then 4 bytes.)
const MAX_WRITE: usize = 256 << 10;

struct State<B> {
    buf: B,
    closed: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

impl<B: Buffer> Default for State<B> {
    fn default() -> Self {
        Self { buf: B::default(), closed: false, reader: None, writer: None }
    }
}

/// One end pair of a pipe; cloned into the writer and the reader.
pub(crate) struct Pipe<B>(Arc<Mutex<State<B>>>);

impl<B: Buffer> Default for Pipe<B> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<B> Clone for Pipe<B> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<B: Buffer> Pipe<B> {
    fn lock(&self) -> MutexGuard<'_, State<B>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds to the buffer with `add`, waiting while the pipe is full; `Err` once the
    /// reader is gone.
    pub(crate) fn poll_write<R>(&self, cx: &mut Context<'_>, add: impl FnOnce(&mut B) -> R) -> Poll<Result<R, ()>> {
        let mut s = self.lock();
        if s.closed {
            return Poll::Ready(Err(()));
        }
        if s.buf.charge() >= CAPACITY {
            s.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let added = add(&mut s.buf);
        if let Some(w) = s.reader.take() {
            w.wake();
        }
        Poll::Ready(Ok(added))
    }

    /// Takes from the buffer with `take` once something waits; `None` once the writer
    /// closed the pipe and it is drained.
    pub(crate) fn poll_read<R>(&self, cx: &mut Context<'_>, take: impl FnOnce(&mut B) -> R) -> Poll<Option<R>> {
        let mut s = self.lock();
        if s.buf.charge() == 0 {
            if s.closed {
                return Poll::Ready(None);
            }
            s.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let taken = take(&mut s.buf);
        if s.buf.charge() < CAPACITY {
            if let Some(w) = s.writer.take() {
                w.wake();
            }
        }
        Poll::Ready(Some(taken))
    }

    /// Ready once the pipe is closed (the reader went away); registers the writer to be
    /// woken then.
    pub(crate) fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.lock();
        if s.closed {
            return Poll::Ready(());
        }
        s.writer = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Closes the pipe from either end: the reader sees the end once drained, the writer
    /// gets an error.
    pub(crate) fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        if let Some(w) = s.reader.take() {
            w.wake();
        }
        if let Some(w) = s.writer.take() {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn chunks_are_read_in_order_across_reads_and_release_their_storage() {
        let mut chunks = Chunks::default();
        chunks.push(Bytes::from_static(b"hello "));
        chunks.push(Bytes::new());
        chunks.push(Bytes::from_static(b"world"));
        assert_eq!(chunks.charge(), 11 + 2 * CHUNK_OVERHEAD);
        let mut out = [0u8; 8];
        let mut buf = ReadBuf::new(&mut out);
        chunks.read_into(&mut buf);
        assert_eq!(buf.filled(), b"hello wo");
        assert_eq!(chunks.charge(), 3 + CHUNK_OVERHEAD);
        let mut out = [0u8; 8];
        let mut buf = ReadBuf::new(&mut out);
        chunks.read_into(&mut buf);
        assert_eq!(buf.filled(), b"rld");
        assert_eq!(chunks.charge(), 0);
        assert_eq!(chunks.queue.capacity(), 0);
    }

    #[test]
    fn a_trickle_of_tiny_chunks_fills_the_pipe_too() {
        let pipe = Pipe::<Chunks>::default();
        let mut cx = Context::from_waker(Waker::noop());
        let mut pushed = 0;
        while pipe.poll_write(&mut cx, |c| c.push(Bytes::from_static(b"x"))).is_ready() {
            pushed += 1;
        }
        assert_eq!(pushed, CAPACITY.div_ceil(1 + CHUNK_OVERHEAD));
    }

    /// Counts its wakes.
    struct Count(std::sync::atomic::AtomicUsize);
    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_full_pipe_wakes_its_writer_once_a_read_makes_room() {
        let pipe = Pipe::<Chunks>::default();
        let count = Arc::new(Count(Default::default()));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let chunk = Bytes::from(vec![3u8; 40 << 10]);
        assert!(pipe.poll_write(&mut cx, |c| c.push(chunk.clone())).is_ready());
        assert!(pipe.poll_write(&mut cx, |c| c.push(chunk.clone())).is_ready());
        assert!(pipe.poll_write(&mut cx, |c| c.push(chunk.clone())).is_pending(), "80 KiB waiting: full");
        let reads = |n: usize| {
            let mut out = vec![0u8; n];
            let mut buf = ReadBuf::new(&mut out);
            assert!(pipe.poll_read(&mut Context::from_waker(Waker::noop()), |c| c.read_into(&mut buf)).is_ready());
            buf.filled().len()
        };
        assert_eq!(reads(8 << 10), 8 << 10);
        assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 0, "still 72 KiB waiting: the writer waits on");
        assert_eq!(reads(16 << 10), 16 << 10);
        assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 1, "56 KiB waiting: the writer is woken");
        assert!(pipe.poll_write(&mut cx, |c| c.push(chunk.clone())).is_ready());
    }

    #[test]
    fn vectored_writes_are_appended_up_to_the_most_one_write_adds() {
        let mut buf = Outgoing::default();
        assert_eq!(buf.append(&[IoSlice::new(b"ab"), IoSlice::new(b""), IoSlice::new(b"cde")]), 5);
        assert_eq!(&buf.0[..], b"abcde");
        let big = vec![7u8; MAX_WRITE];
        assert_eq!(buf.append(&[IoSlice::new(b"fg"), IoSlice::new(&big)]), MAX_WRITE);
        assert_eq!(buf.0.len(), 5 + MAX_WRITE);
        assert_eq!(&buf.0[5..8], b"fg\x07");
    }

    #[test]
    fn a_body_chunk_returns_its_buffer_to_the_pool_once_dropped() {
        let mut out = Outgoing::default();
        out.append(&[IoSlice::new(&[5u8; 3000])]);
        let ptr = out.0.as_ptr();
        let chunk = out.take();
        assert_eq!((chunk.len(), chunk.as_ptr()), (3000, ptr), "the chunk is the buffer, not a copy");
        assert_eq!(out.0.capacity(), 0, "an idle pipe holds no buffer");
        drop(chunk);
        out.append(&[IoSlice::new(b"again")]);
        assert_eq!((out.0.as_ptr(), &out.0[..]), (ptr, &b"again"[..]), "the next batch reuses it");
        let huge = Outgoing(Vec::with_capacity(POOL_BYTES + 1)).take();
        drop(huge);
        POOL.with(|pool| {
            let pool = pool.borrow();
            assert_eq!(pool.bytes, pool.buffers.iter().map(Vec::capacity).sum::<usize>());
            assert!(pool.bytes <= POOL_BYTES, "the pool stays bounded");
        });
    }
}
