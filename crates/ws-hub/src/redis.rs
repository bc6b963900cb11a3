//! The Redis pub/sub backplane: hubs in several processes share rooms through one Redis.

use crate::backplane::{Backplane, Inbox};
use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink};
use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};

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

/// A [`Backplane`] over Redis pub/sub (the `redis` feature): each room is a channel,
/// `{prefix}room:{name}`, and broadcasts to all go on `{prefix}all`.
///
/// One background task holds two Redis connections, one publishing (broadcasts are
/// pipelined, in order) and one subscribed to the rooms with local members. When Redis
/// goes away the task reconnects with backoff (50 ms doubling to 2 s) and subscribes
/// again; what is published meanwhile is dropped, as Redis pub/sub itself is at most once.
/// While connected, broadcasts wait for the publishing connection in a queue bounded by
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

struct Shared {
    publish: mpsc::Sender<(String, Bytes)>,
    queued: Mutex<Option<mpsc::Receiver<(String, Bytes)>>>,
    client: redis::Client,
    prefix: String,
    /// The channels the hub wants, and how many times that set changed; the task
    /// subscribes to exactly these.
    wanted: Mutex<(HashSet<String>, u64)>,
    /// Wakes the task: the wanted set changed, or shutdown.
    changed: Notify,
    shutdown: AtomicBool,
    /// `None` while disconnected; else the version of the wanted set subscribed to.
    connected: watch::Sender<Option<u64>>,
    dropped: AtomicU64,
    /// Bytes of the broadcasts queued or being published, and their bound.
    queued_bytes: AtomicUsize,
    max_queued_bytes: usize,
}

impl Shared {
    /// The bytes a queued broadcast holds.
    fn cost((channel, envelope): &(String, Bytes)) -> usize {
        channel.len() + envelope.len()
    }

    /// Queued broadcasts were published or dropped: their bytes are free.
    fn release(&self, bytes: usize) {
        self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
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
        let (publish, queued) = mpsc::channel(PUBLISH_QUEUE);
        Ok(Self {
            shared: Arc::new(Shared {
                publish,
                queued: Mutex::new(Some(queued)),
                client,
                prefix: "wsdriver:".to_owned(),
                wanted: Mutex::default(),
                changed: Notify::new(),
                shutdown: AtomicBool::new(false),
                connected: watch::Sender::new(None),
                dropped: AtomicU64::new(0),
                queued_bytes: AtomicUsize::new(0),
                max_queued_bytes: MAX_QUEUED_BYTES,
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
            shared.max_queued_bytes = bytes;
        }
        self
    }

    /// Bytes of broadcasts waiting to be published, or being published.
    pub fn queued_bytes(&self) -> usize {
        self.shared.queued_bytes.load(Ordering::Acquire)
    }

    /// Whether both connections to Redis are up.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.borrow().is_some()
    }

    /// Waits until both connections to Redis are up and subscribed to the channels of
    /// every room that has local members now.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only observes.
    pub async fn connected(&self) {
        let version = self.wanted().1;
        let mut rx = self.shared.connected.subscribe();
        let _ = rx.wait_for(|subscribed| subscribed.is_some_and(|v| v >= version)).await;
    }

    /// Waits until the backplane has lost its connection to Redis (it is reconnecting).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only observes.
    pub async fn disconnected(&self) {
        let mut rx = self.shared.connected.subscribe();
        let _ = rx.wait_for(Option::is_none).await;
    }

    /// Broadcasts dropped because Redis was unreachable or too slow.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    fn wanted(&self) -> std::sync::MutexGuard<'_, (HashSet<String>, u64)> {
        self.shared.wanted.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn want(&self, channel: &str, subscribe: bool) {
        let channel = format!("{}{channel}", self.shared.prefix);
        let mut wanted = self.wanted();
        let changed = if subscribe { wanted.0.insert(channel) } else { wanted.0.remove(&channel) };
        if changed {
            wanted.1 += 1;
            drop(wanted);
            self.shared.changed.notify_one();
        }
    }
}

impl Backplane for RedisBackplane {
    fn start(&self, inbox: Inbox) {
        let Some(queued) = self.shared.queued.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(run(self.shared.clone(), queued, inbox));
            }
            Err(_) => tracing::error!("the redis backplane needs a tokio runtime; broadcasts stay local"),
        }
    }

    fn publish(&self, channel: &str, envelope: Bytes) {
        let shared = &self.shared;
        let item = (format!("{}{channel}", shared.prefix), envelope);
        let cost = Shared::cost(&item);
        let fits = shared.queued_bytes.fetch_add(cost, Ordering::AcqRel) + cost <= shared.max_queued_bytes;
        if !fits || !self.is_connected() || shared.publish.try_send(item).is_err() {
            shared.release(cost);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn subscribe(&self, channel: &str) {
        self.want(channel, true);
    }

    fn unsubscribe(&self, channel: &str) {
        self.want(channel, false);
    }

    fn shutdown(&self) {
        self.shared.shutdown.store(true, Ordering::Relaxed);
        self.shared.changed.notify_one();
    }
}

/// Keeps a session with Redis up until shutdown.
async fn run(shared: Arc<Shared>, mut queued: mpsc::Receiver<(String, Bytes)>, inbox: Inbox) {
    let mut backoff = MIN_BACKOFF;
    while !shared.shutdown.load(Ordering::Relaxed) {
        match session(&shared, &mut queued, &inbox, &mut backoff).await {
            Ok(()) => break,
            Err(error) => tracing::warn!(%error, retry_in = ?backoff, "redis backplane disconnected"),
        }
        shared.connected.send_replace(None);
        // Wait before retrying; broadcasts published meanwhile are dropped, not hoarded.
        let retry = tokio::time::sleep(backoff);
        tokio::pin!(retry);
        loop {
            tokio::select! {
                () = &mut retry => break,
                () = shared.changed.notified() => if shared.shutdown.load(Ordering::Relaxed) { return },
                next = queued.recv() => match next {
                    Some(item) => {
                        shared.release(Shared::cost(&item));
                        shared.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    None => return,
                },
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    shared.connected.send_replace(None);
}

/// One connected session: returns `Ok` on shutdown, the error that ended it otherwise.
async fn session(
    shared: &Shared,
    queued: &mut mpsc::Receiver<(String, Bytes)>,
    inbox: &Inbox,
    backoff: &mut Duration,
) -> redis::RedisResult<()> {
    // A Redis busy for a moment is not a lost one: only a broken connection (or 10 s
    // without an answer) ends the session and its subscriptions.
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(Duration::from_secs(10)));
    let mut publisher = shared.client.get_multiplexed_async_connection_with_config(&config).await?;
    let pubsub = tokio::time::timeout(CONNECT_TIMEOUT, shared.client.get_async_pubsub())
        .await
        .map_err(|_| redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??;
    let (mut sink, mut stream) = pubsub.split();
    let mut subscribed = HashSet::new();
    reconcile(shared, &mut sink, &mut subscribed).await?;
    *backoff = MIN_BACKOFF;
    tracing::info!(channels = subscribed.len(), "redis backplane connected");
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else {
                    return Err(redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset)));
                };
                if let Some(channel) = message.get_channel_name().strip_prefix(shared.prefix.as_str()) {
                    inbox.deliver(channel, message.get_payload_bytes());
                }
            }
            next = queued.recv() => {
                let Some(first) = next else { return Ok(()) };
                publish_batch(shared, &mut publisher, first, queued).await?;
            }
            () = shared.changed.notified() => {
                if shared.shutdown.load(Ordering::Relaxed) {
                    return Ok(());
                }
                reconcile(shared, &mut sink, &mut subscribed).await?;
            }
        }
    }
}

/// Publishes `first` and whatever else is queued, in order, in one round trip.
async fn publish_batch(
    shared: &Shared,
    publisher: &mut MultiplexedConnection,
    first: (String, Bytes),
    queued: &mut mpsc::Receiver<(String, Bytes)>,
) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    let mut next = Some(first);
    let (mut n, mut bytes) = (0, 0);
    while let Some(item) = next {
        bytes += Shared::cost(&item);
        pipe.cmd("PUBLISH").arg(&item.0).arg(&item.1[..]).ignore();
        n += 1;
        next = if n < MAX_PIPELINE { queued.try_recv().ok() } else { None };
    }
    let result = pipe.query_async::<()>(publisher).await;
    // Counted until written: the pipeline holds a copy meanwhile.
    drop(pipe);
    shared.release(bytes);
    if result.is_err() {
        shared.dropped.fetch_add(n as u64, Ordering::Relaxed);
    }
    result
}

/// Subscribes to the wanted channels not subscribed yet and unsubscribes from the rest.
async fn reconcile(shared: &Shared, sink: &mut PubSubSink, subscribed: &mut HashSet<String>) -> redis::RedisResult<()> {
    let (wanted, version) = shared.wanted.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let add: Vec<&String> = wanted.difference(subscribed).collect();
    let remove: Vec<&String> = subscribed.difference(&wanted).collect();
    if !add.is_empty() {
        sink.subscribe(&add).await?;
    }
    if !remove.is_empty() {
        sink.unsubscribe(&remove).await?;
    }
    *subscribed = wanted;
    shared.connected.send_replace(Some(version));
    Ok(())
}
