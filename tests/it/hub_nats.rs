//! The NATS backplane against a real `nats-server`: the same hub on another engine. Two
//! hubs share rooms, and keep sharing them after NATS restarts; positions are each hub's
//! own (NATS core keeps no history), so a member recovers on the hub it was on and is
//! told to reset on another.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::bounded;
use common::hub_member::{member, next};
use common::nats_server::NatsServer;
use wsdriver::Message;
use wsdriver::hub::{Hub, NatsBackplane, Position, Recovery};

fn hub(nats: &NatsServer) -> (Hub, NatsBackplane) {
    let backplane = NatsBackplane::new(nats.url()).prefix("test.");
    (Hub::builder().backplane(backplane.clone()).build(), backplane)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server (interop/install.sh)"]
async fn hubs_share_rooms_over_nats_and_survive_a_restart() {
    let mut nats = NatsServer::start();
    let (hub_a, plane_a) = hub(&nats);
    let (hub_b, plane_b) = hub(&nats);
    let (alice, mut a) = member(&hub_a);
    let (bob, mut b) = member(&hub_b);
    let (carol, mut c) = member(&hub_b);
    alice.join("chat room. *>"); // any room name: subjects carry it in hexadecimal
    bob.join("chat room. *>");
    carol.join("elsewhere");
    bounded(plane_a.connected()).await;
    bounded(plane_b.connected()).await;

    assert_eq!(alice.broadcast_others("chat room. *>", "hi from A"), 0);
    assert_eq!(next(&mut b).await, Message::text("hi from A"));
    hub_b.broadcast("chat room. *>", vec![1u8, 2, 3]);
    assert_eq!(next(&mut a).await, Message::binary(vec![1u8, 2, 3]), "Alice did not get her own");
    assert_eq!(next(&mut b).await, Message::binary(vec![1u8, 2, 3]));
    hub_a.broadcast_all("everyone");
    for client in [&mut a, &mut b, &mut c] {
        assert_eq!(next(client).await, Message::text("everyone"));
    }

    // NATS goes away and comes back on the same port: the clients reconnect and
    // subscribe again by themselves. Meanwhile broadcasts reach local members only.
    let port = nats.port;
    nats.stop();
    bounded(plane_a.disconnected()).await;
    bounded(plane_b.disconnected()).await;
    assert_eq!(hub_a.broadcast("chat room. *>", "while NATS is down"), 1);
    assert_eq!(next(&mut a).await, Message::text("while NATS is down"), "local members still get it");
    assert_eq!(plane_a.dropped(), 1, "the copy for other hubs is dropped");
    let _nats = NatsServer::start_on(port);
    bounded(plane_a.connected()).await;
    bounded(plane_b.connected()).await;
    hub_a.broadcast("chat room. *>", "after the restart");
    assert_eq!(next(&mut b).await, Message::text("after the restart"), "nothing published while down is replayed");
    assert_eq!(next(&mut a).await, Message::text("after the restart"));

    carol.leave("elsewhere");
    assert!(hub_b.rooms().iter().all(|r| r != "elsewhere"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server (interop/install.sh)"]
async fn over_nats_a_member_recovers_on_its_own_hub_and_resets_on_another() {
    let nats = NatsServer::start();
    let (hub_a, plane_a) = hub(&nats);
    let (hub_b, plane_b) = hub(&nats);
    let (watcher, mut w) = member(&hub_a);
    watcher.join("news");
    let (other, _o) = member(&hub_b);
    other.join("news");
    bounded(plane_a.connected()).await;
    bounded(plane_b.connected()).await;

    let seen = bounded(hub_b.publish("news", "one")).await.unwrap();
    assert_eq!(next(&mut w).await, Message::text("one"));
    let on_a = hub_a.presence("news").await.unwrap();
    assert_eq!(on_a.len(), 1, "presence without a store is the hub's own");
    hub_b.broadcast("news", "two");
    assert_eq!(next(&mut w).await, Message::text("two"));

    // The position Hub B gave is its own: on Hub A it means nothing.
    let (back, _b) = member(&hub_a);
    assert!(matches!(bounded(back.join_from("news", seen)).await.unwrap(), Recovery::Reset { .. }));
    // The position Hub A's member saw is Hub A's: there it recovers.
    let a_position = Position { offset: 1, epoch: bounded(back.join_from("news", Position::default())).await.unwrap().position().epoch };
    let (again, mut g) = member(&hub_a);
    let recovery = bounded(again.join_from("news", a_position)).await.unwrap();
    assert!(matches!(recovery, Recovery::Recovered { replayed: 1, .. }), "{recovery:?}");
    assert_eq!(next(&mut g).await, Message::text("two"));
}
