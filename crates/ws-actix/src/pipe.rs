//! A bounded byte pipe between two tasks: the writer appends until `CAPACITY` bytes wait,
//! the reader takes everything waiting at once. An idle pipe holds no buffer, which is
//! what keeps an idle connection small.

use bytes::{Bytes, BytesMut};
use std::io::IoSlice;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// Bytes that may wait in one direction before the writer waits (backpressure).
pub(crate) const CAPACITY: usize = 64 << 10;

#[derive(Default)]
struct State {
    buf: BytesMut,
    closed: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

/// One end pair of a pipe; cloned into the writer and the reader.
#[derive(Clone, Default)]
pub(crate) struct Pipe(Arc<Mutex<State>>);

impl Pipe {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `data`, waiting while the pipe is full; `Err` once the reader is gone.
    pub(crate) fn poll_write(&self, cx: &mut Context<'_>, data: &[IoSlice<'_>]) -> Poll<Result<usize, ()>> {
        let mut s = self.lock();
        if s.closed {
            return Poll::Ready(Err(()));
        }
        if s.buf.len() >= CAPACITY {
            s.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let mut n = 0;
        for d in data {
            s.buf.extend_from_slice(d);
            n += d.len();
        }
        if let Some(w) = s.reader.take() {
            w.wake();
        }
        Poll::Ready(Ok(n))
    }

    /// Takes everything waiting; `None` once the writer closed the pipe and it is drained.
    pub(crate) fn poll_read(&self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let mut s = self.lock();
        if s.buf.is_empty() {
            if s.closed {
                return Poll::Ready(None);
            }
            s.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let chunk = std::mem::take(&mut s.buf).freeze();
        if let Some(w) = s.writer.take() {
            w.wake();
        }
        Poll::Ready(Some(chunk))
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
