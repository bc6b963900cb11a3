//! The event API behaves the same on every server: a peer that vanishes gives `on_error`
//! then exactly one `on_close` with 1006, a protocol violation reaches `on_error` then `on_close` with its
//! code, and sends from another task are delivered while the driver waits to read.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{Event, Recorder, bounded, connect, events_until_close, raw_client, read_close};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use wsdriver::{Config, Connection, Handler, Message};

async fn recorder(kind: &str) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<Event>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let addr = common::servers::start_with(kind, Config::default(), move || Recorder { events: tx.clone(), echo: true }).await;
    (addr, rx)
}

async fn vanished_peer(kind: &str) {
    let (addr, mut events) = recorder(kind).await;
    drop(raw_client(addr).await);
    let seen = events_until_close(&mut events).await;
    let reset = Event::Error("connection reset without a close frame".into());
    assert_eq!(seen, [Event::Open, reset, Event::Close(1006, String::new())], "{kind}");
    assert_eq!(bounded(events.recv()).await, Some(Event::Dropped), "{kind}: nothing after on_close");
}

async fn violation(kind: &str) {
    let (addr, mut events) = recorder(kind).await;
    let mut peer = raw_client(addr).await;
    peer.write_all(&[0x81, 0x01, b'x']).await.unwrap(); // unmasked
    assert_eq!(read_close(&mut peer).await, Some(1002));
    let seen = events_until_close(&mut events).await;
    assert_eq!(seen.len(), 3, "{kind}: {seen:?}");
    assert!(matches!(&seen[1], Event::Error(e) if e.contains("unmasked frame")), "{kind}: {seen:?}");
    assert_eq!(seen[2], Event::Close(1002, String::new()), "{kind}");
}

/// Hands its connection out on open.
struct Exposed(mpsc::UnboundedSender<Connection>);

impl Handler for Exposed {
    async fn on_open(&mut self, ws: &Connection) {
        let _ = self.0.send(ws.clone());
    }
    async fn on_message(&mut self, _: &Connection, _: Message) {}
}

async fn sends_from_another_task(kind: &str) {
    let (tx, mut opened) = mpsc::unbounded_channel();
    let addr = common::servers::start_with(kind, Config::default(), move || Exposed(tx.clone())).await;
    let mut client = connect(addr, "/", &Config::default()).await;
    let conn = bounded(opened.recv()).await.unwrap();
    // The client sends nothing: the server's driver sits in a read that never completes.
    let sender = tokio::spawn(async move {
        for i in 0..50 {
            conn.send_text(format!("push {i}")).await.unwrap();
        }
    });
    for i in 0..50 {
        assert_eq!(bounded(client.recv()).await.unwrap().unwrap(), Message::text(format!("push {i}")), "{kind}");
    }
    sender.await.unwrap();
}

macro_rules! on_every_server {
    ($($kind:ident),*) => {$(
        mod $kind {
            #[tokio::test]
            async fn a_vanished_peer_gives_one_close_with_1006() {
                super::vanished_peer(stringify!($kind)).await;
            }

            #[tokio::test]
            async fn a_violation_reaches_on_error_then_on_close() {
                super::violation(stringify!($kind)).await;
            }

            #[tokio::test]
            async fn sends_from_another_task_are_delivered_at_once() {
                super::sends_from_another_task(stringify!($kind)).await;
            }
        }
    )*};
}

on_every_server!(standalone, hyper, tower, axum, actix);
