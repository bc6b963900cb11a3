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
    /// use ws_core::config::OriginCheck;
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
/// use ws_core::Config;
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
