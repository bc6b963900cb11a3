//! The Redis backplane: hubs in several processes share rooms, and their history,
//! through one Redis.

use crate::backplane::{Backplane, BoxFuture, History, HistoryBounds, Inbox, PresenceStore, Replay};
use crate::link::{Link, Outbox, link_methods};
use crate::ring::new_epoch;
use crate::{HubError, Position, PresenceKind, Present};
use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink};
use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Broadcasts waiting for the Redis connection; more are dropped (and counted).
const PUBLISH_QUEUE: usize = 16 << 10;
/// Bytes of broadcasts waiting for (or being written to) the Redis connection, by default;
/// more are dropped (and counted).
const MAX_QUEUED_BYTES: usize = 16 << 20;
/// Broadcasts sent to Redis in one pipelined round trip, at most.
const MAX_PIPELINE: usize = 256;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long a room's position (its epoch and last offset) outlives its last publication,
/// at least: a client that comes back within it, having missed nothing, recovers.
const META_TTL: Duration = Duration::from_secs(24 * 3600);
/// The most bytes of envelopes one read of history returns, past the first.
const PAGE_BYTES: usize = 1 << 20;

/// The time on the Redis server, in milliseconds: every process measures expiry by it.
const NOW: &str = r"
local function now_ms()
  local now = redis.call('time')
  return tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
end
";

/// Adds or refreshes a presence entry. KEYS: the room's sorted set (member → expiry)
/// and hash (member → info). ARGV: member, info, ttl ms, channel. A member that was not
/// there, or whose entry had expired (not yet swept, and left out of every count since),
/// is announced on the channel: `+COUNT MEMBER\nINFO`.
const PRESENCE_JOIN: &str = r"
local now = now_ms()
local before = redis.call('zscore', KEYS[1], ARGV[1])
local added = redis.call('zadd', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
if before and tonumber(before) <= now then
  added = 1
end
redis.call('hset', KEYS[2], ARGV[1], ARGV[2])
redis.call('pexpire', KEYS[1], 2 * tonumber(ARGV[3]))
redis.call('pexpire', KEYS[2], 2 * tonumber(ARGV[3]))
if added == 1 then
  local count = redis.call('zcount', KEYS[1], now, '+inf')
  redis.call('publish', ARGV[4], '+' .. count .. ' ' .. ARGV[1] .. '\n' .. ARGV[2])
end
";

/// Removes presence entries, announcing each (`-COUNT MEMBER\nINFO`). KEYS: as above.
/// ARGV: channel, then the members to remove, or none to remove those that expired.
const PRESENCE_LEAVE: &str = r"
local now = now_ms()
local members = {}
for i = 2, #ARGV do
  members[#members + 1] = ARGV[i]
end
if #ARGV == 1 then
  members = redis.call('zrangebyscore', KEYS[1], '-inf', now)
end
for _, member in ipairs(members) do
  if redis.call('zrem', KEYS[1], member) == 1 then
    local info = redis.call('hget', KEYS[2], member) or ''
    redis.call('hdel', KEYS[2], member)
    local count = redis.call('zcount', KEYS[1], now, '+inf')
    redis.call('publish', ARGV[1], '-' .. count .. ' ' .. member .. '\n' .. info)
  end
end
";

/// Who is in a room: `{member, info, member, info, ...}`; with ARGV[1] = 'count', how
/// many; with ARGV[1] = 'recount', announces how many on the channel ARGV[2]: `=COUNT`.
/// KEYS: as above.
const PRESENCE_LIST: &str = r"
local now = now_ms()
if ARGV[1] == 'count' then
  return redis.call('zcount', KEYS[1], now, '+inf')
elseif ARGV[1] == 'recount' then
  redis.call('publish', ARGV[2], '=' .. redis.call('zcount', KEYS[1], now, '+inf'))
  return 0
end
local out = {}
for _, member in ipairs(redis.call('zrangebyscore', KEYS[1], now, '+inf')) do
  out[#out + 1] = member
  out[#out + 1] = redis.call('hget', KEYS[2], member) or ''
end
return out
";

/// Lets go of a stream's oldest entries past its bounds: count, bytes (the newest is kept
/// whatever its size) and age. Entries are `d` (the envelope) and `t` (milliseconds).
const TRIM: &str = r"
local function trim(stream, meta, max_count, max_bytes, oldest_ms)
  local bytes = tonumber(redis.call('hget', meta, 'bytes')) or 0
  local count = redis.call('xlen', stream)
  while count > 0 do
    local first = redis.call('xrange', stream, '-', '+', 'COUNT', 1)[1]
    local size = #first[2][2]
    if count <= max_count and (bytes <= max_bytes or count == 1) and tonumber(first[2][4]) > oldest_ms then
      break
    end
    redis.call('xdel', stream, first[1])
    bytes = bytes - size
    count = count - 1
  end
  redis.call('hset', meta, 'bytes', bytes)
end

-- The stream's epoch, starting a new stream when its position was lost.
local function epoch_of(stream, meta, new_epoch, meta_ttl)
  local epoch = redis.call('hget', meta, 'epoch')
  if not epoch then
    epoch = new_epoch
    redis.call('del', stream)
    redis.call('hset', meta, 'epoch', epoch, 'offset', 0, 'bytes', 0)
  elseif redis.call('exists', stream) == 0 then
    redis.call('hset', meta, 'bytes', 0)
  end
  redis.call('pexpire', meta, meta_ttl)
  return epoch
end
";

/// Numbers, keeps and publishes one envelope, as one step. KEYS: the stream, its meta
/// hash, the key it is published once under (its position is kept there as long as the
/// stream keeps publications; `''` without one). ARGV: envelope, channel, max count, max
/// bytes, ttl ms, a new epoch, meta ttl ms. Returns the position, `OFFSET:EPOCH`.
const APPEND: &str = r"
local stream, meta, once = KEYS[1], KEYS[2], KEYS[3]
if once ~= '' then
  local first = redis.call('get', once)
  if first then
    return first
  end
end
local epoch = epoch_of(stream, meta, ARGV[6], ARGV[7])
local offset = redis.call('hincrby', meta, 'offset', 1)
local now = now_ms()
redis.call('xadd', stream, offset .. '-0', 'd', ARGV[1], 't', now)
redis.call('hincrby', meta, 'bytes', #ARGV[1])
trim(stream, meta, tonumber(ARGV[3]), tonumber(ARGV[4]), now - tonumber(ARGV[5]))
redis.call('pexpire', stream, ARGV[5])
local position = offset .. ':' .. epoch
if once ~= '' then
  redis.call('set', once, position, 'PX', ARGV[5])
end
redis.call('publish', ARGV[2], position .. ' ' .. ARGV[1])
return position
";

/// What a stream holds after a position. KEYS: the stream, its meta hash. ARGV: since
/// offset, since epoch, a new epoch, max count, max bytes, ttl ms, meta ttl ms, the most
/// entries and (past the first) bytes to return. Returns
/// `{offset, epoch}` when it does not reach back, `{offset, epoch, 'replay', envelopes...}`
/// when it does.
const READ: &str = r"
local stream, meta = KEYS[1], KEYS[2]
local epoch = epoch_of(stream, meta, ARGV[3], ARGV[7])
trim(stream, meta, tonumber(ARGV[4]), tonumber(ARGV[5]), now_ms() - tonumber(ARGV[6]))
local offset = tonumber(redis.call('hget', meta, 'offset'))
local since = tonumber(ARGV[1])
if epoch ~= ARGV[2] or since > offset then
  return {offset, epoch}
end
local first = redis.call('xrange', stream, '-', '+', 'COUNT', 1)[1]
local oldest = offset + 1
if first then
  oldest = tonumber(string.match(first[1], '^%d+'))
end
if since + 1 < oldest then
  return {offset, epoch}
end
local out = {offset, epoch, 'replay'}
local limit, budget = tonumber(ARGV[8]), tonumber(ARGV[9])
if limit > 0 then
  for _, entry in ipairs(redis.call('xrange', stream, (since + 1) .. '-0', '+', 'COUNT', limit)) do
    if #out > 3 and budget < #entry[2][2] then
      break
    end
    budget = budget - #entry[2][2]
    out[#out + 1] = entry[2][2]
  end
end
return out
";

/// A [`Backplane`] over Redis (the `redis` feature), with [`History`]: each room is a
/// stream, `{prefix}stream:room:{name}`, and a channel, `{prefix}room:{name}`;
/// broadcasts to all go through `{prefix}stream:all` and `{prefix}all`.
///
/// A publication is numbered, appended to its room's stream (trimmed to the hub's
/// history bounds: count, bytes and age) and published on its channel with its position
/// by one Lua script, so no hub receives a position the stream does not hold, and every
/// hub (the publishing one included) delivers it to its members when it arrives: every
/// member everywhere sees the same sequence. A room's epoch lives in
/// `{prefix}meta:room:{name}`, which outlives the last publication by a day (or the
/// history's age, if longer); if Redis loses it (restarted without persistence), the
/// room starts a new epoch and members coming back are told
/// [`Recovery::Reset`](crate::Recovery::Reset).
///
/// One background task holds two Redis connections, one publishing (publications are
/// pipelined, in order; history is read on it too) and one subscribed to the rooms with
/// local members. When Redis goes away the task reconnects with backoff (50 ms doubling
/// to 2 s) and subscribes again; publishing meanwhile fails
/// ([`Hub::publish`](crate::Hub::publish) says so), and members notice the publications
/// their hub did not receive from the gap in positions and recover them from the stream.
/// While connected, publications wait for the publishing connection in a queue bounded by
/// count (16,384) and by bytes ([`RedisBackplane::max_queued_bytes`], 16 MiB by default):
/// a Redis too slow to keep up costs no more than that, and what does not fit is dropped
/// and counted ([`RedisBackplane::dropped`]).
///
/// ```no_run
/// use wsdriver::hub::{Hub, RedisBackplane};
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let hub = Hub::builder().backplane(RedisBackplane::new("redis://127.0.0.1:6379/")?).build();
/// hub.broadcast("lobby", "reaches every process sharing this Redis");
/// # Ok(()) }
/// ```
///
/// Cloning gives another handle on the same backplane, to watch it
/// ([`RedisBackplane::connected`]) after handing it to the hub.
#[derive(Clone)]
pub struct RedisBackplane {
    shared: Arc<Shared>,
}

/// A publication waiting for the publishing connection, and who waits for its position.
struct Queued {
    /// The room's channel, without the prefix.
    channel: String,
    envelope: Bytes,
    /// The key it is published once under, if any.
    key: Option<String>,
    reply: Option<oneshot::Sender<Result<Position, HubError>>>,
}

struct Shared {
    outbox: Outbox<Queued>,
    client: redis::Client,
    prefix: String,
    /// The channels the hub wants (the task subscribes to exactly these), whether it
    /// is connected, and what was dropped.
    link: Link,
    /// Bytes of the broadcasts queued or being published, and their bound.
    /// The hub's history bounds, once it started the backplane.
    bounds: OnceLock<HistoryBounds>,
    /// The publishing connection while connected, for history reads and presence.
    connection: Mutex<Option<MultiplexedConnection>>,
    append: redis::Script,
    read: redis::Script,
    presence_join: redis::Script,
    presence_leave: redis::Script,
    presence_list: redis::Script,
}

impl Shared {
    /// The bytes a queued publication holds.
    fn cost(queued: &Queued) -> usize {
        queued.channel.len() + queued.envelope.len() + queued.key.as_ref().map_or(0, String::len)
    }

    fn key(&self, kind: &str, channel: &str) -> String {
        format!("{}{kind}:{channel}", self.prefix)
    }

    /// The Redis channel of a hub channel.
    fn channel(&self, channel: &str) -> String {
        format!("{}{channel}", self.prefix)
    }

    fn bounds(&self) -> HistoryBounds {
        self.bounds.get().copied().unwrap_or(HistoryBounds { count: 128, bytes: 4 << 20, ttl: Duration::from_secs(300) })
    }

    /// A publication that will not be made: counted, and its waiter told.
    fn refuse(&self, queued: Queued, why: &str) {
        self.link.count_dropped(1);
        if let Some(reply) = queued.reply {
            let _ = reply.send(Err(backplane_error(why)));
        }
    }
}

impl fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("prefix", &self.shared.prefix)
            .field("connected", &self.is_connected())
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl RedisBackplane {
    /// A backplane on the Redis at `url` (`redis://host:port/db`), with the channel
    /// prefix `wsdriver:`. Nothing connects until the hub starts it.
    pub fn new(url: &str) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        Ok(Self {
            shared: Arc::new(Shared {
                outbox: Outbox::new(PUBLISH_QUEUE, MAX_QUEUED_BYTES),
                client,
                prefix: "wsdriver:".to_owned(),
                link: Link::new(),
                bounds: OnceLock::new(),
                connection: Mutex::new(None),
                append: redis::Script::new(&format!("{NOW}{TRIM}{APPEND}")),
                read: redis::Script::new(&format!("{NOW}{TRIM}{READ}")),
                presence_join: redis::Script::new(&format!("{NOW}{PRESENCE_JOIN}")),
                presence_leave: redis::Script::new(&format!("{NOW}{PRESENCE_LEAVE}")),
                presence_list: redis::Script::new(&format!("{NOW}{PRESENCE_LIST}")),
            }),
        })
    }

    /// Sets the channel prefix, to keep several applications apart on one Redis. Call it
    /// before cloning the backplane.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.prefix = prefix.into();
        }
        self
    }

    /// Sets the most bytes of broadcasts waiting to be published (default 16 MiB); past
    /// it broadcasts are dropped and counted. Call it before cloning the backplane.
    pub fn max_queued_bytes(mut self, bytes: usize) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.outbox.max_bytes = bytes;
        }
        self
    }

    link_methods!("Redis");
}

/// A [`HubError`] saying why the backplane could not do something.
fn backplane_error(why: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> HubError {
    HubError::Backplane(why.into())
}

impl RedisBackplane {
    /// Queues a publication for the publishing connection, in call order.
    fn enqueue(&self, channel: &str, envelope: Bytes, key: Option<&str>, reply: Option<oneshot::Sender<Result<Position, HubError>>>) {
        let shared = &self.shared;
        let queued = Queued { channel: channel.to_owned(), envelope, key: key.map(str::to_owned), reply };
        if !self.is_connected() {
            return shared.refuse(queued, "not connected to Redis");
        }
        let cost = Shared::cost(&queued);
        if let Err((queued, why)) = shared.outbox.push(queued, cost) {
            shared.refuse(queued, why);
        }
    }
}

impl History for RedisBackplane {
    fn append(&self, channel: &str, envelope: Bytes, key: Option<&str>) -> BoxFuture<Result<Position, HubError>> {
        let (reply, position) = oneshot::channel();
        self.enqueue(channel, envelope, key, Some(reply));
        Box::pin(async move { position.await.unwrap_or_else(|_| Err(backplane_error("the backplane is shut down"))) })
    }

    fn read(&self, channel: &str, since: Position, limit: usize) -> BoxFuture<Result<Replay, HubError>> {
        let shared = self.shared.clone();
        let channel = channel.to_owned();
        Box::pin(async move {
            let Some(mut connection) = shared.connection.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
                return Err(backplane_error("not connected to Redis"));
            };
            let bounds = shared.bounds();
            let reply: Vec<redis::Value> = shared
                .read
                .key(shared.key("stream", &channel))
                .key(shared.key("meta", &channel))
                .arg(since.offset)
                .arg(format!("{:x}", since.epoch))
                .arg(format!("{:x}", new_epoch()))
                .arg(bounds.count)
                .arg(bounds.bytes)
                .arg(millis(bounds.ttl))
                .arg(millis(META_TTL.max(bounds.ttl)))
                .arg(limit)
                .arg(PAGE_BYTES)
                .invoke_async(&mut connection)
                .await
                .map_err(backplane_error)?;
            parse_replay(reply).ok_or_else(|| backplane_error("unexpected answer from the history script"))
        })
    }
}

impl RedisBackplane {
    /// Runs `script` on the connection with a room's presence keys, `args` after them.
    fn presence_script<T: redis::FromRedisValue + Send + 'static>(
        &self,
        script: fn(&Shared) -> &redis::Script,
        channel: &str,
        args: Vec<Vec<u8>>,
    ) -> BoxFuture<Result<T, HubError>> {
        let shared = self.shared.clone();
        let keys = [shared.key("presence", channel), shared.key("presence-info", channel)];
        Box::pin(async move {
            let Some(mut connection) = shared.connection.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
                return Err(backplane_error("not connected to Redis"));
            };
            let mut invocation = script(&shared).key(&keys[0]);
            invocation.key(&keys[1]);
            for arg in &args {
                invocation.arg(&arg[..]);
            }
            invocation.invoke_async(&mut connection).await.map_err(backplane_error)
        })
    }
}

impl PresenceStore for RedisBackplane {
    fn join(&self, channel: &str, member: &str, info: Bytes, ttl: Duration) -> BoxFuture<Result<(), HubError>> {
        let args = vec![
            member.as_bytes().to_vec(),
            info.to_vec(),
            millis(ttl).to_string().into_bytes(),
            self.shared.channel(channel).into_bytes(),
        ];
        self.presence_script(|s| &s.presence_join, channel, args)
    }

    fn leave(&self, channel: &str, member: &str) -> BoxFuture<Result<(), HubError>> {
        self.presence_script(|s| &s.presence_leave, channel, vec![self.shared.channel(channel).into_bytes(), member.as_bytes().to_vec()])
    }

    fn sweep(&self, channel: &str) -> BoxFuture<Result<(), HubError>> {
        self.presence_script(|s| &s.presence_leave, channel, vec![self.shared.channel(channel).into_bytes()])
    }

    fn list(&self, channel: &str) -> BoxFuture<Result<Vec<Present>, HubError>> {
        let list = self.presence_script::<Vec<Vec<u8>>>(|s| &s.presence_list, channel, vec![b"list".to_vec()]);
        Box::pin(async move {
            let flat = list.await?;
            Ok(flat
                .chunks_exact(2)
                .map(|pair| Present { member: String::from_utf8_lossy(&pair[0]).into_owned(), info: Bytes::copy_from_slice(&pair[1]) })
                .collect())
        })
    }

    fn count(&self, channel: &str) -> BoxFuture<Result<usize, HubError>> {
        self.presence_script(|s| &s.presence_list, channel, vec![b"count".to_vec()])
    }

    fn recount(&self, channel: &str) -> BoxFuture<Result<(), HubError>> {
        let args = vec![b"recount".to_vec(), self.shared.channel(channel).into_bytes()];
        let recount = self.presence_script::<usize>(|s| &s.presence_list, channel, args);
        Box::pin(async move { recount.await.map(drop) })
    }
}

/// A presence announcement: `+COUNT MEMBER\nINFO` (a join), `-COUNT MEMBER\nINFO` (a
/// leave) or `=COUNT` (a recount, with no member).
fn parse_presence(payload: &[u8]) -> Option<(PresenceKind, Option<Present>, usize)> {
    let kind = match payload.first()? {
        b'+' => PresenceKind::Join,
        b'-' => PresenceKind::Leave,
        b'=' => return Some((PresenceKind::Recount, None, std::str::from_utf8(&payload[1..]).ok()?.parse().ok()?)),
        _ => return None,
    };
    let space = payload.iter().position(|b| *b == b' ')?;
    let newline = payload.iter().position(|b| *b == b'\n')?;
    let count = std::str::from_utf8(payload.get(1..space)?).ok()?.parse().ok()?;
    let member = std::str::from_utf8(payload.get(space + 1..newline)?).ok()?.to_owned();
    Some((kind, Some(Present { member, info: Bytes::copy_from_slice(&payload[newline + 1..]) }), count))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The read script's answer: `{offset, epoch}` or `{offset, epoch, 'replay', envelopes...}`.
fn parse_replay(reply: Vec<redis::Value>) -> Option<Replay> {
    let mut items = reply.into_iter();
    let offset: u64 = redis::from_redis_value(items.next()?).ok()?;
    let epoch: String = redis::from_redis_value(items.next()?).ok()?;
    let position = Position { offset, epoch: u64::from_str_radix(&epoch, 16).ok()? };
    let envelopes = match items.next() {
        None => None,
        Some(_replay) => {
            Some(items.map(|item| redis::from_redis_value::<Vec<u8>>(item).ok().map(Bytes::from)).collect::<Option<Vec<_>>>()?)
        }
    };
    Some(Replay::new(position, envelopes))
}

/// A publication as the append script sends it: `OFFSET:EPOCH ` and the envelope.
fn parse_published(payload: &[u8]) -> Option<(Position, &[u8])> {
    let space = payload.iter().position(|b| *b == b' ')?;
    let position = std::str::from_utf8(&payload[..space]).ok()?.parse().ok()?;
    Some((position, &payload[space + 1..]))
}

impl Backplane for RedisBackplane {
    fn start(&self, inbox: Inbox) {
        let _ = self.shared.bounds.set(inbox.history_bounds());
        let Some(queued) = self.shared.outbox.take_receiver() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(run(self.shared.clone(), queued, inbox));
            }
            Err(_) => tracing::error!("the redis backplane needs a tokio runtime; broadcasts stay local"),
        }
    }

    fn publish(&self, channel: &str, envelope: Bytes) {
        self.enqueue(channel, envelope, None, None);
    }

    fn ready(&self) -> BoxFuture<()> {
        let backplane = self.clone();
        Box::pin(async move { backplane.connected().await })
    }

    fn history(&self) -> Option<&dyn History> {
        Some(self)
    }

    fn presence(&self) -> Option<&dyn PresenceStore> {
        Some(self)
    }

    fn subscribe(&self, channel: &str) {
        self.shared.link.want(self.shared.channel(channel), true);
    }

    fn unsubscribe(&self, channel: &str) {
        self.shared.link.want(self.shared.channel(channel), false);
    }

    fn shutdown(&self) {
        self.shared.link.shut();
    }
}

/// Keeps a session with Redis up until shutdown.
async fn run(shared: Arc<Shared>, mut queued: mpsc::Receiver<Queued>, inbox: Inbox) {
    let mut backoff = MIN_BACKOFF;
    while !shared.link.is_shut() {
        match session(&shared, &mut queued, &inbox, &mut backoff).await {
            Ok(()) => break,
            Err(error) => tracing::warn!(%error, retry_in = ?backoff, "redis backplane disconnected"),
        }
        shared.link.down();
        *shared.connection.lock().unwrap_or_else(|e| e.into_inner()) = None;
        // Wait before retrying; broadcasts published meanwhile are dropped, not hoarded.
        let retry = tokio::time::sleep(backoff);
        tokio::pin!(retry);
        loop {
            tokio::select! {
                () = &mut retry => break,
                () = shared.link.changed() => if shared.link.is_shut() { return },
                next = queued.recv() => match next {
                    Some(item) => {
                        shared.outbox.release(Shared::cost(&item));
                        shared.refuse(item, "not connected to Redis");
                    }
                    None => return,
                },
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    shared.link.down();
    *shared.connection.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// One connected session: returns `Ok` on shutdown, the error that ended it otherwise.
async fn session(shared: &Shared, queued: &mut mpsc::Receiver<Queued>, inbox: &Inbox, backoff: &mut Duration) -> redis::RedisResult<()> {
    // A Redis busy for a moment is not a lost one: only a broken connection (or 10 s
    // without an answer) ends the session and its subscriptions.
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(Duration::from_secs(10)));
    let mut publisher = shared.client.get_multiplexed_async_connection_with_config(&config).await?;
    // Publications are pipelined by hash: the script must be known to this Redis.
    shared.append.load_async(&mut publisher).await?;
    let pubsub = tokio::time::timeout(CONNECT_TIMEOUT, shared.client.get_async_pubsub())
        .await
        .map_err(|_| redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??;
    let (mut sink, mut stream) = pubsub.split();
    let mut subscribed = HashSet::new();
    *shared.connection.lock().unwrap_or_else(|e| e.into_inner()) = Some(publisher.clone());
    reconcile(shared, &mut sink, &mut subscribed).await?;
    *backoff = MIN_BACKOFF;
    tracing::info!(channels = subscribed.len(), "redis backplane connected");
    // What was published while no subscription was up is in the streams.
    inbox.reconnected();
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else {
                    return Err(redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset)));
                };
                let Some(channel) = message.get_channel_name().strip_prefix(shared.prefix.as_str()) else { continue };
                let payload = message.get_payload_bytes();
                if let Some((kind, who, count)) = parse_presence(payload) {
                    match who {
                        Some(who) => inbox.presence(channel, kind, &who, count),
                        None => inbox.counted(channel, count),
                    }
                } else if let Some((position, envelope)) = parse_published(payload) {
                    inbox.deliver_at(channel, position, envelope);
                } else {
                    tracing::warn!(channel, "a message that is neither a publication nor a presence change ignored");
                }
            }
            next = queued.recv() => {
                let Some(first) = next else { return Ok(()) };
                publish_batch(shared, &mut publisher, first, queued).await?;
            }
            () = shared.link.changed() => {
                if shared.link.is_shut() {
                    return Ok(());
                }
                reconcile(shared, &mut sink, &mut subscribed).await?;
            }
        }
    }
}

/// Appends `first` and whatever else is queued, in order, in one round trip, and tells
/// each waiter its position.
async fn publish_batch(
    shared: &Shared,
    publisher: &mut MultiplexedConnection,
    first: Queued,
    queued: &mut mpsc::Receiver<Queued>,
) -> redis::RedisResult<()> {
    let bounds = shared.bounds();
    let (ttl, meta_ttl) = (millis(bounds.ttl), millis(META_TTL.max(bounds.ttl)));
    let mut pipe = redis::pipe();
    let mut replies = Vec::new();
    let mut next = Some(first);
    let mut bytes = 0;
    while let Some(item) = next {
        bytes += Shared::cost(&item);
        pipe.cmd("EVALSHA")
            .arg(shared.append.get_hash())
            .arg(3)
            .arg(shared.key("stream", &item.channel))
            .arg(shared.key("meta", &item.channel))
            .arg(item.key.as_ref().map_or_else(String::new, |key| shared.key("once", &format!("{}:{key}", item.channel))))
            .arg(&item.envelope[..])
            .arg(shared.channel(&item.channel))
            .arg(bounds.count)
            .arg(bounds.bytes)
            .arg(ttl)
            .arg(format!("{:x}", new_epoch()))
            .arg(meta_ttl);
        replies.push(item.reply);
        next = if replies.len() < MAX_PIPELINE { queued.try_recv().ok() } else { None };
    }
    let result = pipe.query_async::<Vec<String>>(publisher).await;
    // Counted until written: the pipeline holds a copy meanwhile.
    drop(pipe);
    shared.outbox.release(bytes);
    match result {
        Ok(positions) => {
            for (reply, position) in replies.into_iter().zip(positions) {
                let position = position.parse().map_err(|_| backplane_error(format!("unexpected position {position:?} from Redis")));
                if let Some(reply) = reply {
                    let _ = reply.send(position);
                }
            }
            Ok(())
        }
        Err(error) => {
            shared.link.count_dropped(replies.len() as u64);
            for reply in replies.into_iter().flatten() {
                let _ = reply.send(Err(backplane_error(error.to_string())));
            }
            Err(error)
        }
    }
}

/// Subscribes to the wanted channels not subscribed yet and unsubscribes from the rest.
async fn reconcile(shared: &Shared, sink: &mut PubSubSink, subscribed: &mut HashSet<String>) -> redis::RedisResult<()> {
    let (wanted, version) = shared.link.wanted();
    let add: Vec<&String> = wanted.difference(subscribed).collect();
    let remove: Vec<&String> = subscribed.difference(&wanted).collect();
    if !add.is_empty() {
        sink.subscribe(&add).await?;
    }
    if !remove.is_empty() {
        sink.unsubscribe(&remove).await?;
    }
    *subscribed = wanted;
    shared.link.up(version);
    Ok(())
}
