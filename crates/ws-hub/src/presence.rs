//! Who is in a room, across every hub sharing a backplane, and the joins and leaves.

use bytes::Bytes;

/// Someone in a room: a member (named by its hub and its id, unique across hubs) and what
/// its connection said about itself ([`Member::set_info`](crate::Member::set_info): a
/// user name, an id, some JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Present {
    /// The member, unique across every hub sharing the backplane.
    pub member: String,
    /// What the member said about itself.
    pub info: Bytes,
}

/// Whether someone came or went, or the room was counted again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PresenceKind {
    /// Joined the room.
    Join,
    /// Left the room: left it, dropped its connection, or its hub stopped refreshing its
    /// entry (the process died, or lost its backplane) for longer than the presence time
    /// to live.
    Leave,
    /// No one in particular: the room was counted again, because announcements may have
    /// been missed (this hub's link to the backplane dropped and came back). The count is
    /// the room's; there is no `who`.
    Recount,
}

/// A join, a leave or a recount, as the hub's [presence
/// hook](crate::HubBuilder::on_presence) sees it, to tell the room's members.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct PresenceEvent<'a> {
    /// The room.
    pub room: &'a str,
    /// Joined, left, or counted again.
    pub kind: PresenceKind,
    /// Who joined or left; `None` for a [recount](PresenceKind::Recount).
    pub who: Option<&'a Present>,
    /// How many are in the room now, on every hub.
    pub count: usize,
}
