//! What a backplane's background task and its handles share: the channels the hub wants
//! (and how many times that set changed), whether the link is up and subscribed to them,
//! shutdown, and a count of what was dropped.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use tokio::sync::{Notify, mpsc, watch};

/// The methods a backplane handle shows of its link: whether it is up, waiting until it
/// is (or is not), and what was dropped or waits. `$engine` names the server in the docs.
macro_rules! link_methods {
    ($engine:literal) => {
        /// Bytes of broadcasts waiting to be published, or being published.
        pub fn queued_bytes(&self) -> usize {
            self.shared.outbox.bytes()
        }

        #[doc = concat!("Whether the connection to ", $engine, " is up.")]
        pub fn is_connected(&self) -> bool {
            self.shared.link.is_up()
        }

        #[doc = concat!("Waits until the connection to ", $engine, " is up and subscribed to the channels of")]
        /// every room that has local members now.
        ///
        /// # Cancel safety
        ///
        /// Cancel safe: it only observes.
        pub async fn connected(&self) {
            self.shared.link.connected().await;
        }

        #[doc = concat!("Waits until the backplane has lost its connection to ", $engine, " (it is reconnecting).")]
        ///
        /// # Cancel safety
        ///
        /// Cancel safe: it only observes.
        pub async fn disconnected(&self) {
            self.shared.link.disconnected().await;
        }

        #[doc = concat!("Broadcasts dropped because ", $engine, " was unreachable or too slow.")]
        pub fn dropped(&self) -> u64 {
            self.shared.link.dropped()
        }
    };
}
pub(crate) use link_methods;

pub(crate) struct Link {
    wanted: Mutex<(HashSet<String>, u64)>,
    /// Wakes the task: the wanted set changed, or shutdown.
    changed: Notify,
    shutdown: AtomicBool,
    /// `None` while disconnected; else the version of the wanted set subscribed to.
    connected: watch::Sender<Option<u64>>,
    dropped: AtomicU64,
}

impl Link {
    pub(crate) fn new() -> Self {
        Self {
            wanted: Mutex::default(),
            changed: Notify::new(),
            shutdown: AtomicBool::new(false),
            connected: watch::Sender::new(None),
            dropped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (HashSet<String>, u64)> {
        self.wanted.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `channel` to the wanted set (or removes it), waking the task if that changed
    /// the set.
    pub(crate) fn want(&self, channel: String, subscribe: bool) {
        let mut wanted = self.lock();
        let changed = if subscribe { wanted.0.insert(channel) } else { wanted.0.remove(&channel) };
        if changed {
            wanted.1 += 1;
            drop(wanted);
            self.changed.notify_one();
        }
    }

    /// The wanted set and its version.
    pub(crate) fn wanted(&self) -> (HashSet<String>, u64) {
        self.lock().clone()
    }

    /// Waits until the wanted set changes or shutdown is asked for.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }

    pub(crate) fn shut(&self) {
        self.shutdown.store(true, Ordering::Relaxed);
        self.changed.notify_one();
    }

    pub(crate) fn is_shut(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }

    /// The link is up and subscribed to the wanted set of `version`.
    pub(crate) fn up(&self, version: u64) {
        self.connected.send_replace(Some(version));
    }

    /// The link is down.
    pub(crate) fn down(&self) {
        self.connected.send_replace(None);
    }

    pub(crate) fn is_up(&self) -> bool {
        self.connected.borrow().is_some()
    }

    /// Waits until the link is up and subscribed to every channel wanted now.
    pub(crate) async fn connected(&self) {
        let version = self.lock().1;
        let mut rx = self.connected.subscribe();
        let _ = rx.wait_for(|subscribed| subscribed.is_some_and(|v| v >= version)).await;
    }

    /// Waits until the link is down.
    pub(crate) async fn disconnected(&self) {
        let mut rx = self.connected.subscribe();
        let _ = rx.wait_for(Option::is_none).await;
    }

    pub(crate) fn count_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Publications waiting for a backplane's connection, in order, bounded by count and by
/// bytes: a backplane too slow to keep up costs no more than that.
pub(crate) struct Outbox<T> {
    tx: mpsc::Sender<T>,
    rx: Mutex<Option<mpsc::Receiver<T>>>,
    bytes: AtomicUsize,
    pub(crate) max_bytes: usize,
}

impl<T> Outbox<T> {
    pub(crate) fn new(count: usize, max_bytes: usize) -> Self {
        let (tx, rx) = mpsc::channel(count);
        Self { tx, rx: Mutex::new(Some(rx)), bytes: AtomicUsize::new(0), max_bytes }
    }

    /// Queues `item`, which holds `cost` bytes, or gives it back with the reason it does
    /// not fit.
    pub(crate) fn push(&self, item: T, cost: usize) -> Result<(), (T, &'static str)> {
        if self.bytes.fetch_add(cost, Ordering::AcqRel) + cost > self.max_bytes {
            self.release(cost);
            return Err((item, "too many bytes of publications waiting for the backplane"));
        }
        self.tx.try_send(item).map_err(|error| {
            self.release(cost);
            match error {
                mpsc::error::TrySendError::Full(item) => (item, "too many publications waiting for the backplane"),
                mpsc::error::TrySendError::Closed(item) => (item, "the backplane is shut down"),
            }
        })
    }

    /// An item of `cost` bytes left the queue (published, or dropped).
    pub(crate) fn release(&self, cost: usize) {
        self.bytes.fetch_sub(cost, Ordering::AcqRel);
    }

    /// Bytes queued, or being published.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    /// The receiving end, once: for the backplane's task.
    pub(crate) fn take_receiver(&self) -> Option<mpsc::Receiver<T>> {
        self.rx.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}
