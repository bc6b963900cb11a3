//! The Redis backplane against a real `redis-server`: two hubs share rooms, and keep
//! sharing them after Redis restarts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::bounded;
use common::redis_server::RedisServer;
use tokio::io::DuplexStream;
use wsdriver::hub::{Hub, Member, RedisBackplane};
use wsdriver::{Config, Message, Role, WebSocket};

fn hub(redis: &RedisServer) -> (Hub, RedisBackplane) {
    let backplane = RedisBackplane::new(&redis.url()).unwrap().prefix("test:");
    (Hub::builder().backplane(backplane.clone()).build(), backplane)
}

fn member(hub: &Hub) -> (Member, WebSocket<DuplexStream>) {
    let (a, b) = tokio::io::duplex(64 << 10);
    let server = WebSocket::from_raw(a, Role::Server, &Config::default());
    let member = hub.register(server.connection());
    tokio::spawn(async move {
        let mut server = server;
        while server.recv().await.is_some() {}
    });
    (member, WebSocket::from_raw(b, Role::Client, &Config::default()))
}

async fn next(client: &mut WebSocket<DuplexStream>) -> Message {
    bounded(client.recv()).await.unwrap().unwrap()
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
    assert_eq!(next(&mut a).await, Message::binary(vec![1u8, 2, 3]));
    assert_eq!(next(&mut b).await, Message::binary(vec![1u8, 2, 3]), "local members get it too");
    hub_a.broadcast_all("everyone");
    for client in [&mut a, &mut b, &mut c] {
        assert_eq!(next(client).await, Message::text("everyone"));
    }

    // Redis goes away and comes back on the same port: both hubs reconnect and
    // subscribe again without anyone re-joining.
    let port = redis.port;
    redis.stop();
    bounded(plane_a.disconnected()).await;
    bounded(plane_b.disconnected()).await;
    assert_eq!(hub_a.broadcast("chat", "while Redis is down"), 1);
    assert_eq!(next(&mut a).await, Message::text("while Redis is down"), "local members still get it");
    assert_eq!(plane_a.dropped(), 1, "the copy for other hubs is dropped");
    let _redis = RedisServer::start_on(port);
    bounded(plane_a.connected()).await;
    bounded(plane_b.connected()).await;
    hub_a.broadcast("chat", "after the restart");
    assert_eq!(next(&mut b).await, Message::text("after the restart"), "nothing published while down is replayed");
    assert_eq!(next(&mut a).await, Message::text("after the restart"));
    bob.broadcast_others("chat", "and back");
    assert_eq!(next(&mut a).await, Message::text("and back"));

    // Leaving unsubscribes: Carol's room no longer reaches hub B once she leaves.
    carol.leave("elsewhere");
    assert!(hub_b.rooms().iter().all(|r| r != "elsewhere"));
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
