//! The backplane: how hubs in several processes share rooms. The interface is Action
//! Cable's (publish, subscribe, unsubscribe, shutdown), small enough to implement for any
//! pub/sub system, plus an optional [`History`] for a backplane that numbers and keeps
//! publications; [`RedisBackplane`](crate::RedisBackplane) is the one provided, with both.

use crate::{HubError, Position, PresenceKind, Present};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::future::Future;
use std::pin::Pin;
use std::sync::Weak;
use std::time::Duration;
use ws_core::{PreparedMessage, Utf8Bytes};

/// A future a backplane returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A pub/sub transport between hubs. The hub calls [`Backplane::start`] once, then
/// subscribes to a channel while it has local members in the matching room, and publishes
/// every broadcast; the backplane hands what arrives on its channels to the [`Inbox`].
///
/// Without [`History`] delivery is at most once: a backplane that loses its connection
/// drops what is published meanwhile, reconnects and subscribes again, and each hub
/// numbers the publications it receives on its own. With it every publication is
/// numbered and kept by the backplane, and delivered (locally too) only once it is: every
/// member on every hub sees the same positions, and recovers from them.
pub trait Backplane: Send + Sync + 'static {
    /// Starts the transport; messages arriving on subscribed channels go to `inbox`.
    fn start(&self, inbox: Inbox);
    /// Publishes an encoded broadcast on `channel`. Never waits. Not called when the
    /// backplane has a [`History`].
    fn publish(&self, channel: &str, envelope: Bytes);
    /// Starts receiving what is published on `channel`.
    fn subscribe(&self, channel: &str);
    /// Stops receiving what is published on `channel`.
    fn unsubscribe(&self, channel: &str);
    /// Resolves once the backplane receives on every channel subscribed to so far.
    fn ready(&self) -> BoxFuture<()>;
    /// Stops the transport.
    fn shutdown(&self);
    /// The backplane's history, if it numbers and keeps publications.
    fn history(&self) -> Option<&dyn History> {
        None
    }
    /// The backplane's presence store, if it keeps who is in each room for every hub.
    fn presence(&self) -> Option<&dyn PresenceStore> {
        None
    }
}

/// Who is in each room, for every hub sharing a backplane: entries that expire unless
/// their hub refreshes them, and join and leave events sent to every hub subscribed to the
/// room's channel ([`Inbox::presence`]).
pub trait PresenceStore: Send + Sync {
    /// Adds `member` to `channel`'s room until `ttl` from now, or moves its expiry if it
    /// is there; a member that was not there is announced (a join).
    fn join(&self, channel: &str, member: &str, info: Bytes, ttl: Duration) -> BoxFuture<Result<(), HubError>>;
    /// Removes `member`, announcing it (a leave) if it was there.
    fn leave(&self, channel: &str, member: &str) -> BoxFuture<Result<(), HubError>>;
    /// Removes the entries that expired, announcing each (a leave).
    fn sweep(&self, channel: &str) -> BoxFuture<Result<(), HubError>>;
    /// Who is in `channel`'s room.
    fn list(&self, channel: &str) -> BoxFuture<Result<Vec<Present>, HubError>>;
    /// How many are in `channel`'s room.
    fn count(&self, channel: &str) -> BoxFuture<Result<usize, HubError>>;
    /// Counts `channel`'s room and announces the count to every hub subscribed to the
    /// channel ([`Inbox::counted`]), in order with the joins and leaves: a hub that
    /// missed some (its link dropped) asks for it once it is back.
    fn recount(&self, channel: &str) -> BoxFuture<Result<(), HubError>>;
}

/// A backplane's numbered, bounded history of each channel.
pub trait History: Send + Sync {
    /// Numbers `envelope` in `channel`'s stream, keeps it (within the hub's
    /// [`HistoryBounds`]) and publishes it with its position to every hub subscribed,
    /// itself included ([`Inbox::deliver_at`]), as one step: no hub receives a position
    /// that history does not hold. Appends are made in the order of the calls, whether
    /// or not their futures are polled; the future resolves to the position. With a
    /// `key` already appended under (while the stream keeps it), nothing is appended or
    /// published, and the position is that of the first append.
    fn append(&self, channel: &str, envelope: Bytes, key: Option<&str>) -> BoxFuture<Result<Position, HubError>>;
    /// What `channel`'s stream holds after `since`, at most `limit` envelopes (fewer if
    /// they are large, at least one), and its newest position.
    fn read(&self, channel: &str, since: Position, limit: usize) -> BoxFuture<Result<Replay, HubError>>;
}

/// What a [`History`] holds after a position.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Replay {
    /// The stream's newest position.
    pub position: Position,
    /// The first envelopes after the position asked for, in order (each one's offset is
    /// the previous one's plus one), or `None` if the stream no longer reaches back to
    /// it or is of another epoch.
    pub envelopes: Option<Vec<Bytes>>,
}

impl Replay {
    /// A replay of `envelopes`, or a reset when `None`.
    pub fn new(position: Position, envelopes: Option<Vec<Bytes>>) -> Self {
        Self { position, envelopes }
    }
}

/// How much history each room keeps: the hub's
/// [`queue_capacity`](crate::HubBuilder::queue_capacity),
/// [`max_ring_bytes`](crate::HubBuilder::max_ring_bytes) and
/// [`history_ttl`](crate::HubBuilder::history_ttl), for a [`History`] to apply too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryBounds {
    /// Publications kept, at most.
    pub count: usize,
    /// Bytes of publications kept, at most (the newest is kept whatever its size).
    pub bytes: usize,
    /// How long a publication is kept.
    pub ttl: Duration,
}

/// Where a backplane hands what it receives: the hub that started it.
#[derive(Clone)]
pub struct Inbox {
    pub(crate) hub: Weak<crate::hub::Inner>,
    pub(crate) bounds: HistoryBounds,
}

impl Inbox {
    /// Delivers an envelope received on `channel` to the local members it is for.
    /// Envelopes this hub published itself, and malformed ones, are ignored.
    pub fn deliver(&self, channel: &str, envelope: &[u8]) {
        if let Some(hub) = self.hub.upgrade() {
            hub.deliver_remote(channel, None, envelope);
        }
    }

    /// Delivers an envelope a [`History`] numbered at `position` to the local members it
    /// is for, this hub's own publications included. Malformed envelopes are ignored.
    pub fn deliver_at(&self, channel: &str, position: Position, envelope: &[u8]) {
        if let Some(hub) = self.hub.upgrade() {
            hub.deliver_remote(channel, Some(position), envelope);
        }
    }

    /// Delivers a join or leave that a [`PresenceStore`] announced on `channel`: the
    /// hub's [presence hook](crate::HubBuilder::on_presence) tells the room's local
    /// members.
    pub fn presence(&self, channel: &str, kind: PresenceKind, who: &Present, count: usize) {
        if let Some(hub) = self.hub.upgrade() {
            hub.deliver_presence(channel, kind, Some(who), count);
        }
    }

    /// Delivers a count a [`PresenceStore`] announced on `channel`
    /// ([`PresenceStore::recount`]): the room's local members are told it, as a
    /// [`PresenceKind::Recount`].
    pub fn counted(&self, channel: &str, count: usize) {
        if let Some(hub) = self.hub.upgrade() {
            hub.deliver_presence(channel, PresenceKind::Recount, None, count);
        }
    }

    /// Tells the hub that the backplane's link came back after it was lost (or came up
    /// for the first time), once it receives on its channels again: what was published
    /// meanwhile did not arrive. With a [`History`], the hub reads what each of its rooms
    /// missed from it and delivers it, in order; with a [`PresenceStore`], it has each of
    /// its rooms counted again ([`PresenceStore::recount`]).
    pub fn reconnected(&self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.refill();
            hub.recount();
        }
    }

    /// How much history the hub keeps per room.
    pub fn history_bounds(&self) -> HistoryBounds {
        self.bounds
    }
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox").finish_non_exhaustive()
    }
}

/// The channel every hub subscribes to, for broadcasts to all.
pub(crate) const ALL_CHANNEL: &str = "all";

/// What a room's channel starts with; the room's name follows.
pub(crate) const ROOM_PREFIX: &str = "room:";

/// The channel of a room.
pub(crate) fn room_channel(room: &str) -> String {
    format!("{ROOM_PREFIX}{room}")
}

const VERSION: u8 = 2;
const TEXT: u8 = 0;
const BINARY: u8 = 1;
const HEADER_LEN: usize = 1 + 1 + 8 + 8;

/// Who published a broadcast, and whom it is not for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origin {
    /// The publishing hub.
    pub(crate) node: u64,
    /// The member of that hub it is not for (0: none; member ids start at 1).
    pub(crate) except: u64,
}

impl Origin {
    /// The member a broadcast is not for, as hub `node` sees it: only the publishing hub
    /// knows its members.
    pub(crate) fn except_on(self, node: u64) -> Option<u64> {
        (self.node == node && self.except != 0).then_some(self.except)
    }
}

/// A broadcast on the wire: version, kind, the publishing hub's id, the member it is not
/// for, the payload.
pub(crate) fn encode(origin: Origin, message: &PreparedMessage) -> Bytes {
    let (kind, payload): (u8, &[u8]) = match message.message() {
        ws_core::Message::Text(t) => (TEXT, t.as_bytes()),
        ws_core::Message::Binary(b) => (BINARY, b),
        _ => (BINARY, &[]),
    };
    let mut out = BytesMut::with_capacity(HEADER_LEN + payload.len());
    out.put_u8(VERSION);
    out.put_u8(kind);
    out.put_u64(origin.node);
    out.put_u64(origin.except);
    out.put_slice(payload);
    out.freeze()
}

/// Why an envelope was not delivered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Rejected {
    Malformed,
    InvalidUtf8,
}

/// Decodes an envelope into its origin and message.
pub(crate) fn decode(mut envelope: &[u8]) -> Result<(Origin, PreparedMessage), Rejected> {
    if envelope.len() < HEADER_LEN || envelope[0] != VERSION {
        return Err(Rejected::Malformed);
    }
    envelope.advance(1);
    let kind = envelope.get_u8();
    let origin = Origin { node: envelope.get_u64(), except: envelope.get_u64() };
    let payload = Bytes::copy_from_slice(envelope);
    let message = match kind {
        TEXT => PreparedMessage::text(Utf8Bytes::try_from(payload).map_err(|_| Rejected::InvalidUtf8)?),
        BINARY => PreparedMessage::binary(payload),
        _ => return Err(Rejected::Malformed),
    };
    Ok((origin, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ws_core::Message;

    #[test]
    fn envelopes_round_trip() {
        for message in [PreparedMessage::text("héllo"), PreparedMessage::binary(vec![0, 255, 7]), PreparedMessage::text("")] {
            let origin = Origin { node: 42, except: 7 };
            let (back_origin, back) = decode(&encode(origin, &message)).unwrap();
            assert_eq!(back_origin, origin);
            assert_eq!(back.message(), message.message());
            assert_eq!(back.frame(), message.frame());
        }
    }

    #[test]
    fn bad_envelopes_are_rejected() {
        let header = |version: u8, kind: u8| [[version, kind].as_slice(), &[0; 16]].concat();
        assert_eq!(decode(b"").err(), Some(Rejected::Malformed));
        assert_eq!(decode(&header(2, 0)[..17]).err(), Some(Rejected::Malformed), "short");
        assert_eq!(decode(&header(1, 0)).err(), Some(Rejected::Malformed), "another version");
        assert_eq!(decode(&header(2, 9)).err(), Some(Rejected::Malformed), "another kind");
        assert_eq!(decode(&[header(2, 0), vec![0xff]].concat()).err(), Some(Rejected::InvalidUtf8));
        let ok = decode(&[header(2, 1), vec![0xff]].concat()).unwrap();
        assert_eq!(ok.1.message(), &Message::binary(vec![0xff]));
    }
}
