//! The NATS backplane: hubs in several processes share rooms through a NATS server.

use crate::backplane::{Backplane, BoxFuture, Inbox};
use crate::link::{Link, Outbox, link_methods};
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Broadcasts waiting for the NATS connection; more are dropped (and counted).
const PUBLISH_QUEUE: usize = 16 << 10;
/// Bytes of broadcasts waiting for the NATS connection, by default; more are dropped (and
/// counted).
const MAX_QUEUED_BYTES: usize = 16 << 20;
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long a round trip to the server may take before it is tried again.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`Backplane`] over NATS core publish/subscribe (the `nats` feature): each room is a
/// subject, `{prefix}` followed by the room's channel name in hexadecimal (room names
/// may hold any character; subjects may not).
///
/// Delivery is at most once, as NATS core's: what is published while a hub is
/// disconnected does not reach it, and this backplane keeps neither history nor presence.
/// Each hub numbers what it receives on its own, so a member recovers what it missed
/// ([`Member::join_from`](crate::Member::join_from)) from the hub it was on, within that
/// hub's ring, and is told [`Recovery::Reset`](crate::Recovery::Reset) on any other;
/// [`Hub::presence`](crate::Hub::presence) counts the hub's own members. Recovery across
/// processes, and presence across them, need the Redis backplane: NATS JetStream numbers
/// messages per stream, not per room (a stream per room is a server-side resource per
/// room), so it does not give the per-room positions the hub's recovery is built on.
///
/// The client (async-nats) reconnects with backoff (50 ms doubling to 2 s) and
/// subscribes again by itself. Broadcasts wait for the connection in a queue bounded by
/// count (16,384) and by bytes (16 MiB); what does not fit, or comes while disconnected,
/// is dropped and counted ([`NatsBackplane::dropped`]).
///
/// ```no_run
/// use wsdriver::hub::{Hub, NatsBackplane};
/// # #[tokio::main] async fn main() {
/// let hub = Hub::builder().backplane(NatsBackplane::new("nats://127.0.0.1:4222")).build();
/// hub.broadcast("lobby", "reaches every process sharing this NATS");
/// # }
/// ```
///
/// Cloning gives another handle on the same backplane, to watch it
/// ([`NatsBackplane::connected`]) after handing it to the hub.
#[derive(Clone)]
pub struct NatsBackplane {
    shared: Arc<Shared>,
}

struct Shared {
    url: String,
    prefix: String,
    link: Link,
    outbox: Outbox<(String, Bytes)>,
}

impl fmt::Debug for NatsBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBackplane")
            .field("url", &self.shared.url)
            .field("prefix", &self.shared.prefix)
            .field("connected", &self.is_connected())
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl NatsBackplane {
    /// A backplane on the NATS server at `url` (`nats://host:port`, or several separated
    /// by commas), with the subject prefix `wsdriver.`. Nothing connects until the hub
    /// starts it.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            shared: Arc::new(Shared {
                url: url.into(),
                prefix: "wsdriver.".to_owned(),
                link: Link::new(),
                outbox: Outbox::new(PUBLISH_QUEUE, MAX_QUEUED_BYTES),
            }),
        }
    }

    /// Sets the subject prefix (it should end with a `.`), to keep several applications
    /// apart on one NATS. Call it before cloning the backplane.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.prefix = prefix.into();
        }
        self
    }

    link_methods!("NATS");
}

impl Shared {
    /// The subject of a hub channel: hexadecimal keeps any room name a valid token.
    fn subject(&self, channel: &str) -> String {
        let mut subject = String::with_capacity(self.prefix.len() + 2 * channel.len());
        subject.push_str(&self.prefix);
        for byte in channel.bytes() {
            subject.push_str(&format!("{byte:02x}"));
        }
        subject
    }
}

impl Backplane for NatsBackplane {
    fn start(&self, inbox: Inbox) {
        let Some(queued) = self.shared.outbox.take_receiver() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(run(self.shared.clone(), queued, inbox))),
            Err(_) => tracing::error!("the nats backplane needs a tokio runtime; broadcasts stay local"),
        }
    }

    fn publish(&self, channel: &str, envelope: Bytes) {
        let shared = &self.shared;
        let cost = cost(channel, &envelope);
        if !self.is_connected() || shared.outbox.push((channel.to_owned(), envelope), cost).is_err() {
            shared.link.count_dropped(1);
        }
    }

    fn subscribe(&self, channel: &str) {
        self.shared.link.want(channel.to_owned(), true);
    }

    fn unsubscribe(&self, channel: &str) {
        self.shared.link.want(channel.to_owned(), false);
    }

    fn ready(&self) -> BoxFuture<()> {
        let backplane = self.clone();
        Box::pin(async move { backplane.connected().await })
    }

    fn shutdown(&self) {
        self.shared.link.shut();
    }
}

/// The bytes a queued broadcast holds.
fn cost(channel: &str, envelope: &Bytes) -> usize {
    channel.len() + envelope.len()
}

/// Keeps the client and the subscriptions until shutdown.
async fn run(shared: Arc<Shared>, mut queued: tokio::sync::mpsc::Receiver<(String, Bytes)>, inbox: Inbox) {
    let (events, mut event) = tokio::sync::mpsc::unbounded_channel();
    let options = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| (MIN_BACKOFF * 2u32.saturating_pow(attempts.min(16) as u32)).min(MAX_BACKOFF))
        .event_callback(move |e| {
            let _ = events.send(e);
            async {}
        });
    let client = match options.connect(shared.url.as_str()).await {
        Ok(client) => client,
        Err(error) => return tracing::error!(%error, url = shared.url, "the nats backplane cannot connect; broadcasts stay local"),
    };
    // One task per subscription hands what arrives to the hub; aborting it unsubscribes.
    let mut subscribed: HashMap<String, JoinHandle<()>> = HashMap::new();
    loop {
        tokio::select! {
            () = shared.link.changed() => {
                if shared.link.is_shut() {
                    break;
                }
                reconcile(&shared, &client, &inbox, &mut subscribed).await;
            }
            Some(e) = event.recv() => match e {
                async_nats::Event::Connected => {
                    tracing::info!(channels = subscribed.len(), "nats backplane connected");
                    reconcile(&shared, &client, &inbox, &mut subscribed).await;
                }
                async_nats::Event::Disconnected => {
                    tracing::warn!("nats backplane disconnected");
                    shared.link.down();
                }
                other => tracing::debug!(event = %other, "nats backplane"),
            },
            next = queued.recv() => {
                let Some((channel, envelope)) = next else { break };
                let cost = cost(&channel, &envelope);
                let published = client.publish(shared.subject(&channel), envelope).await;
                shared.outbox.release(cost);
                if let Err(error) = published {
                    tracing::debug!(%error, "broadcast not published to nats");
                    shared.link.count_dropped(1);
                }
            }
        }
    }
    subscribed.values().for_each(JoinHandle::abort);
    shared.link.down();
}

/// Subscribes to the wanted channels not subscribed yet and unsubscribes from the rest;
/// then waits until the server has them (a round trip) and says the link is up. (The
/// client subscribes again by itself after it reconnects.)
async fn reconcile(shared: &Shared, client: &async_nats::Client, inbox: &Inbox, subscribed: &mut HashMap<String, JoinHandle<()>>) {
    let (wanted, version) = shared.link.wanted();
    subscribed.retain(|channel, task| {
        let keep = wanted.contains(channel);
        if !keep {
            task.abort();
        }
        keep
    });
    for channel in wanted {
        if subscribed.contains_key(&channel) {
            continue;
        }
        match client.subscribe(shared.subject(&channel)).await {
            Ok(mut subscriber) => {
                let inbox = inbox.clone();
                let name = channel.clone();
                let task = tokio::spawn(async move {
                    while let Some(message) = subscriber.next().await {
                        inbox.deliver(&name, &message.payload);
                    }
                });
                subscribed.insert(channel, task);
            }
            Err(error) => tracing::warn!(%error, channel, "nats subscription failed"),
        }
    }
    loop {
        match round_trip(client).await {
            Ok(()) => return shared.link.up(version),
            Err(error) => tracing::debug!(%error, "no round trip to nats"),
        }
        // Disconnected: the next `Connected` event comes back here.
        if client.connection_state() != async_nats::connection::State::Connected {
            return;
        }
    }
}

/// Waits until the server has processed everything this client sent before: a message
/// to itself, on a subject of its own, comes back after it. (`Client::flush` only writes
/// to the socket: another client's publication could still reach the server before this
/// one's subscriptions.)
async fn round_trip(client: &async_nats::Client) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let subject = client.new_inbox();
    let mut probe = client.subscribe(subject.clone()).await?;
    client.publish(subject, Bytes::new()).await?;
    match tokio::time::timeout(ROUND_TRIP_TIMEOUT, probe.next()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err("the probe's subscription ended".into()),
        Err(_) => Err("no answer within 5 s".into()),
    }
}
