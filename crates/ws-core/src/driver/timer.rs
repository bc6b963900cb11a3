//! Timers shared by the connections of a runtime: the keepalive and close deadlines of
//! every connection armed on one worker thread wait in one queue, and one task sleeps
//! until the earliest and wakes the connections whose deadline passed.
//!
//! An idle connection is mostly its timers: a tokio `Sleep` each would cost more than a
//! hundred bytes per connection; here a connection has a slot of a few words, and the
//! queue an entry of 16 bytes per deadline armed. Deadlines are rare events (a keepalive
//! ping every half minute, a close timeout), so the queue's lock is cold.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::time::Instant;

/// What a timer wakes when its deadline passes.
pub(crate) trait Expire: Send + Sync {
    /// The deadline passed: wake whoever drives the connection.
    fn expire(&self);
}

/// The timers of the connections armed on one thread, served by one task.
pub(crate) struct Timers {
    state: Mutex<State>,
    changed: Notify,
    runtime: tokio::runtime::Id,
    /// The serving task still runs (it has not been dropped with its runtime).
    alive: AtomicBool,
    /// Deadlines are kept in whole milliseconds since this instant.
    epoch: Instant,
}

/// A deadline in milliseconds since [`Timers::epoch`], rounded up; 0 for none.
type Millis = u64;

#[derive(Default)]
struct State {
    /// A slot per connection armed here, reused once the connection ends.
    slots: Vec<Slot>,
    /// Slots free for reuse.
    free: Vec<u32>,
    /// Deadlines in order, with their slot and its generation: an entry whose slot was
    /// re-armed, emptied or reused since is skipped when popped.
    queue: BinaryHeap<Reverse<(Millis, u32, u32)>>,
}

/// One connection's place in the queue.
#[derive(Default)]
struct Slot {
    /// Counts the slot's owners, so a stale queue entry never fires a new one.
    generation: u32,
    /// The deadline armed, 0 for none.
    armed: Millis,
    target: Option<Weak<dyn Expire>>,
}

thread_local! {
    static LOCAL: RefCell<Option<Arc<Timers>>> = const { RefCell::new(None) };
}

impl Timers {
    /// This thread's timers for the current runtime, started on first use; `None` outside
    /// a tokio runtime (nothing would run the timers).
    fn current() -> Option<Arc<Self>> {
        let handle = Handle::try_current().ok()?;
        LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            if let Some(timers) = local.as_ref().filter(|t| t.runtime == handle.id() && t.alive.load(Ordering::Acquire)) {
                return Some(timers.clone());
            }
            let timers = Arc::new(Timers {
                state: Mutex::default(),
                changed: Notify::new(),
                runtime: handle.id(),
                alive: AtomicBool::new(true),
                epoch: Instant::now(),
            });
            // Dropped with the task, run or not, when its runtime shuts down.
            let alive = AliveGuard(timers.clone());
            handle.spawn(async move { alive.0.serve().await });
            *local = Some(timers.clone());
            Some(timers)
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `at` in milliseconds since the epoch, rounded up (a timer never fires early), at
    /// least 1.
    fn millis(&self, at: Instant) -> Millis {
        let nanos = at.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos.div_ceil(1_000_000)).unwrap_or(u64::MAX).max(1)
    }

    /// Sleeps until the earliest deadline, wakes every connection whose deadline passed,
    /// and again, for as long as the runtime runs.
    async fn serve(&self) {
        let mut due = Vec::new();
        loop {
            let next = {
                let mut state = self.lock();
                let now = self.millis(Instant::now());
                while let Some(&Reverse((at, slot, generation))) = state.queue.peek() {
                    if at > now {
                        break;
                    }
                    state.queue.pop();
                    if let Some(slot) = state.slots.get_mut(slot as usize).filter(|s| s.generation == generation && s.armed == at) {
                        slot.armed = 0;
                        due.extend(slot.target.clone());
                    }
                }
                state.queue.peek().map(|Reverse((at, _, _))| self.epoch + Duration::from_millis(*at))
            };
            for target in due.drain(..) {
                if let Some(target) = target.upgrade() {
                    target.expire();
                }
            }
            match next {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = self.changed.notified() => {}
                    }
                }
                None => self.changed.notified().await,
            }
        }
    }
}

struct AliveGuard(Arc<Timers>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::Release);
    }
}

/// One connection's timer: at most one deadline armed at a time, the earliest it needs.
pub(crate) struct Timer {
    timers: Option<Arc<Timers>>,
    /// Its slot in `timers`, `u32::MAX` before the first arm.
    slot: u32,
    generation: u32,
    /// The deadline armed, 0 for none.
    armed: Millis,
}

impl Default for Timer {
    fn default() -> Self {
        Self { timers: None, slot: u32::MAX, generation: 0, armed: 0 }
    }
}

impl Timer {
    /// Whether `deadline` is already covered: a deadline at or before it is armed.
    pub(crate) fn covers(&self, deadline: Instant) -> bool {
        self.armed != 0 && self.timers.as_ref().is_some_and(|t| self.armed <= t.millis(deadline))
    }

    /// Makes sure `target()` is woken at `deadline` or earlier. A deadline later than the
    /// one armed waits for that one: when it fires, the connection asks again.
    pub(crate) fn arm(&mut self, deadline: Instant, target: impl FnOnce() -> Weak<dyn Expire>) {
        if self.covers(deadline) {
            return;
        }
        if self.timers.is_none() {
            self.timers = Timers::current();
        }
        let Some(timers) = &self.timers else { return };
        let at = timers.millis(deadline);
        let mut state = timers.lock();
        if self.slot == u32::MAX {
            let slot = match state.free.pop() {
                Some(slot) => slot,
                None => {
                    state.slots.push(Slot::default());
                    u32::try_from(state.slots.len() - 1).unwrap_or(u32::MAX)
                }
            };
            let Some(entry) = state.slots.get_mut(slot as usize) else { return };
            entry.generation = entry.generation.wrapping_add(1);
            entry.target = Some(target());
            self.slot = slot;
            self.generation = entry.generation;
        }
        if let Some(entry) = state.slots.get_mut(self.slot as usize) {
            entry.armed = at;
        }
        let earliest = state.queue.peek().is_none_or(|Reverse((first, _, _))| at < *first);
        state.queue.push(Reverse((at, self.slot, self.generation)));
        drop(state);
        if earliest {
            timers.changed.notify_one();
        }
        self.armed = at;
    }

    /// The armed deadline fired (the queue forgot it).
    pub(crate) fn fired(&mut self) {
        self.armed = 0;
    }

    /// Disarms and gives the slot back: the connection ended.
    pub(crate) fn cancel(&mut self) {
        self.armed = 0;
        let (Some(timers), slot) = (&self.timers, self.slot) else { return };
        if slot == u32::MAX {
            return;
        }
        let mut state = timers.lock();
        if let Some(entry) = state.slots.get_mut(slot as usize) {
            entry.armed = 0;
            entry.target = None;
            state.free.push(slot);
        }
        self.slot = u32::MAX;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    struct Target(AtomicUsize, Notify);

    impl Expire for Target {
        fn expire(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
            self.1.notify_one();
        }
    }

    fn new_target() -> (Arc<Target>, Weak<dyn Expire>) {
        let t = Arc::new(Target(AtomicUsize::new(0), Notify::new()));
        let weak: Weak<Target> = Arc::downgrade(&t);
        (t, weak)
    }

    #[tokio::test(start_paused = true)]
    async fn fires_at_the_deadline_and_only_the_earliest_armed() {
        let (t, target) = new_target();
        let mut timer = Timer::default();
        let start = Instant::now();
        timer.arm(start + Duration::from_secs(10), || target.clone());
        timer.arm(start + Duration::from_secs(20), || target.clone()); // later: waits for the first
        t.1.notified().await;
        assert_eq!(start.elapsed().as_secs(), 10);
        timer.fired();
        timer.arm(start + Duration::from_secs(20), || target.clone());
        t.1.notified().await;
        assert_eq!(start.elapsed().as_secs(), 20);
        assert_eq!(t.0.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_replaces_a_later_one_and_cancel_forgets() {
        let (t, target) = new_target();
        let (other, other_target) = new_target();
        let mut timer = Timer::default();
        let mut other_timer = Timer::default();
        let start = Instant::now();
        timer.arm(start + Duration::from_secs(30), || target.clone());
        timer.arm(start + Duration::from_secs(5), || target.clone());
        other_timer.arm(start + Duration::from_secs(8), || other_target.clone());
        other_timer.cancel();
        t.1.notified().await;
        assert_eq!(start.elapsed().as_secs(), 5);
        // The superseded 30 s entry and the cancelled one never fire.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!((t.0.load(Ordering::SeqCst), other.0.load(Ordering::SeqCst)), (1, 0));
    }
}
