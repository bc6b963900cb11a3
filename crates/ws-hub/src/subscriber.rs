//! One connection's place in the hub: its bounded queue of broadcasts waiting for a
//! congested socket, and what happens when that queue is full.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use ws_core::{CloseCode, Connection, Error, PreparedMessage};

/// What the hub does with a subscriber whose socket cannot keep up, once its queue of
/// waiting broadcasts is full.
///
/// A broadcast never waits for a subscriber: it is written into the connection's write
/// buffer when that is below its high-water mark
/// ([`Config::write_buffer_high_water`](ws_core::Config::write_buffer_high_water)), and
/// otherwise queued, up to [`HubBuilder::queue_capacity`](crate::HubBuilder::queue_capacity)
/// messages. So a slow subscriber costs at most the high-water mark plus that many
/// messages (shared with every other recipient from 4 KiB up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlowPolicy {
    /// Drop the oldest queued broadcast to make room: the subscriber misses messages but
    /// stays connected and catches up with the newest (live dashboards, tickers).
    DropOldest,
    /// Close the connection with this code, typically [`CloseCode::TRY_AGAIN_LATER`]
    /// (1013) or [`CloseCode::POLICY_VIOLATION`] (1008), so the client can reconnect and
    /// resynchronise (chats, anything that must not silently miss messages).
    Close(CloseCode),
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<PreparedMessage>,
    /// A task is writing `waiting` out, waiting on backpressure as it goes.
    pumping: bool,
    /// The connection is closed or being closed: deliveries are skipped.
    gone: bool,
}

/// A registered connection.
pub(crate) struct Subscriber {
    pub(crate) id: u64,
    pub(crate) conn: Connection,
    queue: Mutex<Queue>,
    dropped: AtomicU64,
}

impl Subscriber {
    pub(crate) fn new(id: u64, conn: Connection) -> Self {
        Self { id, conn, queue: Mutex::default(), dropped: AtomicU64::new(0) }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Broadcasts this subscriber lost to [`SlowPolicy::DropOldest`].
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Hands `message` to the connection without ever waiting; returns whether it was
    /// written or queued.
    pub(crate) fn deliver(self: &Arc<Self>, message: &PreparedMessage, capacity: usize, policy: SlowPolicy) -> bool {
        let mut queue = self.lock();
        if queue.gone {
            return false;
        }
        if !queue.pumping {
            match self.conn.try_send_prepared(message) {
                Ok(()) => return true,
                Err(Error::Full) => {}
                Err(_) => {
                    queue.gone = true;
                    return false;
                }
            }
        }
        if queue.waiting.len() >= capacity {
            match policy {
                SlowPolicy::DropOldest => {
                    queue.waiting.pop_front();
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                SlowPolicy::Close(code) => {
                    tracing::debug!(subscriber = self.id, code = u16::from(code), "closing a subscriber that cannot keep up");
                    queue.gone = true;
                    queue.waiting = VecDeque::new();
                    let _ = self.conn.close(code, "subscriber too slow");
                    return false;
                }
            }
        }
        queue.waiting.push_back(message.clone());
        if !queue.pumping {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                tracing::warn!("no tokio runtime to write queued broadcasts; dropping them");
                queue.waiting.clear();
                return false;
            };
            queue.pumping = true;
            runtime.spawn(self.clone().pump());
        }
        true
    }

    /// Writes the queue out in order, waiting on the connection's backpressure, then ends:
    /// a task exists only while its subscriber is congested.
    async fn pump(self: Arc<Self>) {
        loop {
            let next = {
                let mut queue = self.lock();
                match queue.waiting.pop_front() {
                    Some(message) if !queue.gone => message,
                    _ => {
                        queue.pumping = false;
                        queue.waiting = VecDeque::new();
                        return;
                    }
                }
            };
            if self.conn.send_prepared(&next).await.is_err() {
                let mut queue = self.lock();
                queue.gone = true;
                queue.pumping = false;
                queue.waiting = VecDeque::new();
                return;
            }
        }
    }
}
