//! The async driver: a [`WebSocket`] over any `AsyncRead + AsyncWrite`.
//!
//! One [`Protocol`] and one stream sit behind a mutex that is never held across an await.
//! Whoever polls drives the I/O: the reader (the [`Stream`] side, or the [`Handler`]
//! loop) parses input, answers pings and closes, runs the keepalive and close timers, and
//! flushes what others queued; a sender from any task encodes its frame and writes it at
//! once. The stream is always polled with a proxy waker that fans out to every task
//! waiting on it, so a reader and several writers in different tasks never steal each
//! other's wake-ups.
//!
//! Writes are corked per batch: while complete frames the reader has not handled yet are
//! still buffered, replies are queued and go out together, in one vectored write, when the
//! batch is done.
//!
//! [`Handler`]: crate::Handler

use crate::close::{CloseCode, CloseFrame};
use crate::config::Config;
use crate::connection::{Connection, Link, Outgoing};
use crate::error::{Error, Result};
use crate::handshake::Negotiated;
use crate::message::Message;
use crate::protocol::{Protocol, ReadyState, Role};
use crate::utf8::Utf8Bytes;
use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use futures_sink::Sink;
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

/// Read at least this much at a time when no frame size says otherwise.
const READ_CHUNK: usize = 64 << 10;
/// Never reserve more than this at once for a large frame still arriving.
const MAX_READ_RESERVE: usize = 1 << 20;
/// Slices per vectored write.
const MAX_IO_SLICES: usize = 64;

/// The wakers of every task waiting on one direction of the stream. One waiter (the usual
/// case) is kept inline, so an idle connection's fans allocate nothing.
#[derive(Default)]
struct WakerFan(Mutex<Waiters>);

#[derive(Default)]
struct Waiters {
    first: Option<Waker>,
    more: Vec<Waker>,
}

impl WakerFan {
    fn register(&self, waker: &Waker) {
        let mut waiters = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match &waiters.first {
            None => waiters.first = Some(waker.clone()),
            Some(first) if first.will_wake(waker) => {}
            Some(_) => {
                if !waiters.more.iter().any(|w| w.will_wake(waker)) {
                    waiters.more.push(waker.clone());
                }
            }
        }
    }

    fn wake_all(&self) {
        let (first, more) = {
            let mut waiters = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let more = if waiters.more.is_empty() { Vec::new() } else { std::mem::take(&mut waiters.more) };
            (waiters.first.take(), more)
        };
        if let Some(w) = first {
            w.wake();
        }
        for w in more {
            w.wake();
        }
    }
}

/// The tasks waiting on the stream, by direction, in one allocation. The stream itself
/// only ever sees the pair's one waker, which wakes both directions: a wake the other
/// direction did not need costs a poll that finds nothing to do, while a second waker
/// would cost a second allocation for the connection's life.
#[derive(Default)]
struct Fans {
    read: WakerFan,
    write: WakerFan,
}

impl Wake for Fans {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.read.wake_all();
        self.write.wake_all();
    }
}

/// The timing options the driver needs from [`Config`].
#[derive(Debug, Clone, Copy)]
struct Timing {
    high_water: usize,
    close_timeout: Duration,
    ping_interval: Option<Duration>,
    pong_timeout: Duration,
}

/// What one connection shares between its handles.
pub(crate) struct Shared<S> {
    inner: Mutex<Inner<S>>,
    fans: Arc<Fans>,
    /// The waker the stream is polled with: wakes every waiter of both fans.
    waker: Waker,
    /// Application handles alive: the socket, its halves, and every [`Connection`].
    handles: AtomicUsize,
    timing: Timing,
    /// A connecting socket's config, for the extensions its handshake will negotiate
    /// ([`Attacher::attach`]); `None` once open, to keep open connections small.
    connecting_config: Option<Box<Config>>,
}

struct Keepalive {
    timer: Pin<Box<Sleep>>,
    last_read: Instant,
    /// A keepalive ping went out and nothing has arrived since.
    awaiting: bool,
}

struct Inner<S> {
    io: Option<S>,
    proto: Protocol,
    rbuf: BytesMut,
    protocol: Option<String>,
    /// The stream has ended: nothing more will be read or reported.
    finished: bool,
    /// An error to report on the next poll of the stream (boxed, like the close status:
    /// rare, and an open connection's size matters).
    pending_error: Option<Box<Error>>,
    /// The code and reason `on_close` reports, once known.
    close_status: Option<Box<(CloseCode, Utf8Bytes)>>,
    close_deadline: Option<Pin<Box<Sleep>>>,
    /// The write half of the stream was shut down (server) or EOF seen (client).
    shut_down: bool,
    keepalive: Option<Keepalive>,
    pings: VecDeque<(Bytes, oneshot::Sender<()>)>,
    /// Membership of the config's graceful shutdown, left when the connection ends.
    registration: Option<crate::shutdown::Registration>,
}

/// The close status of a connection that ended without a Close frame (1006).
fn abnormal() -> Box<(CloseCode, Utf8Bytes)> {
    Box::new((CloseCode::ABNORMAL, Utf8Bytes::new()))
}

impl<S> Shared<S> {
    fn lock(&self) -> MutexGuard<'_, Inner<S>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Inner<S> {
    /// Writes queued bytes until none remain or the stream would block.
    fn poll_write_out(&mut self, shared: &Shared<S>) -> Poll<io::Result<()>> {
        let Some(io) = self.io.as_mut() else {
            // Connecting: written on attach. Finished: nothing is written any more.
            return if self.finished { Poll::Ready(Ok(())) } else { Poll::Pending };
        };
        let mut cx = Context::from_waker(&shared.waker);
        let was_high = self.proto.buffered() >= shared.timing.high_water;
        let mut wrote = false;
        let result = loop {
            let out = self.proto.out();
            if out.is_empty() {
                break match Pin::new(&mut *io).poll_flush(&mut cx) {
                    Poll::Ready(r) => Poll::Ready(r),
                    Poll::Pending => Poll::Pending,
                };
            }
            let mut slices = [IoSlice::new(&[]); MAX_IO_SLICES];
            let n = out.io_slices(&mut slices);
            match Pin::new(&mut *io).poll_write_vectored(&mut cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => break Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    out.advance(n);
                    wrote = true;
                }
                Poll::Ready(Err(e)) => break Poll::Ready(Err(e)),
                Poll::Pending => break Poll::Pending,
            }
        };
        if wrote && was_high && self.proto.buffered() < shared.timing.high_water {
            shared.fans.write.wake_all();
        }
        result
    }

    /// Encodes a message into the write buffer, without writing.
    fn queue(&mut self, message: Outgoing<'_>) -> Result<()> {
        match message {
            Outgoing::Message(message) => self.proto.send(message),
            Outgoing::Prepared(prepared) => self.proto.send_prepared(prepared),
        }
    }

    /// Writes what can be written now, without waiting; a failure is kept for the reader.
    fn write_now(&mut self, shared: &Shared<S>) {
        if let Poll::Ready(Err(e)) = self.poll_write_out(shared) {
            self.fail_io(e);
        }
    }

    fn fail_io(&mut self, e: io::Error) {
        tracing::debug!(error = %e, "websocket i/o error");
        self.proto.transport_closed();
        self.close_status.get_or_insert_with(abnormal);
        self.shut_down = true;
        if self.pending_error.is_none() && !self.finished {
            self.pending_error = Some(Box::new(Error::Io(e)));
        }
    }

    fn arm_close_deadline(&mut self, timeout: Duration) {
        if self.close_deadline.is_none() {
            self.close_deadline = Some(Box::pin(tokio::time::sleep(timeout)));
        }
    }

    fn close_deadline_passed(&mut self, cx: &mut Context<'_>) -> bool {
        self.close_deadline.as_mut().is_some_and(|d| d.as_mut().poll(cx).is_ready())
    }

    /// The reader's poll: returns the next message, or `None` once the connection is
    /// closed and the stream shut down.
    fn poll_next(&mut self, shared: &Shared<S>, cx: &mut Context<'_>) -> Poll<Option<Result<Message>>> {
        loop {
            if let Some(e) = self.pending_error.take() {
                return Poll::Ready(Some(Err(*e)));
            }
            if self.finished {
                return Poll::Ready(None);
            }
            if self.io.is_none() {
                shared.fans.read.register(cx.waker());
                return Poll::Pending;
            }
            match self.proto.read(&mut self.rbuf) {
                Ok(Some(message)) => {
                    self.on_message(shared, &message);
                    return Poll::Ready(Some(Ok(message)));
                }
                Ok(None) => {}
                Err(e) => {
                    self.close_status = Some(Box::new((e.close_code(), Utf8Bytes::new())));
                    self.arm_close_deadline(shared.timing.close_timeout);
                    self.write_now(shared);
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
            match self.proto.ready_state() {
                ReadyState::Closed => return self.poll_finish(shared, cx).map(|()| None),
                ReadyState::Closing => {
                    self.arm_close_deadline(shared.timing.close_timeout);
                    if self.close_deadline_passed(cx) {
                        return Poll::Ready(Some(Err(self.time_out(shared, Error::CloseTimeout))));
                    }
                }
                _ => {
                    if let Some(e) = self.poll_keepalive(shared, cx) {
                        return Poll::Ready(Some(Err(self.time_out(shared, e))));
                    }
                }
            }
            if !self.proto.out().is_empty() {
                shared.fans.write.register(cx.waker());
                self.write_now(shared);
                if self.pending_error.is_some() {
                    continue;
                }
            }
            shared.fans.read.register(cx.waker());
            match ready!(self.poll_read(shared)) {
                Ok(0) => {
                    self.rbuf = BytesMut::new();
                    self.proto.transport_closed();
                    self.shut_down = true;
                    if self.close_status.is_none() {
                        self.close_status = Some(abnormal());
                        self.finished = true;
                        return Poll::Ready(Some(Err(Error::ConnectionReset)));
                    }
                }
                Ok(_) => {
                    if let Some(k) = self.keepalive.as_mut() {
                        k.last_read = Instant::now();
                        k.awaiting = false;
                    }
                }
                Err(e) => self.fail_io(e),
            }
        }
    }

    /// Reads into the read buffer, allocating it only when there is something to read and
    /// releasing it when the stream is idle.
    fn poll_read(&mut self, shared: &Shared<S>) -> Poll<io::Result<usize>> {
        let Some(io) = self.io.as_mut() else { return Poll::Pending };
        let want = match self.proto.pending_frame_bytes(&self.rbuf) {
            0 => READ_CHUNK,
            // The tail of a frame that already fits: growing now would copy the whole
            // frame received so far (a 1 MiB message's last 10 KiB must not cost 1 MiB).
            n if n <= self.rbuf.capacity() - self.rbuf.len() => n,
            n => n.clamp(READ_CHUNK, MAX_READ_RESERVE),
        };
        self.rbuf.reserve(want);
        let mut cx = Context::from_waker(&shared.waker);
        let result = tokio_util::io::poll_read_buf(Pin::new(io), &mut cx, &mut self.rbuf);
        // The write buffer releases its own memory whenever it is drained.
        if result.is_pending() && self.rbuf.is_empty() {
            self.rbuf = BytesMut::new();
        }
        result
    }

    /// Bookkeeping for a message about to be handed to the application.
    fn on_message(&mut self, shared: &Shared<S>, message: &Message) {
        match message {
            Message::Pong(payload) => {
                if let Some(i) = self.pings.iter().position(|(p, _)| p == payload) {
                    // A pong answers its ping and every ping sent before it (§5.5.3).
                    for (_, tx) in self.pings.drain(..=i) {
                        let _ = tx.send(());
                    }
                }
            }
            Message::Close(frame) => {
                let reason = frame.as_ref().map(|f| f.reason.clone()).unwrap_or_default();
                self.close_status = Some(Box::new((CloseFrame::code_of(frame.as_ref()), reason)));
                self.arm_close_deadline(shared.timing.close_timeout);
                // The reply goes out now, whatever the application does next; a server
                // then closes the TCP connection (§7.1.1) without waiting to be polled.
                self.write_now(shared);
                if self.proto.role() == Role::Server && self.proto.out().is_empty() {
                    let _ = self.try_shutdown(shared);
                }
            }
            _ => {}
        }
    }

    /// The close handshake is over (or the connection failed): flush, then shut the
    /// stream down (server) or wait for the server to (client), within the close timeout.
    fn poll_finish(&mut self, shared: &Shared<S>, cx: &mut Context<'_>) -> Poll<()> {
        self.arm_close_deadline(shared.timing.close_timeout);
        loop {
            if self.shut_down || self.close_deadline_passed(cx) {
                self.finish(shared);
                return Poll::Ready(());
            }
            shared.fans.write.register(cx.waker());
            match self.poll_write_out(shared) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => self.shut_down = true,
                Poll::Ready(Ok(())) => {
                    match self.proto.role() {
                        Role::Server => ready!(self.try_shutdown(shared)),
                        Role::Client => {
                            // §7.1.1: the server closes the TCP connection first; drain
                            // until it does.
                            shared.fans.read.register(cx.waker());
                            self.rbuf.clear();
                            match ready!(self.poll_read(shared)) {
                                Ok(0) | Err(_) => self.shut_down = true,
                                Ok(_) => {}
                            }
                        }
                    }
                }
            }
        }
    }

    /// Shuts the write side down if that completes without waiting.
    fn try_shutdown(&mut self, shared: &Shared<S>) -> Poll<()> {
        let Some(io) = self.io.as_mut() else { return Poll::Pending };
        let mut cx = Context::from_waker(&shared.waker);
        let done = Pin::new(io).poll_shutdown(&mut cx).map(|_| ());
        if done.is_ready() {
            self.shut_down = true;
        }
        done
    }

    /// Ends the connection for good; senders waiting on backpressure are woken to learn
    /// it is gone.
    fn finish(&mut self, shared: &Shared<S>) {
        self.finished = true;
        // Release the stream (closing the socket) and every buffer now, even if the
        // application keeps handles for a while.
        self.io = None;
        self.proto.out().clear();
        self.proto.transport_closed();
        self.close_status.get_or_insert_with(abnormal);
        self.close_deadline = None;
        self.keepalive = None;
        self.pings.clear();
        self.rbuf = BytesMut::new();
        self.registration = None;
        shared.fans.write.wake_all();
    }

    /// Ends the connection on a timeout: the peer is gone or stuck.
    fn time_out(&mut self, shared: &Shared<S>, error: Error) -> Error {
        tracing::debug!(%error, "websocket timed out");
        self.close_status = Some(abnormal());
        self.finish(shared);
        error
    }

    /// Sends a keepalive ping after `ping_interval` without input; declares the peer dead
    /// when nothing arrives within `pong_timeout` of it.
    fn poll_keepalive(&mut self, shared: &Shared<S>, cx: &mut Context<'_>) -> Option<Error> {
        let interval = shared.timing.ping_interval?;
        if self.proto.ready_state() != ReadyState::Open {
            return None;
        }
        let k = self.keepalive.get_or_insert_with(|| Keepalive {
            timer: Box::pin(tokio::time::sleep(interval)),
            last_read: Instant::now(),
            awaiting: false,
        });
        while k.timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            if k.awaiting {
                return Some(Error::KeepaliveTimeout);
            }
            if now.duration_since(k.last_read) >= interval {
                k.awaiting = true;
                k.timer.as_mut().reset(now + shared.timing.pong_timeout);
                let _ = self.proto.send(Message::Ping(Bytes::new()));
                return None;
            }
            let next = k.last_read + interval;
            k.timer.as_mut().reset(next);
        }
        None
    }
}

/// Installs the negotiated extensions; returns the subprotocol.
fn install(proto: &mut Protocol, config: &Config, negotiated: Negotiated) -> Option<String> {
    #[cfg(feature = "deflate")]
    if let (Some(agreed), Some(options)) = (negotiated.deflate, config.deflate.as_ref()) {
        proto.set_extension(Box::new(crate::deflate::Deflate::new(agreed, options)));
    }
    let _ = (proto, config); // used only with the deflate feature
    negotiated.protocol
}

impl<S: AsyncRead + AsyncWrite + Unpin> Shared<S> {
    fn new(io: Option<S>, role: Role, config: &Config, negotiated: Negotiated, leftover: BytesMut) -> Arc<Self> {
        let fans = Arc::new(Fans::default());
        let mut proto = Protocol::new(role, config);
        let protocol = install(&mut proto, config, negotiated);
        let io_is_connecting = io.is_none();
        if io.is_some() {
            proto.open();
        }
        Arc::new(Self {
            inner: Mutex::new(Inner {
                io,
                proto,
                rbuf: leftover,
                protocol,
                finished: false,
                pending_error: None,
                close_status: None,
                close_deadline: None,
                shut_down: false,
                keepalive: None,
                pings: VecDeque::new(),
                registration: None,
            }),
            waker: Waker::from(fans.clone()),
            fans,
            handles: AtomicUsize::new(0),
            timing: Timing {
                high_water: config.write_buffer_high_water,
                close_timeout: config.close_timeout,
                ping_interval: config.ping_interval,
                pong_timeout: config.pong_timeout,
            },
            connecting_config: io_is_connecting.then(|| Box::new(config.clone())),
        })
    }

    /// Queues a message once the write buffer is below its high-water mark, and writes it
    /// unless the reader has a batch to finish first.
    fn poll_send(&self, cx: &mut Context<'_>, message: &mut Option<Outgoing<'_>>) -> Poll<Result<()>> {
        let mut inner = self.lock();
        if inner.proto.buffered() >= self.timing.high_water {
            self.fans.write.register(cx.waker());
            if let Poll::Ready(Err(e)) = inner.poll_write_out(self) {
                inner.fail_io(e);
                return Poll::Ready(Err(Error::Closed));
            }
            if inner.proto.buffered() >= self.timing.high_water {
                // The reader must keep flushing even if this task is the one woken.
                self.fans.read.wake_all();
                return Poll::Pending;
            }
        }
        let Some(message) = message.take() else { return Poll::Ready(Ok(())) };
        self.enqueue(&mut inner, message)?;
        Poll::Ready(Ok(()))
    }

    fn enqueue<'a>(&self, inner: &mut Inner<S>, message: impl Into<Outgoing<'a>>) -> Result<()> {
        if inner.finished {
            return Err(Error::Closed);
        }
        inner.queue(message.into())?;
        // Corked: the reader has complete frames still to hand out, and flushes the whole
        // batch's replies in one write once they are handled.
        let corked = inner.proto.has_buffered_frame(&inner.rbuf);
        if !corked {
            inner.write_now(self);
        }
        if (!corked && !inner.proto.out().is_empty()) || inner.proto.ready_state() == ReadyState::Closing {
            // The reader finishes a write the stream could not take (and runs the close
            // timer).
            self.fans.read.wake_all();
        }
        Ok(())
    }

    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut inner = self.lock();
        self.fans.write.register(cx.waker());
        match ready!(inner.poll_write_out(self)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) => {
                inner.fail_io(e);
                Poll::Ready(Err(Error::Closed))
            }
        }
    }

    /// Starts the close handshake with 1000 unless it has started.
    fn start_close(&self) {
        let mut inner = self.lock();
        if inner.proto.ready_state() == ReadyState::Open {
            let _ = self.enqueue(&mut inner, Message::Close(Some(CloseFrame { code: CloseCode::NORMAL, reason: Utf8Bytes::new() })));
        }
    }

    fn add_handle(&self) {
        self.handles.fetch_add(1, Ordering::Relaxed);
    }

    fn drop_handle(&self) {
        if self.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The background finisher, if one runs, closes the connection now.
            self.fans.read.wake_all();
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Shared<S> {
    /// The stream was dropped before it ended: finish the connection in the background,
    /// answering pings and the close handshake, until every handle is gone and the close
    /// handshake is over or timed out.
    fn spawn_finisher(self: Arc<Self>) {
        if self.lock().finished {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!("no tokio runtime to finish the websocket close handshake; dropping it");
            return;
        };
        runtime.spawn(async move {
            poll_fn(|cx| {
                let mut inner = self.lock();
                loop {
                    if self.handles.load(Ordering::Acquire) == 0 && inner.proto.ready_state() == ReadyState::Open {
                        let _ = inner.proto.close(Some(CloseFrame { code: CloseCode::NORMAL, reason: Utf8Bytes::new() }));
                    }
                    match inner.poll_next(&self, cx) {
                        Poll::Ready(Some(_)) => continue,
                        Poll::Ready(None) => return Poll::Ready(()),
                        Poll::Pending => return Poll::Pending,
                    }
                }
            })
            .await;
        });
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Link for Shared<S> {
    fn poll_send(&self, cx: &mut Context<'_>, message: &mut Option<Outgoing<'_>>) -> Poll<Result<()>> {
        Shared::poll_send(self, cx, message)
    }

    fn try_send(&self, message: Outgoing<'_>) -> Result<()> {
        let mut inner = self.lock();
        if inner.proto.buffered() >= self.timing.high_water {
            inner.write_now(self);
            if inner.proto.buffered() >= self.timing.high_water {
                return Err(Error::Full);
            }
        }
        self.enqueue(&mut inner, message)
    }

    fn feed(&self, message: Outgoing<'_>) -> Result<()> {
        let mut inner = self.lock();
        if inner.finished {
            return Err(Error::Closed);
        }
        if inner.proto.buffered() >= self.timing.high_water {
            return Err(Error::Full);
        }
        inner.queue(message)
    }

    fn flush_queued(&self) {
        let mut inner = self.lock();
        if inner.proto.out().is_empty() || inner.proto.has_buffered_frame(&inner.rbuf) {
            return; // nothing to do, or the reader flushes with its batch
        }
        inner.write_now(self);
        if !inner.proto.out().is_empty() || inner.pending_error.is_some() {
            // The reader finishes what the stream could not take now.
            self.fans.read.wake_all();
        }
    }

    fn ping(&self, payload: Bytes) -> Result<oneshot::Receiver<()>> {
        let mut inner = self.lock();
        let (tx, rx) = oneshot::channel();
        self.enqueue(&mut inner, Message::Ping(payload.clone()))?;
        inner.pings.push_back((payload, tx));
        Ok(rx)
    }

    fn close(&self, frame: Option<CloseFrame>) -> Result<()> {
        let mut inner = self.lock();
        self.enqueue(&mut inner, Message::Close(frame))
    }

    fn ready_state(&self) -> ReadyState {
        self.lock().proto.ready_state()
    }

    fn protocol(&self) -> Option<String> {
        self.lock().protocol.clone()
    }

    fn buffered(&self) -> usize {
        self.lock().proto.buffered()
    }

    fn add_handle(&self) {
        Shared::add_handle(self)
    }

    fn drop_handle(&self) {
        Shared::drop_handle(self)
    }

    fn abort(&self) {
        let mut inner = self.lock();
        if inner.finished {
            return;
        }
        inner.pending_error = Some(Box::new(Error::CloseTimeout));
        inner.finish(self);
        drop(inner);
        self.fans.read.wake_all();
    }
}

/// The [`Sink`] of a type holding `shared`: sends wait at the high-water mark, and close
/// starts the close handshake with 1000.
macro_rules! impl_sink {
    ($ty:ident) => {
        impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Sink<Message> for $ty<S> {
            type Error = Error;

            fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
                self.shared.poll_send(cx, &mut None)
            }

            fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
                self.shared.enqueue(&mut self.shared.lock(), item)
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
                self.shared.poll_flush(cx)
            }

            fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
                self.shared.start_close();
                self.shared.poll_flush(cx)
            }
        }
    };
}

/// A WebSocket connection over a byte stream `S`: a [`Stream`] of received [`Message`]s
/// and a [`Sink`] of messages to send.
///
/// Pings are answered, and the close handshake completed, by the driver: a received Close
/// is answered before it is handed to the application, and once the socket is dropped,
/// a background task finishes whatever handshake is still under way, bounded by the close
/// timeout. The stream ends (`None`) once the connection is closed; text arrives
/// validated, binary as shared [`Bytes`].
///
/// ```
/// use ws_core::{Config, Message, Role, WebSocket};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), ws_core::Error> {
/// let (a, b) = tokio::io::duplex(1024);
/// let mut server = WebSocket::from_raw(a, Role::Server, &Config::default());
/// let mut client = WebSocket::from_raw(b, Role::Client, &Config::default());
/// client.send(Message::text("hi")).await?;
/// assert_eq!(server.recv().await.transpose()?, Some(Message::text("hi")));
/// server.close(ws_core::CloseCode::NORMAL, "bye").await?;
/// tokio::spawn(async move { while server.recv().await.is_some() {} }); // sees the reply
/// assert!(matches!(client.recv().await, Some(Ok(Message::Close(Some(_))))));
/// assert!(client.recv().await.is_none()); // the server closed the stream
/// # Ok(()) }
/// ```
pub struct WebSocket<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    shared: Arc<Shared<S>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> WebSocket<S> {
    /// Wraps a stream on which the opening handshake has already completed.
    pub fn from_raw(io: S, role: Role, config: &Config) -> Self {
        Self::from_upgraded(io, role, config, Negotiated::default(), BytesMut::new())
    }

    /// Wraps a stream on which the handshake completed, with what it negotiated
    /// (subprotocol, extensions) and any bytes the peer sent right after its handshake
    /// (read with it).
    pub fn from_upgraded(io: S, role: Role, config: &Config, negotiated: Negotiated, leftover: BytesMut) -> Self {
        Self::with_shared(Shared::new(Some(io), role, config, negotiated, leftover), config)
    }

    /// A socket whose handshake is still under way: it is [`ReadyState::Connecting`],
    /// messages sent now are queued, and [`WebSocket::attach`] opens it.
    pub fn connecting(role: Role, config: &Config) -> Self {
        Self::with_shared(Shared::new(None, role, config, Negotiated::default(), BytesMut::new()), config)
    }

    /// Completes a [`WebSocket::connecting`] socket: attaches the stream, installs what
    /// the handshake negotiated, and sends what was queued.
    pub fn attach(&self, io: S, negotiated: Negotiated, leftover: BytesMut) {
        self.attacher().attach(io, negotiated, leftover);
    }

    /// A handle that completes (or fails) a [`WebSocket::connecting`] socket from another
    /// task.
    pub fn attacher(&self) -> Attacher<S> {
        Attacher { shared: self.shared.clone() }
    }

    /// Waits until the socket is open, for a [`WebSocket::connecting`] one; fails with the
    /// error that ended it if it never opened.
    pub async fn opened(&mut self) -> Result<()> {
        poll_fn(|cx| {
            let mut inner = self.shared.lock();
            if inner.io.is_some() {
                return Poll::Ready(Ok(()));
            }
            if inner.finished {
                return Poll::Ready(Err(inner.pending_error.take().map_or(Error::Closed, |e| *e)));
            }
            self.shared.fans.read.register(cx.waker());
            Poll::Pending
        })
        .await
    }

    fn with_shared(shared: Arc<Shared<S>>, config: &Config) -> Self {
        shared.add_handle();
        if let Some(shutdown) = &config.shutdown {
            let link: Arc<dyn Link> = shared.clone();
            let registration = shutdown.register(Arc::downgrade(&link));
            shared.lock().registration = Some(registration);
        }
        Self { shared }
    }

    /// A cheap, cloneable handle for sending from other tasks.
    pub fn connection(&self) -> Connection {
        Connection::new(self.shared.clone())
    }

    /// Receives the next message; `None` once the connection is closed.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        poll_fn(|cx| self.shared.lock().poll_next(&self.shared, cx)).await
    }

    /// Sends a message: waits while the write buffer is at its high-water mark, then queues
    /// it; it is written at once, or with the rest of the batch being handled.
    pub async fn send(&mut self, message: Message) -> Result<()> {
        let mut message = Some(message.into());
        poll_fn(|cx| self.shared.poll_send(cx, &mut message)).await
    }

    /// Starts the close handshake with `code` and `reason`; keep receiving to see it
    /// finish (the stream ends), or drop the socket and let the driver finish it.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<()> {
        let frame = CloseFrame::new(code, reason).map_err(Error::InvalidArgument)?;
        self.send(Message::Close(Some(frame))).await
    }

    /// The ready state.
    pub fn ready_state(&self) -> ReadyState {
        self.shared.lock().proto.ready_state()
    }

    /// The subprotocol negotiated in the handshake.
    pub fn protocol(&self) -> Option<String> {
        self.shared.lock().protocol.clone()
    }

    /// The code and reason the connection closed with: the peer's Close (1005 when it
    /// had no code), the code a protocol violation failed it with, or 1006 when it ended
    /// without a Close. `None` while it is still open.
    pub fn close_status(&self) -> Option<(CloseCode, Utf8Bytes)> {
        self.shared.lock().close_status.as_deref().cloned()
    }

    /// Splits into a sending and a receiving half, usable from different tasks. No lock
    /// is held across awaits, so neither half waits for the other.
    pub fn split(self) -> (SplitSink<S>, SplitStream<S>) {
        let shared = self.shared.clone();
        shared.add_handle();
        // `self` becomes the stream half: its drop keeps the finisher logic.
        (SplitSink { shared }, SplitStream { socket: self })
    }
}

/// Completes a connecting [`WebSocket`] from the task that runs its handshake.
pub struct Attacher<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    shared: Arc<Shared<S>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Attacher<S> {
    /// The handshake completed on `io`: open the socket and send what was queued.
    pub fn attach(&self, io: S, negotiated: Negotiated, leftover: BytesMut) {
        let mut inner = self.shared.lock();
        if inner.io.is_some() || inner.finished {
            return;
        }
        inner.io = Some(io);
        let config = self.shared.connecting_config.as_deref().cloned().unwrap_or_default();
        inner.protocol = install(&mut inner.proto, &config, negotiated);
        inner.rbuf = leftover;
        inner.proto.open();
        inner.write_now(&self.shared);
        drop(inner);
        self.shared.fans.read.wake_all();
    }

    /// The connection could not be established: the socket's stream yields `error`, then
    /// ends; what was queued is dropped.
    pub fn abort(&self, error: Error) {
        let mut inner = self.shared.lock();
        if inner.io.is_some() || inner.finished {
            return;
        }
        inner.pending_error = Some(Box::new(error));
        inner.finish(&self.shared);
        drop(inner);
        self.shared.fans.read.wake_all();
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Drop for WebSocket<S> {
    fn drop(&mut self) {
        self.shared.drop_handle();
        self.shared.clone().spawn_finisher();
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> std::fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket").field("proto", &self.shared.lock().proto).finish()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for WebSocket<S> {
    type Item = Result<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.shared.lock().poll_next(&self.shared, cx)
    }
}

impl_sink!(WebSocket);

/// The sending half of a [`WebSocket`] (see [`WebSocket::split`]).
pub struct SplitSink<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    shared: Arc<Shared<S>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> SplitSink<S> {
    /// A cheap, cloneable handle for sending from other tasks.
    pub fn connection(&self) -> Connection {
        Connection::new(self.shared.clone())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Drop for SplitSink<S> {
    fn drop(&mut self) {
        self.shared.drop_handle();
    }
}

impl_sink!(SplitSink);

/// The receiving half of a [`WebSocket`] (see [`WebSocket::split`]).
pub struct SplitStream<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    socket: WebSocket<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> SplitStream<S> {
    /// Receives the next message; `None` once the connection is closed.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        self.socket.recv().await
    }

    /// See [`WebSocket::close_status`].
    pub fn close_status(&self) -> Option<(CloseCode, Utf8Bytes)> {
        self.socket.close_status()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for SplitStream<S> {
    type Item = Result<Message>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.socket).poll_next(cx)
    }
}
