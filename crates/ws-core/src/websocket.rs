//! [`WebSocket`]: a connection over any byte stream, as a [`Stream`] of received messages
//! and a [`Sink`] of messages to send.

mod split;

pub use split::{SplitSink, SplitStream};

use crate::close::{CloseCode, CloseFrame};
use crate::config::Config;
use crate::connection::Connection;
use crate::driver::Transport;
use crate::driver::io::Drive;
use crate::driver::shared::Shared;
use crate::error::{Error, Result};
use crate::handshake::Negotiated;
use crate::message::Message;
use crate::pool::MessageQueue;
use crate::protocol::{ReadyState, Role};
use crate::shutdown::Registration;
use crate::utf8::Utf8Bytes;
use bytes::BytesMut;
use futures_core::Stream;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// A WebSocket connection over a byte stream `S`: a [`Stream`] of received [`Message`]s
/// and a [`Sink`](futures_sink::Sink) of messages to send.
///
/// Pings are answered, and the close handshake completed, by the driver: a received Close
/// is answered before it is handed to the application, and once the socket is dropped,
/// a background task finishes whatever handshake is still under way, bounded by the close
/// timeout. The stream ends (`None`) once the connection is closed; text arrives
/// validated, binary as shared [`Bytes`](bytes::Bytes).
///
/// ```
/// use wsdriver::{Config, Message, Role, WebSocket};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), wsdriver::Error> {
/// let (a, b) = tokio::io::duplex(1024);
/// let mut server = WebSocket::from_raw(a, Role::Server, &Config::default());
/// let mut client = WebSocket::from_raw(b, Role::Client, &Config::default());
/// client.send(Message::text("hi")).await?;
/// assert_eq!(server.recv().await.transpose()?, Some(Message::text("hi")));
/// server.close(wsdriver::CloseCode::NORMAL, "bye").await?;
/// tokio::spawn(async move { while server.recv().await.is_some() {} }); // sees the reply
/// assert!(matches!(client.recv().await, Some(Ok(Message::Close(Some(_))))));
/// assert!(client.recv().await.is_none()); // the server closed the stream
/// # Ok(()) }
/// ```
pub struct WebSocket<S: Transport> {
    shared: Arc<Shared<S>>,
}

impl<S: Transport> WebSocket<S> {
    /// Wraps a stream on which the opening handshake has already completed.
    pub fn from_raw(io: S, role: Role, config: &Config) -> Self {
        Self::from_upgraded(io, role, config, Negotiated::default(), BytesMut::new())
    }

    /// Wraps a stream on which the handshake completed, with what it negotiated
    /// (subprotocol, extensions) and any bytes the peer sent right after its handshake
    /// (read with it).
    pub fn from_upgraded(io: S, role: Role, config: &Config, negotiated: Negotiated, leftover: BytesMut) -> Self {
        Self::with_shared(Shared::new(Some(io), role, config, negotiated, leftover))
    }

    /// A socket whose handshake is still under way: it is [`ReadyState::Connecting`],
    /// messages sent now are queued, and [`WebSocket::attach`] opens it.
    #[doc(hidden)] // for adapters that attach the stream later
    pub fn connecting(role: Role, config: &Config) -> Self {
        Self::with_shared(Shared::new(None, role, config, Negotiated::default(), BytesMut::new()))
    }

    fn with_shared(shared: Arc<Shared<S>>) -> Self {
        shared.add_handle();
        Self { shared }
    }

    /// Completes a [`WebSocket::connecting`] socket: attaches the stream, installs what
    /// the handshake negotiated, and sends what was queued.
    #[doc(hidden)] // for adapters
    pub fn attach(&self, io: S, negotiated: Negotiated, leftover: BytesMut) {
        self.attacher().attach(io, negotiated, leftover);
    }

    /// A handle that completes (or fails) a [`WebSocket::connecting`] socket from another
    /// task.
    #[doc(hidden)] // for adapters
    pub fn attacher(&self) -> Attacher<S> {
        Attacher { shared: self.shared.clone() }
    }

    /// Reports the connection's [metrics](crate::meter) from now on, labelled `adapter`,
    /// with a handshake that started at `started`. Without the `metrics` feature, nothing.
    #[doc(hidden)] // for adapters
    pub fn meter(&self, adapter: &'static str, started: std::time::Instant) {
        self.shared.lock().meter(adapter, started);
    }

    /// Waits until the socket is open, for a [`WebSocket::connecting`] one; fails with the
    /// error that ended it if it never opened.
    ///
    /// # Errors
    ///
    /// The error that ended the connection before it opened (the handshake's, for a client).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only observes.
    pub async fn opened(&mut self) -> Result<()> {
        poll_fn(|cx| self.poll_opened(cx)).await
    }

    pub(crate) fn poll_opened(&self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut driver = self.shared.lock();
        if driver.opened() {
            return Poll::Ready(Ok(()));
        }
        if driver.is_finished() {
            return Poll::Ready(Err(driver.take_error().unwrap_or(Error::Closed)));
        }
        self.shared.fan.register(cx.waker());
        Poll::Pending
    }

    /// A cheap, cloneable handle for sending from other tasks.
    pub fn connection(&self) -> Connection {
        Connection::new(self.shared.clone())
    }

    /// Receives the next message; `None` once the connection is closed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a message is taken from the connection only when this returns it.
    ///
    /// # Errors
    ///
    /// `Some(Err(_))` once, for what ended the connection abnormally (a protocol violation,
    /// already answered with its close code; an I/O error; a timeout), after the messages
    /// received before it; then `None`.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| self.shared.lock().poll_next(&self.shared, cx)).await
    }

    /// Sends a message: waits while the write buffer is at its high-water mark, then queues
    /// it and writes what the stream takes at once (to queue several and write them
    /// together, use the [`Sink`](futures_sink::Sink)'s `feed` and `flush`).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if cancelled while waiting, the message was not queued.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the close handshake has started or the connection has ended
    /// (while this waited, too; `recv` reports why); [`Error::InvalidArgument`] for a
    /// control frame over 125 bytes or a close code that may not be sent.
    pub async fn send(&mut self, message: Message) -> Result<()> {
        let mut message = Some(message);
        poll_fn(|cx| self.shared.poll_send_message(cx, &mut message)).await
    }

    /// Starts the close handshake with `code` and `reason`; keep receiving to see it
    /// finish (the stream ends), or drop the socket and let the driver finish it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a code that may not be sent or a reason over 123 bytes;
    /// [`Error::Closed`] if the close handshake has already started.
    ///
    /// # Cancel safety
    ///
    /// As [`WebSocket::send`].
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        let frame = CloseFrame::new(code, reason).map_err(Error::InvalidArgument)?;
        self.send(Message::Close(Some(frame))).await
    }

    /// The ready state.
    pub fn ready_state(&self) -> ReadyState {
        self.shared.lock().proto.ready_state()
    }

    /// The HTTP version the WebSocket was opened over; see
    /// [`Connection::http_version`].
    pub fn http_version(&self) -> http::Version {
        self.shared.lock().http_version()
    }

    /// The subprotocol negotiated in the handshake.
    pub fn protocol(&self) -> Option<String> {
        self.shared.lock().protocol().map(str::to_owned)
    }

    /// The code and reason the connection closed with: the peer's Close (1005 when it
    /// had no code), the code a protocol violation failed it with, or 1006 when it ended
    /// without a Close. `None` while it is still open.
    pub fn close_status(&self) -> Option<(CloseCode, Utf8Bytes)> {
        self.shared.lock().proto.close_status().map(|(code, reason)| (code, reason.clone()))
    }

    /// Splits into a sending and a receiving half, usable from different tasks. No lock
    /// is held across awaits, so neither half waits for the other.
    pub fn split(self) -> (SplitSink<S>, SplitStream<S>) {
        let sink = SplitSink::new(self.shared.clone());
        // `self` becomes the stream half: its drop keeps the finisher logic.
        (sink, SplitStream::new(self))
    }

    /// Writes `bytes` (the server's 101 response) ahead of any frame, at once as far as
    /// the stream takes them, the rest with the first frames.
    pub(crate) fn write_first(&self, bytes: &[u8]) -> Result<()> {
        let mut driver = self.shared.lock();
        driver.proto.out().put_slice(bytes);
        driver.write_now(&self.shared);
        driver.take_error().map_or(Ok(()), Err)
    }

    // ---- for the handler loop (`serve`) ----

    /// A handler serves this socket from now on.
    pub(crate) fn set_serving(&self) {
        self.shared.lock().set_serving();
    }

    /// The next batch of messages for the handler loop (see `Driver::poll_batch`).
    pub(crate) fn poll_batch(&self, cx: &mut Context<'_>, batch: &mut Option<MessageQueue>) -> Poll<Option<Result<()>>> {
        self.shared.lock().poll_batch(&self.shared, cx, batch)
    }

    /// Keeps the connection going while a handler's callback is pending: flushes its
    /// replies, answers pings and Closes, matches pongs, reads ahead (bounded), runs the
    /// timers.
    pub(crate) fn drive_pending(&self, cx: &mut Context<'_>) {
        self.shared.lock().drive(&self.shared, cx, Drive::Ahead);
    }

    /// The shutdown registration the handler loop keeps until `on_close` has run.
    pub(crate) fn take_registration(&self) -> Option<Registration> {
        self.shared.lock().take_registration()
    }
}

/// Completes a connecting [`WebSocket`] from the task that runs its handshake.
#[doc(hidden)] // for adapters
pub struct Attacher<S: Transport> {
    shared: Arc<Shared<S>>,
}

impl<S: Transport> Attacher<S> {
    /// The handshake completed on `io`: open the socket and send what was queued.
    pub fn attach(&self, io: S, negotiated: Negotiated, leftover: BytesMut) {
        self.shared.lock().attach(&self.shared, io, negotiated, leftover);
    }

    /// Reports the connection's metrics; see [`WebSocket::meter`].
    pub fn meter(&self, adapter: &'static str, started: std::time::Instant) {
        self.shared.lock().meter(adapter, started);
    }

    /// The connection could not be established: the socket's stream yields `error`, then
    /// ends; what was queued is dropped, and senders waiting on it fail.
    pub fn abort(&self, error: Error) {
        let mut driver = self.shared.lock();
        if !driver.opened() {
            driver.finish(&self.shared, Some(error));
        }
    }
}

impl<S: Transport> Drop for WebSocket<S> {
    fn drop(&mut self) {
        self.shared.drop_handle();
        self.shared.clone().spawn_finisher();
    }
}

impl<S: Transport> std::fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket").field("proto", &self.shared.lock().proto).finish()
    }
}

impl<S: Transport> Stream for WebSocket<S> {
    type Item = Result<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.shared.lock().poll_next(&self.shared, cx)
    }
}

/// The [`Sink`] of a type holding `shared`: sends wait at the high-water mark, and close
/// starts the close handshake with 1000.
macro_rules! impl_sink {
    ($ty:ident) => {
        impl<S: $crate::driver::Transport> futures_sink::Sink<$crate::Message> for $ty<S> {
            type Error = $crate::Error;

            fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<$crate::error::Result<()>> {
                self.shared.poll_send(cx, &mut None)
            }

            fn start_send(self: Pin<&mut Self>, item: $crate::Message) -> $crate::error::Result<()> {
                // Queued only: `poll_flush` writes everything fed so far at once.
                self.shared.lock().feed(item.into())
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<$crate::error::Result<()>> {
                self.shared.poll_flush(cx)
            }

            fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<$crate::error::Result<()>> {
                self.shared.start_close();
                self.shared.poll_flush(cx)
            }
        }
    };
}
pub(crate) use impl_sink;

impl_sink!(WebSocket);
