//! Positions, history and recovery, in-process: a member that comes back from the last
//! position it saw gets exactly what it missed, or is told it cannot.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{member, next_text};
use std::time::Duration;
use ws_core::{Message, PreparedMessage};
use ws_hub::{Hub, Position, Publication, Recovery};

/// Members are sent `OFFSET:EPOCH TEXT`, as a client that keeps its position would want.
fn positioned(history: usize) -> Hub {
    Hub::builder()
        .queue_capacity(history)
        .envelope(|p: &Publication<'_>| PreparedMessage::text(format!("{} {}", p.position, p.message.as_text().unwrap_or_default())))
        .build()
}

fn split(line: &str) -> (Position, &str) {
    let (position, text) = line.split_once(' ').unwrap();
    (position.parse().unwrap(), text)
}

#[tokio::test]
async fn receivers_see_the_position_the_sender_got() {
    let hub = positioned(128);
    let (alice, mut a) = member(&hub);
    alice.join("room");
    let sent = alice.publish("room", "hello").await.unwrap();
    assert_eq!(sent.offset, 1);
    assert_eq!(split(&next_text(&mut a).await), (sent, "hello"));
    let next = hub.publish("room", "again").await.unwrap();
    assert_eq!(next, Position { offset: 2, epoch: sent.epoch });
    assert_eq!(split(&next_text(&mut a).await), (next, "again"));
    let other = hub.publish("other", "elsewhere").await.unwrap();
    assert_eq!(other.offset, 1, "each room counts on its own");
    assert_ne!(other.epoch, sent.epoch);
}

/// The test that matters in-process: a publisher never stops while a member drops out and
/// comes back from its last position; what it ends up with is every publication, once,
/// in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_coming_back_gets_every_publication_once_in_order() {
    const TOTAL: usize = 2000;
    // History holds every publication: the member can come back however far behind.
    let hub = positioned(TOTAL);
    // The first member is in before anything is said; then the publisher never stops.
    let mut joined = Some(member(&hub));
    let start = joined.as_ref().unwrap().0.join_from("room", Position::default()).await.unwrap();
    assert_eq!(start.position().offset, 0);
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            for i in 1..=TOTAL {
                hub.publish("room", format!("{i}")).await.unwrap();
                if i % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut seen: Vec<usize> = Vec::new();
    let mut last = start.position();
    for round in 0.. {
        let (member, mut client) = match joined.take() {
            Some(first) => first,
            None => {
                let (member, client) = member(&hub);
                let recovery = member.join_from("room", last).await.unwrap();
                assert!(recovery.is_recovered(), "round {round}: {recovery:?} from {last}");
                (member, client)
            }
        };
        // Take a few, then drop out without reading the rest.
        for _ in 0..150 {
            if seen.len() == TOTAL {
                break;
            }
            let line = next_text(&mut client).await;
            let (position, text) = split(&line);
            assert_eq!(position.offset, last.offset + 1, "round {round}: no gap, nothing twice");
            seen.push(text.parse().unwrap());
            last = position;
        }
        drop(member);
        if seen.len() == TOTAL {
            break;
        }
    }
    publisher.await.unwrap();
    assert_eq!(seen, (1..=TOTAL).collect::<Vec<_>>());
}

#[tokio::test]
async fn history_trimmed_past_the_position_resets() {
    let hub = Hub::builder().queue_capacity(4).build();
    let first = hub.publish("room", "1").await.unwrap();
    for i in 2..=10 {
        hub.publish("room", i.to_string()).await.unwrap();
    }
    let (member, mut client) = member(&hub);
    let recovery = member.join_from("room", first).await.unwrap();
    assert_eq!(recovery, Recovery::Reset { position: Position { offset: 10, epoch: first.epoch } });
    hub.publish("room", "live").await.unwrap();
    assert_eq!(next_text(&mut client).await, "live", "nothing replayed, live from now");

    // The ring holds the last 4: 8 to 11.
    assert!(!member.join_from("room", Position { offset: 6, epoch: first.epoch }).await.unwrap().is_recovered());
    let recovery = member.join_from("room", Position { offset: 7, epoch: first.epoch }).await.unwrap();
    assert_eq!(recovery, Recovery::Recovered { replayed: 4, position: Position { offset: 11, epoch: first.epoch } });
    for expected in ["8", "9", "10", "live"] {
        assert_eq!(next_text(&mut client).await, expected, "rejoining replays afresh");
    }
    let wrong_epoch = Position { offset: 9, epoch: first.epoch ^ 2 };
    assert!(!member.join_from("room", wrong_epoch).await.unwrap().is_recovered());
}

#[tokio::test(start_paused = true)]
async fn an_idle_room_keeps_its_history_until_it_expires() {
    let hub = Hub::builder().history_ttl(Duration::from_secs(60)).build();
    let (alice, _a) = member(&hub);
    let joined = alice.join_from("room", Position::default()).await.unwrap();
    assert_eq!(joined.position().offset, 0);
    let said = alice.publish("room", "before leaving").await.unwrap();
    drop(alice);
    assert!(hub.rooms().is_empty(), "no room has members");
    hub.publish("room", "while nobody is in").await.unwrap();

    tokio::time::advance(Duration::from_secs(30)).await;
    let (bob, mut b) = member(&hub);
    let recovery = bob.join_from("room", said).await.unwrap();
    assert_eq!(recovery, Recovery::Recovered { replayed: 1, position: Position { offset: 2, epoch: said.epoch } });
    assert_eq!(next_text(&mut b).await, "while nobody is in");
    drop(bob);

    // An hour later the room went with its history: coming back resets, to a new epoch.
    tokio::time::advance(Duration::from_secs(3600)).await;
    hub.publish("elsewhere", "lets the hub see the expired room").await.unwrap();
    let (carol, _c) = member(&hub);
    let recovery = carol.join_from("room", said).await.unwrap();
    assert!(!recovery.is_recovered());
    assert_ne!(recovery.position().epoch, said.epoch, "a new stream");
    assert_eq!(recovery.position().offset, 0);
}

#[tokio::test]
async fn idle_rooms_are_bounded() {
    let hub = Hub::builder().idle_rooms(2).build();
    let mut positions = Vec::new();
    for room in ["a", "b", "c"] {
        positions.push(hub.publish(room, "x").await.unwrap());
    }
    let (one, _client) = member(&hub);
    assert!(!one.join_from("a", positions[0]).await.unwrap().is_recovered(), "the oldest idle room went");
    assert!(one.join_from("c", positions[2]).await.unwrap().is_recovered());
    let (other, _client) = member(&hub);
    assert!(other.join_from("b", positions[1]).await.unwrap().is_recovered(), "within the bound");
}

#[tokio::test]
async fn without_an_envelope_members_get_what_was_published() {
    let hub = Hub::new();
    let (alice, mut a) = member(&hub);
    alice.join("room");
    hub.publish("room", vec![1u8, 2]).await.unwrap();
    let message = tokio::time::timeout(Duration::from_secs(10), a.recv()).await.unwrap().unwrap().unwrap();
    assert_eq!(message, Message::binary(vec![1u8, 2]));
}

#[tokio::test]
async fn idle_rooms_keep_no_more_bytes_than_allowed() {
    let hub = Hub::builder().idle_bytes(100_000).build();
    let mut positions = Vec::new();
    for room in ["a", "b", "c"] {
        positions.push(hub.publish(room, vec![0u8; 30_000]).await.unwrap()); // about 60 KB each
    }
    let (one, _client) = member(&hub);
    assert!(!one.join_from("a", positions[0]).await.unwrap().is_recovered(), "a went when b's came: past 100 KB");
    assert!(!one.join_from("b", positions[1]).await.unwrap().is_recovered(), "b went when c's came");
    assert!(one.join_from("c", positions[2]).await.unwrap().is_recovered(), "the newest stays");
    assert!(hub.retained_bytes() < 200_000, "{} bytes retained", hub.retained_bytes());
}
