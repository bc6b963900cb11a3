//! websocket-driver's event API: events in order, sends from any task delivered at once,
//! pings that resolve on their pong, and messages queued while connecting.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use crate::common;

use common::{Event, bounded, connect, events_until_close, start_recorder};
use futures_util::FutureExt;
use std::sync::{Arc, Mutex};
use wsdriver::{CloseCode, Config, Connection, Handler, Message, ReadyState, Role, WebSocket};

#[tokio::test]
async fn events_arrive_in_order() {
    let (addr, mut events) = start_recorder(Config::default(), true).await;
    let mut client = connect(addr, "/", &Config::default()).await;
    client.send(Message::text("one")).await.unwrap();
    client.send(Message::binary(vec![2u8])).await.unwrap();
    assert_eq!(bounded(client.recv()).await.unwrap().unwrap(), Message::text("one"));
    assert_eq!(bounded(client.recv()).await.unwrap().unwrap(), Message::binary(vec![2u8]));
    client.close(CloseCode::NORMAL, "bye").await.unwrap();
    while bounded(client.recv()).await.is_some() {}
    assert_eq!(
        events_until_close(&mut events).await,
        [Event::Open, Event::Message(Message::text("one")), Event::Message(Message::binary(vec![2u8])), Event::Close(1000, "bye".into())]
    );
}

/// Hands its connection out so the test can send through it from outside.
struct Exposed(Arc<Mutex<Option<Connection>>>, tokio::sync::mpsc::UnboundedSender<()>);

impl Handler for Exposed {
    async fn on_open(&mut self, ws: &Connection) {
        assert_eq!(ws.ready_state(), ReadyState::Open);
        assert_eq!(ws.version(), "hybi-13");
        *self.0.lock().unwrap() = Some(ws.clone());
        let _ = self.1.send(());
    }
    async fn on_message(&mut self, _: &Connection, _: Message) {}
}

#[tokio::test]
async fn sends_from_another_task_are_delivered_while_the_driver_waits_to_read() {
    let slot = Arc::new(Mutex::new(None));
    let (opened_tx, mut opened) = tokio::sync::mpsc::unbounded_channel();
    let s = slot.clone();
    let addr = common::start_server(Config::default(), move || Exposed(s.clone(), opened_tx.clone())).await;
    let mut client = connect(addr, "/", &Config::default()).await;
    bounded(opened.recv()).await.unwrap();
    let conn = slot.lock().unwrap().clone().unwrap();
    // The server's driver sits in a read that will never complete: the client sends
    // nothing. Every message must still arrive.
    let sender = tokio::spawn(async move {
        for i in 0..100 {
            conn.send_text(format!("push {i}")).await.unwrap();
        }
        conn
    });
    for i in 0..100 {
        assert_eq!(bounded(client.recv()).await.unwrap().unwrap(), Message::text(format!("push {i}")));
    }
    let conn = sender.await.unwrap();
    // A ping sent from outside the driver resolves when the client's automatic pong
    // arrives; the client must be read for it to answer.
    let pong = conn.send_ping("hello?");
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = client.recv().await {} });
    bounded(pong).await.unwrap();
    conn.close(CloseCode::NORMAL, "").unwrap();
    bounded(reader).await.unwrap();
    assert_eq!(conn.ready_state(), ReadyState::Closed);
    assert!(conn.send_ping("late").await.is_err());
}

#[tokio::test]
async fn messages_sent_while_connecting_are_sent_on_open() {
    let server = WebSocket::connecting(Role::Server, &Config::default());
    let conn = server.connection();
    assert_eq!(conn.ready_state(), ReadyState::Connecting);
    // Queued at once: nothing to wait for while connecting.
    conn.send_text("early 1").now_or_never().unwrap().unwrap();
    conn.try_send(Message::binary(vec![1, 2, 3])).unwrap();
    assert_eq!(conn.buffered_amount(), 10);
    let (a, b) = tokio::io::duplex(1 << 16);
    let mut client = WebSocket::from_raw(b, Role::Client, &Config::default());
    server.attach(a, wsdriver::handshake::Negotiated::protocol(Some("chat".into())), Default::default());
    assert_eq!(conn.ready_state(), ReadyState::Open);
    assert_eq!(conn.protocol().as_deref(), Some("chat"));
    assert_eq!(bounded(client.recv()).await.unwrap().unwrap(), Message::text("early 1"));
    assert_eq!(bounded(client.recv()).await.unwrap().unwrap(), Message::binary(vec![1, 2, 3]));
}
