//! One connection's side of the hub: a pump per room that moves broadcasts from the
//! room's ring into the connection, and what happens when the connection falls behind.

use crate::ring::{Broadcast, Ring, Woken};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::task::AbortHandle;
use ws_core::{CloseCode, Connection, Error, PreparedMessage};

/// What the hub does with a member whose connection cannot keep up.
///
/// Each room keeps its last broadcasts in a ring shared by its members (one encoded frame
/// each, whatever the number of members), bounded by count
/// ([`HubBuilder::queue_capacity`](crate::HubBuilder::queue_capacity)) and by bytes
/// ([`HubBuilder::max_ring_bytes`](crate::HubBuilder::max_ring_bytes)); each member's
/// connection takes them into its write buffer up to the high-water mark
/// ([`Config::write_buffer_high_water`](ws_core::Config::write_buffer_high_water)). A
/// member further behind than the ring holds has lost broadcasts, and this policy decides
/// what follows. Either way a slow member costs at most its write buffer (the high-water
/// mark, plus one frame per room it is in), never stalls a broadcast, and never keeps a
/// broadcast alive past the ring's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlowPolicy {
    /// Skip what was lost and go on with the oldest broadcast still in the ring: the
    /// member misses messages but stays connected (live dashboards, tickers).
    DropOldest,
    /// Close the connection with this code, typically [`CloseCode::TRY_AGAIN_LATER`]
    /// (1013) or [`CloseCode::POLICY_VIOLATION`] (1008), so the client can reconnect and
    /// resynchronise (chats, anything that must not silently miss messages).
    Close(CloseCode),
}

/// A running pump: stopped at once (no frame is fed after [`Pump::stop`] returns), and
/// its task aborted.
#[derive(Debug)]
pub(crate) struct Pump {
    stopped: Arc<AtomicBool>,
    task: AbortHandle,
}

impl Pump {
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.task.abort();
    }
}

/// How often a member stuck on a full socket checks whether it fell behind the ring (under
/// [`SlowPolicy::Close`]).
const LAG_CHECK: Duration = Duration::from_millis(100);

/// A registered connection.
pub(crate) struct Subscriber {
    pub(crate) id: u64,
    pub(crate) conn: Connection,
    dropped: AtomicU64,
    /// The pump on the ring of broadcasts to all, once there is one.
    pub(crate) everyone: Mutex<Option<Pump>>,
}

impl Subscriber {
    pub(crate) fn new(id: u64, conn: Connection) -> Self {
        Self { id, conn, dropped: AtomicU64::new(0), everyone: Mutex::new(None) }
    }

    /// Broadcasts this member lost to [`SlowPolicy::DropOldest`].
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Starts a pump into this member's connection: `backlog` first, then what `live`
    /// wakes it for from `ring`.
    pub(crate) fn spawn_pump(
        self: &Arc<Self>,
        ring: &Arc<Ring>,
        live: broadcast::Receiver<Woken>,
        backlog: Vec<Arc<Broadcast>>,
        policy: SlowPolicy,
    ) -> Pump {
        let stopped = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(self.clone().pump(ring.clone(), live, backlog, policy, stopped.clone())).abort_handle();
        Pump { stopped, task }
    }

    /// Moves publications from a room's ring into the connection until it is stopped,
    /// the room ends, or a publication finds the connection closed: everything available
    /// is fed, then written in one flush, so a burst of publications costs one write per
    /// member.
    async fn pump(
        self: Arc<Self>,
        ring: Arc<Ring>,
        mut woken: broadcast::Receiver<Woken>,
        backlog: Vec<Arc<Broadcast>>,
        policy: SlowPolicy,
        stopped: Arc<AtomicBool>,
    ) {
        for broadcast in backlog {
            if stopped.load(Ordering::Acquire) || !self.feed(&broadcast, &ring, policy).await {
                return;
            }
        }
        loop {
            let received = match woken.try_recv() {
                Ok(broadcast) => Ok(broadcast),
                Err(TryRecvError::Empty) => {
                    // All that was available is fed: write it at once, then wait.
                    self.conn.flush_queued();
                    woken.recv().await
                }
                Err(TryRecvError::Lagged(lost)) => Err(RecvError::Lagged(lost)),
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
            };
            match received {
                Ok((broadcast, except)) => {
                    if stopped.load(Ordering::Acquire) {
                        return;
                    }
                    if except == Some(self.id) {
                        continue;
                    }
                    // Gone from the ring before this member took it: it fell behind.
                    let Some(broadcast) = broadcast.upgrade() else {
                        if !self.lagged(1, policy) {
                            return;
                        }
                        continue;
                    };
                    if !self.feed(&broadcast, &ring, policy).await {
                        return;
                    }
                }
                Err(RecvError::Lagged(lost)) => {
                    if !self.lagged(lost, policy) {
                        return;
                    }
                }
                Err(RecvError::Closed) => {
                    self.conn.flush_queued();
                    return;
                }
            }
        }
    }

    /// Queues one broadcast, waiting for the write buffer to drain below its high-water
    /// mark if it has to; `false` once the connection is closed, or closed for falling a
    /// whole ring behind while it waited.
    async fn feed(&self, broadcast: &Broadcast, ring: &Ring, policy: SlowPolicy) -> bool {
        match self.conn.feed_prepared(&broadcast.message) {
            Ok(()) => true,
            Err(Error::Full) => {
                self.conn.flush_queued();
                // Boxed: the rare slow path keeps its timer out of every pump's state.
                Box::pin(self.wait_and_send(&broadcast.message, broadcast.offset, ring, policy)).await
            }
            Err(_) => false,
        }
    }

    async fn wait_and_send(&self, message: &PreparedMessage, offset: u64, ring: &Ring, policy: SlowPolicy) -> bool {
        let send = self.conn.send_prepared(message);
        if !matches!(policy, SlowPolicy::Close(_)) {
            // Skipping forward happens when the socket drains; nothing to watch for.
            return send.await.is_ok();
        }
        tokio::pin!(send);
        loop {
            tokio::select! {
                sent = &mut send => return sent.is_ok(),
                () = tokio::time::sleep(LAG_CHECK) => {
                    // The ring moved on past this member while its socket was stuck: a
                    // closing policy acts now, not when the socket drains.
                    if ring.passed(offset) {
                        return self.lagged(0, policy);
                    }
                }
            }
        }
    }

    /// Applies the slow policy after `lost` broadcasts were missed; `false` to stop.
    fn lagged(&self, lost: u64, policy: SlowPolicy) -> bool {
        match policy {
            SlowPolicy::DropOldest => {
                self.dropped.fetch_add(lost, Ordering::Relaxed);
                true
            }
            SlowPolicy::Close(code) => {
                tracing::debug!(member = self.id, lost, code = u16::from(code), "closing a member that cannot keep up");
                let _ = self.conn.close(code, "too slow to keep up");
                false
            }
        }
    }
}
