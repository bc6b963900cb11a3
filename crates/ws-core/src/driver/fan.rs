//! The wake-up fan: every task waiting on one connection, woken together.
//!
//! A reader, a handler blocked on backpressure, a task awaiting a pong and the finisher
//! may all wait on the same connection, in different tasks. The stream under it only
//! keeps one waker per direction, so it is always polled with a waker that wakes the whole
//! fan: none can steal another's wake-up.

use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};

/// The wakers of every task waiting on a connection. One waiter (the usual case) is kept
/// inline, so an idle connection's fan allocates nothing.
#[derive(Default)]
pub(crate) struct Fan(Mutex<Waiters>);

#[derive(Default)]
struct Waiters {
    first: Option<Waker>,
    more: Vec<Waker>,
}

impl Fan {
    /// Adds `waker` unless it is already waiting.
    pub(crate) fn register(&self, waker: &Waker) {
        let mut waiters = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match &waiters.first {
            None => waiters.first = Some(waker.clone()),
            Some(first) if first.will_wake(waker) => {}
            Some(_) => {
                if !waiters.more.iter().any(|w| w.will_wake(waker)) {
                    waiters.more.push(waker.clone());
                }
            }
        }
    }

    /// Wakes, and forgets, every waiting task.
    pub(crate) fn wake_all(&self) {
        let (first, more) = {
            let mut waiters = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let more = if waiters.more.is_empty() { Vec::new() } else { std::mem::take(&mut waiters.more) };
            (waiters.first.take(), more)
        };
        if let Some(w) = first {
            w.wake();
        }
        for w in more {
            w.wake();
        }
    }
}

/// The stream's waker: wakes the fan.
impl Wake for Fan {
    fn wake(self: Arc<Self>) {
        self.wake_all();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wake_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn every_waiter_is_woken_once_per_registration() {
        let fan = Fan::default();
        let counts: Vec<_> = (0..3).map(|_| Arc::new(Count(AtomicUsize::new(0)))).collect();
        let wakers: Vec<Waker> = counts.iter().map(|c| Waker::from(c.clone())).collect();
        for w in wakers.iter().chain(&wakers) {
            fan.register(w);
        }
        fan.wake_all();
        fan.wake_all(); // nobody left to wake
        let woken: Vec<usize> = counts.iter().map(|c| c.0.load(Ordering::Relaxed)).collect();
        assert_eq!(woken, [1, 1, 1]);
    }
}
