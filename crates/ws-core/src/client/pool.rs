//! A pool of reconnecting client connections: sends balanced across the members that
//! are open, one merged stream of everything received, members replaced with backoff
//! when they die, and (with [`PoolBuilder::track`]) no tracked message lost with a
//! member.

use super::{ClientBuilder, Reconnect, ReconnectHandle};
use crate::close::CloseCode;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::handler::Handler;
use crate::message::Message;
use crate::protocol::ReadyState;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{Notify, mpsc};

/// How a [`ClientPool`] picks the member for each send. Either way, only members whose
/// connection is open are picked; a send waits while none is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Balance {
    /// Each open member in turn.
    #[default]
    RoundRobin,
    /// The open member with the fewest bytes waiting in its write buffer
    /// ([`Connection::buffered_amount`]): a member whose peer reads slowly gets less.
    LeastBuffered,
}

/// A message one member of a [`ClientPool`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Received {
    /// The member's index: `0..size`, in the order of [`PoolBuilder::new`]'s builders,
    /// repeated (member `i` connects with builder `i % builders`).
    pub member: usize,
    /// The message.
    pub message: Message,
}

type Key = Arc<dyn Fn(&Message) -> Option<u64> + Send + Sync>;
type Rebuild = Arc<dyn Fn(usize, ClientBuilder) -> Pin<Box<dyn Future<Output = ClientBuilder> + Send>> + Send + Sync>;

/// Options for a [`ClientPool`].
///
/// ```no_run
/// use wsdriver::Message;
/// use wsdriver::client::{Balance, ClientBuilder, PoolBuilder};
/// # #[tokio::main] async fn main() -> Result<(), wsdriver::Error> {
/// let mut pool = PoolBuilder::new([ClientBuilder::new("ws://10.0.0.1:9001/feed"), ClientBuilder::new("ws://10.0.0.2:9001/feed")])
///     .size(4)
///     .balance(Balance::LeastBuffered)
///     .build();
/// pool.send(Message::text("hello")).await?;
/// if let Some(received) = pool.recv().await {
///     println!("member {}: {:?}", received.member, received.message);
/// }
/// pool.close(wsdriver::CloseCode::NORMAL, "").await
/// # }
/// ```
pub struct PoolBuilder {
    builders: Vec<ClientBuilder>,
    size: usize,
    balance: Balance,
    policy: Reconnect,
    key: Option<Key>,
    rebuild: Option<Rebuild>,
    received: usize,
}

impl std::fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("builders", &self.builders)
            .field("size", &self.size)
            .field("balance", &self.balance)
            .field("policy", &self.policy)
            .field("tracked", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

impl PoolBuilder {
    /// A pool over `builders` (one URL each, or the same URL several times, with their
    /// options): one member per builder unless [`PoolBuilder::size`] says otherwise,
    /// [`Balance::RoundRobin`], the default [`Reconnect`] policy.
    pub fn new(builders: impl IntoIterator<Item = ClientBuilder>) -> Self {
        let builders: Vec<_> = builders.into_iter().collect();
        Self {
            size: builders.len(),
            builders,
            balance: Balance::default(),
            policy: Reconnect::default(),
            key: None,
            rebuild: None,
            received: 1024,
        }
    }

    /// The number of members; member `i` connects with builder `i % builders`, so the
    /// members spread evenly over a list of URLs.
    pub fn size(mut self, members: usize) -> Self {
        self.size = members;
        self
    }

    /// How sends pick a member.
    pub fn balance(mut self, balance: Balance) -> Self {
        self.balance = balance;
        self
    }

    /// When each member reconnects; see [`Reconnect`].
    pub fn reconnect(mut self, policy: Reconnect) -> Self {
        self.policy = policy;
        self
    }

    /// How many received messages wait in the merged stream before the members stop
    /// reading (TCP backpressure). Default 1024.
    pub fn received_capacity(mut self, messages: usize) -> Self {
        self.received = messages.max(1);
        self
    }

    /// Delivery at least once, for protocols where an answer names what it answers (a
    /// request id, an echo): `key` gives a message's id, or `None`. A sent message with an
    /// id is kept until a message with the same id is received, from any member; if its
    /// member's connection is lost first, it is sent again on another member (or on the
    /// same one once it is back). An answer may then arrive twice, and messages sent again
    /// come after newer ones: the application drops duplicates by id.
    ///
    /// Without it, messages still in a lost connection's write buffer are lost with it,
    /// as with one connection.
    ///
    /// ```no_run
    /// # use wsdriver::{Message, client::{ClientBuilder, PoolBuilder}};
    /// // Requests and answers start with an 8-byte id.
    /// let pool = PoolBuilder::new([ClientBuilder::new("ws://127.0.0.1:9001")])
    ///     .size(2)
    ///     .track(|message: &Message| Some(u64::from_be_bytes(message.as_bytes().get(..8)?.try_into().ok()?)))
    ///     .build();
    /// # drop(pool);
    /// ```
    pub fn track(mut self, key: impl Fn(&Message) -> Option<u64> + Send + Sync + 'static) -> Self {
        self.key = Some(Arc::new(key));
        self
    }

    /// Runs `rebuild` before every connection attempt of every member, with the member's
    /// index and a copy of its builder, as [`ReconnectingClient::before_attempt`]
    /// (a fresh token in a header, another URL).
    ///
    /// [`ReconnectingClient::before_attempt`]: super::ReconnectingClient::before_attempt
    pub fn before_attempt<F, Fut>(mut self, rebuild: F) -> Self
    where
        F: Fn(usize, ClientBuilder) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ClientBuilder> + Send + 'static,
    {
        self.rebuild = Some(Arc::new(move |member, builder| Box::pin(rebuild(member, builder))));
        self
    }

    /// Starts every member connecting, and returns the pool at once: sends wait until a
    /// member is open.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (each member runs in a task of its own).
    pub fn build(self) -> ClientPool {
        let size = if self.builders.is_empty() { 0 } else { self.size };
        let shared = Arc::new(Shared {
            current: (0..size).map(|_| Mutex::new(None)).collect(),
            opened: Notify::new(),
            next: AtomicUsize::new(0),
            balance: self.balance,
            key: self.key,
            unconfirmed: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        });
        let (received_tx, received) = mpsc::channel(self.received);
        let members = (0..size)
            .map(|member| {
                let mut client = self.builders[member % self.builders.len()].clone().reconnecting(self.policy.clone());
                if let Some(rebuild) = &self.rebuild {
                    let rebuild = rebuild.clone();
                    client = client.before_attempt(move |builder| rebuild(member, builder));
                }
                client.serve(Member { member, shared: shared.clone(), received: received_tx.clone() })
            })
            .collect();
        ClientPool { shared, members, received }
    }
}

/// A pool of reconnecting client connections to one URL or several: see [`PoolBuilder`].
///
/// Sends go to an open member chosen by the [`Balance`]; every member's messages come
/// out of one stream, [`ClientPool::recv`]; a member whose connection is lost reconnects
/// with backoff while the others carry the load. Dropping the pool closes every member
/// (1000 Normal Closure).
pub struct ClientPool {
    shared: Arc<Shared>,
    members: Vec<ReconnectHandle>,
    received: mpsc::Receiver<Received>,
}

impl std::fmt::Debug for ClientPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientPool").field("members", &self.members.len()).field("open", &self.open_members()).finish_non_exhaustive()
    }
}

/// What the pool's handle and its members share.
struct Shared {
    /// Each member's connection while it is open.
    current: Vec<Mutex<Option<Connection>>>,
    /// Woken whenever a member opens, and when the pool closes.
    opened: Notify,
    next: AtomicUsize,
    balance: Balance,
    key: Option<Key>,
    /// Tracked messages not answered yet: id to (member, message).
    unconfirmed: Mutex<HashMap<u64, (usize, Message)>>,
    closed: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Member `member`'s connection if it is open. One whose close has begun (a send just
    /// failed on it) does not count, though its member's `on_close` has not taken it out.
    fn open(&self, member: usize) -> Option<Connection> {
        self.current.get(member).and_then(|c| lock(c).clone()).filter(|c| c.ready_state() == ReadyState::Open)
    }

    /// An open member for the next send.
    fn pick(&self) -> Option<(usize, Connection)> {
        let n = self.current.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut open = (0..n).map(|k| (start + k) % n).filter_map(|i| self.open(i).map(|c| (i, c)));
        match self.balance {
            Balance::RoundRobin => open.next(),
            Balance::LeastBuffered => open.min_by_key(|(_, c)| c.buffered_amount()),
        }
    }

    /// Ends the pool: sends fail with [`Error::Closed`], those waiting for a member too.
    fn shut(&self) {
        self.closed.store(true, Ordering::Release);
        self.opened.notify_waiters();
    }

    async fn send(&self, message: Message) -> Result<()> {
        let key = self.key.as_ref().and_then(|key| key(&message));
        loop {
            let opened = self.opened.notified();
            tokio::pin!(opened);
            opened.as_mut().enable();
            if self.closed.load(Ordering::Acquire) {
                return Err(Error::Closed);
            }
            let Some((member, connection)) = self.pick() else {
                opened.await;
                continue;
            };
            if let Some(key) = key {
                lock(&self.unconfirmed).insert(key, (member, message.clone()));
            }
            let error = match connection.send(message.clone()).await {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            // Not queued: no longer this member's to answer (unless `on_close` already
            // handed it on).
            if let Some(key) = key {
                let mut unconfirmed = lock(&self.unconfirmed);
                if unconfirmed.get(&key).is_some_and(|(m, _)| *m == member) {
                    unconfirmed.remove(&key);
                }
            }
            // Lost meanwhile: another member.
            if !matches!(error, Error::Closed) {
                return Err(error);
            }
        }
    }
}

/// One member's handler: keeps the member's connection in [`Shared`] while it is open and
/// forwards what it receives.
struct Member {
    member: usize,
    shared: Arc<Shared>,
    received: mpsc::Sender<Received>,
}

impl Handler for Member {
    async fn on_open(&mut self, ws: &Connection) {
        *lock(&self.shared.current[self.member]) = Some(ws.clone());
        self.shared.opened.notify_waiters();
    }

    async fn on_message(&mut self, _ws: &Connection, message: Message) {
        if let Some(key) = self.shared.key.as_ref().and_then(|key| key(&message)) {
            lock(&self.shared.unconfirmed).remove(&key);
        }
        // The pool's receiver may be gone; the member keeps running for its sends.
        let _ = self.received.send(Received { member: self.member, message }).await;
    }

    async fn on_close(&mut self, _ws: &Connection, code: CloseCode, reason: &str) {
        lock(&self.shared.current[self.member]).take();
        tracing::debug!(member = self.member, %code, reason, "pool member lost");
        let mut orphans = Vec::new();
        lock(&self.shared.unconfirmed).retain(|_, (member, message)| {
            let mine = *member == self.member;
            if mine {
                orphans.push(message.clone());
            }
            !mine
        });
        if !orphans.is_empty() && !self.shared.closed.load(Ordering::Acquire) {
            tracing::debug!(member = self.member, messages = orphans.len(), "sending a lost member's unanswered messages again");
            let shared = self.shared.clone();
            tokio::spawn(async move {
                for message in orphans {
                    if shared.send(message).await.is_err() {
                        break;
                    }
                }
            });
        }
    }
}

/// Sends on a [`ClientPool`] from other tasks: see [`ClientPool::sender`].
#[derive(Clone)]
pub struct PoolSender {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PoolSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolSender").finish_non_exhaustive()
    }
}

impl PoolSender {
    /// As [`ClientPool::send`].
    ///
    /// # Errors
    ///
    /// As [`ClientPool::send`].
    ///
    /// # Cancel safety
    ///
    /// As [`ClientPool::send`].
    pub async fn send(&self, message: Message) -> Result<()> {
        self.shared.send(message).await
    }
}

impl ClientPool {
    /// Sends `message` on an open member (waiting while none is), as
    /// [`Connection::send`]: it waits at that member's high-water mark, and is sent on
    /// another member if that one is lost before taking it.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the pool is closed; [`Error::InvalidArgument`] as
    /// [`Connection::send`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if cancelled while waiting, the message was not queued (a tracked one
    /// may still be sent again if its member is lost).
    pub async fn send(&self, message: Message) -> Result<()> {
        self.shared.send(message).await
    }

    /// A handle that sends on this pool from another task while this one receives.
    pub fn sender(&self) -> PoolSender {
        PoolSender { shared: self.shared.clone() }
    }

    /// The next message any member received, in each member's order; `None` once every
    /// member has stopped.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn recv(&mut self) -> Option<Received> {
        self.received.recv().await
    }

    /// The number of members.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// How many members are open now.
    pub fn open_members(&self) -> usize {
        (0..self.size()).filter(|&member| self.shared.open(member).is_some()).count()
    }

    /// Member `member`'s connection, if it is open now.
    pub fn member(&self, member: usize) -> Option<Connection> {
        self.shared.open(member)
    }

    /// Tracked messages (see [`PoolBuilder::track`]) sent and not answered yet.
    pub fn unconfirmed(&self) -> usize {
        lock(&self.shared.unconfirmed).len()
    }

    /// Closes every member with `code` and `reason`, stops reconnecting, and waits until
    /// each has finished. Sends waiting for an open member fail with [`Error::Closed`].
    ///
    /// # Errors
    ///
    /// The first error a member had given up with, if any.
    ///
    /// # Cancel safety
    ///
    /// Every member's Close is sent at the first poll; cancelled after that, the members
    /// still finish closing in the background.
    pub async fn close(mut self, code: CloseCode, reason: &str) -> Result<()> {
        self.shared.shut();
        let members = std::mem::take(&mut self.members);
        let results = futures_util::future::join_all(members.into_iter().map(|m| m.close(code, reason))).await;
        results.into_iter().collect()
    }
}

impl Drop for ClientPool {
    fn drop(&mut self) {
        self.shared.shut();
    }
}
