//! Where a publication sits in its room's stream, and what a member that rejoins from a
//! position gets back.

use std::fmt;
use std::str::FromStr;
use ws_core::{Message, PreparedMessage};

/// A publication's place in its room's stream: an offset that grows by one with every
/// publication, and the epoch of the stream it counts in.
///
/// A room's stream gets a new epoch when its history is lost (an in-process room that
/// expired, a Redis that lost its data): offsets of another epoch say nothing about this
/// one. A client keeps the last position it saw and hands it back when it reconnects
/// ([`Member::join_from`](crate::Member::join_from)); the text form, `offset:epoch` with
/// the epoch in hexadecimal, travels well in JSON (JavaScript numbers cannot hold every
/// `u64`).
///
/// ```
/// use wsdriver::hub::Position;
/// let position = Position { offset: 42, epoch: 0xbeef };
/// assert_eq!(position.to_string(), "42:beef");
/// assert_eq!("42:beef".parse::<Position>(), Ok(position));
/// assert!("42".parse::<Position>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Position {
    /// The publication's number in its stream, from 1; 0 before the first.
    pub offset: u64,
    /// The stream's epoch.
    pub epoch: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{:x}", self.offset, self.epoch)
    }
}

/// A position's text form did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a position (expected OFFSET:EPOCH, the epoch in hexadecimal)")]
pub struct ParsePositionError;

impl FromStr for Position {
    type Err = ParsePositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (offset, epoch) = s.split_once(':').ok_or(ParsePositionError)?;
        Ok(Self {
            offset: offset.parse().map_err(|_| ParsePositionError)?,
            epoch: u64::from_str_radix(epoch, 16).map_err(|_| ParsePositionError)?,
        })
    }
}

/// A publication as the hub's [envelope](crate::HubBuilder::envelope) sees it, to make
/// the message its members are sent.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Publication<'a> {
    /// The room, or `None` for a broadcast to all.
    pub room: Option<&'a str>,
    /// Its place in the room's stream.
    pub position: Position,
    /// What was published.
    pub message: &'a Message,
    pub(crate) prepared: &'a PreparedMessage,
}

impl Publication<'_> {
    /// What was published, as it was encoded: for an envelope that sends some
    /// publications as they are, without encoding them again.
    pub fn unchanged(&self) -> PreparedMessage {
        self.prepared.clone()
    }
}

/// What joining a room from a position gave ([`Member::join_from`](crate::Member::join_from)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recovery {
    /// Every publication after the position given was queued for the member, in order,
    /// before any live one; nothing was missed.
    Recovered {
        /// How many publications were replayed.
        replayed: usize,
        /// The room's position once they are: the member is up to date from here.
        position: Position,
    },
    /// The room's history does not reach back to the position given (it was trimmed, or
    /// the epoch changed): nothing was replayed, the member receives live publications
    /// from `position` on, and the application resynchronises (reloads its state, tells
    /// the user).
    Reset {
        /// The room's position now.
        position: Position,
    },
}

impl Recovery {
    /// The room's position when the member joined.
    pub fn position(&self) -> Position {
        match *self {
            Self::Recovered { position, .. } | Self::Reset { position } => position,
        }
    }

    /// Whether nothing was missed.
    pub fn is_recovered(&self) -> bool {
        matches!(self, Self::Recovered { .. })
    }
}
