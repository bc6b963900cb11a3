//! Every limit and option of a connection, in one type shared by the standalone server,
//! every adapter and the client.

use crate::protocol::Options;
use http::HeaderMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A predicate on a request's `Origin` header (`None` when it has none).
pub type OriginPredicate = Arc<dyn Fn(Option<&str>) -> bool + Send + Sync>;

/// Which `Origin`s a server accepts (RFC 6455 §10.2). Browsers always send one; other
/// clients usually send none, and a request without one is accepted unless the check is
/// [`OriginCheck::Custom`] and says otherwise.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum OriginCheck {
    /// Any origin (the default).
    #[default]
    Any,
    /// Only these origins, compared exactly (e.g. `https://example.com`).
    AllowList(Vec<String>),
    /// A predicate on the `Origin` header, `None` when the request has none.
    Custom(OriginPredicate),
}

impl OriginCheck {
    /// Whether a request with this `Origin` header is accepted.
    ///
    /// ```
    /// use wsdriver::config::OriginCheck;
    /// let check = OriginCheck::AllowList(vec!["https://example.com".into()]);
    /// assert!(check.allows(Some("https://example.com")));
    /// assert!(!check.allows(Some("https://evil.example")));
    /// assert!(check.allows(None)); // not a browser
    /// ```
    pub fn allows(&self, origin: Option<&str>) -> bool {
        match self {
            Self::Any => true,
            Self::AllowList(list) => origin.is_none_or(|o| list.iter().any(|allowed| allowed == o)),
            Self::Custom(f) => f(origin),
        }
    }
}

impl fmt::Debug for OriginCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("Any"),
            Self::AllowList(list) => f.debug_tuple("AllowList").field(list).finish(),
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// Connection options and limits. Every limit has a default that is safe on the open
/// internet.
///
/// ```
/// use std::time::Duration;
/// use wsdriver::Config;
/// let config = Config::default()
///     .max_message_size(1 << 20)
///     .protocols(["chat.v2", "chat.v1"])
///     .keepalive(Some(Duration::from_secs(20)), Duration::from_secs(10));
/// assert_eq!(config.max_message_size, 1 << 20);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The largest frame payload accepted; a larger frame fails the connection with 1009.
    /// Default 64 MiB.
    pub max_frame_size: usize,
    /// The largest message accepted, all its fragments together; a larger one fails the
    /// connection with 1009 as soon as the excess is announced. Default 64 MiB, as
    /// websocket-driver.
    pub max_message_size: usize,
    /// Bytes waiting to be written beyond which sending waits (backpressure) and a
    /// non-waiting send reports [`Error::Full`](crate::Error::Full). Default 1 MiB.
    pub write_buffer_high_water: usize,
    /// How long the close handshake may take once started, by either side, before the
    /// connection is dropped. Default 5 s.
    pub close_timeout: Duration,
    /// How long a peer may take to send its whole opening handshake (guards against
    /// slowloris). Default 10 s.
    pub handshake_timeout: Duration,
    /// The largest opening handshake accepted, request line and headers together
    /// (431 beyond it). Default 16 KiB.
    pub max_header_bytes: usize,
    /// The most header fields accepted in an opening handshake (431 beyond it). Default 64.
    pub max_headers: usize,
    /// Send a ping after this long without traffic from the peer. Default 30 s.
    pub ping_interval: Option<Duration>,
    /// How long to wait for any traffic after a keepalive ping before the peer is declared
    /// dead and the connection dropped. Default 30 s.
    pub pong_timeout: Duration,
    /// Subprotocols: on a server, those supported, picked in the client's order of
    /// preference; on a client, those offered. Default none.
    pub protocols: Vec<String>,
    /// Extra headers: on a server, added to the 101 response; on a client, to the request
    /// (Origin, Authorization, cookies). Default none.
    pub extra_headers: HeaderMap,
    /// Which `Origin`s a server accepts; others get 403. Default: any.
    pub origin_check: OriginCheck,
    /// permessage-deflate (RFC 7692): offered by a client, accepted by a server when the
    /// client offers it. Default off.
    #[cfg(feature = "deflate")]
    pub deflate: Option<crate::deflate::DeflateConfig>,
}

impl Default for Config {
    fn default() -> Self {
        // The connection's own limits and timers are the sans-IO core's defaults.
        let Options { max_frame_size, max_message_size, write_buffer_high_water, close_timeout, ping_interval, pong_timeout, .. } =
            Options::default();
        Self {
            max_frame_size,
            max_message_size,
            write_buffer_high_water,
            close_timeout,
            handshake_timeout: Duration::from_secs(10),
            max_header_bytes: 16 << 10,
            max_headers: 64,
            ping_interval,
            pong_timeout,
            protocols: Vec::new(),
            extra_headers: HeaderMap::new(),
            origin_check: OriginCheck::Any,
            #[cfg(feature = "deflate")]
            deflate: None,
        }
    }
}

impl Config {
    /// Sets [`Config::max_frame_size`].
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }

    /// Sets [`Config::max_message_size`].
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Sets [`Config::write_buffer_high_water`].
    pub fn write_buffer_high_water(mut self, bytes: usize) -> Self {
        self.write_buffer_high_water = bytes;
        self
    }

    /// Sets [`Config::close_timeout`].
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Sets [`Config::handshake_timeout`].
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets [`Config::max_header_bytes`] and [`Config::max_headers`].
    pub fn max_request_headers(mut self, bytes: usize, count: usize) -> Self {
        self.max_header_bytes = bytes;
        self.max_headers = count;
        self
    }

    /// Sets the keepalive: [`Config::ping_interval`] (`None` turns it off) and
    /// [`Config::pong_timeout`].
    pub fn keepalive(mut self, ping_interval: Option<Duration>, pong_timeout: Duration) -> Self {
        self.ping_interval = ping_interval;
        self.pong_timeout = pong_timeout;
        self
    }

    /// Sets [`Config::protocols`].
    pub fn protocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Accepts only these origins ([`OriginCheck::AllowList`]).
    pub fn allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.origin_check = OriginCheck::AllowList(origins.into_iter().map(Into::into).collect());
        self
    }

    /// Sets [`Config::origin_check`] to a predicate.
    pub fn origin_check(mut self, check: impl Fn(Option<&str>) -> bool + Send + Sync + 'static) -> Self {
        self.origin_check = OriginCheck::Custom(Arc::new(check));
        self
    }

    /// Turns permessage-deflate on with these options ([`Config::deflate`]).
    #[cfg(feature = "deflate")]
    pub fn deflate(mut self, deflate: crate::deflate::DeflateConfig) -> Self {
        self.deflate = Some(deflate);
        self
    }

    /// Adds one of [`Config::extra_headers`].
    pub fn extra_header(mut self, name: http::HeaderName, value: http::HeaderValue) -> Self {
        self.extra_headers.append(name, value);
        self
    }
}

/// A [`Config`] refused by [`Config::validate`]: a limit that cannot work, named by the
/// option that holds it.
///
/// Servers check their config before they serve (the standalone server and the hyper
/// serve helper fail to start) and at every handshake (an adapter answers 500 and logs the
/// error); the client checks it before it connects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A limit of zero, which no connection could work within.
    #[error("{option} must not be zero")]
    Zero {
        /// The option, as its field is named.
        option: &'static str,
    },
    /// A size beyond the largest that can mean anything.
    #[error("{option} of {value} is over the largest allowed, {max}")]
    TooLarge {
        /// The option, as its field is named.
        option: &'static str,
        /// The value set.
        value: usize,
        /// The largest accepted.
        max: usize,
    },
    /// A duration beyond [`Config::MAX_DURATION`].
    #[error("{option} of {value:?} is over the longest allowed, {max:?}")]
    TooLong {
        /// The option, as its field is named.
        option: &'static str,
        /// The value set.
        value: Duration,
        /// The longest accepted.
        max: Duration,
    },
    /// A value outside the range its option is defined on (deflate window bits, levels).
    #[error("{option} of {value} is outside {min}..={max}")]
    OutOfRange {
        /// The option, as its field is named.
        option: &'static str,
        /// The value set.
        value: u32,
        /// The smallest accepted.
        min: u32,
        /// The largest accepted.
        max: u32,
    },
}

impl Config {
    /// The longest timeout or interval a config may hold: 2^32 ms, about 49.7 days, the
    /// range of the connection's timers. No timer can mean "never" by being long; a
    /// keepalive is turned off with `ping_interval: None`.
    pub const MAX_DURATION: Duration = Duration::from_millis(u32::MAX as u64);

    /// The largest [`Config::max_header_bytes`]: 1 MiB.
    pub const MAX_HEADER_BYTES: usize = 1 << 20;

    /// The largest [`Config::max_headers`]: 1,024.
    pub const MAX_HEADERS: usize = 1024;

    /// Checks that every limit can work: sizes and counts above zero and no larger than
    /// memory can hold, timeouts above zero and at most [`Config::MAX_DURATION`], deflate
    /// window bits 9-15 and levels 0-9. The close timeout and the write buffer's
    /// high-water mark may be zero (drop at once; wait on every send); the pong timeout is
    /// checked only with a keepalive on.
    ///
    /// ```
    /// use std::time::Duration;
    /// use wsdriver::config::{Config, ConfigError};
    /// assert_eq!(Config::default().validate(), Ok(()));
    /// let config = Config::default().keepalive(Some(Duration::from_secs(20)), Duration::MAX);
    /// assert!(matches!(config.validate(), Err(ConfigError::TooLong { option: "pong_timeout", .. })));
    /// let config = Config::default().max_message_size(usize::MAX);
    /// assert!(matches!(config.validate(), Err(ConfigError::TooLarge { option: "max_message_size", .. })));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        // No buffer can be larger than an allocation may be.
        let memory = isize::MAX as usize;
        size("max_frame_size", self.max_frame_size, memory)?;
        size("max_message_size", self.max_message_size, memory)?;
        size("max_header_bytes", self.max_header_bytes, Self::MAX_HEADER_BYTES)?;
        size("max_headers", self.max_headers, Self::MAX_HEADERS)?;
        if self.write_buffer_high_water > memory {
            return Err(ConfigError::TooLarge { option: "write_buffer_high_water", value: self.write_buffer_high_water, max: memory });
        }
        duration("handshake_timeout", self.handshake_timeout, false)?;
        duration("close_timeout", self.close_timeout, true)?;
        // The pong timeout only runs after a keepalive ping.
        if let Some(interval) = self.ping_interval {
            duration("ping_interval", interval, false)?;
            duration("pong_timeout", self.pong_timeout, false)?;
        }
        #[cfg(feature = "deflate")]
        if let Some(deflate) = &self.deflate {
            deflate.validate()?;
        }
        Ok(())
    }
}

fn size(option: &'static str, value: usize, max: usize) -> Result<(), ConfigError> {
    match value {
        0 => Err(ConfigError::Zero { option }),
        _ if value > max => Err(ConfigError::TooLarge { option, value, max }),
        _ => Ok(()),
    }
}

fn duration(option: &'static str, value: Duration, zero_allowed: bool) -> Result<(), ConfigError> {
    if value.is_zero() && !zero_allowed {
        return Err(ConfigError::Zero { option });
    }
    if value > Config::MAX_DURATION {
        return Err(ConfigError::TooLong { option, value, max: Config::MAX_DURATION });
    }
    Ok(())
}

/// What the sans-IO state machine needs of a config: its limits and timers.
impl From<&Config> for Options {
    fn from(config: &Config) -> Self {
        Options {
            max_frame_size: config.max_frame_size,
            max_message_size: config.max_message_size,
            write_buffer_high_water: config.write_buffer_high_water,
            close_timeout: config.close_timeout,
            ping_interval: config.ping_interval,
            pong_timeout: config.pong_timeout,
        }
    }
}
