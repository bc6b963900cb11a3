//! websocket-driver's event API: a [`Handler`] receives open, message, error and close
//! events; [`serve`] runs one on a connection.

use crate::close::CloseCode;
use crate::connection::Connection;
use crate::driver::Transport;
use crate::error::Error;
use crate::message::Message;
use crate::pool::MessageQueue;
use crate::utf8::Utf8Bytes;
use crate::websocket::WebSocket;
use std::future::{Future, poll_fn};
use std::task::Poll;

/// The events of one connection, as websocket-driver delivers them. Write it once; it
/// runs unchanged on the standalone server, on every adapter, and on the client.
///
/// Events arrive in order, one at a time: `on_open` once, then `on_message` for each text
/// or binary message (and `on_error` for a failure), then `on_close` exactly once, even
/// when the peer vanished without a Close frame (code 1006). Pings are answered and the
/// close handshake completed by the driver. Sends inside a callback return as soon as
/// the message is queued; the replies to one batch of received frames go out together.
///
/// The connection keeps going while a callback waits: pings and a peer's Close are
/// answered, pongs matched (so `ws.send_ping(..).await` inside a callback completes),
/// keepalive and close timers run, and messages that arrive meanwhile wait, bounded, for
/// the callback to return (past the bound, reading stops and TCP pushes back). A callback
/// blocked on a send to a peer that stopped reading is woken with an error once the
/// keepalive gives up on that peer.
///
/// ```
/// use wsdriver::{CloseCode, Connection, Handler, Message};
///
/// struct Echo;
///
/// impl Handler for Echo {
///     async fn on_message(&mut self, ws: &Connection, message: Message) {
///         let _ = ws.send(message).await;
///     }
///
///     async fn on_close(&mut self, _ws: &Connection, code: CloseCode, reason: &str) {
///         tracing::info!(%code, reason, "closed");
///     }
/// }
/// ```
pub trait Handler: Send + 'static {
    /// The connection is open.
    fn on_open(&mut self, ws: &Connection) -> impl Future<Output = ()> + Send {
        let _ = ws;
        async {}
    }

    /// A text or binary message arrived (text is validated UTF-8).
    fn on_message(&mut self, ws: &Connection, message: Message) -> impl Future<Output = ()> + Send;

    /// The connection failed: a protocol violation (already answered with the matching
    /// close code), an I/O error, or a timeout. `on_close` follows.
    fn on_error(&mut self, ws: &Connection, error: &Error) -> impl Future<Output = ()> + Send {
        let _ = (ws, error);
        async {}
    }

    /// The connection is closed: the peer's code and reason (1005 when it sent none), the
    /// code it was failed with, or 1006 when it ended without a Close frame.
    fn on_close(&mut self, ws: &Connection, code: CloseCode, reason: &str) -> impl Future<Output = ()> + Send {
        let _ = (ws, code, reason);
        async {}
    }
}

/// Runs `handler` on `socket` until the connection closes; returns the close code and
/// reason that `on_close` received.
///
/// ```
/// use wsdriver::{Config, Connection, Handler, Message, Role, WebSocket, serve};
/// struct Echo;
/// impl Handler for Echo {
///     async fn on_message(&mut self, ws: &Connection, m: Message) { let _ = ws.send(m).await; }
/// }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), wsdriver::Error> {
/// let (a, b) = tokio::io::duplex(1024);
/// let server = tokio::spawn(serve(WebSocket::from_raw(a, Role::Server, &Config::default()), Echo));
/// let mut client = WebSocket::from_raw(b, Role::Client, &Config::default());
/// client.send(Message::text("ping?")).await?;
/// assert_eq!(client.recv().await.transpose()?, Some(Message::text("ping?")));
/// client.close(wsdriver::CloseCode::NORMAL, "done").await?;
/// while client.recv().await.is_some() {}
/// let (code, reason) = server.await.unwrap();
/// assert_eq!((u16::from(code), reason.as_str()), (1000, "done"));
/// # Ok(()) }
/// ```
///
/// # Cancel safety
///
/// Cancelled, the handler is dropped without `on_close`; the socket is dropped too, and its
/// close handshake finished in the background.
pub async fn serve<S, H>(socket: WebSocket<S>, mut handler: H) -> (CloseCode, String)
where
    S: Transport,
    H: Handler,
{
    serve_mut(socket, &mut handler).await
}

/// Awaits a handler's callback while the connection keeps going beside it: replies are
/// flushed, pings and a Close answered, pongs matched and timers run while the callback
/// waits, and data that arrives meanwhile waits, bounded, for the next event.
///
/// A macro, not a function: a function would hold the callback's future twice (as its
/// argument and pinned), and this future is part of every connection's memory.
macro_rules! while_driving {
    ($socket:expr, $callback:expr) => {{
        let mut callback = std::pin::pin!($callback);
        poll_fn(|cx| match callback.as_mut().poll(cx) {
            Poll::Ready(output) => Poll::Ready(output),
            Poll::Pending => {
                $socket.drive_pending(cx);
                Poll::Pending
            }
        })
        .await
    }};
}

/// [`serve`] with a borrowed handler, which outlives the connection (the reconnecting
/// client serves one connection after another with it). A socket still connecting is
/// waited for; if it never opens, `on_error` and `on_close` (1006) report it.
// Not an `async fn`: its parameters would be moved into the future's locals and kept
// twice.
#[allow(clippy::manual_async_fn)]
pub(crate) fn serve_mut<S, H>(socket: WebSocket<S>, handler: &mut H) -> impl Future<Output = (CloseCode, String)> + Send + '_
where
    S: Transport,
    H: Handler,
{
    // This future is most of an open connection's memory, and the compiler gives each
    // value alive across an `.await` its own room: so each event's future is awaited with
    // nothing else alive beside it but the batch, and errors (rare) wait in a box.
    async move {
        let ws = socket.connection();
        socket.set_serving();
        if let Err(error) = poll_fn(|cx| socket.poll_opened(cx)).await.map_err(Box::new) {
            handler.on_error(&ws, &error).await;
            handler.on_close(&ws, CloseCode::ABNORMAL, "").await;
            drop(socket.take_registration());
            return (CloseCode::ABNORMAL, String::new());
        }
        while_driving!(socket, handler.on_open(&ws));
        // The messages of one read, handed out without taking the connection's lock again.
        let mut batch: Option<MessageQueue> = None;
        loop {
            let Some(queue) = batch.as_deref_mut().filter(|q| !q.is_empty()) else {
                let error = match poll_fn(|cx| socket.poll_batch(cx, &mut batch)).await {
                    Some(Ok(())) => continue,
                    Some(Err(error)) => Box::new(error),
                    None => break,
                };
                while_driving!(socket, handler.on_error(&ws, &error));
                continue;
            };
            if !queue.front().is_some_and(Message::is_data) {
                queue.pop_front(); // control frames were acted on by the driver
                continue;
            }
            while_driving!(socket, handler.on_message(&ws, take_front(&mut batch)));
        }
        let (code, reason) = socket.close_status().unwrap_or((CloseCode::ABNORMAL, Utf8Bytes::new()));
        handler.on_close(&ws, code, &reason).await;
        // A graceful shutdown waits for this.
        drop(socket.take_registration());
        (code, reason.as_str().to_owned())
    }
}

/// The first message of a batch known not to be empty. Taken inside the callback's
/// expression, so that no local holds it beside the callback's future.
fn take_front(batch: &mut Option<MessageQueue>) -> Message {
    batch.as_mut().and_then(|q| q.pop_front()).unwrap_or_else(|| Message::Binary(bytes::Bytes::new()))
}

/// The future of one connection's task: `open` (a handshake, or waiting for an upgrade),
/// then the future it returns, if any (its output is dropped). Adapters spawn this.
///
/// A connection keeps its task for life, so the task's size is the connection's memory.
/// Here `open` is boxed, and freed once done, and nothing it produced is kept beside the
/// returned future; written as one `async` block instead, the upgrade's state and any
/// value alive across the second `.await` would stay in the task next to it.
///
/// ```
/// use wsdriver::{Config, Connection, Handler, Message, Role, WebSocket, connection_task, serve};
/// struct Echo;
/// impl Handler for Echo {
///     async fn on_message(&mut self, ws: &Connection, m: Message) { let _ = ws.send(m).await; }
/// }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), wsdriver::Error> {
/// let (a, b) = tokio::io::duplex(1024);
/// let open = async move {
///     // An adapter would await its upgrade here.
///     Some(serve(WebSocket::from_raw(a, Role::Server, &Config::default()), Echo))
/// };
/// let task = tokio::spawn(connection_task(open));
/// let mut client = WebSocket::from_raw(b, Role::Client, &Config::default());
/// client.send(Message::text("hi")).await?;
/// assert_eq!(client.recv().await.transpose()?, Some(Message::text("hi")));
/// client.close(wsdriver::CloseCode::NORMAL, "").await?;
/// while client.recv().await.is_some() {}
/// task.await.unwrap();
/// # Ok(()) }
/// ```
#[doc(hidden)] // for adapters: ws-hyper's UpgradeFut::spawn is the public way
pub fn connection_task<O, Fut>(open: O) -> impl Future<Output = ()> + Send + 'static
where
    O: Future<Output = Option<Fut>> + Send + 'static,
    Fut: Future + Send + 'static,
{
    let open = Box::pin(open);
    async move {
        let Some(connection) = open.await else { return };
        connection.await;
    }
}
#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{Config, Role};

    /// Sends every message back (the size tests here and in `server` measure it).
    pub(crate) struct Echo;

    impl Handler for Echo {
        async fn on_message(&mut self, ws: &Connection, message: Message) {
            let _ = ws.send(message).await;
        }
    }

    /// An open connection's task is mostly this future: for an echo handler, the socket,
    /// the handle, the batch, and the largest event's future (on_message and its send,
    /// 128), and little else.
    #[tokio::test]
    async fn serve_future_stays_small() {
        let (a, _b) = tokio::io::duplex(64);
        let socket = WebSocket::from_raw(a, Role::Server, &Config::default());
        let ws = socket.connection();
        assert!(std::mem::size_of_val(&ws.send(Message::text("x"))) <= 64);
        assert!(std::mem::size_of_val(&Echo.on_message(&ws, Message::text("x"))) <= 128);
        let serve = std::mem::size_of_val(&serve(socket, Echo));
        assert!(serve <= 256, "serve future {serve} bytes");
    }
}
