//! The chat every chat example serves: one `Handler`, one hub, one page, whatever the
//! server (axum in `main.rs`, actix-web in `actix.rs`).
//!
//! The page speaks JSON. It sends `{"type":"join","room":…,"name":…}` once, then
//! `{"type":"say","text":…}`; it receives `joined`, `message` and `presence` events.
//! With `--redis URL` (or `REDIS_URL`) several chat processes share their rooms.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use wsdriver::hub::{Hub, Member, RedisBackplane, SlowPolicy};
use wsdriver::{CloseCode, Config, Connection, Handler, Message};

/// The page, served at `/`.
pub const PAGE: &str = include_str!("index.html");

const MAX_NAME: usize = 32;
const MAX_TEXT: usize = 2000;

/// Command-line options: `[ADDR] [--redis URL]`.
pub struct Options {
    pub addr: String,
    pub redis: Option<String>,
}

impl Options {
    pub fn from_args() -> Self {
        let mut addr = None;
        let mut redis = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty());
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--redis" => redis = args.next(),
                _ => addr = Some(arg),
            }
        }
        Self { addr: addr.unwrap_or_else(|| "127.0.0.1:8080".to_owned()), redis }
    }

    /// The hub: in-process, or shared through Redis. A chat must not silently lose
    /// messages, so a member that cannot keep up is closed with 1013 (try again later)
    /// and its page reconnects.
    pub fn hub(&self) -> Hub {
        let builder = Hub::builder().queue_capacity(256).slow_policy(SlowPolicy::Close(CloseCode::TRY_AGAIN_LATER));
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

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Incoming {
    Join { room: String, name: String },
    Say { text: String },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Outgoing<'a> {
    Joined { room: &'a str, name: &'a str, server: &'a str },
    Message { room: &'a str, name: &'a str, text: &'a str, server: &'a str },
    Presence { room: &'a str, name: &'a str, event: &'a str, here: usize },
    Error { text: &'a str },
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

    fn presence(&self, event: &str) {
        if let Some((room, name)) = &self.joined {
            let here = self.hub.presence(room);
            self.hub.broadcast(room, Outgoing::Presence { room, name, event, here }.to_json());
        }
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
            return Self::reply(ws, &Outgoing::Error { text: "expected {\"type\":\"join\"|\"say\", …}" }).await;
        };
        match incoming {
            Incoming::Join { room, name } if self.joined.is_none() => {
                if !valid(&room, MAX_NAME) || !valid(&name, MAX_NAME) {
                    return Self::reply(ws, &Outgoing::Error { text: "room and name: 1 to 32 characters" }).await;
                }
                member.join(&room);
                Self::reply(ws, &Outgoing::Joined { room: &room, name: &name, server: &self.server }).await;
                self.joined = Some((room, name));
                self.presence("join");
            }
            Incoming::Join { .. } => Self::reply(ws, &Outgoing::Error { text: "already in a room" }).await,
            Incoming::Say { text } => {
                let Some((room, name)) = &self.joined else {
                    return Self::reply(ws, &Outgoing::Error { text: "join a room first" }).await;
                };
                if !valid(&text, MAX_TEXT) {
                    return Self::reply(ws, &Outgoing::Error { text: "messages: 1 to 2000 characters" }).await;
                }
                let event = Outgoing::Message { room, name, text: &text, server: &self.server };
                self.hub.broadcast(room, event.to_json());
            }
        }
    }

    async fn on_close(&mut self, _ws: &Connection, _code: CloseCode, _reason: &str) {
        if let (Some(member), Some((room, _))) = (self.member.take(), &self.joined) {
            member.leave(room);
        }
        self.presence("leave");
    }
}

/// Logs to stderr, filtered by `RUST_LOG`.
pub fn init_logging() {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_writer(std::io::stderr).init();
}
