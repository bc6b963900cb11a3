//! Timers shared by the connections of a runtime: the keepalive and close deadlines of
//! every connection armed on one worker thread wait in one queue, and one task sleeps
//! until the earliest and wakes the connections whose deadline passed.
//!
//! An idle connection is mostly its timers: a tokio `Sleep` each would cost more than a
//! hundred bytes per connection, an entry here a few words. Deadlines are rare events
//! (a keepalive ping every half minute, a close timeout), so the queue's lock is cold.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::time::Instant;

/// What a timer wakes when its deadline passes.
pub(crate) trait Expire: Send + Sync {
    /// The deadline passed: wake whoever drives the connection.
    fn expire(&self);
}

/// A connection's identity in the queue: its shared state's address, unique while the
/// entry (which keeps that allocation alive) exists. A stale queued deadline that meets
/// a newer connection at a reused address only wakes it early, which its own clock
/// check ignores.
type Key = usize;

/// The timers of the connections armed on one thread, served by one task.
pub(crate) struct Timers {
    state: Mutex<State>,
    changed: Notify,
    runtime: tokio::runtime::Id,
    /// The serving task still runs (it has not been dropped with its runtime).
    alive: AtomicBool,
}

#[derive(Default)]
struct State {
    /// The armed deadline of each connection, and what to wake.
    entries: HashMap<Key, (Instant, Weak<dyn Expire>)>,
    /// Deadlines in order; an entry re-armed or cancelled since is skipped when popped.
    queue: BinaryHeap<Reverse<(Instant, Key)>>,
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
            let timers =
                Arc::new(Timers { state: Mutex::default(), changed: Notify::new(), runtime: handle.id(), alive: AtomicBool::new(true) });
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

    /// Sleeps until the earliest deadline, wakes every connection whose deadline passed,
    /// and again, for as long as the runtime runs.
    async fn serve(&self) {
        let mut due = Vec::new();
        loop {
            let next = {
                let mut state = self.lock();
                let now = Instant::now();
                while let Some(&Reverse((at, key))) = state.queue.peek() {
                    if at > now {
                        break;
                    }
                    state.queue.pop();
                    if state.entries.get(&key).is_some_and(|(armed, _)| *armed == at) {
                        if let Some((_, target)) = state.entries.remove(&key) {
                            due.push(target);
                        }
                    }
                }
                state.queue.peek().map(|Reverse((at, _))| *at)
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
#[derive(Default)]
pub(crate) struct Timer {
    timers: Option<Arc<Timers>>,
    armed: Option<Instant>,
}

impl Timer {
    /// Whether `deadline` is already covered: a deadline at or before it is armed.
    pub(crate) fn covers(&self, deadline: Instant) -> bool {
        self.armed.is_some_and(|armed| armed <= deadline)
    }

    /// Makes sure `target` is woken at `deadline` or earlier. A deadline later than the
    /// one armed waits for that one: when it fires, the connection asks again.
    pub(crate) fn arm(&mut self, deadline: Instant, target: Weak<dyn Expire>) {
        if self.covers(deadline) {
            return;
        }
        if self.timers.is_none() {
            self.timers = Timers::current();
        }
        let Some(timers) = &self.timers else { return };
        let key = key_of(&target);
        let mut state = timers.lock();
        let earliest = state.queue.peek().is_none_or(|Reverse((at, _))| deadline < *at);
        state.entries.insert(key, (deadline, target));
        state.queue.push(Reverse((deadline, key)));
        drop(state);
        if earliest {
            timers.changed.notify_one();
        }
        self.armed = Some(deadline);
    }

    /// The armed deadline fired (its entry is gone from the queue).
    pub(crate) fn fired(&mut self) {
        self.armed = None;
    }

    /// Disarms, forgetting `target`.
    pub(crate) fn cancel(&mut self, target: &Weak<dyn Expire>) {
        if let (Some(timers), Some(_)) = (&self.timers, self.armed.take()) {
            timers.lock().entries.remove(&key_of(target));
        }
    }
}

fn key_of(target: &Weak<dyn Expire>) -> Key {
    target.as_ptr().cast::<()>() as usize
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
        timer.arm(start + Duration::from_secs(10), target.clone());
        timer.arm(start + Duration::from_secs(20), target.clone()); // later: waits for the first
        t.1.notified().await;
        assert_eq!(start.elapsed().as_secs(), 10);
        timer.fired();
        timer.arm(start + Duration::from_secs(20), target.clone());
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
        timer.arm(start + Duration::from_secs(30), target.clone());
        timer.arm(start + Duration::from_secs(5), target.clone());
        other_timer.arm(start + Duration::from_secs(8), other_target.clone());
        other_timer.cancel(&other_target);
        t.1.notified().await;
        assert_eq!(start.elapsed().as_secs(), 5);
        // The superseded 30 s entry and the cancelled one never fire.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!((t.0.load(Ordering::SeqCst), other.0.load(Ordering::SeqCst)), (1, 0));
    }
}
