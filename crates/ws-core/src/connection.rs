//! [`Connection`]: the cheap, cloneable handle to a WebSocket, websocket-driver's `ws`
//! object. Handlers receive one; any task may hold one and send through it.

use crate::close::{CloseCode, CloseFrame};
use crate::error::{Error, Result};
use crate::message::Message;
use crate::prepared::PreparedMessage;
use crate::protocol::ReadyState;
use crate::shutdown::Registration;
use crate::utf8::Utf8Bytes;
use bytes::Bytes;
use std::fmt;
use std::future::{Future, poll_fn};
use std::sync::Arc;
use std::task::{Context, Poll};

/// What a sender hands the driver: a message to encode, or a frame encoded once for many
/// connections.
pub(crate) enum Outgoing<'a> {
    Message(Message),
    Prepared(&'a PreparedMessage),
}

impl From<Message> for Outgoing<'_> {
    fn from(message: Message) -> Self {
        Self::Message(message)
    }
}

/// What a [`Connection`] needs of the driver, whatever stream it runs on.
pub(crate) trait Link: Send + Sync + 'static {
    fn poll_send(&self, cx: &mut Context<'_>, message: &mut Option<Outgoing<'_>>) -> Poll<Result<()>>;
    /// `poll_send` for a message, the common case.
    fn poll_send_message(&self, cx: &mut Context<'_>, message: &mut Option<Message>) -> Poll<Result<()>>;
    fn try_send(&self, message: Outgoing<'_>) -> Result<()>;
    fn feed(&self, message: Outgoing<'_>) -> Result<()>;
    fn flush_queued(&self);
    fn ping(&self, payload: Bytes) -> Result<u64>;
    /// Ready once the pong of ping `seq` arrived; `Err(Closed)` if the connection ended
    /// first.
    fn poll_pong(&self, cx: &mut Context<'_>, seq: u64) -> Poll<Result<()>>;
    fn close(&self, frame: Option<CloseFrame>) -> Result<()>;
    fn ready_state(&self) -> ReadyState;
    fn protocol(&self) -> Option<String>;
    fn http_version(&self) -> http::Version;
    fn buffered(&self) -> usize;
    fn add_handle(&self);
    fn drop_handle(&self);
    /// Joins a graceful shutdown, until the connection ends.
    fn watch(&self, registration: Registration);
    /// Ends the connection now, without a close handshake (shutdown's deadline passed).
    fn abort(&self);
}

/// A handle to one WebSocket connection: send, ping, close, and ask its state. Cloning is
/// cheap (a reference count), and every clone may be used from any task; the type is the
/// same whatever server or stream the connection runs on, so a [`Handler`](crate::Handler)
/// written against it runs unchanged on every adapter.
///
/// ```
/// use wsdriver::{Config, Message, Role, WebSocket};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), wsdriver::Error> {
/// let (a, b) = tokio::io::duplex(1024);
/// let _server = WebSocket::from_raw(a, Role::Server, &Config::default());
/// let mut client = WebSocket::from_raw(b, Role::Client, &Config::default());
/// let conn = _server.connection();
/// tokio::spawn(async move { conn.send_text("from another task").await });
/// assert_eq!(client.recv().await.transpose()?, Some(Message::text("from another task")));
/// # Ok(()) }
/// ```
pub struct Connection {
    link: Arc<dyn Link>,
}

impl Connection {
    pub(crate) fn new(link: Arc<dyn Link>) -> Self {
        link.add_handle();
        Self { link }
    }

    pub(crate) fn link(&self) -> &Arc<dyn Link> {
        &self.link
    }

    /// Sends a text message. Waits only while the write buffer is at its high-water mark
    /// (backpressure); the message is then queued and written at once, or with the batch
    /// of replies the driver is collecting. Fails with [`Error::Closed`] once the close
    /// handshake has started.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the close handshake has started or the connection has ended
    /// (while this waited, too; `on_error` reports why).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if cancelled while waiting, the message was not queued.
    pub fn send_text(&self, text: impl Into<Utf8Bytes>) -> impl Future<Output = Result<()>> + Send + '_ {
        self.send(Message::Text(text.into()))
    }

    /// Sends a binary message; see [`Connection::send_text`].
    pub fn send_binary(&self, data: impl Into<Bytes>) -> impl Future<Output = Result<()>> + Send + '_ {
        self.send(Message::Binary(data.into()))
    }

    /// Sends any message; see [`Connection::send_text`].
    ///
    /// # Errors
    ///
    /// As [`Connection::send_text`], and [`Error::InvalidArgument`] for a control frame over
    /// 125 bytes or a Close with a code that may not be sent.
    // Not an `async fn`, which would keep the argument beside its moved copy: a handler's
    // send is part of every connection's task, whose size is the connection's memory.
    pub fn send(&self, message: Message) -> impl Future<Output = Result<()>> + Send + '_ {
        let mut message = Some(message);
        poll_fn(move |cx| self.link.poll_send_message(cx, &mut message))
    }

    /// Queues a message without waiting: [`Error::Full`] when the write buffer is at its
    /// high-water mark.
    pub fn try_send(&self, message: Message) -> Result<()> {
        self.link.try_send(message.into())
    }

    /// Sends a message encoded once for many connections (see [`PreparedMessage`]); waits
    /// like [`Connection::send`].
    ///
    /// # Errors
    ///
    /// As [`Connection::send_text`].
    pub fn send_prepared<'a>(&'a self, message: &'a PreparedMessage) -> impl Future<Output = Result<()>> + Send + 'a {
        self.send_outgoing(Outgoing::Prepared(message))
    }

    fn send_outgoing<'a>(&'a self, message: Outgoing<'a>) -> impl Future<Output = Result<()>> + Send + 'a {
        let mut message = Some(message);
        poll_fn(move |cx| self.link.poll_send(cx, &mut message))
    }

    /// Queues a prepared message without waiting, like [`Connection::try_send`]: the frame
    /// bytes are shared, not copied, once they are 4 KiB or more.
    pub fn try_send_prepared(&self, message: &PreparedMessage) -> Result<()> {
        self.link.try_send(Outgoing::Prepared(message))
    }

    /// Queues a prepared message without writing it: [`Error::Full`] at the high-water
    /// mark. Nothing is written until [`Connection::flush_queued`], the reader's next
    /// batch, or another send; a broadcaster feeds many connections, then flushes each
    /// once, so a burst of broadcasts costs one write per connection, not one per message.
    ///
    /// ```
    /// # use wsdriver::{Config, Message, PreparedMessage, Role, WebSocket};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), wsdriver::Error> {
    /// # let (a, b) = tokio::io::duplex(1024);
    /// # let server = WebSocket::from_raw(a, Role::Server, &Config::default());
    /// # let mut client = WebSocket::from_raw(b, Role::Client, &Config::default());
    /// let conn = server.connection();
    /// for text in ["one", "two"] {
    ///     conn.feed_prepared(&PreparedMessage::text(text))?;
    /// }
    /// assert_eq!(conn.buffered_amount(), 10);
    /// conn.flush_queued(); // one write for both
    /// assert_eq!(conn.buffered_amount(), 0);
    /// assert_eq!(client.recv().await.transpose()?, Some(Message::text("one")));
    /// # Ok(()) }
    /// ```
    pub fn feed_prepared(&self, message: &PreparedMessage) -> Result<()> {
        self.link.feed(Outgoing::Prepared(message))
    }

    /// Writes what is queued, as far as the stream takes it without waiting; the
    /// connection's reader writes the rest as the stream drains.
    pub fn flush_queued(&self) {
        self.link.flush_queued();
    }

    /// Sends a ping (payload at most 125 bytes); the returned future completes when the
    /// matching pong arrives, or fails with [`Error::Closed`] if the connection closes
    /// first. The ping is sent whether or not the future is awaited.
    ///
    /// ```
    /// # use wsdriver::{Config, Role, WebSocket};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), wsdriver::Error> {
    /// let (a, b) = tokio::io::duplex(1024);
    /// let mut server = WebSocket::from_raw(a, Role::Server, &Config::default());
    /// let mut client = WebSocket::from_raw(b, Role::Client, &Config::default());
    /// tokio::spawn(async move { while let Some(_) = client.recv().await {} }); // answers pings
    /// let pong = server.connection().send_ping("are you there?");
    /// tokio::spawn(async move { while let Some(_) = server.recv().await {} }); // sees the pong
    /// pong.await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a payload over 125 bytes; [`Error::Closed`] if the
    /// connection is closing, or closes before the pong.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the ping was sent when this was called; dropping the future only stops
    /// waiting for the pong.
    pub fn send_ping(&self, payload: impl Into<Bytes>) -> impl Future<Output = Result<()>> + Send + 'static {
        let sent = self.link.ping(payload.into());
        // Not a handle: a pending pong does not keep the connection from closing.
        let link = self.link.clone();
        async move {
            let seq = sent?;
            poll_fn(|cx| link.poll_pong(cx, seq)).await
        }
    }

    /// Starts the close handshake with `code` and `reason` (at most 123 bytes). The driver
    /// completes it, or drops the connection after the close timeout; `on_close` reports
    /// the end.
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<()> {
        let frame = CloseFrame::new(code, reason).map_err(Error::InvalidArgument)?;
        self.link.close(Some(frame))
    }

    /// The ready state: connecting, open, closing or closed.
    pub fn ready_state(&self) -> ReadyState {
        self.link.ready_state()
    }

    /// The subprotocol negotiated in the handshake.
    pub fn protocol(&self) -> Option<String> {
        self.link.protocol()
    }

    /// The HTTP version the WebSocket was opened over: `HTTP/1.1` for the upgrade of RFC
    /// 6455, `HTTP/2.0` for an extended CONNECT on an HTTP/2 stream (RFC 8441). Nothing
    /// else differs for a handler. A socket made with
    /// [`WebSocket::from_raw`](crate::WebSocket::from_raw) reports `HTTP/1.1`.
    pub fn http_version(&self) -> http::Version {
        self.link.http_version()
    }

    /// The protocol version, as websocket-driver names it: `"hybi-13"` (RFC 6455).
    pub fn version(&self) -> &'static str {
        "hybi-13"
    }

    /// Bytes queued and not yet written.
    pub fn buffered_amount(&self) -> usize {
        self.link.buffered()
    }
}

impl Clone for Connection {
    fn clone(&self) -> Self {
        Self::new(self.link.clone())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.link.drop_handle();
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection").field("ready_state", &self.ready_state()).finish_non_exhaustive()
    }
}
