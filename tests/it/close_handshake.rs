//! The close handshake always completes, whatever the application does once it has seen
//! the peer's Close; and `on_close` fires exactly once however the connection ends.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use crate::common;

use common::{Event, assert_eof, bounded, client_frame, events_until_close, raw_client, read_close, start_recorder};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use wsdriver::frame::OpCode;
use wsdriver::{Config, Connection, Handler, Message, Server};

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

/// A server whose connections run `f` on the raw socket.
async fn start_with<F, Fut>(f: F) -> std::net::SocketAddr
where
    F: Fn(wsdriver::WebSocket<wsdriver::stream::Stream>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let server = Server::from_listener(TcpListener::bind("127.0.0.1:0").await.unwrap());
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve_sockets(move |ws, _| f(ws)));
    addr
}

#[tokio::test]
async fn completes_when_the_app_breaks_out_and_drops_the_socket() {
    // The common pattern: loop until Close, then leave, dropping the socket.
    let addr = start_with(|mut ws| async move {
        while let Some(Ok(message)) = ws.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
    let mut peer = raw_client(addr).await;
    peer.write_all(&client_frame(OpCode::Close, true, &close_payload(1000, "bye"))).await.unwrap();
    assert_eq!(read_close(&mut peer).await, Some(1000));
    assert_eof(&mut peer).await;
}

#[tokio::test]
async fn completes_when_the_app_keeps_the_socket_but_stops_reading() {
    let (hold_tx, hold_rx) = tokio::sync::oneshot::channel::<()>();
    let hold = std::sync::Mutex::new(Some(hold_rx));
    let addr = start_with(move |mut ws| {
        let hold = hold.lock().unwrap().take();
        async move {
            while let Some(Ok(message)) = ws.recv().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
            // Keep the socket alive without reading until the test ends.
            let _ = hold.unwrap().await;
            drop(ws);
        }
    })
    .await;
    let mut peer = raw_client(addr).await;
    peer.write_all(&client_frame(OpCode::Close, true, &close_payload(4321, ""))).await.unwrap();
    assert_eq!(read_close(&mut peer).await, Some(4321));
    assert_eof(&mut peer).await; // the server closed TCP although the socket is still held
    drop(hold_tx);
}

#[tokio::test]
async fn a_vanished_peer_gives_exactly_one_close_with_1006() {
    let (addr, mut events) = start_recorder(Config::default(), true).await;
    let peer = raw_client(addr).await;
    drop(peer);
    let seen = events_until_close(&mut events).await;
    assert_eq!(seen.first(), Some(&Event::Open));
    assert_eq!(seen.last(), Some(&Event::Close(1006, String::new())));
    assert_eq!(seen.iter().filter(|e| matches!(e, Event::Close(..))).count(), 1);
    // The handler is dropped next, with no further event before it.
    assert_eq!(bounded(events.recv()).await, Some(Event::Dropped));
}

struct CloseOnOpen(tokio::sync::mpsc::UnboundedSender<Event>);

impl Handler for CloseOnOpen {
    async fn on_open(&mut self, ws: &Connection) {
        ws.close(wsdriver::CloseCode::GOING_AWAY, "bye now").unwrap();
        assert!(ws.send_text("too late").await.is_err());
    }
    async fn on_message(&mut self, _: &Connection, _: Message) {}
    async fn on_error(&mut self, _: &Connection, error: &wsdriver::Error) {
        let _ = self.0.send(Event::Error(error.to_string()));
    }
    async fn on_close(&mut self, _: &Connection, code: wsdriver::CloseCode, reason: &str) {
        let _ = self.0.send(Event::Close(code.into(), reason.to_owned()));
    }
}

#[tokio::test]
async fn server_initiated_close_completes() {
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let addr = common::start_server(Config::default(), move || CloseOnOpen(tx.clone())).await;
    let mut peer = raw_client(addr).await;
    assert_eq!(read_close(&mut peer).await, Some(1001));
    peer.write_all(&client_frame(OpCode::Close, true, &close_payload(1001, "ok"))).await.unwrap();
    assert_eof(&mut peer).await;
    assert_eq!(events_until_close(&mut events).await, [Event::Close(1001, "ok".into())]);
}

#[tokio::test]
async fn an_unanswered_close_times_out() {
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let config = Config::default().close_timeout(Duration::from_millis(200));
    let addr = common::start_server(config, move || CloseOnOpen(tx.clone())).await;
    let mut peer = raw_client(addr).await;
    assert_eq!(read_close(&mut peer).await, Some(1001));
    // Never answer: the server gives up after the close timeout and drops the connection.
    assert_eof(&mut peer).await;
    assert_eq!(
        events_until_close(&mut events).await,
        [Event::Error("close handshake timed out".into()), Event::Close(1006, String::new())]
    );
}
