//! websocket-driver's event API: a [`Handler`] receives open, message, error and close
//! events; [`serve`] runs one on a connection.

use crate::close::CloseCode;
use crate::connection::Connection;
use crate::error::Error;
use crate::message::Message;
use crate::websocket::WebSocket;
use std::future::Future;
use tokio::io::{AsyncRead, AsyncWrite};

/// The events of one connection, as websocket-driver delivers them. Write it once; it
/// runs unchanged on the standalone server, on every adapter, and on the client.
///
/// Events arrive in order, one at a time: `on_open` once, then `on_message` for each text
/// or binary message (and `on_error` for a failure), then `on_close` exactly once, even
/// when the peer vanished without a Close frame (code 1006). Pings are answered and the
/// close handshake completed by the driver. Sends inside a callback return as soon as
/// the message is queued; the replies to one batch of received frames go out together.
///
/// ```
/// use ws_core::{CloseCode, Connection, Handler, Message};
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
/// use ws_core::{Config, Connection, Handler, Message, Role, WebSocket, serve};
/// struct Echo;
/// impl Handler for Echo {
///     async fn on_message(&mut self, ws: &Connection, m: Message) { let _ = ws.send(m).await; }
/// }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), ws_core::Error> {
/// let (a, b) = tokio::io::duplex(1024);
/// let server = tokio::spawn(serve(WebSocket::from_raw(a, Role::Server, &Config::default()), Echo));
/// let mut client = WebSocket::from_raw(b, Role::Client, &Config::default());
/// client.send(Message::text("ping?")).await?;
/// assert_eq!(client.recv().await.transpose()?, Some(Message::text("ping?")));
/// client.close(ws_core::CloseCode::NORMAL, "done").await?;
/// while client.recv().await.is_some() {}
/// let (code, reason) = server.await.unwrap();
/// assert_eq!((u16::from(code), reason.as_str()), (1000, "done"));
/// # Ok(()) }
/// ```
pub async fn serve<S, H>(socket: WebSocket<S>, mut handler: H) -> (CloseCode, String)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    serve_mut(socket, &mut handler).await
}

/// [`serve`] with a borrowed handler, which outlives the connection (the reconnecting
/// client serves one connection after another with it). A socket still connecting is
/// waited for; if it never opens, `on_error` and `on_close` (1006) report it.
pub(crate) async fn serve_mut<S, H>(mut socket: WebSocket<S>, handler: &mut H) -> (CloseCode, String)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    // This future is most of an open connection's memory, and the compiler gives each
    // value alive across an `.await` its own room: so each event's future is awaited with
    // nothing else alive beside it, and errors (rare) wait in a box.
    let ws = socket.connection();
    let opened = socket.opened().await.map_err(Box::new);
    if let Err(error) = opened {
        handler.on_error(&ws, &error).await;
        handler.on_close(&ws, CloseCode::ABNORMAL, "").await;
        return (CloseCode::ABNORMAL, String::new());
    }
    handler.on_open(&ws).await;
    let mut failed: Option<Box<Error>> = None;
    loop {
        if let Some(error) = failed.take() {
            handler.on_error(&ws, &error).await;
        }
        let message = match socket.recv().await {
            None => break,
            Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => message,
            Some(Ok(_)) => continue,
            Some(Err(error)) => {
                failed = Some(Box::new(error));
                continue;
            }
        };
        handler.on_message(&ws, message).await;
    }
    let (code, reason) = socket.close_status().unwrap_or((CloseCode::ABNORMAL, Default::default()));
    handler.on_close(&ws, code, &reason).await;
    (code, reason.as_str().to_owned())
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
/// use ws_core::{Config, Connection, Handler, Message, Role, WebSocket, connection_task, serve};
/// struct Echo;
/// impl Handler for Echo {
///     async fn on_message(&mut self, ws: &Connection, m: Message) { let _ = ws.send(m).await; }
/// }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), ws_core::Error> {
/// let (a, b) = tokio::io::duplex(1024);
/// let open = async move {
///     // An adapter would await its upgrade here.
///     Some(serve(WebSocket::from_raw(a, Role::Server, &Config::default()), Echo))
/// };
/// let task = tokio::spawn(connection_task(open));
/// let mut client = WebSocket::from_raw(b, Role::Client, &Config::default());
/// client.send(Message::text("hi")).await?;
/// assert_eq!(client.recv().await.transpose()?, Some(Message::text("hi")));
/// client.close(ws_core::CloseCode::NORMAL, "").await?;
/// while client.recv().await.is_some() {}
/// task.await.unwrap();
/// # Ok(()) }
/// ```
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

    /// An open connection's task is mostly this future. An echo handler's is 224 bytes:
    /// the socket, the handle, and the largest event's future (on_message and its send,
    /// 128); it was 480 while values alive across awaits had their own room beside it.
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
