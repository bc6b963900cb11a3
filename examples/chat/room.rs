//! The chat every chat example serves: one `Handler`, one hub, one page, whatever the
//! server (axum in `main.rs`, actix-web in `actix.rs`).
//!
//! The page speaks JSON. It sends `{"type":"join","room":…,"name":…,"since":…}` once per
//! connection, then `{"type":"say","id":…,"text":…}`; it receives `joined`, `message`,
//! `ack`, `presence` and `error` events. A `presence` event (`join`, `leave`, or `count`
//! when the room was counted again) says how many are in the room, on every process; the
//! page's own join is announced to it too. Everything said in a room carries its
//! `position`: the page keeps the last one and, when it reconnects (to this process or
//! another), joins `since` it, so it gets what was said meanwhile, once and in order. A
//! `say` is acknowledged with its position; the page sends it again, with the same id,
//! until it is, and the hub publishes each id once.
//! With `--redis URL` (or `REDIS_URL`) several chat processes share their rooms.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use wsdriver::hub::{Hub, Member, Position, PresenceEvent, PresenceKind, Publication, RedisBackplane, SlowPolicy};
use wsdriver::{CloseCode, Config, Connection, Handler, Message, PreparedMessage};

/// The page, served at `/`.
pub const PAGE: &str = include_str!("index.html");

const MAX_NAME: usize = 32;
const MAX_TEXT: usize = 2000;
const MAX_ID: usize = 64;

/// Command-line options: `[ADDR] [--redis URL] [--presence-ttl SECONDS]`.
pub struct Options {
    pub addr: String,
    pub redis: Option<String>,
    /// How soon the members of a chat process that died leave the rooms' counts.
    pub presence_ttl: Option<Duration>,
}

impl Options {
    pub fn from_args() -> Self {
        let mut addr = None;
        let mut redis = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty());
        let mut presence_ttl = None;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--redis" => redis = args.next(),
                "--presence-ttl" => match args.next().and_then(|s| s.parse::<f64>().ok()).and_then(|s| Duration::try_from_secs_f64(s).ok())
                {
                    Some(ttl) => presence_ttl = Some(ttl),
                    None => {
                        eprintln!("chat: --presence-ttl takes a number of seconds");
                        std::process::exit(2);
                    }
                },
                _ => addr = Some(arg),
            }
        }
        Self { addr: addr.unwrap_or_else(|| "127.0.0.1:8080".to_owned()), redis, presence_ttl }
    }

    /// The hub: in-process, or shared through Redis. A chat must not silently lose
    /// messages, so a member that cannot keep up is closed with 1013 (try again later)
    /// and its page reconnects.
    pub fn hub(&self) -> Hub {
        let mut builder = Hub::builder()
            .queue_capacity(256)
            .slow_policy(SlowPolicy::Close(CloseCode::TRY_AGAIN_LATER))
            .envelope(with_position)
            .on_presence(presence_event);
        if let Some(ttl) = self.presence_ttl {
            builder = builder.presence_ttl(ttl);
        }
        match &self.redis {
            Some(url) => match RedisBackplane::new(url) {
                Ok(backplane) => builder.backplane(backplane.prefix("chat:")).build(),
                Err(error) => {
                    eprintln!("chat: bad Redis URL {url}: {error}");
                    std::process::exit(2);
                }
            },
            None => builder.build(),
        }
    }

    /// Where the hub's rooms live, for the start-up line.
    pub fn describe(&self) -> String {
        match &self.redis {
            Some(url) => format!("rooms shared through {url}"),
            None => "in-process rooms".to_owned(),
        }
    }
}

/// Limits for a public chat: small messages, a quick keepalive.
pub fn config() -> Config {
    Config::default()
        .max_message_size(16 << 10)
        .write_buffer_high_water(256 << 10)
        .keepalive(Some(Duration::from_secs(20)), Duration::from_secs(20))
}

/// What members are sent for a publication: the event, with its position added as
/// `"position":"OFFSET:EPOCH"` (every event published is a JSON object).
fn with_position(publication: &Publication<'_>) -> PreparedMessage {
    match publication.message.as_text() {
        Some(json) if json.starts_with('{') && json.len() > 2 => {
            PreparedMessage::text(format!("{{\"position\":\"{}\",{}", publication.position, &json[1..]))
        }
        _ => publication.unchanged(),
    }
}

/// What a room's members are sent when someone joins or leaves it, or it was counted
/// again, with how many are in it on every chat process.
fn presence_event(event: &PresenceEvent<'_>) -> Option<PreparedMessage> {
    let name = event.who.map(|who| String::from_utf8_lossy(&who.info));
    let kind = match event.kind {
        PresenceKind::Join => "join",
        PresenceKind::Leave => "leave",
        _ => "count",
    };
    Some(PreparedMessage::text(Outgoing::Presence { room: event.room, name: name.as_deref(), event: kind, here: event.count }.to_json()))
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Incoming {
    Join {
        room: String,
        name: String,
        /// The last position the page saw in this room, when it comes back.
        #[serde(default)]
        since: Option<String>,
    },
    Say {
        text: String,
        /// The page's id for this message: sent again with the same id, it is said once.
        #[serde(default)]
        id: Option<String>,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Outgoing<'a> {
    Joined {
        room: &'a str,
        name: &'a str,
        server: &'a str,
        position: String,
        recovered: bool,
    },
    Message {
        room: &'a str,
        name: &'a str,
        text: &'a str,
        server: &'a str,
        id: Option<&'a str>,
    },
    Ack {
        id: &'a str,
        position: String,
    },
    /// `name` is absent when `event` is `count`.
    Presence {
        room: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<&'a str>,
        event: &'a str,
        here: usize,
    },
    Error {
        text: &'a str,
        id: Option<&'a str>,
    },
}

impl Outgoing<'_> {
    fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// One connection of the chat.
pub struct Chat {
    hub: Hub,
    /// This process, as shown on the page (its listen address).
    server: String,
    member: Option<Member>,
    joined: Option<(String, String)>,
}

impl Chat {
    pub fn new(hub: Hub, server: String) -> Self {
        Self { hub, server, member: None, joined: None }
    }

    async fn reply(ws: &Connection, event: &Outgoing<'_>) {
        let _ = ws.send_text(event.to_json()).await;
    }
}

fn valid(field: &str, max: usize) -> bool {
    !field.trim().is_empty() && field.chars().count() <= max
}

impl Handler for Chat {
    async fn on_open(&mut self, ws: &Connection) {
        self.member = Some(self.hub.register(ws.clone()));
    }

    async fn on_message(&mut self, ws: &Connection, message: Message) {
        let Some(text) = message.as_text() else { return };
        let (Some(member), Ok(incoming)) = (&self.member, serde_json::from_str::<Incoming>(text)) else {
            return Self::reply(ws, &Outgoing::Error { text: "expected {\"type\":\"join\"|\"say\", …}", id: None }).await;
        };
        match incoming {
            Incoming::Join { room, name, since } if self.joined.is_none() => {
                if !valid(&room, MAX_NAME) || !valid(&name, MAX_NAME) {
                    return Self::reply(ws, &Outgoing::Error { text: "room and name: 1 to 32 characters", id: None }).await;
                }
                // From the last position the page saw: what was said meanwhile comes
                // first. A first visit (or an unreadable position) starts from now.
                let since = since.and_then(|s| s.parse::<Position>().ok()).unwrap_or_default();
                member.set_info(name.clone());
                let recovery = match member.join_from(&room, since).await {
                    Ok(recovery) => recovery,
                    Err(error) => {
                        tracing::warn!(%error, room, "could not join");
                        let _ = ws.close(CloseCode::TRY_AGAIN_LATER, "the room is unavailable");
                        return;
                    }
                };
                // How many are in the room comes with the announcement of this join.
                let joined = Outgoing::Joined {
                    room: &room,
                    name: &name,
                    server: &self.server,
                    position: recovery.position().to_string(),
                    recovered: recovery.is_recovered(),
                };
                Self::reply(ws, &joined).await;
                self.joined = Some((room, name));
            }
            Incoming::Join { .. } => Self::reply(ws, &Outgoing::Error { text: "already in a room", id: None }).await,
            Incoming::Say { text, id } => {
                let Some((room, name)) = &self.joined else {
                    return Self::reply(ws, &Outgoing::Error { text: "join a room first", id: None }).await;
                };
                let id = id.as_deref();
                if !valid(&text, MAX_TEXT) || id.is_some_and(|id| !valid(id, MAX_ID)) {
                    return Self::reply(ws, &Outgoing::Error { text: "messages: 1 to 2000 characters, ids 1 to 64", id }).await;
                }
                let event = Outgoing::Message { room, name, text: &text, server: &self.server, id }.to_json();
                let said = match id {
                    // Once per name and id: a page that sends again is heard once.
                    Some(id) => self.hub.publish_once(room, &format!("{name}/{id}"), event).await,
                    None => self.hub.publish(room, event).await,
                };
                match (said, id) {
                    (Ok(position), Some(id)) => Self::reply(ws, &Outgoing::Ack { id, position: position.to_string() }).await,
                    (Ok(_), None) => {}
                    (Err(error), _) => {
                        tracing::warn!(%error, room, "could not publish");
                        Self::reply(ws, &Outgoing::Error { text: "not sent, try again", id }).await;
                    }
                }
            }
        }
    }

    async fn on_close(&mut self, _ws: &Connection, _code: CloseCode, _reason: &str) {
        // Leaving every room, which tells who is there.
        self.member.take();
    }
}

/// Logs to stderr, filtered by `RUST_LOG`.
pub fn init_logging() {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_writer(std::io::stderr).init();
}
