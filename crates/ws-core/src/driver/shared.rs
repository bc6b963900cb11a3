//! What one connection's handles share: the socket, its split halves and every
//! [`Connection`](crate::Connection) hold a [`Shared`], the [`Driver`] behind one lock
//! that is never held across an await.

use super::Transport;
use super::fan::Fan;
use super::io::{Drive, Driver};
use super::timer::Expire;
use crate::close::{CloseCode, CloseFrame};
use crate::config::Config;
use crate::connection::{Link, Outgoing};
use crate::error::{Error, Result};
use crate::handshake::Negotiated;
use crate::message::Message;
use crate::protocol::{ReadyState, Role};
use crate::shutdown::Registration;
use crate::utf8::Utf8Bytes;
use bytes::{Bytes, BytesMut};
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};

/// The state one connection's handles share.
///
/// The stream is polled with a waker of the fan alone ([`Shared::io_waker`]), never of
/// this value: a stream may wake (and drop) its waker under a lock of its own, as h2 does
/// for an HTTP/2 stream, and a waker that held the last reference to the connection would
/// drop the stream inside that lock.
pub(crate) struct Shared<S> {
    driver: Mutex<Driver<S>>,
    /// Every task waiting on the connection.
    pub(crate) fan: Arc<Fan>,
    /// Application handles alive: the socket, its halves, and every `Connection`.
    handles: AtomicUsize,
    /// The connection's timer fired; the next drive acts on the time.
    pub(crate) timer_fired: AtomicBool,
    this: Weak<Shared<S>>,
}

impl<S: Transport> Shared<S> {
    /// A connection over `io`, open, or connecting when `io` is `None`.
    pub(crate) fn new(io: Option<S>, role: Role, config: &Config, negotiated: Negotiated, leftover: BytesMut) -> Arc<Self> {
        let driver = Driver::new(io, role, config, negotiated, leftover);
        Arc::new_cyclic(|this| Self {
            driver: Mutex::new(driver),
            fan: Arc::default(),
            handles: AtomicUsize::new(0),
            timer_fired: AtomicBool::new(false),
            this: this.clone(),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Driver<S>> {
        self.driver.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the timers wake.
    pub(crate) fn expire_target(&self) -> Weak<dyn Expire> {
        self.this.clone()
    }

    /// The waker the stream is polled with: wakes every task waiting on the connection.
    pub(crate) fn io_waker(&self) -> Waker {
        Waker::from(self.fan.clone())
    }

    pub(crate) fn add_handle(&self) {
        self.handles.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn drop_handle(&self) {
        if self.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The finisher, if one runs, closes the connection now.
            self.fan.wake_all();
        }
    }

    /// Sends once the write buffer is below its high-water mark; while it is not, drives
    /// the connection (so a deadline or a dead peer ends the wait with an error).
    #[inline]
    pub(crate) fn poll_send(&self, cx: &mut Context<'_>, message: &mut Option<Outgoing<'_>>) -> Poll<Result<()>> {
        self.poll_send_with(cx, message, Driver::send)
    }

    /// [`Shared::poll_send`] for a message (the common case, without the `Outgoing` wrapping).
    #[inline]
    pub(crate) fn poll_send_message(&self, cx: &mut Context<'_>, message: &mut Option<Message>) -> Poll<Result<()>> {
        self.poll_send_with(cx, message, Driver::send_message)
    }

    #[inline(always)]
    fn poll_send_with<T>(
        &self,
        cx: &mut Context<'_>,
        message: &mut Option<T>,
        send: impl FnOnce(&mut Driver<S>, &Self, T) -> Result<()>,
    ) -> Poll<Result<()>> {
        let mut driver = self.lock();
        if driver.proto.is_backlogged() {
            driver.drive(self, cx, Drive::Ahead);
            if driver.proto.is_backlogged() && !driver.is_finished() {
                return Poll::Pending;
            }
        }
        match message.take() {
            Some(message) => Poll::Ready(send(&mut driver, self, message)),
            None if driver.proto.is_ended() => Poll::Ready(Err(Error::Closed)),
            None => Poll::Ready(Ok(())),
        }
    }

    /// Writes everything queued.
    pub(crate) fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut driver = self.lock();
        driver.drive(self, cx, Drive::Ahead);
        if driver.proto.out().is_empty() { Poll::Ready(Ok(())) } else { Poll::Pending }
    }

    /// Starts the close handshake with 1000 unless it has started.
    pub(crate) fn start_close(&self) {
        let mut driver = self.lock();
        if driver.proto.ready_state() == ReadyState::Open {
            let _ = driver.close(self, Some(normal_closure()));
        }
    }

    /// The socket was dropped before the connection ended: finish it in the background,
    /// answering pings and completing the close handshake (with 1000 once no handle is
    /// left), bounded by the close timeout. Without a runtime it ends at once.
    pub(crate) fn spawn_finisher(self: Arc<Self>) {
        if self.lock().is_finished() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { poll_fn(|cx| self.poll_finisher(cx)).await });
            }
            Err(_) => {
                tracing::debug!("no tokio runtime to finish the websocket close handshake; dropping it");
                let mut driver = self.lock();
                driver.finish(&self, None);
            }
        }
    }

    fn poll_finisher(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut driver = self.lock();
        loop {
            if self.handles.load(Ordering::Acquire) == 0 && driver.proto.ready_state() == ReadyState::Open {
                let _ = driver.close(self, Some(normal_closure()));
            }
            match driver.poll_next(self, cx) {
                Poll::Ready(Some(_)) => continue, // nobody reads it any more
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

fn normal_closure() -> CloseFrame {
    CloseFrame { code: CloseCode::NORMAL, reason: Utf8Bytes::new() }
}

impl<S: Transport> Expire for Shared<S> {
    fn expire(&self) {
        self.timer_fired.store(true, Ordering::Release);
        self.fan.wake_all();
    }
}

impl<S: Transport> Link for Shared<S> {
    fn poll_send(&self, cx: &mut Context<'_>, message: &mut Option<Outgoing<'_>>) -> Poll<Result<()>> {
        Shared::poll_send(self, cx, message)
    }

    fn poll_send_message(&self, cx: &mut Context<'_>, message: &mut Option<Message>) -> Poll<Result<()>> {
        Shared::poll_send_message(self, cx, message)
    }

    fn try_send(&self, message: Outgoing<'_>) -> Result<()> {
        let mut driver = self.lock();
        if driver.proto.is_backlogged() {
            driver.write_now(self);
            if driver.proto.is_backlogged() {
                return Err(Error::Full);
            }
        }
        driver.send(self, message)
    }

    fn feed(&self, message: Outgoing<'_>) -> Result<()> {
        self.lock().feed(message)
    }

    fn flush_queued(&self) {
        self.lock().flush_queued(self);
    }

    fn ping(&self, payload: Bytes) -> Result<u64> {
        self.lock().ping(self, payload)
    }

    fn poll_pong(&self, cx: &mut Context<'_>, seq: u64) -> Poll<Result<()>> {
        let mut driver = self.lock();
        if !driver.proto.ping_answered(seq) && !driver.is_finished() {
            driver.drive(self, cx, Drive::Ahead);
        }
        if driver.proto.ping_answered(seq) {
            Poll::Ready(Ok(()))
        } else if driver.is_finished() {
            Poll::Ready(Err(Error::Closed))
        } else {
            Poll::Pending
        }
    }

    fn close(&self, frame: Option<CloseFrame>) -> Result<()> {
        self.lock().close(self, frame)
    }

    fn ready_state(&self) -> ReadyState {
        self.lock().proto.ready_state()
    }

    fn protocol(&self) -> Option<String> {
        self.lock().protocol().map(str::to_owned)
    }

    fn http_version(&self) -> http::Version {
        self.lock().http_version()
    }

    fn buffered(&self) -> usize {
        self.lock().proto.buffered()
    }

    fn add_handle(&self) {
        Shared::add_handle(self);
    }

    fn drop_handle(&self) {
        Shared::drop_handle(self);
    }

    fn watch(&self, registration: Registration) {
        self.lock().watch(registration);
    }

    fn abort(&self) {
        let mut driver = self.lock();
        driver.finish(self, Some(Error::CloseTimeout));
        // Past the deadline nothing is waited for, `on_close` included.
        let registration = driver.take_registration();
        drop(driver);
        drop(registration);
    }
}
