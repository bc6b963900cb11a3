//! The backplane: how hubs in several processes share rooms. The interface is Action
//! Cable's (publish, subscribe, unsubscribe, shutdown), small enough to implement for any
//! pub/sub system; [`RedisBackplane`](crate::RedisBackplane) is the one provided.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::sync::Weak;
use ws_core::{PreparedMessage, Utf8Bytes};

/// A pub/sub transport between hubs. The hub calls [`Backplane::start`] once, then
/// subscribes to a channel while it has local members in the matching room, and publishes
/// every broadcast; the backplane hands what arrives on its channels to the [`Inbox`].
///
/// Delivery is at most once: a backplane that loses its connection drops what is
/// published meanwhile, reconnects and subscribes again.
pub trait Backplane: Send + Sync + 'static {
    /// Starts the transport; messages arriving on subscribed channels go to `inbox`.
    fn start(&self, inbox: Inbox);
    /// Publishes an encoded broadcast on `channel`. Never waits.
    fn publish(&self, channel: &str, envelope: Bytes);
    /// Starts receiving what is published on `channel`.
    fn subscribe(&self, channel: &str);
    /// Stops receiving what is published on `channel`.
    fn unsubscribe(&self, channel: &str);
    /// Stops the transport.
    fn shutdown(&self);
}

/// Where a backplane hands what it receives: the hub that started it.
#[derive(Clone)]
pub struct Inbox {
    pub(crate) hub: Weak<crate::hub::Inner>,
}

impl Inbox {
    /// Delivers an envelope received on `channel` to the local members it is for.
    /// Envelopes this hub published itself, and malformed ones, are ignored.
    pub fn deliver(&self, channel: &str, envelope: &[u8]) {
        if let Some(hub) = self.hub.upgrade() {
            hub.deliver_remote(channel, envelope);
        }
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

const VERSION: u8 = 1;
const TEXT: u8 = 0;
const BINARY: u8 = 1;
const HEADER_LEN: usize = 1 + 1 + 8;

/// A broadcast on the wire: version, kind, the publishing hub's id, the payload.
pub(crate) fn encode(origin: u64, message: &PreparedMessage) -> Bytes {
    let (kind, payload): (u8, &[u8]) = match message.message() {
        ws_core::Message::Text(t) => (TEXT, t.as_bytes()),
        ws_core::Message::Binary(b) => (BINARY, b),
        _ => (BINARY, &[]),
    };
    let mut out = BytesMut::with_capacity(HEADER_LEN + payload.len());
    out.put_u8(VERSION);
    out.put_u8(kind);
    out.put_u64(origin);
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
pub(crate) fn decode(mut envelope: &[u8]) -> Result<(u64, PreparedMessage), Rejected> {
    if envelope.len() < HEADER_LEN || envelope[0] != VERSION {
        return Err(Rejected::Malformed);
    }
    envelope.advance(1);
    let kind = envelope.get_u8();
    let origin = envelope.get_u64();
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
            let (origin, back) = decode(&encode(42, &message)).unwrap();
            assert_eq!(origin, 42);
            assert_eq!(back.message(), message.message());
            assert_eq!(back.frame(), message.frame());
        }
    }

    #[test]
    fn bad_envelopes_are_rejected() {
        assert_eq!(decode(b"").err(), Some(Rejected::Malformed));
        assert_eq!(decode(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 1]).err(), Some(Rejected::Malformed));
        assert_eq!(decode(&[1, 9, 0, 0, 0, 0, 0, 0, 0, 1]).err(), Some(Rejected::Malformed));
        assert_eq!(decode(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff]).err(), Some(Rejected::InvalidUtf8));
        let ok = decode(&[1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff]).unwrap();
        assert_eq!(ok.1.message(), &Message::binary(vec![0xff]));
    }
}
