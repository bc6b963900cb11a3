//! A room's ring: its recent publications, numbered, bounded by count, by bytes and by
//! age. It is both what the room's members' pumps take their frames from and the room's
//! history, from which a member that rejoins with a [`Position`] recovers what it missed.
//!
//! The broadcast channel that wakes the members' pumps carries weak references only; what
//! keeps a publication alive is the ring's own queue, which lets the oldest go once the
//! ring holds more than its capacity or its byte budget, or once they are older than its
//! time to live. A member that had not taken a publication before it went finds it gone:
//! it fell behind, and the [`SlowPolicy`](crate::SlowPolicy) decides what follows. So a
//! member that stops reading holds back nothing but the one publication its pump is
//! waiting to queue.

use crate::position::Position;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;
use ws_core::PreparedMessage;

/// One publication in a ring: the frame its members are sent, and its place in the
/// room's stream.
#[derive(Debug)]
pub(crate) struct Broadcast {
    pub(crate) message: PreparedMessage,
    pub(crate) position: Position,
    /// The member it is not for.
    pub(crate) except: Option<u64>,
    /// The key it was published once under, if any.
    key: Option<Box<str>>,
    /// When the ring took it, for its time to live.
    at: Instant,
    /// The bytes of every publication of the ring still alive, this one's included until
    /// it is dropped.
    alive: Arc<AtomicUsize>,
}

impl Broadcast {
    /// The memory a publication holds: its encoded frame and its message.
    fn cost(message: &PreparedMessage) -> usize {
        message.frame().len() + message.len()
    }
}

impl Drop for Broadcast {
    fn drop(&mut self) {
        self.alive.fetch_sub(Self::cost(&self.message), Ordering::Relaxed);
    }
}

/// The publications kept, oldest first, and their bytes.
struct Kept {
    queue: VecDeque<Arc<Broadcast>>,
    bytes: usize,
    /// The offset of the newest publication (0 before the first).
    last: u64,
    /// When the newest publication was made (when the ring was, before the first).
    touched: Instant,
    /// The stream's epoch: the ring's own, or the backplane's.
    epoch: u64,
    /// The keys of the publications kept that were published once under a key.
    keys: HashMap<Box<str>, Position>,
}

impl Kept {
    /// The newest position.
    fn position(&self) -> Position {
        Position { offset: self.last, epoch: self.epoch }
    }

    /// The offset of the oldest publication kept (the next one's when empty).
    fn oldest(&self) -> u64 {
        self.queue.front().map_or(self.last + 1, |b| b.position.offset)
    }

    /// Starts the stream of `epoch`: what was kept belongs to another.
    fn restart(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.queue.clear();
        self.keys.clear();
        self.bytes = 0;
    }
}

/// What wakes a pump: the publication, if it is still kept.
pub(crate) type Woken = Weak<Broadcast>;

/// What a ring's history holds after a position: the publications to replay, or `None`
/// when it no longer reaches back that far.
pub(crate) struct Since {
    pub(crate) backlog: Option<Vec<Replayed>>,
    /// Wakes for every publication after the backlog, and only those.
    pub(crate) live: broadcast::Receiver<Woken>,
    /// The ring's newest position.
    pub(crate) position: Position,
}

/// A publication replayed to a member that joins from a position, or recovers from a gap.
#[derive(Debug)]
pub(crate) struct Replayed {
    pub(crate) position: Position,
    pub(crate) message: PreparedMessage,
    pub(crate) except: Option<u64>,
}

/// A ring's bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) capacity: usize,
    pub(crate) max_bytes: usize,
    pub(crate) ttl: Duration,
}

/// A new stream's epoch: never 0, so that a position of epoch 0 never matches a stream.
pub(crate) fn new_epoch() -> u64 {
    rand::random::<u64>() | 1
}

pub(crate) struct Ring {
    wake: broadcast::Sender<Woken>,
    kept: Mutex<Kept>,
    /// The offset of the oldest publication kept (the next one's when empty).
    oldest: AtomicU64,
    alive: Arc<AtomicUsize>,
    bounds: Bounds,
}

impl Ring {
    /// An empty ring of a new epoch.
    pub(crate) fn new(bounds: Bounds) -> Self {
        Self {
            wake: broadcast::Sender::new(bounds.capacity),
            kept: Mutex::new(Kept {
                queue: VecDeque::new(),
                bytes: 0,
                last: 0,
                touched: Instant::now(),
                epoch: new_epoch(),
                keys: HashMap::new(),
            }),
            oldest: AtomicU64::new(1),
            alive: Arc::default(),
            bounds,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a publication, numbered next, letting the oldest go past the ring's bounds,
    /// and wakes the pumps; `frame` makes what members are sent from its position. Never
    /// waits for a member. Under a `key` the ring still keeps, nothing is added: the
    /// position is that of the publication made under it.
    pub(crate) fn publish(&self, key: Option<&str>, frame: impl FnOnce(Position) -> PreparedMessage, except: Option<u64>) -> Position {
        let kept = self.lock();
        if let Some(position) = key.and_then(|key| kept.keys.get(key)) {
            return *position;
        }
        let position = Position { offset: kept.last + 1, epoch: kept.epoch };
        self.push(kept, position, frame(position), except, key);
        position
    }

    /// Adds a publication a backplane numbered. Its stream's positions are the ring's
    /// from now on: another epoch starts the ring afresh, and a gap is left as it is
    /// (each pump notices it and recovers from the backplane's history).
    pub(crate) fn publish_at(&self, position: Position, frame: impl FnOnce(Position) -> PreparedMessage, except: Option<u64>) {
        let mut kept = self.lock();
        if kept.epoch != position.epoch {
            kept.restart(position.epoch);
        } else if position.offset <= kept.last {
            return tracing::debug!(%position, last = kept.last, "a publication already received ignored");
        }
        self.push(kept, position, frame(position), except, None);
    }

    /// Takes `position` as the newest when the ring has seen nothing newer in its
    /// stream (a member joined from a backplane's history before anything arrived), so
    /// that what is missing after it can be asked for.
    pub(crate) fn advance_to(&self, position: Position) {
        let mut kept = self.lock();
        if kept.epoch != position.epoch || kept.last < position.offset {
            if kept.epoch != position.epoch {
                kept.restart(position.epoch);
            }
            kept.last = position.offset;
            self.oldest.store(kept.oldest(), Ordering::Release);
        }
    }

    fn push(&self, mut kept: MutexGuard<'_, Kept>, position: Position, message: PreparedMessage, except: Option<u64>, key: Option<&str>) {
        let cost = Broadcast::cost(&message);
        self.alive.fetch_add(cost, Ordering::Relaxed);
        let now = Instant::now();
        let key: Option<Box<str>> = key.map(Into::into);
        if let Some(key) = &key {
            kept.keys.insert(key.clone(), position);
        }
        let broadcast = Arc::new(Broadcast { message, position, except, key, at: now, alive: self.alive.clone() });
        kept.last = position.offset;
        kept.touched = now;
        kept.queue.push_back(broadcast.clone());
        kept.bytes += cost;
        self.trim(&mut kept, now);
        // Woken in offset order: sent under the lock. An error only means no pump runs.
        let _ = self.wake.send(Arc::downgrade(&broadcast));
    }

    /// Lets go of what is past the ring's bounds: over its capacity or its bytes (the
    /// newest is kept whatever its size) or older than its time to live.
    fn trim(&self, kept: &mut Kept, now: Instant) {
        while let Some(front) = kept.queue.front() {
            let over = kept.queue.len() > self.bounds.capacity || (kept.bytes > self.bounds.max_bytes && kept.queue.len() > 1);
            if !over && now.saturating_duration_since(front.at) < self.bounds.ttl {
                break;
            }
            let cost = Broadcast::cost(&front.message);
            if let Some(key) = &front.key {
                kept.keys.remove(key);
            }
            kept.queue.pop_front();
            kept.bytes -= cost;
        }
        self.oldest.store(kept.oldest(), Ordering::Release);
    }

    /// The newest position.
    pub(crate) fn position(&self) -> Position {
        self.lock().position()
    }

    /// A pump's view of the ring, from the next publication on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Woken> {
        self.wake.subscribe()
    }

    /// The publications after `since` still held, and a view of those that follow, taken
    /// together: nothing between them is missed or seen twice. The backlog is `None` when
    /// `since` is of another epoch, is ahead of the ring, or is older than what it holds.
    pub(crate) fn since(&self, since: Position) -> Since {
        let mut kept = self.lock();
        self.trim(&mut kept, Instant::now());
        let position = kept.position();
        let reaches = since.epoch == kept.epoch && since.offset <= kept.last && since.offset + 1 >= kept.oldest();
        let backlog = reaches.then(|| {
            kept.queue
                .iter()
                .filter(|b| b.position.offset > since.offset)
                .map(|b| Replayed { position: b.position, message: b.message.clone(), except: b.except })
                .collect()
        });
        Since { backlog, live: self.wake.subscribe(), position }
    }

    /// Whether the publication after `offset` is gone: a member still on `offset` has
    /// fallen behind.
    pub(crate) fn passed(&self, offset: u64) -> bool {
        self.oldest.load(Ordering::Acquire) > offset + 1
    }

    /// Whether the newest publication (or the ring itself, before the first) is older
    /// than the ring's time to live: a ring without members can go.
    pub(crate) fn expired(&self) -> bool {
        self.lock().touched.elapsed() >= self.bounds.ttl
    }

    /// The bytes of this ring's publications still alive: those kept, and those a pump is
    /// still queuing.
    pub(crate) fn alive_bytes(&self) -> usize {
        self.alive.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(3600);

    fn ring(capacity: usize, max_bytes: usize, ttl: Duration) -> Ring {
        Ring::new(Bounds { capacity, max_bytes, ttl })
    }

    fn publish(ring: &Ring, message: PreparedMessage) -> Position {
        ring.publish(None, |_| message, None)
    }

    #[tokio::test]
    async fn the_oldest_go_past_the_byte_budget_and_nothing_else_keeps_them() {
        let ring = ring(128, 10_000, LONG);
        let mut rx = ring.subscribe();
        for _ in 0..100 {
            publish(&ring, PreparedMessage::binary(vec![0u8; 1000]));
        }
        // Each costs its frame and its message: about 2 KB; five fit in 10,000 bytes.
        assert!(ring.alive_bytes() <= 10_000, "{} bytes alive", ring.alive_bytes());
        let alive: Vec<bool> = std::iter::from_fn(|| rx.try_recv().ok()).map(|b| b.upgrade().is_some()).collect();
        assert_eq!(alive.len(), 100, "every broadcast woke the pump");
        let kept = alive.iter().filter(|a| **a).count();
        assert!((1..=5).contains(&kept), "{kept} kept");
        assert!(alive[..100 - kept].iter().all(|a| !a), "the oldest went first");
        let mut rx = ring.subscribe();
        publish(&ring, PreparedMessage::binary(vec![0u8; 50_000]));
        assert!(rx.try_recv().unwrap().upgrade().is_some(), "the newest is kept whatever its size");
        assert!(ring.passed(99), "what came before it is gone");
        assert!(!ring.passed(100));
    }

    #[tokio::test]
    async fn positions_count_from_one_in_one_epoch() {
        let (a, b) = (ring(8, 1 << 20, LONG), ring(8, 1 << 20, LONG));
        assert_ne!(a.position().epoch, b.position().epoch, "each ring starts an epoch");
        assert_eq!(a.position().offset, 0);
        let first = a.publish(None, |p| PreparedMessage::text(format!("at {}", p.offset)), None);
        let second = publish(&a, PreparedMessage::text("x"));
        assert_eq!((first.offset, second.offset), (1, 2));
        assert_eq!(first.epoch, a.position().epoch);
        assert_eq!(a.position(), second);
        let since = a.since(Position { offset: 0, epoch: first.epoch });
        let backlog = since.backlog.unwrap();
        assert_eq!(backlog[0].message.message().as_text(), Some("at 1"), "the frame is made from its position");
        assert_eq!(backlog.iter().map(|b| b.position.offset).collect::<Vec<_>>(), [1, 2]);
    }

    #[tokio::test]
    async fn history_reaches_back_to_the_oldest_kept_in_the_same_epoch() {
        let ring = ring(4, 1 << 20, LONG);
        for n in 1..=10 {
            publish(&ring, PreparedMessage::text(n.to_string()));
        }
        let epoch = ring.position().epoch;
        let offsets = |since: u64| {
            ring.since(Position { offset: since, epoch }).backlog.map(|b| b.iter().map(|b| b.position.offset).collect::<Vec<_>>())
        };
        assert_eq!(offsets(6), Some(vec![7, 8, 9, 10]), "the oldest kept is 7");
        assert_eq!(offsets(8), Some(vec![9, 10]));
        assert_eq!(offsets(10), Some(vec![]), "up to date");
        assert_eq!(offsets(5), None, "6 is gone");
        assert_eq!(offsets(11), None, "ahead of the ring");
        assert!(ring.since(Position { offset: 8, epoch: epoch ^ 2 }).backlog.is_none(), "another epoch");
    }

    #[tokio::test(start_paused = true)]
    async fn history_older_than_its_time_to_live_is_gone() {
        let ring = ring(128, 1 << 20, Duration::from_secs(60));
        publish(&ring, PreparedMessage::text("old"));
        tokio::time::advance(Duration::from_secs(40)).await;
        publish(&ring, PreparedMessage::text("newer"));
        let epoch = ring.position().epoch;
        assert_eq!(ring.since(Position { offset: 0, epoch }).backlog.map(|b| b.len()), Some(2));
        assert!(!ring.expired());
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(ring.since(Position { offset: 0, epoch }).backlog.is_none(), "1 is 70 s old");
        assert_eq!(ring.since(Position { offset: 1, epoch }).backlog.map(|b| b.len()), Some(1));
        assert!(ring.passed(0));
        assert!(!ring.expired());
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(ring.expired(), "the newest is 60 s old");
        assert_eq!(ring.since(Position { offset: 2, epoch }).backlog.map(|b| b.len()), Some(0), "still the same stream");
    }

    #[tokio::test]
    async fn the_backlog_and_the_live_view_neither_overlap_nor_leave_a_gap() {
        let ring = ring(128, 1 << 20, LONG);
        publish(&ring, PreparedMessage::text("1"));
        let mut since = ring.since(Position { offset: 0, epoch: ring.position().epoch });
        publish(&ring, PreparedMessage::text("2"));
        assert_eq!(since.backlog.unwrap().iter().map(|b| b.position.offset).collect::<Vec<_>>(), [1]);
        assert_eq!(since.position.offset, 1);
        let next = since.live.try_recv().unwrap();
        assert_eq!(next.upgrade().unwrap().position.offset, 2);
        assert!(since.live.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_backplanes_positions_are_taken_as_they_come() {
        let ring = ring(128, 1 << 20, LONG);
        let mut rx = ring.subscribe();
        let at = |offset, epoch| Position { offset, epoch };
        for position in [at(5, 7), at(6, 7), at(6, 7), at(4, 7), at(9, 7)] {
            ring.publish_at(position, |_| PreparedMessage::text(position.to_string()), None);
        }
        let woken: Vec<Position> = std::iter::from_fn(|| rx.try_recv().ok()).filter_map(|b| b.upgrade()).map(|b| b.position).collect();
        assert_eq!(woken, [at(5, 7), at(6, 7), at(9, 7)], "what was already received is dropped; gaps stay");
        assert_eq!(ring.position(), at(9, 7));
        ring.publish_at(at(1, 8), |_| PreparedMessage::text("new"), None);
        assert_eq!(ring.position(), at(1, 8));
        assert_eq!(ring.since(at(0, 8)).backlog.map(|b| b.len()), Some(1), "another epoch starts afresh");
    }

    #[tokio::test]
    async fn a_key_publishes_once_while_the_ring_keeps_it() {
        let ring = ring(2, 1 << 20, LONG);
        let mut rx = ring.subscribe();
        let first = ring.publish(Some("k"), |_| PreparedMessage::text("once"), None);
        assert_eq!(ring.publish(Some("k"), |_| PreparedMessage::text("twice"), None), first, "the same position");
        assert_eq!(std::iter::from_fn(|| rx.try_recv().ok()).count(), 1, "published once");
        publish(&ring, PreparedMessage::text("a"));
        publish(&ring, PreparedMessage::text("b"));
        let again = ring.publish(Some("k"), |_| PreparedMessage::text("after"), None);
        assert_eq!(again.offset, 4, "gone from the ring, the key is forgotten");
    }
}
