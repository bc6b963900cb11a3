//! A client that reconnects: exponential backoff with jitter, a bound on attempts,
//! `on_open` again after every reconnect, and sends queued while reconnecting.

use super::ClientBuilder;
use crate::close::CloseCode;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::handler::{Handler, serve_mut};
use crate::message::Message;
use crate::protocol::Role;
use crate::websocket::WebSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// When and how often to reconnect.
///
/// Every attempt after a failure or a lost connection waits: the `n`th in a row waits
/// `min(max_delay, initial_delay * 2^(n-1))`, times a random factor in `[0.5, 1)` so that
/// many clients cut off at once do not come back at once. A connection that opened
/// counts as a failure too unless it stayed open for `reset_after`: a server that
/// accepts and closes at once gets the same backoff as one that refuses. A failure no
/// retry can mend (an invalid URL, TLS settings or [`Config`](crate::Config)) ends the
/// client at once.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Reconnect {
    /// The first delay. Default 100 ms.
    pub initial_delay: Duration,
    /// The longest delay. Default 30 s.
    pub max_delay: Duration,
    /// Consecutive failed attempts after which the client gives up; `None` never gives
    /// up. Default `None`.
    pub max_attempts: Option<u32>,
    /// How long a connection must stay open for the backoff to start over. Default 10 s.
    pub reset_after: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
            max_attempts: None,
            reset_after: Duration::from_secs(10),
        }
    }
}

impl Reconnect {
    /// Sets the first and the longest delay.
    pub fn delays(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_delay = initial;
        self.max_delay = max;
        self
    }

    /// Gives up after `attempts` consecutive failures.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Sets [`Reconnect::reset_after`].
    pub fn reset_after(mut self, stayed_open: Duration) -> Self {
        self.reset_after = stayed_open;
        self
    }

    fn delay(&self, failures: u32) -> Duration {
        let exp = self.initial_delay.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        exp.min(self.max_delay).mul_f64(0.5 + rand::random::<f64>() / 2.0)
    }
}

/// A client that keeps a connection up: see [`ClientBuilder::reconnecting`].
pub struct ReconnectingClient {
    builder: ClientBuilder,
    policy: Reconnect,
    before_attempt: Option<BeforeAttempt>,
}

/// Rebuilds the builder before each attempt: see [`ReconnectingClient::before_attempt`].
type BeforeAttempt = Box<dyn FnMut(ClientBuilder) -> std::pin::Pin<Box<dyn Future<Output = ClientBuilder> + Send>> + Send>;

impl std::fmt::Debug for ReconnectingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconnectingClient").field("policy", &self.policy).finish_non_exhaustive()
    }
}

struct Control {
    stop: AtomicBool,
    stopped: Notify,
}

/// The handle to a reconnecting client: sends go to the current connection, or, while
/// reconnecting, wait in the next one's queue (up to the write buffer's high-water mark).
///
/// Dropping it closes the client (the connection with 1000 Normal Closure) and stops
/// reconnecting; keep it for as long as the client should run.
#[derive(Debug)]
pub struct ReconnectHandle {
    current: watch::Receiver<Connection>,
    control: Arc<Control>,
    /// `None` once awaited.
    task: Option<JoinHandle<Result<()>>>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").field("stop", &self.stop).finish_non_exhaustive()
    }
}

impl Control {
    /// Stops the client: it sees this wherever it waits (a permit is kept if it is not
    /// waiting yet, so the stop is never missed).
    fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.stopped.notify_one();
    }

    fn is_stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

impl ReconnectingClient {
    pub(crate) fn new(builder: ClientBuilder, policy: Reconnect) -> Self {
        Self { builder, policy, before_attempt: None }
    }

    /// Runs `rebuild` before every attempt, the first included, on a copy of the builder
    /// this client was made from, and connects with what it returns: a fresh token in a
    /// header, other subprotocols, another URL. It may wait (to fetch the token).
    ///
    /// ```no_run
    /// use wsdriver::client::{ClientBuilder, Reconnect};
    /// use wsdriver::http::{HeaderValue, header};
    /// # use wsdriver::{Connection, Handler, Message};
    /// # struct Feed;
    /// # impl Handler for Feed { async fn on_message(&mut self, _: &Connection, _: Message) {} }
    /// # async fn fresh_token() -> String { "t".into() }
    /// # #[tokio::main] async fn main() {
    /// let client = ClientBuilder::new("wss://example.com/feed")
    ///     .reconnecting(Reconnect::default())
    ///     .before_attempt(|builder| async move {
    ///         let token = HeaderValue::try_from(format!("Bearer {}", fresh_token().await)).unwrap();
    ///         builder.header(header::AUTHORIZATION, token)
    ///     })
    ///     .serve(Feed);
    /// # }
    /// ```
    pub fn before_attempt<F, Fut>(mut self, mut rebuild: F) -> Self
    where
        F: FnMut(ClientBuilder) -> Fut + Send + 'static,
        Fut: Future<Output = ClientBuilder> + Send + 'static,
    {
        self.before_attempt = Some(Box::new(move |builder| Box::pin(rebuild(builder))));
        self
    }

    /// Connects, and reconnects whenever the connection is lost, serving each connection
    /// with `handler`: `on_open` after every (re)connection, so the application can
    /// resubscribe, `on_close` after every loss, `on_error` for each failed attempt.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (it spawns the client's task).
    pub fn serve<H: Handler>(mut self, mut handler: H) -> ReconnectHandle {
        let control = Arc::new(Control { stop: AtomicBool::new(false), stopped: Notify::new() });
        let first = WebSocket::connecting(Role::Client, &self.builder.config);
        let (current_tx, current) = watch::channel(first.connection());
        let ctl = control.clone();
        let task = tokio::spawn(async move {
            let mut socket = first;
            // Failed attempts and short-lived connections in a row.
            let mut failures = 0u32;
            loop {
                let attacher = socket.attacher();
                loop {
                    if failures > 0 {
                        tokio::select! {
                            () = tokio::time::sleep(self.policy.delay(failures)) => {}
                            () = ctl.stopped.notified() => {}
                        }
                    }
                    // A stop from now on leaves a permit: `notified` sees it.
                    let started = std::time::Instant::now();
                    let rebuilt = match self.before_attempt.as_mut() {
                        Some(rebuild) => Some(rebuild(self.builder.clone()).await),
                        None => None,
                    };
                    let builder = rebuilt.as_ref().unwrap_or(&self.builder);
                    let attempt = match ctl.is_stopped() {
                        true => None,
                        false => tokio::select! {
                            attempt = builder.establish() => Some(attempt),
                            () = ctl.stopped.notified() => None,
                        },
                    };
                    match attempt {
                        None => {
                            attacher.abort(Error::Closed);
                            return Ok(());
                        }
                        Some(Ok((stream, _, negotiated, leftover))) => {
                            attacher.attach(stream, negotiated, leftover);
                            attacher.meter("client", started);
                            break;
                        }
                        Some(Err(error)) => {
                            failures += 1;
                            tracing::debug!(%error, failures, "reconnect attempt failed");
                            handler.on_error(&socket.connection(), &error).await;
                            if !worth_retrying(&error) || self.policy.max_attempts.is_some_and(|max| failures >= max) {
                                attacher.abort(Error::Closed);
                                return Err(error);
                            }
                        }
                    }
                }
                let opened = tokio::time::Instant::now();
                serve_mut(socket, &mut handler).await;
                if ctl.is_stopped() {
                    return Ok(());
                }
                // A connection that did not stay open is one more failure in a row.
                failures = if opened.elapsed() >= self.policy.reset_after { 1 } else { failures + 1 };
                if self.policy.max_attempts.is_some_and(|max| failures > max) {
                    return Err(Error::ConnectionReset);
                }
                // The next connection takes sends at once; they wait in its queue.
                socket = WebSocket::connecting(Role::Client, &self.builder.config);
                let _ = current_tx.send(socket.connection());
            }
        });
        ReconnectHandle { current, control, task: Some(task) }
    }
}

/// Whether another attempt could succeed where this one failed: not when the URL, the
/// proxy's URL, the TLS settings or the config are what is wrong.
fn worth_retrying(error: &Error) -> bool {
    !matches!(
        error,
        Error::InvalidUrl(_)
            | Error::Proxy(super::ProxyError::InvalidUrl(_))
            | Error::Tls(_)
            | Error::Handshake(crate::handshake::HandshakeError::Config(_))
    )
}

impl ReconnectHandle {
    /// The current connection (or the one being established).
    pub fn connection(&self) -> Connection {
        self.current.borrow().clone()
    }

    /// Sends a message on the current connection; if it was just lost, on the next one.
    /// Waits at the write buffer's high-water mark, reconnecting included.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the client was stopped or gave up; [`Error::InvalidArgument`]
    /// as [`Connection::send`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if cancelled while waiting, the message was not queued.
    pub async fn send(&self, message: Message) -> Result<()> {
        let mut current = self.current.clone();
        loop {
            let connection = current.borrow_and_update().clone();
            match connection.send(message.clone()).await {
                Err(Error::Closed) if !self.control.is_stopped() => {
                    // Lost between the lookup and the send: wait for the next connection.
                    current.changed().await.map_err(|_| Error::Closed)?;
                }
                other => return other,
            }
        }
    }

    /// Queues a message without waiting: [`Error::Full`] at the high-water mark.
    pub fn try_send(&self, message: Message) -> Result<()> {
        self.connection().try_send(message)
    }

    /// Stops reconnecting, closes the current connection with `code` and `reason`, and
    /// waits for the client to finish.
    ///
    /// # Errors
    ///
    /// The error the client had given up with, if it had.
    ///
    /// # Cancel safety
    ///
    /// Reconnecting stops and the Close is sent at the first poll; cancelled after that, the
    /// client's task still finishes the close in the background.
    pub async fn close(mut self, code: CloseCode, reason: &str) -> Result<()> {
        self.control.stop();
        let _ = self.connection().close(code, reason);
        self.wait().await
    }

    /// Waits until the client gives up (`Err` with the last connection error, after
    /// [`Reconnect::max_attempts`] failures or one that no retry can mend) or is closed
    /// (`Ok`).
    ///
    /// # Errors
    ///
    /// The last connection error, once the client gives up.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only observes (the client keeps running).
    pub async fn finished(mut self) -> Result<()> {
        self.wait().await
    }

    async fn wait(&mut self) -> Result<()> {
        let Some(task) = self.task.take() else { return Ok(()) };
        task.await.map_err(|_| Error::Closed)?
    }
}

impl Drop for ReconnectHandle {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.control.stop();
            let _ = self.connection().close(CloseCode::NORMAL, "");
        }
    }
}
