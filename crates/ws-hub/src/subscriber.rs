//! One connection's side of the hub: a pump per room that moves broadcasts from the
//! room's ring into the connection, and what happens when the connection falls behind.

use crate::Position;
use crate::hub::Inner;
use crate::ring::{Replayed, Ring, Woken};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::task::AbortHandle;
use ws_core::{CloseCode, Connection, Error, PreparedMessage};

/// A pump writes what it fed once it is this many bytes, without waiting for the end of
/// the burst.
const WRITE_EVERY: usize = 16 << 10;

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
///
/// With a backplane that keeps history (Redis), a member that falls behind the ring
/// catches up from the backplane's history, a page at a time, as long as the history
/// still holds what it missed; the policy applies once it does not.
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

/// Where a pump starts: what to replay first, the live publications after it, and the
/// position the member is at (if known).
pub(crate) struct Start {
    pub(crate) live: broadcast::Receiver<Woken>,
    pub(crate) backlog: Vec<Replayed>,
    /// The member's position before the backlog.
    pub(crate) last: Option<Position>,
    /// Where the member has to be before live publications: what lies between the
    /// backlog and it comes from the backplane's history, page by page.
    pub(crate) catch_up: Option<Position>,
    /// Where to recover from a gap in the stream: set when a backplane numbers it.
    pub(crate) recover: Option<Recover>,
}

/// A backplane's history, from which a pump fills a gap in its room's stream.
pub(crate) struct Recover {
    pub(crate) hub: Weak<Inner>,
    pub(crate) room: Option<Arc<str>>,
}

impl Recover {
    /// The page of publications after `seen`, or `None` if history does not hold them
    /// (or cannot be read).
    async fn page(&self, seen: Position) -> Option<Vec<Replayed>> {
        let hub = self.hub.upgrade()?;
        match hub.replay(self.room.as_deref(), seen).await {
            Ok((_, Some(page))) => {
                hub.recovered.fetch_add(page.len() as u64, Ordering::Relaxed);
                Some(page)
            }
            Ok((_, None)) => None,
            Err(error) => {
                tracing::warn!(%error, room = ?self.room, "could not recover a gap from the backplane's history");
                None
            }
        }
    }
}

/// What a pump feeds with.
struct Pumping<'a> {
    ring: &'a Ring,
    policy: SlowPolicy,
    stopped: &'a AtomicBool,
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
    /// What the member said about itself, for presence.
    pub(crate) info: Mutex<Bytes>,
}

impl Subscriber {
    pub(crate) fn new(id: u64, conn: Connection) -> Self {
        Self { id, conn, dropped: AtomicU64::new(0), everyone: Mutex::new(None), info: Mutex::default() }
    }

    /// Broadcasts this member lost to [`SlowPolicy::DropOldest`].
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Starts a pump into this member's connection: `start.backlog` first, then what
    /// `start.live` wakes it for from `ring`.
    pub(crate) fn spawn_pump(self: &Arc<Self>, ring: &Arc<Ring>, start: Start, policy: SlowPolicy) -> Pump {
        let stopped = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(self.clone().pump(ring.clone(), start, policy, stopped.clone())).abort_handle();
        Pump { stopped, task }
    }

    /// Moves publications from a room's ring into the connection until it is stopped,
    /// the room ends, or a publication finds the connection closed: everything available
    /// is fed, then written in one flush, so a burst of publications costs one write per
    /// member.
    ///
    /// With a backplane that numbers publications (`recover`), the pump keeps the
    /// member's position: what it already has is skipped, and what it lacks (its hub
    /// missed it, or the member fell behind the ring) is read from the backplane's
    /// history before the next publication, while the history holds it; the slow policy
    /// applies once it does not.
    async fn pump(self: Arc<Self>, ring: Arc<Ring>, start: Start, policy: SlowPolicy, stopped: Arc<AtomicBool>) {
        let Start { mut live, backlog, mut last, catch_up, recover } = start;
        let pump = Pumping { ring: &ring, policy, stopped: &stopped };
        if !self.replay(backlog, &mut last, &pump).await {
            return;
        }
        if let (Some(recover), Some(until)) = (&recover, catch_up) {
            if !self.catch_up(recover, &mut last, until, &pump).await {
                return;
            }
        }
        // Bytes fed since the last write.
        let mut unwritten = 0;
        loop {
            let received = match live.try_recv() {
                Ok(broadcast) => Ok(broadcast),
                Err(TryRecvError::Empty) => {
                    // All that was available is fed: write it at once, then wait.
                    self.conn.flush_queued();
                    unwritten = 0;
                    live.recv().await
                }
                Err(TryRecvError::Lagged(lost)) => Err(RecvError::Lagged(lost)),
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
            };
            let lost = match received {
                Ok(broadcast) => {
                    if stopped.load(Ordering::Acquire) {
                        return;
                    }
                    match broadcast.upgrade() {
                        Some(broadcast) => {
                            let position = broadcast.position;
                            if let (Some(recover), Some(seen)) = (&recover, last) {
                                if position.epoch == seen.epoch && position.offset <= seen.offset {
                                    continue;
                                }
                                if !self.catch_up(recover, &mut last, position, &pump).await {
                                    return;
                                }
                            }
                            last = Some(position);
                            if broadcast.except != Some(self.id) {
                                // The common case without a future: the frame fits.
                                let fed = match self.conn.feed_prepared(&broadcast.message) {
                                    Ok(()) => true,
                                    Err(Error::Full) => self.feed(&broadcast.message, position.offset, &ring, policy).await,
                                    Err(_) => false,
                                };
                                if !fed {
                                    return;
                                }
                                // A long burst goes out as it is fed, a few frames per write, not
                                // all at once from a write buffer grown to its high-water mark.
                                unwritten += broadcast.message.frame().len();
                                if unwritten >= WRITE_EVERY {
                                    self.conn.flush_queued();
                                    unwritten = 0;
                                }
                            }
                            continue;
                        }
                        // Gone from the ring before this member took it: it fell behind.
                        None => 1,
                    }
                }
                Err(RecvError::Lagged(lost)) => lost,
                Err(RecvError::Closed) => {
                    self.conn.flush_queued();
                    return;
                }
            };
            // Behind the ring: with a history, the next publication shows the gap and it
            // is filled from there; without, what was lost is lost.
            if recover.is_none() {
                last = None;
                if !self.lagged(lost, policy) {
                    return;
                }
            }
        }
    }

    /// Feeds replayed publications in order, moving `last` along; `false` to stop.
    async fn replay(&self, replayed: Vec<Replayed>, last: &mut Option<Position>, pump: &Pumping<'_>) -> bool {
        for publication in replayed {
            if pump.stopped.load(Ordering::Acquire) {
                return false;
            }
            *last = Some(publication.position);
            if publication.except != Some(self.id)
                && !self.feed(&publication.message, publication.position.offset, pump.ring, pump.policy).await
            {
                return false;
            }
        }
        true
    }

    /// Brings the member from `last` to just before `until`, page by page from the
    /// backplane's history; `false` to stop. When the history no longer holds what is
    /// missing (or `until` is of another epoch), the slow policy decides.
    async fn catch_up(&self, recover: &Recover, last: &mut Option<Position>, until: Position, pump: &Pumping<'_>) -> bool {
        while let Some(seen) = *last {
            if seen.epoch == until.epoch && seen.offset + 1 >= until.offset {
                return true;
            }
            let page = if seen.epoch == until.epoch { recover.page(seen).await } else { None };
            match page {
                Some(mut page) if !page.is_empty() => {
                    page.retain(|p| p.position.offset < until.offset);
                    if page.is_empty() {
                        return true;
                    }
                    if !self.replay(page, last, pump).await {
                        return false;
                    }
                }
                _ => {
                    *last = None;
                    let lost = if seen.epoch == until.epoch { until.offset - seen.offset - 1 } else { 0 };
                    return self.lagged(lost, pump.policy);
                }
            }
        }
        true
    }

    /// Queues one publication, waiting for the write buffer to drain below its high-water
    /// mark if it has to; `false` once the connection is closed, or closed for falling a
    /// whole ring behind while it waited.
    async fn feed(&self, message: &PreparedMessage, offset: u64, ring: &Ring, policy: SlowPolicy) -> bool {
        match self.conn.feed_prepared(message) {
            Ok(()) => true,
            Err(Error::Full) => {
                self.conn.flush_queued();
                // Boxed: the rare slow path keeps its timer out of every pump's state.
                Box::pin(self.wait_and_send(message, offset, ring, policy)).await
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
