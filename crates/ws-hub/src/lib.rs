//! Broadcast for wsdriver: rooms, presence, and scale-out over a backplane.
//!
//! websocket-driver leaves broadcasting to its users; this crate is what a chat, a live
//! dashboard or a collaborative editor builds on. A [`Hub`] holds [`Member`]s (one per
//! connection), each in any number of rooms. A broadcast is encoded once, as a
//! [`PreparedMessage`](ws_core::PreparedMessage), kept once in the room's ring (bounded
//! by count and by bytes), and every recipient queues the same frame bytes; no broadcast
//! ever waits for a slow recipient, which is handled by a [`SlowPolicy`] once it falls
//! behind the ring.
//!
//! Every publication has a [`Position`] in its room's stream (an offset and an epoch),
//! which the hub's [envelope](HubBuilder::envelope) can put in what members are sent. The
//! ring is the room's history: a client that reconnects hands back the last position it
//! saw and [`Member::join_from`] replays what it missed, in order and once, or says that
//! history no longer reaches back ([`Recovery::Reset`]).
//!
//! The hub is in-process by default. With a [`Backplane`] (the Redis one needs the
//! `redis` feature), hubs in several processes share their rooms: a broadcast reaches
//! every member of the room, whichever process holds its connection. A backplane with a
//! [`History`] (Redis streams) numbers and keeps every publication for all hubs, so
//! positions are the same everywhere, a client may come back through any process, and a
//! process whose link to Redis dropped for a moment recovers what it missed.
//!
//! Members are [`Connection`](ws_core::Connection)s, so the hub works the same on every
//! adapter (hyper, tower, axum, actix-web) and on the standalone server.

mod backplane;
mod error;
mod hooks;
mod hub;
#[cfg(any(feature = "redis", feature = "nats"))]
mod link;
#[cfg(feature = "nats")]
mod nats;
mod position;
mod presence;
#[cfg(feature = "redis")]
mod redis;
mod ring;
mod subscriber;

pub use backplane::{Backplane, BoxFuture, History, HistoryBounds, Inbox, PresenceStore, Replay};
pub use error::HubError;
pub use hooks::{ConnectRequest, JoinRequest, PublishRequest, Refusal};
pub use hub::{Hub, HubBuilder, Member};
#[cfg(feature = "nats")]
pub use nats::NatsBackplane;
pub use position::{ParsePositionError, Position, Publication, Recovery};
pub use presence::{PresenceEvent, PresenceKind, Present};
#[cfg(feature = "redis")]
pub use redis::RedisBackplane;
pub use subscriber::SlowPolicy;
