//! Per-thread free lists of the buffers a busy connection needs again and again: its read
//! buffer, the tail of its write queue, and its queue of parsed messages.
//!
//! A connection releases all three whenever it has nothing to do, so that an idle one
//! holds none; without these lists, every batch of small messages would cost an
//! allocation and a free of each (a 64 KiB read buffer among them), more than parsing the
//! batch itself. Each list keeps a few buffers at most, so an idle thread holds little.

use crate::message::Message;
use bytes::BytesMut;
use std::cell::RefCell;
use std::collections::VecDeque;

/// A queue of parsed messages, boxed: a connection holds one only while messages wait,
/// and an idle one carries a pointer, not the queue's 32 bytes.
#[allow(clippy::box_collection)]
pub(crate) type MessageQueue = Box<VecDeque<Message>>;

/// A read buffer, boxed for the same reason as [`MessageQueue`].
pub(crate) type ReadBuffer = Box<BytesMut>;

/// Buffers kept per list and thread, at most.
const KEEP: usize = 8;
/// A read buffer's size.
pub(crate) const READ_BUFFER: usize = 64 << 10;
/// Write tails larger than this are freed rather than kept.
const MAX_WRITE_BUFFER: usize = 64 << 10;
/// Message queues with more room than this are freed rather than kept.
const MAX_QUEUE: usize = 256;

#[derive(Default)]
struct Lists {
    read: Vec<ReadBuffer>,
    write: Vec<BytesMut>,
    queues: Vec<MessageQueue>,
}

thread_local! {
    static LISTS: RefCell<Lists> = RefCell::default();
}

fn with<T>(f: impl FnOnce(&mut Lists) -> T) -> Option<T> {
    // None while the thread's storage is being torn down.
    LISTS.try_with(|lists| lists.try_borrow_mut().ok().map(|mut lists| f(&mut lists))).ok().flatten()
}

/// An empty read buffer with room for [`READ_BUFFER`] bytes (boxed: a connection holds
/// one only while it reads).
pub(crate) fn read_buffer() -> ReadBuffer {
    with(|l| l.read.pop()).flatten().unwrap_or_else(|| Box::new(BytesMut::with_capacity(READ_BUFFER)))
}

/// Takes back an emptied read buffer, unless messages read into it still use it.
pub(crate) fn recycle_read_buffer(mut buf: ReadBuffer) {
    if buf.is_empty() && buf.capacity() <= 2 * READ_BUFFER && buf.try_reclaim(READ_BUFFER) {
        with(|l| (l.read.len() < KEEP).then(|| l.read.push(buf)));
    }
}

/// An empty write tail with room for `at_least` bytes.
pub(crate) fn write_buffer(at_least: usize) -> BytesMut {
    let mut buf = with(|l| l.write.pop()).flatten().unwrap_or_default();
    buf.reserve(at_least);
    buf
}

/// Takes back a drained write tail, unless bytes split off it are still queued.
pub(crate) fn recycle_write_buffer(mut buf: BytesMut) {
    let capacity = buf.capacity();
    if buf.is_empty() && capacity > 0 && capacity <= MAX_WRITE_BUFFER && buf.try_reclaim(capacity) {
        with(|l| (l.write.len() < KEEP).then(|| l.write.push(buf)));
    }
}

/// An empty message queue with room for a batch (boxed: a connection holds one only
/// while messages wait).
pub(crate) fn queue() -> MessageQueue {
    with(|l| l.queues.pop()).flatten().unwrap_or_else(|| Box::new(VecDeque::with_capacity(16)))
}

/// Takes back a drained message queue.
pub(crate) fn recycle_queue(queue: MessageQueue) {
    if queue.is_empty() && queue.capacity() > 0 && queue.capacity() <= MAX_QUEUE {
        with(|l| (l.queues.len() < KEEP).then(|| l.queues.push(queue)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    #[test]
    fn a_read_buffer_comes_back_only_when_nothing_uses_it() {
        let mut buf = read_buffer();
        let first = buf.as_ptr();
        buf.put_slice(b"message");
        let message = buf.split().freeze();
        recycle_read_buffer(buf);
        let mut again = read_buffer();
        assert_ne!(again.as_ptr(), first, "still used by a message: not reused");
        drop(message);
        again.put_slice(b"x");
        drop(again.split());
        recycle_read_buffer(again);
        let reused = read_buffer();
        assert!(reused.capacity() >= READ_BUFFER);
        assert!(reused.is_empty());
    }

    #[test]
    fn the_lists_are_bounded() {
        let buffers: Vec<_> = (0..3 * KEEP).map(|_| read_buffer()).collect();
        for buf in buffers {
            recycle_read_buffer(buf);
        }
        assert!(with(|l| l.read.len()).unwrap_or(0) <= KEEP);
        let queues: Vec<MessageQueue> = (0..3 * KEEP).map(|_| queue()).collect();
        for q in queues {
            recycle_queue(q);
        }
        assert!(with(|l| l.queues.len()).unwrap_or(0) <= KEEP);
    }
}
