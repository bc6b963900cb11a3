//! The Redis backplane against a real `redis-server`: hubs share rooms and their history,
//! number publications the same way, recover what one of them missed, and keep going
//! after Redis restarts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::bounded;
use common::hub_member::{member, member_via, next};
use common::redis_server::RedisServer;
use std::time::Duration;
use tokio::io::DuplexStream;
use wsdriver::hub::{
    ConnectRequest, Hub, HubBuilder, HubError, JoinRequest, Position, PresenceEvent, PresenceKind, Publication, PublishRequest, Recovery,
    RedisBackplane, Refusal,
};
use wsdriver::{CloseCode, Message, PreparedMessage, WebSocket};

fn hub_with(redis: &RedisServer, builder: HubBuilder) -> (Hub, RedisBackplane) {
    let backplane = RedisBackplane::new(&redis.url()).unwrap().prefix("test:");
    (builder.backplane(backplane.clone()).build(), backplane)
}

fn hub(redis: &RedisServer) -> (Hub, RedisBackplane) {
    hub_with(redis, Hub::builder())
}

/// Members are sent `OFFSET:EPOCH TEXT`.
fn positioned() -> HubBuilder {
    Hub::builder()
        .envelope(|p: &Publication<'_>| PreparedMessage::text(format!("{} {}", p.position, p.message.as_text().unwrap_or_default())))
}

/// The next positioned line: its position and its text.
async fn next_at(client: &mut WebSocket<DuplexStream>) -> (Position, String) {
    let message = next(client).await;
    let (position, text) = message.as_text().unwrap().split_once(' ').unwrap();
    (position.parse().unwrap(), text.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/install.sh)"]
async fn hubs_share_rooms_and_survive_a_redis_restart() {
    let mut redis = RedisServer::start();
    let (hub_a, plane_a) = hub(&redis);
    let (hub_b, plane_b) = hub(&redis);
    let (alice, mut a) = member(&hub_a);
    let (bob, mut b) = member(&hub_b);
    let (carol, mut c) = member(&hub_b);
    alice.join("chat");
    bob.join("chat");
    carol.join("elsewhere");
    bounded(plane_a.connected()).await;
    bounded(plane_b.connected()).await;

    // A room spans both hubs; the sender is left out; other rooms are not reached.
    assert_eq!(alice.broadcast_others("chat", "hi from A"), 0, "no other local member on A");
    assert_eq!(next(&mut b).await, Message::text("hi from A"));
    hub_b.broadcast("chat", vec![1u8, 2, 3]);
    assert_eq!(next(&mut a).await, Message::binary(vec![1u8, 2, 3]), "Alice did not get her own");
    assert_eq!(next(&mut b).await, Message::binary(vec![1u8, 2, 3]), "local members get it too");
    hub_a.broadcast_all("everyone");
    for client in [&mut a, &mut b, &mut c] {
        assert_eq!(next(client).await, Message::text("everyone"));
    }
    let before = bounded(hub_a.publish("chat", "numbered")).await.unwrap();
    assert_eq!(next(&mut a).await, Message::text("numbered"));
    assert_eq!(next(&mut b).await, Message::text("numbered"));

    // Redis goes away (and its data with it) and comes back on the same port: both hubs
    // reconnect and subscribe again without anyone re-joining. Meanwhile publishing
    // fails, and nobody, here or there, receives what could not be numbered.
    let port = redis.port;
    redis.stop();
    bounded(plane_a.disconnected()).await;
    bounded(plane_b.disconnected()).await;
    assert!(bounded(hub_a.publish("chat", "while Redis is down")).await.is_err());
    assert_eq!(plane_a.dropped(), 1);
    let _redis = RedisServer::start_on(port);
    bounded(plane_a.connected()).await;
    bounded(plane_b.connected()).await;
    let after = bounded(hub_a.publish("chat", "after the restart")).await.unwrap();
    assert_eq!((after.offset, after.epoch == before.epoch), (1, false), "Redis lost the room: a new epoch");
    assert_eq!(next(&mut b).await, Message::text("after the restart"), "nothing published while down arrives");
    assert_eq!(next(&mut a).await, Message::text("after the restart"));
    bob.broadcast_others("chat", "and back");
    assert_eq!(next(&mut a).await, Message::text("and back"));

    // Leaving unsubscribes: Carol's room no longer reaches hub B once she leaves.
    carol.leave("elsewhere");
    assert!(hub_b.rooms().iter().all(|r| r != "elsewhere"));
}

/// Every hub numbers a room's publications the same way, whoever published them, and a
/// client that drops out of one hub comes back through the other from its last position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/install.sh)"]
async fn every_hub_sees_the_same_positions_and_a_member_recovers_through_either() {
    let redis = RedisServer::start();
    let (hub_a, plane_a) = hub_with(&redis, positioned());
    let (hub_b, plane_b) = hub_with(&redis, positioned());
    let (alice, mut a) = member(&hub_a);
    let (bob, mut b) = member(&hub_b);
    let joined = bounded(alice.join_from("room", Position::default())).await.unwrap();
    assert_eq!(joined, Recovery::Reset { position: Position { offset: 0, epoch: joined.position().epoch } });
    assert_eq!(bounded(bob.join_from("room", Position::default())).await.unwrap(), joined, "one stream, one epoch");
    bounded(plane_a.connected()).await;
    bounded(plane_b.connected()).await;

    let mut sent = Vec::new();
    for i in 1..=20 {
        let hub = if i % 2 == 0 { &hub_a } else { &hub_b };
        sent.push((bounded(hub.publish("room", i.to_string())).await.unwrap(), i.to_string()));
    }
    assert!(sent.iter().enumerate().all(|(i, (p, _))| p.offset == i as u64 + 1 && p.epoch == joined.position().epoch));
    for client in [&mut a, &mut b] {
        for expected in &sent {
            assert_eq!(&next_at(client).await, expected);
        }
    }

    // Alice's connection drops; 10 more are said; she comes back through hub B.
    drop((alice, a));
    for i in 21..=30 {
        bounded(hub_b.publish("room", i.to_string())).await.unwrap();
    }
    let (alice, mut a) = member(&hub_b);
    let last_seen = sent[19].0;
    let recovery = bounded(alice.join_from("room", last_seen)).await.unwrap();
    assert_eq!(recovery, Recovery::Recovered { replayed: 10, position: Position { offset: 30, epoch: last_seen.epoch } });
    hub_a.broadcast("room", "31");
    for i in 21..=31 {
        let (position, text) = next_at(&mut a).await;
        assert_eq!((position.offset, text), (i, i.to_string()), "the missed ones in order, then live, none twice");
    }
    // History trimmed past a position, or another epoch: told, not silently skipped.
    let other_epoch = Position { offset: 5, epoch: last_seen.epoch ^ 2 };
    assert!(!bounded(alice.join_from("room", other_epoch)).await.unwrap().is_recovered());
}

/// A publication made once under a key, through one hub, is not made again under that
/// key through any hub: a client that sends again after its connection dropped is heard
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/install.sh)"]
async fn a_key_publishes_once_across_hubs() {
    let redis = RedisServer::start();
    let (hub_a, plane_a) = hub_with(&redis, positioned());
    let (hub_b, plane_b) = hub_with(&redis, positioned());
    let (bob, mut b) = member(&hub_b);
    bounded(bob.join_from("room", Position::default())).await.unwrap();
    bounded(plane_a.connected()).await;
    bounded(plane_b.connected()).await;
    let first = bounded(hub_a.publish_once("room", "alice/1", "hello")).await.unwrap();
    assert_eq!(bounded(hub_b.publish_once("room", "alice/1", "hello")).await.unwrap(), first);
    assert_eq!(bounded(hub_a.publish_once("room", "alice/1", "hello")).await.unwrap(), first);
    let second = bounded(hub_b.publish_once("room", "alice/2", "again")).await.unwrap();
    assert_eq!(second.offset, first.offset + 1);
    assert_eq!(next_at(&mut b).await, (first, "hello".to_owned()));
    assert_eq!(next_at(&mut b).await, (second, "again".to_owned()), "the first was received once");
}

/// Presence across hubs: who is in a room and how many, whichever hub they are on, with
/// joins and leaves announced everywhere; the members of a hub that stops refreshing its
/// entries (it died, or lost Redis) leave within the presence time to live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/install.sh)"]
async fn presence_spans_hubs_and_expires_with_a_dead_one() {
    let redis = RedisServer::start();
    let announcing = || {
        Hub::builder().presence_ttl(Duration::from_millis(600)).on_presence(|event: &PresenceEvent<'_>| {
            // Recounts (when a hub's link comes up) are another test's.
            let verb = if event.kind == PresenceKind::Join { "joined" } else { "left" };
            Some(PreparedMessage::text(format!("{} {verb}: {}", String::from_utf8_lossy(&event.who?.info), event.count)))
        })
    };
    let (hub_a, plane_a) = hub_with(&redis, announcing());
    let (hub_b, plane_b) = hub_with(&redis, announcing());
    let (alice, mut a) = member(&hub_a);
    let (bob, mut b) = member(&hub_b);
    alice.set_info("alice");
    bob.set_info("bob");
    bounded(alice.join_from("room", Position::default())).await.unwrap();
    assert_eq!(next(&mut a).await, Message::text("alice joined: 1"));
    bounded(bob.join_from("room", Position::default())).await.unwrap();
    assert_eq!(next(&mut a).await, Message::text("bob joined: 2"), "announced on the other hub");
    assert_eq!(next(&mut b).await, Message::text("bob joined: 2"));
    bounded(plane_a.connected()).await;
    bounded(plane_b.connected()).await;
    for hub in [&hub_a, &hub_b] {
        let mut present: Vec<_> = bounded(hub.presence("room")).await.unwrap().into_iter().map(|p| p.info).collect();
        present.sort();
        assert_eq!(present, ["alice", "bob"], "the same on both hubs");
        assert_eq!(bounded(hub.presence_count("room")).await.unwrap(), 2);
    }
    assert_eq!(hub_a.local_presence("room"), 1);

    // Carol comes and goes on hub B: both joins and leaves reach hub A.
    let (carol, _c) = member(&hub_b);
    carol.set_info("carol");
    carol.join("room");
    assert_eq!(next(&mut a).await, Message::text("carol joined: 3"));
    drop(carol);
    assert_eq!(next(&mut a).await, Message::text("carol left: 2"));

    // Hub B stops (its backplane shut down, Bob's connection closed, his member not yet
    // dropped): nothing tells Redis he left, and nothing refreshes his entry. After the
    // presence time to live, hub A removes it and says so.
    hub_b.close_all(wsdriver::CloseCode::GOING_AWAY, "going away");
    bounded(plane_b.disconnected()).await;
    assert_eq!(next(&mut a).await, Message::text("bob left: 1"));
    assert_eq!(bounded(hub_a.presence_count("room")).await.unwrap(), 1);
    drop(bob);
}

/// What a hub did not hear (joins and leaves announced while its subscription was down)
/// does not stay wrong: once its link is back, each of its rooms is counted again, and
/// its members are told the count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/install.sh)"]
async fn a_hub_back_from_a_lost_link_counts_its_rooms_again() {
    let redis = RedisServer::start();
    let (hub, plane) = hub_with(
        &redis,
        Hub::builder().on_presence(|event: &PresenceEvent<'_>| {
            let who = event.who.map(|who| String::from_utf8_lossy(&who.info).into_owned()).unwrap_or_default();
            Some(PreparedMessage::text(format!("{:?} {who}: {}", event.kind, event.count)))
        }),
    );
    bounded(plane.connected()).await;
    // A publication is made once the session went past counting the rooms it came up
    // with (none).
    bounded(hub.publish("elsewhere", "after the first count")).await.unwrap();
    let (alice, mut a) = member(&hub);
    alice.set_info("alice");
    bounded(alice.join_from("room", Position::default())).await.unwrap();
    assert_eq!(next(&mut a).await, Message::text("Join alice: 1"));

    // Two entries this hub heard nothing about, as if announced while it was away.
    assert_eq!(redis.cli(&["ZADD", "test:presence:room:room", "+inf", "dave", "+inf", "erin"]), "2");
    assert_eq!(bounded(hub.presence_count("room")).await.unwrap(), 3);
    // Its subscription drops; it reconnects and counts the room again.
    assert_eq!(redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]), "1");
    assert_eq!(next(&mut a).await, Message::text("Recount : 3"));
    bounded(plane.connected()).await;
    drop(alice);
}

/// The hooks with Redis: who the connect hook let in, and what it said about them, is
/// what the other hub hears; what the publish hook rewrote on one hub is what the other
/// hub's members get, and what history replays; a refused join reads no history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/install.sh)"]
async fn hooks_hold_across_hubs() {
    let redis = RedisServer::start();
    let guarded = || {
        positioned()
            .on_connect(|request: ConnectRequest| async move {
                let token = request.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                match token.strip_prefix("Bearer ") {
                    Some(user) if !user.is_empty() => Ok(user.to_owned().into()),
                    _ => Err(Refusal::close(CloseCode::from(4001), "who are you?")),
                }
            })
            // Only Dave's arrival is announced here (the presence tests cover the rest).
            .on_presence(|event: &PresenceEvent<'_>| {
                let who = event.who.filter(|who| who.info == "dave")?;
                Some(PreparedMessage::text(format!("{:?} {}", event.kind, String::from_utf8_lossy(&who.info))))
            })
            .on_join(|request: JoinRequest| async move { if request.room == "closed" { Err(Refusal::error("closed")) } else { Ok(()) } })
            .on_publish(|request: PublishRequest| async move {
                let text = request.message.as_text().unwrap_or_default().to_uppercase();
                if text.is_empty() { Err(Refusal::error("empty")) } else { Ok(Message::text(text)) }
            })
    };
    let (hub_a, plane_a) = hub_with(&redis, guarded());
    let (hub_b, plane_b) = hub_with(&redis, guarded());
    let (alice, _a) = member(&hub_a);
    let (bob, mut b) = member(&hub_b);
    let start = bounded(bob.join_from("room", Position::default())).await.unwrap().position();
    bounded(plane_a.connected()).await;
    bounded(plane_b.connected()).await;

    let said = bounded(alice.publish("room", "quiet words")).await.unwrap();
    assert_eq!(next_at(&mut b).await, (said, "QUIET WORDS".to_owned()), "rewritten on A, received on B");
    assert!(matches!(bounded(alice.publish("room", "")).await, Err(HubError::Refused(_))));
    let (carol, mut c) = member(&hub_b);
    assert!(matches!(bounded(carol.join_from("closed", Position::default())).await, Err(HubError::Refused(_))));
    bounded(carol.join_from("room", start)).await.unwrap();
    assert_eq!(next_at(&mut c).await, (said, "QUIET WORDS".to_owned()), "history holds what was published");

    let upgrade = |token: Option<&str>| {
        let request = http::Request::get("/chat");
        let request = match token {
            Some(token) => request.header("authorization", format!("Bearer {token}")),
            None => request,
        };
        request.body(()).unwrap()
    };
    assert!(matches!(member_via(&hub_a, &upgrade(None)).await, Err(HubError::Refused(_))));
    let (dave, _d) = member_via(&hub_a, &upgrade(Some("dave"))).await.unwrap();
    dave.join("room");
    assert_eq!(next(&mut b).await, Message::text("Join dave"), "the connect hook's answer, heard on the other hub");
    let present = bounded(hub_b.presence("room")).await.unwrap();
    assert!(present.iter().any(|p| p.info == "dave"), "{present:?}");
}

/// A hub whose subscription drops for a moment while others keep publishing misses
/// those publications; it reads them from the rooms' streams when it is back, and a
/// member that notices a gap from the positions fills it from the stream itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/install.sh)"]
async fn a_hub_that_missed_publications_recovers_them_from_the_stream() {
    let redis = RedisServer::start();
    // The stream keeps all 400: what is missed is always there to recover.
    let (hub_a, plane_a) = hub_with(&redis, positioned().queue_capacity(1024));
    bounded(plane_a.connected()).await;
    let pubsub_of_a = redis.cli(&["CLIENT", "LIST", "TYPE", "pubsub"]);
    let (hub_b, plane_b) = hub_with(&redis, positioned().queue_capacity(1024));
    let (bob, mut b) = member(&hub_b);
    bounded(bob.join_from("room", Position::default())).await.unwrap();
    bounded(plane_b.connected()).await;
    // Hub B's subscriber connection, the one hub A does not have.
    let cut_b = || {
        let clients = redis.cli(&["CLIENT", "LIST", "TYPE", "pubsub"]);
        let addr = clients
            .lines()
            .filter(|line| !pubsub_of_a.contains(line.split(' ').next().unwrap()))
            .find_map(|line| line.split(' ').find_map(|field| field.strip_prefix("addr=")))
            .expect("hub B's subscriber connection")
            .to_owned();
        assert_eq!(redis.cli(&["CLIENT", "KILL", "ADDR", &addr]), "1", "one connection killed");
    };
    let publish = |from: u64, to: u64| {
        let hub = hub_a.clone();
        tokio::spawn(async move {
            for i in from..=to {
                bounded(hub.publish("room", i.to_string())).await.unwrap();
            }
        })
    };
    let mut seen = 0;
    let mut read_to = async |to: u64, b: &mut WebSocket<DuplexStream>| {
        while seen < to {
            let (position, text) = next_at(b).await;
            seen += 1;
            assert_eq!((position.offset, text), (seen, seen.to_string()), "in order, none missed, none twice");
        }
    };

    bounded(publish(1, 50)).await.unwrap();
    read_to(50, &mut b).await;
    // Cut, then 50 publications at once, most of them before hub B is back (it waits
    // 50 ms before it reconnects), and nothing after: hub B reads them from the stream
    // when it is back.
    cut_b();
    bounded(publish(51, 100)).await.unwrap();
    read_to(100, &mut b).await;
    let after_first = hub_b.recovered();
    assert!(after_first > 0, "the missed publications came from the stream");

    // Cut again while publications keep coming: whichever notices first, hub B when it
    // is back or Bob's pump from the gap in positions, fills it.
    let publisher = publish(101, 400);
    cut_b();
    read_to(400, &mut b).await;
    bounded(publisher).await.unwrap();
    assert!(hub_b.recovered() > after_first, "the second gap was filled from the stream too");
    assert_eq!(bob.dropped(), 0);
}

/// The stream of a room keeps what the hub's history bounds allow: so many publications,
/// so many bytes, so long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/install.sh)"]
async fn the_stream_keeps_what_the_history_bounds_allow() {
    let redis = RedisServer::start();
    let (hub, plane) = hub_with(&redis, Hub::builder().queue_capacity(4).max_ring_bytes(10_000).history_ttl(Duration::from_millis(500)));
    bounded(plane.connected()).await;
    let (member, _client) = member(&hub);
    let stream = "test:stream:room:room";

    // By count: the last 4.
    let mut positions = Vec::new();
    for i in 1..=10 {
        positions.push(bounded(hub.publish("room", i.to_string())).await.unwrap());
    }
    assert_eq!(redis.cli(&["XLEN", stream]), "4");
    assert!(!bounded(member.join_from("room", positions[4])).await.unwrap().is_recovered(), "6 is gone");
    assert_eq!(bounded(member.join_from("room", positions[5])).await.unwrap(), Recovery::Recovered { replayed: 4, position: positions[9] });

    // By bytes: 4 KB publications, 10,000 bytes: two fit.
    for _ in 0..4 {
        positions.push(bounded(hub.publish("room", "x".repeat(4000))).await.unwrap());
    }
    assert_eq!(redis.cli(&["XLEN", stream]), "2");
    assert!(bounded(member.join_from("room", positions[11])).await.unwrap().is_recovered());
    assert!(!bounded(member.join_from("room", positions[10])).await.unwrap().is_recovered());

    // By age: half a second after the last publication, nothing is left to replay, but
    // the room's position stands: a member that missed nothing is still up to date.
    let last = *positions.last().unwrap();
    let aged = async {
        while bounded(member.join_from("room", positions[12])).await.unwrap().is_recovered() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    bounded(aged).await;
    assert_eq!(redis.cli(&["XLEN", stream]), "0");
    assert_eq!(bounded(member.join_from("room", last)).await.unwrap(), Recovery::Recovered { replayed: 0, position: last });
}

/// A Redis that stops answering while broadcasts keep coming: what waits to be published
/// stays within the backplane's byte bound (the rest is dropped and counted), and
/// publishing resumes once Redis does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/install.sh)"]
async fn a_stalled_redis_costs_no_more_than_the_queue_byte_bound() {
    const BOUND: usize = 1 << 20;
    const BIG: usize = 64 << 10;
    let redis = RedisServer::start();
    let plane_a = RedisBackplane::new(&redis.url()).unwrap().prefix("test:").max_queued_bytes(BOUND);
    let hub_a = Hub::builder().backplane(plane_a.clone()).build();
    let (hub_b, plane_b) = hub(&redis);
    let (bob, mut b) = member(&hub_b);
    bob.join("room");
    bounded(plane_a.connected()).await;
    bounded(plane_b.connected()).await;

    redis.signal("STOP");
    for _ in 0..100 {
        hub_a.broadcast("room", vec![7u8; BIG]); // 6.4 MiB in all
        assert!(plane_a.queued_bytes() <= BOUND, "{} bytes queued", plane_a.queued_bytes());
    }
    let dropped = plane_a.dropped();
    assert!(dropped >= 100 - (BOUND / BIG) as u64, "only what fits is kept: {dropped} dropped");
    redis.signal("CONT");

    hub_a.broadcast("room", "after the stall");
    let mut delivered = 0;
    while next(&mut b).await != Message::text("after the stall") {
        delivered += 1;
    }
    assert_eq!(delivered, 100 - dropped, "what was kept is published, in order, before what followed");
}
