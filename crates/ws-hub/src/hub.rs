//! The hub: members, rooms, broadcasts and presence.

use crate::HubError;
use crate::backplane::{self, ALL_CHANNEL, Backplane, BoxFuture, History, HistoryBounds, Inbox, Origin, PresenceStore};
use crate::hooks::{self, ConnectHook, ConnectRequest, JoinHook, JoinRequest, PublishHook, PublishRequest, Refusal};
use crate::position::{Position, Publication, Recovery};
use crate::presence::{PresenceEvent, PresenceKind, Present};
use crate::ring::{Bounds, Replayed, Ring};
use crate::subscriber::{Pump, Recover, SlowPolicy, Start, Subscriber};
use bytes::Bytes;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::Duration;
use tokio::sync::mpsc;
use ws_core::{CloseCode, Connection, Message, PreparedMessage};

/// Makes the message members are sent from a publication.
type Envelope = dyn Fn(&Publication<'_>) -> PreparedMessage + Send + Sync;

/// Makes the message a room's members are sent when someone joins or leaves it.
type OnPresence = dyn Fn(&PresenceEvent<'_>) -> Option<PreparedMessage> + Send + Sync;

/// A join or leave for the presence store, in the order they happened.
enum PresenceOp {
    Join { channel: String, member: String, info: Bytes },
    Leave { channel: String, member: String },
}

/// Joins and leaves waiting for the presence store; past it they are dropped (an entry
/// not added is added by the next refresh, one not removed expires).
const PRESENCE_QUEUE: usize = 16 << 10;

/// A room: the ring its publications go through (its history), and who is in it.
struct Room {
    ring: Arc<Ring>,
    members: HashSet<u64>,
}

#[derive(Default)]
struct State {
    members: HashMap<u64, Arc<Subscriber>>,
    rooms: HashMap<Arc<str>, Room>,
    /// Rooms left without members, oldest first, kept for their history until it
    /// expires or more are idle than the hub keeps. A name may be here twice, or for a
    /// room that has members again: it is checked when it comes out.
    idle: VecDeque<Arc<str>>,
}

pub(crate) struct Inner {
    /// This hub, for the pumps that recover from the backplane's history.
    this: Weak<Inner>,
    /// This hub's id on the backplane, to recognise its own broadcasts coming back.
    node: u64,
    next_id: AtomicU64,
    bounds: Bounds,
    idle_rooms: usize,
    idle_bytes: usize,
    envelope: Option<Box<Envelope>>,
    policy: SlowPolicy,
    state: RwLock<State>,
    /// The ring of broadcasts to all. Members get a pump on it once the first broadcast
    /// to all is made: until then it costs one ring and no task per member.
    everyone: Arc<Ring>,
    everyone_on: AtomicBool,
    backplane: Option<Box<dyn Backplane>>,
    /// Publications read from the backplane's history to fill gaps.
    pub(crate) recovered: AtomicU64,
    presence_ttl: Duration,
    on_presence: Option<Box<OnPresence>>,
    on_connect: Option<Box<ConnectHook>>,
    on_join: Option<Box<JoinHook>>,
    on_publish: Option<Box<PublishHook>>,
    /// Joins and leaves on their way to the backplane's presence store, if it has one.
    presence_ops: Option<mpsc::Sender<PresenceOp>>,
}

/// A broadcast hub: connections register as [`Member`]s, join rooms, and receive what is
/// broadcast to a room, to all, or to all but the sender.
///
/// A broadcast is encoded once (a [`PreparedMessage`]) and put in the room's ring, whose
/// frame every recipient's connection queues by reference. Broadcasting never waits for
/// a recipient: each member has a task per room that moves what is new into its
/// connection, one write per burst, and a [`SlowPolicy`] for when it falls behind. Without
/// a backplane the hub is in-process; with one (the `redis` feature's `RedisBackplane`)
/// hubs in several processes share their rooms. Cloning is cheap, and every clone is the
/// same hub.
///
/// Every publication gets a [`Position`] in its room's stream, and the ring is the room's
/// history: a member that comes back with the last position it saw
/// ([`Member::join_from`]) gets what it missed, in order, before anything new, or is told
/// that history no longer reaches back ([`Recovery::Reset`]). Clients learn positions
/// from the messages they are sent, which the hub's [envelope](HubBuilder::envelope)
/// makes.
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
/// assert_eq!(hub.local_presence("lobby"), 1);
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
    /// most, kept 5 minutes, then [`SlowPolicy::DropOldest`].
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Options: ring bounds, history, envelope, slow-subscriber policy, backplane.
    pub fn builder() -> HubBuilder {
        HubBuilder {
            bounds: Bounds { capacity: 128, max_bytes: 4 << 20, ttl: Duration::from_secs(300) },
            idle_rooms: 1024,
            idle_bytes: 64 << 20,
            envelope: None,
            presence_ttl: Duration::from_secs(30),
            on_presence: None,
            on_connect: None,
            on_join: None,
            on_publish: None,
            policy: SlowPolicy::DropOldest,
            backplane: None,
        }
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

    /// Registers a connection once the [connect hook](HubBuilder::on_connect) accepted
    /// the upgrade `request` it came with (without a hook, as [`Hub::register`] does):
    /// the member's info is what the hook returned. A refusal with a code closes the
    /// connection with it.
    ///
    /// ```
    /// use wsdriver::hub::{ConnectRequest, Hub, HubError, Refusal};
    /// use wsdriver::{CloseCode, Config, Role, WebSocket};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let hub = Hub::builder()
    ///     .on_connect(|request: ConnectRequest| async move {
    ///         match request.uri.query() {
    ///             Some("token=s3cret") => Ok("alice".into()),
    ///             _ => Err(Refusal::close(CloseCode::POLICY_VIOLATION, "who are you?")),
    ///         }
    ///     })
    ///     .build();
    /// # let (a, _b) = tokio::io::duplex(1024);
    /// # let socket = WebSocket::from_raw(a, Role::Server, &Config::default());
    /// let request = http::Request::get("/chat?token=nope").body(()).unwrap();
    /// let refused = hub.connect(socket.connection(), &request).await;
    /// assert!(matches!(refused, Err(HubError::Refused(_))));
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`HubError::Refused`] when the hook refused.
    pub async fn connect(&self, connection: Connection, request: impl Into<ConnectRequest>) -> Result<Member, HubError> {
        let Some(hook) = &self.inner.on_connect else { return Ok(self.register(connection)) };
        let mut request = request.into();
        request.protocol = connection.protocol();
        match hook(request).await {
            Ok(info) => {
                let member = self.register(connection);
                member.set_info(info);
                Ok(member)
            }
            Err(refusal) => Err(refuse(&connection, refusal)),
        }
    }

    /// Sends `message` to every member of `room`, here and on every hub sharing the
    /// backplane. Returns how many local members it is for.
    ///
    /// The room's history keeps it even when no member is here, so that members coming
    /// back recover it ([`Member::join_from`]).
    pub fn broadcast(&self, room: &str, message: impl Into<PreparedMessage>) -> usize {
        self.inner.publish(Some(room), &message.into(), None, None).0
    }

    /// Sends `message` to every member of `room`, as [`Hub::broadcast`] does, and returns
    /// its position in the room's stream.
    ///
    /// ```
    /// use wsdriver::hub::Hub;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), wsdriver::hub::HubError> {
    /// let hub = Hub::new();
    /// let first = hub.publish("news", "one").await?;
    /// let second = hub.publish("news", "two").await?;
    /// assert_eq!((first.offset, second.offset), (1, 2));
    /// assert_eq!(first.epoch, second.epoch);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// With a backplane that keeps history, [`HubError::Backplane`] when it could not
    /// number and keep the publication (its server is unreachable): no member received
    /// it. Never in-process.
    pub async fn publish(&self, room: &str, message: impl Into<PreparedMessage>) -> Result<Position, HubError> {
        self.inner.publish(Some(room), &message.into(), None, None).1.position().await
    }

    /// Publishes `message` to `room` once under `key`, as [`Hub::publish`] does: while
    /// the room's history keeps the publication made under `key`, publishing under it
    /// again publishes nothing and returns the first one's position. A client that did
    /// not hear back before its connection dropped sends again with the same key (its
    /// name and a message number, say), through any hub, and nobody receives it twice.
    ///
    /// ```
    /// use wsdriver::hub::Hub;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), wsdriver::hub::HubError> {
    /// let hub = Hub::new();
    /// let first = hub.publish_once("chat", "alice/1", "hello").await?;
    /// assert_eq!(hub.publish_once("chat", "alice/1", "hello").await?, first);
    /// assert_eq!(hub.publish("chat", "next").await?.offset, first.offset + 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Hub::publish`].
    pub async fn publish_once(&self, room: &str, key: &str, message: impl Into<PreparedMessage>) -> Result<Position, HubError> {
        self.inner.publish(Some(room), &message.into(), None, Some(key)).1.position().await
    }

    /// Sends `message` to every member of every hub sharing the backplane.
    ///
    /// # Panics
    /// The first time, outside a Tokio runtime (see [`Hub::register`]).
    pub fn broadcast_all(&self, message: impl Into<PreparedMessage>) -> usize {
        self.inner.publish(None, &message.into(), None, None).0
    }

    /// Members of `room` on this hub (see [`Hub::presence_count`] for every hub).
    pub fn local_presence(&self, room: &str) -> usize {
        self.inner.read().rooms.get(room).map_or(0, |r| r.members.len())
    }

    /// Who is in `room`, on every hub sharing a backplane that keeps presence (the Redis
    /// one), or on this hub without one.
    ///
    /// ```
    /// use wsdriver::hub::Hub;
    /// use wsdriver::{Config, Role, WebSocket};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), wsdriver::hub::HubError> {
    /// let hub = Hub::new();
    /// # let (a, _b) = tokio::io::duplex(1024);
    /// let member = hub.register(WebSocket::from_raw(a, Role::Server, &Config::default()).connection());
    /// member.set_info("alice");
    /// member.join("lobby");
    /// let present = hub.presence("lobby").await?;
    /// assert_eq!(present[0].info, "alice");
    /// assert_eq!(hub.presence_count("lobby").await?, 1);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`HubError::Backplane`] when the backplane could not be asked.
    pub async fn presence(&self, room: &str) -> Result<Vec<Present>, HubError> {
        self.inner.present_in(room).await
    }

    /// How many are in `room`, as [`Hub::presence`] counts them.
    ///
    /// # Errors
    /// As [`Hub::presence`].
    pub async fn presence_count(&self, room: &str) -> Result<usize, HubError> {
        match self.inner.presence_store() {
            Some(store) => store.count(&backplane::room_channel(room)).await,
            None => Ok(self.local_presence(room)),
        }
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
        self.inner.read().rooms.iter().filter(|(_, r)| !r.members.is_empty()).map(|(name, _)| name.to_string()).collect()
    }

    /// The bytes of broadcasts the hub keeps alive: what its rings hold (each at most
    /// [`HubBuilder::max_ring_bytes`], plus its newest broadcast) and the broadcast each
    /// member's pump is queuing.
    pub fn retained_bytes(&self) -> usize {
        let state = self.inner.read();
        state.rooms.values().map(|r| r.ring.alive_bytes()).sum::<usize>() + self.inner.everyone.alive_bytes()
    }

    /// Publications this hub did not receive from its backplane (its link dropped for a
    /// moment) and read from the backplane's history instead, so that its members missed
    /// none of them. Counted once per room, and once per member that noticed the gap
    /// itself.
    pub fn recovered(&self) -> u64 {
        self.inner.recovered.load(Ordering::Relaxed)
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

/// Closes the connection if the refusal says so, and turns it into the caller's error.
fn refuse(connection: &Connection, refusal: Refusal) -> HubError {
    if let Some(code) = refusal.code() {
        let _ = connection.close(code, refusal.reason());
    }
    HubError::Refused(refusal)
}

/// Where a publication went: numbered here, or handed to the backplane's history.
enum Sent {
    Here(Position),
    Appended(BoxFuture<Result<Position, HubError>>),
}

impl Sent {
    async fn position(self) -> Result<Position, HubError> {
        match self {
            Self::Here(position) => Ok(position),
            Self::Appended(append) => append.await,
        }
    }
}

/// Publications read from a backplane's history at a time: what a member catching up
/// holds at most, besides its write buffer.
const PAGE: usize = 128;

/// The longest [`Member::join_from`] waits for the backplane to receive on a room's
/// channel before it reads the room's history.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// The backplane channel of `room`, or of broadcasts to all.
fn channel_of(room: Option<&str>) -> String {
    room.map_or_else(|| ALL_CHANNEL.to_owned(), backplane::room_channel)
}

impl Inner {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The backplane's history, when it numbers publications.
    fn history(&self) -> Option<&dyn History> {
        self.backplane.as_deref()?.history()
    }

    /// The backplane's presence store, when it keeps presence for every hub.
    fn presence_store(&self) -> Option<&dyn PresenceStore> {
        self.backplane.as_deref()?.presence()
    }

    /// Publishes: numbered and delivered here (then handed to an unnumbered backplane),
    /// or appended to the backplane's history, which delivers it to every hub, this one
    /// included. Returns the local members it is for, and where it went.
    fn publish(&self, room: Option<&str>, message: &PreparedMessage, except: Option<u64>, key: Option<&str>) -> (usize, Sent) {
        let origin = Origin { node: self.node, except: except.unwrap_or(0) };
        if let Some(history) = self.history() {
            let append = history.append(&channel_of(room), backplane::encode(origin, message), key);
            return (self.audience(room, except), Sent::Appended(append));
        }
        let (delivered, position) = self.deliver_local(room, message, except, key);
        if let Some(backplane) = &self.backplane {
            backplane.publish(&channel_of(room), backplane::encode(origin, message));
        }
        (delivered, Sent::Here(position))
    }

    /// The local members a publication to `room` (or to all) is for.
    fn audience(&self, room: Option<&str>, except: Option<u64>) -> usize {
        let state = self.read();
        match room {
            Some(name) => {
                state.rooms.get(name).map_or(0, |r| r.members.len() - except.map_or(0, |id| usize::from(r.members.contains(&id))))
            }
            None => state.members.len() - usize::from(except.is_some()),
        }
    }

    /// Starts a pump on the ring of broadcasts to all for every member, the first time
    /// something is broadcast to all.
    fn everyone_on(&self) {
        if !self.everyone_on.load(Ordering::Acquire) {
            let state = self.write();
            if !self.everyone_on.load(Ordering::Acquire) {
                state.members.values().for_each(|s| self.pump_everyone(s));
                self.everyone_on.store(true, Ordering::Release);
            }
        }
    }

    /// Puts `message` in the ring of `room` (or of everyone), numbered next, creating the
    /// room if it has none: one shared frame, whatever the number of members, and no
    /// waiting; each member's pump takes it from there.
    fn deliver_local(&self, room: Option<&str>, message: &PreparedMessage, except: Option<u64>, key: Option<&str>) -> (usize, Position) {
        if room.is_none() {
            self.everyone_on();
        }
        if let Some(name) = room {
            if !self.read().rooms.contains_key(name) {
                let mut state = self.write();
                self.room(&mut state, name);
                // A room with no member is idle from the start (the idle rooms' bounds
                // are applied once the publication is in).
                state.idle.push_back(name.into());
            }
        }
        let state = self.read();
        let (ring, members, sender_inside) = match room {
            Some(name) => match state.rooms.get(name) {
                Some(room) => (&room.ring, room.members.len(), except.is_some_and(|id| room.members.contains(&id))),
                // Let go between the two locks, as an idle room past the hub's bounds.
                None => return (0, Position::default()),
            },
            None => (&self.everyone, state.members.len(), except.is_some()),
        };
        let position = ring.publish(key, |position| self.frame(room, position, message), except);
        drop(state);
        if room.is_some() && members == 0 {
            // History kept for no one here: within the idle rooms' bounds.
            self.sweep_idle(&mut self.write());
        }
        // The count is of members, who stay members until dropped, whether or not their
        // connections are still open.
        (members - usize::from(sender_inside), position)
    }

    /// What members are sent for a publication: the envelope's message, or the one
    /// published.
    fn frame(&self, room: Option<&str>, position: Position, message: &PreparedMessage) -> PreparedMessage {
        match &self.envelope {
            Some(envelope) => envelope(&Publication { room, position, message: message.message(), prepared: message }),
            None => message.clone(),
        }
    }

    /// The room called `name`, created if it does not exist.
    fn room<'a>(&self, state: &'a mut State, name: &str) -> &'a mut Room {
        state.rooms.entry(name.into()).or_insert_with(|| {
            if let Some(backplane) = &self.backplane {
                backplane.subscribe(&backplane::room_channel(name));
            }
            Room { ring: Arc::new(Ring::new(self.bounds)), members: HashSet::new() }
        })
    }

    /// Keeps a room without members for its history, and lets go of idle rooms whose
    /// history expired, or the oldest ones past the hub's bound. With a backplane that
    /// keeps history, the room goes at once: its history is the backplane's.
    fn idle(&self, state: &mut State, name: Arc<str>) {
        if self.history().is_some() {
            return self.remove_room(state, &name);
        }
        state.idle.push_back(name);
        self.sweep_idle(state);
    }

    /// Lets go of the idle rooms past the hub's bounds, those left longest ago first.
    fn sweep_idle(&self, state: &mut State) {
        let idle: HashSet<&Arc<str>> = state.idle.iter().collect();
        let mut bytes: usize =
            idle.iter().filter_map(|n| state.rooms.get(*n)).filter(|r| r.members.is_empty()).map(|r| r.ring.alive_bytes()).sum();
        while let Some(oldest) = state.idle.front().cloned() {
            let room = state.rooms.get(&oldest);
            let still_idle = room.is_some_and(|r| r.members.is_empty());
            let within = state.idle.len() <= self.idle_rooms && bytes <= self.idle_bytes;
            if still_idle && within && !room.is_some_and(|r| r.ring.expired()) {
                break;
            }
            state.idle.pop_front();
            if still_idle {
                bytes -= room.map_or(0, |r| r.ring.alive_bytes()).min(bytes);
                self.remove_room(state, &oldest);
            }
        }
    }

    fn remove_room(&self, state: &mut State, name: &str) {
        state.rooms.remove(name);
        if let Some(backplane) = &self.backplane {
            backplane.unsubscribe(&backplane::room_channel(name));
        }
    }

    /// Where a pump recovers a gap from: the backplane's history, if it has one.
    fn recover(&self, room: Option<&str>) -> Option<Recover> {
        self.history().map(|_| Recover { hub: self.this.clone(), room: room.map(Arc::from) })
    }

    fn pump_everyone(&self, subscriber: &Arc<Subscriber>) {
        let start = Start { live: self.everyone.subscribe(), backlog: Vec::new(), last: None, catch_up: None, recover: self.recover(None) };
        let pump = subscriber.spawn_pump(&self.everyone, start, self.policy);
        *subscriber.everyone.lock().unwrap_or_else(|e| e.into_inner()) = Some(pump);
    }

    /// A publication arriving from the backplane: numbered by its history (`position`),
    /// or to be numbered here.
    pub(crate) fn deliver_remote(&self, channel: &str, position: Option<Position>, envelope: &[u8]) {
        let room = match channel.strip_prefix(backplane::ROOM_PREFIX) {
            Some(room) => Some(room),
            None if channel == ALL_CHANNEL => None,
            None => return tracing::debug!(channel, "broadcast on an unknown channel ignored"),
        };
        let (origin, message) = match backplane::decode(envelope) {
            Ok(decoded) => decoded,
            Err(error) => return tracing::warn!(channel, ?error, "malformed broadcast from the backplane ignored"),
        };
        let Some(position) = position else {
            if origin.node != self.node {
                self.deliver_local(room, &message, None, None);
            }
            return;
        };
        if room.is_none() {
            self.everyone_on();
        }
        let except = origin.except_on(self.node);
        let state = self.read();
        let ring = match room {
            Some(name) => match state.rooms.get(name) {
                Some(room) => &room.ring,
                None => return,
            },
            None => &self.everyone,
        };
        ring.publish_at(position, |position| self.frame(room, position, &message), except);
    }

    /// The first page of what the backplane's history holds for `room` (or all) after
    /// `since`, as members are sent it, and the stream's newest position.
    pub(crate) async fn replay(&self, room: Option<&str>, since: Position) -> Result<(Position, Option<Vec<Replayed>>), HubError> {
        let history = self.history().ok_or_else(|| HubError::Backplane("the backplane keeps no history".into()))?;
        let replay = history.read(&channel_of(room), since, PAGE).await?;
        let replayed = replay.envelopes.map(|envelopes| {
            let mut replayed = Vec::with_capacity(envelopes.len());
            for (position, envelope) in (since.offset + 1..).map(|offset| Position { offset, epoch: since.epoch }).zip(envelopes) {
                match backplane::decode(&envelope) {
                    Ok((origin, message)) => replayed.push(Replayed {
                        position,
                        message: self.frame(room, position, &message),
                        except: origin.except_on(self.node),
                    }),
                    Err(error) => tracing::warn!(?room, %position, ?error, "malformed publication in the backplane's history skipped"),
                }
            }
            replayed
        });
        Ok((replay.position, replayed))
    }

    /// Adds the member to `room`, returning the pump feeding it from the room's ring,
    /// after replaying what followed `since` if the room's history holds it. Here, the
    /// history is the ring; with a backplane that keeps history, see [`Inner::join_numbered`].
    fn join(&self, name: &str, subscriber: &Arc<Subscriber>, since: Option<Position>) -> (Pump, Recovery) {
        // Make sure there is a runtime before the room changes: a panic leaves no
        // half-joined room.
        let _ = tokio::runtime::Handle::current();
        let recover = self.recover(Some(name));
        let mut state = self.write();
        let room = self.room(&mut state, name);
        let (start, recovery) = match since {
            Some(since) => {
                let since = room.ring.since(since);
                let recovery = match &since.backlog {
                    Some(backlog) => Recovery::Recovered { replayed: backlog.len(), position: since.position },
                    None => Recovery::Reset { position: since.position },
                };
                let backlog = since.backlog.unwrap_or_default();
                (Start { live: since.live, backlog, last: None, catch_up: None, recover }, recovery)
            }
            None => {
                let start = Start { live: room.ring.subscribe(), backlog: Vec::new(), last: None, catch_up: None, recover };
                (start, Recovery::Reset { position: room.ring.position() })
            }
        };
        room.members.insert(subscriber.id);
        let pump = subscriber.spawn_pump(&room.ring, start, self.policy);
        drop(state);
        self.presence_changed(name, subscriber, PresenceKind::Join);
        (pump, recovery)
    }

    /// [`Inner::join`] from `since` with a backplane that keeps history: the member
    /// receives live publications from the moment it joins, the history after `since` is
    /// read once the backplane receives on the room's channel, and the pump replays it
    /// page by page up to the stream's position at that moment, then skips the live ones
    /// it already replayed.
    async fn join_numbered(&self, name: &str, subscriber: &Arc<Subscriber>, since: Position) -> Result<(Pump, Recovery), HubError> {
        let _ = tokio::runtime::Handle::current();
        let (ring, live) = {
            let mut state = self.write();
            let room = self.room(&mut state, name);
            room.members.insert(subscriber.id);
            (room.ring.clone(), room.ring.subscribe())
        };
        let replay = async {
            let ready = self.backplane.as_ref().map(|b| b.ready());
            if let Some(ready) = ready {
                tokio::time::timeout(READY_TIMEOUT, ready)
                    .await
                    .map_err(|_| HubError::Backplane("the backplane is not connected".into()))?;
            }
            self.replay(Some(name), since).await
        };
        let (position, page) = match replay.await {
            Ok(replayed) => replayed,
            Err(error) => {
                // Never announced: it leaves as quietly as it came.
                self.remove(name, subscriber.id);
                return Err(error);
            }
        };
        ring.advance_to(position);
        let recover = self.recover(Some(name));
        let (recovery, start) = match page {
            Some(page) => {
                let replayed = usize::try_from(position.offset - since.offset).unwrap_or(usize::MAX);
                let until = Position { offset: position.offset + 1, epoch: position.epoch };
                let start = Start { live, backlog: page, last: Some(since), catch_up: Some(until), recover };
                (Recovery::Recovered { replayed, position }, start)
            }
            None => {
                let start = Start { live, backlog: Vec::new(), last: Some(position), catch_up: None, recover };
                (Recovery::Reset { position }, start)
            }
        };
        let pump = subscriber.spawn_pump(&ring, start, self.policy);
        self.presence_changed(name, subscriber, PresenceKind::Join);
        Ok((pump, recovery))
    }

    /// The backplane's link came back: for each ring, reads what its stream holds after
    /// the ring's newest position and adds it in order. A publication arriving live
    /// meanwhile goes first; what the refill then brings that is older is dropped, and
    /// each pump fills that gap itself when it sees the live one.
    pub(crate) fn refill(&self) {
        if self.history().is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let mut rings: Vec<(Option<Arc<str>>, Arc<Ring>)> =
            self.read().rooms.iter().filter(|(_, r)| !r.members.is_empty()).map(|(name, r)| (Some(name.clone()), r.ring.clone())).collect();
        if self.everyone_on.load(Ordering::Acquire) {
            rings.push((None, self.everyone.clone()));
        }
        for (room, ring) in rings {
            let hub = self.this.clone();
            runtime.spawn(async move {
                loop {
                    let Some(hub) = hub.upgrade() else { return };
                    let since = ring.position();
                    match hub.replay(room.as_deref(), since).await {
                        Ok((_, Some(missed))) if !missed.is_empty() => {
                            hub.recovered.fetch_add(missed.len() as u64, Ordering::Relaxed);
                            for publication in missed {
                                ring.publish_at(publication.position, |_| publication.message, publication.except);
                            }
                        }
                        Ok((_, Some(_))) => return,
                        // A stream that no longer reaches back (or of another epoch): the
                        // next publication tells each pump, whose slow policy decides.
                        Ok((_, None)) => {
                            return tracing::debug!(?room, %since, "the backplane's history no longer holds what this hub missed");
                        }
                        Err(error) => return tracing::warn!(%error, ?room, "could not read what this hub missed from the backplane"),
                    }
                }
            });
        }
    }

    /// Takes the member out of `room`, and tells who is there.
    fn leave(&self, room: &str, id: u64) {
        if let Some(subscriber) = self.remove(room, id) {
            self.presence_changed(room, &subscriber, PresenceKind::Leave);
        }
    }

    /// Takes the member out of `room`, returning it if it was in.
    fn remove(&self, room: &str, id: u64) -> Option<Arc<Subscriber>> {
        let mut state = self.write();
        let members = &mut state.rooms.get_mut(room)?.members;
        if !members.remove(&id) {
            return None;
        }
        if members.is_empty() {
            self.idle(&mut state, room.into());
        }
        state.members.get(&id).cloned()
    }

    /// Refreshes the presence entries of this hub's members, and removes (announcing
    /// them) the expired ones of the rooms it has members in: those of hubs that died.
    async fn refresh_presence(&self) {
        let Some(store) = self.presence_store() else { return };
        let mut entries = Vec::new();
        let mut rooms = Vec::new();
        {
            let state = self.read();
            for (name, room) in state.rooms.iter().filter(|(_, r)| !r.members.is_empty()) {
                let channel = backplane::room_channel(name);
                for subscriber in room.members.iter().filter_map(|id| state.members.get(id)) {
                    let who = self.present(subscriber);
                    entries.push(store.join(&channel, &who.member, who.info, self.presence_ttl));
                }
                rooms.push(channel);
            }
        }
        // Concurrently: a multiplexed connection pipelines them.
        let mut refreshes = tokio::task::JoinSet::new();
        entries.into_iter().for_each(|entry| drop(refreshes.spawn(entry)));
        rooms.iter().for_each(|channel| drop(refreshes.spawn(store.sweep(channel))));
        while let Some(done) = refreshes.join_next().await {
            if let Ok(Err(error)) = done {
                tracing::debug!(%error, "presence refresh failed");
            }
        }
    }

    /// Applies a join or leave to the presence store.
    async fn apply(&self, op: PresenceOp) {
        let Some(store) = self.presence_store() else { return };
        let result = match op {
            PresenceOp::Join { channel, member, info } => store.join(&channel, &member, info, self.presence_ttl).await,
            PresenceOp::Leave { channel, member } => store.leave(&channel, &member).await,
        };
        if let Err(error) = result {
            tracing::debug!(%error, "presence change not stored (the next refresh repairs it)");
        }
    }
}

/// Keeps a hub's presence entries: applies its joins and leaves in order, and refreshes
/// its entries (and sweeps its rooms' expired ones) three times per time to live. Ends
/// with the hub.
async fn keep_presence(hub: Weak<Inner>, mut ops: mpsc::Receiver<PresenceOp>, ttl: Duration) {
    let mut refresh = tokio::time::interval((ttl / 3).max(Duration::from_millis(10)));
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            op = ops.recv() => {
                let (Some(op), Some(hub)) = (op, hub.upgrade()) else { return };
                hub.apply(op).await;
            }
            _ = refresh.tick() => {
                let Some(hub) = hub.upgrade() else { return };
                hub.refresh_presence().await;
            }
        }
    }
}

/// Presence: who is in each room, and telling the room.
impl Inner {
    /// This hub's name for a member, unique across hubs.
    fn member_name(&self, id: u64) -> String {
        format!("{:x}:{id}", self.node)
    }

    fn present(&self, subscriber: &Subscriber) -> Present {
        Present { member: self.member_name(subscriber.id), info: subscriber.info.lock().unwrap_or_else(|e| e.into_inner()).clone() }
    }

    /// A member joined or left `room`: the presence store is told (and announces it to
    /// every hub), or, without one, the room's local members are.
    fn presence_changed(&self, room: &str, subscriber: &Subscriber, kind: PresenceKind) {
        let who = self.present(subscriber);
        match &self.presence_ops {
            Some(ops) => {
                let channel = backplane::room_channel(room);
                let op = match kind {
                    PresenceKind::Leave => PresenceOp::Leave { channel, member: who.member },
                    _ => PresenceOp::Join { channel, member: who.member, info: who.info },
                };
                if ops.try_send(op).is_err() {
                    tracing::warn!(room, "presence change dropped: the presence store is too far behind");
                }
            }
            None => {
                let count = self.read().rooms.get(room).map_or(0, |r| r.members.len());
                self.tell_room(room, kind, Some(&who), count);
            }
        }
    }

    /// A join, leave or recount the presence store announced on `channel`.
    pub(crate) fn deliver_presence(&self, channel: &str, kind: PresenceKind, who: Option<&Present>, count: usize) {
        if let Some(room) = channel.strip_prefix(backplane::ROOM_PREFIX) {
            self.tell_room(room, kind, who, count);
        }
    }

    /// The backplane's link came back: the presence store announces the count of each
    /// room with local members, which may have changed without this hub hearing of it.
    pub(crate) fn recount(&self) {
        let (Some(store), Some(_)) = (self.presence_store(), &self.on_presence) else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let recounts: Vec<_> = self
            .read()
            .rooms
            .iter()
            .filter(|(_, r)| !r.members.is_empty())
            .map(|(name, _)| store.recount(&backplane::room_channel(name)))
            .collect();
        runtime.spawn(async move {
            for recount in recounts {
                if let Err(error) = recount.await {
                    tracing::debug!(%error, "room not counted again");
                }
            }
        });
    }

    /// Sends the presence hook's message to the room's local members, without waiting
    /// (a member whose write buffer is full misses it).
    fn tell_room(&self, room: &str, kind: PresenceKind, who: Option<&Present>, count: usize) {
        let Some(on_presence) = &self.on_presence else { return };
        let state = self.read();
        let Some(members) = state.rooms.get(room).map(|r| &r.members) else { return };
        if members.is_empty() {
            return;
        }
        let Some(message) = on_presence(&PresenceEvent { room, kind, who, count }) else { return };
        for subscriber in members.iter().filter_map(|id| state.members.get(id)) {
            if subscriber.conn.feed_prepared(&message).is_ok() {
                subscriber.conn.flush_queued();
            }
        }
    }

    /// Who is in `room`: every hub's members with a presence store, this hub's without.
    async fn present_in(&self, room: &str) -> Result<Vec<Present>, HubError> {
        if let Some(store) = self.presence_store() {
            return store.list(&backplane::room_channel(room)).await;
        }
        let state = self.read();
        let members =
            state.rooms.get(room).map(|r| r.members.iter().filter_map(|id| state.members.get(id)).map(|s| self.present(s)).collect());
        Ok(members.unwrap_or_default())
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
    bounds: Bounds,
    idle_rooms: usize,
    idle_bytes: usize,
    envelope: Option<Box<Envelope>>,
    presence_ttl: Duration,
    on_presence: Option<Box<OnPresence>>,
    on_connect: Option<Box<ConnectHook>>,
    on_join: Option<Box<JoinHook>>,
    on_publish: Option<Box<PublishHook>>,
    policy: SlowPolicy,
    backplane: Option<Box<dyn Backplane>>,
}

impl fmt::Debug for HubBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubBuilder")
            .field("capacity", &self.bounds.capacity)
            .field("max_ring_bytes", &self.bounds.max_bytes)
            .field("history_ttl", &self.bounds.ttl)
            .field("idle_rooms", &self.idle_rooms)
            .field("idle_bytes", &self.idle_bytes)
            .field("envelope", &self.envelope.is_some())
            .field("presence_ttl", &self.presence_ttl)
            .field("on_presence", &self.on_presence.is_some())
            .field("on_connect", &self.on_connect.is_some())
            .field("on_join", &self.on_join.is_some())
            .field("on_publish", &self.on_publish.is_some())
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
        self.bounds.capacity = capacity.max(1).next_power_of_two();
        self
    }

    /// The most bytes of broadcasts each room's ring keeps alive (default 4 MiB; a
    /// broadcast costs its encoded frame and its message). Past it the oldest go, whatever
    /// the ring's capacity in broadcasts, and a member that had not taken them has fallen
    /// behind ([`SlowPolicy`]). The newest broadcast is kept whatever its size. At least
    /// 1.
    pub fn max_ring_bytes(mut self, bytes: usize) -> Self {
        self.bounds.max_bytes = bytes.max(1);
        self
    }

    /// How long a publication stays in its room's history (default 5 minutes): a member
    /// coming back later than that from its last position is told
    /// [`Recovery::Reset`]. A room left without members is kept as long as its newest
    /// publication is, for those coming back to it (at most
    /// [`idle_rooms`](Self::idle_rooms) such rooms).
    pub fn history_ttl(mut self, ttl: Duration) -> Self {
        self.bounds.ttl = ttl;
        self
    }

    /// The most rooms without members kept for their history (default 1,024); past it
    /// the rooms left longest ago go first. 0 lets a room go as soon as its last member
    /// leaves.
    pub fn idle_rooms(mut self, rooms: usize) -> Self {
        self.idle_rooms = rooms;
        self
    }

    /// The most bytes of history kept by rooms without members, all together (default
    /// 64 MiB); past it the rooms left longest ago go first. Each room's own bound
    /// ([`max_ring_bytes`](Self::max_ring_bytes)) still applies.
    pub fn idle_bytes(mut self, bytes: usize) -> Self {
        self.idle_bytes = bytes;
        self
    }

    /// Makes the message members are sent from each publication, to put its position
    /// (and the room) in it: clients keep the last position they saw and hand it back
    /// when they reconnect ([`Member::join_from`]). Called once per publication, whatever
    /// the number of members. Without an envelope members are sent what was published.
    ///
    /// ```
    /// use wsdriver::hub::{Hub, Publication};
    /// use wsdriver::PreparedMessage;
    /// let hub = Hub::builder()
    ///     .envelope(|p: &Publication<'_>| {
    ///         let text = p.message.as_text().unwrap_or_default();
    ///         PreparedMessage::text(format!("{} {text}", p.position))
    ///     })
    ///     .build();
    /// ```
    pub fn envelope(mut self, envelope: impl Fn(&Publication<'_>) -> PreparedMessage + Send + Sync + 'static) -> Self {
        self.envelope = Some(Box::new(envelope));
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

    /// How long a member's presence entry lasts without being refreshed (default 30 s):
    /// with a backplane that keeps presence, each hub refreshes its members' entries
    /// three times per time to live, so the members of a hub that died (or lost its
    /// backplane) leave every room's presence within it, plus a third of it, and a leave
    /// is announced for each.
    pub fn presence_ttl(mut self, ttl: Duration) -> Self {
        self.presence_ttl = ttl.max(Duration::from_millis(30));
        self
    }

    /// Makes the message a room's members are sent when someone joins or leaves it (or
    /// its hub died), with the room's count across every hub: `None` sends nothing.
    /// Without a hook, joins and leaves are not announced. The message goes straight to
    /// each local member's connection, outside the room's stream (no position, no
    /// history), and a member whose write buffer is full misses it.
    ///
    /// With a backplane that keeps presence, a hub whose link to it dropped has missed
    /// the announcements made meanwhile: once it is back, each of its rooms is counted
    /// again and announced as a [`PresenceKind::Recount`], with no `who`, so that members
    /// showing a count show the right one.
    ///
    /// ```
    /// use wsdriver::hub::{Hub, PresenceEvent, PresenceKind};
    /// use wsdriver::PreparedMessage;
    /// let hub = Hub::builder()
    ///     .on_presence(|event: &PresenceEvent<'_>| {
    ///         let count = event.count;
    ///         let text = match (event.kind, event.who) {
    ///             (PresenceKind::Join, Some(who)) => format!("{} joined; {count} here", String::from_utf8_lossy(&who.info)),
    ///             (PresenceKind::Leave, Some(who)) => format!("{} left; {count} here", String::from_utf8_lossy(&who.info)),
    ///             _ => format!("{count} here"),
    ///         };
    ///         Some(PreparedMessage::text(text))
    ///     })
    ///     .build();
    /// ```
    pub fn on_presence(mut self, hook: impl Fn(&PresenceEvent<'_>) -> Option<PreparedMessage> + Send + Sync + 'static) -> Self {
        self.on_presence = Some(Box::new(hook));
        self
    }

    /// Decides who may connect, from the upgrade request ([`Hub::connect`]): a cookie, an
    /// `Authorization` header, a token in the URI or in `Sec-WebSocket-Protocol`. It
    /// returns what the member says about itself (a user id, a name:
    /// [`Member::set_info`]), or a [`Refusal`], which closes the connection if it carries
    /// a code.
    ///
    /// ```
    /// use wsdriver::hub::{ConnectRequest, Hub, Refusal};
    /// use wsdriver::CloseCode;
    /// let hub = Hub::builder()
    ///     .on_connect(|request: ConnectRequest| async move {
    ///         let token = request.headers.get("authorization").and_then(|v| v.to_str().ok());
    ///         match token.and_then(|t| t.strip_prefix("Bearer ")) {
    ///             Some(user) if !user.is_empty() => Ok(user.to_owned().into()),
    ///             _ => Err(Refusal::close(CloseCode::from(4001), "unauthorized")),
    ///         }
    ///     })
    ///     .build();
    /// ```
    pub fn on_connect<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(ConnectRequest) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Bytes, Refusal>> + Send + 'static,
    {
        self.on_connect = Some(hooks::boxed(hook));
        self
    }

    /// Decides whether a member may join a room, when it asks to
    /// ([`Member::join_from`]; [`Member::join`] is the server's own decision and asks no
    /// one). A [`Refusal`] keeps it out (and closes its connection if it carries a code).
    pub fn on_join<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(JoinRequest) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), Refusal>> + Send + 'static,
    {
        self.on_join = Some(hooks::boxed(hook));
        self
    }

    /// Validates or rewrites what a member publishes ([`Member::publish`],
    /// [`Member::publish_others`], [`Member::publish_once`]; the hub's own publications,
    /// and the members' `broadcast` calls, which do not wait, are not asked about): the
    /// message it returns is published instead, a [`Refusal`] publishes nothing (and
    /// closes the connection if it carries a code).
    ///
    /// ```
    /// use wsdriver::hub::{Hub, PublishRequest, Refusal};
    /// use wsdriver::Message;
    /// let hub = Hub::builder()
    ///     .on_publish(|request: PublishRequest| async move {
    ///         match request.message.as_text() {
    ///             Some(text) if text.len() <= 2000 => Ok(Message::text(text.trim())),
    ///             _ => Err(Refusal::error("text of 2000 bytes at most")),
    ///         }
    ///     })
    ///     .build();
    /// ```
    pub fn on_publish<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(PublishRequest) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Message, Refusal>> + Send + 'static,
    {
        self.on_publish = Some(hooks::boxed(hook));
        self
    }

    /// Builds the hub and starts its backplane (with one, call it inside a Tokio
    /// runtime: tasks keep the backplane's connections and the hub's presence entries).
    pub fn build(self) -> Hub {
        let presence = self.backplane.as_deref().is_some_and(|b| b.presence().is_some());
        let (presence_ops, ops) = if presence {
            let (tx, rx) = mpsc::channel(PRESENCE_QUEUE);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let inner = Arc::new_cyclic(|this| Inner {
            this: this.clone(),
            node: rand::random(),
            next_id: AtomicU64::new(1),
            bounds: self.bounds,
            idle_rooms: self.idle_rooms,
            idle_bytes: self.idle_bytes,
            envelope: self.envelope,
            policy: self.policy,
            state: RwLock::default(),
            everyone: Arc::new(Ring::new(self.bounds)),
            everyone_on: AtomicBool::new(false),
            backplane: self.backplane,
            recovered: AtomicU64::new(0),
            presence_ttl: self.presence_ttl,
            on_presence: self.on_presence,
            on_connect: self.on_connect,
            on_join: self.on_join,
            on_publish: self.on_publish,
            presence_ops,
        });
        if let Some(ops) = ops {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn(keep_presence(Arc::downgrade(&inner), ops, inner.presence_ttl))),
                Err(_) => tracing::error!("the hub keeps presence with a task, and needs a tokio runtime; presence is not kept"),
            }
        }
        if let Some(backplane) = &inner.backplane {
            let bounds = HistoryBounds { count: inner.bounds.capacity, bytes: inner.bounds.max_bytes, ttl: inner.bounds.ttl };
            backplane.start(Inbox { hub: Arc::downgrade(&inner), bounds });
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

    /// What this member says about itself in rooms' presence ([`Hub::presence`], the
    /// [presence hook](HubBuilder::on_presence)): a user name, an id, some JSON. Set it
    /// before joining; rooms joined earlier show it from their next refresh.
    pub fn set_info(&self, info: impl Into<Bytes>) {
        *self.subscriber.info.lock().unwrap_or_else(|e| e.into_inner()) = info.into();
    }

    /// Joins `room` (nothing happens if already in it): the member receives what is
    /// published from now on.
    ///
    /// # Panics
    /// Outside a Tokio runtime: a task moves the room's broadcasts into this member's
    /// connection.
    pub fn join(&self, room: &str) {
        let mut rooms = self.lock_rooms();
        if !rooms.contains_key(room) {
            let (pump, _) = self.hub.inner.join(room, &self.subscriber, None);
            rooms.insert(room.into(), pump);
        }
    }

    /// Joins `room` from `since`, the last position the client saw: every publication
    /// after it still in the room's history is queued for the member, in order, before
    /// any live one, and none twice. [`Recovery::Reset`] says the history no longer
    /// reaches back that far (or `since` is of another epoch): the member receives what
    /// is published from now on, and the client has to resynchronise. A client joining
    /// for the first time passes `Position::default()`, which always resets, and learns
    /// the room's position from the answer.
    ///
    /// Leaves the room first if the member is in it, so that the replay starts afresh.
    ///
    /// ```
    /// use wsdriver::hub::{Hub, Position, Recovery};
    /// use wsdriver::{Config, Message, Role, WebSocket};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let hub = Hub::new();
    /// let last_seen = hub.publish("news", "one").await?;
    /// hub.publish("news", "two").await?;
    ///
    /// let (a, b) = tokio::io::duplex(1024);
    /// let member = hub.register(WebSocket::from_raw(a, Role::Server, &Config::default()).connection());
    /// let mut client = WebSocket::from_raw(b, Role::Client, &Config::default());
    /// let recovery = member.join_from("news", last_seen).await?;
    /// assert!(matches!(recovery, Recovery::Recovered { replayed: 1, .. }));
    /// assert_eq!(client.recv().await.transpose()?, Some(Message::text("two")));
    /// assert!(!member.join_from("news", Position::default()).await?.is_recovered());
    /// # Ok(()) }
    /// ```
    ///
    /// With a backplane that keeps history (the Redis one), the history is the
    /// backplane's, shared by every hub: a client may come back through any of them.
    ///
    /// # Errors
    /// With a backplane that keeps history, [`HubError::Backplane`] when its history
    /// could not be read (its server is unreachable, or it did not subscribe to the
    /// room's channel within 5 s): the member is not in the room. Never in-process.
    ///
    /// # Panics
    /// Outside a Tokio runtime, as [`Member::join`].
    pub async fn join_from(&self, room: &str, since: Position) -> Result<Recovery, HubError> {
        if let Some(hook) = &self.hub.inner.on_join {
            let request = JoinRequest { who: self.hub.inner.present(&self.subscriber), room: room.to_owned() };
            if let Err(refusal) = hook(request).await {
                return Err(refuse(&self.subscriber.conn, refusal));
            }
        }
        if let Some(pump) = self.lock_rooms().remove(room) {
            pump.stop();
            self.hub.inner.leave(room, self.subscriber.id);
        }
        let inner = &self.hub.inner;
        let (pump, recovery) = match inner.history() {
            Some(_) => inner.join_numbered(room, &self.subscriber, since).await?,
            None => inner.join(room, &self.subscriber, Some(since)),
        };
        if let Some(previous) = self.lock_rooms().insert(room.into(), pump) {
            // Joined again meanwhile, through another call: one pump per room.
            previous.stop();
        }
        Ok(recovery)
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
        self.hub.inner.publish(Some(room), &message.into(), Some(self.subscriber.id), None).0
    }

    /// Sends `message` to every member of `room`, this one included, and returns its
    /// position, as [`Hub::publish`] does.
    ///
    /// # Errors
    /// As [`Hub::publish`].
    pub async fn publish(&self, room: &str, message: impl Into<PreparedMessage>) -> Result<Position, HubError> {
        self.publish_checked(room, message.into(), None, None).await
    }

    /// Publishes `message` to `room` once under `key`, as [`Hub::publish_once`] does.
    ///
    /// # Errors
    /// As [`Member::publish`].
    pub async fn publish_once(&self, room: &str, key: &str, message: impl Into<PreparedMessage>) -> Result<Position, HubError> {
        self.publish_checked(room, message.into(), None, Some(key)).await
    }

    /// Publishes what the [publish hook](HubBuilder::on_publish) makes of `message`.
    async fn publish_checked(
        &self,
        room: &str,
        message: PreparedMessage,
        except: Option<u64>,
        key: Option<&str>,
    ) -> Result<Position, HubError> {
        let message = self.checked(room, message).await?;
        self.hub.inner.publish(Some(room), &message, except, key).1.position().await
    }

    /// What the [publish hook](HubBuilder::on_publish) makes of `message`.
    async fn checked(&self, room: &str, message: PreparedMessage) -> Result<PreparedMessage, HubError> {
        let Some(hook) = &self.hub.inner.on_publish else { return Ok(message) };
        let request =
            PublishRequest { who: self.hub.inner.present(&self.subscriber), room: room.to_owned(), message: message.message().clone() };
        match hook(request).await {
            Ok(rewritten) if &rewritten == message.message() => Ok(message),
            Ok(Message::Text(text)) => Ok(PreparedMessage::text(text)),
            Ok(Message::Binary(data)) => Ok(PreparedMessage::binary(data)),
            Ok(_) => {
                Err(HubError::Refused(Refusal::error("the publish hook returned a control frame: only text and binary are published")))
            }
            Err(refusal) => Err(refuse(&self.subscriber.conn, refusal)),
        }
    }

    /// Sends `message` to every other member of `room`, not to this one, and returns its
    /// position.
    ///
    /// # Errors
    /// As [`Hub::publish`].
    pub async fn publish_others(&self, room: &str, message: impl Into<PreparedMessage>) -> Result<Position, HubError> {
        self.publish_checked(room, message.into(), Some(self.subscriber.id), None).await
    }

    /// Sends `message` to every member, this one included, on every hub.
    pub fn broadcast_all(&self, message: impl Into<PreparedMessage>) -> usize {
        self.hub.broadcast_all(message)
    }

    /// Sends `message` to every other member, on every hub: not to this one.
    pub fn broadcast_all_others(&self, message: impl Into<PreparedMessage>) -> usize {
        self.hub.inner.publish(None, &message.into(), Some(self.subscriber.id), None).0
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
