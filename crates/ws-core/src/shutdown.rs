//! Graceful shutdown: stop accepting, send 1001 Going Away to every open connection, wait
//! for their close handshakes up to a deadline, then drop what remains.
//!
//! A [`Shutdown`] watches the connections it is given ([`Shutdown::watch`]), on the
//! standalone server and on every adapter alike, the way hyper-util's `GracefulShutdown`
//! watches HTTP connections. The standalone [`Server`](crate::Server) watches its own and
//! stops accepting when shutdown starts; the adapters watch every connection they upgrade
//! with the `Shutdown` they find in the request (its extensions on hyper, tower and axum,
//! its app data on actix-web), and the hyper serve helper puts its own there.

use crate::close::{CloseCode, CloseFrame};
use crate::connection::{Connection, Link};
use crate::utf8::Utf8Bytes;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Default)]
struct Inner {
    connections: Mutex<HashMap<u64, Weak<dyn Link>>>,
    next_id: AtomicU64,
    started: AtomicBool,
    /// Connections that left, once shutdown had started, without completing their close
    /// handshake.
    dropped: AtomicUsize,
    /// Woken when shutdown starts, and whenever a connection leaves.
    changed: Notify,
}

/// The open connections of one server, closable together. Cheap to clone.
///
/// ```
/// use std::time::Duration;
/// use wsdriver::{Config, Role, WebSocket, shutdown::Shutdown};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let shutdown = Shutdown::new();
/// let (a, b) = tokio::io::duplex(1024);
/// let mut server = WebSocket::from_raw(a, Role::Server, &Config::default());
/// let mut client = WebSocket::from_raw(b, Role::Client, &Config::default());
/// shutdown.watch(&server.connection()); // on any server, for every connection
/// assert_eq!(shutdown.open_connections(), 1);
/// tokio::spawn(async move { while server.recv().await.is_some() {} });
/// let client = tokio::spawn(async move { client.recv().await }); // answers the Close
/// let dropped = shutdown.shutdown(Duration::from_secs(5)).await; // 1001 to each, then waits
/// assert_eq!(dropped, 0);
/// assert!(matches!(client.await.unwrap(), Some(Ok(wsdriver::Message::Close(Some(f)))) if f.code == 1001));
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown").field("started", &self.is_started()).field("open", &self.open_connections()).finish()
    }
}

/// A connection's membership; leaves when dropped.
pub(crate) struct Registration {
    shutdown: Shutdown,
    id: u64,
    /// The connection's close handshake completed (the peer's Close was received, nothing
    /// failed): it does not count as dropped.
    closed_cleanly: bool,
}

impl Registration {
    /// Records whether the connection's close handshake completed; set when it ends.
    pub(crate) fn set_closed_cleanly(&mut self, clean: bool) {
        self.closed_cleanly = clean;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let inner = &self.shutdown.inner;
        inner.connections.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
        if !self.closed_cleanly && self.shutdown.is_started() {
            inner.dropped.fetch_add(1, Ordering::AcqRel);
        }
        inner.changed.notify_waiters();
    }
}

impl Shutdown {
    /// A shutdown with no connections yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Watches `connection` until it ends (with a [`Handler`](crate::Handler), until its
    /// `on_close` has run): [`Shutdown::shutdown`] closes it with 1001 and waits for it.
    /// Once shutdown has started, a connection watched is asked to close at once.
    pub fn watch(&self, connection: &Connection) {
        let link = connection.link();
        let registration = self.register(Arc::downgrade(link));
        link.watch(registration);
    }

    fn register(&self, link: Weak<dyn Link>) -> Registration {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.inner.connections.lock().unwrap_or_else(|e| e.into_inner()).insert(id, link.clone());
        if self.is_started() {
            if let Some(link) = link.upgrade() {
                let _ = link.close(Some(going_away()));
            }
        }
        Registration { shutdown: self.clone(), id, closed_cleanly: false }
    }

    /// Whether shutdown has started.
    pub fn is_started(&self) -> bool {
        self.inner.started.load(Ordering::Acquire)
    }

    /// Resolves when shutdown starts: what an accept loop waits on to stop accepting.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only observes.
    pub async fn started(&self) {
        loop {
            let notified = self.inner.changed.notified();
            if self.is_started() {
                return;
            }
            notified.await;
        }
    }

    /// Connections still open.
    pub fn open_connections(&self) -> usize {
        self.inner.connections.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Sends 1001 Going Away to every open connection (and to any opened from now on),
    /// waits up to `deadline` for each to end (with a [`Handler`](crate::Handler), for its
    /// `on_close` to have run), then drops the connections that remain.
    ///
    /// Returns how many connections were dropped: every one that ended, since shutdown
    /// started, without completing its close handshake (the peer never answered the
    /// 1001, the stream broke, the deadline passed).
    ///
    /// # Cancel safety
    ///
    /// The 1001s are sent at the first poll; cancelled after that, the connections go on
    /// closing on their own (each bounded by its close timeout), but nothing drops those that
    /// linger: await it to the end, or call it again.
    pub async fn shutdown(&self, deadline: Duration) -> usize {
        self.inner.started.store(true, Ordering::Release);
        self.inner.changed.notify_waiters();
        for link in self.links() {
            let _ = link.close(Some(going_away()));
        }
        let all_closed = async {
            loop {
                let notified = self.inner.changed.notified();
                if self.open_connections() == 0 {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(deadline, all_closed).await.is_err() {
            let remaining = self.links();
            for link in &remaining {
                link.abort();
            }
            tracing::debug!(remaining = remaining.len(), "shutdown deadline passed");
        }
        self.inner.dropped.load(Ordering::Acquire)
    }

    fn links(&self) -> Vec<Arc<dyn Link>> {
        self.inner.connections.lock().unwrap_or_else(|e| e.into_inner()).values().filter_map(Weak::upgrade).collect()
    }
}

fn going_away() -> CloseFrame {
    CloseFrame { code: CloseCode::GOING_AWAY, reason: Utf8Bytes::from_static("server shutting down") }
}
