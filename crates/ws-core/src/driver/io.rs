//! The I/O driver of one connection: the stream, the protocol, the read buffer and the
//! messages read ahead of the application, moved forward by [`Driver::drive`].
//!
//! Reading is bounded twice: at most [`MAX_INBOX`] messages wait parsed, and while the
//! application is still busy with earlier input at most [`MAX_BACKLOG_BYTES`] more are
//! read. Past either, reading stops and TCP pushes back on the peer. Control frames
//! are acted on as they are parsed (pongs sent, pings matched, a Close answered), which
//! is why the driver parses ahead while a handler's callback is pending.
//!
//! Writes are corked while the reader hands out a batch of messages: the replies queued
//! meanwhile go out together, in one vectored write, when the batch is done or as soon as
//! anyone waits.

use super::Transport;
use super::shared::Shared;
use super::timer::Timer;
use crate::close::CloseCode;
use crate::config::Config;
use crate::connection::Outgoing;
use crate::error::{Error, Result};
use crate::handshake::Negotiated;
use crate::message::Message;
use crate::meter::Meters;
use crate::pool;
use crate::pool::{MessageQueue, ReadBuffer};
use crate::protocol::{Protocol, ReadyState, Role};
use crate::shutdown::Registration;
use bytes::BytesMut;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

/// Read at least this much at a time when no frame size says otherwise.
const READ_CHUNK: usize = pool::READ_BUFFER;
/// Never reserve more than this at once for a large frame still arriving.
const MAX_READ_RESERVE: usize = 1 << 20;
/// Slices per vectored write.
const MAX_IO_SLICES: usize = 64;
/// Messages parsed ahead of the application, at most.
pub(crate) const MAX_INBOX: usize = 256;
/// Bytes read while the application is still busy with earlier input, at most: the
/// messages read meanwhile keep their read buffers alive.
pub(crate) const MAX_BACKLOG_BYTES: usize = 256 << 10;
/// A read goes into the room left in the read buffer while it is at least this much;
/// below it, a fresh buffer is taken (so a trickle of small reads shares one buffer).
const MIN_READ_ROOM: usize = 4 << 10;

/// The time, as the sans-IO core takes it (tokio's clock, which tests can pause).
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// What few connections need, in one box: an open connection's size matters.
#[derive(Default)]
struct Rare {
    /// The error that ended the connection, reported once the messages before it are.
    error: Option<Error>,
    /// The subprotocol negotiated in the handshake.
    protocol: Option<String>,
    /// Opened on an HTTP/2 stream (RFC 8441).
    http2: bool,
    /// Our half of the HTTP/2 stream is ended (END_STREAM sent after our Close).
    half_closed: bool,
    /// Membership of a graceful shutdown, left when the connection ends (or, with a
    /// handler, once its `on_close` ran).
    registration: Option<Registration>,
    /// A connecting socket's config, for the extensions its handshake will negotiate.
    connecting: Option<Config>,
}

/// One connection's stream, protocol and buffers.
pub(crate) struct Driver<S> {
    /// `None` while connecting, and once finished.
    io: Option<S>,
    pub(crate) proto: Protocol,
    /// What was read and not parsed yet; `None` (no buffer) while the connection is idle.
    rbuf: Option<ReadBuffer>,
    /// Messages parsed ahead of the application, in order; `None` while there are none.
    inbox: Option<MessageQueue>,
    /// Bytes read since the application last caught up with its input.
    backlog: usize,
    /// A handler's serve loop is handing out a batch: sends queue their frames for one
    /// write at its end (or as soon as a callback waits). A stream reader never corks: it
    /// decides when to flush, with `send` (at once) or the `Sink`'s `feed` and `flush`.
    corked: bool,
    /// The stream was attached: the connection opened, whatever happened since.
    opened: bool,
    /// A handler is served on the connection: its shutdown registration is kept until
    /// `on_close` has run.
    serving: bool,
    timer: Timer,
    rare: Option<Box<Rare>>,
    /// Metrics, once an adapter labelled the connection (no size without the feature).
    meters: Meters,
}

/// How far [`Driver::drive`] goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drive {
    /// Until a message is ready for the reader.
    Next,
    /// As far as the bounds allow: someone other than the reader waits, or the reader's
    /// callback is pending, and control frames must not wait behind it.
    Ahead,
}

impl<S: Transport> Driver<S> {
    /// A driver over `io`, open, or connecting when `io` is `None`.
    pub(crate) fn new(io: Option<S>, role: Role, config: &Config, negotiated: Negotiated, leftover: BytesMut) -> Self {
        let mut driver = Self {
            opened: io.is_some(),
            io,
            proto: Protocol::new(role, config),
            rbuf: (!leftover.is_empty()).then(|| Box::new(leftover)),
            inbox: None,
            backlog: 0,
            corked: false,
            serving: false,
            timer: Timer::default(),
            rare: None,
            meters: Meters::default(),
        };
        // Messages received before a violation are handed out, and answered, before the
        // connection fails.
        driver.proto.defer_failures(true);
        if driver.opened {
            driver.install(config, negotiated);
            driver.proto.open(now());
        } else {
            driver.rare().connecting = Some(config.clone());
        }
        driver
    }

    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// Installs what the handshake negotiated: extensions and the subprotocol.
    fn install(&mut self, config: &Config, negotiated: Negotiated) {
        #[cfg(feature = "deflate")]
        if let (Some(agreed), Some(options)) = (negotiated.deflate, config.deflate.as_ref()) {
            self.proto.set_extension(Box::new(crate::deflate::Deflate::new(agreed, options)));
        }
        let _ = config; // used only with the deflate feature
        if negotiated.protocol.is_some() {
            self.rare().protocol = negotiated.protocol;
        }
        if negotiated.http2 {
            self.rare().http2 = true;
        }
    }

    /// Opens a connecting socket on `io`, and sends what was queued.
    pub(crate) fn attach(&mut self, shared: &Shared<S>, io: S, negotiated: Negotiated, leftover: BytesMut) {
        if self.io.is_some() || self.proto.is_ended() {
            return;
        }
        let config = self.rare.as_mut().and_then(|r| r.connecting.take()).unwrap_or_default();
        self.install(&config, negotiated);
        self.io = Some(io);
        self.opened = true;
        self.rbuf = (!leftover.is_empty()).then(|| Box::new(leftover));
        self.proto.open(now());
        self.write_now(shared);
        self.schedule(shared);
        shared.fan.wake_all();
    }

    /// Whether the connection is over: nothing more is read, written or reported but what
    /// waits in the inbox and the error.
    pub(crate) fn is_finished(&self) -> bool {
        self.io.is_none() && self.proto.is_ended()
    }

    /// Whether the stream was ever attached.
    pub(crate) fn opened(&self) -> bool {
        self.opened
    }

    /// The HTTP version the WebSocket was opened over.
    pub(crate) fn http_version(&self) -> http::Version {
        if self.is_http2() { http::Version::HTTP_2 } else { http::Version::HTTP_11 }
    }

    /// The subprotocol negotiated in the handshake.
    pub(crate) fn protocol(&self) -> Option<&str> {
        self.rare.as_ref().and_then(|r| r.protocol.as_deref())
    }

    /// The error that ended the connection, once (after the messages before it).
    pub(crate) fn take_error(&mut self) -> Option<Error> {
        self.rare.as_mut().and_then(|r| r.error.take())
    }

    /// Keeps the first error that ended the connection.
    fn set_error(&mut self, error: Error) {
        if self.rare.as_ref().is_none_or(|r| r.error.is_none()) {
            self.meters.error(&error);
            self.rare().error = Some(error);
        }
    }

    /// Reports the connection's metrics from now on, labelled `adapter`; its handshake
    /// started at `started`.
    pub(crate) fn meter(&mut self, adapter: &'static str, started: std::time::Instant) {
        if self.opened && !self.is_finished() {
            self.meters.open(adapter, started);
        }
    }

    /// Joins a graceful shutdown; a connection already over leaves it at once.
    pub(crate) fn watch(&mut self, registration: Registration) {
        if !self.is_finished() {
            self.rare().registration = Some(registration);
        }
    }

    /// A handler serves the connection from now on: see [`Driver::serving`].
    pub(crate) fn set_serving(&mut self) {
        self.serving = true;
    }

    /// The handler's `on_close` has run: leave the graceful shutdown.
    pub(crate) fn take_registration(&mut self) -> Option<Registration> {
        self.rare.as_mut().and_then(|r| r.registration.take())
    }

    // ---- writing ----

    /// Writes queued bytes until none remain or the stream would block: the one place
    /// that writes. Senders waiting on backpressure are woken once the queue drops below
    /// its high-water mark.
    fn poll_write(&mut self, shared: &Shared<S>) -> Poll<io::Result<()>> {
        let Some(io) = self.io.as_mut() else { return Poll::Ready(Ok(())) };
        let waker = shared.io_waker();
        let mut cx = Context::from_waker(&waker);
        let was_backlogged = self.proto.is_backlogged();
        let mut written = 0;
        let result = loop {
            let out = self.proto.out();
            if out.is_empty() {
                break match Pin::new(&mut *io).poll_flush(&mut cx) {
                    // Our Close is out: a stream that can no longer be flushed (an HTTP/2
                    // stream the peer reset with NO_ERROR after its own Close) still has
                    // the peer's Close and end to be read.
                    Poll::Ready(Err(error)) if matches!(self.proto.ready_state(), ReadyState::Closing | ReadyState::Closed) => {
                        tracing::debug!(%error, "flush failed after the close frame was written");
                        Poll::Ready(Ok(()))
                    }
                    flushed => flushed,
                };
            }
            let mut slices = [IoSlice::new(&[]); MAX_IO_SLICES];
            let n = out.io_slices(&mut slices);
            match Pin::new(&mut *io).poll_write_vectored(&mut cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => break Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.proto.written(n);
                    written += n;
                }
                Poll::Ready(Err(e)) => break Poll::Ready(Err(e)),
                Poll::Pending => break Poll::Pending,
            }
        };
        if written > 0 {
            self.meters.wrote(written, self.proto.buffered());
        }
        if was_backlogged && !self.proto.is_backlogged() {
            shared.fan.wake_all();
        }
        result
    }

    /// Writes what the stream takes now, without waiting; a failure ends the connection.
    pub(crate) fn write_now(&mut self, shared: &Shared<S>) {
        if let Poll::Ready(Err(e)) = self.poll_write(shared) {
            self.io_failed(shared, e);
        }
    }

    /// Encodes a message into the write queue. A Close starts the close handshake, and its
    /// deadline now.
    #[inline]
    fn queue(&mut self, message: Outgoing<'_>) -> Result<()> {
        if self.proto.is_ended() {
            return Err(Error::Closed);
        }
        match message {
            Outgoing::Message(Message::Close(frame)) => return self.queue_close(frame),
            Outgoing::Message(message) => self.proto.send(message)?,
            Outgoing::Prepared(prepared) => self.proto.send_prepared(prepared)?,
        }
        self.meters.sent();
        Ok(())
    }

    #[cold]
    fn queue_close(&mut self, frame: Option<crate::CloseFrame>) -> Result<()> {
        self.proto.close(frame)?;
        let _ = self.proto.handle_timeout(now());
        Ok(())
    }

    /// [`Driver::send`] for a message: a data message goes straight to the protocol (which
    /// refuses it once the connection is closing).
    #[inline]
    pub(crate) fn send_message(&mut self, shared: &Shared<S>, message: Message) -> Result<()> {
        if let Message::Close(frame) = message {
            return self.close(shared, frame);
        }
        self.proto.send(message)?;
        self.meters.sent();
        if !self.corked {
            self.write_now(shared);
        }
        Ok(())
    }

    /// Queues a message, and writes it unless the reader is handing out a batch.
    #[inline]
    pub(crate) fn send(&mut self, shared: &Shared<S>, message: Outgoing<'_>) -> Result<()> {
        if let Outgoing::Message(Message::Close(frame)) = message {
            return self.close(shared, frame);
        }
        self.queue(message)?;
        if !self.corked {
            self.write_now(shared);
        }
        Ok(())
    }

    /// Queues a message without writing it: a `Sink`'s `start_send`, and a broadcaster
    /// that feeds, then flushes once. At the high-water mark: [`Error::Full`].
    pub(crate) fn feed(&mut self, message: Outgoing<'_>) -> Result<()> {
        if self.proto.is_backlogged() && !self.proto.is_ended() {
            return Err(Error::Full);
        }
        self.queue(message)
    }

    /// Writes what is queued, unless the reader's batch will.
    pub(crate) fn flush_queued(&mut self, shared: &Shared<S>) {
        if !self.corked && !self.proto.out().is_empty() {
            self.write_now(shared);
        }
    }

    /// Starts the close handshake, written at once; the reader completes it.
    pub(crate) fn close(&mut self, shared: &Shared<S>, frame: Option<crate::CloseFrame>) -> Result<()> {
        self.queue(Outgoing::Message(Message::Close(frame)))?;
        self.write_now(shared);
        self.schedule(shared);
        shared.fan.wake_all();
        Ok(())
    }

    /// Sends a ping whose pong [`Protocol::ping_answered`] will report.
    pub(crate) fn ping(&mut self, shared: &Shared<S>, payload: bytes::Bytes) -> Result<u64> {
        if self.proto.is_ended() {
            return Err(Error::Closed);
        }
        let seq = self.proto.ping(payload)?;
        if !self.corked {
            self.write_now(shared);
        }
        Ok(seq)
    }

    // ---- reading ----

    /// Reads into the read buffer, allocating it only when there is something to read and
    /// releasing it when the stream is idle.
    fn poll_read(&mut self, shared: &Shared<S>) -> Poll<io::Result<usize>> {
        let Some(io) = self.io.as_mut() else { return Poll::Ready(Ok(0)) };
        let rbuf = self.rbuf.get_or_insert_with(pool::read_buffer);
        let room = rbuf.capacity() - rbuf.len();
        let want = match self.proto.pending_frame_bytes(rbuf) {
            0 if room >= MIN_READ_ROOM => room,
            0 => READ_CHUNK,
            // The tail of a frame that already fits: growing now would copy the whole
            // frame received so far (a 1 MiB message's last 10 KiB must not cost 1 MiB).
            n if n <= room => n,
            n => n.clamp(READ_CHUNK, MAX_READ_RESERVE),
        };
        rbuf.reserve(want);
        let waker = shared.io_waker();
        let mut cx = Context::from_waker(&waker);
        let result = tokio_util::io::poll_read_buf(Pin::new(io), &mut cx, &mut **rbuf);
        if result.is_pending() && rbuf.is_empty() {
            if let Some(rbuf) = self.rbuf.take() {
                pool::recycle_read_buffer(rbuf);
            }
        }
        result
    }

    /// Parses the complete frames of the read buffer into the inbox, up to its bound. A
    /// protocol violation is kept to be reported after the messages before it.
    fn parse(&mut self, shared: &Shared<S>) {
        let Some(rbuf) = self.rbuf.as_deref_mut() else { return self.fail_if_caught_up() };
        while self.inbox.as_ref().map_or(0, |q| q.len()) < MAX_INBOX {
            match self.proto.read(rbuf) {
                Ok(Some(message)) => {
                    if matches!(message, Message::Pong(_)) {
                        // Someone may await this pong.
                        shared.fan.wake_all();
                    }
                    if message.is_data() {
                        self.meters.received();
                    } else if self.serving {
                        continue; // acted on already; a handler sees data only
                    }
                    self.inbox.get_or_insert_with(pool::queue).push_back(message);
                }
                Ok(None) => break,
                Err(e) => {
                    self.set_error(Error::Protocol(e));
                    return;
                }
            }
        }
        self.fail_if_caught_up();
    }

    /// A violation fails the connection once everything received before it is handled
    /// (and answered).
    fn fail_if_caught_up(&mut self) {
        if self.proto.has_deferred_failure() && self.inbox_is_empty() && !self.corked {
            if let Some(e) = self.proto.fail_deferred() {
                self.set_error(Error::Protocol(e));
            }
        }
    }

    fn inbox_is_empty(&self) -> bool {
        self.inbox.as_ref().is_none_or(|q| q.is_empty())
    }

    /// Whether the socket runs on an HTTP/2 stream.
    fn is_http2(&self) -> bool {
        self.rare.as_ref().is_some_and(|r| r.http2)
    }

    /// Whether more input may be read now: the application is not too far behind. Once
    /// closed, a client (and either side over HTTP/2) drains the input to its end.
    fn may_read(&self) -> bool {
        (self.proto.wants_input() || (self.proto.is_closed() && self.is_http2()))
            && self.inbox.as_ref().map_or(0, |q| q.len()) < MAX_INBOX
            && self.backlog < MAX_BACKLOG_BYTES
    }

    /// Moves the connection forward as far as it goes without waiting (timers, writes,
    /// the end of the transport, reads and parsing), and registers `cx` to be woken when
    /// there is more to do.
    pub(crate) fn drive(&mut self, shared: &Shared<S>, cx: &mut Context<'_>, how: Drive) {
        shared.fan.register(cx.waker());
        if self.io.is_none() {
            return; // connecting, or finished
        }
        loop {
            if shared.timer_fired.load(Ordering::Acquire) && shared.timer_fired.swap(false, Ordering::AcqRel) {
                self.timer.fired();
                if let Err(e) = self.proto.handle_timeout(now()) {
                    return self.finish(shared, Some(e));
                }
            }
            if let Poll::Ready(Err(e)) = self.poll_write(shared) {
                return self.io_failed(shared, e);
            }
            if self.proto.is_ended() {
                return self.finish(shared, None);
            }
            if self.proto.is_closed() {
                if self.is_http2() {
                    // HTTP/2, either side: end our half of the stream once the Close is
                    // out, then read to the peer's end (below). A stream dropped while the
                    // peer still sends is reset, and the peer's writes fail before it has
                    // read our Close.
                    if self.proto.out().is_empty() && !self.rare().half_closed && self.poll_shutdown(shared).is_ready() {
                        self.rare().half_closed = true;
                    }
                } else if self.proto.role() == Role::Server {
                    // §7.1.1: the server closes the TCP connection first, once its Close is out.
                    if self.proto.out().is_empty() && self.poll_shutdown(shared).is_ready() {
                        return self.finish(shared, None);
                    }
                    break;
                }
            }
            let open_before = !self.proto.is_closed();
            self.parse(shared);
            if open_before && self.proto.is_closed() {
                // The close handshake completed, or the connection failed: write the
                // Close and go on to end the transport (§7.1.1), whether or not anyone
                // reads what came before.
                continue;
            }
            if how == Drive::Next && !self.inbox_is_empty() {
                break;
            }
            if !self.may_read() {
                break;
            }
            let busy = self.corked || !self.inbox_is_empty();
            match self.poll_read(shared) {
                Poll::Pending => break,
                Poll::Ready(Ok(0)) => {
                    // The end of the stream closes cleanly only after the close handshake.
                    let clean = self.proto.is_closed();
                    return self.finish(shared, (!clean).then_some(Error::ConnectionReset));
                }
                Poll::Ready(Ok(n)) => {
                    self.meters.read(n);
                    self.proto.received(now());
                    self.backlog = if busy { self.backlog + n } else { 0 };
                }
                Poll::Ready(Err(e)) => return self.io_failed(shared, e),
            }
        }
        // What parsing queued last (a pong, the reply to a Close) goes out now.
        if !self.proto.out().is_empty() {
            if let Poll::Ready(Err(e)) = self.poll_write(shared) {
                return self.io_failed(shared, e);
            }
        }
        self.schedule(shared);
    }

    /// Shuts the write side down if that completes without waiting.
    fn poll_shutdown(&mut self, shared: &Shared<S>) -> Poll<()> {
        let Some(io) = self.io.as_mut() else { return Poll::Ready(()) };
        let waker = shared.io_waker();
        let mut cx = Context::from_waker(&waker);
        Pin::new(io).poll_shutdown(&mut cx).map(|_| ())
    }

    /// Arms the timer for the protocol's next deadline.
    fn schedule(&mut self, shared: &Shared<S>) {
        if let Some(at) = self.proto.poll_timeout() {
            let at = tokio::time::Instant::from_std(at);
            self.timer.arm(at, || shared.expire_target());
        }
    }

    /// Drives until the inbox holds a message, the connection ended with an error (taken
    /// here), or it ended: `Some(Ok)`, `Some(Err)` or `None`; pending until one of them,
    /// holding no inbox meanwhile (an idle connection keeps no buffer).
    fn poll_inbox(&mut self, shared: &Shared<S>, cx: &mut Context<'_>) -> Poll<Option<Result<()>>> {
        loop {
            if !self.inbox_is_empty() {
                return Poll::Ready(Some(Ok(())));
            }
            if let Some(error) = self.take_error() {
                return Poll::Ready(Some(Err(error)));
            }
            if self.is_finished() {
                return Poll::Ready(None);
            }
            self.drive(shared, cx, Drive::Next);
            if self.inbox_is_empty() && !self.is_finished() && self.rare.as_ref().is_none_or(|r| r.error.is_none()) {
                if let Some(inbox) = self.inbox.take() {
                    pool::recycle_queue(inbox);
                }
                return Poll::Pending;
            }
        }
    }

    /// The next message for a stream reader, the error that ended the connection, or its
    /// end; pending until one of them.
    pub(crate) fn poll_next(&mut self, shared: &Shared<S>, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        if let Some(message) = self.inbox.as_mut().and_then(|q| q.pop_front()) {
            return Poll::Ready(Some(Ok(message)));
        }
        Poll::Ready(match ready!(self.poll_inbox(shared, cx)) {
            Some(Ok(())) => self.inbox.as_mut().and_then(|q| q.pop_front()).map(Ok),
            Some(Err(error)) => Some(Err(error)),
            None => None,
        })
    }

    /// Hands a handler's serve loop every message parsed so far, in `batch` (empty when
    /// called); `Some(Err)` for the error that ended the connection, `None` at its end.
    /// Replies to the previous batch go out first, in one write.
    pub(crate) fn poll_batch(
        &mut self,
        shared: &Shared<S>,
        cx: &mut Context<'_>,
        batch: &mut Option<MessageQueue>,
    ) -> Poll<Option<Result<()>>> {
        self.corked = false;
        self.backlog = 0;
        let ready = self.poll_inbox(shared, cx);
        match &ready {
            Poll::Ready(Some(Ok(()))) => {
                // The two buffers trade places: the drained one takes the next parse.
                std::mem::swap(batch, &mut self.inbox);
                self.corked = true;
            }
            Poll::Pending => {
                if let Some(batch) = batch.take() {
                    pool::recycle_queue(batch);
                }
            }
            Poll::Ready(_) => {}
        }
        ready
    }

    // ---- the end ----

    /// The stream failed. Once the close handshake is over, that is only how the transport
    /// ended (a peer that resets its TCP connection, or an HTTP/2 stream reset with
    /// NO_ERROR, after both Close frames): the connection closed cleanly all the same.
    fn io_failed(&mut self, shared: &Shared<S>, error: io::Error) {
        if self.proto.is_closed() && !self.proto.is_failed() {
            tracing::debug!(%error, "i/o error after the close handshake");
            return self.finish(shared, None);
        }
        self.finish(shared, Some(Error::Io(error)));
    }

    /// Ends the connection, whatever ended it: the stream closed (releasing the socket)
    /// and every buffer released now, even if the application keeps handles for a while
    /// (all but the messages parsed and not yet read, which the reader still gets);
    /// waiting senders and pong waiters woken to learn it is over. `error` is reported to
    /// the reader after the messages before it.
    pub(crate) fn finish(&mut self, shared: &Shared<S>, error: Option<Error>) {
        if self.is_finished() {
            return;
        }
        if let Some(error) = error {
            tracing::debug!(%error, "websocket connection ended");
            self.set_error(error);
        }
        self.proto.end();
        self.meters.closed(self.proto.close_status().map_or(CloseCode::ABNORMAL, |(code, _)| code));
        if let Some(registration) = self.rare.as_mut().and_then(|r| r.registration.as_mut()) {
            // The peer's Close arrived and nothing failed: the close handshake completed.
            let clean = !self.proto.is_failed() && self.proto.close_status().is_some_and(|(code, _)| code != CloseCode::ABNORMAL);
            registration.set_closed_cleanly(clean);
        }
        self.io = None;
        self.rbuf = None;
        // Messages parsed before the end (a peer's last message, read together with its
        // Close) stay for the reader, which gets them before the end.
        if self.inbox_is_empty() {
            if let Some(inbox) = self.inbox.take() {
                pool::recycle_queue(inbox);
            }
        }
        self.corked = false;
        self.timer.cancel();
        if !self.serving {
            drop(self.take_registration());
        }
        if let Some(rare) = self.rare.as_mut() {
            rare.connecting = None;
        }
        shared.fan.wake_all();
    }
}
