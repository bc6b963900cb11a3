//! A room's ring: the broadcasts its members have not all taken yet, bounded by count and
//! by bytes.
//!
//! The broadcast channel that wakes the members' pumps carries weak references only; what
//! keeps a broadcast alive is the ring's own queue, which lets the oldest go once the ring
//! holds more than its capacity or its byte budget. A member that had not taken a
//! broadcast before it went finds it gone: it fell behind, and the
//! [`SlowPolicy`](crate::SlowPolicy) decides what follows. So a member that stops reading
//! holds back nothing but the one broadcast its pump is waiting to queue.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::broadcast;
use ws_core::PreparedMessage;

/// One broadcast in a ring.
#[derive(Debug)]
pub(crate) struct Broadcast {
    pub(crate) message: PreparedMessage,
    /// Its place in the ring's sequence.
    pub(crate) seq: u64,
    /// The bytes of every broadcast of the ring still alive, this one's included until it
    /// is dropped.
    alive: Arc<AtomicUsize>,
}

impl Broadcast {
    /// The memory a broadcast holds: its encoded frame and its message.
    fn cost(message: &PreparedMessage) -> usize {
        message.frame().len() + message.len()
    }
}

impl Drop for Broadcast {
    fn drop(&mut self) {
        self.alive.fetch_sub(Self::cost(&self.message), Ordering::Relaxed);
    }
}

/// The broadcasts kept, oldest first, and their bytes.
#[derive(Default)]
struct Kept {
    queue: VecDeque<Arc<Broadcast>>,
    bytes: usize,
    next_seq: u64,
}

/// What wakes a pump: the broadcast, if it is still kept, and whom it is not for.
pub(crate) type Woken = (Weak<Broadcast>, Option<u64>);

pub(crate) struct Ring {
    wake: broadcast::Sender<Woken>,
    kept: Mutex<Kept>,
    /// The sequence number of the oldest broadcast kept (the next one's when empty).
    oldest: AtomicU64,
    alive: Arc<AtomicUsize>,
    capacity: usize,
    max_bytes: usize,
}

impl Ring {
    /// A ring keeping at most `capacity` broadcasts and `max_bytes` of them (the newest
    /// is kept whatever its size).
    pub(crate) fn new(capacity: usize, max_bytes: usize) -> Self {
        Self {
            wake: broadcast::Sender::new(capacity),
            kept: Mutex::default(),
            oldest: AtomicU64::new(0),
            alive: Arc::default(),
            capacity,
            max_bytes,
        }
    }

    /// Adds a broadcast, letting the oldest go past the ring's bounds, and wakes the
    /// pumps. Never waits for a member.
    pub(crate) fn send(&self, message: PreparedMessage, except: Option<u64>) {
        let cost = Broadcast::cost(&message);
        self.alive.fetch_add(cost, Ordering::Relaxed);
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let seq = kept.next_seq;
        kept.next_seq += 1;
        let broadcast = Arc::new(Broadcast { message, seq, alive: self.alive.clone() });
        kept.queue.push_back(broadcast.clone());
        kept.bytes += cost;
        while kept.queue.len() > self.capacity || (kept.bytes > self.max_bytes && kept.queue.len() > 1) {
            if let Some(gone) = kept.queue.pop_front() {
                kept.bytes -= Broadcast::cost(&gone.message);
            }
        }
        self.oldest.store(kept.queue.front().map_or(seq + 1, |b| b.seq), Ordering::Release);
        // Woken in sequence order: sent under the lock. An error only means no pump runs.
        let _ = self.wake.send((Arc::downgrade(&broadcast), except));
    }

    /// A pump's view of the ring, from the next broadcast on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Woken> {
        self.wake.subscribe()
    }

    /// Whether the broadcast after `seq` is gone: a member still on `seq` has fallen
    /// behind.
    pub(crate) fn passed(&self, seq: u64) -> bool {
        self.oldest.load(Ordering::Acquire) > seq + 1
    }

    /// The bytes of this ring's broadcasts still alive: those kept, and those a pump is
    /// still queuing.
    pub(crate) fn alive_bytes(&self) -> usize {
        self.alive.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_go_past_the_byte_budget_and_nothing_else_keeps_them() {
        let ring = Ring::new(128, 10_000);
        let mut rx = ring.subscribe();
        for _ in 0..100 {
            ring.send(PreparedMessage::binary(vec![0u8; 1000]), None);
        }
        // Each costs its frame and its message: about 2 KB; five fit in 10,000 bytes.
        assert!(ring.alive_bytes() <= 10_000, "{} bytes alive", ring.alive_bytes());
        let alive: Vec<bool> = std::iter::from_fn(|| rx.try_recv().ok()).map(|(b, _)| b.upgrade().is_some()).collect();
        assert_eq!(alive.len(), 100, "every broadcast woke the pump");
        let kept = alive.iter().filter(|a| **a).count();
        assert!((1..=5).contains(&kept), "{kept} kept");
        assert!(alive[..100 - kept].iter().all(|a| !a), "the oldest went first");
        let mut rx = ring.subscribe();
        ring.send(PreparedMessage::binary(vec![0u8; 50_000]), None);
        assert!(rx.try_recv().unwrap().0.upgrade().is_some(), "the newest is kept whatever its size");
        assert!(ring.passed(98), "what came before it is gone");
    }
}
