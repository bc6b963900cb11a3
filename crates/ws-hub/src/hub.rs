//! The hub: members, rooms, broadcasts and presence.

use crate::backplane::{self, ALL_CHANNEL, Backplane, Inbox};
use crate::subscriber::{SlowPolicy, Subscriber};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use ws_core::{CloseCode, Connection, PreparedMessage};

type Members = HashMap<u64, Arc<Subscriber>>;

#[derive(Default)]
struct State {
    members: Members,
    rooms: HashMap<Arc<str>, Members>,
}

pub(crate) struct Inner {
    /// This hub's id on the backplane, to recognise its own broadcasts coming back.
    node: u64,
    next_id: AtomicU64,
    capacity: usize,
    policy: SlowPolicy,
    state: RwLock<State>,
    backplane: Option<Box<dyn Backplane>>,
}

/// A broadcast hub: connections register as [`Member`]s, join rooms, and receive what is
/// broadcast to a room, to all, or to all but the sender.
///
/// A broadcast is encoded once (a [`PreparedMessage`]) and its frame shared by every
/// recipient; it never waits for a recipient: each has a bounded queue and a
/// [`SlowPolicy`] for when it cannot keep up. Without a backplane the hub is in-process;
/// with one ([`RedisBackplane`](crate::RedisBackplane)) hubs in several processes share
/// their rooms. Cloning is cheap, and every clone is the same hub.
///
/// ```
/// use ws_core::{Config, Message, Role, WebSocket};
/// use ws_hub::Hub;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), ws_core::Error> {
/// let hub = Hub::new();
/// let (a, b) = tokio::io::duplex(1024);
/// let server = WebSocket::from_raw(a, Role::Server, &Config::default());
/// let mut client = WebSocket::from_raw(b, Role::Client, &Config::default());
///
/// let member = hub.register(server.connection());
/// member.join("lobby");
/// assert_eq!(hub.presence("lobby"), 1);
/// assert_eq!(hub.broadcast("lobby", "hello, lobby"), 1);
/// assert_eq!(client.recv().await.transpose()?, Some(Message::text("hello, lobby")));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.read();
        f.debug_struct("Hub").field("members", &state.members.len()).field("rooms", &state.rooms.len()).finish_non_exhaustive()
    }
}

impl Hub {
    /// An in-process hub with the default options: 64 queued broadcasts per subscriber,
    /// then [`SlowPolicy::DropOldest`].
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Options: queue capacity, slow-subscriber policy, backplane.
    pub fn builder() -> HubBuilder {
        HubBuilder { capacity: 64, policy: SlowPolicy::DropOldest, backplane: None }
    }

    /// Registers a connection: the returned [`Member`] joins and leaves rooms, and leaves
    /// them all when dropped.
    pub fn register(&self, connection: Connection) -> Member {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let subscriber = Arc::new(Subscriber::new(id, connection));
        self.inner.write().members.insert(id, subscriber.clone());
        Member { hub: self.clone(), subscriber, rooms: Mutex::default() }
    }

    /// Sends `message` to every member of `room`, here and on every hub sharing the
    /// backplane. Returns how many local members it was handed to.
    pub fn broadcast(&self, room: &str, message: impl Into<PreparedMessage>) -> usize {
        self.inner.publish(Some(room), &message.into(), None)
    }

    /// Sends `message` to every member of every hub sharing the backplane.
    pub fn broadcast_all(&self, message: impl Into<PreparedMessage>) -> usize {
        self.inner.publish(None, &message.into(), None)
    }

    /// Members of `room` on this hub.
    pub fn presence(&self, room: &str) -> usize {
        self.inner.read().rooms.get(room).map_or(0, HashMap::len)
    }

    /// Members registered on this hub.
    pub fn len(&self) -> usize {
        self.inner.read().members.len()
    }

    /// Whether no member is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rooms with members on this hub.
    pub fn rooms(&self) -> Vec<String> {
        self.inner.read().rooms.keys().map(|r| r.to_string()).collect()
    }

    /// Closes every member's connection with `code` (e.g. 1001 when shutting down) and
    /// stops the backplane.
    pub fn close_all(&self, code: CloseCode, reason: &str) {
        for subscriber in self.inner.read().members.values() {
            let _ = subscriber.conn.close(code, reason);
        }
        if let Some(backplane) = &self.inner.backplane {
            backplane.shutdown();
        }
    }
}

impl Inner {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Local delivery, then the backplane.
    fn publish(&self, room: Option<&str>, message: &PreparedMessage, except: Option<u64>) -> usize {
        let delivered = self.deliver_local(room, message, except);
        if let Some(backplane) = &self.backplane {
            let channel = room.map_or_else(|| ALL_CHANNEL.to_owned(), backplane::room_channel);
            backplane.publish(&channel, backplane::encode(self.node, message));
        }
        delivered
    }

    fn deliver_local(&self, room: Option<&str>, message: &PreparedMessage, except: Option<u64>) -> usize {
        let state = self.read();
        let members = match room {
            Some(room) => match state.rooms.get(room) {
                Some(members) => members,
                None => return 0,
            },
            None => &state.members,
        };
        members.values().filter(|s| Some(s.id) != except).filter(|s| s.deliver(message, self.capacity, self.policy)).count()
    }

    pub(crate) fn deliver_remote(&self, channel: &str, envelope: &[u8]) {
        let room = match channel.strip_prefix("room:") {
            Some(room) => Some(room),
            None if channel == ALL_CHANNEL => None,
            None => return tracing::debug!(channel, "broadcast on an unknown channel ignored"),
        };
        match backplane::decode(envelope) {
            Ok((origin, _)) if origin == self.node => {}
            Ok((_, message)) => {
                self.deliver_local(room, &message, None);
            }
            Err(error) => tracing::warn!(channel, ?error, "malformed broadcast from the backplane ignored"),
        }
    }

    fn join(&self, room: &str, subscriber: &Arc<Subscriber>) {
        let mut state = self.write();
        let first = match state.rooms.get_mut(room) {
            Some(members) => {
                members.insert(subscriber.id, subscriber.clone());
                false
            }
            None => {
                state.rooms.insert(room.into(), HashMap::from([(subscriber.id, subscriber.clone())]));
                true
            }
        };
        if let (true, Some(backplane)) = (first, &self.backplane) {
            backplane.subscribe(&backplane::room_channel(room));
        }
    }

    fn leave(&self, room: &str, id: u64) {
        let mut state = self.write();
        let Some(members) = state.rooms.get_mut(room) else { return };
        members.remove(&id);
        if members.is_empty() {
            state.rooms.remove(room);
            if let Some(backplane) = &self.backplane {
                backplane.unsubscribe(&backplane::room_channel(room));
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(backplane) = &self.backplane {
            backplane.shutdown();
        }
    }
}

/// Builds a [`Hub`].
pub struct HubBuilder {
    capacity: usize,
    policy: SlowPolicy,
    backplane: Option<Box<dyn Backplane>>,
}

impl fmt::Debug for HubBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubBuilder")
            .field("capacity", &self.capacity)
            .field("policy", &self.policy)
            .field("backplane", &self.backplane.is_some())
            .finish()
    }
}

impl HubBuilder {
    /// Broadcasts queued per member while its connection's write buffer is at its
    /// high-water mark (at least 1; default 64).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// What happens to a member whose queue is full (default [`SlowPolicy::DropOldest`]).
    pub fn slow_policy(mut self, policy: SlowPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Shares rooms with other hubs through `backplane`.
    pub fn backplane(mut self, backplane: impl Backplane) -> Self {
        self.backplane = Some(Box::new(backplane));
        self
    }

    /// Builds the hub and starts its backplane.
    pub fn build(self) -> Hub {
        let inner = Arc::new(Inner {
            node: rand::random(),
            next_id: AtomicU64::new(1),
            capacity: self.capacity,
            policy: self.policy,
            state: RwLock::default(),
            backplane: self.backplane,
        });
        if let Some(backplane) = &inner.backplane {
            backplane.start(Inbox { hub: Arc::downgrade(&inner) });
            backplane.subscribe(ALL_CHANNEL);
        }
        Hub { inner }
    }
}

/// A connection registered with a [`Hub`]. Dropping it leaves every room.
pub struct Member {
    hub: Hub,
    subscriber: Arc<Subscriber>,
    rooms: Mutex<HashSet<Arc<str>>>,
}

impl fmt::Debug for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Member").field("id", &self.subscriber.id).field("rooms", &self.rooms()).finish()
    }
}

impl Member {
    /// This member's id, unique within its hub.
    pub fn id(&self) -> u64 {
        self.subscriber.id
    }

    /// The member's connection.
    pub fn connection(&self) -> &Connection {
        &self.subscriber.conn
    }

    /// Joins `room` (nothing happens if already in it).
    pub fn join(&self, room: &str) {
        let mut rooms = self.lock_rooms();
        if !rooms.contains(room) {
            rooms.insert(room.into());
            self.hub.inner.join(room, &self.subscriber);
        }
    }

    /// Leaves `room`.
    pub fn leave(&self, room: &str) {
        if self.lock_rooms().remove(room) {
            self.hub.inner.leave(room, self.subscriber.id);
        }
    }

    /// The rooms this member is in.
    pub fn rooms(&self) -> Vec<String> {
        self.lock_rooms().iter().map(|r| r.to_string()).collect()
    }

    /// Sends `message` to every other member of `room`, on every hub. Returns how many
    /// local members it was handed to.
    pub fn broadcast(&self, room: &str, message: impl Into<PreparedMessage>) -> usize {
        self.hub.inner.publish(Some(room), &message.into(), Some(self.subscriber.id))
    }

    /// Sends `message` to every other member, on every hub.
    pub fn broadcast_all(&self, message: impl Into<PreparedMessage>) -> usize {
        self.hub.inner.publish(None, &message.into(), Some(self.subscriber.id))
    }

    /// Broadcasts this member missed because it could not keep up
    /// ([`SlowPolicy::DropOldest`]).
    pub fn dropped(&self) -> u64 {
        self.subscriber.dropped()
    }

    fn lock_rooms(&self) -> std::sync::MutexGuard<'_, HashSet<Arc<str>>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        for room in std::mem::take(&mut *self.lock_rooms()) {
            self.hub.inner.leave(&room, self.subscriber.id);
        }
        self.hub.inner.write().members.remove(&self.subscriber.id);
    }
}
