//! The hub: members, rooms, broadcasts and presence.

use crate::backplane::{self, ALL_CHANNEL, Backplane, Inbox};
use crate::ring::Ring;
use crate::subscriber::{Pump, SlowPolicy, Subscriber};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use ws_core::{CloseCode, Connection, PreparedMessage};

/// A room: the ring its broadcasts go through, and who is in it.
struct Room {
    ring: Arc<Ring>,
    members: HashSet<u64>,
}

#[derive(Default)]
struct State {
    members: HashMap<u64, Arc<Subscriber>>,
    rooms: HashMap<Arc<str>, Room>,
}

pub(crate) struct Inner {
    /// This hub's id on the backplane, to recognise its own broadcasts coming back.
    node: u64,
    next_id: AtomicU64,
    capacity: usize,
    max_ring_bytes: usize,
    policy: SlowPolicy,
    state: RwLock<State>,
    /// The ring of broadcasts to all. Members get a pump on it once the first broadcast
    /// to all is made: until then it costs one ring and no task per member.
    everyone: Arc<Ring>,
    everyone_on: AtomicBool,
    backplane: Option<Box<dyn Backplane>>,
}

/// A broadcast hub: connections register as [`Member`]s, join rooms, and receive what is
/// broadcast to a room, to all, or to all but the sender.
///
/// A broadcast is encoded once (a [`PreparedMessage`]) and put in the room's ring, whose
/// frame every recipient's connection queues by reference. Broadcasting never waits for
/// a recipient: each member has a task per room that moves what is new into its
/// connection, one write per burst, and a [`SlowPolicy`] for when it falls behind. Without a backplane the hub is in-process;
/// with one (the `redis` feature's `RedisBackplane`) hubs in several processes share
/// their rooms. Cloning is cheap, and every clone is the same hub.
///
/// ```
/// use wsdriver::{Config, Message, Role, WebSocket};
/// use wsdriver::hub::Hub;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), wsdriver::Error> {
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
    /// An in-process hub with the default options: rings of 128 broadcasts and 4 MiB at
    /// most, then [`SlowPolicy::DropOldest`].
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Options: ring bounds, slow-subscriber policy, backplane.
    pub fn builder() -> HubBuilder {
        HubBuilder { capacity: 128, max_ring_bytes: 4 << 20, policy: SlowPolicy::DropOldest, backplane: None }
    }

    /// Registers a connection: the returned [`Member`] joins and leaves rooms, and leaves
    /// them all when dropped.
    ///
    /// # Panics
    /// Outside a Tokio runtime, once anything was broadcast to all: each member's
    /// broadcasts are moved by tasks (see also [`Member::join`]).
    pub fn register(&self, connection: Connection) -> Member {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let subscriber = Arc::new(Subscriber::new(id, connection));
        let mut state = self.inner.write();
        if self.inner.everyone_on.load(Ordering::Acquire) {
            self.inner.pump_everyone(&subscriber);
        }
        state.members.insert(id, subscriber.clone());
        drop(state);
        Member { hub: self.clone(), subscriber, rooms: Mutex::default() }
    }

    /// Sends `message` to every member of `room`, here and on every hub sharing the
    /// backplane. Returns how many local members it is for.
    pub fn broadcast(&self, room: &str, message: impl Into<PreparedMessage>) -> usize {
        self.inner.publish(Some(room), &message.into(), None)
    }

    /// Sends `message` to every member of every hub sharing the backplane.
    ///
    /// # Panics
    /// The first time, outside a Tokio runtime (see [`Hub::register`]).
    pub fn broadcast_all(&self, message: impl Into<PreparedMessage>) -> usize {
        self.inner.publish(None, &message.into(), None)
    }

    /// Members of `room` on this hub.
    pub fn presence(&self, room: &str) -> usize {
        self.inner.read().rooms.get(room).map_or(0, |r| r.members.len())
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

    /// The bytes of broadcasts the hub keeps alive: what its rings hold (each at most
    /// [`HubBuilder::max_ring_bytes`], plus its newest broadcast) and the broadcast each
    /// member's pump is queuing.
    pub fn retained_bytes(&self) -> usize {
        let state = self.inner.read();
        state.rooms.values().map(|r| r.ring.alive_bytes()).sum::<usize>() + self.inner.everyone.alive_bytes()
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

    /// Puts `message` in the ring of `room` (or of everyone): one shared frame, whatever
    /// the number of members, and no waiting; each member's pump takes it from there.
    fn deliver_local(&self, room: Option<&str>, message: &PreparedMessage, except: Option<u64>) -> usize {
        if room.is_none() && !self.everyone_on.load(Ordering::Acquire) {
            let state = self.write();
            if !self.everyone_on.load(Ordering::Acquire) {
                state.members.values().for_each(|s| self.pump_everyone(s));
                self.everyone_on.store(true, Ordering::Release);
            }
        }
        let state = self.read();
        let (ring, members, sender_inside) = match room {
            Some(name) => match state.rooms.get(name) {
                Some(room) => (&room.ring, room.members.len(), except.is_some_and(|id| room.members.contains(&id))),
                None => return 0,
            },
            None => (&self.everyone, state.members.len(), except.is_some()),
        };
        // The count is of members, who stay members until dropped, whether or not their
        // connections are still open.
        ring.send(message.clone(), except);
        members - usize::from(sender_inside)
    }

    fn pump_everyone(&self, subscriber: &Arc<Subscriber>) {
        let pump = subscriber.spawn_pump(&self.everyone, self.policy);
        *subscriber.everyone.lock().unwrap_or_else(|e| e.into_inner()) = Some(pump);
    }

    pub(crate) fn deliver_remote(&self, channel: &str, envelope: &[u8]) {
        let room = match channel.strip_prefix(backplane::ROOM_PREFIX) {
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

    /// Adds the member to `room`, returning the pump feeding it from the room's ring.
    fn join(&self, room: &str, subscriber: &Arc<Subscriber>) -> Pump {
        let mut state = self.write();
        let (ring, first) = match state.rooms.get(room) {
            Some(existing) => (existing.ring.clone(), false),
            None => (Arc::new(Ring::new(self.capacity, self.max_ring_bytes)), true),
        };
        // Spawned before the room changes: a panic (no runtime) leaves no half-joined room.
        let pump = subscriber.spawn_pump(&ring, self.policy);
        let room_state = state.rooms.entry(room.into()).or_insert_with(|| Room { ring, members: HashSet::new() });
        room_state.members.insert(subscriber.id);
        if let (true, Some(backplane)) = (first, &self.backplane) {
            backplane.subscribe(&backplane::room_channel(room));
        }
        pump
    }

    fn leave(&self, room: &str, id: u64) {
        let mut state = self.write();
        let Some(members) = state.rooms.get_mut(room).map(|r| &mut r.members) else { return };
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
    max_ring_bytes: usize,
    policy: SlowPolicy,
    backplane: Option<Box<dyn Backplane>>,
}

impl fmt::Debug for HubBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubBuilder")
            .field("capacity", &self.capacity)
            .field("max_ring_bytes", &self.max_ring_bytes)
            .field("policy", &self.policy)
            .field("backplane", &self.backplane.is_some())
            .finish()
    }
}

impl HubBuilder {
    /// Broadcasts each room keeps for members that have not taken them yet, rounded up to
    /// a power of two (at least 1; default 128). The ring is shared by the room's members, one slot (about 40 bytes
    /// and a reference to the frame) per broadcast, allocated when the room is created;
    /// a member further behind is handled by the [`SlowPolicy`].
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        // The ring holds a power of two; say so, and measure lag against what it holds.
        self.capacity = capacity.max(1).next_power_of_two();
        self
    }

    /// The most bytes of broadcasts each room's ring keeps alive (default 4 MiB; a
    /// broadcast costs its encoded frame and its message). Past it the oldest go, whatever
    /// the ring's capacity in broadcasts, and a member that had not taken them has fallen
    /// behind ([`SlowPolicy`]). The newest broadcast is kept whatever its size. At least
    /// 1.
    pub fn max_ring_bytes(mut self, bytes: usize) -> Self {
        self.max_ring_bytes = bytes.max(1);
        self
    }

    /// What happens to a member that falls behind its rings (default
    /// [`SlowPolicy::DropOldest`]).
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
            max_ring_bytes: self.max_ring_bytes,
            policy: self.policy,
            state: RwLock::default(),
            everyone: Arc::new(Ring::new(self.capacity, self.max_ring_bytes)),
            everyone_on: AtomicBool::new(false),
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
    /// The rooms joined, each with the pump feeding this member from its ring.
    rooms: Mutex<HashMap<Arc<str>, Pump>>,
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
    ///
    /// # Panics
    /// Outside a Tokio runtime: a task moves the room's broadcasts into this member's
    /// connection.
    pub fn join(&self, room: &str) {
        let mut rooms = self.lock_rooms();
        if !rooms.contains_key(room) {
            let pump = self.hub.inner.join(room, &self.subscriber);
            rooms.insert(room.into(), pump);
        }
    }

    /// Leaves `room`; what was broadcast to it and not yet taken is not delivered.
    pub fn leave(&self, room: &str) {
        if let Some(pump) = self.lock_rooms().remove(room) {
            pump.stop();
            self.hub.inner.leave(room, self.subscriber.id);
        }
    }

    /// The rooms this member is in.
    pub fn rooms(&self) -> Vec<String> {
        self.lock_rooms().keys().map(|r| r.to_string()).collect()
    }

    /// Sends `message` to every member of `room`, this one included, on every hub, as
    /// [`Hub::broadcast`] does. Returns how many local members it is for.
    pub fn broadcast(&self, room: &str, message: impl Into<PreparedMessage>) -> usize {
        self.hub.broadcast(room, message)
    }

    /// Sends `message` to every other member of `room`, on every hub: not to this one.
    /// Returns how many local members it is for.
    pub fn broadcast_others(&self, room: &str, message: impl Into<PreparedMessage>) -> usize {
        self.hub.inner.publish(Some(room), &message.into(), Some(self.subscriber.id))
    }

    /// Sends `message` to every member, this one included, on every hub.
    pub fn broadcast_all(&self, message: impl Into<PreparedMessage>) -> usize {
        self.hub.broadcast_all(message)
    }

    /// Sends `message` to every other member, on every hub: not to this one.
    pub fn broadcast_all_others(&self, message: impl Into<PreparedMessage>) -> usize {
        self.hub.inner.publish(None, &message.into(), Some(self.subscriber.id))
    }

    /// Broadcasts this member missed because it could not keep up
    /// ([`SlowPolicy::DropOldest`]).
    pub fn dropped(&self) -> u64 {
        self.subscriber.dropped()
    }

    fn lock_rooms(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Pump>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        for (room, pump) in std::mem::take(&mut *self.lock_rooms()) {
            pump.stop();
            self.hub.inner.leave(&room, self.subscriber.id);
        }
        // Under the write lock: the first broadcast to all, which starts a pump for every
        // member, sees this one either still registered (and its pump is stopped here) or
        // gone.
        let mut state = self.hub.inner.write();
        state.members.remove(&self.subscriber.id);
        if let Some(pump) = self.subscriber.everyone.lock().unwrap_or_else(|e| e.into_inner()).take() {
            pump.stop();
        }
    }
}
