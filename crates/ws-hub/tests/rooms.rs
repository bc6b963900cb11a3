//! Rooms, presence and who receives which broadcast, on in-process pipes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{member, next_text};
use std::time::Duration;
use tokio::io::DuplexStream;
use ws_core::{Message, WebSocket};
use ws_hub::{Hub, PresenceEvent, PresenceKind};

/// Reads `count` messages, sorted (rooms are separate rings: broadcasts to different
/// rooms, or to a room and to all, are not ordered with each other), then checks that a
/// marker sent to everyone is the next thing to arrive: nothing else was on its way.
async fn received(hub: &Hub, client: &mut WebSocket<DuplexStream>, count: usize) -> Vec<String> {
    let mut got = Vec::new();
    for _ in 0..count {
        got.push(next_text(client).await);
    }
    got.sort();
    hub.broadcast_all("--end--");
    assert_eq!(next_text(client).await, "--end--", "after {got:?}");
    got
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
    assert_eq!(alice.broadcast_others("rust", "alice to the others in rust"), 1);
    assert_eq!(bob.broadcast_all_others("bob to all others"), 2);
    assert_eq!(alice.broadcast("rust", "alice to all of rust"), 2, "the sender included");

    assert_eq!(received(&hub, &mut a, 3).await, ["alice to all of rust", "bob to all others", "to rust"]);
    assert_eq!(received(&hub, &mut b, 4).await, ["alice to all of rust", "alice to the others in rust", "to lisp", "to rust"]);
    assert_eq!(received(&hub, &mut c, 1).await, ["bob to all others"]);
}

#[tokio::test]
async fn presence_follows_joins_leaves_and_drops() {
    let hub = Hub::new();
    let (alice, _a) = member(&hub);
    let (bob, _b) = member(&hub);
    assert_eq!((hub.len(), hub.local_presence("room")), (2, 0));
    alice.join("room");
    alice.join("room");
    bob.join("room");
    assert_eq!(hub.local_presence("room"), 2);
    assert_eq!(alice.rooms(), ["room"]);
    alice.leave("room");
    alice.leave("room");
    assert_eq!(hub.local_presence("room"), 1);
    drop(bob);
    assert_eq!((hub.len(), hub.local_presence("room")), (1, 0));
    assert!(hub.rooms().is_empty(), "an empty room is forgotten");
}

#[tokio::test]
async fn broadcasts_to_one_room_keep_their_order() {
    let hub = Hub::new();
    let (alice, mut a) = member(&hub);
    alice.join("room");
    for i in 0..100 {
        hub.broadcast("room", format!("{i}"));
    }
    for i in 0..100 {
        assert_eq!(next_text(&mut a).await, format!("{i}"));
    }
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
    assert_eq!(hub.broadcast("room", "anyone?"), 2, "Bob is a member until his handler drops him");
    assert_eq!(next_text(&mut a).await, "anyone?", "Alice is not held up by Bob's closed connection");
    drop(bob);
    assert_eq!(hub.broadcast("room", "still here"), 1);
    assert_eq!(next_text(&mut a).await, "still here");
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

#[tokio::test]
async fn after_leaving_nothing_more_arrives_from_that_room() {
    let hub = Hub::new();
    let (alice, mut a) = member(&hub);
    let (bob, _b) = member(&hub);
    for room in ["news", "chat"] {
        alice.join(room);
        bob.join(room);
    }
    alice.leave("news");
    alice.leave("news");
    assert_eq!(hub.local_presence("news"), 1);
    assert_eq!(hub.broadcast("news", "not for alice"), 1);
    hub.broadcast("chat", "for alice");
    assert_eq!(next_text(&mut a).await, "for alice");
    alice.join("news");
    hub.broadcast("news", "back in news");
    assert_eq!(next_text(&mut a).await, "back in news", "once, not twice");
    hub.broadcast("chat", "marker");
    assert_eq!(next_text(&mut a).await, "marker");
}

#[tokio::test]
async fn joins_and_leaves_are_announced_with_who_and_how_many() {
    let hub = Hub::builder()
        .on_presence(|event: &PresenceEvent<'_>| {
            let verb = if event.kind == PresenceKind::Join { "joined" } else { "left" };
            let who = String::from_utf8_lossy(&event.who?.info);
            Some(ws_core::PreparedMessage::text(format!("{who} {verb} {}: {}", event.room, event.count)))
        })
        .build();
    let (alice, mut a) = member(&hub);
    let (bob, mut b) = member(&hub);
    alice.set_info("alice");
    bob.set_info("bob");
    alice.join("room");
    assert_eq!(next_text(&mut a).await, "alice joined room: 1", "the one who joins is told too");
    bob.join("room");
    assert_eq!(next_text(&mut a).await, "bob joined room: 2");
    assert_eq!(next_text(&mut b).await, "bob joined room: 2");
    let mut present: Vec<_> = hub.presence("room").await.unwrap().into_iter().map(|p| p.info).collect();
    present.sort();
    assert_eq!(present, ["alice", "bob"]);
    assert_eq!(hub.presence_count("room").await.unwrap(), 2);
    assert!(hub.presence("elsewhere").await.unwrap().is_empty());

    drop(bob);
    assert_eq!(next_text(&mut a).await, "bob left room: 1", "a dropped member leaves");
    alice.leave("room");
    assert_eq!(hub.presence_count("room").await.unwrap(), 0);
    alice.join("other");
    assert_eq!(next_text(&mut a).await, "alice joined other: 1", "nothing about the room she left");
}
