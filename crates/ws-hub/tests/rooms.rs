//! Rooms, presence and who receives which broadcast, on in-process pipes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;
use tokio::io::DuplexStream;
use ws_core::{Config, Message, Role, WebSocket};
use ws_hub::{Hub, Member};

/// A registered server side and the client that reads what it is sent.
fn member(hub: &Hub) -> (Member, WebSocket<DuplexStream>) {
    let (a, b) = tokio::io::duplex(64 << 10);
    let server = WebSocket::from_raw(a, Role::Server, &Config::default());
    let client = WebSocket::from_raw(b, Role::Client, &Config::default());
    let member = hub.register(server.connection());
    // The server socket's reader must run for the connection to answer control frames.
    tokio::spawn(async move {
        let mut server = server;
        while server.recv().await.is_some() {}
    });
    (member, client)
}

async fn next_text(client: &mut WebSocket<DuplexStream>) -> String {
    let message = tokio::time::timeout(Duration::from_secs(10), client.recv()).await.expect("timed out").unwrap().unwrap();
    message.as_text().expect("a text message").to_owned()
}

/// Sends a marker to everyone, then reads until it: what came before it is what each
/// client received.
async fn received(hub: &Hub, clients: &mut [&mut WebSocket<DuplexStream>]) -> Vec<Vec<String>> {
    hub.broadcast_all("--end--");
    let mut all = Vec::new();
    for client in clients.iter_mut() {
        let mut got = Vec::new();
        loop {
            let text = next_text(client).await;
            if text == "--end--" {
                break;
            }
            got.push(text);
        }
        all.push(got);
    }
    all
}

#[tokio::test]
async fn broadcasts_reach_the_room_all_or_all_but_the_sender() {
    let hub = Hub::new();
    let (alice, mut a) = member(&hub);
    let (bob, mut b) = member(&hub);
    let (_carol, mut c) = member(&hub);
    alice.join("rust");
    bob.join("rust");
    bob.join("lisp");

    assert_eq!(hub.broadcast("rust", "to rust"), 2);
    assert_eq!(hub.broadcast("lisp", "to lisp"), 1);
    assert_eq!(hub.broadcast("nobody", "to nobody"), 0);
    assert_eq!(alice.broadcast("rust", "alice to the others in rust"), 1);
    assert_eq!(bob.broadcast_all("bob to all others"), 2);

    let got = received(&hub, &mut [&mut a, &mut b, &mut c]).await;
    assert_eq!(got[0], ["to rust", "bob to all others"]);
    assert_eq!(got[1], ["to rust", "to lisp", "alice to the others in rust"]);
    assert_eq!(got[2], ["bob to all others"]);
}

#[tokio::test]
async fn presence_follows_joins_leaves_and_drops() {
    let hub = Hub::new();
    let (alice, _a) = member(&hub);
    let (bob, _b) = member(&hub);
    assert_eq!((hub.len(), hub.presence("room")), (2, 0));
    alice.join("room");
    alice.join("room");
    bob.join("room");
    assert_eq!(hub.presence("room"), 2);
    assert_eq!(alice.rooms(), ["room"]);
    alice.leave("room");
    alice.leave("room");
    assert_eq!(hub.presence("room"), 1);
    drop(bob);
    assert_eq!((hub.len(), hub.presence("room")), (1, 0));
    assert!(hub.rooms().is_empty(), "an empty room is forgotten");
}

#[tokio::test]
async fn a_closed_connection_is_skipped() {
    let hub = Hub::new();
    let (alice, mut a) = member(&hub);
    let (bob, mut b) = member(&hub);
    alice.join("room");
    bob.join("room");
    b.close(ws_core::CloseCode::NORMAL, "bye").await.unwrap();
    while b.recv().await.is_some() {} // the server answered: its side is closed
    assert_eq!(hub.broadcast("room", "anyone?"), 1, "only Alice is still there");
    assert_eq!(next_text(&mut a).await, "anyone?");
    assert_eq!(hub.presence("room"), 2, "Bob is a member until his handler drops him");
}

#[tokio::test]
async fn binary_broadcasts_keep_their_bytes() {
    let hub = Hub::new();
    let (alice, mut a) = member(&hub);
    alice.join("room");
    let payload: Vec<u8> = (0..=255).cycle().take(70_000).collect();
    hub.broadcast("room", payload.clone());
    let message = tokio::time::timeout(Duration::from_secs(10), a.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(message, Message::binary(payload));
}
